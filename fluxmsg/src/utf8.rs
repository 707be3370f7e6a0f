//! UTF-8 validation with a fast path for ASCII, the common case on the wire.
//!
//! This is the crate's one use of `unsafe`.
#![allow(unsafe_code)]

/// `bytes` as `&str`, or `None` when it is not valid UTF-8.
#[inline]
pub(crate) fn from_utf8(bytes: &[u8]) -> Option<&str> {
    if bytes.is_ascii() {
        // SAFETY: every sequence of ASCII bytes is valid UTF-8.
        Some(unsafe { std::str::from_utf8_unchecked(bytes) })
    } else {
        std::str::from_utf8(bytes).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::from_utf8;

    #[test]
    fn agrees_with_std() {
        let cases: [&[u8]; 8] = [
            b"",
            b"0100",
            b"iso8583.field.11",
            "caf\u{e9} \u{1f4b3}".as_bytes(),
            b"\xff",
            b"abc\xc3",
            b"0123456789abcdef\x80",
            b"\xed\xa0\x80",
        ];
        for c in cases {
            assert_eq!(from_utf8(c), std::str::from_utf8(c).ok(), "{c:?}");
        }
    }
}
