//! The dual head: a mixer and one rack in one process, on the in-process transport. The main
//! job of the README (`make run`); nothing to install.
//!
//! The mixer starts on its embedded SQLite store (`<data-dir>/mixer.db`), imports and
//! activates the demo scenario (`examples/scenarios/dual_head.yaml`), and serves its API on
//! 127.0.0.1 with a token it prints. The rack `demo` enrolls like any rack (the active
//! scenario names it, which admits it), gets the scenario by push, and runs it; its per-gear
//! counts, as its heartbeats report them to the mixer, show every second. While it runs,
//! `fluxrig racks list` and `fluxrig scenario status` work against it from a second
//! terminal with the two variables it prints.
//!
//! ```text
//! cargo run --release --example dual_head                  # until Ctrl-C
//! cargo run --release --example dual_head -- --duration 30s
//! ```

#[path = "common/program.rs"]
mod common;
#[path = "common/log.rs"]
mod log;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use clap::Parser;
use fluxrig::mixer::Mixer;
use fluxrig::mixer::api::Api;
use fluxrig::mixer::telemetry::Telemetry;
use fluxrig::rack::agent::{Agent, AgentConfig};
use fluxrig::snake::Snake;

/// The demo scenario; `@DATA_DIR@` becomes the data directory.
const DEMO: &str = include_str!("scenarios/dual_head.yaml");

#[derive(Debug, Parser)]
#[command(
    name = "dual_head",
    about = "A mixer and a rack in one process, with the mixer's API"
)]
struct Flags {
    /// Where the mixer's store, the cluster key, the rack's state and the demo's logs go.
    #[arg(long, env = "FLUXRIG_DATA_DIR", default_value = "data/dual-head")]
    data_dir: PathBuf,
    /// The API's address (loopback).
    #[arg(long, env = "FLUXRIG_LISTEN", default_value = "127.0.0.1:7400")]
    listen: SocketAddr,
    /// The API's token [default: a new random one, printed].
    #[arg(long, env = "FLUXRIG_API_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// Stop after this long instead of at Ctrl-C.
    #[arg(long, value_parser = humantime::parse_duration)]
    duration: Option<Duration>,
}

fn main() -> ExitCode {
    common::main::<Flags, _>(tracing::Level::WARN, run)
}

async fn run(flags: Flags) -> anyhow::Result<()> {
    if !flags.listen.ip().is_loopback() {
        anyhow::bail!(
            "the dual head serves its API on loopback only, not {}",
            flags.listen
        );
    }
    std::fs::create_dir_all(&flags.data_dir)
        .with_context(|| format!("creating {}", flags.data_dir.display()))?;
    let data_dir = std::fs::canonicalize(&flags.data_dir)?;
    let snake = Snake::memory();
    let bootstrap = fluxrig::mixer::secret::generate().map_err(anyhow::Error::msg)?;
    let mixer = Mixer::builder()
        .data_dir(&data_dir)
        .snake(snake.clone())
        .bootstrap_secret(bootstrap.as_str())
        .heartbeat_interval(Duration::from_secs(1), 3)
        .start()
        .await?;
    let yaml = DEMO.replace("@DATA_DIR@", &data_dir.display().to_string());
    let imported = mixer.import(&yaml, true).await?;
    let token = match flags.token {
        Some(token) => token,
        None => fluxrig::mixer::secret::generate().map_err(anyhow::Error::msg)?,
    };
    let config = serde_json::json!({
        "data_dir": data_dir,
        "listen": flags.listen,
        "store": "sqlite",
        "snake": "memory",
        "bootstrap_secret": bootstrap,
        "token": token,
    });
    let telemetry = Telemetry::start(&snake, 10_000).await?;
    let server = Api::builder(mixer.clone())
        .token(token.as_str())
        .telemetry(telemetry.clone())
        .config(config)
        .serve(flags.listen)
        .await?;
    println!(
        "mixer {} on {}",
        mixer.id(),
        data_dir.join("mixer.db").display()
    );
    println!(
        "scenario {}:{} ({}) active, for rack demo",
        imported.name,
        imported.version,
        &imported.hash[..12]
    );
    println!(
        "API: http://{}/api/v1 — from another terminal:",
        server.local_addr()
    );
    println!("  export FLUXRIG_API_URL=http://{}", server.local_addr());
    println!("  export FLUXRIG_API_TOKEN={token}");
    println!("  cargo run --example fluxrig -- racks list");
    println!("  cargo run --example fluxrig -- scenario status");
    let agent = Agent::start(
        AgentConfig::new("demo", data_dir.join("rack-demo"))
            .bootstrap_secret(bootstrap.as_str())
            .heartbeat_interval(Duration::from_secs(1)),
        snake,
    )
    .await?;
    let started = Instant::now();
    let mut ticker = tokio::time::interval(Duration::from_secs(1));
    ticker.tick().await;
    loop {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {
                println!("stopping (Ctrl-C)");
                break;
            }
            _ = ticker.tick() => {
                let status = agent.status().current();
                let counts = match mixer.rack("demo").await {
                    Ok(rack) => counts(&rack.stats),
                    Err(_) => "not enrolled yet".to_owned(),
                };
                println!("[{:>4}s] demo {:?}: {counts}", started.elapsed().as_secs(), status.enrollment);
                if flags.duration.is_some_and(|d| started.elapsed() >= d) {
                    break;
                }
            }
        }
    }
    agent.shutdown().await?;
    server.shutdown().await;
    telemetry.stop();
    // Heartbeat state is written once a second: write the rest before stopping.
    mixer.flush().await?;
    mixer.stop();
    Ok(())
}

/// `gear in/out` for every gear of a heartbeat's `stats.gears`.
fn counts(stats: &serde_json::Value) -> String {
    let Some(gears) = stats["gears"].as_object().filter(|g| !g.is_empty()) else {
        return "no counts yet".to_owned();
    };
    gears
        .iter()
        .map(|(gear, s)| {
            format!(
                "{gear} {}/{}",
                s["messages_in"].as_u64().unwrap_or(0),
                s["messages_out"].as_u64().unwrap_or(0)
            )
        })
        .collect::<Vec<_>>()
        .join("  ")
}
