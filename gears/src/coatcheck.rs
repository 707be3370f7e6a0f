//! The `coatcheck` gear: claim-check parking of message fields in a snake KV bucket.
//!
//! A `store` gear takes fields out of a message (a card number, a whole ISO 8583 field tree)
//! and parks them in a bucket under a key made of other fields (STAN, terminal id); the message
//! goes on without them. A `restore` gear, further along (on the reply), computes the same key,
//! takes the parked fields back and merges them into the message. One `daemon` gear per bucket
//! creates the bucket and sweeps the entries nobody claimed in time: each becomes a timeout
//! event. Parking is not tokenization: the values are kept as they are, for a short while.
//!
//! ```yaml
//! - name: park-pan
//!   type: coatcheck
//!   config:
//!     mode: store
//!     bucket: auth_pan
//!     key_fields: [data.iso8583.field.11, data.iso8583.field.41]
//!     value_fields: [data.iso8583.field.2, meta.conn.id]
//!     default_ttl: 30s
//! - name: unpark-pan
//!   type: coatcheck
//!   config:
//!     mode: restore
//!     bucket: auth_pan
//!     key_fields: [data.iso8583.field.11, data.iso8583.field.41]
//!     on_missing: error
//! - name: auth-pan-keeper
//!   type: coatcheck
//!   config: { mode: daemon, bucket: auth_pan, storage: memory }
//! ```
//!
//! # Ports
//!
//! - `store` and `restore`: `in` → `out`, and `error`.
//! - `daemon`: `out` (a timeout event per expired entry), and `error`. It has no input.
//!
//! # Configuration
//!
//! | key | default | meaning |
//! |---|---|---|
//! | `mode` | required | `store`, `restore` or `daemon` |
//! | `bucket` | required | the bucket's name (letters, digits, `-`, `_`) |
//! | `key_fields` | required for `store` and `restore` | `meta.<key>` and `data.<path>` fields whose values, joined, make the key |
//! | `key_normalize` | `trim` | each key value: `trim` (no surrounding whitespace), `numeric` (its digits only, without leading zeros: `" 000123"` and `"123"` give one key), `none` |
//! | `value_fields` | none | `meta.<key>` and `data.<path>` fields parked (absent ones are skipped) |
//! | `include_values` | `false` | keep the parked fields in the message too |
//! | `await_store` | `true` | `store` sends the message on once the bucket acknowledged the entry; `false` sends it on at once and parks in the background |
//! | `store_timeout` | `5s` | how long a message waits for the bucket (store or restore; see [Errors](#errors)) |
//! | `default_ttl` | `1m` | how long an entry stays claimable |
//! | `max_ttl` | `5m` | the longest a message's own `coatcheck.ttl` metadata may ask for |
//! | `on_missing` | `error` | `restore` without an entry (never parked, already claimed, expired): `error`, `drop` (counted as `coatcheck_missing`), `forward` (sent on `out` unchanged) |
//! | `merge_strategy` | `overwrite` | where the message and the entry both have a field: `overwrite` (the parked value wins) or `preserve` (the message's wins); maps merge key by key |
//! | `storage` | `file` | `daemon`: where the bucket is kept, `file` or `memory` |
//! | `replicas` | `1` | `daemon`: the bucket's replica count (1 to 5) |
//! | `sweep_interval` | `1s` | `daemon`: how often expired entries are looked for |
//! | `max_in_flight` | `256` | `store`, `restore`: messages waiting for the bucket at once |
//!
//! The key is the key values, each prefixed with its length (so that no two lists of values
//! join alike), in URL-safe base64 without padding: any value gives a valid KV key. Joined
//! values longer than 192 bytes are refused. The TTL of an entry is `default_ttl`, or the
//! message's `coatcheck.ttl` metadata (`30s`, `2m`, or a number of seconds) capped by `max_ttl`;
//! times come from the rack's clock, so the expiry is written into the entry.
//!
//! # The daemon and timeout events
//!
//! Exactly one daemon per bucket: it creates the bucket when it loads (stores and restores
//! never do, so without a daemon they fail with `bucket_not_found`). It watches the bucket to
//! keep an index of the expiry times (rebuilt from the bucket every 60 sweeps, in case a change
//! went unseen) and, every `sweep_interval`, takes each entry past its expiry out of the bucket:
//! up to 64 entries at once and 4,096 per sweep (when more are due, the next sweep follows at
//! once), applying the watch's changes after every 256, so that a mass expiry neither waits on
//! one round trip after the other nor overflows the watch.
//! A restore and the sweep that reach the same entry both delete it on the revision they read,
//! so exactly one of them gets it: a message is either restored or timed out, never both.
//!
//! Each expired entry becomes a message sent on `out` and published on the bus subject
//! `flux.event.timeout.<bucket>` (its CBOR encoding), with the metadata
//! `event.type=fluxrig.event.timeout`, `timeout.key`, `timeout.bucket` and `timeout.expired_at`
//! (Unix nanoseconds), and the parked fields where they were (`data` in data, `meta` in
//! metadata), so that a flow can, for instance, send a reversal. The key fields themselves are
//! not in the entry: to see them in the event, park them too (`value_fields` with
//! `include_values: true`). A second store under the same key replaces the entry and its
//! expiry (a retransmission parks again).
//!
//! Parking `meta.conn.id`, as in the example, sends a reply back to the connection its
//! request came in on. Connection ids do not repeat across restarts, so an entry parked
//! before a restart (a `file` bucket keeps it) names a connection that is gone: its reply, or
//! anything sent with a timeout event's `conn.id`, goes to the link gear's `error`, never to
//! another terminal.
//!
//! # Errors
//!
//! On `error`, with `error.reason`:
//!
//! - `no_key`: a key field is missing or empty once normalised; `key_too_long`.
//! - `bad_ttl`: `coatcheck.ttl` is not a duration above zero.
//! - `bucket_not_found`: the bucket does not exist (no daemon created it).
//! - `store_failed`, `store_timeout`: the bucket refused the entry or did not answer in
//!   `store_timeout` (the message goes to `error` as it came, parked fields included). A write
//!   that lands after its timeout is taken back (deleted at the revision it wrote) once the
//!   bucket answers, so that no timeout event comes for a message that went to `error`.
//! - `restore_failed`, `restore_timeout`; `corrupt_entry` (an entry this gear cannot read).
//!   `restore_timeout` bounds reading the entry: nothing was taken. Once a restore asks for
//!   the entry's removal it waits for the answer (the snake client bounds that wait with its
//!   own request timeout), since the entry may be gone already: a restore that took the entry
//!   always comes back with it. A removal the bucket refuses is `restore_failed`.
//! - `coatcheck_missing`: no entry to restore, with `on_missing: error`.
//! - `overloaded`: `max_in_flight` messages already wait for the bucket; `not_running`: the
//!   gear is not started yet, or draining.
//!
//! With `await_store: false`, a background store that fails is counted as dropped
//! `store_failed` (the message has gone on; its fields are lost), one that finds the queue full
//! as `store_overloaded`; `store_timeout` bounds only its opening of the bucket, and a write
//! the bucket acknowledges late is not counted lost. Keys and values never appear in logs or error details: they may hold
//! card data.
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use fluxmsg::FluxMsg;
//! use gears::coatcheck::Coatcheck;
//! use sdk::{DynGearType, Harness};
//! use serde_json::json;
//!
//! let snake = snake::Snake::memory();
//! let gear = |config: serde_json::Value| {
//!     let snake = snake.clone();
//!     async move {
//!         let gear_type = DynGearType::of::<Coatcheck>()?;
//!         Harness::builder(gear_type).snake(snake).build_loaded(&config).await
//!     }
//! };
//! // The daemon creates the bucket as it loads.
//! let mut daemon = gear(json!({ "mode": "daemon", "bucket": "pans" })).await?;
//! let keys = json!(["data.stan"]);
//! let mut store = gear(json!({
//!     "mode": "store", "bucket": "pans", "key_fields": keys, "value_fields": ["data.pan"]
//! })).await?;
//! let mut restore = gear(json!({ "mode": "restore", "bucket": "pans", "key_fields": keys })).await?;
//! for h in [&mut daemon, &mut store, &mut restore] {
//!     h.start()?;
//! }
//!
//! let request = FluxMsg::builder().data("stan", "000042").data("pan", "4111111111111111").build();
//! store.send("in", request)?;
//! let parked = store.recv("out").await.ok_or("stored")?;
//! assert!(parked.data.get("pan").is_none());
//!
//! restore.send("in", FluxMsg::builder().data("stan", "000042").data("rc", "00").build())?;
//! let reply = restore.recv("out").await.ok_or("restored")?;
//! assert_eq!(reply.data.get("pan").and_then(|v| v.as_str()), Some("4111111111111111"));
//! # Ok(()) }
//! ```

