//! Tests of the `generate` gear.
//!
//! Timing tests run on paused Tokio time (`start_paused`): `Harness::advance` moves the manual
//! clock and Tokio time together, so rates are checked exactly and instantly.

use std::time::Duration;

use fluxmsg::{FluxMsg, Value};
use gears::generate::Generate;
use proptest::prelude::*;
use sdk::{Category, Direction, DynGearType, Harness, Terminus};
use serde_json::json;

/// The harness clock's start, 2026-01-01T00:00:00Z, in seconds since the Unix epoch.
const START_UNIX: u64 = 1_767_225_600;

fn harness(config: &serde_json::Value) -> Harness {
    let mut h = Harness::new::<Generate>(config).expect("the configuration is valid");
    h.start().expect("the gear starts");
    h
}

/// Lets the gear's task run until it waits (for time or for room), without moving time.
async fn settle() {
    for _ in 0..20 {
        tokio::task::yield_now().await;
    }
}

/// Reads `out` until nothing more comes (`recv` gives up after ten seconds of Tokio time).
async fn read_all(h: &mut Harness) -> Vec<FluxMsg> {
    let mut all = Vec::new();
    while let Some(msg) = h.recv("out").await {
        all.push(msg);
    }
    all
}

fn data<'a>(msg: &'a FluxMsg, path: &str) -> &'a Value {
    msg.data
        .get_path(path)
        .unwrap_or_else(|| panic!("data.{path} is missing from {msg:?}"))
}

fn counters(msgs: &[FluxMsg]) -> Vec<u64> {
    msgs.iter()
        .map(|m| data(m, "n").as_u64().expect("data.n is an integer"))
        .collect()
}

fn refused(config: &serde_json::Value) -> String {
    testkit::chain(&Harness::new::<Generate>(config).expect_err("the configuration is refused"))
}

#[test]
fn the_manifest_is_an_origin_with_one_output() -> Result<(), gears::Error> {
    let gear_type = DynGearType::of::<Generate>()?;
    let manifest = gear_type.manifest();
    assert_eq!(manifest.gear_type, "generate");
    assert_eq!(manifest.category, Category::Logic);
    assert_eq!(manifest.terminus, Terminus::Io);
    assert_eq!(manifest.fixed_ports(Direction::Input).count(), 0);
    let outputs: Vec<_> = manifest.fixed_ports(Direction::Output).collect();
    assert_eq!(outputs, ["error", "out"]);
    assert!(gears::Factory::builtin().get("generate").is_some());
    Ok(())
}

#[tokio::test(start_paused = true)]
async fn count_stops_exactly_at_n_in_load_mode_and_at_a_rate() {
    let mut h = harness(&json!({ "count": 5, "template": { "data": { "n": "${counter}" } } }));
    let all = read_all(&mut h).await;
    assert_eq!(counters(&all), [0, 1, 2, 3, 4]);
    assert_eq!(h.stats().messages_out, 5);

    let mut h = harness(&json!({
        "count": 3, "rate": { "tps": 100 }, "template": { "data": { "n": "${counter}" } }
    }));
    h.advance(Duration::from_secs(5)).await;
    assert_eq!(counters(&h.take("out")), [0, 1, 2]);
    assert_eq!(h.stats().messages_out, 3);
}

#[tokio::test(start_paused = true)]
async fn a_constant_rate_of_ten_emits_ten_per_second() {
    let mut h =
        harness(&json!({ "rate": { "tps": 10 }, "template": { "data": { "n": "${counter}" } } }));
    let mut total = 0;
    for second in 1..=5 {
        h.advance(Duration::from_secs(1)).await;
        settle().await;
        let got = h.take("out").len();
        // The message due exactly on the second boundary may land on either side.
        assert!((9..=11).contains(&got), "second {second}: {got} messages");
        total += got;
    }
    // The first message leaves at once, then one every 100ms: 0.0 ..= 5.0 s.
    assert!((50..=51).contains(&total), "{total} messages in 5 s");
}

