//! What the SQL stores share: the statements both dialects read alike, the conversions
//! between records and columns, and [`sql_store!`], which writes the [`Store`](super::Store)
//! implementation once for each backend's pool.
//!
//! Every statement is checked when it runs (`sqlx::query`), never at build time, so building
//! needs no database. Placeholders are `$1`, `$2`, … in both dialects (SQLite reads `$N` as the
//! N-th argument too).
//!
//! # Leases
//!
//! A machine id is a row of `leases`, keyed by the id, so the primary key is what makes a
//! lease exclusive. [`Store::acquire_lease`](super::Store::acquire_lease) first renews the
//! holder's own unexpired lease ([`RENEW_OWN`]); otherwise it asks the database for the
//! lowest id of the range that is neither held nor leased until later ([`NEXT_FREE`], one row
//! back, not the list of those taken) and claims it ([`CLAIM`]): an insert that, on a
//! conflict with an existing row, takes the row over only if its lease has expired. When the
//! claim loses a race, the search goes on above that id. One statement is atomic on both backends (PostgreSQL locks the
//! conflicting row and checks the condition against its latest version; SQLite runs one writer
//! at a time), so when two mixers race for an id exactly one statement changes a row and the
//! other changes none, and its caller moves on to the next id. No statement holds a lock past
//! its own end, so there is nothing to deadlock on.

use std::collections::BTreeMap;

use super::{Lease, Millis, RackRecord, RackStatus, StoreError};

