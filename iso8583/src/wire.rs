//! Wire primitives: length prefixes and value encodings, both ways, without panics on any
//! input.

use crate::ebcdic::{CP037_TO_LATIN1, CP1047_TO_LATIN1, LATIN1_TO_CP037, LATIN1_TO_CP1047};
use crate::error::{PackErrorKind, UnpackErrorKind};
use crate::spec::{Encoding, FieldSpec, FieldType, PadSide, Prefix, PrefixKind};

/// An unpack failure at an offset relative to the slice being read.
pub(crate) type Fail = (UnpackErrorKind, usize);

const HEX: &[u8; 16] = b"0123456789ABCDEF";

pub(crate) fn truncated(needed: usize, available: usize) -> UnpackErrorKind {
    UnpackErrorKind::Truncated { needed, available }
}

/// Reads a length prefix at the start of `data`: the length and the prefix's wire bytes.
#[inline]
pub(crate) fn read_prefix(prefix: Prefix, data: &[u8]) -> Result<(usize, usize), Fail> {
    let n = prefix.wire_len();
    let Some(bytes) = data.get(..n) else {
        return Err((truncated(n, data.len()), 0));
    };
    let mut len = 0usize;
    match prefix.kind {
        PrefixKind::Ascii | PrefixKind::Ebcdic => {
            let zero = if prefix.kind == PrefixKind::Ascii {
                b'0'
            } else {
                0xF0
            };
            for &b in bytes {
                let d = b.wrapping_sub(zero);
                if d > 9 {
                    return Err((UnpackErrorKind::InvalidLength, 0));
                }
                len = len * 10 + usize::from(d);
            }
        }
        PrefixKind::Bcd => {
            let digits = usize::from(prefix.digits);
            // An odd digit count leaves a pad nibble first, which must be zero.
            let skip = bytes.len() * 2 - digits;
            for i in 0..bytes.len() * 2 {
                let nib = nibble(bytes, i);
                if i < skip {
                    if nib != 0 {
                        return Err((UnpackErrorKind::InvalidLength, 0));
                    }
                    continue;
                }
                if nib > 9 {
                    return Err((UnpackErrorKind::InvalidLength, 0));
                }
                len = len * 10 + usize::from(nib);
            }
        }
        PrefixKind::Binary => {
            for &b in bytes {
                len = (len << 8) | usize::from(b);
            }
        }
        PrefixKind::Hex => {
            for &b in bytes {
                let Some(d) = hex_upper(b) else {
                    return Err((UnpackErrorKind::InvalidLength, 0));
                };
                len = (len << 4) | usize::from(d);
            }
        }
    }
    Ok((len, n))
}

/// Writes a length prefix; `len` is known to be at most `prefix.max_len()`.
#[inline]
pub(crate) fn write_prefix(prefix: Prefix, len: usize, out: &mut Vec<u8>) {
    write_prefix_with(prefix, len, |b| out.push(b));
}

/// Writes a length prefix through `emit`.
#[inline]
pub(crate) fn write_prefix_with(prefix: Prefix, len: usize, mut emit: impl FnMut(u8)) {
    let digits = usize::from(prefix.digits);
    // Decimal digits, least significant first (divisions by a constant, which compile to
    // multiplications).
    let mut dec = [0u8; 8];
    let mut rest = len;
    for d in dec.iter_mut().take(digits.min(8)) {
        *d = (rest % 10) as u8;
        rest /= 10;
    }
    let digit_at = |i: usize| dec.get(i).copied().unwrap_or(0);
    match prefix.kind {
        PrefixKind::Ascii | PrefixKind::Ebcdic => {
            let zero = if prefix.kind == PrefixKind::Ascii {
                b'0'
            } else {
                0xF0
            };
            for i in (0..digits).rev() {
                emit(zero + digit_at(i));
            }
        }
        PrefixKind::Bcd => {
            let nibbles = digits.div_ceil(2) * 2;
            for i in (0..nibbles).step_by(2).rev() {
                let hi = if i + 1 < digits { digit_at(i + 1) } else { 0 };
                emit((hi << 4) | digit_at(i));
            }
        }
        PrefixKind::Binary => {
            for i in (0..digits).rev() {
                emit(((len >> (8 * i)) & 0xFF) as u8);
            }
        }
        PrefixKind::Hex => {
            for i in (0..digits * 2).rev() {
                emit(HEX[(len >> (4 * i)) & 0xF]);
            }
        }
    }
}

#[inline]
fn nibble(bytes: &[u8], i: usize) -> u8 {
    let b = bytes[i / 2];
    if i.is_multiple_of(2) {
        b >> 4
    } else {
        b & 0x0F
    }
}

