//! How messages leave a gear: [`Outbox`] and [`Outputs`] for passive gears, [`Emitter`] and
//! [`Emission`] for active ones, and [`mark_error`] with the `error.*` metadata keys.

use std::sync::Arc;

use fluxmsg::FluxMsg;
use tokio::sync::mpsc;

use crate::error::GearError;
use crate::port::{OutPort, PortStatus};
use crate::stats::Stats;

/// The metadata key that carries an error's reason code.
pub const ERROR_REASON: &str = "error.reason";
/// The metadata key that carries an error's human-readable detail.
pub const ERROR_DETAIL: &str = "error.detail";

/// Writes `error`'s reason (and detail, if any) into `msg`'s metadata.
pub fn mark_error(msg: &mut FluxMsg, error: &GearError) {
    msg.meta.insert(ERROR_REASON, error.reason().into());
    match error.detail() {
        Some(detail) => msg.meta.insert(ERROR_DETAIL, detail.into()),
        None => msg.meta.remove(ERROR_DETAIL),
    };
}

/// What a batch sends, kept per output port, each port's messages in order.
///
/// The runner fills it; the engine takes each port's messages as one vector, so a message is
/// moved once on its way out of a gear.
#[derive(Debug, Default)]
pub struct Outputs {
    ports: Vec<Vec<FluxMsg>>,
    len: usize,
}

impl Outputs {
    /// Empty outputs.
    pub fn new() -> Outputs {
        Outputs::default()
    }

    /// Adds `msg` to `port`'s messages.
    pub fn push(&mut self, port: OutPort, msg: FluxMsg) {
        let i = port.index();
        if self.ports.len() <= i {
            self.ports.resize_with(i + 1, Vec::new);
        }
        self.ports[i].push(msg);
        self.len += 1;
    }

    /// Adds `msgs` to `port`'s messages; when the port has none yet, the vector is kept as it
    /// is (no copy).
    pub fn put_all(&mut self, port: OutPort, mut msgs: Vec<FluxMsg>) {
        let i = port.index();
        if self.ports.len() <= i {
            self.ports.resize_with(i + 1, Vec::new);
        }
        self.len += msgs.len();
        if self.ports[i].is_empty() {
            std::mem::swap(&mut self.ports[i], &mut msgs);
        } else {
            self.ports[i].append(&mut msgs);
        }
    }

    /// How many messages it holds.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether it holds none.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The messages for `port`, in order.
    pub fn port(&self, port: OutPort) -> &[FluxMsg] {
        self.ports.get(port.index()).map_or(&[], Vec::as_slice)
    }

    /// The messages for each port, mutably (index = port index), to stamp them before they
    /// leave.
    pub fn ports_mut(&mut self) -> impl Iterator<Item = (OutPort, &mut Vec<FluxMsg>)> + '_ {
        self.ports
            .iter_mut()
            .enumerate()
            .filter(|(_, v)| !v.is_empty())
            .map(|(i, v)| (OutPort(u16::try_from(i).unwrap_or(u16::MAX)), v))
    }

    /// Takes every port's messages, leaving it empty.
    pub fn drain(&mut self) -> impl Iterator<Item = (OutPort, Vec<FluxMsg>)> + '_ {
        self.len = 0;
        self.ports
            .iter_mut()
            .enumerate()
            .filter(|(_, v)| !v.is_empty())
            .map(|(i, v)| {
                (
                    OutPort(u16::try_from(i).unwrap_or(u16::MAX)),
                    std::mem::take(v),
                )
            })
    }
}

/// Where a passive gear puts the messages it sends besides the one it is processing
/// (copies, splits, replies). Collected by the runner and moved on with the batch.
#[derive(Debug)]
pub struct Outbox<'a> {
    buf: &'a mut Outputs,
    status: &'a [PortStatus],
    drops: &'a mut Vec<(&'static str, u64)>,
}

impl<'a> Outbox<'a> {
    pub(crate) fn new(
        buf: &'a mut Outputs,
        status: &'a [PortStatus],
        drops: &'a mut Vec<(&'static str, u64)>,
    ) -> Self {
        Outbox { buf, status, drops }
    }

    /// Counts a message dropped on purpose with `reason`, for gears that handle whole batches
    /// ([`Gear::process_batch`](crate::Gear::process_batch)); `process` says so with
    /// [`Outcome::Drop`](crate::Outcome::Drop) instead.
    pub fn drop(&mut self, reason: &'static str) {
        tally(self.drops, reason);
    }

    /// Sends `msg` on `port` once the batch is done, ahead of the batch's own messages on the
    /// same port. A port the gear does not have sends the message to `error` (`bad_port`).
    pub fn emit(&mut self, port: OutPort, mut msg: FluxMsg) {
        if port.index() >= self.status.len() {
            let failure = GearError::new("bad_port")
                .with_detail(format_args!("the gear emitted on port #{}", port.index()));
            mark_error(&mut msg, &failure);
            self.buf.push(OutPort::ERROR, msg);
            return;
        }
        self.buf.push(port, msg);
    }

    /// Sends `msg` to `error` with the reason of `error`.
    pub fn error(&mut self, mut msg: FluxMsg, error: &GearError) {
        mark_error(&mut msg, error);
        self.buf.push(OutPort::ERROR, msg);
    }

    /// What the engine knows about where `port` leads (availability, load).
    pub fn status(&self, port: OutPort) -> &PortStatus {
        static UNKNOWN: PortStatus = PortStatus::new_const();
        self.status.get(port.index()).unwrap_or(&UNKNOWN)
    }
}

