//! Tests of the factory: the catalog, registration, validation.

use fluxmsg::FluxMsg;
use gears::{Error, Factory};
use sdk::{
    Category, ConfigError, Gear, GearError, GearType, InPort, Manifest, Outbox, Outcome, Ports,
};
use serde_json::json;
use testkit::gears::Echo;

/// The catalog in name order; `wasm` is there with its feature.
const BUILTIN: &[&str] = &[
    "codec_iso8583",
    "conductor",
    "filter",
    "generate",
    "io_http",
    "io_iso8583",
    "io_tcp",
    "log",
    "route",
    "sim_responder",
    "transform",
    #[cfg(feature = "wasm")]
    "wasm",
];

#[test]
fn the_builtin_catalog_has_every_gear_with_a_manifest() {
    let factory = Factory::builtin();
    assert_eq!(factory.type_names().collect::<Vec<_>>(), BUILTIN);
    for m in factory.manifests() {
        assert!(!m.summary.is_empty(), "{} has a summary", m.gear_type);
        assert!(
            m.ports.iter().any(|p| p.name == "error"),
            "{} has an error port",
            m.gear_type
        );
        assert_eq!(
            m.config_schema["type"], "object",
            "{} has an object schema",
            m.gear_type
        );
        assert_eq!(
            m.config_schema["additionalProperties"],
            json!(false),
            "{} refuses unknown keys",
            m.gear_type
        );
    }
}

#[test]
fn an_unknown_type_lists_the_known_ones() {
    let err = Factory::builtin()
        .prepare("g1", "bento", &json!({}))
        .expect_err("unknown");
    assert_eq!(
        err.to_string(),
        format!(
            "unknown gear type \"bento\" (known: {})",
            BUILTIN.join(", ")
        )
    );
}

#[test]
fn config_errors_name_the_gear_the_field_and_the_reason() {
    let f = Factory::builtin();
    let err = f
        .prepare("audit", "log", &json!({ "every": "often" }))
        .expect_err("refused");
    // The gear, then the field: each once.
    assert_eq!(
        err.to_string(),
        "gear \"audit\" (log) has an invalid configuration"
    );
    let cause = std::error::Error::source(&err).map(ToString::to_string);
    assert_eq!(
        cause.as_deref(),
        Some("config.every: \"often\" is not of type \"integer\"")
    );
    let err = f
        .prepare("t", "transform", &json!({ "steps": [], "extra": 1 }))
        .expect_err("refused");
    match err {
        Error::Gear(sdk::Error::Config {
            gear,
            gear_type,
            source,
        }) => {
            assert!(
                source.to_string().contains("'extra' was unexpected"),
                "{source}"
            );
            assert_eq!((gear.as_str(), gear_type.as_str()), ("t", "transform"));
            assert_eq!(source.problems().len(), 1);
        }
        other => panic!("a config error, not {other:?}"),
    }
}

/// A pack that tries to replace a built-in gear.
#[derive(Debug)]
struct FakeLog;

#[derive(serde::Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
struct NoConfig {}

impl GearType for FakeLog {
    type Config = NoConfig;
    fn manifest() -> Manifest {
        Manifest::new("log", Category::Observability)
    }
    fn new(_: NoConfig, _: &Ports) -> Result<FakeLog, ConfigError> {
        Ok(FakeLog)
    }
}

impl Gear for FakeLog {
    fn process(
        &mut self,
        _: InPort,
        _: &mut FluxMsg,
        _: &mut Outbox<'_>,
    ) -> Result<Outcome, GearError> {
        Ok(Outcome::Consumed)
    }
}

#[test]
fn a_pack_registers_in_one_call_and_duplicates_are_refused() {
    // A gear from an external pack: testkit's `echo`.
    let mut f = Factory::builtin();
    f.register_pack(|f| f.register::<Echo>())
        .expect("registers");
    assert!(f.get("echo").is_some());
    let prepared = f.prepare("e", "echo", &json!({})).expect("valid");
    assert_eq!(prepared.gear_type(), "echo");

    let err = f.register::<Echo>().expect_err("taken");
    assert_eq!(err.to_string(), "gear type \"echo\" is already registered");

    // A pack that fails half-way registers nothing.
    let mut f = Factory::empty();
    let err = f
        .register_pack(|f| {
            f.register::<Echo>()?;
            f.register::<FakeLog>()?;
            f.register::<FakeLog>()
        })
        .expect_err("the duplicate fails the pack");
    assert!(
        matches!(err, Error::Duplicate(ref k) if k == "log"),
        "{err}"
    );
    assert_eq!(f.type_names().count(), 0);

    // A built-in cannot be silently overridden.
    let mut f = Factory::builtin();
    assert!(f.register::<FakeLog>().is_err());
}