/// An uppercase hex digit's value: what unpack accepts, so that pack writes back the same
/// bytes (lowercase hex is refused rather than rewritten).
#[inline]
pub(crate) fn hex_upper(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// A hex digit's value, either case (for values given to pack).
#[inline]
pub(crate) fn hex_digit(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'A'..=b'F' => Some(b - b'A' + 10),
        b'a'..=b'f' => Some(b - b'a' + 10),
        _ => None,
    }
}

/// Decodes hex text into the bytes it spells (appending to `out`).
pub(crate) fn decode_hex(wire: &[u8], out: &mut Vec<u8>) -> Result<(), Fail> {
    if !wire.len().is_multiple_of(2) {
        return Err((UnpackErrorKind::InvalidLength, 0));
    }
    out.reserve(wire.len() / 2);
    for (i, pair) in wire.chunks_exact(2).enumerate() {
        match (hex_upper(pair[0]), hex_upper(pair[1])) {
            (Some(hi), Some(lo)) => out.push((hi << 4) | lo),
            (None, _) => return Err((UnpackErrorKind::InvalidByte { byte: pair[0] }, i * 2)),
            (_, None) => return Err((UnpackErrorKind::InvalidByte { byte: pair[1] }, i * 2 + 1)),
        }
    }
    Ok(())
}

/// The pad nibble of a BCD or Track 2 field: the spec's pad character read as a hex digit.
fn pad_nibble(spec: &FieldSpec, default: u8) -> u8 {
    spec.padding
        .and_then(|p| hex_digit(p.pad))
        .unwrap_or(default)
}

fn track2_default_pad(spec: &FieldSpec) -> u8 {
    pad_nibble(spec, 0xF)
}

/// Wire bytes of a value of `units` units, or `None` on overflow.
#[inline]
pub(crate) fn wire_len(enc: Encoding, units: usize) -> Option<usize> {
    enc.wire_len(units)
}

/// Units of value in `wire` bytes of a self-delimited element (a BER-TLV value).
pub(crate) fn units_in(enc: Encoding, wire: usize) -> usize {
    match enc {
        Encoding::Bcd | Encoding::Lbcd | Encoding::Track2 => wire * 2,
        Encoding::HexToAscii => wire / 2,
        _ => wire,
    }
}

/// The first byte of `value` that a field of type `kind` does not allow, with its index.
#[inline]
fn first_bad(kind: FieldType, value: &[u8]) -> Option<(usize, u8)> {
    // A branch-free pass first (it vectorizes), then the search for the culprit.
    let bad = |b: u8| match kind {
        FieldType::Numeric => !b.is_ascii_digit(),
        FieldType::Hex => !b.is_ascii_hexdigit(),
        _ => false,
    };
    if !matches!(kind, FieldType::Numeric | FieldType::Hex)
        || !value.iter().fold(false, |acc, &b| acc | bad(b))
    {
        return None;
    }
    value.iter().copied().enumerate().find(|(_, b)| bad(*b))
}

/// Checks `wire` (the field's bytes without prefix) as the spec's encoding and type would
/// read it, without allocating; the error offset is relative to `wire`.
pub(crate) fn check(spec: &FieldSpec, wire: &[u8], units: usize) -> Result<(), Fail> {
    decode_with(spec, wire, units, |_| {})
}

/// Decodes `wire` into `out` (appending).
pub(crate) fn decode(
    spec: &FieldSpec,
    wire: &[u8],
    units: usize,
    out: &mut Vec<u8>,
) -> Result<(), Fail> {
    if matches!(spec.enc, Encoding::Ascii | Encoding::Binary) {
        if let Some((i, b)) = first_bad(spec.kind, wire) {
            return Err((UnpackErrorKind::InvalidByte { byte: b }, i));
        }
        out.extend_from_slice(wire);
        return Ok(());
    }
    out.reserve(units.min(wire.len() * 2));
    decode_with(spec, wire, units, |b| out.push(b))
}

