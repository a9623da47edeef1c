//! The back-ends behind the ports.

pub mod aws;
pub mod dynamodb;
pub mod embedded;
pub mod outbound;
pub mod records;
