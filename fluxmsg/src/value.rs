//! The dynamic value type of `data`.

use bytes::Bytes;

use crate::{Map, Text};

/// A CBOR integer: any value from -2^64 to 2^64 - 1, the full range of CBOR's major types 0
/// and 1, so every `u64` and every `i64` fits.
///
/// ```
/// use fluxmsg::Integer;
///
/// assert_eq!(Integer::from(u64::MAX).as_u64(), Some(u64::MAX));
/// assert_eq!(Integer::from(i64::MIN).as_i64(), Some(i64::MIN));
/// assert_eq!(Integer::try_from(-(1i128 << 64)).map(i128::from), Ok(-(1i128 << 64)));
/// assert!(Integer::try_from(1i128 << 64).is_err());
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Integer(i128);

impl Integer {
    /// The smallest CBOR integer, -2^64.
    pub const MIN: Integer = Integer(-(1i128 << 64));
    /// The largest CBOR integer, 2^64 - 1.
    pub const MAX: Integer = Integer(u64::MAX as i128);

    /// The value as `u64`, if it fits.
    pub fn as_u64(self) -> Option<u64> {
        u64::try_from(self.0).ok()
    }

    /// The value as `i64`, if it fits.
    pub fn as_i64(self) -> Option<i64> {
        i64::try_from(self.0).ok()
    }

    /// Builds a negative integer from CBOR's major type 1 argument `n` (the value is -1 - n).
    pub(crate) fn from_negative_arg(n: u64) -> Self {
        Integer(-1 - i128::from(n))
    }
}

impl From<Integer> for i128 {
    fn from(v: Integer) -> Self {
        v.0
    }
}

/// Error of [`Integer::try_from`] for a value outside CBOR's integer range.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IntegerOutOfRange;

impl std::fmt::Display for IntegerOutOfRange {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("integer outside -2^64 ..= 2^64-1")
    }
}

impl std::error::Error for IntegerOutOfRange {}

impl TryFrom<i128> for Integer {
    type Error = IntegerOutOfRange;

    fn try_from(v: i128) -> Result<Self, Self::Error> {
        if (Integer::MIN.0..=Integer::MAX.0).contains(&v) {
            Ok(Integer(v))
        } else {
            Err(IntegerOutOfRange)
        }
    }
}

macro_rules! integer_from {
    ($($t:ty),*) => {$(
        impl From<$t> for Integer {
            fn from(v: $t) -> Self {
                Integer(i128::from(v))
            }
        }
        impl From<$t> for Value {
            fn from(v: $t) -> Self {
                Value::Integer(Integer::from(v))
            }
        }
    )*};
}
integer_from!(u8, u16, u32, u64, i8, i16, i32, i64);

/// A value in `data`: what CBOR can say that fluxMsg keeps.
///
/// Maps have text keys only (the Go fluxrig's nested maps with non-text keys broke dotted
/// paths; here they are refused at decode). Floats compare equal when their encodings are
/// equal: every NaN equals every NaN, and `0.0` differs from `-0.0`.
///
/// Values are trees, dropped and compared recursively. The decoder never builds one deeper
/// than [`Limits::max_depth`](crate::Limits::max_depth) and the encoder refuses deeper ones,
/// but a tree nested hundreds of thousands of levels deep, built in code, can exhaust the
/// stack when it is dropped, as with any recursive value type.
///
/// ```
/// use fluxmsg::Value;
///
/// let v = Value::from("000000010000");
/// assert_eq!(v.as_str(), Some("000000010000"));
/// assert_eq!(Value::from(7u8).as_u64(), Some(7));
/// ```
#[derive(Debug, Clone, Default)]
pub enum Value {
    /// CBOR null.
    #[default]
    Null,
    /// CBOR true or false.
    Bool(bool),
    /// A CBOR integer.
    Integer(Integer),
    /// A floating-point number (encoded in the shortest exact form: half, single or double).
    Float(f64),
    /// A UTF-8 text string.
    Text(Text),
    /// A byte string.
    Bytes(Bytes),
    /// An array.
    Array(Vec<Value>),
    /// A map with text keys.
    Map(Map<Value>),
}

