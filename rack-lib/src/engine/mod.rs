//! The engine: runs the gears of a [`Graph`] on Tokio tasks joined by bounded queues, and
//! applies a changed graph as a diff.

mod graph;
mod lanes;
mod node;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use fluxmsg::FluxMsg;
use gears::Factory;
use sdk::{Clock, IdSource, InPort, OutPort, Ports, Runner, Services, Stats, StatsSnapshot};
use snake::Snake;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

pub use self::graph::{GearSpec, Graph, PortRef, Subscription, Wire};
use self::node::{Control, Delivery, Identity, InFlight, Node, Outputs, Sink, Target};
use crate::error::Error;

/// The engine's limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct Limits {
    /// Deliveries (batches) a gear's input queue holds before senders wait (default 1,024).
    pub queue: usize,
    /// Most messages a gear processes in one batch (default 64).
    pub batch: usize,
    /// How long a send waits on a full queue before it counts as an error (default 5 s).
    pub send_timeout: Duration,
    /// How long a gear's tasks get to finish when it drains (default 5 s).
    pub drain_timeout: Duration,
    /// How long a guaranteed lane waits for a message's ack before delivering it again
    /// (default 30 s).
    pub ack_wait: Duration,
    /// Deliveries of a message on a guaranteed lane before it goes to the dead-letter
    /// subject (default 5).
    pub max_deliver: u32,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            queue: 1024,
            batch: 64,
            send_timeout: Duration::from_secs(5),
            drain_timeout: Duration::from_secs(5),
            ack_wait: Duration::from_secs(30),
            max_deliver: 5,
        }
    }
}

impl Limits {
    /// The same limits with another queue size (at least 1).
    #[must_use]
    pub fn with_queue(mut self, queue: usize) -> Limits {
        self.queue = queue.max(1);
        self
    }

    /// The same limits with another batch size (at least 1).
    #[must_use]
    pub fn with_batch(mut self, batch: usize) -> Limits {
        self.batch = batch.max(1);
        self
    }

    /// The same limits with another send timeout.
    #[must_use]
    pub fn with_send_timeout(mut self, timeout: Duration) -> Limits {
        self.send_timeout = timeout;
        self
    }

    /// The same limits with another ack wait for guaranteed lanes.
    #[must_use]
    pub fn with_ack_wait(mut self, wait: Duration) -> Limits {
        self.ack_wait = wait;
        self
    }

    /// The same limits with another drain timeout.
    #[must_use]
    pub fn with_drain_timeout(mut self, timeout: Duration) -> Limits {
        self.drain_timeout = timeout;
        self
    }
}

/// Builds a [`Rack`].
#[derive(Debug)]
pub struct RackBuilder {
    name: String,
    factory: Factory,
    snake: Option<Snake>,
    ids: Option<Arc<dyn IdSource>>,
    clock: Option<Arc<dyn Clock>>,
    limits: Limits,
}

impl RackBuilder {
    /// A rack called `name` with the built-in gear catalog, an in-process snake, ids from a
    /// generator on this host's machine id, the system clock and default limits.
    pub fn new(name: &str) -> RackBuilder {
        RackBuilder {
            name: name.to_owned(),
            factory: Factory::builtin(),
            snake: None,
            ids: None,
            clock: None,
            limits: Limits::default(),
        }
    }

    /// The gear factory (for example the built-in one plus your own gears).
    #[must_use]
    pub fn factory(mut self, factory: Factory) -> RackBuilder {
        self.factory = factory;
        self
    }

    /// The snake handle gears get.
    #[must_use]
    pub fn snake(mut self, snake: Snake) -> RackBuilder {
        self.snake = Some(snake);
        self
    }

    /// The id source for messages and gear ids.
    #[must_use]
    pub fn ids(mut self, ids: Arc<dyn IdSource>) -> RackBuilder {
        self.ids = Some(ids);
        self
    }

