//! Packing: a [`Message`] to bytes.

use crate::error::{PackError, PackErrorKind};
use crate::message::{Field, Message, Subfield};
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
        wire::encode_field(mti_spec, msg.mti.as_bytes(), out).map_err(|k| PackError::new(k, 0))?;
        let mut bitmap = [0u64; 3];
        for (n, _) in &msg.fields {
            let i = usize::from(*n - 1);
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
        let hex = self.field(1).is_none_or(|b| b.enc != Encoding::Binary);
        for word in &bitmap[..count] {
            if hex {
                for i in (0..16).rev() {
                    out.push(HEX[((word >> (4 * i)) & 0xF) as usize]);
                }
            } else {
                out.extend_from_slice(&word.to_be_bytes());
            }
        }
        for (n, field) in &msg.fields {
            let n = *n;
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
        let mut out = Vec::with_capacity(256);
        self.pack(msg, &mut out)?;
        Ok(out)
    }
}

fn pack_field(spec: &FieldSpec, field: &Field, n: u16, out: &mut Vec<u8>) -> Result<(), PackError> {
    match (field, &spec.composite) {
        (Field::Value(v), None) => {
            wire::encode_field(spec, v, out).map_err(|k| PackError::new(k, n))
        }
        (Field::Composite(subs), Some(comp)) => pack_composite(spec, comp, subs, n, out),
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
    subs: &[Subfield],
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
        for b in &scratch {
            out.push(HEX[usize::from(b >> 4)]);
            out.push(HEX[usize::from(b & 0xF)]);
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

fn write_content(
    comp: &Composite,
    subs: &[Subfield],
    n: u16,
    out: &mut Vec<u8>,
) -> Result<(), PackError> {
    match comp.layout {
        Layout::Positional => {
            let mut written = 0;
            let mut gap = false;
            for (key, sub) in &comp.subfields {
                match subs.iter().find(|s| s.key == *key) {
                    Some(s) => {
                        if gap {
                            return Err(sub_err(PackErrorKind::Shape, n, *key));
                        }
                        let Field::Value(v) = &s.value else {
                            return Err(sub_err(PackErrorKind::Shape, n, *key));
                        };
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
            let mut bits = vec![0u8; len];
            let mut present: Vec<(u16, &Subfield)> = Vec::with_capacity(subs.len());
            for s in subs {
                match s.key {
                    SubKey::Index(i) if (1..=len * 8).contains(&usize::from(i)) => {
                        let i = usize::from(i) - 1;
                        bits[i / 8] |= 0x80 >> (i % 8);
                        present.push((i as u16, s));
                    }
                    _ => return Err(sub_err(PackErrorKind::UndefinedSubfield, n, s.key)),
                }
            }
            present.sort_by_key(|(i, _)| *i);
            if enc == Encoding::HexToAscii {
                for b in &bits {
                    out.push(HEX[usize::from(b >> 4)]);
                    out.push(HEX[usize::from(b & 0xF)]);
                }
            } else {
                out.extend_from_slice(&bits);
            }
            for (_, s) in present {
                let spec = comp
                    .subfield(s.key)
                    .ok_or_else(|| sub_err(PackErrorKind::UndefinedSubfield, n, s.key))?;
                let Field::Value(v) = &s.value else {
                    return Err(sub_err(PackErrorKind::Shape, n, s.key));
                };
                wire::encode_field(spec, v, out).map_err(|k| sub_err(k, n, s.key))?;
            }
        }
        Layout::Tlv => {
            for s in subs {
                let SubKey::Tag(tag) = s.key else {
                    return Err(sub_err(PackErrorKind::UndefinedSubfield, n, s.key));
                };
                let Field::Value(v) = &s.value else {
                    return Err(sub_err(PackErrorKind::Shape, n, s.key));
                };
                let tag_bytes = tag.to_be_bytes();
                let skip = tag_bytes.iter().take_while(|b| **b == 0).count().min(3);
                out.extend_from_slice(&tag_bytes[skip..]);
                let spec = comp.subfield(s.key);
                let len_at = out.len();
                // The value first, then its length in front of it.
                match spec {
                    Some(spec) => {
                        let units =
                            wire::value_units(spec.enc, v).map_err(|k| sub_err(k, n, s.key))?;
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
                        wire::encode_value(spec, v.iter().copied(), units, out)
                            .map_err(|k| sub_err(k, n, s.key))?;
                    }
                    None => out.extend_from_slice(v),
                }
                let len = out.len() - len_at;
                let needed = match len {
                    0..=0x7F => 1,
                    0x80..=0xFF => 2,
                    0x100..=0xFFFF => 3,
                    0x1_0000..=0xFF_FFFF => 4,
                    _ => 5,
                };
                let form = usize::from(s.length_bytes).clamp(needed, 5);
                let mut head = [0u8; 5];
                if form == 1 {
                    head[0] = len as u8;
                } else {
                    head[0] = 0x80 | (form as u8 - 1);
                    for (j, slot) in head[1..form].iter_mut().enumerate() {
                        *slot = (len >> (8 * (form - 2 - j))) as u8;
                    }
                }
                out.splice(len_at..len_at, head[..form].iter().copied());
            }
        }
    }
    Ok(())
}
