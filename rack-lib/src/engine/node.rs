//! One running gear: its task, its input queue, its output table.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::time::Instant;

use fluxmsg::{FluxMsg, Hop, Id};
use sdk::{
    Emission, Emissions, GearError, IdSource, InPort, OutPort, Outputs as SdkOutputs, Runner,
    mark_error,
};
use tokio::sync::{mpsc, oneshot};

use super::Limits;
use super::ack::{Share, fail_all, poison, settle_all};

/// Messages for one input port of one gear, with the shares of the guaranteed inputs they
/// derive from (none for messages that never touched a guaranteed lane).
#[derive(Debug)]
pub(crate) struct Delivery {
    pub(crate) port: InPort,
    pub(crate) msgs: Vec<FluxMsg>,
    pub(crate) shares: Vec<Share>,
}

/// A batch for a guaranteed lane's publisher, with the shares it settles once the server
/// acked every message of it.
pub(crate) type Outgoing = (Vec<FluxMsg>, Vec<Share>);

/// Where one output port sends.
#[derive(Debug, Clone)]
pub(crate) struct Target {
    pub(crate) sink: Sink,
    pub(crate) name: Arc<str>,
    /// A tap: when its holder dropped it, sends to it are skipped, neither counted as lost
    /// nor failing the acknowledgement of what the real wires carry.
    pub(crate) tap: bool,
    /// Whether the gear at the other end takes input now (a wire to a gear of this rack).
    pub(crate) availability: Option<sdk::Availability>,
}

/// A gear's input queue (or a tap) and the port there, or a guaranteed lane's publisher.
#[derive(Debug, Clone)]
pub(crate) enum Sink {
    Queue {
        tx: mpsc::Sender<Delivery>,
        port: InPort,
    },
    Bus(mpsc::Sender<Outgoing>),
}

impl Target {
    /// Hands `msgs` over without waiting (and without shares: what a failed send reroutes
    /// has already failed its inputs' acknowledgement); gives them back when there is no room.
    fn try_deliver(&self, msgs: Vec<FluxMsg>) -> Result<(), Vec<FluxMsg>> {
        match &self.sink {
            Sink::Queue { tx, port } => tx
                .try_send(Delivery {
                    port: *port,
                    msgs,
                    shares: Vec::new(),
                })
                .map_err(|e| e.into_inner().msgs),
            Sink::Bus(tx) => tx
                .try_send((msgs, Vec::new()))
                .map_err(|e| e.into_inner().0),
        }
    }

    /// How many batches wait in the target's queue.
    fn depth(&self) -> usize {
        match &self.sink {
            Sink::Queue { tx, .. } => tx.max_capacity() - tx.capacity(),
            Sink::Bus(tx) => tx.max_capacity() - tx.capacity(),
        }
    }
}

/// The output table of a node: targets per output port.
pub(crate) type Outputs = Vec<Vec<Target>>;

/// Orders from the engine to a node.
#[derive(Debug)]
pub(crate) enum Control {
    /// Replace the output table.
    Rewire(Outputs),
    /// Stop producing (sources): drain the gear, keep serving the queue.
    Quiet(oneshot::Sender<()>),
    /// Drain and stop the gear, then end. With a handover, the input queue is given back
    /// untouched (a restart); without, what is queued is processed first (a removal).
    Stop(
        Option<oneshot::Sender<mpsc::Receiver<Delivery>>>,
        oneshot::Sender<()>,
    ),
}

/// Counters shared by every node of a rack: messages queued but not yet processed.
#[derive(Debug, Default)]
pub(crate) struct InFlight(AtomicI64);

impl InFlight {
    pub(crate) fn add(&self, n: usize) {
        self.0.fetch_add(n as i64, Ordering::AcqRel);
    }

    pub(crate) fn done(&self, n: usize) {
        self.0.fetch_sub(n as i64, Ordering::AcqRel);
    }

    pub(crate) fn is_zero(&self) -> bool {
        self.0.load(Ordering::Acquire) <= 0
    }
}

