//! The embedded back-end: one SQLite database file (WAL) and a local master key file, for
//! running Keyport on one machine with nothing else to install.

mod console;
mod db;
mod key_file;
mod master_key;
mod secrets;
mod settings;
mod store;

pub use db::EmbeddedDb;
pub use key_file::{read_or_create_secret, read_secret};
pub use master_key::LocalMasterKey;
pub use secrets::EmbeddedSecretStore;
pub use store::EmbeddedStore;

/// Creates the folder that will hold `path`, owner-only, if it does not exist yet.
fn create_private_parent(path: &std::path::Path) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    match path.parent().filter(|dir| !dir.as_os_str().is_empty()) {
        Some(dir) if !dir.exists() => {
            std::fs::create_dir_all(dir)?;
            std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
        }
        _ => Ok(()),
    }
}