mod bucket;
mod daemon;
mod entry;
mod key;
#[cfg(test)]
mod tests;
mod worker;

use std::borrow::Cow;
use std::sync::Arc;
use std::time::Duration;

use fluxmsg::{Codec, FluxMsg};
use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use sdk::{
    Category, Clock, ConfigError, Context, Direction, Gear, GearError, GearType, HumanDuration,
    InPort, LoadFuture, Manifest, OutPort, Outbox, Outcome, Ports, Stats, Terminus,
};
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;

use self::key::{KeySpec, message_field};
use self::worker::Job;
use crate::field::Field;
use crate::{Error, Factory};

/// The metadata key of a message's own TTL (`30s`, `2m`, or seconds), capped by `max_ttl`.
pub const TTL_META: &str = "coatcheck.ttl";
/// The `error.reason` of a restore that found no entry, with `on_missing: error`.
pub const MISSING_REASON: &str = "coatcheck_missing";
/// The `event.type` of a timeout event.
pub const TIMEOUT_EVENT_TYPE: &str = "fluxrig.event.timeout";
/// The first part of the bus subject of a bucket's timeout events
/// (`flux.event.timeout.<bucket>`).
pub const TIMEOUT_SUBJECT_PREFIX: &str = "flux.event.timeout";

pub(crate) fn register(factory: &mut Factory) -> Result<(), Error> {
    factory.register::<Coatcheck>()
}

