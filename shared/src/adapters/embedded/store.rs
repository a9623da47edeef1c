//! The embedded implementation of the store ports, with the same semantics as DynamoDB's:
//! versioned conditional writes, name uniqueness, a due index and single-use pending records.

use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use rusqlite::{OptionalExtension, params};

use super::db::{CachedStatements, EmbeddedDb, sql_error};
use crate::adapters::parsed_connections::ParsedConnections;
use crate::adapters::records::{
    USER_OWNER_PREFIX, USER_OWNERS_END, audit_sort_key, corrupt, decode_cursor, due_index_bound,
    due_index_key, encode_cursor, outbox_bound, outbox_sort_key, pending_from_doc, pending_to_doc,
    token_key_from_due_index, user_token_after, webhook_from_doc, webhook_to_doc,
};
use crate::domain::{
    AuditEvent, Connection, ConnectionId, Invitee, PendingAuthorization, StateToken, StoredToken,
    TokenFetch, WebhookSubscription,
};
use crate::ports::{
    AuditLog, ConnectionStore, DueWindow, Expect, NotificationStore, OutboxEntry, Page,
    PageRequest, PendingAuthorizationStore, Retired, StoreError, StoredWebhook, TokenKey,
    TokenStore,
};

#[derive(Clone)]
pub struct EmbeddedStore {
    pub(super) db: EmbeddedDb,
    parsed: Arc<ParsedConnections>,
}

impl EmbeddedStore {
    pub fn new(db: EmbeddedDb) -> Self {
        Self {
            db,
            parsed: Arc::default(),
        }
    }
}

fn connection_from_row(doc: &str, version: i64) -> Result<Connection, StoreError> {
    let mut connection: Connection = serde_json::from_str(doc).map_err(corrupt("connection"))?;
    connection.version = version as u64;
    Ok(connection)
}

fn token_from_row(doc: &str, sealed: Vec<u8>, version: i64) -> Result<StoredToken, StoreError> {
    let mut token: StoredToken = serde_json::from_str(doc).map_err(corrupt("token"))?;
    token.sealed = sealed;
    token.version = version as u64;
    Ok(token)
}

fn connection_doc(connection: &Connection) -> Result<String, StoreError> {
    serde_json::to_string(connection).map_err(corrupt("connection"))
}

fn connection_version(db: &rusqlite::Connection, id: &str) -> Result<Option<i64>, StoreError> {
    db.query_row_cached(
        "SELECT version FROM connections WHERE id = ?1",
        [id],
        |row| row.get(0),
    )
    .optional()
    .map_err(sql_error)
}

fn token_version(
    db: &rusqlite::Connection,
    connection_id: &str,
    owner: &str,
) -> Result<Option<i64>, StoreError> {
    db.query_row_cached(
        "SELECT version FROM tokens WHERE connection_id = ?1 AND owner = ?2",
        params![connection_id, owner],
        |row| row.get(0),
    )
    .optional()
    .map_err(sql_error)
}

/// One page from up to `limit + 1` rows (one more than asked for tells whether another page
/// exists): each row becomes an item and its position, the last position the next cursor.
fn page_of<Row, T, Position: serde::Serialize>(
    rows: Vec<Row>,
    limit: u32,
    mut item: impl FnMut(Row) -> Result<(T, Position), StoreError>,
) -> Result<Page<T>, StoreError> {
    let has_more = rows.len() > limit as usize;
    let mut items = Vec::with_capacity(rows.len());
    let mut last = None;
    for row in rows.into_iter().take(limit as usize) {
        let (value, position) = item(row)?;
        items.push(value);
        last = Some(position);
    }
    let next = last
        .filter(|_| has_more)
        .map(|position| encode_cursor(&position));
    Ok(Page { items, next })
}

/// The conditional-write check: the item exists and is at `expected`.
fn require_version(
    current: Option<i64>,
    expected: i64,
    entity: &'static str,
) -> Result<(), StoreError> {
    match current {
        None => Err(StoreError::NotFound(entity)),
        Some(version) if version != expected => Err(StoreError::Conflict(entity)),
        Some(_) => Ok(()),
    }
}

fn version_param(version: u64) -> Result<i64, StoreError> {
    i64::try_from(version).map_err(|_| StoreError::Conflict("connection"))
}