#[tokio::test(start_paused = true)]
async fn at_a_low_rate_messages_leave_one_by_one_on_time() {
    let mut h =
        harness(&json!({ "rate": { "tps": 2 }, "template": { "data": { "n": "${counter}" } } }));
    settle().await;
    assert_eq!(counters(&h.take("out")), [0]);
    h.advance(Duration::from_millis(400)).await;
    settle().await;
    assert!(
        h.take("out").is_empty(),
        "message 1 is due at 500ms, not before"
    );
    h.advance(Duration::from_millis(100)).await;
    settle().await;
    let late = h.take("out");
    assert_eq!(counters(&late), [1]);
    // ts is the manual clock's time when the message was built: 500ms after the start.
    assert_eq!(
        late[0].ts,
        (START_UNIX * 1_000_000_000 + 500_000_000) as i64
    );
}

#[tokio::test(start_paused = true)]
async fn a_ramp_from_10_to_100_over_10s_then_holds_100() {
    let mut h = harness(&json!({
        "rate": { "shape": "ramp", "from": 10, "to": 100, "over": "10s" },
        "template": { "data": { "n": "${counter}" } }
    }));
    h.advance(Duration::from_secs(1)).await;
    settle().await;
    // 10·1 + 90/20·1² = 14.5 messages due in the first second, plus the one at 0.
    let first = h.take("out").len();
    assert!((14..=16).contains(&first), "{first} in the first second");
    h.advance(Duration::from_secs(9)).await;
    settle().await;
    // (10 + 100) / 2 · 10 = 550 over the ramp.
    let ramp = first + h.take("out").len();
    assert!((549..=552).contains(&ramp), "{ramp} over the ramp");
    // Faster at its end than at its start: the last second of the ramp had ~95.
    h.advance(Duration::from_secs(2)).await;
    settle().await;
    let held = h.take("out").len();
    assert!(
        (199..=201).contains(&held),
        "{held} in two seconds at 100 tps"
    );
}

#[tokio::test(start_paused = true)]
async fn duration_stops_the_source() {
    let mut h = harness(&json!({
        "duration": "2s", "rate": { "tps": 10 }, "template": { "data": { "n": "${counter}" } }
    }));
    h.advance(Duration::from_secs(5)).await;
    settle().await;
    let all = h.take("out");
    // Due at 0.0, 0.1, …, 1.9 s: the one due at 2.0 s is past the end.
    assert_eq!(counters(&all), (0..20).collect::<Vec<_>>());
    h.advance(Duration::from_secs(5)).await;
    assert!(h.take("out").is_empty());
}

#[tokio::test(start_paused = true)]
async fn duration_stops_load_mode_too() {
    let mut h = Harness::builder(DynGearType::of::<Generate>().expect("registers"))
        .emit_capacity(1)
        .build(&json!({ "duration": "1s", "batch": 10 }))
        .expect("valid");
    h.start().expect("starts");
    settle().await;
    // Not read: the source waits for room, then the duration passes.
    h.advance(Duration::from_secs(2)).await;
    let before = read_all(&mut h).await.len();
    // Stopped: one batch in the channel, one that was waiting for room, nothing more.
    assert_eq!(before, 20);
    h.advance(Duration::from_secs(2)).await;
    assert!(h.take("out").is_empty());
}

fn random_template(seed: u64) -> serde_json::Value {
    json!({
        "count": 20,
        "seed": seed,
        "template": {
            "meta": { "sim.run": "run-${random_hex:4}" },
            "data": {
                "amount": "${random_int:1:1000000}",
                "fx": "${random_float:0:1}",
                "brand": "${random_choice:visa|mastercard|amex}",
                "rrn": "${random_digits:12}",
                "id": "${uuid}",
                "nested": { "list": ["${random_hex:8}", 7] }
            },
            "raw": "${random_hex:16}",
            "trace": "${random_hex:16}"
        }
    })
}

