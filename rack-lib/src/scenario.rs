//! The scenario model: what a YAML scenario says, parsed with a position on every error and
//! checked against the gear catalog before anything runs.
//!
//! The schema is the reference's (meta, racks, gears, wires), so that scenarios written for
//! the Go fluxrig run unchanged when they use gears we have:
//!
//! ```yaml
//! meta: { name: demo, version: 1.0.0 }
//! racks:
//!   - { name: rack-east, labels: { region: east } }
//!   - { name: rack-west, labels: { region: west } }
//! gears:
//!   - { name: traffic, type: generate, deploy: rack-east, config: { count: 10 } }
//!   - { name: sink, type: log, deploy: { labels: { region: west } } }
//! wires:
//!   - { from: traffic.out, to: sink.in }      # two racks: guaranteed
//! ```
//!
//! ```
//! use rack_lib::scenario::{Lane, Scenario};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let scenario = Scenario::parse(
//!     "meta: { name: demo, version: 1.0.0 }\n\
//!      racks: [ { name: a }, { name: b } ]\n\
//!      gears:\n\
//!      - { name: traffic, type: generate, deploy: a }\n\
//!      - { name: sink, type: log, deploy: b }\n\
//!      wires: [ { from: traffic.out, to: sink.in } ]\n",
//! )?;
//! let validated = scenario.validate(&gears::Factory::builtin())?;
//! assert_eq!(validated.racks(), ["a", "b"]);
//! assert_eq!(validated.plan("b").wires[0].lane, Lane::Guaranteed);
//!
//! let err = Scenario::parse("meta: { name: demo }\n").unwrap_err();
//! assert_eq!(err.to_string(), "1:7: `meta` needs a `version`");
//! # Ok(())
//! # }
//! ```
//!
//! [`Scenario::parse`] reads the text: YAML syntax, shapes, unknown keys, names and endpoint
//! syntax. [`Scenario::validate`] checks it against a [`gears::Factory`]: gear types and
//! configurations, ports, racks, deployments and lanes, and gives a [`Validated`] scenario
//! whose [`Validated::plan`] says what each rack runs. Both collect every problem they find,
//! each with the line and column it is about.
//!
//! # Limits
//!
//! The text is at most [`MAX_YAML_BYTES`] (4 MiB), nests at most [`MAX_DEPTH`] (64)
//! collections deep and holds at most [`MAX_NODES`] (100,000) nodes, where an alias counts as
//! a full copy of what it refers to (so a "billion laughs" document is refused). It is one
//! YAML document. Parsing never panics, whatever the input.
//!
//! # YAML details
//!
//! Scalars follow the YAML 1.2 core schema: `true`/`false`, `null`/`~`/empty, decimal, octal
//! (`0o17`) and hex (`0x1f`) integers, floats; anything else, and anything quoted or tagged
//! `!!str`, is a string. `.inf` and `.nan` are refused in a gear's `config` (JSON has no such
//! numbers). Anchors and aliases are resolved (a problem inside aliased content points at
//! the anchored original); merge keys (`<<`) and custom tags are refused.
//! Keys of a gear's `config` must be strings (quote `"200"` to use it as a key).
//!
//! # Deployment
//!
//! A gear without `deploy` runs on every rack; `deploy: rack-a` pins it to one rack;
//! `deploy: { labels: { region: east } }` puts it on every rack whose labels include all the
//! given pairs (the reference parses label groups but cannot resolve them; we do). A scenario
//! without `racks` runs on one implicit rack called `local`, and its gears must not name a
//! rack. Rack groups (`racks: [ { group: ... } ]`) are refused: use a labels selector.
//!
//! # Wires
//!
//! An endpoint is `gear.port` (every rack the gear runs on) or `rack.gear.port` (that rack
//! only). Each instance of the `from` gear is wired to the instance of the `to` gear on its
//! own rack when there is one, otherwise to every instance of the `to` gear (fan-out across
//! racks). So a wire between two global gears exists on every rack, locally. An unset lane is
//! `hot` between two instances on the same rack and `guaranteed` between racks; `lane: hot`
//! across racks is refused.
//!
//! A guaranteed lane into a rack is a durable consumer of the `flux-msg` stream. `history`
//! says where a new one starts: `new` (the default) delivers what is published from then on,
//! `all` first delivers everything the stream still holds for that port (within the stream's
//! age and size limits). The key only matters when the consumer is created: a durable that
//! exists (the wire ran before, on this rack, under this scenario or an earlier one) resumes
//! where it stopped, whatever its `history` says, and changing the key on a running wire
//! changes nothing. A wire that is hot everywhere refuses `history`; on a wire that is hot on
//! some racks and guaranteed across others, it applies to the guaranteed instances.
//!
//! ```yaml
//! wires:
//!   - { from: traffic.out, to: sink.in, history: all }   # replay what the stream holds
//! ```
//!
//! A wire removed by a reload has its durable consumer deleted once everything it delivered
//! into the rack is settled; a rack that stops keeps its durables, so that it resumes them
//! when it starts again.

use std::collections::BTreeMap;
use std::fmt;
use std::io::Read;
use std::path::Path;

