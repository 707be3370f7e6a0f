//! Errors as a user reads them: whichever layers (rack, factory, gear contract) wrap a cause,
//! the error and its `source()` chain give each cause once.

use rack_lib::scenario::Scenario;
use rack_lib::{Error, Graph, Rack};
use serde_json::json;

/// Checks the levels of `err`'s chain, top first, and that no level repeats another.
#[track_caller]
fn check(err: &Error, expect: &[&str]) {
    let causes = testkit::causes(err);
    assert_eq!(causes, expect);
    for (i, level) in causes.iter().enumerate() {
        for below in &causes[i + 1..] {
            assert!(
                !level.contains(below.as_str()),
                "{level:?} repeats its cause {below:?}"
            );
        }
    }
    assert_eq!(testkit::chain(err), expect.join(": "));
}

#[test]
fn a_bad_field_deep_in_a_gear_config_gives_each_cause_once() {
    let rack = Rack::builder("edge").build().expect("a rack");
    let config = json!({ "steps": [
        { "set": "data.a", "value": 1 },
        { "set": "data.b", "when": { "field": "data.a", "gte": "ten" }, "value": 2 },
    ] });
    let err = rack
        .plan(Graph::new().gear("edit", "transform", config))
        .expect_err("refused");
    assert!(
        matches!(
            &err,
            Error::Gear(gears::Error::Gear(sdk::Error::Config { gear, .. })) if gear == "edit"
        ),
        "{err:?}"
    );
    check(
        &err,
        &[
            "gear \"edit\" (transform) has an invalid configuration",
            "config.steps[1].when.gte: \"ten\" is not of type \"number\"",
        ],
    );
}

#[test]
fn a_scenario_error_is_its_problems_once() {
    // The same field in a scenario: validation places it, and the rack's error is the
    // scenario's, with nothing added.
    let yaml = "meta: { name: x, version: 1.0.0 }
gears:
  - name: edit
    type: transform
    config:
      steps:
        - { set: data.a, value: 1 }
        - { set: data.b, when: { field: data.a, gte: ten }, value: 2 }
";
    let err = Scenario::parse(yaml)
        .expect("parses")
        .validate(&gears::Factory::builtin())
        .expect_err("refused");
    let err = Error::from(err);
    check(
        &err,
        &[
            "8:54: gear `edit` (transform): config.steps[1].when.gte: \"ten\" is not of type \"number\"",
        ],
    );
}
