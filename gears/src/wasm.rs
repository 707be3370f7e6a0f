//! `wasm`: business logic compiled to WebAssembly, run in a sandbox with enforced limits.
//!
//! The module comes from a file or from a snake KV bucket. It is checked before it is compiled
//! (imports against the allow-list, required exports, the Ed25519 signature), compiled once
//! per process (and optionally cached on disk), then instantiated per gear from a
//! pre-linked [`wasmtime::InstancePre`]. Each gear has its own store with:
//!
//! - a **memory cap** (`memory_limit_pages`, 64 KiB pages): growing past it fails, and the
//!   trap that follows is reported as `memory_limit`;
//! - a **wall-clock deadline** per call (`deadline`), enforced by epoch interruption:
//!   `deadline`;
//! - optional **fuel** per call (`fuel`, about one unit per instruction): `out_of_fuel`.
//!
//! A trap, a deadline, exhausted fuel or output that does not parse costs that message only:
//! it goes to `error` with the reason in `error.reason` and the explanation in `error.detail`,
//! the instance is replaced by a fresh one (the guest's state is lost with it), and the next
//! message is served.
//!
//! # ABI
//!
//! [`sdk::abi`] has the details. Modules built for the Go fluxrig (exports `alloc` or `malloc`,
//! `free`, `process`, import `env.log`) run unchanged: one call per message, the whole fluxMsg
//! as CBOR in and out, the output replacing the input on port `out`, a length of 0 dropping
//! it. Modules that also export `process_batch` (every module built with the guest SDK,
//! [`sdk::guest`]) get whole batches per call and answer with edits per message and any number
//! of outputs on named ports; `batch: off` forces the per-message entry point. When a batch
//! call faults, its messages are replayed one by one, so that only the offending one goes to
//! `error`. An input message that no emit or error record answers counts as dropped (with
//! the reason of its drop record, or `wasm_drop`); `max_records_per_message` bounds the
//! records, and so the copies, one message may cost.
//!
//! # Trust
//!
//! | module | `trusted_keys` set | none set |
//! |---|---|---|
//! | signed by a trusted key | runs | runs if `allow_unsigned` |
//! | signed, no trusted key verifies it | refused | runs if `allow_unsigned` |
//! | unsigned | runs if `allow_unsigned` | runs if `allow_unsigned` |
//!
//! See [`inspect`] for the exact rules. Sign with `fluxrig wasm sign` (or [`sign`]).
//!
//! # Configuration
//!
//! ```yaml
//! - name: risk
//!   type: wasm
//!   config:
//!     source: file://guests/risk.wasm   # or a path, or snake://<bucket>/<key>
//!     ports: [out, review]              # output ports the module may name (besides error)
//!     memory_limit_pages: 256           # 16 MiB
//!     deadline: 50ms                    # per call
//!     fuel: 10000000                    # optional
//!     trusted_keys: ["<64 hex chars>"]  # Ed25519 public keys
//!     allow_unsigned: false
//!     cache_dir: /var/cache/fluxrig/wasm  # optional compiled-code cache
//! ```
//!
//! # Example
//!
//! ```
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use gears::Factory;
//!
//! // A module written by hand against the reference ABI: it returns its input unchanged.
//! let module = wat::parse_str(r#"(module
//!   (memory (export "memory") 1)
//!   (global $next (mut i32) (i32.const 1024))
//!   (func (export "alloc") (param $n i32) (result i32)
//!     (local $p i32) (local.set $p (global.get $next))
//!     (global.set $next (i32.add (global.get $next) (local.get $n))) (local.get $p))
//!   (func (export "free") (param i32 i32))
//!   (func (export "process") (param $p i32) (param $n i32) (result i64)
//!     (i64.or (i64.shl (i64.extend_i32_u (local.get $p)) (i64.const 32))
//!             (i64.extend_i32_u (local.get $n)))))"#)?;
//! let dir = std::env::temp_dir().join(format!("fluxrig-wasm-doc-{}", std::process::id()));
//! std::fs::create_dir_all(&dir)?;
//! let path = dir.join("echo.wasm");
//! std::fs::write(&path, module)?;
//!
//! let factory = Factory::builtin();
//! let config = serde_json::json!({ "source": path, "allow_unsigned": true, "batch": "off" });
//! let mut gear = sdk::Harness::builder(factory.get("wasm").ok_or("no wasm gear")?.clone())
//!     .build(&config)?;
//! let msg = fluxmsg::FluxMsg::builder().meta("k", "v").build();
//! gear.send("in", msg.clone())?;
//! assert_eq!(gear.take("out"), vec![msg]);
//! # std::fs::remove_dir_all(&dir)?;
//! # Ok(()) }
//! ```