#[tokio::test(start_paused = true)]
async fn the_same_seed_gives_the_same_messages_and_another_seed_others() {
    let run = |seed| async move { read_all(&mut harness(&random_template(seed))).await };
    let a = run(7).await;
    let b = run(7).await;
    let c = run(8).await;
    assert_eq!(a.len(), 20);
    assert_eq!(a, b, "same seed, same messages");
    assert!(a.iter().all(|m| m.id.is_none()), "the engine assigns ids");
    for (x, y) in a.iter().zip(&c) {
        assert_ne!(x.data, y.data);
        assert_ne!(x.raw, y.raw);
    }
    // Messages of one run differ from each other.
    assert_ne!(a[0].data, a[1].data);
    let uuid = data(&a[0], "id").as_str().expect("text");
    assert_eq!(uuid.len(), 36);
    assert_eq!(&uuid[14..15], "4", "version 4: {uuid}");
    assert!(
        matches!(&uuid[19..20], "8" | "9" | "a" | "b"),
        "variant: {uuid}"
    );
    assert_eq!(a[0].trace.len(), 32);
    assert_eq!(a[0].raw.len(), 32);
    let run_id = a[0].meta.get("sim.run").expect("meta.sim.run");
    assert!(run_id.starts_with("run-") && run_id.len() == 12, "{run_id}");
    let rrn = data(&a[0], "rrn").as_str().expect("digits stay text");
    assert!(
        rrn.len() == 12 && rrn.bytes().all(|b| b.is_ascii_digit()),
        "{rrn}"
    );
    let brand = data(&a[0], "brand").as_str().expect("text");
    assert!(["visa", "mastercard", "amex"].contains(&brand), "{brand}");
    assert_eq!(
        data(&a[0], "nested.list").as_array().map(<[Value]>::len),
        Some(2)
    );
}

#[tokio::test(start_paused = true)]
async fn the_counter_counts_from_zero_or_from_its_start() {
    let mut h = harness(&json!({
        "count": 3,
        "template": {
            "data": { "n": "${counter}", "stan": "${counter:1000}", "ref": "TX-${counter}" },
            "meta": { "seq": "${counter}" }
        }
    }));
    let all = read_all(&mut h).await;
    assert_eq!(counters(&all), [0, 1, 2]);
    let stans: Vec<_> = all.iter().map(|m| data(m, "stan").as_u64()).collect();
    assert_eq!(stans, [Some(1000), Some(1001), Some(1002)]);
    assert_eq!(data(&all[2], "ref"), &Value::from("TX-2"));
    assert_eq!(all[1].meta.get("seq").map(|t| t.as_str()), Some("1"));
}

#[tokio::test(start_paused = true)]
async fn one_numeric_placeholder_alone_is_a_number_anything_else_is_kept_or_text() {
    let mut h = harness(&json!({
        "count": 1,
        "template": {
            "data": {
                "int": "${random_int:5:5}",
                "float": "${random_float:1.5:1.5}",
                "ms": "${now_ms}",
                "padded": " ${random_int:5:5}",
                "digits": "${random_digits:3}",
                "answer": 42,
                "ratio": 0.5,
                "ok": true,
                "none": null,
                "card.pan": "4111${random_digits:12}",
                "card.kind": "credit",
                "list": ["${counter}", "a", { "deep": "${random_int:1:1}" }],
                "price": "$$${random_int:3:3}"
            }
        }
    }));
    let msg = h.recv("out").await.expect("one message");
    assert_eq!(data(&msg, "int"), &Value::from(5i64));
    assert_eq!(data(&msg, "float"), &Value::Float(1.5));
    assert_eq!(data(&msg, "ms"), &Value::from(START_UNIX * 1000));
    assert_eq!(data(&msg, "padded"), &Value::from(" 5"));
    assert!(matches!(data(&msg, "digits"), Value::Text(_)));
    assert_eq!(data(&msg, "answer"), &Value::from(42u64));
    assert_eq!(data(&msg, "ratio"), &Value::Float(0.5));
    assert_eq!(data(&msg, "ok"), &Value::Bool(true));
    assert_eq!(data(&msg, "none"), &Value::Null);
    assert!(
        data(&msg, "card.pan")
            .as_str()
            .is_some_and(|p| p.len() == 16)
    );
    assert_eq!(data(&msg, "card.kind"), &Value::from("credit"));
    let list = data(&msg, "list").as_array().expect("a list");
    assert_eq!(list[0], Value::from(0u64));
    assert_eq!(list[1], Value::from("a"));
    assert_eq!(
        list[2].as_map().and_then(|m| m.get("deep")),
        Some(&Value::from(1i64))
    );
    assert_eq!(data(&msg, "price"), &Value::from("$3"));
}

