//! The state of one machine id: the last time unit and sequence it minted, in one atomic.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use crate::clock::to_nanos;
use crate::machine::Resolved;
use crate::{Clock, Error, Id, Layout};

/// What a generator does when the clock reads earlier than its last id.
///
/// Either way it never mints an id that repeats or precedes one it minted before.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Backwards {
    /// Wait (through [`Clock::sleep_until`]) until the clock is back at the time of the
    /// last id, logging a warning; the default. A small NTP step costs a few milliseconds,
    /// a large one stalls the generator for as long as the step.
    #[default]
    Wait,
    /// Return [`Error::ClockBackwards`] until the clock has caught up.
    Error,
}

/// The outcome of one attempt to mint under one machine id.
#[derive(Debug)]
pub(crate) enum Step {
    /// A run of ids: the first and how many (at least 1). The others follow it one sequence
    /// number apart, so the `k`-th is [`Step::nth`].
    Minted(Id, u64),
    /// The sequence of the current time unit is used up, or the clock went backwards and the
    /// policy is to wait: the slot can mint again from this time unit on.
    WaitFor { tick: u64 },
    /// The lease of this slot has expired.
    Expired,
}

impl Step {
    /// The `k`-th id of a run that starts at `first`, under a layout with `machine_id_bits`.
    pub(crate) fn nth(first: Id, k: u64, machine_id_bits: u8) -> Id {
        Id::from_raw(first.get() + (k << machine_id_bits))
    }

    /// Appends `n` ids to `out`, taking runs (first id, count) from `run`, which is asked for
    /// what is still missing.
    pub(crate) fn collect(
        n: usize,
        machine_id_bits: u8,
        out: &mut impl Extend<Id>,
        mut run: impl FnMut(u64) -> Result<(Id, u64), Error>,
    ) -> Result<(), Error> {
        let mut left = n as u64;
        while left > 0 {
            let (first, count) = run(left)?;
            out.extend((0..count).map(|k| Step::nth(first, k, machine_id_bits)));
            left = left.saturating_sub(count);
        }
        Ok(())
    }
}

/// One machine id's state, on a cache line of its own so that pool members do not
/// interfere. `state` packs `time << sequence_bits | sequence` of the last id minted, which
/// is that id without its machine id; a compare-and-swap advances it, so the ids of one slot
/// increase strictly in the order the swaps succeed.
#[derive(Debug)]
#[repr(align(128))]
pub(crate) struct Slot {
    state: AtomicU64,
    machine_id: u32,
    expires_nanos: AtomicU64,
}

impl Slot {
    pub(crate) fn new(resolved: Resolved) -> Slot {
        Slot {
            state: AtomicU64::new(0),
            machine_id: resolved.machine_id,
            expires_nanos: AtomicU64::new(resolved.expires_nanos),
        }
    }

    pub(crate) fn machine_id(&self) -> u32 {
        self.machine_id
    }

    /// The lease expiry in seconds since the Unix epoch, if the slot is leased.
    pub(crate) fn expires_at(&self) -> Option<u64> {
        match self.expires_nanos.load(Ordering::Relaxed) {
            u64::MAX => None,
            nanos => Some(nanos.div_ceil(1_000_000_000)),
        }
    }

    pub(crate) fn set_expiry(&self, expires_nanos: u64) {
        self.expires_nanos.store(expires_nanos, Ordering::Relaxed);
    }

    pub(crate) fn expired_error(&self) -> Error {
        Error::LeaseExpired {
            machine_id: self.machine_id,
            expires_at: self.expires_at().unwrap_or(u64::MAX),
        }
    }

    /// Mints up to `want` ids (at least 1) of one time unit, with one reading of the clock
    /// and one swap, if the clock allows it now and the time unit is not below `floor` (a
    /// pool's highest unit so far, so that an idle member does not mint behind the others
    /// after the clock went backwards; 0 for a lone generator).
    ///
    /// The clock is read after the state is loaded, on every attempt: a slot's time can only
    /// have been set from a clock reading taken before that load, so a reading earlier than
    /// the slot's time means the clock really went backwards, not that another thread won a
    /// race across a unit boundary.
    pub(crate) fn try_mint<C: Clock>(
        &self,
        layout: &Layout,
        clock: &C,
        backwards: Backwards,
        floor: u64,
        want: u64,
    ) -> Result<Step, Error> {
        let want = want.max(1);
        let seq_bits = layout.sequence_bits();
        let max_seq = layout.max_sequence();
        let mut cur = self.state.load(Ordering::Acquire);
        loop {
            let now = to_nanos(clock.now());
            if now >= self.expires_nanos.load(Ordering::Relaxed) {
                return Ok(Step::Expired);
            }
            let tick = layout.tick_of(now)?;
            let own = cur >> seq_bits;
            let last = own.max(floor);
            // The first id of the run, and the state once the run is taken.
            let (first, taken) = if tick < last {
                let behind =
                    Duration::from_nanos(layout.tick_start_nanos(last).saturating_sub(now));
                return match backwards {
                    Backwards::Error => Err(Error::ClockBackwards { behind }),
                    Backwards::Wait => {
                        tracing::warn!(
                            machine_id = self.machine_id,
                            behind_ms = behind.as_millis() as u64,
                            "Clock went backwards; waiting for it to catch up before minting."
                        );
                        Ok(Step::WaitFor { tick: last })
                    }
                };
            } else if tick > own {
                if tick > layout.max_time() {
                    return Err(Error::TimeExhausted {
                        time_bits: layout.time_bits(),
                    });
                }
                let first = tick << seq_bits;
                (first, first + want.min(max_seq + 1) - 1)
            } else if cur & max_seq == max_seq {
                if own >= layout.max_time() {
                    return Err(Error::TimeExhausted {
                        time_bits: layout.time_bits(),
                    });
                }
                return Ok(Step::WaitFor { tick: own + 1 });
            } else {
                (cur + 1, cur + want.min(max_seq - (cur & max_seq)))
            };
            match self
                .state
                .compare_exchange_weak(cur, taken, Ordering::AcqRel, Ordering::Acquire)
            {
                Ok(_) => {
                    let id = Id::from_raw(
                        (first << layout.machine_id_bits()) | u64::from(self.machine_id),
                    );
                    return Ok(Step::Minted(id, taken - first + 1));
                }
                Err(actual) => cur = actual,
            }
        }
    }
}
