//! Waiting for an event, bounded: the way tests synchronise.
//!
//! A test waits for what it needs (a counter reaching a value, a message, a socket closing)
//! and fails only if that never happens. The bound is [`PATIENCE`], generous on purpose: it
//! guards against a hang and is never a statement about how fast the code is.

use std::future::Future;
use std::sync::mpsc::{self, RecvTimeoutError};
use std::time::Duration;

/// How long [`wait_until`], [`within`] and [`within_blocking`] wait before they fail the
/// test.
///
/// [`wait_until`] and [`within`] count it in Tokio time: under
/// `#[tokio::test(start_paused = true)]` it passes at once when nothing else can run, so
/// there they suit events driven by Tokio timers and tasks, not by real sockets.
pub const PATIENCE: Duration = Duration::from_secs(30);

/// How often [`wait_until`] checks its condition.
const POLL: Duration = Duration::from_millis(5);

/// Awaits `fut`; fails the test, naming `what`, if it is not ready within [`PATIENCE`].
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let (tx, rx) = tokio::sync::oneshot::channel();
/// tokio::spawn(async move { tx.send(42) });
/// assert_eq!(testkit::within("the answer", rx).await, Ok(42));
/// # }
/// ```
///
/// # Panics
///
/// When `fut` is still pending after [`PATIENCE`]: `timed out waiting for {what}`.
pub async fn within<F: Future>(what: &str, fut: F) -> F::Output {
    match tokio::time::timeout(PATIENCE, fut).await {
        Ok(output) => output,
        Err(_) => panic!("timed out waiting for {what} ({PATIENCE:?})"),
    }
}

/// Waits until `cond` holds, checking it every few milliseconds; fails the test, naming
/// `what`, if it still does not hold after [`PATIENCE`].
///
/// `cond` may act as well as look, for a step that must be repeated until it has an effect
/// (sending until the gear has noticed a closed connection, say).
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// use std::sync::Arc;
/// use std::sync::atomic::{AtomicU64, Ordering};
///
/// let seen = Arc::new(AtomicU64::new(0));
/// let counter = Arc::clone(&seen);
/// tokio::spawn(async move {
///     for _ in 0..3 {
///         counter.fetch_add(1, Ordering::Relaxed);
///         tokio::task::yield_now().await;
///     }
/// });
/// testkit::wait_until("three messages seen", || seen.load(Ordering::Relaxed) == 3).await;
/// # }
/// ```
///
/// # Panics
///
/// When `cond` does not hold within [`PATIENCE`]: `timed out waiting for {what}`.
pub async fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
    within(what, async {
        while !cond() {
            tokio::time::sleep(POLL).await;
        }
    })
    .await;
}

/// Runs the blocking call `f` on a thread of its own and returns its result; fails the test,
/// naming `what`, if it has not returned within [`PATIENCE`] (wall-clock time).
///
/// For a synchronous call that must end on its own, such as a wasm call stopped by its
/// deadline: the test asserts how it ended, and a call that never ends fails the test
/// instead of hanging it.
///
/// # Panics
///
/// When `f` has not returned within [`PATIENCE`], or with `f`'s own panic.
pub fn within_blocking<T, F>(what: &str, f: F) -> T
where
    T: Send + 'static,
    F: FnOnce() -> T + Send + 'static,
{
    let (tx, rx) = mpsc::channel();
    let worker = std::thread::Builder::new()
        .name(format!("within_blocking: {what}"))
        .spawn(move || {
            // The receiver is gone only when the test has already failed.
            let _ = tx.send(f());
        })
        .unwrap_or_else(|e| panic!("cannot start a thread for {what}: {e}"));
    match rx.recv_timeout(PATIENCE) {
        Ok(output) => output,
        Err(RecvTimeoutError::Timeout) => {
            panic!("timed out waiting for {what} ({PATIENCE:?})")
        }
        Err(RecvTimeoutError::Disconnected) => match worker.join() {
            Err(panic) => std::panic::resume_unwind(panic),
            Ok(()) => panic!("{what}: the call ended without a result"),
        },
    }
}
