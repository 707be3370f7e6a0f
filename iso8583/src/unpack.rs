//! Unpacking: bytes to an owned [`Message`] or a borrowed [`MessageRef`].
//!
//! Every length is checked against what is left of the input before anything is read or
//! reserved, so hostile input costs memory in proportion to its own size, whatever lengths
//! it claims.

use std::borrow::Cow;

use crate::error::{UnpackError, UnpackErrorKind};
use crate::message::{Entry, Message, MessageRef, Slot, Span, Sub};
use crate::spec::{Composite, Encoding, FieldSpec, FieldType, Layout, Spec, SubKey, UnknownTags};
use crate::wire::{self, Fail, truncated};

/// Where a field's wire bytes are: the slice (without prefix), its units and its offset.
struct Located<'a> {
    wire: &'a [u8],
    units: usize,
    at: usize,
}

/// Reads a field's prefix and finds its wire bytes in `input` from `pos`, advancing `pos`.
#[inline]
fn locate<'a>(spec: &FieldSpec, input: &'a [u8], pos: &mut usize) -> Result<Located<'a>, Fail> {
    let rest = input.get(*pos..).unwrap_or_default();
    let (units, prefix_len) = if spec.prefix.is_fixed() {
        (spec.length, 0)
    } else {
        let (len, n) = wire::read_prefix(spec.prefix, rest).map_err(|(k, _)| (k, *pos))?;
        if len > spec.length {
            return Err((
                UnpackErrorKind::TooLong {
                    length: len,
                    max: spec.length,
                },
                *pos,
            ));
        }
        (len, n)
    };
    let at = *pos + prefix_len;
    let body = &rest[prefix_len..];
    let Some(n) = wire::wire_len(spec.enc, units) else {
        return Err((truncated(usize::MAX, body.len()), at));
    };
    let Some(wire) = body.get(..n) else {
        return Err((truncated(n, body.len()), at));
    };
    *pos = at + n;
    Ok(Located { wire, units, at })
}

/// Numbers of the bitmap bits that stand for further bitmaps rather than fields.
fn is_bitmap_bit(spec: &Spec, n: u16) -> bool {
    n == 1 || (n == 65 && tertiary_bit(spec))
}

/// Whether bit 65 announces a tertiary bitmap (the spec does not define field 65 as data).
pub(crate) fn tertiary_bit(spec: &Spec) -> bool {
    spec.field(65).is_none_or(|f| f.kind == FieldType::Bitmap)
}

/// Reads the MTI and the bitmaps; returns the MTI's wire slice and decoded bytes via `mti`.
fn read_head<'a>(
    spec: &Spec,
    input: &'a [u8],
    pos: &mut usize,
    bitmap: &mut [u64; 3],
) -> Result<Located<'a>, UnpackError> {
    let mti_spec = spec
        .field(0)
        .ok_or_else(|| UnpackError::new(UnpackErrorKind::UndefinedField(0), Some(0), 0))?;
    let mti = locate(mti_spec, input, pos).map_err(|(k, at)| UnpackError::new(k, Some(0), at))?;
    wire::check(mti_spec, mti.wire, mti.units)
        .map_err(|(k, at)| UnpackError::new(k, Some(0), mti.at + at))?;
    let hex = spec.field(1).is_none_or(|b| b.enc != Encoding::Binary);
    let mut count = 1;
    let mut i = 0;
    while i < count {
        let at = *pos;
        let word = if hex {
            let Some(text) = input.get(at..at + 16) else {
                let left = input.len().saturating_sub(at);
                return Err(UnpackError::new(truncated(16, left), Some(1), at));
            };
            let mut w = 0u64;
            for (j, &c) in text.iter().enumerate() {
                let Some(d) = wire::hex_upper(c) else {
                    return Err(UnpackError::new(
                        UnpackErrorKind::InvalidByte { byte: c },
                        Some(1),
                        at + j,
                    ));
                };
                w = (w << 4) | u64::from(d);
            }
            *pos += 16;
            w
        } else {
            let Some(bytes) = input.get(at..at + 8) else {
                let left = input.len().saturating_sub(at);
                return Err(UnpackError::new(truncated(8, left), Some(1), at));
            };
            *pos += 8;
            bytes.iter().fold(0u64, |w, &b| (w << 8) | u64::from(b))
        };
        if i > 0 && word == 0 {
            // Packing would leave an empty bitmap out, so it is refused.
            return Err(UnpackError::new(UnpackErrorKind::EmptyBitmap, Some(1), at));
        }
        bitmap[i] = word;
        if i == 0 && word >> 63 == 1 {
            count = 2;
        }
        if i == 1 && word >> 63 == 1 && tertiary_bit(spec) {
            count = 3;
        }
        i += 1;
    }
    Ok(mti)
}

