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
/// A message keeps every value in one buffer of its own and reads them as [`FieldRef`]s
/// borrowed from it. An unpacked message's buffer is a copy of the input followed by the
/// values that had to be decoded (BCD, EBCDIC, hex), so unpacking allocates a handful of
/// times whatever the number of fields. [`Message::set`] copies a value in; the space of a
/// value it replaces is reclaimed once such space makes up most of the buffer.
///
/// ```
/// use iso8583::{FieldRef, Message};
///
/// let mut msg = Message::new("0100");
/// msg.set(11, "123456");
/// msg.set(2, "4111111111111111");
/// assert_eq!(msg.text(2), Some("4111111111111111"));
/// assert_eq!(msg.numbers().collect::<Vec<_>>(), [2, 11]);
/// assert!(matches!(msg.get(11), Some(FieldRef::Value(b"123456"))));
/// ```
#[derive(Clone, Default)]
pub struct Message {
    /// The bytes of the MTI and of every value; `Span`s index it.
    pub(crate) buf: Vec<u8>,
    pub(crate) mti: Span,
    /// The present fields, in number order.
    pub(crate) fields: Vec<Entry>,
    /// The subfields of every composite field, each composite's as one run.
    pub(crate) subs: Vec<Sub>,
    /// Bytes of `buf` and entries of `subs` that no field uses any more.
    garbage: (usize, usize),
}

/// A range of a message's buffer.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Span {
    pub(crate) start: usize,
    pub(crate) end: usize,
}

impl Span {
    fn len(self) -> usize {
        self.end - self.start
    }
}

/// Where a field's value is: a span of the buffer, or a run of subfields.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Slot {
    Value(Span),
    Composite { first: usize, end: usize },
}

/// A present field.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Entry {
    pub(crate) number: u16,
    pub(crate) slot: Slot,
}

/// A subfield of a composite field.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Sub {
    pub(crate) key: SubKey,
    pub(crate) span: Span,
    pub(crate) unknown: bool,
    pub(crate) length_bytes: u8,
}

/// A field of a [`Message`], borrowed from it.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum FieldRef<'a> {
    /// A value: text as bytes, or bytes.
    Value(&'a [u8]),
    /// The subfields of a composite field, in wire order.
    Composite(Subfields<'a>),
}

/// The subfields of a composite field of a [`Message`], in wire order.
#[derive(Clone, Copy)]
pub struct Subfields<'a> {
    buf: &'a [u8],
    subs: &'a [Sub],
}

/// One subfield of a composite field of a [`Message`].
///
/// Equality compares key, value and `unknown`, not `length_bytes` (a form of the wire, not
/// of the value).
#[derive(Clone, Copy, Eq)]
pub struct SubfieldRef<'a> {
    /// Position, bit or BER-TLV tag.
    pub key: SubKey,
    /// The value.
    pub value: &'a [u8],
    /// True for a BER-TLV tag the spec does not define (kept because of
    /// `unknown_tags: preserve`).
    pub unknown: bool,
    /// For BER-TLV: bytes of the length as read (1 for the short form), so that a long form
    /// is written back as it came; 0 lets pack choose the shortest form.
    pub length_bytes: u8,
}

impl PartialEq for SubfieldRef<'_> {
    fn eq(&self, other: &Self) -> bool {
        self.key == other.key && self.value == other.value && self.unknown == other.unknown
    }
}

impl<'a> Subfields<'a> {
    /// The number of subfields.
    pub fn len(&self) -> usize {
        self.subs.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.subs.is_empty()
    }

    /// The subfields, in wire order.
    pub fn iter(
        &self,
    ) -> impl ExactSizeIterator<Item = SubfieldRef<'a>> + DoubleEndedIterator + 'a {
        let buf = self.buf;
        self.subs.iter().map(move |s| SubfieldRef {
            key: s.key,
            value: span(buf, s.span),
            unknown: s.unknown,
            length_bytes: s.length_bytes,
        })
    }