impl EmbeddedStore {
    /// A connection's tokens in owner order: all of them, or the first `limit`.
    async fn tokens_of(
        &self,
        connection_id: &ConnectionId,
        limit: Option<u32>,
    ) -> Result<Vec<StoredToken>, StoreError> {
        let connection_id = connection_id.to_string();
        // SQLite reads a negative LIMIT as none.
        let limit = limit.map_or(-1, i64::from);
        let rows = self
            .db
            .run(move |db| {
                let mut statement = db
                    .prepare_cached("SELECT doc, sealed, version FROM tokens WHERE connection_id = ?1 ORDER BY owner LIMIT ?2")
                    .map_err(sql_error)?;
                let rows = statement
                    .query_map(params![connection_id, limit], |row| {
                        Ok((row.get::<_, String>(0)?, row.get::<_, Vec<u8>>(1)?, row.get::<_, i64>(2)?))
                    })
                    .map_err(sql_error)?
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(sql_error)?;
                Ok(rows)
            })
            .await?;
        rows.into_iter()
            .map(|(doc, sealed, version)| token_from_row(&doc, sealed, version))
            .collect()
    }
}

#[async_trait]
impl ConnectionStore for EmbeddedStore {
    async fn create_connection(&self, connection: &Connection) -> Result<Connection, StoreError> {
        let mut stored = connection.clone();
        stored.version = 1;
        let doc = connection_doc(&stored)?;
        let (id, name_key, name) = (
            stored.id.to_string(),
            stored.name.uniqueness_key(),
            stored.name.to_string(),
        );
        self.db
            .run(move |db| {
                let id_taken: bool = db
                    .query_row_cached("SELECT 1 FROM connections WHERE id = ?1", [&id], |_| Ok(()))
                    .optional()
                    .map_err(sql_error)?
                    .is_some();
                if id_taken {
                    return Err(StoreError::AlreadyExists("connection"));
                }
                let name_taken = db
                    .query_row_cached(
                        "SELECT 1 FROM connections WHERE name_key = ?1",
                        [&name_key],
                        |_| Ok(()),
                    )
                    .optional()
                    .map_err(sql_error)?
                    .is_some();
                if name_taken {
                    return Err(StoreError::NameTaken(name));
                }
                db.execute_cached(
                    "INSERT INTO connections (id, name_key, doc, version) VALUES (?1, ?2, ?3, 1)",
                    params![id, name_key, doc],
                )
                .map_err(sql_error)?;
                Ok(())
            })
            .await?;
        Ok(stored)
    }

    async fn get_connection(&self, id: &ConnectionId) -> Result<Option<Connection>, StoreError> {
        let row = self.db.read_point(|db| {
            db.prepare_cached("SELECT doc, version FROM connections WHERE id = ?1")
                .and_then(|mut statement| {
                    statement
                        .query_row([id.as_str()], |row| {
                            Ok((row.get::<_, String>(0)?, row.get::<_, i64>(1)?))
                        })
                        .optional()
                })
                .map_err(sql_error)
        })?;
        row.map(|(doc, version)| connection_from_row(&doc, version))
            .transpose()
    }

    async fn list_connections(&self, page: PageRequest) -> Result<Page<Connection>, StoreError> {
        let after: (String, String) = match &page.cursor {
            Some(cursor) => decode_cursor(cursor)?,
            None => (String::new(), String::new()),
        };
        let limit = page.effective_limit();
        let rows = self
            .db
            .run(move |db| {
                let mut statement = db
                    .prepare_cached(
                        "SELECT name_key, id, doc, version FROM connections
                         WHERE (name_key, id) > (?1, ?2) ORDER BY name_key, id LIMIT ?3",
                    )
                    .map_err(sql_error)?;
                let rows = statement
                    .query_map(params![after.0, after.1, limit + 1], |row| {
                        Ok((
                            row.get::<_, String>(0)?,
                            row.get::<_, String>(1)?,
                            row.get::<_, String>(2)?,
                            row.get::<_, i64>(3)?,
                        ))
                    })
                    .map_err(sql_error)?
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(sql_error)?;
                Ok(rows)
            })
            .await?;
        page_of(rows, limit, |(name_key, id, doc, version)| {
            Ok((connection_from_row(&doc, version)?, (name_key, id)))
        })
    }

