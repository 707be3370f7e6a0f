//! Cutting frames out of a byte stream, and framing payloads for writing: a delimiter, or a
//! length header of 2 or 4 bytes (binary big- or little-endian, or ASCII digits; counting
//! the payload only, or itself too).

use bytes::{Buf, Bytes, BytesMut};
use sdk::GearError;

/// How frames are delimited on the wire.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Codec {
    /// The frame is followed by these bytes (never empty).
    Delimiter(Bytes),
    /// The frame is preceded by its length.
    Length(LengthHeader),
}

/// A length header: its size, how the number is written, and whether it counts itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct LengthHeader {
    /// 2 or 4 bytes.
    pub(crate) size: usize,
    pub(crate) format: LengthFormat,
    /// The length counts the header's own bytes too.
    pub(crate) inclusive: bool,
}

/// How a length header writes its number.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum LengthFormat {
    /// Binary, most significant byte first.
    BigEndian,
    /// Binary, least significant byte first.
    LittleEndian,
    /// ASCII decimal digits, zero-padded (`0123`).
    Ascii,
}

impl LengthHeader {
    /// A 2- or 4-byte big-endian header that counts the payload only (`io_tcp`'s prefixes).
    pub(crate) const fn big_endian(size: usize) -> LengthHeader {
        LengthHeader {
            size,
            format: LengthFormat::BigEndian,
            inclusive: false,
        }
    }

    /// The longest payload the header can announce.
    pub(crate) fn max_payload(&self) -> u64 {
        let max = match (self.format, self.size) {
            (LengthFormat::Ascii, 2) => 99,
            (LengthFormat::Ascii, _) => 9999,
            (_, 2) => u64::from(u16::MAX),
            (_, _) => u64::from(u32::MAX),
        };
        if self.inclusive {
            max.saturating_sub(self.size as u64)
        } else {
            max
        }
    }

    fn describe(&self) -> String {
        let format = match self.format {
            LengthFormat::BigEndian => "big-endian",
            LengthFormat::LittleEndian => "little-endian",
            LengthFormat::Ascii => "ASCII",
        };
        format!("{}-byte {format} length header", self.size)
    }

    /// The payload's length announced by `header` (exactly `size` bytes); `None` when it
    /// is not a length (ASCII that is not digits, or an inclusive length shorter than the
    /// header).
    fn read(&self, header: &[u8]) -> Option<usize> {
        let value = match self.format {
            LengthFormat::BigEndian => header
                .iter()
                .fold(0_u64, |acc, &b| (acc << 8) | u64::from(b)),
            LengthFormat::LittleEndian => header
                .iter()
                .rev()
                .fold(0_u64, |acc, &b| (acc << 8) | u64::from(b)),
            LengthFormat::Ascii => {
                if !header.iter().all(u8::is_ascii_digit) {
                    return None;
                }
                header
                    .iter()
                    .fold(0_u64, |acc, &b| acc * 10 + u64::from(b - b'0'))
            }
        };
        let value = if self.inclusive {
            value.checked_sub(self.size as u64)?
        } else {
            value
        };
        Some(usize::try_from(value).unwrap_or(usize::MAX))
    }

    /// Appends the header of a `len`-byte payload; false if it does not fit.
    fn write(&self, len: usize, out: &mut Vec<u8>) -> bool {
        if u64::try_from(len).map_or(true, |n| n > self.max_payload()) {
            return false;
        }
        let value = if self.inclusive { len + self.size } else { len };
        match self.format {
            LengthFormat::Ascii => {
                out.extend_from_slice(format!("{value:0width$}", width = self.size).as_bytes());
            }
            LengthFormat::BigEndian => {
                let bytes = (value as u64).to_be_bytes();
                out.extend_from_slice(&bytes[8 - self.size..]);
            }
            LengthFormat::LittleEndian => {
                let bytes = (value as u64).to_le_bytes();
                out.extend_from_slice(&bytes[..self.size]);
            }
        }
        true
    }
}

impl Codec {
    /// Checks that a payload of `len` bytes can be framed (its length fits the header).
    pub(crate) fn check(&self, len: usize) -> Result<(), GearError> {
        let Codec::Length(header) = self else {
            return Ok(());
        };
        let max = header.max_payload();
        if u64::try_from(len).map_or(true, |n| n > max) {
            return Err(GearError::new("frame_too_long").with_detail(format_args!(
                "{len} bytes do not fit a {} (at most {max})",
                header.describe()
            )));
        }
        Ok(())
    }

    /// The bytes a frame takes on the wire besides its payload: its header or delimiter.
    pub(crate) fn overhead(&self) -> usize {
        match self {
            Codec::Delimiter(delimiter) => delimiter.len(),
            Codec::Length(header) => header.size,
        }
    }

