//! When each message is due: the rate shapes as a function from message index to time offset.

use std::time::Duration;

/// How fast the source goes, checked and ready to compute due times.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) enum Pace {
    /// As fast as the engine takes them, in batches.
    Load,
    /// `tps` messages per second.
    Constant { tps: f64 },
    /// From `from` to `to` messages per second, linearly over `over` seconds, then `to`.
    Ramp { from: f64, to: f64, over: f64 },
}

impl Pace {
    /// When message `k` (0-based) is due, counted from the start; `None` in load mode.
    ///
    /// The offset is computed from the start for every message, never by adding intervals, so
    /// rounding does not accumulate. An offset too large for a `Duration` is `Duration::MAX`.
    pub(super) fn offset(self, k: u64) -> Option<Duration> {
        let k = k as f64;
        let secs = match self {
            Pace::Load => return None,
            Pace::Constant { tps } => k / tps,
            Pace::Ramp { from, to, over } => {
                // Messages sent by time t during the ramp: from·t + a·t², a = (to - from) / 2·over.
                let ramped = (from + to) * over / 2.0;
                if k <= ramped {
                    ramp_time(from, (to - from) / (2.0 * over), k)
                } else {
                    over + (k - ramped) / to
                }
            }
        };
        Some(Duration::try_from_secs_f64(secs).unwrap_or(Duration::MAX))
    }
}

/// The t ≥ 0 where b·t + a·t² = k, in the form that stays exact when a is zero or tiny and
/// when b is zero (a ramp from 0).
fn ramp_time(b: f64, a: f64, k: f64) -> f64 {
    if k <= 0.0 {
        return 0.0;
    }
    let root = (b * b + 4.0 * a * k).max(0.0).sqrt();
    let denom = b + root;
    if denom > 0.0 {
        2.0 * k / denom
    } else {
        f64::INFINITY
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::Pace;

    fn secs(pace: Pace, k: u64) -> f64 {
        pace.offset(k).map_or(f64::NAN, |d| d.as_secs_f64())
    }

    #[test]
    fn constant_rate_spaces_messages_evenly_from_zero() {
        let pace = Pace::Constant { tps: 4.0 };
        assert_eq!(pace.offset(0), Some(Duration::ZERO));
        assert_eq!(pace.offset(1), Some(Duration::from_millis(250)));
        assert_eq!(pace.offset(4_000_000), Some(Duration::from_secs(1_000_000)));
        assert_eq!(Pace::Load.offset(3), None);
    }

    #[test]
    fn ramp_integrates_the_rate_then_holds_it() {
        let pace = Pace::Ramp {
            from: 10.0,
            to: 100.0,
            over: 10.0,
        };
        // 550 messages during the ramp, the 550th exactly at its end, then 100 per second.
        assert!((secs(pace, 550) - 10.0).abs() < 1e-9);
        assert!((secs(pace, 650) - 11.0).abs() < 1e-9);
        // After one second: 10 + 90/20 = 14.5 messages.
        assert!(secs(pace, 14) < 1.0 && secs(pace, 15) > 1.0);
        // Down ramps and ramps from zero work too.
        let down = Pace::Ramp {
            from: 100.0,
            to: 10.0,
            over: 10.0,
        };
        assert!((secs(down, 550) - 10.0).abs() < 1e-9);
        let from_zero = Pace::Ramp {
            from: 0.0,
            to: 20.0,
            over: 10.0,
        };
        assert_eq!(secs(from_zero, 0), 0.0);
        assert!((secs(from_zero, 100) - 10.0).abs() < 1e-9);
        assert!((secs(from_zero, 25) - 5.0).abs() < 1e-9);
    }

    #[test]
    fn offsets_never_go_backwards() {
        let pace = Pace::Ramp {
            from: 3.0,
            to: 700.0,
            over: 2.5,
        };
        let mut last = Duration::ZERO;
        for k in 0..5_000 {
            let at = pace.offset(k).unwrap_or(Duration::MAX);
            assert!(at >= last, "message {k} at {at:?} before {last:?}");
            last = at;
        }
    }
}
