//! The `fluxrig` command line: run and check scenarios, list the gear catalog, sign and check
//! wasm modules, and convert fluxMsgs.
//!
//! It shows the message codec end to end: `msg decode` prints a CBOR fluxMsg as its JSON
//! view, `msg encode` turns that JSON back into canonical CBOR, and `demo` (also `msg demo`)
//! builds an ISO 8583 authorization request, encodes it, decodes it and checks that the bytes
//! come back identical, then reads a message as the Go fluxrig writes it. `gears list` and
//! `gears show <type>` print the built-in gear catalog and a gear type's manifest. `rack run`
//! runs a scenario standalone (no mixer) with live per-gear counts until Ctrl-C (or
//! `--duration`), then drains and prints the final counts; `rack check` validates one.
//! `wasm keygen` makes an Ed25519 key pair, `wasm sign` signs a module for the `wasm` gear
//! and `wasm check` runs the gear's pre-flight check on one (imports, exports, signature).
//! `dlq list`, `dlq show` and `dlq replay` read and replay the dead letters a NATS server
//! keeps in `flux-dlq`, all of them or those of one rack (`--rack`) or gear (`--gear`).
//! `rack start` runs a rack under a mixer; `racks …` and `scenario …` operate the fleet
//! through the mixer's HTTP API (`--api-url`, `--api-token` or `FLUXRIG_API_URL`,
//! `FLUXRIG_API_TOKEN`; `--json` prints the API's JSON instead of a table). `trace <id>` shows
//! a message's hops across racks with each gear's decision; `tail <rack>.<gear>.<port>` prints
//! the live messages an output port sends over the bus, PAN-like digit runs masked.
//! `iso8583 decode|encode` turn one ISO 8583 message into JSON and back by a spec (card data
//! masked unless `--reveal`); `spec check|doc` check a spec and document it as Markdown.
//!
//! ```text
//! cargo run --example fluxrig -- demo
//! cargo run --example fluxrig -- msg decode < msg.cbor > msg.json
//! cargo run --example fluxrig -- msg encode < msg.json > msg.cbor
//! cargo run --example fluxrig -- msg decode --max-hops 8 --max-depth 4 < msg.cbor
//! cargo run --example fluxrig -- rack run examples/scenarios/pipeline.yaml
//! cargo run --example fluxrig -- rack check examples/scenarios/tcp_echo.yaml
//! cargo run --example fluxrig -- gears list
//! cargo run --example fluxrig -- gears show route
//! cargo run --example fluxrig -- wasm keygen --out vendor.key      # prints the public key
//! cargo run --example fluxrig -- wasm sign guest.wasm --key vendor.key
//! cargo run --example fluxrig -- wasm check guest.wasm --trusted-key <public key hex>
//! cargo run --example fluxrig -- dlq list --nats nats://127.0.0.1:4222 --rack relay
//! cargo run --example fluxrig -- dlq show 42 --nats nats://127.0.0.1:4222
//! cargo run --example fluxrig -- dlq replay --nats nats://127.0.0.1:4222 --gear risk
//! cargo run --example fluxrig -- rack start -c rack.toml
//! cargo run --example fluxrig -- racks list --status pending
//! cargo run --example fluxrig -- racks approve edge-1
//! cargo run --example fluxrig -- scenario import flow.yaml --activate --wait 30s
//! cargo run --example fluxrig -- scenario status --json
//! cargo run --example fluxrig -- trace 102294544292642916
//! cargo run --example fluxrig -- tail edge.pick.out_visa --nats nats://127.0.0.1:4222
//! cargo run --example fluxrig -- iso8583 decode --spec builtin:spec87ascii < auth.bin
//! cargo run --example fluxrig -- spec check examples/specs/acquirer.yaml
//! ```
//!
//! `--max-hops`, `--max-size` and `--max-depth` set the codec's limits. Bad input prints an
//! `error: …` line on stderr, then one `caused by: …` line per cause, each cause once, and
//! exits with status 1; a usage error exits with status 2.

use std::ffi::OsString;
use std::io::{self, Read, Write};
use std::process::ExitCode;

use anyhow::{Context as _, ensure};
use clap::{Args, Parser, Subcommand};
use fluxrig::fluxmsg::{Codec, FluxMsg, Hop, Id, json};
use fluxrig::gears::Factory;

