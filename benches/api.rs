//! `cargo bench --bench api`: the mixer's HTTP API under load on loopback.
//!
//! A load run with a plain `main` (no criterion): it prints a table, checks nothing against
//! its targets and exits 0.
//!
//! For each store in `API_STORES` (default `sqlite,memory`; SQLite is the embedded default,
//! `<data_dir>/mixer.db` in a temporary directory, WAL, `synchronous = FULL`), one mixer
//! (`Mixer::builder().data_dir(..)`, in-process transport) serves its API
//! (`Api::builder(..).token(..).telemetry(..)`) on `127.0.0.1:0`, with racks written
//! straight into its store: active, three labels, ten gears' health and heartbeat stats.
//!
//! 1. **`GET /metrics`** with 1,000 racks, each with a metric snapshot of 10 gears ingested
//!    into the telemetry (as a rack publishes it): 50 requests one after another on one
//!    keep-alive connection after 5 warm-up ones (target: under 50 ms), then the parts alone
//!    in this thread: `Telemetry::render` over the racks read once, and the store's
//!    `racks()`.
//! 2. **`GET /api/v1/racks`** with 10,000 racks, a page at a time (the default page, 100
//!    racks, from the mixer's shared listing, which it reads from the store at most about
//!    once a second): first the parts alone, one after another (the store's `racks()` and
//!    `rack_list()`; each rack's `RackView` in JSON, which the API makes once per listing), every rack by pages of
//!    1,000 as `fluxrig racks list` reads them, and 20 requests from one client; then
//!    `API_CLIENTS` (default 100) client tasks, each looping on its own
//!    keep-alive connection (hyper-util's legacy client), for a warm-up of 3 s and a window
//!    of `API_WINDOW_SECS` (default 10 s). As wrk counts them, latencies and requests per
//!    second are those of the requests answered in the window (target: p99 under 10 ms).
//!
//! The CPU time of each group of threads comes from `/proc/self/task/*/schedstat`: the
//! server's runtime (`api-server`), sqlx's SQLite workers, the clients' runtime
//! (`api-client`). The table gives it per operation (the `CPU ms` column), a figure that
//! other work on the machine moves less than the latencies.
//!
//! The server and the clients share the machine's cores (and whatever else runs on it: the
//! first and last lines give the load average).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use fluxrig::fluxmsg::Codec;
use fluxrig::mixer::Mixer;
use fluxrig::mixer::api::{Api, DEFAULT_PAGE, MAX_PAGE, RackView};
use fluxrig::mixer::store::{MemoryStore, RackRecord, RackStatus, Store};
use fluxrig::mixer::telemetry::Telemetry;
use fluxrig::rack::agent::telemetry::{GearCounters, METRICS_TYPE, MetricsSnapshot, to_message};
use futures::StreamExt as _;
use http_body_util::{BodyExt as _, Empty};
use hyper::Uri;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use tokio::runtime::Runtime;

/// Racks listed by `GET /api/v1/racks`.
const LIST_RACKS: usize = 10_000;
/// Racks, and gears per rack, rendered by `/metrics`.
const METRICS_RACKS: usize = 1_000;
const GEARS: usize = 10;
/// Concurrent clients of the listing (`API_CLIENTS` sets another count).
const CLIENTS: usize = 100;
/// Before the window of the listing's load.
const WARMUP: Duration = Duration::from_secs(3);
/// Requests of the one-after-another measures.
const METRICS_REQUESTS: usize = 50;
const SINGLE_REQUESTS: usize = 20;
/// How long one request may take before it counts as an error.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);
/// Targets, in milliseconds.
const LIST_P99_MS: f64 = 10.0;
const METRICS_MS: f64 = 50.0;
const TOKEN: &str = "bench-api-token-0123456789";

type HttpClient = Client<HttpConnector, Empty<Bytes>>;