mod load;
mod validate;
mod yaml;

pub use validate::{Instance, PlannedGear, PlannedWire, RackPlan, Validated};

/// The largest scenario text accepted, in bytes (4 MiB).
pub const MAX_YAML_BYTES: usize = 4 * 1024 * 1024;

/// How deep collections may nest in a scenario (64).
pub const MAX_DEPTH: usize = yaml::MAX_DEPTH;

/// How many nodes a scenario may hold, aliases counted as full copies (100,000).
pub const MAX_NODES: usize = yaml::MAX_NODES;

/// The name of the rack that a scenario without `racks` runs on.
pub const IMPLICIT_RACK: &str = "local";

/// A position in the scenario text: line and column, both starting at 1 (the column counts
/// characters). Displayed as `line:col`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Pos {
    /// The line, from 1.
    pub line: u32,
    /// The column, from 1, in characters.
    pub col: u32,
}

impl fmt::Display for Pos {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.line, self.col)
    }
}

/// A parsed scenario: well-formed, not yet checked against the gear catalog (see
/// [`Scenario::validate`]).
#[derive(Debug, Clone, PartialEq)]
pub struct Scenario {
    /// Its name and version.
    pub meta: Meta,
    /// The racks it names, in order (empty: one implicit rack, [`IMPLICIT_RACK`]).
    pub racks: Vec<RackDef>,
    /// The gears, in order.
    pub gears: Vec<GearDef>,
    /// The wires (`wires:`, or its docs alias `pipes:`), in order.
    pub wires: Vec<WireDef>,
}

/// The `meta:` block.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Meta {
    /// `meta.name` (required).
    pub name: String,
    /// `meta.version` (required; a SemVer by convention, not checked).
    pub version: String,
    /// `meta.description`, if any.
    pub description: Option<String>,
    /// Where the `meta:` map starts.
    pub pos: Pos,
}

/// One entry of `racks:`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RackDef {
    /// Its name (`[a-z0-9_-]`, 1 to 64).
    pub name: String,
    /// Its labels, which `deploy: { labels: ... }` selectors match.
    pub labels: BTreeMap<String, String>,
    /// Where the entry starts.
    pub pos: Pos,
    name_pos: Pos,
}

/// One entry of `gears:`.
#[derive(Debug, Clone, PartialEq)]
pub struct GearDef {
    /// Its name, unique in the scenario (`[a-z0-9_-]`, 1 to 64).
    pub name: String,
    /// Its type (the YAML key `type`), a name the gear factory knows.
    pub gear_type: String,
    /// Where it runs.
    pub deploy: Deploy,
    /// Its configuration as JSON (`{}` when `config:` is left out or null).
    pub config: serde_json::Value,
    /// Where the entry starts.
    pub pos: Pos,
    at: GearPositions,
}

/// Positions inside one gear entry, for validation messages.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
struct GearPositions {
    name: Pos,
    gear_type: Pos,
    deploy: Option<Pos>,
    /// The `config:` key (the entry when there is none).
    config_key: Pos,
    /// Dotted field path inside `config` (`rules[0].to`, empty for `config` itself) → the
    /// position of that node.
    fields: BTreeMap<String, Pos>,
}

/// Where a gear runs.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Deploy {
    /// On every rack (no `deploy:`).
    #[default]
    Global,
    /// On the named rack (`deploy: rack-a`).
    Rack(String),
    /// On every rack whose labels include all these pairs
    /// (`deploy: { labels: { region: east } }`).
    Labels(BTreeMap<String, String>),
}

/// One entry of `wires:`: a one-way connection from an output port to an input port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WireDef {
    /// The output port messages leave from.
    pub from: Endpoint,
    /// The input port they arrive at.
    pub to: Endpoint,
    /// The lane asked for, if any (unset: hot on one rack, guaranteed across racks).
    pub lane: Option<Lane>,
    /// Where a new durable consumer of the wire's guaranteed lanes starts, if written
    /// (unset: [`History::New`]).
    pub history: Option<History>,
    /// Where the entry starts.
    pub pos: Pos,
    at: WirePositions,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
struct WirePositions {
    from: Pos,
    to: Pos,
    lane: Option<Pos>,
    history: Option<Pos>,
}

/// A wire endpoint: `gear.port` or `rack.gear.port`. Displayed as written.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Endpoint {
    /// The rack, when the endpoint names one.
    pub rack: Option<String>,
    /// The gear.
    pub gear: String,
    /// The port (port names never contain dots).
    pub port: String,
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(rack) = &self.rack {
            write!(f, "{rack}.")?;
        }
        write!(f, "{}.{}", self.gear, self.port)
    }
}

/// How a wire carries messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Lane {
    /// A bounded in-process queue: at most once, both ends on one rack.
    Hot,
    /// Through JetStream: stored before the sender is acknowledged; may cross racks.
    Guaranteed,
}

impl fmt::Display for Lane {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Lane::Hot => "hot",
            Lane::Guaranteed => "guaranteed",
        })
    }
}

