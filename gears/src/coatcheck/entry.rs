//! A parked entry as the bucket holds it, and how parked values leave and rejoin a message.
//!
//! The value is one version byte (`1`), the expiry as Unix nanoseconds (8 bytes, big-endian),
//! then the parked fields as a fluxMsg in its CBOR encoding (only `meta` and `data` set). The
//! expiry comes first so that the daemon reads it without decoding the rest.

use std::time::Duration;

use bytes::{BufMut, Bytes};
use fluxmsg::{Codec, FluxMsg, Map, Value};
use sdk::GearError;

use super::MergeStrategy;
use crate::field::Field;

/// The format version this module writes and reads.
const VERSION: u8 = 1;
/// Version byte and expiry.
const HEADER: usize = 9;

/// Moves (or copies, with `keep`) the `fields` present in `msg` into a fluxMsg of their own.
/// Fields that are absent are left out.
pub(crate) fn park(msg: &mut FluxMsg, fields: &[Field], keep: bool) -> FluxMsg {
    let mut parked = FluxMsg::new();
    for field in fields {
        match field {
            Field::Meta(key) => {
                let value = if keep {
                    msg.meta.get(key).cloned()
                } else {
                    msg.meta.remove(key)
                };
                if let Some(v) = value {
                    parked.meta.insert(key.as_str(), v);
                }
            }
            Field::Data(path) => {
                let value = if keep {
                    msg.data.get_path(path).cloned()
                } else {
                    msg.data.remove_path(path)
                };
                // The path was read from this message's own data, so it fits again.
                if let Some(v) = value {
                    let _ = parked.data.set_path(path, v);
                }
            }
            // Configuration admits meta and data fields only.
            _ => {}
        }
    }
    parked
}

/// Puts parked fields back into `msg`: where both have a value, `overwrite` lets the parked
/// one win and `preserve` the message's. Maps merge key by key, at any depth.
pub(crate) fn merge(msg: &mut FluxMsg, parked: FluxMsg, strategy: MergeStrategy) {
    let overwrite = strategy == MergeStrategy::Overwrite;
    for (key, value) in parked.meta {
        if overwrite || !msg.meta.contains_key(&key) {
            msg.meta.insert(key, value);
        }
    }
    merge_map(&mut msg.data, parked.data, overwrite);
}

fn merge_map(into: &mut Map<Value>, from: Map<Value>, overwrite: bool) {
    for (key, value) in from {
        match (into.get_mut(&key), value) {
            (Some(Value::Map(mine)), Value::Map(theirs)) => merge_map(mine, theirs, overwrite),
            (Some(_), value) => {
                if overwrite {
                    into.insert(key, value);
                }
            }
            (None, value) => {
                into.insert(key, value);
            }
        }
    }
}

/// The bucket value for `parked`, expiring at `expires` (since the Unix epoch).
pub(crate) fn encode(
    codec: &Codec,
    parked: &FluxMsg,
    expires: Duration,
) -> Result<Bytes, GearError> {
    let mut buf = Vec::with_capacity(64);
    buf.push(VERSION);
    buf.put_u64(nanos(expires));
    codec
        .encode(parked, &mut buf)
        .map_err(|e| GearError::new("encode").with_detail(e))?;
    Ok(Bytes::from(buf))
}

/// The expiry of a bucket value, without decoding the parked fields.
pub(crate) fn expiry(value: &[u8]) -> Result<Duration, GearError> {
    match value {
        [VERSION, rest @ ..] if rest.len() >= HEADER - 1 => {
            let mut n = [0u8; 8];
            n.copy_from_slice(&rest[..8]);
            Ok(Duration::from_nanos(u64::from_be_bytes(n)))
        }
        [VERSION, ..] => Err(corrupt("it is shorter than its header")),
        [v, ..] => Err(corrupt(format_args!("unknown format version {v}"))),
        [] => Err(corrupt("it is empty")),
    }
}

/// The expiry and the parked fields of a bucket value.
pub(crate) fn decode(codec: &Codec, value: &[u8]) -> Result<(Duration, FluxMsg), GearError> {
    let expires = expiry(value)?;
    let parked = codec
        .decode(&value[HEADER..])
        .map_err(|e| corrupt(format_args!("its parked fields do not decode: {e}")))?;
    Ok((expires, parked))
}

fn corrupt(detail: impl std::fmt::Display) -> GearError {
    GearError::new("corrupt_entry")
        .with_detail(format_args!("a parked entry is unreadable: {detail}"))
}

/// Nanoseconds since the Unix epoch, saturating.
pub(crate) fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}
