//! Tests of the `coatcheck` gear over the in-process snake (and, with `nats-server-tests`, a
//! real nats-server). Each gear runs in its own harness with its own manual clock, as on
//! separate racks; expiry is driven by moving those clocks, never by waiting.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use fluxmsg::{Codec, FluxMsg, Value};
use gears::coatcheck::Coatcheck;
use sdk::{DynGearType, Harness};
use serde_json::json;
use snake::{Pattern, Snake};
use testkit::{wait_until, within};

// ---------------------------------------------------------------------------------------------
// Helpers

/// A built (and loaded) coatcheck gear on `snake` with `config`, started.
async fn gear(snake: &Snake, config: serde_json::Value) -> Harness {
    let gear_type = DynGearType::of::<Coatcheck>().expect("registers");
    let mut h = Harness::builder(gear_type)
        .snake(snake.clone())
        .build_loaded(&config)
        .await
        .expect("a valid coatcheck config");
    h.start().expect("starts");
    h
}

async fn daemon(snake: &Snake, bucket: &str) -> Harness {
    gear(
        snake,
        json!({ "mode": "daemon", "bucket": bucket, "storage": "memory" }),
    )
    .await
}

/// A store gear keyed on `data.stan`, parking `data.pan` (and `extra` keys).
async fn store(snake: &Snake, bucket: &str, extra: serde_json::Value) -> Harness {
    let mut config = json!({
        "mode": "store", "bucket": bucket, "key_fields": ["data.stan"], "value_fields": ["data.pan"]
    });
    merge(&mut config, extra);
    gear(snake, config).await
}

async fn restore(snake: &Snake, bucket: &str, extra: serde_json::Value) -> Harness {
    let mut config = json!({ "mode": "restore", "bucket": bucket, "key_fields": ["data.stan"] });
    merge(&mut config, extra);
    gear(snake, config).await
}

fn merge(config: &mut serde_json::Value, extra: serde_json::Value) {
    let (Some(config), serde_json::Value::Object(extra)) = (config.as_object_mut(), extra) else {
        panic!("configs are JSON objects");
    };
    config.extend(extra);
}

fn request(stan: &str, pan: &str) -> FluxMsg {
    FluxMsg::builder()
        .data("stan", stan)
        .data("pan", pan)
        .build()
}

fn reply(stan: &str) -> FluxMsg {
    FluxMsg::builder()
        .data("stan", stan)
        .data("rc", "00")
        .build()
}

fn text<'a>(msg: &'a FluxMsg, path: &str) -> Option<&'a str> {
    msg.data.get_path(path).and_then(Value::as_str)
}

fn meta<'a>(msg: &'a FluxMsg, key: &str) -> Option<&'a str> {
    msg.meta.get(key).map(|t| t.as_str())
}

/// Stores `msg` and waits for it on `out`.
async fn park(h: &mut Harness, msg: FluxMsg) -> FluxMsg {
    h.send("in", msg).expect("sent");
    h.recv("out").await.expect("the stored message goes on")
}

