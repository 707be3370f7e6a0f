//! Manifests, ports and configuration validation.

use sdk::{Category, Direction, DynGearType, HumanDuration, Manifest, PortName, Terminus};
use serde_json::json;

use crate::gears::Probe;

#[test]
fn the_schema_comes_from_the_config_struct() {
    let kind = DynGearType::of::<Probe>().expect("registers");
    let m = kind.manifest();
    let schema = &m.config_schema;
    assert_eq!(schema["additionalProperties"], json!(false));
    assert!(schema["properties"]["rate"].is_object());
    assert!(schema["properties"]["fail_init"].is_object());
    let text = serde_json::to_value(m).expect("serialises");
    assert_eq!(text["type"], "probe");
    assert_eq!(text["category"], "logic");
    assert_eq!(text["terminus"], "opaque");
    let ports: Vec<_> = m.ports.iter().map(|p| (p.name.as_str(), p.dir)).collect();
    assert_eq!(
        ports,
        [
            ("error", Direction::Output),
            ("in", Direction::Input),
            ("out", Direction::Output),
            ("copies", Direction::Output)
        ]
    );
}

#[test]
fn config_errors_name_the_field_and_the_reason() {
    let kind = DynGearType::of::<Probe>().expect("registers");
    let err = |c: serde_json::Value| kind.prepare(&c).expect_err("refused").to_string();
    assert_eq!(
        err(json!({ "rat": { "tps": 1 } })),
        "config: Additional properties are not allowed ('rat' was unexpected)"
    );
    assert_eq!(
        err(json!({ "rate": { "tps": "ten" } })),
        "config.rate.tps: \"ten\" is not of type \"integer\""
    );
    assert_eq!(
        err(json!({ "rate": { "tps": 0 } })),
        "config.rate.tps: 0 is less than the minimum of 1"
    );
    assert!(
        err(json!({ "rate": { "tps": 1, "every": "soon" } })).starts_with("config.rate.every: ")
    );
    assert!(
        err(json!({ "fail_init": 1, "rate": {} })).contains("; "),
        "every problem is listed"
    );
    assert!(
        kind.prepare(&serde_json::Value::Null).is_ok(),
        "no config is an empty config"
    );
}

#[test]
fn dynamic_ports_match_their_pattern() {
    let m = Manifest::new("switch", Category::Logic)
        .input("in", "")
        .dynamic_output("out_<name>", "")
        .terminus(Terminus::Io);
    assert!(m.find_port(Direction::Output, "out_visa").is_some());
    assert!(m.find_port(Direction::Output, "out_").is_none());
    assert!(m.find_port(Direction::Output, "out_a.b").is_none());
    assert!(m.find_port(Direction::Output, "error").is_some());
    assert!(m.find_port(Direction::Input, "out_visa").is_none());
    assert!(PortName::new("in_reply").is_ok());
    for bad in ["", "In", "a.b", "a b", &"x".repeat(65)] {
        assert!(PortName::new(bad).is_err(), "{bad:?}");
    }
}

#[test]
fn durations_read_as_humans_write_them() {
    let d: HumanDuration = serde_json::from_value(json!("1m 30s")).expect("parses");
    assert_eq!(d.get().as_secs(), 90);
    let e = serde_json::from_value::<HumanDuration>(json!("5 parsecs")).expect_err("refused");
    assert!(e.to_string().contains("write 250ms, 5s, 1m 30s"), "{e}");
    assert_eq!(HumanDuration::from_millis(1500).to_string(), "1s 500ms");
}

#[test]
fn type_names_follow_the_naming_rule() {
    #[derive(Debug)]
    struct Bad;
    #[derive(serde::Deserialize, schemars::JsonSchema)]
    struct NoConfig {}
    impl sdk::GearType for Bad {
        type Config = NoConfig;
        fn manifest() -> Manifest {
            Manifest::new("Bad.Name", Category::Logic)
        }
        fn new(_: NoConfig, _: &sdk::Ports) -> Result<Bad, sdk::ConfigError> {
            Ok(Bad)
        }
    }
    impl sdk::Gear for Bad {
        fn process(
            &mut self,
            _: sdk::InPort,
            _: &mut fluxmsg::FluxMsg,
            _: &mut sdk::Outbox<'_>,
        ) -> Result<sdk::Outcome, sdk::GearError> {
            Ok(sdk::Outcome::Consumed)
        }
    }
    let err = DynGearType::of::<Bad>().expect_err("refused");
    assert!(err.to_string().contains("type name"), "{err}");
}
