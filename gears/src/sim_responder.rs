//! The `sim_responder` gear: an authorizer simulator that answers decoded ISO 8583 requests.
//!
//! Each request on `in` (as `codec_iso8583` decodes it: fields under
//! `data.iso8583.field.<n>`, the MTI in `meta.iso8583.mti`) becomes its response: the response
//! MTI, the request's fields that a response echoes, DE 39 (`00` unless told otherwise), the
//! `default` fields, then the `set` fields of the first rule whose `when` holds. The metadata
//! stays (so `conn.id` takes the answer back to the connection the request came from), `raw`
//! is emptied, and the response leaves on `out` ready for `codec_iso8583` to encode, at once
//! or after a delay. A rule may also drop the request, to simulate an issuer that never
//! answers.
//!
//! ```yaml
//! - name: issuer
//!   type: sim_responder
//!   config:
//!     delay: 0s                      # or { min: 5ms, max: 40ms } (default 0s)
//!     echo: [2, 3, 4, 7, 11, 12, 13, 32, 37, 41, 42, 49]   # or `all`
//!     default:
//!       38: "${random_digits:6}"     # a key of digits is data.iso8583.field.<n>
//!     seed: 42
//!     max_pending: 100000
//!     rules:
//!       - name: timeout
//!         when: { field: data.iso8583.field.4, equals: "000000009999" }
//!         drop: true
//!       - name: insufficient-funds
//!         when: { field: data.iso8583.field.4, gt: 100000 }
//!         set: { data.iso8583.field.39: "51", 38: null }
//!       - name: slow-amex
//!         when: { field: data.iso8583.field.2, prefix: "34" }
//!         delay: { min: 100ms, max: 300ms }
//! ```
//!
//! # Ports
//!
//! - `in`: decoded ISO 8583 requests.
//! - `out`: the responses, decoded (send them through `codec_iso8583` to get bytes).
//! - `error`: requests the gear cannot answer, with `error.reason` (below), and requests
//!   refused because `max_pending` responses already wait.
//!
//! # Configuration
//!
//! - `delay` (default `0s`): how long a response waits before it leaves: a duration, or
//!   `{ min, max }` for a delay drawn uniformly between the two for each response. The Go
//!   reference waits 50 ms by default; here the default is no delay, since load tests want
//!   the issuer out of the way, and a delay is one line.
//! - `echo` (default `[2, 3, 4, 7, 11, 12, 13, 32, 37, 41, 42, 49, 70, 90]`): the request's
//!   fields the response carries, those present; or `all`. 70 (network management code) and
//!   90 (original data elements) make 0800 and 0420 answers complete.
//! - `default` (default none): fields every response gets, after the echo and DE 39.
//! - `rules` (default none): tried in order; the first whose `when` holds (a rule without
//!   `when` always does) applies its `set` after `default`, its `delay` instead of the gear's,
//!   or with `drop: true` drops the request (counted as dropped, reason `rule_drop`). The
//!   matched rule's `name` (default `rules[<i>]`) goes in the response's `sim.rule` metadata.
//!   `when` is a condition as `route` and `filter` write it, tested on the request as it
//!   arrived.
//! - `seed` (default 0): the seed of every random value (delays and placeholders). The same
//!   seed and the same requests in the same order give the same responses.
//! - `max_pending` (default 100,000): the most delayed responses that may wait at once; a
//!   request beyond it goes to `error` with the reason `pending_full`.
//!
//! The keys of `default` and `set` are `data.<path>`, `meta.<key>`, an envelope field, or a
//! number `n` for `data.iso8583.field.<n>`. A string value is a template with the `generate`
//! gear's placeholders (`${random_digits:6}` for an authorisation code, `${counter}`, `${now}`,
//! `${transmission_datetime}`; the counter is the number of responses built before this one);
//! `null` removes the field; any other value is set as it is.
//!
//! # Errors
//!
//! A request goes to `error` with `error.reason`:
//!
//! - `no_mti`: no `meta.iso8583.mti`; `bad_mti`: not four digits;
//! - `response_mti`: the MTI is a response already (an odd function digit: 0110, 0430);
//! - `unknown_mti_class`: a class digit other than 1 to 8; `unknown_mti_function`: a
//!   function digit of 8 or 9;
//! - `pending_full`: `max_pending` responses already wait;
//! - a rule's expression that fails, as `route` reports it.
//!
//! Responses still waiting when the gear drains are counted as dropped (`drained`).
//!
//! ```
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use fluxmsg::FluxMsg;
//! use gears::sim_responder::SimResponder;
//! use sdk::Harness;
//!
//! let mut h = Harness::new::<SimResponder>(&serde_json::json!({
//!     "rules": [
//!         { "name": "big", "when": { "field": "data.iso8583.field.4", "gt": 100000 }, "set": { "39": "51" } }
//!     ]
//! }))?;
//! let request = FluxMsg::builder()
//!     .meta("iso8583.mti", "0100")
//!     .meta("conn.id", "7")
//!     .data_path("iso8583.field.2", "4111111111111111")?
//!     .data_path("iso8583.field.4", "000000250000")?
//!     .data_path("iso8583.field.11", "000042")?
//!     .build();
//! h.send("in", request)?;
//! let response = h.take("out").remove(0);
//! assert_eq!(response.meta.get("iso8583.mti").map(|t| t.as_str()), Some("0110"));
//! assert_eq!(response.meta.get("conn.id").map(|t| t.as_str()), Some("7"));
//! let field = |n: &str| response.data.get_path(&format!("iso8583.field.{n}")).and_then(|v| v.as_str());
//! assert_eq!(field("39"), Some("51"));
//! assert_eq!(field("11"), Some("000042"));
//!
//! // A response is not a request.
//! h.send("in", FluxMsg::builder().meta("iso8583.mti", "0110").build())?;
//! assert_eq!(h.error_reasons(), ["response_mti"]);
//! # Ok(()) }
//! ```

