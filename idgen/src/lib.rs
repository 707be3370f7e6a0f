//! Sonyflake identifiers for every fluxMsg and every entity of a fluxrig fleet.
//!
//! An id is a 64-bit Sonyflake value: 39 bits of time in 10 ms units since 2025-01-01 UTC,
//! 8 bits of sequence and 16 bits of machine id.
//! This crate will hand out generators whose machine ids come from leases issued by the mixer,
//! so that two machines never mint the same id, and pools of leases for racks that need more
//! than 25,600 ids per second.
//!
//! It has no code yet: the generator, leases and pools arrive with their own issue.
//! Until then, `fluxmsg::Id` carries ids minted elsewhere.