/// The ids a node stamps on hops (the gear's and each output port's) and its per-port
/// counters (`flux.port.messages_in` / `flux.port.messages_out`, labelled gear and port).
#[derive(Debug)]
pub(crate) struct Identity {
    pub(crate) gear: Id,
    pub(crate) ports: Vec<Id>,
    pub(crate) port_in: Vec<metrics::Counter>,
    pub(crate) port_out: Vec<metrics::Counter>,
}

pub(crate) struct Node {
    pub(crate) name: Arc<str>,
    pub(crate) runner: Runner,
    pub(crate) rx: mpsc::Receiver<Delivery>,
    pub(crate) ctl: mpsc::Receiver<Control>,
    /// What the gear's own tasks emit (`None` for a gear without an emitter).
    pub(crate) emissions: Option<Emissions>,
    pub(crate) outputs: Outputs,
    pub(crate) ids: Arc<dyn IdSource>,
    pub(crate) clock: Arc<dyn sdk::Clock>,
    pub(crate) identity: Identity,
    pub(crate) limits: Limits,
    pub(crate) in_flight: Arc<InFlight>,
    pub(crate) busy: Arc<AtomicBool>,
    /// Samples hops for telemetry, when the rack was built with one.
    pub(crate) sampler: Option<super::sample::HopSampler>,
}

/// Per-port output buffers, reused across batches.
struct Scratch {
    batch: Vec<FluxMsg>,
    /// The shares of the guaranteed inputs of the batch being handled; each target that gets
    /// something of the batch gets a copy of them.
    shares: Vec<Share>,
    out: SdkOutputs,
    /// Ids minted for the messages of one port that had none.
    ids: Vec<fluxmsg::Id>,
}

impl Node {
    /// Makes each output port's status follow the gears its wires lead to.
    fn follow_targets(&self) {
        let statuses = self.runner.context().port_statuses();
        for (status, targets) in statuses.iter().zip(&self.outputs) {
            status.follow(
                targets
                    .iter()
                    .filter_map(|t| t.availability.clone())
                    .collect(),
            );
        }
    }

    pub(crate) async fn run(mut self) {
        self.follow_targets();
        let mut scratch = Scratch {
            batch: Vec::with_capacity(self.limits.batch),
            shares: Vec::new(),
            out: SdkOutputs::new(),
            ids: Vec::new(),
        };
        let time =
            metrics::histogram!("flux.gear.processing_time_ms", "gear" => self.name.to_string());
        let mut emissions_open = self.emissions.is_some();
        let mut emissions_turn = false;
        loop {
            // Control comes before data: a rewire (a new tap) sent before a message applies to
            // it.
            match self.ctl.try_recv() {
                Ok(ctl) => {
                    if self.control(Some(ctl), &mut scratch).await {
                        return;
                    }
                    continue;
                }
                Err(mpsc::error::TryRecvError::Disconnected) => {
                    self.control(None, &mut scratch).await;
                    return;
                }
                Err(mpsc::error::TryRecvError::Empty) => {}
            }
            // Every other turn an active gear's pending emission goes first, so that a steady
            // input cannot starve it (the `recv` below finds when its emitters are all gone).
            if emissions_turn
                && emissions_open
                && let Some(emission) = self.emissions.as_mut().and_then(Emissions::try_recv)
            {
                emissions_turn = false;
                self.emission(emission, &mut scratch).await;
                continue;
            }
            emissions_turn = true;
            tokio::select! {
                biased;
                ctl = self.ctl.recv() => {
                    if self.control(ctl, &mut scratch).await {
                        return;
                    }
                }
                first = self.rx.recv() => {
                    let Some(first) = first else { continue };
                    self.busy.store(true, Ordering::Release);
                    let started = Instant::now();
                    let n = self.handle(first, &mut scratch).await;
                    if n > 0 {
                        time.record(started.elapsed().as_secs_f64() * 1000.0 / n as f64);
                    }
                    self.busy.store(false, Ordering::Release);
                }
                emission = next_emission(&mut self.emissions), if emissions_open => match emission {
                    Some(emission) => self.emission(emission, &mut scratch).await,
                    None => emissions_open = false,
                },
            }
        }
    }

    /// Sends on what an active gear emitted.
    async fn emission(&mut self, emission: Emission, scratch: &mut Scratch) {
        self.stage_emission(emission, scratch);
        self.dispatch(scratch).await;
    }

