//! Packing: a [`Message`] to bytes.

use crate::error::{PackError, PackErrorKind};
use crate::message::{FieldRef, Message, SubfieldRef, Subfields};
use crate::spec::{Composite, Encoding, FieldSpec, Layout, Spec, SubKey};
use crate::unpack::tertiary_bit;
use crate::wire;

const HEX: &[u8; 16] = b"0123456789ABCDEF";

impl Spec {
    /// Packs a message, appending its bytes to `out`.
    ///
    /// The bitmaps come from the fields present (a secondary bitmap when a field above 64 is,
    /// a tertiary one above 128). Values shorter than a fixed length are padded as the spec
    /// says; anything else that does not fit is an error.
    ///
    /// # Errors
    ///
    /// A [`PackError`] naming the field and subfield. `out` may then hold part of the
    /// message: truncate it to its length before the call.
    pub fn pack(&self, msg: &Message, out: &mut Vec<u8>) -> Result<(), PackError> {
        let mti_spec = self
            .field(0)
            .ok_or_else(|| PackError::new(PackErrorKind::UndefinedField, 0))?;
        let mut bitmap = [0u64; 3];
        for n in msg.numbers() {
            let i = usize::from(n - 1);
            bitmap[i / 64] |= 1u64 << (63 - i % 64);
        }
        let tertiary = bitmap[2] != 0;
        if tertiary && !tertiary_bit(self) {
            return Err(PackError::new(PackErrorKind::UndefinedField, 129));
        }
        if tertiary {
            bitmap[1] |= 1 << 63;
        }
        let count = if bitmap[1] != 0 || tertiary {
            bitmap[0] |= 1 << 63;
            if tertiary { 3 } else { 2 }
        } else {
            1
        };
        // One reservation for the whole message (what its values take, with room for
        // prefixes and padding), so that the writes below never grow the buffer.
        out.reserve(packed_len_hint(self, msg) + count * 16);
        wire::encode_field(mti_spec, msg.mti().as_bytes(), out)
            .map_err(|k| PackError::new(k, 0))?;
        let hex = self.field(1).is_none_or(|b| b.enc != Encoding::Binary);
        for word in &bitmap[..count] {
            if hex {
                let mut text = [0u8; 16];
                for (i, c) in text.iter_mut().enumerate() {
                    *c = HEX[((word >> (60 - 4 * i)) & 0xF) as usize];
                }
                out.extend_from_slice(&text);
            } else {
                out.extend_from_slice(&word.to_be_bytes());
            }
        }
        for (n, field) in msg.iter() {
            let spec = self
                .field(n)
                .ok_or_else(|| PackError::new(PackErrorKind::UndefinedField, n))?;
            pack_field(spec, field, n, out)?;
        }
        Ok(())
    }

    /// Packs a message into a new vector.
    ///
    /// # Errors
    ///
    /// As [`Spec::pack`].
    pub fn pack_to_vec(&self, msg: &Message) -> Result<Vec<u8>, PackError> {
        let mut out = Vec::new();
        self.pack(msg, &mut out)?;
        Ok(out)
    }
}

/// About the bytes a message packs into: its values, prefixes, fixed lengths and BER-TLV
/// heads. A hint for one reservation, not a bound that anything relies on.
fn packed_len_hint(spec: &Spec, msg: &Message) -> usize {
    let mut len = 8 + msg.mti().len();
    for e in &msg.fields {
        let Some(f) = spec.field(e.number) else {
            continue;
        };
        len += f.prefix.wire_len();
        len += match e.slot {
            crate::message::Slot::Value(s) => {
                let units = (s.end - s.start).max(if f.prefix.is_fixed() { f.length } else { 0 });
                f.enc.wire_len(units).unwrap_or(units)
            }
            crate::message::Slot::Composite { first, end } => {
                let subs = msg.subs.get(first..end).unwrap_or_default();
                let bytes: usize = subs.iter().map(|s| s.span.end - s.span.start).sum();
                // Tags and lengths, bitmaps, prefixes; hex content doubles.
                let body = bytes + subs.len() * 8 + 16;
                if f.enc == Encoding::HexToAscii {
                    body * 2
                } else {
                    body
                }
            }
        };
    }
    len
}

