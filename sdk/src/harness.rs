//! [`Harness`]: runs one gear without a rack, for its unit tests.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use fluxmsg::FluxMsg;
use idgen::{Generator, ManualClock};
use snake::Snake;

use crate::context::Services;
use crate::emit::{ERROR_REASON, Emission, Emissions, Outputs};
use crate::error::{Error, GearError};
use crate::gear::GearType;
use crate::gear_type::DynGearType;
use crate::manifest::Direction;
use crate::port::{ERROR_PORT, PortStatus};
use crate::runner::Runner;
use crate::stats::StatsSnapshot;

/// Runs one gear without a rack, so that its unit tests read like its documentation:
/// feed messages into ports, collect what each output port emitted, move a fake clock,
/// check errors and counters.
///
/// The configuration goes through the same schema validation as in a rack. The clock is a
/// [`ManualClock`] starting at 2026-01-01T00:00:00Z; ids come from an idgen generator on that
/// clock; the snake handle is an in-process one.
///
/// ```
/// # fn main() -> Result<(), sdk::Error> {
/// use fluxmsg::FluxMsg;
/// use sdk::{Category, Gear, GearError, GearType, Harness, InPort, Manifest, OutPort, Outcome, Outbox, Ports};
///
/// struct Stamp { out: OutPort }
/// #[derive(serde::Deserialize, schemars::JsonSchema)]
/// struct NoConfig {}
/// impl GearType for Stamp {
///     type Config = NoConfig;
///     fn manifest() -> Manifest { Manifest::new("stamp", Category::Logic).input("in", "").output("out", "") }
///     fn new(_: NoConfig, ports: &Ports) -> Result<Self, sdk::ConfigError> {
///         Ok(Stamp { out: ports.resolve_output("out")? })
///     }
/// }
/// impl Gear for Stamp {
///     fn process(&mut self, _: InPort, msg: &mut FluxMsg, _: &mut Outbox<'_>) -> Result<Outcome, GearError> {
///         if msg.raw.is_empty() { return Err(GearError::new("empty")); }
///         msg.meta.insert("stamped", "yes".into());
///         Ok(Outcome::Emit(self.out))
///     }
/// }
///
/// let mut h = Harness::new::<Stamp>(&serde_json::json!({}))?;
/// h.send("in", FluxMsg::builder().raw(&b"hi"[..]).build())?;
/// h.send("in", FluxMsg::new())?;
/// assert_eq!(h.take("out")[0].meta.get("stamped").map(|t| t.as_str()), Some("yes"));
/// assert_eq!(h.error_reasons(), ["empty"]);
/// assert_eq!(h.stats().errors, 1);
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct Harness {
    runner: Runner,
    emissions: Emissions,
    clock: ManualClock,
    outputs: BTreeMap<String, VecDeque<FluxMsg>>,
    buf: Outputs,
    batch: Vec<FluxMsg>,
}

/// Where the harness clock starts: 2026-01-01T00:00:00Z.
const START_UNIX_SECS: u64 = 1_767_225_600;

/// How long [`Harness::recv`] waits for an active gear's emission.
const RECV_TIMEOUT: Duration = Duration::from_secs(10);

impl Harness {
    /// Validates `config` for the gear type `G`, builds the gear and initialises it as `"gear"`.
    pub fn new<G: GearType>(config: &serde_json::Value) -> Result<Harness, Error> {
        Harness::builder(DynGearType::of::<G>()?).build(config)
    }

    /// A harness for an already registered (type-erased) gear type, with options.
    pub fn builder(gear_type: DynGearType) -> HarnessBuilder {
        HarnessBuilder {
            gear_type,
            name: "gear".to_owned(),
            snake: None,
            emit_capacity: 1024,
        }
    }

    /// Processes one message that arrives on the input port `port`.
    pub fn send(&mut self, port: &str, msg: FluxMsg) -> Result<(), Error> {
        self.batch.push(msg);
        self.flush(port)
    }

