//! Errors as a user reads them: each cause once, and a gear refused at build when it asks for a
//! port it does not have.

use std::sync::atomic::{AtomicBool, Ordering};

use fluxmsg::FluxMsg;
use sdk::{
    Category, ConfigError, Context, Error, Gear, GearError, GearType, Harness, InPort, Manifest,
    OutPort, Outbox, Outcome, Ports,
};
use serde_json::json;

use crate::gears::Probe;

use testkit::chain;

/// Checks that `err` and its causes read `expect`, one level each, and that no level repeats
/// the text of the one below it.
#[track_caller]
fn check(err: &(dyn std::error::Error + 'static), expect: &[&str]) {
    let levels = testkit::causes(err);
    assert_eq!(levels, expect);
    for pair in levels.windows(2) {
        assert!(
            !pair[0].contains(&pair[1]),
            "{:?} repeats its cause {:?}",
            pair[0],
            pair[1]
        );
    }
}

static INIT_RAN: AtomicBool = AtomicBool::new(false);

/// A gear whose manifest declares `out` but whose constructor asks for `reply`.
#[derive(Debug)]
struct Forgetful {
    reply: OutPort,
}

#[derive(serde::Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
struct NoConfig {}

impl GearType for Forgetful {
    type Config = NoConfig;

    fn manifest() -> Manifest {
        Manifest::new("forgetful", Category::Logic)
            .input("in", "messages")
            .output("out", "messages")
    }

    fn new(_: NoConfig, ports: &Ports) -> Result<Forgetful, ConfigError> {
        Ok(Forgetful {
            reply: ports.resolve_output("reply")?,
        })
    }
}

impl Gear for Forgetful {
    fn init(&mut self, _: &mut Context) -> Result<(), GearError> {
        INIT_RAN.store(true, Ordering::SeqCst);
        Ok(())
    }

    fn process(
        &mut self,
        _: InPort,
        _: &mut FluxMsg,
        _: &mut Outbox<'_>,
    ) -> Result<Outcome, GearError> {
        Ok(Outcome::Emit(self.reply))
    }
}

#[test]
fn a_gear_asking_for_a_port_it_lacks_is_refused_at_build() {
    let err = Harness::new::<Forgetful>(&json!({})).expect_err("refused");
    let Error::Config {
        gear,
        gear_type,
        source,
    } = &err
    else {
        panic!("expected a configuration error, got {err:?}");
    };
    assert_eq!((gear.as_str(), gear_type.as_str()), ("gear", "forgetful"));
    let [problem] = source.problems() else {
        panic!("one problem expected: {source}");
    };
    assert_eq!(
        problem.reason,
        "no output port \"reply\" (it has: error, out)"
    );
    assert!(!INIT_RAN.load(Ordering::SeqCst), "nothing ran");
    check(
        &err,
        &[
            "gear \"gear\" (forgetful) has an invalid configuration",
            "config: no output port \"reply\" (it has: error, out)",
        ],
    );
}

#[test]
fn ports_resolve_by_name_or_name_what_they_have() {
    let ports = Ports::fixed(&Forgetful::manifest());
    assert_eq!(ports.resolve_output("error"), Ok(OutPort::ERROR));
    assert_eq!(ports.resolve_output("out").map(OutPort::index), Ok(1));
    assert_eq!(ports.resolve_input("in").map(InPort::index), Ok(0));
    let err = ports.resolve_input("reply").expect_err("no such input");
    assert_eq!(
        err.to_string(),
        "config: no input port \"reply\" (it has: in)"
    );
    let none = Ports::fixed(&Manifest::new("origin", Category::Io));
    let err = none.resolve_input("in").expect_err("no inputs at all");
    assert_eq!(
        err.to_string(),
        "config: no input port \"in\" (it has no input ports)"
    );
}

#[test]
fn a_nested_error_gives_each_cause_once() {
    // A field error inside a nested section: the gear, then the field.
    let err = Harness::new::<Probe>(&json!({ "rate": { "tps": 0 } })).expect_err("refused");
    let levels = testkit::causes(&err);
    assert_eq!(levels.len(), 2, "{levels:?}");
    assert_eq!(
        levels[0],
        "gear \"gear\" (probe) has an invalid configuration"
    );
    assert!(levels[1].starts_with("config.rate.tps: "), "{levels:?}");
    check(&err, &[&levels[0], &levels[1]]);

    // A failed hook: the gear and the stage, then what the gear said.
    let err = Harness::new::<Probe>(&json!({ "fail_init": true })).expect_err("refused");
    check(
        &err,
        &["gear \"gear\" failed to init", "refused: fail_init is set"],
    );
    assert_eq!(
        chain(&err),
        "gear \"gear\" failed to init: refused: fail_init is set"
    );
}
