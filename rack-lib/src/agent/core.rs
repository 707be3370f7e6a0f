//! The agent's task: its state, the main loop, enrollment and passports.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use fluxmsg::system::{
    EnrollmentReply, Hello, Payload as _, RackState, ScenarioPush, StateEnvelope,
};
use fluxmsg::{Map, Value};
use snake::{Message, Pattern, Snake, Subject};
use tokio::sync::watch;
use tokio::time::{Interval, MissedTickBehavior};

use super::store::{Identity, Store};
use super::{AgentConfig, AgentError, AgentStatus, Enrollment};
use crate::passport::ClusterPublic;
use crate::scenario::{Lane, RackPlan, Validated};
use crate::{Graph, Rack};

/// Whether the agent goes on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Flow {
    Continue,
    Stop,
}

/// How one hello ended.
enum Attempt {
    /// A passport was accepted: enrolled.
    Enrolled,
    /// No usable answer: try again.
    Retry,
    /// `denied`: try again, slowly.
    Denied,
    /// The agent was asked to stop.
    Stop,
}

/// What woke the main loop.
enum Event {
    Stop,
    Tick,
    Telemetry,
    Push(Option<Message>),
    /// The mixer's answer to the heartbeat in flight, or why none came.
    Reply(Result<Message, snake::Error>),
}

/// A heartbeat's request to the mixer, in a task of its own (it ends by its timeout), awaited
/// beside the agent's other events so that a slow mixer delays nothing but the next
/// heartbeat.
pub(super) type InFlight = tokio::task::JoinHandle<Result<Message, snake::Error>>;

/// A passport that verified against the pinned key.
#[derive(Debug)]
pub(super) struct Passport {
    pub(super) envelope: StateEnvelope,
    pub(super) state: RackState,
}

/// The last good scenario: the push (with its YAML) and what it validated to.
#[derive(Debug)]
pub(super) struct Good {
    pub(super) push: ScenarioPush,
    pub(super) validated: Validated,
}

/// The rack and the id generator it mints with.
#[derive(Debug)]
pub(super) struct RackSlot {
    pub(super) rack: Rack,
    pub(super) ids: idgen::Generator,
    pub(super) machine_id: u16,
}

/// Everything the agent's task owns.
#[derive(Debug)]
pub(super) struct Core {
    pub(super) cfg: AgentConfig,
    pub(super) snake: Snake,
    pub(super) store: Store,
    pub(super) pinned: Option<ClusterPublic>,
    pub(super) passport: Option<Passport>,
    pub(super) rack: Option<RackSlot>,
    pub(super) good: Option<Good>,
    /// Whether the rack runs `good` (false while suspended, or after a failure with no
    /// earlier scenario).
    pub(super) runs_good: bool,
    pub(super) suspended: bool,
    pub(super) enrollment: Enrollment,
    pub(super) pushes: Option<snake::Subscription>,
    /// The heartbeat waiting for its reply, if one is.
    pub(super) in_flight: Option<InFlight>,
    /// The last heartbeat's `seq`.
    pub(super) seq: u64,
    /// Whether the next heartbeat carries the full state.
    pub(super) full_next: bool,
    /// The health the mixer was last sent.
    pub(super) sent_health: BTreeMap<String, String>,
    /// What telemetry published and dropped.
    pub(super) telemetry: super::telemetry::TelemetryStats,
    pub(super) telemetry_bucket: super::telemetry::Bucket,
    /// The hop sampler every rack of this agent gets (`None`: no sampling), and the task
    /// that publishes its samples.
    pub(super) hops: Option<(crate::HopSampler, super::telemetry::HopsTask)>,
    /// The latest counters, for [`Agent::metrics`](super::Agent::metrics).
    pub(super) metrics: watch::Sender<super::telemetry::MetricsSnapshot>,
    stop: watch::Receiver<bool>,
    pub(super) status: watch::Sender<AgentStatus>,
}

