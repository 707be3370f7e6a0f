//! `cargo bench --bench fleet`: one mixer against a simulated fleet over a real nats-server.
//!
//! A system load run with a plain `main` (no criterion): it prints a table, checks nothing
//! against its targets and exits 0.
//!
//! - The mixer (`mixer_lib::Mixer`, auto-adopt, heartbeat interval 10 s) runs in a child
//!   process: this binary started again with `FLUXRIG_FLEET_ROLE=mixer`. Its CPU use is that
//!   process's `utime + stime` (`/proc/<pid>/stat`) over the window: the mixer's tasks, its
//!   snake connection (async-nats) and its store (sqlx's SQLite worker threads), nothing
//!   else. The child wraps its store in a counter of calls and time per method, which is how
//!   the table gives store calls per heartbeat.
//! - The simulated racks are tasks of this process on 8 connections of their own. They speak
//!   the agent protocol by hand (`fluxmsg::system` payloads): a hello and its enrollment
//!   reply (the passport gives the secret and machine id), heartbeats as requests on
//!   `flux.agent.heartbeat` (`full_state` first, `seq`, `applied_hash`, per-gear stats as an
//!   agent sends them; replies checked against the cluster key), and `applying` then
//!   `applied` on `flux.agent.status` for each push on `flux.rack.<name>.scenario`.
//! - A baseline run answers the same heartbeats with a trivial responder (a child process
//!   that replies a fixed payload): the transport's latency floor and the cost of answering
//!   at all.
//!
//! Phases, for each store in `FLEET_STORES` (default `sqlite,memory`; SQLite is a file in a
//! temporary directory, WAL, `synchronous = FULL`, the embedded default):
//!
//! 1. **Heartbeats**: 10,000 racks (`FLEET_HEARTBEAT_RACKS`) enroll (32 hellos in flight),
//!    then heartbeat every 10 s, spread evenly (1,000 heartbeats/s); after a 10 s warm-up
//!    (every rack's first, full beat), a window of `FLEET_WINDOW_SECS` (default 30) is
//!    measured: the mixer's CPU (target: under half a core) and the request → reply latency
//!    the racks see (target: p99 under 5 ms), from every request sent in the window (one
//!    that times out after 5 s is counted apart, not as a latency).
//! 2. **Push convergence**, twice: a fresh mixer, 1,000 racks enrolled, heartbeating and
//!    subscribed to their scenario subjects; a scenario naming all 1,000 (one `generate`
//!    gear, deployed everywhere) is imported, then activated: the time from the activate call
//!    until `Mixer::convergence` shows all 1,000 `applied` (polled every 25 ms), and when each
//!    rack got its push (target: p99 under 2 s). In the first run each rack answers
//!    `applying` and `applied` back to back; in the second it takes 20 ms to apply, as a
//!    rack starting its gears would. A run that stops converging (nothing changes for 5 s
//!    after every rack sent `applied`) prints the statuses the mixer kept.
//!
//! Other work on the machine moves every figure: the first and last lines give the load
//! average, and the baseline shows what the transport alone does meanwhile.
//!
//! The bench starts its own nats-server (`make setup-nats` installs one); without one it says
//! so and exits.

use std::io::{BufRead as _, BufReader, Write as _};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::time::{Duration, Instant};

use fluxrig::fluxmsg::system::{
    EnrollmentReply, Heartbeat, HeartbeatReply, Hello, Payload as _, PushStatus, ScenarioPush,
    StateEnvelope,
};
use fluxrig::fluxmsg::{Map, Text, Value};
use fluxrig::mixer::Mixer;
use fluxrig::mixer::store::{
    Convergence, Lease, MemoryStore, Millis, Put, RackRecord, ScenarioRecord, Seen, SqliteStore,
    Store, StoreFuture,
};
use fluxrig::rack::passport::ClusterPublic;
use fluxrig::snake::{Message, NatsOptions, NatsServer, Pattern, Snake, Subject, Subscription};
use futures::StreamExt as _;
use tokio::runtime::Runtime;
use tokio::task::JoinHandle;

/// Set in the child processes: `mixer` or `echo`.
const ROLE: &str = "FLUXRIG_FLEET_ROLE";
/// Racks of the heartbeat phase (`FLEET_HEARTBEAT_RACKS` sets another count).
const HEARTBEAT_RACKS: usize = 10_000;
/// Racks of the push phase.
const PUSH_RACKS: usize = 1_000;
/// Every rack's heartbeat interval (the mixer's default).
const PERIOD: Duration = Duration::from_secs(10);
/// Before the window: one period, so that every rack has sent its first (full) heartbeat.
const WARMUP: Duration = PERIOD;
/// How long a rack waits for a reply (a hello's or a heartbeat's).
const REPLY_TIMEOUT: Duration = Duration::from_secs(5);
/// The racks' connections to nats-server.
const CONNECTIONS: usize = 8;
/// Hellos in flight at once while the fleet enrolls.
const ENROLLING: usize = 32;
/// How long a rack waits for its enrollment reply. Long: a rack that asks again gets
/// `denied` (its first hello registered it, and an auto-adopted rack has no other secret).
const HELLO_TIMEOUT: Duration = Duration::from_secs(120);
/// How long a simulated rack takes to apply a push in the second push run (a real agent
/// builds and starts its gears between `applying` and `applied`).
const APPLY: Duration = Duration::from_millis(20);
/// Clock ticks per second of `/proc/<pid>/stat` (USER_HZ, 100 on Linux).
const TICKS: f64 = 100.0;

