//! The back-ends behind the ports.

pub mod aws;
pub mod dynamodb;
pub mod embedded;
pub mod outbound;
pub mod parsed_connections;
pub mod records;
