//! The receiving end of an I/O gear's internal queue, which counts what it still holds when
//! the gear's tasks are aborted, and the loop that runs a task per queued item, a bounded
//! number at once.

use std::future::Future;
use std::ops::{Deref, DerefMut};
use std::pin::pin;
use std::sync::Arc;

use sdk::Stats;
use tokio::sync::mpsc;
use tokio::task::JoinSet;

/// Runs `start(item)` as a task for each item of `rx`, at most `max` at once, until the queue
/// ends. On `shutdown` it closes the queue, runs what is already queued, and waits for every
/// task. A task that panicked loses its item: counted as dropped `panic` and logged. Items
/// still queued when this loop is aborted are counted as dropped `shutdown` ([`CountedRx`]).
pub(crate) async fn run_bounded<T, F>(
    rx: mpsc::Receiver<T>,
    stats: Arc<Stats>,
    max: usize,
    shutdown: impl Future<Output = ()>,
    mut start: impl FnMut(T) -> F,
) where
    F: Future<Output = ()> + Send + 'static,
{
    let finished = |done: Result<(), tokio::task::JoinError>| {
        if let Err(e) = done {
            tracing::error!(error = %e, "A gear task failed; its message is lost.");
            stats.add_dropped("panic", 1);
        }
    };
    let mut rx = CountedRx::new(rx, Arc::clone(&stats));
    let rx = &mut *rx;
    let mut running = JoinSet::new();
    let mut shutdown = pin!(shutdown);
    let mut closing = false;
    loop {
        tokio::select! {
            Some(done) = running.join_next(), if !running.is_empty() => finished(done),
            item = rx.recv(), if running.len() < max => match item {
                Some(item) => {
                    running.spawn(start(item));
                }
                None => break,
            },
            () = &mut shutdown, if !closing => {
                closing = true;
                rx.close();
            }
        }
    }
    while let Some(done) = running.join_next().await {
        finished(done);
    }
}

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