// Paths of their own, so that `examples/` does not take them for examples.
#[path = "fluxrig/agent.rs"]
mod agent;
#[path = "fluxrig/api.rs"]
mod api;
#[path = "fluxrig/dlq.rs"]
mod dlq;
#[path = "fluxrig/iso8583.rs"]
mod iso8583cmd;
#[path = "common/log.rs"]
mod log;
#[path = "fluxrig/metrics.rs"]
mod metrics;
#[path = "fluxrig/trace.rs"]
mod trace;

/// Exit status for bad input.
const BAD_INPUT: u8 = 1;
/// Exit status for a usage error, as clap uses.
const USAGE: u8 = 2;

#[derive(Debug, Parser)]
#[command(
    name = "fluxrig",
    version,
    about = "fluxrig for Rust: a protocol patchbay"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Work with single fluxMsgs.
    #[command(subcommand)]
    Msg(MsgCommand),
    /// Run the codec demo (the same as `msg demo`).
    Demo,
    /// The built-in gear catalog.
    #[command(subcommand)]
    Gears(GearsCommand),
    /// Run a scenario standalone.
    #[command(subcommand)]
    Rack(RackCommand),
    /// Keys, signatures and checks of modules for the `wasm` gear.
    #[command(subcommand)]
    Wasm(WasmCommand),
    /// The dead letters a NATS server keeps: list, show, replay.
    #[command(subcommand)]
    Dlq(dlq::DlqCommand),
    /// The fleet's racks, through the mixer's API.
    #[command(subcommand)]
    Racks(api::RacksCommand),
    /// Scenarios in the mixer: import, activate, list, show, diff, status.
    #[command(subcommand)]
    Scenario(api::ScenarioCommand),
    /// Where a message went across racks, and why (from the hops the racks sampled).
    Trace(trace::TraceArgs),
    /// The live messages an output port sends over the bus, decoded, PANs masked.
    Tail(trace::TailArgs),
    /// One ISO 8583 message to JSON and back, by a spec.
    #[command(subcommand)]
    Iso8583(iso8583cmd::Iso8583Command),
    /// ISO 8583 specs: check one, document one.
    #[command(subcommand)]
    Spec(iso8583cmd::SpecCommand),
}

#[derive(Debug, Subcommand)]
enum WasmCommand {
    /// Make an Ed25519 key pair for signing modules.
    ///
    /// With `--out`, the secret key goes to that file (64 hex characters, mode 0600 on Unix;
    /// an existing file is not overwritten) and the public key, the one to list in a gear's
    /// `trusted_keys`, is printed. Without it, both are printed.
    Keygen {
        /// The file for the secret key.
        #[arg(long, value_name = "FILE")]
        out: Option<std::path::PathBuf>,
    },
    /// Sign a module: its signature goes in its `fluxrig.signature` section, replacing any.
    Sign {
        /// The module (`.wasm`).
        module: std::path::PathBuf,
        /// The secret key file, as `wasm keygen --out` writes it.
        #[arg(long, value_name = "FILE")]
        key: std::path::PathBuf,
        /// Where to write the signed module [default: over the module].
        #[arg(short, long, value_name = "FILE")]
        out: Option<std::path::PathBuf>,
    },
    /// Check a module as the `wasm` gear does before compiling it; print what it found.
    Check {
        /// The module (`.wasm`).
        module: std::path::PathBuf,
        /// A trusted public key (64 hex characters); repeat for several.
        #[arg(long = "trusted-key", value_name = "HEX")]
        trusted_keys: Vec<String>,
        /// Accept a module no trusted key signed.
        #[arg(long)]
        allow_unsigned: bool,
        /// The per-message entry point the module must export.
        #[arg(long, value_name = "NAME", default_value = "process")]
        entrypoint: String,
    },
}

#[derive(Debug, Subcommand)]
enum RackCommand {
    /// Run a rack under a mixer: enroll, heartbeat, run what the mixer pushes.
    Start(agent::StartArgs),
    /// Run a scenario on one rack, in process, with live per-gear counts; Ctrl-C stops it.
    Run(RunArgs),
    /// Validate a scenario and print what each rack would run.
    Check {
        /// The scenario file.
        scenario: std::path::PathBuf,
    },
}

