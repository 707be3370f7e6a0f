//! The `route` gear: ordered rules choose an output port.
//!
//! Rules are tried in order; the first whose `when` [`Condition`] holds sends the message to
//! its destination. A destination is an output port (`out_<name>`) or a tree of
//! `failover` (the first available), `round_robin` (the next available in turn),
//! `least_loaded` (the available one with the fewest messages in flight; ties in turn) and
//! `weighted` (the available ones in proportion to their weights, smoothly interleaved), as in
//! the reference's conductor. The `conductor` gear uses the same trees. Availability and load come from the engine (the link state of
//! the I/O gear a port leads to, and the depth of its queue).
//!
//! A message that no rule matches goes to `default` if set, else to `error` with
//! `error.reason = no_route`; a matching rule whose destinations are all unavailable sends it
//! to `error` with `no_destination`.
//!
//! # Decisions
//!
//! For every message it routes, the gear records why under [`sdk::DECISION_META`]
//! (`flux.decision`), which the engine moves into the hop it appends, so the message's path
//! answers "why did this message go there?":
//!
//! | case | decision |
//! | --- | --- |
//! | rule 0 matched, its port chosen | `rule 0 -> out_visa` |
//! | a rule with `name: visa` matched | `visa -> out_visa` |
//! | no rule matched, `default` chosen | `default -> out_other` |
//! | a choice skipped unavailable destinations | `rule 0 -> out_visa_b (failover: out_visa_a unavailable)` |
//! | every destination of the rule unavailable (`error`) | `rule 0 -> no_destination (out_visa_a, out_visa_b unavailable)` |
//! | no rule matched, no `default` (`error`) | `no_route` |
//!
//! A rule is named `rule <index>` unless it has a `name`. In parentheses, each choice
//! (`failover`, `round_robin`, `least_loaded`) that passed over unavailable destinations
//! names them, outermost first, separated by `; `; a subtree is shown as
//! `failover[out_a, out_b]`. A `weighted` choice notes its unavailable entries the same way. Without such a detour the text is the one computed when the gear
//! was built, so recording it costs a copy of a short inline string. A decision is cut to
//! [`sdk::MAX_DECISION_LEN`] bytes.
//!
//! ```yaml
//! - name: switch
//!   type: route
//!   config:
//!     rules:
//!       - name: visa
//!         when: { field: data.pan, prefix: "4" }
//!         to: { failover: [ { least_loaded: [out_visa_a, out_visa_b] }, out_backup ] }
//!       - when: { field: data.pan, regex: "^5[1-5]" }
//!         to: out_mastercard
//!       - when: { all: [ { field: data.amount, gt: 10000 }, { field: meta.country, not_equals: FR } ] }
//!         to: { round_robin: [out_review_1, out_review_2] }
//!       - when: { field: data.pan, prefix: "6" }
//!         # 3 of every 4 to out_a, interleaved (a, a, b, a, ...); an entry may be a subtree
//!         to: { weighted: [ { port: out_a, weight: 3 }, { port: out_b, weight: 1 } ] }
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
//! let visa = h.take("out_visa");
//! assert_eq!(visa[0].meta.get(sdk::DECISION_META).map(|d| d.as_str()), Some("rule 0 -> out_visa"));
//! let other = h.take("out_other");
//! assert_eq!(other[0].meta.get(sdk::DECISION_META).map(|d| d.as_str()), Some("default -> out_other"));
//! # Ok(()) }
//! ```

use std::fmt::Write as _;

use fluxmsg::{FluxMsg, Text};
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
    /// A name for the rule in the decisions the gear records (`visa -> out_visa`); without
    /// it, `rule <index>`. Unique among the rules, 1 to 64 characters, no control characters,
    /// and not `default`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 64))]
    pub name: Option<String>,
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
    /// The available destinations in proportion to their weights, smoothly interleaved
    /// (weights 3 and 1 give `a, a, b, a, ...`); an unavailable one is passed over and the
    /// others share its turns.
    Weighted {
        /// The destinations and their weights.
        weighted: Vec<WeightedEntry>,
    },
}

/// One entry of a `weighted` destination.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct WeightedEntry {
    /// The output port, or a subtree.
    #[serde(alias = "to")]
    pub port: Destination,
    /// Its share, 1 to 1,000,000.
    #[schemars(range(min = 1, max = 1_000_000))]
    pub weight: u32,
}

/// The largest weight of a `weighted` entry.
const MAX_WEIGHT: u32 = 1_000_000;

