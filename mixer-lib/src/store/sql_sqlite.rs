//! The mixer's state in a SQLite file: the embedded default.

use std::path::{Path, PathBuf};
use std::time::Duration;

use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};

use super::StoreError;
use super::sql::{backend, sql_store};

/// How long a statement waits for another connection's write to end (another handle or
/// another process on the same file) before it fails.
const BUSY_TIMEOUT: Duration = Duration::from_secs(10);
/// Reading connections per handle. SQLite runs one writer at a time and WAL lets readers go
/// on beside it, so a handle has one writing connection and these for reads: writers pooled
/// together would only queue on the file's write lock, each waking the others in turn.
const READERS: u32 = 4;

/// The mixer's state in a SQLite file: the embedded default (the mixer chooses the path,
/// `./data/mixer.db` unless told otherwise).
///
/// [`open`](SqliteStore::open) creates the file and its directory, and brings the schema up to
/// date with the versioned migrations embedded in the crate (`migrations/sqlite`). The file
/// is in WAL mode (readers do not wait for the writer), with `synchronous = FULL` (a
/// committed lease survives a power cut, so an id is never handed out twice across one),
/// foreign keys on, and a busy timeout, so that several handles (or processes) can share
/// it.
///
/// ```
/// use mixer_lib::store::{SqliteStore, Store};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// # let dir = std::env::temp_dir().join(format!("mixer-doc-{}", std::process::id()));
/// let store = SqliteStore::open(dir.join("data/mixer.db")).await?;
/// store.set_setting("mixer.id", "m-1").await?;
/// store.close().await;
/// let again = SqliteStore::open(dir.join("data/mixer.db")).await?;
/// assert_eq!(again.setting("mixer.id").await?.as_deref(), Some("m-1"));
/// # again.close().await;
/// # std::fs::remove_dir_all(&dir)?;
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct SqliteStore {
    /// The one writing connection.
    pool: SqlitePool,
    /// The reading connections.
    read: SqlitePool,
    path: PathBuf,
}

impl std::fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteStore")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

impl SqliteStore {
    /// Opens (creating it, and its parent directory, when missing) the database at `path`
    /// and runs the migrations it has not had yet.
    ///
    /// # Errors
    ///
    /// [`StoreError::Backend`] when the directory or the file cannot be created or opened,
    /// when the file is not a SQLite database, or when a migration fails or the file was
    /// migrated by a newer version of this crate.
    pub async fn open(path: impl AsRef<Path>) -> Result<SqliteStore, StoreError> {
        let path = path.as_ref().to_owned();
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)
                .map_err(|e| backend(format!("create {}: {e}", dir.display())))?;
        }
        let options = SqliteConnectOptions::new()
            .filename(&path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .foreign_keys(true)
            .busy_timeout(BUSY_TIMEOUT);
        let pool = SqlitePoolOptions::new()
            .max_connections(1)
            .connect_with(options.clone())
            .await
            .map_err(backend)?;
        sqlx::migrate!("migrations/sqlite")
            .run(&pool)
            .await
            .map_err(backend)?;
        // Opened after the writer made the file and its WAL: a read-only connection cannot.
        let read = SqlitePoolOptions::new()
            .max_connections(READERS)
            .connect_with(options.read_only(true))
            .await
            .map_err(backend)?;
        tracing::debug!(path = %path.display(), "Opened the SQLite store.");
        Ok(SqliteStore { pool, read, path })
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Closes every connection of this handle (and its clones), waiting for those in use to
    /// be returned; later calls fail with [`StoreError::Backend`].
    pub async fn close(&self) {
        self.read.close().await;
        self.pool.close().await;
    }
}

sql_store!(
    SqliteStore,
    sqlx::Sqlite,
    insert_rack = "INSERT INTO racks (id, name, machine_id, labels, secret_hash, status, \
                   first_seen, last_seen, ip, version, applied_hash, health, stats) \
                   VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)",
    update_rack = "UPDATE racks SET name = $2, machine_id = $3, labels = $4, \
                   secret_hash = $5, status = $6, first_seen = $7, last_seen = $8, ip = $9, \
                   version = $10, applied_hash = $11, health = $12, stats = $13 WHERE id = $1",
    rack_columns = "id, name, machine_id, labels, secret_hash, status, first_seen, \
                    last_seen, ip, version, applied_hash, health, stats",
    list_columns = "id, name, machine_id, labels, '' AS secret_hash, status, first_seen, \
                    last_seen, ip, version, applied_hash, health, 'null' AS stats",
    put_seen = "UPDATE racks SET last_seen = MAX(last_seen, $2), applied_hash = $3, \
                health = $4, stats = $5 WHERE id = $1",
);
