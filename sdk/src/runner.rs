//! [`Runner`]: drives one gear through its lifecycle and its batches, for the rack engine and
//! the harness alike.

use std::any::Any;
use std::future::Future;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::pin::Pin;
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;

use fluxmsg::FluxMsg;

use crate::context::{Context, Services};
use crate::emit::{Emissions, Emitter, Outbox, Outputs, mark_error, tally};
use crate::error::{Error, GearError};
use crate::gear::{Gear, Outcome};
use crate::gear_type::Prepared;
use crate::port::{InPort, OutPort};
use crate::stats::{Stats, StatsSnapshot};

/// Drives one gear through its lifecycle and its batches; shared by the rack engine and the
/// [`Harness`](crate::Harness), so a gear behaves the same in both.
///
/// Per batch it calls [`Gear::process`] once per message, with no allocation, lock or future
/// per message; it catches a panic and turns it into an error for that message alone; it
/// routes `Err` results to `error`; and it counts in, out, errors and drops.
pub struct Runner {
    gear: Box<dyn Gear>,
    ctx: Context,
    state: State,
    emissions: Option<Emissions>,
    drops: Vec<(&'static str, u64)>,
    /// Where each message of the batch goes (`None`: dropped or kept by the gear).
    fates: Vec<Option<OutPort>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    New,
    Ready,
    Running,
    Drained,
    Stopped,
}

impl State {
    fn name(self) -> &'static str {
        match self {
            State::New => "not initialised",
            State::Ready => "initialised",
            State::Running => "running",
            State::Drained => "drained",
            State::Stopped => "stopped",
        }
    }
}

impl std::fmt::Debug for Runner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Runner")
            .field("ctx", &self.ctx)
            .field("state", &self.state)
            .finish_non_exhaustive()
    }
}

impl Runner {
    /// A runner for the gear `name`, built from `prepared`, lending it `services`.
    pub fn new(name: &str, prepared: Prepared, services: Services) -> Runner {
        let stats = Arc::new(Stats::new(name));
        let (emitter, rx) = Emitter::channel(services.emit_capacity, Arc::clone(&stats));
        let Prepared {
            gear_type,
            config,
            ports,
            gear,
        } = prepared;
        Runner {
            gear,
            ctx: Context::new(name, &gear_type, config, ports, services, stats, emitter),
            state: State::New,
            emissions: Some(rx),
            drops: Vec::new(),
            fates: Vec::new(),
        }
    }

    /// The receiving end of the gear's [`Emitter`]: what its own tasks send. Taken once by
    /// whoever moves messages on.
    pub fn take_emissions(&mut self) -> Option<Emissions> {
        self.emissions.take()
    }

    /// The gear's context.
    pub fn context(&self) -> &Context {
        &self.ctx
    }

    /// The gear's counters now.
    pub fn stats(&self) -> StatsSnapshot {
        self.ctx.stats().snapshot()
    }

    /// Awaits [`Gear::load`]; call it before [`init`](Runner::init). Idempotent until `init`.
    pub async fn load(&mut self) -> Result<(), Error> {
        self.expect(State::New, "load")?;
        let (gear, ctx) = (&mut self.gear, &self.ctx);
        let span = ctx.span().clone();
        let mut load = tracing::Instrument::instrument(gear.load(ctx), span);
        // A panic while loading costs the gear, not the rack.
        let result = std::future::poll_fn(|cx| {
            match catch_unwind(AssertUnwindSafe(|| Pin::new(&mut load).poll(cx))) {
                Ok(Poll::Ready(done)) => Poll::Ready(Ok(done)),
                Ok(Poll::Pending) => Poll::Pending,
                Err(panic) => Poll::Ready(Err(panic)),
            }
        })
        .await;
        drop(load);
        match result {
            Ok(Ok(())) => Ok(()),
            Ok(Err(source)) => Err(self.lifecycle("load", source)),
            Err(panic) => {
                let source = GearError::new("panic").with_detail(panic_message(panic.as_ref()));
                Err(self.lifecycle("load", source))
            }
        }
    }

