//! Tests of the `sim_responder` gear.
//!
//! Delay tests run on paused Tokio time (`start_paused`): `Harness::advance` moves the manual
//! clock and Tokio time together, so due times are checked exactly and instantly.

use std::time::Duration;

use fluxmsg::{FluxMsg, Value};
use gears::codec_iso8583::CodecIso8583;
use gears::sim_responder::SimResponder;
use proptest::prelude::*;
use sdk::{Category, Direction, DynGearType, Harness, Terminus};
use serde_json::json;

/// A decoded request with these fields, from connection `conn`.
fn request(mti: &str, conn: &str, fields: &[(u16, &str)]) -> FluxMsg {
    let mut msg = FluxMsg::builder()
        .meta("iso8583.mti", mti)
        .meta("iso8583.mti_class", mti.get(..2).unwrap_or_default())
        .meta("conn.id", conn)
        .raw(&b"request bytes"[..])
        .build();
    for (n, v) in fields {
        msg.data
            .set_path(&format!("iso8583.field.{n}"), *v)
            .expect("a field path");
    }
    msg
}

/// A typical 0100 with a PAN and amount.
fn auth(conn: &str, pan: &str, amount: &str, stan: &str) -> FluxMsg {
    request(
        "0100",
        conn,
        &[
            (2, pan),
            (3, "000000"),
            (4, amount),
            (7, "0101000000"),
            (11, stan),
            (14, "2812"),
            (22, "051"),
            (37, "600100000001"),
            (41, "TERM0001"),
            (42, "MERCHANT0000042"),
            (49, "840"),
        ],
    )
}

fn field(msg: &FluxMsg, n: u16) -> Option<&str> {
    msg.data
        .get_path(&format!("iso8583.field.{n}"))
        .and_then(Value::as_str)
}

fn meta<'a>(msg: &'a FluxMsg, key: &str) -> Option<&'a str> {
    msg.meta.get(key).map(|t| t.as_str())
}

/// The field numbers a response carries, in order.
fn numbers(msg: &FluxMsg) -> Vec<u16> {
    let mut ns: Vec<u16> = msg
        .data
        .get_path("iso8583.field")
        .and_then(Value::as_map)
        .map(|m| m.keys().filter_map(|k| k.parse().ok()).collect())
        .unwrap_or_default();
    ns.sort_unstable();
    ns
}

fn harness(config: &serde_json::Value) -> Harness {
    Harness::new::<SimResponder>(config).expect("the configuration is valid")
}

/// Answers one request with no delay and returns the response.
#[track_caller]
fn check(config: &serde_json::Value, msg: FluxMsg) -> FluxMsg {
    let mut h = harness(config);
    h.send("in", msg).expect("processed");
    let mut out = h.take("out");
    assert_eq!(
        out.len(),
        1,
        "one response, errors: {:?}",
        h.error_reasons()
    );
    out.remove(0)
}

fn refused(config: &serde_json::Value) -> String {
    testkit::chain(&Harness::new::<SimResponder>(config).expect_err("refused"))
}

/// Lets the gear's task run until it waits, without moving time.
async fn settle() {
    for _ in 0..20 {
        tokio::task::yield_now().await;
    }
}

fn stans(msgs: &[FluxMsg]) -> Vec<&str> {
    msgs.iter().map(|m| field(m, 11).unwrap_or("?")).collect()
}

#[test]
fn the_manifest_has_one_input_and_one_output() -> Result<(), gears::Error> {
    let gear_type = DynGearType::of::<SimResponder>()?;
    let manifest = gear_type.manifest();
    assert_eq!(manifest.gear_type, "sim_responder");
    assert_eq!(manifest.category, Category::Logic);
    assert_eq!(manifest.terminus, Terminus::Opaque);
    let inputs: Vec<_> = manifest.fixed_ports(Direction::Input).collect();
    assert_eq!(inputs, ["in"]);
    let outputs: Vec<_> = manifest.fixed_ports(Direction::Output).collect();
    assert_eq!(outputs, ["error", "out"]);
    assert!(gears::Factory::builtin().get("sim_responder").is_some());
    Ok(())
}