/// Sends `msg` to a restore gear and returns where it went: `("out", msg)` or
/// `("error", msg)`.
async fn claim(h: &mut Harness, msg: FluxMsg) -> (&'static str, FluxMsg) {
    h.send("in", msg).expect("sent");
    within("a restore's outcome", async {
        loop {
            if let Some(m) = h.take("out").pop() {
                return ("out", m);
            }
            if let Some(m) = h.take("error").pop() {
                return ("error", m);
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    })
    .await
}

/// A restore gear (on `data.stan`) whose clock is `secs` ahead of the stores'.
async fn restore_at(snake: &Snake, bucket: &str, secs: u64) -> Harness {
    let rs = restore(snake, bucket, json!({})).await;
    rs.clock().advance(Duration::from_secs(secs));
    rs
}

/// The configuration error of `config`, with its causes.
fn config_error(config: &serde_json::Value) -> String {
    let err = Harness::new::<Coatcheck>(config).expect_err("refused");
    testkit::chain(&err)
}

// ---------------------------------------------------------------------------------------------
// Store and restore

#[tokio::test(start_paused = true)]
async fn interleaved_keys_each_get_their_own_fields_back_once() {
    let snake = Snake::memory();
    let _daemon = daemon(&snake, "pans").await;
    let mut st = store(&snake, "pans", json!({})).await;
    let mut rs = restore(&snake, "pans", json!({})).await;
    let pan = |i: u32| format!("41111111111{i:05}");
    for i in 0..5u32 {
        let out = park(&mut st, request(&format!("{i:06}"), &pan(i))).await;
        assert_eq!(text(&out, "stan"), Some(format!("{i:06}").as_str()));
        assert_eq!(text(&out, "pan"), None, "the parked field left the message");
    }
    // Replies in another order, with more requests parked in between.
    for (n, i) in [3u32, 0, 4].into_iter().enumerate() {
        let (port, back) = claim(&mut rs, reply(&format!("{i:06}"))).await;
        assert_eq!(port, "out");
        assert_eq!(text(&back, "pan"), Some(pan(i).as_str()));
        assert_eq!(text(&back, "rc"), Some("00"));
        let j = 10 + u32::try_from(n).expect("small");
        park(&mut st, request(&format!("{j:06}"), &pan(j))).await;
    }
    for i in [11u32, 1, 10, 2, 12] {
        let (port, back) = claim(&mut rs, reply(&format!("{i:06}"))).await;
        assert_eq!((port, text(&back, "pan")), ("out", Some(pan(i).as_str())));
    }
    // Each entry is claimed once.
    let (port, back) = claim(&mut rs, reply("000003")).await;
    assert_eq!(port, "error");
    assert_eq!(meta(&back, "error.reason"), Some("coatcheck_missing"));
    assert_eq!(text(&back, "pan"), None);
}

#[tokio::test(start_paused = true)]
async fn a_burst_of_stores_and_restores_loses_and_crosses_nothing() {
    let snake = Snake::memory();
    let _daemon = daemon(&snake, "burst").await;
    let mut st = store(&snake, "burst", json!({ "max_in_flight": 64 })).await;
    let mut rs = restore(&snake, "burst", json!({ "max_in_flight": 64 })).await;
    let n = 500u32;
    let all: Vec<u32> = (0..n).collect();
    let mut restored = BTreeMap::new();
    let mut previous: &[u32] = &[];
    // Chunks within max_in_flight: a chunk is parked while the one before is restored.
    for chunk in all.chunks(50).chain([&[][..]]) {
        st.send_batch(
            "in",
            chunk
                .iter()
                .map(|i| request(&i.to_string(), &format!("pan-{i}"))),
        )
        .expect("sent");
        rs.send_batch("in", previous.iter().rev().map(|i| reply(&i.to_string())))
            .expect("sent");
        for _ in chunk {
            st.recv("out").await.expect("stored");
        }
        for _ in previous {
            let m = rs.recv("out").await.expect("restored");
            let stan = text(&m, "stan").expect("stan").to_owned();
            restored.insert(stan, text(&m, "pan").expect("pan").to_owned());
        }
        previous = chunk;
    }
    assert_eq!(restored.len(), n as usize);
    for (stan, pan) in &restored {
        assert_eq!(pan, &format!("pan-{stan}"), "no reply got another's fields");
    }
    assert!(rs.take("error").is_empty());
}

#[tokio::test(start_paused = true)]
async fn key_normalize_numeric_trim_and_none() {
    let snake = Snake::memory();
    let _daemon = daemon(&snake, "norm").await;
    for (how, stored, asked, found) in [
        ("numeric", " 000123", "123", true),
        ("numeric", "00-01-23", "0123 ", true),
        ("numeric", "123", "1230", false),
        ("trim", " 000123 ", "000123", true),
        ("trim", " 000123", "123", false),
        ("none", " 000123", "000123", false),
        ("none", "000123", "000123", true),
    ] {
        let extra = json!({ "key_normalize": how });
        let mut st = store(&snake, "norm", extra.clone()).await;
        let mut rs = restore(&snake, "norm", extra).await;
        park(&mut st, request(stored, "4111111111111111")).await;
        let (port, back) = claim(&mut rs, reply(asked)).await;
        assert_eq!(port == "out", found, "{how}: {stored:?} then {asked:?}");
        if found {
            assert_eq!(text(&back, "pan"), Some("4111111111111111"));
        } else {
            // Take the entry away so that the next case starts clean.
            let (port, _) = claim(&mut rs, reply(stored)).await;
            assert_eq!(port, "out", "{how}: the entry was under {stored:?}");
        }
    }
}

#[tokio::test(start_paused = true)]
async fn several_key_fields_and_meta_values() {
    let snake = Snake::memory();
    let _daemon = daemon(&snake, "multi").await;
    let keys = json!(["data.stan", "meta.terminal"]);
    let mut st = gear(
        &snake,
        json!({
            "mode": "store", "bucket": "multi", "key_fields": keys,
            "value_fields": ["meta.conn.id", "data.card"], "include_values": true
        }),
    )
    .await;
    let mut rs = gear(
        &snake,
        json!({ "mode": "restore", "bucket": "multi", "key_fields": keys }),
    )
    .await;
    let req = FluxMsg::builder()
        .data("stan", "1")
        .meta("terminal", "T1")
        .meta("conn.id", "acq-7")
        .data_path("card.pan", "4111")
        .expect("path")
        .data_path("card.exp", "2912")
        .expect("path")
        .build();
    let out = park(&mut st, req).await;
    assert_eq!(
        meta(&out, "conn.id"),
        Some("acq-7"),
        "include_values keeps them"
    );
    assert_eq!(text(&out, "card.pan"), Some("4111"));
    // The same STAN from another terminal is another key.
    let other = FluxMsg::builder()
        .data("stan", "1")
        .meta("terminal", "T2")
        .build();
    assert_eq!(claim(&mut rs, other).await.0, "error");
    let mine = FluxMsg::builder()
        .data("stan", "1")
        .meta("terminal", "T1")
        .build();
    let (port, back) = claim(&mut rs, mine).await;
    assert_eq!(port, "out");
    assert_eq!(meta(&back, "conn.id"), Some("acq-7"));
    assert_eq!(text(&back, "card.pan"), Some("4111"));
    assert_eq!(text(&back, "card.exp"), Some("2912"));
}

#[tokio::test(start_paused = true)]
async fn merge_strategies() {
    let snake = Snake::memory();
    let _daemon = daemon(&snake, "merge").await;
    let mut st = store(
        &snake,
        "merge",
        json!({ "value_fields": ["data.pan", "data.amount", "meta.origin"] }),
    )
    .await;
    for (strategy, amount, origin) in [
        ("overwrite", "parked-amount", "parked-origin"),
        ("preserve", "reply-amount", "reply-origin"),
    ] {
        let mut rs = restore(&snake, "merge", json!({ "merge_strategy": strategy })).await;
        let req = FluxMsg::builder()
            .data("stan", strategy)
            .data("pan", "4111")
            .data("amount", "parked-amount")
            .meta("origin", "parked-origin")
            .build();
        park(&mut st, req).await;
        let rep = FluxMsg::builder()
            .data("stan", strategy)
            .data("amount", "reply-amount")
            .meta("origin", "reply-origin")
            .build();
        let (port, back) = claim(&mut rs, rep).await;
        assert_eq!(port, "out");
        assert_eq!(
            text(&back, "pan"),
            Some("4111"),
            "{strategy}: absent fields come back"
        );
        assert_eq!(text(&back, "amount"), Some(amount), "{strategy}");
        assert_eq!(meta(&back, "origin"), Some(origin), "{strategy}");
    }
}

#[tokio::test(start_paused = true)]
async fn on_missing_error_drop_and_forward() {
    let snake = Snake::memory();
    let _daemon = daemon(&snake, "missing").await;
    let mut rs = restore(&snake, "missing", json!({})).await;
    let (port, back) = claim(&mut rs, reply("4111111111111111")).await;
    assert_eq!(port, "error");
    assert_eq!(meta(&back, "error.reason"), Some("coatcheck_missing"));
    let detail = meta(&back, "error.detail").expect("detail");
    assert!(detail.contains("bucket `missing`"), "{detail}");
    assert!(!detail.contains("4111"), "no key value in errors: {detail}");

    let mut rs = restore(&snake, "missing", json!({ "on_missing": "drop" })).await;
    rs.send("in", reply("1")).expect("sent");
    wait_until("the drop is counted", || {
        rs.stats().dropped("coatcheck_missing") == 1
    })
    .await;
    assert!(rs.take("out").is_empty() && rs.take("error").is_empty());

    let mut rs = restore(&snake, "missing", json!({ "on_missing": "forward" })).await;
    let (port, back) = claim(&mut rs, reply("1")).await;
    assert_eq!((port, back), ("out", reply("1")), "forwarded unchanged");
}

#[tokio::test(start_paused = true)]
async fn ttl_defaults_overrides_and_the_cap() {
    let snake = Snake::memory();
    let _daemon = daemon(&snake, "ttl").await;
    let mut st = store(
        &snake,
        "ttl",
        json!({ "default_ttl": "1m", "max_ttl": "5m" }),
    )
    .await;
    let with_ttl = |stan: &str, ttl: &str| {
        let mut m = request(stan, "4111");
        m.meta.insert("coatcheck.ttl", ttl.into());
        m
    };
    park(&mut st, request("default", "4111")).await;
    park(&mut st, with_ttl("short", "30s")).await;
    park(&mut st, with_ttl("secs", "90")).await;
    park(&mut st, with_ttl("capped", "10m")).await;
    park(&mut st, with_ttl("capped-too", "10m")).await;
    // Each restore gear reads its own clock: move it to just before, or just after, an expiry.
    let mut rs = restore_at(&snake, "ttl", 29).await;
    assert_eq!(claim(&mut rs, reply("short")).await.0, "out");
    let mut rs = restore_at(&snake, "ttl", 60).await;
    assert_eq!(
        claim(&mut rs, reply("default")).await.0,
        "error",
        "expired at 1m"
    );
    let mut rs = restore_at(&snake, "ttl", 89).await;
    assert_eq!(
        claim(&mut rs, reply("secs")).await.0,
        "out",
        "a bare number is seconds"
    );
    let mut rs = restore_at(&snake, "ttl", 299).await;
    assert_eq!(claim(&mut rs, reply("capped")).await.0, "out");
    let mut rs = restore_at(&snake, "ttl", 300).await;
    let (port, back) = claim(&mut rs, reply("capped-too")).await;
    assert_eq!(port, "error", "10m capped by max_ttl at 5m");
    assert_eq!(meta(&back, "error.reason"), Some("coatcheck_missing"));

    st.send("in", with_ttl("bad", "soon")).expect("sent");
    st.send("in", with_ttl("zero", "0s")).expect("sent");
    let bad = st.take("error");
    assert_eq!(bad.len(), 2);
    for m in &bad {
        assert_eq!(meta(m, "error.reason"), Some("bad_ttl"));
        assert_eq!(
            text(m, "pan"),
            Some("4111"),
            "the message goes to error whole"
        );
    }
}

#[tokio::test(start_paused = true)]
async fn key_problems_go_to_error_with_the_message_whole() {
    let snake = Snake::memory();
    let _daemon = daemon(&snake, "keys").await;
    let mut st = store(&snake, "keys", json!({})).await;
    st.send("in", FluxMsg::builder().data("pan", "4111").build())
        .expect("sent");
    st.send("in", request("   ", "4111")).expect("sent");
    st.send("in", request(&"9".repeat(300), "4111"))
        .expect("sent");
    let errors = st.take("error");
    let reasons: Vec<_> = errors.iter().map(|m| meta(m, "error.reason")).collect();
    assert_eq!(
        reasons,
        [Some("no_key"), Some("no_key"), Some("key_too_long")]
    );
    for m in &errors {
        assert_eq!(text(m, "pan"), Some("4111"));
        let detail = meta(m, "error.detail").unwrap_or_default();
        assert!(!detail.contains("999"), "no key value in errors: {detail}");
    }
}

// ---------------------------------------------------------------------------------------------
// Without a daemon, and in the background

#[tokio::test(start_paused = true)]
async fn without_a_daemon_stores_and_restores_fail_with_bucket_not_found() {
    let snake = Snake::memory();
    let mut st = store(&snake, "orphan", json!({})).await;
    let mut rs = restore(&snake, "orphan", json!({})).await;
    st.send("in", request("1", "4111")).expect("sent");
    let m = within("the refused store", st.recv("error"))
        .await
        .expect("error");
    assert_eq!(meta(&m, "error.reason"), Some("bucket_not_found"));
    let detail = meta(&m, "error.detail").expect("detail");
    assert!(detail.contains("bucket `orphan` not found"), "{detail}");
    assert!(detail.contains("daemon"), "{detail}");
    assert_eq!(
        text(&m, "pan"),
        Some("4111"),
        "the parked field is put back"
    );
    let (port, m) = claim(&mut rs, reply("1")).await;
    assert_eq!(
        (port, meta(&m, "error.reason")),
        ("error", Some("bucket_not_found"))
    );
    assert!(
        snake.kv_open("orphan").await.is_err(),
        "stores never create the bucket"
    );

    // Once a daemon has created it, the same gears work.
    let _daemon = daemon(&snake, "orphan").await;
    park(&mut st, request("1", "4111")).await;
    let (port, m) = claim(&mut rs, reply("1")).await;
    assert_eq!((port, text(&m, "pan")), ("out", Some("4111")));
}

#[tokio::test(start_paused = true)]
async fn a_background_store_sends_the_message_on_at_once() {
    let snake = Snake::memory();
    let mut st = store(&snake, "bg", json!({ "await_store": false })).await;
    // No bucket yet: the message still goes on, and the lost entry is counted.
    st.send("in", request("1", "4111")).expect("sent");
    let out = st.take("out");
    assert_eq!(out.len(), 1, "sent on within the call");
    assert_eq!(text(&out[0], "pan"), None);
    wait_until("the failed store is counted", || {
        st.stats().dropped("store_failed") == 1
    })
    .await;

    let _daemon = daemon(&snake, "bg").await;
    let mut watch = snake
        .kv_open("bg")
        .await
        .expect("bucket")
        .watch(">")
        .await
        .expect("watch");
    st.send("in", request("2", "4112")).expect("sent");
    assert_eq!(st.take("out").len(), 1);
    within("the entry lands", watch.next())
        .await
        .expect("an entry");
    let mut rs = restore(&snake, "bg", json!({})).await;
    let (port, m) = claim(&mut rs, reply("2")).await;
    assert_eq!((port, text(&m, "pan")), ("out", Some("4112")));
}

#[tokio::test(start_paused = true)]
async fn a_full_queue_refuses_with_the_message_whole() {
    let snake = Snake::memory();
    let _daemon = daemon(&snake, "full").await;
    let mut st = store(&snake, "full", json!({ "max_in_flight": 1 })).await;
    // Five at once, one place in the queue: the worker has not run yet.
    st.send_batch("in", (0..5).map(|i| request(&i.to_string(), "4111")))
        .expect("sent");
    let refused = st.take("error");
    assert_eq!(refused.len(), 4);
    for m in &refused {
        assert_eq!(meta(m, "error.reason"), Some("overloaded"));
        assert_eq!(text(m, "pan"), Some("4111"), "the parked field is put back");
    }
    assert_eq!(
        text(&st.recv("out").await.expect("the first"), "stan"),
        Some("0")
    );
}

#[tokio::test(start_paused = true)]
async fn an_unreadable_entry_is_an_error_not_a_panic() {
    let snake = Snake::memory();
    let mut dm = daemon(&snake, "junk").await;
    let bucket = snake.kv_open("junk").await.expect("bucket");
    let mut watch = bucket.watch(">").await.expect("watch");
    let mut st = store(&snake, "junk", json!({})).await;
    park(&mut st, request("1", "4111")).await;
    let key = within("the entry", watch.next()).await.expect("entry").key;
    for junk in [
        &b""[..],
        &b"\x01short"[..],
        &b"\x09future-format"[..],
        &[1, 0, 0, 0, 0, 0, 0, 0, 0, 0xff][..],
    ] {
        bucket.put(&key, junk).await.expect("overwritten");
        let mut rs = restore(&snake, "junk", json!({})).await;
        let (port, m) = claim(&mut rs, reply("1")).await;
        assert_eq!(
            (port, meta(&m, "error.reason")),
            ("error", Some("corrupt_entry"))
        );
        assert_eq!(
            text(&m, "rc"),
            Some("00"),
            "the reply goes to error as it came"
        );
    }
    // The sweep leaves what it cannot read and goes on with the rest.
    park(&mut st, request("2", "4222")).await;
    dm.advance(Duration::from_secs(61)).await;
    let event = dm.recv("out").await.expect("the readable one times out");
    assert_eq!(text(&event, "pan"), Some("4222"));
    assert!(
        bucket.get(&key).await.expect("get").is_some(),
        "the junk is left"
    );
}

// ---------------------------------------------------------------------------------------------
// The daemon

#[tokio::test(start_paused = true)]
async fn the_sweep_turns_expired_entries_into_timeout_events() {
    let snake = Snake::memory();
    let mut dm = daemon(&snake, "sweep").await;
    let mut bus = snake
        .subscribe(Pattern::parse("flux.event.timeout.sweep").expect("pattern"))
        .await
        .expect("subscribe");
    let mut st = store(
        &snake,
        "sweep",
        json!({ "value_fields": ["data.pan", "meta.conn.id"] }),
    )
    .await;
    let mut rs = restore(&snake, "sweep", json!({})).await;
    let mut lost = request("7", "4111111111111111");
    lost.meta.insert("conn.id", "acq-1".into());
    park(&mut st, lost).await;
    park(&mut st, request("8", "4222")).await;
    let mut long = request("9", "4333");
    long.meta.insert("coatcheck.ttl", "5m".into());
    park(&mut st, long).await;
    // One is answered in time: it never times out.
    assert_eq!(claim(&mut rs, reply("8")).await.0, "out");

    dm.advance(Duration::from_secs(61)).await;
    let event = dm.recv("out").await.expect("a timeout event");
    assert_eq!(meta(&event, "event.type"), Some("fluxrig.event.timeout"));
    assert_eq!(meta(&event, "timeout.bucket"), Some("sweep"));
    assert!(meta(&event, "timeout.key").is_some_and(|k| !k.is_empty()));
    assert!(meta(&event, "timeout.expired_at").is_some());
    assert_eq!(
        text(&event, "pan"),
        Some("4111111111111111"),
        "the parked values"
    );
    assert_eq!(meta(&event, "conn.id"), Some("acq-1"));
    assert!(event.id.is_some());
    let published = within("the bus event", bus.next())
        .await
        .expect("published");
    let on_bus = Codec::new().decode(&published.payload).expect("a fluxMsg");
    assert_eq!(on_bus, event, "the same event on the bus");

    // The swept entry is gone; the long one is still there and not swept.
    let mut rs = restore(&snake, "sweep", json!({})).await;
    rs.clock().advance(Duration::from_secs(61));
    assert_eq!(claim(&mut rs, reply("7")).await.0, "error");
    assert!(dm.take("out").is_empty(), "one event only");
    let (port, m) = claim(&mut rs, reply("9")).await;
    assert_eq!((port, text(&m, "pan")), ("out", Some("4333")));
    dm.advance(Duration::from_secs(600)).await;
    assert!(
        dm.take("out").is_empty(),
        "a restored entry never times out"
    );
}

#[tokio::test(start_paused = true)]
async fn a_restarted_daemon_sweeps_what_was_parked_before() {
    let snake = Snake::memory();
    let dm = daemon(&snake, "again").await;
    let mut st = store(&snake, "again", json!({})).await;
    park(&mut st, request("1", "4111")).await;
    drop(dm);
    park(&mut st, request("2", "4222")).await;
    // The same bucket configuration: the new daemon takes over the bucket and its entries.
    let mut dm = daemon(&snake, "again").await;
    dm.advance(Duration::from_secs(61)).await;
    let mut pans = vec![
        text(&dm.recv("out").await.expect("event"), "pan").map(str::to_owned),
        text(&dm.recv("out").await.expect("event"), "pan").map(str::to_owned),
    ];
    pans.sort();
    assert_eq!(pans, [Some("4111".to_owned()), Some("4222".to_owned())]);
}

/// A sweep used to read nothing from the watch until it ended: a mass expiry (more changes
/// than a watcher keeps) lost the changes made meanwhile, and an entry parked during it was
/// not swept until the index was rebuilt, 60 sweeps later. The sweep now applies the watch's
/// changes between chunks.
#[tokio::test(start_paused = true)]
async fn an_entry_parked_during_a_mass_expiry_times_out_in_its_turn() {
    let snake = Snake::memory();
    let gear_type = DynGearType::of::<Coatcheck>().expect("registers");
    // Room for few events: the sweep waits on `out` while the test parks during it.
    let mut dm = Harness::builder(gear_type)
        .snake(snake.clone())
        .emit_capacity(8)
        .build_loaded(&json!({ "mode": "daemon", "bucket": "mass", "storage": "memory" }))
        .await
        .expect("a daemon");
    dm.start().expect("starts");
    let parking = json!({
        "max_in_flight": 250, "value_fields": ["data.pan", "data.stan"], "include_values": true
    });
    let mut st = store(&snake, "mass", parking).await;
    // More than a memory bucket's watcher keeps (4,096 changes).
    let n = 5_000u32;
    let all: Vec<u32> = (0..n).collect();
    for chunk in all.chunks(250) {
        st.send_batch("in", chunk.iter().map(|i| request(&i.to_string(), "4111")))
            .expect("sent");
        for _ in chunk {
            st.recv("out").await.expect("stored");
        }
    }
    let with_ttl = |stan: &str, ttl: &str| {
        let mut m = request(stan, "4222");
        m.meta.insert("coatcheck.ttl", ttl.into());
        m
    };
    dm.clock().advance(Duration::from_secs(61));
    dm.recv("out").await.expect("the mass expiry is under way");
    park(&mut st, with_ttl("during", "2m")).await;
    for _ in 1..n {
        let event = dm.recv("out").await.expect("a timeout event");
        assert_ne!(text(&event, "stan"), Some("during"));
    }
    park(&mut st, with_ttl("after", "2m")).await;
    park(&mut st, with_ttl("later", "3m")).await;
    // "during" and "after" expire together, "later" a minute after: each comes in its turn.
    let mut seen = Vec::new();
    for (secs, last) in [(60, "after"), (60, "later")] {
        dm.clock().advance(Duration::from_secs(secs));
        while seen.last().map(String::as_str) != Some(last) {
            let event = dm.recv("out").await.expect("a timeout event");
            seen.push(text(&event, "stan").expect("stan").to_owned());
        }
    }
    seen[..2].sort();
    assert_eq!(seen, ["after", "during", "later"]);
}

#[tokio::test(start_paused = true)]
async fn each_entry_is_either_restored_or_timed_out_never_both() {
    restores_race_the_sweep(300).await;
}

/// The same race with the restores' tasks and the sweep running in parallel on two threads.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_entry_is_either_restored_or_timed_out_in_parallel_too() {
    restores_race_the_sweep(2_000).await;
}

async fn restores_race_the_sweep(n: u32) {
    let snake = Snake::memory();
    let mut dm = gear(
        &snake,
        json!({ "mode": "daemon", "bucket": "race", "sweep_interval": "1ms" }),
    )
    .await;
    let flight = json!({ "max_in_flight": n });
    // The STAN is parked too (and kept), so that a timeout event names it.
    let parking = json!({
        "max_in_flight": n, "value_fields": ["data.pan", "data.stan"], "include_values": true
    });
    let mut st = store(&snake, "race", parking).await;
    st.send_batch(
        "in",
        (0..n).map(|i| request(&i.to_string(), &format!("pan-{i}"))),
    )
    .expect("sent");
    for _ in 0..n {
        st.recv("out").await.expect("stored");
    }
    // The daemon's clock says everything expired; the restore's clock says nothing has, so
    // both go for every entry at once.
    let mut rs = restore(&snake, "race", flight).await;
    dm.clock().advance(Duration::from_secs(3_600));
    rs.send_batch("in", (0..n).map(|i| reply(&i.to_string())))
        .expect("sent");
    let stan = |m: &FluxMsg| text(m, "stan").expect("stan").to_owned();
    let (mut restored, mut timed_out, mut missing) =
        (BTreeSet::new(), BTreeSet::new(), BTreeSet::new());
    let n = n as usize;
    within("an outcome for every entry", async {
        while restored.len() + missing.len() < n || restored.len() + timed_out.len() < n {
            for m in rs.take("out") {
                assert!(restored.insert(stan(&m)), "restored twice");
            }
            for m in dm.take("out") {
                assert!(timed_out.insert(stan(&m)), "timed out twice");
            }
            for m in rs.take("error") {
                assert_eq!(meta(&m, "error.reason"), Some("coatcheck_missing"));
                assert!(missing.insert(stan(&m)), "missing twice");
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    })
    .await;
    assert!(restored.is_disjoint(&timed_out), "never both");
    assert_eq!(restored.len() + timed_out.len(), n, "never neither");
    assert_eq!(missing, timed_out, "a restore that lost found it gone");
}

#[tokio::test(start_paused = true)]
async fn a_daemon_has_no_input_and_a_second_one_must_agree() {
    let snake = Snake::memory();
    let mut dm = daemon(&snake, "one").await;
    assert!(dm.send("in", FluxMsg::new()).is_err(), "no input port");
    let gear_type = DynGearType::of::<Coatcheck>().expect("registers");
    let err = Harness::builder(gear_type)
        .snake(snake.clone())
        .build_loaded(&json!({ "mode": "daemon", "bucket": "one", "storage": "file" }))
        .await
        .expect_err("another storage");
    let chain = testkit::chain(&err);
    assert!(chain.contains("bucket_create_failed"), "{chain}");
    assert!(
        chain.contains("another storage or replica count"),
        "{chain}"
    );
}

// ---------------------------------------------------------------------------------------------
// Card data stays out of logs

/// Every field of every span and event, as text.
#[derive(Clone, Default)]
struct Capture(std::sync::Arc<std::sync::Mutex<String>>);

struct Writer<'a>(&'a mut String);

impl tracing::field::Visit for Writer<'_> {
    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
        use std::fmt::Write as _;
        let _ = write!(self.0, "{}={value:?} ", field.name());
    }
}