fn main() {
    let window = std::env::var("API_WINDOW_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .map_or(Duration::from_secs(10), Duration::from_secs);
    let clients = std::env::var("API_CLIENTS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(CLIENTS);
    let stores = std::env::var("API_STORES").unwrap_or_else(|_| "sqlite,memory".to_owned());
    let cores = std::thread::available_parallelism().map_or(1, std::num::NonZero::get);
    println!(
        "api: {cores} cores shared by the server and {clients} clients (one process); window {} s; \
         load average {}",
        window.as_secs(),
        load_average()
    );
    let server_rt = runtime("api-server");
    let client_rt = runtime("api-client");
    let mut rows = Vec::new();
    for store in stores.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        run_store(&server_rt, &client_rt, store, clients, window, &mut rows);
    }
    print_table(&rows);
    println!(
        "api: done; load average {} (other work on the machine skews every figure above)",
        load_average()
    );
}

fn runtime(name: &str) -> Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name(name)
        .enable_all()
        .build()
        .expect("runtime")
}

/// One line of the table.
struct Row {
    store: String,
    what: String,
    p50_ms: f64,
    p99_ms: f64,
    per_sec: Option<f64>,
    /// CPU time per operation, in milliseconds, every thread of the process counted.
    cpu_ms: Option<f64>,
    /// The target on p99, in milliseconds.
    target_ms: Option<f64>,
}

impl Row {
    fn new(store: &str, what: String, (sorted_us, cpu_ms): (Vec<u32>, f64)) -> Row {
        Row {
            store: store.to_owned(),
            what,
            p50_ms: percentile(&sorted_us, 0.50) / 1000.0,
            p99_ms: percentile(&sorted_us, 0.99) / 1000.0,
            per_sec: None,
            cpu_ms: Some(cpu_ms),
            target_ms: None,
        }
    }

    fn target(mut self, ms: f64) -> Row {
        self.target_ms = Some(ms);
        self
    }
}

