//! The database file: created owner-only, opened in WAL mode, migrated on open, and used from
//! async code through the blocking pool.

use std::fs::OpenOptions;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rusqlite::Connection;

use crate::ports::StoreError;

const SCHEMA_VERSION: i64 = 2;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS connections (
    id TEXT PRIMARY KEY,
    name_key TEXT NOT NULL UNIQUE,
    doc TEXT NOT NULL,
    version INTEGER NOT NULL
) STRICT;
CREATE TABLE IF NOT EXISTS tokens (
    connection_id TEXT NOT NULL,
    owner TEXT NOT NULL,
    doc TEXT NOT NULL,
    sealed BLOB NOT NULL,
    due_key TEXT,
    version INTEGER NOT NULL,
    PRIMARY KEY (connection_id, owner)
) STRICT;
CREATE INDEX IF NOT EXISTS tokens_due ON tokens (due_key) WHERE due_key IS NOT NULL;
CREATE TABLE IF NOT EXISTS pending_authorizations (
    state_key TEXT PRIMARY KEY,
    doc TEXT NOT NULL,
    expires_at INTEGER NOT NULL
) STRICT;
CREATE TABLE IF NOT EXISTS audit_events (
    connection_id TEXT NOT NULL,
    sort_key TEXT NOT NULL,
    doc TEXT NOT NULL,
    PRIMARY KEY (connection_id, sort_key)
) STRICT;
CREATE TABLE IF NOT EXISTS secrets (
    name TEXT PRIMARY KEY,
    sealed BLOB NOT NULL
) STRICT;
";

/// A handle on the database file, cheap to clone. Several processes may open the same file:
/// SQLite's locking serialises writers, and every read-modify-write runs in an IMMEDIATE
/// transaction so the version checks hold across processes.
#[derive(Clone)]
pub struct EmbeddedDb {
    connection: Arc<Mutex<Connection>>,
    path: PathBuf,
}

impl EmbeddedDb {
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        let unavailable = |what: &str, e: &dyn std::fmt::Display| {
            StoreError::Unavailable(format!("{what} {}: {e}", path.display()))
        };
        super::create_private_parent(path)
            .map_err(|e| unavailable("cannot create the folder of", &e))?;
        // Create the file owner-only before SQLite opens it; its -wal and -shm files take the
        // database file's permissions.
        OpenOptions::new()
            .create(true)
            .append(true)
            .mode(0o600)
            .open(path)
            .map_err(|e| unavailable("cannot create", &e))?;
        let connection = Connection::open(path).map_err(|e| unavailable("cannot open", &e))?;
        connection
            .busy_timeout(Duration::from_secs(10))
            .map_err(|e| unavailable("cannot configure", &e))?;
        connection
            .pragma_update(None, "journal_mode", "WAL")
            .and_then(|_| connection.pragma_update(None, "synchronous", "NORMAL"))
            .and_then(|_| connection.execute_batch(SCHEMA))
            .and_then(|_| connection.pragma_update(None, "user_version", SCHEMA_VERSION))
            .map_err(|e| unavailable("cannot prepare", &e))?;
        Ok(Self {
            connection: Arc::new(Mutex::new(connection)),
            path: path.to_owned(),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Runs `work` on the blocking pool with the connection; SQLite calls block.
    pub(crate) async fn run<T, F>(&self, work: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> Result<T, StoreError> + Send + 'static,
    {
        let connection = self.connection.clone();
        tokio::task::spawn_blocking(move || {
            let mut guard = connection
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            work(&mut guard)
        })
        .await
        .map_err(|e| StoreError::Unavailable(format!("database task failed: {e}")))?
    }
}

/// SQLite errors carry statement text at most, never bound values.
pub(crate) fn sql_error(e: rusqlite::Error) -> StoreError {
    StoreError::Unavailable(format!("database error: {e}"))
}