/// A database or migration failure.
pub(super) fn backend(error: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> StoreError {
    StoreError::Backend(error.into())
}

/// Whether `error` is a unique (or primary key) violation.
pub(super) fn is_unique_violation(error: &sqlx::Error) -> bool {
    matches!(error, sqlx::Error::Database(e) if e.is_unique_violation())
}

/// A rack's columns that are not stored as they are.
pub(super) struct RackParams {
    pub(super) machine_id: Option<i32>,
    pub(super) labels: String,
    pub(super) health: String,
    pub(super) stats: String,
}

impl RackParams {
    pub(super) fn of(rack: &RackRecord) -> Result<RackParams, StoreError> {
        Ok(RackParams {
            machine_id: rack.machine_id.map(i32::from),
            labels: serde_json::to_string(&rack.labels).map_err(backend)?,
            health: serde_json::to_string(&rack.health).map_err(backend)?,
            stats: serde_json::to_string(&rack.stats).map_err(backend)?,
        })
    }
}

/// A `racks` row as the database gives it.
pub(super) struct RackRow {
    pub(super) id: String,
    pub(super) name: String,
    pub(super) machine_id: Option<i32>,
    pub(super) labels: String,
    pub(super) secret_hash: String,
    pub(super) status: String,
    pub(super) first_seen: Millis,
    pub(super) last_seen: Millis,
    pub(super) ip: String,
    pub(super) version: String,
    pub(super) applied_hash: String,
    pub(super) health: String,
    pub(super) stats: String,
}

impl RackRow {
    /// The record; a row that does not read back (an unknown status, a machine id out of
    /// range, JSON that does not parse) is a backend error naming the rack and the column.
    pub(super) fn into_record(self) -> Result<RackRecord, StoreError> {
        let corrupt = |column: &str, what: String| {
            backend(format!("rack `{}`: column {column}: {what}", self.id))
        };
        let status = RackStatus::parse(&self.status)
            .ok_or_else(|| corrupt("status", format!("unknown status `{}`", self.status)))?;
        let machine_id = self
            .machine_id
            .map(u16::try_from)
            .transpose()
            .map_err(|e| corrupt("machine_id", e.to_string()))?;
        let labels: BTreeMap<String, String> =
            serde_json::from_str(&self.labels).map_err(|e| corrupt("labels", e.to_string()))?;
        let health: BTreeMap<String, String> =
            serde_json::from_str(&self.health).map_err(|e| corrupt("health", e.to_string()))?;
        let stats: serde_json::Value =
            serde_json::from_str(&self.stats).map_err(|e| corrupt("stats", e.to_string()))?;
        Ok(RackRecord {
            id: self.id,
            name: self.name,
            machine_id,
            labels,
            secret_hash: self.secret_hash,
            status,
            first_seen: self.first_seen,
            last_seen: self.last_seen,
            ip: self.ip,
            version: self.version,
            applied_hash: self.applied_hash,
            health,
            stats,
        })
    }
}

/// A `leases` row as a [`Lease`].
pub(super) fn lease(
    machine_id: i32,
    holder: String,
    expires_at: Millis,
) -> Result<Lease, StoreError> {
    let machine_id = u16::try_from(machine_id)
        .map_err(|e| backend(format!("lease of machine id {machine_id}: {e}")))?;
    Ok(Lease {
        machine_id,
        holder,
        expires_at,
    })
}

/// Renews the holder's lowest unexpired lease: `$1` holder, `$2` now, `$3` new expiry.
pub(super) const RENEW_OWN: &str = "UPDATE leases SET expires_at = $3 \
     WHERE machine_id = (SELECT machine_id FROM leases \
                         WHERE holder = $1 AND expires_at > $2 \
                         ORDER BY machine_id LIMIT 1) \
       AND holder = $1 AND expires_at > $2 \
     RETURNING machine_id";
/// The lowest id from `$1` to `$2` that no unexpired lease holds at `$3` (NULL when there is
/// none): the lowest of `$1`, the ids whose lease expired, and the ids just above a held one,
/// that is not held itself.
pub(super) const NEXT_FREE: &str = "SELECT MIN(c) FROM ( \
       SELECT CAST($1 AS INTEGER) AS c \
       UNION ALL SELECT machine_id FROM leases \
         WHERE machine_id BETWEEN $1 AND $2 AND expires_at <= $3 \
       UNION ALL SELECT machine_id + 1 FROM leases \
         WHERE machine_id >= $1 AND machine_id < $2 AND expires_at > $3 \
     ) AS candidates \
     WHERE NOT EXISTS (SELECT 1 FROM leases AS held \
                       WHERE held.machine_id = candidates.c AND held.expires_at > $3)";
/// Claims an id that is free or whose lease expired: `$1` id, `$2` holder, `$3` expiry,
/// `$4` now. Changes one row when it got the id, none when someone holds it.
pub(super) const CLAIM: &str = "INSERT INTO leases (machine_id, holder, expires_at) \
     VALUES ($1, $2, $3) \
     ON CONFLICT (machine_id) DO UPDATE \
       SET holder = excluded.holder, expires_at = excluded.expires_at \
       WHERE leases.expires_at <= $4";
/// `$1` id, `$2` holder, `$3` now, `$4` new expiry.
pub(super) const RENEW: &str = "UPDATE leases SET expires_at = $4 \
     WHERE machine_id = $1 AND holder = $2 AND expires_at > $3";
pub(super) const RELEASE: &str = "DELETE FROM leases WHERE holder = $1";
pub(super) const LEASES: &str =
    "SELECT machine_id, holder, expires_at FROM leases ORDER BY machine_id";
pub(super) const LEASE: &str =
    "SELECT machine_id, holder, expires_at FROM leases WHERE machine_id = $1";

pub(super) const DELETE_RACK: &str = "DELETE FROM racks WHERE id = $1";

pub(super) const INSERT_SCENARIO: &str = "INSERT INTO scenarios \
     (name, version, hash, yaml, imported_at) \
     VALUES ($1, $2, $3, $4, $5) ON CONFLICT (name, version) DO NOTHING";
pub(super) const SCENARIO_HASH: &str =
    "SELECT hash FROM scenarios WHERE name = $1 AND version = $2";
pub(super) const SCENARIO: &str = "SELECT name, version, hash, yaml, imported_at \
     FROM scenarios WHERE name = $1 AND version = $2";
pub(super) const SCENARIO_VERSIONS: &str = "SELECT name, version, hash, yaml, imported_at \
     FROM scenarios WHERE name = $1 ORDER BY seq";
pub(super) const SCENARIO_NAMES: &str = "SELECT DISTINCT name FROM scenarios ORDER BY name";
/// Makes a stored version active; changes no row when there is no such version. (The WHERE
/// clause also tells SQLite's parser that ON CONFLICT is the upsert's.)
pub(super) const SET_ACTIVE: &str = "INSERT INTO active (id, name, version) \
     SELECT 1, name, version FROM scenarios WHERE name = $1 AND version = $2 \
     ON CONFLICT (id) DO UPDATE SET name = excluded.name, version = excluded.version";
pub(super) const ACTIVE: &str = "SELECT name, version FROM active WHERE id = 1";

pub(super) const PUT_CONVERGENCE: &str = "INSERT INTO convergence \
     (rack, asked_version, asked_hash, applied_hash, status, error, updated_at) \
     VALUES ($1, $2, $3, $4, $5, $6, $7) \
     ON CONFLICT (rack) DO UPDATE SET asked_version = excluded.asked_version, \
       asked_hash = excluded.asked_hash, applied_hash = excluded.applied_hash, \
       status = excluded.status, error = excluded.error, updated_at = excluded.updated_at";
pub(super) const CONVERGENCE: &str = "SELECT rack, asked_version, asked_hash, applied_hash, \
     status, error, updated_at FROM convergence ORDER BY rack";
pub(super) const CONVERGENCE_OF: &str = "SELECT rack, asked_version, asked_hash, \
     applied_hash, status, error, updated_at FROM convergence WHERE rack = $1";

/// A convergence row as the database gives it.
pub(super) type ConvergenceRow = (String, String, String, String, String, String, i64);

pub(super) fn convergence(row: ConvergenceRow) -> super::Convergence {
    let (rack, asked_version, asked_hash, applied_hash, status, error, updated_at) = row;
    super::Convergence {
        rack,
        asked_version,
        asked_hash,
        applied_hash,
        status,
        error,
        updated_at,
    }
}

/// Rows per transaction of the batch writes ([`Store::put_seen`](super::Store::put_seen),
/// [`Store::put_convergences`](super::Store::put_convergences)): the writer is not held for
/// long by one batch.
pub(super) const BATCH: usize = 500;

pub(super) const SETTING: &str = "SELECT value FROM settings WHERE key = $1";
pub(super) const SET_SETTING: &str = "INSERT INTO settings (key, value) VALUES ($1, $2) \
     ON CONFLICT (key) DO UPDATE SET value = excluded.value";

/// Implements [`Store`](super::Store) for `$store`, whose field `pool` is a `sqlx::Pool` of
/// the database `$db`, with the rack statements that differ between the dialects (how JSON
/// columns are written and read):
///
/// - `insert_rack`: the 13 columns in the order of [`RackRow`], as `$1`…`$13`;
/// - `update_rack`: the same, matched by id (`$1`);
/// - `rack_columns`: the column list of a `SELECT` that reads a [`RackRow`];
/// - `list_columns`: the same with an empty `secret_hash` and a `null` `stats` in place of
///   the columns (what [`Store::rack_list`](super::Store::rack_list) reads);
/// - `put_seen`: what heartbeats change, matched by id (`$1`): `last_seen` (`$2`, never
///   backwards), `applied_hash` (`$3`), `health` (`$4`) and `stats` (`$5`).
///
/// `$store` has two pools of the same database: `pool` for writes and `read` for reads (the
/// same pool for PostgreSQL; for SQLite, one writer connection and several readers).
macro_rules! sql_store {
    (
        $store:ident,
        $db:ty,
        insert_rack = $insert_rack:literal,
        update_rack = $update_rack:literal,
        rack_columns = $rack_columns:literal,
        list_columns = $list_columns:literal,
        put_seen = $put_seen:literal $(,)?
    ) => {
        impl $store {
            fn rack_row(
                row: &<$db as sqlx::Database>::Row,
            ) -> Result<$crate::store::RackRecord, $crate::store::StoreError> {
                use sqlx::Row as _;
                let get = |e: sqlx::Error| $crate::store::sql::backend(e);
                $crate::store::sql::RackRow {
                    id: row.try_get("id").map_err(get)?,
                    name: row.try_get("name").map_err(get)?,
                    machine_id: row.try_get("machine_id").map_err(get)?,
                    labels: row.try_get("labels").map_err(get)?,
                    secret_hash: row.try_get("secret_hash").map_err(get)?,
                    status: row.try_get("status").map_err(get)?,
                    first_seen: row.try_get("first_seen").map_err(get)?,
                    last_seen: row.try_get("last_seen").map_err(get)?,
                    ip: row.try_get("ip").map_err(get)?,
                    version: row.try_get("version").map_err(get)?,
                    applied_hash: row.try_get("applied_hash").map_err(get)?,
                    health: row.try_get("health").map_err(get)?,
                    stats: row.try_get("stats").map_err(get)?,
                }
                .into_record()
            }

            /// The racks `query` selects, read with [`Self::rack_row`].
            async fn some_racks<'q>(
                &self,
                query: sqlx::query::Query<'q, $db, <$db as sqlx::Database>::Arguments>,
            ) -> Result<Vec<$crate::store::RackRecord>, $crate::store::StoreError> {
                query
                    .fetch_all(&self.read)
                    .await
                    .map_err($crate::store::sql::backend)?
                    .iter()
                    .map(Self::rack_row)
                    .collect()
            }

            /// The rack `query` selects, if any, read with [`Self::rack_row`].
            async fn one_rack<'q>(
                &self,
                query: sqlx::query::Query<'q, $db, <$db as sqlx::Database>::Arguments>,
            ) -> Result<Option<$crate::store::RackRecord>, $crate::store::StoreError> {
                query
                    .fetch_optional(&self.read)
                    .await
                    .map_err($crate::store::sql::backend)?
                    .as_ref()
                    .map(Self::rack_row)
                    .transpose()
            }

            fn scenario_row(
                row: &<$db as sqlx::Database>::Row,
            ) -> Result<$crate::store::ScenarioRecord, $crate::store::StoreError> {
                use sqlx::Row as _;
                let get = |e: sqlx::Error| $crate::store::sql::backend(e);
                Ok($crate::store::ScenarioRecord {
                    name: row.try_get("name").map_err(get)?,
                    version: row.try_get("version").map_err(get)?,
                    hash: row.try_get("hash").map_err(get)?,
                    yaml: row.try_get("yaml").map_err(get)?,
                    imported_at: row.try_get("imported_at").map_err(get)?,
                })
            }

            /// Binds a rack's 13 columns, in the order of the rack statements.
            fn bind_rack<'q>(
                query: sqlx::query::Query<'q, $db, <$db as sqlx::Database>::Arguments>,
                rack: &$crate::store::RackRecord,
                params: &$crate::store::sql::RackParams,
            ) -> sqlx::query::Query<'q, $db, <$db as sqlx::Database>::Arguments> {
                query
                    .bind(rack.id.as_str())
                    .bind(rack.name.as_str())
                    .bind(params.machine_id)
                    .bind(params.labels.as_str())
                    .bind(rack.secret_hash.as_str())
                    .bind(rack.status.as_str())
                    .bind(rack.first_seen)
                    .bind(rack.last_seen)
                    .bind(rack.ip.as_str())
                    .bind(rack.version.as_str())
                    .bind(rack.applied_hash.as_str())
                    .bind(params.health.as_str())
                    .bind(params.stats.as_str())
            }
        }

        impl $crate::store::Store for $store {
            fn insert_rack<'a>(
                &'a self,
                rack: &'a $crate::store::RackRecord,
            ) -> $crate::store::StoreFuture<'a, ()> {
                Box::pin(async move {
                    let params = $crate::store::sql::RackParams::of(rack)?;
                    match Self::bind_rack(sqlx::query($insert_rack), rack, &params)
                        .execute(&self.pool)
                        .await
                    {
                        Ok(_) => Ok(()),
                        Err(e) if $crate::store::sql::is_unique_violation(&e) => {
                            Err($crate::store::StoreError::NameTaken(rack.name.clone()))
                        }
                        Err(e) => Err($crate::store::sql::backend(e)),
                    }
                })
            }

            fn update_rack<'a>(
                &'a self,
                rack: &'a $crate::store::RackRecord,
            ) -> $crate::store::StoreFuture<'a, ()> {
                Box::pin(async move {
                    let params = $crate::store::sql::RackParams::of(rack)?;
                    match Self::bind_rack(sqlx::query($update_rack), rack, &params)
                        .execute(&self.pool)
                        .await
                    {
                        Ok(done) if done.rows_affected() == 0 => {
                            Err($crate::store::StoreError::NoRack(rack.id.clone()))
                        }
                        Ok(_) => Ok(()),
                        Err(e) if $crate::store::sql::is_unique_violation(&e) => {
                            Err($crate::store::StoreError::NameTaken(rack.name.clone()))
                        }
                        Err(e) => Err($crate::store::sql::backend(e)),
                    }
                })
            }

            fn rack_by_name<'a>(
                &'a self,
                name: &'a str,
            ) -> $crate::store::StoreFuture<'a, Option<$crate::store::RackRecord>> {
                Box::pin(
                    self.one_rack(
                        sqlx::query(concat!(
                            "SELECT ",
                            $rack_columns,
                            " FROM racks WHERE name = $1"
                        ))
                        .bind(name),
                    ),
                )
            }

            fn rack_by_id<'a>(
                &'a self,
                id: &'a str,
            ) -> $crate::store::StoreFuture<'a, Option<$crate::store::RackRecord>> {
                Box::pin(
                    self.one_rack(
                        sqlx::query(concat!(
                            "SELECT ",
                            $rack_columns,
                            " FROM racks WHERE id = $1"
                        ))
                        .bind(id),
                    ),
                )
            }

            fn racks(&self) -> $crate::store::StoreFuture<'_, Vec<$crate::store::RackRecord>> {
                Box::pin(self.some_racks(sqlx::query(concat!(
                    "SELECT ",
                    $rack_columns,
                    " FROM racks ORDER BY name"
                ))))
            }

            fn rack_list(&self) -> $crate::store::StoreFuture<'_, Vec<$crate::store::RackRecord>> {
                Box::pin(self.some_racks(sqlx::query(concat!(
                    "SELECT ",
                    $list_columns,
                    " FROM racks ORDER BY name"
                ))))
            }

            fn delete_rack<'a>(&'a self, id: &'a str) -> $crate::store::StoreFuture<'a, bool> {
                Box::pin(async move {
                    let backend = $crate::store::sql::backend;
                    let mut tx = self.pool.begin().await.map_err(backend)?;
                    sqlx::query($crate::store::sql::RELEASE)
                        .bind(id)
                        .execute(&mut *tx)
                        .await
                        .map_err(backend)?;
                    let done = sqlx::query($crate::store::sql::DELETE_RACK)
                        .bind(id)
                        .execute(&mut *tx)
                        .await
                        .map_err(backend)?;
                    tx.commit().await.map_err(backend)?;
                    Ok(done.rows_affected() > 0)
                })
            }

            fn acquire_lease<'a>(
                &'a self,
                holder: &'a str,
                range: std::ops::RangeInclusive<u16>,
                now: $crate::store::Millis,
                ttl: $crate::store::Millis,
            ) -> $crate::store::StoreFuture<'a, $crate::store::Lease> {
                Box::pin(async move {
                    let backend = $crate::store::sql::backend;
                    let expires_at = now.saturating_add(ttl);
                    let own: Option<i32> = sqlx::query_scalar($crate::store::sql::RENEW_OWN)
                        .bind(holder)
                        .bind(now)
                        .bind(expires_at)
                        .fetch_optional(&self.pool)
                        .await
                        .map_err(backend)?;
                    if let Some(machine_id) = own {
                        return $crate::store::sql::lease(
                            machine_id,
                            holder.to_owned(),
                            expires_at,
                        );
                    }
                    let end = i32::from(*range.end());
                    let mut from = i32::from(*range.start());
                    while from <= end {
                        let free: Option<i32> = sqlx::query_scalar($crate::store::sql::NEXT_FREE)
                            .bind(from)
                            .bind(end)
                            .bind(now)
                            .fetch_one(&self.read)
                            .await
                            .map_err(backend)?;
                        let Some(machine_id) = free else { break };
                        let claimed = sqlx::query($crate::store::sql::CLAIM)
                            .bind(machine_id)
                            .bind(holder)
                            .bind(expires_at)
                            .bind(now)
                            .execute(&self.pool)
                            .await
                            .map_err(backend)?
                            .rows_affected();
                        if claimed == 1 {
                            return $crate::store::sql::lease(
                                machine_id,
                                holder.to_owned(),
                                expires_at,
                            );
                        }
                        // Another holder got it first: on above it.
                        from = machine_id + 1;
                    }
                    Err($crate::store::StoreError::NoFreeMachineId)
                })
            }

            fn renew_lease<'a>(
                &'a self,
                machine_id: u16,
                holder: &'a str,
                now: $crate::store::Millis,
                ttl: $crate::store::Millis,
            ) -> $crate::store::StoreFuture<'a, bool> {
                Box::pin(async move {
                    let done = sqlx::query($crate::store::sql::RENEW)
                        .bind(i32::from(machine_id))
                        .bind(holder)
                        .bind(now)
                        .bind(now.saturating_add(ttl))
                        .execute(&self.pool)
                        .await
                        .map_err($crate::store::sql::backend)?;
                    Ok(done.rows_affected() == 1)
                })
            }

            fn release_leases<'a>(&'a self, holder: &'a str) -> $crate::store::StoreFuture<'a, ()> {
                Box::pin(async move {
                    sqlx::query($crate::store::sql::RELEASE)
                        .bind(holder)
                        .execute(&self.pool)
                        .await
                        .map_err($crate::store::sql::backend)?;
                    Ok(())
                })
            }

            fn leases(&self) -> $crate::store::StoreFuture<'_, Vec<$crate::store::Lease>> {
                Box::pin(async move {
                    let rows: Vec<(i32, String, i64)> = sqlx::query_as($crate::store::sql::LEASES)
                        .fetch_all(&self.read)
                        .await
                        .map_err($crate::store::sql::backend)?;
                    rows.into_iter()
                        .map(|(id, holder, expires_at)| {
                            $crate::store::sql::lease(id, holder, expires_at)
                        })
                        .collect()
                })
            }

            fn put_scenario<'a>(
                &'a self,
                scenario: &'a $crate::store::ScenarioRecord,
            ) -> $crate::store::StoreFuture<'a, $crate::store::Put> {
                Box::pin(async move {
                    let backend = $crate::store::sql::backend;
                    let inserted = sqlx::query($crate::store::sql::INSERT_SCENARIO)
                        .bind(scenario.name.as_str())
                        .bind(scenario.version.as_str())
                        .bind(scenario.hash.as_str())
                        .bind(scenario.yaml.as_str())
                        .bind(scenario.imported_at)
                        .execute(&self.pool)
                        .await
                        .map_err(backend)?
                        .rows_affected();
                    if inserted == 1 {
                        return Ok($crate::store::Put::Stored);
                    }
                    // Versions are never deleted, so the one in the way is still there.
                    let hash: String = sqlx::query_scalar($crate::store::sql::SCENARIO_HASH)
                        .bind(scenario.name.as_str())
                        .bind(scenario.version.as_str())
                        .fetch_one(&self.pool)
                        .await
                        .map_err(backend)?;
                    if hash == scenario.hash {
                        Ok($crate::store::Put::Unchanged)
                    } else {
                        Err($crate::store::StoreError::VersionExists {
                            name: scenario.name.clone(),
                            version: scenario.version.clone(),
                        })
                    }
                })
            }

            fn scenario<'a>(
                &'a self,
                name: &'a str,
                version: &'a str,
            ) -> $crate::store::StoreFuture<'a, Option<$crate::store::ScenarioRecord>> {
                Box::pin(async move {
                    sqlx::query($crate::store::sql::SCENARIO)
                        .bind(name)
                        .bind(version)
                        .fetch_optional(&self.read)
                        .await
                        .map_err($crate::store::sql::backend)?
                        .as_ref()
                        .map(Self::scenario_row)
                        .transpose()
                })
            }

            fn scenario_versions<'a>(
                &'a self,
                name: &'a str,
            ) -> $crate::store::StoreFuture<'a, Vec<$crate::store::ScenarioRecord>> {
                Box::pin(async move {
                    sqlx::query($crate::store::sql::SCENARIO_VERSIONS)
                        .bind(name)
                        .fetch_all(&self.read)
                        .await
                        .map_err($crate::store::sql::backend)?
                        .iter()
                        .map(Self::scenario_row)
                        .collect()
                })
            }

            fn scenario_names(&self) -> $crate::store::StoreFuture<'_, Vec<String>> {
                Box::pin(async move {
                    sqlx::query_scalar($crate::store::sql::SCENARIO_NAMES)
                        .fetch_all(&self.read)
                        .await
                        .map_err($crate::store::sql::backend)
                })
            }

            fn set_active<'a>(
                &'a self,
                name: &'a str,
                version: &'a str,
            ) -> $crate::store::StoreFuture<'a, ()> {
                Box::pin(async move {
                    let done = sqlx::query($crate::store::sql::SET_ACTIVE)
                        .bind(name)
                        .bind(version)
                        .execute(&self.pool)
                        .await
                        .map_err($crate::store::sql::backend)?;
                    if done.rows_affected() == 0 {
                        return Err($crate::store::StoreError::NoScenario {
                            name: name.to_owned(),
                            version: version.to_owned(),
                        });
                    }
                    Ok(())
                })
            }

            fn active(&self) -> $crate::store::StoreFuture<'_, Option<(String, String)>> {
                Box::pin(async move {
                    sqlx::query_as($crate::store::sql::ACTIVE)
                        .fetch_optional(&self.read)
                        .await
                        .map_err($crate::store::sql::backend)
                })
            }

            fn put_convergence<'a>(
                &'a self,
                row: &'a $crate::store::Convergence,
            ) -> $crate::store::StoreFuture<'a, ()> {
                Box::pin(async move {
                    sqlx::query($crate::store::sql::PUT_CONVERGENCE)
                        .bind(row.rack.as_str())
                        .bind(row.asked_version.as_str())
                        .bind(row.asked_hash.as_str())
                        .bind(row.applied_hash.as_str())
                        .bind(row.status.as_str())
                        .bind(row.error.as_str())
                        .bind(row.updated_at)
                        .execute(&self.pool)
                        .await
                        .map_err($crate::store::sql::backend)?;
                    Ok(())
                })
            }

            fn convergence(
                &self,
            ) -> $crate::store::StoreFuture<'_, Vec<$crate::store::Convergence>> {
                Box::pin(async move {
                    let rows: Vec<$crate::store::sql::ConvergenceRow> =
                        sqlx::query_as($crate::store::sql::CONVERGENCE)
                            .fetch_all(&self.read)
                            .await
                            .map_err($crate::store::sql::backend)?;
                    Ok(rows
                        .into_iter()
                        .map($crate::store::sql::convergence)
                        .collect())
                })
            }

            fn setting<'a>(
                &'a self,
                key: &'a str,
            ) -> $crate::store::StoreFuture<'a, Option<String>> {
                Box::pin(async move {
                    sqlx::query_scalar($crate::store::sql::SETTING)
                        .bind(key)
                        .fetch_optional(&self.read)
                        .await
                        .map_err($crate::store::sql::backend)
                })
            }

            fn set_setting<'a>(
                &'a self,
                key: &'a str,
                value: &'a str,
            ) -> $crate::store::StoreFuture<'a, ()> {
                Box::pin(async move {
                    sqlx::query($crate::store::sql::SET_SETTING)
                        .bind(key)
                        .bind(value)
                        .execute(&self.pool)
                        .await
                        .map_err($crate::store::sql::backend)?;
                    Ok(())
                })
            }

            fn rack_by_machine_id(
                &self,
                machine_id: u16,
            ) -> $crate::store::StoreFuture<'_, Option<$crate::store::RackRecord>> {
                Box::pin(
                    self.one_rack(
                        sqlx::query(concat!(
                            "SELECT ",
                            $rack_columns,
                            " FROM racks WHERE machine_id = $1 ORDER BY name LIMIT 1"
                        ))
                        .bind(i32::from(machine_id)),
                    ),
                )
            }

            fn stale_racks(
                &self,
                before: $crate::store::Millis,
            ) -> $crate::store::StoreFuture<'_, Vec<$crate::store::RackRecord>> {
                Box::pin(
                    self.some_racks(
                        sqlx::query(concat!(
                            "SELECT ",
                            $rack_columns,
                            " FROM racks WHERE status = 'active' AND last_seen < $1 ORDER BY name"
                        ))
                        .bind(before),
                    ),
                )
            }

            fn put_seen<'a>(
                &'a self,
                seen: &'a [$crate::store::Seen],
            ) -> $crate::store::StoreFuture<'a, ()> {
                Box::pin(async move {
                    let backend = $crate::store::sql::backend;
                    for batch in seen.chunks($crate::store::sql::BATCH) {
                        let mut tx = self.pool.begin().await.map_err(backend)?;
                        for s in batch {
                            let health = serde_json::to_string(&s.health)
                                .map_err($crate::store::sql::backend)?;
                            let stats = serde_json::to_string(&s.stats)
                                .map_err($crate::store::sql::backend)?;
                            sqlx::query($put_seen)
                                .bind(s.id.as_str())
                                .bind(s.last_seen)
                                .bind(s.applied_hash.as_str())
                                .bind(health)
                                .bind(stats)
                                .execute(&mut *tx)
                                .await
                                .map_err(backend)?;
                        }
                        tx.commit().await.map_err(backend)?;
                    }
                    Ok(())
                })
            }

            fn lease(
                &self,
                machine_id: u16,
            ) -> $crate::store::StoreFuture<'_, Option<$crate::store::Lease>> {
                Box::pin(async move {
                    let row: Option<(i32, String, i64)> = sqlx::query_as($crate::store::sql::LEASE)
                        .bind(i32::from(machine_id))
                        .fetch_optional(&self.read)
                        .await
                        .map_err($crate::store::sql::backend)?;
                    row.map(|(id, holder, expires_at)| {
                        $crate::store::sql::lease(id, holder, expires_at)
                    })
                    .transpose()
                })
            }

            fn put_convergences<'a>(
                &'a self,
                rows: &'a [$crate::store::Convergence],
            ) -> $crate::store::StoreFuture<'a, ()> {
                Box::pin(async move {
                    let backend = $crate::store::sql::backend;
                    for batch in rows.chunks($crate::store::sql::BATCH) {
                        let mut tx = self.pool.begin().await.map_err(backend)?;
                        for row in batch {
                            sqlx::query($crate::store::sql::PUT_CONVERGENCE)
                                .bind(row.rack.as_str())
                                .bind(row.asked_version.as_str())
                                .bind(row.asked_hash.as_str())
                                .bind(row.applied_hash.as_str())
                                .bind(row.status.as_str())
                                .bind(row.error.as_str())
                                .bind(row.updated_at)
                                .execute(&mut *tx)
                                .await
                                .map_err(backend)?;
                        }
                        tx.commit().await.map_err(backend)?;
                    }
                    Ok(())
                })
            }

            fn convergence_of<'a>(
                &'a self,
                rack: &'a str,
            ) -> $crate::store::StoreFuture<'a, Option<$crate::store::Convergence>> {
                Box::pin(async move {
                    let row: Option<$crate::store::sql::ConvergenceRow> =
                        sqlx::query_as($crate::store::sql::CONVERGENCE_OF)
                            .bind(rack)
                            .fetch_optional(&self.read)
                            .await
                            .map_err($crate::store::sql::backend)?;
                    Ok(row.map($crate::store::sql::convergence))
                })
            }
        }
    };
}

pub(super) use sql_store;
