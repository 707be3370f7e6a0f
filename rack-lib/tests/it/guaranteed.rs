//! Guaranteed lanes: messages published by one rack and consumed by another, acked after the
//! consuming gear handled them.

use std::collections::BTreeSet;
use std::time::Duration;

use fluxmsg::Value;
use rack_lib::{Graph, Limits, Rack};
use serde_json::json;
use snake::Snake;

fn producer(count: u64) -> Graph {
    Graph::new()
        .gear("gen", "generate", json!({ "count": count, "batch": 16, "rate": { "tps": 2000 }, "template": { "data": { "n": "${counter}" } } }))
        .publish("gen.out")
}

fn consumer() -> Graph {
    Graph::new()
        .gear(
            "edit",
            "transform",
            json!({ "steps": [{ "set": "meta.via", "value": "bus" }] }),
        )
        .subscribe("edge", "gen.out", "edit.in")
}

async fn rack(name: &str, snake: &Snake) -> Rack {
    Rack::builder(name)
        .snake(snake.clone())
        // A short ack wait so that a crash is redelivered quickly, and room for the extra
        // deliveries a loaded machine causes when progress reports come late.
        .limits(
            Limits::default()
                .with_ack_wait(Duration::from_secs(2))
                .with_max_deliver(20),
        )
        .build()
        .expect("a rack")
}

/// Collects distinct `data.n` from `tap` until `want` of them arrived or `limit` passed.
async fn collect(tap: &mut rack_lib::Tap, seen: &mut BTreeSet<i64>, want: usize, limit: Duration) {
    let deadline = tokio::time::Instant::now() + limit;
    while seen.len() < want {
        match tokio::time::timeout_at(deadline, tap.recv()).await {
            Ok(Some(m)) => {
                assert_eq!(m.meta.get("via").map(|t| t.as_str()), Some("bus"));
                seen.insert(m.data.get("n").and_then(Value::as_i64).expect("n"));
            }
            _ => return,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_guaranteed_lane_between_two_racks_in_process() {
    let snake = Snake::memory();
    let mut edge = rack("edge", &snake).await;
    let mut core = rack("core", &snake).await;
    core.apply(consumer()).await.expect("the consumer");
    let mut tap = core.tap("edit", "out").await.expect("tap");
    edge.apply(producer(300)).await.expect("the producer");
    let mut seen = BTreeSet::new();
    collect(&mut tap, &mut seen, 300, Duration::from_secs(20)).await;
    assert_eq!(seen.len(), 300, "every message crossed");
    edge.shutdown(Duration::from_secs(5)).await;
    core.shutdown(Duration::from_secs(5)).await;
}

#[cfg(feature = "nats-server-tests")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_consuming_rack_that_crashes_mid_stream_loses_nothing() {
    let server = snake::NatsServer::start().expect("nats-server (make setup-nats)");
    let connect = || snake::Snake::nats(snake::NatsOptions::new(server.url()));
    let (edge_bus, core_bus) = (
        connect().await.expect("edge connects"),
        connect().await.expect("core connects"),
    );
    let total = 2000;
    let mut edge = rack("edge", &edge_bus).await;
    let mut core = rack("core", &core_bus).await;
    core.apply(consumer()).await.expect("the consumer");
    let mut tap = core.tap("edit", "out").await.expect("tap");
    edge.apply(producer(total)).await.expect("the producer");

    let mut seen = BTreeSet::new();
    collect(&mut tap, &mut seen, 500, Duration::from_secs(30)).await;
    assert!(
        seen.len() >= 500,
        "the stream flows before the crash: {}",
        seen.len()
    );
    core.abort();
    // What the crashed rack handed to its sink (and acked) before the crash has arrived.
    while let Some(m) = tap.try_recv() {
        seen.insert(m.data.get("n").and_then(Value::as_i64).expect("n"));
    }
    drop(tap);

    // A new process of the same rack resumes the durable consumer.
    let core_bus = connect().await.expect("core reconnects");
    let mut core = rack("core", &core_bus).await;
    core.apply(consumer()).await.expect("the consumer again");
    let mut tap = core.tap("edit", "out").await.expect("tap");
    collect(&mut tap, &mut seen, total as usize, Duration::from_secs(60)).await;
    let missing: Vec<_> = (0..total as i64).filter(|n| !seen.contains(n)).collect();
    if !missing.is_empty() {
        // Say where they went: dead letters carry their reason and delivery count.
        let letters = core_bus
            .dead_letters(&snake::Pattern::dead_letters(), 0, 100)
            .await
            .unwrap_or_default();
        let reasons: Vec<_> = letters
            .iter()
            .map(|l| (l.reason.clone(), l.deliveries))
            .collect();
        panic!(
            "every message arrived, some perhaps twice; missing {missing:?}; dead letters {reasons:?}"
        );
    }
    assert_eq!(seen.iter().next_back(), Some(&(total as i64 - 1)));
    edge.shutdown(Duration::from_secs(5)).await;
    core.shutdown(Duration::from_secs(5)).await;
}