#[derive(Debug, Args)]
struct RunArgs {
    /// The scenario file (YAML).
    scenario: std::path::PathBuf,
    /// The rack to run [default: the only rack of the scenario, or `local`].
    #[arg(long)]
    rack: Option<String>,
    /// Stop after this long (`30s`, `5m`) instead of waiting for Ctrl-C; it also stops once
    /// every source is done and nothing is in flight.
    #[arg(long, value_parser = humantime::parse_duration)]
    duration: Option<std::time::Duration>,
    /// How long in-flight messages get to drain at the end.
    #[arg(long, default_value = "5s", value_parser = humantime::parse_duration)]
    drain: std::time::Duration,
    /// Run against this NATS server (`nats://127.0.0.1:4222`): guaranteed and cross-rack
    /// wires go over JetStream, so several processes, one per rack, run one scenario without
    /// a mixer [default: the in-process transport].
    #[arg(long)]
    nats: Option<String>,
    /// Serve the rack's counters at `http://<addr>/metrics` (Prometheus text).
    #[arg(long, value_name = "ADDR")]
    metrics_addr: Option<std::net::SocketAddr>,
    /// Mint message ids from these machine ids (`100-107`, `3,9,12`), which no other rack
    /// or generator of the fleet may use. One machine id mints at most 25,600 ids a second,
    /// and every message that enters the rack (a frame read, a generated message) takes one:
    /// give a busy rack several [default: one, derived from this host].
    #[arg(long, value_name = "IDS", value_parser = parse_machine_ids)]
    machine_ids: Option<MachineIds>,
}

/// The machine ids of `--machine-ids`, each once.
#[derive(Debug, Clone)]
struct MachineIds(Vec<u32>);

/// The most machine ids `--machine-ids` takes.
const MAX_MACHINE_IDS: usize = 1024;

/// `100-107`, `3,9,12`, or both mixed: machine ids, each once.
fn parse_machine_ids(text: &str) -> Result<MachineIds, String> {
    let mut ids = Vec::new();
    for part in text.split(',').map(str::trim) {
        let number = |n: &str| {
            n.trim()
                .parse::<u32>()
                .map_err(|_| format!("{n:?} is not a machine id (a number)"))
        };
        let (first, last) = match part.split_once('-') {
            Some((a, b)) => (number(a)?, number(b)?),
            None => (number(part)?, number(part)?),
        };
        if first > last {
            return Err(format!("{part:?} runs backwards"));
        }
        let count = (last - first) as usize + 1;
        if ids.len() + count > MAX_MACHINE_IDS {
            return Err(format!("more than {MAX_MACHINE_IDS} machine ids"));
        }
        ids.extend(first..=last);
    }
    let mut sorted = ids.clone();
    sorted.sort_unstable();
    if let Some(w) = sorted.windows(2).find(|w| w[0] == w[1]) {
        return Err(format!("machine id {} is given twice", w[0]));
    }
    Ok(MachineIds(ids))
}

#[derive(Debug, Subcommand)]
enum GearsCommand {
    /// One line per gear type: name, category, summary.
    List,
    /// A gear type's manifest (ports, terminus, config schema) as JSON.
    Show {
        /// The gear type, as in scenarios (`transform`).
        gear_type: String,
    },
}

#[derive(Debug, Subcommand)]
enum MsgCommand {
    /// Read one CBOR fluxMsg from stdin and print it as JSON.
    Decode(LimitArgs),
    /// Read one JSON fluxMsg from stdin and write its canonical CBOR to stdout.
    Encode(LimitArgs),
    /// Build an ISO 8583 message, encode it, decode it and show each step.
    Demo,
}

/// The codec's limits; those not given keep their defaults.
#[derive(Debug, Args)]
struct LimitArgs {
    /// Most hops a message's path may hold [default: 64].
    #[arg(long, value_name = "N")]
    max_hops: Option<usize>,
    /// Most bytes an encoded message may take [default: 2097152].
    #[arg(long, value_name = "BYTES")]
    max_size: Option<usize>,
    /// Deepest nesting in data, the data map being level 1 [default: 32].
    #[arg(long, value_name = "N")]
    max_depth: Option<usize>,
}

