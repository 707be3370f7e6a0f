//! The bit layout of an id: time, sequence and machine id, and the epoch they count from.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::{Error, Id};

/// The id epoch, 2025-01-01T00:00:00Z, in seconds since the Unix epoch.
///
/// Every layout counts time from it, as the Go fluxrig's Sonyflake ids did.
pub const EPOCH_UNIX_SECS: u64 = 1_735_689_600;

const EPOCH_NANOS: u64 = EPOCH_UNIX_SECS * 1_000_000_000;

/// How a 63-bit id splits into time, sequence and machine id, from the most significant bit
/// down; the sign bit is always 0.
///
/// [`Layout::SONYFLAKE`] (the default) is Sony's classic layout: 39 bits of time in units
/// of 10 ms, 8 bits of sequence, 16 bits of machine id. A generator mints at most
/// 2^sequence_bits ids per time unit, so the classic layout caps one machine id at 25,600
/// ids per second; other layouts trade machine ids or time range for sequence, as Sony's
/// sonyflake v2 allows. Build one with [`Layout::builder`].
///
/// Every member of a fleet must use the same layout: ids of different layouts can collide.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Layout {
    unit_nanos: u64,
    sequence_bits: u8,
    machine_id_bits: u8,
}

impl Layout {
    /// Sony's classic layout: 39 bits of time in 10 ms units, 8 of sequence, 16 of machine id.
    pub const SONYFLAKE: Layout = Layout {
        unit_nanos: 10_000_000,
        sequence_bits: 8,
        machine_id_bits: 16,
    };

    /// A builder that starts from the classic layout.
    pub fn builder() -> LayoutBuilder {
        LayoutBuilder {
            time_unit: Duration::from_millis(10),
            sequence_bits: 8,
            machine_id_bits: 16,
        }
    }

    /// The length of one time unit.
    pub fn time_unit(&self) -> Duration {
        Duration::from_nanos(self.unit_nanos)
    }

    /// The number of time bits: 63 less the sequence and machine-id bits.
    pub fn time_bits(&self) -> u8 {
        63 - self.sequence_bits - self.machine_id_bits
    }

    /// The number of sequence bits.
    pub fn sequence_bits(&self) -> u8 {
        self.sequence_bits
    }

    /// The number of machine-id bits.
    pub fn machine_id_bits(&self) -> u8 {
        self.machine_id_bits
    }

    /// The largest machine id the layout holds.
    pub fn max_machine_id(&self) -> u32 {
        mask(self.machine_id_bits) as u32
    }

    /// How many ids one machine id can mint per second: 2^sequence_bits per time unit.
    pub fn ids_per_second(&self) -> f64 {
        (1u64 << self.sequence_bits) as f64 * 1e9 / self.unit_nanos as f64
    }

    /// The instant at which the layout's time range ends.
    pub fn end_of_time(&self) -> SystemTime {
        self.timestamp(1u64 << self.time_bits())
    }

    /// Splits an id into its time, sequence and machine id.
    pub fn decompose(&self, id: Id) -> Parts {
        let raw = id.get();
        let time = raw >> (self.sequence_bits + self.machine_id_bits);
        Parts {
            time,
            timestamp: self.timestamp(time),
            sequence: ((raw >> self.machine_id_bits) & mask(self.sequence_bits)) as u32,
            machine_id: (raw & mask(self.machine_id_bits)) as u32,
        }
    }

    /// Puts an id together from its time (in units since the epoch), sequence and machine id.
    ///
    /// # Errors
    ///
    /// [`Error::TimeExhausted`] if `time` does not fit in the time bits,
    /// [`Error::InvalidLayout`] if `sequence` does not fit in the sequence bits,
    /// [`Error::MachineIdOutOfRange`] if `machine_id` does not fit in the machine-id bits.
    pub fn compose(&self, time: u64, sequence: u32, machine_id: u32) -> Result<Id, Error> {
        if time > self.max_time() {
            return Err(Error::TimeExhausted {
                time_bits: self.time_bits(),
            });
        }
        if u64::from(sequence) > mask(self.sequence_bits) {
            return Err(Error::InvalidLayout(
                "sequence does not fit in the sequence bits",
            ));
        }
        self.check_machine_id(machine_id)?;
        Ok(Id::from_raw(
            (time << (self.sequence_bits + self.machine_id_bits))
                | (u64::from(sequence) << self.machine_id_bits)
                | u64::from(machine_id),
        ))
    }

    /// The start of time unit `time`.
    pub(crate) fn timestamp(&self, time: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_nanos(self.tick_start_nanos(time))
    }

