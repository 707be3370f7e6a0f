//! Tests of the `route` gear.

use fluxmsg::FluxMsg;
use gears::route::Route;
use sdk::Harness;
use serde_json::json;

fn pan(p: &str) -> FluxMsg {
    FluxMsg::builder().data("pan", p).build()
}

#[test]
fn first_matching_rule_wins_and_the_rest_go_to_default() {
    let mut h = Harness::new::<Route>(&json!({
        "rules": [
            { "when": { "field": "data.pan", "prefix": "4" }, "to": "out_visa" },
            { "when": { "field": "data.pan", "regex": "^5[1-5]" }, "to": "out_mc" },
            { "when": { "field": "data.pan", "prefix": "41" }, "to": "out_never" }
        ],
        "default": "out_other"
    }))
    .expect("valid");
    h.send_batch("in", [pan("4111"), pan("5500"), pan("6011"), pan("4100")])
        .expect("processed");
    assert_eq!(h.take("out_visa").len(), 2);
    assert_eq!(h.take("out_mc").len(), 1);
    assert_eq!(h.take("out_other").len(), 1);
    assert!(h.take("out_never").is_empty());
}

#[test]
fn no_match_without_default_is_no_route() {
    let mut h = Harness::new::<Route>(&json!({
        "rules": [{ "when": { "field": "data.pan", "prefix": "4" }, "to": "out_visa" }]
    }))
    .expect("valid");
    h.send("in", pan("9")).expect("processed");
    assert_eq!(h.error_reasons(), ["no_route"]);
    assert_eq!(h.stats().errors, 1);
}

#[test]
fn failover_takes_the_first_available() {
    let mut h = Harness::new::<Route>(&json!({
        "rules": [{ "when": { "field": "data.pan", "exists": true }, "to": { "failover": ["out_a", "out_b"] } }]
    }))
    .expect("valid");
    h.send("in", pan("1")).expect("processed");
    h.port_status("out_a").set_available(false);
    h.send("in", pan("2")).expect("processed");
    h.port_status("out_b").set_available(false);
    h.send("in", pan("3")).expect("processed");
    assert_eq!(h.take("out_a").len(), 1);
    assert_eq!(h.take("out_b").len(), 1);
    assert_eq!(h.error_reasons(), ["no_destination"]);
}

#[test]
fn round_robin_rotates_and_skips_unavailable_ports() {
    let mut h = Harness::new::<Route>(&json!({
        "rules": [{ "when": { "field": "data.pan", "exists": true }, "to": { "round_robin": ["out_a", "out_b", "out_c"] } }]
    }))
    .expect("valid");
    h.send_batch("in", (0..6).map(|_| pan("1")))
        .expect("processed");
    assert_eq!(
        (
            h.take("out_a").len(),
            h.take("out_b").len(),
            h.take("out_c").len()
        ),
        (2, 2, 2)
    );
    h.port_status("out_b").set_available(false);
    h.send_batch("in", (0..4).map(|_| pan("1")))
        .expect("processed");
    assert_eq!(
        (
            h.take("out_a").len(),
            h.take("out_b").len(),
            h.take("out_c").len()
        ),
        (2, 0, 2)
    );
}

#[test]
fn least_loaded_picks_the_emptiest_and_breaks_ties_in_turn() {
    let mut h = Harness::new::<Route>(&json!({
        "rules": [{ "when": { "field": "data.pan", "exists": true },
                    "to": { "failover": [{ "least_loaded": ["out_a", "out_b"] }, "out_backup"] } }]
    }))
    .expect("valid");
    h.port_status("out_a").set_load(10);
    h.port_status("out_b").set_load(3);
    h.send_batch("in", (0..3).map(|_| pan("1")))
        .expect("processed");
    assert_eq!((h.take("out_a").len(), h.take("out_b").len()), (0, 3));
    h.port_status("out_a").set_load(0);
    h.port_status("out_b").set_load(0);
    h.send_batch("in", (0..4).map(|_| pan("1")))
        .expect("processed");
    assert_eq!((h.take("out_a").len(), h.take("out_b").len()), (2, 2));
    h.port_status("out_a").set_available(false);
    h.port_status("out_b").set_available(false);
    h.send("in", pan("1")).expect("processed");
    assert_eq!(h.take("out_backup").len(), 1);
}