mod mti;
mod pending;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use fluxmsg::{FluxMsg, Map, Text, Value};
use rand::rngs::ChaCha8Rng;
use rand::{RngExt, SeedableRng};
use schemars::JsonSchema;
use sdk::{
    Category, Clock, ConfigError, Context, Gear, GearError, GearType, HumanDuration, InPort,
    Manifest, OutPort, Outbox, Outcome, Ports, Terminus,
};
use serde::Deserialize;

use self::pending::Pending;
use crate::condition::{Condition, Scratch, Test};
use crate::field::Field;
use crate::generate::{Cx, ValueTemplate};
use crate::{Error, Factory};

pub(crate) fn register(factory: &mut Factory) -> Result<(), Error> {
    factory.register::<SimResponder>()
}

/// The fields a response echoes when `echo` is not given.
pub const DEFAULT_ECHO: [u16; 14] = [2, 3, 4, 7, 11, 12, 13, 32, 37, 41, 42, 49, 70, 90];

/// The metadata key that names the rule a response matched.
pub const RULE_META: &str = "sim.rule";

/// The `default` of `max_pending`.
const DEFAULT_MAX_PENDING: u32 = 100_000;

/// The configuration of the `sim_responder` gear (see the [module docs](self)).
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct Config {
    /// How long a response waits (default none).
    pub delay: Delay,
    /// The request's fields a response carries.
    pub echo: Echo,
    /// Fields every response gets: key to value.
    pub default: BTreeMap<String, serde_json::Value>,
    /// Ordered rules: the first that matches applies.
    pub rules: Vec<Rule>,
    /// The seed of every random value (default 0).
    pub seed: u64,
    /// The most delayed responses waiting at once (default 100,000).
    pub max_pending: u32,
}

impl Default for Config {
    fn default() -> Config {
        Config {
            delay: Delay::default(),
            echo: Echo::default(),
            default: BTreeMap::new(),
            rules: Vec::new(),
            seed: 0,
            max_pending: DEFAULT_MAX_PENDING,
        }
    }
}

/// A delay: a duration (`50ms`), or `{ min, max }` drawn uniformly for each response.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(untagged)]
#[non_exhaustive]
pub enum Delay {
    /// Always this long.
    Fixed(HumanDuration),
    /// Between `min` and `max`, both included.
    Jitter(Jitter),
}

impl Default for Delay {
    fn default() -> Delay {
        Delay::Fixed(HumanDuration::default())
    }
}

/// The bounds of a drawn delay.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct Jitter {
    /// The shortest delay.
    pub min: HumanDuration,
    /// The longest delay.
    pub max: HumanDuration,
}