    /// Carries out an order; `true` when the node must end.
    async fn control(&mut self, ctl: Option<Control>, scratch: &mut Scratch) -> bool {
        match ctl {
            Some(Control::Rewire(outputs)) => {
                self.outputs = outputs;
                self.follow_targets();
                false
            }
            Some(Control::Quiet(done)) => {
                self.runner.drain(self.limits.drain_timeout).await;
                // What the gear's tasks emitted before they stopped goes on now, so that it
                // counts as in flight when the rack waits for quiet.
                self.forward_emissions(scratch).await;
                let _ = done.send(());
                false
            }
            Some(Control::Stop(handover, done)) => {
                if handover.is_none() {
                    // No more senders get in (a late one sees the queue closed and counts its
                    // messages); what is queued is handled.
                    self.rx.close();
                    while let Some(delivery) = self.rx.recv().await {
                        self.handle(delivery, scratch).await;
                    }
                }
                self.runner.drain(self.limits.drain_timeout).await;
                self.forward_emissions(scratch).await;
                self.runner.stop();
                if let Some(handover) = handover {
                    let (_, dead) = mpsc::channel(1);
                    let _ = handover.send(std::mem::replace(&mut self.rx, dead));
                }
                let _ = done.send(());
                true
            }
            None => {
                self.runner.drain(self.limits.drain_timeout).await;
                self.runner.stop();
                true
            }
        }
    }

    /// Processes one delivery and whatever else is already queued, in batches of one port
    /// each, up to the batch size.
    async fn handle(&mut self, first: Delivery, scratch: &mut Scratch) -> usize {
        let mut next = Some(first);
        let mut total = 0;
        while let Some(delivery) = next.take() {
            let port = delivery.port;
            if scratch.batch.is_empty() {
                // Take the sender's vector whole instead of copying its messages one by one.
                scratch.batch = delivery.msgs;
            } else {
                scratch.batch.extend(delivery.msgs);
            }
            scratch.shares.extend(delivery.shares);
            while scratch.batch.len() < self.limits.batch {
                match self.rx.try_recv() {
                    Ok(more) if more.port == port => {
                        scratch.batch.extend(more.msgs);
                        scratch.shares.extend(more.shares);
                    }
                    Ok(other) => {
                        next = Some(other);
                        break;
                    }
                    Err(_) => break,
                }
            }
            total += self.process(port, scratch).await;
        }
        total
    }

    async fn process(&mut self, port: InPort, scratch: &mut Scratch) -> usize {
        let n = scratch.batch.len();
        if n == 0 {
            return 0;
        }
        if let Some(counter) = self.identity.port_in.get(port.index()) {
            counter.increment(n as u64);
        }
        if let Err(e) = self
            .runner
            .process(port, &mut scratch.batch, &mut scratch.out)
        {
            tracing::warn!(gear = %self.name, error = %e, dropped = n, "A batch reached a gear that is not running.");
            self.runner
                .context()
                .stats()
                .add_dropped("not_running", n as u64);
            scratch.batch.clear();
            // Lost, not handled: their guaranteed inputs are delivered again.
            fail_all(&scratch.shares);
        }
        self.dispatch(scratch).await;
        // This gear's part is done: what it passed on carries copies of the shares, and what
        // it consumed or dropped on purpose ends here. A send that failed dropped its copies
        // unsettled, which fails the inputs' acknowledgement.
        settle_all(&mut scratch.shares);
        self.in_flight.done(n);
        n
    }

    /// Puts what an active gear emitted into the outputs; a port the gear does not have sends
    /// the messages to `error` (`bad_port`), as the runner does for passive gears.
    fn stage_emission(&self, emission: Emission, scratch: &mut Scratch) {
        let port = match &emission {
            Emission::One(port, _) | Emission::Many(port, _) => *port,
        };
        let known = port.index() < self.identity.ports.len();
        let failure = GearError::new("bad_port")
            .with_detail(format_args!("the gear emitted on port #{}", port.index()));
        let mut stage = |mut m: FluxMsg| {
            if known {
                scratch.out.push(port, m);
            } else {
                mark_error(&mut m, &failure);
                scratch.out.push(OutPort::ERROR, m);
            }
        };
        match emission {
            Emission::One(_, msg) => stage(msg),
            Emission::Many(_, msgs) if known => scratch.out.put_all(port, msgs),
            Emission::Many(_, msgs) => msgs.into_iter().for_each(stage),
        }
    }

