//! `cargo bench --bench snake`: snake's transports against raw async-nats, in one run.
//!
//! Every message carries the same ~150-byte encoded fluxMsg. Benchmarks are named
//! `snake/<path>/<impl>` and count messages (`Throughput::Elements`):
//!
//! - `snake/memory-pubsub/snake`: the in-process backend, publish then batched receive
//!   (`Subscription::next_batch`), in rounds of 16,384 so that no message is dropped;
//! - `snake/core-pubsub/{snake,async-nats}`: core NATS publish on one connection, receive one
//!   message at a time on another, in rounds of 16,384 (under the subscription's capacity);
//! - `snake/jetstream/{snake,async-nats}`: publish to a file stream with up to 256 acks
//!   pending, then consume every message with a pull consumer and ack each one.
//!
//! The bench starts its own nats-server (`make setup-nats` installs one); `FLUXRIG_NATS_SERVER`
//! names another binary.

use std::collections::VecDeque;
use std::hint::black_box;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use fluxrig::fluxmsg::{Codec, FluxMsg, Id};
use fluxrig::snake::{
    ConsumerConfig, Message, NatsOptions, NatsServer, Pattern, Snake, StreamConfig, Subject,
};
use futures::StreamExt;
use tokio::runtime::Runtime;

/// Messages per round of the core paths: under any subscription's capacity (65,536).
const ROUND: u64 = 16_384;
/// Stream acks pending at most.
const WINDOW: usize = 256;

/// A realistic ~150-byte payload: an encoded fluxMsg with identity, routing and a few fields.
fn payload() -> Bytes {
    let msg = FluxMsg::builder()
        .id(Id::U64(0x0123_4567_89ab_cdef))
        .ts(1_767_225_600_000_000_000)
        .meta("rack", "edge-1")
        .meta("gear", "acceptor")
        .data_path("iso8583.mti", "0100")
        .expect("fresh path")
        .data_path("iso8583.field.2", "4111111111111111")
        .expect("fresh path")
        .data_path("iso8583.field.4", "000000010000")
        .expect("fresh path")
        .data_path("iso8583.field.11", "123456")
        .expect("fresh path")
        .raw(&b"0100723a0001"[..])
        .build();
    let bytes = Codec::new().encode_to_vec(&msg).expect("encode");
    Bytes::from(bytes)
}

fn subject() -> Subject {
    Subject::msg("bench", "acceptor", "in").expect("subject")
}

fn runtime() -> Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime")
}

fn memory(c: &mut Criterion, payload: &Bytes) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let mut g = c.benchmark_group("snake/memory-pubsub");
    g.throughput(Throughput::Elements(1));
    g.bench_function("snake", |b| {
        b.iter_custom(|iters| {
            rt.block_on(async {
                let snake = Snake::memory();
                let mut sub = snake.subscribe(Pattern::msg_all()).await.expect("sub");
                let to = subject();
                let mut buf = Vec::with_capacity(1024);
                let start = Instant::now();
                let mut left = iters;
                while left > 0 {
                    let n = left.min(ROUND);
                    for _ in 0..n {
                        snake
                            .publish(Message::new(to.clone(), payload.clone()))
                            .await
                            .expect("publish");
                    }
                    let mut got = 0;
                    while got < n {
                        buf.clear();
                        got += sub.next_batch(&mut buf, 1024).await as u64;
                        black_box(&buf);
                    }
                    left -= n;
                }
                let took = start.elapsed();
                assert_eq!(snake.dropped(), (0, 0));
                took
            })
        });
    });
    g.finish();
}

fn core(c: &mut Criterion, rt: &Runtime, url: &str, payload: &Bytes) {
    let to = subject();
    // One subscription per implementation for the whole group (every round reads all it
    // publishes, so nothing is left over between rounds).
    let (tx, mut sub) = rt.block_on(async {
        let tx = Snake::nats(NatsOptions::new(url)).await.expect("connect");
        let rx = Snake::nats(NatsOptions::new(url)).await.expect("connect");
        let mut sub = rx.subscribe(Pattern::from(to.clone())).await.expect("sub");
        // Probes (empty) until one arrives: the subscription has reached the server.
        loop {
            tx.publish(Message::new(to.clone(), Bytes::new()))
                .await
                .expect("probe");
            let probe = tokio::time::timeout(Duration::from_millis(50), sub.next());
            if probe.await.is_ok() {
                break;
            }
        }
        (tx, sub)
    });
    let (raw_tx, mut raw_sub) = rt.block_on(async {
        let tx = async_nats::connect(url).await.expect("connect");
        let rx = async_nats::connect(url).await.expect("connect");
        let sub = rx.subscribe(to.to_string()).await.expect("sub");
        rx.flush().await.expect("flush");
        (tx, sub)
    });
    let mut g = c.benchmark_group("snake/core-pubsub");
    g.throughput(Throughput::Elements(1));
    g.measurement_time(Duration::from_secs(5));
    g.bench_function("snake", |b| {
        b.iter_custom(|iters| {
            rt.block_on(async {
                let start = Instant::now();
                let mut left = iters;
                while left > 0 {
                    let n = left.min(ROUND);
                    for _ in 0..n {
                        tx.publish(Message::new(to.clone(), payload.clone()))
                            .await
                            .expect("publish");
                    }
                    let mut got = 0;
                    while got < n {
                        let m = sub.next().await.expect("message");
                        // A late probe is not counted.
                        got += u64::from(!m.payload.is_empty());
                        black_box(m);
                    }
                    left -= n;
                }
                start.elapsed()
            })
        });
    });
    g.bench_function("async-nats", |b| {
        b.iter_custom(|iters| {
            rt.block_on(async {
                let subject = to.to_string();
                let start = Instant::now();
                let mut left = iters;
                while left > 0 {
                    let n = left.min(ROUND);
                    for _ in 0..n {
                        raw_tx
                            .publish(subject.clone(), payload.clone())
                            .await
                            .expect("publish");
                    }
                    for _ in 0..n {
                        black_box(raw_sub.next().await.expect("message"));
                    }
                    left -= n;
                }
                start.elapsed()
            })
        });
    });
    g.finish();
}