    async fn update_connection(&self, connection: &Connection) -> Result<Connection, StoreError> {
        let expected = version_param(connection.version)?;
        let mut stored = connection.clone();
        stored.version = connection.version + 1;
        let doc = connection_doc(&stored)?;
        let (id, name_key, name) = (
            stored.id.to_string(),
            stored.name.uniqueness_key(),
            stored.name.to_string(),
        );
        self.db
            .run(move |db| {
                require_version(connection_version(db, &id)?, expected, "connection")?;
                let name_owner: Option<String> = db
                    .query_row_cached("SELECT id FROM connections WHERE name_key = ?1", [&name_key], |row| row.get(0))
                    .optional()
                    .map_err(sql_error)?;
                if name_owner.is_some_and(|owner| owner != id) {
                    return Err(StoreError::NameTaken(name));
                }
                db.execute_cached(
                    "UPDATE connections SET name_key = ?2, doc = ?3, version = version + 1 WHERE id = ?1",
                    params![id, name_key, doc],
                )
                .map_err(sql_error)?;
                Ok(())
            })
            .await?;
        Ok(stored)
    }

    async fn retire_connection(
        &self,
        id: &ConnectionId,
        expected_version: u64,
    ) -> Result<(), StoreError> {
        let expected = version_param(expected_version)?;
        let id = id.to_string();
        let retired_at = Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, true);
        self.db
            .run(move |db| {
                require_version(connection_version(db, &id)?, expected, "connection")?;
                db.execute_cached(
                    "INSERT INTO retired_connections (id, doc, version, retired_at) SELECT id, doc, version, ?2 FROM connections WHERE id = ?1",
                    params![id, retired_at],
                )
                .map_err(sql_error)?;
                db.execute_cached("DELETE FROM connections WHERE id = ?1", [&id])
                    .map_err(sql_error)?;
                Ok(())
            })
            .await
    }

    async fn invited_connections(
        &self,
        invitee: &Invitee,
    ) -> Result<Vec<ConnectionId>, StoreError> {
        let (field, name) = match invitee {
            Invitee::Role(role) => ("$.invited_roles", role.as_str().to_owned()),
            Invitee::Application(app) => ("$.invited_applications", app.as_str().to_owned()),
        };
        let ids = self
            .db
            .run(move |db| {
                let mut statement = db
                    .prepare_cached(
                        "SELECT DISTINCT c.id FROM connections c, json_each(c.doc, ?1) r
                         WHERE r.value = ?2 ORDER BY c.id",
                    )
                    .map_err(sql_error)?;
                let ids = statement
                    .query_map([field, name.as_str()], |row| row.get::<_, String>(0))
                    .map_err(sql_error)?
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(sql_error)?;
                Ok(ids)
            })
            .await?;
        ids.into_iter()
            .map(|id| {
                ConnectionId::parse(&id)
                    .map_err(|_| StoreError::Corrupt("connection", "a malformed id".into()))
            })
            .collect()
    }

    /// The embedded store reads invitations from its connections themselves: nothing to index.
    async fn invitations_indexed(&self) -> Result<bool, StoreError> {
        Ok(true)
    }

    async fn index_invitations(&self) -> Result<u64, StoreError> {
        Ok(0)
    }

    async fn retired_connections(&self, limit: u32) -> Result<Vec<Retired>, StoreError> {
        self.retired_where(
            "SELECT doc, version, retired_at FROM retired_connections ORDER BY retired_at, id LIMIT ?1",
            rusqlite::types::Value::Integer(i64::from(limit)),
        )
        .await
    }

    async fn retired_connection(&self, id: &ConnectionId) -> Result<Option<Retired>, StoreError> {
        Ok(self
            .retired_where(
                "SELECT doc, version, retired_at FROM retired_connections WHERE id = ?1",
                rusqlite::types::Value::Text(id.to_string()),
            )
            .await?
            .pop())
    }

    async fn purge_connection(&self, id: &ConnectionId) -> Result<(), StoreError> {
        let id = id.to_string();
        self.db
            .run(move |db| {
                if connection_version(db, &id)?.is_some() {
                    return Err(StoreError::Conflict("connection"));
                }
                db.execute_cached("DELETE FROM retired_connections WHERE id = ?1", [&id])
                    .map_err(sql_error)?;
                Ok(())
            })
            .await
    }
}