    /// The value of the (first) subfield under `key`.
    pub fn get(&self, key: SubKey) -> Option<&'a [u8]> {
        self.subs
            .iter()
            .find(|s| s.key == key)
            .map(|s| span(self.buf, s.span))
    }

    /// An owned copy.
    pub fn to_vec(&self) -> Vec<Subfield> {
        self.iter().map(SubfieldRef::to_owned).collect()
    }
}

impl PartialEq for Subfields<'_> {
    fn eq(&self, other: &Self) -> bool {
        self.len() == other.len() && self.iter().eq(other.iter())
    }
}

impl Eq for Subfields<'_> {}

impl SubfieldRef<'_> {
    /// An owned copy.
    pub fn to_owned(self) -> Subfield {
        Subfield {
            key: self.key,
            value: self.value.to_vec(),
            unknown: self.unknown,
            length_bytes: self.length_bytes,
        }
    }
}

impl<'a> FieldRef<'a> {
    /// The value's bytes, `None` for a composite.
    pub fn bytes(self) -> Option<&'a [u8]> {
        match self {
            FieldRef::Value(v) => Some(v),
            FieldRef::Composite(_) => None,
        }
    }

    /// The subfields, `None` for a plain value.
    pub fn subfields(self) -> Option<Subfields<'a>> {
        match self {
            FieldRef::Value(_) => None,
            FieldRef::Composite(s) => Some(s),
        }
    }

    /// The value of the subfield under `key`.
    pub fn subfield(self, key: SubKey) -> Option<&'a [u8]> {
        self.subfields()?.get(key)
    }

    /// An owned copy.
    pub fn to_field(self) -> Field {
        match self {
            FieldRef::Value(v) => Field::Value(v.to_vec()),
            FieldRef::Composite(s) => Field::Composite(s.to_vec()),
        }
    }
}

/// A field's value as given to [`Message::set`] (or taken out by [`Message::remove`]).
#[derive(Clone, PartialEq, Eq)]
pub enum Field {
    /// A value: text as bytes, or bytes.
    Value(Vec<u8>),
    /// The subfields of a composite field, in wire order.
    Composite(Vec<Subfield>),
}

/// One subfield of a composite field, as given to [`Message::set`].
///
/// Equality compares key, value and `unknown`, not `length_bytes` (a form of the wire, not
/// of the value).
#[derive(Clone, Eq)]
pub struct Subfield {
    /// Position, bit or BER-TLV tag.
    pub key: SubKey,
    /// The value (subfields have no subfields of their own).
    pub value: Vec<u8>,
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
    pub fn new(key: SubKey, value: impl Into<Vec<u8>>) -> Self {
        Subfield {
            key,
            value: value.into(),
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

    /// The value of the subfield under `key`.
    pub fn subfield(&self, key: SubKey) -> Option<&[u8]> {
        self.subfields()?
            .iter()
            .find(|s| s.key == key)
            .map(|s| s.value.as_slice())
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

impl From<FieldRef<'_>> for Field {
    fn from(f: FieldRef<'_>) -> Self {
        f.to_field()
    }
}

impl fmt::Debug for Field {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Field::Value(v) => write!(f, "<{} bytes>", v.len()),
            Field::Composite(subs) => f
                .debug_map()
                .entries(subs.iter().map(|s| (s.key.to_string(), Len(s.value.len()))))
                .finish(),
        }
    }
}

impl fmt::Debug for Subfield {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: <{} bytes>", self.key, self.value.len())
    }
}

impl fmt::Debug for FieldRef<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FieldRef::Value(v) => write!(f, "<{} bytes>", v.len()),
            FieldRef::Composite(subs) => subs.fmt(f),
        }
    }
}

impl fmt::Debug for Subfields<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map()
            .entries(self.iter().map(|s| (s.key.to_string(), Len(s.value.len()))))
            .finish()
    }
}

