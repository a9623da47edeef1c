//! The database file: created owner-only, opened in WAL mode, migrated on open, and used from
//! async code through the blocking pool.

use std::fs::OpenOptions;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
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

/// How many connections serve point reads. WAL lets readers run beside the writer and each
/// other, so token reads do not queue behind writes.
const READERS: usize = 4;

/// A handle on the database file, cheap to clone. Several processes may open the same file:
/// SQLite's locking serialises writers, and every read-modify-write runs in an IMMEDIATE
/// transaction so the version checks hold across processes.
#[derive(Clone)]
pub struct EmbeddedDb {
    connection: Arc<Mutex<Connection>>,
    readers: Arc<[Mutex<Connection>]>,
    next_reader: Arc<AtomicUsize>,
    path: PathBuf,
}

fn lock(connection: &Mutex<Connection>) -> MutexGuard<'_, Connection> {
    connection
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
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
        let open = || {
            let connection = Connection::open(path).map_err(|e| unavailable("cannot open", &e))?;
            connection
                .busy_timeout(Duration::from_secs(10))
                .map_err(|e| unavailable("cannot configure", &e))?;
            // Room for every statement Keyport runs (the default is 16).
            connection.set_prepared_statement_cache_capacity(64);
            Ok::<_, StoreError>(connection)
        };
        let connection = open()?;
        connection
            .pragma_update(None, "journal_mode", "WAL")
            .and_then(|_| connection.pragma_update(None, "synchronous", "NORMAL"))
            .and_then(|_| connection.execute_batch(SCHEMA))
            .and_then(|_| connection.pragma_update(None, "user_version", SCHEMA_VERSION))
            .map_err(|e| unavailable("cannot prepare", &e))?;
        let readers = (0..READERS)
            .map(|_| {
                let reader = open()?;
                reader
                    .pragma_update(None, "query_only", true)
                    .map_err(|e| unavailable("cannot configure", &e))?;
                Ok(Mutex::new(reader))
            })
            .collect::<Result<Vec<_>, StoreError>>()?;
        Ok(Self {
            connection: Arc::new(Mutex::new(connection)),
            readers: readers.into(),
            next_reader: Arc::new(AtomicUsize::new(0)),
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
        tokio::task::spawn_blocking(move || work(&mut lock(&connection)))
            .await
            .map_err(|e| StoreError::Unavailable(format!("database task failed: {e}")))?
    }

    /// Runs a point read in place on a reader connection. A WAL read of one row by its key
    /// takes microseconds and never waits for a writer, far less than a hop to the blocking
    /// pool; anything that may wait or scan goes through [`Self::run`].
    pub(crate) fn read_point<T>(
        &self,
        work: impl FnOnce(&Connection) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let start = self.next_reader.fetch_add(1, Ordering::Relaxed);
        let free = (0..self.readers.len()).find_map(|offset| {
            self.readers[(start + offset) % self.readers.len()]
                .try_lock()
                .ok()
        });
        let guard = match free {
            Some(guard) => guard,
            None => lock(&self.readers[start % self.readers.len()]),
        };
        work(&guard)
    }
}

/// Statements run through the connection's cache of prepared statements: parsing the SQL of
/// every write again was a tenth of the refresher's CPU.
pub(crate) trait CachedStatements {
    fn execute_cached(&self, sql: &str, params: impl rusqlite::Params) -> rusqlite::Result<usize>;

    fn query_row_cached<T>(
        &self,
        sql: &str,
        params: impl rusqlite::Params,
        row: impl FnOnce(&rusqlite::Row<'_>) -> rusqlite::Result<T>,
    ) -> rusqlite::Result<T>;
}

impl CachedStatements for Connection {
    fn execute_cached(&self, sql: &str, params: impl rusqlite::Params) -> rusqlite::Result<usize> {
        self.prepare_cached(sql)?.execute(params)
    }

    fn query_row_cached<T>(
        &self,
        sql: &str,
        params: impl rusqlite::Params,
        row: impl FnOnce(&rusqlite::Row<'_>) -> rusqlite::Result<T>,
    ) -> rusqlite::Result<T> {
        self.prepare_cached(sql)?.query_row(params, row)
    }
}

/// SQLite errors carry statement text at most, never bound values.
pub(crate) fn sql_error(e: rusqlite::Error) -> StoreError {
    StoreError::Unavailable(format!("database error: {e}"))
}
