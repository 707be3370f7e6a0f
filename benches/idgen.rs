//! `cargo bench --bench idgen`: id generation against its ceiling and against the
//! `sonyflake` crate, in one run.
//!
//! Two groups, each counting one id per iteration (`Throughput::Elements(1)`):
//!
//! - `idgen-ceiling/<case>`: sustained ids per second on the system clock, in flat samples of
//!   about one second each, so each sample is a one-second window. The classic layout caps
//!   one machine id at 25,600 ids/s; cases are `generator` (one generator, one thread),
//!   `generator-2-threads` (two threads contending on one generator), `pool-4` and
//!   `pool-16` (pools of 4 and 16 machine ids, one thread) and `sonyflake` (the `sonyflake`
//!   crate's generator, whose ceiling is the same).
//! - `idgen-cost/<case>`: the cost of one id below the ceiling. The clock is the system
//!   clock read as usual but running 10,000 times faster, so a 10 ms unit lasts 1 µs and no
//!   generator runs out of sequence: what is measured is reading the clock and advancing the
//!   state, never waiting. Cases: `generator`, `pool-4`, `pool-16`, and `clock` (reading the
//!   fast clock alone, the part of the cost that is the clock's).
//!
//! A run takes about a minute and a half.

use std::hint::black_box;
use std::thread;
use std::time::{Duration, Instant};

use criterion::{Criterion, SamplingMode, Throughput, criterion_group, criterion_main};
use fluxrig::idgen::{Clock, Generator, Pool, SystemClock};

/// The system clock running `SPEED` times faster from the moment it was made.
#[derive(Debug)]
struct FastClock {
    start: Duration,
}

const SPEED: u32 = 10_000;

impl FastClock {
    fn new() -> FastClock {
        FastClock {
            start: SystemClock.now(),
        }
    }
}

impl Clock for FastClock {
    fn now(&self) -> Duration {
        self.start + SystemClock.now().saturating_sub(self.start) * SPEED
    }

    fn sleep_until(&self, deadline: Duration) {
        while self.now() < deadline {
            std::hint::spin_loop();
        }
    }
}

fn pool<C: Clock>(k: u32, clock: C) -> Pool<C> {
    Pool::builder()
        .machine_ids(100..100 + k)
        .clock(clock)
        .build()
        .expect("pool")
}

fn ceiling(c: &mut Criterion) {
    let mut g = c.benchmark_group("idgen-ceiling");
    g.throughput(Throughput::Elements(1))
        .sampling_mode(SamplingMode::Flat)
        .sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(10));

    let one = Generator::builder()
        .machine_id(1)
        .build()
        .expect("generator");
    g.bench_function("generator", |b| {
        b.iter(|| black_box(one.next().expect("id")));
    });

    let shared = Generator::builder()
        .machine_id(2)
        .build()
        .expect("generator");
    g.bench_function("generator-2-threads", |b| {
        b.iter_custom(|iters| {
            let start = Instant::now();
            thread::scope(|s| {
                for n in [iters / 2, iters - iters / 2] {
                    let ids = shared.clone();
                    s.spawn(move || {
                        for _ in 0..n {
                            black_box(ids.next().expect("id"));
                        }
                    });
                }
            });
            start.elapsed()
        });
    });

    for k in [4, 16] {
        let p = pool(k, SystemClock);
        g.bench_function(format!("pool-{k}"), |b| {
            b.iter(|| black_box(p.next().expect("id")));
        });
    }

    let sf = sonyflake::Sonyflake::builder()
        .machine_id(&|| Ok(3))
        .finalize()
        .expect("sonyflake");
    g.bench_function("sonyflake", |b| {
        b.iter(|| black_box(sf.next_id().expect("id")));
    });
    g.finish();
}

fn cost(c: &mut Criterion) {
    let mut g = c.benchmark_group("idgen-cost");
    g.throughput(Throughput::Elements(1))
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));

    let clock = FastClock::new();
    g.bench_function("clock", |b| {
        b.iter(|| black_box(clock.now()));
    });
    let one = Generator::builder()
        .machine_id(1)
        .clock(FastClock::new())
        .build()
        .expect("generator");
    g.bench_function("generator", |b| {
        b.iter(|| black_box(one.next().expect("id")));
    });
    for k in [4, 16] {
        let p = pool(k, FastClock::new());
        g.bench_function(format!("pool-{k}"), |b| {
            b.iter(|| black_box(p.next().expect("id")));
        });
    }
    g.finish();
}

criterion_group!(benches, ceiling, cost);
criterion_main!(benches);