#[test]
fn a_response_echoes_the_usual_fields_sets_de39_and_keeps_the_metadata() {
    let response = check(
        &json!({}),
        auth("conn-7", "4111111111111111", "000000001000", "000123"),
    );
    assert_eq!(meta(&response, "iso8583.mti"), Some("0110"));
    assert_eq!(meta(&response, "iso8583.mti_class"), Some("01"));
    assert_eq!(meta(&response, "conn.id"), Some("conn-7"));
    assert_eq!(meta(&response, "sim.rule"), None);
    assert!(response.raw.is_empty(), "the request's bytes are gone");
    // 14 (expiry) and 22 (entry mode) are not echoed by default.
    assert_eq!(numbers(&response), [2, 3, 4, 7, 11, 37, 39, 41, 42, 49]);
    assert_eq!(field(&response, 39), Some("00"));
    assert_eq!(field(&response, 11), Some("000123"));
    assert_eq!(field(&response, 2), Some("4111111111111111"));
}

#[test]
fn echo_takes_a_list_or_all() {
    let msg = || auth("c", "4111111111111111", "000000001000", "000001");
    let response = check(&json!({ "echo": [11, 41, 99] }), msg());
    assert_eq!(numbers(&response), [11, 39, 41]);
    let response = check(&json!({ "echo": "all" }), msg());
    assert_eq!(
        numbers(&response),
        [2, 3, 4, 7, 11, 14, 22, 37, 39, 41, 42, 49]
    );
    let response = check(&json!({ "echo": [] }), msg());
    assert_eq!(numbers(&response), [39]);
}

#[test]
fn each_request_class_gets_its_response_mti() {
    for (mti, answer) in [
        ("0100", "0110"),
        ("0200", "0210"),
        ("0800", "0810"),
        ("0420", "0430"),
        ("0400", "0410"),
        ("0120", "0130"),
        ("1100", "1110"),
    ] {
        let response = check(
            &json!({}),
            request(mti, "c", &[(11, "000001"), (70, "301")]),
        );
        assert_eq!(meta(&response, "iso8583.mti"), Some(answer), "{mti}");
        assert_eq!(
            meta(&response, "iso8583.mti_class"),
            Some(&answer[..2]),
            "{mti}"
        );
    }
    // A network management answer carries DE 70.
    let response = check(
        &json!({}),
        request("0800", "c", &[(11, "000001"), (70, "301")]),
    );
    assert_eq!(field(&response, 70), Some("301"));
}

#[test]
fn responses_unknown_classes_and_missing_mtis_go_to_error_counted() {
    let mut h = harness(&json!({}));
    for mti in ["0110", "0430", "0810", "0900", "0180", "01x0"] {
        h.send("in", request(mti, "c", &[(11, "000001")]))
            .expect("processed");
    }
    h.send("in", FluxMsg::builder().meta("conn.id", "c").build())
        .expect("processed");
    assert!(h.take("out").is_empty());
    let errors = h.take("error");
    let reasons: Vec<_> = errors
        .iter()
        .map(|m| meta(m, "error.reason").unwrap_or_default())
        .collect();
    assert_eq!(
        reasons,
        [
            "response_mti",
            "response_mti",
            "response_mti",
            "unknown_mti_class",
            "unknown_mti_function",
            "bad_mti",
            "no_mti"
        ]
    );
    let detail = meta(&errors[0], "error.detail").unwrap_or_default();
    assert!(detail.contains("0110 is a response"), "{detail}");
    // The refused request is left as it came, for whoever reads `error`.
    assert_eq!(meta(&errors[0], "iso8583.mti"), Some("0110"));
    assert_eq!(h.stats().errors, 7);
}

#[test]
fn the_first_matching_rule_wins_and_default_applies_under_it() {
    let config = json!({
        "default": { "38": "AUTH01", "meta.sim.issuer": "bank-a" },
        "rules": [
            { "name": "big", "when": { "field": "data.iso8583.field.4", "gt": 100000 },
              "set": { "data.iso8583.field.39": "51", "38": null } },
            { "name": "visa", "when": { "field": "data.iso8583.field.2", "prefix": "4" },
              "set": { "39": "05" } },
            { "name": "all-amex", "when": { "field": "data.iso8583.field.2", "prefix": "34" },
              "set": { "39": "14", "44": 7 } }
        ]
    });
    // Big and Visa: the first rule.
    let r = check(
        &config,
        auth("c", "4111111111111111", "000000500000", "000001"),
    );
    assert_eq!(
        (field(&r, 39), field(&r, 38), meta(&r, "sim.rule")),
        (Some("51"), None, Some("big"))
    );
    assert_eq!(meta(&r, "sim.issuer"), Some("bank-a"));
    // Small Visa: the second.
    let r = check(
        &config,
        auth("c", "4111111111111111", "000000000100", "000001"),
    );
    assert_eq!(
        (field(&r, 39), field(&r, 38), meta(&r, "sim.rule")),
        (Some("05"), Some("AUTH01"), Some("visa"))
    );
    // Amex: the third, with a non-text value kept as it is.
    let r = check(
        &config,
        auth("c", "340000000000009", "000000000100", "000001"),
    );
    assert_eq!(field(&r, 39), Some("14"));
    assert_eq!(
        r.data.get_path("iso8583.field.44").and_then(Value::as_u64),
        Some(7)
    );
    // Mastercard, small: no rule, the default only.
    let r = check(
        &config,
        auth("c", "5500000000000004", "000000000100", "000001"),
    );
    assert_eq!(
        (field(&r, 39), field(&r, 38), meta(&r, "sim.rule")),
        (Some("00"), Some("AUTH01"), None)
    );
}

