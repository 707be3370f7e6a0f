//! Guaranteed inputs that a gear fails for good end in the `flux-dlq` stream with the gear's
//! reason; everything else is delivered; a replay sends a dead letter through again.

use std::collections::BTreeSet;
use std::time::Duration;

use fluxmsg::Value;
use rack_lib::{Graph, Limits, Rack};
use serde_json::json;
use snake::{Pattern, Snake};

const TOTAL: i64 = 70;

/// Every seventh number fails: the transform divides by `n % 7`.
fn poisoned(n: i64) -> bool {
    n % 7 == 0
}

async fn rack(name: &str, snake: &Snake) -> Rack {
    Rack::builder(name)
        .snake(snake.clone())
        .limits(Limits::default().with_ack_wait(Duration::from_secs(5)))
        .build()
        .expect("a rack")
}

async fn dead_letter_count(snake: &Snake, want: u64) -> u64 {
    let filter = Pattern::dead_letters_of(Some("b"), Some("picky")).expect("filter");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let n = snake.count_dead_letters(&filter).await.unwrap_or(0);
        if n >= want || tokio::time::Instant::now() >= deadline {
            return n;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn poisoned_inputs_are_dead_lettered(a_bus: &Snake, b_bus: &Snake) {
    let mut b = rack("b", b_bus).await;
    b.apply(
        Graph::new()
            .gear(
                "picky",
                "transform",
                json!({ "steps": [{ "set": "data.q", "expr": "100 / (data.n % 7)" }] }),
            )
            .subscribe("a", "gen.out", "picky"),
    )
    .await
    .expect("b applies");
    let mut tap = b.tap("picky", "out").await.expect("tap");
    let mut a = rack("a", a_bus).await;
    a.apply(
        Graph::new()
            .gear("gen", "generate", json!({ "count": TOTAL, "batch": 8, "template": { "data": { "n": "${counter}" } } }))
            .publish("gen.out"),
    )
    .await
    .expect("a applies");

    let good: BTreeSet<i64> = (0..TOTAL).filter(|n| !poisoned(*n)).collect();
    let bad = (0..TOTAL).filter(|n| poisoned(*n)).count() as u64;
    let mut seen = BTreeSet::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while seen.len() < good.len() {
        match tokio::time::timeout_at(deadline, tap.recv()).await {
            Ok(Some(m)) => {
                seen.insert(m.data.get("n").and_then(Value::as_i64).expect("n"));
            }
            _ => break,
        }
    }
    assert_eq!(seen, good, "every good message arrived, and only those");

    // Each poisoned input is terminated once, with the gear's reason, never retried to its
    // last delivery.
    assert_eq!(dead_letter_count(b_bus, bad).await, bad);
    let filter = Pattern::dead_letters_of(Some("b"), None).expect("filter");
    let letters = b_bus.dead_letters(&filter, 0, 100).await.expect("list");
    assert_eq!(letters.len() as u64, bad, "{letters:#?}");
    let codec = fluxmsg::Codec::default();
    let mut numbers = BTreeSet::new();
    for l in &letters {
        assert!(
            l.reason.starts_with("terminated: picky: "),
            "the gear's reason: {}",
            l.reason
        );
        assert_eq!(l.deliveries, Some(1), "dead-lettered on its first failure");
        assert_eq!(l.gear(), Some("picky"));
        let msg = codec.decode(&l.message.payload).expect("a fluxMsg");
        numbers.insert(msg.data.get("n").and_then(Value::as_i64).expect("n"));
    }
    let want: BTreeSet<i64> = (0..TOTAL).filter(|n| poisoned(*n)).collect();
    assert_eq!(numbers, want);

    // A replay goes through the gear again: still poisoned, so it is back with a new
    // sequence, and nothing reached the tap.
    let first = letters[0].sequence;
    b_bus.replay_dead_letter(first).await.expect("replay");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let again = b_bus.dead_letters(&filter, 0, 100).await.expect("list");
        if again.len() as u64 == bad && again.iter().all(|l| l.sequence != first) {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the replayed message was not dead-lettered again: {again:#?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        tokio::time::timeout(Duration::from_millis(300), tap.recv())
            .await
            .is_err(),
        "a poisoned message reached the tap"
    );
    let stats = b.stats();
    let picky = stats.get("picky").expect("stats");
    assert_eq!(picky.dropped.get("dead_lettered").copied(), Some(bad + 1));
    a.shutdown(Duration::from_secs(5)).await;
    b.shutdown(Duration::from_secs(5)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn poisoned_inputs_are_dead_lettered_in_process() {
    let bus = Snake::memory();
    poisoned_inputs_are_dead_lettered(&bus, &bus).await;
}

#[cfg(feature = "nats-server-tests")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn poisoned_inputs_are_dead_lettered_over_nats() {
    let server = snake::NatsServer::start().expect("nats-server (make setup-nats)");
    let connect = || Snake::nats(snake::NatsOptions::new(server.url()));
    let (a, b) = (
        connect().await.expect("a connects"),
        connect().await.expect("b connects"),
    );
    poisoned_inputs_are_dead_lettered(&a, &b).await;
}