impl EmbeddedStore {
    /// The retired connections `sql` selects (doc, version, retired_at) with `parameter`.
    async fn retired_where(
        &self,
        sql: &'static str,
        parameter: rusqlite::types::Value,
    ) -> Result<Vec<Retired>, StoreError> {
        let rows = self
            .db
            .run(move |db| {
                let mut statement = db.prepare_cached(sql).map_err(sql_error)?;
                let rows = statement
                    .query_map([parameter], |row| {
                        Ok((
                            row.get::<_, String>(0)?,
                            row.get::<_, i64>(1)?,
                            row.get::<_, String>(2)?,
                        ))
                    })
                    .map_err(sql_error)?
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(sql_error)?;
                Ok(rows)
            })
            .await?;
        rows.into_iter()
            .map(|(doc, version, retired_at)| {
                Ok(Retired {
                    connection: connection_from_row(&doc, version)?,
                    retired_at: DateTime::parse_from_rfc3339(&retired_at)
                        .map_err(|_| {
                            StoreError::Corrupt("connection", "retired_at is not a time".into())
                        })?
                        .with_timezone(&Utc),
                })
            })
            .collect()
    }
}

#[async_trait]
impl TokenStore for EmbeddedStore {
    async fn get_token(&self, key: &TokenKey) -> Result<Option<StoredToken>, StoreError> {
        let (connection_id, owner) = (key.connection_id.to_string(), key.owner.storage_key());
        let row = self.db.read_point(|db| {
            db.prepare_cached(
                "SELECT doc, sealed, version FROM tokens WHERE connection_id = ?1 AND owner = ?2",
            )
            .and_then(|mut statement| {
                statement
                    .query_row(params![connection_id, owner], |row| {
                        Ok((
                            row.get::<_, String>(0)?,
                            row.get::<_, Vec<u8>>(1)?,
                            row.get::<_, i64>(2)?,
                        ))
                    })
                    .optional()
            })
            .map_err(sql_error)
        })?;
        row.map(|(doc, sealed, version)| token_from_row(&doc, sealed, version))
            .transpose()
    }

    async fn get_connection_and_token(
        &self,
        key: &TokenKey,
    ) -> Result<(Option<Arc<Connection>>, Option<StoredToken>), StoreError> {
        type Row = (String, i64, Option<String>, Option<Vec<u8>>, Option<i64>);
        let (connection_id, owner) = (key.connection_id.to_string(), key.owner.storage_key());
        let row: Option<Row> = self.db.read_point(|db| {
            db.prepare_cached(
                "SELECT c.doc, c.version, t.doc, t.sealed, t.version FROM connections c
                     LEFT JOIN tokens t ON t.connection_id = c.id AND t.owner = ?2
                     WHERE c.id = ?1",
            )
            .and_then(|mut statement| {
                statement
                    .query_row(params![connection_id, owner], |row| {
                        Ok((
                            row.get(0)?,
                            row.get(1)?,
                            row.get(2)?,
                            row.get(3)?,
                            row.get(4)?,
                        ))
                    })
                    .optional()
            })
            .map_err(sql_error)
        })?;
        let Some((connection_doc, connection_version, token_doc, sealed, token_version)) = row
        else {
            return Ok((None, None));
        };
        let connection =
            self.parsed
                .get_or_parse(&key.connection_id, connection_version as u64, || {
                    connection_from_row(&connection_doc, connection_version)
                })?;
        let token = match (token_doc, sealed, token_version) {
            (Some(doc), Some(sealed), Some(version)) => {
                Some(token_from_row(&doc, sealed, version)?)
            }
            _ => None,
        };
        Ok((Some(connection), token))
    }

    async fn put_token(
        &self,
        token: &StoredToken,
        expect: Expect,
    ) -> Result<StoredToken, StoreError> {
        let mut stored = token.clone();
        stored.version = match expect {
            Expect::Absent => 1,
            Expect::Version(version) => version + 1,
        };
        let doc = serde_json::to_string(&stored).map_err(corrupt("token"))?;
        let key = TokenKey {
            connection_id: stored.connection_id.clone(),
            owner: stored.owner.clone(),
        };
        let due_key = stored.due_filing().map(|due| due_index_key(due, &key));
        let (connection_id, owner, sealed, new_version) = (
            key.connection_id.to_string(),
            key.owner.storage_key(),
            stored.sealed.clone(),
            version_param(stored.version)?,
        );
        self.db
            .run(move |db| {
                let current = token_version(db, &connection_id, &owner)?;
                match (expect, current) {
                    (Expect::Absent, Some(_)) => return Err(StoreError::AlreadyExists("token")),
                    (Expect::Version(_), None) => return Err(StoreError::NotFound("token")),
                    (Expect::Version(expected), Some(version)) if version != version_param(expected)? => {
                        return Err(StoreError::Conflict("token"));
                    }
                    _ => {}
                }
                db.execute_cached(
                    "INSERT INTO tokens (connection_id, owner, doc, sealed, due_key, version)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6)
                     ON CONFLICT (connection_id, owner) DO UPDATE
                     SET doc = excluded.doc, sealed = excluded.sealed, due_key = excluded.due_key, version = excluded.version",
                    params![connection_id, owner, doc, sealed, due_key, new_version],
                )
                .map_err(sql_error)?;
                Ok(())
            })
            .await?;
        Ok(stored)
    }

