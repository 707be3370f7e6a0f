//! The first half of an apply: the diff from what a rack runs to a new graph, with every check
//! done and the new gears built, and nothing running touched.

use std::collections::{BTreeMap, BTreeSet};

use sdk::{InPort, OutPort, Ports, Prepared};

use super::graph::{GearSpec, Graph, PortRef, Subscription};
use super::{Change, Rack};
use crate::error::Error;

/// What [`Rack::commit`] will do to make a rack run a new [`Graph`], worked out by
/// [`Rack::plan`] without running anything.
///
/// Planning checks everything that can be checked without side effects: unique gear names,
/// known types, configurations (the new and changed gears are built, as their types'
/// constructors do no I/O), wires and lanes that name real ports, subject names. A graph that
/// fails any of them gets an error from [`Rack::plan`] and the rack is untouched.
///
/// The plan is the diff:
/// - gears to **keep** (same type and configuration: they keep running with their state),
///   **restart** (changed: rebuilt, their input queue handed over), **start** (new) and
///   **stop** (gone: they finish what is queued for them first);
/// - kept gears to **re-point** (their wires, lanes or a wire's target changed, so they get a
///   new output table);
/// - guaranteed lanes out of the rack (publishers) and into it (subscriptions) to start, keep
///   and stop.
///
/// A plan is made against the rack's state at the time: committing it after another apply
/// changed the rack is refused with [`Error::StalePlan`].
///
/// ```
/// # fn main() -> Result<(), rack_lib::Error> {
/// use rack_lib::{Graph, Rack};
/// use serde_json::json;
///
/// let rack = Rack::builder("edge").build()?;
/// let graph = Graph::new()
///     .gear("tag", "transform", json!({ "steps": [{ "set": "meta.seen", "value": "yes" }] }))
///     .gear("sink", "log", json!({}))
///     .wire("tag", "sink");
/// let plan = rack.plan(graph)?;
/// assert_eq!(plan.started(), ["tag", "sink"]);
/// assert!(plan.stopped().is_empty());
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct Plan {
    pub(super) generation: u64,
    pub(super) graph: Graph,
    pub(super) change: Change,
    pub(super) repointed: Vec<String>,
    /// Every gear's ports in the new graph.
    pub(super) ports: BTreeMap<String, Ports>,
    /// The new and restarted gears, built and not running, in graph order.
    pub(super) fresh: Vec<(GearSpec, Prepared)>,
    pub(super) publishers: LaneDiff<PortRef>,
    pub(super) subscriptions: LaneDiff<Subscription>,
}

/// Lanes to start, keep and stop.
#[derive(Debug)]
pub(super) struct LaneDiff<T> {
    pub(super) start: Vec<T>,
    pub(super) keep: Vec<T>,
    pub(super) stop: Vec<T>,
}

impl Plan {
    /// The graph the rack runs once the plan is committed.
    pub fn graph(&self) -> &Graph {
        &self.graph
    }

    /// Gears that start (new in the graph).
    pub fn started(&self) -> &[String] {
        &self.change.added
    }

    /// Gears that restart with a new definition (type or configuration changed).
    pub fn restarted(&self) -> &[String] {
        &self.change.restarted
    }

    /// Gears that stop (gone from the graph).
    pub fn stopped(&self) -> &[String] {
        &self.change.removed
    }

    /// Gears that keep running untouched, with their state.
    pub fn kept(&self) -> &[String] {
        &self.change.kept
    }

    /// Kept gears whose output table changes (a wire or lane of theirs was added or removed,
    /// or a gear they feed restarts).
    pub fn repointed(&self) -> &[String] {
        &self.repointed
    }

    /// Output ports whose guaranteed lane starts publishing.
    pub fn publishers_started(&self) -> &[PortRef] {
        &self.publishers.start
    }

    /// Output ports whose guaranteed lane stops publishing (after sending what it holds).
    pub fn publishers_stopped(&self) -> &[PortRef] {
        &self.publishers.stop
    }

    /// Guaranteed lanes into the rack that start pulling.
    pub fn subscriptions_started(&self) -> &[Subscription] {
        &self.subscriptions.start
    }

    /// Guaranteed lanes into the rack whose wire is gone: they stop pulling, what they
    /// delivered into the rack is handled, then their durable consumer is deleted (with what
    /// it had not delivered yet).
    ///
    /// A lane whose `history` alone changed is not among them (nor among those that start):
    /// its durable keeps its position.
    pub fn subscriptions_stopped(&self) -> &[Subscription] {
        &self.subscriptions.stop
    }

    /// Whether committing the plan changes nothing.
    pub fn is_empty(&self) -> bool {
        self.change.added.is_empty()
            && self.change.restarted.is_empty()
            && self.change.removed.is_empty()
            && self.repointed.is_empty()
            && self.publishers.start.is_empty()
            && self.publishers.stop.is_empty()
            && self.subscriptions.start.is_empty()
            && self.subscriptions.stop.is_empty()
    }
}

