//! The installation's settings in the embedded database: one row each by name.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use rusqlite::{OptionalExtension, params};

use super::db::{CachedStatements, sql_error};
use super::store::EmbeddedStore;
use crate::ports::{SettingsStore, StoreError, StoredSetting};

#[async_trait]
impl SettingsStore for EmbeddedStore {
    async fn get_setting(&self, name: &str) -> Result<Option<StoredSetting>, StoreError> {
        let row = self.db.read_point(|db| {
            db.prepare_cached("SELECT doc, updated_at FROM settings WHERE name = ?1")
                .and_then(|mut statement| {
                    statement
                        .query_row([name], |row| {
                            Ok((row.get::<_, String>(0)?, row.get::<_, String>(1)?))
                        })
                        .optional()
                })
                .map_err(sql_error)
        })?;
        row.map(|(doc, updated_at)| {
            let updated_at = DateTime::parse_from_rfc3339(&updated_at)
                .map_err(|_| StoreError::Corrupt("setting", "its time is not a time".into()))?
                .with_timezone(&Utc);
            Ok(StoredSetting { doc, updated_at })
        })
        .transpose()
    }

    async fn put_setting(&self, name: &str, setting: &StoredSetting) -> Result<(), StoreError> {
        let (name, doc) = (name.to_owned(), setting.doc.clone());
        let updated_at = setting.updated_at.to_rfc3339();
        self.db
            .run(move |db| {
                db.execute_cached(
                    "INSERT INTO settings (name, doc, updated_at) VALUES (?1, ?2, ?3)
                     ON CONFLICT (name) DO UPDATE SET doc = excluded.doc, updated_at = excluded.updated_at",
                    params![name, doc, updated_at],
                )
                .map_err(sql_error)?;
                Ok(())
            })
            .await
    }

    async fn delete_setting(&self, name: &str) -> Result<(), StoreError> {
        let name = name.to_owned();
        self.db
            .run(move |db| {
                db.execute_cached("DELETE FROM settings WHERE name = ?1", [name])
                    .map_err(sql_error)?;
                Ok(())
            })
            .await
    }
}
