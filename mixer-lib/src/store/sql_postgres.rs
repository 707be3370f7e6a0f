//! The mixer's state in PostgreSQL: one state shared by several mixers.

use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};

use super::StoreError;
use super::sql::{backend, sql_store};

/// Connections per handle.
const MAX_CONNECTIONS: u32 = 10;

/// The mixer's state in a PostgreSQL database, which several mixers may share: what must
/// hold across them (one rack per name, one holder per machine id, immutable scenario
/// versions) is a constraint of the schema, not a check of the caller.
///
/// [`connect`](PostgresStore::connect) brings the schema up to date with the versioned
/// migrations embedded in the crate (`migrations/postgres`); mixers that start at once
/// migrate one after the other (sqlx takes an advisory lock). The connection is plain TCP or
/// a Unix socket: this build has no TLS, so `sslmode=require` is refused.
#[derive(Clone)]
pub struct PostgresStore {
    pool: PgPool,
    /// The same pool: the shared statements read from `read` and write to `pool`.
    read: PgPool,
    /// Host, port and database, for `Debug` (never the user or the password).
    target: String,
}

impl std::fmt::Debug for PostgresStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresStore")
            .field("target", &self.target)
            .finish_non_exhaustive()
    }
}

impl PostgresStore {
    /// Connects to the database at `url` (`postgres://user:password@host:port/database`,
    /// with libpq's query parameters) and runs the migrations it has not had yet.
    ///
    /// # Errors
    ///
    /// [`StoreError::Backend`] when the URL does not parse, the server cannot be reached or
    /// refuses the login, or a migration fails or the database was migrated by a newer
    /// version of this crate.
    pub async fn connect(url: &str) -> Result<PostgresStore, StoreError> {
        let options: PgConnectOptions = url.parse().map_err(backend)?;
        let target = format!(
            "{}:{}/{}",
            options.get_host(),
            options.get_port(),
            options.get_database().unwrap_or_default()
        );
        let pool = PgPoolOptions::new()
            .max_connections(MAX_CONNECTIONS)
            .connect_with(options)
            .await
            .map_err(backend)?;
        sqlx::migrate!("migrations/postgres")
            .run(&pool)
            .await
            .map_err(backend)?;
        tracing::debug!(database = %target, "Connected to the PostgreSQL store.");
        Ok(PostgresStore {
            read: pool.clone(),
            pool,
            target,
        })
    }

    /// Closes every connection of this handle (and its clones), waiting for those in use to
    /// be returned; later calls fail with [`StoreError::Backend`].
    pub async fn close(&self) {
        self.pool.close().await;
    }
}

sql_store!(
    PostgresStore,
    sqlx::Postgres,
    insert_rack = "INSERT INTO racks (id, name, machine_id, labels, secret_hash, status, \
                   first_seen, last_seen, ip, version, applied_hash, health, stats) \
                   VALUES ($1, $2, $3, $4::jsonb, $5, $6, $7, $8, $9, $10, $11, $12::jsonb, \
                   $13::jsonb)",
    update_rack = "UPDATE racks SET name = $2, machine_id = $3, labels = $4::jsonb, \
                   secret_hash = $5, status = $6, first_seen = $7, last_seen = $8, ip = $9, \
                   version = $10, applied_hash = $11, health = $12::jsonb, \
                   stats = $13::jsonb WHERE id = $1",
    rack_columns = "id, name, machine_id, labels::text AS labels, secret_hash, status, \
                    first_seen, last_seen, ip, version, applied_hash, health::text AS health, \
                    stats::text AS stats",
    list_columns = "id, name, machine_id, labels::text AS labels, '' AS secret_hash, \
                    status, first_seen, last_seen, ip, version, applied_hash, \
                    health::text AS health, 'null' AS stats",
    put_seen = "UPDATE racks SET last_seen = GREATEST(last_seen, $2), applied_hash = $3, \
                health = $4::jsonb, stats = $5::jsonb WHERE id = $1",
);