impl fmt::Debug for SubfieldRef<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: <{} bytes>", self.key, self.value.len())
    }
}

/// A length, shown as `<n bytes>`.
struct Len(usize);

impl fmt::Debug for Len {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "<{} bytes>", self.0)
    }
}

impl fmt::Debug for Message {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Message")
            .field("mti", &self.mti())
            .field(
                "fields",
                &fmt::from_fn(|f| f.debug_map().entries(self.iter()).finish()),
            )
            .finish()
    }
}

impl PartialEq for Message {
    fn eq(&self, other: &Self) -> bool {
        self.mti() == other.mti()
            && self.fields.len() == other.fields.len()
            && self.iter().eq(other.iter())
    }
}

impl Eq for Message {}

/// The bytes of `s` in `buf` (empty if out of range, which no message produces).
#[inline]
fn span(buf: &[u8], s: Span) -> &[u8] {
    buf.get(s.start..s.end).unwrap_or_default()
}

impl Message {
    /// An empty message of type `mti`.
    pub fn new(mti: impl AsRef<str>) -> Self {
        let mut msg = Message::default();
        msg.set_mti(mti);
        msg
    }

    /// The message type indicator.
    pub fn mti(&self) -> &str {
        std::str::from_utf8(span(&self.buf, self.mti)).unwrap_or_default()
    }

    /// Changes the message type indicator.
    pub fn set_mti(&mut self, mti: impl AsRef<str>) {
        self.garbage.0 += self.mti.len();
        self.mti = self.push_bytes(mti.as_ref().as_bytes());
    }

    /// The number of present fields.
    pub fn len(&self) -> usize {
        self.fields.len()
    }

    /// Whether no field is present.
    pub fn is_empty(&self) -> bool {
        self.fields.is_empty()
    }