/// Calls `f` on every field number the bitmaps announce, in order, bitmap bits excluded.
#[inline]
fn for_each_bit<E>(
    spec: &Spec,
    bitmap: &[u64; 3],
    mut f: impl FnMut(u16) -> Result<(), E>,
) -> Result<(), E> {
    for (i, &word) in bitmap.iter().enumerate() {
        let mut w = word;
        while w != 0 {
            let bit = w.leading_zeros() as u16;
            w &= !(1u64 << (63 - bit));
            let n = i as u16 * 64 + bit + 1;
            if !is_bitmap_bit(spec, n) {
                f(n)?;
            }
        }
    }
    Ok(())
}

impl Spec {
    /// Unpacks a message into a new [`Message`].
    ///
    /// # Errors
    ///
    /// An [`UnpackError`] naming the field, subfield and byte offset; its
    /// [`partial`](UnpackError::partial) holds the fields read before the error.
    pub fn unpack(&self, input: &[u8]) -> Result<Message, UnpackError> {
        let mut msg = Message::default();
        match self.unpack_into(input, &mut msg) {
            Ok(()) => Ok(msg),
            Err(mut e) => {
                e.partial = Some(Box::new(msg));
                Err(e)
            }
        }
    }

    /// Unpacks a message into `msg`, reusing its allocations; on error `msg` holds the
    /// fields read before it.
    ///
    /// # Errors
    ///
    /// As [`Spec::unpack`], without the partial copy.
    pub fn unpack_into(&self, input: &[u8], msg: &mut Message) -> Result<(), UnpackError> {
        msg.clear();
        let mut pos = 0;
        let mut bitmap = [0u64; 3];
        let head = read_head(self, input, &mut pos, &mut bitmap);
        // The values written as they are stay in a copy of the input; the others are decoded
        // after it, in room reserved once from what the spec says of the fields present (at
        // most the input's size again; the subfields at most one per byte).
        let (decoded, subs) = match &head {
            Ok(_) => self.room(&bitmap),
            Err(_) => (0, 0),
        };
        msg.buf.reserve(input.len() + decoded.min(input.len()));
        msg.buf.extend_from_slice(input);
        msg.subs.reserve(subs.min(input.len()));
        let mti = head?;
        if let Some(f) = self.field(0) {
            let span = value_span(f, mti.wire, mti.units, mti.at, true, msg)
                .map_err(|(k, at)| UnpackError::new(k, Some(0), mti.at + at))?;
            let text = msg.bytes(span);
            if let Some(&b) = text.iter().find(|b| !b.is_ascii()) {
                let kind = UnpackErrorKind::InvalidByte { byte: b };
                return Err(UnpackError::new(kind, Some(0), mti.at));
            }
            msg.mti = span;
        }
        let present: u32 = bitmap.iter().map(|w| w.count_ones()).sum();
        msg.fields.reserve(present as usize);
        for_each_bit(self, &bitmap, |n| {
            let spec = self.field(n).ok_or_else(|| {
                UnpackError::new(UnpackErrorKind::UndefinedField(n), Some(n), pos)
            })?;
            let loc = locate(spec, input, &mut pos).map_err(|(k, at)| err(k, n, None, at))?;
            let slot = match &spec.composite {
                Some(comp) => unpack_composite(spec, comp, &loc, n, msg)?,
                None => Slot::Value(
                    value_span(spec, loc.wire, loc.units, loc.at, true, msg)
                        .map_err(|(k, at)| err(k, n, None, loc.at + at))?,
                ),
            };
            msg.fields.push(Entry { number: n, slot });
            Ok(())
        })?;
        if pos < input.len() {
            return Err(UnpackError::new(
                UnpackErrorKind::Trailing(input.len() - pos),
                None,
                pos,
            ));
        }
        Ok(())
    }

    /// What the fields present will need besides a copy of the input: bytes of decoded
    /// values (for fixed lengths, exactly; for variable ones, their maximum) and subfields.
    fn room(&self, bitmap: &[u64; 3]) -> (usize, usize) {
        let decoded = |f: &FieldSpec| match f.enc {
            Encoding::Ascii | Encoding::Binary => 0,
            Encoding::AsciiHexToBytes => f.length.saturating_mul(2),
            _ => f.length,
        };
        let (mut bytes, mut subs) = (0usize, 0usize);
        let _ = for_each_bit(self, bitmap, |n| {
            let Some(f) = self.field(n) else {
                return Err(());
            };
            match &f.composite {
                Some(c) => {
                    subs += c.subfields.len();
                    for (_, s) in &c.subfields {
                        bytes = bytes.saturating_add(if f.enc == Encoding::HexToAscii {
                            s.length
                        } else {
                            decoded(s)
                        });
                    }
                }
                None => bytes = bytes.saturating_add(decoded(f)),
            }
            Ok(())
        });
        (bytes, subs)
    }

