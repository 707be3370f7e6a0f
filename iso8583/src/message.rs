//! Unpacked messages: owned ([`Message`]) and borrowed from the input ([`MessageRef`]).

use std::fmt;

use crate::spec::{MAX_FIELD, SubKey};

/// An unpacked ISO 8583 message that owns its values: the MTI and the present fields in
/// field number order.
///
/// Values are the decoded value of each field: text as its bytes (EBCDIC turned into
/// Latin-1, BCD into ASCII digits), binary and hex-as-ASCII fields as bytes. `Debug` shows
/// field numbers and lengths only, never values, so a message can be logged safely.
///
/// ```
/// use iso8583::{Field, Message};
///
/// let mut msg = Message::new("0100");
/// msg.set(11, "123456");
/// msg.set(2, "4111111111111111");
/// assert_eq!(msg.text(2), Some("4111111111111111"));
/// assert_eq!(msg.numbers().collect::<Vec<_>>(), [2, 11]);
/// assert!(matches!(msg.get(11), Some(Field::Value(v)) if v == b"123456"));
/// ```
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Message {
    pub(crate) mti: String,
    pub(crate) fields: Vec<(u16, Field)>,
}

/// The value of a field or subfield.
#[derive(Clone, PartialEq, Eq)]
pub enum Field {
    /// A value: text as bytes, or bytes.
    Value(Vec<u8>),
    /// The subfields of a composite field, in wire order.
    Composite(Vec<Subfield>),
}

/// One subfield of a composite field.
///
/// Equality compares key, value and `unknown`, not `length_bytes` (a form of the wire, not
/// of the value).
#[derive(Clone, Eq)]
pub struct Subfield {
    /// Position, bit or BER-TLV tag.
    pub key: SubKey,
    /// The value.
    pub value: Field,
    /// True for a BER-TLV tag the spec does not define (kept because of
    /// `unknown_tags: preserve`).
    pub unknown: bool,
    /// For BER-TLV: bytes of the length as read (1 for the short form), so that a long form
    /// is written back as it came; 0 lets pack choose the shortest form.
    pub length_bytes: u8,
}

impl PartialEq for Subfield {
    fn eq(&self, other: &Self) -> bool {
        self.key == other.key && self.value == other.value && self.unknown == other.unknown
    }
}

impl Subfield {
    /// A subfield the spec defines, written in the shortest form.
    pub fn new(key: SubKey, value: Field) -> Self {
        Subfield {
            key,
            value,
            unknown: false,
            length_bytes: 0,
        }
    }
}

impl Field {
    /// The value's bytes, `None` for a composite.
    pub fn bytes(&self) -> Option<&[u8]> {
        match self {
            Field::Value(v) => Some(v),
            Field::Composite(_) => None,
        }
    }

    /// The subfields, `None` for a plain value.
    pub fn subfields(&self) -> Option<&[Subfield]> {
        match self {
            Field::Value(_) => None,
            Field::Composite(s) => Some(s),
        }
    }

    /// The subfield under `key`.
    pub fn subfield(&self, key: SubKey) -> Option<&Field> {
        self.subfields()?
            .iter()
            .find(|s| s.key == key)
            .map(|s| &s.value)
    }
}

impl From<&str> for Field {
    fn from(s: &str) -> Self {
        Field::Value(s.as_bytes().to_vec())
    }
}

impl From<String> for Field {
    fn from(s: String) -> Self {
        Field::Value(s.into_bytes())
    }
}

impl From<&[u8]> for Field {
    fn from(b: &[u8]) -> Self {
        Field::Value(b.to_vec())
    }
}

impl From<Vec<u8>> for Field {
    fn from(b: Vec<u8>) -> Self {
        Field::Value(b)
    }
}

impl<const N: usize> From<&[u8; N]> for Field {
    fn from(b: &[u8; N]) -> Self {
        Field::Value(b.to_vec())
    }
}

impl fmt::Debug for Field {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Field::Value(v) => write!(f, "<{} bytes>", v.len()),
            Field::Composite(subs) => f
                .debug_map()
                .entries(subs.iter().map(|s| (s.key.to_string(), &s.value)))
                .finish(),
        }
    }
}

impl fmt::Debug for Subfield {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {:?}", self.key, self.value)
    }
}

impl fmt::Debug for Message {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Message")
            .field("mti", &self.mti)
            .field(
                "fields",
                &fmt::from_fn(|f| {
                    f.debug_map()
                        .entries(self.fields.iter().map(|(n, v)| (n, v)))
                        .finish()
                }),
            )
            .finish()
    }
}

impl Message {
    /// An empty message of type `mti`.
    pub fn new(mti: impl Into<String>) -> Self {
        Message {
            mti: mti.into(),
            fields: Vec::new(),
        }
    }

    /// The message type indicator.
    pub fn mti(&self) -> &str {
        &self.mti
    }

    /// Changes the message type indicator.
    pub fn set_mti(&mut self, mti: impl Into<String>) {
        self.mti = mti.into();
    }