#[tokio::test(start_paused = true)]
async fn now_follows_the_manual_clock() {
    let mut h = Harness::new::<Generate>(&json!({
        "count": 2,
        "rate": { "tps": 1 },
        "template": {
            "data": { "at": "${now}", "unix": "${now_unix}", "ms": "${now_ms}" },
            "meta": { "at": "${now_ms}" }
        }
    }))
    .expect("valid");
    h.clock().advance(Duration::from_secs(5));
    h.start().expect("starts");
    settle().await;
    let first = h.take("out");
    assert_eq!(first.len(), 1);
    assert_eq!(
        data(&first[0], "at"),
        &Value::from("2026-01-01T00:00:05.000Z")
    );
    assert_eq!(data(&first[0], "unix"), &Value::from(START_UNIX + 5));
    assert_eq!(data(&first[0], "ms"), &Value::from((START_UNIX + 5) * 1000));
    assert_eq!(first[0].ts, ((START_UNIX + 5) * 1_000_000_000) as i64);
    let meta = first[0].meta.get("at").map(|t| t.to_string());
    assert_eq!(meta, Some(((START_UNIX + 5) * 1000).to_string()));

    h.advance(Duration::from_secs(1)).await;
    settle().await;
    let second = h.take("out");
    assert_eq!(
        data(&second[0], "at"),
        &Value::from("2026-01-01T00:00:06.000Z")
    );
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(32))]

    #[test]
    fn random_int_stays_in_its_range(seed: u64, min in -1_000_000i64..1_000_000, span in 0i64..20) {
        let max = min + span;
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .start_paused(true)
            .build()
            .expect("a runtime");
        let values = rt.block_on(async {
            let mut h = harness(&json!({
                "count": 300,
                "seed": seed,
                "template": { "data": { "v": format!("${{random_int:{min}:{max}}}") } }
            }));
            settle().await;
            h.take("out")
                .iter()
                .map(|m| data(m, "v").as_i64().expect("an integer"))
                .collect::<Vec<_>>()
        });
        prop_assert_eq!(values.len(), 300);
        for v in &values {
            prop_assert!((min..=max).contains(v), "{} outside {}..={}", v, min, max);
        }
        // Both ends are reachable (inclusive range): with at most 20 values and 300 draws,
        // missing one is astronomically unlikely.
        prop_assert!(values.contains(&min) && values.contains(&max));
    }
}

#[tokio::test(start_paused = true)]
async fn load_mode_emits_count_messages_in_batches() {
    let mut h = Harness::builder(DynGearType::of::<Generate>().expect("registers"))
        .emit_capacity(1)
        .build(&json!({ "count": 1000, "template": { "data": { "n": "${counter}" } } }))
        .expect("valid");
    h.start().expect("starts");
    settle().await;
    // One emission fits in the engine: a whole batch of the default 64.
    assert_eq!(h.stats().messages_out, 64);
    let all = read_all(&mut h).await;
    assert_eq!(counters(&all), (0..1000).collect::<Vec<_>>());
    assert_eq!(h.stats().messages_out, 1000);
}