#[test]
fn a_rule_without_when_catches_everything_and_unnamed_rules_get_their_index() {
    let config = json!({ "rules": [
        { "when": { "field": "meta.iso8583.mti", "equals": "0800" }, "set": { "39": "00" } },
        { "set": { "39": "96" } }
    ]});
    let r = check(
        &config,
        auth("c", "4111111111111111", "000000000100", "000001"),
    );
    assert_eq!(field(&r, 39), Some("96"));
    assert_eq!(meta(&r, "sim.rule"), Some("rules[1]"));
}

#[test]
fn a_drop_rule_never_answers_and_is_counted() {
    let mut h = harness(&json!({ "rules": [
        { "name": "timeout", "when": { "field": "data.iso8583.field.4", "equals": "000000009999" }, "drop": true }
    ]}));
    h.send(
        "in",
        auth("c", "4111111111111111", "000000009999", "000001"),
    )
    .expect("processed");
    h.send(
        "in",
        auth("c", "4111111111111111", "000000001000", "000002"),
    )
    .expect("processed");
    assert_eq!(stans(&h.take("out")), ["000002"]);
    assert!(h.take("error").is_empty());
    assert_eq!(h.stats().dropped("rule_drop"), 1);
}

#[test]
fn the_same_seed_gives_the_same_auth_codes() {
    let codes = |seed: u64| {
        let mut h = harness(&json!({
            "seed": seed,
            "default": { "38": "${random_digits:6}", "62": "R${counter:1}" }
        }));
        let msgs = (0..50).map(|i| {
            auth(
                "c",
                "4111111111111111",
                "000000001000",
                &format!("{:06}", i + 1),
            )
        });
        h.send_batch("in", msgs).expect("processed");
        h.take("out")
            .iter()
            .map(|m| {
                format!(
                    "{}/{}",
                    field(m, 38).unwrap_or("?"),
                    field(m, 62).unwrap_or("?")
                )
            })
            .collect::<Vec<_>>()
    };
    let a = codes(7);
    assert_eq!(a.len(), 50);
    assert_eq!(a, codes(7));
    assert_ne!(a, codes(8));
    assert!(a[0].ends_with("/R1") && a[49].ends_with("/R50"), "{a:?}");
    assert!(a.iter().all(|c| c[..6].bytes().all(|b| b.is_ascii_digit())));
}