#[inline]
fn decode_with(
    spec: &FieldSpec,
    wire: &[u8],
    units: usize,
    mut emit: impl FnMut(u8),
) -> Result<(), Fail> {
    let kind = spec.kind;
    let typed = |b: u8, at: usize| -> Result<u8, Fail> {
        let ok = match kind {
            FieldType::Numeric => b.is_ascii_digit(),
            FieldType::Hex => b.is_ascii_hexdigit(),
            _ => true,
        };
        if ok {
            Ok(b)
        } else {
            Err((UnpackErrorKind::InvalidByte { byte: b }, at))
        }
    };
    match spec.enc {
        Encoding::Ascii | Encoding::Binary => {
            if let Some((i, b)) = first_bad(kind, wire) {
                return Err((UnpackErrorKind::InvalidByte { byte: b }, i));
            }
            wire.iter().for_each(|&b| emit(b));
        }
        Encoding::Ebcdic037 | Encoding::Ebcdic1047 => {
            let table = if spec.enc == Encoding::Ebcdic037 {
                &CP037_TO_LATIN1
            } else {
                &CP1047_TO_LATIN1
            };
            for (i, &b) in wire.iter().enumerate() {
                emit(typed(table[usize::from(b)], i)?);
            }
        }
        Encoding::Bcd | Encoding::Lbcd | Encoding::Track2 => {
            let nibbles = wire.len() * 2;
            let pad = nibbles - units;
            let (pad_at, pad_value) = match spec.enc {
                Encoding::Bcd => (0, pad_nibble(spec, 0)),
                Encoding::Lbcd => (nibbles.saturating_sub(1), pad_nibble(spec, 0)),
                _ => (nibbles.saturating_sub(1), track2_default_pad(spec)),
            };
            for i in 0..nibbles {
                let nib = nibble(wire, i);
                if pad == 1 && i == pad_at {
                    if nib != pad_value {
                        return Err((UnpackErrorKind::InvalidPad, i / 2));
                    }
                    continue;
                }
                let c = match nib {
                    0..=9 => b'0' + nib,
                    0xD if spec.enc == Encoding::Track2 => b'=',
                    _ => {
                        return Err((UnpackErrorKind::InvalidByte { byte: wire[i / 2] }, i / 2));
                    }
                };
                emit(c);
            }
        }
        Encoding::HexToAscii => {
            for (i, pair) in wire.chunks_exact(2).enumerate() {
                let (Some(hi), Some(lo)) = (hex_upper(pair[0]), hex_upper(pair[1])) else {
                    let bad = if hex_upper(pair[0]).is_none() {
                        pair[0]
                    } else {
                        pair[1]
                    };
                    return Err((UnpackErrorKind::InvalidByte { byte: bad }, i * 2));
                };
                emit((hi << 4) | lo);
            }
        }
        Encoding::AsciiHexToBytes => {
            for &b in wire {
                emit(HEX[usize::from(b >> 4)]);
                emit(HEX[usize::from(b & 0xF)]);
            }
        }
    }
    Ok(())
}

/// Units of a value (characters, digits or bytes) as the encoding counts them.
#[inline]
pub(crate) fn value_units(enc: Encoding, value: &[u8]) -> Result<usize, PackErrorKind> {
    match enc {
        Encoding::AsciiHexToBytes => {
            if !value.len().is_multiple_of(2) {
                return Err(PackErrorKind::WrongLength {
                    length: value.len(),
                    fixed: value.len() + 1,
                });
            }
            Ok(value.len() / 2)
        }
        _ => Ok(value.len()),
    }
}

/// Encodes a value of a plain field: prefix (or padding to the fixed length), then the
/// value in the field's encoding.
pub(crate) fn encode_field(
    spec: &FieldSpec,
    value: &[u8],
    out: &mut Vec<u8>,
) -> Result<(), PackErrorKind> {
    let units = value_units(spec.enc, value)?;
    let mut pad = 0;
    if spec.prefix.is_fixed() {
        if units > spec.length || (units < spec.length && spec.padding.is_none()) {
            return Err(PackErrorKind::WrongLength {
                length: units,
                fixed: spec.length,
            });
        }
        pad = spec.length - units;
    } else {
        let max = spec.length.min(spec.prefix.max_len());
        if units > max {
            return Err(PackErrorKind::TooLong { length: units, max });
        }
        write_prefix(spec.prefix, units, out);
    }
    match spec.padding {
        Some(p) if pad > 0 && p.side == PadSide::Left => encode_value(
            spec,
            PadIter::new(p.pad, pad, value, true),
            units + pad,
            out,
        ),
        Some(p) if pad > 0 => encode_value(
            spec,
            PadIter::new(p.pad, pad, value, false),
            units + pad,
            out,
        ),
        _ => encode_value_slice(spec, value, units, out),
    }
}

