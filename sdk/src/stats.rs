//! [`Stats`]: a gear's counters (in, out, errors, drops by reason), mirrored to the `metrics`
//! facade, and their [`StatsSnapshot`].

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use metrics::{Counter, counter};

/// The counters of one gear: messages in, out, errors, and drops by reason.
///
/// Shared by the runner and the gear's own tasks. Each change is also reported through the
/// [`metrics`] facade as `flux.gear.messages_in`, `flux.gear.messages_out`, `flux.gear.errors`
/// and `flux.gear.messages_dropped` (label `reason`), all labelled with `gear`.
#[derive(Debug)]
pub struct Stats {
    gear: String,
    messages_in: AtomicU64,
    messages_out: AtomicU64,
    errors: AtomicU64,
    dropped: Mutex<BTreeMap<Cow<'static, str>, (u64, Counter)>>,
    facade: [Counter; 3],
}

/// A copy of a gear's counters at one moment.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct StatsSnapshot {
    /// Messages that arrived.
    pub messages_in: u64,
    /// Messages sent on any output port, `error` included.
    pub messages_out: u64,
    /// Messages that went to `error` (refused, failed, panicked).
    pub errors: u64,
    /// Messages dropped, by reason.
    pub dropped: BTreeMap<String, u64>,
}

impl StatsSnapshot {
    /// Messages dropped for `reason`.
    pub fn dropped(&self, reason: &str) -> u64 {
        self.dropped.get(reason).copied().unwrap_or(0)
    }
}

impl Stats {
    /// Counters for the gear `gear`.
    pub fn new(gear: &str) -> Stats {
        let label = gear.to_owned();
        Stats {
            gear: gear.to_owned(),
            messages_in: AtomicU64::new(0),
            messages_out: AtomicU64::new(0),
            errors: AtomicU64::new(0),
            dropped: Mutex::new(BTreeMap::new()),
            facade: [
                counter!("flux.gear.messages_in", "gear" => label.clone()),
                counter!("flux.gear.messages_out", "gear" => label.clone()),
                counter!("flux.gear.errors", "gear" => label),
            ],
        }
    }

    /// Counts `n` messages in.
    pub fn add_in(&self, n: u64) {
        self.messages_in.fetch_add(n, Ordering::Relaxed);
        self.facade[0].increment(n);
    }

    /// Counts `n` messages out.
    pub fn add_out(&self, n: u64) {
        self.messages_out.fetch_add(n, Ordering::Relaxed);
        self.facade[1].increment(n);
    }

    /// Counts `n` errors.
    pub fn add_errors(&self, n: u64) {
        self.errors.fetch_add(n, Ordering::Relaxed);
        self.facade[2].increment(n);
    }

    /// Counts `n` messages dropped for `reason` and logs it. The facade's counter for a reason
    /// is registered once, on its first drop.
    pub fn add_dropped(&self, reason: impl Into<Cow<'static, str>>, n: u64) {
        let reason = reason.into();
        tracing::debug!(gear = %self.gear, reason = %reason, count = n, "Dropped messages.");
        let mut dropped = self.dropped.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((count, counter)) = dropped.get_mut(&reason) {
            *count += n;
            counter.increment(n);
            return;
        }
        let counter = counter!("flux.gear.messages_dropped", "gear" => self.gear.clone(), "reason" => reason.to_string());
        counter.increment(n);
        dropped.insert(reason, (n, counter));
    }

    /// The counters now.
    pub fn snapshot(&self) -> StatsSnapshot {
        let dropped = self.dropped.lock().unwrap_or_else(|e| e.into_inner());
        StatsSnapshot {
            messages_in: self.messages_in.load(Ordering::Relaxed),
            messages_out: self.messages_out.load(Ordering::Relaxed),
            errors: self.errors.load(Ordering::Relaxed),
            dropped: dropped
                .iter()
                .map(|(k, (n, _))| (k.to_string(), *n))
                .collect(),
        }
    }
}
