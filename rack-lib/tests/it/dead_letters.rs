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
        // The lane packs the batches (of 8) that are there together: each failed message
        // is dead-lettered alone, as its part of a pack, and the rest of the pack is acked.
        assert!(l.part.is_some(), "a part of a pack: {l:?}");
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

/// A pack (as a lane publishes it) with a part that is not a fluxMsg: the other parts are
/// delivered and the bad part alone is dead-lettered, as undecodable.
async fn a_broken_part_of_a_pack_is_dead_lettered_alone(bus: &Snake) {
    let mut b = rack("b", bus).await;
    b.apply(
        Graph::new()
            .gear("picky", "transform", json!({ "steps": [] }))
            .subscribe("a", "gen.out", "picky"),
    )
    .await
    .expect("b applies");
    let mut tap = b.tap("picky", "out").await.expect("tap");
    let codec = fluxmsg::Codec::default();
    let msg = |n: i64| {
        codec
            .encode_to_vec(&fluxmsg::FluxMsg::builder().data("n", n).build())
            .expect("encode")
    };
    let (one, two) = (msg(1), msg(2));
    let mut pack = Vec::new();
    fluxmsg::pack::write(
        [one.as_slice(), b"\xa1\x00".as_slice(), two.as_slice()],
        &mut pack,
    );
    let subject = snake::Subject::msg("a", "gen", "out").expect("a subject");
    bus.stream_publish(snake::Message::new(subject, pack))
        .await
        .expect("published");

    let mut seen = BTreeSet::new();
    while seen.len() < 2 {
        let m = tokio::time::timeout(Duration::from_secs(10), tap.recv())
            .await
            .expect("the good parts arrive")
            .expect("a message");
        seen.insert(m.data.get("n").and_then(Value::as_i64).expect("n"));
    }
    assert_eq!(seen, BTreeSet::from([1, 2]));
    assert_eq!(dead_letter_count(bus, 1).await, 1);
    let filter = Pattern::dead_letters_of(Some("b"), None).expect("filter");
    let letters = bus.dead_letters(&filter, 0, 10).await.expect("list");
    assert_eq!(letters.len(), 1, "{letters:#?}");
    assert_eq!(letters[0].part, Some(1));
    assert_eq!(&letters[0].message.payload[..], b"\xa1\x00");
    assert!(
        letters[0].reason.starts_with("terminated: undecodable"),
        "{}",
        letters[0].reason
    );
    let stats = b.stats();
    assert_eq!(
        stats.get("picky").map(|s| s.messages_in),
        Some(2),
        "the good parts went through the gear once"
    );
    b.shutdown(Duration::from_secs(5)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broken_part_of_a_pack_is_dead_lettered_alone_in_process() {
    a_broken_part_of_a_pack_is_dead_lettered_alone(&Snake::memory()).await;
}

#[cfg(feature = "nats-server-tests")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broken_part_of_a_pack_is_dead_lettered_alone_over_nats() {
    let server = snake::NatsServer::start().expect("nats-server (make setup-nats)");
    let bus = Snake::nats(snake::NatsOptions::new(server.url()))
        .await
        .expect("connects");
    a_broken_part_of_a_pack_is_dead_lettered_alone(&bus).await;
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
