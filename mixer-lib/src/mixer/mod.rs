//! The mixer: a value an application builds, starts and stops.
//!
//! - `mod.rs`: [`Mixer`], the handle, and its rack registry API (approve, suspend, resume,
//!   remove, commands); the state the handlers share (`Inner`), per-rack locks.
//! - `builder.rs`: [`MixerBuilder`], and `start`: the cluster key against the store's
//!   identity, the default store, the subscriptions and the liveness sweep.
//! - `enroll.rs`: hellos, admission, rack secrets and passports.
//! - `heartbeat.rs`: heartbeats (leases, passports, commands, the push-lag re-push), the
//!   bounded queue they wait in, and the liveness sweep.
//! - `seen.rs`: what heartbeats change (last seen, health, stats, the applied hash), kept in
//!   memory and written in batches, and the batched writes of convergence rows.
//! - `scenarios.rs`: import, check, activation, pushes, push reports and convergence rows;
//!   canonical text, hashing and SemVer.

mod builder;
mod enroll;
mod heartbeat;
mod listing;
mod scenarios;
mod seen;
#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, HashMap};
use std::ops::RangeInclusive;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use rack_lib::passport::ClusterKey;
use snake::Snake;
use tokio::task::JoinHandle;

use crate::limit::HelloLimits;
use crate::store::{Millis, RackRecord, RackStatus, Store};
use crate::{Clock, MixerError, secret};

pub use self::builder::MixerBuilder;
pub use self::listing::{MAX_AGE as LISTING_MAX_AGE, MAX_STALE as LISTING_MAX_STALE, RackListing};
pub use self::scenarios::Imported;

/// The KV bucket that carries scenarios too large for one message.
pub const SCENARIO_BUCKET: &str = "flux-scenarios";

/// The queue group the mixers of one fleet share on the agent subjects.
pub const QUEUE_GROUP: &str = "flux-mixers";

/// A running mixer; clones share it.
#[derive(Debug, Clone)]
pub struct Mixer {
    inner: Arc<Inner>,
    tasks: Arc<Mutex<Vec<JoinHandle<()>>>>,
}

/// Counts of what the mixer refused or dropped, by reason.
#[derive(Debug, Default)]
struct Counters(Mutex<BTreeMap<&'static str, u64>>);

impl Counters {
    fn add(&self, reason: &'static str) {
        *self
            .0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .entry(reason)
            .or_insert(0) += 1;
    }
}

/// What the mixer keeps in memory per rack between heartbeats.
#[derive(Debug, Default)]
struct Live {
    last_seq: Option<u64>,
    commands: Vec<String>,
    /// When the last push went out (to re-push a rack that lags, but not on every beat).
    pushed_at: Option<Millis>,
    /// The status and machine id of the last passport the rack got in this session: a rack
    /// takes its status from passports, so a change gets a new one.
    issued: Option<(RackStatus, u16)>,
    /// When this mixer last renewed the rack's lease: renewed again only once half of it
    /// has passed, not on every beat.
    renewed_at: Option<Millis>,
}

/// What the handles and the handlers share.
struct Inner {
    id: String,
    key: ClusterKey,
    store: Arc<dyn Store>,
    snake: Snake,
    clock: Arc<dyn Clock>,
    factory: gears::Factory,
    bootstrap_secret: Option<String>,
    auto_adopt: bool,
    heartbeat_interval: Duration,
    missed_heartbeats: u32,
    machine_ids: RangeInclusive<u16>,
    lease_ttl: Millis,
    limits: Mutex<HelloLimits>,
    live: Mutex<HashMap<String, Live>>,
    /// One lock per rack name: every read-modify-write of a rack's record (a heartbeat, an
    /// approval, a report) holds it, so that one never undoes another. A lock is here only
    /// while someone holds or awaits it (see [`RackGuard`]): names come from the bus.
    locks: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    /// The racks the last scenario asked about deploys to, by its hash: a scenario is
    /// parsed and validated once, not on every heartbeat.
    targets: Mutex<Option<(String, Arc<Vec<String>>)>>,
    /// The last scenario version read from the store: versions are immutable, so the
    /// heartbeats that compare a rack's hash with the active one read only which is active.
    scenario: Mutex<Option<Arc<crate::store::ScenarioRecord>>>,
    /// The hash of the active scenario when it was last read (`None`: none was active), and
    /// when: heartbeats of racks that run it, or while none is, skip reading it again for a
    /// while (see `heartbeat.rs`).
    active_hash: Mutex<Option<(std::time::Instant, Option<String>)>>,
    /// What heartbeats changed and the store does not have yet (see `seen.rs`).
    seen: seen::Unflushed,
    /// The queue of the batched convergence writes (see `seen.rs`).
    convergence: seen::ConvergenceWriter,
    /// The shared rack listing (see `listing.rs`).
    listing: listing::Cache,
    counters: Counters,
}

impl std::fmt::Debug for Inner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Inner")
            .field("id", &self.id)
            .field("key", &self.key)
            .field("store", &self.store)
            .field("snake", &self.snake)
            .field("clock", &self.clock)
            .field("factory", &self.factory)
            .field(
                "bootstrap_secret",
                &builder::redacted(self.bootstrap_secret.as_deref()),
            )
            .field("auto_adopt", &self.auto_adopt)
            .field("heartbeat_interval", &self.heartbeat_interval)
            .field("missed_heartbeats", &self.missed_heartbeats)
            .field("machine_ids", &self.machine_ids)
            .field("lease_ttl", &self.lease_ttl)
            .finish_non_exhaustive()
    }
}