#[tokio::test(start_paused = true)]
async fn a_slow_consumer_slows_the_source_without_loss() {
    let mut h = Harness::builder(DynGearType::of::<Generate>().expect("registers"))
        .emit_capacity(1)
        .build(&json!({
            "count": 300, "batch": 16, "rate": { "tps": 100 },
            "template": { "data": { "n": "${counter}" } }
        }))
        .expect("valid");
    h.start().expect("starts");
    // Nobody reads for 5 s: 300 messages fell due, but the source waits for room.
    h.advance(Duration::from_secs(5)).await;
    settle().await;
    assert_eq!(
        h.stats().messages_out,
        1,
        "only one emission fits: the source waits"
    );
    // Reading catches up in batches, in order, nothing lost.
    let all = read_all(&mut h).await;
    assert_eq!(counters(&all), (0..300).collect::<Vec<_>>());
    assert_eq!(h.stats().messages_out, 300);
}

#[tokio::test(start_paused = true)]
async fn shutdown_stops_the_task() {
    let mut h =
        harness(&json!({ "rate": { "tps": 100 }, "template": { "data": { "n": "${counter}" } } }));
    h.advance(Duration::from_secs(1)).await;
    let started = tokio::time::Instant::now();
    h.shutdown().await;
    // The task ended on the cancellation, not by being aborted after the drain timeout. On
    // paused time (not the wall clock) that is exact: Tokio's clock moves only to the next
    // timer, so it stands still unless the drain waited for its timeout.
    assert!(
        started.elapsed() < Duration::from_millis(10),
        "drain took {:?}",
        started.elapsed()
    );
    let before = h.take("out").len();
    assert!((100..=101).contains(&before), "{before}");
    let out = h.stats().messages_out;
    h.advance(Duration::from_secs(5)).await;
    assert!(h.take("out").is_empty(), "nothing after drain");
    assert_eq!(h.stats().messages_out, out);
}

#[test]
fn config_errors_name_the_field_and_the_problem() {
    let err = refused(&json!({ "template": { "data": { "amount": "${amt}" } } }));
    assert!(
        err.contains("config.template.data.amount: unknown placeholder ${amt}"),
        "{err}"
    );

    let err =
        refused(&json!({ "template": { "data": { "card": { "pan": "${random_int:9:1}" } } } }));
    assert!(
        err.contains("config.template.data.card.pan: ${random_int:9:1}: MIN is greater than MAX"),
        "{err}"
    );

    let err = refused(&json!({ "template": { "data": { "x": "${random_float:-1e308:1e308}" } } }));
    assert!(err.contains("config.template.data.x: ${random_float:-1e308:1e308}: MIN, MAX and the span between them must be finite"), "{err}");

    let err = refused(&json!({ "template": { "meta": { "mti": "${random_hex:0}" } } }));
    assert!(
        err.contains("config.template.meta.mti: ${random_hex:0}: N must be"),
        "{err}"
    );

    let err = refused(&json!({ "template": { "raw": "${random_digits:x}" } }));
    assert!(err.contains("config.template.raw:"), "{err}");

    let err = refused(&json!({ "template": { "data": { "list": [1, "${now_iso}"] } } }));
    assert!(
        err.contains("config.template.data.list[1]: unknown placeholder ${now_iso}"),
        "{err}"
    );

    let err = refused(&json!({ "cuont": 5 }));
    assert!(err.contains("cuont"), "{err}");

    let err = refused(&json!({ "rate": { "tps": 0 } }));
    assert!(
        err.contains("config.rate.tps: must be more than 0"),
        "{err}"
    );

    let err = refused(&json!({ "rate": { "tps": -3.5 } }));
    assert!(
        err.contains("config.rate.tps: must be more than 0"),
        "{err}"
    );

    let err = refused(&json!({ "rate": {} }));
    assert!(
        err.contains("config.rate.tps: a constant rate needs tps"),
        "{err}"
    );

    let err = refused(&json!({ "rate": { "shape": "ramp", "from": 1, "to": 10 } }));
    assert!(err.contains("config.rate.over"), "{err}");

    let err = refused(
        &json!({ "rate": { "shape": "ramp", "tps": 5, "from": 1, "to": 10, "over": "1s" } }),
    );
    assert!(err.contains("config.rate.tps"), "{err}");

    let err = refused(&json!({ "rate": { "tps": 5, "to": 10 } }));
    assert!(err.contains("config.rate.to"), "{err}");

    let err = refused(&json!({ "batch": 0 }));
    assert!(err.contains("config.batch"), "{err}");

    let err = refused(&json!({ "template": { "data": { "a": { "b": 1 }, "a.b": 2 } } }));
    assert!(err.contains("given twice"), "{err}");

    let err = refused(&json!({ "template": { "data": { "x": "${open" } } }));
    assert!(
        err.contains("config.template.data.x: unclosed placeholder"),
        "{err}"
    );
}