    /// Processes messages arriving together on `port`, as one batch.
    pub fn send_batch(
        &mut self,
        port: &str,
        msgs: impl IntoIterator<Item = FluxMsg>,
    ) -> Result<(), Error> {
        self.batch.extend(msgs);
        self.flush(port)
    }

    fn flush(&mut self, port: &str) -> Result<(), Error> {
        let ctx = self.runner.context();
        let Some(input) = ctx.ports().input(port) else {
            self.batch.clear();
            let detail = ctx.ports().missing(Direction::Input, port);
            return Err(Error::Lifecycle {
                gear: ctx.name().to_owned(),
                stage: "process",
                source: GearError::new("unknown_port").with_detail(detail),
            });
        };
        let result = self.runner.process(input, &mut self.batch, &mut self.buf);
        self.batch.clear();
        let ports = self.runner.context().ports();
        for (port, msgs) in self.buf.drain() {
            let name = ports.output_name(port).map_or("?", |p| p.as_str());
            self.outputs
                .entry(name.to_owned())
                .or_default()
                .extend(msgs);
        }
        result
    }

    fn collect_emissions(&mut self) {
        while let Some(emission) = self.emissions.try_recv() {
            self.file(emission);
        }
    }

    fn file(&mut self, emission: Emission) {
        let ports = self.runner.context().ports();
        let (port, msgs) = match emission {
            Emission::One(port, msg) => (port, vec![msg]),
            Emission::Many(port, msgs) => (port, msgs),
        };
        let name = ports.output_name(port).map_or("?", |p| p.as_str());
        self.outputs
            .entry(name.to_owned())
            .or_default()
            .extend(msgs);
    }

    /// Everything emitted on the output port `port` so far (and not yet taken), oldest first.
    pub fn take(&mut self, port: &str) -> Vec<FluxMsg> {
        self.collect_emissions();
        self.outputs
            .get_mut(port)
            .map(|q| q.drain(..).collect())
            .unwrap_or_default()
    }

    /// Takes what went to `error` and returns each message's `error.reason`.
    pub fn error_reasons(&mut self) -> Vec<String> {
        self.take(ERROR_PORT)
            .iter()
            .map(|m| {
                m.meta
                    .get(ERROR_REASON)
                    .map(|r| r.to_string())
                    .unwrap_or_default()
            })
            .collect()
    }

    /// Waits for the next message on `port` from an active gear's tasks (at most ten seconds
    /// of Tokio time); `None` if none came.
    pub async fn recv(&mut self, port: &str) -> Option<FluxMsg> {
        let deadline = tokio::time::Instant::now() + RECV_TIMEOUT;
        loop {
            self.collect_emissions();
            if let Some(msg) = self.outputs.get_mut(port).and_then(VecDeque::pop_front) {
                return Some(msg);
            }
            match tokio::time::timeout_at(deadline, self.emissions.recv()).await {
                Ok(Some(emission)) => self.file(emission),
                Ok(None) | Err(_) => return None,
            }
        }
    }

    /// Starts the gear (active gears spawn their tasks). Needs a Tokio runtime.
    pub fn start(&mut self) -> Result<(), Error> {
        self.runner.start()
    }

    /// Moves the wall clock forward by `by` and lets Tokio time pass by as much (instantly
    /// under `#[tokio::test(start_paused = true)]`).
    pub async fn advance(&mut self, by: Duration) {
        self.clock.advance(by);
        tokio::time::sleep(by).await;
    }

    /// The harness clock.
    pub fn clock(&self) -> &ManualClock {
        &self.clock
    }

    /// The status of the output port `port`, to mark it unavailable or loaded.
    ///
    /// # Panics
    ///
    /// If the gear has no such output port (a mistake in the test).
    pub fn port_status(&self, port: &str) -> &PortStatus {
        let ctx = self.runner.context();
        ctx.ports()
            .output(port)
            .and_then(|p| ctx.port_status(p))
            .unwrap_or_else(|| panic!("the gear has no output port {port:?}"))
    }

