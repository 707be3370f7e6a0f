//! Tests of the `filter` gear.

use fluxmsg::FluxMsg;
use gears::filter::Filter;
use sdk::Harness;
use serde_json::json;

fn amounts(amounts: &[i64]) -> Vec<FluxMsg> {
    amounts
        .iter()
        .map(|a| FluxMsg::builder().data("amount", *a).build())
        .collect()
}

#[test]
fn pass_if_keeps_matches_and_counts_the_rest() {
    let mut h =
        Harness::new::<Filter>(&json!({ "pass_if": { "field": "data.amount", "gte": 100 } }))
            .expect("valid");
    h.send_batch("in", amounts(&[5, 100, 150, 99]))
        .expect("processed");
    let kept: Vec<_> = h
        .take("out")
        .iter()
        .map(|m| m.data.get("amount").and_then(|v| v.as_i64()))
        .collect();
    assert_eq!(kept, [Some(100), Some(150)]);
    let stats = h.stats();
    assert_eq!(
        (
            stats.messages_in,
            stats.messages_out,
            stats.dropped("filtered")
        ),
        (4, 2, 2)
    );
}

#[test]
fn drop_if_drops_matches() {
    let mut h = Harness::new::<Filter>(&json!({ "drop_if": { "any": [
        { "field": "data.amount", "lt": 0 },
        { "field": "meta.test", "equals": true }
    ] } }))
    .expect("valid");
    h.send_batch("in", amounts(&[-1, 3])).expect("processed");
    h.send("in", FluxMsg::builder().meta("test", "true").build())
        .expect("processed");
    assert_eq!(h.take("out").len(), 1);
    assert_eq!(h.stats().dropped("filtered"), 2);
}

#[test]
fn an_expression_that_fails_costs_that_message_only() {
    let mut h =
        Harness::new::<Filter>(&json!({ "pass_if": { "expr": "data.amount / data.divisor > 1" } }))
            .expect("valid");
    h.send(
        "in",
        FluxMsg::builder()
            .data("amount", 10)
            .data("divisor", 0)
            .build(),
    )
    .expect("processed");
    h.send(
        "in",
        FluxMsg::builder()
            .data("amount", 10)
            .data("divisor", 2)
            .build(),
    )
    .expect("processed");
    assert_eq!(h.error_reasons(), ["expr_failed"]);
    assert_eq!(h.take("out").len(), 1);
}

#[test]
fn exactly_one_of_pass_if_and_drop_if() {
    for config in [
        json!({}),
        json!({ "pass_if": { "field": "id", "exists": true }, "drop_if": { "field": "id", "exists": true } }),
    ] {
        let e = testkit::chain(&Harness::new::<Filter>(&config).expect_err("refused"));
        assert!(e.contains("give exactly one of pass_if and drop_if"), "{e}");
    }
    let e = testkit::chain(
        &Harness::new::<Filter>(&json!({ "pass_if": { "field": "data.x", "gt": "ten" } }))
            .expect_err("refused"),
    );
    assert!(e.contains("config.pass_if.gt"), "{e}");
}

#[test]
fn filter_records_no_decision_and_passes_an_earlier_one_on() {
    let mut h =
        Harness::new::<Filter>(&json!({ "pass_if": { "field": "data.amount", "gte": 100 } }))
            .expect("valid");
    let mut decided = FluxMsg::builder().data("amount", 500).build();
    sdk::decide(&mut decided, "rule 0 -> out_big");
    h.send_batch(
        "in",
        [FluxMsg::builder().data("amount", 200).build(), decided],
    )
    .expect("processed");
    let out = h.take("out");
    let decisions: Vec<_> = out
        .iter()
        .map(|m| m.meta.get(sdk::DECISION_META).map(|d| d.as_str()))
        .collect();
    assert_eq!(decisions, [None, Some("rule 0 -> out_big")]);
}
