//! Packs: several encoded messages in one payload, so that a transport moves (stores, acks,
//! delivers) them as one.
//!
//! A pack is a CBOR array of byte strings, each holding the encoding of one fluxMsg, with
//! definite lengths and shortest heads. A fluxMsg is a CBOR map, so the first byte tells a pack
//! (major type 4) from a single message (major type 5) and a reader takes both: see
//! [`is_pack`]. The messages inside are not decoded here; [`parts`] lends each one's bytes.
//!
//! # Example
//!
//! ```
//! use fluxmsg::{Codec, FluxMsg, bytes::Bytes, pack};
//!
//! let codec = Codec::new();
//! let one = codec.encode_to_vec(&FluxMsg::builder().data("n", 1).build())?;
//! let two = codec.encode_to_vec(&FluxMsg::builder().data("n", 2).build())?;
//!
//! let mut payload = Vec::new();
//! pack::write([one.as_slice(), two.as_slice()], &mut payload);
//! assert!(pack::is_pack(&payload));
//! assert!(!pack::is_pack(&one));
//!
//! let parts = pack::parts(&Bytes::from(payload))?;
//! assert_eq!(parts.len(), 2);
//! assert_eq!(codec.decode_shared(&parts[1])?.data.get("n"), Some(&2.into()));
//! # Ok::<(), fluxmsg::Error>(())
//! ```

use bytes::Bytes;

use crate::{DecodeErrorKind, Error};

const MAJOR_BYTES: u8 = 2;
const MAJOR_ARRAY: u8 = 4;

/// Whether `payload` is a pack rather than a single message (its first byte is an array's).
pub fn is_pack(payload: &[u8]) -> bool {
    payload.first().is_some_and(|b| b >> 5 == MAJOR_ARRAY)
}

/// The bytes a pack of `count` parts whose encodings total `bytes` takes, at most (the heads
/// are at most 9 bytes each).
pub fn size_bound(count: usize, bytes: usize) -> usize {
    bytes.saturating_add(count.saturating_add(1).saturating_mul(9))
}

/// Appends a pack of `parts` (each the encoding of one message) to `buf`.
pub fn write<'a, I>(parts: I, buf: &mut Vec<u8>)
where
    I: IntoIterator<Item = &'a [u8]>,
    I::IntoIter: ExactSizeIterator,
{
    let parts = parts.into_iter();
    head(MAJOR_ARRAY, parts.len() as u64, buf);
    for part in parts {
        head(MAJOR_BYTES, part.len() as u64, buf);
        buf.extend_from_slice(part);
    }
}

/// The encoded messages of the pack `payload`, each a slice of its buffer (no copy).
///
/// # Errors
///
/// [`Error::Decode`] when `payload` is not a whole pack: not an array, an item that is not a
/// byte string, indefinite or reserved lengths, a length past the end, or bytes after the
/// last item.
pub fn parts(payload: &Bytes) -> Result<Vec<Bytes>, Error> {
    let mut pos = 0;
    let count = read_head(payload, &mut pos, MAJOR_ARRAY, "an array of byte strings")?;
    // Each item takes at least one byte: a count past what is left is refused before any
    // allocation follows it.
    let left = (payload.len() - pos) as u64;
    if count > left {
        return Err(decode_error(pos, DecodeErrorKind::UnexpectedEnd));
    }
    let mut parts = Vec::with_capacity(count as usize);
    for _ in 0..count {
        let at = pos;
        let len = read_head(payload, &mut pos, MAJOR_BYTES, "a byte string")?;
        let end = usize::try_from(len)
            .ok()
            .and_then(|len| pos.checked_add(len))
            .filter(|&end| end <= payload.len())
            .ok_or_else(|| decode_error(at, DecodeErrorKind::UnexpectedEnd))?;
        parts.push(payload.slice(pos..end));
        pos = end;
    }
    if pos != payload.len() {
        return Err(decode_error(pos, DecodeErrorKind::TrailingBytes));
    }
    Ok(parts)
}

fn head(major: u8, n: u64, buf: &mut Vec<u8>) {
    let major = major << 5;
    match n {
        0..=23 => buf.push(major | n as u8),
        24..=0xff => buf.extend_from_slice(&[major | 24, n as u8]),
        0x100..=0xffff => {
            buf.push(major | 25);
            buf.extend_from_slice(&(n as u16).to_be_bytes());
        }
        0x1_0000..=0xffff_ffff => {
            buf.push(major | 26);
            buf.extend_from_slice(&(n as u32).to_be_bytes());
        }
        _ => {
            buf.push(major | 27);
            buf.extend_from_slice(&n.to_be_bytes());
        }
    }
}

/// Reads the head of an item of type `major` at `pos` and returns its argument.
fn read_head(
    input: &[u8],
    pos: &mut usize,
    major: u8,
    expected: &'static str,
) -> Result<u64, Error> {
    let at = *pos;
    let first = *input
        .get(at)
        .ok_or_else(|| decode_error(at, DecodeErrorKind::UnexpectedEnd))?;
    if first >> 5 != major {
        return Err(decode_error(
            at,
            DecodeErrorKind::TypeMismatch {
                field: "pack",
                expected,
            },
        ));
    }
    let info = first & 0x1f;
    let width = match info {
        0..=23 => {
            *pos = at + 1;
            return Ok(u64::from(info));
        }
        24 => 1,
        25 => 2,
        26 => 4,
        27 => 8,
        31 => return Err(decode_error(at, DecodeErrorKind::IndefiniteLength)),
        _ => return Err(decode_error(at, DecodeErrorKind::Reserved(info))),
    };
    let bytes = input
        .get(at + 1..at + 1 + width)
        .ok_or_else(|| decode_error(at, DecodeErrorKind::UnexpectedEnd))?;
    *pos = at + 1 + width;
    Ok(bytes.iter().fold(0, |n, b| (n << 8) | u64::from(*b)))
}

fn decode_error(offset: usize, kind: DecodeErrorKind) -> Error {
    Error::Decode { offset, kind }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn heads_are_shortest_and_read_back() {
        for len in [0usize, 23, 24, 255, 256, 65_535, 65_536] {
            let part = vec![7u8; len];
            let mut buf = Vec::new();
            write([part.as_slice(), &[1, 2][..]], &mut buf);
            assert!(buf.len() <= size_bound(2, len + 2));
            let parts = parts(&Bytes::from(buf)).expect("a pack");
            assert_eq!(parts[0].as_ref(), part.as_slice());
            assert_eq!(parts[1].as_ref(), &[1, 2]);
        }
    }

    #[test]
    fn broken_packs_are_refused() {
        let cases: [&[u8]; 8] = [
            &[],
            &[0xa0],                         // a map: a single message, not a pack
            &[0x81, 0x61, 0x61],             // a text where a byte string belongs
            &[0x9f],                         // indefinite array
            &[0x82, 0x41, 0x00],             // two announced, one there
            &[0x81, 0x45, 0x00],             // a length past the end
            &[0x81, 0x41, 0x00, 0x00],       // trailing bytes
            &[0x9b, 0xff, 0xff, 0xff, 0xff], // a truncated head
        ];
        for case in cases {
            assert!(
                matches!(parts(&Bytes::from_static(case)), Err(Error::Decode { .. })),
                "{case:x?}"
            );
        }
        // A huge count is refused without allocating for it.
        let huge = [0x9b, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff];
        assert!(parts(&Bytes::copy_from_slice(&huge)).is_err());
    }
}
