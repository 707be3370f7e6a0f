//! `cargo bench --bench wasm`: what a wasm gear costs beside a native gear doing the same work,
//! in one run, and what a fresh instance costs.
//!
//! - `set-field/*`: a batch of 64 `payment` messages (the codec bench's shape) through one
//!   gear with [`Runner::process`], exactly as the rack engine does. `native` is the built-in
//!   `transform` gear setting `data.checked = true`; `wasm-batch` is the testbed guest
//!   (`examples/guests/testbed`, built from source for wasm32-unknown-unknown) making the same
//!   edit through the batch entry point; `wasm-single` is the same module through the
//!   reference ABI's per-message entry point (`batch: off`). Throughput is in messages.
//!   Target: `wasm-batch` costs less than 1 µs per message above `native`.
//! - `on-worker/*`: the same batches through the same gears from a task on a Tokio worker of a
//!   two-thread runtime, as a rack runs them; `native-expr` is `transform` making the edit with
//!   a Rhai expression. The task yields between batches (untimed), so each batch starts on a
//!   worker; what the gears that may keep the CPU busy (wasm, Rhai) pay to leave the worker to
//!   other tasks during their calls shows beside `native`.
//! - `instantiate/*`: a fresh instance of the testbed guest from its compiled module (what a
//!   gear does at start and after a fault), and, as the baseline, wasmtime instantiating an
//!   empty module. Target: under 50 µs.

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use fluxrig::fluxmsg::{FluxMsg, Value};
use fluxrig::gears::wasm::{Module, Policy};
use fluxrig::sdk::{InPort, Outputs, Runner};
use serde_json::json;

mod runner;
mod shapes;

use runner::{BATCH, batch, runner};
use shapes::payment;

fn run(runner: &mut Runner, input: InPort, msgs: &mut Vec<FluxMsg>) -> Vec<FluxMsg> {
    let mut out = Outputs::new();
    runner.process(input, msgs, &mut out).expect("processed");
    out.drain().flat_map(|(_, m)| m).collect()
}

fn set_field(c: &mut Criterion) {
    let module = testkit::guest_wasm("testbed");
    let gears = [
        (
            "native",
            "transform",
            json!({ "steps": [{ "set": "data.checked", "value": true }] }),
        ),
        (
            "wasm-batch",
            "wasm",
            json!({ "source": module, "allow_unsigned": true }),
        ),
        (
            "wasm-single",
            "wasm",
            json!({ "source": module, "allow_unsigned": true, "batch": "off" }),
        ),
    ];
    let mut expected = payment();
    expected.data.insert("checked", Value::Bool(true));
    let mut group = c.benchmark_group("set-field");
    group.throughput(Throughput::Elements(BATCH as u64));
    for (name, gear_type, config) in gears {
        let (mut runner, input) = runner(gear_type, &config);
        // Each does the same edit before it is timed.
        let out = run(&mut runner, input, &mut batch());
        assert_eq!(out.len(), BATCH, "{name}");
        assert!(out.iter().all(|m| *m == expected), "{name}: the same edit");
        group.bench_function(name, |b| {
            b.iter_batched(
                batch,
                |mut msgs| {
                    let mut out = Outputs::new();
                    runner
                        .process(input, black_box(&mut msgs), &mut out)
                        .expect("processed");
                    out
                },
                BatchSize::SmallInput,
            );
        });
    }
    group.finish();
}

fn on_worker(c: &mut Criterion) {
    let module = testkit::guest_wasm("testbed");
    let gears = [
        (
            "native",
            "transform",
            json!({ "steps": [{ "set": "data.checked", "value": true }] }),
        ),
        (
            "native-expr",
            "transform",
            json!({ "steps": [{ "set": "data.checked", "expr": "true" }] }),
        ),
        (
            "wasm-batch",
            "wasm",
            json!({ "source": module, "allow_unsigned": true }),
        ),
        (
            "wasm-single",
            "wasm",
            json!({ "source": module, "allow_unsigned": true, "batch": "off" }),
        ),
    ];
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .build()
        .expect("a runtime");
    let mut group = c.benchmark_group("on-worker");
    group.throughput(Throughput::Elements(BATCH as u64));
    for (name, gear_type, config) in gears {
        let mut gear = Some(runner(gear_type, &config));
        group.bench_function(name, |b| {
            b.iter_custom(|iters| {
                let (mut runner, input) = gear.take().expect("the runner is back");
                // Timed on a worker, one batch at a time; making the batch is not timed.
                let task = rt.spawn(async move {
                    let mut spent = Duration::ZERO;
                    for _ in 0..iters {
                        let mut msgs = batch();
                        let mut out = Outputs::new();
                        let start = Instant::now();
                        runner
                            .process(input, black_box(&mut msgs), &mut out)
                            .expect("processed");
                        spent += start.elapsed();
                        assert_eq!(out.len(), BATCH);
                        // As a rack's gear task does between batches when its queue is empty:
                        // back to the scheduler, so that each batch starts on a worker.
                        tokio::task::yield_now().await;
                    }
                    (runner, input, spent)
                });
                let (runner, input, spent) = rt.block_on(task).expect("the bench task");
                gear = Some((runner, input));
                spent
            });
        });
    }
    group.finish();
}

fn instantiate(c: &mut Criterion) {
    let bytes = std::fs::read(testkit::guest_wasm("testbed")).expect("the testbed module");
    let policy = Policy {
        allow_unsigned: true,
        ..Policy::default()
    };
    let module = Module::compile(&bytes, &policy, false, None).expect("compiles");
    let mut group = c.benchmark_group("instantiate");
    group.bench_function("testbed", |b| {
        b.iter(|| {
            module
                .instantiate("bench", 256, Duration::from_secs(1))
                .expect("instantiates")
        });
    });
    let engine = wasmtime::Engine::default();
    let empty = wasmtime::Module::new(&engine, b"\0asm\x01\0\0\0").expect("an empty module");
    group.bench_function("wasmtime-empty", |b| {
        b.iter(|| {
            let mut store = wasmtime::Store::new(&engine, ());
            wasmtime::Instance::new(&mut store, &empty, &[]).expect("instantiates")
        });
    });
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));
    targets = set_field, on_worker, instantiate
}
criterion_main!(benches);
