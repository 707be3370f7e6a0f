//! Several machine ids behind one handle, for more ids per second than one can mint.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use crate::machine::Source;
use crate::slot::{Slot, Step};
use crate::{Backwards, Clock, Error, Id, Layout, Lease, Parts, SystemClock};

/// Mints ids under several machine ids, so that a rack holding k leases mints up to k times
/// a generator's ceiling (k × 25,600 ids per second with the classic layout).
///
/// Every id is a plain Sonyflake id of one member's machine id, so ids stay unique across
/// the pool and across the fleet, and each member's ids increase strictly. Ids from the
/// pool as a whole are ordered by time unit but **not** within one: in a time unit the pool
/// fills one member's sequence, then moves to the next member (whose machine id may be
/// smaller), so two ids from one pool can compare in the opposite order they were minted in
/// when they share a time unit. After the clock goes backwards, no member mints in a unit
/// below the highest the pool has minted in: the [`Backwards`] policy applies to the pool as
/// a whole.
///
/// Strategy: a shared cursor names the member in use. A call mints from it; when its
/// sequence for the current unit is used up (or its lease has expired), the call tries the
/// next members in turn and moves the cursor to the first that mints. Only when every member
/// is used up does the call wait, until the earliest unit in which one can mint again. A
/// member whose lease expired is skipped until it is renewed ([`Pool::renew`]); when all have
/// expired, [`next`](Pool::next) returns [`Error::LeaseExpired`].
///
/// Clones share one state; the handle is cheap to clone and safe to share across threads.
#[derive(Debug)]
pub struct Pool<C: Clock = SystemClock> {
    inner: Arc<Inner<C>>,
}

#[derive(Debug)]
struct Inner<C> {
    cursor: Cursor,
    floor: Floor,
    slots: Box<[Slot]>,
    layout: Layout,
    clock: C,
    backwards: Backwards,
}

/// The index of the member in use, on a cache line of its own.
#[derive(Debug, Default)]
#[repr(align(128))]
struct Cursor(AtomicUsize);

/// The highest time unit any member has minted in, on a cache line of its own; it changes
/// once per unit and member. A member never mints below it, so after the clock goes
/// backwards an idle member waits (or fails) like the busy ones instead of minting ids older
/// than the pool's last.
#[derive(Debug, Default)]
#[repr(align(128))]
struct Floor(AtomicU64);

impl<C: Clock> Clone for Pool<C> {
    fn clone(&self) -> Self {
        Pool {
            inner: Arc::clone(&self.inner),
        }
    }
}

impl Pool<SystemClock> {
    /// A builder with the classic layout, the system clock and [`Backwards::Wait`]; it needs
    /// at least one machine id.
    pub fn builder() -> PoolBuilder<SystemClock> {
        PoolBuilder {
            sources: Vec::new(),
            layout: Layout::SONYFLAKE,
            clock: SystemClock,
            backwards: Backwards::Wait,
        }
    }
}

impl<C: Clock> Pool<C> {
    /// The next id, from the member in use or the next one that can mint.
    ///
    /// # Errors
    ///
    /// As [`Generator::next`](crate::Generator::next); [`Error::ClockBackwards`] as soon as
    /// the member tried is behind the clock under [`Backwards::Error`], and
    /// [`Error::LeaseExpired`] only once every member's lease has expired.
    pub fn next(&self) -> Result<Id, Error> {
        self.run(1).map(|(id, _)| id)
    }

    /// Appends `n` more ids to `out`, in increasing order within each member, reading the
    /// clock once per run of one member's time unit instead of once per id (what a batch of
    /// messages needs).
    ///
    /// # Errors
    ///
    /// As [`Pool::next`]; the ids minted before the error are in `out`.
    pub fn next_ids(&self, n: usize, out: &mut impl Extend<Id>) -> Result<(), Error> {
        Step::collect(n, self.inner.layout.machine_id_bits(), out, |want| {
            self.run(want)
        })
    }

    /// A run of up to `want` ids from one member: the first and how many.
    fn run(&self, want: u64) -> Result<(Id, u64), Error> {
        let inner = &*self.inner;
        let n = inner.slots.len();
        loop {
            let start = inner.cursor.0.load(Ordering::Relaxed);
            let floor = inner.floor.0.load(Ordering::Acquire);
            let mut wake: Option<u64> = None;
            let mut i = start;
            for _ in 0..n {
                let slot = &inner.slots[i];
                match slot.try_mint(&inner.layout, &inner.clock, inner.backwards, floor, want)? {
                    Step::Minted(id, count) => {
                        // The first id of a unit has sequence 0: raise the floor to its unit.
                        let unit = id.get() >> inner.layout.machine_id_bits();
                        if unit & inner.layout.max_sequence() == 0 {
                            let tick = unit >> inner.layout.sequence_bits();
                            inner.floor.0.fetch_max(tick, Ordering::AcqRel);
                        }
                        if i != start {
                            inner.cursor.0.store(i, Ordering::Relaxed);
                        }
                        return Ok((id, count));
                    }
                    Step::WaitFor { tick } => wake = Some(wake.map_or(tick, |w| w.min(tick))),
                    Step::Expired => {}
                }
                i += 1;
                if i == n {
                    i = 0;
                }
            }
            match wake {
                Some(tick) => inner
                    .clock
                    .sleep_until(Duration::from_nanos(inner.layout.tick_start_nanos(tick))),
                None => return Err(inner.slots[start].expired_error()),
            }
        }
    }