    /// Unpacks a message without copying or allocating: each field of `msg` is a slice of
    /// `input` (its wire bytes). Values and composites are checked as [`Spec::unpack`]
    /// checks them, so what this accepts, `unpack` accepts too.
    ///
    /// # Errors
    ///
    /// As [`Spec::unpack`]; the fields read before the error stay in `msg`.
    pub fn unpack_borrowed<'a>(
        &self,
        input: &'a [u8],
        msg: &mut MessageRef<'a>,
    ) -> Result<(), UnpackError> {
        msg.clear();
        let mut pos = 0;
        let mut bitmap = [0u64; 3];
        let mti = read_head(self, input, &mut pos, &mut bitmap)?;
        msg.mti = mti.wire;
        for_each_bit(self, &bitmap, |n| {
            let spec = self.field(n).ok_or_else(|| {
                UnpackError::new(UnpackErrorKind::UndefinedField(n), Some(n), pos)
            })?;
            let loc = locate(spec, input, &mut pos).map_err(|(k, at)| err(k, n, None, at))?;
            match &spec.composite {
                Some(comp) => check_composite(spec, comp, &loc, n)?,
                None => wire::check(spec, loc.wire, loc.units)
                    .map_err(|(k, at)| err(k, n, None, loc.at + at))?,
            }
            msg.set(n, loc.wire, loc.units);
            Ok(())
        })?;
        if pos < input.len() {
            return Err(UnpackError::new(
                UnpackErrorKind::Trailing(input.len() - pos),
                None,
                pos,
            ));
        }
        Ok(())
    }
}

impl Spec {
    /// The value of field `number` of a borrowed message: the input's bytes themselves when
    /// the encoding writes values as they are (ASCII, binary), else decoded (BCD, EBCDIC,
    /// hex); `None` when absent or a composite.
    ///
    /// ```
    /// use iso8583::{Message, MessageRef, Spec};
    ///
    /// let spec = Spec::builtin("moov:spec87ascii").unwrap();
    /// let mut msg = Message::new("0100");
    /// msg.set(11, "123456");
    /// let bytes = spec.pack_to_vec(&msg)?;
    /// let mut view = MessageRef::new();
    /// spec.unpack_borrowed(&bytes, &mut view)?;
    /// assert_eq!(spec.value(&view, 11).as_deref(), Some(&b"123456"[..]));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn value<'a>(&self, msg: &MessageRef<'a>, number: u16) -> Option<Cow<'a, [u8]>> {
        let spec = self.field(number)?;
        let wire = msg.field(number)?;
        if spec.composite.is_some() {
            return None;
        }
        if matches!(spec.enc, Encoding::Ascii | Encoding::Binary) {
            return Some(Cow::Borrowed(wire));
        }
        let units = msg.units[usize::from(number)] as usize;
        let mut v = Vec::new();
        wire::decode(spec, wire, units, &mut v).ok()?;
        Some(Cow::Owned(v))
    }
}

fn err(kind: UnpackErrorKind, field: u16, sub: Option<SubKey>, offset: usize) -> UnpackError {
    UnpackError {
        kind,
        field: Some(field),
        sub,
        offset,
        partial: None,
    }
}

/// What a composite walk finds: one subfield's spec (absent for an unknown tag), key, wire
/// bytes, units, offset and BER-TLV length form.
struct Found<'s, 'a> {
    spec: Option<&'s FieldSpec>,
    key: SubKey,
    wire: &'a [u8],
    units: usize,
    at: usize,
    length_bytes: u8,
}

/// The content bytes of a composite: its wire bytes, or for hex-as-ASCII content the bytes
/// it spells (decoded into `scratch`).
fn content<'a>(
    spec: &FieldSpec,
    loc: &Located<'a>,
    n: u16,
    scratch: &'a mut Vec<u8>,
) -> Result<&'a [u8], UnpackError> {
    if spec.enc == Encoding::HexToAscii {
        wire::decode_hex(loc.wire, scratch).map_err(|(k, at)| err(k, n, None, loc.at + at))?;
        Ok(scratch)
    } else {
        Ok(loc.wire)
    }
}