/// Where a guaranteed lane's durable consumer starts when it is created (the wire key
/// `history`).
///
/// It only matters at creation: a durable that exists already resumes where it stopped,
/// whatever this says.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub enum History {
    /// From the next message published (`history: new`): a new wire does not replay what
    /// the stream held before it.
    #[default]
    New,
    /// From the oldest message the stream still holds for the lane (`history: all`).
    All,
}

impl fmt::Display for History {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            History::New => "new",
            History::All => "all",
        })
    }
}

/// Everything wrong with a scenario: one [`Problem`] per line in its `Display`
/// (`line:col: message`), sorted by position.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScenarioError {
    problems: Vec<Problem>,
}

/// One thing wrong with a scenario, and where.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// Where in the text, when the problem is about a place in it.
    pub pos: Option<Pos>,
    /// What is wrong.
    pub message: String,
}

impl Problem {
    pub(crate) fn at(pos: Pos, message: impl Into<String>) -> Problem {
        Problem {
            pos: Some(pos),
            message: message.into(),
        }
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.pos {
            Some(pos) => write!(f, "{pos}: {}", self.message),
            None => f.write_str(&self.message),
        }
    }
}

impl ScenarioError {
    /// An error from problems (sorted by position; those without one come last).
    pub(crate) fn new(mut problems: Vec<Problem>) -> ScenarioError {
        problems.sort_by_key(|p| (p.pos.is_none(), p.pos));
        ScenarioError { problems }
    }

    /// The problems, sorted by position (those without one last). Never empty.
    pub fn problems(&self) -> &[Problem] {
        &self.problems
    }
}

impl fmt::Display for ScenarioError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, problem) in self.problems.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{problem}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ScenarioError {}

impl Scenario {
    /// Parses a scenario from YAML text.
    ///
    /// # Errors
    ///
    /// Every problem found: the text is too large or not valid YAML (then only that one), a
    /// value has the wrong shape, a key is unknown, a required key is missing, a name or an
    /// endpoint breaks the naming rule, a name is taken twice.
    pub fn parse(yaml: &str) -> Result<Scenario, ScenarioError> {
        if yaml.len() > MAX_YAML_BYTES {
            return Err(ScenarioError::new(vec![Problem {
                pos: None,
                message: format!(
                    "the scenario is {} bytes; the limit is {MAX_YAML_BYTES}",
                    yaml.len()
                ),
            }]));
        }
        let root = yaml::parse(yaml).map_err(|p| ScenarioError::new(vec![p]))?;
        let mut problems = Vec::new();
        let scenario = load::scenario(&root, &mut problems);
        match scenario {
            Some(scenario) if problems.is_empty() => Ok(scenario),
            _ => {
                if problems.is_empty() {
                    problems.push(Problem::at(root.pos, "the scenario is not valid"));
                }
                Err(ScenarioError::new(problems))
            }
        }
    }

    /// Reads and parses the scenario file at `path` (see [`Scenario::parse`]).
    ///
    /// # Errors
    ///
    /// The file cannot be read, is larger than [`MAX_YAML_BYTES`] or is not UTF-8 (a problem
    /// without a position), or [`Scenario::parse`] refuses its text.
    pub fn from_file(path: impl AsRef<Path>) -> Result<Scenario, ScenarioError> {
        let path = path.as_ref();
        let fail = |message: String| ScenarioError::new(vec![Problem { pos: None, message }]);
        let file = std::fs::File::open(path)
            .map_err(|e| fail(format!("cannot read {}: {e}", path.display())))?;
        let mut bytes = Vec::new();
        let limit = u64::try_from(MAX_YAML_BYTES).unwrap_or(u64::MAX);
        file.take(limit.saturating_add(1))
            .read_to_end(&mut bytes)
            .map_err(|e| fail(format!("cannot read {}: {e}", path.display())))?;
        if bytes.len() > MAX_YAML_BYTES {
            return Err(fail(format!(
                "{} is larger than {MAX_YAML_BYTES} bytes",
                path.display()
            )));
        }
        let text = String::from_utf8(bytes)
            .map_err(|e| fail(format!("{} is not UTF-8: {e}", path.display())))?;
        Scenario::parse(&text)
    }

    /// Checks the scenario against the gear types of `factory`: every gear's type and
    /// configuration, every wire's gears, ports, racks and lane, every deployment target.
    ///
    /// # Errors
    ///
    /// Every problem found, each with the position it is about (a configuration problem
    /// points at the field inside `config:` when it can, else at `config:`).
    pub fn validate(&self, factory: &gears::Factory) -> Result<Validated, ScenarioError> {
        validate::validate(self, factory)
    }

    /// The racks gears can deploy on: the declared ones, or [`IMPLICIT_RACK`] when there are
    /// none.
    fn rack_names(&self) -> Vec<String> {
        if self.racks.is_empty() {
            vec![IMPLICIT_RACK.to_owned()]
        } else {
            self.racks.iter().map(|r| r.name.clone()).collect()
        }
    }
}

/// Whether `name` is a valid rack, gear or port name: 1 to 64 of `a-z`, `0-9`, `_`, `-`.
fn is_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-')
}