fn main() {
    match std::env::var(ROLE).as_deref() {
        Ok("mixer") => return child_mixer(),
        Ok("echo") => return child_echo(),
        _ => {}
    }
    let mut server = match NatsServer::start() {
        Ok(server) => server,
        Err(e) => {
            println!("fleet: skipped, no nats-server ({e}); run `make setup-nats`");
            return;
        }
    };
    let url = server.url();
    let window = std::env::var("FLEET_WINDOW_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .map_or(Duration::from_secs(30), Duration::from_secs);
    let heartbeat_racks = std::env::var("FLEET_HEARTBEAT_RACKS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(HEARTBEAT_RACKS);
    let stores = std::env::var("FLEET_STORES").unwrap_or_else(|_| "sqlite,memory".to_owned());
    let cores = std::thread::available_parallelism().map_or(1, std::num::NonZero::get);
    println!(
        "fleet: {cores} cores shared by nats-server, the mixer (a child process) and the simulated \
         racks (this process, {CONNECTIONS} connections); window {} s; load average {}",
        window.as_secs(),
        load_average()
    );
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let conns: Vec<Snake> = rt.block_on(async {
        let mut conns = Vec::new();
        for _ in 0..CONNECTIONS {
            conns.push(
                Snake::nats(NatsOptions::new(&url))
                    .await
                    .expect("a rack connection"),
            );
        }
        conns
    });
    let env = Env {
        rt: &rt,
        conns: &conns,
        url: &url,
        nats_pid: server.pid(),
        heartbeat_racks,
    };
    baseline(&env, window / 2);
    for store in stores.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        heartbeats(&env, store, window);
        push(&env, store, Duration::ZERO);
        push(&env, store, APPLY);
    }
    drop(conns);
    drop(rt);
    let _ = server.stop();
    println!(
        "fleet: done; load average {} (other work on the machine skews every figure above)",
        load_average()
    );
}

/// What every phase shares.
struct Env<'a> {
    rt: &'a Runtime,
    conns: &'a [Snake],
    url: &'a str,
    nats_pid: Option<u32>,
    heartbeat_racks: usize,
}

// ---------------------------------------------------------------------------------------
// The phases.

/// The racks' heartbeats answered by a trivial responder: the floor under the mixer's figures.
fn baseline(env: &Env<'_>, window: Duration) {
    let dir = temp_dir("echo");
    let mut echo = ChildProc::start("echo", env.url, "-", &dir);
    let racks: Vec<Arc<SimRack>> = (0..env.heartbeat_racks)
        .map(|i| Arc::new(SimRack::new(format!("rack-{i:05}"), 100, "not-a-secret")))
        .collect();
    let warmup = Duration::from_secs(2);
    let run = start_heartbeats(env, &racks, None);
    let m = measure(env, &mut echo, &run, warmup, window);
    run.stop();
    echo.quit();
    let _ = std::fs::remove_dir_all(&dir);
    println!(
        "fleet/baseline heartbeats: {} racks, trivial responder: {}",
        racks.len(),
        m.summary()
    );
    println!(
        "fleet/baseline heartbeats: responder CPU {:.3} cores, nats-server {:.3}, simulated racks {:.3}",
        m.child_cores, m.nats_cores, m.self_cores
    );
}

/// 10,000 racks heartbeating every 10 s against one mixer.
fn heartbeats(env: &Env<'_>, store: &str, window: Duration) {
    let dir = temp_dir(&format!("{store}-heartbeats"));
    let mut mixer = ChildProc::start("mixer", env.url, store, &dir);
    let key = ClusterPublic::from_hex(&mixer.public_key).expect("the cluster key");
    let (racks, took, waits) = enroll(env, &key, env.heartbeat_racks);
    println!(
        "fleet/{store}/enroll: {} racks active in {:.1} s ({:.0} hellos/s, {ENROLLING} in \
         flight); hello to reply p50 {:.0} ms, p99 {:.0} ms, max {:.0} ms",
        racks.len(),
        took.as_secs_f64(),
        racks.len() as f64 / took.as_secs_f64(),
        percentile(&waits, 0.50) / 1000.0,
        percentile(&waits, 0.99) / 1000.0,
        waits.last().copied().map_or(0.0, f64::from) / 1000.0
    );
    let run = start_heartbeats(env, &racks, Some(key));
    let m = measure(env, &mut mixer, &run, WARMUP, window);
    run.stop();
    println!(
        "fleet/{store}/heartbeats: {} racks, one every {} s each: {}",
        racks.len(),
        PERIOD.as_secs(),
        m.summary()
    );
    println!(
        "fleet/{store}/heartbeats: mixer CPU {:.3} cores (target < 0.5); nats-server {:.3}, \
         simulated racks {:.3}",
        m.child_cores, m.nats_cores, m.self_cores
    );
    println!(
        "fleet/{store}/heartbeats: latency p50 {:.2} ms, p99 {:.2} ms (target < 5 ms), max {:.2} ms",
        m.p50_ms, m.p99_ms, m.max_ms
    );
    let beats = m.answered + m.timeouts;
    println!(
        "fleet/{store}/heartbeats: store calls per heartbeat: {}",
        m.store.per(beats)
    );
    mixer.quit();
    let _ = std::fs::remove_dir_all(&dir);
}

