//! Sonyflake ids for every fluxMsg and every entity of a fluxrig fleet, minted under machine
//! ids that no two generators share.
//!
//! An id is a 63-bit Sonyflake value. In the classic layout ([`Layout::SONYFLAKE`], the
//! default) it holds 39 bits of time in 10 ms units since 2025-01-01 UTC
//! ([`EPOCH_UNIX_SECS`]), 8 bits of sequence and 16 bits of machine id, so ids sort by time
//! and are unique as long as machine ids are.
//!
//! Sonyflake fails in two classic ways, and this crate addresses both:
//!
//! - **Duplicate machine ids.** Sony's default takes the low 16 bits of the private IPv4
//!   address, which two machines in different networks can share. Here a machine id comes
//!   from an explicit value, a [`Lease`] handed out by the mixer (a generator stops minting
//!   when its lease expires), or, as a logged last resort, the host's private address.
//! - **A ceiling of 25,600 ids per second per generator.** A [`Pool`] holds several leased
//!   machine ids and spreads ids across them, k ids reaching k × 25,600 ids per second, each
//!   id still a valid Sonyflake id. A custom [`Layout`] (time unit, sequence and machine-id
//!   bits, as Sony's v2 allows) trades machine ids for ids per machine.
//!
//! A clock that goes backwards never yields a repeated or a smaller id from one generator:
//! it waits or fails, as [`Backwards`] says. The [`Clock`] is injectable, and
//! [`ManualClock`] moves time by hand, so tests of waiting never sleep.
//!
//! This crate does no I/O beyond reading the host's addresses when asked to, and has no
//! async runtime. It logs with `tracing`: a warning when a machine id is derived from an
//! address and when the clock went backwards.
//!
//! # Example
//!
//! ```
//! use std::time::Duration;
//! use idgen::{EPOCH_UNIX_SECS, Generator, Lease, ManualClock, Pool};
//!
//! // A generator with an explicit machine id on the system clock.
//! let ids = Generator::builder().machine_id(4242).build()?;
//! let (a, b) = (ids.next()?, ids.next()?);
//! assert!(a < b);
//! assert_eq!(ids.decompose(b).machine_id, 4242);
//! assert_eq!(b.to_string().parse::<idgen::Id>()?, b);
//!
//! // A pool of leased machine ids, driven by a manual clock.
//! let clock = ManualClock::from_unix_secs(EPOCH_UNIX_SECS + 3_600);
//! let expiry = EPOCH_UNIX_SECS + 7_200;
//! let pool = Pool::builder()
//!     .lease(Lease::new(100, "rack-east", expiry, "mixer-1"))
//!     .lease(Lease::new(101, "rack-east", expiry, "mixer-1"))
//!     .clock(clock.clone())
//!     .build()?;
//! // 512 ids in one 10 ms unit: 256 under each machine id, no waiting.
//! for _ in 0..512 {
//!     pool.next()?;
//! }
//! assert_eq!(clock.sleeps(), 0);
//! // The lease ends: the pool stops minting rather than risk a duplicate.
//! clock.advance(Duration::from_secs(3_600));
//! assert!(matches!(pool.next(), Err(idgen::Error::LeaseExpired { .. })));
//! # Ok::<(), idgen::Error>(())
//! ```
//!
//! # Ordering
//!
//! Ids of one [`Generator`] (and of its clones) strictly increase in the order
//! [`Generator::next`] returns them. Ids of a [`Pool`] strictly increase per member, and
//! across members only from one time unit to the next; see [`Pool`].
//!
//! # Relation to the `sonyflake` crate
//!
//! The ids are bit for bit those of the `sonyflake` crate (0.5) with start time 2025-01-01
//! UTC, and the integration tests check that ids from either decompose identically under
//! both crates. The crate is not a dependency, though, only the reference idgen is tested
//! and benchmarked against: its generator reads chrono's `Utc::now` and sleeps the thread
//! directly, so it takes no injectable clock (tests would sleep), keeps minting ahead of a
//! clock that went backwards without a choice to fail, has a fixed layout and no pools, and
//! locks a mutex per id; deriving the machine id from an address needs its `pnet` feature.
//! What idgen would reuse, decomposition, is three shifts.
//!
//! # Features
//!
//! None. MSRV: the workspace's `rust-version`.
#![cfg_attr(docsrs, feature(doc_cfg))]
#![doc(test(attr(deny(warnings))))]

mod clock;
mod error;
mod generator;
mod id;
mod layout;
mod lease;
mod machine;
mod pool;
mod slot;

pub use crate::clock::{Clock, ManualClock, SystemClock};
pub use crate::error::Error;
pub use crate::generator::{Generator, GeneratorBuilder};
pub use crate::id::Id;
pub use crate::layout::{EPOCH_UNIX_SECS, Layout, LayoutBuilder, Parts};
pub use crate::lease::Lease;
pub use crate::pool::{Pool, PoolBuilder};
pub use crate::slot::Backwards;