impl LimitArgs {
    fn codec(&self) -> Result<Codec, Failure> {
        let mut builder = Codec::builder();
        if let Some(n) = self.max_hops {
            builder = builder.max_hops(n);
        }
        if let Some(n) = self.max_size {
            builder = builder.max_size(n);
        }
        if let Some(n) = self.max_depth {
            builder = builder.max_depth(n);
        }
        builder.build().map_err(|e| Failure {
            status: USAGE,
            error: e.into(),
        })
    }
}

/// An error and the exit status it calls for.
struct Failure {
    status: u8,
    error: anyhow::Error,
}

impl<E: Into<anyhow::Error>> From<E> for Failure {
    fn from(error: E) -> Self {
        Failure {
            status: BAD_INPUT,
            error: error.into(),
        }
    }
}

fn main() -> ExitCode {
    // The workspace's tracing events go to stderr: warnings and errors by default,
    // `FLUXRIG_LOG=info|debug|trace|error|off` for more or less, `FLUXRIG_LOG_FORMAT=json`.
    log::init(Some(tracing::Level::WARN));
    // Neither stdout nor stderr is locked for the whole run: `log` gears write to stdout and
    // the gears' tasks log to stderr from other threads.
    let status = run(
        std::env::args_os(),
        &mut io::stdin().lock(),
        &mut io::stdout(),
        &mut io::stderr(),
    );
    ExitCode::from(status)
}

/// Runs the command line `args` (program name first) on `input` and `output`, reports a
/// failure on `errors`, and returns the exit status.
pub(crate) fn run(
    args: impl IntoIterator<Item = impl Into<OsString> + Clone>,
    input: &mut dyn Read,
    output: &mut dyn Write,
    errors: &mut dyn Write,
) -> u8 {
    let cli = match Cli::try_parse_from(args) {
        Ok(cli) => cli,
        Err(e) => {
            // `--help` and `--version` come this way too, for stdout and with status 0.
            let text = e.render().to_string();
            // Nothing is left to report a failed write to.
            let _ = if e.use_stderr() {
                errors.write_all(text.as_bytes())
            } else {
                output.write_all(text.as_bytes())
            };
            return u8::try_from(e.exit_code()).unwrap_or(USAGE);
        }
    };
    let result = match cli.command {
        Command::Msg(MsgCommand::Decode(limits)) => decode(&limits, input, output),
        Command::Msg(MsgCommand::Encode(limits)) => encode(&limits, input, output),
        Command::Msg(MsgCommand::Demo) | Command::Demo => demo(output).map_err(Failure::from),
        Command::Gears(command) => gears(&command, output),
        Command::Rack(RackCommand::Start(args)) => agent::start(&args, output),
        Command::Rack(RackCommand::Run(args)) => rack_run(&args, output),
        Command::Rack(RackCommand::Check { scenario }) => rack_check(&scenario, output),
        Command::Wasm(command) => wasm(&command, output),
        Command::Dlq(command) => dlq::dlq(&command, output),
        Command::Racks(command) => api::racks(&command, output),
        Command::Scenario(command) => api::scenario(&command, output),
        Command::Trace(args) => trace::trace(&args, output),
        Command::Tail(args) => trace::tail(&args, output),
        Command::Iso8583(command) => iso8583cmd::iso8583(&command, input, output),
        Command::Spec(command) => iso8583cmd::spec(&command, output),
    };
    match result {
        Ok(()) => 0,
        Err(failure) => {
            // Nothing is left to report a failed write to.
            let _ = errors.write_all(report(&failure.error).as_bytes());
            failure.status
        }
    }
}

/// The text of a failure: `error: ` and the error on the first line, then one `caused by:`
/// line per cause, each cause once (every error of the workspace prints its own context only
/// and leaves its cause to `source()`). A cause of several lines (a scenario's problems) keeps
/// them aligned under its first.
fn report(error: &anyhow::Error) -> String {
    let mut text = String::new();
    for (i, cause) in error.chain().enumerate() {
        let prefix = if i == 0 { "error: " } else { "  caused by: " };
        let cause = cause.to_string();
        for (j, line) in cause
            .lines()
            .chain(cause.is_empty().then_some(""))
            .enumerate()
        {
            if j == 0 {
                text.push_str(prefix);
            } else {
                text.push_str(&" ".repeat(prefix.len()));
            }
            text.push_str(line);
            text.push('\n');
        }
    }
    text
}