/// A scenario naming 1,000 racks activated on a fresh mixer, until all of them applied it.
/// Each rack answers `applying`, then `applied` after `apply` (zero: at once).
fn push(env: &Env<'_>, store: &str, apply: Duration) {
    let label = if apply.is_zero() {
        format!("{store}/push")
    } else {
        format!("{store}/push+{}ms", apply.as_millis())
    };
    let dir = temp_dir(&format!("{store}-push-{}", apply.as_millis()));
    let mut mixer = ChildProc::start("mixer", env.url, store, &dir);
    let key = ClusterPublic::from_hex(&mixer.public_key).expect("the cluster key");
    let (racks, _, _) = enroll(env, &key, PUSH_RACKS);
    let log = Arc::new(PushLog {
        t0: OnceLock::new(),
        first: Mutex::new(Vec::new()),
        repeats: AtomicU64::new(0),
        reported: AtomicU64::new(0),
        apply,
    });
    let listeners: Vec<JoinHandle<()>> = env.rt.block_on(async {
        let mut listeners = Vec::new();
        for (i, rack) in racks.iter().enumerate() {
            let conn = env.conns[i % env.conns.len()].clone();
            let sub = conn
                .subscribe(Pattern::from(
                    Subject::scenario(&rack.name).expect("a subject"),
                ))
                .await
                .expect("a push subscription");
            listeners.push(tokio::spawn(answer_pushes(
                conn,
                sub,
                Arc::clone(rack),
                key,
                Arc::clone(&log),
            )));
        }
        for conn in env.conns {
            probe(conn).await;
        }
        listeners
    });
    let run = start_heartbeats(env, &racks, Some(key));
    // The fleet is heartbeating when the scenario comes.
    std::thread::sleep(Duration::from_secs(2));
    let yaml = scenario(&racks);
    let path = dir.join("fleet.yaml");
    std::fs::write(&path, &yaml).expect("write the scenario");
    let imported = mixer.ask(&format!("import {}", path.display()));
    let mut words = imported.split_whitespace().skip(1);
    let (import_ms, hash) = (
        words.next().unwrap_or_default().to_owned(),
        words.next().unwrap_or_default().to_owned(),
    );
    let before = Snapshot::take(env, &mut mixer);
    let start = Instant::now();
    let _ = log.t0.set(start);
    let activated = mixer.ask("activate fleet 1.0.0");
    let activate_took = start.elapsed();
    let pushed: usize = activated
        .split_whitespace()
        .nth(1)
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    // Until every rack is `applied`; or until nothing changed for 5 s after every rack sent
    // its `applied`; or 60 s.
    let deadline = Duration::from_secs(60);
    let stall = Duration::from_secs(5);
    let (mut seen, mut changed) = (0, Instant::now());
    let (converged, last) = loop {
        let reply = mixer.ask(&format!("converged {hash}"));
        let applied: usize = reply
            .split_whitespace()
            .nth(1)
            .and_then(|n| n.parse().ok())
            .unwrap_or(0);
        if applied >= racks.len() {
            break (Some(start.elapsed()), reply);
        }
        if applied != seen {
            (seen, changed) = (applied, Instant::now());
        }
        let all_sent = log.reported.load(Ordering::Relaxed) >= racks.len() as u64;
        if (all_sent && changed.elapsed() > stall) || start.elapsed() > deadline {
            break (None, reply);
        }
        std::thread::sleep(Duration::from_millis(25));
    };
    let after = Snapshot::take(env, &mut mixer);
    run.stop();
    for l in listeners {
        l.abort();
    }
    let mut arrived =
        std::mem::take(&mut *log.first.lock().unwrap_or_else(PoisonError::into_inner));
    arrived.sort_unstable();
    let ms = |us: f64| us / 1000.0;
    let how = if apply.is_zero() {
        "`applying` then `applied` at once".to_owned()
    } else {
        format!("`applied` {} ms after `applying`", apply.as_millis())
    };
    println!(
        "fleet/{label}: {} racks named, each answers {how}; import {import_ms} ms, activate \
         returned after {:.0} ms ({pushed} pushed)",
        racks.len(),
        activate_took.as_secs_f64() * 1000.0
    );
    match converged {
        Some(t) => println!(
            "fleet/{label}: all {} applied after {:.0} ms (from the activate call; polled every \
             25 ms)",
            racks.len(),
            t.as_secs_f64() * 1000.0
        ),
        None => println!(
            "fleet/{label}: never converged: after {:.1} s ({} s after the last change, every \
             rack having sent `applied`): {last}",
            start.elapsed().as_secs_f64(),
            changed.elapsed().as_secs()
        ),
    }
    println!(
        "fleet/{label}: push arrival p50 {:.0} ms, p99 {:.0} ms (target < 2000 ms), max {:.0} \
         ms ({} of {} racks got one; {} pushes more than one per rack)",
        ms(percentile(&arrived, 0.50)),
        ms(percentile(&arrived, 0.99)),
        ms(arrived.last().copied().map_or(0.0, f64::from)),
        arrived.len(),
        racks.len(),
        log.repeats.load(Ordering::Relaxed)
    );
    let secs = after.at.duration_since(before.at).as_secs_f64();
    println!(
        "fleet/{label}: mixer CPU {:.2} cores over those {secs:.1} s (heartbeats included); \
         store calls per rack: {}",
        cores(before.child, after.child, secs),
        after.store.minus(&before.store).per(racks.len() as u64)
    );
    mixer.quit();
    let _ = std::fs::remove_dir_all(&dir);
}

/// The scenario of the push phase: every rack named, one small gear that runs everywhere.
fn scenario(racks: &[Arc<SimRack>]) -> String {
    let mut yaml = String::from("meta: { name: fleet, version: 1.0.0 }\nracks:\n");
    for rack in racks {
        yaml.push_str("  - { name: ");
        yaml.push_str(&rack.name);
        yaml.push_str(" }\n");
    }
    yaml.push_str("gears:\n  - { name: gen, type: generate, config: { count: 1 } }\n");
    yaml
}

// ---------------------------------------------------------------------------------------
// Simulated racks.

/// One simulated rack: what its passport and its last push told it.
#[derive(Debug)]
struct SimRack {
    name: String,
    state: Mutex<RackNow>,
}

#[derive(Debug, Clone)]
struct RackNow {
    machine_id: u16,
    secret: String,
    applied: String,
}

impl SimRack {
    fn new(name: String, machine_id: u16, secret: &str) -> SimRack {
        SimRack {
            name,
            state: Mutex::new(RackNow {
                machine_id,
                secret: secret.to_owned(),
                applied: String::new(),
            }),
        }
    }

