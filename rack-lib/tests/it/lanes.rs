//! Guaranteed lanes across several hops: chains, round trips, consumer names.

use std::collections::BTreeSet;
use std::time::Duration;

use fluxmsg::Value;
use rack_lib::scenario::History;
use rack_lib::{Graph, Limits, Rack};
use serde_json::json;
use snake::Snake;

const TOTAL: usize = 200;

fn source(count: usize) -> Graph {
    with_source(Graph::new(), count)
}

/// `graph` with a `gen` gear that publishes `count` numbered messages on `gen.out`.
fn with_source(graph: Graph, count: usize) -> Graph {
    graph
        .gear("gen", "generate", json!({ "count": count, "batch": 16, "rate": { "tps": 5000 }, "template": { "data": { "n": "${counter}" } } }))
        .publish("gen.out")
}

/// `back`, which takes what rack `b` publishes on `echo.out`.
fn return_lane() -> Graph {
    Graph::new()
        .gear("back", "transform", stamp("back"))
        .subscribe("b", "echo.out", "back")
}

fn stamp(name: &str) -> serde_json::Value {
    json!({ "steps": [{ "set": format!("meta.{name}"), "value": "yes" }] })
}

async fn rack(name: &str, snake: &Snake) -> Rack {
    Rack::builder(name)
        .snake(snake.clone())
        .limits(Limits::default().with_ack_wait(Duration::from_secs(5)))
        .build()
        .expect("a rack")
}

/// Reads `data.n` of what `tap` delivers until every one of `0..want` arrived (or a generous
/// bound passes, which fails the test with what is missing); checks each went through `via`.
async fn every_number(tap: &mut rack_lib::Tap, want: usize, via: &[&str]) {
    let mut seen = BTreeSet::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while seen.len() < want {
        match tokio::time::timeout_at(deadline, tap.recv()).await {
            Ok(Some(m)) => {
                for stage in via {
                    assert_eq!(
                        m.meta.get(stage).map(|t| t.as_str()),
                        Some("yes"),
                        "through {stage}"
                    );
                }
                seen.insert(m.data.get("n").and_then(Value::as_i64).expect("n"));
            }
            _ => break,
        }
    }
    let missing: Vec<_> = (0..want as i64).filter(|n| !seen.contains(n)).collect();
    assert!(missing.is_empty(), "never arrived: {missing:?}");
}

/// a -> b -> c, every wire guaranteed: the second hop must not be taken for a duplicate of
/// the first.
async fn three_rack_chain(a_bus: &Snake, b_bus: &Snake, c_bus: &Snake) {
    let mut c = rack("c", c_bus).await;
    c.apply(
        Graph::new()
            .gear("sink", "transform", stamp("sink"))
            .subscribe("b", "relay.out", "sink"),
    )
    .await
    .expect("c applies");
    let mut tap = c.tap("sink", "out").await.expect("tap");
    let mut b = rack("b", b_bus).await;
    b.apply(
        Graph::new()
            .gear("relay", "transform", stamp("relay"))
            .subscribe("a", "gen.out", "relay")
            .publish("relay.out"),
    )
    .await
    .expect("b applies");
    let mut a = rack("a", a_bus).await;
    a.apply(source(TOTAL)).await.expect("a applies");
    every_number(&mut tap, TOTAL, &["relay", "sink"]).await;
    for r in [a, b, c] {
        r.shutdown(Duration::from_secs(5)).await;
    }
}