/// A destination tree with its ports resolved; a port is an index into the gear's leaves.
#[derive(Debug)]
pub(crate) enum Node {
    Port(usize),
    Failover(Vec<Node>),
    RoundRobin(Vec<Node>, usize),
    LeastLoaded(Vec<Node>, usize),
    /// The children, their weights, and their current scores (smooth weighted round robin).
    Weighted(Vec<Node>, Vec<u32>, Vec<i64>),
}

/// A port as one rule (or the default) reaches it.
#[derive(Debug)]
pub(crate) struct Leaf {
    pub(crate) port: OutPort,
    pub(crate) name: Box<str>,
    /// `<rule> -> <port>`, computed when the gear is built.
    pub(crate) decision: Text,
}

/// What a destination tree asks about its ports when it chooses: whether each is available
/// and, if so, how loaded it is. `route` asks the engine ([`Outbox::status`]); the
/// `conductor` adds its circuit breakers, its in-flight cap and its open tickets.
pub(crate) trait Gauge {
    /// `None` when `port` cannot take a message now; otherwise its load.
    fn gauge(&self, port: OutPort) -> Option<u32>;
}

impl Gauge for Outbox<'_> {
    fn gauge(&self, port: OutPort) -> Option<u32> {
        let status = self.status(port);
        status.is_available().then(|| status.load())
    }
}

/// A rule or the default, compiled.
#[derive(Debug)]
struct Target {
    /// `rule <index>`, the rule's name, or `default`.
    label: Box<str>,
    node: Node,
}

/// The `route` gear (see the [module docs](self)).
#[derive(Debug)]
pub struct Route {
    rules: Vec<(Test, Target)>,
    default: Option<Target>,
    leaves: Vec<Leaf>,
    scratch: Scratch,
    /// The detours of the current choice (see [`Node::pick`]); empty on the common path.
    why: String,
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
            collect(&rule.to, &format!("rules[{i}].to"), "route", &mut names)?;
        }
        if let Some(default) = &config.default {
            collect(default, "default", "route", &mut names)?;
        }
        for name in names {
            ports.push(Direction::Output, name);
        }
        Ok(ports)
    }

    fn new(config: Config, ports: &Ports) -> Result<Route, ConfigError> {
        let mut leaves = Vec::new();
        let mut rules = Vec::with_capacity(config.rules.len());
        for (i, rule) in config.rules.iter().enumerate() {
            let label = rule_label(&config.rules, i)?;
            let test = rule.when.compile(&format!("rules[{i}].when"))?;
            let node = node(&rule.to, ports, &label, &mut leaves)?;
            rules.push((test, Target { label, node }));
        }
        let default = match &config.default {
            Some(d) => Some(Target {
                node: node(d, ports, "default", &mut leaves)?,
                label: "default".into(),
            }),
            None => None,
        };
        Ok(Route {
            scripted: rules.iter().any(|(test, _)| test.has_expr()),
            rules,
            default,
            leaves,
            scratch: Scratch::default(),
            why: String::new(),
        })
    }
}

/// Checks every port a destination of the gear type `gear` names and collects them.
pub(crate) fn collect(
    dest: &Destination,
    path: &str,
    gear: &str,
    names: &mut Vec<PortName>,
) -> Result<(), ConfigError> {
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
                        "{name:?} is not an output port of {gear}: name it out_<name> with a-z, 0-9, '_' or '-'"
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
        Destination::Weighted { weighted } => {
            if weighted.is_empty() {
                return Err(ConfigError::field(
                    format!("{path}.weighted"),
                    "an empty list",
                ));
            }
            for (i, entry) in weighted.iter().enumerate() {
                if entry.weight == 0 || entry.weight > MAX_WEIGHT {
                    return Err(ConfigError::field(
                        format!("{path}.weighted[{i}].weight"),
                        format!("a weight is 1 to {MAX_WEIGHT}"),
                    ));
                }
                collect(
                    &entry.port,
                    &format!("{path}.weighted[{i}].port"),
                    gear,
                    names,
                )?;
            }
            return Ok(());
        }
    };
    if children.is_empty() {
        return Err(ConfigError::field(
            format!("{path}.{kind}"),
            "an empty list",
        ));
    }
    for (i, child) in children.iter().enumerate() {
        collect(child, &format!("{path}.{kind}[{i}]"), gear, names)?;
    }
    Ok(())
}

/// The longest rule name.
const MAX_NAME_LEN: usize = 64;

