//! The responses that wait for their delay: a heap ordered by due time, filled by `process`
//! and emptied by one task that sleeps until the earliest is due.

use std::cmp::{Ordering, Reverse};
use std::collections::BinaryHeap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use fluxmsg::FluxMsg;
use sdk::{Clock, Emitter, OutPort, Shutdown};
use tokio::sync::Notify;

/// The most responses one emission carries.
const MAX_BATCH: usize = 256;

/// The delayed responses, bounded.
#[derive(Debug)]
pub(super) struct Pending {
    heap: Mutex<Heap>,
    /// Wakes the task when a response becomes the earliest.
    wake: Notify,
    capacity: usize,
}

#[derive(Debug, Default)]
struct Heap {
    entries: BinaryHeap<Reverse<Entry>>,
    /// Breaks ties between responses due at the same time: the first in leaves first.
    seq: u64,
}

/// One waiting response.
#[derive(Debug)]
struct Entry {
    /// When it is due, since the Unix epoch (the engine's clock).
    due: Duration,
    seq: u64,
    msg: FluxMsg,
}

impl PartialEq for Entry {
    fn eq(&self, other: &Entry) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for Entry {}

impl PartialOrd for Entry {
    fn partial_cmp(&self, other: &Entry) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Entry {
    fn cmp(&self, other: &Entry) -> Ordering {
        (self.due, self.seq).cmp(&(other.due, other.seq))
    }
}

impl Pending {
    /// Room for `capacity` responses.
    pub(super) fn new(capacity: usize) -> Pending {
        Pending {
            heap: Mutex::new(Heap::default()),
            wake: Notify::new(),
            capacity,
        }
    }

    fn lock(&self) -> MutexGuard<'_, Heap> {
        // A panic while holding the lock leaves a heap that is still well formed.
        self.heap.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Keeps `msg` until `due`; hands it back when the heap is full.
    #[allow(clippy::result_large_err)] // the message itself, handed back without a copy
    pub(super) fn push(&self, due: Duration, msg: FluxMsg) -> Result<(), FluxMsg> {
        let mut heap = self.lock();
        if heap.entries.len() >= self.capacity {
            return Err(msg);
        }
        let seq = heap.seq;
        heap.seq += 1;
        let earliest = heap.entries.peek().is_none_or(|Reverse(e)| due < e.due);
        heap.entries.push(Reverse(Entry { due, seq, msg }));
        drop(heap);
        if earliest {
            self.wake.notify_one();
        }
        Ok(())
    }

    /// Whether it holds as many responses as it may.
    pub(super) fn is_full(&self) -> bool {
        self.lock().entries.len() >= self.capacity
    }

    /// How many responses wait.
    pub(super) fn len(&self) -> usize {
        self.lock().entries.len()
    }

    /// Takes up to [`MAX_BATCH`] responses due by `now`, in due order, and says when the next
    /// one is due.
    fn take_due(&self, now: Duration, into: &mut Vec<FluxMsg>) -> Option<Duration> {
        let mut heap = self.lock();
        while into.len() < MAX_BATCH {
            match heap.entries.peek() {
                Some(Reverse(e)) if e.due <= now => {}
                _ => break,
            }
            if let Some(Reverse(e)) = heap.entries.pop() {
                into.push(e.msg);
            }
        }
        heap.entries.peek().map(|Reverse(e)| e.due)
    }

    /// Empties the heap and says how many responses it held.
    fn clear(&self) -> usize {
        let mut heap = self.lock();
        let n = heap.entries.len();
        heap.entries.clear();
        n
    }

    /// Emits each response on `out` when it is due, until the gear drains; the responses
    /// still waiting then are counted as dropped (`drained`).
    pub(super) async fn run(
        self: Arc<Pending>,
        clock: Arc<dyn Clock>,
        emitter: Emitter,
        out: OutPort,
        shutdown: Shutdown,
        gear: String,
    ) {
        let mut due = Vec::new();
        // Responses taken out of the heap that did not leave (the gear drained meanwhile).
        let mut lost = 0;
        loop {
            let next = self.take_due(clock.now(), &mut due);
            if !due.is_empty() {
                let batch = std::mem::take(&mut due);
                let n = batch.len();
                let sent = tokio::select! {
                    biased;
                    () = shutdown.fired() => Err(()),
                    sent = emitter.emit_batch(out, batch) => sent.map_err(|_| ()),
                };
                if sent.is_err() {
                    lost += n;
                    break;
                }
                continue;
            }
            // Sleeping on the runtime's timer for the time left by the engine's clock, then
            // reading the clock again, keeps the order right under a manual clock too.
            let wait = next.map(|at| at.saturating_sub(clock.now()));
            tokio::select! {
                biased;
                () = shutdown.fired() => break,
                () = self.wake.notified() => {}
                () = sleep(wait) => {}
            }
        }
        let left = self.clear() + lost;
        if left > 0 {
            emitter.stats().add_dropped("drained", left as u64);
            tracing::warn!(gear = %gear, count = left, "Dropped the delayed responses still waiting when the gear drained.");
        }
    }
}

/// Sleeps for `wait`, or forever when there is nothing to wait for.
async fn sleep(wait: Option<Duration>) {
    match wait {
        Some(wait) => tokio::time::sleep(wait).await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use fluxmsg::FluxMsg;

    use super::Pending;

    fn msg(tag: &str) -> FluxMsg {
        FluxMsg::builder().meta("tag", tag).build()
    }

    fn tags(msgs: &[FluxMsg]) -> Vec<String> {
        msgs.iter()
            .map(|m| m.meta.get("tag").map(|t| t.to_string()).unwrap_or_default())
            .collect()
    }

    #[test]
    fn responses_leave_in_due_order_then_arrival_order() {
        let p = Pending::new(10);
        let ms = Duration::from_millis;
        for (due, tag) in [(30, "a"), (10, "b"), (20, "c"), (10, "d")] {
            assert!(p.push(ms(due), msg(tag)).is_ok());
        }
        let mut out = Vec::new();
        assert_eq!(p.take_due(ms(9), &mut out), Some(ms(10)));
        assert!(out.is_empty());
        assert_eq!(p.take_due(ms(20), &mut out), Some(ms(30)));
        assert_eq!(tags(&out), ["b", "d", "c"]);
        out.clear();
        assert_eq!(p.take_due(ms(30), &mut out), None);
        assert_eq!(tags(&out), ["a"]);
    }

    #[test]
    fn a_full_heap_hands_the_message_back() {
        let p = Pending::new(2);
        assert!(p.push(Duration::from_secs(1), msg("a")).is_ok());
        assert!(p.push(Duration::from_secs(1), msg("b")).is_ok());
        let back = p.push(Duration::from_secs(1), msg("c")).expect_err("full");
        assert_eq!(tags(&[back]), ["c"]);
        assert_eq!(p.len(), 2);
        assert_eq!(p.clear(), 2);
        assert_eq!(p.len(), 0);
    }
}
