//! The mixer: a value an application builds, starts and stops.

use std::collections::{BTreeMap, HashMap};
use std::ops::RangeInclusive;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use bytes::Bytes;
use fluxmsg::system::{
    EnrollmentReply, Heartbeat, HeartbeatReply, Hello, Payload, PushStatus, RackState, ScenarioPush,
};
use rack_lib::passport::ClusterKey;
use sha2::{Digest, Sha256};
use snake::{Message, Pattern, Snake, Subject};
use tokio::task::JoinHandle;

use crate::limit::HelloLimits;
use crate::store::{Convergence, Millis, Put, RackRecord, RackStatus, ScenarioRecord, Store};
use crate::{Clock, MixerError, SystemClock, keys, secret};

/// The KV bucket that carries scenarios too large for one message.
pub const SCENARIO_BUCKET: &str = "flux-scenarios";

/// The queue group the mixers of one fleet share on the agent subjects.
pub const QUEUE_GROUP: &str = "flux-mixers";

/// Store settings the mixer keeps about itself.
const SETTING_PUBLIC_KEY: &str = "cluster.public_key";
const SETTING_MIXER_ID: &str = "mixer.id";

/// How a mixer is put together; [`Mixer::builder`] starts one with the defaults.
#[derive(Debug)]
pub struct MixerBuilder {
    data_dir: PathBuf,
    store: Option<Arc<dyn Store>>,
    snake: Option<Snake>,
    clock: Arc<dyn Clock>,
    factory: Option<gears::Factory>,
    bootstrap_secret: Option<String>,
    auto_adopt: bool,
    heartbeat_interval: Duration,
    missed_heartbeats: u32,
    machine_ids: RangeInclusive<u16>,
    lease_ttl: Duration,
    hello_rate: (f64, f64),
    hello_global_rate: (f64, f64),
}

impl Default for MixerBuilder {
    fn default() -> MixerBuilder {
        MixerBuilder {
            data_dir: PathBuf::from("data"),
            store: None,
            snake: None,
            clock: Arc::new(SystemClock),
            factory: None,
            bootstrap_secret: None,
            auto_adopt: false,
            heartbeat_interval: Duration::from_secs(10),
            missed_heartbeats: 3,
            machine_ids: 100..=u16::MAX,
            lease_ttl: Duration::from_secs(600),
            hello_rate: (1.0, 5.0),
            hello_global_rate: (500.0, 2_000.0),
        }
    }
}

impl MixerBuilder {
    /// Where the mixer keeps its cluster key (and, without another store, its database):
    /// `./data` by default.
    #[must_use]
    pub fn data_dir(mut self, dir: impl Into<PathBuf>) -> MixerBuilder {
        self.data_dir = dir.into();
        self
    }

    /// The store of racks, leases and scenarios.
    #[must_use]
    pub fn store(mut self, store: Arc<dyn Store>) -> MixerBuilder {
        self.store = Some(store);
        self
    }

    /// The transport: the in-process snake by default.
    #[must_use]
    pub fn snake(mut self, snake: Snake) -> MixerBuilder {
        self.snake = Some(snake);
        self
    }

    /// The clock (the system's by default).
    #[must_use]
    pub fn clock(mut self, clock: Arc<dyn Clock>) -> MixerBuilder {
        self.clock = clock;
        self
    }

    /// The gear catalog scenarios are validated against (the built-in one by default).
    #[must_use]
    pub fn factory(mut self, factory: gears::Factory) -> MixerBuilder {
        self.factory = Some(factory);
        self
    }

    /// The secret a new rack must present at first contact. There is no default: without
    /// one, the mixer admits nobody new unless auto-adopt is on.
    #[must_use]
    pub fn bootstrap_secret(mut self, secret: impl Into<String>) -> MixerBuilder {
        self.bootstrap_secret = Some(secret.into());
        self
    }

    /// Admit every new rack at once (development only: logged loudly at every admission).
    #[must_use]
    pub fn auto_adopt(mut self, on: bool) -> MixerBuilder {
        self.auto_adopt = on;
        self
    }

    /// How often racks heartbeat (10 s by default); a rack silent for `missed` intervals (3
    /// by default) is `offline`.
    #[must_use]
    pub fn heartbeat_interval(mut self, interval: Duration, missed: u32) -> MixerBuilder {
        self.heartbeat_interval = interval;
        self.missed_heartbeats = missed.max(1);
        self
    }