/// How rule `i` is named in decisions: its `name`, checked, or `rule <i>`.
fn rule_label(rules: &[Rule], i: usize) -> Result<Box<str>, ConfigError> {
    let Some(name) = &rules[i].name else {
        return Ok(format!("rule {i}").into());
    };
    let path = format!("rules[{i}].name");
    if name.is_empty() || name.len() > MAX_NAME_LEN {
        return Err(ConfigError::field(
            path,
            format!("a rule name has 1 to {MAX_NAME_LEN} bytes"),
        ));
    }
    if name.chars().any(char::is_control) {
        return Err(ConfigError::field(
            path,
            "a rule name has no control characters",
        ));
    }
    if name == "default" {
        return Err(ConfigError::field(
            path,
            "`default` names the default destination in decisions; choose another name",
        ));
    }
    if let Some(first) = rules[..i]
        .iter()
        .position(|r| r.name.as_deref() == Some(name))
    {
        return Err(ConfigError::field(
            path,
            format!("{name:?} already names rules[{first}]"),
        ));
    }
    Ok(name.as_str().into())
}

/// The destination tree with its ports resolved (every one is in `ports`: [`Route::ports`]
/// collected them from the same configuration), each port a new leaf whose decision names
/// `label`.
pub(crate) fn node(
    dest: &Destination,
    ports: &Ports,
    label: &str,
    leaves: &mut Vec<Leaf>,
) -> Result<Node, ConfigError> {
    let mut all = |list: &[Destination]| {
        list.iter()
            .map(|d| node(d, ports, label, leaves))
            .collect::<Result<Vec<_>, _>>()
    };
    Ok(match dest {
        Destination::Port(name) => {
            let port = ports.resolve_output(name)?;
            leaves.push(Leaf {
                port,
                name: name.as_str().into(),
                decision: Text::from(format!("{label} -> {name}")),
            });
            Node::Port(leaves.len() - 1)
        }
        Destination::Failover { failover } => Node::Failover(all(failover)?),
        Destination::RoundRobin { round_robin } => Node::RoundRobin(all(round_robin)?, 0),
        Destination::LeastLoaded { least_loaded } => Node::LeastLoaded(all(least_loaded)?, 0),
        Destination::Weighted { weighted } => {
            let children = weighted
                .iter()
                .map(|e| node(&e.port, ports, label, leaves))
                .collect::<Result<Vec<_>, _>>()?;
            let weights = weighted.iter().map(|e| e.weight.max(1)).collect();
            let scores = vec![0; weighted.len()];
            Node::Weighted(children, weights, scores)
        }
    })
}

impl Node {
    /// The fewest messages in flight among the available ports below, without choosing.
    pub(crate) fn load(&self, leaves: &[Leaf], out: &impl Gauge) -> Option<u32> {
        match self {
            Node::Port(leaf) => out.gauge(leaves[*leaf].port),
            Node::Failover(children) => children.iter().find_map(|c| c.load(leaves, out)),
            Node::RoundRobin(children, _)
            | Node::LeastLoaded(children, _)
            | Node::Weighted(children, ..) => {
                children.iter().filter_map(|c| c.load(leaves, out)).min()
            }
        }
    }

    /// Chooses an available port (its leaf), moving round-robin cursors.
    ///
    /// A choice that passes over unavailable children notes them in `why`, before the notes
    /// of the child it chose (outermost first); a node that finds nothing leaves `why` as it
    /// found it, and its parent names it whole.
    pub(crate) fn pick(
        &mut self,
        leaves: &[Leaf],
        out: &impl Gauge,
        why: &mut String,
    ) -> Option<usize> {
        let start = why.len();
        match self {
            Node::Port(leaf) => out.gauge(leaves[*leaf].port).map(|_| *leaf),
            Node::Failover(children) => {
                for k in 0..children.len() {
                    if let Some(leaf) = children[k].pick(leaves, out, why) {
                        note(why, start, "failover", &children[..k], leaves);
                        return Some(leaf);
                    }
                }
                None
            }
            Node::RoundRobin(children, next) => {
                let n = children.len();
                for k in 0..n {
                    let i = (*next + k) % n;
                    if let Some(leaf) = children[i].pick(leaves, out, why) {
                        let skipped = (0..k).map(|j| &children[(*next + j) % n]);
                        note(why, start, "round_robin", skipped, leaves);
                        *next = (i + 1) % n;
                        return Some(leaf);
                    }
                }
                None
            }
            Node::LeastLoaded(children, next) => {
                let n = children.len();
                let mut best: Option<(u32, usize)> = None;
                for k in 0..n {
                    let i = (*next + k) % n;
                    if let Some(load) = children[i].load(leaves, out)
                        && best.is_none_or(|(b, _)| load < b)
                    {
                        best = Some((load, i));
                    }
                }
                let (_, i) = best?;
                *next = (i + 1) % n;
                // A status may change between reading the loads and choosing: then take any
                // child that can still take the message, in turn.
                let leaf = (0..n).find_map(|k| children[(i + k) % n].pick(leaves, out, why))?;
                let unavailable = children.iter().filter(|c| c.load(leaves, out).is_none());
                note(why, start, "least_loaded", unavailable, leaves);
                Some(leaf)
            }
            Node::Weighted(children, weights, scores) => {
                // Smooth weighted round robin over the available children: each gains its
                // weight, the highest score is chosen and pays back the total.
                let mut total = 0i64;
                let mut best: Option<usize> = None;
                for i in 0..children.len() {
                    if children[i].load(leaves, out).is_none() {
                        continue;
                    }
                    let weight = i64::from(weights[i]);
                    total += weight;
                    scores[i] += weight;
                    if best.is_none_or(|b| scores[i] > scores[b]) {
                        best = Some(i);
                    }
                }
                let i = best?;
                scores[i] -= total;
                let n = children.len();
                let leaf = (0..n).find_map(|k| children[(i + k) % n].pick(leaves, out, why))?;
                let unavailable = children.iter().filter(|c| c.load(leaves, out).is_none());
                note(why, start, "weighted", unavailable, leaves);
                Some(leaf)
            }
        }
    }