impl Mixer {
    /// A builder with the defaults: data in `./data`, the in-process snake, the system clock,
    /// no bootstrap secret.
    pub fn builder() -> MixerBuilder {
        MixerBuilder::default()
    }

    /// The mixer's id.
    pub fn id(&self) -> &str {
        &self.inner.id
    }

    /// The cluster's public key, in hex.
    pub fn public_key(&self) -> String {
        self.inner.key.public().to_hex()
    }

    /// The transport it answers on.
    pub fn snake(&self) -> &Snake {
        &self.inner.snake
    }

    /// The store it keeps its state in.
    pub fn store(&self) -> &Arc<dyn Store> {
        &self.inner.store
    }

    /// Counts of refused or dropped control messages, by reason (`bad_hello`,
    /// `bad_heartbeat`, `bad_status`, `rate_limited`, `denied`, `conflict`, `bad_secret`,
    /// `unknown_rack`; `heartbeat_overloaded` for a heartbeat dropped because too many were
    /// waiting, `heartbeat_stale` for one that waited longer than a rack waits for its reply).
    pub fn refused(&self) -> BTreeMap<&'static str, u64> {
        self.inner
            .counters
            .0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Every rack, by name.
    ///
    /// # Errors
    ///
    /// The store's.
    pub async fn racks(&self) -> Result<Vec<RackRecord>, MixerError> {
        let mut racks = self.inner.store.racks().await?;
        for rack in &mut racks {
            self.inner.overlay(rack);
        }
        Ok(racks)
    }

    /// One rack, by name or id.
    ///
    /// # Errors
    ///
    /// [`MixerError::NoRack`], or the store's.
    pub async fn rack(&self, name_or_id: &str) -> Result<RackRecord, MixerError> {
        self.inner.find(name_or_id).await
    }

    /// Admits a pending (or suspended) rack: it becomes `active`, gets a machine-id lease,
    /// and its next heartbeat reply carries its new passport; the active scenario follows.
    ///
    /// # Errors
    ///
    /// [`MixerError::NoRack`], or the store's (no free machine id).
    pub async fn approve(&self, name_or_id: &str) -> Result<RackRecord, MixerError> {
        let (_guard, mut rack) = self.inner.find_locked(name_or_id).await?;
        self.inner.admit(&mut rack).await?;
        self.inner.store.update_rack(&rack).await?;
        self.inner.listing.wrote();
        tracing::info!(rack = %rack.name, machine_id = ?rack.machine_id, "Approved a rack.");
        Ok(rack)
    }

    /// Suspends a rack: `inactive`; it stops its gears and keeps heartbeating.
    ///
    /// # Errors
    ///
    /// [`MixerError::NoRack`], or the store's.
    pub async fn suspend(&self, name_or_id: &str) -> Result<RackRecord, MixerError> {
        let (_guard, mut rack) = self.inner.find_locked(name_or_id).await?;
        rack.status = RackStatus::Inactive;
        self.inner.store.update_rack(&rack).await?;
        self.inner.listing.wrote();
        self.inner.queue(&rack.name, "suspend");
        Ok(rack)
    }