    /// Calls [`Gear::init`].
    pub fn init(&mut self) -> Result<(), Error> {
        self.expect(State::New, "init")?;
        let _span = self.ctx.span().clone().entered();
        let (gear, ctx) = (&mut self.gear, &mut self.ctx);
        guarded(|| gear.init(ctx)).map_err(|source| self.lifecycle("init", source))?;
        self.state = State::Ready;
        Ok(())
    }

    /// Calls [`Gear::start`]. Needs a Tokio runtime (active gears spawn tasks).
    pub fn start(&mut self) -> Result<(), Error> {
        self.expect(State::Ready, "start")?;
        let _span = self.ctx.span().clone().entered();
        let (gear, ctx) = (&mut self.gear, &mut self.ctx);
        guarded(|| gear.start(ctx)).map_err(|source| self.lifecycle("start", source))?;
        self.state = State::Running;
        Ok(())
    }

    /// Processes a batch that arrived on `port`, adding what leaves to `out`, per port.
    ///
    /// Every message of `batch` ends up in `out` or counted as dropped. Before `init` and after
    /// `stop` the batch is left untouched and an [`Error::State`] returned.
    pub fn process(
        &mut self,
        port: InPort,
        batch: &mut Vec<FluxMsg>,
        out: &mut Outputs,
    ) -> Result<(), Error> {
        if matches!(self.state, State::New | State::Stopped) {
            return Err(self.state_error("process"));
        }
        let n = batch.len() as u64;
        let before = out.len();
        let errors_before = out.port(OutPort::ERROR).len();
        let outputs = self.ctx.ports().outputs().len();
        let _span = self.ctx.span().clone().entered();
        let handled = {
            let mut outbox = Outbox::new(out, self.ctx.port_statuses(), &mut self.drops);
            let gear = &mut self.gear;
            catch_unwind(AssertUnwindSafe(|| {
                gear.process_batch(port, batch, &mut outbox)
            }))
        };
        match handled {
            Ok(false) => self.each(port, batch, out, outputs),
            Ok(true) if batch.is_empty() => {}
            Ok(true) => {
                let failure = GearError::new("unhandled")
                    .with_detail("the gear's process_batch left the message in its batch");
                for mut msg in batch.drain(..) {
                    mark_error(&mut msg, &failure);
                    out.push(OutPort::ERROR, msg);
                }
            }
            Err(panic) => {
                let detail = panic_message(panic.as_ref());
                tracing::warn!(detail = %detail, "The gear panicked in process_batch; its batch goes to error.");
                let failure = GearError::new("panic").with_detail(detail);
                for mut msg in batch.drain(..) {
                    mark_error(&mut msg, &failure);
                    out.push(OutPort::ERROR, msg);
                }
            }
        }
        if n > 0 {
            let gear = &mut self.gear;
            if let Err(e) = guarded(|| {
                gear.flush();
                Ok(())
            }) {
                tracing::warn!(error = %e, "The gear panicked in flush.");
            }
        }
        let stats = self.ctx.stats();
        stats.add_in(n);
        stats.add_out((out.len() - before) as u64);
        let errors = (out.port(OutPort::ERROR).len() - errors_before) as u64;
        if errors > 0 {
            stats.add_errors(errors);
        }
        for (reason, count) in self.drops.drain(..) {
            stats.add_dropped(reason, count);
        }
        Ok(())
    }

