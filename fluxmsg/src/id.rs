//! Message and entity identifiers in both of the forms the Go fluxrig puts on the wire.

use std::fmt;
use std::str::FromStr;

use crate::{Error, hex};

/// An identifier as it travels in `id`, `ref_id`, `src_id` and in hops.
///
/// fluxrig for Rust mints 64-bit Sonyflake ids ([`Id::U64`], a CBOR unsigned integer), as the
/// Go fluxrig did up to v0.4. The Go fluxrig from v0.5 on writes UUIDv7 values as 16-byte CBOR
/// byte strings; those decode to [`Id::Uuid`] with the 16 bytes unchanged, and encode back to
/// the same byte string, so a message from a Go rack crosses a Rust rack bit for bit.
///
/// Text forms (used by [`Display`](fmt::Display), [`FromStr`] and the JSON view): a `U64` is
/// its decimal number, a `Uuid` the hyphenated lower-case form
/// `0190a5b2-7c3d-7e4f-8a1b-2c3d4e5f6a7b`.
///
/// ```
/// use fluxmsg::Id;
///
/// let id: Id = "0190a5b2-7c3d-7e4f-8a1b-2c3d4e5f6a7b".parse()?;
/// assert!(matches!(id, Id::Uuid(_)));
/// assert_eq!(id.to_string(), "0190a5b2-7c3d-7e4f-8a1b-2c3d4e5f6a7b");
/// assert_eq!("42".parse::<Id>()?, Id::U64(42));
/// # Ok::<(), fluxmsg::Error>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Id {
    /// A 64-bit id (Sonyflake), encoded as a CBOR unsigned integer.
    U64(u64),
    /// A 16-byte id (UUID, as the Go fluxrig v0.5+ writes), encoded as a CBOR byte string.
    Uuid([u8; 16]),
}

impl From<u64> for Id {
    fn from(v: u64) -> Self {
        Id::U64(v)
    }
}

impl From<[u8; 16]> for Id {
    fn from(v: [u8; 16]) -> Self {
        Id::Uuid(v)
    }
}

impl fmt::Display for Id {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Id::U64(v) => write!(f, "{v}"),
            Id::Uuid(b) => {
                for (i, byte) in b.iter().enumerate() {
                    if matches!(i, 4 | 6 | 8 | 10) {
                        f.write_str("-")?;
                    }
                    write!(f, "{byte:02x}")?;
                }
                Ok(())
            }
        }
    }
}

impl FromStr for Id {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = || Error::ParseId(s.to_owned());
        if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) {
            return s.parse().map(Id::U64).map_err(|_| err());
        }
        let b = s.as_bytes();
        if b.len() != 36 || [8, 13, 18, 23].iter().any(|&i| b[i] != b'-') {
            return Err(err());
        }
        let mut out = [0u8; 16];
        let mut digits = b.iter().filter(|&&c| c != b'-');
        for slot in &mut out {
            let (Some(&hi), Some(&lo)) = (digits.next(), digits.next()) else {
                return Err(err());
            };
            *slot = (hex::digit(hi).ok_or_else(err)? << 4) | hex::digit(lo).ok_or_else(err)?;
        }
        Ok(Id::Uuid(out))
    }
}
