//! The `mixer` program: a fleet's control plane over `mixer-lib`, with its HTTP API.
//!
//! Configuration comes from a TOML file (`--config`), `FLUXRIG_*` environment variables and
//! flags; a flag beats its variable, a variable beats the file, the file beats the defaults.
//!
//! ```text
//! cargo run --example mixer -- --token "$(openssl rand -hex 24)" --bootstrap-secret let-me-in \
//!     --nats managed --nats-port 4222
//! cargo run --example mixer -- --config mixer.toml
//! cargo run --example mixer -- --data-dir ./data --backup-key /secure/cluster.key.bak
//! FLUXRIG_STORE_URL=postgres://flux:pw@127.0.0.1/flux cargo run --example mixer -- ...
//! ```
//!
//! ```toml
//! data_dir = "./data"              # the cluster key and, by default, mixer.db
//! listen = "127.0.0.1:7400"        # the API
//! token = "..."                    # the API's bearer token (better: FLUXRIG_API_TOKEN)
//! bootstrap_secret = "..."         # what new racks present (better: FLUXRIG_BOOTSTRAP_SECRET)
//! auto_adopt = false               # admit every new rack: development only
//! heartbeat_interval = "10s"      # as the racks' (three missed: offline)
//! store_url = "sqlite://./data/mixer.db"   # or postgres://user:password@host/db
//! nats = "managed"                 # `memory`, `managed` (a nats-server this program runs) or nats://host:port
//! nats_port = 4222                 # the managed server's port
//! ```
//!
//! The store is SQLite in `<data_dir>/mixer.db` unless `store_url` names PostgreSQL. Without a
//! token the mixer refuses to start unless `--dangerously-disable-auth`, and then the API
//! listens on loopback only. It runs until Ctrl-C or SIGTERM. `FLUXRIG_LOG` sets the log level
//! (info by default), `FLUXRIG_LOG_FORMAT=json` logs one JSON object per line.

#[path = "common/program.rs"]
mod common;
#[path = "common/log.rs"]
mod log;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context as _, bail};
use clap::Parser;
use fluxrig::mixer::Mixer;
use fluxrig::mixer::api::Api;
use fluxrig::mixer::store::Store;
use fluxrig::mixer::telemetry::Telemetry;
use fluxrig::snake::{NatsOptions, NatsServer, Snake};
use serde::{Deserialize, Serialize};

/// The flags; each also reads its `FLUXRIG_*` variable.
#[derive(Debug, Parser)]
#[command(
    name = "mixer",
    version,
    about = "fluxrig's control plane: registry, enrollment, scenarios, HTTP API"
)]
struct Flags {
    /// A TOML configuration file.
    #[arg(long, short, env = "FLUXRIG_CONFIG")]
    config: Option<PathBuf>,
    /// Where the cluster key and the SQLite store live [default: ./data].
    #[arg(long, env = "FLUXRIG_DATA_DIR")]
    data_dir: Option<PathBuf>,
    /// The API's address [default: 127.0.0.1:7400].
    #[arg(long, env = "FLUXRIG_LISTEN")]
    listen: Option<SocketAddr>,
    /// The API's bearer token.
    #[arg(long, env = "FLUXRIG_API_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// Serve the API without a token (loopback only).
    #[arg(long, env = "FLUXRIG_DANGEROUSLY_DISABLE_AUTH")]
    dangerously_disable_auth: bool,
    /// The secret new racks present at their first hello.
    #[arg(long, env = "FLUXRIG_BOOTSTRAP_SECRET", hide_env_values = true)]
    bootstrap_secret: Option<String>,
    /// Admit every new rack without approval (development only; logged at every admission).
    #[arg(long, env = "FLUXRIG_AUTO_ADOPT")]
    auto_adopt: bool,
    /// How often racks heartbeat; three missed make a rack offline [default: 10s].
    #[arg(long, env = "FLUXRIG_HEARTBEAT_INTERVAL", value_parser = humantime::parse_duration)]
    heartbeat_interval: Option<Duration>,
    /// `sqlite://<path>` or `postgres://…` [default: sqlite in the data directory].
    #[arg(long, env = "FLUXRIG_STORE_URL", hide_env_values = true)]
    store_url: Option<String>,
    /// `memory`, `managed` or a NATS URL [default: memory].
    #[arg(long, env = "FLUXRIG_NATS")]
    nats: Option<String>,
    /// The port of a managed nats-server [default: 4222].
    #[arg(long, env = "FLUXRIG_NATS_PORT")]
    nats_port: Option<u16>,
    /// Copy the cluster key of the data directory to this new file (mode 0600) and exit:
    /// losing the key loses the cluster, since every rack pinned it.
    #[arg(long, value_name = "FILE")]
    backup_key: Option<PathBuf>,
}

/// The file's settings, and the effective configuration once merged.
#[derive(Debug, Default, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Config {
    data_dir: Option<PathBuf>,
    listen: Option<SocketAddr>,
    token: Option<String>,
    #[serde(default)]
    dangerously_disable_auth: bool,
    bootstrap_secret: Option<String>,
    #[serde(default)]
    auto_adopt: bool,
    #[serde(default, with = "humantime_serde_opt")]
    heartbeat_interval: Option<Duration>,
    store_url: Option<String>,
    nats: Option<String>,
    nats_port: Option<u16>,
}

