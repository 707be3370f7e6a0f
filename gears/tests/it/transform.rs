//! Tests of the `transform` gear.

use fluxmsg::{FluxMsg, Id, Value};
use gears::transform::Transform;
use sdk::Harness;
use serde_json::json;

fn run(steps: &serde_json::Value, msg: FluxMsg) -> (Vec<FluxMsg>, Vec<String>) {
    let mut h = Harness::new::<Transform>(&json!({ "steps": steps })).expect("valid config");
    h.send("in", msg).expect("processed");
    (h.take("out"), h.error_reasons())
}

fn payment() -> FluxMsg {
    FluxMsg::builder()
        .id(7u64)
        .meta("iso8583.mti", "0100")
        .data("amount", 1500)
        .data("pan", "4111111111111111")
        .data("secret", "x")
        .build()
}

#[test]
fn set_copy_move_delete_apply_in_order() {
    let (out, errors) = run(
        &json!([
            { "set": "data.currency", "value": "EUR" },
            { "set": "data.limits.daily", "value": { "max": 5000, "used": [1, 2] } },
            { "copy": "data.pan", "to": "meta.pan" },
            { "move": "data.amount", "to": "data.total.amount" },
            { "delete": "data.secret" },
            { "set": "ref_id", "value": 99 },
            { "set": "raw", "template": "${meta.iso8583.mti}|${data.total.amount}" }
        ]),
        payment(),
    );
    assert!(errors.is_empty(), "{errors:?}");
    let m = &out[0];
    assert_eq!(m.data.get("currency"), Some(&Value::from("EUR")));
    assert_eq!(
        m.data.get_path("limits.daily.max"),
        Some(&Value::from(5000))
    );
    assert_eq!(
        m.meta.get("pan").map(|t| t.as_str()),
        Some("4111111111111111")
    );
    assert_eq!(m.data.get("amount"), None);
    assert_eq!(m.data.get_path("total.amount"), Some(&Value::from(1500)));
    assert_eq!(m.data.get("secret"), None);
    assert_eq!(m.ref_id, Some(Id::U64(99)));
    assert_eq!(&m.raw[..], b"0100|1500");
}

#[test]
fn expressions_compute_values() {
    let (out, _) = run(
        &json!([
            { "set": "data.fee", "expr": "data.amount * 15 / 1000" },
            { "set": "data.big", "expr": "data.amount > 1000" },
            { "set": "meta.kind", "expr": "if meta[\"iso8583.mti\"] == \"0100\" { \"auth\" } else { \"other\" }" },
            { "set": "data.parts", "expr": "[1, \"two\", #{ three: 3.5 }]" }
        ]),
        payment(),
    );
    let m = &out[0];
    assert_eq!(m.data.get("fee"), Some(&Value::from(22)));
    assert_eq!(m.data.get("big"), Some(&Value::Bool(true)));
    assert_eq!(m.meta.get("kind").map(|t| t.as_str()), Some("auth"));
    assert_eq!(
        m.data.get_path("parts"),
        Some(&Value::Array(vec![
            Value::from(1),
            Value::from("two"),
            Value::Map([("three", Value::Float(3.5))].into_iter().collect())
        ]))
    );
}

#[test]
fn steps_apply_only_when_their_condition_holds() {
    let steps = json!([
        { "set": "meta.tier", "value": "gold", "when": { "field": "data.amount", "gte": 1000 } },
        { "set": "meta.tier", "value": "basic", "when": { "field": "meta.tier", "exists": false } }
    ]);
    let (out, _) = run(&steps, payment());
    assert_eq!(out[0].meta.get("tier").map(|t| t.as_str()), Some("gold"));
    let (out, _) = run(&steps, FluxMsg::builder().data("amount", 5).build());
    assert_eq!(out[0].meta.get("tier").map(|t| t.as_str()), Some("basic"));
}

