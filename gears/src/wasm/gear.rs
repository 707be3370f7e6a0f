//! The `wasm` gear: its type (manifest, ports, configuration check) and its life cycle.

use std::path::PathBuf;

use fluxmsg::FluxMsg;
use sdk::{
    Category, ConfigError, Context, Direction, Gear, GearError, GearType, InPort, LoadFuture,
    Manifest, OutPort, Outbox, Outcome, PortName, Ports, Terminus,
};

use super::batch::Running;
use super::instance::Limits;
use super::source::{Source, read_file};
use super::{BatchMode, Config, MAX_MODULE_BYTES, Module, PAGE, Policy, PublicKey, digest_hex};
use crate::offload;

/// The `wasm` gear (see the [module docs](super)).
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
    /// The output ports the module names, in its order.
    ports: Vec<(String, OutPort)>,
    /// Where a message goes when the module returns it without naming a port.
    out: OutPort,
    /// The module as `load` compiled it, for `init`.
    module: Option<Module>,
    run: Option<Running>,
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

    fn new(config: Config, ports: &Ports) -> Result<Wasm, ConfigError> {
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
                .push(key.parse::<PublicKey>().map_err(|e| {
                    ConfigError::field(format!("trusted_keys[{i}]"), e.to_string())
                })?);
        }
        let named = config
            .ports
            .iter()
            .map(|name| Ok((name.clone(), ports.resolve_output(name)?)))
            .collect::<Result<Vec<_>, ConfigError>>()?;
        // Where a message the module returns without a port goes: `out`, else the first port.
        let Some(out) = ports
            .output("out")
            .or_else(|| named.first().map(|&(_, port)| port))
        else {
            return Err(ConfigError::field("ports", "list at least one output port"));
        };
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
            ports: named,
            out,
            module: None,
            run: None,
        })
    }
}

impl Gear for Wasm {
    fn load<'a>(&'a mut self, ctx: &'a Context) -> LoadFuture<'a> {
        Box::pin(async move {
            // Reading a file and compiling take a while: on the blocking pool.
            let bytes = match &self.source {
                Source::File(path) => {
                    let path = path.clone();
                    offload::blocking(move || read_file(&path)).await?
                }
                Source::Kv { .. } => self.source.fetch(ctx).await?,
            };
            let (policy, fuel, cache_dir) =
                (self.policy.clone(), self.fuel, self.cache_dir.clone());
            let module = offload::blocking(move || {
                Module::compile(&bytes, &policy, fuel, cache_dir.as_deref())
            })
            .await?;
            self.module = Some(module);
            Ok(())
        })
    }

    fn init(&mut self, ctx: &mut Context) -> Result<(), GearError> {
        let module = match (self.module.take(), &self.source) {
            (Some(module), _) => module,
            // Without `load` (a harness): read and compile here, off the worker.
            (None, Source::File(path)) => offload::run(|| {
                let bytes = read_file(path)?;
                Module::compile(&bytes, &self.policy, self.fuel, self.cache_dir.as_deref())
            })?,
            (None, Source::Kv { bucket, key }) => {
                return Err(GearError::new("load").with_detail(format_args!(
                    "snake://{bucket}/{key} is fetched by the gear's load step, which did not run"
                )));
            }
        };
        let guest = offload::run(|| module.guest(ctx.name(), self.limits, self.batch))?;
        let checked = module.inspected();
        tracing::info!(
            gear = ctx.name(),
            digest = %digest_hex(&checked.digest),
            signed_by = ?checked.signed_by,
            batch = guest.has_batch(),
            "The wasm module is ready."
        );
        self.run = Some(Running::new(
            ctx.name(),
            guest,
            self.ports.clone(),
            self.out,
            self.max_records,
        ));
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

    /// The whole batch in one hand-over to a thread that may block (`block_in_place`):
    /// through the batch entry point, or the per-message one a message at a time.
    fn process_batch(&mut self, _: InPort, batch: &mut Vec<FluxMsg>, out: &mut Outbox<'_>) -> bool {
        let max = self.max_batch;
        let Some(run) = self.run.as_mut() else {
            return false;
        };
        if run.batch() {
            offload::run(|| run.run_batches(batch, max, out));
        } else {
            offload::each(batch, out, |msg, _| run.single(msg));
        }
        true
    }
}