/// Writes a value of `units` units in the field's encoding, checking its characters, as
/// [`encode_value`] does, with the common encodings written a slice at a time.
#[inline]
pub(crate) fn encode_value_slice(
    spec: &FieldSpec,
    value: &[u8],
    units: usize,
    out: &mut Vec<u8>,
) -> Result<(), PackErrorKind> {
    match spec.enc {
        Encoding::Ascii | Encoding::Binary => {
            if let Some((_, b)) = first_bad(spec.kind, value) {
                return Err(PackErrorKind::InvalidByte { byte: b });
            }
            out.extend_from_slice(value);
            Ok(())
        }
        Encoding::Bcd | Encoding::Lbcd | Encoding::Track2 if units == value.len() => {
            let track2 = spec.enc == Encoding::Track2;
            let pad = if track2 {
                track2_default_pad(spec)
            } else {
                pad_nibble(spec, 0)
            };
            let nib = |c: u8| match c {
                b'0'..=b'9' => Ok(c - b'0'),
                b'=' | b'D' | b'd' if track2 => Ok(0xD),
                _ => Err(PackErrorKind::InvalidByte { byte: c }),
            };
            out.reserve(value.len().div_ceil(2));
            let mut rest = value;
            if spec.enc == Encoding::Bcd
                && let Some((&first, tail)) = value.split_first()
                && value.len() % 2 == 1
            {
                out.push((pad << 4) | nib(first)?);
                rest = tail;
            }
            let mut pairs = rest.chunks_exact(2);
            for p in &mut pairs {
                out.push((nib(p[0])? << 4) | nib(p[1])?);
            }
            if let [last] = pairs.remainder() {
                out.push((nib(*last)? << 4) | pad);
            }
            Ok(())
        }
        _ => encode_value(spec, value.iter().copied(), units, out),
    }
}

/// A value with `n` pad characters before or after it.
struct PadIter<'a> {
    pad: u8,
    n: usize,
    value: std::slice::Iter<'a, u8>,
    left: bool,
}

impl<'a> PadIter<'a> {
    fn new(pad: u8, n: usize, value: &'a [u8], left: bool) -> Self {
        PadIter {
            pad,
            n,
            value: value.iter(),
            left,
        }
    }
}

impl Iterator for PadIter<'_> {
    type Item = u8;

    fn next(&mut self) -> Option<u8> {
        if self.left && self.n > 0 {
            self.n -= 1;
            return Some(self.pad);
        }
        if let Some(&b) = self.value.next() {
            return Some(b);
        }
        if self.n > 0 {
            self.n -= 1;
            return Some(self.pad);
        }
        None
    }
}

/// Writes a value of `units` units in the field's encoding, checking its characters.
pub(crate) fn encode_value(
    spec: &FieldSpec,
    value: impl Iterator<Item = u8>,
    units: usize,
    out: &mut Vec<u8>,
) -> Result<(), PackErrorKind> {
    let kind = spec.kind;
    let typed = |b: u8| -> Result<u8, PackErrorKind> {
        let ok = match kind {
            FieldType::Numeric => b.is_ascii_digit(),
            FieldType::Hex => b.is_ascii_hexdigit(),
            _ => true,
        };
        if ok {
            Ok(b)
        } else {
            Err(PackErrorKind::InvalidByte { byte: b })
        }
    };
    match spec.enc {
        Encoding::Ascii | Encoding::Binary => {
            if matches!(kind, FieldType::Numeric | FieldType::Hex) {
                for b in value {
                    out.push(typed(b)?);
                }
            } else {
                out.extend(value);
            }
        }
        Encoding::Ebcdic037 | Encoding::Ebcdic1047 => {
            let table = if spec.enc == Encoding::Ebcdic037 {
                &LATIN1_TO_CP037
            } else {
                &LATIN1_TO_CP1047
            };
            for b in value {
                out.push(table[usize::from(typed(b)?)]);
            }
        }
        Encoding::Bcd | Encoding::Lbcd | Encoding::Track2 => {
            let odd = units % 2 == 1;
            let pad = match spec.enc {
                Encoding::Track2 => track2_default_pad(spec),
                _ => pad_nibble(spec, 0),
            };
            let mut nibbles = value.map(|c| match c {
                b'0'..=b'9' => Ok(c - b'0'),
                b'=' | b'D' | b'd' if spec.enc == Encoding::Track2 => Ok(0xD),
                _ => Err(PackErrorKind::InvalidByte { byte: c }),
            });
            let mut first = true;
            loop {
                let hi = if first && odd && spec.enc == Encoding::Bcd {
                    pad
                } else {
                    match nibbles.next() {
                        Some(n) => n?,
                        None => break,
                    }
                };
                first = false;
                let lo = match nibbles.next() {
                    Some(n) => n?,
                    None => pad,
                };
                out.push((hi << 4) | lo);
            }
        }
        Encoding::HexToAscii => {
            for b in value {
                out.push(HEX[usize::from(b >> 4)]);
                out.push(HEX[usize::from(b & 0xF)]);
            }
        }
        Encoding::AsciiHexToBytes => {
            let mut hi = None;
            for c in value {
                let Some(d) = hex_digit(c) else {
                    return Err(PackErrorKind::InvalidByte { byte: c });
                };
                match hi.take() {
                    None => hi = Some(d),
                    Some(h) => out.push((h << 4) | d),
                }
            }
        }
    }
    Ok(())
}