    async fn delete_token(&self, key: &TokenKey, expected_version: u64) -> Result<(), StoreError> {
        let expected = version_param(expected_version)?;
        let (connection_id, owner) = (key.connection_id.to_string(), key.owner.storage_key());
        self.db
            .run(move |db| {
                require_version(
                    token_version(db, &connection_id, &owner)?,
                    expected,
                    "token",
                )?;
                db.execute_cached(
                    "DELETE FROM tokens WHERE connection_id = ?1 AND owner = ?2",
                    params![connection_id, owner],
                )
                .map_err(sql_error)?;
                Ok(())
            })
            .await
    }

    async fn list_tokens(
        &self,
        connection_id: &ConnectionId,
    ) -> Result<Vec<StoredToken>, StoreError> {
        self.tokens_of(connection_id, None).await
    }

    async fn first_tokens(
        &self,
        connection_id: &ConnectionId,
        limit: u32,
    ) -> Result<Vec<StoredToken>, StoreError> {
        self.tokens_of(connection_id, Some(limit)).await
    }

    async fn user_tokens(
        &self,
        connection_id: &ConnectionId,
        page: PageRequest,
    ) -> Result<Page<StoredToken>, StoreError> {
        let after = match &page.cursor {
            Some(cursor) => user_token_after(cursor)?.storage_key(),
            None => USER_OWNER_PREFIX.to_owned(),
        };
        let limit = page.effective_limit();
        let connection_id = connection_id.to_string();
        let rows = self
            .db
            .run(move |db| {
                let mut statement = db
                    .prepare_cached(
                        "SELECT doc, sealed, version FROM tokens
                         WHERE connection_id = ?1 AND owner > ?2 AND owner < ?3
                         ORDER BY owner LIMIT ?4",
                    )
                    .map_err(sql_error)?;
                let rows = statement
                    .query_map(
                        params![connection_id, after, USER_OWNERS_END, limit + 1],
                        |row| {
                            Ok((
                                row.get::<_, String>(0)?,
                                row.get::<_, Vec<u8>>(1)?,
                                row.get::<_, i64>(2)?,
                            ))
                        },
                    )
                    .map_err(sql_error)?
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(sql_error)?;
                Ok(rows)
            })
            .await?;
        // The position is the owner's key: the cursor `user_token_after` reads.
        page_of(rows, limit, |(doc, sealed, version)| {
            let token = token_from_row(&doc, sealed, version)?;
            let position = token.owner.storage_key();
            Ok((token, position))
        })
    }

    /// One database, one writer: no partition to spread writes over.
    fn due_shards(&self) -> u32 {
        1
    }

    /// Through the partial index `tokens_due` on `due_key`.
    async fn due_tokens_in_shard(
        &self,
        shard: u32,
        window: DueWindow,
        page: PageRequest,
    ) -> Result<Page<TokenKey>, StoreError> {
        if shard != 0 {
            return Ok(Page {
                items: Vec::new(),
                next: None,
            });
        }
        let resume: String = match &page.cursor {
            Some(cursor) => decode_cursor(cursor)?,
            None => String::new(),
        };
        // Past both the cursor and the window's start (a bound is never a key itself).
        let after = window
            .after
            .map(due_index_bound)
            .map_or(resume.clone(), |start| start.max(resume));
        let bound = due_index_bound(window.by);
        let limit = page.effective_limit();
        let keys = self
            .db
            .run(move |db| {
                let mut statement = db
                    .prepare_cached(
                        "SELECT due_key FROM tokens WHERE due_key IS NOT NULL AND due_key > ?1 AND due_key < ?2
                         ORDER BY due_key LIMIT ?3",
                    )
                    .map_err(sql_error)?;
                let keys = statement
                    .query_map(params![after, bound, limit + 1], |row| row.get::<_, String>(0))
                    .map_err(sql_error)?
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(sql_error)?;
                Ok(keys)
            })
            .await?;
        let has_more = keys.len() > limit as usize;
        let page_keys: Vec<String> = keys.into_iter().take(limit as usize).collect();
        let next = if has_more {
            page_keys.last().map(encode_cursor)
        } else {
            None
        };
        let items = page_keys
            .iter()
            .map(|key| token_key_from_due_index(key))
            .collect::<Result<_, _>>()?;
        Ok(Page { items, next })
    }
}