fn load(path: &std::path::Path) -> Result<fluxrig::rack::scenario::Validated, Failure> {
    let scenario = fluxrig::rack::scenario::Scenario::from_file(path)
        .with_context(|| format!("{}", path.display()))?;
    let validated = scenario
        .validate(&Factory::builtin())
        .with_context(|| format!("{}", path.display()))?;
    Ok(validated)
}

fn rack_check(path: &std::path::Path, output: &mut dyn Write) -> Result<(), Failure> {
    let validated = load(path)?;
    for rack in validated.racks() {
        let plan = validated.plan(&rack);
        writeln!(
            output,
            "rack {rack}: {} gears, {} wires",
            plan.gears.len(),
            plan.wires.len()
        )?;
        for gear in &plan.gears {
            writeln!(output, "  {} ({})", gear.name, gear.gear_type)?;
        }
        for wire in &plan.wires {
            writeln!(
                output,
                "  {}.{}.{} -> {}.{}.{} ({})",
                wire.from.rack,
                wire.from.gear,
                wire.from.port,
                wire.to.rack,
                wire.to.gear,
                wire.to.port,
                wire.lane
            )?;
        }
    }
    Ok(())
}

fn rack_run(args: &RunArgs, output: &mut dyn Write) -> Result<(), Failure> {
    let validated = load(&args.scenario)?;
    let racks = validated.racks();
    let rack_name = match (&args.rack, racks.as_slice()) {
        (Some(name), _) => name.clone(),
        (None, [only]) => only.clone(),
        (None, _) => {
            return Err(anyhow::anyhow!(
                "the scenario has several racks ({}): choose one with --rack",
                racks.join(", ")
            )
            .into());
        }
    };
    if !racks.contains(&rack_name) {
        return Err(anyhow::anyhow!(
            "the scenario runs nothing on rack {rack_name:?} (racks: {})",
            racks.join(", ")
        )
        .into());
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the runtime")?;
    runtime.block_on(async {
        let mut builder = fluxrig::rack::Rack::builder(&rack_name);
        if let Some(MachineIds(machine_ids)) = &args.machine_ids {
            let pool = fluxrig::idgen::Pool::builder()
                .machine_ids(machine_ids.iter().copied())
                .build()
                .context("cannot use the machine ids of --machine-ids")?;
            builder = builder.ids(std::sync::Arc::new(pool));
        }
        if let Some(url) = &args.nats {
            let options = fluxrig::snake::NatsOptions::new(url.as_str()).name(&rack_name);
            let bus = fluxrig::snake::Snake::nats(options)
                .await
                .context("cannot connect to the NATS server of --nats")?;
            builder = builder.snake(bus);
        }
        let mut rack = builder.build()?;
        rack.apply_scenario(&validated).await?;
        // What `/metrics` serves: the counters as of the last tick.
        let counters = std::sync::Arc::new(std::sync::Mutex::new(std::collections::BTreeMap::new()));
        if let Some(addr) = args.metrics_addr {
            let source = std::sync::Arc::clone(&counters);
            let local = metrics::serve(
                addr,
                rack_name.clone(),
                std::sync::Arc::new(move || {
                    source.lock().map(|c| c.clone()).unwrap_or_default()
                }),
            )
            .await?;
            writeln!(output, "metrics on http://{local}/metrics")?;
        }
        let started = std::time::Instant::now();
        let mut ticker = tokio::time::interval(std::time::Duration::from_secs(1));
        ticker.tick().await;
        let mut idle_ticks = 0;
        let mut last_in = u64::MAX;
        loop {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {
                    writeln!(output, "stopping (Ctrl-C)")?;
                    break;
                }
                _ = ticker.tick() => {
                    let stats = rack.stats();
                    if let Ok(mut c) = counters.lock() {
                        *c = fluxrig::rack::agent::telemetry::counters_of(&rack);
                    }
                    let line: Vec<String> = stats
                        .iter()
                        .map(|(gear, s)| format!("{gear} {}/{}", s.messages_in, s.messages_out))
                        .collect();
                    writeln!(output, "[{:>4}s] in/out: {}", started.elapsed().as_secs(), line.join("  "))?;
                    let total_in: u64 = stats.values().map(|s| s.messages_in + s.messages_out).sum();
                    idle_ticks = if total_in == last_in { idle_ticks + 1 } else { 0 };
                    last_in = total_in;
                    if args.duration.is_some_and(|d| started.elapsed() >= d) {
                        break;
                    }
                    if args.duration.is_some() && idle_ticks >= 2 {
                        writeln!(output, "idle: every source is done")?;
                        break;
                    }
                }
            }
        }
        let stopped = rack.shutdown(args.drain).await;
        let (stats, drained) = (stopped.stats, stopped.drained);
        writeln!(output, "{:<20} {:>10} {:>10} {:>8}  dropped", "gear", "in", "out", "errors")?;
        for (gear, s) in &stats {
            let dropped: Vec<String> = s.dropped.iter().map(|(r, n)| format!("{r}={n}")).collect();
            writeln!(output, "{gear:<20} {:>10} {:>10} {:>8}  {}", s.messages_in, s.messages_out, s.errors, dropped.join(" "))?;
        }
        if !drained {
            writeln!(output, "some messages were still in flight after {:?}", args.drain)?;
        }
        Ok::<(), anyhow::Error>(())
    })?;
    Ok(())
}