    pub(crate) fn max_time(&self) -> u64 {
        mask(self.time_bits())
    }

    pub(crate) fn max_sequence(&self) -> u64 {
        mask(self.sequence_bits)
    }

    /// The time unit a clock reading (nanoseconds since the Unix epoch) falls in.
    pub(crate) fn tick_of(&self, unix_nanos: u64) -> Result<u64, Error> {
        match unix_nanos.checked_sub(EPOCH_NANOS) {
            Some(since) => Ok(since / self.unit_nanos),
            None => Err(Error::BeforeEpoch {
                unix: Duration::from_nanos(unix_nanos),
            }),
        }
    }

    /// The start of time unit `tick`, in nanoseconds since the Unix epoch. `build` checks
    /// that the whole time range fits in a `u64`; beyond it this saturates.
    pub(crate) fn tick_start_nanos(&self, tick: u64) -> u64 {
        tick.saturating_mul(self.unit_nanos)
            .saturating_add(EPOCH_NANOS)
    }

    /// Checks that a machine id fits and is not the reserved 0.
    pub(crate) fn check_machine_id(&self, machine_id: u32) -> Result<(), Error> {
        if machine_id == 0 {
            return Err(Error::ReservedMachineId);
        }
        if machine_id > self.max_machine_id() {
            return Err(Error::MachineIdOutOfRange {
                machine_id: u64::from(machine_id),
                bits: self.machine_id_bits,
            });
        }
        Ok(())
    }
}

impl Default for Layout {
    fn default() -> Self {
        Layout::SONYFLAKE
    }
}

fn mask(bits: u8) -> u64 {
    (1u64 << bits) - 1
}

/// An id split into its fields by [`Layout::decompose`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub struct Parts {
    /// Time units since the epoch (2025-01-01 UTC).
    pub time: u64,
    /// The start of that time unit.
    pub timestamp: SystemTime,
    /// The sequence number within the time unit.
    pub sequence: u32,
    /// The machine id of the generator that minted the id.
    pub machine_id: u32,
}

/// Builds a [`Layout`]; [`build`](LayoutBuilder::build) checks the ranges.
#[derive(Debug, Clone)]
pub struct LayoutBuilder {
    time_unit: Duration,
    sequence_bits: u8,
    machine_id_bits: u8,
}

impl LayoutBuilder {
    /// The length of one time unit: at least 1 ms (10 ms by default).
    pub fn time_unit(mut self, unit: Duration) -> Self {
        self.time_unit = unit;
        self
    }

    /// The number of sequence bits, at most 30 (8 by default).
    pub fn sequence_bits(mut self, bits: u8) -> Self {
        self.sequence_bits = bits;
        self
    }

    /// The number of machine-id bits, 1 to 30 (16 by default).
    pub fn machine_id_bits(mut self, bits: u8) -> Self {
        self.machine_id_bits = bits;
        self
    }

    /// Checks the ranges and returns the layout.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidLayout`] if the sequence bits exceed 30, the machine-id bits are not
    /// within 1 to 30, fewer than 32 bits are left for time, the time unit is shorter than
    /// 1 ms, or the time range ends beyond what a `u64` of nanoseconds since the Unix epoch
    /// holds (the year 2554).
    pub fn build(self) -> Result<Layout, Error> {
        if self.sequence_bits > 30 {
            return Err(Error::InvalidLayout("sequence bits must be at most 30"));
        }
        if !(1..=30).contains(&self.machine_id_bits) {
            return Err(Error::InvalidLayout(
                "machine-id bits must be within 1 to 30",
            ));
        }
        let time_bits = 63 - self.sequence_bits - self.machine_id_bits;
        if time_bits < 32 {
            return Err(Error::InvalidLayout(
                "at least 32 bits must be left for time",
            ));
        }
        if self.time_unit < Duration::from_millis(1) {
            return Err(Error::InvalidLayout("the time unit must be at least 1 ms"));
        }
        let unit_nanos = u64::try_from(self.time_unit.as_nanos())
            .map_err(|_| Error::InvalidLayout("the time range ends after the year 2554"))?;
        let end = (1u128 << time_bits) * u128::from(unit_nanos) + u128::from(EPOCH_NANOS);
        if end > u128::from(u64::MAX) {
            return Err(Error::InvalidLayout(
                "the time range ends after the year 2554",
            ));
        }
        Ok(Layout {
            unit_nanos,
            sequence_bits: self.sequence_bits,
            machine_id_bits: self.machine_id_bits,
        })
    }
}
