//! The per-message path: outcomes, errors, panics, counters.

use fluxmsg::Value;
use sdk::{ERROR_DETAIL, ERROR_REASON, Harness};
use serde_json::json;

use crate::gears::{Probe, msg};
use testkit::chain;

fn probe() -> Harness {
    Harness::new::<Probe>(&json!({})).expect("a valid probe")
}

#[test]
fn a_panic_costs_its_message_only() {
    let mut h = probe();
    h.send_batch("in", [msg("pass"), msg("panic"), msg("pass")])
        .expect("processed");
    let out = h.take("out");
    assert_eq!(out.len(), 2, "the messages around the panic went through");
    let errors = h.take("error");
    assert_eq!(errors.len(), 1);
    let e = &errors[0];
    assert_eq!(e.meta.get(ERROR_REASON).map(|t| t.as_str()), Some("panic"));
    assert_eq!(
        e.meta.get(ERROR_DETAIL).map(|t| t.as_str()),
        Some("probe told to panic")
    );
    assert_eq!(
        e.data.get("seen"),
        Some(&Value::from(2)),
        "the message as the gear left it"
    );
    // The gear keeps serving.
    h.send("in", msg("pass")).expect("processed");
    assert_eq!(h.take("out")[0].data.get("seen"), Some(&Value::from(4)));
    let stats = h.stats();
    assert_eq!(
        (stats.messages_in, stats.messages_out, stats.errors),
        (4, 4, 1)
    );
}

#[test]
fn an_error_goes_to_the_error_port_with_reason_and_detail() {
    let mut h = probe();
    h.send("in", msg("fail")).expect("processed");
    let e = &h.take("error")[0];
    assert_eq!(
        e.meta.get(ERROR_REASON).map(|t| t.as_str()),
        Some("told_to_fail")
    );
    assert_eq!(
        e.meta.get(ERROR_DETAIL).map(|t| t.as_str()),
        Some("data.do = fail")
    );
}

#[test]
fn drops_are_counted_by_reason_and_consumed_messages_are_not() {
    let mut h = probe();
    h.send_batch("in", [msg("drop"), msg("drop"), msg("keep"), msg("pass")])
        .expect("processed");
    let stats = h.stats();
    assert_eq!(stats.dropped("told_to_drop"), 2);
    assert_eq!(
        (stats.messages_in, stats.messages_out, stats.errors),
        (4, 1, 0)
    );
}

#[test]
fn the_outbox_carries_extra_messages_in_order() {
    let mut h = probe();
    h.send_batch("in", [msg("copy"), msg("pass")])
        .expect("processed");
    assert_eq!(h.take("copies").len(), 2);
    assert_eq!(h.take("out").len(), 2);
    assert_eq!(h.stats().messages_out, 4);
}

#[test]
fn emitting_on_a_port_the_gear_does_not_have_is_an_error() {
    let mut h = probe();
    h.send("in", msg("bad_port")).expect("processed");
    assert_eq!(h.error_reasons(), ["bad_port"]);
    h.send("in", msg("bad_outbox")).expect("processed");
    assert_eq!(h.error_reasons(), ["bad_port"], "through the outbox too");
    assert_eq!(h.take("out").len(), 1);
}

#[test]
fn an_unknown_input_port_is_refused_and_nothing_is_counted() {
    let mut h = probe();
    let err = h.send("in_reply", msg("pass")).expect_err("no such port");
    assert!(
        chain(&err).contains("no input port \"in_reply\" (it has: in)"),
        "{err}"
    );
    assert_eq!(h.stats().messages_in, 0);
}

#[test]
fn a_panic_in_init_is_an_error_not_a_crash() {
    let err = Harness::new::<crate::gears::Panicky>(&json!({})).expect_err("refused");
    assert_eq!(
        chain(&err),
        "gear \"gear\" failed to init: panic: init blew up"
    );
}