/// The configuration of a [`Coatcheck`] gear (see the [module documentation](self)).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct Config {
    /// `store`, `restore` or `daemon`.
    pub mode: Mode,
    /// The bucket's name.
    pub bucket: String,
    /// The fields whose values make the key.
    #[serde(default)]
    pub key_fields: Vec<String>,
    /// How each key value is normalised.
    #[serde(default)]
    pub key_normalize: KeyNormalize,
    /// The fields parked.
    #[serde(default)]
    pub value_fields: Vec<String>,
    /// Whether the parked fields stay in the message too.
    #[serde(default)]
    pub include_values: bool,
    /// Whether a stored message waits for the bucket's acknowledgement.
    #[serde(default = "default_true")]
    pub await_store: bool,
    /// How long a message waits for the bucket.
    #[serde(default = "default_store_timeout")]
    pub store_timeout: HumanDuration,
    /// How long an entry stays claimable.
    #[serde(default = "default_ttl")]
    pub default_ttl: HumanDuration,
    /// The longest TTL a message may ask for.
    #[serde(default = "default_max_ttl")]
    pub max_ttl: HumanDuration,
    /// What a restore does without an entry.
    #[serde(default)]
    pub on_missing: OnMissing,
    /// Which value wins where the message and the entry both have one.
    #[serde(default)]
    pub merge_strategy: MergeStrategy,
    /// Daemon: where the bucket is kept.
    #[serde(default)]
    pub storage: StorageKind,
    /// Daemon: the bucket's replica count.
    #[serde(default = "default_replicas")]
    pub replicas: u8,
    /// Daemon: how often expired entries are looked for.
    #[serde(default = "default_sweep_interval")]
    pub sweep_interval: HumanDuration,
    /// Store and restore: how many messages may wait for the bucket at once.
    #[serde(default = "default_max_in_flight")]
    pub max_in_flight: usize,
}