/// Which request fields a response echoes: a list of field numbers, or `all`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(untagged)]
#[non_exhaustive]
pub enum Echo {
    /// These fields, those the request has.
    Fields(Vec<u16>),
    /// Every field of the request.
    All(EchoAll),
}

impl Default for Echo {
    fn default() -> Echo {
        Echo::Fields(DEFAULT_ECHO.to_vec())
    }
}

/// The word `all`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum EchoAll {
    /// Every field.
    All,
}

/// One rule: when its condition holds, what the response gets.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct Rule {
    /// The rule's name, for `sim.rule` and the logs (default `rules[<i>]`).
    #[serde(default)]
    pub name: Option<String>,
    /// The condition (default: always).
    #[serde(default)]
    pub when: Option<Condition>,
    /// Fields the response gets, after `default`.
    #[serde(default)]
    pub set: BTreeMap<String, serde_json::Value>,
    /// The delay of the responses this rule matches, instead of the gear's.
    #[serde(default)]
    pub delay: Option<Delay>,
    /// Never answer (simulates a timeout); the request is dropped and counted.
    #[serde(default)]
    pub drop: bool,
}

/// A delay, checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Wait {
    Fixed(Duration),
    Between(Duration, Duration),
}

impl Wait {
    fn compile(delay: Delay, path: &str) -> Result<Wait, ConfigError> {
        match delay {
            Delay::Fixed(d) => Ok(Wait::Fixed(d.get())),
            Delay::Jitter(Jitter { min, max }) if min <= max => {
                Ok(Wait::Between(min.get(), max.get()))
            }
            Delay::Jitter(Jitter { min, max }) => Err(ConfigError::field(
                format!("{path}.min"),
                format_args!("min ({min}) is longer than max ({max})"),
            )),
        }
    }

    fn draw(self, rng: &mut ChaCha8Rng) -> Duration {
        match self {
            Wait::Fixed(d) => d,
            Wait::Between(min, max) if min == max => min,
            Wait::Between(min, max) => {
                let nanos = |d: Duration| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
                Duration::from_nanos(rng.random_range(nanos(min)..=nanos(max)))
            }
        }
    }
}

/// What one key of `default` or `set` does.
#[derive(Debug, Clone)]
enum Assign {
    Const(Value),
    Template(ValueTemplate),
    Remove,
}

/// One key of `default` or `set`, compiled.
#[derive(Debug, Clone)]
struct Setter {
    field: Field,
    assign: Assign,
}

/// A rule, compiled.
#[derive(Debug, Clone)]
struct Compiled {
    name: Text,
    when: Option<Test>,
    set: Vec<Setter>,
    wait: Option<Wait>,
    drop: bool,
}

/// The `sim_responder` gear (see the [module docs](self)).
#[derive(Debug)]
pub struct SimResponder {
    echo: Option<Vec<Text>>,
    defaults: Vec<Setter>,
    rules: Vec<Compiled>,
    wait: Wait,
    rng: ChaCha8Rng,
    /// Responses built so far: the `${counter}` of the next.
    built: u64,
    scratch: Scratch,
    pending: Arc<Pending>,
    clock: Option<Arc<dyn Clock>>,
    name: String,
    out: OutPort,
}

impl GearType for SimResponder {
    type Config = Config;

    fn manifest() -> Manifest {
        Manifest::new("sim_responder", Category::Logic)
            .summary("an authorizer simulator: answers ISO 8583 requests by ordered rules, with delays and drops")
            .input("in", "decoded ISO 8583 requests")
            .output("out", "the responses, decoded, ready to encode")
            .terminus(Terminus::Opaque)
    }