fn gears(command: &GearsCommand, output: &mut dyn Write) -> Result<(), Failure> {
    let factory = Factory::builtin();
    match command {
        GearsCommand::List => {
            for m in factory.manifests() {
                let category = serde_json::to_value(m.category)?;
                let category = category.as_str().unwrap_or_default();
                writeln!(output, "{:<10} {:<14} {}", m.gear_type, category, m.summary)?;
            }
        }
        GearsCommand::Show { gear_type } => {
            let gear = factory.get(gear_type).with_context(|| {
                let known: Vec<_> = factory.type_names().collect();
                format!(
                    "unknown gear type {gear_type:?} (known: {})",
                    known.join(", ")
                )
            })?;
            serde_json::to_writer_pretty(&mut *output, gear.manifest())?;
            writeln!(output)?;
        }
    }
    Ok(())
}

fn wasm(command: &WasmCommand, output: &mut dyn Write) -> Result<(), Failure> {
    use fluxrig::gears::wasm;
    match command {
        WasmCommand::Keygen { out } => {
            let key = wasm::SecretKey::generate()?;
            let public = key.public_key();
            match out {
                Some(path) => {
                    write_secret(path, &key.to_hex())?;
                    writeln!(output, "{public}")?;
                }
                None => {
                    writeln!(output, "secret key: {}", key.to_hex())?;
                    writeln!(output, "public key: {public}")?;
                }
            }
        }
        WasmCommand::Sign { module, key, out } => {
            let text = std::fs::read_to_string(key)
                .with_context(|| format!("reading the key {}", key.display()))?;
            let key: wasm::SecretKey =
                text.parse().with_context(|| format!("{}", key.display()))?;
            let bytes = read_module(module)?;
            let signed =
                wasm::sign(&bytes, &key).with_context(|| format!("{}", module.display()))?;
            let target = out.as_ref().unwrap_or(module);
            // A new file renamed over the target: a failed write leaves the old one whole.
            let mut temporary = target.as_os_str().to_owned();
            temporary.push(".signing");
            let temporary = std::path::PathBuf::from(temporary);
            std::fs::write(&temporary, &signed)
                .and_then(|()| std::fs::rename(&temporary, target))
                .with_context(|| format!("writing {}", target.display()))?;
            let digest = wasm::digest(&signed)?;
            writeln!(
                output,
                "signed {} (digest {}) with public key {}",
                target.display(),
                wasm::digest_hex(&digest),
                key.public_key()
            )?;
        }
        WasmCommand::Check {
            module,
            trusted_keys,
            allow_unsigned,
            entrypoint,
        } => {
            let mut policy = wasm::Policy {
                entrypoint: entrypoint.clone(),
                allow_unsigned: *allow_unsigned,
                ..wasm::Policy::default()
            };
            for (i, text) in trusted_keys.iter().enumerate() {
                let key: wasm::PublicKey = text
                    .parse()
                    .with_context(|| format!("--trusted-key number {}", i + 1))?;
                policy.trusted_keys.push(key);
            }
            let bytes = read_module(module)?;
            let found =
                wasm::inspect(&bytes, &policy).with_context(|| format!("{}", module.display()))?;
            writeln!(output, "{}: ok", module.display())?;
            writeln!(output, "digest: {}", wasm::digest_hex(&found.digest))?;
            match found.signed_by {
                Some(i) => {
                    let key = policy.trusted_keys.get(i).map(ToString::to_string);
                    writeln!(
                        output,
                        "signed by: trusted key {} ({})",
                        i + 1,
                        key.unwrap_or_default()
                    )?;
                }
                None => writeln!(
                    output,
                    "signed by: nobody trusted (unsigned modules allowed)"
                )?,
            }
            let mut exports = vec!["memory", found.alloc, "free", entrypoint.as_str()];
            if found.has_batch {
                exports.push("process_batch");
            }
            writeln!(output, "exports: {}", exports.join(", "))?;
            let imports = if found.imports_log { "env.log" } else { "none" };
            writeln!(output, "imports: {imports}")?;
        }
    }
    Ok(())
}

