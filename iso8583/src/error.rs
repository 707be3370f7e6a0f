//! The crate's errors: loading a spec, unpacking, packing, mapping to and from fluxMsg.

use std::fmt;

use crate::message::Message;
use crate::spec::SubKey;

/// Why a spec did not load: every problem found, each with where it is.
#[derive(Debug, Clone, thiserror::Error)]
#[error("the spec has {} problem(s): {}", problems.len(), ListProblems(problems))]
pub struct SpecError {
    /// The problems, in the order of the document.
    pub problems: Vec<Problem>,
}

struct ListProblems<'a>(&'a [Problem]);

impl fmt::Display for ListProblems<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, p) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("; ")?;
            }
            write!(f, "{p}")?;
        }
        Ok(())
    }
}

/// One problem in a spec: a dotted path into the document, a position and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// The file the problem is in (the spec, or a wire source beside it).
    pub file: String,
    /// Dotted path of the key (`wire.fields.55.prefix`); empty for the whole document.
    pub path: String,
    /// Line, from 1.
    pub line: u32,
    /// Column, from 1.
    pub col: u32,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}: ", self.file, self.line, self.col)?;
        if !self.path.is_empty() {
            write!(f, "{}: ", self.path)?;
        }
        f.write_str(&self.message)
    }
}

/// Why bytes did not unpack: the kind, the field (and subfield) being read and the byte
/// offset in the input where it went wrong, with the fields read before it.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{kind} at byte {offset}{}", Where(*field, *sub))]
pub struct UnpackError {
    /// What went wrong.
    pub kind: UnpackErrorKind,
    /// The field being read (0 for the MTI, 1 for a bitmap), if any.
    pub field: Option<u16>,
    /// The subfield being read, if any.
    pub sub: Option<SubKey>,
    /// Offset in the input where the failing element starts.
    pub offset: usize,
    pub(crate) partial: Option<Box<Message>>,
}

impl UnpackError {
    pub(crate) fn new(kind: UnpackErrorKind, field: Option<u16>, offset: usize) -> Self {
        UnpackError {
            kind,
            field,
            sub: None,
            offset,
            partial: None,
        }
    }

    /// The fields read before the error (owned unpack only; the borrowed unpack leaves them
    /// in its [`MessageRef`](crate::MessageRef)).
    pub fn partial(&self) -> Option<&Message> {
        self.partial.as_deref()
    }
}

struct Where(Option<u16>, Option<SubKey>);

impl fmt::Display for Where {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.0, self.1) {
            (Some(0), _) => f.write_str(" (MTI)"),
            (Some(1), _) => f.write_str(" (bitmap)"),
            (Some(n), None) => write!(f, " (field {n})"),
            (Some(n), Some(s)) => write!(f, " (field {n}.{s})"),
            (None, _) => Ok(()),
        }
    }
}

/// What went wrong while unpacking.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum UnpackErrorKind {
    /// The input ends before the element does.
    #[error("truncated: {needed} bytes needed, {available} left")]
    Truncated {
        /// Bytes the element needs.
        needed: usize,
        /// Bytes left in the input.
        available: usize,
    },
    /// A length prefix that is not a number in its encoding.
    #[error("invalid length prefix")]
    InvalidLength,
    /// A length above the field's maximum.
    #[error("length {length} is above the maximum {max}")]
    TooLong {
        /// The length read.
        length: usize,
        /// The field's maximum.
        max: usize,
    },
    /// A byte that the field's encoding or type does not allow (a non-digit in a numeric
    /// field, a nibble above 9 in BCD, a non-hex character).
    #[error("invalid byte 0x{byte:02x} for the field's encoding")]
    InvalidByte {
        /// The byte.
        byte: u8,
    },
    /// A BCD pad nibble that is not the spec's.
    #[error("invalid pad nibble")]
    InvalidPad,
    /// The bitmap announces a field the spec does not define.
    #[error("the bitmap announces field {0}, which the spec does not define")]
    UndefinedField(u16),
    /// A secondary or tertiary bitmap with no bit set.
    #[error("empty secondary or tertiary bitmap")]
    EmptyBitmap,
    /// A malformed BER-TLV element.
    #[error("invalid BER-TLV element")]
    InvalidTlv,
    /// A BER-TLV tag the spec does not define, under `unknown_tags: reject`.
    #[error("unknown BER-TLV tag")]
    UnknownTag,
    /// A composite field's subfields do not fill it exactly.
    #[error("{0} bytes left over inside the composite field")]
    CompositeTrailing(usize),
    /// Bytes after the last field.
    #[error("{0} bytes after the last field")]
    Trailing(usize),
}

/// Why a message did not pack.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{kind}{}", Where(*field, *sub))]
pub struct PackError {
    /// What went wrong.
    pub kind: PackErrorKind,
    /// The field being written (0 for the MTI).
    pub field: Option<u16>,
    /// The subfield being written.
    pub sub: Option<SubKey>,
}

impl PackError {
    pub(crate) fn new(kind: PackErrorKind, field: u16) -> Self {
        PackError {
            kind,
            field: Some(field),
            sub: None,
        }
    }
}

/// What went wrong while packing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PackErrorKind {
    /// A field the spec does not define.
    #[error("the spec does not define this field")]
    UndefinedField,
    /// A value longer than the field allows.
    #[error("value of length {length} is above the maximum {max}")]
    TooLong {
        /// The value's length.
        length: usize,
        /// The field's maximum.
        max: usize,
    },
    /// A fixed-length value of the wrong length that padding cannot fix.
    #[error("value of length {length} does not fit the fixed length {fixed}")]
    WrongLength {
        /// The value's length.
        length: usize,
        /// The fixed length.
        fixed: usize,
    },
    /// A character the field's type or encoding cannot write.
    #[error("invalid character 0x{byte:02x} for the field")]
    InvalidByte {
        /// The character.
        byte: u8,
    },
    /// A plain value where the spec wants subfields, or the reverse.
    #[error("the value's shape does not match the spec (plain value or subfields)")]
    Shape,
    /// A subfield the spec does not define (and the layout cannot keep).
    #[error("the spec does not define this subfield")]
    UndefinedSubfield,
}

/// Why a fluxMsg could not become a message.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum MapError {
    /// No `meta.iso8583.mti`.
    #[error("the message has no `iso8583.mti` metadata")]
    NoMti,
    /// A value that is neither text nor bytes (or a map where a plain value is expected).
    #[error("`{path}` holds {found}, not text or bytes")]
    Type {
        /// The data path.
        path: String,
        /// What it holds.
        found: &'static str,
    },
    /// A key under `iso8583.field` that is not a field or subfield of the spec.
    #[error("`{0}` is not a field or subfield of the spec")]
    Unknown(String),
    /// The message did not pack.
    #[error(transparent)]
    Pack(#[from] PackError),
}