    fn new(config: Config, ports: &Ports) -> Result<SimResponder, ConfigError> {
        let echo = match &config.echo {
            Echo::All(_) => None,
            Echo::Fields(list) => {
                if let Some(bad) = list.iter().find(|n| **n < 2) {
                    return Err(ConfigError::field(
                        "echo",
                        format_args!("{bad} is not a data field: fields are numbered from 2"),
                    ));
                }
                Some(list.iter().map(|n| Text::from(n.to_string())).collect())
            }
        };
        let rules = config
            .rules
            .iter()
            .enumerate()
            .map(|(i, rule)| compile_rule(rule, i))
            .collect::<Result<Vec<_>, _>>()?;
        if config.max_pending == 0 {
            return Err(ConfigError::field("max_pending", "must be 1 or more"));
        }
        Ok(SimResponder {
            echo,
            defaults: compile_setters(&config.default, "default")?,
            rules,
            wait: Wait::compile(config.delay, "delay")?,
            rng: ChaCha8Rng::seed_from_u64(config.seed),
            built: 0,
            scratch: Scratch::default(),
            pending: Arc::new(Pending::new(
                usize::try_from(config.max_pending).unwrap_or(usize::MAX),
            )),
            clock: None,
            name: String::new(),
            out: ports.resolve_output("out")?,
        })
    }
}

fn compile_rule(rule: &Rule, i: usize) -> Result<Compiled, ConfigError> {
    let path = format!("rules[{i}]");
    let when = rule
        .when
        .as_ref()
        .map(|c| c.compile(&format!("{path}.when")))
        .transpose()?;
    let wait = rule
        .delay
        .map(|d| Wait::compile(d, &format!("{path}.delay")))
        .transpose()?;
    if rule.drop && (!rule.set.is_empty() || rule.delay.is_some()) {
        return Err(ConfigError::field(
            format!("{path}.drop"),
            "a rule that drops the request sends no response: give it no set and no delay",
        ));
    }
    Ok(Compiled {
        name: Text::from(rule.name.clone().unwrap_or_else(|| path.clone())),
        when,
        set: compile_setters(&rule.set, &format!("{path}.set"))?,
        wait,
        drop: rule.drop,
    })
}

fn compile_setters(
    map: &BTreeMap<String, serde_json::Value>,
    path: &str,
) -> Result<Vec<Setter>, ConfigError> {
    map.iter()
        .map(|(key, value)| {
            let here = format!("{path}.{key}");
            let field = target(key).map_err(|e| ConfigError::field(&here, e))?;
            let assign = match value {
                serde_json::Value::Null => Assign::Remove,
                serde_json::Value::String(s) => Assign::Template(ValueTemplate::compile(s, &here)?),
                other => Assign::Const(
                    fluxmsg::json::value_from_json(other)
                        .map_err(|e| ConfigError::field(&here, e))?,
                ),
            };
            Ok(Setter { field, assign })
        })
        .collect()
}

/// The field a key of `default` or `set` names: a number is an ISO 8583 field.
fn target(key: &str) -> Result<Field, String> {
    let key = key.trim();
    if !key.is_empty() && key.bytes().all(|b| b.is_ascii_digit()) {
        return match key.parse::<u16>() {
            Ok(n) if n >= 2 => Ok(Field::Data(format!("iso8583.field.{n}"))),
            _ => Err(format!(
                "{key} is not a data field: fields are numbered 2 to 65535"
            )),
        };
    }
    Field::parse(key)
}

impl Gear for SimResponder {
    fn init(&mut self, ctx: &mut Context) -> Result<(), GearError> {
        self.clock = Some(ctx.clock());
        ctx.name().clone_into(&mut self.name);
        Ok(())
    }

    fn start(&mut self, ctx: &mut Context) -> Result<(), GearError> {
        let task = Arc::clone(&self.pending).run(
            ctx.clock(),
            ctx.emitter(),
            self.out,
            ctx.shutdown(),
            self.name.clone(),
        );
        ctx.spawn(task);
        Ok(())
    }

