//! The conductor's configuration.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use sdk::HumanDuration;
use serde::{Deserialize, Serialize};

use super::mti::{CorrelationKey, Kind};
use crate::condition::Condition;
use crate::route::Destination;

/// The configuration of a `conductor` gear (see the [module docs](super)).
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct Config {
    /// The key fields, for every MTI class or by class.
    pub correlation_key: CorrelationKey,
    /// The routes, tried in order.
    pub routes: Vec<RouteConfig>,
    /// Stamped as `conductor.origin` on the requests sent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub origin: Option<String>,
    /// Origins whose requests are answered on `out_response_<origin>`.
    #[serde(default)]
    pub known_origins: Vec<String>,
    /// Fields removed from the request sent and restored on its reply.
    #[serde(default)]
    pub park_fields: Vec<String>,
    /// The metadata keys that route a reply back to its requester.
    #[serde(default = "default_return_context")]
    pub return_context: Vec<String>,
    /// Request/response overrides by MTI pattern.
    #[serde(default)]
    pub mti_kinds: BTreeMap<String, Kind>,
    /// The ticket store.
    #[serde(default)]
    pub valet: ValetConfig,
    /// A circuit breaker per destination port.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub breaker: Option<BreakerConfig>,
    /// The most open tickets per destination port.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub max_in_flight: Option<u32>,
}

fn default_return_context() -> Vec<String> {
    [
        "conn.id",
        "peer.ip",
        "peer.port",
        "iso8583.tpdu",
        "iso8583.raw_header",
    ]
    .map(String::from)
    .to_vec()
}

/// One route.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct RouteConfig {
    /// Its name in decisions; `route <index>` without it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// A prefix or range test on one field.
    #[serde(default, rename = "match", skip_serializing_if = "Option::is_none")]
    pub matches: Option<Match>,
    /// A condition, as `route`'s.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub when: Option<Condition>,
    /// Where its requests go.
    pub destination: Destination,
}

/// A prefix or range test on one field.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct Match {
    /// The field tested.
    pub field: String,
    /// The field's text starts with this (or one of these).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prefix: Option<Prefixes>,
    /// The field's first characters fall in one of these ranges.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ranges: Option<Vec<Range>>,
}

/// One prefix or several.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(untagged)]
#[non_exhaustive]
pub enum Prefixes {
    /// One prefix.
    One(String),
    /// Any of these.
    Many(Vec<String>),
}

/// A range of leading characters (a BIN range): `from` and `to` have the same length.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct Range {
    /// The lowest, included.
    pub from: String,
    /// The highest, included.
    pub to: String,
}

/// Where tickets are kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Store {
    /// In memory (lost if the process dies).
    #[default]
    Memory,
    /// In memory and in a snake KV bucket.
    Durable,
}

/// The valet's configuration.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
#[non_exhaustive]
pub struct ValetConfig {
    /// `memory` or `durable`.
    pub store: Store,
    /// The bucket of the durable store.
    pub bucket: String,
    /// How long a ticket waits for its reply.
    pub default_ttl: HumanDuration,
    /// How long a reply is retained after its ticket closed.
    pub retain_after_close: HumanDuration,
    /// The most open tickets.
    #[schemars(range(min = 1))]
    pub max_tickets: usize,
}

impl Default for ValetConfig {
    fn default() -> Self {
        ValetConfig {
            store: Store::Memory,
            bucket: "conductor_tickets".to_owned(),
            default_ttl: HumanDuration(crate::valet::DEFAULT_TTL),
            retain_after_close: HumanDuration(crate::valet::DEFAULT_RETAIN),
            max_tickets: crate::valet::DEFAULT_MAX_TICKETS,
        }
    }
}

/// The circuit breaker's configuration.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct BreakerConfig {
    /// Consecutive failures (timeouts) that open it.
    #[schemars(range(min = 1))]
    pub trip_after: u32,
    /// How long it stays open.
    #[serde(default = "default_cooldown")]
    pub cooldown: HumanDuration,
    /// Requests let through when the cooldown is over, before a reply closes it.
    #[serde(default = "default_probes")]
    #[schemars(range(min = 1))]
    pub half_open_probes: u32,
}

fn default_cooldown() -> HumanDuration {
    HumanDuration::from_secs(10)
}

fn default_probes() -> u32 {
    1
}