    /// The machine ids leased to racks (100 to 65,535 by default), and for how long a lease
    /// holds between renewals (10 minutes by default; heartbeats renew it).
    #[must_use]
    pub fn machine_ids(mut self, range: RangeInclusive<u16>, lease_ttl: Duration) -> MixerBuilder {
        self.machine_ids = range;
        self.lease_ttl = lease_ttl;
        self
    }

    /// Hellos allowed per rack name and for everyone: `(per second, burst)` each (by default
    /// 1/s with a burst of 5 per name, 500/s with a burst of 2,000 in all).
    #[must_use]
    pub fn hello_rates(mut self, per_name: (f64, f64), global: (f64, f64)) -> MixerBuilder {
        self.hello_rate = per_name;
        self.hello_global_rate = global;
        self
    }

    /// Builds and starts the mixer: reads or makes the cluster key, checks it against the
    /// store's identity, and starts answering racks.
    ///
    /// # Errors
    ///
    /// [`MixerError::KeyMismatch`] when the key file is not the store's, and the errors of
    /// the key file, the store and the transport.
    pub async fn start(self) -> Result<Mixer, MixerError> {
        let store = match self.store {
            Some(store) => store,
            None => default_store(&self.data_dir).await?,
        };
        let (key, _made) = keys::load_or_create(&self.data_dir)?;
        let public = key.public().to_hex();
        match store.setting(SETTING_PUBLIC_KEY).await? {
            Some(expected) if expected != public => {
                return Err(MixerError::KeyMismatch {
                    expected,
                    found: public,
                });
            }
            Some(_) => {}
            None => store.set_setting(SETTING_PUBLIC_KEY, &public).await?,
        }
        let id = match store.setting(SETTING_MIXER_ID).await? {
            Some(id) => id,
            None => {
                let id = new_id()?;
                store.set_setting(SETTING_MIXER_ID, &id).await?;
                id
            }
        };
        if self.bootstrap_secret.is_none() && !self.auto_adopt {
            tracing::warn!("No bootstrap secret is configured: the mixer admits no new rack.");
        }
        let snake = self.snake.unwrap_or_else(Snake::memory);
        let inner = Arc::new(Inner {
            id,
            key,
            store,
            snake,
            clock: self.clock,
            factory: self.factory.unwrap_or_else(gears::Factory::builtin),
            bootstrap_secret: self.bootstrap_secret,
            auto_adopt: self.auto_adopt,
            heartbeat_interval: self.heartbeat_interval,
            missed_heartbeats: self.missed_heartbeats,
            machine_ids: self.machine_ids,
            lease_ttl: i64::try_from(self.lease_ttl.as_millis()).unwrap_or(i64::MAX),
            limits: Mutex::new(HelloLimits::new(
                self.hello_rate.0,
                self.hello_rate.1,
                self.hello_global_rate.0,
                self.hello_global_rate.1,
            )),
            live: Mutex::new(HashMap::new()),
            locks: Mutex::new(HashMap::new()),
            counters: Counters::default(),
        });
        let tasks = vec![
            spawn_loop(
                Arc::clone(&inner),
                Subject::hello(),
                |inner, msg| async move { inner.on_hello(msg).await },
            )
            .await?,
            spawn_loop(
                Arc::clone(&inner),
                Subject::heartbeat(),
                |inner, msg| async move { inner.on_heartbeat(msg).await },
            )
            .await?,
            spawn_loop(
                Arc::clone(&inner),
                Subject::status(),
                |inner, msg| async move { inner.on_status(msg).await },
            )
            .await?,
            tokio::spawn(Arc::clone(&inner).sweep()),
        ];
        tracing::info!(mixer = %inner.id, public_key = %public, "Mixer started.");
        Ok(Mixer {
            inner,
            tasks: Arc::new(Mutex::new(tasks)),
        })
    }
}

#[cfg(feature = "sqlite")]
async fn default_store(dir: &std::path::Path) -> Result<Arc<dyn Store>, MixerError> {
    Ok(Arc::new(
        crate::store::SqliteStore::open(dir.join("mixer.db")).await?,
    ))
}

#[cfg(not(feature = "sqlite"))]
async fn default_store(_dir: &std::path::Path) -> Result<Arc<dyn Store>, MixerError> {
    Ok(Arc::new(crate::store::MemoryStore::new()))
}

/// Subscribes to `subject` and hands each message to `handle`, one task per message.
async fn spawn_loop<F, Fut>(
    inner: Arc<Inner>,
    subject: Subject,
    handle: F,
) -> Result<JoinHandle<()>, MixerError>
where
    F: Fn(Arc<Inner>, Message) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    // A queue group: mixers sharing one fleet (one store, one bus) answer each message once.
    let mut sub = inner
        .snake
        .subscribe_queue(Pattern::from(subject), QUEUE_GROUP)
        .await?;
    Ok(tokio::spawn(async move {
        while let Some(msg) = sub.next().await {
            tokio::spawn(handle(Arc::clone(&inner), msg));
        }
    }))
}

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
}