fn pack_field(
    spec: &FieldSpec,
    field: FieldRef<'_>,
    n: u16,
    out: &mut Vec<u8>,
) -> Result<(), PackError> {
    match (field, &spec.composite) {
        (FieldRef::Value(v), None) => {
            wire::encode_field(spec, v, out).map_err(|k| PackError::new(k, n))
        }
        (FieldRef::Composite(subs), Some(comp)) => pack_composite(spec, comp, subs, n, out),
        _ => Err(PackError::new(PackErrorKind::Shape, n)),
    }
}

fn sub_err(kind: PackErrorKind, n: u16, key: SubKey) -> PackError {
    PackError {
        kind,
        field: Some(n),
        sub: Some(key),
    }
}

fn pack_composite(
    spec: &FieldSpec,
    comp: &Composite,
    subs: Subfields<'_>,
    n: u16,
    out: &mut Vec<u8>,
) -> Result<(), PackError> {
    let hex = spec.enc == Encoding::HexToAscii;
    let mut scratch = Vec::new();
    let start = out.len();
    let prefix_len = spec.prefix.wire_len();
    // The content goes where it ends up, after room for the prefix, unless it must be turned
    // into hex text first.
    let body: &mut Vec<u8> = if hex {
        &mut scratch
    } else {
        out.resize(start + prefix_len, 0);
        out
    };
    let body_start = body.len();
    write_content(comp, subs, n, body)?;
    let units = body.len() - body_start;
    if spec.prefix.is_fixed() {
        if units != spec.length {
            return Err(PackError::new(
                PackErrorKind::WrongLength {
                    length: units,
                    fixed: spec.length,
                },
                n,
            ));
        }
    } else {
        let max = spec.length.min(spec.prefix.max_len());
        if units > max {
            return Err(PackError::new(
                PackErrorKind::TooLong { length: units, max },
                n,
            ));
        }
    }
    if hex {
        wire::write_prefix(spec.prefix, units, out);
        out.reserve(scratch.len() * 2);
        for b in &scratch {
            out.extend_from_slice(&[HEX[usize::from(b >> 4)], HEX[usize::from(b & 0xF)]]);
        }
    } else if prefix_len > 0 {
        let mut i = start;
        wire::write_prefix_with(spec.prefix, units, |b| {
            out[i] = b;
            i += 1;
        });
    }
    Ok(())
}

/// The BER-TLV length of `len` in `form` bytes (1: the short form), or the shortest form
/// when `form` is shorter than that.
fn tlv_length(len: usize, form: u8) -> ([u8; 5], usize) {
    let needed = match len {
        0..=0x7F => 1,
        0x80..=0xFF => 2,
        0x100..=0xFFFF => 3,
        0x1_0000..=0xFF_FFFF => 4,
        _ => 5,
    };
    let form = usize::from(form).clamp(needed, 5);
    let mut head = [0u8; 5];
    if form == 1 {
        head[0] = len as u8;
    } else {
        head[0] = 0x80 | (form as u8 - 1);
        for (j, slot) in head[1..form].iter_mut().enumerate() {
            *slot = (len >> (8 * (form - 2 - j))) as u8;
        }
    }
    (head, form)
}

/// The bytes of the shortest BER-TLV length of the element that `value` packs into (under
/// its subfield's spec; `None` for an unknown tag).
pub(crate) fn tlv_shortest_form(spec: Option<&FieldSpec>, value: &[u8]) -> u8 {
    let len = spec
        .and_then(|s| {
            let units = wire::value_units(s.enc, value).ok()?;
            s.enc.wire_len(units)
        })
        .unwrap_or(value.len());
    tlv_length(len, 0).1 as u8
}