/// The ISO 8583 authorisation template of the module docs.
fn authorisation(seed: u64, count: u64) -> serde_json::Value {
    json!({
        "count": count,
        "rate": { "tps": 1000 },
        "seed": seed,
        "template": {
            "meta": { "iso8583.mti": "0100" },
            "data": {
                "iso8583.field.2": "${pan:411111|550000|340000:16}",
                "iso8583.field.3": "000000",
                "iso8583.field.4": "${amount:100:250000}",
                "iso8583.field.7": "${transmission_datetime}",
                "iso8583.field.11": "${stan}",
                "iso8583.field.12": "${local_time}",
                "iso8583.field.13": "${local_date}",
                "iso8583.field.14": "${expiry:36:2}",
                "iso8583.field.22": "051",
                "iso8583.field.37": "${rrn}",
                "iso8583.field.41": "TERM${random_digits:4}",
                "iso8583.field.42": "MERCHANT0000042",
                "iso8583.field.49": "840"
            }
        }
    })
}

/// Whether `digits` passes the Luhn check (written here independently of the gear).
fn luhn_valid(digits: &str) -> bool {
    let mut sum = 0;
    for (i, c) in digits.chars().rev().enumerate() {
        let Some(mut d) = c.to_digit(10) else {
            return false;
        };
        if i % 2 == 1 {
            d *= 2;
            if d > 9 {
                d -= 9;
            }
        }
        sum += d;
    }
    !digits.is_empty() && sum % 10 == 0
}

fn iso(msg: &FluxMsg, n: u16) -> &str {
    data(msg, &format!("iso8583.field.{n}"))
        .as_str()
        .unwrap_or_else(|| panic!("field {n} is not text in {msg:?}"))
}

/// Generates `count` messages of `config` at its rate, advancing the clock by `by`.
async fn generated(config: &serde_json::Value, by: Duration) -> Vec<FluxMsg> {
    let mut h = harness(config);
    h.advance(by).await;
    let mut all = h.take("out");
    all.extend(read_all(&mut h).await);
    all
}