/// Walks a composite's content, calling `f` on each subfield in wire order.
fn walk<'s, 'a>(
    comp: &'s Composite,
    data: &'a [u8],
    base: usize,
    hex_content: bool,
    n: u16,
    mut f: impl FnMut(Found<'s, 'a>) -> Result<(), UnpackError>,
) -> Result<(), UnpackError> {
    // Offsets inside hex-as-ASCII content count content bytes; the input offset is twice.
    let scale = if hex_content { 2 } else { 1 };
    let off = |i: usize| base + i * scale;
    match comp.layout {
        Layout::Positional => {
            let mut pos = 0;
            for (key, sub) in &comp.subfields {
                if pos >= data.len() {
                    break;
                }
                let loc = locate(sub, data, &mut pos)
                    .map_err(|(k, at)| err(k, n, Some(*key), off(at)))?;
                f(Found {
                    spec: Some(sub),
                    key: *key,
                    wire: loc.wire,
                    units: loc.units,
                    at: off(loc.at),
                    length_bytes: 0,
                })?;
            }
            if pos < data.len() {
                return Err(err(
                    UnpackErrorKind::CompositeTrailing(data.len() - pos),
                    n,
                    None,
                    off(pos),
                ));
            }
        }
        Layout::Bitmapped => {
            let (len, enc) = comp.bitmap.unwrap_or((8, Encoding::Binary));
            let hex = enc == Encoding::HexToAscii;
            let wire_len = if hex { len * 2 } else { len };
            let Some(bits) = data.get(..wire_len) else {
                return Err(err(truncated(wire_len, data.len()), n, None, off(0)));
            };
            let mut pos = wire_len;
            for bit in 0..len * 8 {
                let byte = if hex {
                    let (Some(hi), Some(lo)) = (
                        wire::hex_upper(bits[bit / 8 * 2]),
                        wire::hex_upper(bits[bit / 8 * 2 + 1]),
                    ) else {
                        return Err(err(
                            UnpackErrorKind::InvalidByte {
                                byte: bits[bit / 8 * 2],
                            },
                            n,
                            None,
                            off(bit / 8 * 2),
                        ));
                    };
                    (hi << 4) | lo
                } else {
                    bits[bit / 8]
                };
                if byte & (0x80 >> (bit % 8)) == 0 {
                    continue;
                }
                let key = SubKey::Index(bit as u16 + 1);
                let Some(sub) = comp.subfield(key) else {
                    return Err(err(
                        UnpackErrorKind::UndefinedField(n),
                        n,
                        Some(key),
                        off(pos),
                    ));
                };
                let loc =
                    locate(sub, data, &mut pos).map_err(|(k, at)| err(k, n, Some(key), off(at)))?;
                f(Found {
                    spec: Some(sub),
                    key,
                    wire: loc.wire,
                    units: loc.units,
                    at: off(loc.at),
                    length_bytes: 0,
                })?;
            }
            if pos < data.len() {
                return Err(err(
                    UnpackErrorKind::CompositeTrailing(data.len() - pos),
                    n,
                    None,
                    off(pos),
                ));
            }
        }
        Layout::Tlv => {
            let mut pos = 0;
            let mut hint = 0;
            while pos < data.len() {
                let start = pos;
                let bad = |at: usize| err(UnpackErrorKind::InvalidTlv, n, None, off(at));
                // Tag: one byte, or more when its low five bits are all set; at most four.
                let first = data[pos];
                if first == 0x00 || first == 0xFF {
                    return Err(bad(pos));
                }
                let mut tag = u32::from(first);
                pos += 1;
                if first & 0x1F == 0x1F {
                    loop {
                        let Some(&b) = data.get(pos) else {
                            return Err(bad(start));
                        };
                        if tag > 0xFF_FFFF {
                            return Err(bad(start));
                        }
                        tag = (tag << 8) | u32::from(b);
                        pos += 1;
                        if b & 0x80 == 0 {
                            break;
                        }
                    }
                }
                let key = SubKey::Tag(tag);
                // Length: short form, or 0x81 to 0x84 followed by that many bytes.
                let Some(&l0) = data.get(pos) else {
                    return Err(err(UnpackErrorKind::InvalidTlv, n, Some(key), off(pos)));
                };
                let len_at = pos;
                pos += 1;
                let (len, length_bytes) = if l0 < 0x80 {
                    (usize::from(l0), 1u8)
                } else {
                    let k = usize::from(l0 & 0x7F);
                    if k == 0 || k > 4 {
                        return Err(err(UnpackErrorKind::InvalidTlv, n, Some(key), off(len_at)));
                    }
                    let Some(bytes) = data.get(pos..pos + k) else {
                        return Err(err(truncated(k, data.len() - pos), n, Some(key), off(pos)));
                    };
                    pos += k;
                    let len = bytes.iter().fold(0usize, |a, &b| (a << 8) | usize::from(b));
                    (len, 1 + k as u8)
                };
                let Some(value) = data.get(pos..).and_then(|r| r.get(..len)) else {
                    return Err(err(
                        truncated(len, data.len() - pos),
                        n,
                        Some(key),
                        off(pos),
                    ));
                };
                let spec = match comp.subfield_near(key, hint) {
                    Some((i, s)) => {
                        hint = i + 1;
                        Some(s)
                    }
                    None => None,
                };
                if spec.is_none() && comp.unknown_tags == UnknownTags::Reject {
                    return Err(err(UnpackErrorKind::UnknownTag, n, Some(key), off(start)));
                }
                let mut units = spec.map_or(len, |s| wire::units_in(s.enc, len));
                if let Some(s) = spec
                    && s.enc == Encoding::Track2
                    && value.last().is_some_and(|b| b & 0x0F == 0x0F)
                {
                    units -= 1;
                }
                if let Some(s) = spec
                    && units > s.length
                {
                    return Err(err(
                        UnpackErrorKind::TooLong {
                            length: units,
                            max: s.length,
                        },
                        n,
                        Some(key),
                        off(len_at),
                    ));
                }
                f(Found {
                    spec,
                    key,
                    wire: value,
                    units,
                    at: off(pos),
                    length_bytes,
                })?;
                pos += len;
            }
        }
    }
    Ok(())
}

