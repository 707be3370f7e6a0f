//! The crate's one error type.

use std::io;
use std::sync::Arc;
use std::time::Duration;

/// Everything that can go wrong in this crate.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The clock reads earlier than the last id a generator minted, and the generator was
    /// built with [`Backwards::Error`](crate::Backwards::Error).
    #[error("clock went backwards by {behind:?}; refusing to mint an id that could repeat")]
    ClockBackwards {
        /// How far the clock is behind the time of the last id.
        behind: Duration,
    },
    /// The clock reads a time beyond the layout's time range (for the classic layout, 2^39
    /// units of 10 ms after 2025-01-01 UTC, in the year 2199).
    #[error("time range of the id layout is exhausted ({time_bits} bits of time)")]
    TimeExhausted {
        /// The number of time bits of the layout.
        time_bits: u8,
    },
    /// The clock reads a time before the id epoch, 2025-01-01 UTC.
    #[error("clock reads {unix:?} after the Unix epoch, before the id epoch 2025-01-01 UTC")]
    BeforeEpoch {
        /// The clock's reading, since the Unix epoch.
        unix: Duration,
    },
    /// A machine id does not fit in the layout's machine-id bits.
    #[error("machine id {machine_id} does not fit in {bits} bits")]
    MachineIdOutOfRange {
        /// The machine id given.
        machine_id: u64,
        /// The layout's number of machine-id bits.
        bits: u8,
    },
    /// Machine id 0 means "not enrolled yet" across the fleet and never mints ids.
    #[error("machine id 0 is reserved for machines that are not enrolled")]
    ReservedMachineId,
    /// Two members of a pool have the same machine id.
    #[error("machine id {machine_id} appears twice in a pool")]
    DuplicateMachineId {
        /// The repeated machine id.
        machine_id: u32,
    },
    /// A generator or pool was built without any machine id.
    #[error("no machine id: give an explicit one, a lease, or ask for one from the host's address")]
    NoMachineId,
    /// A lease is past its expiry, when validated or when minting under it.
    #[error("lease of machine id {machine_id} expired at {expires_at} (Unix seconds)")]
    LeaseExpired {
        /// The leased machine id.
        machine_id: u32,
        /// The lease's expiry, in seconds since the Unix epoch.
        expires_at: u64,
    },
    /// A lease is malformed.
    #[error("invalid lease of machine id {machine_id}: {reason}")]
    InvalidLease {
        /// The leased machine id.
        machine_id: u32,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// A renewal names a machine id the generator or pool does not hold.
    #[error("lease renewal for machine id {found}, which {holds}")]
    LeaseMismatch {
        /// The machine id in the renewal.
        found: u32,
        /// What the generator or pool holds instead, in words.
        holds: String,
    },
    /// A layout's parameters are out of range.
    #[error("invalid layout: {0}")]
    InvalidLayout(&'static str),
    /// None of the candidate addresses is a private IPv4 address.
    #[error("no private IPv4 address among {candidates} candidate addresses")]
    NoPrivateIpv4 {
        /// How many addresses were looked at.
        candidates: usize,
    },
    /// The host's addresses could not be read.
    #[error("cannot read the host's IPv4 addresses")]
    HostAddresses(#[source] Arc<io::Error>),
    /// A text is not an id.
    #[error("invalid id `{0}`: expected a decimal integer below 2^63")]
    ParseId(String),
}
