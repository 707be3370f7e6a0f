//! The `generate` gear: a source of messages for simulation and load.
//!
//! It builds every message from a template whose strings hold placeholders (a counter, seeded
//! random values, the time) and emits it on `out`, at a constant rate, along a linear ramp, or
//! as fast as the engine takes them. It stops after `count` messages, after `duration`, or
//! when the gear is drained, whichever comes first.
//!
//! ```yaml
//! - name: traffic
//!   type: generate
//!   config:
//!     count: 100000            # stop after that many (default: never)
//!     duration: 5m             # stop after that long (default: never)
//!     rate:                    # default: as fast as the engine takes them
//!       shape: ramp            # or `constant` (the default) with `tps: 50`
//!       from: 10               # messages per second at the start
//!       to: 500                # ... at the end of the ramp, and after it
//!       over: 1m
//!     batch: 64                # most messages per emission (default 64)
//!     seed: 42                 # same seed, same messages (default 0)
//!     template:
//!       meta:
//!         iso8583.mti: "0100"
//!         sim.run: "run-${random_hex:4}"
//!       data:
//!         seq: "${counter}"                 # an integer: 0, 1, 2, ...
//!         stan: "${counter:100000}"         # an integer from 100000
//!         amount: "${random_int:100:99999}" # an integer
//!         fx: "${random_float:0.9:1.1}"     # a float
//!         rrn: "${random_digits:12}"        # text: may start with 0
//!         brand: "${random_choice:visa|mastercard|amex}"
//!         ref: "TX-${counter}-${uuid}"      # text
//!         sent_at: "${now}"
//!         card.pan: "4111${random_digits:12}"  # a dotted key is a nested map
//!         channel: { kind: pos, retries: 0 }   # non-strings are kept as they are
//!       raw: "${random_hex:16}"
//!       trace: "${random_hex:16}"
//! ```
//!
//! # Ports
//!
//! - `out`: the generated messages.
//! - `error`: every gear has it; `generate` sends nothing there.
//!
//! It has no input port: it is an origin (terminus `io`).
//!
//! # Messages
//!
//! Each message gets `ts` = the clock's time in nanoseconds when it is built, `meta`, `data`,
//! `raw` and `trace` from the template, and no `id`: the engine assigns ids when the gear
//! emits. Every string in `template.data` (at any depth, in maps and lists), every value of
//! `template.meta`, `template.raw` and `template.trace` is a template; numbers, booleans,
//! maps and lists are kept as they are. A dotted key of `template.data` (`card.pan`) is a
//! path: it makes nested maps.
//!
//! # Placeholders
//!
//! `$$` writes a literal `$`.
//!
//! | Placeholder | Value |
//! |---|---|
//! | `${counter}` | the message's index: 0, 1, 2, … |
//! | `${counter:START}` | START plus the index |
//! | `${random_int:MIN:MAX}` | an integer from MIN to MAX, both included (64-bit) |
//! | `${random_float:MIN:MAX}` | a float from MIN to MAX |
//! | `${random_choice:a\|b\|c}` | one of the choices (trimmed), uniformly |
//! | `${random_hex:N}` | N random bytes as 2·N lowercase hex digits |
//! | `${random_digits:N}` | N random decimal digits |
//! | `${uuid}` | a version 4 UUID (from the seeded generator, not the system) |
//! | `${now}` | the time, RFC 3339 UTC with milliseconds |
//! | `${now_ms}` | the time in milliseconds since the Unix epoch |
//! | `${now_unix}` | the time in seconds since the Unix epoch |
//!
//! N is 1 to 4,096. A string that is exactly one numeric placeholder (`counter`,
//! `random_int`, `random_float`, `now_ms`, `now_unix`) with nothing around it becomes a number
//! (a float for `random_float`, an integer otherwise); anything else is text. In `meta`,
//! `raw` and `trace` everything is text.
//!
//! # ISO 8583 placeholders
//!
//! These write an ISO 8583:1987 field at its width, as text of digits, so that a template
//! makes authorisations that `codec_iso8583` encodes. Dates and times are UTC, from the
//! engine's clock (there is no time zone setting: "local" is UTC).
//!
//! | Placeholder | Value |
//! |---|---|
//! | `${pan:BIN\|BIN:LEN}` | a PAN of LEN digits (12 to 19, default 16): one of the BINs (uniformly), random digits, and a Luhn check digit |
//! | `${stan}`, `${stan:START}` | DE 11: six digits, START (default 1) plus the index, wrapping from 999999 to 000001 |
//! | `${rrn}`, `${rrn:START}` | DE 37: twelve digits, the Julian date `YDDD` then START (default 0) plus the index on eight digits |
//! | `${amount:MIN:MAX}` | DE 4: an amount in minor units from MIN to MAX, both included, on twelve digits |
//! | `${expiry}`, `${expiry:MONTHS}`, `${expiry:MONTHS:EXPIRED_PERCENT}` | DE 14: `YYMM`, 1 to MONTHS (default 36) months after this month; EXPIRED_PERCENT (0 to 100, default 0) of them 1 to 24 months before it |
//! | `${transmission_datetime}` | DE 7: `MMDDhhmmss` |
//! | `${local_time}` | DE 12: `hhmmss` |
//! | `${local_date}` | DE 13: `MMDD` |
//!
//! The STAN and RRN sequences follow the message index, so STANs are distinct within any
//! 999,999 consecutive messages. A BIN must be digits and shorter than LEN. A 0100
//! authorisation that `codec_iso8583` with `builtin:spec87ascii` encodes, 2,000 a second:
//!
//! ```yaml
//! - name: authorisations
//!   type: generate
//!   config:
//!     rate: { tps: 2000 }
//!     seed: 7
//!     template:
//!       meta:
//!         iso8583.mti: "0100"
//!       data:
//!         iso8583.field.2: "${pan:411111|550000|340000:16}"
//!         iso8583.field.3: "000000"
//!         iso8583.field.4: "${amount:100:250000}"
//!         iso8583.field.7: "${transmission_datetime}"
//!         iso8583.field.11: "${stan}"
//!         iso8583.field.12: "${local_time}"
//!         iso8583.field.13: "${local_date}"
//!         iso8583.field.14: "${expiry:36:2}"
//!         iso8583.field.22: "051"
//!         iso8583.field.37: "${rrn}"
//!         iso8583.field.41: "TERM${random_digits:4}"
//!         iso8583.field.42: "MERCHANT0000042"
//!         iso8583.field.49: "840"
//! ```
//!
//! # Determinism
//!
//! Every random value comes from a ChaCha8 generator seeded with `seed` when the gear starts,
//! and the placeholders are drawn in a fixed order (meta, data, raw, trace, each in template
//! order), so two runs with the same seed and configuration produce the same messages. The
//! time comes from the engine's clock (a manual clock in tests).
//!
//! # Pacing and back-pressure
//!
//! Message k is due at the time the rate shape gives it, computed from the start (no drift
//! accumulates); the first is due at once. A ramp goes linearly from `from` to `to` messages per
//! second over `over`, then holds `to`. Messages that are due together (a high rate, or a
//! consumer that fell behind) leave in one batch of at most `batch`; at low rates they leave
//! one by one, on time. Without `rate` the gear emits batches of `batch` as fast as the engine
//! takes them. Emission waits while the engine is full, so a slow consumer slows the source
//! down: nothing is lost, and a late source catches up in batches.
//!
//! Configuration problems (an unknown placeholder, MIN > MAX, a rate of zero) are refused before
//! anything runs, naming the field (`template.data.amount`).

