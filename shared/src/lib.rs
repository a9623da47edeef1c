//! Keyport's common crate: everything the Lambda functions and the local server share.
//!
//! - [`domain`]: plain types and the rules that make them valid; no I/O.
//! - [`ports`]: the small traits the use cases ask for (storage, data keys, client secrets).
//! - [`crypto`]: envelope encryption of token material and local secrets.
//! - [`adapters`]: the back-ends behind the ports (DynamoDB/KMS/Secrets Manager, embedded SQLite).

pub mod adapters;
pub mod catalog;
pub mod config;
pub mod crypto;
pub mod domain;
pub mod http;
pub mod lambda;
pub mod oauth;
pub mod ports;
pub mod service;