/// What a gear does with its bucket.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Mode {
    /// Park fields.
    Store,
    /// Take parked fields back.
    Restore,
    /// Create the bucket and sweep expired entries.
    Daemon,
}

/// How a key value is normalised.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum KeyNormalize {
    /// Without surrounding whitespace.
    #[default]
    Trim,
    /// The ASCII digits only, without leading zeros (all zeros give `0`).
    Numeric,
    /// As it is.
    None,
}

/// What a restore does when there is no entry.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum OnMissing {
    /// Send the message to `error` (`coatcheck_missing`).
    #[default]
    Error,
    /// Drop it, counted as `coatcheck_missing`.
    Drop,
    /// Send it on `out` unchanged.
    Forward,
}

/// Which value wins where the message and the entry both have one.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum MergeStrategy {
    /// The parked value.
    #[default]
    Overwrite,
    /// The message's value.
    Preserve,
}

/// Where the daemon's bucket is kept.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum StorageKind {
    /// On disk.
    #[default]
    File,
    /// In memory.
    Memory,
}

macro_rules! string_enum_schema {
    ($ty:ty, $name:literal, [$($v:literal),*], $doc:literal) => {
        impl JsonSchema for $ty {
            fn schema_name() -> Cow<'static, str> {
                $name.into()
            }

            fn json_schema(_: &mut SchemaGenerator) -> Schema {
                json_schema!({ "type": "string", "enum": [$($v),*], "description": $doc })
            }
        }
    };
}

string_enum_schema!(
    Mode,
    "CoatcheckMode",
    ["store", "restore", "daemon"],
    "what the gear does"
);
string_enum_schema!(
    KeyNormalize,
    "KeyNormalize",
    ["trim", "numeric", "none"],
    "how each key value is normalised"
);
string_enum_schema!(
    OnMissing,
    "OnMissing",
    ["error", "drop", "forward"],
    "what a restore does without an entry"
);
string_enum_schema!(
    MergeStrategy,
    "MergeStrategy",
    ["overwrite", "preserve"],
    "which value wins on restore"
);
string_enum_schema!(
    StorageKind,
    "StorageKind",
    ["file", "memory"],
    "where the bucket is kept"
);

fn default_true() -> bool {
    true
}

fn default_store_timeout() -> HumanDuration {
    HumanDuration::from_secs(5)
}

fn default_ttl() -> HumanDuration {
    HumanDuration::from_secs(60)
}

fn default_max_ttl() -> HumanDuration {
    HumanDuration::from_secs(300)
}

fn default_replicas() -> u8 {
    1
}

fn default_sweep_interval() -> HumanDuration {
    HumanDuration::from_secs(1)
}

fn default_max_in_flight() -> usize {
    256
}

/// The configuration once checked, shared with the gear's tasks.
#[derive(Debug)]
pub(crate) struct Settings {
    pub(crate) bucket: String,
    pub(crate) values: Vec<Field>,
    pub(crate) include_values: bool,
    pub(crate) await_store: bool,
    pub(crate) timeout: Duration,
    pub(crate) default_ttl: Duration,
    pub(crate) max_ttl: Duration,
    pub(crate) on_missing: OnMissing,
    pub(crate) merge: MergeStrategy,
    pub(crate) storage: StorageKind,
    pub(crate) replicas: u8,
    pub(crate) sweep_interval: Duration,
    pub(crate) max_in_flight: usize,
    pub(crate) codec: Codec,
}

/// The `coatcheck` gear (see the [module documentation](self)).
#[derive(Debug)]
pub struct Coatcheck {
    mode: Mode,
    key: Option<KeySpec>,
    settings: Arc<Settings>,
    out: OutPort,
    clock: Option<Arc<dyn Clock>>,
    stats: Option<Arc<Stats>>,
    /// Store and restore: the queue to the task that talks to the bucket (from `start`).
    jobs: Option<mpsc::Sender<Job>>,
    /// Daemon: the bucket it created in `load`.
    bucket: Option<snake::Kv>,
}