#[test]
fn the_ports_are_those_the_rules_name() {
    let kind = sdk::DynGearType::of::<Route>().expect("registers");
    let prepared = kind
        .prepare(&json!({
            "rules": [{ "when": { "field": "id", "exists": true }, "to": { "round_robin": ["out_a", "out_b"] } }],
            "default": "out_c"
        }))
        .expect("valid");
    let outputs: Vec<_> = prepared
        .ports()
        .outputs()
        .iter()
        .map(|p| p.as_str())
        .collect();
    assert_eq!(outputs, ["error", "out_a", "out_b", "out_c"]);
    let inputs: Vec<_> = prepared
        .ports()
        .inputs()
        .iter()
        .map(|p| p.as_str())
        .collect();
    assert_eq!(inputs, ["in"]);
}

#[test]
fn unreachable_port_names_are_refused() {
    let refuse = |to: serde_json::Value| {
        testkit::chain(
            &Harness::new::<Route>(
                &json!({ "rules": [{ "when": { "field": "id", "exists": true }, "to": to }] }),
            )
            .expect_err("refused"),
        )
    };
    let e = refuse(json!("visa"));
    assert!(
        e.contains("config.rules[0].to: \"visa\" is not an output port of route"),
        "{e}"
    );
    let e = refuse(json!({ "failover": ["out_a", "out.b"] }));
    assert!(
        e.contains("config.rules[0].to.failover[1]: \"out.b\""),
        "{e}"
    );
    let e = refuse(json!({ "failover": [] }));
    assert!(
        e.contains("config.rules[0].to.failover: an empty list"),
        "{e}"
    );
    let e = refuse(json!({ "fail_over": ["out_a"] }));
    assert!(e.contains("config.rules[0].to"), "{e}");
}

// Decisions: what the gear writes under `flux.decision` for the engine to record in the hop.

fn decisions(msgs: &[FluxMsg]) -> Vec<&str> {
    msgs.iter()
        .map(|m| {
            m.meta
                .get(sdk::DECISION_META)
                .map_or("(none)", |d| d.as_str())
        })
        .collect()
}

#[track_caller]
fn check_decisions(h: &mut Harness, port: &str, expect: &[&str]) {
    assert_eq!(decisions(&h.take(port)), expect, "decisions on {port}");
}

#[test]
fn decisions_name_the_rule_or_default_and_the_port() {
    let mut h = Harness::new::<Route>(&json!({
        "rules": [
            { "when": { "field": "data.pan", "prefix": "4" }, "to": "out_visa" },
            { "name": "mastercard", "when": { "field": "data.pan", "regex": "^5[1-5]" }, "to": "out_mc" }
        ],
        "default": "out_other"
    }))
    .expect("valid");
    h.send_batch("in", [pan("4111"), pan("5500"), pan("6011")])
        .expect("processed");
    check_decisions(&mut h, "out_visa", &["rule 0 -> out_visa"]);
    check_decisions(&mut h, "out_mc", &["mastercard -> out_mc"]);
    check_decisions(&mut h, "out_other", &["default -> out_other"]);
}

#[test]
fn a_decision_replaces_the_one_a_message_arrived_with() {
    let mut h = Harness::new::<Route>(&json!({
        "rules": [{ "when": { "field": "data.pan", "exists": true }, "to": "out_a" }]
    }))
    .expect("valid");
    let mut msg = pan("1");
    sdk::decide(&mut msg, "an earlier gear's decision");
    h.send("in", msg).expect("processed");
    check_decisions(&mut h, "out_a", &["rule 0 -> out_a"]);
}

#[test]
fn failures_record_no_route_and_no_destination() {
    let mut h = Harness::new::<Route>(&json!({
        "rules": [{ "when": { "field": "data.pan", "prefix": "4" },
                    "to": { "failover": ["out_a", { "round_robin": ["out_b", "out_c"] }] } }]
    }))
    .expect("valid");
    for port in ["out_a", "out_b", "out_c"] {
        h.port_status(port).set_available(false);
    }
    h.send_batch("in", [pan("4"), pan("9")]).expect("processed");
    assert_eq!(h.error_reasons(), ["no_destination", "no_route"]);
    // error_reasons took the messages: send again and look at them whole.
    h.send_batch("in", [pan("4"), pan("9")]).expect("processed");
    check_decisions(
        &mut h,
        "error",
        &[
            "rule 0 -> no_destination (out_a, out_b, out_c unavailable)",
            "no_route",
        ],
    );
}