impl Core {
    /// Checks the configuration and reads the state directory.
    pub(super) fn load(
        cfg: AgentConfig,
        snake: Snake,
        stop: watch::Receiver<bool>,
        status: watch::Sender<AgentStatus>,
        metrics: watch::Sender<super::telemetry::MetricsSnapshot>,
    ) -> Result<Core, AgentError> {
        snake::token("rack name", &cfg.name).map_err(AgentError::Name)?;
        if cfg.heartbeat_interval.is_zero()
            || cfg.enrollment_interval.is_zero()
            || cfg.reply_timeout.is_zero()
        {
            return Err(AgentError::Config(
                "heartbeat_interval, enrollment_interval and reply_timeout must be more than zero",
            ));
        }
        let store = Store::open(&cfg.state_dir)?;
        let identity = store.load_identity()?;
        let pinned = match (cfg.cluster_key, identity.pinned) {
            (Some(configured), Some(saved)) if configured != saved => {
                tracing::warn!(rack = %cfg.name, configured = %configured.to_hex(), pinned = %saved.to_hex(), "The configured cluster key replaces the pinned one.");
                Some(configured)
            }
            (configured, saved) => configured.or(saved),
        };
        let path = store.path(super::store::RACK_FILE);
        let passport = match (identity.passport, pinned) {
            (None, _) => None,
            (Some(_), None) => {
                return Err(AgentError::BadState {
                    path,
                    reason: "a passport without a pinned key".to_owned(),
                });
            }
            (Some(envelope), Some(key)) => {
                let state = key
                    .open(&envelope)
                    .map_err(|source| AgentError::BadPassport {
                        path: path.clone(),
                        source,
                    })?;
                if state.name != cfg.name {
                    return Err(AgentError::BadState {
                        path,
                        reason: format!("the passport is rack {:?}'s", state.name),
                    });
                }
                Some(Passport { envelope, state })
            }
        };
        let good = match store.load_scenario() {
            Ok(Some(push)) => match prepare(&cfg, &push.scenario, &push.hash) {
                Ok(validated) if push.rack_name == cfg.name => Some(Good { push, validated }),
                Ok(_) => {
                    tracing::warn!(rack = %cfg.name, other = %push.rack_name, "Saved scenario is another rack's; ignored.");
                    None
                }
                Err(e) => {
                    tracing::warn!(rack = %cfg.name, error = %e, "Saved scenario ignored.");
                    None
                }
            },
            Ok(None) => None,
            Err(e) => {
                tracing::warn!(rack = %cfg.name, error = &e as &dyn std::error::Error, "Saved scenario ignored.");
                None
            }
        };
        let cfg_rate = cfg.telemetry_rate;
        let cfg_sampling = if cfg.telemetry_interval.is_zero() {
            0
        } else {
            cfg.hop_sampling
        };
        let hops = (cfg_sampling > 0)
            .then(|| super::telemetry::HopsTask::start(&cfg, &snake, cfg_sampling));
        let core = Core {
            cfg,
            snake,
            store,
            pinned,
            passport,
            rack: None,
            good,
            runs_good: false,
            suspended: false,
            enrollment: Enrollment::Enrolling,
            pushes: None,
            in_flight: None,
            seq: 0,
            full_next: true,
            sent_health: BTreeMap::new(),
            telemetry: super::telemetry::TelemetryStats::default(),
            telemetry_bucket: super::telemetry::Bucket::new(cfg_rate.0, cfg_rate.1),
            hops,
            metrics,
            stop,
            status,
        };
        core.publish_status();
        Ok(core)
    }

    /// The task: offline start, enrollment, then heartbeats and pushes until stopped.
    pub(super) async fn run(mut self) -> Result<(), AgentError> {
        self.offline_start().await;
        let result = self.drive().await;
        if let Some(request) = self.in_flight.take() {
            request.abort();
        }
        if let Err(e) = &result {
            tracing::error!(rack = %self.cfg.name, error = e as &dyn std::error::Error, "Agent stopped.");
        }
        self.pushes = None;
        if let Some(slot) = self.rack.take() {
            let stopped = slot.rack.shutdown(self.cfg.limits.drain_timeout).await;
            tracing::info!(rack = %self.cfg.name, drained = stopped.drained, "Rack stopped.");
        }
        self.runs_good = false;
        self.publish_status();
        if let Some((_, task)) = self.hops.take() {
            task.stop();
        }
        result
    }