    /// The clock.
    #[must_use]
    pub fn clock(mut self, clock: Arc<dyn Clock>) -> RackBuilder {
        self.clock = Some(clock);
        self
    }

    /// The limits.
    #[must_use]
    pub fn limits(mut self, limits: Limits) -> RackBuilder {
        self.limits = limits;
        self
    }

    /// The rack, running nothing yet.
    ///
    /// # Errors
    ///
    /// When no id generator can be made for this host.
    pub fn build(self) -> Result<Rack, Error> {
        let clock = self.clock.unwrap_or_else(|| Arc::new(idgen::SystemClock));
        let ids = match self.ids {
            Some(ids) => ids,
            None => default_ids()?,
        };
        let services = Services::new(ids, clock)
            .with_snake(self.snake.unwrap_or_else(Snake::memory))
            .with_emit_capacity(self.limits.queue);
        Ok(Rack {
            name: self.name,
            factory: self.factory,
            services,
            limits: self.limits,
            nodes: BTreeMap::new(),
            graph: Graph::new(),
            taps: Vec::new(),
            publishers: BTreeMap::new(),
            subscribers: BTreeMap::new(),
            in_flight: Arc::new(InFlight::default()),
        })
    }
}

fn default_ids() -> Result<Arc<dyn IdSource>, Error> {
    let generator = idgen::Generator::builder()
        .machine_id_from_host()
        .build()
        .or_else(|_| idgen::Generator::builder().machine_id(1).build())
        .map_err(|e| {
            Error::Lifecycle(sdk::Error::Schema {
                gear_type: "rack".to_owned(),
                reason: format!("no id generator: {e}"),
            })
        })?;
    Ok(Arc::new(generator))
}

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
    publishers: BTreeMap<PortRef, (mpsc::Sender<Vec<FluxMsg>>, JoinHandle<()>)>,
    subscribers: BTreeMap<Subscription, JoinHandle<()>>,
    in_flight: Arc<InFlight>,
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
    acker: JoinHandle<()>,
}

/// What an [`Rack::apply`] changed.
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

struct Fresh {
    name: String,
    spec: GearSpec,
    runner: Runner,
    ports: Ports,
    /// The gear's and its output ports' ids, minted before anything running is touched.
    ids: (fluxmsg::Id, Vec<fluxmsg::Id>),
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