impl GearType for Coatcheck {
    type Config = Config;

    fn manifest() -> Manifest {
        Manifest::new("coatcheck", Category::Logic)
            .summary("park message fields in a snake KV bucket and restore them later")
            .input(
                "in",
                "store, restore: messages to park or restore fields of",
            )
            .output(
                "out",
                "store, restore: messages on their way; daemon: timeout events",
            )
            // Store and restore pass each message on to their one port: a route's availability
            // may follow them to the gear beyond (an issuer link).
            .terminus(Terminus::Transparent)
    }

    fn ports(config: &Config) -> Result<Ports, ConfigError> {
        let ports = Ports::fixed(&Manifest::new("coatcheck", Category::Logic).output("out", ""));
        if config.mode == Mode::Daemon {
            return Ok(ports);
        }
        ports
            .with(Direction::Input, "in")
            .map_err(|e| ConfigError::field("mode", e))
    }

    fn new(config: Config, ports: &Ports) -> Result<Coatcheck, ConfigError> {
        snake::token("bucket", &config.bucket).map_err(|e| ConfigError::field("bucket", e))?;
        let key = match config.mode {
            Mode::Daemon => None,
            Mode::Store | Mode::Restore => {
                Some(KeySpec::new(&config.key_fields, config.key_normalize)?)
            }
        };
        let values = config
            .value_fields
            .iter()
            .enumerate()
            .map(|(i, p)| message_field(p, &format!("value_fields[{i}]")))
            .collect::<Result<Vec<_>, _>>()?;
        let positive = |d: HumanDuration, at: &str| {
            if d.get().is_zero() {
                Err(ConfigError::field(at, "must be above zero"))
            } else {
                Ok(d.get())
            }
        };
        let timeout = positive(config.store_timeout, "store_timeout")?;
        let default_ttl = positive(config.default_ttl, "default_ttl")?;
        let max_ttl = positive(config.max_ttl, "max_ttl")?;
        if max_ttl < default_ttl {
            return Err(ConfigError::field(
                "max_ttl",
                format_args!(
                    "{} is shorter than default_ttl ({})",
                    config.max_ttl, config.default_ttl
                ),
            ));
        }
        let sweep_interval = positive(config.sweep_interval, "sweep_interval")?;
        if !(1..=5).contains(&config.replicas) {
            return Err(ConfigError::field("replicas", "must be 1 to 5"));
        }
        if config.max_in_flight == 0 {
            return Err(ConfigError::field("max_in_flight", "must be at least 1"));
        }
        Ok(Coatcheck {
            mode: config.mode,
            key,
            settings: Arc::new(Settings {
                bucket: config.bucket,
                values,
                include_values: config.include_values,
                await_store: config.await_store,
                timeout,
                default_ttl,
                max_ttl,
                on_missing: config.on_missing,
                merge: config.merge_strategy,
                storage: config.storage,
                replicas: config.replicas,
                sweep_interval,
                max_in_flight: config.max_in_flight,
                codec: Codec::new(),
            }),
            out: ports.resolve_output("out")?,
            clock: None,
            stats: None,
            jobs: None,
            bucket: None,
        })
    }
}

impl Gear for Coatcheck {
    /// The daemon creates its bucket here, so that the scenario fails to apply when it
    /// cannot.
    fn load<'a>(&'a mut self, ctx: &'a Context) -> LoadFuture<'a> {
        Box::pin(async move {
            if self.mode != Mode::Daemon {
                return Ok(());
            }
            let snake = ctx.snake().ok_or_else(no_snake)?;
            self.bucket = Some(daemon::create_bucket(snake, &self.settings).await?);
            Ok(())
        })
    }

    fn init(&mut self, ctx: &mut Context) -> Result<(), GearError> {
        if ctx.snake().is_none() {
            return Err(no_snake());
        }
        self.clock = Some(ctx.clock());
        self.stats = Some(Arc::clone(ctx.stats()));
        Ok(())
    }

