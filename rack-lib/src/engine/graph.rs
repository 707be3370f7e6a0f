use std::fmt;

use crate::scenario::History;

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
    /// Output ports whose messages go to the bus (guaranteed lanes to other racks, or to this
    /// one), on `flux.msg.<rack>.<gear>.<port>`.
    pub publish: Vec<PortRef>,
    /// Guaranteed lanes into this rack: a port of a gear on some rack, delivered to a local
    /// input port.
    pub subscribe: Vec<Subscription>,
    /// Guaranteed lanes out of this rack into other racks. Their durable consumers are
    /// created when this rack applies, if the consuming rack has not created them yet, so
    /// that whichever end of a lane comes first, nothing published once the lane exists is
    /// missed by the other.
    pub feeds: Vec<Feed>,
}

/// A guaranteed lane out of this rack into another one (see [`Graph::feeds`]).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Feed {
    /// The consuming rack.
    pub rack: String,
    /// The lane as that rack subscribes to it.
    pub lane: Subscription,
}

/// A guaranteed lane into this rack.
///
/// The lane is its `rack`, `from` and `to`: they name its durable consumer. `history` is not
/// part of it: it only says where that consumer starts when it is created, so a graph that
/// changes only `history` keeps the running lane where it is.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Subscription {
    /// The rack of the publishing gear.
    pub rack: String,
    /// The publishing gear and output port.
    pub from: PortRef,
    /// The local input port.
    pub to: PortRef,
    /// Where the lane's durable consumer starts if it does not exist yet: the next message
    /// published ([`History::New`], the default), or the oldest the stream still holds
    /// ([`History::All`]). A durable that exists resumes where it stopped.
    pub history: History,
}

impl Subscription {
    /// The name of the lane's durable consumer on the `flux-msg` stream when it goes into the
    /// rack `rack`: a readable prefix (the local gear and port) and a hash of the lane, so
    /// that two lanes never share one; `history` plays no part.
    pub fn durable_name(&self, rack: &str) -> String {
        super::lanes::durable_name(rack, self)
    }

    /// The lane's identity, without `history`.
    pub(crate) fn lane(&self) -> (String, PortRef, PortRef) {
        (self.rack.clone(), self.from.clone(), self.to.clone())
    }
}

/// One gear of a [`Graph`]: its name, type and configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct GearSpec {
    /// The gear's name, unique in the graph.
    pub name: String,
    /// Its type in the factory.
    pub gear_type: String,
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
    pub fn gear(mut self, name: &str, gear_type: &str, config: serde_json::Value) -> Graph {
        self.gears.push(GearSpec {
            name: name.to_owned(),
            gear_type: gear_type.to_owned(),
            config,
        });
        self
    }

    /// Adds a wire from `from` (`gear.port`) to `to` (`gear.port`); a name without a dot means
    /// its `out` (for `from`) or `in` (for `to`) port.
    #[must_use]
    pub fn wire(mut self, from: &str, to: &str) -> Graph {
        self.wires.push(Wire {
            from: split(from, "out"),
            to: split(to, "in"),
        });
        self
    }

    /// Declares a guaranteed lane out of this rack: rack `to_rack` reads what this rack
    /// (`rack`) publishes on `from` (`gear.port`) into its `to` (`gear.port`). Applying the
    /// graph creates that lane's durable consumer if it does not exist, from the next message
    /// published (see [`Graph::feeds`]); `from` must be published too.
    #[must_use]
    pub fn feed(mut self, rack: &str, from: &str, to_rack: &str, to: &str) -> Graph {
        self.feeds.push(Feed {
            rack: to_rack.to_owned(),
            lane: Subscription {
                rack: rack.to_owned(),
                from: split(from, "out"),
                to: split(to, "in"),
                history: History::New,
            },
        });
        self
    }

    /// Publishes the output port `from` (`gear.port`) to the bus.
    #[must_use]
    pub fn publish(mut self, from: &str) -> Graph {
        self.publish.push(split(from, "out"));
        self
    }

    /// Delivers what `rack`'s gear port `from` (`gear.port`) publishes into `to` (`gear.port`),
    /// from the messages published once the lane's durable consumer exists
    /// ([`History::New`]).
    #[must_use]
    pub fn subscribe(self, rack: &str, from: &str, to: &str) -> Graph {
        self.subscribe_with_history(rack, from, to, History::New)
    }

    /// As [`Graph::subscribe`], with where the lane's durable consumer starts when it is
    /// created: [`History::All`] delivers what the stream still holds for `from` first. A
    /// durable that exists already resumes where it stopped, whatever `history` says.
    #[must_use]
    pub fn subscribe_with_history(
        mut self,
        rack: &str,
        from: &str,
        to: &str,
        history: History,
    ) -> Graph {
        self.subscribe.push(Subscription {
            rack: rack.to_owned(),
            from: split(from, "out"),
            to: split(to, "in"),
            history,
        });
        self
    }
}

fn split(text: &str, default: &str) -> PortRef {
    match text.split_once('.') {
        Some((gear, port)) => PortRef::new(gear, port),
        None => PortRef::new(text, default),
    }
}

impl From<&crate::scenario::RackPlan> for Graph {
    /// The graph one rack runs for a validated scenario: its gears, hot wires between them,
    /// and the guaranteed lanes it publishes and subscribes to.
    fn from(plan: &crate::scenario::RackPlan) -> Graph {
        use crate::scenario::Lane;
        let mut graph = Graph::new();
        for gear in &plan.gears {
            graph.gears.push(GearSpec {
                name: gear.name.clone(),
                gear_type: gear.gear_type.clone(),
                config: gear.config.clone(),
            });
        }
        for wire in &plan.wires {
            let from = PortRef::new(&wire.from.gear, &wire.from.port);
            let to = PortRef::new(&wire.to.gear, &wire.to.port);
            let here_from = wire.from.rack == plan.rack;
            let here_to = wire.to.rack == plan.rack;
            match wire.lane {
                Lane::Hot if here_from && here_to => graph.wires.push(Wire { from, to }),
                _ => {
                    if here_from && !graph.publish.contains(&from) {
                        graph.publish.push(from.clone());
                    }
                    let lane = Subscription {
                        rack: wire.from.rack.clone(),
                        from,
                        to,
                        history: wire.history,
                    };
                    if here_to {
                        graph.subscribe.push(lane);
                    } else if here_from {
                        graph.feeds.push(Feed {
                            rack: wire.to.rack.clone(),
                            lane,
                        });
                    }
                }
            }
        }
        graph
    }
}