#[test]
fn failover_records_what_it_passed_over() {
    let mut h = Harness::new::<Route>(&json!({
        "rules": [{ "when": { "field": "data.pan", "prefix": "4" },
                    "to": { "failover": ["out_visa_a", "out_visa_b"] } }]
    }))
    .expect("valid");
    h.send("in", pan("4")).expect("processed");
    check_decisions(&mut h, "out_visa_a", &["rule 0 -> out_visa_a"]);
    h.port_status("out_visa_a").set_available(false);
    h.send("in", pan("4")).expect("processed");
    check_decisions(
        &mut h,
        "out_visa_b",
        &["rule 0 -> out_visa_b (failover: out_visa_a unavailable)"],
    );
}

#[test]
fn nested_choices_record_their_detours_outermost_first() {
    let mut h = Harness::new::<Route>(&json!({
        "rules": [{ "name": "visa", "when": { "field": "data.pan", "exists": true },
                    "to": { "failover": [
                        { "least_loaded": ["out_a", "out_b"] },
                        { "round_robin": ["out_c", "out_d"] }
                    ] } }]
    }))
    .expect("valid");
    h.port_status("out_a").set_available(false);
    h.send("in", pan("1")).expect("processed");
    check_decisions(
        &mut h,
        "out_b",
        &["visa -> out_b (least_loaded: out_a unavailable)"],
    );
    h.port_status("out_b").set_available(false);
    h.port_status("out_c").set_available(false);
    h.send("in", pan("1")).expect("processed");
    check_decisions(
        &mut h,
        "out_d",
        &[
            "visa -> out_d (failover: least_loaded[out_a, out_b] unavailable; round_robin: out_c unavailable)",
        ],
    );
}

#[test]
fn round_robin_records_the_ports_it_skipped() {
    let mut h = Harness::new::<Route>(&json!({
        "rules": [{ "when": { "field": "data.pan", "exists": true },
                    "to": { "round_robin": ["out_a", "out_b", "out_c"] } }]
    }))
    .expect("valid");
    h.port_status("out_b").set_available(false);
    h.send_batch("in", (0..3).map(|_| pan("1")))
        .expect("processed");
    check_decisions(&mut h, "out_a", &["rule 0 -> out_a", "rule 0 -> out_a"]);
    check_decisions(
        &mut h,
        "out_c",
        &["rule 0 -> out_c (round_robin: out_b unavailable)"],
    );
}

#[test]
fn rules_with_expressions_record_decisions_too() {
    // A Rhai expression moves the batch off the async worker (a path of its own).
    let mut h = Harness::new::<Route>(&json!({
        "rules": [{ "name": "big", "when": { "expr": "data.amount > 100" }, "to": "out_big" }],
        "default": "out_small"
    }))
    .expect("valid");
    let amount = |a: i64| FluxMsg::builder().data("amount", a).build();
    h.send_batch("in", [amount(500), amount(5)])
        .expect("processed");
    check_decisions(&mut h, "out_big", &["big -> out_big"]);
    check_decisions(&mut h, "out_small", &["default -> out_small"]);
}

#[test]
fn long_decisions_are_cut_to_the_limit() {
    let name = "n".repeat(64);
    let port = format!("out_{}", "p".repeat(60));
    let mut h = Harness::new::<Route>(&json!({
        "rules": [{ "name": name, "when": { "field": "data.pan", "exists": true },
                    "to": { "failover": [port, "out_b"] } }]
    }))
    .expect("valid");
    h.port_status(&port).set_available(false);
    h.send("in", pan("1")).expect("processed");
    let out = h.take("out_b");
    let decision = decisions(&out)[0];
    assert_eq!(decision.len(), sdk::MAX_DECISION_LEN);
    assert!(decision.starts_with(&format!("{name} -> out_b (failover: out_ppp")));
}

#[test]
fn rule_names_are_checked() {
    let refuse = |names: &[&str]| {
        let rules: Vec<_> = names
            .iter()
            .map(|n| json!({ "name": n, "when": { "field": "id", "exists": true }, "to": "out_a" }))
            .collect();
        testkit::chain(&Harness::new::<Route>(&json!({ "rules": rules })).expect_err("refused"))
    };
    let e = refuse(&["visa", "mc", "visa"]);
    assert!(
        e.contains("config.rules[2].name: \"visa\" already names rules[0]"),
        "{e}"
    );
    let e = refuse(&[""]);
    assert!(e.contains("config.rules[0].name"), "{e}");
    let e = refuse(&["default"]);
    assert!(e.contains("config.rules[0].name: `default`"), "{e}");
    let long = "x".repeat(65);
    let e = refuse(&[long.as_str()]);
    assert!(e.contains("config.rules[0].name"), "{e}");
    let e = refuse(&["a\nb"]);
    assert!(e.contains("config.rules[0].name"), "{e}");
}