    fn start(&mut self, ctx: &mut Context) -> Result<(), GearError> {
        let snake = ctx.snake().cloned().ok_or_else(no_snake)?;
        match self.mode {
            Mode::Daemon => {
                let kv = self.bucket.clone().ok_or_else(|| {
                    GearError::new("not_loaded")
                        .with_detail("the daemon starts after its load created the bucket")
                })?;
                daemon::start(ctx, snake, kv, Arc::clone(&self.settings), self.out)?;
            }
            Mode::Store | Mode::Restore => {
                self.jobs = Some(worker::start(
                    ctx,
                    snake,
                    Arc::clone(&self.settings),
                    self.out,
                ));
            }
        }
        Ok(())
    }

    fn process(
        &mut self,
        _: InPort,
        msg: &mut FluxMsg,
        _: &mut Outbox<'_>,
    ) -> Result<Outcome, GearError> {
        let (Some(key), Some(clock)) = (&self.key, &self.clock) else {
            return Err(GearError::new("no_input").with_detail("a coatcheck daemon takes no input"));
        };
        let key = key.key(msg)?;
        let job = match self.mode {
            Mode::Store => {
                let ttl = ttl(msg, &self.settings)?;
                let expires = clock.now().saturating_add(ttl);
                let parked = entry::park(msg, &self.settings.values, self.settings.include_values);
                let value = match entry::encode(&self.settings.codec, &parked, expires) {
                    Ok(v) => v,
                    Err(e) => {
                        worker::unpark(msg, parked, &self.settings);
                        return Err(e);
                    }
                };
                if !self.settings.await_store {
                    return Ok(self.store_in_background(key, value));
                }
                Job::Store {
                    msg: std::mem::take(msg),
                    key,
                    value,
                    parked,
                }
            }
            _ => Job::Restore {
                msg: std::mem::take(msg),
                key,
            },
        };
        worker::enqueue(self.jobs.as_ref(), &self.settings, job, msg)
    }

    fn drain(&mut self) {
        // Closing the queue lets the worker finish what is queued and end.
        self.jobs = None;
    }
}

impl Coatcheck {
    /// `await_store: false`: the message goes on now; the entry is queued for the worker.
    fn store_in_background(&self, key: String, value: bytes::Bytes) -> Outcome {
        let queued = match &self.jobs {
            Some(jobs) => jobs
                .try_send(Job::Background { key, value })
                .map_err(|e| match e {
                    mpsc::error::TrySendError::Full(_) => "store_overloaded",
                    mpsc::error::TrySendError::Closed(_) => "store_failed",
                }),
            None => Err("store_failed"),
        };
        if let Err(reason) = queued {
            tracing::warn!(
                bucket = %self.settings.bucket,
                reason,
                "A background store could not be queued; its parked fields are lost."
            );
            if let Some(stats) = &self.stats {
                stats.add_dropped(reason, 1);
            }
        }
        Outcome::Emit(self.out)
    }
}

/// The TTL of a stored message: its own `coatcheck.ttl` capped by `max_ttl`, or
/// `default_ttl`.
fn ttl(msg: &FluxMsg, settings: &Settings) -> Result<Duration, GearError> {
    let Some(text) = msg.meta.get(TTL_META) else {
        return Ok(settings.default_ttl);
    };
    let text = text.as_str().trim();
    let parsed = match text.parse::<u64>() {
        Ok(secs) => Ok(Duration::from_secs(secs)),
        Err(_) => humantime::parse_duration(text).map_err(|e| e.to_string()),
    };
    match parsed {
        Ok(d) if !d.is_zero() => Ok(d.min(settings.max_ttl)),
        Ok(_) => Err(GearError::new("bad_ttl").with_detail("coatcheck.ttl must be above zero")),
        Err(e) => Err(GearError::new("bad_ttl")
            .with_detail(format_args!("coatcheck.ttl is not a duration: {e}"))),
    }
}

fn no_snake() -> GearError {
    GearError::new("no_snake")
        .with_detail("coatcheck needs the engine's snake handle for its bucket")
}