#[derive(Debug)]
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
    /// approval, a report) holds it, so that one never undoes another.
    locks: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    counters: Counters,
}

/// One version of a scenario as the mixer imported it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Imported {
    /// `meta.name`.
    pub name: String,
    /// `meta.version`.
    pub version: String,
    /// SHA-256 of its canonical bytes.
    pub hash: String,
    /// Whether it was stored now (false: the same version was there already).
    pub stored: bool,
    /// The racks it deploys to.
    pub racks: Vec<String>,
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
    /// `rate_limited`, `denied`, `conflict`, `bad_secret`, …).
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
        Ok(self.inner.store.racks().await?)
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
        self.inner.queue(&rack.name, "resume");
        Ok(rack)
    }

    /// Forgets a rack and releases its machine id; whether it was there.
    ///
    /// # Errors
    ///
    /// The store's.
    pub async fn remove(&self, name_or_id: &str) -> Result<bool, MixerError> {
        let Ok((_guard, rack)) = self.inner.find_locked(name_or_id).await else {
            return Ok(false);
        };
        self.inner.live().remove(&rack.name);
        Ok(self.inner.store.delete_rack(&rack.id).await?)
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

    /// Checks a scenario against the gear catalog and stores it as `name:version`
    /// (content-addressed, immutable); with `activate`, makes it the active scenario and
    /// pushes each rack its part.
    ///
    /// # Errors
    ///
    /// [`MixerError::Scenario`] with every problem and its `line:col`,
    /// [`MixerError::Version`] for a version that is not SemVer, the store's
    /// ([`StoreError::VersionExists`](crate::store::StoreError::VersionExists) for a changed
    /// version).
    pub async fn import(&self, yaml: &str, activate: bool) -> Result<Imported, MixerError> {
        let imported = self.check(yaml)?;
        let record = ScenarioRecord {
            name: imported.name.clone(),
            version: imported.version.clone(),
            hash: imported.hash.clone(),
            yaml: canonical(yaml),
            imported_at: self.inner.clock.now(),
        };
        let stored = self.inner.store.put_scenario(&record).await? == Put::Stored;
        if activate {
            self.activate(&imported.name, &imported.version).await?;
        }
        Ok(Imported { stored, ..imported })
    }

    /// What [`Mixer::import`] would store, without storing it (a dry run).
    ///
    /// # Errors
    ///
    /// As [`Mixer::import`].
    pub fn check(&self, yaml: &str) -> Result<Imported, MixerError> {
        let scenario = rack_lib::scenario::Scenario::parse(yaml)?;
        let validated = scenario.validate(&self.inner.factory)?;
        let version = scenario.meta.version.clone();
        if !is_semver(&version) {
            return Err(MixerError::Version(version));
        }
        Ok(Imported {
            name: scenario.meta.name,
            version,
            hash: hash(&canonical(yaml)),
            stored: false,
            racks: validated.racks(),
        })
    }

    /// Makes `name:version` (`latest`: the highest version) the active scenario, admits the
    /// pending racks it names, and pushes each active rack it deploys to its part.
    ///
    /// # Errors
    ///
    /// [`MixerError::NoScenario`], or the store's and transport's.
    pub async fn activate(&self, name: &str, version: &str) -> Result<Vec<String>, MixerError> {
        let record = self.inner.resolve(name, version).await?;
        self.inner
            .store
            .set_active(&record.name, &record.version)
            .await?;
        let targets = self.inner.targets(&record)?;
        let mut pushed = Vec::new();
        for target in &targets {
            let _guard = self.inner.lock_rack(target).await;
            let Some(mut rack) = self.inner.store.rack_by_name(target).await? else {
                continue;
            };
            if rack.status == RackStatus::Pending {
                // Named by the active scenario: admitted (admission path B).
                self.inner.admit(&mut rack).await?;
                self.inner.store.update_rack(&rack).await?;
                tracing::info!(rack = %rack.name, "Admitted a rack the active scenario names.");
            }
            if matches!(rack.status, RackStatus::Active | RackStatus::Offline) {
                self.inner.push(&rack, &record).await?;
                pushed.push(rack.name.clone());
            }
        }
        tracing::info!(scenario = %record.name, version = %record.version, pushed = pushed.len(), "Activated a scenario.");
        Ok(pushed)
    }

    /// The active scenario, if any.
    ///
    /// # Errors
    ///
    /// The store's.
    pub async fn active(&self) -> Result<Option<ScenarioRecord>, MixerError> {
        let Some((name, version)) = self.inner.store.active().await? else {
            return Ok(None);
        };
        Ok(self.inner.store.scenario(&name, &version).await?)
    }

    /// Per rack: what it was asked to run, what it runs, and how the last push went.
    ///
    /// # Errors
    ///
    /// The store's.
    pub async fn convergence(&self) -> Result<Vec<Convergence>, MixerError> {
        Ok(self.inner.store.convergence().await?)
    }

    /// Stops answering racks. The store and the transport stay as they are.
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
    async fn lock_rack(&self, name: &str) -> tokio::sync::OwnedMutexGuard<()> {
        let lock = Arc::clone(
            self.locks
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .entry(name.to_owned())
                .or_default(),
        );
        lock.lock_owned().await
    }

    /// A rack by name or id, read again under its lock.
    async fn find_locked(
        &self,
        name_or_id: &str,
    ) -> Result<(tokio::sync::OwnedMutexGuard<()>, RackRecord), MixerError> {
        let name = self.find(name_or_id).await?.name;
        let guard = self.lock_rack(&name).await;
        let rack = self.find(&name).await?;
        Ok((guard, rack))
    }

    async fn find(&self, name_or_id: &str) -> Result<RackRecord, MixerError> {
        if let Some(r) = self.store.rack_by_name(name_or_id).await? {
            return Ok(r);
        }
        self.store
            .rack_by_id(name_or_id)
            .await?
            .ok_or_else(|| MixerError::NoRack(name_or_id.to_owned()))
    }

    /// Makes a rack active with a machine-id lease.
    async fn admit(&self, rack: &mut RackRecord) -> Result<(), MixerError> {
        let lease = self
            .store
            .acquire_lease(
                &rack.id,
                self.machine_ids.clone(),
                self.clock.now(),
                self.lease_ttl,
            )
            .await?;
        rack.machine_id = Some(lease.machine_id);
        rack.status = RackStatus::Active;
        Ok(())
    }

    /// The rack's bearer secret: derived from the cluster key and the rack's id, so that
    /// the mixer never stores it (only its hash) and can put it in every passport it issues.
    fn rack_secret(&self, rack_id: &str) -> String {
        let mut h = Sha256::new();
        h.update(self.key.to_hex().as_bytes());
        h.update(b"\0rack-secret\0");
        h.update(rack_id.as_bytes());
        secret::hex(&h.finalize())
    }

    /// A signed passport for `rack`, as the CBOR of its envelope.
    async fn passport(&self, rack: &RackRecord) -> Result<Bytes, MixerError> {
        let now = self.clock.now();
        let lease_expires_at = match rack.machine_id {
            Some(id) => self
                .store
                .leases()
                .await?
                .into_iter()
                .find(|l| l.machine_id == id && l.holder == rack.id)
                .map_or(0, |l| l.expires_at / 1000),
            None => 0,
        };
        let state = RackState {
            mixer_id: self.id.clone(),
            machine_id: rack.machine_id.unwrap_or(0),
            name: rack.name.clone(),
            status: rack.status.as_str().to_owned(),
            secret: self.rack_secret(&rack.id),
            mixer_pub: Bytes::new(),
            version: env!("CARGO_PKG_VERSION").to_owned(),
            created_at: rack.first_seen / 1000,
            updated_at: now / 1000,
            update_count: 0,
            lease_expires_at,
        };
        Ok(self.key.issue(&state)?.to_cbor()?.into())
    }

    async fn resolve(&self, name: &str, version: &str) -> Result<ScenarioRecord, MixerError> {
        let found = if version == "latest" {
            let mut versions = self.store.scenario_versions(name).await?;
            versions.sort_by_key(|s| semver_key(&s.version));
            versions.pop()
        } else {
            self.store.scenario(name, version).await?
        };
        found.ok_or_else(|| MixerError::NoScenario(format!("{name}:{version}")))
    }

    /// The racks a stored scenario deploys to.
    fn targets(&self, record: &ScenarioRecord) -> Result<Vec<String>, MixerError> {
        let scenario = rack_lib::scenario::Scenario::parse(&record.yaml)?;
        Ok(scenario.validate(&self.factory)?.racks())
    }

    /// Pushes `record` to `rack` and records that it was asked.
    async fn push(&self, rack: &RackRecord, record: &ScenarioRecord) -> Result<(), MixerError> {
        let mut push = ScenarioPush {
            version: record.version.clone(),
            name: record.name.clone(),
            rack_name: rack.name.clone(),
            machine_id: rack.machine_id.unwrap_or(0),
            scenario: Bytes::from(record.yaml.clone().into_bytes()),
            timestamp: self.clock.now() / 1000,
            hash: record.hash.clone(),
            location: String::new(),
            signature: Bytes::new(),
        };
        // Too large for one message (with room for the envelope): the scenario goes to a
        // KV bucket and the push says where.
        if let Some(max) = self.snake.max_payload()
            && record.yaml.len() + 4096 > max
        {
            let kv = self
                .snake
                .kv(rack_lib::agent::scenario_bucket(SCENARIO_BUCKET)?)
                .await?;
            kv.put(&record.hash, record.yaml.clone().into_bytes())
                .await?;
            push.scenario = Bytes::new();
            push.location = format!("kv://{SCENARIO_BUCKET}/{}", record.hash);
        }
        self.key.sign(&mut push)?;
        let subject = Subject::scenario(&rack.name)?;
        self.snake
            .publish(Message::new(subject, push.to_message()?))
            .await?;
        self.live().entry(rack.name.clone()).or_default().pushed_at = Some(self.clock.now());
        let mut row = self.row(&rack.name).await?;
        row.asked_version = record.version.clone();
        row.asked_hash = record.hash.clone();
        if row.applied_hash != record.hash {
            row.status = "pushed".to_owned();
            row.error.clear();
        }
        row.updated_at = self.clock.now();
        self.store.put_convergence(&row).await?;
        Ok(())
    }

    async fn row(&self, rack: &str) -> Result<Convergence, MixerError> {
        Ok(self
            .store
            .convergence()
            .await?
            .into_iter()
            .find(|r| r.rack == rack)
            .unwrap_or_else(|| Convergence {
                rack: rack.to_owned(),
                asked_version: String::new(),
                asked_hash: String::new(),
                applied_hash: String::new(),
                status: String::new(),
                error: String::new(),
                updated_at: 0,
            }))
    }

    /// Pushes the active scenario to `rack` if it deploys there.
    async fn push_active(&self, rack: &RackRecord) -> Result<(), MixerError> {
        let Some((name, version)) = self.store.active().await? else {
            return Ok(());
        };
        let Some(record) = self.store.scenario(&name, &version).await? else {
            return Ok(());
        };
        if self.targets(&record)?.contains(&rack.name) {
            self.push(rack, &record).await?;
        }
        Ok(())
    }

    async fn on_hello(self: Arc<Self>, msg: Message) {
        if let Err(e) = self.hello(&msg).await {
            tracing::warn!(error = %e, "Could not answer a hello.");
        }
    }

    async fn hello(&self, msg: &Message) -> Result<(), MixerError> {
        let Ok(hello) =
            Hello::from_message(&msg.payload).or_else(|_| Hello::from_cbor(&msg.payload))
        else {
            self.counters.add("bad_hello");
            return Ok(());
        };
        // Validated before anything else: the name and nonce go into a subject.
        let Ok(reply_to) = Subject::enrollment(&hello.name, &hello.nonce) else {
            self.counters.add("bad_hello");
            tracing::warn!("Dropped a hello whose name or nonce cannot be a subject token.");
            return Ok(());
        };
        let now = self.clock.now();
        if !self
            .limits
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .allow(&hello.name, now)
        {
            self.counters.add("rate_limited");
            return Ok(());
        }
        let reply = self.enroll(&hello, now).await?;
        self.snake
            .publish(Message::new(reply_to, reply.to_message()?))
            .await?;
        Ok(())
    }

    async fn enroll(&self, hello: &Hello, now: Millis) -> Result<EnrollmentReply, MixerError> {
        let refuse = |status: &str, message: &str| EnrollmentReply {
            status: status.to_owned(),
            message: message.to_owned(),
            ..EnrollmentReply::default()
        };
        let _guard = self.lock_rack(&hello.name).await;
        let bootstrap = self
            .bootstrap_secret
            .as_deref()
            .is_some_and(|b| secret::constant_time_eq(b.as_bytes(), hello.secret.as_bytes()));
        let mut rack = match self.store.rack_by_name(&hello.name).await? {
            Some(rack) => {
                if rack.status == RackStatus::Denied {
                    self.counters.add("denied");
                    return Ok(refuse("denied", "this rack is denied"));
                }
                if !secret::verify(&hello.secret, &rack.secret_hash) {
                    if bootstrap {
                        self.counters.add("conflict");
                        tracing::warn!(rack = %hello.name, "Refused a hello: another identity holds this name.");
                        return Ok(refuse(
                            "conflict",
                            "another rack holds this name: remove it first, or choose another name",
                        ));
                    }
                    self.counters.add("bad_secret");
                    tracing::warn!(rack = %hello.name, "Refused a hello with a wrong secret.");
                    return Ok(refuse("denied", "wrong secret"));
                }
                rack
            }
            None => {
                if !bootstrap && !self.auto_adopt {
                    self.counters.add("denied");
                    tracing::warn!(rack = %hello.name, "Refused a new rack without the bootstrap secret.");
                    return Ok(refuse(
                        "denied",
                        "a new rack must present the bootstrap secret",
                    ));
                }
                let id = new_id()?;
                let secret = self.rack_secret(&id);
                let hashed = secret::hash(&secret).map_err(|e| MixerError::Key {
                    path: PathBuf::new(),
                    reason: e,
                })?;
                let rack = RackRecord::new(&id, &hello.name, hashed, now);
                match self.store.insert_rack(&rack).await {
                    Ok(()) => {}
                    // Another mixer (or a hello racing this one) registered it first.
                    Err(crate::store::StoreError::NameTaken(_)) => {
                        self.counters.add("conflict");
                        return Ok(refuse("conflict", "another rack holds this name"));
                    }
                    Err(e) => return Err(e.into()),
                }
                tracing::info!(rack = %hello.name, "A new rack introduced itself.");
                rack
            }
        };
        rack.last_seen = now;
        rack.ip.clone_from(&hello.ip);
        rack.version.clone_from(&hello.version);
        if let Some(fluxmsg::Value::Map(labels)) = hello.config.get("labels") {
            rack.labels = labels
                .iter()
                .filter_map(|(k, v)| v.as_str().map(|v| (k.to_owned(), v.to_owned())))
                .collect();
        }
        let named = self.named_by_active(&rack.name).await?;
        let was_active = rack.status == RackStatus::Active;
        match rack.status {
            RackStatus::Pending if self.auto_adopt => {
                self.admit(&mut rack).await?;
                tracing::warn!(rack = %rack.name, "Auto-adopted a rack: auto-adopt is for development only.");
            }
            RackStatus::Pending if named => self.admit(&mut rack).await?,
            // Back from silence, or asking again: keep its lease.
            RackStatus::Active | RackStatus::Offline => self.admit(&mut rack).await?,
            _ => {}
        }
        self.store.update_rack(&rack).await?;
        // A new session: the mixer does not know its state yet, and the rack has not seen a
        // push of it.
        {
            let mut live = self.live();
            let entry = live.entry(rack.name.clone()).or_default();
            entry.last_seq = None;
            entry.pushed_at = None;
            entry.issued = Some((rack.status, rack.machine_id.unwrap_or(0)));
        }
        if rack.status == RackStatus::Active && !was_active {
            tracing::info!(rack = %rack.name, machine_id = ?rack.machine_id, "A rack is active.");
        }
        Ok(EnrollmentReply {
            status: rack.status.as_str().to_owned(),
            passport: self.passport(&rack).await?,
            config: fluxmsg::Map::new(),
            message: String::new(),
        })
    }

    async fn named_by_active(&self, rack: &str) -> Result<bool, MixerError> {
        let Some((name, version)) = self.store.active().await? else {
            return Ok(false);
        };
        let Some(record) = self.store.scenario(&name, &version).await? else {
            return Ok(false);
        };
        Ok(self.targets(&record)?.iter().any(|t| t == rack))
    }

    async fn on_heartbeat(self: Arc<Self>, msg: Message) {
        match self.heartbeat(&msg).await {
            Ok(Some((reply, machine_id))) => {
                let to = msg
                    .reply
                    .clone()
                    .unwrap_or_else(|| Subject::notify(u32::from(machine_id)));
                match reply.to_message() {
                    Ok(bytes) => {
                        if let Err(e) = self.snake.publish(Message::new(to, bytes)).await {
                            tracing::warn!(error = %e, "Could not answer a heartbeat.");
                        }
                    }
                    Err(e) => tracing::warn!(error = %e, "Could not encode a heartbeat reply."),
                }
            }
            Ok(None) => {}
            Err(e) => tracing::warn!(error = %e, "Could not handle a heartbeat."),
        }
    }

    async fn heartbeat(&self, msg: &Message) -> Result<Option<(HeartbeatReply, u16)>, MixerError> {
        let Ok(hb) =
            Heartbeat::from_message(&msg.payload).or_else(|_| Heartbeat::from_cbor(&msg.payload))
        else {
            self.counters.add("bad_heartbeat");
            return Ok(None);
        };
        let found = if hb.name.is_empty() {
            // A rack of the reference names itself by machine id only.
            self.store
                .racks()
                .await?
                .into_iter()
                .find(|r| hb.machine_id != 0 && r.machine_id == Some(hb.machine_id))
        } else {
            self.store.rack_by_name(&hb.name).await?
        };
        let found = match found {
            Some(rack) => {
                let guard = self.lock_rack(&rack.name).await;
                self.store
                    .rack_by_name(&rack.name)
                    .await?
                    .map(|rack| (guard, rack))
            }
            None => None,
        };
        let Some((_guard, mut rack)) =
            found.filter(|(_, r)| secret::verify(&hb.secret, &r.secret_hash))
        else {
            self.counters.add("bad_secret");
            let mut reply = HeartbeatReply {
                status: "denied".to_owned(),
                ..HeartbeatReply::default()
            };
            self.key.sign(&mut reply)?;
            return Ok(Some((reply, hb.machine_id)));
        };
        let now = self.clock.now();
        rack.last_seen = now;
        if hb.full_state {
            rack.health = hb
                .health
                .iter()
                .map(|(k, v)| (k.to_owned(), v.to_string()))
                .collect();
        } else {
            for (k, v) in hb.health.iter() {
                rack.health.insert(k.to_owned(), v.to_string());
            }
        }
        if !hb.stats.is_empty() {
            rack.stats = fluxmsg::json::value_to_json(&fluxmsg::Value::Map(hb.stats.clone()));
        }
        rack.applied_hash.clone_from(&hb.applied_hash);
        if rack.status == RackStatus::Offline {
            rack.status = RackStatus::Active;
            tracing::info!(rack = %rack.name, "A rack is back.");
        }
        let mut lease_changed = false;
        if rack.status == RackStatus::Active {
            let renewed = match rack.machine_id {
                Some(id) => {
                    self.store
                        .renew_lease(id, &rack.id, now, self.lease_ttl)
                        .await?
                }
                None => false,
            };
            // The lease is gone (expired, or never there): a new one, in a new passport.
            if !renewed {
                self.admit(&mut rack).await?;
                lease_changed = true;
            }
        }
        self.store.update_rack(&rack).await?;
        // A new passport when the rack's status or machine id changed since its last one (it
        // takes both from passports), or when its lease had to be taken again.
        let current = (rack.status, rack.machine_id.unwrap_or(0));
        let reissue = {
            let mut live = self.live();
            let entry = live.entry(rack.name.clone()).or_default();
            let stale = entry.issued != Some(current) || hb.machine_id != current.1;
            entry.issued = Some(current);
            stale || lease_changed
        };
        let passport = if reissue {
            self.passport(&rack).await?
        } else {
            Bytes::new()
        };
        let (commands, report_full_state, lagging) = {
            let mut live = self.live();
            let entry = live.entry(rack.name.clone()).or_default();
            let gap = entry.last_seq.is_none_or(|last| hb.seq != last + 1);
            entry.last_seq = Some(hb.seq);
            let interval = i64::try_from(self.heartbeat_interval.as_millis()).unwrap_or(i64::MAX);
            let lagging = entry.pushed_at.is_none_or(|at| now - at >= 2 * interval);
            (
                std::mem::take(&mut entry.commands),
                gap && !hb.full_state,
                lagging,
            )
        };
        // A rack that runs something else than it was asked, and has not been pushed to
        // lately, gets the active scenario again (a push it missed while away, or one sent
        // before it listened). Not in a beat that changes its passport: it takes pushes only
        // once it knows it is active.
        if rack.status == RackStatus::Active && lagging && !reissue {
            let row = self.row(&rack.name).await?;
            let asked = if row.asked_hash.is_empty() {
                None
            } else {
                Some(row.asked_hash)
            };
            if asked.as_deref() != Some(hb.applied_hash.as_str()) && row.status != "failed" {
                self.push_active(&rack).await?;
            }
        }
        let status = match rack.status {
            RackStatus::Inactive => "inactive",
            other => other.as_str(),
        };
        let mut reply = HeartbeatReply {
            status: status.to_owned(),
            command: commands.first().cloned().unwrap_or_default(),
            passport,
            commands,
            report_full_state,
            signature: Bytes::new(),
        };
        self.key.sign(&mut reply)?;
        Ok(Some((reply, rack.machine_id.unwrap_or(0))))
    }

    async fn on_status(self: Arc<Self>, msg: Message) {
        if let Err(e) = self.status(&msg).await {
            tracing::warn!(error = %e, "Could not record a push status.");
        }
    }

    async fn status(&self, msg: &Message) -> Result<(), MixerError> {
        let Ok(status) = PushStatus::from_message(&msg.payload) else {
            self.counters.add("bad_status");
            return Ok(());
        };
        if snake::token("rack name", &status.name).is_err() {
            self.counters.add("bad_status");
            return Ok(());
        }
        let _guard = self.lock_rack(&status.name).await;
        let Some(mut rack) = self
            .store
            .rack_by_name(&status.name)
            .await?
            .filter(|r| secret::verify(&status.secret, &r.secret_hash))
        else {
            self.counters.add("bad_secret");
            return Ok(());
        };
        let mut row = self.row(&rack.name).await?;
        if !row.asked_hash.is_empty() && row.asked_hash != status.hash {
            // About an older push: what runs still counts.
            row.applied_hash.clone_from(&status.running_hash);
        } else {
            row.status.clone_from(&status.status);
            row.error.clone_from(&status.error);
            row.applied_hash.clone_from(&status.running_hash);
        }
        row.updated_at = self.clock.now();
        self.store.put_convergence(&row).await?;
        if status.status == "failed" {
            tracing::warn!(rack = %rack.name, hash = %status.hash, error = %status.error, "A rack failed to apply its scenario.");
        }
        rack.applied_hash.clone_from(&status.running_hash);
        self.store.update_rack(&rack).await?;
        Ok(())
    }

    /// Marks racks whose heartbeats stopped `offline`, every heartbeat interval.
    async fn sweep(self: Arc<Self>) {
        let mut ticker = tokio::time::interval(self.heartbeat_interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let window = i64::try_from(self.heartbeat_interval.as_millis())
            .unwrap_or(i64::MAX)
            .saturating_mul(i64::from(self.missed_heartbeats));
        loop {
            ticker.tick().await;
            let now = self.clock.now();
            let racks = match self.store.racks().await {
                Ok(r) => r,
                Err(e) => {
                    tracing::warn!(error = %e, "Could not read the racks for liveness.");
                    continue;
                }
            };
            for rack in racks {
                if rack.status != RackStatus::Active || now - rack.last_seen <= window {
                    continue;
                }
                let _guard = self.lock_rack(&rack.name).await;
                let Ok(Some(mut rack)) = self.store.rack_by_name(&rack.name).await else {
                    continue;
                };
                if rack.status == RackStatus::Active && now - rack.last_seen > window {
                    rack.status = RackStatus::Offline;
                    tracing::warn!(rack = %rack.name, "A rack missed its heartbeats: offline.");
                    if let Err(e) = self.store.update_rack(&rack).await {
                        tracing::warn!(error = %e, "Could not mark a rack offline.");
                    }
                }
            }
        }
    }
}

/// A new random id: 32 hex characters.
fn new_id() -> Result<String, MixerError> {
    use rand::TryRng as _;
    let mut bytes = [0u8; 16];
    rand::rngs::SysRng
        .try_fill_bytes(&mut bytes)
        .map_err(|e| MixerError::Key {
            path: PathBuf::new(),
            reason: e.to_string(),
        })?;
    Ok(secret::hex(&bytes))
}

/// A scenario's canonical text: line endings as `\n`, no trailing spaces, one final newline.
pub(crate) fn canonical(yaml: &str) -> String {
    let mut out = String::with_capacity(yaml.len() + 1);
    for line in yaml.lines() {
        out.push_str(line.trim_end());
        out.push('\n');
    }
    while out.ends_with("\n\n") {
        out.pop();
    }
    out
}

/// SHA-256 of `text`, in hex.
pub(crate) fn hash(text: &str) -> String {
    secret::hex(&Sha256::digest(text.as_bytes()))
}

fn is_semver(v: &str) -> bool {
    let core = v.split(['-', '+']).next().unwrap_or_default();
    let parts: Vec<&str> = core.split('.').collect();
    parts.len() == 3
        && parts
            .iter()
            .all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()))
}

fn semver_key(v: &str) -> (u64, u64, u64, bool) {
    let core = v.split(['-', '+']).next().unwrap_or_default();
    let mut n = core.split('.').map(|p| p.parse::<u64>().unwrap_or(0));
    let release = !v.contains('-');
    (
        n.next().unwrap_or(0),
        n.next().unwrap_or(0),
        n.next().unwrap_or(0),
        release,
    )
}
