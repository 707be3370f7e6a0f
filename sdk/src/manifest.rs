//! [`Manifest`]: what a gear type declares about itself (type, category, status, ports,
//! terminus), and the types it is made of.

use serde::{Deserialize, Serialize};

use crate::port::{ERROR_PORT, PortName};

/// What a gear type is, as the factory, the scenario validator and the docs see it.
///
/// Built with [`Manifest::new`] and its chained setters; the configuration schema is filled in
/// from the gear's config struct when the type is registered, so it cannot drift from the code.
/// Every manifest has the output port `error`, where refused and failed messages go.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Manifest {
    /// The type name used in scenarios (`transform`, `io_tcp`).
    #[serde(rename = "type")]
    pub gear_type: String,
    /// What kind of work it does.
    pub category: Category,
    /// Whether it is ready for use.
    pub status: Status,
    /// One line for catalogs.
    pub summary: String,
    /// Its ports, static and dynamic.
    pub ports: Vec<PortSpec>,
    /// How a path ends at this gear (see [`Terminus`]).
    pub terminus: Terminus,
    /// The JSON Schema of its configuration.
    pub config_schema: serde_json::Value,
}

/// The category of a gear, as in the reference catalog.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Category {
    /// Talks to the outside world (sockets, HTTP).
    Io,
    /// Turns bytes into fields and back.
    Codec,
    /// Routes, filters, generates or edits messages.
    Logic,
    /// Logs, taps and measures.
    Observability,
}

/// Whether a gear type is ready for use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Status {
    /// Shipped and supported.
    Stable,
    /// Designed, not yet shipped.
    Roadmap,
}

/// How the binding walk treats a gear when it looks for where an output port leads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Terminus {
    /// A single-path pass-through (a codec, a transform): the walk goes on downstream.
    Transparent,
    /// An I/O gear: the walk ends here and binds to its link state.
    Io,
    /// Anything else: the walk stops without a binding.
    Opaque,
}

/// Whether a port takes messages in or sends them out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    /// Messages arrive here.
    Input,
    /// Messages leave here.
    Output,
}

/// One port of a manifest: a fixed name (`in`) or a dynamic pattern (`out_<name>`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct PortSpec {
    /// The name, or for a dynamic port the pattern with one `<...>` placeholder.
    pub name: String,
    /// In or out.
    pub dir: Direction,
    /// One line on what travels through it.
    pub summary: String,
    /// Whether `name` is a pattern whose instances come from the configuration.
    pub dynamic: bool,
}

impl PortSpec {
    /// Whether the concrete port `port` is this port or an instance of its pattern.
    pub fn matches(&self, port: &str) -> bool {
        if !self.dynamic {
            return self.name == port;
        }
        let Some((prefix, rest)) = self.name.split_once('<') else {
            return self.name == port;
        };
        let suffix = rest.split_once('>').map_or("", |(_, s)| s);
        port.len() > prefix.len() + suffix.len()
            && port.starts_with(prefix)
            && port.ends_with(suffix)
            && PortName::is_valid(port)
    }
}

impl Manifest {
    /// A stable manifest for `gear_type` with no ports but `error`, terminus opaque, and an empty
    /// configuration schema.
    pub fn new(gear_type: impl Into<String>, category: Category) -> Manifest {
        Manifest {
            gear_type: gear_type.into(),
            category,
            status: Status::Stable,
            summary: String::new(),
            ports: vec![PortSpec {
                name: ERROR_PORT.to_owned(),
                dir: Direction::Output,
                summary: "messages the gear refused or failed on, with `error.reason`".to_owned(),
                dynamic: false,
            }],
            terminus: Terminus::Opaque,
            config_schema: serde_json::Value::Bool(true),
        }
    }

    /// Sets the one-line summary.
    #[must_use]
    pub fn summary(mut self, summary: impl Into<String>) -> Manifest {
        self.summary = summary.into();
        self
    }

    /// Sets the status.
    #[must_use]
    pub fn status(mut self, status: Status) -> Manifest {
        self.status = status;
        self
    }

    /// Sets the terminus.
    #[must_use]
    pub fn terminus(mut self, terminus: Terminus) -> Manifest {
        self.terminus = terminus;
        self
    }

    /// Adds a fixed input port.
    #[must_use]
    pub fn input(self, name: &str, summary: &str) -> Manifest {
        self.port(name, Direction::Input, summary, false)
    }

    /// Adds a fixed output port.
    #[must_use]
    pub fn output(self, name: &str, summary: &str) -> Manifest {
        self.port(name, Direction::Output, summary, false)
    }

    /// Adds a dynamic output port pattern such as `out_<name>`.
    #[must_use]
    pub fn dynamic_output(self, pattern: &str, summary: &str) -> Manifest {
        self.port(pattern, Direction::Output, summary, true)
    }

    /// Adds a dynamic input port pattern such as `in_<role>`.
    #[must_use]
    pub fn dynamic_input(self, pattern: &str, summary: &str) -> Manifest {
        self.port(pattern, Direction::Input, summary, true)
    }

    fn port(mut self, name: &str, dir: Direction, summary: &str, dynamic: bool) -> Manifest {
        self.ports.push(PortSpec {
            name: name.to_owned(),
            dir,
            summary: summary.to_owned(),
            dynamic,
        });
        self
    }

    /// The spec that declares the concrete port `name` in direction `dir`, if any.
    pub fn find_port(&self, dir: Direction, name: &str) -> Option<&PortSpec> {
        let mut ports = self.ports.iter().filter(|p| p.dir == dir);
        ports
            .clone()
            .find(|p| !p.dynamic && p.name == name)
            .or_else(|| ports.find(|p| p.matches(name)))
    }

    /// The fixed (non-dynamic) ports in direction `dir`.
    pub fn fixed_ports(&self, dir: Direction) -> impl Iterator<Item = &str> + '_ {
        self.ports
            .iter()
            .filter(move |p| p.dir == dir && !p.dynamic)
            .map(|p| p.name.as_str())
    }
}