    async fn drive(&mut self) -> Result<(), AgentError> {
        if self.enroll().await? == Flow::Stop {
            return Ok(());
        }
        let mut tick = tokio::time::interval(self.cfg.heartbeat_interval);
        tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
        // Zero turns telemetry off: its tick then never comes.
        let every = self.cfg.telemetry_interval;
        let mut telemetry = tokio::time::interval(if every.is_zero() {
            Duration::from_secs(u64::from(u32::MAX))
        } else {
            every
        });
        telemetry.set_missed_tick_behavior(MissedTickBehavior::Skip);
        telemetry.tick().await;
        loop {
            match self.next_event(&mut tick, &mut telemetry).await {
                Event::Stop => return Ok(()),
                Event::Telemetry => self.publish_telemetry().await,
                Event::Tick => {
                    self.metrics.send_replace(self.snapshot());
                    self.heartbeat().await?;
                }
                Event::Reply(reply) => {
                    if self.on_heartbeat_reply(reply).await? == Flow::Stop {
                        return Ok(());
                    }
                }
                Event::Push(Some(msg)) => self.on_push(msg).await,
                Event::Push(None) => {
                    tracing::warn!(rack = %self.cfg.name, "Push subscription ended; subscribing again.");
                    self.pushes = None;
                    self.sync_pushes().await?;
                }
            }
        }
    }

    async fn next_event(&mut self, tick: &mut Interval, telemetry: &mut Interval) -> Event {
        let pushes = &mut self.pushes;
        tokio::select! {
            biased;
            () = stopped(&mut self.stop) => Event::Stop,
            reply = reply_of(&mut self.in_flight) => Event::Reply(reply),
            _ = tick.tick() => Event::Tick,
            _ = telemetry.tick() => Event::Telemetry,
            msg = next_push(pushes) => Event::Push(msg),
        }
    }

    /// Runs the saved scenario before the mixer answers, when it can run offline: the saved
    /// passport is active, its lease holds, and every wire on this rack is hot.
    async fn offline_start(&mut self) {
        let (Some(passport), Some(good)) = (&self.passport, &self.good) else {
            return;
        };
        if passport.state.status != "active" {
            return;
        }
        let hash = good.push.hash.clone();
        if !hot_only(&good.validated.plan(&self.cfg.name), &self.cfg.name) {
            tracing::info!(rack = %self.cfg.name, hash = %hash, "Saved scenario has guaranteed or cross-rack wires; it waits for the mixer.");
            return;
        }
        match self.run_good().await {
            Ok(()) => {
                tracing::info!(rack = %self.cfg.name, hash = %hash, "Saved scenario runs offline.");
            }
            Err(e) => {
                tracing::warn!(rack = %self.cfg.name, hash = %hash, error = %e, "Saved scenario not started offline.");
            }
        }
    }

    /// Says hello until a passport is accepted.
    async fn enroll(&mut self) -> Result<Flow, AgentError> {
        loop {
            let wait = match self.hello().await? {
                Attempt::Enrolled => return Ok(Flow::Continue),
                Attempt::Stop => return Ok(Flow::Stop),
                Attempt::Retry => jitter(self.cfg.enrollment_interval),
                Attempt::Denied => jitter(self.cfg.enrollment_interval * 5),
            };
            tokio::select! {
                biased;
                () = stopped(&mut self.stop) => return Ok(Flow::Stop),
                () = tokio::time::sleep(wait) => {}
            }
        }
    }

