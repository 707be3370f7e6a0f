//! The crate's one error type.

use std::fmt;

/// Everything that can go wrong in this crate.
///
/// Decoding errors carry the byte offset at which the input stopped making sense, so a bad
/// message in a log can be looked at with a hex dump.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The bytes are not a valid fluxMsg (or CBOR value).
    #[error("invalid fluxMsg at byte {offset}: {kind}")]
    Decode {
        /// Offset into the input of the data item that could not be decoded.
        offset: usize,
        /// What was wrong there.
        kind: DecodeErrorKind,
    },
    /// A message to encode breaks one of the codec's limits.
    #[error("message exceeds a limit: {0}")]
    Limit(LimitExceeded),
    /// A dotted path could not be read or written.
    #[error("path `{path}`: {kind}")]
    Path {
        /// The dotted path as given.
        path: String,
        /// Why it failed.
        kind: PathErrorKind,
    },
    /// An unknown top-level field carries the name of a fluxMsg field.
    #[error("extra field `{0}` has the name of a fluxMsg field")]
    ReservedKey(String),
    /// A limit configuration is out of range.
    #[error("invalid limits: {0}")]
    InvalidLimits(&'static str),
    /// A text could not be parsed as an [`Id`](crate::Id).
    #[error("invalid id `{0}`: expected a decimal u64 or a hyphenated UUID")]
    ParseId(String),
    /// A typed payload could not be converted to or from a data map.
    #[error("payload {0}")]
    Payload(String),
    /// A JSON document is not a fluxMsg in the JSON view (see the `json` module, feature
    /// `json`).
    #[error("invalid JSON fluxMsg at `{path}`: {reason}")]
    Json {
        /// Where in the document: object keys joined by `.`, array indices in brackets, as in
        /// `data.iso8583.field` or `path[2].g`; `(root)` for the document itself.
        path: String,
        /// What was wrong there.
        reason: String,
    },
}

impl Error {
    pub(crate) fn decode(offset: usize, kind: DecodeErrorKind) -> Self {
        Error::Decode { offset, kind }
    }

    /// The byte offset of a decoding error, if this is one.
    pub fn offset(&self) -> Option<usize> {
        match self {
            Error::Decode { offset, .. } => Some(*offset),
            _ => None,
        }
    }

    /// The kind of a decoding error, if this is one.
    pub fn decode_kind(&self) -> Option<&DecodeErrorKind> {
        match self {
            Error::Decode { kind, .. } => Some(kind),
            _ => None,
        }
    }
}

/// Why a byte sequence was refused by the decoder.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DecodeErrorKind {
    /// The input ends in the middle of a data item.
    #[error("unexpected end of input")]
    UnexpectedEnd,
    /// Bytes follow the message.
    #[error("trailing bytes after the message")]
    TrailingBytes,
    /// A text string is not valid UTF-8.
    #[error("text is not valid UTF-8")]
    InvalidUtf8,
    /// An indefinite-length string, array or map (fluxMsg uses definite lengths only).
    #[error("indefinite-length items are not supported")]
    IndefiniteLength,
    /// Additional information 28 to 30, reserved by RFC 8949.
    #[error("reserved additional information {0}")]
    Reserved(u8),
    /// A CBOR tag (fluxMsg uses none).
    #[error("tag {0} is not supported")]
    UnsupportedTag(u64),
    /// A simple value other than false, true and null.
    #[error("simple value {0} is not supported")]
    UnsupportedSimple(u8),
    /// A map holds the same key twice.
    #[error("duplicate map key")]
    DuplicateKey,
    /// A map key is not a text string.
    #[error("map key is not a text string")]
    NonTextKey,
    /// A field holds a value of the wrong type.
    #[error("field `{field}` must be {expected}")]
    TypeMismatch {
        /// The field (or `data` for a value inside data).
        field: &'static str,
        /// What it must be.
        expected: &'static str,
    },
    /// An integer does not fit its field.
    #[error("field `{field}` is out of range")]
    OutOfRange {
        /// The field.
        field: &'static str,
    },
    /// A byte-string id is not 16 bytes long.
    #[error("id byte string has {0} bytes, expected 16")]
    BadIdLength(usize),
    /// A hop lacks one of `g`, `p`, `t` (its decision `d` is optional).
    #[error("hop lacks field `{0}`")]
    MissingField(&'static str),
    /// The input breaks a limit of the codec.
    #[error("{0}")]
    Limit(LimitExceeded),
}

/// A limit of the codec that a message breaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum LimitExceeded {
    /// More hops in `path` than allowed.
    #[error("{len} hops, at most {max} allowed")]
    Hops {
        /// Number of hops.
        len: u64,
        /// The limit.
        max: usize,
    },
    /// The encoded message is larger than allowed.
    #[error("{len} bytes, at most {max} allowed")]
    Size {
        /// Size in bytes (for decoding: the input's size).
        len: usize,
        /// The limit.
        max: usize,
    },
    /// Values nest deeper than allowed.
    #[error("nesting deeper than {max} levels")]
    Depth {
        /// The limit.
        max: usize,
    },
    /// A hop's decision is longer than allowed.
    #[error("hop decision of {len} bytes, at most {max} allowed")]
    Decision {
        /// Its length in bytes.
        len: u64,
        /// The limit.
        max: usize,
    },
}

/// Why a dotted path could not be read or written.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum PathErrorKind {
    /// The path is empty or has an empty segment (`a..b`, `.a`, `a.`).
    EmptySegment,
    /// A segment names a child under a value that is not a map.
    KeyConflict {
        /// The path prefix that holds the non-map value.
        at: String,
        /// The type of the value found there.
        found: &'static str,
    },
}

impl fmt::Display for PathErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PathErrorKind::EmptySegment => f.write_str("empty path segment"),
            PathErrorKind::KeyConflict { at, found } => {
                write!(f, "key conflict: `{at}` holds {found}, not a map")
            }
        }
    }
}
