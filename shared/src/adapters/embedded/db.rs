//! The database file: created owner-only, opened in WAL mode, migrated on open. Point reads run
//! in place on a pool of read-only connections; everything else goes to one writer thread that
//! commits in groups.

use std::fs::OpenOptions;
use std::os::unix::fs::OpenOptionsExt;
use std::panic::AssertUnwindSafe;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use rusqlite::Connection;

use crate::ports::StoreError;

const SCHEMA_VERSION: i64 = 3;

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
-- Connections out of service whose tokens are still being revoked (see retire_connection).
CREATE TABLE IF NOT EXISTS retired_connections (
    id TEXT PRIMARY KEY,
    doc TEXT NOT NULL,
    version INTEGER NOT NULL,
    retired_at TEXT NOT NULL
) STRICT;
CREATE TABLE IF NOT EXISTS settings (
    name TEXT PRIMARY KEY,
    doc TEXT NOT NULL,
    updated_at TEXT NOT NULL
) STRICT;
CREATE TABLE IF NOT EXISTS secrets (
    name TEXT PRIMARY KEY,
    sealed BLOB NOT NULL
) STRICT;
-- Per connection and caller, the last token fetch (see AuditLog::record_fetch).
CREATE TABLE IF NOT EXISTS token_fetches (
    connection_id TEXT NOT NULL,
    caller_key TEXT NOT NULL,
    doc TEXT NOT NULL,
    last_at_ms INTEGER NOT NULL,
    PRIMARY KEY (connection_id, caller_key)
) STRICT;
-- Webhook subscriptions, with their sealed secrets in the document.
CREATE TABLE IF NOT EXISTS webhooks (
    id TEXT PRIMARY KEY,
    doc TEXT NOT NULL,
    version INTEGER NOT NULL
) STRICT;
-- Notifications on their way out (see NotificationStore), by when they are due.
CREATE TABLE IF NOT EXISTS outbox (
    sort_key TEXT PRIMARY KEY,
    doc TEXT NOT NULL
) STRICT;
-- The console's sessions, sign-ins in progress and used sign-in tickets (see ConsoleStore).
CREATE TABLE IF NOT EXISTS console_records (
    kind TEXT NOT NULL,
    key TEXT NOT NULL,
    doc TEXT NOT NULL,
    expires_at INTEGER NOT NULL,
    PRIMARY KEY (kind, key)
) STRICT;
";

/// How many connections serve point reads. WAL lets readers run beside the writer and each
/// other, so token reads do not queue behind writes.
const READERS: usize = 4;

/// The most jobs one commit takes: bounds how long the write lock is held.
const MAX_GROUP: usize = 64;