    /// Field `number`, if present.
    pub fn get(&self, number: u16) -> Option<&Field> {
        self.fields
            .binary_search_by_key(&number, |(n, _)| *n)
            .ok()
            .map(|i| &self.fields[i].1)
    }

    /// Field `number` as text, if present, a plain value and valid UTF-8.
    pub fn text(&self, number: u16) -> Option<&str> {
        std::str::from_utf8(self.get(number)?.bytes()?).ok()
    }

    /// Sets field `number` (replacing it if present); field 0 and 1 are ignored, as the MTI
    /// and the bitmaps come from [`Message::set_mti`] and the fields present.
    pub fn set(&mut self, number: u16, value: impl Into<Field>) {
        if !(2..=MAX_FIELD).contains(&number) {
            return;
        }
        let value = value.into();
        match self.fields.binary_search_by_key(&number, |(n, _)| *n) {
            Ok(i) => self.fields[i].1 = value,
            Err(i) => self.fields.insert(i, (number, value)),
        }
    }

    /// Removes field `number`, returning it.
    pub fn remove(&mut self, number: u16) -> Option<Field> {
        let i = self
            .fields
            .binary_search_by_key(&number, |(n, _)| *n)
            .ok()?;
        Some(self.fields.remove(i).1)
    }

    /// The numbers of the present fields, in order.
    pub fn numbers(&self) -> impl Iterator<Item = u16> + '_ {
        self.fields.iter().map(|(n, _)| *n)
    }

    /// The present fields with their numbers, in order.
    pub fn iter(&self) -> impl Iterator<Item = (u16, &Field)> + '_ {
        self.fields.iter().map(|(n, f)| (*n, f))
    }

    /// Empties the message, keeping its allocation for the next unpack.
    pub fn clear(&mut self) {
        self.mti.clear();
        self.fields.clear();
    }

    /// Appends a field read in wire order (numbers only grow).
    pub(crate) fn push(&mut self, number: u16, value: Field) {
        self.fields.push((number, value));
    }
}

/// A message unpacked without copying: the MTI and each field as a slice of the input.
///
/// Slices are the field's wire bytes without the length prefix, encoded as the field's
/// [`FieldSpec`](crate::FieldSpec) says. [`Spec::unpack_borrowed`](crate::Spec::unpack_borrowed) fills one without
/// touching the heap, so a `MessageRef` can live on the stack of a hot loop and be reused.
#[derive(Clone)]
pub struct MessageRef<'a> {
    pub(crate) mti: &'a [u8],
    pub(crate) bitmap: [u64; 3],
    pub(crate) fields: [&'a [u8]; MAX_FIELD as usize + 1],
    /// Each field's length in its encoding's units (what the prefix said, or the fixed one).
    pub(crate) units: [u32; MAX_FIELD as usize + 1],
}

impl Default for MessageRef<'_> {
    fn default() -> Self {
        MessageRef {
            mti: &[],
            bitmap: [0; 3],
            fields: [&[]; MAX_FIELD as usize + 1],
            units: [0; MAX_FIELD as usize + 1],
        }
    }
}

impl fmt::Debug for MessageRef<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MessageRef")
            .field("mti", &String::from_utf8_lossy(self.mti))
            .field(
                "fields",
                &fmt::from_fn(|f| {
                    f.debug_map()
                        .entries(
                            self.numbers()
                                .map(|n| (n, self.fields[usize::from(n)].len())),
                        )
                        .finish()
                }),
            )
            .finish()
    }
}

impl<'a> MessageRef<'a> {
    /// An empty message.
    pub fn new() -> Self {
        Self::default()
    }

    /// The MTI's wire bytes.
    pub fn mti(&self) -> &'a [u8] {
        self.mti
    }

    /// Whether field `number` is present.
    pub fn has(&self, number: u16) -> bool {
        let n = usize::from(number);
        (2..=usize::from(MAX_FIELD)).contains(&n)
            && self.bitmap[(n - 1) / 64] & (1u64 << (63 - (n - 1) % 64)) != 0
    }

    /// The wire bytes of field `number` (without its length prefix), if present.
    pub fn field(&self, number: u16) -> Option<&'a [u8]> {
        self.has(number).then(|| self.fields[usize::from(number)])
    }

    /// The numbers of the present fields, in order.
    pub fn numbers(&self) -> impl Iterator<Item = u16> + '_ {
        (2..=MAX_FIELD).filter(|n| self.has(*n))
    }

    pub(crate) fn clear(&mut self) {
        self.mti = &[];
        self.bitmap = [0; 3];
    }

    pub(crate) fn set(&mut self, number: u16, wire: &'a [u8], units: usize) {
        let n = usize::from(number);
        self.units[n] = u32::try_from(units).unwrap_or(u32::MAX);
        self.bitmap[(n - 1) / 64] |= 1u64 << (63 - (n - 1) % 64);
        self.fields[n] = wire;
    }
}