impl Rack {
    /// Works out what it takes to make the rack run `graph`, as a diff from what it runs now,
    /// and checks it, without running or changing anything (see [`Plan`]).
    ///
    /// # Errors
    ///
    /// A duplicate gear, an unknown type or bad configuration, a wire or lane that names an
    /// unknown gear or port, or a name that cannot go into a subject.
    pub fn plan(&self, graph: Graph) -> Result<Plan, Error> {
        let mut seen = BTreeSet::new();
        let mut change = Change::default();
        let mut fresh = Vec::new();
        let mut ports: BTreeMap<String, Ports> = BTreeMap::new();
        for spec in &graph.gears {
            if !seen.insert(spec.name.as_str()) {
                return Err(Error::DuplicateGear(spec.name.clone()));
            }
            match self.nodes.get(&spec.name) {
                Some(node) if node.spec == *spec => {
                    ports.insert(spec.name.clone(), node.ports.clone());
                    change.kept.push(spec.name.clone());
                }
                running => {
                    let prepared =
                        self.factory
                            .prepare(&spec.name, &spec.gear_type, &spec.config)?;
                    ports.insert(spec.name.clone(), prepared.ports().clone());
                    if running.is_some() {
                        change.restarted.push(spec.name.clone());
                    } else {
                        change.added.push(spec.name.clone());
                    }
                    fresh.push((spec.clone(), prepared));
                }
            }
        }
        for wire in &graph.wires {
            output_of(&ports, &wire.from)?;
            input_of(&ports, &wire.to)?;
        }
        for at in &graph.publish {
            output_of(&ports, at)?;
            snake::Subject::msg(&self.name, &at.gear, &at.port)?;
        }
        for sub in &graph.subscribe {
            input_of(&ports, &sub.to)?;
            snake::Subject::msg(&sub.rack, &sub.from.gear, &sub.from.port)?;
            snake::Subject::dead_letter(&self.name, &sub.to.gear, &sub.to.port)?;
        }
        change.removed = self
            .nodes
            .keys()
            .filter(|name| !seen.contains(name.as_str()))
            .cloned()
            .collect();
        let repointed = change
            .kept
            .iter()
            .filter(|name| needs_repoint(&self.graph, &graph, name, &change))
            .cloned()
            .collect();
        let publishers = diff(self.publishers.keys(), &graph.publish, PortRef::clone);
        // A lane is its ends: one whose `history` alone changed keeps running.
        let subscriptions = diff(
            self.subscribers.keys(),
            &graph.subscribe,
            Subscription::lane,
        );
        Ok(Plan {
            generation: self.generation,
            graph,
            change,
            repointed,
            ports,
            fresh,
            publishers,
            subscriptions,
        })
    }
}

/// Whether the kept gear `gear` needs a new output table: its wires or published ports
/// differ between the graphs, or a gear it feeds restarts (its ports may have moved) or
/// starts (it has a new queue: a gear of the running graph whose start failed last time).
fn needs_repoint(old: &Graph, new: &Graph, gear: &str, change: &Change) -> bool {
    let wires = |g: &Graph| -> BTreeSet<_> {
        g.wires
            .iter()
            .filter(|w| w.from.gear == gear)
            .cloned()
            .collect()
    };
    let published = |g: &Graph| -> BTreeSet<_> {
        g.publish
            .iter()
            .filter(|at| at.gear == gear)
            .cloned()
            .collect()
    };
    let new_wires = wires(new);
    new_wires != wires(old)
        || published(new) != published(old)
        || new_wires
            .iter()
            .any(|w| change.restarted.contains(&w.to.gear) || change.added.contains(&w.to.gear))
}

/// The lanes of `wanted` that start, those of `running` that stay (as they run) and those
/// of `running` that stop; two lanes with the same `key` are the same lane.
fn diff<'a, T: Clone + 'a, K: Ord>(
    running: impl Iterator<Item = &'a T>,
    wanted: &[T],
    key: impl Fn(&T) -> K,
) -> LaneDiff<T> {
    let running: BTreeMap<K, &T> = running.map(|lane| (key(lane), lane)).collect();
    let mut lanes = LaneDiff {
        start: Vec::new(),
        keep: Vec::new(),
        stop: Vec::new(),
    };
    let mut seen = BTreeSet::new();
    for lane in wanted {
        let id = key(lane);
        match running.get(&id) {
            _ if seen.contains(&id) => {}
            Some(run) => lanes.keep.push((*run).clone()),
            None => lanes.start.push(lane.clone()),
        }
        seen.insert(id);
    }
    lanes.stop = running
        .into_iter()
        .filter(|(id, _)| !seen.contains(id))
        .map(|(_, lane)| lane.clone())
        .collect();
    lanes
}

pub(super) fn output_of(ports: &BTreeMap<String, Ports>, at: &PortRef) -> Result<OutPort, Error> {
    let gear = ports
        .get(&at.gear)
        .ok_or_else(|| Error::UnknownGear(at.gear.clone()))?;
    gear.output(&at.port).ok_or_else(|| Error::UnknownPort {
        gear: at.gear.clone(),
        dir: "output",
        port: at.port.clone(),
        known: names(gear.outputs()),
    })
}

pub(super) fn input_of(ports: &BTreeMap<String, Ports>, at: &PortRef) -> Result<InPort, Error> {
    let gear = ports
        .get(&at.gear)
        .ok_or_else(|| Error::UnknownGear(at.gear.clone()))?;
    gear.input(&at.port).ok_or_else(|| Error::UnknownPort {
        gear: at.gear.clone(),
        dir: "input",
        port: at.port.clone(),
        known: names(gear.inputs()),
    })
}

pub(super) fn names(ports: &[sdk::PortName]) -> String {
    ports
        .iter()
        .map(|p| p.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}