#[test]
fn templates_read_the_clock() {
    let mut h = Harness::new::<Transform>(&json!({ "steps": [
        { "set": "meta.at", "template": "${now}" },
        { "set": "meta.ms", "template": "${now_ms}" }
    ]}))
    .expect("valid");
    h.send("in", FluxMsg::new()).expect("processed");
    let m = &h.take("out")[0];
    assert_eq!(
        m.meta.get("at").map(|t| t.as_str()),
        Some("2026-01-01T00:00:00.000Z")
    );
    assert_eq!(m.meta.get("ms").map(|t| t.as_str()), Some("1767225600000"));
}

#[test]
fn a_failing_step_sends_the_message_to_error_with_its_reason() {
    // data.pan is text, so data.pan.x cannot be created under it.
    let (out, errors) = run(&json!([{ "set": "data.pan.x", "value": 1 }]), payment());
    assert!(out.is_empty());
    assert_eq!(errors, ["path_conflict"]);
    let (_, errors) = run(&json!([{ "set": "flags", "value": "high" }]), payment());
    assert_eq!(errors, ["type_mismatch"]);
    let (_, errors) = run(
        &json!([{ "set": "data.x", "expr": "data.amount / 0" }]),
        payment(),
    );
    assert_eq!(errors, ["expr_failed"]);
    let (_, errors) = run(&json!([{ "set": "data.x", "expr": "loop {}" }]), payment());
    assert_eq!(errors, ["expr_failed"]);
}

#[test]
fn a_move_that_cannot_write_keeps_the_value() {
    let mut h =
        Harness::new::<Transform>(&json!({ "steps": [{ "move": "data.pan", "to": "flags" }] }))
            .expect("valid");
    h.send("in", payment()).expect("processed");
    let failed = h.take("error");
    assert_eq!(failed.len(), 1);
    assert_eq!(
        failed[0].data.get("pan"),
        payment().data.get("pan"),
        "nothing lost"
    );
}

#[test]
fn absent_sources_are_left_alone() {
    let (out, errors) = run(
        &json!([{ "copy": "data.nope", "to": "data.y" }, { "move": "meta.nope", "to": "data.z" }, { "delete": "data.none" }]),
        payment(),
    );
    assert!(errors.is_empty());
    assert_eq!(out[0].data, payment().data);
}

#[test]
fn bad_configurations_are_refused_with_the_field_path() {
    let refuse = |config: serde_json::Value| {
        testkit::chain(&Harness::new::<Transform>(&config).expect_err("refused"))
    };
    let e = refuse(json!({ "steps": [{ "set": "data.a" }] }));
    assert!(
        e.contains("config.steps[0]: `set` takes exactly one of value, template, expr"),
        "{e}"
    );
    let e = refuse(json!({ "steps": [{ "set": "data.a", "value": 1 }, { "copy": "data.a" }] }));
    assert!(e.contains("config.steps[1]: `copy` needs `to`"), "{e}");
    let e = refuse(json!({ "steps": [{ "set": "dta.a", "value": 1 }] }));
    assert!(
        e.contains("config.steps[0].set: unknown field \"dta.a\""),
        "{e}"
    );
    let e = refuse(json!({ "steps": [{ "set": "data.a", "expr": "1 +" }] }));
    assert!(
        e.contains("config.steps[0].expr: expression does not compile"),
        "{e}"
    );
    let e = refuse(json!({ "steps": [{ "set": "data.a", "template": "${data.}" }] }));
    assert!(e.contains("config.steps[0].template"), "{e}");
    let e = refuse(json!({ "steps": [{ "sett": "data.a" }] }));
    assert!(e.contains("config.steps[0]") && e.contains("sett"), "{e}");
    let e = refuse(json!({ "steps": "nope" }));
    assert!(
        e.contains("config.steps") && e.contains("not of type \"array\""),
        "{e}"
    );
    let e = refuse(json!({}));
    assert!(e.contains("\"steps\" is a required property"), "{e}");
}