fn read_module(path: &std::path::Path) -> Result<Vec<u8>, Failure> {
    Ok(std::fs::read(path).with_context(|| format!("reading {}", path.display()))?)
}

/// Writes a secret key to a new file that only its owner can read.
fn write_secret(path: &std::path::Path, text: &str) -> Result<(), Failure> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(path).with_context(|| {
        format!(
            "creating {} (an existing key is never overwritten)",
            path.display()
        )
    })?;
    writeln!(file, "{text}")
        .and_then(|()| file.sync_all())
        .with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}

fn decode(limits: &LimitArgs, input: &mut dyn Read, output: &mut dyn Write) -> Result<(), Failure> {
    let codec = limits.codec()?;
    // Read one byte past the size limit at most: enough for the decoder to refuse the input.
    let cap = u64::try_from(codec.limits().max_size()).map_or(u64::MAX, |n| n.saturating_add(1));
    let mut bytes = Vec::new();
    input
        .take(cap)
        .read_to_end(&mut bytes)
        .context("reading stdin")?;
    let msg = codec.decode(&bytes)?;
    writeln!(output, "{}", json::to_string_pretty(&msg)).context("writing stdout")?;
    Ok(())
}

fn encode(limits: &LimitArgs, input: &mut dyn Read, output: &mut dyn Write) -> Result<(), Failure> {
    let codec = limits.codec()?;
    let mut text = String::new();
    input.read_to_string(&mut text).context("reading stdin")?;
    let msg = json::from_str(&text)?;
    let bytes = codec.encode_to_vec(&msg)?;
    output.write_all(&bytes).context("writing stdout")?;
    output.flush().context("writing stdout")?;
    Ok(())
}

/// Data fields of the demo's authorization request: ISO 8583 field number and value.
const FIELDS: [(u8, &str); 20] = [
    (2, "4111111111111111"), // Primary account number.
    (3, "000000"),           // Processing code: purchase.
    (4, "000000012500"),     // Amount: 125.00.
    (7, "0101120000"),       // Transmission date and time.
    (11, "123456"),          // System trace audit number.
    (12, "120000"),
    (13, "0101"),
    (14, "2812"), // Card expiry.
    (18, "5411"), // Merchant category: grocery stores.
    (19, "250"),
    (22, "051"), // Entry mode: chip.
    (25, "00"),
    (32, "412345"),       // Acquirer.
    (37, "601112345678"), // Retrieval reference number.
    (41, "TERM0001"),
    (42, "MERCHANT0000001"),
    (43, "FLUXRIG GROCERY         PARIS        FR"),
    (49, "978"), // Currency: euro.
    (55, "9F2608A1B2C3D4E5F607"),
    (60, "000000"),
];

/// 2026-01-01T00:00:00Z in Unix nanoseconds.
const TS: i64 = 1_767_225_600_000_000_000;