#[async_trait]
impl PendingAuthorizationStore for EmbeddedStore {
    async fn put_pending(
        &self,
        state: &StateToken,
        pending: &PendingAuthorization,
    ) -> Result<(), StoreError> {
        let (state_key, doc, expires_at) = (
            state.lookup_key(),
            pending_to_doc(pending),
            pending.expires_at.timestamp(),
        );
        self.db
            .run(move |db| {
                let inserted = db
                    .execute_cached(
                        "INSERT INTO pending_authorizations (state_key, doc, expires_at) VALUES (?1, ?2, ?3)
                         ON CONFLICT (state_key) DO NOTHING",
                        params![state_key, doc, expires_at],
                    )
                    .map_err(sql_error)?;
                if inserted == 0 {
                    return Err(StoreError::AlreadyExists("pending authorization"));
                }
                // Expired records are garbage, but for those holding a grant, which the
                // refresher takes to revoke it: sweep the rest while we hold the write lock.
                db.execute_cached(
                    &format!("DELETE FROM pending_authorizations WHERE expires_at < ?1 AND doc NOT LIKE '{HOLDS_GRANT}'"),
                    [Utc::now().timestamp() - 60],
                )
                .map_err(sql_error)?;
                Ok(())
            })
            .await
    }

    async fn take_pending(
        &self,
        state: &StateToken,
        now: DateTime<Utc>,
    ) -> Result<Option<PendingAuthorization>, StoreError> {
        let state_key = state.lookup_key();
        let doc = self
            .db
            .run(move |db| {
                db.query_row_cached(
                    "DELETE FROM pending_authorizations WHERE state_key = ?1 RETURNING doc",
                    [state_key],
                    |row| row.get::<_, String>(0),
                )
                .optional()
                .map_err(sql_error)
            })
            .await?;
        match doc {
            Some(doc) => {
                let pending = pending_from_doc(&doc)?;
                Ok((!pending.is_expired_at(now)).then_some(pending))
            }
            None => Ok(None),
        }
    }

    async fn take_expired_unconfirmed(
        &self,
        now: DateTime<Utc>,
        limit: u32,
    ) -> Result<Vec<PendingAuthorization>, StoreError> {
        let (now, limit) = (now.timestamp(), i64::from(limit));
        let docs = self
            .db
            .run(move |db| {
                let mut statement = db
                    .prepare_cached(&format!(
                        "DELETE FROM pending_authorizations WHERE state_key IN (
                             SELECT state_key FROM pending_authorizations
                             WHERE expires_at <= ?1 AND doc LIKE '{HOLDS_GRANT}' LIMIT ?2)
                         RETURNING doc"
                    ))
                    .map_err(sql_error)?;
                let docs = statement
                    .query_map(params![now, limit], |row| row.get::<_, String>(0))
                    .map_err(sql_error)?
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(sql_error)?;
                Ok(docs)
            })
            .await?;
        docs.iter().map(|doc| pending_from_doc(doc)).collect()
    }
}

/// Matches the document of a record that holds a grant: the field is written only then.
const HOLDS_GRANT: &str = "%\"awaiting_confirmation\":%";

#[async_trait]
impl AuditLog for EmbeddedStore {
    async fn append_audit(&self, event: &AuditEvent) -> Result<(), StoreError> {
        let connection_id = event.connection_id.to_string();
        let sort_key = audit_sort_key(event);
        let doc = serde_json::to_string(event).map_err(corrupt("audit event"))?;
        self.db
            .run(move |db| {
                db.execute_cached(
                    "INSERT INTO audit_events (connection_id, sort_key, doc) VALUES (?1, ?2, ?3)",
                    params![connection_id, sort_key, doc],
                )
                .map_err(sql_error)?;
                Ok(())
            })
            .await
    }

