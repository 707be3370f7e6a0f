//! Fixture gears that the tests of several crates register.

use std::time::Duration;

use fluxmsg::FluxMsg;
use sdk::{
    Category, ConfigError, Gear, GearError, GearType, HumanDuration, InPort, Manifest, OutPort,
    Outbox, Outcome, Ports,
};

/// `echo`: passes every message from `in` to `out` unchanged. With `flush_delay` it is a slow
/// sink, the input of back-pressure tests.
#[derive(Debug)]
pub struct Echo {
    out: OutPort,
    flush_delay: Option<Duration>,
}

/// The configuration of [`Echo`].
#[derive(Debug, serde::Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct EchoConfig {
    /// Blocks the gear's thread this long after every batch (`"2ms"`): a slow consumer.
    #[serde(default)]
    pub flush_delay: Option<HumanDuration>,
}

impl GearType for Echo {
    type Config = EchoConfig;

    fn manifest() -> Manifest {
        Manifest::new("echo", Category::Logic)
            .summary("passes every message on, unchanged")
            .input("in", "messages")
            .output("out", "the same messages")
    }

    fn new(config: EchoConfig, ports: &Ports) -> Result<Echo, ConfigError> {
        Ok(Echo {
            out: ports.resolve_output("out")?,
            flush_delay: config.flush_delay.map(HumanDuration::get),
        })
    }
}

impl Gear for Echo {
    fn process(
        &mut self,
        _: InPort,
        _: &mut FluxMsg,
        _: &mut Outbox<'_>,
    ) -> Result<Outcome, GearError> {
        Ok(Outcome::Emit(self.out))
    }

    fn flush(&mut self) {
        if let Some(delay) = self.flush_delay {
            // The input of the test, not a wait: a consumer slower than its source.
            std::thread::sleep(delay);
        }
    }
}
