//! Machine-id leases handed out by the mixer.

use std::time::Duration;

use crate::clock::to_nanos;
use crate::{Clock, Error, Layout};

/// The right to mint ids under one machine id until a given time, issued by a mixer.
///
/// The mixer's registry hands out each machine id to one holder at a time, so generators
/// built from leases never share a machine id, which is what keeps their ids apart. A
/// generator or pool built from a lease stops minting under it once it expires
/// ([`Error::LeaseExpired`]) until it is renewed, because after expiry the mixer may lease
/// the same machine id to another rack.
///
/// Machine ids follow the fleet's plan: 0 means "not enrolled" and is never leased, 1 to 99
/// belong to mixers and 100 and up to racks (this type checks only the 0). Leases are not
/// signed yet; signature checking arrives with the mixer's passports.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Lease {
    machine_id: u32,
    holder: String,
    expires_at: u64,
    issuer: String,
}

impl Lease {
    /// A lease of `machine_id` to `holder` (a rack's name) until `expires_at` (seconds since
    /// the Unix epoch), issued by the mixer named `issuer`.
    ///
    /// Nothing is checked here; [`validate`](Lease::validate) does, and so does every
    /// builder that takes a lease.
    pub fn new(
        machine_id: u32,
        holder: impl Into<String>,
        expires_at: u64,
        issuer: impl Into<String>,
    ) -> Lease {
        Lease {
            machine_id,
            holder: holder.into(),
            expires_at,
            issuer: issuer.into(),
        }
    }

    /// The leased machine id.
    pub fn machine_id(&self) -> u32 {
        self.machine_id
    }

    /// Who holds the lease: a rack's name.
    pub fn holder(&self) -> &str {
        &self.holder
    }

    /// When the lease expires, in seconds since the Unix epoch; it is valid strictly before.
    pub fn expires_at(&self) -> u64 {
        self.expires_at
    }

    /// The identity of the mixer that issued the lease.
    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    /// Checks that the lease can be used now with this layout.
    ///
    /// # Errors
    ///
    /// [`Error::ReservedMachineId`] for machine id 0, [`Error::MachineIdOutOfRange`] when it
    /// does not fit in the layout's machine-id bits, [`Error::InvalidLease`] for an empty
    /// holder or issuer, [`Error::LeaseExpired`] when `clock` reads the expiry or later.
    pub fn validate<C: Clock + ?Sized>(&self, layout: &Layout, clock: &C) -> Result<(), Error> {
        layout.check_machine_id(self.machine_id)?;
        if self.holder.is_empty() {
            return Err(self.invalid("the holder is empty"));
        }
        if self.issuer.is_empty() {
            return Err(self.invalid("the issuer is empty"));
        }
        if to_nanos(clock.now()) >= self.expires_at_nanos() {
            return Err(self.expired());
        }
        Ok(())
    }

    /// The expiry in nanoseconds since the Unix epoch, saturating.
    pub(crate) fn expires_at_nanos(&self) -> u64 {
        to_nanos(Duration::from_secs(self.expires_at))
    }

    pub(crate) fn expired(&self) -> Error {
        Error::LeaseExpired {
            machine_id: self.machine_id,
            expires_at: self.expires_at,
        }
    }

    fn invalid(&self, reason: &'static str) -> Error {
        Error::InvalidLease {
            machine_id: self.machine_id,
            reason,
        }
    }
}