    /// Appends the frame of `payload` to `out`; false (and nothing appended) if it does not
    /// fit the length header.
    pub(crate) fn encode(&self, payload: &[u8], out: &mut Vec<u8>) -> bool {
        match self {
            Codec::Delimiter(delimiter) => {
                out.extend_from_slice(payload);
                out.extend_from_slice(delimiter);
            }
            Codec::Length(header) => {
                if !header.write(payload.len(), out) {
                    return false;
                }
                out.extend_from_slice(payload);
            }
        }
        true
    }
}

/// A frame the decoder refuses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refused {
    /// Longer than `max_frame`: at least `len` bytes.
    Oversized { len: usize },
    /// A length header that is not a length (ASCII that is not digits, or an inclusive
    /// length shorter than the header).
    BadHeader,
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
    pub(crate) fn decode(&mut self, buf: &mut BytesMut) -> Result<Option<Bytes>, Refused> {
        let header = match &self.codec {
            Codec::Delimiter(delimiter) => {
                return decode_delimited(buf, delimiter, &mut self.scanned, self.max_frame)
                    .map_err(|len| Refused::Oversized { len });
            }
            Codec::Length(header) => header,
        };
        let Some(prefix) = buf.get(..header.size) else {
            return Ok(None);
        };
        let len = header.read(prefix).ok_or(Refused::BadHeader)?;
        let header = header.size;
        if len > self.max_frame {
            return Err(Refused::Oversized { len });
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
) -> Result<Option<Bytes>, usize> {
    let from = (*scanned).min(buf.len());
    if let Some(at) = find(&buf[from..], delimiter) {
        let len = from + at;
        *scanned = 0;
        if len > max_frame {
            return Err(len);
        }
        let frame = take(buf, len);
        buf.advance(delimiter.len());
        return Ok(Some(frame));
    }
    // The last `delimiter.len() - 1` bytes may be the start of a delimiter.
    *scanned = buf.len().saturating_sub(delimiter.len().saturating_sub(1));
    if *scanned > max_frame {
        return Err(*scanned);
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

    use super::{Codec, Decoder, LengthFormat, LengthHeader, Refused};

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
                    Err(Refused::Oversized { len }) => {
                        result = Err(len);
                        break 'feed;
                    }
                    Err(Refused::BadHeader) => {
                        result = Err(usize::MAX);
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

    const P2: Codec = Codec::Length(LengthHeader::big_endian(2));
    const P4: Codec = Codec::Length(LengthHeader::big_endian(4));

    fn header(size: usize, format: LengthFormat, inclusive: bool) -> Codec {
        Codec::Length(LengthHeader {
            size,
            format,
            inclusive,
        })
    }

    #[test]
    fn length_headers_little_endian_ascii_and_inclusive() {
        let le = header(2, LengthFormat::LittleEndian, false);
        check(le.clone(), 16, &[b"\x02\x00hi"], Ok(&[b"hi"]));
        let ascii = header(4, LengthFormat::Ascii, false);
        check(
            ascii.clone(),
            16,
            &[b"0002hi00", b"01!"],
            Ok(&[b"hi", b"!"]),
        );
        check(ascii.clone(), 16, &[b"00x2hi"], Err(usize::MAX));
        let inclusive = header(2, LengthFormat::BigEndian, true);
        check(inclusive.clone(), 16, &[b"\x00\x04hi"], Ok(&[b"hi"]));
        check(inclusive.clone(), 16, &[b"\x00\x01"], Err(usize::MAX));
        let mut out = Vec::new();
        assert!(le.encode(b"hi", &mut out));
        assert!(ascii.encode(b"!", &mut out));
        assert!(inclusive.encode(b"ok", &mut out));
        assert!(header(4, LengthFormat::LittleEndian, true).encode(b"x", &mut out));
        assert_eq!(out, b"\x02\x00hi0001!\x00\x04ok\x05\x00\x00\x00x");
        assert!(!header(2, LengthFormat::Ascii, false).encode(&[0; 100], &mut out));
        assert!(header(2, LengthFormat::Ascii, false).check(99).is_ok());
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
            P2,
            16,
            &[b"\x00\x02hi\x00", b"\x01", b"!"],
            Ok(&[b"hi", b"!"]),
        );
        check(
            P4,
            16,
            &[b"\x00\x00\x00\x03abc\x00\x00\x00\x00"],
            Ok(&[b"abc", b""]),
        );
        check(P2, 16, &[b"\x01\x00"], Err(256));
        check(P4, 16, &[b"\xff\xff\xff\xff"], Err(0xffff_ffff));
    }

    #[test]
    fn encoding_adds_the_prefix_or_delimiter() {
        let mut out = Vec::new();
        assert!(P2.encode(b"hi", &mut out));
        assert!(P4.encode(b"!", &mut out));
        assert!(delimiter(b"\r\n").encode(b"ok", &mut out));
        assert_eq!(out, b"\x00\x02hi\x00\x00\x00\x01!ok\r\n");
        assert!(!P2.encode(&vec![0; 70_000], &mut out));
        assert_eq!(
            P2.check(70_000).map_err(|e| e.reason().to_owned()),
            Err("frame_too_long".to_owned())
        );
        assert!(P2.check(65_535).is_ok());
    }
}
