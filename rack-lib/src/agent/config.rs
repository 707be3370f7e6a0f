//! [`AgentConfig`]: who the rack is, where it keeps its state, how often it talks.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use gears::Factory;

use crate::Limits;
use crate::passport::ClusterPublic;

/// The bootstrap secret a rack presents at first contact unless configured otherwise: the
/// reference's default, which the mixer's default matches. Set your own in production.
pub const DEFAULT_BOOTSTRAP_SECRET: &str = "fluxrig";

/// What the embedding application does with a `log_level:<level>` command.
type LogLevelHook = Arc<dyn Fn(&str) + Send + Sync>;

/// The settings of an [`Agent`](super::Agent).
///
/// ```
/// use std::time::Duration;
/// use rack_lib::agent::AgentConfig;
///
/// let config = AgentConfig::new("edge-1", "/var/lib/fluxrig/edge-1")
///     .bootstrap_secret("s3cret")
///     .label("region", "east")
///     .heartbeat_interval(Duration::from_secs(5))
///     .on_log_level(|level| eprintln!("log level {level}"));
/// assert_eq!(config.name(), "edge-1");
/// ```
#[derive(Clone)]
pub struct AgentConfig {
    pub(super) name: String,
    pub(super) state_dir: PathBuf,
    pub(super) bootstrap_secret: String,
    pub(super) labels: BTreeMap<String, String>,
    pub(super) version: String,
    pub(super) heartbeat_interval: Duration,
    pub(super) enrollment_interval: Duration,
    pub(super) reply_timeout: Duration,
    pub(super) cluster_key: Option<ClusterPublic>,
    pub(super) on_log_level: Option<LogLevelHook>,
    pub(super) factory: Factory,
    pub(super) limits: Limits,
    pub(super) telemetry_interval: Duration,
    pub(super) telemetry_rate: (f64, f64),
    pub(super) hop_sampling: u64,
}

impl fmt::Debug for AgentConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AgentConfig")
            .field("name", &self.name)
            .field("state_dir", &self.state_dir)
            .field(
                "bootstrap_secret",
                &format_args!("<{} bytes redacted>", self.bootstrap_secret.len()),
            )
            .field("labels", &self.labels)
            .field("version", &self.version)
            .field("heartbeat_interval", &self.heartbeat_interval)
            .field("enrollment_interval", &self.enrollment_interval)
            .field("reply_timeout", &self.reply_timeout)
            .field("cluster_key", &self.cluster_key)
            .field("on_log_level", &self.on_log_level.is_some())
            .field("factory", &self.factory)
            .field("limits", &self.limits)
            .field("telemetry_interval", &self.telemetry_interval)
            .field("telemetry_rate", &self.telemetry_rate)
            .field("hop_sampling", &self.hop_sampling)
            .finish()
    }
}

impl AgentConfig {
    /// The agent of the rack `name`, keeping its passport and last good scenario in
    /// `state_dir` (created if missing; keep it the rack's alone).
    ///
    /// Defaults: the bootstrap secret [`DEFAULT_BOOTSTRAP_SECRET`], no labels, this crate's
    /// version, a heartbeat every 10 s, an enrollment attempt every 2 s, 2 s to wait for an
    /// answer, the cluster key pinned at first enrollment, the built-in gear catalog,
    /// default [`Limits`], telemetry every 5 s and the hops of one message in 100.
    pub fn new(name: &str, state_dir: impl Into<PathBuf>) -> AgentConfig {
        AgentConfig {
            name: name.to_owned(),
            state_dir: state_dir.into(),
            bootstrap_secret: DEFAULT_BOOTSTRAP_SECRET.to_owned(),
            labels: BTreeMap::new(),
            version: env!("CARGO_PKG_VERSION").to_owned(),
            heartbeat_interval: Duration::from_secs(10),
            enrollment_interval: Duration::from_secs(2),
            reply_timeout: Duration::from_secs(2),
            cluster_key: None,
            on_log_level: None,
            factory: Factory::builtin(),
            limits: Limits::default(),
            telemetry_interval: super::telemetry::DEFAULT_INTERVAL,
            telemetry_rate: (2.0, 10.0),
            hop_sampling: 100,
        }
    }