    /// One hello and the wait for its answer.
    async fn hello(&mut self) -> Result<Attempt, AgentError> {
        let name = self.cfg.name.clone();
        let nonce = format!("{:016x}", random_u64());
        let subject = Subject::enrollment(&name, &nonce).map_err(AgentError::Name)?;
        let mut replies = match self.snake.subscribe(Pattern::from(subject)).await {
            Ok(sub) => sub,
            Err(e) => return retry_unless_closed(&name, e),
        };
        let (machine_id, secret) = match &self.passport {
            Some(p) => (p.state.machine_id, p.state.secret.clone()),
            None => (0, self.cfg.bootstrap_secret.clone()),
        };
        let labels: Map<Value> = self
            .cfg
            .labels
            .iter()
            .map(|(k, v)| (k.as_str(), Value::from(v.as_str())))
            .collect();
        let mut config = Map::new();
        config.insert("labels", Value::Map(labels));
        let hello = Hello {
            name: name.clone(),
            nonce,
            machine_id,
            secret,
            version: self.cfg.version.clone(),
            config,
            ..Hello::default()
        };
        let bytes = match hello.to_message() {
            Ok(bytes) => bytes,
            Err(e) => {
                tracing::warn!(rack = %name, error = %e, "Hello cannot be encoded.");
                return Ok(Attempt::Retry);
            }
        };
        if let Err(e) = self
            .snake
            .publish(Message::new(Subject::hello(), bytes))
            .await
        {
            return retry_unless_closed(&name, e);
        }
        let deadline = tokio::time::Instant::now() + self.cfg.reply_timeout;
        loop {
            let next = tokio::select! {
                biased;
                () = stopped(&mut self.stop) => return Ok(Attempt::Stop),
                next = tokio::time::timeout_at(deadline, replies.next()) => next,
            };
            let Ok(Some(msg)) = next else {
                tracing::debug!(rack = %name, "No answer to the hello.");
                return Ok(Attempt::Retry);
            };
            match EnrollmentReply::from_message(&msg.payload) {
                Ok(reply) => return self.on_enrollment_reply(reply).await,
                Err(e) => {
                    tracing::warn!(rack = %name, error = %e, "Enrollment reply does not decode; ignored.");
                }
            }
        }
    }

    async fn on_enrollment_reply(&mut self, reply: EnrollmentReply) -> Result<Attempt, AgentError> {
        let name = self.cfg.name.clone();
        match reply.status.as_str() {
            "conflict" => {
                // Logged once, where the agent ends.
                return Err(AgentError::Conflict {
                    name,
                    message: reply.message,
                });
            }
            "denied" => {
                tracing::error!(rack = %name, message = %reply.message, "The mixer denied the rack's secret; the saved passport is dropped.");
                self.passport = None;
                self.save_identity().await;
                self.enrollment = Enrollment::Denied;
                self.publish_status();
                return Ok(Attempt::Denied);
            }
            _ => {}
        }
        let status = if reply.passport.is_empty() {
            let Some(passport) = &self.passport else {
                tracing::warn!(rack = %name, status = %reply.status, "Enrollment reply without a passport; trying again.");
                return Ok(Attempt::Retry);
            };
            Enrollment::parse(&reply.status).or_else(|| Enrollment::parse(&passport.state.status))
        } else {
            if !self.accept_passport(&reply.passport).await {
                return Ok(Attempt::Retry);
            }
            self.passport
                .as_ref()
                .and_then(|p| Enrollment::parse(&p.state.status))
        };
        let status = status.unwrap_or_else(|| {
            tracing::warn!(rack = %name, status = %reply.status, "Unknown rack status; taken as pending.");
            Enrollment::Pending
        });
        tracing::info!(rack = %name, status = ?status, "Enrolled.");
        self.set_enrollment(status).await?;
        Ok(Attempt::Enrolled)
    }

    /// Verifies a passport (pinning the cluster key on first use), saves it and takes its
    /// lease; `false` when it is refused (logged).
    pub(super) async fn accept_passport(&mut self, bytes: &[u8]) -> bool {
        let name = self.cfg.name.clone();
        let envelope = match StateEnvelope::from_cbor(bytes) {
            Ok(envelope) => envelope,
            Err(e) => {
                tracing::error!(rack = %name, error = %e, "Passport does not decode; refused.");
                return false;
            }
        };
        let key = match self.pinned {
            Some(key) => key,
            None => match RackState::from_cbor(&envelope.payload)
                .map_err(crate::passport::PassportError::from)
                .and_then(|state| ClusterPublic::from_bytes(&state.mixer_pub))
            {
                Ok(key) => key,
                Err(e) => {
                    tracing::error!(rack = %name, error = %e, "Passport carries no usable cluster key; refused.");
                    return false;
                }
            },
        };
        let state = match key.open(&envelope) {
            Ok(state) => state,
            Err(e) => {
                tracing::error!(rack = %name, error = %e, "Passport refused: not signed by the pinned cluster key.");
                return false;
            }
        };
        if state.name != name {
            tracing::error!(rack = %name, passport = %state.name, "Passport refused: it names another rack.");
            return false;
        }
        if self.pinned.is_none() {
            tracing::info!(rack = %name, key = %key.to_hex(), "Cluster key pinned.");
            self.pinned = Some(key);
        }
        self.passport = Some(Passport { envelope, state });
        self.save_identity().await;
        self.take_lease().await;
        self.publish_status();
        true
    }

