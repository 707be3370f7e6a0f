//! One machine id's generator and its builder.

use std::net::Ipv4Addr;
use std::sync::Arc;
use std::time::Duration;

use crate::machine::Source;
use crate::slot::{Slot, Step};
use crate::{Backwards, Clock, Error, Id, Layout, Lease, Parts, SystemClock};

/// Mints ids under one machine id; a cheap handle to share across threads.
///
/// Clones share one state, so ids from all clones are unique and, in the order the calls
/// return, strictly increasing. One generator mints at most
/// [`Layout::ids_per_second`] ids per second (25,600 with the classic layout); beyond that
/// [`next`](Generator::next) waits for the next time unit. A rack that needs more holds
/// several machine ids in a [`Pool`](crate::Pool).
#[derive(Debug)]
pub struct Generator<C: Clock = SystemClock> {
    inner: Arc<Inner<C>>,
}

#[derive(Debug)]
struct Inner<C> {
    slot: Slot,
    layout: Layout,
    clock: C,
    backwards: Backwards,
}

impl<C: Clock> Clone for Generator<C> {
    fn clone(&self) -> Self {
        Generator {
            inner: Arc::clone(&self.inner),
        }
    }
}

impl Generator<SystemClock> {
    /// A builder with the classic layout, the system clock and [`Backwards::Wait`]; it needs
    /// a machine id source.
    pub fn builder() -> GeneratorBuilder<SystemClock> {
        GeneratorBuilder {
            source: None,
            layout: Layout::SONYFLAKE,
            clock: SystemClock,
            backwards: Backwards::Wait,
        }
    }
}

impl<C: Clock> Generator<C> {
    /// The next id.
    ///
    /// When the current time unit's sequence is used up, it waits for the next unit through
    /// [`Clock::sleep_until`] (a sleep with the system clock, not a spin).
    ///
    /// # Errors
    ///
    /// [`Error::ClockBackwards`] if the clock reads earlier than the last id and the policy
    /// is [`Backwards::Error`]; [`Error::TimeExhausted`] past the end of the layout's time
    /// range; [`Error::BeforeEpoch`] if the clock reads before 2025-01-01 UTC;
    /// [`Error::LeaseExpired`] once the generator's lease has expired.
    pub fn next(&self) -> Result<Id, Error> {
        self.run(1).map(|(id, _)| id)
    }

    /// Appends `n` more ids to `out`, in increasing order, reading the clock once per time
    /// unit instead of once per id (what a batch of messages needs).
    ///
    /// # Errors
    ///
    /// As [`Generator::next`]; the ids minted before the error are in `out`.
    pub fn next_ids(&self, n: usize, out: &mut impl Extend<Id>) -> Result<(), Error> {
        Step::collect(n, self.inner.layout.machine_id_bits(), out, |want| {
            self.run(want)
        })
    }

    /// A run of up to `want` ids: the first and how many.
    fn run(&self, want: u64) -> Result<(Id, u64), Error> {
        let inner = &*self.inner;
        loop {
            match inner
                .slot
                .try_mint(&inner.layout, &inner.clock, inner.backwards, 0, want)?
            {
                Step::Minted(id, count) => return Ok((id, count)),
                Step::WaitFor { tick } => inner
                    .clock
                    .sleep_until(Duration::from_nanos(inner.layout.tick_start_nanos(tick))),
                Step::Expired => return Err(inner.slot.expired_error()),
            }
        }
    }

    /// The machine id this generator mints under.
    pub fn machine_id(&self) -> u32 {
        self.inner.slot.machine_id()
    }

    /// The layout of the ids.
    pub fn layout(&self) -> &Layout {
        &self.inner.layout
    }

    /// The clock the generator reads.
    pub fn clock(&self) -> &C {
        &self.inner.clock
    }

    /// Splits an id into time, sequence and machine id with this generator's layout.
    pub fn decompose(&self, id: Id) -> Parts {
        self.inner.layout.decompose(id)
    }

