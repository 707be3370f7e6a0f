//! The signal that tells a gear's tasks to stop.

use tokio_util::sync::CancellationToken;

/// Fires when the gear drains: its tasks stop producing when it does (from
/// [`Context::shutdown`](crate::Context::shutdown)).
///
/// Cheap to clone; every clone fires together.
#[derive(Debug, Clone)]
pub struct Shutdown(CancellationToken);

impl Shutdown {
    pub(crate) fn new() -> Shutdown {
        Shutdown(CancellationToken::new())
    }

    /// Completes when the gear drains, at once if it already has.
    pub async fn fired(&self) {
        self.0.cancelled().await;
    }

    /// [`fired`](Shutdown::fired) as a future that owns the signal: `'static`, for a task
    /// or a graceful-shutdown hook.
    pub async fn fired_owned(self) {
        self.0.cancelled().await;
    }

    pub(crate) fn fire(&self) {
        self.0.cancel();
    }
}
