//! Planning an apply without running anything: the diff, every check, and stale plans.

use rack_lib::scenario::History;
use rack_lib::{Error, Graph, PortRef, Rack, Subscription};
use serde_json::json;

fn rack() -> Rack {
    Rack::builder("edge").build().expect("a rack")
}

fn tag(value: &str) -> serde_json::Value {
    json!({ "steps": [{ "set": "meta.tag", "value": value }] })
}

/// edit -> switch -> {visa, other}; switch's `out_other` is a guaranteed lane.
fn base() -> Graph {
    Graph::new()
        .gear("edit", "transform", tag("a"))
        .gear(
            "switch",
            "route",
            json!({ "rules": [{ "when": { "field": "data.pan", "prefix": "4" }, "to": "out_visa" }], "default": "out_other" }),
        )
        .gear("visa", "filter", json!({ "pass_if": { "field": "data.n", "gte": 0 } }))
        .gear("other", "transform", tag("b"))
        .wire("edit", "switch")
        .wire("switch.out_visa", "visa")
        .wire("switch.out_other", "other")
        .publish("switch.out_other")
}

#[track_caller]
fn check(rack: &Rack, graph: Graph, expect: &[(&str, &[&str])]) -> rack_lib::Plan {
    let plan = rack.plan(graph).expect("the graph plans");
    let got: Vec<(&str, Vec<String>)> = vec![
        ("started", plan.started().to_vec()),
        ("restarted", plan.restarted().to_vec()),
        ("stopped", plan.stopped().to_vec()),
        ("kept", plan.kept().to_vec()),
        ("repointed", plan.repointed().to_vec()),
    ];
    for (what, want) in expect {
        let (_, have) = got
            .iter()
            .find(|(name, _)| name == what)
            .expect("a known list");
        assert_eq!(have, want, "{what}");
    }
    plan
}

#[tokio::test]
async fn a_plan_from_empty_starts_every_gear_and_runs_none() {
    let rack = rack();
    let plan = check(
        &rack,
        base(),
        &[
            ("started", &["edit", "switch", "visa", "other"]),
            ("restarted", &[]),
            ("stopped", &[]),
            ("kept", &[]),
            ("repointed", &[]),
        ],
    );
    assert_eq!(
        plan.publishers_started(),
        [PortRef::new("switch", "out_other")]
    );
    assert!(plan.publishers_stopped().is_empty());
    assert!(!plan.is_empty());
    // Planning built the gears but started none of them.
    assert!(rack.stats().is_empty());
    assert!(rack.graph().gears.is_empty());
}

#[tokio::test]
async fn a_changed_graph_plans_keep_restart_stop_and_repoint() {
    let mut rack = rack();
    rack.apply(base()).await.expect("the base applies");

    // `other` changes configuration, `visa` goes, `late` arrives behind `other`.
    let mut next = Graph::new()
        .gear("edit", "transform", tag("a"))
        .gear(
            "switch",
            "route",
            json!({ "rules": [{ "when": { "field": "data.pan", "prefix": "4" }, "to": "out_visa" }], "default": "out_other" }),
        )
        .gear("other", "transform", tag("changed"))
        .gear("late", "transform", tag("c"))
        .wire("edit", "switch")
        .wire("switch.out_other", "other")
        .wire("other", "late");
    next.publish.push(PortRef::new("switch", "out_visa"));
    let plan = check(
        &rack,
        next.clone(),
        &[
            ("started", &["late"]),
            ("restarted", &["other"]),
            ("stopped", &["visa"]),
            ("kept", &["edit", "switch"]),
            // switch lost its wire to visa, feeds a restarted gear and publishes another port;
            // edit's wire to switch is unchanged and switch keeps running.
            ("repointed", &["switch"]),
        ],
    );
    assert_eq!(
        plan.publishers_started(),
        [PortRef::new("switch", "out_visa")]
    );
    assert_eq!(
        plan.publishers_stopped(),
        [PortRef::new("switch", "out_other")]
    );

    // Nothing changed by planning: the rack still runs the base graph.
    assert_eq!(rack.graph(), &base());
    assert_eq!(rack.stats().len(), 4);

    let change = rack.commit(plan).await.expect("the plan commits");
    assert_eq!(change.added, ["late"]);
    assert_eq!(change.restarted, ["other"]);
    assert_eq!(change.removed, ["visa"]);
    assert_eq!(rack.graph(), &next);

    // The same graph again plans nothing.
    let again = rack.plan(next).expect("plans");
    assert!(again.is_empty(), "{again:?}");
    assert_eq!(again.kept().len(), 4);
    rack.shutdown(std::time::Duration::from_secs(5)).await;
}

#[tokio::test]
async fn subscriptions_are_planned_as_lanes() {
    let mut rack = rack();
    let first = Graph::new()
        .gear("sink", "transform", tag("s"))
        .subscribe("core", "auth.out", "sink");
    let plan = rack.plan(first.clone()).expect("plans");
    let lane = Subscription {
        rack: "core".to_owned(),
        from: PortRef::new("auth", "out"),
        to: PortRef::new("sink", "in"),
        history: History::New,
    };
    assert_eq!(plan.subscriptions_started(), std::slice::from_ref(&lane));
    rack.commit(plan).await.expect("commits");

    let plan = rack
        .plan(Graph::new().gear("sink", "transform", tag("s")))
        .expect("plans");
    assert_eq!(plan.subscriptions_stopped(), [lane]);
    assert!(plan.subscriptions_started().is_empty());
    assert_eq!(plan.kept(), ["sink"]);
    rack.shutdown(std::time::Duration::from_secs(5)).await;
}

#[tokio::test]
async fn a_bad_graph_fails_at_plan_and_leaves_the_rack_alone() {
    let mut rack = rack();
    rack.apply(base()).await.expect("the base applies");
    let cases: Vec<(Graph, &str)> = vec![
        (base().gear("edit", "transform", tag("x")), "defined twice"),
        (base().gear("x", "no_such_type", json!({})), "no_such_type"),
        (base().wire("edit", "nowhere"), "nowhere"),
        (base().wire("edit.nope", "visa"), "nope"),
        (base().subscribe("bad rack", "a.out", "visa"), "bad rack"),
        (
            base().gear("x", "transform", json!({ "steps": [{ "sett": "meta.a" }] })),
            "steps",
        ),
    ];
    for (graph, needle) in cases {
        let err = rack.plan(graph).expect_err("the graph is refused");
        let text = testkit::chain(&err);
        assert!(text.contains(needle), "{needle:?} not in {text}");
    }
    assert_eq!(rack.graph(), &base());
    rack.shutdown(std::time::Duration::from_secs(5)).await;
}

#[tokio::test]
async fn a_plan_made_before_another_apply_is_stale() {
    let mut rack = rack();
    let early = rack.plan(base()).expect("plans");
    let other = Graph::new().gear("solo", "transform", tag("s"));
    rack.apply(other.clone()).await.expect("applies");
    let err = rack
        .commit(early)
        .await
        .expect_err("the early plan is stale");
    assert!(matches!(err, Error::StalePlan), "{err}");
    assert_eq!(rack.graph(), &other);
    rack.shutdown(std::time::Duration::from_secs(5)).await;
}