/// a -> b -> a: the message comes back to the rack it left, with the same id.
async fn round_trip(a_bus: &Snake, b_bus: &Snake) {
    let mut a = rack("a", a_bus).await;
    a.apply(return_lane()).await.expect("a's return lane");
    let mut tap = a.tap("back", "out").await.expect("tap");
    let mut b = rack("b", b_bus).await;
    b.apply(
        Graph::new()
            .gear("echo", "transform", stamp("echo"))
            .subscribe("a", "gen.out", "echo")
            .publish("echo.out"),
    )
    .await
    .expect("b applies");
    // The same graph plus the source: only the source starts.
    a.apply(with_source(return_lane(), TOTAL))
        .await
        .expect("a's source");
    every_number(&mut tap, TOTAL, &["echo", "back"]).await;
    a.shutdown(Duration::from_secs(5)).await;
    b.shutdown(Duration::from_secs(5)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_three_rack_chain_delivers_everything_in_process() {
    let bus = Snake::memory();
    three_rack_chain(&bus, &bus, &bus).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_round_trip_delivers_everything_in_process() {
    let bus = Snake::memory();
    round_trip(&bus, &bus).await;
}

#[cfg(feature = "nats-server-tests")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_three_rack_chain_delivers_everything_over_nats() {
    let server = snake::NatsServer::start().expect("nats-server (make setup-nats)");
    let connect = || Snake::nats(snake::NatsOptions::new(server.url()));
    let (a, b, c) = (
        connect().await.expect("a connects"),
        connect().await.expect("b connects"),
        connect().await.expect("c connects"),
    );
    three_rack_chain(&a, &b, &c).await;
}

#[cfg(feature = "nats-server-tests")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_round_trip_delivers_everything_over_nats() {
    let server = snake::NatsServer::start().expect("nats-server (make setup-nats)");
    let connect = || Snake::nats(snake::NatsOptions::new(server.url()));
    let (a, b) = (
        connect().await.expect("a connects"),
        connect().await.expect("b connects"),
    );
    round_trip(&a, &b).await;
}

/// Two lanes whose names joined with `-` used to be one consumer name (`x-a-b-…` twice), so
/// that one source was never read; and names long enough to pass the 64-byte token limit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lanes_whose_names_run_together_each_get_their_own_consumer() {
    let long = "g".repeat(64);
    let sources = [("a-b", "c"), ("a", "b-c"), (long.as_str(), long.as_str())];
    every_source_is_read(&Snake::memory(), "in", &sources).await;
}

/// Rack `x`, whose gear `sink` subscribes to `gear.out` of each of `sources` (rack, gear),
/// gets all 10 messages that each source publishes.
async fn every_source_is_read(bus: &Snake, sink_gear: &str, sources: &[(&str, &str)]) {
    let mut sink = rack("x", bus).await;
    let mut graph = Graph::new().gear(sink_gear, "transform", stamp("sink"));
    for (rack_name, gear) in sources {
        graph = graph.subscribe(rack_name, &format!("{gear}.out"), sink_gear);
    }
    sink.apply(graph).await.expect("the sink applies");
    let mut tap = sink.tap(sink_gear, "out").await.expect("tap");
    let mut racks = Vec::new();
    for (i, (rack_name, gear)) in sources.iter().enumerate() {
        let mut r = rack(rack_name, bus).await;
        let graph = Graph::new()
            .gear(
                gear,
                "generate",
                json!({ "count": 10, "template": { "data": { "n": format!("{i}${{counter}}") } } }),
            )
            .publish(&format!("{gear}.out"));
        r.apply(graph).await.expect("a source applies");
        racks.push(r);
    }
    let want = 10 * sources.len();
    let mut seen = BTreeSet::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while seen.len() < want {
        match tokio::time::timeout_at(deadline, tap.recv()).await {
            Ok(Some(m)) => {
                seen.insert(format!("{:?}", m.data.get("n")));
            }
            _ => break,
        }
    }
    assert_eq!(seen.len(), want, "every source was read: {seen:?}");
    for r in racks {
        r.shutdown(Duration::from_secs(5)).await;
    }
    sink.shutdown(Duration::from_secs(5)).await;
}