    fn now(&self) -> RackNow {
        self.state
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    fn update(&self, f: impl FnOnce(&mut RackNow)) {
        f(&mut self.state.lock().unwrap_or_else(PoisonError::into_inner));
    }
}

/// Enrolls `n` racks, `ENROLLING` hellos at a time; all must come back active. The racks,
/// the time it took, and each hello's wait for its reply in µs (sorted).
fn enroll(env: &Env<'_>, key: &ClusterPublic, n: usize) -> (Vec<Arc<SimRack>>, Duration, Vec<u32>) {
    let start = Instant::now();
    let enrolled: Vec<(Arc<SimRack>, u32)> = env.rt.block_on(
        futures::stream::iter(0..n)
            .map(|i| {
                let conn = env.conns[i % env.conns.len()].clone();
                async move { hello(&conn, &format!("rack-{i:05}"), key).await }
            })
            .buffer_unordered(ENROLLING)
            .collect(),
    );
    let took = start.elapsed();
    let mut waits: Vec<u32> = enrolled.iter().map(|(_, w)| *w).collect();
    waits.sort_unstable();
    (enrolled.into_iter().map(|(r, _)| r).collect(), took, waits)
}

/// One rack's hello; the rack as its passport says, and how long the reply took in µs.
async fn hello(conn: &Snake, name: &str, key: &ClusterPublic) -> (Arc<SimRack>, u32) {
    let nonce = "0000000000000001".to_owned();
    let mut replies = conn
        .subscribe(Pattern::from(
            Subject::enrollment(name, &nonce).expect("a subject"),
        ))
        .await
        .expect("an enrollment subscription");
    let hello = Hello {
        name: name.to_owned(),
        nonce,
        version: "fleet-bench".to_owned(),
        ..Hello::default()
    };
    let sent = Instant::now();
    conn.publish(Message::new(
        Subject::hello(),
        hello.to_message().expect("encode"),
    ))
    .await
    .expect("publish a hello");
    let msg = tokio::time::timeout(HELLO_TIMEOUT, replies.next())
        .await
        .ok()
        .flatten()
        .unwrap_or_else(|| panic!("{name}: no enrollment reply in {HELLO_TIMEOUT:?}"));
    let waited = u32::try_from(sent.elapsed().as_micros()).unwrap_or(u32::MAX);
    let reply = EnrollmentReply::from_message(&msg.payload).expect("an enrollment reply");
    assert_eq!(reply.status, "active", "{name}: {}", reply.message);
    let state = key
        .open(&StateEnvelope::from_cbor(&reply.passport).expect("a passport"))
        .expect("signed by the cluster");
    let rack = SimRack::new(name.to_owned(), state.machine_id, &state.secret);
    (Arc::new(rack), waited)
}

/// Heartbeat latencies as the racks see them.
#[derive(Debug)]
struct Samples {
    t0: Instant,
    /// (sent, µs after `t0`; latency in µs)
    answered: Mutex<Vec<(u64, u32)>>,
    /// Sent, µs after `t0`.
    timeouts: Mutex<Vec<u64>>,
    /// Replies that were not `active` or did not check.
    bad: AtomicU64,
}

/// Heartbeating racks.
struct Run {
    tasks: Vec<JoinHandle<()>>,
    samples: Arc<Samples>,
    first: Instant,
}

impl Run {
    fn stop(self) {
        for t in self.tasks {
            t.abort();
        }
    }
}

/// Starts every rack's heartbeats, spread evenly over one period from 100 ms from now.
fn start_heartbeats(env: &Env<'_>, racks: &[Arc<SimRack>], key: Option<ClusterPublic>) -> Run {
    let first = Instant::now() + Duration::from_millis(100);
    let samples = Arc::new(Samples {
        t0: first,
        answered: Mutex::new(Vec::new()),
        timeouts: Mutex::new(Vec::new()),
        bad: AtomicU64::new(0),
    });
    let step = PERIOD / u32::try_from(racks.len()).expect("racks");
    let tasks = racks
        .iter()
        .enumerate()
        .map(|(i, rack)| {
            let at = first + step * u32::try_from(i).expect("racks");
            env.rt.spawn(beat(
                env.conns[i % env.conns.len()].clone(),
                Arc::clone(rack),
                key,
                at,
                Arc::clone(&samples),
            ))
        })
        .collect();
    Run {
        tasks,
        samples,
        first,
    }
}

/// One rack's heartbeats, as an agent sends them: a request, then the next one a period later.
async fn beat(
    conn: Snake,
    rack: Arc<SimRack>,
    key: Option<ClusterPublic>,
    at: Instant,
    samples: Arc<Samples>,
) {
    let mut ticker = tokio::time::interval_at(tokio::time::Instant::from_std(at), PERIOD);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut seq = 0u64;
    let mut full = true;
    loop {
        ticker.tick().await;
        seq += 1;
        let now = rack.now();
        let mut counters = Map::new();
        counters.insert("messages_in", Value::from(0u64));
        counters.insert("messages_out", Value::from(seq));
        counters.insert("errors", Value::from(0u64));
        counters.insert("dropped", Value::Map(Map::new()));
        let mut gears = Map::new();
        gears.insert("gen", Value::Map(counters));
        let mut stats = Map::new();
        stats.insert("gears", Value::Map(gears));
        let mut health = Map::new();
        if full {
            health.insert("gen", Text::from("ok"));
        }
        let hb = Heartbeat {
            machine_id: now.machine_id,
            name: rack.name.clone(),
            secret: now.secret,
            seq,
            full_state: full,
            applied_hash: now.applied,
            health,
            stats,
            config: Map::new(),
        };
        let payload = hb.to_message().expect("encode");
        let sent = Instant::now();
        let offset = micros(sent.saturating_duration_since(samples.t0));
        match conn
            .request(Subject::heartbeat(), payload, REPLY_TIMEOUT)
            .await
        {
            Ok(msg) => {
                let took = u32::try_from(sent.elapsed().as_micros()).unwrap_or(u32::MAX);
                samples
                    .answered
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .push((offset, took));
                full = match check_reply(&msg.payload, key.as_ref(), &rack) {
                    Some(full) => full,
                    None => {
                        samples.bad.fetch_add(1, Ordering::Relaxed);
                        true
                    }
                };
            }
            Err(_) => {
                samples
                    .timeouts
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .push(offset);
                full = true;
            }
        }
    }
}

/// Reads a heartbeat reply as an agent does: signed, `active`, a new passport taken.
/// `report_full_state`, or None when the reply is not one to accept.
fn check_reply(payload: &[u8], key: Option<&ClusterPublic>, rack: &SimRack) -> Option<bool> {
    let reply = HeartbeatReply::from_message(payload).ok()?;
    let Some(key) = key else {
        return Some(false);
    };
    key.check(&reply).ok()?;
    if !reply.passport.is_empty() {
        let state = key
            .open(&StateEnvelope::from_cbor(&reply.passport).ok()?)
            .ok()?;
        rack.update(|r| {
            r.machine_id = state.machine_id;
            r.secret = state.secret;
        });
    }
    (reply.status == "active").then_some(reply.report_full_state)
}

/// What the racks saw of the pushes.
#[derive(Debug)]
struct PushLog {
    /// When activate was called.
    t0: OnceLock<Instant>,
    /// When each rack got its first push of a hash, µs after `t0`.
    first: Mutex<Vec<u32>>,
    /// Pushes of a hash a rack had got already.
    repeats: AtomicU64,
    /// Pushes answered `applied`.
    reported: AtomicU64,
    /// How long a rack takes to apply.
    apply: Duration,
}

/// One rack's pushes: checked, recorded, answered `applying` then `applied`.
async fn answer_pushes(
    conn: Snake,
    mut sub: Subscription,
    rack: Arc<SimRack>,
    key: ClusterPublic,
    log: Arc<PushLog>,
) {
    let mut seen = String::new();
    while let Some(msg) = sub.next().await {
        let at = log.t0.get().map_or(0, |t0| micros(t0.elapsed()));
        let Ok(push) = ScenarioPush::from_message(&msg.payload) else {
            continue;
        };
        if key.check(&push).is_err() || push.rack_name != rack.name {
            continue;
        }
        if push.hash == seen {
            log.repeats.fetch_add(1, Ordering::Relaxed);
        } else {
            log.first
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .push(u32::try_from(at).unwrap_or(u32::MAX));
            seen.clone_from(&push.hash);
        }
        let now = rack.now();
        for (status, running) in [
            ("applying", now.applied.as_str()),
            ("applied", push.hash.as_str()),
        ] {
            if status == "applied" && !log.apply.is_zero() {
                tokio::time::sleep(log.apply).await;
            }
            let report = PushStatus {
                name: rack.name.clone(),
                machine_id: now.machine_id,
                secret: now.secret.clone(),
                version: push.version.clone(),
                hash: push.hash.clone(),
                status: status.to_owned(),
                error: String::new(),
                running_hash: running.to_owned(),
            };
            let _ = conn
                .publish(Message::new(
                    Subject::status(),
                    report.to_message().expect("encode"),
                ))
                .await;
        }
        rack.update(|r| r.applied.clone_from(&push.hash));
        log.reported.fetch_add(1, Ordering::Relaxed);
    }
}

/// Returns once the server has read everything `conn` sent before (its subscriptions too).
async fn probe(conn: &Snake) {
    let subject = Subject::parse("fleet.probe").expect("a subject");
    let mut sub = conn
        .subscribe(Pattern::from(subject.clone()))
        .await
        .expect("a probe subscription");
    conn.publish(Message::new(subject, Vec::<u8>::new()))
        .await
        .expect("a probe");
    tokio::time::timeout(REPLY_TIMEOUT, sub.next())
        .await
        .expect("the probe back");
}

// ---------------------------------------------------------------------------------------
// Measuring.

/// What one measured window of heartbeats gave.
#[derive(Debug)]
struct Measured {
    secs: f64,
    answered: u64,
    timeouts: u64,
    bad: u64,
    p50_ms: f64,
    p99_ms: f64,
    p999_ms: f64,
    max_ms: f64,
    child_cores: f64,
    nats_cores: f64,
    self_cores: f64,
    store: StoreStats,
}

impl Measured {
    fn summary(&self) -> String {
        format!(
            "{:.0} s window, {} answered ({:.0}/s), {} timed out, {} bad replies; latency p50 \
             {:.2} ms, p99 {:.2} ms, p99.9 {:.2} ms, max {:.2} ms",
            self.secs,
            self.answered,
            self.answered as f64 / self.secs,
            self.timeouts,
            self.bad,
            self.p50_ms,
            self.p99_ms,
            self.p999_ms,
            self.max_ms
        )
    }
}

/// CPU and store counters at one moment.
struct Snapshot {
    at: Instant,
    child: Option<u64>,
    nats: Option<u64>,
    me: Option<u64>,
    store: StoreStats,
}

impl Snapshot {
    fn take(env: &Env<'_>, child: &mut ChildProc) -> Snapshot {
        let store = StoreStats::parse(&child.ask("stats"));
        Snapshot {
            at: Instant::now(),
            child: cpu_ticks(&format!("/proc/{}/stat", child.child.id())),
            nats: env
                .nats_pid
                .and_then(|pid| cpu_ticks(&format!("/proc/{pid}/stat"))),
            me: cpu_ticks("/proc/self/stat"),
            store,
        }
    }
}

/// Waits `warmup` after the first heartbeat, measures `window`, then waits for the window's
/// last requests to be answered or time out.
fn measure(
    env: &Env<'_>,
    child: &mut ChildProc,
    run: &Run,
    warmup: Duration,
    window: Duration,
) -> Measured {
    let from = run.first + warmup;
    std::thread::sleep(from.saturating_duration_since(Instant::now()));
    let before = Snapshot::take(env, child);
    std::thread::sleep((from + window).saturating_duration_since(Instant::now()));
    let after = Snapshot::take(env, child);
    std::thread::sleep(REPLY_TIMEOUT + Duration::from_millis(200));
    let (lo, hi) = (micros(warmup), micros(warmup + window));
    let mut lat: Vec<u32> = run
        .samples
        .answered
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .iter()
        .filter(|(at, _)| (lo..hi).contains(at))
        .map(|(_, l)| *l)
        .collect();
    lat.sort_unstable();
    let timeouts = run
        .samples
        .timeouts
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .iter()
        .filter(|at| (lo..hi).contains(*at))
        .count();
    let secs = after.at.duration_since(before.at).as_secs_f64();
    Measured {
        secs,
        answered: lat.len() as u64,
        timeouts: timeouts as u64,
        bad: run.samples.bad.load(Ordering::Relaxed),
        p50_ms: percentile(&lat, 0.50) / 1000.0,
        p99_ms: percentile(&lat, 0.99) / 1000.0,
        p999_ms: percentile(&lat, 0.999) / 1000.0,
        max_ms: lat.last().copied().map_or(0.0, f64::from) / 1000.0,
        child_cores: cores(before.child, after.child, secs),
        nats_cores: cores(before.nats, after.nats, secs),
        self_cores: cores(before.me, after.me, secs),
        store: after.store.minus(&before.store),
    }
}

/// The value at or below which `p` of the sorted samples fall (nearest rank).
fn percentile(sorted: &[u32], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = (p * sorted.len() as f64).ceil() as usize;
    f64::from(sorted[rank.clamp(1, sorted.len()) - 1])
}

fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}

