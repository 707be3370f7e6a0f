//! Per-destination state: open tickets and the circuit breaker, and the availability the
//! destination trees read from them.

use std::time::Duration;

use sdk::{OutPort, Outbox};

use crate::route;

/// The breaker's settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct BreakerSettings {
    pub(crate) trip_after: u32,
    pub(crate) cooldown: Duration,
    pub(crate) half_open_probes: u32,
}

/// A circuit breaker.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) enum Breaker {
    /// Traffic flows; consecutive failures so far.
    #[default]
    Closed,
    /// Counting failures.
    Failing(u32),
    /// No traffic until `until`; then half-open.
    Open(Duration),
    /// Probes sent since the cooldown ended.
    HalfOpen(u32),
}

impl Breaker {
    /// Whether a request may go now.
    pub(crate) fn admits(self, now: Duration, s: &BreakerSettings) -> bool {
        match self {
            Breaker::Closed | Breaker::Failing(_) => true,
            Breaker::Open(until) => now >= until && s.half_open_probes > 0,
            Breaker::HalfOpen(sent) => sent < s.half_open_probes,
        }
    }

    /// A request went.
    pub(crate) fn on_send(&mut self, now: Duration) {
        match *self {
            Breaker::Open(until) if now >= until => *self = Breaker::HalfOpen(1),
            Breaker::HalfOpen(sent) => *self = Breaker::HalfOpen(sent.saturating_add(1)),
            _ => {}
        }
    }

    /// A reply came: closes a failing or half-open breaker. Returns whether it closed a
    /// half-open one.
    pub(crate) fn on_success(&mut self) -> bool {
        match *self {
            Breaker::HalfOpen(_) => {
                *self = Breaker::Closed;
                true
            }
            Breaker::Failing(_) => {
                *self = Breaker::Closed;
                false
            }
            // Open: a late reply to a request sent before the trip does not end the
            // cooldown.
            Breaker::Closed | Breaker::Open(_) => false,
        }
    }

    /// A ticket expired. Returns whether this opened the breaker.
    pub(crate) fn on_failure(&mut self, now: Duration, s: &BreakerSettings) -> bool {
        let failures = match *self {
            Breaker::Closed => 1,
            Breaker::Failing(n) => n.saturating_add(1),
            Breaker::HalfOpen(_) => u32::MAX,
            // Tickets sent before the trip keep expiring: the cooldown stands.
            Breaker::Open(_) => return false,
        };
        if failures >= s.trip_after {
            *self = Breaker::Open(now.saturating_add(s.cooldown));
            true
        } else {
            *self = Breaker::Failing(failures);
            false
        }
    }
}

/// What the conductor keeps per output port.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct PortState {
    /// Open tickets whose request went out on the port.
    pub(crate) open: u32,
    pub(crate) breaker: Breaker,
    /// When the breaker last opened: tickets sent before then that expire later do not
    /// count as failures (the destination may have recovered since).
    pub(crate) tripped_at: Option<Duration>,
}

/// The availability and load of ports as the conductor sees them: the engine's status
/// (link state), the breaker, and `max_in_flight`; the load is the open tickets.
pub(crate) struct Gauge<'a, 'o> {
    pub(crate) out: &'a Outbox<'o>,
    pub(crate) ports: &'a [PortState],
    pub(crate) now: Duration,
    pub(crate) max_in_flight: Option<u32>,
    pub(crate) breaker: Option<&'a BreakerSettings>,
}

impl route::Gauge for Gauge<'_, '_> {
    fn gauge(&self, port: OutPort) -> Option<u32> {
        if !self.out.status(port).is_available() {
            return None;
        }
        let state = self.ports.get(port.index())?;
        if self.max_in_flight.is_some_and(|max| state.open >= max) {
            return None;
        }
        if let Some(s) = self.breaker
            && !state.breaker.admits(self.now, s)
        {
            return None;
        }
        Some(state.open)
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::{Breaker, BreakerSettings};

    #[test]
    fn trips_cools_down_probes_and_closes() {
        let s = BreakerSettings {
            trip_after: 2,
            cooldown: Duration::from_secs(10),
            half_open_probes: 1,
        };
        let t = Duration::from_secs;
        let mut b = Breaker::default();
        assert!(!b.on_failure(t(0), &s));
        assert!(b.admits(t(0), &s));
        assert!(b.on_failure(t(1), &s), "the second failure trips it");
        assert!(!b.admits(t(5), &s));
        assert!(b.admits(t(11), &s), "the cooldown is over: a probe may go");
        b.on_send(t(11));
        assert!(!b.admits(t(11), &s), "one probe at a time");
        assert!(b.on_success());
        assert!(b.admits(t(12), &s));
        // A failed probe opens it again.
        b.on_failure(t(20), &s);
        b.on_failure(t(20), &s);
        b.on_send(t(31));
        assert!(b.on_failure(t(40), &s));
        assert!(!b.admits(t(45), &s));
    }
}