impl Capture {
    fn text(&self) -> String {
        self.0.lock().map(|t| t.clone()).unwrap_or_default()
    }

    fn write(&self, f: impl FnOnce(&mut Writer<'_>)) {
        if let Ok(mut text) = self.0.lock() {
            f(&mut Writer(&mut text));
            text.push('\n');
        }
    }
}

impl tracing::Subscriber for Capture {
    fn enabled(&self, _: &tracing::Metadata<'_>) -> bool {
        true
    }

    fn new_span(&self, span: &tracing::span::Attributes<'_>) -> tracing::span::Id {
        self.write(|w| span.record(w));
        tracing::span::Id::from_u64(1)
    }

    fn record(&self, _: &tracing::span::Id, values: &tracing::span::Record<'_>) {
        self.write(|w| values.record(w));
    }

    fn record_follows_from(&self, _: &tracing::span::Id, _: &tracing::span::Id) {}

    fn event(&self, event: &tracing::Event<'_>) {
        self.write(|w| event.record(w));
    }

    fn enter(&self, _: &tracing::span::Id) {}

    fn exit(&self, _: &tracing::span::Id) {}
}

#[tokio::test(start_paused = true)]
async fn no_card_number_or_key_reaches_the_logs() {
    let capture = Capture::default();
    let _guard = tracing::subscriber::set_default(capture.clone());
    let pan = "4111111111111111";
    // The card number is the key itself here: its base64 form must stay out too.
    let key = "MTY6NDExMTExMTExMTExMTExMQ";
    let keyed = json!({ "key_fields": ["data.pan"], "value_fields": ["data.pan"] });
    let snake = Snake::memory();
    // Failures first: no bucket, in the background and awaited.
    let mut extra = keyed.clone();
    merge(&mut extra, json!({ "await_store": false }));
    let mut bg = store(&snake, "logs", extra).await;
    bg.send("in", request("1", pan)).expect("sent");
    wait_until("the failed store", || {
        bg.stats().dropped("store_failed") == 1
    })
    .await;
    let mut st = store(&snake, "logs", keyed.clone()).await;
    st.send("in", request("1", pan)).expect("sent");
    st.recv("error").await.expect("refused");
    // Then a sweep that meets an unreadable entry and an expired one.
    let mut dm = daemon(&snake, "logs").await;
    let bucket = snake.kv_open("logs").await.expect("bucket");
    park(&mut st, request("1", pan)).await;
    bucket.put("b3RoZXI", &b"\x01junk"[..]).await.expect("junk");
    dm.advance(Duration::from_secs(61)).await;
    let event = dm.recv("out").await.expect("timeout event");
    assert_eq!(
        meta(&event, "timeout.key"),
        Some(key),
        "the key as the test computes it"
    );
    let mut rs = restore(&snake, "logs", keyed).await;
    let (port, m) = claim(&mut rs, FluxMsg::builder().data("pan", pan).build()).await;
    assert_eq!(
        meta(&m, "error.reason"),
        Some("coatcheck_missing"),
        "{port}"
    );
    let logs = capture.text();
    assert!(
        logs.contains("background store failed"),
        "the capture works: {logs}"
    );
    assert!(logs.contains("unreadable"), "{logs}");
    assert!(!logs.contains(pan) && !logs.contains(key), "{logs}");
    let detail = meta(&m, "error.detail").unwrap_or_default();
    assert!(!detail.contains(pan) && !detail.contains(key), "{detail}");
}

// ---------------------------------------------------------------------------------------------
// Configuration

#[test]
fn bad_configurations_are_refused_naming_the_key() {
    let cases = [
        (json!({ "mode": "park", "bucket": "b" }), "mode"),
        (json!({ "bucket": "b", "key_fields": ["data.a"] }), "mode"),
        (
            json!({ "mode": "store", "key_fields": ["data.a"] }),
            "bucket",
        ),
        (
            json!({ "mode": "store", "bucket": "b" }),
            "config.key_fields: give at least one",
        ),
        (
            json!({ "mode": "restore", "bucket": "b", "key_fields": [] }),
            "config.key_fields",
        ),
        (
            json!({ "mode": "store", "bucket": "b", "key_fields": ["id"] }),
            "config.key_fields[0]: \"id\" is an envelope field",
        ),
        (
            json!({ "mode": "store", "bucket": "b", "key_fields": ["data."] }),
            "config.key_fields[0]",
        ),
        (
            json!({ "mode": "store", "bucket": "b", "key_fields": ["data.a"], "value_fields": ["raw"] }),
            "config.value_fields[0]",
        ),
        (
            json!({ "mode": "store", "bucket": "b", "key_fields": ["data.a"], "default_ttl": "10m" }),
            "config.max_ttl: 5m is shorter than default_ttl (10m)",
        ),
        (
            json!({ "mode": "store", "bucket": "b", "key_fields": ["data.a"], "max_ttl": "0s" }),
            "config.max_ttl: must be above zero",
        ),
        (
            json!({ "mode": "store", "bucket": "b", "key_fields": ["data.a"], "store_timeout": "later" }),
            "store_timeout",
        ),
        (
            json!({ "mode": "store", "bucket": "a.b", "key_fields": ["data.a"] }),
            "config.bucket",
        ),
        (
            json!({ "mode": "daemon", "bucket": "b", "replicas": 9 }),
            "config.replicas",
        ),
        (
            json!({ "mode": "daemon", "bucket": "b", "sweep_interval": "0s" }),
            "config.sweep_interval",
        ),
        (
            json!({ "mode": "daemon", "bucket": "b", "storage": "disk" }),
            "storage",
        ),
        (
            json!({ "mode": "restore", "bucket": "b", "key_fields": ["data.a"], "on_missing": "ignore" }),
            "on_missing",
        ),
        (
            json!({ "mode": "restore", "bucket": "b", "key_fields": ["data.a"], "merge_strategy": "mix" }),
            "merge_strategy",
        ),
        (
            json!({ "mode": "restore", "bucket": "b", "key_fields": ["data.a"], "key_normalize": "upper" }),
            "key_normalize",
        ),
        (
            json!({ "mode": "store", "bucket": "b", "key_fields": ["data.a"], "max_in_flight": 0 }),
            "config.max_in_flight",
        ),
        (
            json!({ "mode": "store", "bucket": "b", "key_fields": ["data.a"], "colour": "red" }),
            "colour",
        ),
    ];
    for (config, want) in cases {
        let chain = config_error(&config);
        assert!(chain.contains(want), "{config}: {chain}");
    }
}

#[test]
fn ports_follow_the_mode() {
    let ports = |mode: &str| {
        let config = json!({ "mode": mode, "bucket": "b", "key_fields": ["data.a"] });
        let gear = gears::Factory::builtin()
            .prepare("c", "coatcheck", &config)
            .expect("valid");
        let names =
            |p: &[sdk::PortName]| p.iter().map(|n| n.as_str().to_owned()).collect::<Vec<_>>();
        (names(gear.ports().inputs()), names(gear.ports().outputs()))
    };
    let outputs = vec!["error".to_owned(), "out".to_owned()];
    assert_eq!(ports("store"), (vec!["in".to_owned()], outputs.clone()));
    assert_eq!(ports("restore"), (vec!["in".to_owned()], outputs.clone()));
    assert_eq!(ports("daemon"), (vec![], outputs));
}

// ---------------------------------------------------------------------------------------------
// Over a real nats-server

#[cfg(feature = "nats-server-tests")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_round_trip_and_a_timeout_over_nats() {
    let mut server = snake::NatsServer::start().expect("nats-server (make setup-nats)");
    let snake = Snake::nats(snake::NatsOptions::new(server.url()))
        .await
        .expect("connects");
    let mut st = store(&snake, "nats_pans", json!({})).await;
    st.send("in", request("1", "4111")).expect("sent");
    let m = st.recv("error").await.expect("no bucket yet");
    assert_eq!(meta(&m, "error.reason"), Some("bucket_not_found"));

