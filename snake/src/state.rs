//! The connection state, and the watch on it that [`Snake::state`](crate::Snake::state) gives.

use tokio::sync::watch;

/// The state of the connection to the transport.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ConnectionState {
    /// Connected; messages flow.
    Connected,
    /// Connection lost; the client is reconnecting.
    Disconnected,
    /// Closed for good.
    Closed,
}

/// The connection state now and its changes, from [`Snake::state`](crate::Snake::state).
///
/// Each clone watches on its own: [`changed`](StateWatch::changed) on one does not consume
/// a change for the others.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// use snake::{ConnectionState, Snake};
///
/// let snake = Snake::memory();
/// let mut state = snake.state();
/// assert_eq!(state.current(), ConnectionState::Connected);
/// snake.close().await;
/// assert_eq!(state.changed().await, Some(ConnectionState::Closed));
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct StateWatch(watch::Receiver<ConnectionState>);

impl StateWatch {
    pub(crate) fn new(rx: watch::Receiver<ConnectionState>) -> StateWatch {
        StateWatch(rx)
    }

    /// The state now.
    #[must_use]
    pub fn current(&self) -> ConnectionState {
        *self.0.borrow()
    }

    /// Waits for a change after the last one this watch returned (or after it was made),
    /// and returns the state then. `None` when no change can come any more: the transport
    /// is gone.
    pub async fn changed(&mut self) -> Option<ConnectionState> {
        self.0.changed().await.ok()?;
        Some(*self.0.borrow_and_update())
    }
}
