//! `fluxrig rack start -c rack.toml`: a rack under a mixer. It enrolls, heartbeats and runs
//! what the mixer pushes, from a saved scenario when the mixer is away.
//!
//! ```toml
//! name = "edge-1"
//! nats = "nats://127.0.0.1:4222"
//! state_dir = "./data/edge-1"        # its secret, passport, pinned cluster key, last scenario
//! bootstrap_secret = "let-me-in"     # better: FLUXRIG_BOOTSTRAP_SECRET
//! heartbeat_interval = "10s"       # as the mixer's
//! [labels]
//! zone = "a"
//! ```

use std::collections::BTreeMap;
use std::io::Write;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use clap::Args;
use fluxrig::rack::agent::{Agent, AgentConfig};
use fluxrig::snake::{NatsOptions, Snake};
use serde::Deserialize;

use super::Failure;

#[derive(Debug, Args)]
pub(crate) struct StartArgs {
    /// The rack's configuration (TOML).
    #[arg(long, short)]
    config: Option<PathBuf>,
    /// The rack's name (beats the file's).
    #[arg(long, env = "FLUXRIG_RACK_NAME")]
    name: Option<String>,
    /// The NATS server (beats the file's).
    #[arg(long, env = "FLUXRIG_NATS")]
    nats: Option<String>,
    /// Where the rack keeps its state [default: ./data/<name>].
    #[arg(long, env = "FLUXRIG_STATE_DIR")]
    state_dir: Option<PathBuf>,
    /// The secret of a first hello (beats the file's).
    #[arg(long, env = "FLUXRIG_BOOTSTRAP_SECRET", hide_env_values = true)]
    bootstrap_secret: Option<String>,
    /// How often to heartbeat, as the mixer expects (beats the file's) [default: 10s].
    #[arg(long, env = "FLUXRIG_HEARTBEAT_INTERVAL", value_parser = humantime::parse_duration)]
    heartbeat_interval: Option<Duration>,
    /// How often to publish telemetry (metric snapshots, sampled hops) [default: 5s].
    #[arg(long, value_parser = humantime::parse_duration)]
    telemetry_interval: Option<Duration>,
    /// At most this many telemetry messages a second, on average (the rest is dropped and
    /// counted, never queued) [default: 2].
    #[arg(long, value_name = "PER_SECOND")]
    telemetry_rate: Option<f64>,
    /// Sample the hops of one message in N for `fluxrig trace` (0: none) [default: 100].
    #[arg(long, value_name = "N")]
    hop_sampling: Option<u64>,
    /// Serve the rack's counters at `http://<addr>/metrics` (Prometheus text).
    #[arg(long, value_name = "ADDR")]
    metrics_addr: Option<std::net::SocketAddr>,
    /// Stop after this long instead of waiting for Ctrl-C.
    #[arg(long, value_parser = humantime::parse_duration)]
    duration: Option<Duration>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RackFile {
    name: Option<String>,
    nats: Option<String>,
    state_dir: Option<PathBuf>,
    bootstrap_secret: Option<String>,
    heartbeat_interval: Option<String>,
    #[serde(default)]
    labels: BTreeMap<String, String>,
}

pub(crate) fn start(args: &StartArgs, output: &mut dyn Write) -> Result<(), Failure> {
    let file: RackFile = match &args.config {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("reading {}", path.display()))?;
            toml::from_str(&text).with_context(|| format!("{}", path.display()))?
        }
        None => RackFile::default(),
    };
    let name = args
        .name
        .clone()
        .or(file.name)
        .context("the rack needs a name (--name or `name` in the file)")?;
    let nats = args
        .nats
        .clone()
        .or(file.nats)
        .context("the rack needs a NATS server (--nats or `nats` in the file)")?;
    let state_dir = args
        .state_dir
        .clone()
        .or(file.state_dir)
        .unwrap_or_else(|| PathBuf::from("data").join(&name));
    let mut config = AgentConfig::new(&name, state_dir).labels(file.labels);
    if let Some(secret) = args.bootstrap_secret.clone().or(file.bootstrap_secret) {
        config = config.bootstrap_secret(secret);
    }
    let interval = match (args.heartbeat_interval, &file.heartbeat_interval) {
        (Some(interval), _) => Some(interval),
        (None, Some(text)) => Some(humantime::parse_duration(text).context("heartbeat_interval")?),
        (None, None) => None,
    };
    if let Some(interval) = interval {
        config = config.heartbeat_interval(interval);
    }
    if let Some(interval) = args.telemetry_interval {
        config = config.telemetry_interval(interval);
    }
    if let Some(rate) = args.telemetry_rate {
        config = config.telemetry_rate(rate, (rate * 5.0).max(1.0));
    }
    if let Some(one_in) = args.hop_sampling {
        config = config.hop_sampling(one_in);
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the runtime")?;
    runtime.block_on(async {
        let snake = Snake::nats(NatsOptions::new(nats.as_str()).name(&name))
            .await
            .with_context(|| format!("cannot connect to {nats}"))?;
        let agent = Agent::start(config, snake).await?;
        if let Some(addr) = args.metrics_addr {
            let source = agent.metrics_handle();
            let local = super::metrics::serve(
                addr,
                name.clone(),
                std::sync::Arc::new(move || source.get().gears),
            )
            .await?;
            writeln!(output, "metrics on http://{local}/metrics")?;
        }
        let mut status = agent.status();
        let started = Instant::now();
        let mut ticker = tokio::time::interval(Duration::from_secs(1));
        let mut last = String::new();
        loop {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {
                    writeln!(output, "stopping (Ctrl-C)")?;
                    break;
                }
                _ = status.changed() => {}
                _ = ticker.tick() => {
                    if args.duration.is_some_and(|d| started.elapsed() >= d) {
                        break;
                    }
                }
            }
            let s = status.current();
            let hash: String = s.running_hash.chars().take(12).collect();
            let line = format!(
                "{name}: {:?}, machine id {}, running {}, heartbeats {} (missed {})",
                s.enrollment,
                s.machine_id,
                if hash.is_empty() { "-" } else { &hash },
                s.heartbeats,
                s.missed_heartbeats
            );
            // Printed when something other than the heartbeat count changed.
            let key = format!(
                "{:?}{}{}{:?}",
                s.enrollment, s.machine_id, hash, s.last_push
            );
            if key != last {
                writeln!(output, "[{:>4}s] {line}", started.elapsed().as_secs())?;
                output.flush()?;
                last = key;
            }
        }
        agent.shutdown().await?;
        Ok::<(), anyhow::Error>(())
    })?;
    Ok(())
}