    /// When the generator's lease expires, in seconds since the Unix epoch; `None` if it was
    /// not built from a lease and never renewed.
    pub fn lease_expires_at(&self) -> Option<u64> {
        self.inner.slot.expires_at()
    }

    /// Takes a renewed lease for the same machine id; minting resumes if the old one had
    /// expired.
    ///
    /// # Errors
    ///
    /// [`Error::LeaseMismatch`] if the lease is for another machine id, and whatever
    /// [`Lease::validate`] returns.
    pub fn renew(&self, lease: &Lease) -> Result<(), Error> {
        let inner = &*self.inner;
        if lease.machine_id() != inner.slot.machine_id() {
            return Err(Error::LeaseMismatch {
                found: lease.machine_id(),
                holds: format!("differs from the generator's {}", inner.slot.machine_id()),
            });
        }
        lease.validate(&inner.layout, &inner.clock)?;
        inner.slot.set_expiry(lease.expires_at_nanos());
        Ok(())
    }
}

/// Builds a [`Generator`]; [`build`](GeneratorBuilder::build) resolves and checks the
/// machine id.
///
/// Exactly one machine id source counts: the last one set among
/// [`machine_id`](GeneratorBuilder::machine_id), [`lease`](GeneratorBuilder::lease),
/// [`machine_id_from_ipv4`](GeneratorBuilder::machine_id_from_ipv4) and
/// [`machine_id_from_host`](GeneratorBuilder::machine_id_from_host).
#[derive(Debug)]
pub struct GeneratorBuilder<C: Clock = SystemClock> {
    source: Option<Source>,
    layout: Layout,
    clock: C,
    backwards: Backwards,
}

impl<C: Clock> GeneratorBuilder<C> {
    /// An explicit machine id, which the caller guarantees no other generator of the fleet
    /// uses.
    pub fn machine_id(mut self, machine_id: u32) -> Self {
        self.source = Some(Source::Explicit(machine_id));
        self
    }

    /// A machine id leased by the mixer; the generator stops minting when the lease expires
    /// (see [`Generator::renew`]).
    pub fn lease(mut self, lease: Lease) -> Self {
        self.source = Some(Source::Lease(lease));
        self
    }

    /// Last resort: the low 16 bits of the first private address among `candidates`, as
    /// Sony's default does. Logs a warning when used: machines in different networks can
    /// share those bits and then mint the same ids.
    pub fn machine_id_from_ipv4(mut self, candidates: impl IntoIterator<Item = Ipv4Addr>) -> Self {
        self.source = Some(Source::Ipv4(candidates.into_iter().collect()));
        self
    }

    /// Last resort: as [`machine_id_from_ipv4`](GeneratorBuilder::machine_id_from_ipv4) with
    /// the host's addresses, read in `build()` from `/proc/net/fib_trie` (Linux only).
    pub fn machine_id_from_host(mut self) -> Self {
        self.source = Some(Source::Host);
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
    pub fn clock<D: Clock>(self, clock: D) -> GeneratorBuilder<D> {
        GeneratorBuilder {
            source: self.source,
            layout: self.layout,
            clock,
            backwards: self.backwards,
        }
    }

    /// Resolves the machine id and returns the generator.
    ///
    /// # Errors
    ///
    /// [`Error::NoMachineId`] without a source; [`Error::ReservedMachineId`] or
    /// [`Error::MachineIdOutOfRange`] for a machine id of 0 or one that does not fit the
    /// layout; [`Lease::validate`]'s errors for a lease; [`Error::NoPrivateIpv4`] or
    /// [`Error::HostAddresses`] when deriving from addresses fails.
    pub fn build(self) -> Result<Generator<C>, Error> {
        let source = self.source.ok_or(Error::NoMachineId)?;
        let resolved = source.resolve(&self.layout, &self.clock)?;
        Ok(Generator {
            inner: Arc::new(Inner {
                slot: Slot::new(resolved),
                layout: self.layout,
                clock: self.clock,
                backwards: self.backwards,
            }),
        })
    }
}
