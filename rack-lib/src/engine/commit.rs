//! The second half of an apply: carrying a [`Plan`] out on the running rack.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use sdk::{Availability, InPort, Ports, Runner};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

use super::graph::{GearSpec, Graph, PortRef, Subscription};
use super::lanes;
use super::node::{Control, Delivery, Identity, Node, Outgoing, Outputs, Sink, Target};
use super::plan::{Plan, input_of};
use super::{Change, NodeHandle, Rack, finish};
use crate::error::Error;

/// A new or restarted gear, built, loaded and initialised, not yet started.
struct Fresh {
    spec: GearSpec,
    runner: Runner,
    ports: Ports,
    /// The gear's and its output ports' ids, minted before anything running is touched.
    ids: (fluxmsg::Id, Vec<fluxmsg::Id>),
}

/// Input queues of the new graph: every gear's sender, and the receivers of the gears that
/// start (new ones get a fresh queue, restarted ones the queue they hand over).
#[derive(Default)]
struct Queues {
    senders: BTreeMap<String, mpsc::Sender<Delivery>>,
    receivers: BTreeMap<String, mpsc::Receiver<Delivery>>,
}

impl Rack {
    /// Carries out a [`Plan`] made by [`Rack::plan`].
    ///
    /// The new gears are loaded, initialised and given ids first; a failure there changes
    /// nothing. Then restarted gears hand their input queue over, kept gears are re-pointed,
    /// new gears start, lanes start and stop, and removed gears finish what is queued for
    /// them. A lane whose wire is gone has its durable consumer deleted once what it
    /// delivered is settled (waiting up to `drain_timeout`, then in the background). Only a
    /// gear that fails to `start` leaves the change partly applied. Let the future finish:
    /// dropping it half way leaves a half-applied graph.
    ///
    /// # Errors
    ///
    /// [`Error::StalePlan`] when the rack changed since the plan was made; a gear that fails
    /// to load, initialise or start (the gears that failed are not running; the rest of the
    /// change is applied); the stream of the guaranteed lanes cannot be created.
    pub async fn commit(&mut self, plan: Plan) -> Result<Change, Error> {
        if plan.generation != self.generation {
            return Err(Error::StalePlan);
        }
        self.generation += 1;
        let Plan {
            graph,
            change,
            repointed,
            ports,
            fresh,
            publishers,
            subscriptions,
            ..
        } = plan;
        if (!graph.publish.is_empty() || !graph.subscribe.is_empty())
            && let Some(snake) = &self.services.snake
        {
            lanes::ensure_stream(snake, &self.limits).await?;
            for feed in &graph.feeds {
                lanes::create_feed(snake, feed, &self.limits)
                    .await
                    .map_err(|source| Error::Lane {
                        lane: format!(
                            "{}.{}.{} -> {}.{}",
                            feed.lane.rack,
                            feed.lane.from.gear,
                            feed.lane.from.port,
                            feed.rack,
                            feed.lane.to
                        ),
                        source,
                    })?;
            }
        }
        // Lanes into the rack: their consumers exist (or the apply fails) before anything
        // running is touched.
        let mut consumers = self.open_consumers(&subscriptions.start).await?;
        let fresh = self.prepare(fresh).await?;

        let mut queues = self.queues(&graph);
        self.hand_over(&change.restarted, &mut queues).await;
        // Taps on ports that no longer exist are closed.
        self.taps.retain(|(at, _)| {
            ports
                .get(&at.gear)
                .is_some_and(|p| p.output(&at.port).is_some())
        });

        // Publishers first, so that the output tables below can point at them.
        let mut retired = Vec::new();
        for at in &publishers.stop {
            if let Some(publisher) = self.publishers.remove(at) {
                retired.push(publisher);
            }
        }
        for at in &publishers.start {
            self.start_publisher(at, &fresh)?;
        }

        // The gears each wire leads to, as they will run: a restarted gear's successor.
        let mut availability: BTreeMap<&str, Availability> = self
            .nodes
            .iter()
            .map(|(name, node)| (name.as_str(), node.availability.clone()))
            .collect();
        for f in &fresh {
            availability.insert(&f.spec.name, f.runner.context().availability());
        }
        let mut tables: BTreeMap<String, Outputs> = BTreeMap::new();
        for spec in &graph.gears {
            let queue = |to: &PortRef| {
                let tx = queues.senders.get(&to.gear)?.clone();
                let target = availability.get(to.gear.as_str())?.clone();
                Some((tx, input_of(&ports, to).ok()?, target))
            };
            let table = self.output_table(&graph, &spec.name, &ports[&spec.name], queue);
            tables.insert(spec.name.clone(), table);
        }
        for name in &repointed {
            if let (Some(node), Some(table)) = (self.nodes.get(name), tables.remove(name)) {
                let _ = node.ctl.send(Control::Rewire(table)).await;
            }
        }

        let failed = self.start_gears(fresh, &mut queues, &mut tables);

        // Lanes whose wire is gone stop pulling; their durables are deleted below.
        let mut removed_lanes = Vec::new();
        for sub in &subscriptions.stop {
            if let Some(inlet) = self.subscribers.remove(sub) {
                inlet.abort();
                removed_lanes.push(inlet);
            }
        }
        // A lane whose gear failed to start stops too; the rest start pulling.
        for sub in &subscriptions.keep {
            if !self.nodes.contains_key(&sub.to.gear)
                && let Some(task) = self.subscribers.remove(sub)
            {
                task.abort();
            }
        }
        for sub in &subscriptions.start {
            if let Some((consumer, durable)) = consumers.remove(sub) {
                self.start_subscription(sub, consumer, durable);
            }
        }

        // Removed gears finish what is queued for them, then stop; then retired publishers
        // send what they hold (the removed gears held their senders).
        for name in &change.removed {
            if let Some(node) = self.nodes.remove(name) {
                stop_node(node, None).await;
            }
        }
        for (tx, task) in retired {
            drop(tx);
            finish(task, self.limits.drain_timeout).await;
        }
        self.retire(removed_lanes).await;
        tracing::info!(
            rack = %self.name,
            added = change.added.len(),
            restarted = change.restarted.len(),
            removed = change.removed.len(),
            kept = change.kept.len(),
            repointed = repointed.len(),
            "Graph applied."
        );
        self.graph = graph;
        match failed {
            Some(e) => Err(e.into()),
            None => Ok(change),
        }
    }