    /// Saves the pinned key and passport; a failure is logged (the agent goes on with them
    /// in memory).
    async fn save_identity(&self) {
        let identity = Identity {
            pinned: self.pinned,
            passport: self.passport.as_ref().map(|p| p.envelope.clone()),
        };
        if let Err(e) = self.store.save_identity(&identity).await {
            tracing::error!(rack = %self.cfg.name, error = &e as &dyn std::error::Error, "Passport not saved; a restart will enroll again.");
        }
    }

    /// Moves to a new status: `inactive` stops the gears, `active` after `inactive` runs them
    /// again, and pushes are taken while `active`.
    pub(super) async fn set_enrollment(&mut self, status: Enrollment) -> Result<(), AgentError> {
        let before = self.enrollment;
        self.enrollment = status;
        if status == Enrollment::Inactive && before != Enrollment::Inactive {
            self.suspend().await;
        } else if status == Enrollment::Active && before == Enrollment::Inactive {
            self.resume().await;
        }
        self.sync_pushes().await?;
        self.publish_status();
        Ok(())
    }

    /// Opens the push subscription while active, closes it otherwise.
    pub(super) async fn sync_pushes(&mut self) -> Result<(), AgentError> {
        if self.enrollment != Enrollment::Active {
            self.pushes = None;
            return Ok(());
        }
        if self.pushes.is_some() {
            return Ok(());
        }
        let subject = Subject::scenario(&self.cfg.name).map_err(AgentError::Name)?;
        match self.snake.subscribe(Pattern::from(subject)).await {
            Ok(sub) => {
                tracing::info!(rack = %self.cfg.name, "Taking scenario pushes.");
                self.pushes = Some(sub);
            }
            Err(snake::Error::Closed) => return Err(AgentError::Bus(snake::Error::Closed)),
            Err(e) => {
                tracing::warn!(rack = %self.cfg.name, error = %e, "Cannot subscribe to pushes; trying again at the next heartbeat.");
            }
        }
        Ok(())
    }

    /// Stops every gear, keeps heartbeating.
    pub(super) async fn suspend(&mut self) {
        if self.suspended {
            return;
        }
        self.suspended = true;
        self.runs_good = false;
        if let Some(slot) = self.rack.as_mut()
            && let Err(e) = slot.rack.apply(Graph::new()).await
        {
            tracing::error!(rack = %self.cfg.name, error = &e as &dyn std::error::Error, "Gears did not all stop for the suspension.");
        }
        tracing::info!(rack = %self.cfg.name, "Rack suspended.");
        self.publish_status();
    }

    /// Runs the last good scenario again after a suspension.
    pub(super) async fn resume(&mut self) {
        if !self.suspended {
            return;
        }
        self.suspended = false;
        match self.run_good().await {
            Ok(()) => tracing::info!(rack = %self.cfg.name, "Rack resumed."),
            Err(e) => {
                tracing::error!(rack = %self.cfg.name, error = %e, "Rack resumed, but its last good scenario does not run.");
            }
        }
        self.publish_status();
    }

    /// Makes the rack run the last good scenario (nothing if there is none).
    pub(super) async fn run_good(&mut self) -> Result<(), String> {
        let Some(good) = &self.good else {
            return Ok(());
        };
        let graph = Graph::from(&good.validated.plan(&self.cfg.name));
        self.ensure_rack().await?;
        let Some(slot) = self.rack.as_mut() else {
            return Err("no rack".to_owned());
        };
        if let Err(e) = slot.rack.apply(graph).await {
            // Nothing half-started stays.
            let _ = slot.rack.apply(Graph::new()).await;
            self.runs_good = false;
            return Err(chain(&e));
        }
        self.runs_good = true;
        self.publish_status();
        Ok(())
    }