    /// The members' machine ids, in the order they were added.
    pub fn machine_ids(&self) -> impl Iterator<Item = u32> + '_ {
        self.inner.slots.iter().map(Slot::machine_id)
    }

    /// The number of members.
    pub fn len(&self) -> usize {
        self.inner.slots.len()
    }

    /// Always `false`: a pool has at least one member.
    pub fn is_empty(&self) -> bool {
        self.inner.slots.is_empty()
    }

    /// The layout of the ids.
    pub fn layout(&self) -> &Layout {
        &self.inner.layout
    }

    /// The clock the pool reads.
    pub fn clock(&self) -> &C {
        &self.inner.clock
    }

    /// Splits an id into time, sequence and machine id with this pool's layout.
    pub fn decompose(&self, id: Id) -> Parts {
        self.inner.layout.decompose(id)
    }

    /// Takes a renewed lease for one of the members; that member mints again if its old
    /// lease had expired.
    ///
    /// # Errors
    ///
    /// [`Error::LeaseMismatch`] if no member has the lease's machine id, and whatever
    /// [`Lease::validate`] returns.
    pub fn renew(&self, lease: &Lease) -> Result<(), Error> {
        let inner = &*self.inner;
        let slot = inner
            .slots
            .iter()
            .find(|s| s.machine_id() == lease.machine_id())
            .ok_or_else(|| Error::LeaseMismatch {
                found: lease.machine_id(),
                holds: "is not a member of the pool".to_owned(),
            })?;
        lease.validate(&inner.layout, &inner.clock)?;
        slot.set_expiry(lease.expires_at_nanos());
        Ok(())
    }
}

/// Builds a [`Pool`]; [`build`](PoolBuilder::build) resolves and checks every machine id.
#[derive(Debug)]
pub struct PoolBuilder<C: Clock = SystemClock> {
    sources: Vec<Source>,
    layout: Layout,
    clock: C,
    backwards: Backwards,
}

impl<C: Clock> PoolBuilder<C> {
    /// Adds a member with a machine id leased by the mixer.
    pub fn lease(mut self, lease: Lease) -> Self {
        self.sources.push(Source::Lease(lease));
        self
    }

    /// Adds a member per lease.
    pub fn leases(mut self, leases: impl IntoIterator<Item = Lease>) -> Self {
        self.sources.extend(leases.into_iter().map(Source::Lease));
        self
    }

    /// Adds a member with an explicit machine id, which the caller guarantees no other
    /// generator of the fleet uses.
    pub fn machine_id(mut self, machine_id: u32) -> Self {
        self.sources.push(Source::Explicit(machine_id));
        self
    }

    /// Adds a member per explicit machine id.
    pub fn machine_ids(mut self, machine_ids: impl IntoIterator<Item = u32>) -> Self {
        self.sources
            .extend(machine_ids.into_iter().map(Source::Explicit));
        self
    }

    /// The id layout; [`Layout::SONYFLAKE`] by default.
    pub fn layout(mut self, layout: Layout) -> Self {
        self.layout = layout;
        self
    }

    /// What to do when the clock goes backwards; [`Backwards::Wait`] by default.
    pub fn on_clock_backwards(mut self, policy: Backwards) -> Self {
        self.backwards = policy;
        self
    }

    /// The clock to read; [`SystemClock`] by default.
    pub fn clock<D: Clock>(self, clock: D) -> PoolBuilder<D> {
        PoolBuilder {
            sources: self.sources,
            layout: self.layout,
            clock,
            backwards: self.backwards,
        }
    }

    /// Resolves the machine ids and returns the pool.
    ///
    /// # Errors
    ///
    /// [`Error::NoMachineId`] without members; [`Error::DuplicateMachineId`] when two
    /// members share a machine id; as
    /// [`GeneratorBuilder::build`](crate::GeneratorBuilder::build) for each member.
    pub fn build(self) -> Result<Pool<C>, Error> {
        if self.sources.is_empty() {
            return Err(Error::NoMachineId);
        }
        let mut slots: Vec<Slot> = Vec::with_capacity(self.sources.len());
        for source in &self.sources {
            let resolved = source.resolve(&self.layout, &self.clock)?;
            if slots.iter().any(|s| s.machine_id() == resolved.machine_id) {
                return Err(Error::DuplicateMachineId {
                    machine_id: resolved.machine_id,
                });
            }
            slots.push(Slot::new(resolved));
        }
        Ok(Pool {
            inner: Arc::new(Inner {
                cursor: Cursor::default(),
                floor: Floor::default(),
                slots: slots.into_boxed_slice(),
                layout: self.layout,
                clock: self.clock,
                backwards: self.backwards,
            }),
        })
    }
}
