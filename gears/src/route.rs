//! The `route` gear: ordered rules choose an output port.
//!
//! Rules are tried in order; the first whose `when` [`Condition`] holds sends the message to
//! its destination. A destination is an output port (`out_<name>`) or a tree of
//! `failover` (the first available), `round_robin` (the next available in turn) and
//! `least_loaded` (the available one with the fewest messages in flight; ties in turn), as in
//! the reference's conductor. Availability and load come from the engine (the link state of
//! the I/O gear a port leads to, and the depth of its queue).
//!
//! A message that no rule matches goes to `default` if set, else to `error` with
//! `error.reason = no_route`; a matching rule whose destinations are all unavailable sends it
//! to `error` with `no_destination`.
//!
//! ```yaml
//! - name: switch
//!   type: route
//!   config:
//!     rules:
//!       - when: { field: data.pan, prefix: "4" }
//!         to: { failover: [ { least_loaded: [out_visa_a, out_visa_b] }, out_backup ] }
//!       - when: { field: data.pan, regex: "^5[1-5]" }
//!         to: out_mastercard
//!       - when: { all: [ { field: data.amount, gt: 10000 }, { field: meta.country, not_equals: FR } ] }
//!         to: { round_robin: [out_review_1, out_review_2] }
//!     default: out_other
//! ```
//!
//! The gear's output ports are exactly the ports its rules and `default` name; a wire from any
//! other port is refused at validation.
//!
//! ```
//! # fn main() -> Result<(), sdk::Error> {
//! use fluxmsg::FluxMsg;
//! let mut h = sdk::Harness::new::<gears::route::Route>(&serde_json::json!({
//!     "rules": [ { "when": { "field": "data.pan", "prefix": "4" }, "to": "out_visa" } ],
//!     "default": "out_other"
//! }))?;
//! h.send("in", FluxMsg::builder().data("pan", "4111").build())?;
//! h.send("in", FluxMsg::builder().data("pan", "5500").build())?;
//! assert_eq!(h.take("out_visa").len(), 1);
//! assert_eq!(h.take("out_other").len(), 1);
//! # Ok(()) }
//! ```

use fluxmsg::FluxMsg;
use schemars::JsonSchema;
use sdk::{
    Category, ConfigError, Direction, Gear, GearError, GearType, InPort, Manifest, OutPort, Outbox,
    Outcome, PortName, Ports, Terminus,
};
use serde::{Deserialize, Serialize};

use crate::condition::{Condition, Scratch, Test};
use crate::offload;
use crate::{Error, Factory};

pub(crate) fn register(factory: &mut Factory) -> Result<(), Error> {
    factory.register::<Route>()
}

/// The configuration of a `route` gear.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct Config {
    /// The rules, tried in order.
    pub rules: Vec<Rule>,
    /// Where messages that match no rule go; without it they go to `error` (`no_route`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default: Option<Destination>,
}

/// One rule: a condition and where matching messages go.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct Rule {
    /// The condition.
    pub when: Condition,
    /// The destination.
    pub to: Destination,
}

/// An output port, or a tree of choices between destinations.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(untagged, deny_unknown_fields)]
#[non_exhaustive]
pub enum Destination {
    /// An output port, `out_<name>`.
    Port(String),
    /// The first available destination, in order.
    Failover {
        /// The destinations, in order of preference.
        failover: Vec<Destination>,
    },
    /// The next available destination, in turn.
    RoundRobin {
        /// The destinations.
        round_robin: Vec<Destination>,
    },
    /// The available destination with the fewest messages in flight; ties in turn.
    LeastLoaded {
        /// The destinations.
        least_loaded: Vec<Destination>,
    },
}

#[derive(Debug)]
enum Node {
    Port(OutPort),
    Failover(Vec<Node>),
    RoundRobin(Vec<Node>, usize),
    LeastLoaded(Vec<Node>, usize),
}

/// The `route` gear (see the [module docs](self)).
#[derive(Debug)]
pub struct Route {
    rules: Vec<(Test, Node)>,
    default: Option<Node>,
    scratch: Scratch,
    /// A rule evaluates a Rhai expression: batches run off the async worker.
    scripted: bool,
}

impl GearType for Route {
    type Config = Config;

    fn manifest() -> Manifest {
        Manifest::new("route", Category::Logic)
            .summary("ordered rules choose an output port; failover, round-robin, least-loaded")
            .input("in", "messages to route")
            .dynamic_output("out_<name>", "one port per destination named in the rules")
            .terminus(Terminus::Opaque)
    }

    fn ports(config: &Config) -> Result<Ports, ConfigError> {
        let mut ports = Ports::fixed(&Route::manifest());
        let mut names = Vec::new();
        for (i, rule) in config.rules.iter().enumerate() {
            collect(&rule.to, &format!("rules[{i}].to"), &mut names)?;
        }
        if let Some(default) = &config.default {
            collect(default, "default", &mut names)?;
        }
        for name in names {
            ports.push(Direction::Output, name);
        }
        Ok(ports)
    }

    fn new(config: Config, ports: &Ports) -> Result<Route, ConfigError> {
        let rules = config
            .rules
            .iter()
            .enumerate()
            .map(|(i, rule)| {
                Ok((
                    rule.when.compile(&format!("rules[{i}].when"))?,
                    node(&rule.to, ports)?,
                ))
            })
            .collect::<Result<Vec<(Test, Node)>, ConfigError>>()?;
        Ok(Route {
            scripted: rules.iter().any(|(test, _)| test.has_expr()),
            rules,
            default: config
                .default
                .as_ref()
                .map(|d| node(d, ports))
                .transpose()?,
            scratch: Scratch::default(),
        })
    }
}

