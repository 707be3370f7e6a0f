//! The `conductor` gear: a transaction switch that routes requests by card range and
//! correlates each reply with the request waiting for it.
//!
//! A request opens a **ticket** in the [valet](crate::valet) under its correlation key and
//! goes out on the destination its route chooses; the reply, matched by the same key, goes
//! back with the request's return context (`conn.id` and the like) restored, so that the I/O
//! gear answers on the connection the request came from. It never authors a response.
//!
//! ```yaml
//! - name: switch
//!   type: conductor
//!   config:
//!     origin: east                # optional: stamped as meta conductor.origin on requests sent
//!     known_origins: [west]       # requests stamped west get their reply on out_response_west
//!     correlation_key:            # a list for every MTI class, or a map by class
//!       default: [data.iso8583.field.11, data.iso8583.field.7, data.iso8583.field.32, data.iso8583.field.41]
//!       "08": [data.iso8583.field.11, data.iso8583.field.37]   # network management: no DE 41
//!     park_fields: [data.iso8583.field.62]  # kept back from the request, put on the reply
//!     valet: { store: memory, default_ttl: 30s, retain_after_close: 5s, max_tickets: 100000 }
//!     routes:
//!       - name: visa
//!         match: { field: data.iso8583.field.2, prefix: "4" }
//!         destination: { failover: [ { least_loaded: [out_visa_a, out_visa_b] }, out_backup ] }
//!       - name: mastercard
//!         match: { field: data.iso8583.field.2, ranges: [ { from: "510000", to: "559999" } ] }
//!         when: { field: data.iso8583.field.4, lt: 100000 }   # route's conditions, too
//!         destination: out_mc
//!       - name: rest                                          # no match: catch-all
//!         destination: { weighted: [ { port: out_a, weight: 3 }, { port: out_b, weight: 1 } ] }
//!     breaker: { trip_after: 5, cooldown: 10s, half_open_probes: 1 }
//!     max_in_flight: 1000
//! ```
//!
//! # Ports
//!
//! | port | direction | what travels |
//! | --- | --- | --- |
//! | `in` | input | requests and their retransmissions (a response arriving here is handled as on `in_reply`) |
//! | `in_reply` | input | replies from the destinations |
//! | `out_<name>` | output | requests, one port per port named in the destination trees |
//! | `out_response` | output | replies, with the request's return context restored |
//! | `out_response_<origin>` | output | replies to requests stamped with `conductor.origin` = a known origin |
//! | `error` | output | refusals and expired requests, with `error.reason` |
//!
//! # Configuration
//!
//! | key | default | meaning |
//! | --- | --- | --- |
//! | `correlation_key` | required | field paths (`data.<path>`, `meta.<key>`; `iso8583.field.<n>` is short for `data.iso8583.field.<n>`, the reference's alias; anything else is refused), one list for every MTI class or a map by class (`"08"`) with `default` |
//! | `routes` | required | ordered `{name, match, when, destination}`; the first that holds wins; without `match` and `when` a route is a catch-all |
//! | `routes[].match` | — | `{field, prefix}` (a text or a list) or `{field, ranges: [{from, to}]}`: the first `len(from)` characters of the field's text between `from` and `to` (same length), both included |
//! | `routes[].when` | — | a condition as in `route` (`field` tests, `all`, `any`, `not`, `expr`) |
//! | `routes[].destination` | required | a port `out_<name>` or a tree of `failover`, `round_robin`, `least_loaded` (fewest open tickets), `weighted` |
//! | `origin` | — | stamped as `conductor.origin` on every request sent (replaces the one it came with) |
//! | `known_origins` | `[]` | origins whose requests are answered on `out_response_<origin>` |
//! | `park_fields` | `[]` | fields removed from the request sent and put back on its reply |
//! | `return_context` | `[conn.id, peer.ip, peer.port, iso8583.tpdu, iso8583.raw_header]` | metadata keys that route a reply back: kept with the ticket, removed from the request sent, set on the reply as the request had them (a key the request lacked is removed from the reply) |
//! | `mti_kinds` | `{}` | overrides of the request/response rule by MTI pattern (`"0180"`, `"xx8x"`: digits or `x`): `request`, `response` or `one_way` (routed, no ticket) |
//! | `valet.store` | `memory` | `memory` or `durable` (a snake KV bucket: open tickets and retained replies survive a restart; opened when the gear loads, with the engine's snake handle; see [`DurableValet`] for what a crash may lose) |
//! | `valet.bucket` | `conductor_tickets` | the bucket of the durable store |
//! | `valet.default_ttl` | `1m` | how long a ticket waits for its reply |
//! | `valet.retain_after_close` | `5s` | how long a reply is kept to answer a retransmission |
//! | `valet.max_tickets` | `100000` | the most open tickets (and retained replies) |
//! | `breaker` | — | `{trip_after, cooldown (10s), half_open_probes (1)}`, per destination port |
//! | `max_in_flight` | — | the most open tickets per destination port |
//!
//! # Requests and responses
//!
//! The MTI comes from `meta.iso8583.mti` (four digits; otherwise `bad_mti`). Its third digit,
//! the function, decides: even (request, advice, notification) opens a ticket, odd (request
//! response, advice response, notification acknowledgement) answers one; `mti_kinds`
//! overrides it for odd classes (ISO 8583:1987's x8x and x9x acknowledgements, a scheme's
//! private MTIs). The key is the MTI class (first two digits), the request's function digit
//! (a response's made even: 0110 and 0100 share a key, 0130 answers 0120) and the text of
//! each key field of that class: a reply is keyed with its request's class, so a class
//! without DE 41 (network management) is keyed without it.
//!
//! # Behaviour
//!
//! - A new key opens a ticket; the request, stripped of its return context and parked fields
//!   (and with `conductor.origin` set to `origin`, or removed), goes out on the port its
//!   route chooses. The ticket is open before the request leaves the gear, so no reply can
//!   outrun it.
//! - A retransmission of an open key is not sent again: its requester is attached to the
//!   ticket (dropped as `attached`; a requester with the same return context as one already
//!   waiting is dropped as `retransmission`). When the reply comes, **every** requester gets
//!   it, each with its own return context.
//! - A key closed within `retain_after_close` is answered at once with the retained reply.
//! - A reply that matches no open ticket goes to `error` (`unmatched_reply`).
//! - A ticket past its deadline sends its request (once per requester, each with its own
//!   return context) to `error` with `timeout`. A task sweeps every 50 ms, on the engine's
//!   clock, and each message sweeps first too.
//!
//! # Cost
//!
//! Per message: one uncontended lock (shared with the sweeping task), one hash lookup, and
//! for a request one copy of it kept in the ticket; for a reply one copy retained for
//! replay. Expiry pops a deadline heap: nothing scans the tickets. (In a debug build on the
//! shared 2-core development machine, 50,000 request/reply pairs went through the gear in
//! batches of 64 at about 24,000 pairs per second, harness included.)
//!
//! # Circuit breaker and in-flight cap
//!
//! Per destination port: a `timeout` counts as a failure (an error reply does not: the
//! destination answered); after `trip_after` consecutive failures the port is open,
//! unavailable for `cooldown`; then it is half-open and lets `half_open_probes` requests
//! through; a reply closes it, a failed probe opens it again. With `max_in_flight`, a port
//! with that many open tickets is unavailable. Both join the engine's availability (the link
//! state of the I/O gear the port leads to): `failover`, `least_loaded` and the others pass
//! over such a port.
//!
//! # Errors and counts
//!
//! `error.reason` is one of `bad_mti`, `no_key` (a key field is missing, or no key for the
//! class), `no_route`, `no_destination`, `valet_full`, `unknown_origin` (a request stamped
//! with an origin not in `known_origins`), `not_a_reply` (a request on `in_reply`),
//! `unmatched_reply`, `timeout`, and `key_too_long` (durable store only: a key too long for
//! a KV key, about 140 bytes with a short gear name). Each is counted in the gear's error count and in the
//! metric `flux.conductor.errors` (labels `gear`, `reason`); retransmissions are counted as
//! drops (`attached`, `retransmission`).
//!
//! Each message sent records its decision under `flux.decision`, as `route` does:
//! `visa -> out_visa_b (failover: out_visa_a unavailable)`, `reply -> out_response`,
//! `replay -> out_response`, `timeout on out_visa_a`, `no_route`.
//!
//! ```
//! # fn main() -> Result<(), sdk::Error> {
//! use fluxmsg::FluxMsg;
//! let mut h = sdk::Harness::new::<gears::conductor::Conductor>(&serde_json::json!({
//!     "correlation_key": ["data.iso8583.field.11", "data.iso8583.field.41"],
//!     "routes": [ { "name": "visa", "match": { "field": "data.iso8583.field.2", "prefix": "4" },
//!                   "destination": "out_visa" } ]
//! }))?;
//! let msg = |mti: &str| -> Result<FluxMsg, fluxmsg::Error> {
//!     Ok(FluxMsg::builder().meta("iso8583.mti", mti).meta("conn.id", "7")
//!         .data_path("iso8583.field.2", "4111111111111111")?
//!         .data_path("iso8583.field.11", "000042")?
//!         .data_path("iso8583.field.41", "TERM0001")?.build())
//! };
//! h.send("in", msg("0100").expect("valid"))?;
//! let sent = h.take("out_visa");
//! assert_eq!(sent[0].meta.get("conn.id"), None, "the return context stays with the ticket");
//!
//! let mut reply = msg("0110").expect("valid");
//! reply.meta.insert("conn.id", "issuer-link".into());
//! h.send("in_reply", reply)?;
//! let answered = h.take("out_response");
//! assert_eq!(answered[0].meta.get("conn.id").map(|t| t.as_str()), Some("7"));
//! # Ok(()) }
//! ```

