//! A 32-byte secret in a file of its own, created owner-only on first use and refused if
//! anyone else can read it. Holds the local master key and the development signing key.

use std::fs::{self, OpenOptions};
use std::io::{ErrorKind, Read, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;

use zeroize::Zeroizing;

use crate::crypto::random_bytes;

/// Reads the secret at `path` (which must start with `magic`), or creates it.
pub fn read_or_create_secret(path: &Path, magic: &[u8]) -> Result<Zeroizing<[u8; 32]>, String> {
    let describe = |what: &str| format!("{} {what}", path.display());
    super::create_private_parent(path)
        .map_err(|e| describe(&format!("cannot get a folder: {e}")))?;
    match OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
    {
        Ok(mut file) => {
            let secret = Zeroizing::new(random_bytes::<32>());
            let mut contents = Zeroizing::new(magic.to_vec());
            contents.extend_from_slice(&secret[..]);
            file.write_all(&contents)
                .and_then(|_| file.sync_all())
                .map_err(|e| describe(&format!("cannot be written: {e}")))?;
            Ok(secret)
        }
        Err(e) if e.kind() == ErrorKind::AlreadyExists => read_secret(path, magic),
        Err(e) => Err(describe(&format!("cannot be created: {e}"))),
    }
}

/// Reads a secret file `read_or_create_secret` wrote; never creates one.
pub fn read_secret(path: &Path, magic: &[u8]) -> Result<Zeroizing<[u8; 32]>, String> {
    let describe = |what: &str| format!("{} {what}", path.display());
    let mut file = fs::File::open(path).map_err(|e| describe(&format!("cannot be opened: {e}")))?;
    let mode = file
        .metadata()
        .map_err(|e| describe(&format!("cannot be inspected: {e}")))?
        .permissions()
        .mode();
    if mode & 0o077 != 0 {
        return Err(describe(&format!(
            "is accessible to group or others (mode {:o}); run chmod 600 on it",
            mode & 0o777
        )));
    }
    let mut contents = Zeroizing::new(Vec::new());
    file.read_to_end(&mut contents)
        .map_err(|e| describe(&format!("cannot be read: {e}")))?;
    let secret: [u8; 32] = contents
        .strip_prefix(magic)
        .and_then(|rest| rest.try_into().ok())
        .ok_or_else(|| describe("is not a key file Keyport wrote"))?;
    Ok(Zeroizing::new(secret))
}