    /// Field `number`, if present.
    pub fn get(&self, number: u16) -> Option<FieldRef<'_>> {
        let i = self
            .fields
            .binary_search_by_key(&number, |e| e.number)
            .ok()?;
        Some(self.field_ref(self.fields[i].slot))
    }

    /// Field `number` as text, if present, a plain value and valid UTF-8.
    pub fn text(&self, number: u16) -> Option<&str> {
        std::str::from_utf8(self.get(number)?.bytes()?).ok()
    }

    /// Sets field `number` (replacing it if present), copying the value into the message;
    /// field 0 and 1 are ignored, as the MTI and the bitmaps come from
    /// [`Message::set_mti`] and the fields present.
    pub fn set(&mut self, number: u16, value: impl Into<Field>) {
        match value.into() {
            Field::Value(v) => self.set_value(number, &v),
            Field::Composite(subs) => self.set_composite(
                number,
                subs.iter()
                    .map(|s| (s.key, s.value.as_slice(), s.unknown, s.length_bytes)),
            ),
        }
    }

    /// Sets field `number` to a plain value (as [`Message::set`], without an owned copy).
    pub fn set_value(&mut self, number: u16, value: &[u8]) {
        if !(2..=MAX_FIELD).contains(&number) {
            return;
        }
        let span = self.push_bytes(value);
        self.place(number, Slot::Value(span));
    }

    /// Sets field `number` to a composite of `(key, value, unknown, length_bytes)`.
    pub(crate) fn set_composite<'v>(
        &mut self,
        number: u16,
        subs: impl Iterator<Item = (SubKey, &'v [u8], bool, u8)>,
    ) {
        if !(2..=MAX_FIELD).contains(&number) {
            return;
        }
        let first = self.subs.len();
        for (key, value, unknown, length_bytes) in subs {
            let span = self.push_bytes(value);
            self.subs.push(Sub {
                key,
                span,
                unknown,
                length_bytes,
            });
        }
        let end = self.subs.len();
        self.place(number, Slot::Composite { first, end });
    }

    /// Removes field `number`, returning it.
    pub fn remove(&mut self, number: u16) -> Option<Field> {
        let i = self
            .fields
            .binary_search_by_key(&number, |e| e.number)
            .ok()?;
        let slot = self.fields[i].slot;
        let field = self.field_ref(slot).to_field();
        self.forget(slot);
        self.fields.remove(i);
        Some(field)
    }

    /// The numbers of the present fields, in order.
    pub fn numbers(&self) -> impl Iterator<Item = u16> + '_ {
        self.fields.iter().map(|e| e.number)
    }

    /// The present fields with their numbers, in order.
    pub fn iter(&self) -> impl Iterator<Item = (u16, FieldRef<'_>)> + '_ {
        self.fields
            .iter()
            .map(|e| (e.number, self.field_ref(e.slot)))
    }

    /// Empties the message (MTI included), keeping its allocations for the next unpack.
    pub fn clear(&mut self) {
        self.buf.clear();
        self.mti = Span::default();
        self.fields.clear();
        self.subs.clear();
        self.garbage = (0, 0);
    }

    /// The bytes of a span.
    #[inline]
    pub(crate) fn bytes(&self, s: Span) -> &[u8] {
        span(&self.buf, s)
    }

    #[inline]
    pub(crate) fn field_ref(&self, slot: Slot) -> FieldRef<'_> {
        match slot {
            Slot::Value(s) => FieldRef::Value(self.bytes(s)),
            Slot::Composite { first, end } => FieldRef::Composite(Subfields {
                buf: &self.buf,
                subs: self.subs.get(first..end).unwrap_or_default(),
            }),
        }
    }

    /// Appends bytes to the buffer.
    #[inline]
    pub(crate) fn push_bytes(&mut self, bytes: &[u8]) -> Span {
        let start = self.buf.len();
        self.buf.extend_from_slice(bytes);
        Span {
            start,
            end: self.buf.len(),
        }
    }

    /// Counts what a slot used as garbage.
    fn forget(&mut self, slot: Slot) {
        match slot {
            Slot::Value(s) => self.garbage.0 += s.len(),
            Slot::Composite { first, end } => {
                for s in self.subs.get(first..end).unwrap_or_default() {
                    self.garbage.0 += s.span.len();
                }
                self.garbage.1 += end - first;
            }
        }
    }

    /// Puts a field in its place, replacing the one there; reclaims space when most of the
    /// buffer is garbage.
    fn place(&mut self, number: u16, slot: Slot) {
        match self.fields.binary_search_by_key(&number, |e| e.number) {
            Ok(i) => {
                let old = self.fields[i].slot;
                self.forget(old);
                self.fields[i].slot = slot;
            }
            Err(i) => self.fields.insert(i, Entry { number, slot }),
        }
        let (bytes, subs) = self.garbage;
        if (bytes > 1024 && bytes > self.buf.len() / 2) || (subs > 64 && subs > self.subs.len() / 2)
        {
            self.compact();
        }
    }

    /// Copies the live values into fresh buffers.
    fn compact(&mut self) {
        let mut fresh = Message::new(self.mti());
        fresh.fields.reserve(self.fields.len());
        for (n, field) in self.iter() {
            match field {
                FieldRef::Value(v) => {
                    let span = fresh.push_bytes(v);
                    fresh.fields.push(Entry {
                        number: n,
                        slot: Slot::Value(span),
                    });
                }
                FieldRef::Composite(subs) => {
                    let first = fresh.subs.len();
                    for s in subs.iter() {
                        let span = fresh.push_bytes(s.value);
                        fresh.subs.push(Sub {
                            key: s.key,
                            span,
                            unknown: s.unknown,
                            length_bytes: s.length_bytes,
                        });
                    }
                    let end = fresh.subs.len();
                    fresh.fields.push(Entry {
                        number: n,
                        slot: Slot::Composite { first, end },
                    });
                }
            }
        }
        *self = fresh;
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
