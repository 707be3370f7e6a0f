//! The `filter` gear: passes or drops each message by a [`Condition`].
//!
//! Give `pass_if` (keep what matches) or `drop_if` (drop what matches). Dropped messages are
//! counted with the reason `filtered`; a condition that fails to evaluate (an expression error)
//! sends the message to `error`.
//!
//! The filter records no decision under [`sdk::DECISION_META`]: a message that passes leaves
//! on its one port `out`, so the hop the engine appends for it (filter, `out`) already says
//! `pass`, and a dropped message goes nowhere to carry one (it is counted as `filtered`).
//! Writing `pass` into every message's metadata would cost the hot path a write for no
//! information. A decision an earlier gear left in the metadata (which the engine would
//! have moved into that gear's hop) is passed on untouched.
//!
//! ```yaml
//! - name: big-only
//!   type: filter
//!   config:
//!     pass_if: { field: data.amount, gte: 1000 }
//! ```
//!
//! ```
//! # fn main() -> Result<(), sdk::Error> {
//! use fluxmsg::FluxMsg;
//! let mut h = sdk::Harness::new::<gears::filter::Filter>(&serde_json::json!({
//!     "drop_if": { "field": "meta.test", "equals": "true" }
//! }))?;
//! h.send("in", FluxMsg::builder().meta("test", "true").build())?;
//! h.send("in", FluxMsg::new())?;
//! assert_eq!(h.take("out").len(), 1);
//! assert_eq!(h.stats().dropped("filtered"), 1);
//! # Ok(()) }
//! ```

use fluxmsg::FluxMsg;
use schemars::JsonSchema;
use sdk::{
    Category, ConfigError, Gear, GearError, GearType, InPort, Manifest, OutPort, Outbox, Outcome,
    Ports, Terminus,
};
use serde::{Deserialize, Serialize};

use crate::condition::{Condition, Scratch, Test};
use crate::offload;
use crate::{Error, Factory};

pub(crate) fn register(factory: &mut Factory) -> Result<(), Error> {
    factory.register::<Filter>()
}

/// The configuration of a `filter` gear: exactly one of `pass_if` and `drop_if`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct Config {
    /// Keep the messages for which this holds; drop the rest.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pass_if: Option<Condition>,
    /// Drop the messages for which this holds; keep the rest.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub drop_if: Option<Condition>,
}

/// The `filter` gear (see the [module docs](self)).
#[derive(Debug)]
pub struct Filter {
    test: Test,
    keep_if: bool,
    out: OutPort,
    scratch: Scratch,
    /// The condition evaluates a Rhai expression: batches run off the async worker.
    scripted: bool,
}

impl GearType for Filter {
    type Config = Config;

    fn manifest() -> Manifest {
        Manifest::new("filter", Category::Logic)
            .summary("pass or drop messages by a condition")
            .input("in", "messages to test")
            .output("out", "messages that passed")
            .terminus(Terminus::Transparent)
    }

    fn new(config: Config, ports: &Ports) -> Result<Filter, ConfigError> {
        let (condition, keep_if, path) = match (&config.pass_if, &config.drop_if) {
            (Some(c), None) => (c, true, "pass_if"),
            (None, Some(c)) => (c, false, "drop_if"),
            _ => {
                return Err(ConfigError::field(
                    "",
                    "give exactly one of pass_if and drop_if",
                ));
            }
        };
        let test = condition.compile(path)?;
        Ok(Filter {
            scripted: test.has_expr(),
            test,
            keep_if,
            out: ports.resolve_output("out")?,
            scratch: Scratch::default(),
        })
    }
}

impl Gear for Filter {
    fn process(
        &mut self,
        _: InPort,
        msg: &mut FluxMsg,
        _: &mut Outbox<'_>,
    ) -> Result<Outcome, GearError> {
        self.check(msg)
    }

    /// With a Rhai expression in the condition, the whole batch in one hand-over to a thread
    /// that may block (`block_in_place`); otherwise message by message through `process`.
    fn process_batch(&mut self, _: InPort, batch: &mut Vec<FluxMsg>, out: &mut Outbox<'_>) -> bool {
        if !self.scripted {
            return false;
        }
        offload::each(batch, out, |msg, _| self.check(msg));
        true
    }
}

impl Filter {
    fn check(&mut self, msg: &FluxMsg) -> Result<Outcome, GearError> {
        if self.test.matches(msg, &mut self.scratch)? == self.keep_if {
            Ok(Outcome::Emit(self.out))
        } else {
            Ok(Outcome::Drop("filtered"))
        }
    }
}