mod check;
mod engine;
mod instance;
mod sign;

use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::{Mutex, OnceLock, PoisonError};

use fluxmsg::{Codec, FluxMsg};
use schemars::JsonSchema;
use sdk::abi::{self, BatchWriter, OutputReader, Record, RecordKind};
use sdk::{
    Category, ConfigError, Context, Direction, Gear, GearError, GearType, HumanDuration, InPort,
    LoadFuture, Manifest, OutPort, Outbox, Outcome, PortName, Ports, Terminus,
};
use serde::{Deserialize, Serialize};

pub use self::check::*;
pub use self::sign::*;

use self::instance::{Fault, Guest, Limits, Names};
use crate::{Error, Factory};

pub(crate) fn register(factory: &mut Factory) -> Result<(), Error> {
    factory.register::<Wasm>()
}

/// Bytes in a wasm page.
pub const PAGE: usize = 64 * 1024;
/// The largest module a gear loads (also the value size of a module bucket).
pub const MAX_MODULE_BYTES: usize = 64 << 20;

/// The configuration of a [`Wasm`] gear.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Where the module is: a path, `file://<path>`, or `snake://<bucket>/<key>`.
    pub source: String,
    /// The reference ABI's per-message entry point.
    #[serde(default = "default_entrypoint")]
    pub entrypoint: String,
    /// Output ports the module may name, besides `error`; the per-message entry point emits
    /// on `out`.
    #[serde(default = "default_ports")]
    pub ports: Vec<String>,
    /// `auto`: the batch entry point when the module exports it; `off`: one call per message.
    #[serde(default)]
    pub batch: BatchMode,
    /// Most messages per batch call.
    #[serde(default = "default_max_batch")]
    #[schemars(range(min = 1, max = 65536))]
    pub max_batch: u32,
    /// Linear memory cap, in 64 KiB pages (the reference's key; 256 pages = 16 MiB).
    #[serde(default = "default_memory_pages")]
    #[schemars(range(min = 1, max = 65536))]
    pub memory_limit_pages: u32,
    /// Wall-clock limit of one call (a batch or a message), e.g. `50ms`.
    #[serde(default = "default_deadline")]
    pub deadline: HumanDuration,
    /// Fuel per call (about one unit per wasm instruction); unset: not metered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub fuel: Option<u64>,
    /// Largest output of one call, in bytes.
    #[serde(default = "default_max_output")]
    #[schemars(range(min = 1))]
    pub max_output_bytes: u64,
    /// Most output records for one input message (emits, new messages, drops, errors): each
    /// emit copies the message, so this bounds what one message can cost. A call that goes
    /// over sends the message to `error` (`bad_output`).
    #[serde(default = "default_max_records")]
    #[schemars(range(min = 1, max = 65536))]
    pub max_records_per_message: u32,
    /// Ed25519 public keys (64 hex characters each) whose signatures are trusted.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub trusted_keys: Vec<String>,
    /// Run modules that no trusted key signed. Off by default.
    #[serde(default)]
    pub allow_unsigned: bool,
    /// A directory for compiled code, so that a restart does not compile again. Anyone who can
    /// write there can run native code in the rack: give it to the rack alone.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache_dir: Option<PathBuf>,
}

/// Which entry point a [`Wasm`] gear calls.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum BatchMode {
    /// `process_batch` when the module exports it, else `process`.
    #[default]
    Auto,
    /// Always `process`, one message per call.
    Off,
}