    /// Builds the rack, with ids minted under the passport's machine id and lease, if it
    /// is not built yet (or rebuilds it if the machine id changed).
    pub(super) async fn ensure_rack(&mut self) -> Result<(), String> {
        let Some(passport) = &self.passport else {
            return Err("the rack holds no passport".to_owned());
        };
        let machine_id = passport.state.machine_id;
        if self
            .rack
            .as_ref()
            .is_some_and(|s| s.machine_id != machine_id)
        {
            self.restart_rack().await;
        }
        if self.rack.is_some() {
            return Ok(());
        }
        let Some(passport) = &self.passport else {
            return Err("the rack holds no passport".to_owned());
        };
        let ids = generator(&passport.state, &self.cfg.name)?;
        let mut builder = Rack::builder(&self.cfg.name)
            .factory(self.cfg.factory.clone())
            .snake(self.snake.clone())
            .limits(self.cfg.limits)
            .ids(Arc::new(ids.clone()));
        if let Some((sampler, _)) = &self.hops {
            builder = builder.hop_sampler(sampler.clone());
        }
        let rack = builder.build().map_err(|e| chain(&e))?;
        self.rack = Some(RackSlot {
            rack,
            ids,
            machine_id,
        });
        Ok(())
    }

    /// Stops the rack for good (its gears lose their state); the next `ensure_rack` builds
    /// a new one.
    async fn restart_rack(&mut self) {
        if let Some(slot) = self.rack.take() {
            tracing::warn!(rack = %self.cfg.name, "The passport's machine id changed; the rack restarts under the new one.");
            let _ = slot.rack.shutdown(self.cfg.limits.drain_timeout).await;
            self.runs_good = false;
        }
    }

    /// Takes the lease of a new passport: renews the generator's, or restarts the rack under
    /// a new machine id.
    async fn take_lease(&mut self) {
        let (Some(slot), Some(passport)) = (&self.rack, &self.passport) else {
            return;
        };
        let state = &passport.state;
        if state.machine_id != slot.machine_id {
            let run = self.runs_good && !self.suspended;
            self.restart_rack().await;
            if run && let Err(e) = self.run_good().await {
                tracing::error!(rack = %self.cfg.name, error = %e, "The last good scenario does not run under the new machine id.");
            }
            return;
        }
        if let Some(lease) = lease(state, &self.cfg.name)
            && let Err(e) = slot.ids.renew(&lease)
        {
            tracing::warn!(rack = %self.cfg.name, error = &e as &dyn std::error::Error, "Lease not renewed.");
        }
    }

    /// The hash of the scenario that runs, or empty.
    pub(super) fn running_hash(&self) -> String {
        match &self.good {
            Some(good) if self.runs_good => good.push.hash.clone(),
            _ => String::new(),
        }
    }

    /// Publishes the status watch.
    pub(super) fn publish_status(&self) {
        let running_hash = self.running_hash();
        let machine_id = self.passport.as_ref().map_or(0, |p| p.state.machine_id);
        self.status.send_modify(|s| {
            s.enrollment = self.enrollment;
            s.machine_id = machine_id;
            s.running_hash = running_hash;
            s.suspended = self.suspended;
        });
    }
}

/// Parses, hashes and validates a scenario for this rack.
pub(super) fn prepare(cfg: &AgentConfig, yaml: &[u8], hash: &str) -> Result<Validated, String> {
    let digest = sha256_hex(yaml);
    if !digest.eq_ignore_ascii_case(hash) {
        return Err(format!(
            "hash mismatch: the scenario hashes to {digest}, the push says {hash:?}"
        ));
    }
    let text = std::str::from_utf8(yaml).map_err(|e| format!("the scenario is not UTF-8: {e}"))?;
    let scenario = crate::scenario::Scenario::parse(text)
        .map_err(|e| format!("the scenario does not parse: {e}"))?;
    let validated = scenario
        .validate(&cfg.factory)
        .map_err(|e| format!("the scenario does not validate: {e}"))?;
    if !validated
        .scenario()
        .racks
        .iter()
        .any(|r| r.name == cfg.name)
    {
        return Err(format!(
            "the scenario does not declare rack {:?} in `racks`",
            cfg.name
        ));
    }
    Ok(validated)
}

