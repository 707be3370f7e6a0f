//! Gears that keep the CPU busy beside a gear doing I/O: on a runtime with two workers, two
//! busy gears call back to back (a wasm guest running to its deadline on every message, or a
//! Rhai expression near its operation limit on every message of a batch) while an `io_tcp`
//! server echoes. Their calls must leave the workers to other tasks, so every echo round trip
//! comes back while they are still busy; a gear whose calls ran on the workers would hold the
//! echo until it stopped.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use fluxmsg::FluxMsg;
use gears::io_tcp::IoTcp;
use gears::route::Route;
use gears::transform::Transform;
use sdk::Harness;
use serde_json::json;
use testkit::{wait_until, within};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::task::JoinHandle;

/// How long the busy gears keep calling (wall clock): several times [`ROUND_TRIP`].
const BUSY: Duration = Duration::from_secs(4);

/// The bound on one echo round trip over loopback while the gears are busy. Generous: a free
/// worker answers in well under a millisecond; a worker held by a busy gear answers only when
/// that gear stops calling, [`BUSY`] later.
const ROUND_TRIP: Duration = Duration::from_secs(1);

/// Echo round trips done while the gears are busy.
const TRIPS: usize = 10;

/// A busy gear: a task on a worker that hands it batches back to back for [`BUSY`], as a
/// rack's gear task does with a queue that never runs dry.
struct Busy {
    calls: Arc<AtomicU64>,
    done: Arc<AtomicBool>,
    task: JoinHandle<()>,
}

fn busy(mut gear: Harness, batch: fn() -> Vec<FluxMsg>) -> Busy {
    let calls = Arc::new(AtomicU64::new(0));
    let done = Arc::new(AtomicBool::new(false));
    let (counter, finished) = (Arc::clone(&calls), Arc::clone(&done));
    let task = tokio::spawn(async move {
        let start = Instant::now();
        while start.elapsed() < BUSY {
            counter.fetch_add(1, Ordering::Relaxed);
            gear.send_batch("in", batch())
                .expect("the gear takes the batch");
            // What it sent is of no interest here; it must not pile up.
            let _ = (gear.take("out"), gear.take("error"));
        }
        finished.store(true, Ordering::Release);
    });
    Busy { calls, done, task }
}

/// A started `io_tcp` server on a free port of 127.0.0.1, and its address.
fn echo_server() -> (Harness, String) {
    let mut last_error = None;
    // A port free a moment ago may be taken by the time the gear binds it: try a few.
    for _ in 0..5 {
        let addr = format!("127.0.0.1:{}", testkit::free_port());
        let mut h =
            Harness::new::<IoTcp>(&json!({ "mode": "server", "bind": addr })).expect("a config");
        match h.start() {
            Ok(()) => return (h, addr),
            Err(e) => last_error = Some(e),
        }
    }
    panic!("the server cannot bind a free port: {last_error:?}");
}

/// One echo: a line from the client, the gear's message sent back to its connection, the
/// line read back.
async fn round_trip(server: &mut Harness, client: &mut TcpStream, n: usize) {
    let line = format!("ping {n}\n");
    client
        .write_all(line.as_bytes())
        .await
        .expect("the client writes");
    let request = within("the echo's request", server.recv("out"))
        .await
        .expect("a message from the connection");
    let mut reply = FluxMsg::builder().raw(request.raw.clone()).build();
    if let Some(conn) = request.meta.get("conn.id") {
        reply.meta.insert("conn.id", conn.clone());
    }
    server
        .send("in", reply)
        .expect("the server takes the reply");
    let mut back = vec![0; line.len()];
    within("the echo's reply", client.read_exact(&mut back))
        .await
        .expect("the client reads");
    assert_eq!(back, line.as_bytes());
}