/// A handle on the database file, cheap to clone. Several processes may open the same file:
/// SQLite's locking serialises writers, and every job runs inside an IMMEDIATE transaction so
/// the version checks hold across processes.
#[derive(Clone)]
pub struct EmbeddedDb {
    writer: mpsc::Sender<Job>,
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
            // FULL: a committed write (a rotated refresh token among them) survives power loss;
            // NORMAL in WAL mode may lose the last commits.
            .and_then(|_| connection.pragma_update(None, "synchronous", "FULL"))
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
        let (writer, jobs) = mpsc::channel();
        std::thread::Builder::new()
            .name("keyport-db-writer".into())
            .spawn(move || write_in_groups(connection, jobs))
            .map_err(|e| unavailable("cannot start the writer for", &e))?;
        Ok(Self {
            writer,
            readers: readers.into(),
            next_reader: Arc::new(AtomicUsize::new(0)),
            path: path.to_owned(),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Runs `work` on the writer thread, inside a transaction shared with whatever other jobs
    /// are waiting, and answers once that transaction has committed. Each job runs in its own
    /// savepoint, so it is atomic: one that fails leaves no trace, and its read-modify-write
    /// holds (the transaction is IMMEDIATE: no other process writes in between). One commit per
    /// group instead of one per write: the commits were the refresher's largest cost. `work`
    /// must not open a transaction.
    pub(crate) async fn run<T, F>(&self, work: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> Result<T, StoreError> + Send + 'static,
    {
        let (job, answered) = job(work);
        self.writer
            .send(job)
            .map_err(|_| StoreError::Unavailable("the database writer stopped".into()))?;
        answered
            .await
            .map_err(|_| StoreError::Unavailable("the database writer stopped".into()))?
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

/// One write job: given the connection (or why there is none), it does its work and says whether
/// it succeeded and how to deliver its answer once the group's commit is known.
type Job = Box<dyn FnOnce(Result<&mut Connection, StoreError>) -> (bool, Delivery) + Send>;
type Delivery = Box<dyn FnOnce(Result<(), StoreError>) + Send>;

/// `work` as a job, and where its answer will arrive.
fn job<T, F>(work: F) -> (Job, tokio::sync::oneshot::Receiver<Result<T, StoreError>>)
where
    T: Send + 'static,
    F: FnOnce(&mut Connection) -> Result<T, StoreError> + Send + 'static,
{
    let (answer, answered) = tokio::sync::oneshot::channel();
    let job: Job = Box::new(move |connection| {
        let result = match connection {
            Ok(connection) => std::panic::catch_unwind(AssertUnwindSafe(|| work(connection)))
                .unwrap_or_else(|_| Err(StoreError::Unavailable("a database job panicked".into()))),
            Err(error) => Err(error),
        };
        let succeeded = result.is_ok();
        let deliver: Delivery = Box::new(move |committed| {
            let _ = answer.send(match (result, committed) {
                (Ok(_), Err(error)) => Err(error),
                (result, _) => result,
            });
        });
        (succeeded, deliver)
    });
    (job, answered)
}

/// The writer thread: takes the jobs waiting, runs them in one IMMEDIATE transaction, each in
/// a savepoint (rolled back if the job fails), commits, then answers every job. Ends when
/// every handle on the database is gone.
fn write_in_groups(mut connection: Connection, jobs: mpsc::Receiver<Job>) {
    while let Ok(first) = jobs.recv() {
        let mut group = vec![first];
        while group.len() < MAX_GROUP {
            match jobs.try_recv() {
                Ok(job) => group.push(job),
                Err(_) => break,
            }
        }
        // Prepared once each: parsing these statements anew cost a tenth of the writer's time.
        if let Err(error) = connection.execute_cached("BEGIN IMMEDIATE", []) {
            let error = sql_error(error);
            for job in group {
                let (_, deliver) = job(Err(error.clone()));
                deliver(Err(error.clone()));
            }
            continue;
        }
        let mut deliveries = Vec::with_capacity(group.len());
        for job in group {
            let savepoint = connection.execute_cached("SAVEPOINT job", []);
            let (succeeded, deliver) = match savepoint {
                Ok(_) => job(Ok(&mut connection)),
                Err(error) => job(Err(sql_error(error))),
            };
            let closed = if succeeded {
                connection.execute_cached("RELEASE job", [])
            } else {
                connection
                    .execute_cached("ROLLBACK TO job", [])
                    .and_then(|_| connection.execute_cached("RELEASE job", []))
            };
            deliveries.push(deliver);
            if let Err(error) = closed {
                // The transaction is in an unknown state: give it up, and every job with it.
                let _ = connection.execute_batch("ROLLBACK");
                let error = sql_error(error);
                for deliver in deliveries.drain(..) {
                    deliver(Err(error.clone()));
                }
                break;
            }
        }
        if deliveries.is_empty() {
            continue;
        }
        let committed = connection
            .execute_cached("COMMIT", [])
            .map(|_| ())
            .map_err(sql_error);
        if committed.is_err() {
            let _ = connection.execute_batch("ROLLBACK");
        }
        for deliver in deliveries {
            deliver(committed.clone());
        }
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

#[cfg(test)]
mod tests {
    use super::*;

    fn insert(
        value: i64,
        then_fail: bool,
    ) -> impl FnOnce(&mut Connection) -> Result<i64, StoreError> {
        move |db| {
            db.execute_cached("INSERT INTO t (v) VALUES (?1)", [value])
                .map_err(sql_error)?;
            if then_fail {
                return Err(StoreError::Conflict("row"));
            }
            Ok(value)
        }
    }

    #[test]
    fn a_group_commits_together_and_a_failed_job_leaves_no_trace() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("group.db");
        let setup = Connection::open(&path).unwrap();
        setup
            .execute_batch("CREATE TABLE t (v INTEGER NOT NULL)")
            .unwrap();
        let (send, jobs) = mpsc::channel();
        // All three are waiting before the writer starts, so they share one transaction.
        let mut answers = Vec::new();
        for (value, fails) in [(1, false), (2, true), (3, false)] {
            let (job, answered) = job(insert(value, fails));
            send.send(job).unwrap();
            answers.push(answered);
        }
        let (job, panicked) =
            job(|_db: &mut Connection| -> Result<(), StoreError> { panic!("a bug in a job") });
        send.send(job).unwrap();
        drop(send);
        write_in_groups(Connection::open(&path).unwrap(), jobs);

        let answers: Vec<_> = answers
            .into_iter()
            .map(|mut a| a.try_recv().expect("answered"))
            .collect();
        assert!(matches!(answers[0], Ok(1)));
        assert!(matches!(answers[1], Err(StoreError::Conflict("row"))));
        assert!(matches!(answers[2], Ok(3)));
        assert!(matches!(
            { panicked }.try_recv(),
            Ok(Err(StoreError::Unavailable(_)))
        ));
        let mut rows = setup.prepare("SELECT v FROM t ORDER BY v").unwrap();
        let stored: Vec<i64> = rows
            .query_map([], |row| row.get(0))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(stored, vec![1, 3], "the failed job's row was rolled back");
    }

    #[tokio::test]
    async fn jobs_see_the_writes_committed_before_them() {
        let dir = tempfile::tempdir().unwrap();
        let db = EmbeddedDb::open(&dir.path().join("keyport.db")).unwrap();
        db.run(|db| {
            db.execute_cached("INSERT INTO secrets (name, sealed) VALUES ('a', x'00')", [])
                .map_err(sql_error)
        })
        .await
        .unwrap();
        let count = db
            .run(|db| {
                db.query_row_cached("SELECT count(*) FROM secrets", [], |row| {
                    row.get::<_, i64>(0)
                })
                .map_err(sql_error)
            })
            .await
            .unwrap();
        assert_eq!(count, 1);
    }

    /// Writes survive power loss: the writer commits with synchronous=FULL (2), not NORMAL.
    #[tokio::test]
    async fn the_writer_syncs_every_commit() {
        let dir = tempfile::tempdir().unwrap();
        let db = EmbeddedDb::open(&dir.path().join("keyport.db")).unwrap();
        let synchronous = db
            .run(|db| {
                db.query_row_cached("PRAGMA synchronous", [], |row| row.get::<_, i64>(0))
                    .map_err(sql_error)
            })
            .await
            .unwrap();
        assert_eq!(synchronous, 2);
    }
}
