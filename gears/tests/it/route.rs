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
