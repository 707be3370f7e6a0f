//! The mixer's state behind one trait: racks, machine-id leases, scenarios, what each rack
//! was asked to run and what it reports, and the mixer's own identity.
//!
//! [`MemoryStore`] keeps it in process (tests, throwaway mixers); the SQL stores keep it in
//! SQLite (the embedded default) or PostgreSQL (several mixers sharing one state). Every store
//! passes the same conformance suite, and the rules that matter across mixers are the
//! store's, not the caller's: a rack name is unique, a machine id is leased to one holder at a
//! time (a constraint, not a check-then-insert), and a `name:version` of a scenario, once
//! stored, never changes.

mod memory;
#[cfg(any(feature = "sqlite", feature = "postgres"))]
mod sql;
#[cfg(feature = "postgres")]
mod sql_postgres;
#[cfg(feature = "sqlite")]
mod sql_sqlite;

use std::collections::BTreeMap;

pub use self::memory::MemoryStore;
#[cfg(feature = "postgres")]
pub use self::sql_postgres::PostgresStore;
#[cfg(feature = "sqlite")]
pub use self::sql_sqlite::SqliteStore;

/// Time in milliseconds since the Unix epoch (the [`Clock`](crate::Clock)'s unit).
pub type Millis = i64;

/// Where a rack stands with the mixer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum RackStatus {
    /// Known, waiting for admission.
    Pending,
    /// Admitted: gets its scenario and runs it.
    Active,
    /// Suspended by an operator: heartbeats are answered `inactive`, and the rack stops its
    /// gears.
    Inactive,
    /// Admitted, but its heartbeats stopped.
    Offline,
    /// Refused.
    Denied,
}

impl RackStatus {
    /// The status as the wire and the stores write it.
    pub fn as_str(self) -> &'static str {
        match self {
            RackStatus::Pending => "pending",
            RackStatus::Active => "active",
            RackStatus::Inactive => "inactive",
            RackStatus::Offline => "offline",
            RackStatus::Denied => "denied",
        }
    }

    /// Reads a status written by [`RackStatus::as_str`].
    pub fn parse(text: &str) -> Option<RackStatus> {
        Some(match text {
            "pending" => RackStatus::Pending,
            "active" => RackStatus::Active,
            "inactive" => RackStatus::Inactive,
            "offline" => RackStatus::Offline,
            "denied" => RackStatus::Denied,
            _ => return None,
        })
    }
}

impl std::fmt::Display for RackStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One rack as the registry knows it.
#[derive(Clone, PartialEq, Eq)]
pub struct RackRecord {
    /// The rack's id (a UUID in text), fixed at first contact.
    pub id: String,
    /// Its name, unique in the fleet.
    pub name: String,
    /// The machine id leased to it, once admitted.
    pub machine_id: Option<u16>,
    /// Labels that scenarios' deploy selectors match.
    pub labels: BTreeMap<String, String>,
    /// The hash of its bearer secret ([`crate::secret::hash`]); the secret itself is never
    /// stored.
    pub secret_hash: String,
    /// Where it stands.
    pub status: RackStatus,
    /// First contact.
    pub first_seen: Millis,
    /// Last hello or heartbeat.
    pub last_seen: Millis,
    /// The address it reports.
    pub ip: String,
    /// Its software version.
    pub version: String,
    /// The scenario hash it reports it runs.
    pub applied_hash: String,
    /// Health per gear, as last reported (`ok`, or what is wrong).
    pub health: BTreeMap<String, String>,
    /// Runtime statistics, as last reported (JSON).
    pub stats: serde_json::Value,
}

impl std::fmt::Debug for RackRecord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RackRecord")
            .field("id", &self.id)
            .field("name", &self.name)
            .field("machine_id", &self.machine_id)
            .field("labels", &self.labels)
            .field("status", &self.status)
            .field("first_seen", &self.first_seen)
            .field("last_seen", &self.last_seen)
            .field("applied_hash", &self.applied_hash)
            .finish_non_exhaustive()
    }
}

impl RackRecord {
    /// A new `pending` rack first seen at `now`.
    pub fn new(id: &str, name: &str, secret_hash: String, now: Millis) -> RackRecord {
        RackRecord {
            id: id.to_owned(),
            name: name.to_owned(),
            machine_id: None,
            labels: BTreeMap::new(),
            secret_hash,
            status: RackStatus::Pending,
            first_seen: now,
            last_seen: now,
            ip: String::new(),
            version: String::new(),
            applied_hash: String::new(),
            health: BTreeMap::new(),
            stats: serde_json::Value::Null,
        }
    }
}

/// What a rack's heartbeats change in its record: the mixer keeps it in memory and writes it
/// in batches ([`Store::put_seen`]), not once per heartbeat.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Seen {
    /// The rack's id.
    pub id: String,
    /// Its last heartbeat.
    pub last_seen: Millis,
    /// The scenario hash it reports it runs.
    pub applied_hash: String,
    /// Health per gear, as last reported.
    pub health: BTreeMap<String, String>,
    /// Runtime statistics, as last reported (JSON).
    pub stats: serde_json::Value,
}