    /// Writes the node for a decision: a port's name, or `failover[out_a, out_b]`.
    pub(crate) fn describe(&self, leaves: &[Leaf], to: &mut String) {
        let (kind, children) = match self {
            Node::Port(leaf) => {
                to.push_str(&leaves[*leaf].name);
                return;
            }
            Node::Failover(children) => ("failover", children),
            Node::RoundRobin(children, _) => ("round_robin", children),
            Node::LeastLoaded(children, _) => ("least_loaded", children),
            Node::Weighted(children, ..) => ("weighted", children),
        };
        to.push_str(kind);
        to.push('[');
        for (i, child) in children.iter().enumerate() {
            if i > 0 {
                to.push_str(", ");
            }
            child.describe(leaves, to);
        }
        to.push(']');
    }

    /// Writes the names of every port below, separated by commas.
    pub(crate) fn ports(&self, leaves: &[Leaf], to: &mut String) {
        match self {
            Node::Port(leaf) => {
                if !to.is_empty() {
                    to.push_str(", ");
                }
                to.push_str(&leaves[*leaf].name);
            }
            Node::Failover(children)
            | Node::RoundRobin(children, _)
            | Node::LeastLoaded(children, _)
            | Node::Weighted(children, ..) => {
                children.iter().for_each(|c| c.ports(leaves, to));
            }
        }
    }
}

/// Notes at `start` of `why` that the choice `kind` passed over `skipped` (if any) because
/// they were unavailable: `failover: out_a, out_b unavailable`.
fn note<'n>(
    why: &mut String,
    start: usize,
    kind: &str,
    skipped: impl IntoIterator<Item = &'n Node>,
    leaves: &[Leaf],
) {
    let mut skipped = skipped.into_iter().peekable();
    if skipped.peek().is_none() {
        return;
    }
    let mut text = String::from(kind);
    text.push_str(": ");
    for (i, node) in skipped.enumerate() {
        if i > 0 {
            text.push_str(", ");
        }
        node.describe(leaves, &mut text);
    }
    text.push_str(" unavailable");
    if why.len() > start {
        text.push_str("; ");
    }
    why.insert_str(start, &text);
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
    /// The port for `msg`: the destination of the first rule it matches, or the default; the
    /// decision goes in `msg`'s metadata (see the [module docs](self)).
    fn choose(&mut self, msg: &mut FluxMsg, out: &Outbox<'_>) -> Result<Outcome, GearError> {
        let mut target = None;
        for (test, t) in &mut self.rules {
            if test.matches(msg, &mut self.scratch)? {
                target = Some(t);
                break;
            }
        }
        let Some(target) = target.or(self.default.as_mut()) else {
            sdk::decide(msg, "no_route");
            return Err(GearError::new("no_route"));
        };
        self.why.clear();
        let Some(leaf) = target.node.pick(&self.leaves, out, &mut self.why) else {
            let mut ports = String::new();
            target.node.ports(&self.leaves, &mut ports);
            let label = &target.label;
            sdk::decide(
                msg,
                format!("{label} -> no_destination ({ports} unavailable)"),
            );
            return Err(GearError::new("no_destination"));
        };
        let leaf = &self.leaves[leaf];
        if self.why.is_empty() {
            sdk::decide(msg, leaf.decision.clone());
        } else {
            let mut text = String::with_capacity(leaf.decision.len() + self.why.len() + 3);
            let _ = write!(text, "{} ({})", leaf.decision, self.why);
            sdk::decide(msg, text);
        }
        Ok(Outcome::Emit(leaf.port))
    }
}