/// Whether every wire of a rack's plan stays on the rack, on a hot lane.
fn hot_only(plan: &RackPlan, rack: &str) -> bool {
    plan.wires
        .iter()
        .all(|w| w.lane == Lane::Hot && w.from.rack == rack && w.to.rack == rack)
}

/// The passport's lease, if it has an expiry.
fn lease(state: &RackState, rack: &str) -> Option<idgen::Lease> {
    let expires_at = u64::try_from(state.lease_expires_at)
        .ok()
        .filter(|&t| t > 0)?;
    let issuer = if state.mixer_id.is_empty() {
        "mixer"
    } else {
        state.mixer_id.as_str()
    };
    Some(idgen::Lease::new(
        u32::from(state.machine_id),
        rack,
        expires_at,
        issuer,
    ))
}

/// The generator of a passport: under its lease, or its bare machine id when the passport
/// has no expiry.
fn generator(state: &RackState, rack: &str) -> Result<idgen::Generator, String> {
    if state.machine_id == 0 {
        return Err("the passport holds no machine id".to_owned());
    }
    let builder = match lease(state, rack) {
        Some(lease) => idgen::Generator::builder().lease(lease),
        None => idgen::Generator::builder().machine_id(u32::from(state.machine_id)),
    };
    builder
        .build()
        .map_err(|e| format!("cannot mint ids under the passport's machine id: {e}"))
}

/// SHA-256 in lowercase hex.
pub(super) fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::{Digest as _, Sha256};
    use std::fmt::Write as _;
    let digest = Sha256::digest(bytes);
    let mut hex = String::with_capacity(64);
    for b in digest.iter() {
        // Writing into a String cannot fail.
        let _ = write!(hex, "{b:02x}");
    }
    hex
}

/// An error and its causes, joined by `: `.
pub(super) fn chain(err: &(dyn std::error::Error + 'static)) -> String {
    let mut text = err.to_string();
    let mut cause = err.source();
    while let Some(e) = cause {
        text.push_str(": ");
        text.push_str(&e.to_string());
        cause = e.source();
    }
    text
}

/// Resolves once the agent is asked to stop (or its handle is gone).
async fn stopped(stop: &mut watch::Receiver<bool>) {
    loop {
        if *stop.borrow_and_update() {
            return;
        }
        if stop.changed().await.is_err() {
            return;
        }
    }
}

/// The reply to the heartbeat in flight (cancel-safe: the request stays in `in_flight` when
/// another event comes first); never, when none is.
async fn reply_of(in_flight: &mut Option<InFlight>) -> Result<Message, snake::Error> {
    match in_flight {
        Some(request) => {
            let reply = request.await;
            *in_flight = None;
            // The request's task cannot panic but may be cancelled at runtime shutdown.
            reply.unwrap_or(Err(snake::Error::Closed))
        }
        None => std::future::pending().await,
    }
}

async fn next_push(pushes: &mut Option<snake::Subscription>) -> Option<Message> {
    match pushes {
        Some(sub) => sub.next().await,
        None => std::future::pending().await,
    }
}

/// A transport error during enrollment: the end when the transport is closed, else a retry.
fn retry_unless_closed(rack: &str, e: snake::Error) -> Result<Attempt, AgentError> {
    if matches!(e, snake::Error::Closed) {
        return Err(AgentError::Bus(e));
    }
    tracing::warn!(rack = %rack, error = %e, "Hello not sent; trying again.");
    Ok(Attempt::Retry)
}

/// `interval`, give or take a fifth, so that racks started together spread out.
fn jitter(interval: Duration) -> Duration {
    let fraction = 0.8 + (random_u64() % 401) as f64 / 1000.0;
    interval.mul_f64(fraction)
}

/// 64 random bits from the operating system (or, should it have none, from the clock).
fn random_u64() -> u64 {
    use rand::TryRng as _;
    rand::rngs::SysRng.try_next_u64().unwrap_or_else(|_| {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        (now.as_nanos() as u64).rotate_left(17) ^ u64::from(std::process::id())
    })
}
