//! The engine: pipelines, fan-out and fan-in, injection and taps, reload as a diff,
//! back-pressure, shutdown.

use std::time::Duration;

use fluxmsg::{FluxMsg, Value};
use gears::Factory;
use rack_lib::{Error, Graph, Limits, Rack};
use sdk::{
    Category, ConfigError, Gear, GearError, GearType, InPort, Manifest, OutPort, Outbox, Outcome,
    Ports,
};
use serde_json::json;
use testkit::gears::Echo;
use testkit::{wait_until, within};

/// Counts the messages it sees into `data.seen` and stamps `data.tag` with its config.
#[derive(Debug)]
struct Counter {
    tag: String,
    seen: u64,
    out: OutPort,
}

#[derive(Debug, serde::Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
struct CounterConfig {
    tag: String,
}

impl GearType for Counter {
    type Config = CounterConfig;
    fn manifest() -> Manifest {
        Manifest::new("counter", Category::Logic)
            .summary("counts")
            .input("in", "")
            .output("out", "")
    }
    fn new(config: CounterConfig, ports: &Ports) -> Result<Counter, ConfigError> {
        Ok(Counter {
            tag: config.tag,
            seen: 0,
            out: ports.resolve_output("out")?,
        })
    }
}

impl Gear for Counter {
    fn process(
        &mut self,
        _: InPort,
        msg: &mut FluxMsg,
        _: &mut Outbox<'_>,
    ) -> Result<Outcome, GearError> {
        self.seen += 1;
        msg.data.insert("seen", Value::from(self.seen));
        msg.data.insert("tag", Value::from(self.tag.as_str()));
        Ok(Outcome::Emit(self.out))
    }
}

fn factory() -> Factory {
    let mut f = Factory::builtin();
    f.register_pack(|f| {
        f.register::<Counter>()?;
        f.register::<Echo>()
    })
    .expect("the test gears register");
    f
}

fn rack(limits: Limits) -> Rack {
    Rack::builder("test")
        .factory(factory())
        .limits(limits)
        .build()
        .expect("a rack")
}

/// A slow sink: `echo` blocking its thread 2 ms after every batch.
fn slow() -> serde_json::Value {
    json!({ "flush_delay": "2ms" })
}