    fn process(
        &mut self,
        _: InPort,
        msg: &mut FluxMsg,
        _: &mut Outbox<'_>,
    ) -> Result<Outcome, GearError> {
        let mti = mti::response_mti(msg.meta.get("iso8583.mti").map(Text::as_str))?;
        let mut matched = None;
        for (i, rule) in self.rules.iter().enumerate() {
            let hit = match &rule.when {
                None => true,
                Some(test) => test.matches(msg, &mut self.scratch)?,
            };
            if hit {
                matched = Some(i);
                break;
            }
        }
        let rule = matched.and_then(|i| self.rules.get(i));
        if let Some(rule) = rule.filter(|r| r.drop) {
            tracing::debug!(gear = %self.name, rule = %rule.name, "A rule dropped the request: no response.");
            return Ok(Outcome::Drop("rule_drop"));
        }
        let now = self.clock.as_ref().map_or(Duration::ZERO, |c| c.now());
        let wait = rule.and_then(|r| r.wait).unwrap_or(self.wait);
        let delay = wait.draw(&mut self.rng);
        if !delay.is_zero() && self.pending.is_full() {
            return Err(full(&self.pending));
        }
        let mut cx = Cx {
            index: self.built,
            now,
            rng: &mut self.rng,
        };
        self.built = self.built.wrapping_add(1);
        respond(
            msg,
            mti,
            self.echo.as_deref(),
            &self.defaults,
            rule,
            &mut cx,
        )?;
        if delay.is_zero() {
            return Ok(Outcome::Emit(self.out));
        }
        let response = std::mem::take(msg);
        match self.pending.push(now.saturating_add(delay), response) {
            Ok(()) => Ok(Outcome::Consumed),
            Err(back) => {
                *msg = back;
                Err(full(&self.pending))
            }
        }
    }
}

/// The error of a request refused because `max_pending` responses wait.
fn full(pending: &Pending) -> GearError {
    GearError::new("pending_full").with_detail(format_args!(
        "{} delayed responses already wait (max_pending)",
        pending.len()
    ))
}

/// Turns the request `msg` into its response, in place: the echoed fields, DE 39, the
/// response MTI, then `defaults` and the rule's `set`.
fn respond(
    msg: &mut FluxMsg,
    mti: [u8; 4],
    echo: Option<&[Text]>,
    defaults: &[Setter],
    rule: Option<&Compiled>,
    cx: &mut Cx<'_>,
) -> Result<(), GearError> {
    let request = std::mem::take(&mut msg.data);
    msg.data
        .insert("iso8583", Value::Map(echoed(request, echo)));
    msg.raw = Default::default();
    let mti = std::str::from_utf8(&mti).unwrap_or("0000");
    msg.meta.insert("iso8583.mti", Text::from(mti));
    msg.meta.insert(
        "iso8583.mti_class",
        Text::from(mti.get(..2).unwrap_or("00")),
    );
    let setters = defaults.iter().chain(rule.map_or(&[][..], |r| &r.set));
    for setter in setters {
        match &setter.assign {
            Assign::Const(v) => setter.field.set(msg, v.clone())?,
            Assign::Template(t) => setter.field.set(msg, t.value(cx))?,
            Assign::Remove => {
                setter.field.take(msg);
            }
        }
    }
    match rule {
        Some(rule) => msg.meta.insert(RULE_META, rule.name.clone()),
        None => msg.meta.remove(RULE_META),
    };
    Ok(())
}

/// The `iso8583` map of the response: the echoed fields (with their BER-TLV bookkeeping)
/// and DE 39 `00`. `echo` is `None` for all.
fn echoed(mut request: Map<Value>, echo: Option<&[Text]>) -> Map<Value> {
    let mut iso = match request.remove("iso8583") {
        Some(Value::Map(iso)) => iso,
        _ => Map::new(),
    };
    let mut fields = match iso.remove("field") {
        Some(Value::Map(fields)) => fields,
        _ => Map::new(),
    };
    let mut out = Map::new();
    for part in ["unknown_tags", "tlv_order", "tlv_lengths"] {
        let kept = match (iso.remove(part), echo) {
            (Some(v), None) => Some(v),
            (Some(Value::Map(mut m)), Some(keep)) => Some(Value::Map(pick(&mut m, keep)))
                .filter(|v| v.as_map().is_some_and(|m| !m.is_empty())),
            _ => None,
        };
        if let Some(v) = kept {
            out.insert(part, v);
        }
    }
    if let Some(keep) = echo {
        fields = pick(&mut fields, keep);
    }
    fields.insert("39", Value::from("00"));
    out.insert("field", Value::Map(fields));
    out
}

/// The entries of `map` under the keys `keep`, taken out of it.
fn pick(map: &mut Map<Value>, keep: &[Text]) -> Map<Value> {
    let mut picked = Map::with_capacity(keep.len().min(map.len()));
    for key in keep {
        if let Some(v) = map.remove(key) {
            picked.insert(key.clone(), v);
        }
    }
    picked
}
