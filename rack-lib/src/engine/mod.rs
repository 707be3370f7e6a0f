//! The engine: runs the gears of a [`Graph`] on Tokio tasks joined by bounded queues, and
//! applies a changed graph as a diff.
//!
//! An apply has two halves: [`Rack::plan`] (plan.rs) works the diff out and checks it without
//! touching anything, [`Rack::commit`] (commit.rs) carries it out. Start-up is the diff from
//! the empty graph. node.rs is a running gear's task, lanes.rs the guaranteed lanes, handles.rs
//! the injectors and taps an embedding application holds.

mod ack;
mod builder;
mod commit;
mod graph;
mod handles;
mod lanes;
mod limits;
mod node;
mod plan;
mod sample;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use gears::Factory;
use sdk::{Ports, Services, Stats, StatsSnapshot};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

pub use self::builder::RackBuilder;
use self::commit::Publisher;
pub use self::graph::{Feed, GearSpec, Graph, PortRef, Subscription, Wire};
pub use self::handles::{Injector, Tap};
pub use self::limits::Limits;
use self::node::{Control, Delivery, InFlight, Target};
pub use self::plan::Plan;
pub use self::sample::{HopSample, HopSampler};

use crate::error::Error;

/// A running rack: gears on Tokio tasks, joined by bounded queues.
///
/// Start-up is [`Rack::apply`] from the empty graph; every later `apply` is a diff: gears
/// whose type and configuration are unchanged keep running with their state, changed gears
/// restart and keep their input queue, removed gears finish what is queued for them.
#[derive(Debug)]
pub struct Rack {
    name: String,
    factory: Factory,
    services: Services,
    limits: Limits,
    nodes: BTreeMap<String, NodeHandle>,
    graph: Graph,
    taps: Vec<(PortRef, Target)>,
    publishers: BTreeMap<PortRef, Publisher>,
    subscribers: BTreeMap<Subscription, lanes::Inlet>,
    /// Durables of lanes a reload removed, waiting to be deleted (see `lanes::retire`).
    retiring: lanes::Retiring,
    in_flight: Arc<InFlight>,
    /// The tasks that ack and nak what the guaranteed lanes into the rack delivered; each
    /// ends once its lane stopped and every share of what it pulled is gone. Also the
    /// deletions of removed lanes' durables that still wait for such an acker.
    ackers: Vec<JoinHandle<()>>,
    /// Counts commits, so that a [`Plan`] made before another apply is refused.
    generation: u64,
    /// Samples hops for telemetry.
    sampler: Option<HopSampler>,
}

#[derive(Debug)]
struct NodeHandle {
    spec: GearSpec,
    tx: mpsc::Sender<Delivery>,
    ctl: mpsc::Sender<Control>,
    task: JoinHandle<()>,
    ports: Ports,
    stats: Arc<Stats>,
    busy: Arc<AtomicBool>,
    /// Whether the gear says it takes input; the ports wired to it follow it.
    availability: sdk::Availability,
}

/// What a [`Rack::shutdown`] left behind.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Stopped {
    /// Whether everything in flight was delivered before the timeout.
    pub drained: bool,
    /// Every gear's final counters, by gear name, taken once every gear and publisher had
    /// stopped: what was still queued or unpublished at the deadline is in `dropped` under
    /// `shutdown`.
    pub stats: BTreeMap<String, StatsSnapshot>,
}

/// What an [`Rack::apply`] (or [`Rack::commit`]) changed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Change {
    /// Gears started.
    pub added: Vec<String>,
    /// Gears restarted with a new definition.
    pub restarted: Vec<String>,
    /// Gears stopped and removed.
    pub removed: Vec<String>,
    /// Gears left running untouched.
    pub kept: Vec<String>,
}

impl Rack {
    /// A builder.
    pub fn builder(name: &str) -> RackBuilder {
        RackBuilder::new(name)
    }

    /// The rack's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The graph it runs.
    pub fn graph(&self) -> &Graph {
        &self.graph
    }

    /// Makes the rack run its part of a validated scenario (its [`plan`]), as a diff from what
    /// it runs now.
    ///
    /// [`plan`]: crate::scenario::Validated::plan
    ///
    /// # Errors
    ///
    /// As [`Rack::apply`].
    pub async fn apply_scenario(
        &mut self,
        scenario: &crate::scenario::Validated,
    ) -> Result<Change, Error> {
        let plan = scenario.plan(&self.name);
        self.apply(Graph::from(&plan)).await
    }

