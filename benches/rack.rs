//! `cargo bench --bench rack`: the rack engine against baselines measured in the same run.
//!
//! - `pipeline/<rack|bare>`: a four-gear in-process pipeline (generate → transform → route →
//!   sink) beside a bare chain of Tokio channels of the same length moving the same messages.
//!   Each iteration moves 100,000 messages end to end. The rack's ids come from an idgen pool
//!   of 64 machine ids (one generator mints 25,600 ids per second). The bare chain does the
//!   same edit and routing decision in plain tasks and channels, in batches of 64, without
//!   ids, hops, counters or panic isolation. Targets: the rack reaches 0.5x the bare chain and
//!   1 million messages per second.
//! - `guaranteed/<two_rack|raw_jetstream|raw_jetstream_msg_id|three_rack>`, over one
//!   nats-server the bench starts (`make setup-nats`; skipped without one): two racks joined
//!   by a guaranteed lane, raw async-nats doing the same JetStream work without a rack
//!   (publish with acks, pull, ack; see [`run_raw`] for what each side does), the same with
//!   a `Nats-Msg-Id` header per publish as a lane's dedup id, and three racks (two hops).
//!   Each iteration moves 20,000 messages end to end. Target: two racks reach 0.8x raw
//!   JetStream publish-with-acks. A lane publishes the messages waiting together as one pack
//!   (up to 64), so it makes fewer JetStream publishes, deliveries and acks than messages;
//!   the summary prints how many messages each of its publishes carried.
//!
//! Throughput is in messages (`Throughput::Elements`). The end of the run prints each figure
//! in messages per second and the ratios (`ratio <a> / <b> = …`), from criterion's mean time
//! per iteration of each benchmark in this run, and the latencies: per hop in one rack, and
//! end to end across two racks.

use std::collections::{BTreeMap, VecDeque};
use std::hint::black_box;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::time::{Duration, Instant, SystemTime};

use async_nats::jetstream::{self, consumer::pull, stream};
use bytes::Bytes;
use criterion::{Criterion, SamplingMode, Throughput, criterion_group, criterion_main};
use fluxrig::fluxmsg::{FluxMsg, Value};
use fluxrig::rack::{Graph, Limits, Rack};
use fluxrig::snake::{NatsOptions, NatsServer, Snake};
use futures::StreamExt;
use serde_json::json;
use tokio::runtime::Runtime;
use tokio::sync::mpsc;

const N: u64 = 100_000;
const BATCH: usize = 64;
/// Messages per iteration of the `guaranteed` group.
const LANE_N: u64 = 20_000;
/// Publishes awaiting the server's ack at once: what a rack's guaranteed lane allows
/// (`WINDOW` in rack-lib/src/engine/lanes.rs).
const WINDOW: usize = 256;
/// The stream of the racks' guaranteed lanes (rack-lib's `STREAM`).
const LANES_STREAM: &str = "flux-msg";
/// The raw baseline's stream and subject: as long as a lane's (`flux.msg.edge.gen.out`),
/// outside the lanes' `flux.msg.>`, which a second stream may not capture too.
const RAW_STREAM: &str = "raw-bench";
const RAW_SUBJECT: &str = "flux.raw.edge.gen.out";

/// Time and iterations of every iteration criterion timed, by benchmark, for the figures and
/// ratios printed at the end of the run.
static TIMED: Mutex<BTreeMap<&'static str, (Duration, u64)>> = Mutex::new(BTreeMap::new());

/// When the first benchmark started: criterion's results written before are another run's.
static STARTED: OnceLock<SystemTime> = OnceLock::new();

/// Messages the guaranteed lanes' consumers left unacked or undelivered after the racks shut
/// down, over every iteration (printed at the end; 0 is what the ratio assumes).
static UNACKED: AtomicU64 = AtomicU64::new(0);

/// Messages the guaranteed lanes' consumers delivered more than once, over every iteration.
static REDELIVERED: AtomicU64 = AtomicU64::new(0);