fn run_store(
    server_rt: &Runtime,
    client_rt: &Runtime,
    store: &str,
    clients: usize,
    window: Duration,
    rows: &mut Vec<Row>,
) {
    let dir = std::env::temp_dir().join(format!("fluxrig-api-{}-{store}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let telemetry = Telemetry::new(1_000);
    let (mixer, server) = server_rt.block_on(async {
        // The racks written into the store never heartbeat: a long interval keeps the
        // liveness sweep from marking them all offline during the run.
        let builder = Mixer::builder()
            .data_dir(&dir)
            .heartbeat_interval(Duration::from_secs(3600), 3);
        let builder = match store {
            // No `.store(..)`: the embedded default, `<data_dir>/mixer.db`.
            "sqlite" => builder,
            "memory" => builder.store(Arc::new(MemoryStore::new())),
            other => panic!("no store {other:?}: sqlite or memory"),
        };
        let mixer = builder.start().await.expect("a mixer");
        let server = Api::builder(mixer.clone())
            .token(TOKEN)
            .telemetry(telemetry.clone())
            .serve("127.0.0.1:0".parse().expect("an address"))
            .await
            .expect("the API serves");
        (mixer, server)
    });
    let base = format!("http://{}", server.local_addr());
    let http: HttpClient = {
        let _guard = client_rt.enter();
        Client::builder(TokioExecutor::new())
            .pool_max_idle_per_host(clients)
            .build_http()
    };

    // 1. /metrics with 1,000 racks × 10 gears.
    let took = insert_racks(server_rt, mixer.store(), 0..METRICS_RACKS);
    println!(
        "api/{store}: {METRICS_RACKS} racks inserted in {:.1} s",
        took.as_secs_f64()
    );
    let codec = Codec::default();
    for i in 0..METRICS_RACKS {
        let msg = to_message(METRICS_TYPE, &snapshot(i)).expect("a snapshot message");
        telemetry.ingest(&codec.encode_to_vec(&msg).expect("it encodes"));
    }
    let metrics_uri: Uri = format!("{base}/metrics").parse().expect("a URI");
    let (lat, bytes) = sequential(client_rt, &http, &metrics_uri, METRICS_REQUESTS, 5);
    let lines = String::from_utf8_lossy(&bytes)
        .lines()
        .filter(|l| l.starts_with("flux_gear_messages_in_total{"))
        .count();
    assert_eq!(lines, METRICS_RACKS * GEARS, "/metrics shows every gear");
    rows.push(
        Row::new(
            store,
            format!(
                "GET /metrics, {METRICS_RACKS} racks x {GEARS} gears, 1 client ({} KB)",
                bytes.len() / 1024
            ),
            lat,
        )
        .target(METRICS_MS),
    );
    let racks = server_rt
        .block_on(mixer.racks())
        .expect("the racks of the store");
    let refused = mixer.refused();
    let lat = timed(METRICS_REQUESTS, || {
        std::hint::black_box(telemetry.render(&racks, &refused));
    });
    rows.push(Row::new(store, "  Telemetry::render alone".to_owned(), lat).target(METRICS_MS));
    let lat = timed(METRICS_REQUESTS, || {
        std::hint::black_box(server_rt.block_on(mixer.store().racks()).expect("racks"));
    });
    rows.push(Row::new(
        store,
        format!("  store racks() alone, {METRICS_RACKS} rows"),
        lat,
    ));

    // 2. GET /api/v1/racks with 10,000 racks.
    let took = insert_racks(server_rt, mixer.store(), METRICS_RACKS..LIST_RACKS);
    println!(
        "api/{store}: {} more racks inserted in {:.1} s",
        LIST_RACKS - METRICS_RACKS,
        took.as_secs_f64()
    );
    let lat = timed(SINGLE_REQUESTS, || {
        std::hint::black_box(server_rt.block_on(mixer.store().racks()).expect("racks"));
    });
    rows.push(Row::new(
        store,
        format!("  store racks() alone, {LIST_RACKS} rows"),
        lat,
    ));
    let lat = timed(SINGLE_REQUESTS, || {
        std::hint::black_box(
            server_rt
                .block_on(mixer.store().rack_list())
                .expect("racks"),
        );
    });
    rows.push(Row::new(
        store,
        format!("  store rack_list() alone, {LIST_RACKS} rows (the listing, at most 1/s)"),
        lat,
    ));
    let listing = server_rt
        .block_on(mixer.rack_listing())
        .expect("the listing");
    let mut size = 0;
    let lat = timed(SINGLE_REQUESTS, || {
        size = listing
            .racks()
            .iter()
            .map(|r| {
                serde_json::to_vec(&RackView::from(r.clone()))
                    .expect("JSON")
                    .len()
            })
            .sum();
    });
    rows.push(Row::new(
        store,
        format!(
            "  each rack's RackView in JSON alone ({:.1} MB, once per listing)",
            size as f64 / 1e6
        ),
        lat,
    ));
    // Every rack, a page of 1,000 after another, as `fluxrig racks list` reads them.
    let started = Instant::now();
    let mut listed = 0;
    let mut after = String::new();
    loop {
        let uri: Uri = format!("{base}/api/v1/racks?limit={MAX_PAGE}&after={after}")
            .parse()
            .expect("a URI");
        let bytes = client_rt.block_on(get(&http, &uri)).expect("a page");
        let page: Vec<serde_json::Value> = serde_json::from_slice(&bytes).expect("a JSON array");
        listed += page.len();
        match page.last() {
            Some(last) if page.len() == MAX_PAGE => {
                after = last["name"].as_str().expect("a name").to_owned();
            }
            _ => break,
        }
    }
    assert_eq!(listed, LIST_RACKS, "the pages list every rack");
    println!(
        "api/{store}: all {LIST_RACKS} racks in pages of {MAX_PAGE} in {:.1} ms",
        started.elapsed().as_secs_f64() * 1e3
    );
    let racks_uri: Uri = format!("{base}/api/v1/racks").parse().expect("a URI");
    let (lat, bytes) = sequential(client_rt, &http, &racks_uri, SINGLE_REQUESTS, 2);
    let listed: Vec<serde_json::Value> = serde_json::from_slice(&bytes).expect("a JSON array");
    assert_eq!(listed.len(), DEFAULT_PAGE, "a page of the default size");
    rows.push(Row::new(
        store,
        format!(
            "GET /api/v1/racks, {LIST_RACKS} racks, a page of {DEFAULT_PAGE}, 1 client ({} KB)",
            bytes.len() / 1024
        ),
        lat,
    ));
    let load = concurrent(client_rt, &http, &racks_uri, clients, window);
    let answered = load.latencies.len();
    let mut row = Row::new(
        store,
        format!(
            "GET /api/v1/racks, {LIST_RACKS} racks, a page of {DEFAULT_PAGE}, {clients} clients"
        ),
        (load.latencies, load.server_cpu_ms),
    )
    .target(LIST_P99_MS);
    row.per_sec = Some(answered as f64 / window.as_secs_f64());
    let max_ms = row.p99_ms.max(load.max_ms);
    rows.push(row);
    println!(
        "api/{store}/racks x{clients}: {answered} answered in the window, {} errors{}, max \
         {max_ms:.0} ms; CPU in the window (cores): {}",
        load.errors,
        load.first_error
            .map_or_else(String::new, |e| format!(" (the first: {e})")),
        load.cpu
    );

    drop(http);
    server_rt.block_on(server.shutdown());
    mixer.stop();
    drop(mixer);
    let _ = std::fs::remove_dir_all(&dir);
}

/// Writes racks `range` into the store, 32 at a time; how long it took.
fn insert_racks(rt: &Runtime, store: &Arc<dyn Store>, range: std::ops::Range<usize>) -> Duration {
    let secret_hash = fluxrig::mixer::secret::hash("not-a-secret").expect("a hash");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX));
    let start = Instant::now();
    rt.block_on(
        futures::stream::iter(range)
            .map(|i| {
                let rack = rack(i, &secret_hash, now);
                async move { store.insert_rack(&rack).await.expect("a rack inserted") }
            })
            .buffer_unordered(32)
            .collect::<Vec<()>>(),
    );
    start.elapsed()
}