/// The 1, 5 and 15 minute load averages.
fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg").map_or_else(
        |_| "unknown".to_owned(),
        |l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "),
    )
}

/// `utime + stime` of a process, in clock ticks, from its `stat` file.
fn cpu_ticks(path: &str) -> Option<u64> {
    let stat = std::fs::read_to_string(path).ok()?;
    let fields: Vec<&str> = stat
        .get(stat.rfind(')')? + 1..)?
        .split_whitespace()
        .collect();
    // After the command: state is field 3, utime 14, stime 15.
    Some(fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?)
}

fn cores(before: Option<u64>, after: Option<u64>, secs: f64) -> f64 {
    match (before, after) {
        (Some(b), Some(a)) => a.saturating_sub(b) as f64 / TICKS / secs,
        _ => f64::NAN,
    }
}

/// Store calls and the time spent in them, per method, as the child counts them.
#[derive(Debug, Default, Clone)]
struct StoreStats(Vec<(String, u64, u64)>);

impl StoreStats {
    /// From `stats name=calls/nanos …`.
    fn parse(line: &str) -> StoreStats {
        StoreStats(
            line.split_whitespace()
                .skip(1)
                .filter_map(|w| {
                    let (name, rest) = w.split_once('=')?;
                    let (calls, nanos) = rest.split_once('/')?;
                    Some((name.to_owned(), calls.parse().ok()?, nanos.parse().ok()?))
                })
                .collect(),
        )
    }

