//! The rack agent: the rack's side of the control protocol with the mixer.
//!
//! An [`Agent`] enrolls the rack, heartbeats, takes the scenarios the mixer pushes and runs
//! them in a [`Rack`](crate::Rack) it owns, keeping its passport and its last good scenario in
//! a state directory so that it can start again without the mixer. Every message is a
//! [`fluxmsg::system`] payload sent as the `data` of a fluxMsg
//! ([`Payload::to_message`](fluxmsg::system::Payload::to_message)).
//!
//! # Protocol
//!
//! 1. **Enrollment.** The agent subscribes to `flux.agent.enrollment.<name>.<nonce>` (a new
//!    16-hex-digit nonce per attempt) and publishes a [`Hello`](fluxmsg::system::Hello) on
//!    `flux.agent.hello`: its name, the nonce, the machine id and secret of its passport (or
//!    0 and the bootstrap secret), its version and `config.labels`. It waits
//!    [`reply_timeout`](AgentConfig::reply_timeout) for an
//!    [`EnrollmentReply`](fluxmsg::system::EnrollmentReply), and tries again every
//!    [`enrollment_interval`](AgentConfig::enrollment_interval), with jitter. `active`,
//!    `pending` and `inactive` carry a passport; the rack's status is the passport's. `denied`
//!    drops the saved passport (the next hello presents the bootstrap secret) and retries
//!    five times slower; `conflict` ends the agent with [`AgentError::Conflict`].
//! 2. **Pinning.** Without a [`cluster_key`](AgentConfig::cluster_key), the agent pins the
//!    `mixer_pub` of the first passport it gets (trust on first use) and from then on
//!    refuses every passport, push and heartbeat reply another key signed.
//! 3. **Heartbeats.** Once enrolled, every
//!    [`heartbeat_interval`](AgentConfig::heartbeat_interval) the agent sends a
//!    [`Heartbeat`](fluxmsg::system::Heartbeat) as a request on `flux.agent.heartbeat`: `seq`
//!    from 1, the hash of the scenario that runs, per-gear `health` (`ok` or `not running`;
//!    all of it when `full_state`, else only the entries that changed) and per-gear counters
//!    in `stats.gears` (always all of them). `full_state` is set on the first heartbeat, after
//!    one went unanswered, when the set of gears changed, and when the mixer asked for it. The
//!    signed [`HeartbeatReply`](fluxmsg::system::HeartbeatReply) may carry a renewed
//!    passport and `commands`: `shutdown`, `log_level:<level>`, `suspend` (stop every gear,
//!    keep heartbeating), `resume` (run the last good scenario again).
//! 4. **Pushes.** While the rack is `active` the agent takes
//!    [`ScenarioPush`](fluxmsg::system::ScenarioPush)es on `flux.rack.<name>.scenario`. A
//!    push that the pinned key did not sign, or that names another rack, is logged and
//!    ignored. Every other push is answered on `flux.agent.status` with a
//!    [`PushStatus`](fluxmsg::system::PushStatus) `applying`, then `applied` or `failed`. A
//!    push of the scenario that runs changes nothing. Otherwise the YAML (inline, or read
//!    from `kv://<bucket>/<key>` in a bucket opened with [`scenario_bucket`]) must hash to
//!    the push's `hash`, parse, validate, declare this rack and apply as a diff; `applied`
//!    comes once every gear of the new graph runs. A push that fails after the rack started
//!    changing goes back to the last good scenario, whose hash `running_hash` reports.
//! 5. **Offline start.** With a saved `active` passport whose lease holds, and a saved
//!    scenario whose wires on this rack are all hot, the agent runs that scenario before the
//!    mixer answers. A scenario with a guaranteed or cross-rack wire waits for a push.
//! 6. **Machine ids.** The rack mints message ids under the passport's machine id, as a lease
//!    until `lease_expires_at` (renewed by later passports; `0` means no expiry).
//!
//! # State directory
//!
//! - `rack.flux`: a canonical CBOR map `{ "version": 1, "pinned_key": <32 bytes>,
//!   "passport": <CBOR of the StateEnvelope> }`, `passport` left out after `denied`.
//! - `scenario.flux`: the last good [`ScenarioPush`](fluxmsg::system::ScenarioPush) as
//!   canonical CBOR ([`Payload::to_cbor`](fluxmsg::system::Payload::to_cbor)), with the YAML
//!   in `scenario` also when it came from a KV bucket.
//!
//! Each is written to a temporary file in the directory, synced, renamed over the old one,
//! and the directory synced; both are mode 0600 and the directory 0700 on Unix.
//!
//! ```no_run
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), rack_lib::agent::AgentError> {
//! use rack_lib::agent::{Agent, AgentConfig};
//!
//! let config = AgentConfig::new("edge-1", "/var/lib/fluxrig/edge-1").bootstrap_secret("s3cret");
//! let agent = Agent::start(config, snake::Snake::memory()).await?;
//! // Runs until the mixer sends `shutdown` (or `agent.shutdown().await`).
//! agent.run_until_shutdown().await
//! # }
//! ```

mod config;
mod core;
mod error;
mod heartbeat;
mod push;
mod store;
pub mod telemetry;

use tokio::sync::watch;
use tokio::task::JoinHandle;

pub use self::config::{AgentConfig, DEFAULT_BOOTSTRAP_SECRET};
pub use self::error::AgentError;

/// Where the rack stands with the mixer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Enrollment {
    /// No passport accepted yet in this run (the rack may run its saved scenario meanwhile).
    #[default]
    Enrolling,
    /// Known to the mixer, waiting for approval: heartbeats, no pushes.
    Pending,
    /// Approved: the agent takes pushes (the subscription is open once this shows).
    Active,
    /// Suspended by the mixer: heartbeats, no pushes, no gears.
    Inactive,
    /// The mixer refused the secret; the agent keeps trying with the bootstrap secret.
    Denied,
}

