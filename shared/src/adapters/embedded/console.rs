//! The console's short-lived records in the embedded database.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use rusqlite::{OptionalExtension, params};

use super::db::{CachedStatements, sql_error};
use super::store::EmbeddedStore;
use crate::ports::{ConsoleRecordKind, ConsoleStore, StoreError};

#[async_trait]
impl ConsoleStore for EmbeddedStore {
    async fn put_console_record(
        &self,
        kind: ConsoleRecordKind,
        key: &str,
        doc: &str,
        expires_at: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let (kind, key, doc) = (kind.storage_name(), key.to_owned(), doc.to_owned());
        let (expires_at, now) = (expires_at.timestamp(), Utc::now().timestamp());
        self.db
            .run(move |db| {
                // Expired records are garbage: sweep them while we hold the write lock, so a
                // key whose record expired is free again, as DynamoDB's TTL eventually makes it.
                db.execute_cached(
                    "DELETE FROM console_records WHERE expires_at <= ?1",
                    [now],
                )
                .map_err(sql_error)?;
                let inserted = db
                    .execute_cached(
                        "INSERT INTO console_records (kind, key, doc, expires_at) VALUES (?1, ?2, ?3, ?4)
                         ON CONFLICT (kind, key) DO NOTHING",
                        params![kind, key, doc, expires_at],
                    )
                    .map_err(sql_error)?;
                Ok(inserted == 1)
            })
            .await
    }

    async fn get_console_record(
        &self,
        kind: ConsoleRecordKind,
        key: &str,
        now: DateTime<Utc>,
    ) -> Result<Option<String>, StoreError> {
        let (kind, now) = (kind.storage_name(), now.timestamp());
        self.db.read_point(|db| {
            db.prepare_cached(
                "SELECT doc FROM console_records WHERE kind = ?1 AND key = ?2 AND expires_at > ?3",
            )
            .and_then(|mut statement| {
                statement
                    .query_row(params![kind, key, now], |row| row.get::<_, String>(0))
                    .optional()
            })
            .map_err(sql_error)
        })
    }

    async fn take_console_record(
        &self,
        kind: ConsoleRecordKind,
        key: &str,
        now: DateTime<Utc>,
    ) -> Result<Option<String>, StoreError> {
        let (kind, key, now) = (kind.storage_name(), key.to_owned(), now.timestamp());
        self.db
            .run(move |db| {
                let taken = db
                    .query_row_cached(
                        "DELETE FROM console_records WHERE kind = ?1 AND key = ?2 RETURNING doc, expires_at",
                        params![kind, key],
                        |row| Ok((row.get::<_, String>(0)?, row.get::<_, i64>(1)?)),
                    )
                    .optional()
                    .map_err(sql_error)?;
                Ok(taken.filter(|(_, expires_at)| *expires_at > now).map(|(doc, _)| doc))
            })
            .await
    }
}