/// The relay of a -> b -> c crashes while messages sit in its hot queue and its publisher:
/// their inputs were not acked yet (end-to-end acknowledgement), so the relay's next run gets
/// them again and every message reaches c.
#[cfg(feature = "nats-server-tests")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relay_that_crashes_mid_stream_loses_nothing_downstream() {
    const N: usize = 2000;
    let server = snake::NatsServer::start().expect("nats-server (make setup-nats)");
    let connect = || Snake::nats(snake::NatsOptions::new(server.url()));
    let relay = || {
        Graph::new()
            .gear("take", "transform", stamp("relay"))
            // A slow hop: messages wait in its queue, handed on but not yet published.
            .gear("slow", "echo", json!({ "flush_delay": "2ms" }))
            .wire("take", "slow")
            .subscribe("a", "gen.out", "take")
            .publish("slow.out")
    };
    let relay_rack = |bus: Snake| {
        let mut factory = gears::Factory::builtin();
        factory
            .register::<testkit::gears::Echo>()
            .expect("echo registers");
        Rack::builder("b")
            .snake(bus)
            .factory(factory)
            .limits(Limits::default().with_ack_wait(Duration::from_secs(3)))
            .build()
            .expect("the relay rack")
    };
    let c_bus = connect().await.expect("c connects");
    let mut c = rack("c", &c_bus).await;
    c.apply(
        Graph::new()
            .gear("sink", "transform", stamp("sink"))
            .subscribe("b", "slow.out", "sink"),
    )
    .await
    .expect("c applies");
    let mut tap = c.tap("sink", "out").await.expect("tap");
    let mut b = relay_rack(connect().await.expect("b connects"));
    b.apply(relay()).await.expect("b applies");
    let a_bus = connect().await.expect("a connects");
    let mut a = rack("a", &a_bus).await;
    a.apply(source(N)).await.expect("a applies");

    // Crash the relay once the sink has seen part of the stream and the relay holds more.
    let mut seen = BTreeSet::new();
    while seen.len() < N / 4 {
        let m = testkit::within("the stream to flow", tap.recv())
            .await
            .expect("the tap is open");
        seen.insert(m.data.get("n").and_then(Value::as_i64).expect("n"));
    }
    b.abort();
    let mut b = relay_rack(connect().await.expect("b reconnects"));
    b.apply(relay()).await.expect("b applies again");

    let deadline = tokio::time::Instant::now() + Duration::from_secs(90);
    while seen.len() < N {
        match tokio::time::timeout_at(deadline, tap.recv()).await {
            Ok(Some(m)) => {
                seen.insert(m.data.get("n").and_then(Value::as_i64).expect("n"));
            }
            _ => break,
        }
    }
    let missing: Vec<_> = (0..N as i64).filter(|n| !seen.contains(n)).collect();
    assert!(missing.is_empty(), "lost in the crash: {missing:?}");
    a.shutdown(Duration::from_secs(5)).await;
    b.shutdown(Duration::from_secs(5)).await;
    c.shutdown(Duration::from_secs(5)).await;
}

/// Messages that wait in the rack longer than the ack wait (here in a tap its reader drains
/// slowly) are reported in progress: none is delivered a second time, and none is
/// dead-lettered after it was handled.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_held_past_the_ack_wait_are_neither_redelivered_nor_dead_lettered() {
    const N: usize = 40;
    let bus = Snake::memory();
    let mut dead = bus
        .subscribe(snake::Pattern::dead_letters())
        .await
        .expect("a dead-letter watch");
    let limits = Limits::default()
        .with_ack_wait(Duration::from_millis(300))
        .with_max_deliver(2);
    let mut sink = Rack::builder("sink")
        .snake(bus.clone())
        .limits(limits)
        .build()
        .expect("the sink rack");
    sink.apply(
        Graph::new()
            .gear("pass", "transform", stamp("sink"))
            .subscribe("src", "gen.out", "pass"),
    )
    .await
    .expect("the sink applies");
    let mut tap = sink.tap("pass", "out").await.expect("tap");
    let mut src = rack("src", &bus).await;
    src.apply(
        Graph::new()
            .gear(
                "gen",
                "generate",
                json!({ "count": N, "batch": N, "template": { "data": { "n": "${counter}" } } }),
            )
            .publish("gen.out"),
    )
    .await
    .expect("the source applies");
    let mut seen = Vec::new();
    while seen.len() < N {
        // The input of this test: a reader taking one message every 30 ms, so that the last
        // of 40 waits four times the ack wait in the tap, its input unacked meanwhile.
        tokio::time::sleep(Duration::from_millis(30)).await;
        let m = testkit::within("every message through the tap", tap.recv())
            .await
            .expect("the tap is open");
        seen.push(m.data.get("n").and_then(Value::as_i64).expect("n"));
    }
    // Three more ack waits: a redelivery or a dead letter would show by then.
    tokio::time::sleep(Duration::from_millis(900)).await;
    while let Some(m) = tap.try_recv() {
        seen.push(m.data.get("n").and_then(Value::as_i64).expect("n"));
    }
    seen.sort_unstable();
    assert_eq!(seen, (0..N as i64).collect::<Vec<_>>(), "each exactly once");
    assert!(
        tokio::time::timeout(Duration::from_millis(10), dead.next())
            .await
            .is_err(),
        "nothing was dead-lettered"
    );
    src.shutdown(Duration::from_secs(5)).await;
    sink.shutdown(Duration::from_secs(5)).await;
}