    /// Whether the gear says it takes input now
    /// ([`Context::availability`](crate::Context::availability)).
    pub fn is_available(&self) -> bool {
        self.runner.context().availability().is_available()
    }

    /// The gear's counters.
    pub fn stats(&self) -> StatsSnapshot {
        self.runner.stats()
    }

    /// The runner, for lifecycle checks.
    pub fn runner(&mut self) -> &mut Runner {
        &mut self.runner
    }

    /// Drains the gear (its tasks get one second of Tokio time), then stops it.
    pub async fn shutdown(&mut self) {
        self.runner.drain(Duration::from_secs(1)).await;
        self.runner.stop();
        self.collect_emissions();
    }
}

/// Options for a [`Harness`].
#[derive(Debug)]
pub struct HarnessBuilder {
    gear_type: DynGearType,
    name: String,
    snake: Option<Snake>,
    emit_capacity: usize,
}

impl HarnessBuilder {
    /// The gear's name (default `gear`).
    #[must_use]
    pub fn name(mut self, name: &str) -> HarnessBuilder {
        name.clone_into(&mut self.name);
        self
    }

    /// The snake handle the gear gets (default: a new in-process one).
    #[must_use]
    pub fn snake(mut self, snake: Snake) -> HarnessBuilder {
        self.snake = Some(snake);
        self
    }

    /// Room for pending emissions of an active gear (default 1,024).
    #[must_use]
    pub fn emit_capacity(mut self, capacity: usize) -> HarnessBuilder {
        self.emit_capacity = capacity;
        self
    }

    /// Validates `config`, builds the gear and initialises it, without [`Gear::load`]
    /// (see [`build_loaded`](HarnessBuilder::build_loaded)).
    ///
    /// [`Gear::load`]: crate::Gear::load
    pub fn build(self, config: &serde_json::Value) -> Result<Harness, Error> {
        let (runner, clock) = self.runner(config)?;
        Harness::init(runner, clock)
    }

    /// As [`build`](HarnessBuilder::build), awaiting [`Gear::load`] before `init`, as a rack
    /// does.
    ///
    /// [`Gear::load`]: crate::Gear::load
    pub async fn build_loaded(self, config: &serde_json::Value) -> Result<Harness, Error> {
        let (mut runner, clock) = self.runner(config)?;
        runner.load().await?;
        Harness::init(runner, clock)
    }

    fn runner(self, config: &serde_json::Value) -> Result<(Runner, ManualClock), Error> {
        let prepared = self
            .gear_type
            .prepare(config)
            .map_err(|source| Error::Config {
                gear: self.name.clone(),
                gear_type: self.gear_type.gear_type().to_owned(),
                source,
            })?;
        let clock = ManualClock::from_unix_secs(START_UNIX_SECS);
        let ids = Generator::builder()
            .machine_id(1)
            .clock(clock.clone())
            .build()
            .map_err(|e| Error::Schema {
                gear_type: self.gear_type.gear_type().to_owned(),
                reason: format!("the harness id generator: {e}"),
            })?;
        let services = Services::new(Arc::new(ids), Arc::new(clock.clone()))
            .with_snake(self.snake.unwrap_or_else(Snake::memory))
            .with_emit_capacity(self.emit_capacity);
        Ok((Runner::new(&self.name, prepared, services), clock))
    }
}

impl Harness {
    fn init(mut runner: Runner, clock: ManualClock) -> Result<Harness, Error> {
        let name = runner.context().name().to_owned();
        let emissions = runner
            .take_emissions()
            .ok_or_else(|| unreachable_state(&name))?;
        runner.init()?;
        Ok(Harness {
            runner,
            emissions,
            clock,
            outputs: BTreeMap::new(),
            buf: Outputs::new(),
            batch: Vec::new(),
        })
    }
}

fn unreachable_state(gear: &str) -> Error {
    Error::State {
        gear: gear.to_owned(),
        action: "take emissions",
        state: "already taken",
    }
}