fn default_entrypoint() -> String {
    abi::EXPORT_PROCESS.to_owned()
}
fn default_ports() -> Vec<String> {
    vec!["out".to_owned()]
}
fn default_max_batch() -> u32 {
    256
}
fn default_memory_pages() -> u32 {
    256
}
fn default_deadline() -> HumanDuration {
    HumanDuration(std::time::Duration::from_millis(100))
}
fn default_max_output() -> u64 {
    16 << 20
}
fn default_max_records() -> u32 {
    64
}

/// Where a module comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// A file.
    File(PathBuf),
    /// A key in a snake KV bucket.
    Kv {
        /// The bucket.
        bucket: String,
        /// The key.
        key: String,
    },
}

impl Source {
    /// Parses `path`, `file://path` or `snake://bucket/key`.
    ///
    /// # Errors
    ///
    /// A message for an empty path, a missing key or an unknown scheme.
    pub fn parse(text: &str) -> Result<Source, String> {
        if let Some(rest) = text.strip_prefix("snake://") {
            let Some((bucket, key)) = rest.split_once('/') else {
                return Err(format!("{text:?}: write snake://<bucket>/<key>"));
            };
            if bucket.is_empty() || key.is_empty() {
                return Err(format!("{text:?}: write snake://<bucket>/<key>"));
            }
            snake::KvConfig::new(bucket).map_err(|e| format!("{text:?}: {e}"))?;
            return Ok(Source::Kv {
                bucket: bucket.to_owned(),
                key: key.to_owned(),
            });
        }
        if let Some((scheme, _)) = text.split_once("://")
            && scheme != "file"
        {
            return Err(format!(
                "{text:?}: unknown scheme {scheme:?}; use a path, file://<path> or snake://<bucket>/<key>"
            ));
        }
        let path = text.strip_prefix("file://").unwrap_or(text);
        if path.is_empty() {
            return Err("source names no file".to_owned());
        }
        Ok(Source::File(PathBuf::from(path)))
    }
}

/// The configuration of a KV bucket that holds modules: values up to [`MAX_MODULE_BYTES`].
/// Put modules with it, so that the gear opens the bucket with the same settings.
///
/// # Errors
///
/// A bucket name snake refuses.
pub fn module_bucket(bucket: &str) -> Result<snake::KvConfig, snake::Error> {
    Ok(snake::KvConfig::new(bucket)?.max_value_size(MAX_MODULE_BYTES))
}

/// The `wasm` gear (see the [module docs](self)).
#[derive(Debug)]
pub struct Wasm {
    source: Source,
    policy: Policy,
    limits: Limits,
    fuel: bool,
    batch: BatchMode,
    max_batch: usize,
    max_records: u32,
    cache_dir: Option<PathBuf>,
    port_names: Vec<String>,
    bytes: Option<Vec<u8>>,
    run: Option<Running>,
}

/// What `init` sets up.
#[derive(Debug)]
struct Running {
    name: String,
    guest: Guest,
    /// The last attempt to recreate the instance failed; the next call tries again.
    broken: bool,
    /// Output ports by name, as the module names them.
    ports: Vec<(String, OutPort)>,
    /// Where the per-message entry point's output goes.
    out: OutPort,
    batch: bool,
    codec: Codec,
    input: Vec<u8>,
    /// The guest's answer to the last call.
    output: Vec<u8>,
    /// Messages of the current batch call, in order.
    pending: Vec<FluxMsg>,
    /// Per message of the call: records that still need its original.
    uses: Vec<u32>,
    /// Drop reasons this gear has seen, interned.
    reasons: Vec<&'static str>,
    /// Per message of the call: its records so far.
    records: Vec<u32>,
    max_records: u32,
}

impl GearType for Wasm {
    type Config = Config;

    fn manifest() -> Manifest {
        Manifest::new("wasm", Category::Logic)
            .summary("a WebAssembly module in a sandbox: memory cap, deadline, fuel, signatures")
            .input("in", "messages for the module")
            .dynamic_output("<name>", "the ports listed in `ports` (default: out)")
            .terminus(Terminus::Opaque)
    }