fn jetstream(c: &mut Criterion, rt: &Runtime, url: &str, payload: &Bytes) {
    let snake = rt
        .block_on(Snake::nats(NatsOptions::new(url)))
        .expect("connect");
    let js = rt.block_on(async {
        let raw = async_nats::connect(url).await.expect("connect");
        async_nats::jetstream::new(raw)
    });
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let mut g = c.benchmark_group("snake/jetstream");
    g.throughput(Throughput::Elements(1));
    g.sample_size(10);
    g.measurement_time(Duration::from_secs(10));
    g.bench_function("snake", |b| {
        b.iter_custom(|iters| {
            rt.block_on(async {
                let name = format!("bench-{}", NEXT.fetch_add(1, Ordering::Relaxed));
                let cfg = StreamConfig::new(&name, [Pattern::msg_all()]).expect("config");
                snake.create_stream(cfg).await.expect("stream");
                let to = subject();
                let start = Instant::now();
                let mut p = snake.stream_publisher(WINDOW);
                for _ in 0..iters {
                    p.publish(Message::new(to.clone(), payload.clone()))
                        .await
                        .expect("publish");
                }
                p.flush().await.expect("flush");
                let mut consumer = snake
                    .consumer(&name, ConsumerConfig::new(Pattern::msg_all()))
                    .await
                    .expect("consumer");
                for _ in 0..iters {
                    let d = consumer.next().await.expect("delivery");
                    black_box(&d.message);
                    d.ack().await.expect("ack");
                }
                let took = start.elapsed();
                drop(consumer);
                js.delete_stream(&name).await.expect("delete");
                took
            })
        });
    });
    g.bench_function("async-nats", |b| {
        b.iter_custom(|iters| {
            rt.block_on(async {
                let name = format!("bench-{}", NEXT.fetch_add(1, Ordering::Relaxed));
                let stream = js
                    .create_stream(async_nats::jetstream::stream::Config {
                        name: name.clone(),
                        subjects: vec!["flux.msg.>".to_owned()],
                        ..Default::default()
                    })
                    .await
                    .expect("stream");
                let to = subject().to_string();
                let start = Instant::now();
                let mut pending = VecDeque::with_capacity(WINDOW);
                for _ in 0..iters {
                    if pending.len() == WINDOW {
                        let ack: async_nats::jetstream::context::PublishAckFuture =
                            pending.pop_front().expect("pending");
                        ack.await.expect("ack");
                    }
                    pending.push_back(
                        js.publish(to.clone(), payload.clone())
                            .await
                            .expect("publish"),
                    );
                }
                for ack in pending {
                    ack.await.expect("ack");
                }
                let consumer = stream
                    .create_consumer(async_nats::jetstream::consumer::pull::Config {
                        ack_policy: async_nats::jetstream::consumer::AckPolicy::Explicit,
                        filter_subject: "flux.msg.>".to_owned(),
                        ..Default::default()
                    })
                    .await
                    .expect("consumer");
                let mut messages = consumer.messages().await.expect("messages");
                for _ in 0..iters {
                    let m = messages.next().await.expect("open").expect("message");
                    black_box(&m.payload);
                    m.ack().await.expect("ack");
                }
                let took = start.elapsed();
                drop(messages);
                js.delete_stream(&name).await.expect("delete");
                took
            })
        });
    });
    g.finish();
}

fn benches(c: &mut Criterion) {
    let payload = payload();
    eprintln!("payload: {} bytes", payload.len());
    memory(c, &payload);
    let server = NatsServer::start().expect("nats-server (make setup-nats)");
    let rt = runtime();
    core(c, &rt, &server.url(), &payload);
    jetstream(c, &rt, &server.url(), &payload);
}

criterion_group!(snake, benches);
criterion_main!(snake);