mod breaker;
mod config;
mod mti;

use std::fmt::Write as _;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use fluxmsg::{FluxMsg, Text};
use sdk::{
    Category, Clock, ConfigError, Context, Direction, Gear, GearError, GearType, InPort,
    LoadFuture, Manifest, OutPort, Outbox, Outcome, PortName, Ports, Terminus,
};

use self::breaker::{BreakerSettings, Gauge, PortState};
pub use self::config::{
    BreakerConfig, Config, Match, Prefixes, Range, RouteConfig, Store, ValetConfig,
};
pub use self::mti::{CorrelationKey, Kind};
use self::mti::{KeySpec, Kinds, Mti};
use crate::condition::{Scratch, Test};
use crate::field::Field;
use crate::offload;
use crate::route::{self, Leaf, Node};
use crate::valet::{
    DurableValet, Lookup, MemoryValet, ReturnContext, Ticket, Valet, ValetError, ValetSettings,
    ValetWriter,
};
use crate::{Error, Factory};

pub(crate) fn register(factory: &mut Factory) -> Result<(), Error> {
    factory.register::<Conductor>()
}

/// The metadata key of a request's origin.
pub const ORIGIN_META: &str = "conductor.origin";
/// How often expired tickets are swept when no message comes.
const SWEEP_EVERY: Duration = Duration::from_millis(50);

