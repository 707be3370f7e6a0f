//! `fluxrig trace <id>`: where a message went and why, from the hops the racks sampled (the
//! mixer's API); `fluxrig tail <rack>.<gear>.<port>`: the live messages an output port sends
//! over the bus,
//! decoded, with PAN-like digit runs masked.

use std::io::Write;
use std::time::{Duration, UNIX_EPOCH};

use anyhow::{Context as _, anyhow};
use clap::Args;
use fluxrig::fluxmsg::{Codec, json};
use fluxrig::snake::{NatsOptions, Pattern, Snake};
use hyper::Method;

use super::Failure;
use super::api::{Api, Client, segment, text};

#[derive(Debug, Args)]
pub(crate) struct TraceArgs {
    /// The message's id (decimal, or a UUID); without one, the ids of the most recent
    /// messages whose hops were reported.
    id: Option<String>,
    #[command(flatten)]
    api: Api,
}

pub(crate) fn trace(args: &TraceArgs, output: &mut dyn Write) -> Result<(), Failure> {
    let client = Client::new(&args.api)?;
    let Some(id) = &args.id else {
        let recent = client.json(Method::GET, "/messages?limit=20", None)?;
        if args.api.json() {
            serde_json::to_writer_pretty(&mut *output, &recent)?;
            writeln!(output)?;
        } else {
            for id in recent.as_array().into_iter().flatten() {
                writeln!(output, "{}", text(id))?;
            }
        }
        return Ok(());
    };
    let path = client.json(
        Method::GET,
        &format!("/messages/{}/path", segment(id)),
        None,
    )?;
    if args.api.json() {
        serde_json::to_writer_pretty(&mut *output, &path)?;
        writeln!(output)?;
        return Ok(());
    }
    writeln!(output, "message {}", text(&path["id"]))?;
    let hops = path["hops"].as_array().cloned().unwrap_or_default();
    let first = hops.first().and_then(|h| h["ts"].as_i64()).unwrap_or(0);
    for hop in &hops {
        let ts = hop["ts"].as_i64().unwrap_or(0);
        let at = u64::try_from(ts).map_or_else(
            |_| "-".to_owned(),
            |ns| {
                humantime::format_rfc3339_millis(UNIX_EPOCH + Duration::from_nanos(ns)).to_string()
            },
        );
        let decision = hop["decision"]
            .as_str()
            .map(|d| format!("  [{d}]"))
            .unwrap_or_default();
        writeln!(
            output,
            "  {at}  +{:>8.3}ms  {}.{} -> {}{decision}",
            (ts - first) as f64 / 1e6,
            text(&hop["rack"]),
            text(&hop["gear"]),
            text(&hop["port"]),
        )?;
    }
    if let Some(dead) = path["dead_letter"].as_object() {
        writeln!(
            output,
            "  dead-lettered at {}.{} (#{}): {}",
            text(&dead["rack"]),
            text(&dead["gear"]),
            text(&dead["sequence"]),
            text(&dead["reason"])
        )?;
    }
    Ok(())
}

#[derive(Debug, Args)]
pub(crate) struct TailArgs {
    /// `<rack>.<gear>.<port>` of an output port that feeds the bus (the start of a guaranteed
    /// or cross-rack wire); `*` matches any one part (`edge.*.out`). Hot wires inside a rack
    /// never reach the bus: tail a port that starts a bus lane, or sample with `trace`.
    port: String,
    /// The NATS server.
    #[arg(long, env = "FLUXRIG_NATS")]
    nats: String,
    /// Stop after this many messages.
    #[arg(long)]
    count: Option<u64>,
    /// Stop after this long.
    #[arg(long, value_parser = humantime::parse_duration)]
    duration: Option<Duration>,
}

pub(crate) fn tail(args: &TailArgs, output: &mut dyn Write) -> Result<(), Failure> {
    let parts: Vec<&str> = args.port.split('.').collect();
    if parts.len() != 3 || parts.iter().any(|p| p.is_empty()) {
        return Err(anyhow!("expected <rack>.<gear>.<port>, not {:?}", args.port).into());
    }
    let pattern = Pattern::parse(&format!("flux.msg.{}", args.port))
        .with_context(|| format!("{:?}", args.port))?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the runtime")?;
    runtime.block_on(async {
        let snake = Snake::nats(NatsOptions::new(args.nats.as_str()).name("fluxrig-tail"))
            .await
            .with_context(|| format!("cannot connect to {}", args.nats))?;
        let mut sub = snake.subscribe(pattern).await?;
        let codec = Codec::default();
        let deadline = args.duration.map(|d| tokio::time::Instant::now() + d);
        let mut seen = 0u64;
        while args.count.is_none_or(|n| seen < n) {
            let next = async {
                match deadline {
                    Some(at) => tokio::time::timeout_at(at, sub.next()).await.ok().flatten(),
                    None => sub.next().await,
                }
            };
            let msg = tokio::select! {
                msg = next => msg,
                _ = tokio::signal::ctrl_c() => None,
            };
            let Some(msg) = msg else { break };
            // A lane publishes the messages waiting together as one pack: one line each.
            let payloads = if fluxrig::fluxmsg::pack::is_pack(&msg.payload) {
                fluxrig::fluxmsg::pack::parts(&msg.payload)
                    .unwrap_or_else(|_| vec![msg.payload.clone()])
            } else {
                vec![msg.payload.clone()]
            };
            for payload in payloads {
                if args.count.is_some_and(|n| seen >= n) {
                    break;
                }
                seen += 1;
                let line = match codec.decode(&payload) {
                    Ok(m) => json::to_string(&m),
                    Err(e) => format!("(not a fluxMsg: {e}; {} bytes)", payload.len()),
                };
                writeln!(
                    output,
                    "{} {}",
                    msg.subject.as_str(),
                    iso8583::mask_pans(&line)
                )?;
            }
            output.flush()?;
        }
        Ok::<(), anyhow::Error>(())
    })?;
    Ok(())
}
