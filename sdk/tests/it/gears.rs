//! Small gears used by the tests.

use std::time::Duration;

use fluxmsg::{FluxMsg, Value};
use sdk::{
    Category, ConfigError, Context, Gear, GearError, GearType, HumanDuration, InPort, Manifest,
    OutPort, Outbox, Outcome, Ports,
};

/// A passive gear whose behaviour depends on `data.do`.
#[derive(Debug)]
pub(crate) struct Probe {
    out: OutPort,
    copies: OutPort,
    pub(crate) seen: u64,
}

#[derive(Debug, serde::Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
#[expect(dead_code, reason = "only its schema and its parsing are under test")]
pub(crate) struct ProbeConfig {
    /// A nested section, to check error paths.
    #[serde(default)]
    pub(crate) rate: Option<Rate>,
    #[serde(default)]
    pub(crate) fail_init: bool,
}

#[derive(Debug, serde::Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
#[expect(dead_code, reason = "only its schema and its parsing are under test")]
pub(crate) struct Rate {
    #[schemars(range(min = 1))]
    pub(crate) tps: u32,
    #[serde(default)]
    pub(crate) every: Option<HumanDuration>,
}

impl GearType for Probe {
    type Config = ProbeConfig;

    fn manifest() -> Manifest {
        Manifest::new("probe", Category::Logic)
            .summary("does what data.do says")
            .input("in", "commands")
            .output("out", "results")
            .output("copies", "extra copies")
    }

    fn new(config: ProbeConfig, ports: &Ports) -> Result<Probe, ConfigError> {
        Ok(Probe {
            out: ports.resolve_output("out")?,
            copies: ports.resolve_output("copies")?,
            seen: if config.fail_init { u64::MAX } else { 0 },
        })
    }
}

impl Gear for Probe {
    fn init(&mut self, _: &mut Context) -> Result<(), GearError> {
        if self.seen == u64::MAX {
            return Err(GearError::new("refused").with_detail("fail_init is set"));
        }
        Ok(())
    }

    fn process(
        &mut self,
        _: InPort,
        msg: &mut FluxMsg,
        out: &mut Outbox<'_>,
    ) -> Result<Outcome, GearError> {
        self.seen += 1;
        let action = msg
            .data
            .get("do")
            .and_then(Value::as_str)
            .unwrap_or("pass")
            .to_owned();
        msg.data.insert("seen", Value::from(self.seen));
        match action.as_str() {
            "panic" => panic!("probe told to panic"),
            "fail" => Err(GearError::new("told_to_fail").with_detail("data.do = fail")),
            "drop" => Ok(Outcome::Drop("told_to_drop")),
            "keep" => Ok(Outcome::Consumed),
            "copy" => {
                out.emit(self.copies, msg.clone());
                out.emit(self.copies, msg.clone());
                Ok(Outcome::Emit(self.out))
            }
            "bad_port" => Ok(Outcome::Emit(OutPort::ERROR).and_bad()),
            "bad_outbox" => {
                if let Outcome::Emit(bad) = Outcome::Consumed.and_bad() {
                    out.emit(bad, msg.clone());
                }
                Ok(Outcome::Emit(self.out))
            }
            _ => Ok(Outcome::Emit(self.out)),
        }
    }
}

trait BadPort {
    fn and_bad(self) -> Outcome;
}

impl BadPort for Outcome {
    /// An output port that does not belong to the gear: the port of another gear with more
    /// outputs, as a buggy gear could keep.
    fn and_bad(self) -> Outcome {
        let other = sdk::Ports::fixed(&Manifest::new("other", Category::Logic))
            .with(sdk::Direction::Output, "a")
            .and_then(|p| p.with(sdk::Direction::Output, "b"))
            .and_then(|p| p.with(sdk::Direction::Output, "c"))
            .and_then(|p| p.with(sdk::Direction::Output, "d"))
            .expect("valid names");
        Outcome::Emit(other.output("d").expect("declared"))
    }
}

pub(crate) fn msg(action: &str) -> FluxMsg {
    FluxMsg::builder().data("do", action).build()
}

/// An active gear: emits `count` messages, one per `every`, then waits for shutdown
/// (or ignores it when `stubborn`).
#[derive(Debug)]
pub(crate) struct Ticker {
    config: TickerConfig,
    out: OutPort,
}

#[derive(Debug, Clone, serde::Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct TickerConfig {
    pub(crate) count: u64,
    pub(crate) every: HumanDuration,
    #[serde(default)]
    pub(crate) stubborn: bool,
}

impl GearType for Ticker {
    type Config = TickerConfig;

    fn manifest() -> Manifest {
        Manifest::new("ticker", Category::Logic).output("out", "ticks")
    }

    fn new(config: TickerConfig, ports: &Ports) -> Result<Ticker, ConfigError> {
        Ok(Ticker {
            config,
            out: ports.resolve_output("out")?,
        })
    }
}

impl Gear for Ticker {
    fn start(&mut self, ctx: &mut Context) -> Result<(), GearError> {
        let (emitter, shutdown, out) = (ctx.emitter(), ctx.shutdown(), self.out);
        let config = self.config.clone();
        let clock = ctx.clock();
        ctx.spawn(async move {
            for i in 0..config.count {
                tokio::select! {
                    () = shutdown.fired(), if !config.stubborn => return,
                    () = tokio::time::sleep(config.every.get()) => {}
                }
                let msg = FluxMsg::builder()
                    .data("tick", i)
                    .ts(i64::try_from(clock.now().as_nanos()).unwrap_or(i64::MAX))
                    .build();
                if emitter.emit(out, msg).await.is_err() {
                    return;
                }
            }
            if config.stubborn {
                tokio::time::sleep(Duration::from_secs(3600)).await;
            }
        });
        Ok(())
    }

    fn process(
        &mut self,
        _: InPort,
        _: &mut FluxMsg,
        _: &mut Outbox<'_>,
    ) -> Result<Outcome, GearError> {
        Err(GearError::new("no_input"))
    }
}

/// A gear whose init panics.
#[derive(Debug)]
pub(crate) struct Panicky;

#[derive(Debug, serde::Deserialize, schemars::JsonSchema)]
pub(crate) struct NoConfig {}

impl GearType for Panicky {
    type Config = NoConfig;

    fn manifest() -> Manifest {
        Manifest::new("panicky", Category::Logic).input("in", "")
    }

    fn new(_: NoConfig, _: &Ports) -> Result<Panicky, ConfigError> {
        Ok(Panicky)
    }
}

impl Gear for Panicky {
    fn init(&mut self, _: &mut Context) -> Result<(), GearError> {
        panic!("init blew up")
    }

    fn process(
        &mut self,
        _: InPort,
        _: &mut FluxMsg,
        _: &mut Outbox<'_>,
    ) -> Result<Outcome, GearError> {
        Ok(Outcome::Consumed)
    }
}