#[tokio::test(start_paused = true)]
async fn iso_authorisations_encode_with_spec87ascii_at_a_rate()
-> Result<(), Box<dyn std::error::Error>> {
    let mut h = harness(&authorisation(11, 1000));
    // 1,000 a second: message k is due at k ms, the first at once, so 0 to 500 by 500 ms.
    h.advance(Duration::from_millis(500)).await;
    settle().await;
    assert_eq!(h.take("out").len(), 501);
    h.advance(Duration::from_secs(1)).await;
    settle().await;
    assert_eq!(h.take("out").len(), 499);
    h.advance(Duration::from_secs(1)).await;
    settle().await;
    assert!(h.take("out").is_empty(), "count stops it");

    let msgs = generated(&authorisation(11, 1000), Duration::from_secs(1)).await;
    assert_eq!(msgs.len(), 1000);
    let mut codec = Harness::new::<gears::codec_iso8583::CodecIso8583>(
        &json!({ "spec": "builtin:spec87ascii", "direction": "encode" }),
    )?;
    codec.send_batch("in", msgs.clone())?;
    assert_eq!(codec.error_reasons(), Vec::<String>::new());
    let encoded = codec.take("out");
    assert_eq!(encoded.len(), 1000);
    let spec = iso8583::Spec::builtin("moov:spec87ascii").ok_or("no builtin spec")?;
    for msg in &encoded {
        let back = spec.unpack(&msg.raw)?;
        assert_eq!(back.mti(), "0100");
        let pan = back.get(2).and_then(|f| f.bytes()).ok_or("no PAN")?;
        assert!(luhn_valid(std::str::from_utf8(pan)?));
    }
    let mut stans = std::collections::BTreeSet::new();
    for msg in &msgs {
        let pan = iso(msg, 2);
        assert_eq!(pan.len(), 16);
        assert!(luhn_valid(pan), "{pan}");
        assert!(["411111", "550000", "340000"].contains(&&pan[..6]), "{pan}");
        let amount = iso(msg, 4);
        assert_eq!(amount.len(), 12);
        assert!(
            (100..=250_000).contains(&amount.parse::<u64>()?),
            "{amount}"
        );
        assert!(stans.insert(iso(msg, 11).to_owned()), "STANs are distinct");
        assert!(iso(msg, 37).starts_with("6001"), "2026, day 001");
        assert_eq!(iso(msg, 37).len(), 12);
        assert_eq!(iso(msg, 13), "0101");
    }
    assert_eq!(
        generated(&authorisation(11, 1000), Duration::from_secs(1)).await,
        msgs,
        "the same seed gives the same messages"
    );
    assert_ne!(
        generated(&authorisation(12, 1000), Duration::from_secs(1)).await,
        msgs
    );
    Ok(())
}

#[tokio::test(start_paused = true)]
async fn stan_counts_from_its_start_and_wraps_after_999999() {
    let msgs = generated(
        &json!({ "count": 4, "template": { "data": {
            "a": "${stan}", "b": "${stan:999998}", "r": "${rrn:99999999}"
        } } }),
        Duration::ZERO,
    )
    .await;
    let col = |key: &str| {
        msgs.iter()
            .map(|m| data(m, key).as_str().unwrap_or("?").to_owned())
            .collect::<Vec<_>>()
    };
    assert_eq!(col("a"), ["000001", "000002", "000003", "000004"]);
    assert_eq!(col("b"), ["999998", "999999", "000001", "000002"]);
    assert_eq!(
        col("r"),
        [
            "600199999999",
            "600100000000",
            "600100000001",
            "600100000002"
        ]
    );
}

#[tokio::test(start_paused = true)]
async fn dates_and_times_follow_the_manual_clock() {
    let config = json!({ "rate": { "tps": 1 }, "count": 2, "template": { "data": {
        "de7": "${transmission_datetime}", "de12": "${local_time}", "de13": "${local_date}",
        "rrn": "${rrn}"
    } } });
    let mut h = harness(&config);
    settle().await;
    let first = h.take("out");
    // 2026-01-01T00:00:00Z, then one second later plus 40 days, 1 h 2 min 2 s on the clock.
    h.clock().advance(Duration::from_secs(40 * 86_400 + 3_722));
    h.advance(Duration::from_secs(1)).await;
    settle().await;
    let second = h.take("out");
    let row = |m: &FluxMsg| {
        ["de7", "de12", "de13", "rrn"].map(|k| data(m, k).as_str().unwrap_or("?").to_owned())
    };
    assert_eq!(
        row(&first[0]),
        ["0101000000", "000000", "0101", "600100000000"]
    );
    assert_eq!(
        row(&second[0]),
        ["0210010203", "010203", "0210", "604100000001"]
    );
}