    /// Makes the rack run `graph`, as a diff from what it runs now.
    ///
    /// Everything is checked and prepared first (types, configurations, wires, `init` of the
    /// new gears, their ids); a graph that fails there changes nothing. Only a gear that fails
    /// to `start` leaves the change partly applied. Let the future finish: dropping it half
    /// way leaves a half-applied graph.
    ///
    /// # Errors
    ///
    /// A duplicate gear, an unknown type or bad configuration, a wire to an unknown gear or
    /// port, or a gear that fails to initialise or start (the gears that failed are not
    /// running; the rest of the change is applied).
    pub async fn apply(&mut self, graph: Graph) -> Result<Change, Error> {
        // 1. Check: every gear builds, every wire names real ports. Nothing runs yet.
        let mut seen = BTreeSet::new();
        let mut change = Change::default();
        let mut fresh = Vec::new();
        let mut ports: BTreeMap<String, Ports> = BTreeMap::new();
        for spec in &graph.gears {
            if !seen.insert(spec.name.clone()) {
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
                    let gear_ports = prepared.ports().clone();
                    ports.insert(spec.name.clone(), gear_ports.clone());
                    if running.is_some() {
                        change.restarted.push(spec.name.clone());
                    } else {
                        change.added.push(spec.name.clone());
                    }
                    let ids = self.mint_ids(spec, &gear_ports)?;
                    let runner = Runner::new(&spec.name, prepared, self.services.clone());
                    fresh.push(Fresh {
                        name: spec.name.clone(),
                        spec: spec.clone(),
                        runner,
                        ports: gear_ports,
                        ids,
                    });
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
        if (!graph.publish.is_empty() || !graph.subscribe.is_empty())
            && let Some(snake) = &self.services.snake
        {
            lanes::ensure_stream(snake).await?;
        }
        change.removed = self
            .nodes
            .keys()
            .filter(|name| !seen.contains(*name))
            .cloned()
            .collect();

        // 2. Load and initialise the new gears; a failure here still changes nothing.
        let mut failed = None;
        for f in &mut fresh {
            let loaded = f.runner.load().await;
            if let Err(e) = loaded.and_then(|()| f.runner.init()) {
                failed = Some(e);
                break;
            }
        }
        if let Some(e) = failed {
            for f in &mut fresh {
                f.runner.stop();
            }
            return Err(e.into());
        }

        // 3. Input queues: the kept and restarted gears keep theirs; new gears get one.
        let mut queues: BTreeMap<String, mpsc::Sender<Delivery>> = BTreeMap::new();
        let mut receivers: BTreeMap<String, mpsc::Receiver<Delivery>> = BTreeMap::new();
        for spec in &graph.gears {
            match self.nodes.get(&spec.name) {
                Some(node) => {
                    queues.insert(spec.name.clone(), node.tx.clone());
                }
                None => {
                    let (tx, rx) = mpsc::channel(self.limits.queue);
                    queues.insert(spec.name.clone(), tx);
                    receivers.insert(spec.name.clone(), rx);
                }
            }
        }

        // 4. Restarted gears stop and hand their queue over (senders wait meanwhile).
        for name in &change.restarted {
            if let Some(node) = self.nodes.remove(name) {
                let (handover, taken) = oneshot::channel();
                let (done, finished) = oneshot::channel();
                let _ = node.ctl.send(Control::Stop(Some(handover), done)).await;
                let _ = finished.await;
                if let Ok(rx) = taken.await {
                    receivers.insert(name.clone(), rx);
                }
                let _ = node.task.await;
                let _ = node.acker.await;
            }
        }

        // 5. Taps on ports that no longer exist are closed.
        self.taps.retain(|(at, _)| {
            ports
                .get(&at.gear)
                .is_some_and(|p| p.output(&at.port).is_some())
        });

        // 6. Publishers for the guaranteed lanes out of this rack: kept ones keep running.
        let old_publishers = std::mem::take(&mut self.publishers);
        let mut retired = Vec::new();
        for (at, publisher) in old_publishers {
            if graph.publish.contains(&at) {
                self.publishers.insert(at, publisher);
            } else {
                retired.push(publisher);
            }
        }
        let wanted: Vec<(PortRef, Arc<Stats>)> = graph
            .publish
            .iter()
            .filter(|at| !self.publishers.contains_key(*at))
            .filter_map(|at| {
                let stats = self
                    .nodes
                    .get(&at.gear)
                    .map(|n| Arc::clone(&n.stats))
                    .or_else(|| {
                        fresh
                            .iter()
                            .find(|f| f.name == at.gear)
                            .map(|f| Arc::clone(f.runner.context().stats()))
                    })?;
                Some((at.clone(), stats))
            })
            .collect();
        for (at, stats) in wanted {
            let Some(snake) = self.services.snake.clone() else {
                continue;
            };
            let subject = snake::Subject::msg(&self.name, &at.gear, &at.port)?;
            let (tx, rx) = mpsc::channel(self.limits.queue);
            let task =
                lanes::spawn_publisher(snake, subject, rx, Arc::clone(&self.in_flight), stats);
            self.publishers.insert(at, (tx, task));
        }

        // 7. Output tables for every gear of the new graph; kept gears are re-pointed.
        let mut tables: BTreeMap<String, Outputs> = BTreeMap::new();
        for spec in &graph.gears {
            let queue = |to: &PortRef| {
                let tx = queues.get(&to.gear)?.clone();
                Some((tx, input_of(&ports, to).ok()?))
            };
            let table = self.output_table(&graph, &spec.name, &ports[&spec.name], queue);
            tables.insert(spec.name.clone(), table);
        }
        for name in &change.kept {
            if let (Some(node), Some(table)) = (self.nodes.get(name), tables.remove(name)) {
                let _ = node.ctl.send(Control::Rewire(table)).await;
            }
        }

        // 8. Start and spawn the new and restarted gears.
        let mut failed = None;
        for mut f in fresh {
            if let Err(e) = f.runner.start() {
                tracing::error!(rack = %self.name, gear = %f.name, error = %e, "gear failed to start");
                f.runner.stop();
                // A restarted gear's queue: what waits in it is counted, not kept.
                if let Some(mut rx) = receivers.remove(&f.name) {
                    rx.close();
                    let mut lost = 0;
                    while let Ok(delivery) = rx.try_recv() {
                        self.in_flight.done(delivery.msgs.len());
                        lost += delivery.msgs.len();
                    }
                    if lost > 0 {
                        f.runner
                            .context()
                            .stats()
                            .add_dropped("start_failed", lost as u64);
                    }
                }
                failed.get_or_insert(e);
                continue;
            }
            let (Some(rx), Some(table), Some(tx)) = (
                receivers.remove(&f.name),
                tables.remove(&f.name),
                queues.get(&f.name).cloned(),
            ) else {
                continue;
            };
            let handle = self.spawn(f, rx, table, tx);
            self.nodes.insert(handle.spec.name.clone(), handle);
        }

        // 9. Guaranteed lanes into the rack: new ones start pulling, removed ones stop (what
        // they delivered but was not handled is delivered again later).
        let old_subscribers = std::mem::take(&mut self.subscribers);
        for (sub, task) in old_subscribers {
            if graph.subscribe.contains(&sub) && self.nodes.contains_key(&sub.to.gear) {
                self.subscribers.insert(sub, task);
            } else {
                task.abort();
            }
        }
        for sub in &graph.subscribe {
            if self.subscribers.contains_key(sub) {
                continue;
            }
            let (Some(snake), Some(node)) =
                (self.services.snake.clone(), self.nodes.get(&sub.to.gear))
            else {
                continue;
            };
            let Some(port) = node.ports.input(&sub.to.port) else {
                continue;
            };
            let task = lanes::spawn_subscriber(lanes::Inbound {
                snake,
                subject: snake::Subject::msg(&sub.rack, &sub.from.gear, &sub.from.port)?,
                durable: format!(
                    "{}-{}-{}-{}-{}-{}",
                    self.name, sub.to.gear, sub.to.port, sub.rack, sub.from.gear, sub.from.port
                ),
                dead_letter: snake::Subject::dead_letter(&self.name, &sub.to.gear, &sub.to.port)?,
                tx: node.tx.clone(),
                port,
                in_flight: Arc::clone(&self.in_flight),
                stats: Arc::clone(&node.stats),
                ack_wait: self.limits.ack_wait,
                max_deliver: self.limits.max_deliver,
            });
            self.subscribers.insert(sub.clone(), task);
        }

        // 10. Removed gears finish what is queued for them, then stop; then retired publishers
        // send what they hold (the removed gears held their senders).
        for name in &change.removed {
            if let Some(node) = self.nodes.remove(name) {
                let (done, finished) = oneshot::channel();
                let _ = node.ctl.send(Control::Stop(None, done)).await;
                let _ = finished.await;
                let _ = node.task.await;
                let _ = node.acker.await;
            }
        }
        for (tx, task) in retired {
            drop(tx);
            finish(task, self.limits.drain_timeout).await;
        }
        tracing::info!(
            rack = %self.name,
            added = change.added.len(),
            restarted = change.restarted.len(),
            removed = change.removed.len(),
            kept = change.kept.len(),
            "graph applied"
        );
        self.graph = graph;
        match failed {
            Some(e) => Err(e.into()),
            None => Ok(change),
        }
    }

    fn spawn(
        &self,
        fresh: Fresh,
        rx: mpsc::Receiver<Delivery>,
        table: Outputs,
        tx: mpsc::Sender<Delivery>,
    ) -> NodeHandle {
        let Fresh {
            name,
            spec,
            mut runner,
            ports,
            ids: (gear_id, port_ids),
        } = fresh;
        let counters = |metric: &'static str, list: &[sdk::PortName]| -> Vec<metrics::Counter> {
            list.iter()
                .map(|p| metrics::counter!(metric, "gear" => name.clone(), "port" => p.to_string()))
                .collect()
        };
        let identity = Identity {
            gear: gear_id,
            ports: port_ids,
            port_in: counters("flux.port.messages_in", ports.inputs()),
            port_out: counters("flux.port.messages_out", ports.outputs()),
        };
        let emissions = runner
            .take_emissions()
            .unwrap_or_else(|| mpsc::channel(1).1);
        let stats = Arc::clone(runner.context().stats());
        let (ctl_tx, ctl_rx) = mpsc::channel(16);
        let busy = Arc::new(AtomicBool::new(false));
        let (acker, mut acks) = mpsc::unbounded_channel::<(snake::Delivery, bool)>();
        let gear = name.clone();
        let acker_task = tokio::spawn(async move {
            while let Some((delivery, handled)) = acks.recv().await {
                let result = if handled {
                    delivery.ack().await
                } else {
                    delivery.nak(Duration::from_secs(1)).await
                };
                if let Err(e) = result {
                    tracing::warn!(gear, error = %e, "ack failed; the message will be delivered again");
                }
            }
        });
        let node = Node {
            name: name.into(),
            runner,
            rx,
            ctl: ctl_rx,
            emissions,
            outputs: table,
            ids: Arc::clone(&self.services.ids),
            clock: Arc::clone(&self.services.clock),
            identity,
            limits: self.limits,
            in_flight: Arc::clone(&self.in_flight),
            busy: Arc::clone(&busy),
            acker,
            lost: false,
        };
        let task = tokio::spawn(node.run());
        NodeHandle {
            spec,
            tx,
            ctl: ctl_tx,
            task,
            ports,
            stats,
            busy,
            acker: acker_task,
        }
    }

    /// A handle that puts messages into the input port `port` of the gear `gear`, as a wire
    /// would (the send waits while the queue is full, up to the send timeout).
    ///
    /// # Errors
    ///
    /// An unknown gear or input port.
    pub fn injector(&self, gear: &str, port: &str) -> Result<Injector, Error> {
        let node = self
            .nodes
            .get(gear)
            .ok_or_else(|| Error::UnknownGear(gear.to_owned()))?;
        let at = PortRef::new(gear, port);
        let input = node.ports.input(port).ok_or_else(|| Error::UnknownPort {
            gear: gear.to_owned(),
            dir: "input",
            port: port.to_owned(),
            known: names(node.ports.inputs()),
        })?;
        Ok(Injector {
            tx: node.tx.clone(),
            port: input,
            at,
            timeout: self.limits.send_timeout,
            in_flight: Arc::clone(&self.in_flight),
        })
    }

    /// Taps the output port `port` of the gear `gear`: from now on the tap gets a copy of
    /// everything it emits, as a wire's target would (a tap that is not read slows the gear
    /// down, then its sends time out). The tap stays across [`apply`](Rack::apply) while the
    /// port exists. It sees what the port emits after it is in place: to see a source's first
    /// messages, tap before the source is added (apply the graph without it, tap, then apply
    /// it with the source; the second apply only adds the source).
    ///
    /// # Errors
    ///
    /// An unknown gear or output port.
    pub async fn tap(&mut self, gear: &str, port: &str) -> Result<Tap, Error> {
        let node = self
            .nodes
            .get(gear)
            .ok_or_else(|| Error::UnknownGear(gear.to_owned()))?;
        if node.ports.output(port).is_none() {
            return Err(Error::UnknownPort {
                gear: gear.to_owned(),
                dir: "output",
                port: port.to_owned(),
                known: names(node.ports.outputs()),
            });
        }
        self.taps.retain(|(_, t)| match &t.sink {
            Sink::Queue { tx, .. } => !tx.is_closed(),
            Sink::Bus(_) => true,
        });
        let (tx, rx) = mpsc::channel(self.limits.queue);
        self.taps.push((
            PortRef::new(gear, port),
            Target {
                sink: Sink::Queue {
                    tx,
                    port: InPort::from_index(0),
                },
                name: format!("tap:{gear}.{port}").into(),
            },
        ));
        self.rewire(gear).await?;
        Ok(Tap {
            rx,
            buf: std::collections::VecDeque::new(),
            in_flight: Arc::clone(&self.in_flight),
        })
    }

    /// Sends `gear` its output table again (after a tap was added).
    async fn rewire(&self, gear: &str) -> Result<(), Error> {
        let node = self
            .nodes
            .get(gear)
            .ok_or_else(|| Error::UnknownGear(gear.to_owned()))?;
        let queue = |to: &PortRef| {
            let target = self.nodes.get(&to.gear)?;
            Some((target.tx.clone(), target.ports.input(&to.port)?))
        };
        let table = self.output_table(&self.graph, gear, &node.ports, queue);
        node.ctl
            .send(Control::Rewire(table))
            .await
            .map_err(|_| Error::Stopped)
    }

    /// Ids for a gear and each of its output ports (stamped on hops).
    fn mint_ids(
        &self,
        spec: &GearSpec,
        ports: &Ports,
    ) -> Result<(fluxmsg::Id, Vec<fluxmsg::Id>), Error> {
        let mint = || {
            self.services.ids.next_id().map_err(|e| {
                Error::Lifecycle(sdk::Error::Schema {
                    gear_type: spec.gear_type.clone(),
                    reason: format!("no id for the gear: {e}"),
                })
            })
        };
        let gear = mint()?;
        let outputs = ports
            .outputs()
            .iter()
            .map(|_| mint())
            .collect::<Result<_, _>>()?;
        Ok((gear, outputs))
    }

    /// The output table of `gear` in `graph`: its wires (to the queues `queue` finds), the
    /// publishers of its guaranteed lanes, and its taps.
    fn output_table(
        &self,
        graph: &Graph,
        gear: &str,
        gear_ports: &Ports,
        queue: impl Fn(&PortRef) -> Option<(mpsc::Sender<Delivery>, InPort)>,
    ) -> Outputs {
        let mut table: Outputs = vec![Vec::new(); gear_ports.outputs().len()];
        for wire in graph.wires.iter().filter(|w| w.from.gear == gear) {
            let (Some(from), Some((tx, port))) =
                (gear_ports.output(&wire.from.port), queue(&wire.to))
            else {
                continue;
            };
            table[from.index()].push(Target {
                sink: Sink::Queue { tx, port },
                name: wire.to.to_string().into(),
            });
        }
        for at in graph.publish.iter().filter(|at| at.gear == gear) {
            if let (Some(port), Some((tx, _))) =
                (gear_ports.output(&at.port), self.publishers.get(at))
            {
                table[port.index()].push(Target {
                    sink: Sink::Bus(tx.clone()),
                    name: format!("bus:{}.{}.{}", self.name, at.gear, at.port).into(),
                });
            }
        }
        for (at, target) in self.taps.iter().filter(|(at, _)| at.gear == gear) {
            if let Some(port) = gear_ports.output(&at.port) {
                table[port.index()].push(target.clone());
            }
        }
        table
    }

    /// Stops everything at once, as a crash would: no drain, no acks for what is in flight
    /// (guaranteed lanes deliver it again), nothing flushed.
    pub fn abort(mut self) {
        for (_, task) in std::mem::take(&mut self.subscribers) {
            task.abort();
        }
        for (_, node) in std::mem::take(&mut self.nodes) {
            node.task.abort();
            node.acker.abort();
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
    /// then every gear stops.
    ///
    /// Returns whether everything in flight was delivered before the timeout.
    pub async fn shutdown(mut self, timeout: Duration) -> bool {
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
            tracing::warn!(rack = %self.name, "shutdown timed out with messages in flight");
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
                tracing::warn!(rack = %self.name, gear = %node.spec.name, "gear did not stop in time");
            }
            node.task.abort();
            finish(node.acker, self.limits.drain_timeout).await;
        }
        for (_, (tx, task)) in std::mem::take(&mut self.publishers) {
            drop(tx);
            finish(task, self.limits.drain_timeout).await;
        }
        drained
    }
}

/// Puts messages into one input port of one gear (see [`Rack::injector`]).
#[derive(Debug, Clone)]
pub struct Injector {
    tx: mpsc::Sender<Delivery>,
    port: InPort,
    at: PortRef,
    timeout: Duration,
    in_flight: Arc<InFlight>,
}

impl Injector {
    /// Sends one message.
    ///
    /// # Errors
    ///
    /// [`Error::Full`] when the queue stays full for the send timeout (the message is given
    /// back in nothing: it was not accepted), [`Error::Stopped`] when the gear is gone.
    pub async fn send(&self, msg: FluxMsg) -> Result<(), Error> {
        self.send_batch(vec![msg]).await
    }