    async fn forward_emissions(&mut self, scratch: &mut Scratch) {
        while let Some(emission) = self.emissions.as_mut().and_then(Emissions::try_recv) {
            self.stage_emission(emission, scratch);
        }
        self.dispatch(scratch).await;
    }

    /// Sends what the gear emitted: per port, to every target (copies for all but the last),
    /// each message stamped with an id (if it has none) and a hop.
    async fn dispatch(&mut self, scratch: &mut Scratch) {
        if scratch.out.is_empty() {
            return;
        }
        let ports = self.identity.ports.len().max(1);
        let now = sdk::unix_nanos(self.clock.now());
        let max_hops = fluxmsg::Limits::default().max_hops();
        let fresh = &mut scratch.ids;
        for (port, msgs) in scratch.out.ports_mut() {
            let hop = Hop::new(
                self.identity.gear,
                self.identity.ports[port.index().min(ports - 1)],
                now,
            );
            // The ids the port's messages lack, minted together.
            fresh.clear();
            let missing = msgs.iter().filter(|m| m.id.is_none()).count();
            if missing > 0
                && let Err(e) = self.ids.next_ids(missing, fresh)
            {
                tracing::warn!(gear = %self.name, error = %e, without = missing - fresh.len(), "No id for some messages.");
            }
            let mut fresh = fresh.drain(..);
            for msg in msgs.iter_mut() {
                if msg.id.is_none() {
                    msg.id = fresh.next();
                }
                if msg.path.len() >= max_hops {
                    msg.path.remove(0);
                }
                // A deciding gear said why in meta; the reason travels in its hop instead.
                let mut hop = hop.clone();
                hop.decision = sdk::take_decision(msg);
                if let (Some(sampler), Some(id)) = (&self.sampler, msg.id)
                    && sampler.picks(&id)
                {
                    let names = self.runner.context().ports();
                    sampler.offer(super::sample::HopSample {
                        id,
                        gear: Arc::clone(&self.name),
                        port: names
                            .output_name(port)
                            .map_or_else(String::new, ToString::to_string),
                        ts: now,
                        decision: hop.decision.clone(),
                    });
                }
                msg.path.push(hop);
            }
        }
        let Scratch { out, shares, .. } = scratch;
        for (port, msgs) in out.drain() {
            let i = port.index().min(ports - 1);
            if let Some(counter) = self.identity.port_out.get(i) {
                counter.increment(msgs.len() as u64);
            }
            self.send_port(i, msgs, shares).await;
        }
    }

    async fn send_port(&mut self, port: usize, msgs: Vec<FluxMsg>, shares: &[Share]) {
        let stats = Arc::clone(self.runner.context().stats());
        // The table is lent out for the sends and put back after (no copy per batch).
        let targets = self
            .outputs
            .get_mut(port)
            .map(std::mem::take)
            .unwrap_or_default();
        if targets.is_empty() {
            let n = msgs.len() as u64;
            // Failed messages derived from guaranteed inputs: those inputs are dead-lettered
            // with the gear's reason rather than acked.
            let poisoned = if port == OutPort::ERROR.index() && !shares.is_empty() {
                poison(&self.name, &msgs, shares)
            } else {
                0
            };
            if poisoned > 0 {
                stats.add_dropped("dead_lettered", poisoned);
            }
            if n > poisoned {
                stats.add_dropped("unwired", n - poisoned);
            }
            return;
        }
        self.send_to(port, &targets, msgs, shares, &stats).await;
        if let Some(slot) = self.outputs.get_mut(port) {
            *slot = targets;
        }
    }

