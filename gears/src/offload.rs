//! CPU work off the async workers.
//!
//! A gear's `process` is a plain synchronous call on the Tokio task that drives the gear (the
//! sdk's contract). Work that may keep the CPU busy for long in such a call (a wasm call, which
//! may run up to its deadline; a Rhai evaluation, up to its operation limit) would hold the
//! worker thread, and with it every task queued there: another gear's sockets, timers, the
//! rack's acknowledgements. [`run`] tells the runtime before it starts
//! ([`tokio::task::block_in_place`]): the worker's queue goes to another thread for the length
//! of the call, while the call stays where it is, with its data borrowed as before. That costs
//! a hand-over per call, so the gears call it once per batch, never per message ([`each`]).
//!
//! Work that an asynchronous step can wait for (loading and compiling a module) goes to the
//! blocking pool instead ([`blocking`]).

use std::any::Any;
use std::panic::{AssertUnwindSafe, catch_unwind};

use fluxmsg::FluxMsg;
use sdk::{GearError, Outbox, Outcome};
use tokio::runtime::{Handle, RuntimeFlavor};

/// Runs `f`, which may keep the CPU busy, without holding up the tasks of the worker it is
/// called on.
///
/// On a worker of a multi-thread runtime the worker's other tasks move to another thread
/// first. A current-thread runtime has no other thread to move them to, and outside a runtime
/// nothing waits: there `f` runs as it is.
pub(crate) fn run<R>(f: impl FnOnce() -> R) -> R {
    match Handle::try_current() {
        Ok(handle) if handle.runtime_flavor() == RuntimeFlavor::MultiThread => {
            tokio::task::block_in_place(f)
        }
        _ => f(),
    }
}

/// Handles `batch` a message at a time with `one`, all within one [`run`], as the runner would
/// call [`Gear::process`](sdk::Gear::process): `Emit` puts the message on its port, `Drop`
/// counts it, `Consumed` leaves it to the gear, and an `Err` or a panic sends it to `error`
/// (a panic costs that message alone). For a gear's
/// [`process_batch`](sdk::Gear::process_batch) when its per-message work may be long.
pub(crate) fn each(
    batch: &mut Vec<FluxMsg>,
    out: &mut Outbox<'_>,
    mut one: impl FnMut(&mut FluxMsg, &mut Outbox<'_>) -> Result<Outcome, GearError>,
) {
    run(|| {
        for mut msg in batch.drain(..) {
            match catch_unwind(AssertUnwindSafe(|| one(&mut msg, out))) {
                Ok(Ok(Outcome::Emit(port))) => out.emit(port, msg),
                Ok(Ok(Outcome::Drop(reason))) => out.drop(reason),
                Ok(Ok(Outcome::Consumed)) => {}
                Ok(Err(error)) => out.error(msg, &error),
                Err(panic) => {
                    let detail = panic_message(panic.as_ref());
                    tracing::warn!(detail = %detail, "The gear panicked; its message goes to error.");
                    out.error(msg, &GearError::new("panic").with_detail(detail));
                }
            }
        }
    });
}

/// Runs `f` on the runtime's blocking pool and waits for it, for asynchronous steps such as
/// [`Gear::load`](sdk::Gear::load); outside a Tokio runtime `f` runs where it is. A panic in
/// `f` goes on unwinding here, as if `f` had run in place.
///
/// # Errors
///
/// `f`'s error, or `cancelled` when the runtime shut down before `f` ran.
#[cfg(feature = "wasm")]
pub(crate) async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, GearError> + Send + 'static,
) -> Result<T, GearError> {
    let Ok(handle) = Handle::try_current() else {
        return f();
    };
    match handle.spawn_blocking(f).await {
        Ok(done) => done,
        Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
        Err(_) => Err(GearError::new("cancelled")
            .with_detail("the runtime shut down before the work could run")),
    }
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