/// Checks every port a destination names and collects them.
fn collect(dest: &Destination, path: &str, names: &mut Vec<PortName>) -> Result<(), ConfigError> {
    let (kind, children) = match dest {
        Destination::Port(name) => {
            let valid = name
                .strip_prefix("out_")
                .is_some_and(|rest| !rest.is_empty())
                && PortName::is_valid(name);
            if !valid {
                return Err(ConfigError::field(
                    path,
                    format!(
                        "{name:?} is not an output port of route: name it out_<name> with a-z, 0-9, '_' or '-'"
                    ),
                ));
            }
            if let Ok(name) = PortName::new(name) {
                names.push(name);
            }
            return Ok(());
        }
        Destination::Failover { failover } => ("failover", failover),
        Destination::RoundRobin { round_robin } => ("round_robin", round_robin),
        Destination::LeastLoaded { least_loaded } => ("least_loaded", least_loaded),
    };
    if children.is_empty() {
        return Err(ConfigError::field(
            format!("{path}.{kind}"),
            "an empty list",
        ));
    }
    for (i, child) in children.iter().enumerate() {
        collect(child, &format!("{path}.{kind}[{i}]"), names)?;
    }
    Ok(())
}

/// The destination tree with its ports resolved (every one is in `ports`: [`Route::ports`]
/// collected them from the same configuration).
fn node(dest: &Destination, ports: &Ports) -> Result<Node, ConfigError> {
    let all = |list: &[Destination]| {
        list.iter()
            .map(|d| node(d, ports))
            .collect::<Result<Vec<_>, _>>()
    };
    Ok(match dest {
        Destination::Port(name) => Node::Port(ports.resolve_output(name)?),
        Destination::Failover { failover } => Node::Failover(all(failover)?),
        Destination::RoundRobin { round_robin } => Node::RoundRobin(all(round_robin)?, 0),
        Destination::LeastLoaded { least_loaded } => Node::LeastLoaded(all(least_loaded)?, 0),
    })
}

impl Node {
    /// The fewest messages in flight among the available ports below, without choosing.
    fn load(&self, out: &Outbox<'_>) -> Option<u32> {
        match self {
            Node::Port(port) => {
                let status = out.status(*port);
                status.is_available().then(|| status.load())
            }
            Node::Failover(children) => children.iter().find_map(|c| c.load(out)),
            Node::RoundRobin(children, _) | Node::LeastLoaded(children, _) => {
                children.iter().filter_map(|c| c.load(out)).min()
            }
        }
    }

    /// Chooses an available port, moving round-robin cursors.
    fn pick(&mut self, out: &Outbox<'_>) -> Option<OutPort> {
        match self {
            Node::Port(port) => out.status(*port).is_available().then_some(*port),
            Node::Failover(children) => children.iter_mut().find_map(|c| c.pick(out)),
            Node::RoundRobin(children, next) => {
                let n = children.len();
                for k in 0..n {
                    let i = (*next + k) % n;
                    if let Some(port) = children[i].pick(out) {
                        *next = (i + 1) % n;
                        return Some(port);
                    }
                }
                None
            }
            Node::LeastLoaded(children, next) => {
                let n = children.len();
                let mut best: Option<(u32, usize)> = None;
                for k in 0..n {
                    let i = (*next + k) % n;
                    if let Some(load) = children[i].load(out)
                        && best.is_none_or(|(b, _)| load < b)
                    {
                        best = Some((load, i));
                    }
                }
                let (_, i) = best?;
                *next = (i + 1) % n;
                // A status may change between reading the loads and choosing: then take any
                // child that can still take the message, in turn.
                (0..n).find_map(|k| children[(i + k) % n].pick(out))
            }
        }
    }
}

impl Gear for Route {
    fn process(
        &mut self,
        _: InPort,
        msg: &mut FluxMsg,
        out: &mut Outbox<'_>,
    ) -> Result<Outcome, GearError> {
        self.choose(msg, out)
    }

    /// With a Rhai expression in a rule, the whole batch in one hand-over to a thread that
    /// may block (`block_in_place`); otherwise message by message through `process`.
    fn process_batch(&mut self, _: InPort, batch: &mut Vec<FluxMsg>, out: &mut Outbox<'_>) -> bool {
        if !self.scripted {
            return false;
        }
        offload::each(batch, out, |msg, out| self.choose(msg, out));
        true
    }
}

impl Route {
    /// The port for `msg`: the destination of the first rule it matches, or the default.
    fn choose(&mut self, msg: &FluxMsg, out: &Outbox<'_>) -> Result<Outcome, GearError> {
        for (test, node) in &mut self.rules {
            if test.matches(msg, &mut self.scratch)? {
                return node
                    .pick(out)
                    .map(Outcome::Emit)
                    .ok_or_else(|| GearError::new("no_destination"));
            }
        }
        match &mut self.default {
            Some(node) => node
                .pick(out)
                .map(Outcome::Emit)
                .ok_or_else(|| GearError::new("no_destination")),
            None => Err(GearError::new("no_route")),
        }
    }
}