    fn ports(config: &Config) -> Result<Ports, ConfigError> {
        let mut ports = Ports::fixed(&Wasm::manifest());
        for (i, name) in config.ports.iter().enumerate() {
            let path = format!("ports[{i}]");
            if name == sdk::ERROR_PORT {
                return Err(ConfigError::field(
                    path,
                    "error is always there; list only the other output ports",
                ));
            }
            let port = PortName::new(name).map_err(|e| ConfigError::field(&path, e.to_string()))?;
            if ports.outputs().contains(&port) {
                return Err(ConfigError::field(
                    path,
                    format!("{name:?} is listed twice"),
                ));
            }
            ports.push(Direction::Output, port);
        }
        Ok(ports)
    }

    fn new(config: Config) -> Result<Wasm, ConfigError> {
        let source =
            Source::parse(config.source.trim()).map_err(|e| ConfigError::field("source", e))?;
        if config.entrypoint.trim().is_empty() {
            return Err(ConfigError::field("entrypoint", "names no export"));
        }
        if config.ports.is_empty() {
            return Err(ConfigError::field("ports", "list at least one output port"));
        }
        let deadline = config.deadline.get();
        if deadline.is_zero() || deadline > std::time::Duration::from_secs(3600) {
            return Err(ConfigError::field(
                "deadline",
                "must be more than 0 and at most 1h",
            ));
        }
        let mut trusted = Vec::with_capacity(config.trusted_keys.len());
        for (i, key) in config.trusted_keys.iter().enumerate() {
            trusted
                .push(parse_public_key(key).map_err(|e| {
                    ConfigError::field(format!("trusted_keys[{i}]"), e.to_string())
                })?);
        }
        let memory = usize::try_from(config.memory_limit_pages)
            .unwrap_or(usize::MAX)
            .saturating_mul(PAGE);
        Ok(Wasm {
            source,
            policy: Policy {
                entrypoint: config.entrypoint.trim().to_owned(),
                trusted_keys: trusted,
                allow_unsigned: config.allow_unsigned,
                max_module_bytes: MAX_MODULE_BYTES,
            },
            limits: Limits {
                memory,
                ticks: Limits::ticks_for(deadline),
                fuel: config.fuel,
                max_output: usize::try_from(config.max_output_bytes).unwrap_or(usize::MAX),
            },
            fuel: config.fuel.is_some(),
            batch: config.batch,
            max_batch: config.max_batch.max(1) as usize,
            max_records: config.max_records_per_message.max(1),
            cache_dir: config.cache_dir,
            port_names: config.ports,
            bytes: None,
            run: None,
        })
    }
}

fn read_file(path: &std::path::Path) -> Result<Vec<u8>, GearError> {
    use std::io::Read as _;
    let fail = |e: std::io::Error| {
        GearError::new("load").with_detail(format_args!("{}: {e}", path.display()))
    };
    // Read one byte past the limit, whatever the file claims to be (a pipe, a growing file).
    let mut bytes = Vec::new();
    std::fs::File::open(path)
        .map_err(fail)?
        .take(MAX_MODULE_BYTES as u64 + 1)
        .read_to_end(&mut bytes)
        .map_err(fail)?;
    if bytes.len() > MAX_MODULE_BYTES {
        return Err(GearError::new("load").with_detail(format_args!(
            "{}: more than the limit of {MAX_MODULE_BYTES} bytes",
            path.display()
        )));
    }
    Ok(bytes)
}

impl Gear for Wasm {
    fn load<'a>(&'a mut self, ctx: &'a Context) -> LoadFuture<'a> {
        Box::pin(async move {
            let bytes = match &self.source {
                Source::File(path) => read_file(path)?,
                Source::Kv { bucket, key } => {
                    let snake = ctx.snake().ok_or_else(|| {
                        GearError::new("load").with_detail("snake:// needs a snake connection")
                    })?;
                    let fail = |e: snake::Error| {
                        GearError::new("load")
                            .with_detail(format_args!("snake://{bucket}/{key}: {e}"))
                    };
                    let cfg = module_bucket(bucket).map_err(fail)?;
                    let kv = snake.kv(cfg).await.map_err(fail)?;
                    let entry = kv.get(key).await.map_err(fail)?;
                    match entry {
                        Some(entry) if !entry.value.is_empty() => entry.value.to_vec(),
                        _ => {
                            return Err(GearError::new("load").with_detail(format_args!(
                                "snake://{bucket}/{key}: no such module"
                            )));
                        }
                    }
                }
            };
            self.bytes = Some(bytes);
            Ok(())
        })
    }