    fn minus(&self, earlier: &StoreStats) -> StoreStats {
        StoreStats(
            self.0
                .iter()
                .map(|(name, calls, nanos)| {
                    let (c0, n0) = earlier
                        .0
                        .iter()
                        .find(|(n, _, _)| n == name)
                        .map_or((0, 0), |(_, c, n)| (*c, *n));
                    (name.clone(), calls - c0, nanos - n0)
                })
                .filter(|(_, calls, _)| *calls > 0)
                .collect(),
        )
    }

    /// `name calls-per-unit (mean µs per call)`, for each method called.
    fn per(&self, units: u64) -> String {
        if self.0.is_empty() {
            return "none".to_owned();
        }
        let units = units.max(1) as f64;
        let mut parts: Vec<String> = self
            .0
            .iter()
            .map(|(name, calls, nanos)| {
                format!(
                    "{name} {:.2} ({:.0} µs)",
                    *calls as f64 / units,
                    *nanos as f64 / *calls as f64 / 1000.0
                )
            })
            .collect();
        let (calls, nanos) = self
            .0
            .iter()
            .fold((0, 0), |(c, n), (_, calls, nanos)| (c + calls, n + nanos));
        parts.push(format!(
            "in all {:.2} calls, {:.0} µs of store time",
            calls as f64 / units,
            nanos as f64 / units / 1000.0
        ));
        parts.join(", ")
    }
}

// ---------------------------------------------------------------------------------------
// The child processes.

fn temp_dir(what: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("fluxrig-fleet-{}-{what}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("a temporary directory");
    dir
}

/// A child process of this binary, driven by lines on its standard input.
struct ChildProc {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
    public_key: String,
}

impl ChildProc {
    fn start(role: &str, url: &str, store: &str, dir: &Path) -> ChildProc {
        let mut child = Command::new(std::env::current_exe().expect("this binary"))
            .env(ROLE, role)
            .env("FLEET_NATS", url)
            .env("FLEET_STORE", store)
            .env("FLEET_DIR", dir)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("a child process");
        let stdin = child.stdin.take().expect("its stdin");
        let stdout = BufReader::new(child.stdout.take().expect("its stdout"));
        let mut proc = ChildProc {
            child,
            stdin,
            stdout,
            public_key: String::new(),
        };
        let ready = proc.line();
        proc.public_key = ready
            .strip_prefix("ready ")
            .unwrap_or_else(|| panic!("the {role} did not start: {ready:?}"))
            .to_owned();
        proc
    }

    fn line(&mut self) -> String {
        let mut line = String::new();
        self.stdout.read_line(&mut line).expect("read the child");
        assert!(!line.is_empty(), "the child exited");
        line.trim_end().to_owned()
    }

    fn ask(&mut self, command: &str) -> String {
        writeln!(self.stdin, "{command}").expect("write to the child");
        self.line()
    }

    fn quit(&mut self) {
        let _ = writeln!(self.stdin, "quit");
        let _ = self.child.wait();
    }
}

impl Drop for ChildProc {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

fn child_runtime() -> Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime")
}

fn env_var(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| panic!("{name} is not set"))
}