    /// Sends messages as one batch.
    ///
    /// # Errors
    ///
    /// As [`Injector::send`].
    pub async fn send_batch(&self, msgs: Vec<FluxMsg>) -> Result<(), Error> {
        if msgs.is_empty() {
            return Ok(());
        }
        let permit = match tokio::time::timeout(self.timeout, self.tx.reserve()).await {
            Ok(Ok(permit)) => permit,
            Ok(Err(_)) => return Err(Error::Stopped),
            Err(_) => return Err(Error::Full(self.at.clone())),
        };
        self.in_flight.add(msgs.len());
        permit.send(Delivery {
            port: self.port,
            msgs,
            acks: Vec::new(),
        });
        Ok(())
    }
}

/// A copy of everything one output port emits (see [`Rack::tap`]).
#[derive(Debug)]
pub struct Tap {
    rx: mpsc::Receiver<Delivery>,
    buf: std::collections::VecDeque<FluxMsg>,
    in_flight: Arc<InFlight>,
}

impl Drop for Tap {
    fn drop(&mut self) {
        // What was never read is no longer in flight.
        self.rx.close();
        while let Ok(delivery) = self.rx.try_recv() {
            self.in_flight.done(delivery.msgs.len());
        }
    }
}

impl Tap {
    /// The next message; `None` once the tap is closed (the port or the rack is gone).
    pub async fn recv(&mut self) -> Option<FluxMsg> {
        loop {
            if let Some(msg) = self.buf.pop_front() {
                return Some(msg);
            }
            let delivery = self.rx.recv().await?;
            self.in_flight.done(delivery.msgs.len());
            self.buf.extend(delivery.msgs);
        }
    }

    /// The next message if one is there now.
    pub fn try_recv(&mut self) -> Option<FluxMsg> {
        while self.buf.is_empty() {
            let delivery = self.rx.try_recv().ok()?;
            self.in_flight.done(delivery.msgs.len());
            self.buf.extend(delivery.msgs);
        }
        self.buf.pop_front()
    }
}

/// Waits for `task` up to `timeout`, then aborts it (a publisher that cannot reach the bus
/// must not outlive its rack).
async fn finish(mut task: JoinHandle<()>, timeout: Duration) {
    if tokio::time::timeout(timeout, &mut task).await.is_err() {
        task.abort();
    }
}

fn output_of(ports: &BTreeMap<String, Ports>, at: &PortRef) -> Result<OutPort, Error> {
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

fn input_of(ports: &BTreeMap<String, Ports>, at: &PortRef) -> Result<InPort, Error> {
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

fn names(ports: &[sdk::PortName]) -> String {
    ports
        .iter()
        .map(|p| p.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}