impl PartialEq for Value {
    fn eq(&self, other: &Self) -> bool {
        match (self, other) {
            (Value::Null, Value::Null) => true,
            (Value::Bool(a), Value::Bool(b)) => a == b,
            (Value::Integer(a), Value::Integer(b)) => a == b,
            (Value::Float(a), Value::Float(b)) => {
                (a.is_nan() && b.is_nan()) || a.to_bits() == b.to_bits()
            }
            (Value::Text(a), Value::Text(b)) => a == b,
            (Value::Bytes(a), Value::Bytes(b)) => a == b,
            (Value::Array(a), Value::Array(b)) => a == b,
            (Value::Map(a), Value::Map(b)) => a == b,
            _ => false,
        }
    }
}

impl Value {
    /// A short name of the value's type, for error messages.
    pub fn type_name(&self) -> &'static str {
        match self {
            Value::Null => "null",
            Value::Bool(_) => "a bool",
            Value::Integer(_) => "an integer",
            Value::Float(_) => "a float",
            Value::Text(_) => "text",
            Value::Bytes(_) => "bytes",
            Value::Array(_) => "an array",
            Value::Map(_) => "a map",
        }
    }

    /// The text, if this is text.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::Text(s) => Some(s.as_str()),
            _ => None,
        }
    }

    /// The bytes, if this is a byte string.
    pub fn as_bytes(&self) -> Option<&Bytes> {
        match self {
            Value::Bytes(b) => Some(b),
            _ => None,
        }
    }

    /// The integer as `u64`, if this is an integer that fits.
    pub fn as_u64(&self) -> Option<u64> {
        match self {
            Value::Integer(i) => i.as_u64(),
            _ => None,
        }
    }

    /// The integer as `i64`, if this is an integer that fits.
    pub fn as_i64(&self) -> Option<i64> {
        match self {
            Value::Integer(i) => i.as_i64(),
            _ => None,
        }
    }

    /// The number as `f64`, if this is a float.
    pub fn as_f64(&self) -> Option<f64> {
        match self {
            Value::Float(f) => Some(*f),
            _ => None,
        }
    }

    /// The bool, if this is one.
    pub fn as_bool(&self) -> Option<bool> {
        match self {
            Value::Bool(b) => Some(*b),
            _ => None,
        }
    }

    /// The map, if this is one.
    pub fn as_map(&self) -> Option<&Map<Value>> {
        match self {
            Value::Map(m) => Some(m),
            _ => None,
        }
    }

    /// The array, if this is one.
    pub fn as_array(&self) -> Option<&[Value]> {
        match self {
            Value::Array(a) => Some(a),
            _ => None,
        }
    }

    /// Whether this is null.
    pub fn is_null(&self) -> bool {
        matches!(self, Value::Null)
    }
}

impl From<bool> for Value {
    fn from(v: bool) -> Self {
        Value::Bool(v)
    }
}

impl From<Integer> for Value {
    fn from(v: Integer) -> Self {
        Value::Integer(v)
    }
}

impl From<f64> for Value {
    fn from(v: f64) -> Self {
        Value::Float(v)
    }
}

impl From<f32> for Value {
    fn from(v: f32) -> Self {
        Value::Float(f64::from(v))
    }
}

impl From<&str> for Value {
    fn from(v: &str) -> Self {
        Value::Text(Text::from(v))
    }
}

impl From<String> for Value {
    fn from(v: String) -> Self {
        Value::Text(Text::from(v))
    }
}

impl From<Text> for Value {
    fn from(v: Text) -> Self {
        Value::Text(v)
    }
}

impl From<Bytes> for Value {
    fn from(v: Bytes) -> Self {
        Value::Bytes(v)
    }
}

impl From<Vec<u8>> for Value {
    fn from(v: Vec<u8>) -> Self {
        Value::Bytes(Bytes::from(v))
    }
}

impl From<&[u8]> for Value {
    fn from(v: &[u8]) -> Self {
        Value::Bytes(Bytes::copy_from_slice(v))
    }
}

impl From<Vec<Value>> for Value {
    fn from(v: Vec<Value>) -> Self {
        Value::Array(v)
    }
}

impl From<Map<Value>> for Value {
    fn from(v: Map<Value>) -> Self {
        Value::Map(v)
    }
}
