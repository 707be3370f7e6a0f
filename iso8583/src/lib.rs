//! ISO 8583 for fluxrig: specs, pack and unpack, mapping to fluxMsg, masking.
//!
//! MSRV: the workspace's `rust-version`.
#![doc(test(attr(deny(warnings))))]