    /// Loads and initialises the new gears and mints their ids; on a failure every one of
    /// them is stopped and nothing running was touched.
    async fn prepare(&self, planned: Vec<(GearSpec, sdk::Prepared)>) -> Result<Vec<Fresh>, Error> {
        let mut fresh = Vec::with_capacity(planned.len());
        let mut failed = None;
        for (spec, prepared) in planned {
            let ports = prepared.ports().clone();
            let mut runner = Runner::new(&spec.name, prepared, self.services.clone());
            let ready = match self.mint_ids(&spec, &ports) {
                Ok(ids) => {
                    let loaded = runner.load().await;
                    loaded
                        .and_then(|()| runner.init())
                        .map(|()| ids)
                        .map_err(Error::from)
                }
                Err(e) => Err(e),
            };
            match ready {
                Ok(ids) => fresh.push(Fresh {
                    spec,
                    runner,
                    ports,
                    ids,
                }),
                Err(e) => {
                    runner.stop();
                    failed = Some(e);
                    break;
                }
            }
        }
        if let Some(e) = failed {
            for f in &mut fresh {
                f.runner.stop();
            }
            return Err(e);
        }
        Ok(fresh)
    }

    /// The input queues of `graph`: running gears keep theirs, new gears get one.
    fn queues(&self, graph: &Graph) -> Queues {
        let mut queues = Queues::default();
        for spec in &graph.gears {
            match self.nodes.get(&spec.name) {
                Some(node) => {
                    queues.senders.insert(spec.name.clone(), node.tx.clone());
                }
                None => {
                    let (tx, rx) = mpsc::channel(self.limits.queue);
                    queues.senders.insert(spec.name.clone(), tx);
                    queues.receivers.insert(spec.name.clone(), rx);
                }
            }
        }
        queues
    }

    /// Restarted gears stop and hand their queue over (senders wait meanwhile).
    async fn hand_over(&mut self, restarted: &[String], queues: &mut Queues) {
        for name in restarted {
            if let Some(node) = self.nodes.remove(name) {
                let (handover, taken) = oneshot::channel();
                stop_node(node, Some(handover)).await;
                if let Ok(rx) = taken.await {
                    queues.receivers.insert(name.clone(), rx);
                }
            }
        }
    }

