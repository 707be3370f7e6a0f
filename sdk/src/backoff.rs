//! [`Backoff`]: doubling waits between retries of a connection, a publish or a request.

use std::time::Duration;

/// Waits that double from `initial` up to `max`: how gears and engines retry a connection, a
/// publish or a request.
///
/// ```
/// use std::time::Duration;
/// let mut b = sdk::Backoff::new(Duration::from_millis(100), Duration::from_millis(300));
/// let waits: Vec<_> = (0..4).map(|_| b.next_wait().as_millis()).collect();
/// assert_eq!(waits, [100, 200, 300, 300]);
/// b.reset();
/// assert_eq!(b.next_wait(), Duration::from_millis(100));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    initial: Duration,
    max: Duration,
    next: Duration,
}

impl Backoff {
    /// Waits starting at `initial`, never above `max` (nor below `initial`).
    pub fn new(initial: Duration, max: Duration) -> Backoff {
        Backoff {
            initial,
            max: max.max(initial),
            next: initial,
        }
    }

    /// The wait before the next try; the one after is twice as long, up to the maximum.
    pub fn next_wait(&mut self) -> Duration {
        let wait = self.next;
        self.next = self.next.saturating_mul(2).min(self.max);
        wait
    }

    /// Starts again from the initial wait (after a success).
    pub fn reset(&mut self) {
        self.next = self.initial;
    }
}