impl Seen {
    /// Writes these values into `rack` (a record read before they were stored): the rack's
    /// `last_seen` never goes back.
    pub fn apply_to(&self, rack: &mut RackRecord) {
        rack.last_seen = rack.last_seen.max(self.last_seen);
        rack.applied_hash.clone_from(&self.applied_hash);
        rack.health.clone_from(&self.health);
        rack.stats.clone_from(&self.stats);
    }
}

/// A machine id leased to a holder until a time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease {
    /// The machine id.
    pub machine_id: u16,
    /// Who holds it (a rack id).
    pub holder: String,
    /// Until when.
    pub expires_at: Millis,
}

/// One stored version of a scenario.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScenarioRecord {
    /// Its name (`meta.name`).
    pub name: String,
    /// Its version (`meta.version`, SemVer).
    pub version: String,
    /// SHA-256 of its canonical bytes, in hex: its content address.
    pub hash: String,
    /// The YAML as imported.
    pub yaml: String,
    /// When it was imported.
    pub imported_at: Millis,
}

/// What a rack was asked to run and what it reports: one row of the fleet's convergence.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Convergence {
    /// The rack's name.
    pub rack: String,
    /// The scenario version pushed.
    pub asked_version: String,
    /// The hash pushed.
    pub asked_hash: String,
    /// The hash the rack reports it runs.
    pub applied_hash: String,
    /// `pushed`, `applying`, `applied` or `failed`.
    pub status: String,
    /// Why it failed.
    pub error: String,
    /// When this row last changed.
    pub updated_at: Millis,
}

/// What [`Store::put_scenario`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Put {
    /// Stored.
    Stored,
    /// The same `name:version` with the same hash was there already.
    Unchanged,
}

/// Why a store refused or failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// A rack of that name exists (with another id).
    #[error("a rack named `{0}` exists")]
    NameTaken(String),
    /// No such rack.
    #[error("no rack `{0}`")]
    NoRack(String),
    /// Every machine id of the range is leased.
    #[error("no machine id is free")]
    NoFreeMachineId,
    /// That `name:version` is stored with other content; versions are immutable.
    #[error("scenario {name}:{version} exists with other content")]
    VersionExists {
        /// The scenario's name.
        name: String,
        /// Its version.
        version: String,
    },
    /// No such scenario version.
    #[error("no scenario {name}:{version}")]
    NoScenario {
        /// The name asked for.
        name: String,
        /// The version asked for.
        version: String,
    },
    /// The database failed.
    #[error("the database failed")]
    Backend(#[source] Box<dyn std::error::Error + Send + Sync>),
}

/// The boxed future a [`Store`] method returns.
pub type StoreFuture<'a, T> =
    std::pin::Pin<Box<dyn std::future::Future<Output = Result<T, StoreError>> + Send + 'a>>;

