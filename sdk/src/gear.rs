//! The gear contract: the [`Gear`] lifecycle, the [`GearType`] that builds a gear from its
//! configuration, and a message's [`Outcome`].

use std::future::Future;
use std::pin::Pin;

use fluxmsg::FluxMsg;
use schemars::JsonSchema;
use serde::de::DeserializeOwned;

use crate::context::Context;
use crate::emit::Outbox;
use crate::error::{ConfigError, GearError};
use crate::manifest::Manifest;
use crate::port::{InPort, OutPort, Ports};

/// A processing unit: what a gear author implements.
///
/// The lifecycle is `init` → `start` → `process`… → `drain` → `stop`, driven by a
/// [`Runner`](crate::Runner) in a rack or in the [`Harness`](crate::Harness).
///
/// - **Passive** gears (filters, transforms, routers, sinks) only implement
///   [`process`](Gear::process), a plain synchronous call per message: no future, no lock.
///   The runner calls it for each message of a batch and moves the results on in one go.
/// - **Active** gears (sources, I/O) also implement [`start`](Gear::start), where they spawn
///   their own tasks with [`Context::spawn`] and emit through an [`Emitter`](crate::Emitter).
///
/// `drain` and `stop` may be called more than once, and `stop` on a gear that never started.
pub trait Gear: Send + 'static {
    /// Fetches what the gear needs from outside before [`init`](Gear::init), such as a wasm
    /// module from a snake KV bucket: the one asynchronous step of the lifecycle, awaited by
    /// the rack (and [`HarnessBuilder::build_loaded`](crate::HarnessBuilder::build_loaded))
    /// before `init`. A failure aborts the scenario apply like a failed `init`.
    fn load<'a>(&'a mut self, ctx: &'a Context) -> LoadFuture<'a> {
        let _ = ctx;
        Box::pin(std::future::ready(Ok(())))
    }

    /// Binds the gear to its context: open state, read the port statuses. Ports are not
    /// resolved here: [`GearType::new`] receives them. A failure aborts the scenario apply.
    fn init(&mut self, ctx: &mut Context) -> Result<(), GearError> {
        let _ = ctx;
        Ok(())
    }

    /// Starts an active gear's tasks. Called once, after every gear of the scenario is
    /// initialised.
    fn start(&mut self, ctx: &mut Context) -> Result<(), GearError> {
        let _ = ctx;
        Ok(())
    }

    /// Handles one message that arrived on `port`.
    ///
    /// The gear edits `msg` in place and says where it goes with the [`Outcome`]; further
    /// messages (copies, splits) go through `out`. An `Err` sends the message, as the gear left
    /// it, to `error` with the reason in `error.reason`; so does a panic, which costs that
    /// message only.
    fn process(
        &mut self,
        port: InPort,
        msg: &mut FluxMsg,
        out: &mut Outbox<'_>,
    ) -> Result<Outcome, GearError>;

    /// Handles a whole batch in one call, for gears that pay a fixed cost per call (the wasm
    /// gear crosses into its module once per batch). The default returns `false`: the runner
    /// then calls [`process`](Gear::process) per message.
    ///
    /// A gear that returns `true` has taken every message out of `batch` and put each on a
    /// port with `out` ([`Outbox::emit`], [`Outbox::error`]) or counted it with
    /// [`Outbox::drop`]. Messages left in `batch` go to `error` (`unhandled`); a panic sends
    /// those left in `batch` to `error` (`panic`).
    fn process_batch(
        &mut self,
        port: InPort,
        batch: &mut Vec<FluxMsg>,
        out: &mut Outbox<'_>,
    ) -> bool {
        let _ = (port, batch, out);
        false
    }

    /// Called after each batch: the place to flush buffered output once per batch instead of
    /// once per message.
    fn flush(&mut self) {}

    /// Stops taking input and finishes in-flight work. Sources stop producing.
    fn drain(&mut self) {}

    /// Releases resources.
    fn stop(&mut self) {}
}

/// What [`Gear::load`] returns: a boxed future borrowing the gear and its context.
pub type LoadFuture<'a> = Pin<Box<dyn Future<Output = Result<(), GearError>> + Send + 'a>>;

/// Where the message a gear just processed goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Send it on this output port.
    Emit(OutPort),
    /// Drop it on purpose; counted with this reason (`filtered`, `sampled`).
    Drop(&'static str),
    /// The gear kept it (a sink wrote it, an I/O gear queued it): nothing more to do.
    Consumed,
}

/// A gear type that can be registered by name: its configuration, manifest and constructor.
///
/// ```
/// # fn main() -> Result<(), sdk::Error> {
/// use fluxmsg::FluxMsg;
/// use sdk::{Category, Gear, GearError, GearType, Harness, InPort, Manifest, OutPort, Outcome, Outbox, Ports};
///
/// /// Counts messages into `meta.seen`.
/// struct Counter { seen: u64, out: OutPort }
///
/// #[derive(serde::Deserialize, schemars::JsonSchema)]
/// #[serde(deny_unknown_fields)]
/// struct CounterConfig {}
///
/// impl GearType for Counter {
///     type Config = CounterConfig;
///     fn manifest() -> Manifest {
///         Manifest::new("counter", Category::Logic).input("in", "any").output("out", "counted")
///     }
///     fn new(_: CounterConfig, ports: &Ports) -> Result<Self, sdk::ConfigError> {
///         Ok(Counter { seen: 0, out: ports.resolve_output("out")? })
///     }
/// }
///
/// impl Gear for Counter {
///     fn process(&mut self, _: InPort, msg: &mut FluxMsg, _: &mut Outbox<'_>) -> Result<Outcome, GearError> {
///         self.seen += 1;
///         msg.meta.insert("seen", self.seen.to_string().into());
///         Ok(Outcome::Emit(self.out))
///     }
/// }
///
/// let mut h = Harness::new::<Counter>(&serde_json::json!({}))?;
/// h.send("in", FluxMsg::new())?;
/// assert_eq!(h.take("out")[0].meta.get("seen").map(|t| t.as_str()), Some("1"));
/// # Ok(()) }
/// ```
pub trait GearType: Gear + Sized {
    /// The configuration, read from the scenario's `config:` map. Its JSON Schema (from
    /// `schemars`) becomes the manifest's `config_schema`; use `#[serde(deny_unknown_fields)]`
    /// so that a misspelt key is an error.
    type Config: DeserializeOwned + JsonSchema;

    /// The manifest, without the configuration schema (filled in from [`GearType::Config`]).
    fn manifest() -> Manifest;

    /// The concrete ports a gear with this configuration has. The default is the manifest's
    /// fixed ports; gears with dynamic ports add theirs.
    fn ports(config: &Self::Config) -> Result<Ports, ConfigError> {
        let _ = config;
        Ok(Ports::fixed(&Self::manifest()))
    }

    /// Builds the gear from a configuration that already matches the schema, with the concrete
    /// `ports` that [`GearType::ports`] gave that configuration. Resolves the port names the
    /// gear emits on ([`Ports::resolve_output`]) and checks the rules a schema cannot express
    /// (a regular expression that does not compile); does nothing else: no sockets, no tasks.
    /// It runs at validation time, before anything runs.
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] naming the field at fault, or the port the gear asked for and does not
    /// have.
    fn new(config: Self::Config, ports: &Ports) -> Result<Self, ConfigError>;
}