/// What an active gear sent, as the engine receives it.
// Channel slots hold a message inline; boxing it would cost an allocation per message.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
pub enum Emission {
    /// One message for one port.
    One(OutPort, FluxMsg),
    /// Several messages for one port, in order.
    Many(OutPort, Vec<FluxMsg>),
}

impl Emission {
    /// How many messages it carries.
    pub fn len(&self) -> usize {
        match self {
            Emission::One(..) => 1,
            Emission::Many(_, msgs) => msgs.len(),
        }
    }

    /// Whether it carries none.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The receiving end of an active gear's [`Emitter`]s: what its own tasks sent, in order,
/// for whoever moves messages on (from [`Runner::take_emissions`](crate::Runner::take_emissions)).
#[derive(Debug)]
pub struct Emissions(mpsc::Receiver<Emission>);

impl Emissions {
    /// The next emission, waiting for one; `None` once every emitter is gone and all that
    /// they sent was received.
    pub async fn recv(&mut self) -> Option<Emission> {
        self.0.recv().await
    }

    /// The next emission if one is waiting now.
    pub fn try_recv(&mut self) -> Option<Emission> {
        self.0.try_recv().ok()
    }
}

/// The engine is gone (the gear is being stopped); the message was not sent.
#[derive(Debug, thiserror::Error)]
#[error("the gear's output is closed")]
pub struct Closed;

/// How an active gear's tasks send messages: a bounded channel to the engine, so a slow
/// consumer slows the source down (back-pressure) instead of losing messages.
///
/// Cheap to clone; one per task.
#[derive(Debug, Clone)]
pub struct Emitter {
    tx: mpsc::Sender<Emission>,
    stats: Arc<Stats>,
}

impl Emitter {
    /// A new emitter with room for `capacity` pending emissions, and the receiving end that
    /// the engine drains.
    pub(crate) fn channel(capacity: usize, stats: Arc<Stats>) -> (Emitter, Emissions) {
        let (tx, rx) = mpsc::channel(capacity.max(1));
        (Emitter { tx, stats }, Emissions(rx))
    }

    /// Sends `msg` on `port`, waiting while the engine is full.
    pub async fn emit(&self, port: OutPort, msg: FluxMsg) -> Result<(), Closed> {
        self.send(Emission::One(port, msg)).await
    }

    /// Sends `msgs` on `port` as one batch, waiting while the engine is full.
    pub async fn emit_batch(&self, port: OutPort, msgs: Vec<FluxMsg>) -> Result<(), Closed> {
        if msgs.is_empty() {
            return Ok(());
        }
        self.send(Emission::Many(port, msgs)).await
    }

    /// Sends `msg` to `error` with the reason of `error`.
    pub async fn error(&self, mut msg: FluxMsg, error: &GearError) -> Result<(), Closed> {
        mark_error(&mut msg, error);
        self.emit(OutPort::ERROR, msg).await
    }

    /// Sends `msg` on `port` if there is room now; gives it back otherwise.
    #[allow(clippy::result_large_err)] // the message itself, handed back without a copy
    pub fn try_emit(&self, port: OutPort, msg: FluxMsg) -> Result<(), FluxMsg> {
        let Ok(permit) = self.tx.try_reserve() else {
            return Err(msg);
        };
        permit.send(Emission::One(port, msg));
        self.count(port, 1);
        Ok(())
    }

    /// The gear's counters, for tasks that count their own drops.
    pub fn stats(&self) -> &Arc<Stats> {
        &self.stats
    }

    async fn send(&self, emission: Emission) -> Result<(), Closed> {
        let (port, n) = match &emission {
            Emission::One(port, _) => (*port, 1),
            Emission::Many(port, msgs) => (*port, msgs.len() as u64),
        };
        self.tx.send(emission).await.map_err(|_| Closed)?;
        self.count(port, n);
        Ok(())
    }

    fn count(&self, port: OutPort, n: u64) {
        self.stats.add_out(n);
        if port == OutPort::ERROR {
            self.stats.add_errors(n);
        }
    }
}

/// Adds one to `reason`'s count.
pub(crate) fn tally(drops: &mut Vec<(&'static str, u64)>, reason: &'static str) {
    match drops.iter_mut().find(|(r, _)| *r == reason) {
        Some((_, n)) => *n += 1,
        None => drops.push((reason, 1)),
    }
}
