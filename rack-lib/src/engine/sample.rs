//! Hop sampling: which gear sent which message on which port, and why, for a sample of the
//! messages, so that a message's path across racks can be shown (`fluxrig trace`).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use fluxmsg::{Id, Text};
use tokio::sync::mpsc;

/// One sampled hop.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct HopSample {
    /// The message.
    pub id: Id,
    /// The gear that sent it.
    pub gear: Arc<str>,
    /// The output port.
    pub port: String,
    /// When, in Unix nanoseconds.
    pub ts: i64,
    /// The gear's decision, if it gave one.
    pub decision: Option<Text>,
}

#[derive(Debug)]
struct Inner {
    one_in: u64,
    tx: mpsc::Sender<HopSample>,
    dropped: AtomicU64,
}

/// Samples one message in `one_in` by its id, the same messages on every rack (the choice is
/// a hash of the id alone), into a bounded channel: a full channel drops the sample and
/// counts it ([`HopSampler::dropped`]); the message itself never waits.
#[derive(Debug, Clone)]
pub struct HopSampler(Arc<Inner>);

impl HopSampler {
    /// A sampler of one message in `one_in` (at least 1: every message), and the receiver of
    /// its samples, holding at most `capacity`.
    pub fn new(one_in: u64, capacity: usize) -> (HopSampler, mpsc::Receiver<HopSample>) {
        let (tx, rx) = mpsc::channel(capacity.max(1));
        let inner = Inner {
            one_in: one_in.max(1),
            tx,
            dropped: AtomicU64::new(0),
        };
        (HopSampler(Arc::new(inner)), rx)
    }

    /// Whether the message `id` is sampled.
    pub fn picks(&self, id: &Id) -> bool {
        let key = match id {
            Id::U64(v) => *v,
            Id::Uuid(b) => u64::from_le_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]]),
        };
        // Ids put the machine and the sequence in their low bits: mix before taking the rest.
        let mixed = (key ^ (key >> 31)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        (mixed >> 17) % self.0.one_in == 0
    }

    /// Hands a sample over, or counts it dropped when the receiver is behind or gone.
    pub(crate) fn offer(&self, sample: HopSample) {
        if self.0.tx.try_send(sample).is_err() {
            self.0.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Samples dropped so far because the receiver was behind.
    pub fn dropped(&self) -> u64 {
        self.0.dropped.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_ids_are_picked_by_every_sampler_at_about_the_rate() {
        let (a, _ra) = HopSampler::new(10, 4);
        let (b, _rb) = HopSampler::new(10, 4);
        let ids: Vec<Id> = (0..10_000u64).map(|i| Id::U64((i << 22) | 7)).collect();
        let picked: Vec<&Id> = ids.iter().filter(|id| a.picks(id)).collect();
        assert!(ids.iter().all(|id| a.picks(id) == b.picks(id)));
        assert!((700..1300).contains(&picked.len()), "{}", picked.len());
        let (all, _r) = HopSampler::new(1, 4);
        assert!(ids.iter().all(|id| all.picks(id)));
    }

    #[test]
    fn a_full_channel_drops_and_counts() {
        let (s, mut rx) = HopSampler::new(1, 1);
        let sample = HopSample {
            id: Id::U64(1),
            gear: Arc::from("g"),
            port: "out".into(),
            ts: 0,
            decision: None,
        };
        s.offer(sample.clone());
        s.offer(sample.clone());
        assert_eq!(s.dropped(), 1);
        assert_eq!(rx.try_recv().ok(), Some(sample));
    }
}