    async fn send_to(
        &mut self,
        port: usize,
        targets: &[Target],
        msgs: Vec<FluxMsg>,
        shares: &[Share],
        stats: &sdk::Stats,
    ) {
        if let Some(status) = self.runner.context().port_statuses().get(port) {
            let depth = targets.iter().map(Target::depth).max().unwrap_or(0);
            status.set_load(u32::try_from(depth).unwrap_or(u32::MAX));
        }
        let last = targets.len() - 1;
        let mut msgs = Some(msgs);
        for (k, target) in targets.iter().enumerate() {
            if target.tap
                && let Sink::Queue { tx, .. } = &target.sink
                && tx.is_closed()
            {
                if k == last
                    && let Some(dropped) = msgs.take()
                    && targets.len() == 1
                {
                    // The tap was the port's only target: the messages end here.
                    stats.add_dropped("tap_closed", dropped.len() as u64);
                }
                continue;
            }
            let batch = if k == last {
                msgs.take().unwrap_or_default()
            } else {
                msgs.as_ref().cloned().unwrap_or_default()
            };
            let n = batch.len();
            self.in_flight.add(n);
            let sent = match &target.sink {
                Sink::Queue { tx, port } => {
                    match tokio::time::timeout(self.limits.send_timeout, tx.reserve()).await {
                        Ok(Ok(permit)) => {
                            permit.send(Delivery {
                                port: *port,
                                msgs: batch,
                                shares: shares.to_vec(),
                            });
                            Ok(())
                        }
                        Ok(Err(_)) => Err((batch, false)),
                        Err(_) => Err((batch, true)),
                    }
                }
                // A guaranteed lane is never given up on for being slow: the gear waits
                // (back-pressure up to its source) while the publisher retries, since a
                // source has nothing upstream that would deliver the message again.
                Sink::Bus(tx) => match tx.reserve().await {
                    Ok(permit) => {
                        permit.send((batch, shares.to_vec()));
                        Ok(())
                    }
                    Err(_) => Err((batch, false)),
                },
            };
            match sent {
                Ok(()) => {}
                Err((_, false)) => {
                    fail_all(shares);
                    self.in_flight.done(n);
                    stats.add_dropped("target_gone", n as u64);
                    tracing::warn!(gear = %self.name, to = %target.name, dropped = n, "A wire's target is gone.");
                }
                Err((batch, true)) => {
                    fail_all(shares);
                    self.in_flight.done(n);
                    self.lane_timeout(port, batch, &target.name);
                }
            }
        }
    }

    /// A send that timed out: the messages go to the gear's `error` port without waiting, or
    /// are counted as dropped when that is full too (or is the port that timed out).
    fn lane_timeout(&mut self, port: usize, msgs: Vec<FluxMsg>, to: &str) {
        let stats = Arc::clone(self.runner.context().stats());
        let n = msgs.len();
        stats.add_errors(n as u64);
        tracing::warn!(gear = %self.name, to, count = n, "A hot lane send timed out.");
        let error = GearError::new("lane_timeout").with_detail(format_args!("{to} stayed full"));
        let targets = if port == OutPort::ERROR.index() {
            Vec::new()
        } else {
            self.outputs.first().cloned().unwrap_or_default()
        };
        let mut msgs = msgs;
        for m in &mut msgs {
            mark_error(m, &error);
        }
        let Some(target) = targets.first() else {
            stats.add_dropped("lane_timeout", n as u64);
            return;
        };
        self.in_flight.add(n);
        if target.try_deliver(msgs).is_err() {
            self.in_flight.done(n);
            stats.add_dropped("lane_timeout", n as u64);
        }
    }
}

impl Drop for Node {
    /// A node dropped with messages still queued (its task was aborted at a shutdown's
    /// deadline, or the rack was aborted) counts them as dropped `shutdown`; their shares,
    /// dropped unsettled, have their guaranteed inputs delivered again.
    fn drop(&mut self) {
        self.rx.close();
        let mut left = 0;
        while let Ok(delivery) = self.rx.try_recv() {
            left += delivery.msgs.len();
        }
        if left > 0 {
            self.in_flight.done(left);
            self.runner
                .context()
                .stats()
                .add_dropped("shutdown", left as u64);
            tracing::warn!(gear = %self.name, left, "Dropped queued messages: the gear was stopped before it handled them.");
        }
    }
}

/// The next emission of a gear that has an emitter (the branch is disabled for one without).
async fn next_emission(emissions: &mut Option<sdk::Emissions>) -> Option<Emission> {
    match emissions {
        Some(e) => e.recv().await,
        None => None,
    }
}
