//! Cutting frames out of a byte stream, and framing payloads for writing.

use bytes::{Buf, Bytes, BytesMut};
use sdk::GearError;

/// How frames are delimited on the wire.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Codec {
    /// The frame is followed by these bytes (never empty).
    Delimiter(Bytes),
    /// The frame is preceded by its length on 2 bytes, big-endian.
    Prefix2,
    /// The frame is preceded by its length on 4 bytes, big-endian.
    Prefix4,
}

impl Codec {
    /// Checks that a payload of `len` bytes can be framed (its length fits the prefix).
    pub(crate) fn check(&self, len: usize) -> Result<(), GearError> {
        let (max, name) = match self {
            Codec::Delimiter(_) => return Ok(()),
            Codec::Prefix2 => (u64::from(u16::MAX), "2-byte"),
            Codec::Prefix4 => (u64::from(u32::MAX), "4-byte"),
        };
        if u64::try_from(len).map_or(true, |n| n > max) {
            return Err(GearError::new("frame_too_long").with_detail(format_args!(
                "{len} bytes do not fit a {name} length prefix (at most {max})"
            )));
        }
        Ok(())
    }

    /// The bytes a frame takes on the wire besides its payload: its prefix or delimiter.
    pub(crate) fn overhead(&self) -> usize {
        match self {
            Codec::Delimiter(delimiter) => delimiter.len(),
            Codec::Prefix2 => 2,
            Codec::Prefix4 => 4,
        }
    }

    /// Appends the frame of `payload` to `out`; false (and nothing appended) if it does not
    /// fit the length prefix.
    pub(crate) fn encode(&self, payload: &[u8], out: &mut Vec<u8>) -> bool {
        match self {
            Codec::Delimiter(delimiter) => {
                out.extend_from_slice(payload);
                out.extend_from_slice(delimiter);
            }
            Codec::Prefix2 => {
                let Ok(len) = u16::try_from(payload.len()) else {
                    return false;
                };
                out.extend_from_slice(&len.to_be_bytes());
                out.extend_from_slice(payload);
            }
            Codec::Prefix4 => {
                let Ok(len) = u32::try_from(payload.len()) else {
                    return false;
                };
                out.extend_from_slice(&len.to_be_bytes());
                out.extend_from_slice(payload);
            }
        }
        true
    }
}

/// A frame longer than `max_frame`: at least `len` bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Oversized {
    pub(crate) len: usize,
}

/// Cuts frames from the bytes read so far, never holding more than one frame's worth of
/// bytes beyond `max_frame`.
#[derive(Debug)]
pub(crate) struct Decoder {
    codec: Codec,
    max_frame: usize,
    /// Delimiter framing: how many leading bytes of the buffer are known to hold no
    /// delimiter start, so that each byte is searched once.
    scanned: usize,
}

impl Decoder {
    pub(crate) fn new(codec: Codec, max_frame: usize) -> Decoder {
        Decoder {
            codec,
            max_frame,
            scanned: 0,
        }
    }

    /// The next complete frame of `buf`, taken out of it; `None` when more bytes are needed.
    pub(crate) fn decode(&mut self, buf: &mut BytesMut) -> Result<Option<Bytes>, Oversized> {
        let header = match &self.codec {
            Codec::Delimiter(delimiter) => {
                return decode_delimited(buf, delimiter, &mut self.scanned, self.max_frame);
            }
            Codec::Prefix2 => 2,
            Codec::Prefix4 => 4,
        };
        let Some(prefix) = buf.get(..header) else {
            return Ok(None);
        };
        let len = prefix
            .iter()
            .fold(0_u64, |acc, &b| (acc << 8) | u64::from(b));
        let len = usize::try_from(len).unwrap_or(usize::MAX);
        if len > self.max_frame {
            return Err(Oversized { len });
        }
        if buf.len() - header < len {
            // No reservation ahead: memory grows with the bytes a peer actually sends.
            return Ok(None);
        }
        buf.advance(header);
        Ok(Some(take(buf, len)))
    }
}

/// The next frame of `buf` that ends with `delimiter`; `scanned` is how many leading bytes are
/// known to hold no delimiter start.
fn decode_delimited(
    buf: &mut BytesMut,
    delimiter: &[u8],
    scanned: &mut usize,
    max_frame: usize,
) -> Result<Option<Bytes>, Oversized> {
    let from = (*scanned).min(buf.len());
    if let Some(at) = find(&buf[from..], delimiter) {
        let len = from + at;
        *scanned = 0;
        if len > max_frame {
            return Err(Oversized { len });
        }
        let frame = take(buf, len);
        buf.advance(delimiter.len());
        return Ok(Some(frame));
    }
    // The last `delimiter.len() - 1` bytes may be the start of a delimiter.
    *scanned = buf.len().saturating_sub(delimiter.len().saturating_sub(1));
    if *scanned > max_frame {
        return Err(Oversized { len: *scanned });
    }
    Ok(None)
}

