//! Where generators read the time, and how they wait for it.

use std::fmt::Debug;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// A source of wall-clock time that can also wait for a given time.
///
/// This is an extension point: generators and pools take any clock, so tests (or a
/// simulation) can drive time by hand with [`ManualClock`] instead of sleeping.
/// [`SystemClock`] is the default.
///
/// Times are durations since the Unix epoch. A clock may go backwards (an NTP step, a VM
/// resumed from a pause); generators notice and apply their [`Backwards`](crate::Backwards)
/// policy.
pub trait Clock: Debug + Send + Sync + 'static {
    /// The current time, since the Unix epoch.
    fn now(&self) -> Duration;

    /// Returns once [`now`](Clock::now) has reached `deadline` (since the Unix epoch), or
    /// soon after. A generator calls it when its sequence is exhausted for the current time
    /// unit, with the start of the next unit, and when the clock went backwards under
    /// [`Backwards::Wait`](crate::Backwards::Wait).
    fn sleep_until(&self, deadline: Duration);
}

/// The system's wall clock ([`SystemTime`]); waits by sleeping the thread.
///
/// A reading before 1970 counts as the Unix epoch itself, which generators refuse as being
/// before the id epoch.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Duration {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or(Duration::ZERO)
    }

    /// Sleeps until the deadline; the last few microseconds are spent yielding, because a
    /// sleep that short overshoots by more than it waits. It never spins a core for longer.
    fn sleep_until(&self, deadline: Duration) {
        const YIELD_BELOW: Duration = Duration::from_micros(20);
        loop {
            let now = self.now();
            let Some(left) = deadline.checked_sub(now).filter(|d| !d.is_zero()) else {
                return;
            };
            if left > YIELD_BELOW {
                std::thread::sleep(left);
            } else {
                std::thread::yield_now();
            }
        }
    }
}

/// A clock that moves only when told to, for tests and simulations.
///
/// Clones share the same time. [`sleep_until`](Clock::sleep_until) does not sleep: it moves
/// the time forward to the deadline (never backwards) and counts the call, so a test can
/// check that a generator waited without waiting itself.
#[derive(Debug, Clone, Default)]
pub struct ManualClock {
    inner: Arc<ManualInner>,
}

#[derive(Debug, Default)]
struct ManualInner {
    nanos: AtomicU64,
    sleeps: AtomicU64,
}

impl ManualClock {
    /// A clock that reads `unix`, a duration since the Unix epoch.
    pub fn new(unix: Duration) -> ManualClock {
        let clock = ManualClock::default();
        clock.set(unix);
        clock
    }

    /// A clock that reads `unix_secs` seconds after the Unix epoch.
    pub fn from_unix_secs(unix_secs: u64) -> ManualClock {
        ManualClock::new(Duration::from_secs(unix_secs))
    }

    /// Sets the time, forwards or backwards.
    pub fn set(&self, unix: Duration) {
        self.inner.nanos.store(to_nanos(unix), Ordering::SeqCst);
    }

    /// Moves the time forward by `by`.
    pub fn advance(&self, by: Duration) {
        self.inner.nanos.fetch_add(to_nanos(by), Ordering::SeqCst);
    }

    /// Moves the time backward by `by`, as an NTP step or a restored VM snapshot would.
    pub fn rewind(&self, by: Duration) {
        let by = to_nanos(by);
        let _ = self
            .inner
            .nanos
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| {
                Some(n.saturating_sub(by))
            });
    }

    /// How many times [`sleep_until`](Clock::sleep_until) was called.
    pub fn sleeps(&self) -> u64 {
        self.inner.sleeps.load(Ordering::SeqCst)
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Duration {
        Duration::from_nanos(self.inner.nanos.load(Ordering::SeqCst))
    }

    fn sleep_until(&self, deadline: Duration) {
        self.inner.sleeps.fetch_add(1, Ordering::SeqCst);
        self.inner
            .nanos
            .fetch_max(to_nanos(deadline), Ordering::SeqCst);
    }
}

/// Nanoseconds in a duration, saturating at `u64::MAX` (the year 2554).
pub(crate) fn to_nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}