/// Echoes [`TRIPS`] times while two gears built by `gear` are busy with `batch`, each round
/// trip within [`ROUND_TRIP`].
async fn echo_beside(gear: impl Fn() -> Harness, batch: fn() -> Vec<FluxMsg>) {
    let (mut server, addr) = echo_server();
    let mut client = within("connect", TcpStream::connect(&addr))
        .await
        .expect("the server accepts");
    client.set_nodelay(true).expect("TCP_NODELAY");
    round_trip(&mut server, &mut client, 0).await;

    let busy = [busy(gear(), batch), busy(gear(), batch)];
    wait_until("both busy gears calling", || {
        busy.iter().all(|b| b.calls.load(Ordering::Relaxed) > 0)
    })
    .await;
    for n in 1..=TRIPS {
        let start = Instant::now();
        round_trip(&mut server, &mut client, n).await;
        let took = start.elapsed();
        assert!(
            took < ROUND_TRIP,
            "echo round trip {n} took {took:?} while two gears kept the CPU busy"
        );
    }
    // The round trips overlapped the busy gears' calls: they were not done yet.
    assert!(
        busy.iter().all(|b| !b.done.load(Ordering::Acquire)),
        "the busy gears stopped before the echo was measured"
    );

    for b in busy {
        within("the busy gear to stop", b.task)
            .await
            .expect("the busy gear's task");
    }
    server.shutdown().await;
}

#[cfg(feature = "wasm")]
fn wasm(extra: &serde_json::Value) -> Harness {
    let mut config = json!({
        "source": testkit::guest_wasm("testbed"),
        "allow_unsigned": true,
        "deadline": "300ms",
    });
    if let (Some(c), Some(e)) = (config.as_object_mut(), extra.as_object()) {
        c.extend(e.clone());
    }
    let gear_type = gears::Factory::builtin()
        .get("wasm")
        .expect("the wasm gear")
        .clone();
    Harness::builder(gear_type)
        .build(&config)
        .expect("the wasm gear starts")
}

#[cfg(feature = "wasm")]
/// Two messages the testbed guest loops on until the deadline stops it.
fn endless() -> Vec<FluxMsg> {
    vec![FluxMsg::builder().meta("test.action", "loop").build(); 2]
}

#[cfg(feature = "wasm")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wasm_batch_calls_leave_the_workers_to_io() {
    echo_beside(|| wasm(&json!({})), endless).await;
}

#[cfg(feature = "wasm")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wasm_per_message_calls_leave_the_workers_to_io() {
    echo_beside(|| wasm(&json!({ "batch": "off" })), endless).await;
}

/// A batch of messages for an expression that runs close to its operation limit.
fn numbers() -> Vec<FluxMsg> {
    vec![FluxMsg::builder().data("n", 20_000).build(); 16]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rhai_expressions_leave_the_workers_to_io() {
    let gear = || {
        Harness::new::<Transform>(&json!({ "steps": [{
            "set": "data.sum",
            "expr": "let s = 0; for i in 0..data.n { s += i; } s",
        }]}))
        .expect("a transform")
    };
    echo_beside(gear, numbers).await;
}

/// A batch that takes the way off the worker keeps what happens to each message, in order:
/// a route whose rules run expressions, on a worker of a multi-thread runtime.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_off_the_worker_keeps_each_outcome_in_order() {
    let mut h = Harness::new::<Route>(&json!({ "rules": [
        { "when": { "expr": "data.n % 2 == 0" }, "to": "out_even" },
        { "when": { "expr": "data.n > 4" }, "to": "out_big" },
    ]}))
    .expect("a route");
    let mut batch: Vec<FluxMsg> = (0..8)
        .map(|n| FluxMsg::builder().data("n", n).build())
        .collect();
    batch.push(FluxMsg::builder().data("n", "eight").build());
    let mut h = tokio::spawn(async move {
        h.send_batch("in", batch)
            .expect("the route takes the batch");
        h
    })
    .await
    .expect("the gear's task");
    let numbers = |msgs: Vec<FluxMsg>| -> Vec<fluxmsg::Value> {
        msgs.iter()
            .filter_map(|m| m.data.get("n").cloned())
            .collect()
    };
    let n = |xs: &[i64]| {
        xs.iter()
            .map(|&x| fluxmsg::Value::from(x))
            .collect::<Vec<_>>()
    };
    assert_eq!(numbers(h.take("out_even")), n(&[0, 2, 4, 6]));
    assert_eq!(numbers(h.take("out_big")), n(&[5, 7]));
    assert_eq!(h.error_reasons(), ["no_route", "no_route", "expr_failed"]);
    let stats = h.stats();
    assert_eq!(
        (stats.messages_in, stats.messages_out, stats.errors),
        (9, 9, 3)
    );
}