    async fn list_audit(
        &self,
        connection_id: &ConnectionId,
        page: PageRequest,
    ) -> Result<Page<AuditEvent>, StoreError> {
        // Newest first: the cursor is the sort key of the last event returned, and the next
        // page holds the events before it.
        let before: Option<String> = page.cursor.as_deref().map(decode_cursor).transpose()?;
        let connection_id = connection_id.to_string();
        let limit = page.effective_limit();
        let rows = self
            .db
            .run(move |db| {
                let mut statement = db
                    .prepare_cached(
                        "SELECT sort_key, doc FROM audit_events
                         WHERE connection_id = ?1 AND (?2 IS NULL OR sort_key < ?2)
                         ORDER BY sort_key DESC LIMIT ?3",
                    )
                    .map_err(sql_error)?;
                let rows = statement
                    .query_map(params![connection_id, before, limit + 1], |row| {
                        Ok((row.get::<_, String>(0)?, row.get::<_, String>(1)?))
                    })
                    .map_err(sql_error)?
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(sql_error)?;
                Ok(rows)
            })
            .await?;
        page_of(rows, limit, |(sort_key, doc)| {
            let event = serde_json::from_str(&doc).map_err(corrupt("audit event"))?;
            Ok((event, sort_key))
        })
    }

    async fn record_fetch(
        &self,
        fetch: &TokenFetch,
        unless_since: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let connection_id = fetch.connection_id.to_string();
        let caller_key = format!("{}#{}", fetch.caller_kind.as_str(), fetch.caller);
        let doc = serde_json::to_string(fetch).map_err(corrupt("fetch record"))?;
        let last_at_ms = fetch.last_at.timestamp_millis();
        let since_ms = unless_since.timestamp_millis();
        self.db
            .run(move |db| {
                let changed = db
                    .execute_cached(
                        "INSERT INTO token_fetches (connection_id, caller_key, doc, last_at_ms)
                         VALUES (?1, ?2, ?3, ?4)
                         ON CONFLICT (connection_id, caller_key) DO UPDATE
                         SET doc = excluded.doc, last_at_ms = excluded.last_at_ms
                         WHERE token_fetches.last_at_ms < ?5",
                        params![connection_id, caller_key, doc, last_at_ms, since_ms],
                    )
                    .map_err(sql_error)?;
                Ok(changed > 0)
            })
            .await
    }

    async fn list_fetches(
        &self,
        connection_id: &ConnectionId,
        limit: usize,
    ) -> Result<Vec<TokenFetch>, StoreError> {
        let connection_id = connection_id.to_string();
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let docs = self
            .db
            .run(move |db| {
                let mut statement = db
                    .prepare_cached(
                        "SELECT doc FROM token_fetches WHERE connection_id = ?1
                         ORDER BY last_at_ms DESC LIMIT ?2",
                    )
                    .map_err(sql_error)?;
                let docs = statement
                    .query_map(params![connection_id, limit], |row| row.get::<_, String>(0))
                    .map_err(sql_error)?
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(sql_error)?;
                Ok(docs)
            })
            .await?;
        docs.iter()
            .map(|doc| serde_json::from_str(doc).map_err(corrupt("fetch record")))
            .collect()
    }
}

#[async_trait]
impl NotificationStore for EmbeddedStore {
    async fn put_webhook(
        &self,
        webhook: &StoredWebhook,
        expect: Expect,
    ) -> Result<StoredWebhook, StoreError> {
        let mut stored = webhook.clone();
        stored.subscription.version = match expect {
            Expect::Absent => 1,
            Expect::Version(version) => version + 1,
        };
        let doc = webhook_to_doc(&stored)?;
        let id = stored.subscription.id.clone();
        let new_version = version_param(stored.subscription.version)?;
        self.db
            .run(move |db| {
                let current: Option<i64> = db
                    .query_row("SELECT version FROM webhooks WHERE id = ?1", [&id], |row| {
                        row.get(0)
                    })
                    .optional()
                    .map_err(sql_error)?;
                match (expect, current) {
                    (Expect::Absent, Some(_)) => return Err(StoreError::AlreadyExists("webhook")),
                    (Expect::Version(_), None) => return Err(StoreError::NotFound("webhook")),
                    (Expect::Version(expected), Some(version))
                        if version != version_param(expected)? =>
                    {
                        return Err(StoreError::Conflict("webhook"));
                    }
                    _ => {}
                }
                db.execute(
                    "INSERT INTO webhooks (id, doc, version) VALUES (?1, ?2, ?3)
                     ON CONFLICT (id) DO UPDATE SET doc = excluded.doc, version = excluded.version",
                    params![id, doc, new_version],
                )
                .map_err(sql_error)?;
                Ok(())
            })
            .await?;
        Ok(stored)
    }

