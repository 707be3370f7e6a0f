//! Where a guaranteed lane's durable consumer starts and ends: a new wire starts at the
//! messages published from then on unless it asks for `history: all`; a wire that a reload
//! removes has its durable deleted once what it delivered is settled; a rack that stops keeps
//! its durables and resumes them.

use std::collections::BTreeSet;
use std::ops::Range;
use std::time::Duration;

use fluxmsg::{FluxMsg, Value};
use rack_lib::scenario::{History, Scenario, Validated};
use rack_lib::{Graph, Injector, Limits, Rack, Tap};
use serde_json::json;
use snake::{Pattern, Snake};

/// The stream the lanes ride.
const STREAM: &str = "flux-msg";

async fn rack(name: &str, bus: &Snake, limits: Limits) -> Rack {
    Rack::builder(name)
        .snake(bus.clone())
        .limits(limits.with_ack_wait(Duration::from_secs(5)))
        .build()
        .expect("a rack")
}

fn stamp(name: &str) -> serde_json::Value {
    json!({ "steps": [{ "set": format!("meta.{name}"), "value": "yes" }] })
}

/// The rack `src`, which publishes on `pass.out` what its injector sends.
async fn source(bus: &Snake) -> (Rack, Injector) {
    let mut src = rack("src", bus, Limits::default()).await;
    src.apply(
        Graph::new()
            .gear("pass", "transform", stamp("src"))
            .publish("pass.out"),
    )
    .await
    .expect("the source applies");
    let input = src.injector("pass", "in").expect("an injector");
    (src, input)
}

/// How many messages the stream holds from `src`, counting each message of a pack.
async fn stored(bus: &Snake) -> u64 {
    let filter = Pattern::msg_rack("src").expect("a filter");
    let (mut count, mut from) = (0, 0);
    while let Some((seq, msg)) = bus
        .stream_next(STREAM, &filter, from)
        .await
        .expect("a read")
    {
        count += if fluxmsg::pack::is_pack(&msg.payload) {
            fluxmsg::pack::parts(&msg.payload).expect("a pack").len() as u64
        } else {
            1
        };
        from = seq + 1;
    }
    count
}