    let mut dm = gear(
        &snake,
        json!({
            "mode": "daemon", "bucket": "nats_pans", "storage": "memory", "sweep_interval": "20ms"
        }),
    )
    .await;
    let mut bus = snake
        .subscribe(Pattern::parse("flux.event.timeout.nats_pans").expect("pattern"))
        .await
        .expect("subscribe");
    let mut rs = restore(&snake, "nats_pans", json!({})).await;
    park(&mut st, request("1", "4111")).await;
    park(&mut st, request("2", "4222")).await;
    let (port, m) = claim(&mut rs, reply("1")).await;
    assert_eq!((port, text(&m, "pan")), ("out", Some("4111")));
    assert_eq!(claim(&mut rs, reply("1")).await.0, "error", "claimed once");

    dm.clock().advance(Duration::from_secs(61));
    let event = dm.recv("out").await.expect("a timeout event");
    assert_eq!(meta(&event, "event.type"), Some("fluxrig.event.timeout"));
    assert_eq!(text(&event, "pan"), Some("4222"));
    let published = within("the bus event", bus.next())
        .await
        .expect("published");
    assert_eq!(
        Codec::new().decode(&published.payload).expect("a fluxMsg"),
        event
    );
    assert_eq!(claim(&mut rs, reply("2")).await.0, "error", "swept");

    // With the server gone, a store fails within store_timeout and the message goes to error
    // whole.
    let mut quick = store(&snake, "nats_pans", json!({ "store_timeout": "300ms" })).await;
    server.stop().expect("stops");
    quick.send("in", request("3", "4333")).expect("sent");
    let m = quick.recv("error").await.expect("refused");
    let reason = meta(&m, "error.reason").unwrap_or_default();
    assert!(
        ["store_timeout", "store_failed"].contains(&reason),
        "{reason}"
    );
    assert_eq!(text(&m, "pan"), Some("4333"));
}
