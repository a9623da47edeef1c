//! The embedded back-end: one SQLite database file (WAL) and a local master key file, for
//! running Keyport on one machine with nothing else to install.

mod db;
mod master_key;
mod secrets;
mod store;

pub use db::EmbeddedDb;
pub use master_key::LocalMasterKey;
pub use secrets::EmbeddedSecretStore;
pub use store::EmbeddedStore;
