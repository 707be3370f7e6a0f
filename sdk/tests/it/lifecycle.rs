//! The lifecycle: order, idempotence, active gears and their tasks.

use std::time::Duration;

use sdk::{Clock, DynGearType, Harness, Runner, Services};
use serde_json::json;

use crate::gears::{Probe, Ticker, msg};
use testkit::chain;

fn services() -> Services {
    let clock = sdk::ManualClock::from_unix_secs(1_767_225_600);
    let ids = idgen::Generator::builder()
        .machine_id(3)
        .clock(clock.clone())
        .build()
        .expect("a generator");
    Services::new(std::sync::Arc::new(ids), std::sync::Arc::new(clock))
}

fn runner() -> Runner {
    let prepared = DynGearType::of::<Probe>()
        .expect("registers")
        .prepare(&json!({}))
        .expect("valid");
    Runner::new("p", prepared, services())
}

#[tokio::test]
async fn hooks_run_in_order_and_drain_and_stop_are_idempotent() {
    let mut r = runner();
    let err = r.start().expect_err("start before init");
    assert_eq!(
        err.to_string(),
        "gear \"p\": cannot start while not initialised"
    );
    let mut batch = vec![msg("pass")];
    let mut out = sdk::Outputs::new();
    assert!(r.process(sdk_in(&r), &mut batch, &mut out).is_err());
    assert_eq!(batch.len(), 1, "a refused batch is left untouched");
    r.init().expect("init");
    assert!(r.init().is_err(), "init runs once");
    r.start().expect("start");
    r.process(sdk_in(&r), &mut batch, &mut out)
        .expect("processed");
    assert_eq!((batch.len(), out.len()), (0, 1));
    r.drain(Duration::from_millis(10)).await;
    r.drain(Duration::from_millis(10)).await;
    r.stop();
    r.stop();
    let mut batch = vec![msg("pass")];
    assert!(
        r.process(sdk_in(&r), &mut batch, &mut out).is_err(),
        "no processing after stop"
    );
    assert_eq!(batch.len(), 1);
}

fn sdk_in(r: &Runner) -> sdk::InPort {
    r.context().ports().input("in").expect("declared")
}

#[test]
fn stop_is_safe_on_a_gear_that_never_started() {
    let mut r = runner();
    r.stop();
    let mut r = runner();
    r.init().expect("init");
    r.stop();
}

#[test]
fn a_failing_init_names_the_gear_and_the_reason() {
    let err = Harness::new::<Probe>(&json!({ "fail_init": true })).expect_err("refused");
    assert_eq!(
        chain(&err),
        "gear \"gear\" failed to init: refused: fail_init is set"
    );
}

#[tokio::test(start_paused = true)]
async fn an_active_gear_emits_on_its_own_and_stops_on_drain() {
    let mut h = Harness::new::<Ticker>(&json!({ "count": 100, "every": "1s" })).expect("valid");
    h.start().expect("started");
    for i in 0..3 {
        let m = h.recv("out").await.expect("a tick");
        assert_eq!(m.data.get("tick").and_then(|v| v.as_i64()), Some(i));
    }
    h.shutdown().await;
    assert!(h.take("out").len() <= 1, "nothing more after drain");
    assert!(h.stats().messages_out <= 4);
}

#[tokio::test(start_paused = true)]
async fn a_task_that_ignores_shutdown_is_aborted_after_the_timeout() {
    let mut h = Harness::new::<Ticker>(&json!({ "count": 1, "every": "10ms", "stubborn": true }))
        .expect("valid");
    h.start().expect("started");
    assert!(h.recv("out").await.is_some());
    let before = tokio::time::Instant::now();
    h.shutdown().await;
    // Paused time, not the wall clock: Tokio's clock jumps from timer to timer, so this reads
    // exactly which timeout ended the drain (the one second the harness gives, not the hour
    // the task sleeps).
    let waited = before.elapsed();
    assert!(
        waited >= Duration::from_secs(1) && waited < Duration::from_secs(2),
        "{waited:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn the_harness_clock_moves_with_advance() {
    let mut h = Harness::new::<Ticker>(&json!({ "count": 1, "every": "5s" })).expect("valid");
    let t0 = h.clock().now();
    h.start().expect("started");
    h.advance(Duration::from_secs(5)).await;
    let m = h.recv("out").await.expect("the tick");
    assert_eq!(h.clock().now() - t0, Duration::from_secs(5));
    assert_eq!(
        m.ts,
        i64::try_from((t0 + Duration::from_secs(5)).as_nanos()).expect("fits")
    );
}

#[tokio::test(start_paused = true)]
async fn a_full_emitter_makes_the_source_wait_without_loss() {
    let kind = DynGearType::of::<Ticker>().expect("registers");
    let mut h = Harness::builder(kind)
        .emit_capacity(1)
        .build(&json!({ "count": 20, "every": "1ms" }))
        .expect("valid");
    h.start().expect("started");
    h.advance(Duration::from_secs(1)).await;
    let mut got = Vec::new();
    while let Some(m) = h.recv("out").await {
        got.push(m.data.get("tick").and_then(|v| v.as_i64()).expect("tick"));
        if got.len() == 20 {
            break;
        }
    }
    assert_eq!(got, (0..20).collect::<Vec<_>>());
}