    /// The rack's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The state directory.
    pub fn state_dir(&self) -> &Path {
        &self.state_dir
    }

    /// The secret presented at first contact, before the rack holds a passport.
    #[must_use]
    pub fn bootstrap_secret(mut self, secret: impl Into<String>) -> AgentConfig {
        self.bootstrap_secret = secret.into();
        self
    }

    /// Adds a label the rack reports in its hello (`config.labels`), for label selectors.
    #[must_use]
    pub fn label(mut self, key: impl Into<String>, value: impl Into<String>) -> AgentConfig {
        self.labels.insert(key.into(), value.into());
        self
    }

    /// Replaces every label.
    #[must_use]
    pub fn labels(mut self, labels: BTreeMap<String, String>) -> AgentConfig {
        self.labels = labels;
        self
    }

    /// The software version the rack reports (default: this crate's).
    #[must_use]
    pub fn version(mut self, version: impl Into<String>) -> AgentConfig {
        self.version = version.into();
        self
    }

    /// How often the rack heartbeats once enrolled (default 10 s; more than zero).
    #[must_use]
    pub fn heartbeat_interval(mut self, interval: Duration) -> AgentConfig {
        self.heartbeat_interval = interval;
        self
    }

    /// How often an unanswered hello is sent again, with up to a fifth more or less of
    /// jitter (default 2 s; more than zero). After `denied` the agent waits five times this.
    #[must_use]
    pub fn enrollment_interval(mut self, interval: Duration) -> AgentConfig {
        self.enrollment_interval = interval;
        self
    }

    /// How long the agent waits for the answer to a hello or a heartbeat (default 2 s; more
    /// than zero). A heartbeat unanswered in this time counts as missed.
    #[must_use]
    pub fn reply_timeout(mut self, timeout: Duration) -> AgentConfig {
        self.reply_timeout = timeout;
        self
    }

    /// Trusts only this cluster key, instead of pinning the key of the first passport
    /// (trust on first use).
    #[must_use]
    pub fn cluster_key(mut self, key: ClusterPublic) -> AgentConfig {
        self.cluster_key = Some(key);
        self
    }

    /// What to do with a `log_level:<level>` command from the mixer (the agent logs it
    /// either way); `hook` gets the level's text (`debug`, `info`…).
    #[must_use]
    pub fn on_log_level(mut self, hook: impl Fn(&str) + Send + Sync + 'static) -> AgentConfig {
        self.on_log_level = Some(Arc::new(hook));
        self
    }

    /// The gear catalog scenarios are validated against and gears built from (default: the
    /// built-in one).
    #[must_use]
    pub fn factory(mut self, factory: Factory) -> AgentConfig {
        self.factory = factory;
        self
    }

    /// How often the rack publishes telemetry on `flux.telemetry.>` (default 5 s;
    /// [`Duration::ZERO`] publishes none). See [`telemetry`](super::telemetry).
    #[must_use]
    pub fn telemetry_interval(mut self, interval: Duration) -> AgentConfig {
        self.telemetry_interval = interval;
        self
    }

    /// The token bucket of telemetry publishes: `per_second` on average, at most `burst` at
    /// once (default 2 and 10). What it refuses is dropped and counted, never queued.
    #[must_use]
    pub fn telemetry_rate(mut self, per_second: f64, burst: f64) -> AgentConfig {
        self.telemetry_rate = (per_second, burst);
        self
    }

    /// Sends the hops of one message in `one_in` with the telemetry (default 100; 0 sends
    /// none), chosen by a hash of the message id so that every rack samples the same
    /// messages and a sampled message's whole path can be shown. Samples beyond what one
    /// telemetry batch holds are dropped and counted.
    #[must_use]
    pub fn hop_sampling(mut self, one_in: u64) -> AgentConfig {
        self.hop_sampling = one_in;
        self
    }

    /// The engine's limits; `drain_timeout` also bounds the rack's shutdown.
    #[must_use]
    pub fn limits(mut self, limits: Limits) -> AgentConfig {
        self.limits = limits;
        self
    }
}