mod blueprint;
mod iso;

/// UTC calendar fields of a time, which io_iso8583's DE 7 uses too.
pub(crate) use iso::Civil;
mod pace;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use fluxmsg::FluxMsg;
use rand::SeedableRng;
use rand::rngs::ChaCha8Rng;
use schemars::JsonSchema;
use sdk::{
    Category, ConfigError, Context, Emitter, Gear, GearError, GearType, HumanDuration, InPort,
    Manifest, OutPort, Outbox, Outcome, Ports, Terminus,
};
use serde::Deserialize;
use tokio::time::Instant;

use self::blueprint::Blueprint;
pub(crate) use self::blueprint::{Cx, ValueTemplate};
use self::pace::Pace;
use crate::{Error, Factory};

pub(crate) fn register(factory: &mut Factory) -> Result<(), Error> {
    factory.register::<Generate>()
}

/// The configuration of the `generate` gear (see the [module docs](self)).
#[derive(Debug, Clone, PartialEq, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct Config {
    /// Stop after this many messages (default: never).
    pub count: Option<u64>,
    /// Stop this long after the start (default: never).
    pub duration: Option<HumanDuration>,
    /// How fast to send; without it, as fast as the engine takes the messages, in batches.
    pub rate: Option<Rate>,
    /// The most messages per emission (default 64).
    pub batch: u32,
    /// The seed of every random value: the same seed gives the same messages (default 0).
    pub seed: u64,
    /// What each message is made of.
    pub template: MessageTemplate,
}

impl Default for Config {
    fn default() -> Config {
        Config {
            count: None,
            duration: None,
            rate: None,
            batch: 64,
            seed: 0,
            template: MessageTemplate::default(),
        }
    }
}

