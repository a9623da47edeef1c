//! The back-ends behind the ports.

pub mod aws;
pub mod embedded;
pub mod records;