fn gear_name(g: usize) -> String {
    format!("gear-{g:02}")
}

/// Rack `i` as a heartbeating fleet has it: active, labelled, ten gears' health and stats.
fn rack(i: usize, secret_hash: &str, now: i64) -> RackRecord {
    let mut r = RackRecord::new(
        &format!("00000000-0000-4000-8000-{i:012}"),
        &format!("rack-{i:05}"),
        secret_hash.to_owned(),
        now - 3_600_000,
    );
    r.status = RackStatus::Active;
    r.machine_id = u16::try_from(i).ok();
    r.last_seen = now;
    r.labels = BTreeMap::from([
        ("env".to_owned(), ["prod", "staging"][i % 2].to_owned()),
        ("zone".to_owned(), ["a", "b", "c"][i % 3].to_owned()),
        ("region".to_owned(), "eu-west".to_owned()),
    ]);
    r.ip = format!("10.{}.{}.{}", i >> 16, (i >> 8) & 255, i & 255);
    r.version = "0.1.0".to_owned();
    r.applied_hash = format!("{:064x}", i * 7919);
    let mut gears = serde_json::Map::new();
    for g in 0..GEARS {
        r.health.insert(gear_name(g), "ok".to_owned());
        gears.insert(
            gear_name(g),
            serde_json::json!({
                "messages_in": i * 100 + g,
                "messages_out": i * 100 + g,
                "errors": g,
                "dropped": {},
            }),
        );
    }
    r.stats = serde_json::json!({ "gears": gears });
    r
}

/// Rack `i`'s metric snapshot: ten gears, one drop reason each.
fn snapshot(i: usize) -> MetricsSnapshot {
    let n = |k: usize| u64::try_from(i * 1_000 + k).unwrap_or(u64::MAX);
    MetricsSnapshot {
        rack: format!("rack-{i:05}"),
        ts_ms: 1,
        gears: (0..GEARS)
            .map(|g| {
                (
                    gear_name(g),
                    GearCounters {
                        messages_in: n(g),
                        messages_out: n(g),
                        errors: n(0) % 7,
                        dropped: BTreeMap::from([("unwired".to_owned(), n(1) % 5)]),
                    },
                )
            })
            .collect(),
        telemetry_dropped: BTreeMap::from([("rate".to_owned(), 0)]),
    }
}