/// Where a plain value goes in `msg`: its wire bytes in the copy of the input when the
/// encoding writes values as they are (`in_input`: `wire` is the input's, at `at`), else
/// decoded at the end of the buffer.
#[inline]
fn value_span(
    spec: &FieldSpec,
    wire: &[u8],
    units: usize,
    at: usize,
    in_input: bool,
    msg: &mut Message,
) -> Result<Span, Fail> {
    if in_input && matches!(spec.enc, Encoding::Ascii | Encoding::Binary) {
        wire::check(spec, wire, units)?;
        return Ok(Span {
            start: at,
            end: at + wire.len(),
        });
    }
    let start = msg.buf.len();
    match wire::decode(spec, wire, units, &mut msg.buf) {
        Ok(()) => Ok(Span {
            start,
            end: msg.buf.len(),
        }),
        Err(e) => {
            msg.buf.truncate(start);
            Err(e)
        }
    }
}

fn unpack_composite(
    spec: &FieldSpec,
    comp: &Composite,
    loc: &Located<'_>,
    n: u16,
    msg: &mut Message,
) -> Result<Slot, UnpackError> {
    let mut scratch = Vec::new();
    let hex = spec.enc == Encoding::HexToAscii;
    let data = content(spec, loc, n, &mut scratch)?;
    let first = msg.subs.len();
    walk(comp, data, loc.at, hex, n, |found| {
        // Hex content is decoded into `scratch`, so its values are copied; otherwise a
        // subfield's offset is where its bytes are in the input.
        let span = match found.spec {
            Some(s) => value_span(s, found.wire, found.units, found.at, !hex, msg)
                .map_err(|(k, at)| err(k, n, Some(found.key), found.at + at))?,
            None if hex => msg.push_bytes(found.wire),
            None => Span {
                start: found.at,
                end: found.at + found.wire.len(),
            },
        };
        msg.subs.push(Sub {
            key: found.key,
            span,
            unknown: found.spec.is_none(),
            length_bytes: found.length_bytes,
        });
        Ok(())
    })?;
    Ok(Slot::Composite {
        first,
        end: msg.subs.len(),
    })
}

fn check_composite(
    spec: &FieldSpec,
    comp: &Composite,
    loc: &Located<'_>,
    n: u16,
) -> Result<(), UnpackError> {
    if spec.enc == Encoding::HexToAscii {
        // Hex content is checked digit by digit here; its subfields are read by `unpack`.
        for (i, &c) in loc.wire.iter().enumerate() {
            if wire::hex_upper(c).is_none() {
                return Err(err(
                    UnpackErrorKind::InvalidByte { byte: c },
                    n,
                    None,
                    loc.at + i,
                ));
            }
        }
        return Ok(());
    }
    walk(comp, loc.wire, loc.at, false, n, |found| match found.spec {
        Some(s) => wire::check(s, found.wire, found.units)
            .map_err(|(k, at)| err(k, n, Some(found.key), found.at + at)),
        None => Ok(()),
    })
}