/// A rate: `{ tps: 50 }`, or `{ shape: ramp, from: 10, to: 500, over: 1m }`.
#[derive(Debug, Clone, PartialEq, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct Rate {
    /// The shape (default `constant`).
    #[serde(default)]
    pub shape: Shape,
    /// Messages per second of a constant rate (more than 0).
    pub tps: Option<f64>,
    /// Messages per second at the start of a ramp (0 or more).
    pub from: Option<f64>,
    /// Messages per second at the end of a ramp, and after it (more than 0).
    pub to: Option<f64>,
    /// How long a ramp lasts.
    pub over: Option<HumanDuration>,
}

/// The shape of a [`Rate`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Shape {
    /// `tps` messages per second.
    #[default]
    Constant,
    /// From `from` to `to` messages per second, linearly over `over`, then `to`.
    Ramp,
}

impl Shape {
    fn name(self) -> &'static str {
        match self {
            Shape::Constant => "constant",
            Shape::Ramp => "ramp",
        }
    }
}

/// The template of every message: strings hold `${...}` placeholders.
#[derive(Debug, Clone, PartialEq, Default, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct MessageTemplate {
    /// The message's `data`: any map; every string in it, at any depth, is a template, and a
    /// dotted key is a path.
    pub data: serde_json::Map<String, serde_json::Value>,
    /// The message's `meta`: flat keys, text templates.
    pub meta: BTreeMap<String, String>,
    /// The message's `raw` bytes, as a text template.
    pub raw: Option<String>,
    /// The message's `trace`, as a text template.
    pub trace: Option<String>,
}

/// The `generate` gear: a source of templated messages at a rate (see the
/// [module docs](self)).
#[derive(Debug)]
pub struct Generate {
    plan: Arc<Plan>,
    out: OutPort,
}

/// Everything the task needs, checked.
#[derive(Debug)]
struct Plan {
    blueprint: Blueprint,
    pace: Pace,
    count: Option<u64>,
    duration: Option<Duration>,
    batch: usize,
    seed: u64,
}

impl GearType for Generate {
    type Config = Config;

    fn manifest() -> Manifest {
        Manifest::new("generate", Category::Logic)
            .summary("generates templated messages at a constant or ramped rate, or flat out")
            .terminus(Terminus::Io)
            .output("out", "the generated messages")
    }

    fn new(config: Config, ports: &Ports) -> Result<Generate, ConfigError> {
        let pace = match &config.rate {
            None => Pace::Load,
            Some(rate) => pace(rate)?,
        };
        if config.batch == 0 {
            return Err(ConfigError::field("batch", "must be 1 or more"));
        }
        if config.duration.is_some_and(|d| d.get().is_zero()) {
            return Err(ConfigError::field("duration", "must be more than 0"));
        }
        let plan = Plan {
            blueprint: Blueprint::compile(&config.template)?,
            pace,
            count: config.count,
            duration: config.duration.map(HumanDuration::get),
            batch: usize::try_from(config.batch).unwrap_or(usize::MAX),
            seed: config.seed,
        };
        Ok(Generate {
            plan: Arc::new(plan),
            out: ports.resolve_output("out")?,
        })
    }
}

/// Checks a rate against its shape.
fn pace(rate: &Rate) -> Result<Pace, ConfigError> {
    let positive = |value: Option<f64>, key: &str, min_zero: bool| {
        let path = format!("rate.{key}");
        let v = value.ok_or_else(|| {
            ConfigError::field(
                &path,
                format_args!("a {} rate needs {key}", rate.shape.name()),
            )
        })?;
        let ok = v.is_finite() && (v > 0.0 || (min_zero && v == 0.0));
        if ok {
            Ok(v)
        } else if min_zero {
            Err(ConfigError::field(
                path,
                format_args!("must be 0 or more, not {v}"),
            ))
        } else {
            Err(ConfigError::field(
                path,
                format_args!("must be more than 0, not {v}"),
            ))
        }
    };
    let unused = |present: bool, key: &str| {
        if present {
            Err(ConfigError::field(
                format!("rate.{key}"),
                format_args!("a {} rate does not take {key}", rate.shape.name()),
            ))
        } else {
            Ok(())
        }
    };
    match rate.shape {
        Shape::Constant => {
            unused(rate.from.is_some(), "from")?;
            unused(rate.to.is_some(), "to")?;
            unused(rate.over.is_some(), "over")?;
            Ok(Pace::Constant {
                tps: positive(rate.tps, "tps", false)?,
            })
        }
        Shape::Ramp => {
            unused(rate.tps.is_some(), "tps")?;
            let from = positive(rate.from, "from", true)?;
            let to = positive(rate.to, "to", false)?;
            let over = rate
                .over
                .ok_or_else(|| ConfigError::field("rate.over", "a ramp rate needs over"))?
                .get();
            if over.is_zero() {
                return Err(ConfigError::field("rate.over", "must be more than 0"));
            }
            Ok(Pace::Ramp {
                from,
                to,
                over: over.as_secs_f64(),
            })
        }
    }
}