    fn init(&mut self, ctx: &mut Context) -> Result<(), GearError> {
        let bytes = match (self.bytes.take(), &self.source) {
            (Some(bytes), _) => bytes,
            (None, Source::File(path)) => read_file(path)?,
            (None, Source::Kv { bucket, key }) => {
                return Err(GearError::new("load").with_detail(format_args!(
                    "snake://{bucket}/{key} is fetched by the gear's load step, which did not run"
                )));
            }
        };
        let module = Module::compile(&bytes, &self.policy, self.fuel, self.cache_dir.as_deref())?;
        let guest = module.guest(ctx.name(), self.limits, self.batch)?;
        let checked = module.inspected();
        let mut ports = Vec::with_capacity(self.port_names.len());
        for name in &self.port_names {
            ports.push((name.clone(), ctx.output(name)?));
        }
        let out = ctx.output("out").unwrap_or(ports[0].1);
        tracing::info!(
            gear = ctx.name(),
            digest = %digest_hex(&checked.digest),
            signed_by = ?checked.signed_by,
            batch = guest.has_batch(),
            "wasm module ready"
        );
        self.run = Some(Running {
            name: ctx.name().to_owned(),
            batch: guest.has_batch(),
            guest,
            broken: false,
            ports,
            out,
            codec: Codec::new(),
            input: Vec::new(),
            output: Vec::new(),
            pending: Vec::new(),
            uses: Vec::new(),
            reasons: Vec::new(),
            records: Vec::new(),
            max_records: self.max_records,
        });
        Ok(())
    }

    fn process(
        &mut self,
        _: InPort,
        msg: &mut FluxMsg,
        _: &mut Outbox<'_>,
    ) -> Result<Outcome, GearError> {
        let run = self
            .run
            .as_mut()
            .ok_or_else(|| GearError::new("not_ready"))?;
        run.single(msg)
    }

    fn process_batch(&mut self, _: InPort, batch: &mut Vec<FluxMsg>, out: &mut Outbox<'_>) -> bool {
        let Some(run) = self.run.as_mut().filter(|r| r.batch) else {
            return false;
        };
        let max = self.max_batch;
        while !batch.is_empty() {
            let n = batch.len().min(max);
            run.pending.clear();
            run.pending.extend(batch.drain(..n));
            run.call_batch(out);
        }
        true
    }
}

/// Drop reasons a guest may give are counted by name; names beyond this many count as
/// `wasm_drop`, so that a module cannot grow the metrics without bound.
const MAX_DROP_REASONS: usize = 64;

fn drop_reason(reason: &str) -> &'static str {
    static REASONS: OnceLock<Mutex<HashSet<&'static str>>> = OnceLock::new();
    if reason.is_empty() || reason.len() > 64 {
        return "wasm_drop";
    }
    let mut set = REASONS
        .get_or_init(Mutex::default)
        .lock()
        .unwrap_or_else(PoisonError::into_inner);
    if let Some(known) = set.get(reason) {
        return known;
    }
    if set.len() >= MAX_DROP_REASONS {
        return "wasm_drop";
    }
    let leaked: &'static str = Box::leak(reason.to_owned().into_boxed_str());
    set.insert(leaked);
    leaked
}

