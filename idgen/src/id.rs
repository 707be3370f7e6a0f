//! The id type: a 63-bit integer, shown and parsed in decimal.

use std::fmt;
use std::str::FromStr;

use crate::Error;

/// A Sonyflake id: a `u64` whose most significant bit is 0.
///
/// Ids order as their integers, which for ids of one generator is the order they were
/// minted in. They display in decimal, as the Go fluxrig wrote Sonyflake ids, and parse back
/// from it; `fluxmsg::Id::U64(id.get())` puts one in a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Id(u64);

impl Id {
    /// The largest id: 2^63 - 1.
    pub const MAX: Id = Id(u64::MAX >> 1);

    /// The id with this integer value.
    ///
    /// # Errors
    ///
    /// [`Error::ParseId`] if the most significant bit is set.
    pub fn new(raw: u64) -> Result<Id, Error> {
        if raw > Id::MAX.0 {
            return Err(Error::ParseId(raw.to_string()));
        }
        Ok(Id(raw))
    }

    /// The integer value.
    pub const fn get(self) -> u64 {
        self.0
    }

    pub(crate) const fn from_raw(raw: u64) -> Id {
        Id(raw)
    }
}

impl From<Id> for u64 {
    fn from(id: Id) -> u64 {
        id.0
    }
}

impl TryFrom<u64> for Id {
    type Error = Error;

    fn try_from(raw: u64) -> Result<Id, Error> {
        Id::new(raw)
    }
}

impl fmt::Display for Id {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

impl FromStr for Id {
    type Err = Error;

    /// Parses decimal digits only: no sign, no spaces, no leading `+`.
    fn from_str(s: &str) -> Result<Id, Error> {
        let bad = || Error::ParseId(s.to_owned());
        if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
            return Err(bad());
        }
        let raw = s.parse::<u64>().map_err(|_| bad())?;
        if raw > Id::MAX.0 {
            return Err(bad());
        }
        Ok(Id(raw))
    }
}