impl Gear for Generate {
    fn start(&mut self, ctx: &mut Context) -> Result<(), GearError> {
        let clock = ctx.clock();
        let job = Job {
            plan: Arc::clone(&self.plan),
            out: self.out,
            emitter: ctx.emitter(),
            now: move || clock.now(),
            name: ctx.name().to_owned(),
        };
        let shutdown = ctx.shutdown();
        // Drain fires the signal: the task stops wherever it is, between messages or while
        // it waits for its next due time or for room in the engine.
        ctx.spawn(async move {
            tokio::select! {
                biased;
                () = shutdown.fired() => {}
                () = job.run() => {}
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
        Err(GearError::new("no_input").with_detail("the generate gear takes no input"))
    }
}

/// The source task.
struct Job<N> {
    plan: Arc<Plan>,
    out: OutPort,
    emitter: Emitter,
    /// The engine's clock (since the Unix epoch).
    now: N,
    name: String,
}

/// Why the source stopped by itself.
#[derive(Debug, Clone, Copy)]
enum Stop {
    Count,
    Duration,
    Closed,
}

impl Stop {
    fn as_str(self) -> &'static str {
        match self {
            Stop::Count => "count reached",
            Stop::Duration => "duration elapsed",
            Stop::Closed => "output closed",
        }
    }
}

impl<N: Fn() -> Duration> Job<N> {
    async fn run(self) {
        let start = Instant::now();
        let mut rng = ChaCha8Rng::seed_from_u64(self.plan.seed);
        let mut emitted = 0u64;
        let stop = match self.plan.pace {
            Pace::Load => self.flat_out(start, &mut rng, &mut emitted).await,
            _ => self.paced(start, &mut rng, &mut emitted).await,
        };
        tracing::info!(gear = %self.name, emitted, reason = stop.as_str(), "The generator stopped.");
    }

    /// No rate: batches of `batch` as fast as the engine takes them.
    async fn flat_out(&self, start: Instant, rng: &mut ChaCha8Rng, emitted: &mut u64) -> Stop {
        let plan = &*self.plan;
        loop {
            let left = plan.count.map_or(u64::MAX, |c| c.saturating_sub(*emitted));
            if left == 0 {
                return Stop::Count;
            }
            if plan.duration.is_some_and(|d| start.elapsed() >= d) {
                return Stop::Duration;
            }
            let n = usize::try_from(left).map_or(plan.batch, |left| left.min(plan.batch));
            let now = (self.now)();
            let msgs = (0..n as u64)
                .map(|i| self.build(*emitted + i, now, rng))
                .collect();
            if self.emitter.emit_batch(self.out, msgs).await.is_err() {
                return Stop::Closed;
            }
            *emitted += n as u64;
        }
    }

    /// A rate: each message at its due time; those due together in one batch.
    async fn paced(&self, start: Instant, rng: &mut ChaCha8Rng, emitted: &mut u64) -> Stop {
        let plan = &*self.plan;
        let in_time = |k: u64| -> Option<Duration> {
            let at = plan.pace.offset(k)?;
            plan.duration.is_none_or(|d| at < d).then_some(at)
        };
        let mut batch = Vec::with_capacity(plan.batch);
        loop {
            let k = *emitted;
            if plan.count.is_some_and(|c| k >= c) {
                return Stop::Count;
            }
            let Some(at) = in_time(k) else {
                return Stop::Duration;
            };
            match start.checked_add(at) {
                Some(due) => tokio::time::sleep_until(due).await,
                // Further away than the clock can count: never.
                None => std::future::pending().await,
            }
            let elapsed = start.elapsed();
            let now = (self.now)();
            batch.push(self.build(k, now, rng));
            while batch.len() < plan.batch {
                let next = k + batch.len() as u64;
                if plan.count.is_some_and(|c| next >= c)
                    || in_time(next).is_none_or(|at| at > elapsed)
                {
                    break;
                }
                batch.push(self.build(next, now, rng));
            }
            let n = batch.len() as u64;
            let sent = if batch.len() == 1 {
                match batch.pop() {
                    Some(msg) => self.emitter.emit(self.out, msg).await,
                    None => Ok(()),
                }
            } else {
                let full = std::mem::replace(&mut batch, Vec::with_capacity(plan.batch));
                self.emitter.emit_batch(self.out, full).await
            };
            if sent.is_err() {
                return Stop::Closed;
            }
            *emitted += n;
        }
    }

    /// Message number `index`, made at `now` (the messages of one batch are made together,
    /// with one reading of the clock).
    fn build(&self, index: u64, now: Duration, rng: &mut ChaCha8Rng) -> FluxMsg {
        let mut cx = Cx { index, now, rng };
        self.plan.blueprint.build(&mut cx)
    }
}