impl Running {
    /// `reason` interned, from the gear's own list first: the process-wide set is locked
    /// only for a reason this gear has not given before.
    fn drop_reason(&mut self, reason: &str) -> &'static str {
        if let Some(known) = self.reasons.iter().find(|r| **r == reason) {
            return known;
        }
        let interned = drop_reason(reason);
        if self.reasons.len() < MAX_DROP_REASONS {
            self.reasons.push(interned);
        }
        interned
    }

    /// After a fault: a fresh instance, or none if that fails too (then every message goes
    /// to `error` until a later attempt succeeds).
    fn recover(&mut self, fault: &Fault) {
        tracing::warn!(
            gear = %self.name,
            reason = fault.reason(),
            detail = %fault.detail(self.guest.limits()),
            "wasm call failed; the instance is recreated"
        );
        if let Err(e) = self.guest.reset() {
            tracing::error!(gear = %self.name, error = %e, "cannot recreate the wasm instance");
            self.broken = true;
        }
    }

    fn fault_error(&self, fault: &Fault) -> GearError {
        GearError::new(fault.reason()).with_detail(fault.detail(self.guest.limits()))
    }

    /// Calls the guest on `input` (the batch or the single entry point), its answer in
    /// `output`. The instance is recreated first if that failed after the last fault; if it
    /// fails again, that is an error for the messages of the call.
    fn call(&mut self, batch: bool) -> Result<Result<(), Fault>, GearError> {
        if self.broken {
            self.guest.reset().map_err(|e| {
                GearError::new("instance").with_detail(format_args!(
                    "the module cannot be instantiated again after a fault: {e}"
                ))
            })?;
            self.broken = false;
        }
        Ok(self.guest.call(batch, &self.input, &mut self.output))
    }

    /// The reference ABI: one message in, one (or none) out on `out`.
    fn single(&mut self, msg: &mut FluxMsg) -> Result<Outcome, GearError> {
        self.input.clear();
        self.codec
            .encode(msg, &mut self.input)
            .map_err(|e| GearError::new("encode").with_detail(e))?;
        if let Err(fault) = self.call(false)? {
            let error = self.fault_error(&fault);
            self.recover(&fault);
            return Err(error);
        }
        if self.output.is_empty() {
            return Ok(Outcome::Drop("wasm_drop"));
        }
        *msg = self.codec.decode(&self.output).map_err(|e| {
            GearError::new("bad_output")
                .with_detail(format_args!("the module's output is not a fluxMsg: {e}"))
        })?;
        Ok(Outcome::Emit(self.out))
    }

    /// Encodes `pending` as a batch into `input`.
    fn encode_pending(&mut self) -> Result<(), GearError> {
        let mut writer = BatchWriter::new(&mut self.input);
        for msg in &self.pending {
            let codec = &self.codec;
            writer
                .push(|buf| codec.encode_envelope_first(msg, buf).map(drop))
                .map_err(|e| GearError::new("encode").with_detail(e))?;
        }
        writer
            .finish()
            .map(drop)
            .map_err(|e| GearError::new("encode").with_detail(e))
    }

    /// Sends `pending` on according to `output`; see [`Running::deliver`].
    fn deliver_output(&mut self, out: &mut Outbox<'_>) -> Result<(), abi::Error> {
        let output = std::mem::take(&mut self.output);
        let delivered = self.deliver(&output, out);
        self.output = output;
        delivered
    }

    /// Runs `pending` through the batch entry point; on a fault or malformed output, replays
    /// the messages one by one so that only the offender goes to `error`.
    fn call_batch(&mut self, out: &mut Outbox<'_>) {
        // A message that does not encode (rare) and a batch of one go one by one at once.
        if self.pending.len() > 1 && self.encode_pending().is_ok() {
            match self.call(true) {
                Ok(Ok(())) => match self.deliver_output(out) {
                    Ok(()) => return,
                    Err(e) => {
                        tracing::warn!(gear = %self.name, error = %e, "malformed batch output; replaying one by one");
                        self.recover(&Fault::BadOutput(e.to_string()));
                    }
                },
                Ok(Err(fault)) => self.recover(&fault),
                Err(e) => {
                    for msg in self.pending.drain(..) {
                        out.error(msg, &e);
                    }
                    return;
                }
            }
        }
        self.one_by_one(out);
    }

    /// Each message of `pending` in a batch of its own; a failure sends that message to
    /// `error`.
    fn one_by_one(&mut self, out: &mut Outbox<'_>) {
        let all = std::mem::take(&mut self.pending);
        for msg in all {
            self.pending.clear();
            self.pending.push(msg);
            let failure = match self.encode_pending() {
                Ok(()) => match self.call(true) {
                    Ok(Ok(())) => match self.deliver_output(out) {
                        Ok(()) => continue,
                        Err(e) => {
                            let fault = Fault::BadOutput(format!("malformed batch output: {e}"));
                            self.recover(&fault);
                            self.fault_error(&fault)
                        }
                    },
                    Ok(Err(fault)) => {
                        let error = self.fault_error(&fault);
                        self.recover(&fault);
                        error
                    }
                    Err(e) => e,
                },
                Err(e) => e,
            };
            for msg in self.pending.drain(..) {
                out.error(msg, &failure);
            }
        }
    }

    /// Sends `pending` on according to the guest's records. Checks and decodes the whole
    /// output first: on an error nothing has moved and `pending` is intact.
    ///
    /// Each input message is counted once: emitted or sent to `error` by its emit and error
    /// records, or else dropped, with the reason of its first drop record or `wasm_drop`
    /// (new messages do not answer for their input).
    fn deliver(&mut self, output: &[u8], out: &mut Outbox<'_>) -> Result<(), abi::Error> {
        let n = self.pending.len();
        for v in [&mut self.uses, &mut self.records] {
            v.clear();
            v.resize(n, 0);
        }
        let count = u32::try_from(n).unwrap_or(u32::MAX);
        let mut records = Vec::new();
        let mut fresh = Vec::new();
        let mut drops: Vec<Option<&str>> = vec![None; n];
        if !output.is_empty() {
            for record in OutputReader::new(output, count)? {
                let record = record?;
                let i = record.index as usize;
                self.records[i] += 1;
                if self.records[i] > self.max_records {
                    return Err(abi::Error::TooManyRecords {
                        index: record.index,
                        max: self.max_records,
                    });
                }
                match record.kind {
                    RecordKind::Emit | RecordKind::Error => self.uses[i] += 1,
                    RecordKind::EmitNew => fresh.push(self.codec.decode(record.body)?),
                    RecordKind::Drop => {
                        drops[i].get_or_insert(record.name);
                    }
                }
                records.push(record);
            }
        }
        // Messages without an emit or error record: dropped.
        for (i, reason) in drops.into_iter().enumerate() {
            if self.uses[i] == 0 {
                out.drop(reason.map_or("wasm_drop", |r| self.drop_reason(r)));
            }
        }
        let mut fresh = fresh.into_iter();
        for record in records {
            let i = record.index as usize;
            match record.kind {
                RecordKind::Emit => {
                    let msg = self.original(i);
                    self.emit_edited(msg, &record, out);
                }
                RecordKind::EmitNew => {
                    if let Some(msg) = fresh.next() {
                        self.emit_on(record.name, msg, out);
                    }
                }
                RecordKind::Drop => {}
                RecordKind::Error => {
                    let msg = self.original(i);
                    let reason = if record.name.is_empty() {
                        "wasm_error".to_owned()
                    } else {
                        record.name.chars().take(64).collect()
                    };
                    let error =
                        GearError::new(reason).with_detail(String::from_utf8_lossy(record.body));
                    out.error(msg, &error);
                }
            }
        }
        self.pending.clear();
        Ok(())
    }

    /// The original of message `i` for a record that needs it: moved out for its last use,
    /// cloned before.
    fn original(&mut self, i: usize) -> FluxMsg {
        self.uses[i] = self.uses[i].saturating_sub(1);
        if self.uses[i] == 0 {
            std::mem::take(&mut self.pending[i])
        } else {
            self.pending[i].clone()
        }
    }

    /// Applies the record's edits; a message whose edits do not apply goes to `error` as the
    /// module left it (the edits before the bad one applied), like a native gear's `Err`.
    fn emit_edited(&self, mut msg: FluxMsg, record: &Record<'_>, out: &mut Outbox<'_>) {
        match abi::apply_edits(&self.codec, &mut msg, record.body) {
            Ok(()) => self.emit_on(record.name, msg, out),
            Err(e) => {
                out.error(
                    msg,
                    &GearError::new("bad_output")
                        .with_detail(format_args!("the module's edits do not apply: {e}")),
                );
            }
        }
    }

    fn emit_on(&self, port: &str, msg: FluxMsg, out: &mut Outbox<'_>) {
        match self.ports.iter().find(|(name, _)| name == port) {
            Some((_, to)) => out.emit(*to, msg),
            None => out.error(
                msg,
                &GearError::new("bad_port").with_detail(format_args!(
                    "the module emitted on {port:?}, which is not in the gear's ports"
                )),
            ),
        }
    }
}

