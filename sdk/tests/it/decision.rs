//! Decisions: a deciding gear writes `flux.decision` with `decide`, the harness shows it in
//! the metadata of what the gear sent (on `error` too), and `take_decision` moves it out the
//! way the engine does.

use fluxmsg::{FluxMsg, Hop, Text};
use sdk::{
    Category, DECISION_META, ERROR_REASON, Gear, GearError, GearType, Harness, InPort,
    MAX_DECISION_LEN, Manifest, OutPort, Outbox, Outcome, Ports, decide, take_decision,
};
use serde_json::json;

/// Sends `data.to` = `a` to `out_a` and anything else to `error`, saying why.
struct Chooser {
    out_a: OutPort,
    decision: Text,
}

#[derive(serde::Deserialize, schemars::JsonSchema)]
struct Config {}

impl GearType for Chooser {
    type Config = Config;
    fn manifest() -> Manifest {
        Manifest::new("chooser", Category::Logic)
            .input("in", "messages")
            .output("out_a", "chosen")
    }
    fn new(_: Config, ports: &Ports) -> Result<Chooser, sdk::ConfigError> {
        Ok(Chooser {
            out_a: ports.resolve_output("out_a")?,
            // Precomputed once: the hot path clones an inline text.
            decision: Text::from("rule 0 -> out_a"),
        })
    }
}

impl Gear for Chooser {
    fn process(
        &mut self,
        _: InPort,
        msg: &mut FluxMsg,
        _: &mut Outbox<'_>,
    ) -> Result<Outcome, GearError> {
        if msg.data.get("to").and_then(|v| v.as_str()) == Some("a") {
            decide(msg, self.decision.clone());
            Ok(Outcome::Emit(self.out_a))
        } else {
            decide(msg, "no_route");
            Err(GearError::new("no_route"))
        }
    }
}

fn decision(msg: &FluxMsg) -> Option<&str> {
    msg.meta.get(DECISION_META).map(Text::as_str)
}

#[track_caller]
fn check(to: &str, port: &str, want: &str) {
    let mut h = Harness::new::<Chooser>(&json!({})).expect("a valid gear");
    h.send("in", FluxMsg::builder().data("to", to).build())
        .expect("processed");
    let sent = h.take(port);
    assert_eq!(sent.len(), 1, "one message on {port}");
    assert_eq!(decision(&sent[0]), Some(want));
}

#[test]
fn the_decision_is_in_the_metadata_of_what_the_gear_sent() {
    assert_eq!(DECISION_META, "flux.decision");
    check("a", "out_a", "rule 0 -> out_a");
    check("b", "error", "no_route");
}

#[test]
fn an_error_keeps_the_decision_beside_its_reason() {
    let mut h = Harness::new::<Chooser>(&json!({})).expect("a valid gear");
    h.send("in", FluxMsg::new()).expect("processed");
    let e = &h.take("error")[0];
    assert_eq!(e.meta.get(ERROR_REASON).map(Text::as_str), Some("no_route"));
    assert_eq!(decision(e), Some("no_route"));
}

#[test]
fn decide_replaces_and_cuts_at_a_character_boundary() {
    assert_eq!(MAX_DECISION_LEN, 128);
    let mut msg = FluxMsg::new();
    decide(&mut msg, "first");
    decide(&mut msg, format!("{}€", "x".repeat(126)));
    assert_eq!(msg.meta.len(), 1, "one entry, replaced");
    assert_eq!(decision(&msg), Some("x".repeat(126).as_str()));
}

#[test]
fn take_decision_moves_it_into_a_hop_as_the_engine_does() {
    let mut msg = FluxMsg::builder().meta("iso8583.mti", "0100").build();
    assert_eq!(take_decision(&mut msg), None);
    assert_eq!(msg.meta.len(), 1, "untouched without a decision");

    decide(&mut msg, "default -> out_other");
    let hop = Hop::new(1u64, 2u64, 3);
    let hop = match take_decision(&mut msg) {
        Some(d) => hop.with_decision(d),
        None => hop,
    };
    msg.path.push(hop);
    assert_eq!(decision(&msg), None, "gone from the metadata");
    assert_eq!(msg.meta.len(), 1);
    assert_eq!(
        msg.path[0].decision.as_deref(),
        Some("default -> out_other")
    );

    // An entry written by hand, past the limit, is cut on the way out.
    msg.meta.insert(DECISION_META, Text::from("y".repeat(300)));
    assert_eq!(
        take_decision(&mut msg).as_deref().map(str::len),
        Some(MAX_DECISION_LEN)
    );
}