/// The first `len` bytes of `buf`, copied out: a message kept downstream must not pin the
/// connection's read buffer (which is then reused in place).
fn take(buf: &mut BytesMut, len: usize) -> Bytes {
    let frame = Bytes::copy_from_slice(&buf[..len]);
    buf.advance(len);
    frame
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    match needle {
        [byte] => haystack.iter().position(|b| b == byte),
        _ => haystack.windows(needle.len()).position(|w| w == needle),
    }
}

#[cfg(test)]
mod tests {
    use bytes::{Bytes, BytesMut};

    use super::{Codec, Decoder, Oversized};

    /// Feeds `chunks` one by one and returns every frame cut, or the first error.
    #[track_caller]
    fn check(codec: Codec, max_frame: usize, chunks: &[&[u8]], expect: Result<&[&[u8]], usize>) {
        let mut decoder = Decoder::new(codec, max_frame);
        let mut buf = BytesMut::new();
        let mut frames: Vec<Bytes> = Vec::new();
        let mut result = Ok(());
        'feed: for chunk in chunks {
            buf.extend_from_slice(chunk);
            loop {
                match decoder.decode(&mut buf) {
                    Ok(Some(frame)) => frames.push(frame),
                    Ok(None) => break,
                    Err(Oversized { len }) => {
                        result = Err(len);
                        break 'feed;
                    }
                }
            }
        }
        match (result, expect) {
            (Ok(()), Ok(want)) => {
                let got: Vec<&[u8]> = frames.iter().map(|f| &f[..]).collect();
                assert_eq!(got, want);
            }
            (Err(len), Err(want)) => assert_eq!(len, want),
            (got, want) => panic!("got {got:?} (frames {frames:?}), want {want:?}"),
        }
    }

    fn delimiter(d: &'static [u8]) -> Codec {
        Codec::Delimiter(Bytes::from_static(d))
    }

    #[test]
    fn delimiter_frames_across_and_within_reads() {
        check(
            delimiter(b"\n"),
            64,
            &[b"a\nbc", b"d\n\n"],
            Ok(&[b"a", b"bcd", b""]),
        );
        check(
            delimiter(b"\r\n"),
            64,
            &[b"ab\r", b"\ncd\r\n"],
            Ok(&[b"ab", b"cd"]),
        );
        check(delimiter(b"\r\n"), 64, &[b"a\rb\r\n"], Ok(&[b"a\rb"]));
    }

    #[test]
    fn delimiter_frames_longer_than_max_are_refused_without_buffering() {
        check(delimiter(b"\n"), 3, &[b"abc\n"], Ok(&[b"abc"]));
        check(delimiter(b"\n"), 3, &[b"abcd\n"], Err(4));
        check(delimiter(b"\n"), 3, &[b"ab", b"cd"], Err(4));
        // A partial delimiter at the end does not count towards the frame.
        check(delimiter(b"\r\n"), 3, &[b"abc\r"], Ok(&[]));
    }

    #[test]
    fn length_prefixes_are_big_endian_and_exclude_themselves() {
        check(
            Codec::Prefix2,
            16,
            &[b"\x00\x02hi\x00", b"\x01", b"!"],
            Ok(&[b"hi", b"!"]),
        );
        check(
            Codec::Prefix4,
            16,
            &[b"\x00\x00\x00\x03abc\x00\x00\x00\x00"],
            Ok(&[b"abc", b""]),
        );
        check(Codec::Prefix2, 16, &[b"\x01\x00"], Err(256));
        check(Codec::Prefix4, 16, &[b"\xff\xff\xff\xff"], Err(0xffff_ffff));
    }

    #[test]
    fn encoding_adds_the_prefix_or_delimiter() {
        let mut out = Vec::new();
        assert!(Codec::Prefix2.encode(b"hi", &mut out));
        assert!(Codec::Prefix4.encode(b"!", &mut out));
        assert!(delimiter(b"\r\n").encode(b"ok", &mut out));
        assert_eq!(out, b"\x00\x02hi\x00\x00\x00\x01!ok\r\n");
        assert!(!Codec::Prefix2.encode(&vec![0; 70_000], &mut out));
        assert_eq!(
            Codec::Prefix2
                .check(70_000)
                .map_err(|e| e.reason().to_owned()),
            Err("frame_too_long".to_owned())
        );
        assert!(Codec::Prefix2.check(65_535).is_ok());
    }
}