/// A module checked against a [`Policy`] and compiled, ready to instantiate: what a `wasm`
/// gear builds at `init`, for embedders and benchmarks that want the steps apart.
#[derive(Clone)]
pub struct Module {
    compiled: engine::Compiled,
    checked: Inspected,
    entrypoint: String,
    fuel: bool,
}

impl std::fmt::Debug for Module {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Module")
            .field("digest", &digest_hex(&self.checked.digest))
            .field("signed_by", &self.checked.signed_by)
            .field("batch", &self.checked.has_batch)
            .finish_non_exhaustive()
    }
}

impl Module {
    /// Checks `bytes` against `policy` ([`inspect`]) and compiles them for the engine with
    /// (`fuel`) or without fuel metering, once per process and digest, reading and writing
    /// compiled code in `cache_dir` when given.
    ///
    /// # Errors
    ///
    /// A `module` error naming what the check or the compiler refused.
    pub fn compile(
        bytes: &[u8],
        policy: &Policy,
        fuel: bool,
        cache_dir: Option<&std::path::Path>,
    ) -> Result<Module, GearError> {
        let checked =
            inspect(bytes, policy).map_err(|e| GearError::new("module").with_detail(e))?;
        let compiled = engine::compile(bytes, checked.digest, fuel, cache_dir)
            .map_err(|e| GearError::new("module").with_detail(e))?;
        Ok(Module {
            compiled,
            checked,
            entrypoint: policy.entrypoint.clone(),
            fuel,
        })
    }

