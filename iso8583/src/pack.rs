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
        out.reserve(packed_len_hint(msg) + count * 16);
        wire::encode_field(mti_spec, msg.mti().as_bytes(), out)
            .map_err(|k| PackError::new(k, 0))?;
        let hex = self.field(1).is_none_or(|b| b.enc != Encoding::Binary);
        for word in &bitmap[..count] {
            if hex {
                for i in 0..16 {
                    out.push(HEX[((word >> (60 - 4 * i)) & 0xF) as usize]);
                }
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

/// About the bytes a message packs into, for one reservation: its values, and room for
/// prefixes, tags and lengths (padding of short values to fixed lengths may grow the buffer
/// once more).
fn packed_len_hint(msg: &Message) -> usize {
    msg.buf.len() + 8 * (msg.fields.len() + msg.subs.len()) + 32
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

/// The bytes a BER-TLV length of `len` takes in `form` (1: the short form), or in the
/// shortest form when `form` is shorter than that.
fn tlv_form(len: usize, form: u8) -> usize {
    let needed = match len {
        0..=0x7F => 1,
        0x80..=0xFF => 2,
        0x100..=0xFFFF => 3,
        0x1_0000..=0xFF_FFFF => 4,
        _ => 5,
    };
    usize::from(form).clamp(needed, 5)
}

/// Writes a BER-TLV length in `form` bytes (from [`tlv_form`]), a byte at a time (bytes
/// gathered on the stack and read back whole would stall the store buffer).
#[inline]
fn write_tlv_length(len: usize, form: usize, out: &mut Vec<u8>) {
    if form == 1 {
        out.push(len as u8);
        return;
    }
    out.push(0x80 | (form as u8 - 1));
    for j in (0..form - 1).rev() {
        out.push((len >> (8 * j)) as u8);
    }
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
    tlv_form(len, 0) as u8
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
    let tag_len = match tag {
        0..=0xFF => 1,
        0x100..=0xFFFF => 2,
        0x1_0000..=0xFF_FFFF => 3,
        _ => 4,
    };
    for j in (0..tag_len).rev() {
        out.push((tag >> (8 * j)) as u8);
    }
    let v = s.value;
    let Some(spec) = spec else {
        write_tlv_length(v.len(), tlv_form(v.len(), s.length_bytes), out);
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
    let len_at = out.len();
    write_tlv_length(len, tlv_form(len, s.length_bytes), out);
    let value_at = out.len();
    wire::encode_value_slice(spec, v, units, out).map_err(|k| sub_err(k, n, s.key))?;
    let written = out.len() - value_at;
    if written != len {
        // Not expected (the encodings write what `wire_len` says), but the length must be
        // that of the bytes written.
        let mut head = Vec::with_capacity(5);
        write_tlv_length(written, tlv_form(written, s.length_bytes), &mut head);
        out.splice(len_at..value_at, head);
    }
    Ok(())
}