#[tokio::test(start_paused = true)]
async fn a_later_message_with_a_shorter_delay_leaves_first() {
    let mut h = harness(&json!({
        "delay": "200ms",
        "rules": [ { "name": "fast", "when": { "field": "data.iso8583.field.2", "prefix": "5" }, "delay": "50ms" } ]
    }));
    h.start().expect("starts");
    h.send(
        "in",
        auth("a", "4111111111111111", "000000001000", "000001"),
    )
    .expect("processed");
    h.advance(Duration::from_millis(10)).await;
    h.send(
        "in",
        auth("b", "5500000000000004", "000000001000", "000002"),
    )
    .expect("processed");
    settle().await;
    assert!(h.take("out").is_empty(), "nothing is due yet");

    // At 59 ms nothing, at 60 ms the second one (sent at 10 ms, 50 ms delay).
    h.advance(Duration::from_millis(49)).await;
    settle().await;
    assert!(h.take("out").is_empty());
    h.advance(Duration::from_millis(1)).await;
    settle().await;
    let out = h.take("out");
    assert_eq!(stans(&out), ["000002"]);
    assert_eq!(meta(&out[0], "conn.id"), Some("b"));

    // The first at 200 ms.
    h.advance(Duration::from_millis(139)).await;
    settle().await;
    assert!(h.take("out").is_empty());
    h.advance(Duration::from_millis(1)).await;
    settle().await;
    let out = h.take("out");
    assert_eq!(stans(&out), ["000001"]);
    assert_eq!(meta(&out[0], "conn.id"), Some("a"));
    assert_eq!(field(&out[0], 39), Some("00"));
    assert_eq!(h.stats().messages_out, 2);
    h.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn requests_keep_flowing_while_responses_wait() {
    // One slow card among fast ones: the fast answers do not queue behind it.
    let mut h = harness(&json!({
        "rules": [ { "when": { "field": "data.iso8583.field.2", "prefix": "34" }, "delay": "10s" } ]
    }));
    h.start().expect("starts");
    h.send("in", auth("c", "340000000000009", "000000001000", "000001"))
        .expect("processed");
    for i in 2..=5 {
        h.send(
            "in",
            auth("c", "4111111111111111", "000000001000", &format!("{i:06}")),
        )
        .expect("processed");
    }
    assert_eq!(
        stans(&h.take("out")),
        ["000002", "000003", "000004", "000005"]
    );
    h.advance(Duration::from_secs(10)).await;
    settle().await;
    assert_eq!(stans(&h.take("out")), ["000001"]);
    h.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn jittered_delays_stay_within_bounds_and_follow_the_seed() {
    async fn run(seed: u64) -> Vec<String> {
        let mut h = harness(&json!({ "seed": seed, "delay": { "min": "10ms", "max": "100ms" } }));
        h.start().expect("starts");
        let msgs =
            (1..=40).map(|i| auth("c", "4111111111111111", "000000001000", &format!("{i:06}")));
        h.send_batch("in", msgs).expect("processed");
        h.advance(Duration::from_millis(9)).await;
        settle().await;
        assert!(h.take("out").is_empty(), "none before min");
        let mut order = Vec::new();
        for _ in 0..91 {
            h.advance(Duration::from_millis(1)).await;
            settle().await;
            order.extend(stans(&h.take("out")).into_iter().map(str::to_owned));
        }
        assert_eq!(order.len(), 40, "all by max");
        h.shutdown().await;
        order
    }
    let a = run(3).await;
    assert_eq!(a, run(3).await);
    assert_ne!(a, run(4).await);
    let in_order: Vec<String> = (1..=40).map(|i| format!("{i:06}")).collect();
    assert_ne!(a, in_order, "jitter reorders responses");
}

#[tokio::test(start_paused = true)]
async fn max_pending_refuses_beyond_the_bound_and_frees_up() {
    let mut h = harness(&json!({ "delay": "1s", "max_pending": 2 }));
    h.start().expect("starts");
    for i in 1..=3 {
        h.send(
            "in",
            auth("c", "4111111111111111", "000000001000", &format!("{i:06}")),
        )
        .expect("processed");
    }
    let errors = h.take("error");
    assert_eq!(stans(&errors), ["000003"]);
    assert_eq!(meta(&errors[0], "error.reason"), Some("pending_full"));
    // The refused request goes to `error` as it came.
    assert_eq!(meta(&errors[0], "iso8583.mti"), Some("0100"));
    assert_eq!(h.stats().errors, 1);
    h.advance(Duration::from_secs(1)).await;
    settle().await;
    assert_eq!(stans(&h.take("out")), ["000001", "000002"]);
    h.send(
        "in",
        auth("c", "4111111111111111", "000000001000", "000004"),
    )
    .expect("processed");
    assert!(h.take("error").is_empty(), "room again");
    h.shutdown().await;
    assert_eq!(
        h.stats().dropped("drained"),
        1,
        "the waiting one is counted"
    );
}

#[test]
fn bad_configurations_are_refused_naming_the_key() {
    let cases = [
        (
            json!({ "delay": { "min": "50ms", "max": "10ms" } }),
            "delay.min",
        ),
        (json!({ "delay": "soon" }), "delay"),
        (json!({ "echo": [1, 2] }), "echo"),
        (json!({ "echo": "some" }), "echo"),
        (json!({ "default": { "1": "x" } }), "default.1"),
        (json!({ "default": { "bogus": "x" } }), "default.bogus"),
        (
            json!({ "default": { "38": "${random_digits:0}" } }),
            "default.38",
        ),
        (
            json!({ "rules": [ { "set": { "38": "${nope}" } } ] }),
            "rules[0].set.38",
        ),
        (
            json!({ "rules": [ { "when": { "field": "data.x" } } ] }),
            "rules[0].when",
        ),
        (
            json!({ "rules": [ { "drop": true, "set": { "39": "05" } } ] }),
            "rules[0].drop",
        ),
        (
            json!({ "rules": [ { "delay": { "min": "2s", "max": "1s" } } ] }),
            "rules[0].delay.min",
        ),
        (json!({ "max_pending": 0 }), "max_pending"),
        (json!({ "seeds": 1 }), "seeds"),
    ];
    for (config, key) in cases {
        let err = refused(&config);
        assert!(err.contains(key), "{config}: {err}");
    }
}

#[test]
fn requests_decoded_by_the_codec_get_responses_it_encodes() -> Result<(), Box<dyn std::error::Error>>
{
    let spec = json!({ "spec": "builtin:spec87ascii" });
    let mut codec = Harness::new::<CodecIso8583>(&spec)?;
    let mut sim = harness(&json!({ "default": { "38": "${random_digits:6}" } }));
    let mut request = iso8583::Message::new("0100");
    for (n, v) in [
        (2, "4111111111111111"),
        (3, "000000"),
        (4, "000000012345"),
        (7, "0101120000"),
        (11, "000777"),
        (14, "2812"),
        (37, "600112000777"),
        (41, "TERM0001"),
        (49, "840"),
    ] {
        request.set(n, v);
    }
    let spec87 = iso8583::Spec::builtin("moov:spec87ascii").ok_or("no builtin spec")?;
    let bytes = spec87.pack_to_vec(&request)?;
    codec.send(
        "in",
        FluxMsg::builder().raw(bytes).meta("conn.id", "9").build(),
    )?;
    let decoded = codec.take("out").remove(0);
    sim.send("in", decoded)?;
    let response = sim.take("out").remove(0);
    codec.send("in", response)?;
    let encoded = codec.take("out").remove(0);
    assert_eq!(codec.error_reasons(), Vec::<String>::new());
    assert_eq!(meta(&encoded, "conn.id"), Some("9"));
    let answer = spec87.unpack(&encoded.raw)?;
    assert_eq!(answer.mti(), "0110");
    let text = |n: u16| {
        answer
            .get(n)
            .and_then(|f| f.bytes())
            .map(|b| String::from_utf8_lossy(b).into_owned())
    };
    assert_eq!(text(39).as_deref(), Some("00"));
    assert_eq!(text(11).as_deref(), Some("000777"));
    assert_eq!(text(14), None, "the expiry is not echoed");
    assert!(text(38).is_some_and(|c| c.len() == 6));
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(32))]

    /// Whatever the delays, responses leave in due order (arrival order among equals), and
    /// all of them leave.
    #[test]
    fn responses_leave_in_due_order(delays in prop::collection::vec(0u64..10, 1..60)) {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .start_paused(true)
            .build()?;
        let order = rt.block_on(async {
            let rules: Vec<_> = (0..10u64)
                .map(|d| json!({
                    "when": { "field": "data.iso8583.field.48", "equals": d.to_string() },
                    "delay": format!("{}ms", d * 10)
                }))
                .collect();
            let mut h = harness(&json!({ "rules": rules }));
            h.start().expect("starts");
            let mut order = Vec::new();
            for (i, d) in delays.iter().enumerate() {
                let stan = format!("{:06}", i + 1);
                let msg = request("0100", "c", &[(11, &stan), (48, &d.to_string())]);
                h.send("in", msg).expect("processed");
            }
            order.extend(stans(&h.take("out")).into_iter().map(str::to_owned));
            for _ in 0..20 {
                h.advance(Duration::from_millis(5)).await;
                settle().await;
                order.extend(stans(&h.take("out")).into_iter().map(str::to_owned));
            }
            h.shutdown().await;
            order
        });
        let mut expected: Vec<(u64, usize)> =
            delays.iter().enumerate().map(|(i, d)| (*d, i)).collect();
        expected.sort_unstable();
        let expected: Vec<String> = expected.iter().map(|(_, i)| format!("{:06}", i + 1)).collect();
        prop_assert_eq!(order, expected);
    }
}

