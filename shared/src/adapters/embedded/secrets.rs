//! Client secrets in the embedded database, sealed by the envelope cipher (under the process's
//! client-secret data key from the local master key) and bound to their name by the
//! associated data.

use std::sync::Arc;

use async_trait::async_trait;
use rusqlite::{OptionalExtension, params};

use super::db::{CachedStatements, EmbeddedDb};
use crate::crypto::EnvelopeCipher;
use crate::domain::ClientSecret;
use crate::ports::{KeyContext, SecretError, SecretRef, SecretStore};

pub struct EmbeddedSecretStore {
    db: EmbeddedDb,
    cipher: Arc<EnvelopeCipher>,
}

impl EmbeddedSecretStore {
    pub fn new(db: EmbeddedDb, cipher: Arc<EnvelopeCipher>) -> Self {
        Self { db, cipher }
    }
}

fn unavailable(e: impl std::fmt::Display) -> SecretError {
    SecretError::Unavailable(e.to_string())
}

#[async_trait]
impl SecretStore for EmbeddedSecretStore {
    async fn put_secret(
        &self,
        secret: &SecretRef,
        value: &ClientSecret,
    ) -> Result<(), SecretError> {
        let name = secret.name();
        let sealed = self
            .cipher
            .seal(&KeyContext::secret(&name), value.expose_secret().as_bytes())
            .await
            .map_err(|e| SecretError::Crypto(e.to_string()))?;
        self.db
            .run(move |db| {
                db.execute_cached(
                    "INSERT INTO secrets (name, sealed) VALUES (?1, ?2)
                     ON CONFLICT (name) DO UPDATE SET sealed = excluded.sealed",
                    params![name, sealed],
                )
                .map_err(super::db::sql_error)
            })
            .await
            .map_err(unavailable)?;
        Ok(())
    }

    async fn get_secret(&self, secret: &SecretRef) -> Result<Option<ClientSecret>, SecretError> {
        let name = secret.name();
        let lookup = name.clone();
        let sealed = self
            .db
            .read_point(|db| {
                db.prepare_cached("SELECT sealed FROM secrets WHERE name = ?1")
                    .and_then(|mut statement| {
                        statement
                            .query_row([lookup], |row| row.get::<_, Vec<u8>>(0))
                            .optional()
                    })
                    .map_err(super::db::sql_error)
            })
            .map_err(unavailable)?;
        let Some(sealed) = sealed else {
            return Ok(None);
        };
        let plaintext = self
            .cipher
            .open(&KeyContext::secret(&name), &sealed)
            .await
            .map_err(|e| SecretError::Crypto(e.to_string()))?;
        let text =
            std::str::from_utf8(&plaintext).map_err(|_| SecretError::Crypto("not UTF-8".into()))?;
        Ok(Some(ClientSecret::new(text)))
    }

    async fn delete_secret(&self, secret: &SecretRef) -> Result<(), SecretError> {
        let name = secret.name();
        self.db
            .run(move |db| {
                db.execute_cached("DELETE FROM secrets WHERE name = ?1", [name])
                    .map_err(super::db::sql_error)
            })
            .await
            .map_err(unavailable)?;
        Ok(())
    }
}
