//! `cargo bench --bench rack`: a four-gear in-process pipeline (generate → transform → route →
//! sink) beside a bare chain of Tokio channels of the same length moving the same messages,
//! in one run.
//!
//! Each iteration moves 100,000 messages end to end. The rack's ids come from an idgen pool
//! of 64 machine ids (one generator mints 25,600 ids per second). The bare chain does the same
//! edit and routing decision in plain tasks and channels, in batches of 64, without ids, hops,
//! counters or panic isolation. Names are `pipeline/<rack|bare>`; throughput is in messages.
//! Targets: the rack reaches 0.5x the bare chain and 1 million messages per second.

use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use fluxrig::fluxmsg::{FluxMsg, Value};
use fluxrig::rack::{Graph, Limits, Rack};
use serde_json::json;
use tokio::sync::mpsc;

const N: u64 = 100_000;
const BATCH: usize = 64;

fn graph() -> Graph {
    Graph::new()
        .gear("gen", "generate", json!({ "count": N, "batch": BATCH, "template": { "data": { "n": "${counter}", "pan": "4111111111111111" } } }))
        .gear("edit", "transform", json!({ "steps": [{ "set": "meta.stage", "value": "edited" }] }))
        .gear("switch", "route", json!({ "rules": [{ "when": { "field": "data.pan", "prefix": "4" }, "to": "out_visa" }], "default": "out_other" }))
        .gear("sink", "filter", json!({ "drop_if": { "field": "data.n", "exists": true } }))
        .wire("gen", "edit")
        .wire("edit", "switch")
        .wire("switch.out_visa", "sink")
        .wire("switch.out_other", "sink")
}

