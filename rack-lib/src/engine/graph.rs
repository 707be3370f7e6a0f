use std::fmt;

/// What one rack runs, as the engine takes it: gears and the in-process wires between them.
///
/// A scenario's [`RackPlan`](crate::scenario::RackPlan) turns into one; an embedding
/// application can also build one by hand.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Graph {
    /// The gears, by unique name.
    pub gears: Vec<GearSpec>,
    /// The wires between their ports.
    pub wires: Vec<Wire>,
}

/// One gear of a [`Graph`]: its name, type and configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct GearSpec {
    /// The gear's name, unique in the graph.
    pub name: String,
    /// Its type in the factory.
    pub kind: String,
    /// Its configuration (validated against the type's schema when applied).
    pub config: serde_json::Value,
}

/// A one-way wire from an output port to an input port.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Wire {
    /// The output port.
    pub from: PortRef,
    /// The input port.
    pub to: PortRef,
}

/// A port of a gear, by names.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PortRef {
    /// The gear's name.
    pub gear: String,
    /// The port's name.
    pub port: String,
}

impl PortRef {
    /// `gear.port`.
    pub fn new(gear: impl Into<String>, port: impl Into<String>) -> PortRef {
        PortRef {
            gear: gear.into(),
            port: port.into(),
        }
    }
}

impl fmt::Display for PortRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.gear, self.port)
    }
}

impl Graph {
    /// An empty graph.
    pub fn new() -> Graph {
        Graph::default()
    }

    /// Adds a gear.
    #[must_use]
    pub fn gear(mut self, name: &str, kind: &str, config: serde_json::Value) -> Graph {
        self.gears.push(GearSpec {
            name: name.to_owned(),
            kind: kind.to_owned(),
            config,
        });
        self
    }

    /// Adds a wire from `from` (`gear.port`) to `to` (`gear.port`); a name without a dot means
    /// its `out` (for `from`) or `in` (for `to`) port.
    #[must_use]
    pub fn wire(mut self, from: &str, to: &str) -> Graph {
        let split = |text: &str, default: &str| match text.split_once('.') {
            Some((gear, port)) => PortRef::new(gear, port),
            None => PortRef::new(text, default),
        };
        self.wires.push(Wire {
            from: split(from, "out"),
            to: split(to, "in"),
        });
        self
    }
}