/// `Option<Duration>` as humantime text (`5s`).
mod humantime_serde_opt {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub(super) fn serialize<S: Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
        match d {
            Some(d) => s.serialize_str(&humantime::format_duration(*d).to_string()),
            None => s.serialize_none(),
        }
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<Option<Duration>, D::Error> {
        let text: Option<String> = Option::deserialize(d)?;
        text.map(|t| humantime::parse_duration(&t).map_err(serde::de::Error::custom))
            .transpose()
    }
}

impl Config {
    /// The file's settings under the flags' (flags and variables first).
    fn merge(flags: Flags) -> anyhow::Result<Config> {
        let file = match &flags.config {
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .with_context(|| format!("reading {}", path.display()))?;
                toml::from_str(&text).with_context(|| format!("{}", path.display()))?
            }
            None => Config::default(),
        };
        Ok(Config {
            data_dir: flags.data_dir.or(file.data_dir),
            listen: flags.listen.or(file.listen),
            token: flags.token.or(file.token),
            dangerously_disable_auth: flags.dangerously_disable_auth
                || file.dangerously_disable_auth,
            bootstrap_secret: flags.bootstrap_secret.or(file.bootstrap_secret),
            auto_adopt: flags.auto_adopt || file.auto_adopt,
            heartbeat_interval: flags.heartbeat_interval.or(file.heartbeat_interval),
            store_url: flags.store_url.or(file.store_url),
            nats: flags.nats.or(file.nats),
            nats_port: flags.nats_port.or(file.nats_port),
        })
    }
}

fn main() -> ExitCode {
    common::main::<Flags, _>(tracing::Level::INFO, run)
}

async fn run(flags: Flags) -> anyhow::Result<()> {
    let backup = flags.backup_key.clone();
    let config = Config::merge(flags)?;
    let data_dir = config.data_dir.clone().unwrap_or_else(|| "data".into());
    if let Some(to) = backup {
        fluxrig::mixer::keys::backup(&data_dir, &to)?;
        println!(
            "cluster key of {} copied to {}",
            data_dir.display(),
            to.display()
        );
        return Ok(());
    }
    std::fs::create_dir_all(&data_dir)
        .with_context(|| format!("creating {}", data_dir.display()))?;
    let store: Arc<dyn Store> = match config.store_url.as_deref() {
        None => {
            Arc::new(fluxrig::mixer::store::SqliteStore::open(data_dir.join("mixer.db")).await?)
        }
        Some(url) if url.starts_with("sqlite://") => {
            Arc::new(fluxrig::mixer::store::SqliteStore::open(&url["sqlite://".len()..]).await?)
        }
        Some(url) if url.starts_with("postgres://") || url.starts_with("postgresql://") => {
            Arc::new(fluxrig::mixer::store::PostgresStore::connect(url).await?)
        }
        Some(_) => bail!("store_url must start with sqlite:// or postgres://"),
    };
    // Kept alive until the end: dropping it stops the server.
    let mut managed = None;
    let snake = match config.nats.as_deref().unwrap_or("memory") {
        "memory" => Snake::memory(),
        "managed" => {
            let server = NatsServer::builder()
                .port(config.nats_port.unwrap_or(4222))
                .store_dir(data_dir.join("nats"))
                .start()
                .context("starting the managed nats-server")?;
            println!("nats-server: {}", server.url());
            let snake = Snake::nats(NatsOptions::new(server.url()).name("mixer")).await?;
            managed = Some(server);
            snake
        }
        url => Snake::nats(NatsOptions::new(url).name("mixer"))
            .await
            .with_context(|| format!("connecting to {url}"))?,
    };
    let mut builder = Mixer::builder()
        .data_dir(&data_dir)
        .store(store)
        .snake(snake)
        .auto_adopt(config.auto_adopt);
    if let Some(secret) = &config.bootstrap_secret {
        builder = builder.bootstrap_secret(secret.as_str());
    }
    if let Some(interval) = config.heartbeat_interval {
        builder = builder.heartbeat_interval(interval, 3);
    }
    let mixer = builder.start().await?;
    let effective = serde_json::to_value(&config)?;
    // The racks' metric snapshots and sampled hops, for /metrics and message paths.
    let telemetry = Telemetry::start(mixer.snake(), 100_000).await?;
    let mut api = Api::builder(mixer.clone())
        .config(effective)
        .telemetry(telemetry.clone());
    match (&config.token, config.dangerously_disable_auth) {
        (Some(token), _) => api = api.token(token.as_str()),
        (None, true) => api = api.dangerously_disable_auth(),
        (None, false) => {}
    }
    let listen = config
        .listen
        .unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 7400)));
    let server = api.serve(listen).await?;
    println!(
        "mixer {}: API on http://{}/api/v1",
        mixer.id(),
        server.local_addr()
    );
    shutdown_signal().await;
    server.shutdown().await;
    telemetry.stop();
    // Heartbeat state is written once a second: write the rest before stopping.
    mixer.flush().await?;
    mixer.stop();
    drop(managed);
    Ok(())
}

/// Ctrl-C, or SIGTERM on Unix.
async fn shutdown_signal() {
    #[cfg(unix)]
    {
        let Ok(mut term) =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        else {
            let _ = tokio::signal::ctrl_c().await;
            return;
        };
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = tokio::signal::ctrl_c().await;
}
