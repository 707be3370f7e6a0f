//! [`MixerBuilder`]: what a mixer is made of, and how it starts.

use std::collections::HashMap;
use std::ops::RangeInclusive;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use snake::{Message, Pattern, Snake, Subject};
use tokio::task::JoinHandle;

use super::{Counters, Inner, Mixer, QUEUE_GROUP, new_id};
use crate::limit::HelloLimits;
use crate::store::Store;
use crate::{Clock, MixerError, SystemClock, keys};

/// Store settings the mixer keeps about itself.
const SETTING_PUBLIC_KEY: &str = "cluster.public_key";
const SETTING_MIXER_ID: &str = "mixer.id";

/// How a mixer is put together; [`Mixer::builder`] starts one with the defaults. Its
/// `Debug` hides the bootstrap secret.
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

impl std::fmt::Debug for MixerBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MixerBuilder")
            .field("data_dir", &self.data_dir)
            .field("store", &self.store)
            .field("snake", &self.snake)
            .field("clock", &self.clock)
            .field("factory", &self.factory)
            .field(
                "bootstrap_secret",
                &redacted(self.bootstrap_secret.as_deref()),
            )
            .field("auto_adopt", &self.auto_adopt)
            .field("heartbeat_interval", &self.heartbeat_interval)
            .field("missed_heartbeats", &self.missed_heartbeats)
            .field("machine_ids", &self.machine_ids)
            .field("lease_ttl", &self.lease_ttl)
            .field("hello_rate", &self.hello_rate)
            .field("hello_global_rate", &self.hello_global_rate)
            .finish()
    }
}

/// A secret as `Debug` shows it: whether there is one, not what it is.
pub(super) fn redacted(secret: Option<&str>) -> Option<std::fmt::Arguments<'static>> {
    secret.map(|_| format_args!("<redacted>"))
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

    /// How often racks heartbeat (10 s by default, 1 ms at least); a rack silent for `missed`
    /// intervals (3 by default, 1 at least) is `offline`.
    #[must_use]
    pub fn heartbeat_interval(mut self, interval: Duration, missed: u32) -> MixerBuilder {
        // The liveness sweep ticks at this interval, and a timer cannot tick every 0 s.
        self.heartbeat_interval = interval.max(Duration::from_millis(1));
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
        let (convergence, convergence_queue) = super::seen::ConvergenceWriter::new();
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
            targets: Mutex::new(None),
            scenario: Mutex::new(None),
            active_hash: Mutex::new(None),
            seen: super::seen::Unflushed::default(),
            convergence,
            listing: super::listing::Cache::default(),
            counters: Counters::default(),
        });
        // Heartbeats wait in a bounded queue (see `heartbeat.rs`).
        let heartbeats = inner
            .snake
            .subscribe_queue(Pattern::from(Subject::heartbeat()), QUEUE_GROUP)
            .await?;
        let tasks = vec![
            spawn_loop(
                Arc::clone(&inner),
                Subject::hello(),
                |inner, msg| async move { inner.on_hello(msg).await },
            )
            .await?,
            super::heartbeat::spawn_heartbeats(Arc::clone(&inner), heartbeats),
            spawn_loop(
                Arc::clone(&inner),
                Subject::status(),
                |inner, msg| async move { inner.on_status(msg).await },
            )
            .await?,
            tokio::spawn(Arc::clone(&inner).sweep()),
            tokio::spawn(Arc::clone(&inner).flusher()),
            tokio::spawn(Arc::clone(&inner).write_convergence(convergence_queue)),
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
        .subscribe_queue(Pattern::from(subject.clone()), QUEUE_GROUP)
        .await?;
    Ok(tokio::spawn(async move {
        while let Some(msg) = sub.next().await {
            tokio::spawn(handle(Arc::clone(&inner), msg));
        }
        // `stop` aborts this task first: the transport ended the subscription.
        tracing::error!(subject = %subject, "The mixer stopped answering on a subject: its subscription ended.");
    }))
}