/// The mixer's state. Implementations are shared between tasks (`Arc<dyn Store>`) and, for
/// the SQL stores, between mixers.
pub trait Store: Send + Sync + std::fmt::Debug {
    /// Adds a rack.
    ///
    /// Errors: [`StoreError::NameTaken`] when its name is taken.
    fn insert_rack<'a>(&'a self, rack: &'a RackRecord) -> StoreFuture<'a, ()>;
    /// Replaces a rack's record (matched by id).
    ///
    /// Errors: [`StoreError::NoRack`], [`StoreError::NameTaken`].
    fn update_rack<'a>(&'a self, rack: &'a RackRecord) -> StoreFuture<'a, ()>;
    /// A rack by name.
    fn rack_by_name<'a>(&'a self, name: &'a str) -> StoreFuture<'a, Option<RackRecord>>;
    /// A rack by id.
    fn rack_by_id<'a>(&'a self, id: &'a str) -> StoreFuture<'a, Option<RackRecord>>;
    /// Every rack, by name.
    fn racks(&self) -> StoreFuture<'_, Vec<RackRecord>>;
    /// Every rack by name, as listings show it: without its secret hash (empty) and its
    /// runtime statistics (`null`), the two columns that listings never show and that cost
    /// the most to read.
    ///
    /// The default reads every rack whole; the stores of this crate read only the listed
    /// columns.
    fn rack_list(&self) -> StoreFuture<'_, Vec<RackRecord>> {
        Box::pin(async move {
            let mut racks = self.racks().await?;
            for r in &mut racks {
                r.secret_hash = String::new();
                r.stats = serde_json::Value::Null;
            }
            Ok(racks)
        })
    }
    /// Removes a rack and releases its lease; whether it was there.
    fn delete_rack<'a>(&'a self, id: &'a str) -> StoreFuture<'a, bool>;
    /// The rack that holds `machine_id` in its record (a rack of the reference names itself
    /// by machine id only).
    ///
    /// The default reads every rack; the stores of this crate read one row.
    fn rack_by_machine_id(&self, machine_id: u16) -> StoreFuture<'_, Option<RackRecord>> {
        Box::pin(async move {
            Ok(self
                .racks()
                .await?
                .into_iter()
                .find(|r| r.machine_id == Some(machine_id)))
        })
    }
    /// The `active` racks last seen before `before`, by name: those the liveness sweep marks
    /// `offline`.
    ///
    /// The default reads every rack; the stores of this crate read only those.
    fn stale_racks(&self, before: Millis) -> StoreFuture<'_, Vec<RackRecord>> {
        Box::pin(async move {
            let mut racks = self.racks().await?;
            racks.retain(|r| r.status == RackStatus::Active && r.last_seen < before);
            Ok(racks)
        })
    }
    /// Writes what heartbeats changed (`last_seen`, never backwards, the applied hash,
    /// health and stats) into each rack's record, in one transaction where the store has
    /// them; the rest of each record stays as it is, and racks that are gone are skipped.
    ///
    /// The default reads and replaces each record; the stores of this crate update the four
    /// columns.
    fn put_seen<'a>(&'a self, seen: &'a [Seen]) -> StoreFuture<'a, ()> {
        Box::pin(async move {
            for s in seen {
                if let Some(mut rack) = self.rack_by_id(&s.id).await? {
                    s.apply_to(&mut rack);
                    match self.update_rack(&rack).await {
                        Ok(()) | Err(StoreError::NoRack(_)) => {}
                        Err(e) => return Err(e),
                    }
                }
            }
            Ok(())
        })
    }

    /// Leases a machine id from `range` to `holder` until `now + ttl`: the one it holds if it
    /// holds one (renewed), else the lowest id that is free or whose lease expired before
    /// `now`. Two holders never hold one id, also when several mixers ask at once.
    ///
    /// Errors: [`StoreError::NoFreeMachineId`].
    fn acquire_lease<'a>(
        &'a self,
        holder: &'a str,
        range: std::ops::RangeInclusive<u16>,
        now: Millis,
        ttl: Millis,
    ) -> StoreFuture<'a, Lease>;
    /// Extends `holder`'s lease of `machine_id` to `now + ttl`; false when it does not hold it
    /// (any more).
    fn renew_lease<'a>(
        &'a self,
        machine_id: u16,
        holder: &'a str,
        now: Millis,
        ttl: Millis,
    ) -> StoreFuture<'a, bool>;
    /// Ends every lease `holder` has.
    fn release_leases<'a>(&'a self, holder: &'a str) -> StoreFuture<'a, ()>;
    /// Every lease, expired or not, by machine id.
    fn leases(&self) -> StoreFuture<'_, Vec<Lease>>;
    /// The lease of one machine id, expired or not.
    ///
    /// The default reads every lease; the stores of this crate read one row.
    fn lease(&self, machine_id: u16) -> StoreFuture<'_, Option<Lease>> {
        Box::pin(async move {
            Ok(self
                .leases()
                .await?
                .into_iter()
                .find(|l| l.machine_id == machine_id))
        })
    }

    /// Stores a scenario version.
    ///
    /// Errors: [`StoreError::VersionExists`] when that `name:version` has other content.
    fn put_scenario<'a>(&'a self, scenario: &'a ScenarioRecord) -> StoreFuture<'a, Put>;
    /// One version of a scenario.
    fn scenario<'a>(
        &'a self,
        name: &'a str,
        version: &'a str,
    ) -> StoreFuture<'a, Option<ScenarioRecord>>;
    /// Every version of a scenario, in import order.
    fn scenario_versions<'a>(&'a self, name: &'a str) -> StoreFuture<'a, Vec<ScenarioRecord>>;
    /// The names of every stored scenario.
    fn scenario_names(&self) -> StoreFuture<'_, Vec<String>>;
    /// Makes `name:version` the active scenario.
    ///
    /// Errors: [`StoreError::NoScenario`].
    fn set_active<'a>(&'a self, name: &'a str, version: &'a str) -> StoreFuture<'a, ()>;
    /// The active scenario's name and version.
    fn active(&self) -> StoreFuture<'_, Option<(String, String)>>;

    /// Records what a rack was asked or reports (keyed by rack name).
    fn put_convergence<'a>(&'a self, row: &'a Convergence) -> StoreFuture<'a, ()>;
    /// Records several rows at once (in one transaction where the store has them).
    ///
    /// The default writes them one by one.
    fn put_convergences<'a>(&'a self, rows: &'a [Convergence]) -> StoreFuture<'a, ()> {
        Box::pin(async move {
            for row in rows {
                self.put_convergence(row).await?;
            }
            Ok(())
        })
    }
    /// Every rack's row, by rack name.
    fn convergence(&self) -> StoreFuture<'_, Vec<Convergence>>;
    /// One rack's row.
    ///
    /// The default reads every row; the stores of this crate read one.
    fn convergence_of<'a>(&'a self, rack: &'a str) -> StoreFuture<'a, Option<Convergence>> {
        Box::pin(async move {
            Ok(self
                .convergence()
                .await?
                .into_iter()
                .find(|r| r.rack == rack))
        })
    }

    /// A value the mixer keeps about itself (its id, its public key), by key.
    fn setting<'a>(&'a self, key: &'a str) -> StoreFuture<'a, Option<String>>;
    /// Sets a value the mixer keeps about itself.
    fn set_setting<'a>(&'a self, key: &'a str, value: &'a str) -> StoreFuture<'a, ()>;
}