/// The lanes' stream is bounded: a message older than its age limit is gone, so a lane does
/// not replay it, and a stream made beforehand with other settings is used as it is.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_lanes_stream_is_bounded_and_an_existing_one_is_used_as_it_is() {
    let bus = Snake::memory();
    let limits = Limits::default().with_stream_limits(Duration::from_millis(300), 1 << 20);
    let mut src = Rack::builder("src")
        .snake(bus.clone())
        .limits(limits)
        .build()
        .expect("a rack");
    src.apply(source(10)).await.expect("the source applies");
    // The input of this test: the messages outlive the stream's age limit unread.
    tokio::time::sleep(Duration::from_millis(800)).await;
    let mut late = rack("late", &bus).await;
    // A lane that asks for the stream's history: it would replay what is still there.
    late.apply(
        Graph::new()
            .gear("sink", "transform", stamp("sink"))
            .subscribe_with_history("src", "gen.out", "sink", History::All),
    )
    .await
    .expect("a rack with other stream limits uses the stream as it is");
    let mut tap = late.tap("sink", "out").await.expect("tap");
    assert!(
        tokio::time::timeout(Duration::from_millis(500), tap.recv())
            .await
            .is_err(),
        "nothing older than the age limit is delivered"
    );
    src.shutdown(Duration::from_secs(5)).await;
    late.shutdown(Duration::from_secs(5)).await;
}