    /// Resumes a suspended rack: `active` again, and it runs its scenario again.
    ///
    /// # Errors
    ///
    /// [`MixerError::NoRack`], or the store's.
    pub async fn resume(&self, name_or_id: &str) -> Result<RackRecord, MixerError> {
        let (_guard, mut rack) = self.inner.find_locked(name_or_id).await?;
        self.inner.admit(&mut rack).await?;
        self.inner.store.update_rack(&rack).await?;
        self.inner.listing.wrote();
        self.inner.queue(&rack.name, "resume");
        Ok(rack)
    }

    /// Forgets a rack and releases its machine id; whether it was there.
    ///
    /// # Errors
    ///
    /// The store's.
    pub async fn remove(&self, name_or_id: &str) -> Result<bool, MixerError> {
        let (_guard, rack) = match self.inner.find_locked(name_or_id).await {
            Ok(found) => found,
            Err(MixerError::NoRack(_)) => return Ok(false),
            Err(e) => return Err(e),
        };
        self.inner.live().remove(&rack.name);
        self.inner.forget_seen(&rack.name);
        let there = self.inner.store.delete_rack(&rack.id).await?;
        self.inner.listing.wrote();
        Ok(there)
    }

    /// Queues a command (`shutdown`, `log_level:<level>`, `suspend`, `resume`) for a rack's
    /// next heartbeat reply.
    ///
    /// # Errors
    ///
    /// [`MixerError::NoRack`], or the store's.
    pub async fn command(&self, name_or_id: &str, command: &str) -> Result<(), MixerError> {
        let rack = self.inner.find(name_or_id).await?;
        self.inner.queue(&rack.name, command);
        Ok(())
    }

    /// Stops answering racks. The store and the transport stay as they are.
    ///
    /// What heartbeats changed since the last batch write (at most one second of
    /// `last_seen`, health and stats; see [`Mixer::flush`]) is not written: call `flush`
    /// first to keep it.
    pub fn stop(&self) {
        for task in self
            .tasks
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .drain(..)
        {
            task.abort();
        }
    }
}

impl Inner {
    fn live(&self) -> std::sync::MutexGuard<'_, HashMap<String, Live>> {
        self.live.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn queue(&self, rack: &str, command: &str) {
        self.live()
            .entry(rack.to_owned())
            .or_default()
            .commands
            .push(command.to_owned());
    }

    /// Holds the lock of rack `name` (see [`Inner::locks`]).
    async fn lock_rack(&self, name: &str) -> RackGuard<'_> {
        let lock = Arc::clone(
            self.locks
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .entry(name.to_owned())
                .or_default(),
        );
        RackGuard {
            locks: &self.locks,
            name: name.to_owned(),
            guard: Some(lock.lock_owned().await),
        }
    }

    /// A rack by name or id, read again under its lock.
    async fn find_locked(
        &self,
        name_or_id: &str,
    ) -> Result<(RackGuard<'_>, RackRecord), MixerError> {
        let name = self.find(name_or_id).await?.name;
        let guard = self.lock_rack(&name).await;
        let rack = self.find(&name).await?;
        Ok((guard, rack))
    }

    /// A rack by name or id, with what its heartbeats changed since the last batch write.
    async fn find(&self, name_or_id: &str) -> Result<RackRecord, MixerError> {
        let mut rack = match self.store.rack_by_name(name_or_id).await? {
            Some(r) => r,
            None => self
                .store
                .rack_by_id(name_or_id)
                .await?
                .ok_or_else(|| MixerError::NoRack(name_or_id.to_owned()))?,
        };
        self.overlay(&mut rack);
        Ok(rack)
    }
}

/// The lock of one rack, held. Released, it leaves [`Inner::locks`] unless another task
/// awaits it: clones of a lock are made only under the map's mutex, so when the map and this
/// guard hold the only two, nobody else can be waiting.
struct RackGuard<'a> {
    locks: &'a Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    name: String,
    guard: Option<tokio::sync::OwnedMutexGuard<()>>,
}

impl Drop for RackGuard<'_> {
    fn drop(&mut self) {
        let mut locks = self.locks.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(guard) = self.guard.take()
            && Arc::strong_count(tokio::sync::OwnedMutexGuard::mutex(&guard)) == 2
        {
            locks.remove(&self.name);
        }
    }
}

/// A new random id: 32 hex characters.
fn new_id() -> Result<String, MixerError> {
    use rand::TryRng as _;
    let mut bytes = [0u8; 16];
    rand::rngs::SysRng
        .try_fill_bytes(&mut bytes)
        .map_err(|e| MixerError::Entropy(e.to_string()))?;
    Ok(secret::hex(&bytes))
}
