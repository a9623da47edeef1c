//! The local master key: 32 random bytes in a file created owner-only on first use. It wraps
//! data keys the way KMS does, binding each to its context as associated data.

use std::path::Path;

use async_trait::async_trait;
use aws_lc_rs::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use zeroize::Zeroizing;

use super::key_file::read_or_create_secret;
use crate::crypto::random_bytes;
use crate::ports::{DataKey, DataKeyProvider, KeyContext, KeyError};

const FILE_MAGIC: &[u8; 5] = b"KPMK1";
const WRAP_VERSION: u8 = 1;
const WRAP_LABEL: &[u8] = b"keyport-local-wrap";

pub struct LocalMasterKey {
    key: LessSafeKey,
}

impl std::fmt::Debug for LocalMasterKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("LocalMasterKey([REDACTED])")
    }
}

impl LocalMasterKey {
    /// Reads the key file, creating it (mode 0600, folder 0700) if it does not exist. Refuses a
    /// file that others can read: a leaked master key decrypts every token.
    pub fn load_or_create(path: &Path) -> Result<Self, KeyError> {
        let secret = read_or_create_secret(path, FILE_MAGIC).map_err(KeyError::MasterKey)?;
        Self::from_bytes(&secret[..])
    }

    fn from_bytes(secret: &[u8]) -> Result<Self, KeyError> {
        let key = UnboundKey::new(&AES_256_GCM, secret)
            .map_err(|_| KeyError::MasterKey("invalid key length".into()))?;
        Ok(Self {
            key: LessSafeKey::new(key),
        })
    }

    fn associated_data(context: &KeyContext) -> Vec<u8> {
        let mut aad = WRAP_LABEL.to_vec();
        aad.push(WRAP_VERSION);
        aad.extend_from_slice(&context.canonical_bytes());
        aad
    }
}

#[async_trait]
impl DataKeyProvider for LocalMasterKey {
    async fn generate_data_key(&self, context: &KeyContext) -> Result<DataKey, KeyError> {
        let plaintext = Zeroizing::new(random_bytes::<32>());
        let nonce = random_bytes::<NONCE_LEN>();
        let mut sealed = plaintext.to_vec();
        self.key
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(Self::associated_data(context)),
                &mut sealed,
            )
            .map_err(|_| KeyError::MasterKey("cannot wrap a data key".into()))?;
        let mut wrapped = Vec::with_capacity(1 + NONCE_LEN + sealed.len());
        wrapped.push(WRAP_VERSION);
        wrapped.extend_from_slice(&nonce);
        wrapped.extend_from_slice(&sealed);
        Ok(DataKey { plaintext, wrapped })
    }

    async fn decrypt_data_key(
        &self,
        wrapped: &[u8],
        context: &KeyContext,
    ) -> Result<Zeroizing<[u8; 32]>, KeyError> {
        let (&version, rest) = wrapped.split_first().ok_or(KeyError::Integrity)?;
        if version != WRAP_VERSION || rest.len() != NONCE_LEN + 32 + 16 {
            return Err(KeyError::Integrity);
        }
        let (nonce, sealed) = rest.split_at(NONCE_LEN);
        let nonce: [u8; NONCE_LEN] = nonce.try_into().map_err(|_| KeyError::Integrity)?;
        let mut in_out = Zeroizing::new(sealed.to_vec());
        let plaintext = self
            .key
            .open_in_place(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(Self::associated_data(context)),
                &mut in_out,
            )
            .map_err(|_| KeyError::Integrity)?;
        let key: [u8; 32] = (&*plaintext).try_into().map_err(|_| KeyError::Integrity)?;
        Ok(Zeroizing::new(key))
    }
}

#[cfg(test)]
mod tests {
    use std::fs::{self, OpenOptions};
    use std::io::Write;
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};

    use super::*;
    use crate::domain::{ConnectionId, Owner};
    use crate::ports::TokenKey;

    fn context() -> KeyContext {
        KeyContext::token(&TokenKey {
            connection_id: ConnectionId::generate(),
            owner: Owner::Shared,
        })
    }

    #[tokio::test]
    async fn the_key_file_is_created_owner_only_and_reloads() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("keys/master.key");
        let first = LocalMasterKey::load_or_create(&path).unwrap();
        assert_eq!(
            fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o600
        );
        assert_eq!(
            fs::metadata(path.parent().unwrap())
                .unwrap()
                .permissions()
                .mode()
                & 0o777,
            0o700
        );
        let ctx = context();
        let data_key = first.generate_data_key(&ctx).await.unwrap();
        let again = LocalMasterKey::load_or_create(&path).unwrap();
        assert_eq!(
            *again
                .decrypt_data_key(&data_key.wrapped, &ctx)
                .await
                .unwrap(),
            *data_key.plaintext
        );
    }

    #[tokio::test]
    async fn a_wrapped_key_does_not_open_under_another_context() {
        let dir = tempfile::tempdir().unwrap();
        let key = LocalMasterKey::load_or_create(&dir.path().join("master.key")).unwrap();
        let data_key = key.generate_data_key(&context()).await.unwrap();
        assert!(matches!(
            key.decrypt_data_key(&data_key.wrapped, &context()).await,
            Err(KeyError::Integrity)
        ));
    }

    #[test]
    fn a_key_file_others_can_read_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("master.key");
        LocalMasterKey::load_or_create(&path).unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();
        let err = LocalMasterKey::load_or_create(&path).unwrap_err();
        assert!(err.to_string().contains("chmod 600"), "{err}");
    }

    #[test]
    fn a_foreign_file_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("master.key");
        OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&path)
            .unwrap()
            .write_all(b"hello")
            .unwrap();
        assert!(LocalMasterKey::load_or_create(&path).is_err());
    }
}