/// A message larger than the server takes can never be published: it is refused up front
/// (counted `oversized`), so its lane neither retries it for ever nor holds up what follows,
/// and the rack still drains at shutdown.
#[cfg(feature = "nats-server-tests")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_over_the_servers_payload_limit_is_refused_not_retried_for_ever() {
    let dir = std::env::temp_dir().join(format!("fluxrig-payload-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("a temporary directory");
    let config = dir.join("nats.conf");
    std::fs::write(&config, "max_payload: 8192\n").expect("a server config");
    let server = snake::NatsServer::builder()
        .config_file(&config)
        .start()
        .expect("nats-server (make setup-nats)");
    let connect = || Snake::nats(snake::NatsOptions::new(server.url()));
    let sink_bus = connect().await.expect("the sink connects");
    let mut sink = rack("sink", &sink_bus).await;
    sink.apply(
        Graph::new()
            .gear("in", "transform", stamp("sink"))
            .subscribe("src", "pad.out", "in"),
    )
    .await
    .expect("the sink applies");
    let mut tap = sink.tap("in", "out").await.expect("tap");
    let src_bus = connect().await.expect("the source connects");
    let mut src = rack("src", &src_bus).await;
    let big = "x".repeat(16 * 1024);
    // Message 0 is twice the limit; the ten after it are small.
    src.apply(
        Graph::new()
            .gear(
                "gen",
                "generate",
                json!({ "count": 11, "template": { "data": { "n": "${counter}" } } }),
            )
            .gear(
                "pad",
                "transform",
                json!({ "steps": [{ "set": "data.pad", "value": big, "when": { "field": "data.n", "lte": 0 } }] }),
            )
            .wire("gen", "pad")
            .publish("pad.out"),
    )
    .await
    .expect("the source applies");
    let mut seen = BTreeSet::new();
    while seen.len() < 10 {
        let m = testkit::within("the small messages", tap.recv())
            .await
            .expect("the tap is open");
        seen.insert(m.data.get("n").and_then(Value::as_i64).expect("n"));
    }
    assert_eq!(seen, (1..=10).collect::<BTreeSet<i64>>());
    assert_eq!(src.stats()["pad"].dropped.get("oversized"), Some(&1));
    assert!(
        src.shutdown(Duration::from_secs(5)).await.drained,
        "nothing is left in flight"
    );
    sink.shutdown(Duration::from_secs(5)).await;
    let _ = std::fs::remove_dir_all(&dir);
}

/// The producing rack of a scenario applies first and publishes at once; the consuming rack
/// applies later. The lane's durable came into being with the first end to apply, so the
/// consumer gets everything, without asking for history.
async fn producer_first(a_bus: &Snake, b_bus: &Snake) {
    let yaml = format!(
        "meta: {{ name: first, version: 1.0.0 }}\n\
         racks: [ {{ name: a }}, {{ name: b }} ]\n\
         gears:\n\
         - {{ name: gen, type: generate, deploy: a, config: {{ count: {TOTAL}, batch: 16, template: {{ data: {{ n: \"${{counter}}\" }} }} }} }}\n\
         - {{ name: sink, type: transform, deploy: b, config: {{ steps: [ {{ set: meta.sink, value: \"yes\" }} ] }} }}\n\
         wires: [ {{ from: gen.out, to: sink.in }} ]\n"
    );
    let validated = rack_lib::scenario::Scenario::parse(&yaml)
        .expect("parses")
        .validate(&gears::Factory::builtin())
        .expect("validates");
    let mut a = rack("a", a_bus).await;
    a.apply_scenario(&validated).await.expect("a applies");
    testkit::wait_until("the source to finish", || {
        a.stats()["gen"].messages_out == TOTAL as u64
    })
    .await;
    let mut b = rack("b", b_bus).await;
    // The sink alone first, so that the tap is there before the lane delivers (a lane that
    // finds its messages waiting hands them over at once); the scenario keeps it.
    b.apply(Graph::new().gear("sink", "transform", stamp("sink")))
        .await
        .expect("the sink");
    let mut tap = b.tap("sink", "out").await.expect("tap");
    let change = b.apply_scenario(&validated).await.expect("b applies");
    assert_eq!(change.kept, ["sink"]);
    every_number(&mut tap, TOTAL, &["sink"]).await;
    a.shutdown(Duration::from_secs(5)).await;
    b.shutdown(Duration::from_secs(5)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_consumer_that_applies_after_its_producer_gets_everything_in_process() {
    let bus = Snake::memory();
    producer_first(&bus, &bus).await;
}

#[cfg(feature = "nats-server-tests")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_consumer_that_applies_after_its_producer_gets_everything_over_nats() {
    let server = snake::NatsServer::start().expect("nats-server (make setup-nats)");
    let connect = || Snake::nats(snake::NatsOptions::new(server.url()));
    let (a, b) = (
        connect().await.expect("a connects"),
        connect().await.expect("b connects"),
    );
    producer_first(&a, &b).await;
}

/// Names whose lane identity runs past JetStream's 255-character limit on consumer names
/// still get a consumer each, on a real server, and every message of both arrives.
#[cfg(feature = "nats-server-tests")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lanes_with_identities_past_the_servers_name_limit_are_read() {
    let server = snake::NatsServer::start().expect("nats-server (make setup-nats)");
    let bus = Snake::nats(snake::NatsOptions::new(server.url()))
        .await
        .expect("connects");
    // Two sources whose names differ only in their last character; every name as long as a
    // subject token may be (64 bytes), so that a lane's identity is 300 characters and more.
    let names = [
        format!("{}a", "r".repeat(63)),
        format!("{}b", "r".repeat(63)),
    ];
    let gear = "g".repeat(64);
    let sources = [
        (names[0].as_str(), gear.as_str()),
        (names[1].as_str(), gear.as_str()),
    ];
    every_source_is_read(&bus, &"s".repeat(64), &sources).await;
}

/// A lane whose consumer the server refuses (here: `flux-msg` was made by someone else as a
/// work queue that already has a consumer of every subject, and a work queue takes no second
/// consumer of the same subjects) fails the apply with the lane named, instead of an apply
/// that reports success while nothing is ever read.
#[cfg(feature = "nats-server-tests")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_consumer_the_server_refuses_fails_the_apply() {
    use async_nats::jetstream::{self, consumer::pull, stream};
    let server = snake::NatsServer::start().expect("nats-server (make setup-nats)");
    let js = jetstream::new(async_nats::connect(server.url()).await.expect("connects"));
    let queue = js
        .create_stream(stream::Config {
            name: "flux-msg".to_owned(),
            subjects: vec!["flux.msg.>".to_owned()],
            retention: stream::RetentionPolicy::WorkQueue,
            ..Default::default()
        })
        .await
        .expect("a work queue");
    queue
        .create_consumer(pull::Config {
            durable_name: Some("everything".to_owned()),
            ..Default::default()
        })
        .await
        .expect("its consumer");
    let bus = Snake::nats(snake::NatsOptions::new(server.url()))
        .await
        .expect("connects");
    let mut sink = rack("x", &bus).await;
    let applied = sink
        .apply(
            Graph::new()
                .gear("in", "transform", stamp("sink"))
                .subscribe("a", "gen.out", "in"),
        )
        .await;
    match applied {
        Err(rack_lib::Error::Lane { lane, source }) => {
            assert!(lane.contains("a.gen.out"), "{lane}: {source}");
        }
        other => panic!("the apply should fail with the lane: {other:?}"),
    }
    sink.shutdown(Duration::from_secs(5)).await;
}
