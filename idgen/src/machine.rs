//! Where a generator's machine id comes from: an explicit value, a lease, or, as a last
//! resort, the host's private IPv4 address.

use std::net::Ipv4Addr;

use crate::{Clock, Error, Layout, Lease};

/// A machine-id source given to a builder, resolved in `build()`.
#[derive(Debug, Clone)]
pub(crate) enum Source {
    Explicit(u32),
    Lease(Lease),
    Ipv4(Vec<Ipv4Addr>),
    Host,
}

/// A resolved machine id and, for a lease, its expiry in nanoseconds since the Unix epoch.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Resolved {
    pub(crate) machine_id: u32,
    pub(crate) expires_nanos: u64,
}

impl Source {
    pub(crate) fn resolve<C: Clock>(&self, layout: &Layout, clock: &C) -> Result<Resolved, Error> {
        let (machine_id, expires_nanos) = match self {
            Source::Explicit(id) => (*id, u64::MAX),
            Source::Lease(lease) => {
                lease.validate(layout, clock)?;
                (lease.machine_id(), lease.expires_at_nanos())
            }
            Source::Ipv4(candidates) => (from_private_ipv4(candidates)?, u64::MAX),
            Source::Host => (from_private_ipv4(&host_ipv4()?)?, u64::MAX),
        };
        layout.check_machine_id(machine_id)?;
        Ok(Resolved {
            machine_id,
            expires_nanos,
        })
    }
}

/// The low 16 bits of the first private (RFC 1918) address among `candidates`, as Sony's
/// default does; logs a warning, because two machines in different networks (or behind
/// NAT) can share those bits and then mint the same ids.
pub(crate) fn from_private_ipv4(candidates: &[Ipv4Addr]) -> Result<u32, Error> {
    let ip = candidates
        .iter()
        .find(|ip| ip.is_private())
        .ok_or(Error::NoPrivateIpv4 {
            candidates: candidates.len(),
        })?;
    let [_, _, hi, lo] = ip.octets();
    let machine_id = u32::from(u16::from_be_bytes([hi, lo]));
    tracing::warn!(
        machine_id,
        address = %ip,
        "Machine id derived from a private address; two machines may collide."
    );
    Ok(machine_id)
}

/// The host's local IPv4 addresses, read from `/proc/net/fib_trie` (Linux only; no network
/// traffic and no dependency).
pub(crate) fn host_ipv4() -> Result<Vec<Ipv4Addr>, Error> {
    if cfg!(target_os = "linux") {
        std::fs::read_to_string("/proc/net/fib_trie")
            .map(|text| parse_fib_trie(&text))
            .map_err(|e| Error::HostAddresses(e.into()))
    } else {
        Err(Error::HostAddresses(
            std::io::Error::new(
                std::io::ErrorKind::Unsupported,
                "reading the host's addresses is implemented for Linux only",
            )
            .into(),
        ))
    }
}

/// The addresses of `/32 host LOCAL` entries in the kernel's routing trie: each such line
/// follows a `|-- <address>` line. Loopback addresses are left out; each address once.
pub(crate) fn parse_fib_trie(text: &str) -> Vec<Ipv4Addr> {
    let mut found = Vec::new();
    let mut last: Option<Ipv4Addr> = None;
    for line in text.lines() {
        let line = line.trim();
        if let Some(addr) = line.strip_prefix("|-- ") {
            last = addr.trim().parse().ok();
        } else if line.starts_with("/32 host LOCAL")
            && let Some(ip) = last.take()
            && !ip.is_loopback()
            && !found.contains(&ip)
        {
            found.push(ip);
        }
    }
    found
}

#[cfg(test)]
mod tests;