/// Sends the numbers of `range` through the source, and waits until the stream holds `total`
/// of its messages.
async fn send(input: &Injector, bus: &Snake, range: Range<i64>, total: u64) {
    for n in range {
        input
            .send(FluxMsg::builder().data("n", n).build())
            .await
            .expect("the source takes it");
    }
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let stored = stored(bus).await;
        if stored >= total {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the stream holds {stored} of {total}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The `sink` gear alone, and with the lane from `src`'s `pass.out` into it.
fn unwired() -> Graph {
    Graph::new().gear("sink", "transform", stamp("sink"))
}

fn wired(history: History) -> Graph {
    unwired().subscribe_with_history("src", "pass.out", "sink", history)
}

/// A rack `name` running `graph` with a tap on `sink.out` that sees everything the lane
/// delivers: the tap is made on the sink alone, then the lane is added (the sink is kept).
async fn sink(name: &str, bus: &Snake, limits: Limits, graph: Graph) -> (Rack, Tap) {
    let mut r = rack(name, bus, limits).await;
    r.apply(unwired()).await.expect("the sink applies");
    let tap = r.tap("sink", "out").await.expect("a tap");
    r.apply(graph).await.expect("the lane applies");
    (r, tap)
}

/// Reads `data.n` from `tap` until `want` numbers arrived (60 s at most).
async fn numbers(tap: &mut Tap, want: usize) -> BTreeSet<i64> {
    let mut seen = BTreeSet::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while seen.len() < want {
        match tokio::time::timeout_at(deadline, tap.recv()).await {
            Ok(Some(m)) => {
                seen.insert(m.data.get("n").and_then(Value::as_i64).expect("n"));
            }
            _ => break,
        }
    }
    seen
}

/// Asserts that nothing comes out of `tap` for a while.
async fn nothing(tap: &mut Tap, what: &str) {
    // The input of this test: long enough for a replay to show on either bus.
    if let Ok(Some(m)) = tokio::time::timeout(Duration::from_millis(700), tap.recv()).await {
        panic!("{what}: got {:?}", m.data.get("n"));
    }
}

/// Waits until the sink of `rack` handed `n` messages to its tap (unread, their inputs are
/// not settled).
async fn in_the_tap(rack: &Rack, n: u64) {
    testkit::wait_until("the messages in the tap", || {
        rack.stats().get("sink").map_or(0, |s| s.messages_out) >= n
    })
    .await;
}

fn set(range: Range<i64>) -> BTreeSet<i64> {
    range.collect()
}

/// The scenario of racks `src` and `replay`, with the wire `src.pass.out -> replay.sink.in`
/// written as `wire` (none when empty).
fn scenario(wire: &str) -> Validated {
    let yaml = format!(
        "meta: {{ name: history, version: 1.0.0 }}\n\
         racks: [ {{ name: src }}, {{ name: replay }} ]\n\
         gears:\n\
         - {{ name: pass, type: transform, deploy: src, config: {{ steps: [ {{ set: meta.src, value: 'yes' }} ] }} }}\n\
         - {{ name: sink, type: transform, deploy: replay, config: {{ steps: [ {{ set: meta.sink, value: 'yes' }} ] }} }}\n\
         wires: [ {wire} ]\n"
    );
    Scenario::parse(&yaml)
        .and_then(|s| s.validate(&gears::Factory::builtin()))
        .unwrap_or_else(|e| panic!("a valid scenario:\n{e}"))
}

/// 50 messages are in the stream before the wires exist: a wire without `history` gets none of
/// them and what comes after; `history: all`, written in a scenario or asked for through the
/// graph, gets them all.
async fn new_wires_start_at_new_messages(src_bus: &Snake, bus: &Snake) {
    let (src, input) = source(src_bus).await;
    send(&input, src_bus, 0..50, 50).await;

    let (late, mut late_tap) = sink("late", bus, Limits::default(), wired(History::New)).await;
    nothing(&mut late_tap, "a new wire replayed the stream").await;

    let mut replay = rack("replay", bus, Limits::default()).await;
    replay
        .apply_scenario(&scenario(""))
        .await
        .expect("the sink applies");
    let mut replay_tap = replay.tap("sink", "out").await.expect("a tap");
    replay
        .apply_scenario(&scenario("{ from: pass.out, to: sink.in, history: all }"))
        .await
        .expect("the wire applies");
    assert_eq!(
        numbers(&mut replay_tap, 50).await,
        set(0..50),
        "history: all"
    );

    let (by_hand, mut by_hand_tap) =
        sink("by-hand", bus, Limits::default(), wired(History::All)).await;
    assert_eq!(
        numbers(&mut by_hand_tap, 50).await,
        set(0..50),
        "History::All"
    );

    send(&input, src_bus, 50..60, 60).await;
    assert_eq!(
        numbers(&mut late_tap, 10).await,
        set(50..60),
        "only the new ones"
    );
    assert_eq!(numbers(&mut replay_tap, 10).await, set(50..60));
    assert_eq!(numbers(&mut by_hand_tap, 10).await, set(50..60));
    nothing(&mut late_tap, "a message came twice").await;
    for r in [src, late, replay, by_hand] {
        let _ = r.shutdown(Duration::from_secs(5)).await;
    }
}

/// A reload that removes a wire deletes its durable (so that what is published meanwhile is
/// not kept for it, and the wire added again starts afresh); a rack that stops keeps its
/// durable, and resumes it with what was published while it was down.
async fn a_removed_wire_loses_its_durable(src_bus: &Snake, bus: &Snake) {
    let (src, input) = source(src_bus).await;
    let (mut b, mut tap) = sink("b", bus, Limits::default(), wired(History::New)).await;
    let durable = wired(History::New).subscribe[0].durable_name("b");
    send(&input, src_bus, 0..5, 5).await;
    assert_eq!(numbers(&mut tap, 5).await, set(0..5));

    let plan = b.plan(unwired()).expect("plans");
    assert_eq!(plan.subscriptions_stopped().len(), 1);
    b.commit(plan).await.expect("the wire is removed");
    assert_eq!(
        bus.delete_consumer(STREAM, &durable).await.ok(),
        Some(false),
        "the removed wire's durable was deleted by the reload"
    );

    // Published while the wire is gone: nobody's.
    send(&input, src_bus, 5..10, 10).await;
    b.apply(wired(History::New))
        .await
        .expect("the wire is back");
    nothing(&mut tap, "the wire added again replayed its old position").await;
    send(&input, src_bus, 10..15, 15).await;
    assert_eq!(numbers(&mut tap, 5).await, set(10..15));

    // A rack that stops keeps its durable: what is published while it is down arrives after.
    let _ = b.shutdown(Duration::from_secs(5)).await;
    drop(tap);
    send(&input, src_bus, 15..20, 20).await;
    let (b, mut tap) = sink("b", bus, Limits::default(), wired(History::New)).await;
    assert_eq!(
        numbers(&mut tap, 5).await,
        set(15..20),
        "the restarted rack resumed its durable"
    );
    let _ = b.shutdown(Duration::from_secs(5)).await;
    let _ = src.shutdown(Duration::from_secs(5)).await;
    assert_eq!(
        bus.delete_consumer(STREAM, &durable).await.ok(),
        Some(true),
        "a shutdown keeps the durable"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn new_wires_start_at_new_messages_in_process() {
    let bus = Snake::memory();
    new_wires_start_at_new_messages(&bus, &bus).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_removed_wire_loses_its_durable_in_process() {
    let bus = Snake::memory();
    a_removed_wire_loses_its_durable(&bus, &bus).await;
}

#[cfg(feature = "nats-server-tests")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn new_wires_start_at_new_messages_over_nats() {
    let server = snake::NatsServer::start().expect("nats-server (make setup-nats)");
    let connect = || Snake::nats(snake::NatsOptions::new(server.url()));
    let (src, sinks) = (
        connect().await.expect("src connects"),
        connect().await.expect("the sinks connect"),
    );
    new_wires_start_at_new_messages(&src, &sinks).await;
}

#[cfg(feature = "nats-server-tests")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_removed_wire_loses_its_durable_over_nats() {
    let server = snake::NatsServer::start().expect("nats-server (make setup-nats)");
    let connect = || Snake::nats(snake::NatsOptions::new(server.url()));
    let (src, b) = (
        connect().await.expect("src connects"),
        connect().await.expect("b connects"),
    );
    a_removed_wire_loses_its_durable(&src, &b).await;
}

/// A change of `history` alone is no change: the lane keeps running where it is, and does
/// not replay the stream.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_change_of_history_alone_keeps_the_lane() {
    let bus = Snake::memory();
    let (src, input) = source(&bus).await;
    let (mut b, mut tap) = sink("b", &bus, Limits::default(), wired(History::New)).await;
    send(&input, &bus, 0..5, 5).await;
    assert_eq!(numbers(&mut tap, 5).await, set(0..5));

    let plan = b.plan(wired(History::All)).expect("plans");
    assert!(plan.is_empty(), "{plan:?}");
    b.commit(plan).await.expect("commits");
    nothing(&mut tap, "the lane replayed the stream").await;
    send(&input, &bus, 5..8, 8).await;
    assert_eq!(numbers(&mut tap, 3).await, set(5..8));
    let _ = b.shutdown(Duration::from_secs(5)).await;
    let _ = src.shutdown(Duration::from_secs(5)).await;
}

/// A removed wire whose deliveries are still in the rack when the reload's wait runs out
/// (here in a tap nobody reads yet) has its durable deleted once they are settled; and a wire
/// added back before that keeps its durable.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_removed_wire_still_draining_is_deleted_later_unless_it_comes_back() {
    let bus = Snake::memory();
    let (src, input) = source(&bus).await;
    let limits = Limits::default().with_drain_timeout(Duration::from_millis(200));
    let durable = wired(History::New).subscribe[0].durable_name("b");

    // Deleted once the tap is read (the shutdown waits for that deletion).
    let (mut b, mut tap) = sink("b", &bus, limits, wired(History::New)).await;
    send(&input, &bus, 0..3, 3).await;
    in_the_tap(&b, 3).await;
    b.apply(unwired()).await.expect("the wire is removed");
    assert_eq!(numbers(&mut tap, 3).await, set(0..3));
    drop(tap);
    let _ = b.shutdown(Duration::from_secs(5)).await;
    assert_eq!(
        bus.delete_consumer(STREAM, &durable).await.ok(),
        Some(false),
        "deleted once its deliveries were settled"
    );

    // Back before its deliveries were settled: kept, and it goes on delivering.
    let (mut b, mut tap) = sink("b", &bus, limits, wired(History::New)).await;
    send(&input, &bus, 3..6, 6).await;
    in_the_tap(&b, 3).await;
    b.apply(unwired()).await.expect("the wire is removed");
    b.apply(wired(History::New))
        .await
        .expect("the wire is back");
    assert_eq!(numbers(&mut tap, 3).await, set(3..6));
    send(&input, &bus, 6..9, 9).await;
    assert_eq!(numbers(&mut tap, 3).await, set(6..9));
    let _ = b.shutdown(Duration::from_secs(5)).await;
    let _ = src.shutdown(Duration::from_secs(5)).await;
    assert_eq!(
        bus.delete_consumer(STREAM, &durable).await.ok(),
        Some(true),
        "the wire that came back kept its durable"
    );
}