async fn recv(tap: &mut rack_lib::Tap) -> FluxMsg {
    within("a message on the tap", tap.recv())
        .await
        .expect("the tap is open")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_generated_pipeline_delivers_every_message_with_ids_and_hops() {
    let mut rack = rack(Limits::default());
    let graph = Graph::new()
        .gear("edit", "transform", json!({ "steps": [{ "set": "meta.seen_by", "value": "edit" }] }))
        .gear("switch", "route", json!({ "rules": [{ "when": { "field": "data.pan", "prefix": "4" }, "to": "out_visa" }], "default": "out_other" }))
        .gear("visa", "filter", json!({ "pass_if": { "field": "data.n", "gte": 0 } }))
        .wire("edit", "switch")
        .wire("switch.out_visa", "visa")
        .wire("switch.out_other", "visa");
    // The sink and its tap first, then the source, as a second apply (a diff that adds it).
    rack.apply(graph.clone()).await.expect("applied");
    let mut tap = rack.tap("visa", "out").await.expect("tapped");
    let change = rack
        .apply(
            graph
                .gear("gen", "generate", json!({ "count": 500, "template": { "data": { "n": "${counter}", "pan": "${random_choice:4111|5500}" } } }))
                .wire("gen", "edit"),
        )
        .await
        .expect("the source added");
    assert_eq!(change.added, ["gen"]);
    assert_eq!(change.kept.len(), 3);
    let mut ns = Vec::new();
    for _ in 0..500 {
        let m = recv(&mut tap).await;
        assert!(m.id.is_some(), "the engine gives every message an id");
        assert_eq!(m.path.len(), 4, "one hop per gear: {:?}", m.path);
        assert_eq!(m.meta.get("seen_by").map(|t| t.as_str()), Some("edit"));
        ns.push(m.data.get("n").and_then(Value::as_i64).expect("n"));
    }
    ns.sort_unstable();
    assert_eq!(
        ns,
        (0..500).collect::<Vec<_>>(),
        "fan-in merged both routes, nothing lost"
    );
    let stats = rack.stats();
    assert_eq!(stats["switch"].messages_in, 500);
    assert_eq!(stats["visa"].messages_out, 500);
    assert!(rack.shutdown(Duration::from_secs(5)).await.drained);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fan_out_copies_to_every_wire() {
    let mut rack = rack(Limits::default());
    rack.apply(
        Graph::new()
            .gear("a", "counter", json!({ "tag": "a" }))
            .gear("b", "counter", json!({ "tag": "b" }))
            .gear("c", "counter", json!({ "tag": "c" }))
            .wire("a", "b")
            .wire("a", "c"),
    )
    .await
    .expect("applied");
    let (mut tb, mut tc) = (
        rack.tap("b", "out").await.expect("tap"),
        rack.tap("c", "out").await.expect("tap"),
    );
    let inject = rack.injector("a", "in").expect("injector");
    inject.send(FluxMsg::new()).await.expect("sent");
    assert_eq!(recv(&mut tb).await.data.get("tag"), Some(&Value::from("b")));
    assert_eq!(recv(&mut tc).await.data.get("tag"), Some(&Value::from("c")));
    rack.shutdown(Duration::from_secs(5)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reload_keeps_untouched_gears_and_their_state_and_restarts_changed_ones() {
    let mut rack = rack(Limits::default());
    let graph = |tag: &str| {
        Graph::new()
            .gear("count", "counter", json!({ "tag": "count" }))
            .gear("label", "counter", json!({ "tag": tag }))
            .wire("count", "label")
    };
    let change = rack.apply(graph("v1")).await.expect("applied");
    assert_eq!(change.added, ["count", "label"]);
    let mut tap = rack.tap("label", "out").await.expect("tap");
    let inject = rack.injector("count", "in").expect("injector");
    for _ in 0..3 {
        inject.send(FluxMsg::new()).await.expect("sent");
        recv(&mut tap).await;
    }

    let change = rack.apply(graph("v2")).await.expect("reloaded");
    assert_eq!(
        (change.kept.as_slice(), change.restarted.as_slice()),
        (&["count".to_owned()][..], &["label".to_owned()][..])
    );
    inject
        .send(FluxMsg::new())
        .await
        .expect("sent to the untouched gear");
    let m = recv(&mut tap).await;
    assert_eq!(
        m.data.get("tag"),
        Some(&Value::from("v2")),
        "the changed gear runs its new config"
    );
    assert_eq!(
        m.data.get("seen"),
        Some(&Value::from(1)),
        "the restarted gear starts afresh"
    );
    let stats = rack.stats();
    assert_eq!(
        stats["count"].messages_in, 4,
        "the untouched gear kept counting: {stats:?}"
    );
    rack.shutdown(Duration::from_secs(5)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_queued_for_a_restarting_gear_are_not_lost() {
    let mut rack = rack(Limits::default().with_queue(8).with_batch(4));
    let graph = |tag: &str| {
        Graph::new()
            .gear("count", "counter", json!({ "tag": "count" }))
            .gear("slow", "echo", slow())
            .gear("label", "counter", json!({ "tag": tag }))
            .wire("count", "slow")
            .wire("slow", "label")
    };
    rack.apply(graph("v1")).await.expect("applied");
    let mut tap = rack.tap("label", "out").await.expect("tap");
    let reader = tokio::spawn(async move {
        let mut got = Vec::new();
        while got.len() < 200 {
            match within("a message on the tap", tap.recv()).await {
                Some(m) => got.push(m.data.get("i").and_then(Value::as_i64).expect("i")),
                None => break,
            }
        }
        got
    });
    let inject = rack.injector("count", "in").expect("injector");
    let sender = tokio::spawn(async move {
        for i in 0..200 {
            inject
                .send(FluxMsg::builder().data("i", i).build())
                .await
                .expect("sent");
        }
    });
    // Mid-stream: messages have crossed the whole graph, and the slow gear holds the rest
    // back (200 messages take it at least 100 ms).
    wait_until("a message to reach the gear that restarts", || {
        rack.stats()["label"].messages_in >= 1
    })
    .await;
    rack.apply(graph("v2")).await.expect("reloaded mid-stream");
    sender.await.expect("the sender finished");
    let got = reader.await.expect("the reader finished");
    assert_eq!(
        got,
        (0..200).collect::<Vec<_>>(),
        "in order, nothing lost across the restart: {:?}",
        rack.stats()
    );
    let stats = rack.stats();
    assert!(
        stats
            .values()
            .all(|s| s.dropped.is_empty() && s.errors == 0),
        "{stats:?}"
    );
    rack.shutdown(Duration::from_secs(5)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_sink_holds_a_fast_source_back_without_loss() {
    let limits = Limits::default().with_queue(4).with_batch(16);
    let mut rack = rack(limits);
    rack.apply(
        Graph::new()
            .gear("gen", "generate", json!({ "count": 3000, "batch": 16, "template": { "data": { "n": "${counter}" } } }))
            .gear("slow", "echo", slow())
            .gear("sink", "filter", json!({ "drop_if": { "field": "data.n", "exists": true } }))
            .wire("gen", "slow")
            .wire("slow", "sink"),
    )
    .await
    .expect("applied");
    // How far the source runs ahead of the sink, sampled while waiting for the last message.
    let mut max_ahead = 0;
    wait_until("every message to reach the sink", || {
        let stats = rack.stats();
        max_ahead = max_ahead.max(stats["gen"].messages_out - stats["sink"].messages_in);
        stats["sink"].messages_in == 3000
    })
    .await;
    let stats = rack.stats();
    assert_eq!(
        stats["sink"].dropped("filtered"),
        3000,
        "every message arrived: {stats:?}"
    );
    // The source runs ahead by what the bounded queues and the emitter hold, never by the
    // whole stream.
    assert!(
        max_ahead < 1500,
        "the source ran {max_ahead} messages ahead"
    );
    assert!(
        stats["gen"].dropped.is_empty() && stats["slow"].dropped.is_empty(),
        "{stats:?}"
    );
    rack.shutdown(Duration::from_secs(5)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_graph_changes_nothing() {
    let mut rack = rack(Limits::default());
    rack.apply(Graph::new().gear("a", "counter", json!({ "tag": "a" })))
        .await
        .expect("applied");
    let before = rack.graph().clone();
    let bad = [
        (
            Graph::new().gear("a", "bento", json!({})),
            "unknown gear type \"bento\"",
        ),
        (
            Graph::new().gear("a", "counter", json!({ "tagg": 1 })),
            "'tagg' was unexpected",
        ),
        (
            Graph::new()
                .gear("a", "counter", json!({ "tag": "a" }))
                .wire("a.nope", "a"),
            "gear \"a\" has no output port \"nope\" (it has: error, out)",
        ),
        (
            Graph::new()
                .gear("a", "counter", json!({ "tag": "a" }))
                .wire("a", "b"),
            "no gear \"b\"",
        ),
        (
            Graph::new()
                .gear("a", "counter", json!({ "tag": "a" }))
                .gear("a", "counter", json!({ "tag": "a" })),
            "gear \"a\" is defined twice",
        ),
    ];
    for (graph, message) in bad {
        let err = rack.apply(graph).await.expect_err("refused");
        let text = testkit::chain(&err);
        assert!(text.contains(message), "{text} lacks {message}");
        assert_eq!(rack.graph(), &before);
    }
    let mut tap = rack.tap("a", "out").await.expect("still running");
    rack.injector("a", "in")
        .expect("injector")
        .send(FluxMsg::new())
        .await
        .expect("sent");
    assert_eq!(recv(&mut tap).await.data.get("seen"), Some(&Value::from(1)));
    assert!(matches!(
        rack.tap("a", "nope").await,
        Err(Error::UnknownPort { .. })
    ));
    rack.shutdown(Duration::from_secs(5)).await;
}

/// A shutdown whose drain runs out while a slow gear still has a full queue, and whose gear
/// grace runs out too: every message the source sent is handled, or counted in the final
/// counters as dropped (`shutdown` where a queue was left behind, `target_gone` where a gear
/// stopped before its sender); none vanishes uncounted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shutdown_cut_short_counts_what_it_left_behind() {
    let mut rack = Rack::builder("cut")
        .factory(factory())
        .limits(
            Limits::default()
                .with_queue(256)
                .with_drain_timeout(Duration::from_millis(100)),
        )
        .build()
        .expect("a rack");
    rack.apply(
        Graph::new()
            .gear(
                "gen",
                "generate",
                json!({ "count": 100_000, "batch": 64, "template": { "data": { "n": "${counter}" } } }),
            )
            .gear("slow", "echo", json!({ "flush_delay": "20ms" }))
            .gear("end", "echo", json!({}))
            .wire("gen.out", "slow.in")
            .wire("slow.out", "end.in"),
    )
    .await
    .expect("applies");
    // More queued than the slow gear handles (64 per 20 ms) in the drain and its grace.
    wait_until("the slow gear's queue to fill", || {
        let stats = rack.stats();
        stats["gen"].messages_out > stats["slow"].messages_in + 4096
    })
    .await;
    let stopped = rack.shutdown(Duration::from_millis(50)).await;
    assert!(!stopped.drained, "the drain was cut short");
    let dropped = |gear: &str, reason: &str| {
        stopped.stats[gear]
            .dropped
            .get(reason)
            .copied()
            .unwrap_or(0)
    };
    let (source, slow, end) = (
        &stopped.stats["gen"],
        &stopped.stats["slow"],
        &stopped.stats["end"],
    );
    let cut = dropped("slow", "shutdown")
        + dropped("end", "shutdown")
        + dropped("gen", "target_gone")
        + dropped("slow", "target_gone");
    assert!(cut > 0, "something was cut short, and counted: {stopped:?}");
    assert_eq!(
        source.messages_out,
        slow.messages_in + dropped("slow", "shutdown") + dropped("gen", "target_gone"),
        "{stopped:?}"
    );
    assert_eq!(
        slow.messages_out,
        end.messages_in + dropped("end", "shutdown") + dropped("slow", "target_gone"),
        "{stopped:?}"
    );
}