    async fn get_webhook(&self, id: &str) -> Result<Option<StoredWebhook>, StoreError> {
        let id = id.to_owned();
        let doc: Option<String> = self
            .db
            .run(move |db| {
                db.query_row("SELECT doc FROM webhooks WHERE id = ?1", [&id], |row| {
                    row.get(0)
                })
                .optional()
                .map_err(sql_error)
            })
            .await?;
        doc.as_deref().map(webhook_from_doc).transpose()
    }

    async fn list_webhooks(&self) -> Result<Vec<WebhookSubscription>, StoreError> {
        let docs: Vec<String> = self
            .db
            .run(move |db| {
                let mut statement = db
                    .prepare_cached("SELECT doc FROM webhooks ORDER BY id")
                    .map_err(sql_error)?;
                let docs = statement
                    .query_map([], |row| row.get::<_, String>(0))
                    .map_err(sql_error)?
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(sql_error)?;
                Ok(docs)
            })
            .await?;
        docs.iter()
            .map(|doc| webhook_from_doc(doc).map(|w| w.subscription))
            .collect()
    }

    async fn delete_webhook(&self, id: &str, version: u64) -> Result<(), StoreError> {
        let id = id.to_owned();
        let version = version_param(version)?;
        self.db
            .run(move |db| {
                let current: Option<i64> = db
                    .query_row("SELECT version FROM webhooks WHERE id = ?1", [&id], |row| {
                        row.get(0)
                    })
                    .optional()
                    .map_err(sql_error)?;
                require_version(current, version, "webhook")?;
                db.execute("DELETE FROM webhooks WHERE id = ?1", [&id])
                    .map_err(sql_error)?;
                Ok(())
            })
            .await
    }

    async fn enqueue(&self, entries: &[OutboxEntry]) -> Result<(), StoreError> {
        let rows = entries
            .iter()
            .map(|entry| {
                let doc = serde_json::to_string(entry).map_err(corrupt("outbox entry"))?;
                Ok((outbox_sort_key(entry), doc))
            })
            .collect::<Result<Vec<_>, StoreError>>()?;
        self.db
            .run(move |db| {
                // The writer runs each job inside its own transaction already.
                for (sort_key, doc) in &rows {
                    db.execute_cached(
                        "INSERT INTO outbox (sort_key, doc) VALUES (?1, ?2)
                         ON CONFLICT (sort_key) DO UPDATE SET doc = excluded.doc",
                        params![sort_key, doc],
                    )
                    .map_err(sql_error)?;
                }
                Ok(())
            })
            .await
    }

    async fn due_outbox(
        &self,
        now: DateTime<Utc>,
        limit: usize,
    ) -> Result<Vec<OutboxEntry>, StoreError> {
        let bound = outbox_bound(now);
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let docs: Vec<String> = self
            .db
            .run(move |db| {
                let mut statement = db
                    .prepare_cached(
                        "SELECT doc FROM outbox WHERE sort_key < ?1 ORDER BY sort_key LIMIT ?2",
                    )
                    .map_err(sql_error)?;
                let docs = statement
                    .query_map(params![bound, limit], |row| row.get::<_, String>(0))
                    .map_err(sql_error)?
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(sql_error)?;
                Ok(docs)
            })
            .await?;
        docs.iter()
            .map(|doc| serde_json::from_str(doc).map_err(corrupt("outbox entry")))
            .collect()
    }

    async fn remove_outbox(&self, entry: &OutboxEntry) -> Result<(), StoreError> {
        let sort_key = outbox_sort_key(entry);
        self.db
            .run(move |db| {
                db.execute("DELETE FROM outbox WHERE sort_key = ?1", [&sort_key])
                    .map_err(sql_error)?;
                Ok(())
            })
            .await
    }
}