/// The mixer, answering the parent's commands on standard input: `stats`, `import <path>`,
/// `activate <name> <version>`, `converged <hash>`, `quit`.
fn child_mixer() {
    let rt = child_runtime();
    let dir = PathBuf::from(env_var("FLEET_DIR"));
    let (mixer, counted) = rt.block_on(async {
        let store: Arc<dyn Store> = match env_var("FLEET_STORE").as_str() {
            "sqlite" => Arc::new(
                SqliteStore::open(dir.join("mixer.db"))
                    .await
                    .expect("a SQLite store"),
            ),
            "memory" => Arc::new(MemoryStore::new()),
            other => panic!("no store {other:?}: sqlite or memory"),
        };
        let counted = Arc::new(Counted::new(store));
        let snake = Snake::nats(NatsOptions::new(env_var("FLEET_NATS")))
            .await
            .expect("the mixer's connection");
        let mixer = Mixer::builder()
            .data_dir(&dir)
            .store(Arc::clone(&counted) as Arc<dyn Store>)
            .snake(snake)
            .auto_adopt(true)
            .heartbeat_interval(PERIOD, 3)
            .hello_rates((10.0, 10.0), (1_000_000.0, 1_000_000.0))
            .start()
            .await
            .expect("a mixer");
        (mixer, counted)
    });
    // The server has the mixer's subscriptions before the first hello.
    rt.block_on(probe(mixer.snake()));
    println!("ready {}", mixer.public_key());
    for line in std::io::stdin().lines() {
        let line = line.expect("read stdin");
        let words: Vec<&str> = line.split_whitespace().collect();
        match words.as_slice() {
            ["stats"] => println!("stats {}", counted.snapshot()),
            ["import", path] => {
                let yaml = std::fs::read_to_string(path).expect("the scenario");
                let start = Instant::now();
                let imported = rt
                    .block_on(mixer.import(&yaml, false))
                    .expect("the scenario imports");
                println!(
                    "imported {} {} {}",
                    start.elapsed().as_millis(),
                    imported.hash,
                    imported.racks.len()
                );
            }
            ["activate", name, version] => {
                let pushed = rt
                    .block_on(mixer.activate(name, version))
                    .expect("the scenario activates");
                println!("activated {}", pushed.len());
            }
            ["converged", hash] => {
                let rows = rt.block_on(mixer.convergence()).expect("convergence");
                let applied = rows
                    .iter()
                    .filter(|r| r.status == "applied" && r.applied_hash == *hash)
                    .count();
                let mut by_status: std::collections::BTreeMap<&str, usize> =
                    std::collections::BTreeMap::new();
                for r in &rows {
                    *by_status.entry(r.status.as_str()).or_default() += 1;
                }
                println!("converged {applied} of {} rows {by_status:?}", rows.len());
            }
            _ => break,
        }
    }
    mixer.stop();
    rt.shutdown_timeout(Duration::from_secs(1));
}

/// A trivial responder on the heartbeat subject (in the mixers' queue group): every request
/// gets the same small reply.
fn child_echo() {
    let rt = child_runtime();
    let snake = rt.block_on(async {
        Snake::nats(NatsOptions::new(env_var("FLEET_NATS")))
            .await
            .expect("a connection")
    });
    let reply = HeartbeatReply {
        status: "active".to_owned(),
        ..HeartbeatReply::default()
    }
    .to_message()
    .expect("encode");
    let mut sub = rt
        .block_on(snake.subscribe_queue(
            Pattern::from(Subject::heartbeat()),
            fluxrig::mixer::QUEUE_GROUP,
        ))
        .expect("subscribe");
    let responder = rt.spawn({
        let snake = snake.clone();
        async move {
            while let Some(msg) = sub.next().await {
                let _ = snake.respond(&msg, reply.clone()).await;
            }
        }
    });
    rt.block_on(probe(&snake));
    println!("ready -");
    for line in std::io::stdin().lines() {
        match line.as_deref() {
            Ok("stats") => println!("stats"),
            _ => break,
        }
    }
    responder.abort();
    rt.shutdown_timeout(Duration::from_secs(1));
}

// ---------------------------------------------------------------------------------------
// The store counter.

/// The methods of `Store`, in the order of the counters.
const METHODS: [&str; 26] = [
    "insert_rack",
    "update_rack",
    "rack_by_name",
    "rack_by_id",
    "racks",
    "delete_rack",
    "acquire_lease",
    "renew_lease",
    "release_leases",
    "leases",
    "put_scenario",
    "scenario",
    "scenario_versions",
    "scenario_names",
    "set_active",
    "active",
    "put_convergence",
    "convergence",
    "setting",
    "set_setting",
    "rack_by_machine_id",
    "stale_racks",
    "put_seen",
    "lease",
    "put_convergences",
    "convergence_of",
];

/// A store that counts the calls to another and the time until each one's answer (the call
/// included, since the in-memory store does its work when called).
#[derive(Debug)]
struct Counted {
    inner: Arc<dyn Store>,
    calls: [AtomicU64; METHODS.len()],
    nanos: [AtomicU64; METHODS.len()],
}

impl Counted {
    fn new(inner: Arc<dyn Store>) -> Counted {
        Counted {
            inner,
            calls: std::array::from_fn(|_| AtomicU64::new(0)),
            nanos: std::array::from_fn(|_| AtomicU64::new(0)),
        }
    }