#[tokio::test(start_paused = true)]
async fn expiry_dates_are_in_the_future_unless_asked_for_expired_ones() {
    let months = |config: serde_json::Value| async move {
        generated(&config, Duration::ZERO)
            .await
            .iter()
            .map(|m| {
                let yymm = data(m, "exp").as_str().unwrap_or("?").to_owned();
                assert_eq!(yymm.len(), 4, "{yymm}");
                let yy: i32 = yymm[..2].parse().unwrap_or(-1);
                let mm: i32 = yymm[2..].parse().unwrap_or(-1);
                assert!((1..=12).contains(&mm), "{yymm}");
                // Months after January 2026 (the harness's start).
                (2000 + yy) * 12 + mm - 1 - (2026 * 12)
            })
            .collect::<Vec<i32>>()
    };
    let ahead =
        months(json!({ "count": 500, "template": { "data": { "exp": "${expiry}" } } })).await;
    assert!(ahead.iter().all(|m| (1..=36).contains(m)), "{ahead:?}");
    assert!(ahead.contains(&1) && ahead.contains(&36));
    let near =
        months(json!({ "count": 200, "template": { "data": { "exp": "${expiry:2}" } } })).await;
    assert!(near.iter().all(|m| (1..=2).contains(m)));
    let expired =
        months(json!({ "count": 200, "template": { "data": { "exp": "${expiry:12:100}" } } }))
            .await;
    assert!(
        expired.iter().all(|m| (-24..=-1).contains(m)),
        "{expired:?}"
    );
    let some = months(
        json!({ "count": 1000, "seed": 5, "template": { "data": { "exp": "${expiry:12:30}" } } }),
    )
    .await;
    let past = some.iter().filter(|m| **m < 0).count();
    // 30 % of 1,000 draws: far from 0 and from 1,000 whatever the seed.
    assert!((200..=400).contains(&past), "{past}");
}

#[test]
fn iso_placeholder_arguments_are_checked_and_named() {
    let cases = [
        ("${pan}", "needs at least one BIN"),
        ("${pan:4x1111}", "a BIN is one or more digits"),
        ("${pan:411111:20}", "LEN must be an integer 12..=19"),
        (
            "${pan:4111111111111111:16}",
            "leaves no room for the check digit",
        ),
        ("${stan:0}", "START must be an integer 1..=999999"),
        ("${rrn:-1}", "START must be an integer 0..=99999999"),
        ("${amount}", "needs a range in minor units"),
        ("${amount:10:1}", "MIN is greater than MAX"),
        ("${amount:0:9999999999999}", "two integers 0..=999999999999"),
        ("${expiry:0}", "MONTHS must be an integer 1..=600"),
        (
            "${expiry:12:150}",
            "EXPIRED_PERCENT must be a number 0..=100",
        ),
        ("${local_date:1}", "takes no argument"),
    ];
    for (placeholder, why) in cases {
        let err = refused(&json!({ "template": { "data": { "iso8583.field.2": placeholder } } }));
        assert!(
            err.contains("config.template.data.iso8583.field.2: ${") && err.contains(why),
            "{placeholder}: {err}"
        );
    }
    let err = refused(&json!({ "template": { "data": { "x": "${pann:4111}" } } }));
    assert!(
        err.contains("unknown placeholder ${pann:4111}") && err.contains("pan:BIN|BIN:LEN"),
        "{err}"
    );
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    /// Every PAN passes the Luhn check, has its length, and starts with one of its BINs.
    #[test]
    fn every_pan_passes_luhn(
        seed: u64,
        bins in prop::collection::vec("[0-9]{1,8}", 1..4),
        len in 12usize..=19,
    ) {
        let placeholder = format!("${{pan:{}:{len}}}", bins.join("|"));
        let config = json!({ "count": 64, "seed": seed, "template": { "data": { "pan": placeholder } } });
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .start_paused(true)
            .build()?;
        let msgs = rt.block_on(async { generated(&config, Duration::ZERO).await });
        prop_assert_eq!(msgs.len(), 64);
        for m in &msgs {
            let pan = data(m, "pan").as_str().unwrap_or("?");
            prop_assert_eq!(pan.len(), len);
            prop_assert!(luhn_valid(pan), "{}", pan);
            prop_assert!(bins.iter().any(|b| pan.starts_with(b.as_str())), "{} from {:?}", pan, bins);
        }
    }
}