    /// What the check found: digest, signer, exports.
    #[must_use]
    pub fn inspected(&self) -> &Inspected {
        &self.checked
    }

    /// A fresh instance for the gear `gear` with a memory cap of `memory_pages` and a deadline
    /// per call (no fuel, output up to 16 MiB).
    ///
    /// # Errors
    ///
    /// A `module` error when the module does not start within its limits.
    pub fn instantiate(
        &self,
        gear: &str,
        memory_pages: u32,
        deadline: std::time::Duration,
    ) -> Result<Instance, GearError> {
        let limits = Limits {
            memory: usize::try_from(memory_pages)
                .unwrap_or(usize::MAX)
                .saturating_mul(PAGE),
            ticks: Limits::ticks_for(deadline),
            fuel: None,
            max_output: 16 << 20,
        };
        self.guest(gear, limits, BatchMode::Auto).map(Instance)
    }

    fn guest(&self, gear: &str, limits: Limits, batch: BatchMode) -> Result<Guest, GearError> {
        if limits.fuel.is_some() != self.fuel {
            return Err(GearError::new("module")
                .with_detail("the module was compiled for another fuel setting"));
        }
        let names = Names {
            alloc: self.checked.alloc,
            entrypoint: self.entrypoint.clone(),
            batch: self.checked.has_batch && batch == BatchMode::Auto,
        };
        Guest::new(self.compiled.clone(), names, limits, gear)
            .map_err(|e| GearError::new("module").with_detail(e))
    }
}

/// A live instance of a [`Module`], with its own store and limits.
#[derive(Debug)]
pub struct Instance(Guest);

impl Instance {
    /// Whether calls go through the batch entry point.
    #[must_use]
    pub fn has_batch(&self) -> bool {
        self.0.has_batch()
    }
}

/// Modules compiled in this process so far (each digest once per engine).
#[must_use]
pub fn compiled_modules() -> usize {
    engine::compiled_count()
}