    /// Starts the publisher of the guaranteed lane out of `at`, counting into its gear's
    /// stats (a running gear's, or a new one's).
    fn start_publisher(&mut self, at: &PortRef, fresh: &[Fresh]) -> Result<(), Error> {
        let stats = self
            .nodes
            .get(&at.gear)
            .map(|n| Arc::clone(&n.stats))
            .or_else(|| {
                fresh
                    .iter()
                    .find(|f| f.spec.name == at.gear)
                    .map(|f| Arc::clone(f.runner.context().stats()))
            });
        let (Some(snake), Some(stats)) = (self.services.snake.clone(), stats) else {
            return Ok(());
        };
        let subject = snake::Subject::msg(&self.name, &at.gear, &at.port)?;
        let (tx, rx) = mpsc::channel(self.limits.queue);
        let task = lanes::spawn_publisher(&snake, subject, rx, Arc::clone(&self.in_flight), stats);
        self.publishers.insert(at.clone(), (tx, task));
        Ok(())
    }

    /// Starts and spawns the new and restarted gears; returns the first start failure (the
    /// gear that failed is not running, and what waited in its queue is counted as lost).
    fn start_gears(
        &mut self,
        fresh: Vec<Fresh>,
        queues: &mut Queues,
        tables: &mut BTreeMap<String, Outputs>,
    ) -> Option<sdk::Error> {
        let mut failed = None;
        for mut f in fresh {
            if let Err(e) = f.runner.start() {
                tracing::error!(rack = %self.name, gear = %f.spec.name, error = &e as &dyn std::error::Error, "Gear failed to start.");
                f.runner.stop();
                if let Some(rx) = queues.receivers.remove(&f.spec.name) {
                    let lost = self.discard(rx);
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
                queues.receivers.remove(&f.spec.name),
                tables.remove(&f.spec.name),
                queues.senders.get(&f.spec.name).cloned(),
            ) else {
                continue;
            };
            let handle = self.spawn(f, rx, table, tx);
            self.nodes.insert(handle.spec.name.clone(), handle);
        }
        failed
    }

    /// Closes a queue nobody will serve and counts what waited in it.
    fn discard(&self, mut rx: mpsc::Receiver<Delivery>) -> usize {
        rx.close();
        let mut lost = 0;
        while let Ok(delivery) = rx.try_recv() {
            self.in_flight.done(delivery.msgs.len());
            lost += delivery.msgs.len();
        }
        lost
    }

    /// Opens the durable consumers of the lanes that start.
    async fn open_consumers(
        &self,
        subscriptions: &[Subscription],
    ) -> Result<BTreeMap<Subscription, (snake::Consumer, String)>, Error> {
        let mut consumers = BTreeMap::new();
        let Some(snake) = &self.services.snake else {
            return Ok(consumers);
        };
        for sub in subscriptions {
            let subject = snake::Subject::msg(&sub.rack, &sub.from.gear, &sub.from.port)?;
            let dead_letter = snake::Subject::dead_letter(&self.name, &sub.to.gear, &sub.to.port)?;
            let durable = lanes::durable_name(&self.name, sub);
            // A lane removed by an earlier apply and back now keeps its durable.
            self.retiring.lock().await.remove(&durable);
            let consumer = lanes::open_consumer(
                snake,
                &subject,
                &durable,
                dead_letter,
                sub.history,
                &self.limits,
            )
            .await
            .map_err(|source| Error::Lane {
                lane: format!(
                    "{}.{}.{} -> {}",
                    sub.rack, sub.from.gear, sub.from.port, sub.to
                ),
                source,
            })?;
            consumers.insert(sub.clone(), (consumer, durable));
        }
        Ok(consumers)
    }

    /// Deletes the durable consumers of lanes whose wire the apply removed (they stopped
    /// pulling), each once everything it delivered into the rack is settled. The apply waits
    /// for that up to `drain_timeout`; a lane whose deliveries are still in the rack then is
    /// deleted later, by a task that the rack's shutdown waits for too.
    async fn retire(&mut self, inlets: Vec<lanes::Inlet>) {
        let Some(snake) = &self.services.snake else {
            return;
        };
        let deadline = tokio::time::Instant::now() + self.limits.drain_timeout;
        for inlet in inlets {
            let durable = inlet.durable().to_owned();
            self.retiring.lock().await.insert(durable.clone());
            let mut task = tokio::spawn(lanes::retire(
                snake.clone(),
                inlet,
                Arc::clone(&self.retiring),
            ));
            if tokio::time::timeout_at(deadline, &mut task).await.is_err() {
                tracing::info!(
                    rack = %self.name,
                    durable,
                    "A removed lane's deliveries are still in the rack; its durable consumer is deleted once they are settled."
                );
                self.ackers.push(task);
            }
        }
    }

    /// Starts pulling a guaranteed lane into a running gear (a gear that failed to start gets
    /// none; its consumer stays on the bus for the next apply).
    fn start_subscription(
        &mut self,
        sub: &Subscription,
        consumer: snake::Consumer,
        durable: String,
    ) {
        let (Some(node), Some(snake)) = (self.nodes.get(&sub.to.gear), &self.services.snake) else {
            return;
        };
        let Some(port) = node.ports.input(&sub.to.port) else {
            return;
        };
        let (inlet, acks) = lanes::spawn_subscriber(lanes::Inbound {
            consumer,
            durable,
            tx: node.tx.clone(),
            port,
            in_flight: Arc::clone(&self.in_flight),
            stats: Arc::clone(&node.stats),
            ack_wait: self.limits.ack_wait,
            batch: self.limits.batch,
            snake: snake.clone(),
        });
        self.subscribers.insert(sub.clone(), inlet);
        self.ackers.retain(|t| !t.is_finished());
        self.ackers.push(acks);
    }

    fn spawn(
        &self,
        fresh: Fresh,
        rx: mpsc::Receiver<Delivery>,
        table: Outputs,
        tx: mpsc::Sender<Delivery>,
    ) -> NodeHandle {
        let Fresh {
            spec,
            mut runner,
            ports,
            ids: (gear_id, port_ids),
        } = fresh;
        let name = spec.name.clone();
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
        let emissions = runner.take_emissions();
        let stats = Arc::clone(runner.context().stats());
        let availability = runner.context().availability();
        let (ctl_tx, ctl_rx) = mpsc::channel(16);
        let busy = Arc::new(AtomicBool::new(false));
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
            sampler: self.sampler.clone(),
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
            availability,
        }
    }