/// Messages the racks' lanes carried (one per message per hop), over every iteration.
static CARRIED: AtomicU64 = AtomicU64::new(0);

/// Messages the lanes' stream stored for them (one per publish: a message alone or a pack),
/// over every iteration.
static STORED: AtomicU64 = AtomicU64::new(0);

/// Runs `run` `iters` times, records the time under `name` and returns it.
fn timed(name: &'static str, iters: u64, mut run: impl FnMut() -> Duration) -> Duration {
    STARTED.get_or_init(SystemTime::now);
    let took: Duration = (0..iters).map(|_| run()).sum();
    let mut all = TIMED.lock().unwrap_or_else(PoisonError::into_inner);
    let entry = all.entry(name).or_default();
    entry.0 += took;
    entry.1 += iters;
    took
}

fn runtime() -> Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a runtime")
}

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
    let _ = rack.shutdown(Duration::from_secs(5)).await;
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
    let rt = runtime();
    let mut group = c.benchmark_group("pipeline");
    group.throughput(Throughput::Elements(N));
    group.sample_size(10);
    group.bench_function("rack", |b| {
        b.iter_custom(|iters| timed("pipeline/rack", iters, || rt.block_on(run_rack())));
    });
    group.bench_function("bare", |b| {
        b.iter_custom(|iters| timed("pipeline/bare", iters, || rt.block_on(run_bare())));
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
    let _ = rack.shutdown(Duration::from_secs(5)).await;
    let n = hops.len();
    let (p50, p99) = percentiles(&mut hops);
    (p50, p99, n)
}

/// An idgen pool of 16 machine ids from `first`.
fn pool(first: u32) -> Arc<fluxrig::idgen::Pool> {
    Arc::new(
        fluxrig::idgen::Pool::builder()
            .machine_ids(first..first + 16)
            .build()
            .expect("ids"),
    )
}

/// A rack called `name` on its own connection to `url`, with ids from `first`.
async fn nats_rack(url: &str, name: &str, first: u32) -> Rack {
    let bus = Snake::nats(NatsOptions::new(url))
        .await
        .expect("the rack connects");
    Rack::builder(name)
        .snake(bus)
        .ids(pool(first))
        .build()
        .expect("a rack")
}

/// The source rack's graph: `LANE_N` messages published on the guaranteed lane `gen.out`.
fn source() -> Graph {
    Graph::new()
        .gear("gen", "generate", json!({ "count": LANE_N, "batch": BATCH, "template": { "data": { "n": "${counter}" } } }))
        .publish("gen.out")
}

fn edit() -> serde_json::Value {
    json!({ "steps": [{ "set": "meta.stage", "value": "edited" }] })
}

/// Two racks over a real nats-server: `edge` generates and publishes, `core` consumes on a
/// guaranteed lane. Throughput until `core` handled every message, and end-to-end latency
/// (creation to handling) p50 and p99.
async fn nats_pipeline(url: &str) -> (f64, f64, f64) {
    let count = LANE_N;
    let mut core = nats_rack(url, "core", 100).await;
    core.apply(
        Graph::new()
            .gear("edit", "transform", edit())
            .subscribe("edge", "gen.out", "edit.in"),
    )
    .await
    .expect("core applied");
    let mut tap = core.tap("edit", "out").await.expect("tap");
    let mut edge = nats_rack(url, "edge", 200).await;
    let start = Instant::now();
    edge.apply(source()).await.expect("edge applied");
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
    let _ = edge.shutdown(Duration::from_secs(5)).await;
    let _ = core.shutdown(Duration::from_secs(5)).await;
    let (p50, p99) = percentiles(&mut latencies);
    (rate, p50, p99)
}

/// Racks joined by guaranteed lanes over the server at `url`, all on one stream:
///
/// - `edge` generates `LANE_N` messages and publishes them (encoded once, packed as they come,
///   each publish with its dedup id, up to `WINDOW` acks pending);
/// - with `relay`, the rack `relay` consumes them on a durable pull consumer, sets a `meta`
///   field and publishes them again (its input acked once its publish is acked);
/// - `core` consumes them on a durable pull consumer, sets a `meta` field and drops them in
///   a `filter` (a message dropped on purpose is acked).
///
/// Timed from the source's start until `core`'s sink had every message; the consumers are
/// in place before. Then, untimed: the racks shut down, what their consumers left unacked is
/// counted in [`UNACKED`], and the stream is deleted, so that every iteration starts alike.
async fn run_lanes(url: &str, js: &jetstream::Context, relay: bool) -> Duration {
    let upstream = if relay {
        ("relay", "relay.out")
    } else {
        ("edge", "gen.out")
    };
    let mut core = nats_rack(url, "core", 100).await;
    core.apply(
        Graph::new()
            .gear("edit", "transform", edit())
            .gear(
                "sink",
                "filter",
                json!({ "drop_if": { "field": "data.n", "exists": true } }),
            )
            .wire("edit", "sink")
            .subscribe(upstream.0, upstream.1, "edit.in"),
    )
    .await
    .expect("core applied");
    let mut middle = None;
    if relay {
        let mut rack = nats_rack(url, "relay", 300).await;
        rack.apply(
            Graph::new()
                .gear(
                    "relay",
                    "transform",
                    json!({ "steps": [{ "set": "meta.relayed", "value": "yes" }] }),
                )
                .subscribe("edge", "gen.out", "relay.in")
                .publish("relay.out"),
        )
        .await
        .expect("relay applied");
        middle = Some(rack);
    }
    let mut edge = nats_rack(url, "edge", 200).await;
    let start = Instant::now();
    edge.apply(source()).await.expect("edge applied");
    let deadline = start + Duration::from_secs(120);
    loop {
        let handled = core.stats().get("sink").map_or(0, |s| s.messages_in);
        if handled >= LANE_N {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "core handled {handled} of {LANE_N} messages in 120 s"
        );
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let elapsed = start.elapsed();
    let mut stopped = vec![("edge", edge.shutdown(Duration::from_secs(5)).await)];
    if let Some(rack) = middle {
        stopped.push(("relay", rack.shutdown(Duration::from_secs(5)).await));
    }
    stopped.push(("core", core.shutdown(Duration::from_secs(5)).await));
    let (left, redelivered) = unsettled(js).await;
    UNACKED.fetch_add(left, Ordering::Relaxed);
    REDELIVERED.fetch_add(redelivered, Ordering::Relaxed);
    let mut stream = js
        .get_stream(LANES_STREAM)
        .await
        .expect("the lanes' stream");
    let stored = stream.info().await.expect("stream info").state.messages;
    STORED.fetch_add(stored, Ordering::Relaxed);
    CARRIED.fetch_add(if relay { 2 * LANE_N } else { LANE_N }, Ordering::Relaxed);
    if elapsed > Duration::from_secs(5) {
        // A stall, most likely waiting for a redelivery (the lanes' ack_wait is 30 s).
        let dropped: Vec<String> = stopped
            .iter()
            .flat_map(|(rack, s)| {
                s.stats
                    .iter()
                    .filter(|(_, g)| !g.dropped.is_empty())
                    .map(move |(gear, g)| format!("{rack}/{gear} dropped {:?}", g.dropped))
            })
            .collect();
        eprintln!(
            "guaranteed: an iteration took {elapsed:.1?}; {redelivered} messages redelivered; {}",
            if dropped.is_empty() {
                "nothing dropped".to_owned()
            } else {
                dropped.join(", ")
            }
        );
    }
    js.delete_stream(LANES_STREAM).await.expect("delete");
    elapsed
}

/// Messages the lanes' consumers have not had acked (pending acks) or not delivered, once
/// the acks sent at the racks' shutdown had time to land (up to 2 s), and how many they
/// delivered more than once.
async fn unsettled(js: &jetstream::Context) -> (u64, u64) {
    let stream = js
        .get_stream(LANES_STREAM)
        .await
        .expect("the lanes' stream");
    let deadline = Instant::now() + Duration::from_secs(2);
    loop {
        let (mut left, mut redelivered) = (0, 0);
        let mut consumers = stream.consumers();
        while let Some(info) = consumers.next().await {
            let info = info.expect("consumer info");
            left += (info.num_ack_pending as u64).saturating_add(info.num_pending);
            redelivered += info.num_redelivered as u64;
        }
        if left == 0 || Instant::now() >= deadline {
            return (left, redelivered);
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The raw baseline of the guaranteed lanes: async-nats alone does the JetStream work of two
/// racks, with none of the rack's.
///
/// - A file stream with the lanes' settings (two-minute dedup window, 24 h, 1 GiB) and a
///   durable pull consumer with explicit acks and the lanes' `ack_wait` and `max_deliver`,
///   pulling with async-nats's default batch (200, as snake's consumer), on a connection of
///   its own, like `core`; both in place before the clock starts.
/// - Timed: one task publishes `LANE_N` copies of `payload` (the bytes a lane carries) with
///   up to `WINDOW` acks pending, as `edge`'s lane does, while another pulls every message and
///   acks each one, as `core`'s lane does; until both are done.
///
/// With `msg_id`, each publish also carries a `Nats-Msg-Id` header shaped as a lane's dedup
/// id (message id, subject, publisher nonce, count: about 60 bytes), which the server checks
/// against its dedup window: the same JetStream work as a lane, header included.
///
/// What the rack does on top: mint ids and stamp hops, encode each message and decode it on
/// the far side, a dedup id (`Nats-Msg-Id` header) per publish (unless `msg_id`), hand
/// messages through gears' queues, settle each input only after everything derived from it
/// was handled, and count. What it does less of: it packs the messages waiting together
/// into one publish, where the baseline publishes each message alone.
async fn run_raw(
    publisher: &jetstream::Context,
    subscriber: &jetstream::Context,
    payload: &Bytes,
    msg_id: bool,
) -> Duration {
    let stream = publisher
        .create_stream(stream::Config {
            name: RAW_STREAM.to_owned(),
            subjects: vec![RAW_SUBJECT.to_owned()],
            max_age: Duration::from_secs(24 * 60 * 60),
            max_bytes: 1 << 30,
            duplicate_window: Duration::from_secs(120),
            storage: stream::StorageType::File,
            ..Default::default()
        })
        .await
        .expect("stream");
    let consumer = subscriber
        .get_stream(stream.cached_info().config.name.as_str())
        .await
        .expect("stream")
        .create_consumer(pull::Config {
            durable_name: Some("raw".to_owned()),
            filter_subject: RAW_SUBJECT.to_owned(),
            ack_policy: jetstream::consumer::AckPolicy::Explicit,
            ack_wait: Duration::from_secs(30),
            max_deliver: 6,
            ..Default::default()
        })
        .await
        .expect("consumer");
    let mut messages = consumer.messages().await.expect("messages");
    let start = Instant::now();
    let consume = tokio::spawn(async move {
        for _ in 0..LANE_N {
            let m = messages.next().await.expect("open").expect("message");
            black_box(&m.payload);
            m.ack().await.expect("ack");
        }
    });
    let mut pending = VecDeque::with_capacity(WINDOW);
    for seq in 1..=LANE_N {
        if pending.len() == WINDOW {
            let ack: jetstream::context::PublishAckFuture = pending.pop_front().expect("pending");
            ack.await.expect("ack");
        }
        let sent = if msg_id {
            let id = 102_284_274_371_330_248_u64 + seq;
            let mut headers = async_nats::HeaderMap::new();
            headers.insert(
                "Nats-Msg-Id",
                format!("{id}:{RAW_SUBJECT}:18ef00e94fad45f2.0:{seq:x}").as_str(),
            );
            publisher
                .publish_with_headers(RAW_SUBJECT, headers, payload.clone())
                .await
        } else {
            publisher.publish(RAW_SUBJECT, payload.clone()).await
        };
        pending.push_back(sent.expect("publish"));
    }
    for ack in pending {
        ack.await.expect("ack");
    }
    consume.await.expect("the consumer");
    let elapsed = start.elapsed();
    publisher.delete_stream(RAW_STREAM).await.expect("delete");
    elapsed
}

/// Guaranteed lanes over one nats-server: two racks, the raw JetStream baseline, three racks.
fn guaranteed(c: &mut Criterion) {
    let server = match NatsServer::start() {
        Ok(server) => server,
        Err(e) => {
            println!("guaranteed: skipped, no nats-server ({e}); run `make setup-nats`");
            return;
        }
    };
    let url = server.url();
    let rt = runtime();
    let connect = || async { jetstream::new(async_nats::connect(&url).await.expect("connect")) };
    let (js, js_sub) = rt.block_on(async { (connect().await, connect().await) });
    // One two-rack run first: its latencies, and one message as its lane encodes it, which
    // the raw baseline publishes.
    let (rate, p50, p99) = rt.block_on(nats_pipeline(&url));
    println!(
        "rack/nats two racks, guaranteed lane: {rate:.0} msg/s, end-to-end p50 {p50:.0} µs, p99 {p99:.0} µs"
    );
    let payload = rt.block_on(async {
        let stream = js
            .get_stream(LANES_STREAM)
            .await
            .expect("the lanes' stream");
        let m = stream.get_raw_message(1).await.expect("a lane's message");
        js.delete_stream(LANES_STREAM).await.expect("delete");
        // One message of it, when the lane packed several together.
        match fluxrig::fluxmsg::pack::parts(&m.payload) {
            Ok(parts) => parts.into_iter().next().expect("a message in the pack"),
            Err(_) => m.payload,
        }
    });
    println!("guaranteed: a lane's message is {} bytes", payload.len());
    let mut group = c.benchmark_group("guaranteed");
    group.throughput(Throughput::Elements(LANE_N));
    group.sampling_mode(SamplingMode::Flat);
    group.sample_size(10);
    group.bench_function("two_rack", |b| {
        b.iter_custom(|iters| {
            timed("guaranteed/two_rack", iters, || {
                rt.block_on(run_lanes(&url, &js, false))
            })
        });
    });
    group.bench_function("raw_jetstream", |b| {
        b.iter_custom(|iters| {
            timed("guaranteed/raw_jetstream", iters, || {
                rt.block_on(run_raw(&js, &js_sub, &payload, false))
            })
        });
    });
    group.bench_function("raw_jetstream_msg_id", |b| {
        b.iter_custom(|iters| {
            timed("guaranteed/raw_jetstream_msg_id", iters, || {
                rt.block_on(run_raw(&js, &js_sub, &payload, true))
            })
        });
    });
    group.bench_function("three_rack", |b| {
        b.iter_custom(|iters| {
            timed("guaranteed/three_rack", iters, || {
                rt.block_on(run_lanes(&url, &js, true))
            })
        });
    });
    group.finish();
}

fn latency(_: &mut Criterion) {
    let rt = runtime();
    let (p50, p99, n) = rt.block_on(hop_latency());
    println!("rack/hop-latency at 20,000 msg/s: p50 {p50:.1} µs, p99 {p99:.1} µs ({n} hops)");
}

/// Where criterion keeps its results, found as criterion finds it (`CRITERION_HOME`, else
/// `CARGO_TARGET_DIR/criterion`, else the target directory this bench was built in).
fn criterion_home() -> Option<PathBuf> {
    if let Some(home) = std::env::var_os("CRITERION_HOME") {
        return Some(PathBuf::from(home));
    }
    if let Some(target) = std::env::var_os("CARGO_TARGET_DIR") {
        return Some(PathBuf::from(target).join("criterion"));
    }
    // The bench runs as <target>/<profile>/deps/<name>-<hash>.
    let exe = std::env::current_exe().ok()?;
    Some(exe.parent()?.parent()?.parent()?.join("criterion"))
}

/// Criterion's mean time per iteration of `name` (`group/function`), in seconds, from the
/// estimates it wrote in this run (an older file is another run's).
fn criterion_mean(name: &str) -> Option<f64> {
    let started = *STARTED.get()?;
    let path = criterion_home()?
        .join(name)
        .join("new")
        .join("estimates.json");
    let written = std::fs::metadata(&path).ok()?.modified().ok()?;
    if written < started {
        return None;
    }
    let estimates: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(path).ok()?).ok()?;
    let nanos = estimates.get("mean")?.get("point_estimate")?.as_f64()?;
    Some(nanos / 1e9)
}

/// Each figure in messages per second and the ratios with their targets, from criterion's
/// mean time per iteration in this run (or, where its results cannot be read, the mean of
/// every iteration criterion timed, warm-up included).
fn summary(_: &mut Criterion) {
    let all = TIMED.lock().unwrap_or_else(PoisonError::into_inner);
    let rate = |name: &str, per: u64| {
        let (took, iters) = all.get(name).filter(|(_, iters)| *iters > 0)?;
        let (mean, from) = match criterion_mean(name) {
            Some(mean) => (mean, "criterion's mean".to_owned()),
            None => (
                took.as_secs_f64() / *iters as f64,
                format!("mean of {iters} timed iterations"),
            ),
        };
        (mean > 0.0).then(|| (per as f64 / mean, from))
    };
    let figures = [
        ("pipeline/rack", N),
        ("pipeline/bare", N),
        ("guaranteed/two_rack", LANE_N),
        ("guaranteed/raw_jetstream", LANE_N),
        ("guaranteed/raw_jetstream_msg_id", LANE_N),
        ("guaranteed/three_rack", LANE_N),
    ];
    for (name, per) in figures {
        if let Some((r, from)) = rate(name, per) {
            println!("{name}: {r:.0} msg/s ({from})");
        }
    }
    let ratios = [
        ("pipeline/rack", N, "pipeline/bare", N, "target >= 0.5"),
        (
            "guaranteed/two_rack",
            LANE_N,
            "guaranteed/raw_jetstream",
            LANE_N,
            "target >= 0.8",
        ),
        (
            "guaranteed/two_rack",
            LANE_N,
            "guaranteed/raw_jetstream_msg_id",
            LANE_N,
            "the lanes' dedup header on both sides, no target",
        ),
        (
            "guaranteed/three_rack",
            LANE_N,
            "guaranteed/raw_jetstream",
            LANE_N,
            "two hops, no target",
        ),
    ];
    for (a, per_a, b, per_b, target) in ratios {
        if let (Some((ra, _)), Some((rb, _))) = (rate(a, per_a), rate(b, per_b)) {
            println!("ratio {a} / {b} = {:.2} ({target})", ra / rb);
        }
    }
    if let Some((r, _)) = rate("pipeline/rack", N) {
        println!("pipeline/rack: {:.2} M msg/s (target >= 1)", r / 1e6);
    }
    if all.keys().any(|k| k.starts_with("guaranteed/")) {
        let unacked = UNACKED.load(Ordering::Relaxed);
        let redelivered = REDELIVERED.load(Ordering::Relaxed);
        println!(
            "guaranteed: {unacked} messages left unacked by the racks' consumers, {redelivered} redelivered"
        );
        let (carried, stored) = (
            CARRIED.load(Ordering::Relaxed),
            STORED.load(Ordering::Relaxed),
        );
        if stored > 0 {
            println!(
                "guaranteed: the lanes carried {carried} messages in {stored} publishes, {:.1} per publish",
                carried as f64 / stored as f64
            );
        }
    }
}

criterion_group! {
    name = benches;
    config = Criterion::default().measurement_time(Duration::from_secs(10));
    targets = pipeline, guaranteed, latency, summary
}
criterion_main!(benches);