/// `f` run `n` times in this thread: the sorted durations in microseconds, and the mean
/// CPU time per run of every thread of the process, in milliseconds.
fn timed(n: usize, mut f: impl FnMut()) -> (Vec<u32>, f64) {
    let cpu = cpu_total();
    let mut lat: Vec<u32> = (0..n)
        .map(|_| {
            let start = Instant::now();
            f();
            micros(start.elapsed())
        })
        .collect();
    lat.sort_unstable();
    (lat, per_run_ms(cpu, n))
}

fn per_run_ms(cpu_before: u64, n: usize) -> f64 {
    cpu_total().saturating_sub(cpu_before) as f64 / 1e6 / n.max(1) as f64
}

/// One GET with the token: the body of a 200, or why not.
async fn get(http: &HttpClient, uri: &Uri) -> Result<Bytes, String> {
    let req = hyper::Request::get(uri.clone())
        .header("authorization", format!("Bearer {TOKEN}"))
        .body(Empty::new())
        .map_err(|e| e.to_string())?;
    let call = async {
        let res = http.request(req).await.map_err(|e| e.to_string())?;
        let status = res.status();
        let body = res
            .into_body()
            .collect()
            .await
            .map_err(|e| e.to_string())?
            .to_bytes();
        if status.is_success() {
            Ok(body)
        } else {
            Err(format!("{status}: {}", String::from_utf8_lossy(&body)))
        }
    };
    tokio::time::timeout(REQUEST_TIMEOUT, call)
        .await
        .map_err(|_| "timed out".to_owned())?
}

/// `n` GETs one after another after `warmup` ones: the sorted latencies in microseconds,
/// the mean CPU time per request (server and client) in milliseconds, and the last body.
fn sequential(
    rt: &Runtime,
    http: &HttpClient,
    uri: &Uri,
    n: usize,
    warmup: usize,
) -> ((Vec<u32>, f64), Bytes) {
    rt.block_on(async {
        let mut body = Bytes::new();
        for _ in 0..warmup {
            body = get(http, uri).await.expect("a warm-up request");
        }
        let cpu = cpu_total();
        let mut lat = Vec::with_capacity(n);
        for _ in 0..n {
            let start = Instant::now();
            body = get(http, uri).await.expect("a request");
            lat.push(micros(start.elapsed()));
        }
        lat.sort_unstable();
        ((lat, per_run_ms(cpu, n)), body)
    })
}

/// What the concurrent clients saw in the window.
struct Load {
    /// Of the requests answered in the window, sorted, in microseconds.
    latencies: Vec<u32>,
    /// The longest request still in flight at the end of the window, so far, in milliseconds.
    max_ms: f64,
    /// Requests that failed or timed out in the window, and the first one's error.
    errors: usize,
    first_error: Option<String>,
    /// The CPU each group of threads used in the window, in cores.
    cpu: String,
    /// The server's CPU (its runtime and the SQLite workers) per answered request, in ms.
    server_cpu_ms: f64,
}