/// The error reasons, for the per-reason counters.
const REASONS: [&str; 10] = [
    "bad_mti",
    "key_too_long",
    "no_key",
    "no_route",
    "no_destination",
    "valet_full",
    "unknown_origin",
    "not_a_reply",
    "unmatched_reply",
    "timeout",
];

/// `flux.conductor.errors` by reason.
#[derive(Debug, Default)]
struct Counters(Vec<(&'static str, metrics::Counter)>);

impl Counters {
    fn new(gear: &str) -> Counters {
        Counters(
            REASONS
                .iter()
                .map(|r| {
                    let c = metrics::counter!("flux.conductor.errors", "gear" => gear.to_owned(), "reason" => *r);
                    (*r, c)
                })
                .collect(),
        )
    }

    fn count(&self, reason: &str, n: u64) {
        if let Some((_, c)) = self.0.iter().find(|(r, _)| *r == reason) {
            c.increment(n);
        }
    }
}

/// A route, compiled.
#[derive(Debug)]
struct CompiledRoute {
    label: Box<str>,
    matcher: Option<Matcher>,
    when: Option<Test>,
    node: Node,
}

#[derive(Debug)]
struct Matcher {
    field: Field,
    prefixes: Vec<String>,
    ranges: Vec<(String, String)>,
}

impl Matcher {
    fn matches(&self, msg: &FluxMsg, text: &mut String) -> bool {
        let Some(value) = self.field.get(msg) else {
            return false;
        };
        text.clear();
        value.write_text(text);
        let bytes = text.as_bytes();
        self.prefixes.iter().any(|p| text.starts_with(p.as_str()))
            || self.ranges.iter().any(|(from, to)| {
                bytes.len() >= from.len() && {
                    let head = &bytes[..from.len()];
                    head >= from.as_bytes() && head <= to.as_bytes()
                }
            })
    }
}

/// What the sweeping task shares with the gear: the tickets and the per-port state.
#[derive(Debug)]
struct Core {
    valet: Box<dyn Valet>,
    ports: Vec<PortState>,
    /// Output port names, by index (to find a ticket's port).
    names: Vec<PortName>,
    context_keys: Vec<Text>,
    breaker: Option<BreakerSettings>,
    counters: Counters,
    due: Vec<(Arc<str>, Ticket)>,
}

impl Core {
    fn port_of(&self, name: &str) -> Option<usize> {
        self.names.iter().position(|n| n.as_str() == name)
    }

    /// Hands over the expired tickets as `error` messages (`timeout`), one per requester.
    fn expire(&mut self, now: Duration, into: &mut Vec<FluxMsg>) {
        if self.valet.next_deadline().is_none_or(|d| d > now) {
            return;
        }
        self.valet.expire(&mut self.due);
        let mut n = 0;
        for (_, ticket) in self.due.drain(..) {
            if let Some(i) = self.names.iter().position(|p| *p.as_str() == *ticket.port) {
                let state = &mut self.ports[i];
                state.open = state.open.saturating_sub(1);
                if let Some(s) = &self.breaker
                    && state.breaker.on_failure(now, s)
                {
                    tracing::warn!(port = %ticket.port, cooldown = ?s.cooldown, "A destination's circuit breaker opened after timeouts.");
                }
            }
            let mut msg = ticket.request;
            sdk::decide(&mut msg, format!("timeout on {}", ticket.port));
            let failure = GearError::new("timeout").with_detail(format_args!(
                "no reply from {} before the ticket's deadline",
                ticket.port
            ));
            sdk::mark_error(&mut msg, &failure);
            for ctx in &ticket.attached {
                let mut copy = msg.clone();
                apply_context(&mut copy, &self.context_keys, ctx);
                into.push(copy);
                n += 1;
            }
            into.push(msg);
            n += 1;
        }
        self.counters.count("timeout", n);
    }
}

/// A known origin and where its replies go.
#[derive(Debug)]
struct Origin {
    name: Text,
    port: OutPort,
    reply: Text,
    replay: Text,
}

/// The `conductor` gear (see the [module docs](self)).
#[derive(Debug)]
pub struct Conductor {
    core: Arc<Mutex<Core>>,
    logic: Logic,
}

/// Everything but the shared core.
#[derive(Debug)]
struct Logic {
    kinds: Kinds,
    keys: KeySpec,
    park: Vec<Field>,
    context_keys: Vec<Text>,
    origin: Option<Text>,
    response: OutPort,
    /// Each known origin, its reply port, and the decisions of a reply and a replay there.
    origins: Vec<Origin>,
    in_reply: InPort,
    routes: Vec<CompiledRoute>,
    leaves: Vec<Leaf>,
    scratch: Scratch,
    why: String,
    key: String,
    text: String,
    valet: ValetConfig,
    max_in_flight: Option<u32>,
    /// A route evaluates a Rhai expression: batches run off the async worker.
    scripted: bool,
    clock: Option<Arc<dyn Clock>>,
    writer: Option<ValetWriter>,
    expired: Vec<FluxMsg>,
}

impl GearType for Conductor {
    type Config = Config;

    fn manifest() -> Manifest {
        Manifest::new("conductor", Category::Logic)
            .summary("routes requests by card range and correlates replies; tickets, retransmissions, expiry, breakers")
            .input("in", "requests and their retransmissions")
            .input("in_reply", "replies from the destinations")
            .output("out_response", "replies with the request's return context restored")
            .dynamic_output("out_response_<origin>", "replies to requests from a known origin")
            .dynamic_output("out_<name>", "one port per destination named in the routes")
            .terminus(Terminus::Opaque)
    }

    fn ports(config: &Config) -> Result<Ports, ConfigError> {
        let mut ports = Ports::fixed(&Conductor::manifest());
        let mut names = Vec::new();
        for (i, r) in config.routes.iter().enumerate() {
            let path = format!("routes[{i}].destination");
            let start = names.len();
            route::collect(&r.destination, &path, "conductor", &mut names)?;
            if let Some(bad) = names[start..]
                .iter()
                .find(|n| n.as_str() == "out_response" || n.as_str().starts_with("out_response_"))
            {
                return Err(ConfigError::field(
                    path,
                    format!("{bad} is a reply port of the conductor; name destinations otherwise"),
                ));
            }
        }
        for name in names {
            ports.push(Direction::Output, name);
        }
        for (i, origin) in config.known_origins.iter().enumerate() {
            let name = format!("out_response_{origin}");
            let port = PortName::new(&name).map_err(|_| {
                ConfigError::field(
                    format!("known_origins[{i}]"),
                    format!("{origin:?} cannot name a port: use a-z, 0-9, '_' or '-'"),
                )
            })?;
            ports.push(Direction::Output, port);
        }
        Ok(ports)
    }

    fn new(config: Config, ports: &Ports) -> Result<Conductor, ConfigError> {
        let kinds = Kinds::new(&config.mti_kinds)?;
        let keys = KeySpec::new(&config.correlation_key)?;
        let park = config
            .park_fields
            .iter()
            .enumerate()
            .map(|(i, p)| mti::field(p, &format!("park_fields[{i}]")))
            .collect::<Result<Vec<_>, _>>()?;
        let mut context_keys = Vec::with_capacity(config.return_context.len() + 1);
        for (i, key) in config.return_context.iter().enumerate() {
            if key.is_empty() || key.chars().any(char::is_control) {
                return Err(ConfigError::field(
                    format!("return_context[{i}]"),
                    "a metadata key is non-empty text without control characters",
                ));
            }
            context_keys.push(Text::from(key.as_str()));
        }
        if !context_keys.iter().any(|k| k == ORIGIN_META) {
            context_keys.push(Text::from(ORIGIN_META));
        }
        let origin = match &config.origin {
            Some(o) if o.is_empty() || o.len() > 64 || o.chars().any(char::is_control) => {
                return Err(ConfigError::field(
                    "origin",
                    "an origin is 1 to 64 bytes without control characters",
                ));
            }
            Some(o) => Some(Text::from(o.as_str())),
            None => None,
        };
        let mut origins = Vec::new();
        for origin in &config.known_origins {
            let port = format!("out_response_{origin}");
            origins.push(Origin {
                name: Text::from(origin.as_str()),
                port: ports.resolve_output(&port)?,
                reply: Text::from(format!("reply -> {port}")),
                replay: Text::from(format!("replay -> {port}")),
            });
        }
        let mut leaves = Vec::new();
        let mut routes = Vec::with_capacity(config.routes.len());
        for (i, r) in config.routes.iter().enumerate() {
            let label = route_label(&config.routes, i)?;
            let matcher = match &r.matches {
                Some(m) => Some(matcher(m, &format!("routes[{i}].match"))?),
                None => None,
            };
            let when = match &r.when {
                Some(c) => Some(c.compile(&format!("routes[{i}].when"))?),
                None => None,
            };
            let node = route::node(&r.destination, ports, &label, &mut leaves)?;
            routes.push(CompiledRoute {
                label,
                matcher,
                when,
                node,
            });
        }
        if routes.is_empty() {
            return Err(ConfigError::field("routes", "at least one route"));
        }
        let v = &config.valet;
        if v.default_ttl.get().is_zero() {
            return Err(ConfigError::field("valet.default_ttl", "more than zero"));
        }
        if v.max_tickets == 0 {
            return Err(ConfigError::field("valet.max_tickets", "at least 1"));
        }
        if v.store == Store::Durable {
            snake::token("bucket", &v.bucket).map_err(|e| ConfigError::field("valet.bucket", e))?;
        }
        let breaker = match &config.breaker {
            Some(b) if b.trip_after == 0 => {
                return Err(ConfigError::field("breaker.trip_after", "at least 1"));
            }
            Some(b) if b.half_open_probes == 0 => {
                return Err(ConfigError::field("breaker.half_open_probes", "at least 1"));
            }
            Some(b) => Some(BreakerSettings {
                trip_after: b.trip_after,
                cooldown: b.cooldown.get(),
                half_open_probes: b.half_open_probes,
            }),
            None => None,
        };
        if config.max_in_flight == Some(0) {
            return Err(ConfigError::field("max_in_flight", "at least 1"));
        }
        let settings = valet_settings(v);
        let scripted = routes
            .iter()
            .any(|r| r.when.as_ref().is_some_and(Test::has_expr));
        let core = Core {
            // Replaced in `init`, with the engine's clock.
            valet: Box::new(MemoryValet::new(
                settings,
                Arc::new(sdk::ManualClock::from_unix_secs(0)),
            )),
            ports: vec![PortState::default(); ports.outputs().len()],
            names: ports.outputs().to_vec(),
            context_keys: context_keys.clone(),
            breaker,
            counters: Counters::default(),
            due: Vec::new(),
        };
        Ok(Conductor {
            core: Arc::new(Mutex::new(core)),
            logic: Logic {
                kinds,
                keys,
                park,
                context_keys,
                origin,
                response: ports.resolve_output("out_response")?,
                origins,
                in_reply: ports.resolve_input("in_reply")?,
                routes,
                leaves,
                scratch: Scratch::default(),
                why: String::new(),
                key: String::new(),
                text: String::new(),
                valet: config.valet.clone(),
                max_in_flight: config.max_in_flight,
                scripted,
                clock: None,
                writer: None,
                expired: Vec::new(),
            },
        })
    }
}

fn valet_settings(v: &ValetConfig) -> ValetSettings {
    ValetSettings::new(
        v.default_ttl.get(),
        v.retain_after_close.get(),
        v.max_tickets,
    )
}

/// The longest route name.
const MAX_NAME_LEN: usize = 64;

fn route_label(routes: &[RouteConfig], i: usize) -> Result<Box<str>, ConfigError> {
    let Some(name) = &routes[i].name else {
        return Ok(format!("route {i}").into());
    };
    let path = format!("routes[{i}].name");
    if name.is_empty() || name.len() > MAX_NAME_LEN || name.chars().any(char::is_control) {
        return Err(ConfigError::field(
            path,
            format!("a route name has 1 to {MAX_NAME_LEN} bytes and no control characters"),
        ));
    }
    if matches!(name.as_str(), "reply" | "replay") {
        return Err(ConfigError::field(
            path,
            format!("`{name}` names reply decisions; choose another name"),
        ));
    }
    if let Some(first) = routes[..i]
        .iter()
        .position(|r| r.name.as_deref() == Some(name))
    {
        return Err(ConfigError::field(
            path,
            format!("{name:?} already names routes[{first}]"),
        ));
    }
    Ok(name.as_str().into())
}

fn matcher(m: &Match, path: &str) -> Result<Matcher, ConfigError> {
    let field = mti::field(&m.field, &format!("{path}.field"))?;
    let prefixes = match &m.prefix {
        Some(Prefixes::One(p)) => vec![p.clone()],
        Some(Prefixes::Many(list)) => list.clone(),
        None => Vec::new(),
    };
    let mut ranges = Vec::new();
    for (i, r) in m.ranges.iter().flatten().enumerate() {
        if r.from.is_empty() || r.from.len() != r.to.len() || r.from > r.to {
            return Err(ConfigError::field(
                format!("{path}.ranges[{i}]"),
                "a range has `from` and `to` of the same non-zero length, `from` not above `to`",
            ));
        }
        ranges.push((r.from.clone(), r.to.clone()));
    }
    if prefixes.is_empty() && ranges.is_empty() {
        return Err(ConfigError::field(
            path,
            "give `prefix` (a text or a list) or `ranges`",
        ));
    }
    if prefixes.iter().any(String::is_empty) {
        return Err(ConfigError::field(
            format!("{path}.prefix"),
            "an empty prefix matches everything: leave `match` out for a catch-all",
        ));
    }
    Ok(Matcher {
        field,
        prefixes,
        ranges,
    })
}

/// The return context of `msg`: its values of `keys`, in order.
fn context_of(msg: &FluxMsg, keys: &[Text]) -> ReturnContext {
    keys.iter()
        .filter_map(|k| msg.meta.get(k).map(|v| (k.clone(), v.clone())))
        .collect()
}

/// Sets `msg`'s return-context keys to `ctx`'s values, removing those `ctx` lacks; the
/// origin is never set on a reply.
fn apply_context(msg: &mut FluxMsg, keys: &[Text], ctx: &ReturnContext) {
    for key in keys {
        if key == ORIGIN_META {
            msg.meta.remove(key);
            continue;
        }
        match ctx.iter().find(|(k, _)| k == key) {
            Some((_, v)) => {
                msg.meta.insert(key.clone(), v.clone());
            }
            None => {
                msg.meta.remove(key);
            }
        }
    }
}

fn origin_of(ctx: &ReturnContext) -> Option<&Text> {
    ctx.iter().find(|(k, _)| k == ORIGIN_META).map(|(_, v)| v)
}

fn lock(core: &Mutex<Core>) -> std::sync::MutexGuard<'_, Core> {
    core.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Gear for Conductor {
    fn load<'a>(&'a mut self, ctx: &'a Context) -> LoadFuture<'a> {
        Box::pin(async move {
            if self.logic.valet.store != Store::Durable {
                return Ok(());
            }
            let Some(snake) = ctx.snake() else {
                return Err(GearError::new("no_snake")
                    .with_detail("the durable valet needs the engine's snake handle"));
            };
            let valet = DurableValet::open(
                snake,
                &self.logic.valet.bucket,
                ctx.name(),
                valet_settings(&self.logic.valet),
                ctx.clock(),
            )
            .await
            .map_err(|e| GearError::new("valet").with_detail(e))?;
            self.logic.writer = Some(valet.writer());
            let mut core = lock(&self.core);
            let mut counts = vec![0u32; core.ports.len()];
            let names = &core.names;
            valet.for_each_open(&mut |t| {
                if let Some(i) = names.iter().position(|n| *n.as_str() == *t.port) {
                    counts[i] += 1;
                }
            });
            for (state, n) in core.ports.iter_mut().zip(counts) {
                state.open = n;
            }
            core.valet = Box::new(valet);
            Ok(())
        })
    }

    fn init(&mut self, ctx: &mut Context) -> Result<(), GearError> {
        let clock = ctx.clock();
        let mut core = lock(&self.core);
        core.counters = Counters::new(ctx.name());
        if self.logic.writer.is_none() {
            if self.logic.valet.store == Store::Durable {
                return Err(GearError::new("valet")
                    .with_detail("the durable valet is opened when the gear loads"));
            }
            core.valet = Box::new(MemoryValet::new(
                valet_settings(&self.logic.valet),
                Arc::clone(&clock),
            ));
        }
        drop(core);
        self.logic.clock = Some(clock);
        Ok(())
    }

    fn start(&mut self, ctx: &mut Context) -> Result<(), GearError> {
        if let Some(writer) = self.logic.writer.clone() {
            ctx.spawn(writer.run(ctx.shutdown()));
        }
        let core = Arc::clone(&self.core);
        let emitter = ctx.emitter();
        let shutdown = ctx.shutdown();
        let clock = ctx.clock();
        ctx.spawn(async move {
            let mut tick = tokio::time::interval(SWEEP_EVERY);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            let mut expired = Vec::new();
            loop {
                tokio::select! {
                    _ = tick.tick() => {}
                    () = shutdown.fired() => return,
                }
                lock(&core).expire(clock.now(), &mut expired);
                if !expired.is_empty()
                    && emitter
                        .emit_batch(OutPort::ERROR, std::mem::take(&mut expired))
                        .await
                        .is_err()
                {
                    return;
                }
            }
        });
        Ok(())
    }

    /// With a Rhai expression in a route's `when`, the whole batch in one hand-over to a
    /// thread that may block (`block_in_place`); otherwise message by message.
    fn process_batch(
        &mut self,
        port: InPort,
        batch: &mut Vec<FluxMsg>,
        out: &mut Outbox<'_>,
    ) -> bool {
        if !self.logic.scripted {
            return false;
        }
        offload::each(batch, out, |msg, out| self.process(port, msg, out));
        true
    }

    fn process(
        &mut self,
        port: InPort,
        msg: &mut FluxMsg,
        out: &mut Outbox<'_>,
    ) -> Result<Outcome, GearError> {
        let mut core = lock(&self.core);
        let logic = &mut self.logic;
        let now = logic.clock.as_ref().map_or(Duration::ZERO, |c| c.now());
        core.expire(now, &mut logic.expired);
        for expired in logic.expired.drain(..) {
            out.emit(OutPort::ERROR, expired);
        }
        let result = logic.handle(&mut core, port, msg, out, now);
        if let Err(e) = &result {
            core.counters.count(e.reason(), 1);
        }
        result
    }
}

impl Logic {
    fn handle(
        &mut self,
        core: &mut Core,
        port: InPort,
        msg: &mut FluxMsg,
        out: &mut Outbox<'_>,
        now: Duration,
    ) -> Result<Outcome, GearError> {
        let mti = Mti::of(msg)?;
        let kind = self.kinds.of(&mti);
        if port == self.in_reply {
            if kind != Kind::Response {
                return Err(GearError::new("not_a_reply").with_detail(format_args!(
                    "MTI {} is not a response",
                    String::from_utf8_lossy(&mti.0)
                )));
            }
            return self.reply(core, mti, msg, out);
        }
        match kind {
            Kind::Response => self.reply(core, mti, msg, out),
            Kind::Request => self.request(core, mti, msg, out, now),
            Kind::OneWay => {
                let (port, _) = self.route(core, msg, out, now)?;
                self.strip(msg);
                Ok(Outcome::Emit(port))
            }
        }
    }

    /// The reply port of a requester with this context, and the decisions of a reply and
    /// a replay sent there.
    fn response_port(&self, ctx: &ReturnContext) -> (OutPort, Text, Text) {
        match origin_of(ctx).and_then(|o| self.origins.iter().find(|known| known.name == *o)) {
            Some(o) => (o.port, o.reply.clone(), o.replay.clone()),
            None => (
                self.response,
                Text::from("reply -> out_response"),
                Text::from("replay -> out_response"),
            ),
        }
    }

    fn request(
        &mut self,
        core: &mut Core,
        mti: Mti,
        msg: &mut FluxMsg,
        out: &mut Outbox<'_>,
        now: Duration,
    ) -> Result<Outcome, GearError> {
        self.keys.build(mti, msg, &mut self.key, &mut self.text)?;
        let ctx = context_of(msg, &self.context_keys);
        if let Some(origin) = origin_of(&ctx)
            && !self.origins.iter().any(|known| known.name == *origin)
        {
            return Err(GearError::new("unknown_origin").with_detail(format_args!(
                "the request comes from {origin:?}, which is not in known_origins"
            )));
        }
        match core.valet.lookup(&self.key) {
            Lookup::Closed(outcome) => {
                let mut reply = outcome.clone();
                apply_context(&mut reply, &self.context_keys, &ctx);
                let (port, _, replay) = self.response_port(&ctx);
                sdk::decide(&mut reply, replay);
                *msg = reply;
                return Ok(Outcome::Emit(port));
            }
            Lookup::Open(ticket) => {
                let waiting = context_of(&ticket.request, &self.context_keys) == ctx
                    || ticket.attached.contains(&ctx);
                if waiting {
                    return Ok(Outcome::Drop("retransmission"));
                }
                core.valet.attach(&self.key, ctx);
                return Ok(Outcome::Drop("attached"));
            }
            Lookup::Absent => {}
        }
        let (port, leaf) = self.route(core, msg, out, now)?;
        let name = Text::from(&*self.leaves[leaf].name);
        if let Err(e) = core.valet.park(&self.key, msg.clone(), name) {
            let reason = match e {
                ValetError::KeyTooLong(_) => "key_too_long",
                _ => "valet_full",
            };
            sdk::decide(msg, reason);
            return Err(GearError::new(reason).with_detail(e));
        }
        let state = &mut core.ports[port.index()];
        state.open = state.open.saturating_add(1);
        state.breaker.on_send(now);
        self.strip(msg);
        Ok(Outcome::Emit(port))
    }

    /// Takes the return context and the parked fields off a request that leaves, and
    /// stamps the origin.
    fn strip(&self, msg: &mut FluxMsg) {
        for key in &self.context_keys {
            msg.meta.remove(key);
        }
        for field in &self.park {
            field.take(msg);
        }
        if let Some(origin) = &self.origin {
            msg.meta.insert(ORIGIN_META, origin.clone());
        }
    }

    /// Chooses the destination of a request and records the decision.
    fn route(
        &mut self,
        core: &Core,
        msg: &mut FluxMsg,
        out: &Outbox<'_>,
        now: Duration,
    ) -> Result<(OutPort, usize), GearError> {
        let mut chosen = None;
        for i in 0..self.routes.len() {
            let r = &mut self.routes[i];
            if let Some(m) = &r.matcher
                && !m.matches(msg, &mut self.text)
            {
                continue;
            }
            if let Some(test) = &mut r.when
                && !test.matches(msg, &mut self.scratch)?
            {
                continue;
            }
            chosen = Some(i);
            break;
        }
        let Some(i) = chosen else {
            sdk::decide(msg, "no_route");
            return Err(GearError::new("no_route"));
        };
        let gauge = Gauge {
            out,
            ports: &core.ports,
            now,
            max_in_flight: self.max_in_flight,
            breaker: core.breaker.as_ref(),
        };
        self.why.clear();
        let target = &mut self.routes[i];
        let Some(leaf) = target.node.pick(&self.leaves, &gauge, &mut self.why) else {
            let mut ports = String::new();
            target.node.ports(&self.leaves, &mut ports);
            sdk::decide(
                msg,
                format!("{} -> no_destination ({ports} unavailable)", target.label),
            );
            return Err(GearError::new("no_destination"));
        };
        let l = &self.leaves[leaf];
        if self.why.is_empty() {
            sdk::decide(msg, l.decision.clone());
        } else {
            let mut text = String::with_capacity(l.decision.len() + self.why.len() + 3);
            let _ = write!(text, "{} ({})", l.decision, self.why);
            sdk::decide(msg, text);
        }
        Ok((l.port, leaf))
    }

    fn reply(
        &mut self,
        core: &mut Core,
        mti: Mti,
        msg: &mut FluxMsg,
        out: &mut Outbox<'_>,
    ) -> Result<Outcome, GearError> {
        self.keys.build(mti, msg, &mut self.key, &mut self.text)?;
        let Lookup::Open(ticket) = core.valet.lookup(&self.key) else {
            sdk::decide(msg, "unmatched_reply");
            return Err(
                GearError::new("unmatched_reply").with_detail("no open ticket has the reply's key")
            );
        };
        for field in &self.park {
            if let Some(value) = field.get(&ticket.request) {
                let value = value.to_value();
                if let Err(e) = field.set(msg, value) {
                    tracing::warn!(reason = %e.reason(), "A parked field could not be put back on a reply.");
                }
            }
        }
        msg.meta.remove(ORIGIN_META);
        let Some(ticket) = core.valet.redeem(&self.key, msg.clone()) else {
            return Err(GearError::new("unmatched_reply"));
        };
        if let Some(i) = core.port_of(&ticket.port) {
            let state = &mut core.ports[i];
            state.open = state.open.saturating_sub(1);
            if state.breaker.on_success() {
                tracing::info!(port = %ticket.port, "A destination's circuit breaker closed after a reply.");
            }
        }
        for ctx in &ticket.attached {
            let mut copy = msg.clone();
            apply_context(&mut copy, &self.context_keys, ctx);
            let (port, reply, _) = self.response_port(ctx);
            sdk::decide(&mut copy, reply);
            out.emit(port, copy);
        }
        let ctx = context_of(&ticket.request, &self.context_keys);
        apply_context(msg, &self.context_keys, &ctx);
        let (port, reply, _) = self.response_port(&ctx);
        sdk::decide(msg, reply);
        Ok(Outcome::Emit(port))
    }
}