impl Enrollment {
    /// The status text of a passport or reply; `None` for one the agent does not know.
    fn parse(status: &str) -> Option<Enrollment> {
        Some(match status {
            "pending" => Enrollment::Pending,
            "active" => Enrollment::Active,
            "inactive" => Enrollment::Inactive,
            "denied" => Enrollment::Denied,
            _ => return None,
        })
    }
}

/// How the last push ended.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum PushOutcome {
    /// It runs (or already ran).
    Applied,
    /// It was refused or failed; the text is what `PushStatus.error` said.
    Failed(String),
}

/// The last push the agent answered.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct PushReport {
    /// The push's hash.
    pub hash: String,
    /// How it ended.
    pub outcome: PushOutcome,
}

/// What an agent is doing, as [`Agent::status`] shows it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct AgentStatus {
    /// Where the rack stands with the mixer.
    pub enrollment: Enrollment,
    /// The machine id of the passport (0 without one).
    pub machine_id: u16,
    /// The hash of the scenario that runs (empty when none does).
    pub running_hash: String,
    /// Whether the mixer suspended the rack's gears.
    pub suspended: bool,
    /// The last push answered.
    pub last_push: Option<PushReport>,
    /// Heartbeats sent in this run (the last `seq`).
    pub heartbeats: u64,
    /// Heartbeats that got no valid answer.
    pub missed_heartbeats: u64,
}

/// The agent's status now and its changes.
#[derive(Debug, Clone)]
pub struct StatusWatch(watch::Receiver<AgentStatus>);

impl StatusWatch {
    /// The status now.
    #[must_use]
    pub fn current(&self) -> AgentStatus {
        self.0.borrow().clone()
    }

    /// Waits for a change after the last one this watch returned, and returns the status
    /// then; `None` once the agent has ended.
    pub async fn changed(&mut self) -> Option<AgentStatus> {
        self.0.changed().await.ok()?;
        Some(self.0.borrow_and_update().clone())
    }

    /// Waits until the status satisfies `cond`, and returns it; `None` if the agent ends
    /// first.
    pub async fn wait_for(
        &mut self,
        mut cond: impl FnMut(&AgentStatus) -> bool,
    ) -> Option<AgentStatus> {
        self.0.wait_for(|s| cond(s)).await.ok().map(|s| s.clone())
    }
}

/// Reads an agent's latest counters; see [`Agent::metrics_handle`].
#[derive(Debug, Clone)]
pub struct MetricsHandle(watch::Receiver<telemetry::MetricsSnapshot>);