    fn timed<'a, T: Send + 'a>(
        &'a self,
        method: usize,
        start: Instant,
        call: StoreFuture<'a, T>,
    ) -> StoreFuture<'a, T> {
        Box::pin(async move {
            let out = call.await;
            self.calls[method].fetch_add(1, Ordering::Relaxed);
            self.nanos[method].fetch_add(
                u64::try_from(start.elapsed().as_nanos()).unwrap_or(u64::MAX),
                Ordering::Relaxed,
            );
            out
        })
    }

    /// `name=calls/nanos` for every method called so far.
    fn snapshot(&self) -> String {
        METHODS
            .iter()
            .enumerate()
            .filter_map(|(i, name)| {
                let calls = self.calls[i].load(Ordering::Relaxed);
                (calls > 0)
                    .then(|| format!("{name}={calls}/{}", self.nanos[i].load(Ordering::Relaxed)))
            })
            .collect::<Vec<_>>()
            .join(" ")
    }
}

/// Times `$call` as method `$i` of `$self`.
macro_rules! timed {
    ($self:ident, $i:expr, $call:expr) => {{
        let start = Instant::now();
        let call = $call;
        $self.timed($i, start, call)
    }};
}

impl Store for Counted {
    fn insert_rack<'a>(&'a self, rack: &'a RackRecord) -> StoreFuture<'a, ()> {
        timed!(self, 0, self.inner.insert_rack(rack))
    }
    fn update_rack<'a>(&'a self, rack: &'a RackRecord) -> StoreFuture<'a, ()> {
        timed!(self, 1, self.inner.update_rack(rack))
    }
    fn rack_by_name<'a>(&'a self, name: &'a str) -> StoreFuture<'a, Option<RackRecord>> {
        timed!(self, 2, self.inner.rack_by_name(name))
    }
    fn rack_by_id<'a>(&'a self, id: &'a str) -> StoreFuture<'a, Option<RackRecord>> {
        timed!(self, 3, self.inner.rack_by_id(id))
    }
    fn racks(&self) -> StoreFuture<'_, Vec<RackRecord>> {
        timed!(self, 4, self.inner.racks())
    }
    fn delete_rack<'a>(&'a self, id: &'a str) -> StoreFuture<'a, bool> {
        timed!(self, 5, self.inner.delete_rack(id))
    }
    fn acquire_lease<'a>(
        &'a self,
        holder: &'a str,
        range: std::ops::RangeInclusive<u16>,
        now: Millis,
        ttl: Millis,
    ) -> StoreFuture<'a, Lease> {
        timed!(self, 6, self.inner.acquire_lease(holder, range, now, ttl))
    }
    fn renew_lease<'a>(
        &'a self,
        machine_id: u16,
        holder: &'a str,
        now: Millis,
        ttl: Millis,
    ) -> StoreFuture<'a, bool> {
        timed!(
            self,
            7,
            self.inner.renew_lease(machine_id, holder, now, ttl)
        )
    }
    fn release_leases<'a>(&'a self, holder: &'a str) -> StoreFuture<'a, ()> {
        timed!(self, 8, self.inner.release_leases(holder))
    }
    fn leases(&self) -> StoreFuture<'_, Vec<Lease>> {
        timed!(self, 9, self.inner.leases())
    }
    fn put_scenario<'a>(&'a self, scenario: &'a ScenarioRecord) -> StoreFuture<'a, Put> {
        timed!(self, 10, self.inner.put_scenario(scenario))
    }
    fn scenario<'a>(
        &'a self,
        name: &'a str,
        version: &'a str,
    ) -> StoreFuture<'a, Option<ScenarioRecord>> {
        timed!(self, 11, self.inner.scenario(name, version))
    }
    fn scenario_versions<'a>(&'a self, name: &'a str) -> StoreFuture<'a, Vec<ScenarioRecord>> {
        timed!(self, 12, self.inner.scenario_versions(name))
    }
    fn scenario_names(&self) -> StoreFuture<'_, Vec<String>> {
        timed!(self, 13, self.inner.scenario_names())
    }
    fn set_active<'a>(&'a self, name: &'a str, version: &'a str) -> StoreFuture<'a, ()> {
        timed!(self, 14, self.inner.set_active(name, version))
    }
    fn active(&self) -> StoreFuture<'_, Option<(String, String)>> {
        timed!(self, 15, self.inner.active())
    }
    fn put_convergence<'a>(&'a self, row: &'a Convergence) -> StoreFuture<'a, ()> {
        timed!(self, 16, self.inner.put_convergence(row))
    }
    fn convergence(&self) -> StoreFuture<'_, Vec<Convergence>> {
        timed!(self, 17, self.inner.convergence())
    }
    fn setting<'a>(&'a self, key: &'a str) -> StoreFuture<'a, Option<String>> {
        timed!(self, 18, self.inner.setting(key))
    }
    fn set_setting<'a>(&'a self, key: &'a str, value: &'a str) -> StoreFuture<'a, ()> {
        timed!(self, 19, self.inner.set_setting(key, value))
    }
    fn rack_by_machine_id(&self, machine_id: u16) -> StoreFuture<'_, Option<RackRecord>> {
        timed!(self, 20, self.inner.rack_by_machine_id(machine_id))
    }
    fn stale_racks(&self, before: Millis) -> StoreFuture<'_, Vec<RackRecord>> {
        timed!(self, 21, self.inner.stale_racks(before))
    }
    fn put_seen<'a>(&'a self, seen: &'a [Seen]) -> StoreFuture<'a, ()> {
        timed!(self, 22, self.inner.put_seen(seen))
    }
    fn lease(&self, machine_id: u16) -> StoreFuture<'_, Option<Lease>> {
        timed!(self, 23, self.inner.lease(machine_id))
    }
    fn put_convergences<'a>(&'a self, rows: &'a [Convergence]) -> StoreFuture<'a, ()> {
        timed!(self, 24, self.inner.put_convergences(rows))
    }
    fn convergence_of<'a>(&'a self, rack: &'a str) -> StoreFuture<'a, Option<Convergence>> {
        timed!(self, 25, self.inner.convergence_of(rack))
    }
}