/// `clients` tasks, each GETting `uri` in a loop on its own connection, through a warm-up
/// and a window. As wrk does, a latency counts when its request is answered in the window.
fn concurrent(
    rt: &Runtime,
    http: &HttpClient,
    uri: &Uri,
    clients: usize,
    window: Duration,
) -> Load {
    let start = Instant::now() + WARMUP;
    let end = start + window;
    let tasks: Vec<_> = (0..clients)
        .map(|_| {
            let (http, uri) = (http.clone(), uri.clone());
            rt.spawn(async move {
                let (mut lat, mut errors, mut first_error) = (Vec::new(), 0, None);
                let mut in_flight = Duration::ZERO;
                loop {
                    let sent = Instant::now();
                    if sent >= end {
                        break;
                    }
                    let got = tokio::time::timeout_at(end.into(), get(&http, &uri)).await;
                    let done = Instant::now();
                    match got {
                        // Still in flight at the end of the window.
                        Err(_) => in_flight = done - sent,
                        Ok(Ok(_)) if done >= start => lat.push(micros(done - sent)),
                        Ok(Ok(_)) => {}
                        Ok(Err(e)) if done >= start => {
                            errors += 1;
                            first_error.get_or_insert(e);
                        }
                        Ok(Err(_)) => {}
                    }
                }
                (lat, in_flight, errors, first_error)
            })
        })
        .collect();
    std::thread::sleep(start.saturating_duration_since(Instant::now()));
    let before = cpu_ns();
    std::thread::sleep(end.saturating_duration_since(Instant::now()));
    let after = cpu_ns();
    let used = |group: &str| {
        after
            .get(group)
            .copied()
            .unwrap_or(0)
            .saturating_sub(before.get(group).copied().unwrap_or(0))
    };
    let mut load = Load {
        latencies: Vec::new(),
        max_ms: 0.0,
        errors: 0,
        first_error: None,
        cpu: after
            .keys()
            .map(|group| {
                format!(
                    "{group} {:.2}",
                    used(group) as f64 / 1e9 / window.as_secs_f64()
                )
            })
            .collect::<Vec<_>>()
            .join(", "),
        server_cpu_ms: 0.0,
    };
    for task in tasks {
        let (lat, in_flight, errors, first_error) = rt.block_on(task).expect("a client task");
        load.latencies.extend(lat);
        load.max_ms = load.max_ms.max(in_flight.as_secs_f64() * 1000.0);
        load.errors += errors;
        if load.first_error.is_none() {
            load.first_error = first_error;
        }
    }
    load.latencies.sort_unstable();
    load.server_cpu_ms =
        (used("server") + used("sqlite workers")) as f64 / 1e6 / load.latencies.len().max(1) as f64;
    load
}

/// CPU time of this process's threads, in nanoseconds (`/proc/self/task/*/schedstat`), by
/// group: the server's runtime, sqlx's SQLite workers, the clients' runtime, the rest.
fn cpu_ns() -> BTreeMap<&'static str, u64> {
    let mut ns = BTreeMap::new();
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return ns;
    };
    for task in tasks.flatten() {
        let comm = std::fs::read_to_string(task.path().join("comm")).unwrap_or_default();
        let group = if comm.starts_with("api-server") {
            "server"
        } else if comm.starts_with("sqlx-sqlite") {
            "sqlite workers"
        } else if comm.starts_with("api-client") {
            "clients"
        } else {
            "other"
        };
        let used = std::fs::read_to_string(task.path().join("schedstat"))
            .ok()
            .and_then(|s| s.split_whitespace().next()?.parse::<u64>().ok())
            .unwrap_or(0);
        *ns.entry(group).or_insert(0) += used;
    }
    ns
}

/// Every thread's CPU time, in nanoseconds.
fn cpu_total() -> u64 {
    cpu_ns().values().sum()
}

fn print_table(rows: &[Row]) {
    let width = rows.iter().map(|r| r.what.len()).max().unwrap_or(0);
    println!();
    println!(
        "CPU ms: CPU time per operation of every thread of this process (server and client for \
         1 client; under load, the server's runtime and SQLite workers per answered request), \
         whatever the load average"
    );
    println!(
        "{:<7} {:<width$} {:>9} {:>9} {:>8} {:>8}  target",
        "store", "measure", "p50 ms", "p99 ms", "req/s", "CPU ms"
    );
    for r in rows {
        let per_sec = r.per_sec.map_or_else(String::new, |n| format!("{n:.1}"));
        let cpu = r.cpu_ms.map_or_else(String::new, |n| format!("{n:.1}"));
        let target = r.target_ms.map_or_else(String::new, |t| {
            let verdict = if r.p99_ms < t { "PASS" } else { "MISS" };
            format!("p99 < {t:.0} ms: {verdict}")
        });
        println!(
            "{:<7} {:<width$} {:>9.2} {:>9.2} {per_sec:>8} {cpu:>8}  {target}",
            r.store, r.what, r.p50_ms, r.p99_ms
        );
    }
    println!();
}

fn percentile(sorted: &[u32], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = (p * sorted.len() as f64).ceil() as usize;
    f64::from(sorted[rank.clamp(1, sorted.len()) - 1])
}

fn micros(d: Duration) -> u32 {
    u32::try_from(d.as_micros()).unwrap_or(u32::MAX)
}

/// The 1, 5 and 15 minute load averages.
fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg").map_or_else(
        |_| "unknown".to_owned(),
        |l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "),
    )
}