#[test]
fn odd_request_shapes_get_a_bare_response_or_a_clear_error() {
    // `data.iso8583` that is not a map, or fields that are not a map: nothing to echo.
    for data in [
        json!("text"),
        json!({ "field": [1, 2, 3] }),
        json!({ "field": 7 }),
    ] {
        let mut msg = request("0100", "c", &[]);
        msg.data.insert(
            "iso8583",
            fluxmsg::json::value_from_json(&data).expect("a value"),
        );
        let r = check(&json!({}), msg);
        assert_eq!(numbers(&r), [39], "{data}");
    }
    // A big field is echoed whole.
    let big = "9".repeat(1 << 20);
    let r = check(
        &json!({ "echo": "all" }),
        request("0100", "c", &[(48, &big)]),
    );
    assert_eq!(field(&r, 48).map(str::len), Some(1 << 20));
    // A `set` that runs into a text field, and an expression that fails, go to `error`.
    let mut h = harness(&json!({ "default": { "data.iso8583.field.39.sub": "x" } }));
    h.send("in", request("0100", "c", &[(11, "000001")]))
        .expect("processed");
    assert_eq!(h.error_reasons(), ["path_conflict"]);
    let mut h =
        harness(&json!({ "rules": [ { "when": { "expr": "data.amount / data.divisor > 1" } } ] }));
    let mut msg = request("0100", "c", &[(11, "000001")]);
    msg.data.insert("amount", Value::from(10));
    msg.data.insert("divisor", Value::from(0));
    h.send("in", msg).expect("processed");
    assert!(h.take("out").is_empty());
    assert_eq!(h.error_reasons(), ["expr_failed"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_delayed_response_leaves_once_while_requests_keep_coming() {
    // The task emits on one worker while requests arrive on the other; the manual clock moves
    // in small steps. Every response must come out exactly once, on its own connection.
    let mut h = harness(&json!({ "seed": 9, "delay": { "min": "0ms", "max": "5ms" } }));
    h.start().expect("starts");
    let mut seen = std::collections::BTreeMap::new();
    let mut collect = |h: &mut Harness| {
        for m in h.take("out") {
            let stan = field(&m, 11).unwrap_or("?").to_owned();
            let conn = meta(&m, "conn.id").unwrap_or("?").to_owned();
            *seen.entry(stan.clone()).or_insert(0) += 1;
            let n: u32 = stan.parse().unwrap_or(0);
            assert_eq!(
                conn,
                format!("conn-{}", n % 7),
                "{stan} on its own connection"
            );
        }
    };
    let total = 2_000u32;
    for round in 0..20 {
        for i in 0..total / 20 {
            let n = round * (total / 20) + i + 1;
            let msg = auth(
                &format!("conn-{}", n % 7),
                "4111111111111111",
                "000000001000",
                &format!("{n:06}"),
            );
            h.send("in", msg).expect("processed");
        }
        h.advance(Duration::from_millis(1)).await;
        collect(&mut h);
    }
    h.advance(Duration::from_millis(10)).await;
    testkit::within("every response", async {
        while seen.len() < total as usize {
            match h.recv("out").await {
                Some(m) => {
                    let stan = field(&m, 11).unwrap_or("?").to_owned();
                    *seen.entry(stan).or_insert(0) += 1;
                }
                None => break,
            }
        }
    })
    .await;
    assert_eq!(seen.len(), total as usize);
    assert!(seen.values().all(|n| *n == 1), "no response twice");
    assert_eq!(h.stats().errors, 0);
    h.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn responses_caught_by_a_drain_are_counted_never_lost_silently() {
    // Room for one emission: the second batch waits for the engine when the gear drains, and
    // the third is still in the heap. Both are counted.
    let rules: Vec<_> = (1..=3)
        .map(|d| {
            json!({
                "when": { "field": "data.iso8583.field.11", "equals": format!("{d:06}") },
                "delay": format!("{}ms", d * 10)
            })
        })
        .collect();
    let gear_type = DynGearType::of::<SimResponder>().expect("a gear type");
    let mut h = Harness::builder(gear_type)
        .emit_capacity(1)
        .build(&json!({ "rules": rules }))
        .expect("valid");
    h.start().expect("starts");
    for n in 1..=3 {
        h.send("in", request("0100", "c", &[(11, &format!("{n:06}"))]))
            .expect("processed");
    }
    for _ in 0..3 {
        h.advance(Duration::from_millis(10)).await;
        settle().await;
    }
    h.shutdown().await;
    assert_eq!(stans(&h.take("out")), ["000001"]);
    assert_eq!(h.stats().dropped("drained"), 2);
}