    /// The per-message path: [`Gear::process`] for each message, in place.
    fn each(&mut self, port: InPort, batch: &mut Vec<FluxMsg>, out: &mut Outputs, outputs: usize) {
        // First every message is processed in place and its fate noted; then the messages
        // move. When the whole batch goes to one port, the batch's vector moves as it is.
        let mut fates = std::mem::take(&mut self.fates);
        fates.clear();
        for msg in batch.iter_mut() {
            let result = {
                let mut outbox = Outbox::new(out, self.ctx.port_statuses(), &mut self.drops);
                let gear = &mut self.gear;
                catch_unwind(AssertUnwindSafe(|| gear.process(port, msg, &mut outbox)))
            };
            let failure = match result {
                Ok(Ok(Outcome::Emit(to))) if to.index() < outputs => {
                    fates.push(Some(to));
                    continue;
                }
                Ok(Ok(Outcome::Emit(to))) => GearError::new("bad_port")
                    .with_detail(format_args!("the gear emitted on port #{}", to.index())),
                Ok(Ok(Outcome::Drop(reason))) => {
                    tally(&mut self.drops, reason);
                    fates.push(None);
                    continue;
                }
                Ok(Ok(Outcome::Consumed)) => {
                    fates.push(None);
                    continue;
                }
                Ok(Err(error)) => error,
                Err(panic) => {
                    let detail = panic_message(panic.as_ref());
                    tracing::warn!(detail = %detail, "The gear panicked; its message goes to error.");
                    GearError::new("panic").with_detail(detail)
                }
            };
            mark_error(msg, &failure);
            fates.push(Some(OutPort::ERROR));
        }
        match fates.first() {
            Some(&Some(first))
                if out.port(first).is_empty() && fates.iter().all(|f| *f == Some(first)) =>
            {
                out.put_all(first, std::mem::take(batch));
            }
            _ => {
                for (msg, fate) in batch.drain(..).zip(fates.iter()) {
                    if let Some(to) = fate {
                        out.push(*to, msg);
                    }
                }
            }
        }
        self.fates = fates;
    }

    /// Calls [`Gear::drain`], then stops the gear's tasks: cancels its shutdown token, waits up
    /// to `timeout` for them and aborts those still running. Idempotent.
    pub async fn drain(&mut self, timeout: Duration) {
        if !matches!(self.state, State::Ready | State::Running) {
            return;
        }
        {
            let _span = self.ctx.span().clone().entered();
            let gear = &mut self.gear;
            if let Err(e) = guarded(|| {
                gear.drain();
                Ok(())
            }) {
                tracing::warn!(error = %e, "The gear panicked in drain.");
            }
        }
        let aborted = self.ctx.wind_down(timeout).await;
        if aborted > 0 {
            tracing::warn!(gear = %self.ctx.name(), aborted, "Aborted gear tasks that overstayed the drain timeout.");
        }
        self.state = State::Drained;
    }

    /// Calls [`Gear::stop`]. Idempotent, and safe on a gear that never started. A gear that
    /// still has tasks (not drained) has them aborted.
    pub fn stop(&mut self) {
        if self.state == State::Stopped {
            return;
        }
        let _span = self.ctx.span().clone().entered();
        self.ctx.abort_tasks();
        let gear = &mut self.gear;
        if let Err(e) = guarded(|| {
            gear.stop();
            Ok(())
        }) {
            tracing::warn!(error = %e, "The gear panicked in stop.");
        }
        self.state = State::Stopped;
    }

    fn expect(&self, state: State, action: &'static str) -> Result<(), Error> {
        if self.state == state {
            Ok(())
        } else {
            Err(self.state_error(action))
        }
    }

    fn state_error(&self, action: &'static str) -> Error {
        Error::State {
            gear: self.ctx.name().to_owned(),
            action,
            state: self.state.name(),
        }
    }

    fn lifecycle(&self, stage: &'static str, source: GearError) -> Error {
        Error::Lifecycle {
            gear: self.ctx.name().to_owned(),
            stage,
            source,
        }
    }
}

/// Runs a lifecycle hook, turning a panic into an error.
fn guarded(hook: impl FnOnce() -> Result<(), GearError>) -> Result<(), GearError> {
    catch_unwind(AssertUnwindSafe(hook)).unwrap_or_else(|panic| {
        Err(GearError::new("panic").with_detail(panic_message(panic.as_ref())))
    })
}

fn panic_message(panic: &(dyn Any + Send)) -> String {
    if let Some(s) = panic.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = panic.downcast_ref::<String>() {
        s.clone()
    } else {
        "non-string panic payload".to_owned()
    }
}