impl MetricsHandle {
    /// The counters as of the agent's last heartbeat or telemetry tick.
    pub fn get(&self) -> telemetry::MetricsSnapshot {
        self.0.borrow().clone()
    }
}

/// A running agent: a task that enrolls, heartbeats and applies pushes to its own rack.
///
/// Dropping the handle stops the agent as [`Agent::shutdown`] does, without waiting for it.
#[derive(Debug)]
pub struct Agent {
    stop: watch::Sender<bool>,
    status: watch::Receiver<AgentStatus>,
    metrics: watch::Receiver<telemetry::MetricsSnapshot>,
    task: JoinHandle<Result<(), AgentError>>,
}

impl Agent {
    /// Starts the agent of `config.name()` on `snake`: reads the state directory, then spawns
    /// the task that runs the saved scenario if it can run offline, enrolls, heartbeats and
    /// takes pushes.
    ///
    /// # Errors
    ///
    /// [`AgentError::Name`] for a name that cannot go into a subject, [`AgentError::Config`]
    /// for a zero interval, [`AgentError::Io`] when the state directory cannot be created or
    /// read, [`AgentError::BadState`] or [`AgentError::BadPassport`] for a state file the agent
    /// cannot trust.
    pub async fn start(config: AgentConfig, snake: snake::Snake) -> Result<Agent, AgentError> {
        let (stop, stop_rx) = watch::channel(false);
        let (status_tx, status) = watch::channel(AgentStatus::default());
        let (metrics_tx, metrics) = watch::channel(telemetry::MetricsSnapshot {
            rack: config.name.clone(),
            ..telemetry::MetricsSnapshot::default()
        });
        let core = core::Core::load(config, snake, stop_rx, status_tx, metrics_tx)?;
        let task = tokio::spawn(core.run());
        Ok(Agent {
            stop,
            status,
            metrics,
            task,
        })
    }

    /// The rack's per-gear counters as of its last heartbeat or telemetry tick (for a
    /// `/metrics` of its own: [`telemetry::write_prometheus`]).
    pub fn metrics(&self) -> telemetry::MetricsSnapshot {
        self.metrics.borrow().clone()
    }

    /// A handle that reads [`Agent::metrics`] from elsewhere (a metrics endpoint's task),
    /// without keeping the agent alive.
    pub fn metrics_handle(&self) -> MetricsHandle {
        MetricsHandle(self.metrics.clone())
    }

    /// The agent's status and its changes.
    pub fn status(&self) -> StatusWatch {
        StatusWatch(self.status.clone())
    }

    /// Stops the agent: the rack drains and stops (within its `drain_timeout`), and the task
    /// ends.
    ///
    /// # Errors
    ///
    /// What ended the agent before, if something did ([`AgentError::Conflict`] …).
    pub async fn shutdown(self) -> Result<(), AgentError> {
        let _ = self.stop.send(true);
        self.run_until_shutdown().await
    }

    /// Waits until the agent ends: the mixer sent `shutdown`, or something ended it.
    ///
    /// # Errors
    ///
    /// [`AgentError::Conflict`] when the mixer refused the name, [`AgentError::Bus`] when the
    /// transport closed, [`AgentError::Task`] when the task panicked.
    pub async fn run_until_shutdown(self) -> Result<(), AgentError> {
        let Agent { stop, task, .. } = self;
        let result = task.await;
        drop(stop);
        result.unwrap_or_else(|e| Err(AgentError::Task(e.to_string())))
    }
}

/// The configuration of a KV bucket that holds pushed scenarios too large for a push
/// (`location: kv://<bucket>/<key>`): values up to [`MAX_YAML_BYTES`]. The mixer writes with
/// the same configuration, so that both open the same bucket.
///
/// [`MAX_YAML_BYTES`]: crate::scenario::MAX_YAML_BYTES
///
/// # Errors
///
/// A bucket name snake refuses.
pub fn scenario_bucket(bucket: &str) -> Result<snake::KvConfig, snake::Error> {
    Ok(snake::KvConfig::new(bucket)?.max_value_size(crate::scenario::MAX_YAML_BYTES))
}