    /// Makes the rack run `graph`, as a diff from what it runs now: [`Rack::plan`], then
    /// [`Rack::commit`].
    ///
    /// Everything is checked and prepared first (types, configurations, wires, `init` of the
    /// new gears, their ids); a graph that fails there changes nothing. Only a gear that fails
    /// to `start` leaves the change partly applied. Let the future finish: dropping it half
    /// way leaves a half-applied graph.
    ///
    /// # Errors
    ///
    /// As [`Rack::plan`] and [`Rack::commit`].
    pub async fn apply(&mut self, graph: Graph) -> Result<Change, Error> {
        let plan = self.plan(graph)?;
        self.commit(plan).await
    }

    /// Stops everything at once, as a crash would: no drain, no acks for what is in flight
    /// (guaranteed lanes deliver it again), nothing flushed.
    pub fn abort(mut self) {
        // The ackers first, so that nothing dropped below is acked or nak'ed.
        for task in std::mem::take(&mut self.ackers) {
            task.abort();
        }
        for (_, task) in std::mem::take(&mut self.subscribers) {
            task.abort();
        }
        for (_, node) in std::mem::take(&mut self.nodes) {
            node.task.abort();
        }
        for (_, (_, task)) in std::mem::take(&mut self.publishers) {
            task.abort();
        }
    }

    /// Every gear's counters, by gear name.
    pub fn stats(&self) -> BTreeMap<String, StatsSnapshot> {
        self.nodes
            .iter()
            .map(|(name, node)| (name.clone(), node.stats.snapshot()))
            .collect()
    }

    /// Stops the rack: sources stop producing, in-flight messages drain (up to `timeout`),
    /// then every gear stops and the publishers of guaranteed lanes flush.
    ///
    /// Returns whether everything in flight was delivered before the timeout, and the final
    /// counters, in which nothing is missing: a message left in a queue or a publisher at the
    /// deadline is counted as dropped with the reason `shutdown` (and, if it came from a
    /// guaranteed lane, delivered again after a restart).
    pub async fn shutdown(mut self, timeout: Duration) -> Stopped {
        let counters: Vec<(String, Arc<Stats>)> = self
            .nodes
            .iter()
            .map(|(name, node)| (name.clone(), Arc::clone(&node.stats)))
            .collect();
        let deadline = tokio::time::Instant::now() + timeout;
        // Guaranteed lanes stop pulling; what they delivered is handled below or redelivered.
        for (_, task) in std::mem::take(&mut self.subscribers) {
            task.abort();
        }
        let mut quieted = Vec::new();
        for node in self.nodes.values() {
            let (done, finished) = oneshot::channel();
            if node.ctl.send(Control::Quiet(done)).await.is_ok() {
                quieted.push(finished);
            }
        }
        for finished in quieted {
            let _ = tokio::time::timeout_at(deadline, finished).await;
        }
        let mut drained = false;
        while tokio::time::Instant::now() < deadline {
            let idle = self.nodes.values().all(|n| !n.busy.load(Ordering::Acquire));
            if self.in_flight.is_zero() && idle {
                drained = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        if !drained {
            tracing::warn!(rack = %self.name, "Shutdown timed out with messages in flight.");
        }
        self.taps.clear();
        for (_, node) in std::mem::take(&mut self.nodes) {
            let (done, finished) = oneshot::channel();
            let _ = node.ctl.send(Control::Stop(None, done)).await;
            // Each gear gets its own grace to stop (flush a sink), whatever the drain took.
            if tokio::time::timeout(self.limits.drain_timeout, finished)
                .await
                .is_err()
            {
                tracing::warn!(rack = %self.name, gear = %node.spec.name, "Gear did not stop in time.");
            }
            node.task.abort();
            // Once it is gone, what its queue held is counted.
            let _ = node.task.await;
        }
        for (_, (tx, task)) in std::mem::take(&mut self.publishers) {
            drop(tx);
            finish(task, self.limits.drain_timeout).await;
        }
        // Every share is settled or gone now: the ackers send their last verdicts and end.
        for task in std::mem::take(&mut self.ackers) {
            finish(task, self.limits.drain_timeout).await;
        }
        Stopped {
            drained,
            stats: counters
                .into_iter()
                .map(|(name, stats)| (name, stats.snapshot()))
                .collect(),
        }
    }
}

/// Waits for `task` up to `timeout`, then aborts it (a publisher that cannot reach the bus
/// must not outlive its rack).
async fn finish(mut task: JoinHandle<()>, timeout: Duration) {
    if tokio::time::timeout(timeout, &mut task).await.is_err() {
        task.abort();
        // Gone once this returns, with what it dropped counted.
        let _ = task.await;
    }
}