/// The demo's message: an ISO 8583 authorization request as a TCP listener gear would emit
/// it, three hops into a scenario.
fn payment() -> anyhow::Result<FluxMsg> {
    let mut msg = FluxMsg::builder()
        .id(Id::U64(0x0001_2345_6789_abcd))
        .src_id(Id::U64(11))
        .trace("4bf92f3577b34da6a3ce929d0e0e4736")
        .ts(TS)
        .meta("iso8583.mti", "0100")
        .meta("iso8583.spec", "iso87ascii")
        .meta("listener", "pos-tcp")
        .meta("conn.id", "9f2c")
        .meta("peer.ip", "10.0.0.7")
        .meta("peer.port", "50123")
        .meta("tls", "false")
        .meta("content-type", "application/iso8583")
        .data_path("iso8583.mti", "0100")?;
    // The raw message: MTI, primary bitmap, then the fields back to back.
    let mut bitmap = [0u8; 8];
    let mut raw = b"0100".to_vec();
    for (n, value) in FIELDS {
        msg = msg.data_path(&format!("iso8583.field.{n}"), value)?;
        let bit = usize::from(n - 1);
        bitmap[bit / 8] |= 0x80 >> (bit % 8);
    }
    raw.extend_from_slice(&bitmap);
    for (_, value) in FIELDS {
        raw.extend_from_slice(value.as_bytes());
    }
    raw.resize(200, b' ');
    for (i, gear) in [11u64, 12, 13].into_iter().enumerate() {
        let step = i64::try_from(i)? * 40_000;
        msg = msg.hop(Hop::new(
            Id::U64(gear),
            Id::U64(gear * 100 + 1),
            TS + 10_000 + step,
        ));
    }
    Ok(msg.raw(raw).build())
}

/// A message as the Go fluxrig v0.5 writes it: keys in struct order rather than sorted,
/// `null` for empty fields, and a UUIDv7 id as a 16-byte byte string.
const GO_MESSAGE: &[u8] = &[
    0xa6, // A map of six entries.
    0x62, b'i', b'd', 0x50, // "id": 16 bytes,
    0x01, 0x90, 0xa5, 0xb2, 0x7c, 0x3d, 0x7e, 0x4f, 0x8a, 0x1b, 0x2c, 0x3d, 0x4e, 0x5f, 0x6a, 0x7b,
    0x64, b'm', b'e', b't', b'a', 0xf6, // "meta": null,
    0x64, b'd', b'a', b't', b'a', 0xf6, // "data": null,
    0x63, b'r', b'a', b'w', 0xf6, // "raw": null,
    0x64, b'p', b'a', b't', b'h', 0xf6, // "path": null,
    0x62, b't', b's', 0x1b, 0x18, 0x86, 0x72, 0x51, 0xed, 0xfa, 0x00, 0x00, // "ts": TS.
];

fn demo(out: &mut dyn Write) -> anyhow::Result<()> {
    let codec = Codec::new();
    let msg = payment()?;
    let bytes = codec.encode_to_vec(&msg)?;
    let back = codec.decode(&bytes)?;
    ensure!(back == msg, "the decoded message differs from the original");
    let again = codec.encode_to_vec(&back)?;

    writeln!(
        out,
        "An ISO 8583 authorization request (MTI 0100), as JSON:"
    )?;
    writeln!(out, "{}", json::to_string_pretty(&back))?;
    writeln!(
        out,
        "\nEncoded: {} bytes of CBOR ({} data fields, {} meta entries, {} hops, {} bytes of raw).",
        bytes.len(),
        FIELDS.len() + 1,
        back.meta.len(),
        back.path.len(),
        back.raw.len(),
    )?;
    writeln!(out, "The first 64 bytes:")?;
    hex_dump(out, bytes.get(..64).unwrap_or(&bytes))?;
    ensure!(
        again == bytes,
        "re-encoding the decoded message gave other bytes"
    );
    writeln!(out, "Decoded and encoded again: identical bytes.")?;

    let go = codec.decode(GO_MESSAGE)?;
    let canonical = codec.encode_to_vec(&go)?;
    writeln!(
        out,
        "\nA message from the Go fluxrig ({} bytes: UUID id, null fields, keys unsorted) reads as",
        GO_MESSAGE.len(),
    )?;
    writeln!(out, "{}", json::to_string_pretty(&go))?;
    writeln!(out, "and encodes canonically in {} bytes.", canonical.len())?;
    Ok(())
}

/// Writes `bytes` as offset, hex and ASCII columns, 16 bytes a line.
fn hex_dump(out: &mut dyn Write, bytes: &[u8]) -> io::Result<()> {
    for (i, line) in bytes.chunks(16).enumerate() {
        let hex: Vec<String> = line.iter().map(|b| format!("{b:02x}")).collect();
        let text: String = line
            .iter()
            .map(|&b| {
                if b.is_ascii_graphic() {
                    char::from(b)
                } else {
                    '.'
                }
            })
            .collect();
        writeln!(out, "  {:04x}  {:<47}  |{text}|", i * 16, hex.join(" "))?;
    }
    Ok(())
}