async fn run_rack() -> Duration {
    let pool = fluxrig::idgen::Pool::builder()
        .machine_ids(1..65)
        .build()
        .expect("a pool of ids");
    let mut rack = Rack::builder("bench")
        .ids(Arc::new(pool))
        .limits(Limits::default().with_batch(BATCH))
        .build()
        .expect("a rack");
    let start = Instant::now();
    rack.apply(graph()).await.expect("applied");
    loop {
        if rack.stats().get("sink").is_some_and(|s| s.messages_in >= N) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let elapsed = start.elapsed();
    rack.shutdown(Duration::from_secs(5)).await;
    elapsed
}

fn message(n: u64) -> FluxMsg {
    FluxMsg::builder()
        .data("n", n)
        .data("pan", "4111111111111111")
        .build()
}

async fn run_bare() -> Duration {
    let start = Instant::now();
    let (to_edit, mut edit_rx) = mpsc::channel::<Vec<FluxMsg>>(1024);
    let (to_switch, mut switch_rx) = mpsc::channel::<Vec<FluxMsg>>(1024);
    let (to_sink, mut sink_rx) = mpsc::channel::<Vec<FluxMsg>>(1024);
    let source = tokio::spawn(async move {
        let mut n = 0;
        while n < N {
            let batch: Vec<_> = (n..(n + BATCH as u64).min(N)).map(message).collect();
            n += batch.len() as u64;
            if to_edit.send(batch).await.is_err() {
                return;
            }
        }
    });
    let edit = tokio::spawn(async move {
        while let Some(mut batch) = edit_rx.recv().await {
            for m in &mut batch {
                m.meta.insert("stage", "edited".into());
            }
            if to_switch.send(batch).await.is_err() {
                return;
            }
        }
    });
    let switch = tokio::spawn(async move {
        while let Some(batch) = switch_rx.recv().await {
            let (visa, other): (Vec<_>, Vec<_>) = batch.into_iter().partition(|m| {
                m.data
                    .get("pan")
                    .and_then(Value::as_str)
                    .is_some_and(|p| p.starts_with('4'))
            });
            for part in [visa, other] {
                if !part.is_empty() && to_sink.send(part).await.is_err() {
                    return;
                }
            }
        }
    });
    let mut seen = 0;
    while let Some(batch) = sink_rx.recv().await {
        seen += batch.iter().filter(|m| m.data.get("n").is_some()).count() as u64;
        if seen >= N {
            break;
        }
    }
    let elapsed = start.elapsed();
    let _ = tokio::join!(source, edit, switch);
    elapsed
}

fn pipeline(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a runtime");
    let mut group = c.benchmark_group("pipeline");
    group.throughput(Throughput::Elements(N));
    group.sample_size(10);
    group.bench_function("rack", |b| {
        b.iter_custom(|iters| (0..iters).map(|_| rt.block_on(run_rack())).sum());
    });
    group.bench_function("bare", |b| {
        b.iter_custom(|iters| (0..iters).map(|_| rt.block_on(run_bare())).sum());
    });
    group.finish();
}

/// Sorted percentiles of `samples` (nanoseconds) as microseconds.
fn percentiles(samples: &mut [i64]) -> (f64, f64) {
    samples.sort_unstable();
    let at = |q: f64| {
        let i = ((samples.len() as f64 - 1.0) * q).round() as usize;
        samples.get(i).copied().unwrap_or(0) as f64 / 1000.0
    };
    (at(0.50), at(0.99))
}

/// Per-hop latency at a steady 20,000 msg/s: the time between consecutive hops of each
/// message (a hop is stamped when a gear sends), p50 and p99.
async fn hop_latency() -> (f64, f64, usize) {
    let mut rack = Rack::builder("latency")
        .limits(Limits::default().with_batch(BATCH))
        .build()
        .expect("a rack");
    let count = 20_000;
    let graph = Graph::new()
        .gear("edit", "transform", json!({ "steps": [{ "set": "meta.stage", "value": "edited" }] }))
        .gear("switch", "route", json!({ "rules": [{ "when": { "field": "data.pan", "prefix": "4" }, "to": "out_visa" }], "default": "out_other" }))
        .gear("sink", "filter", json!({ "pass_if": { "field": "data.n", "exists": true } }))
        .wire("edit", "switch")
        .wire("switch.out_visa", "sink")
        .wire("switch.out_other", "sink");
    // The tap first, then the source (a second apply adds it), so the tap sees every message.
    rack.apply(graph.clone()).await.expect("applied");
    let mut tap = rack.tap("sink", "out").await.expect("tap");
    rack.apply(
        graph
            .gear("gen", "generate", json!({ "count": count, "rate": { "tps": 20000 }, "template": { "data": { "n": "${counter}", "pan": "4111111111111111" } } }))
            .wire("gen", "edit"),
    )
    .await
    .expect("the source added");
    let mut hops = Vec::new();
    for _ in 0..count {
        let Ok(Some(m)) = tokio::time::timeout(Duration::from_secs(30), tap.recv()).await else {
            break;
        };
        hops.extend(m.path.windows(2).map(|w| w[1].ts - w[0].ts));
    }
    rack.shutdown(Duration::from_secs(5)).await;
    let n = hops.len();
    let (p50, p99) = percentiles(&mut hops);
    (p50, p99, n)
}

/// Two racks over a real nats-server: `edge` generates and publishes, `core` consumes on a
/// guaranteed lane. Throughput until `core` handled every message, and end-to-end latency
/// (creation to handling) p50 and p99.
async fn nats_pipeline(url: &str) -> (f64, f64, f64) {
    let count = 20_000u64;
    let connect = || fluxrig::snake::Snake::nats(fluxrig::snake::NatsOptions::new(url));
    let (edge_bus, core_bus) = (
        connect().await.expect("edge connects"),
        connect().await.expect("core connects"),
    );
    let pool = |first: u32| {
        Arc::new(
            fluxrig::idgen::Pool::builder()
                .machine_ids(first..first + 16)
                .build()
                .expect("ids"),
        )
    };
    let mut core = Rack::builder("core")
        .snake(core_bus)
        .ids(pool(100))
        .build()
        .expect("core");
    core.apply(
        Graph::new()
            .gear(
                "edit",
                "transform",
                json!({ "steps": [{ "set": "meta.stage", "value": "edited" }] }),
            )
            .subscribe("edge", "gen.out", "edit.in"),
    )
    .await
    .expect("core applied");
    let mut tap = core.tap("edit", "out").await.expect("tap");
    let mut edge = Rack::builder("edge")
        .snake(edge_bus)
        .ids(pool(200))
        .build()
        .expect("edge");
    let start = Instant::now();
    edge.apply(
        Graph::new()
            .gear("gen", "generate", json!({ "count": count, "batch": BATCH, "template": { "data": { "n": "${counter}" } } }))
            .publish("gen.out"),
    )
    .await
    .expect("edge applied");
    let mut seen = std::collections::HashSet::new();
    let mut latencies = Vec::new();
    while (seen.len() as u64) < count {
        let Ok(Some(m)) = tokio::time::timeout(Duration::from_secs(30), tap.recv()).await else {
            break;
        };
        let now = i64::try_from(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap_or_default()
                .as_nanos(),
        )
        .unwrap_or(i64::MAX);
        latencies.push(now - m.ts);
        seen.insert(m.data.get("n").and_then(Value::as_i64).unwrap_or(-1));
    }
    let rate = seen.len() as f64 / start.elapsed().as_secs_f64();
    edge.shutdown(Duration::from_secs(5)).await;
    core.shutdown(Duration::from_secs(5)).await;
    let (p50, p99) = percentiles(&mut latencies);
    (rate, p50, p99)
}

fn latency(_: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a runtime");
    let (p50, p99, n) = rt.block_on(hop_latency());
    println!("rack/hop-latency at 20,000 msg/s: p50 {p50:.1} µs, p99 {p99:.1} µs ({n} hops)");
    match fluxrig::snake::NatsServer::start() {
        Ok(server) => {
            let (rate, p50, p99) = rt.block_on(nats_pipeline(&server.url()));
            println!(
                "rack/nats two racks, guaranteed lane: {rate:.0} msg/s, end-to-end p50 {p50:.0} µs, p99 {p99:.0} µs"
            );
        }
        Err(e) => println!("rack/nats: skipped, no nats-server ({e}); run `make setup-nats`"),
    }
}

criterion_group! {
    name = benches;
    config = Criterion::default().measurement_time(Duration::from_secs(10));
    targets = pipeline, latency
}
criterion_main!(benches);
