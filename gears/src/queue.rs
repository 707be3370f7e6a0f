//! The receiving end of an I/O gear's internal queue, which counts what it still holds when
//! the gear's tasks are aborted.

use std::ops::{Deref, DerefMut};
use std::sync::Arc;

use sdk::Stats;
use tokio::sync::mpsc;

/// An `mpsc::Receiver` whose messages still queued when it is dropped (the task that read it
/// was aborted at the drain timeout) are counted as dropped `shutdown` and logged.
pub(crate) struct CountedRx<T> {
    rx: mpsc::Receiver<T>,
    stats: Arc<Stats>,
}

impl<T> CountedRx<T> {
    pub(crate) fn new(rx: mpsc::Receiver<T>, stats: Arc<Stats>) -> CountedRx<T> {
        CountedRx { rx, stats }
    }
}

impl<T> Deref for CountedRx<T> {
    type Target = mpsc::Receiver<T>;
    fn deref(&self) -> &Self::Target {
        &self.rx
    }
}

impl<T> DerefMut for CountedRx<T> {
    fn deref_mut(&mut self) -> &mut Self::Target {
        &mut self.rx
    }
}

impl<T> Drop for CountedRx<T> {
    fn drop(&mut self) {
        self.rx.close();
        let mut left = 0;
        while self.rx.try_recv().is_ok() {
            left += 1;
        }
        if left > 0 {
            self.stats.add_dropped("shutdown", left);
            tracing::warn!(
                left,
                "Dropped queued messages: the gear's tasks were aborted."
            );
        }
    }
}