    /// Sends `gear` its output table again (after a tap was added).
    pub(super) async fn rewire(&self, gear: &str) -> Result<(), Error> {
        let node = self
            .nodes
            .get(gear)
            .ok_or_else(|| Error::UnknownGear(gear.to_owned()))?;
        let queue = |to: &PortRef| {
            let target = self.nodes.get(&to.gear)?;
            Some((
                target.tx.clone(),
                target.ports.input(&to.port)?,
                target.availability.clone(),
            ))
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
            self.services.ids.next_id().map_err(|source| Error::Ids {
                what: format!("gear {:?}", spec.name),
                source,
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
        queue: impl Fn(&PortRef) -> Option<(mpsc::Sender<Delivery>, InPort, Availability)>,
    ) -> Outputs {
        let mut table: Outputs = vec![Vec::new(); gear_ports.outputs().len()];
        for wire in graph.wires.iter().filter(|w| w.from.gear == gear) {
            let (Some(from), Some((tx, port, availability))) =
                (gear_ports.output(&wire.from.port), queue(&wire.to))
            else {
                continue;
            };
            table[from.index()].push(Target {
                sink: Sink::Queue { tx, port },
                name: wire.to.to_string().into(),
                tap: false,
                availability: Some(availability),
            });
        }
        for at in graph.publish.iter().filter(|at| at.gear == gear) {
            if let (Some(port), Some((tx, _))) =
                (gear_ports.output(&at.port), self.publishers.get(at))
            {
                table[port.index()].push(Target {
                    sink: Sink::Bus(tx.clone()),
                    name: format!("bus:{}.{}.{}", self.name, at.gear, at.port).into(),
                    tap: false,
                    availability: None,
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
}

/// Stops a node: with a handover, its input queue is given back untouched (a restart);
/// without, what is queued is processed first (a removal).
async fn stop_node(node: NodeHandle, handover: Option<oneshot::Sender<mpsc::Receiver<Delivery>>>) {
    let (done, finished) = oneshot::channel();
    let _ = node.ctl.send(Control::Stop(handover, done)).await;
    let _ = finished.await;
    let _ = node.task.await;
}

/// The publisher's end of a guaranteed lane out of the rack, and its task.
pub(super) type Publisher = (mpsc::Sender<Outgoing>, JoinHandle<()>);