fn write_content(
    comp: &Composite,
    subs: Subfields<'_>,
    n: u16,
    out: &mut Vec<u8>,
) -> Result<(), PackError> {
    match comp.layout {
        Layout::Positional => {
            let mut written = 0;
            let mut gap = false;
            for (key, sub) in &comp.subfields {
                match subs.get(*key) {
                    Some(v) => {
                        if gap {
                            return Err(sub_err(PackErrorKind::Shape, n, *key));
                        }
                        wire::encode_field(sub, v, out).map_err(|k| sub_err(k, n, *key))?;
                        written += 1;
                    }
                    None => gap = true,
                }
            }
            if written != subs.len() {
                let stray = subs
                    .iter()
                    .find(|s| comp.subfield(s.key).is_none())
                    .map_or(SubKey::Index(0), |s| s.key);
                return Err(sub_err(PackErrorKind::UndefinedSubfield, n, stray));
            }
        }
        Layout::Bitmapped => {
            let (len, enc) = comp.bitmap.unwrap_or((8, Encoding::Binary));
            let mut bits = [0u8; 16];
            let bits = bits.get_mut(..len).unwrap_or_default();
            for s in subs.iter() {
                match s.key {
                    SubKey::Index(i) if (1..=bits.len() * 8).contains(&usize::from(i)) => {
                        let i = usize::from(i) - 1;
                        bits[i / 8] |= 0x80 >> (i % 8);
                    }
                    _ => return Err(sub_err(PackErrorKind::UndefinedSubfield, n, s.key)),
                }
            }
            if enc == Encoding::HexToAscii {
                for b in bits.iter() {
                    out.extend_from_slice(&[HEX[usize::from(b >> 4)], HEX[usize::from(b & 0xF)]]);
                }
            } else {
                out.extend_from_slice(bits);
            }
            // The present subfields in bit order (the first one under each bit).
            for bit in 0..bits.len() * 8 {
                if bits[bit / 8] & (0x80 >> (bit % 8)) == 0 {
                    continue;
                }
                let key = SubKey::Index(bit as u16 + 1);
                let (Some(spec), Some(v)) = (comp.subfield(key), subs.get(key)) else {
                    return Err(sub_err(PackErrorKind::UndefinedSubfield, n, key));
                };
                wire::encode_field(spec, v, out).map_err(|k| sub_err(k, n, key))?;
            }
        }
        Layout::Tlv => {
            let mut hint = 0;
            for s in subs.iter() {
                let spec = match comp.subfield_near(s.key, hint) {
                    Some((i, spec)) => {
                        hint = i + 1;
                        Some(spec)
                    }
                    None => None,
                };
                write_tlv(spec, s, n, out)?;
            }
        }
    }
    Ok(())
}

/// Writes one BER-TLV element: tag, length (in the form it came in, if any), value.
#[inline]
fn write_tlv(
    spec: Option<&FieldSpec>,
    s: SubfieldRef<'_>,
    n: u16,
    out: &mut Vec<u8>,
) -> Result<(), PackError> {
    let SubKey::Tag(tag) = s.key else {
        return Err(sub_err(PackErrorKind::UndefinedSubfield, n, s.key));
    };
    let tag_bytes = tag.to_be_bytes();
    let skip = tag_bytes.iter().take_while(|b| **b == 0).count().min(3);
    out.extend_from_slice(&tag_bytes[skip..]);
    let v = s.value;
    let Some(spec) = spec else {
        let (head, form) = tlv_length(v.len(), s.length_bytes);
        out.extend_from_slice(&head[..form]);
        out.extend_from_slice(v);
        return Ok(());
    };
    let units = wire::value_units(spec.enc, v).map_err(|k| sub_err(k, n, s.key))?;
    if units > spec.length {
        return Err(sub_err(
            PackErrorKind::TooLong {
                length: units,
                max: spec.length,
            },
            n,
            s.key,
        ));
    }
    // The length is known before the value is written, so it goes first.
    let len = spec.enc.wire_len(units).unwrap_or(usize::MAX);
    let (head, form) = tlv_length(len, s.length_bytes);
    let len_at = out.len();
    out.extend_from_slice(&head[..form]);
    let value_at = out.len();
    wire::encode_value_slice(spec, v, units, out).map_err(|k| sub_err(k, n, s.key))?;
    let written = out.len() - value_at;
    if written != len {
        // Not expected (the encodings write what `wire_len` says), but the length must be
        // that of the bytes written.
        let (head, form) = tlv_length(written, s.length_bytes);
        out.splice(len_at..value_at, head[..form].iter().copied());
    }
    Ok(())
}
