//! Unit tests of the wire primitives.

use crate::spec::{Prefix, PrefixKind};
use crate::wire;

#[test]
fn prefixes_round_trip() {
    for kind in [
        PrefixKind::Ascii,
        PrefixKind::Bcd,
        PrefixKind::Binary,
        PrefixKind::Ebcdic,
        PrefixKind::Hex,
    ] {
        for digits in 1..=4u8 {
            let prefix = Prefix { kind, digits };
            for len in [0, 1, 9, 10, 99, 255, 999, 4095, 9999] {
                if len > prefix.max_len() {
                    continue;
                }
                let mut out = Vec::new();
                wire::write_prefix(prefix, len, &mut out);
                assert_eq!(out.len(), prefix.wire_len(), "{prefix} {len}");
                assert_eq!(
                    wire::read_prefix(prefix, &out),
                    Ok((len, out.len())),
                    "{prefix}"
                );
            }
        }
    }
}

#[test]
fn bcd_prefix_layout() {
    let mut out = Vec::new();
    wire::write_prefix(
        Prefix {
            kind: PrefixKind::Bcd,
            digits: 3,
        },
        123,
        &mut out,
    );
    assert_eq!(out, [0x01, 0x23]);
    out.clear();
    wire::write_prefix(
        Prefix {
            kind: PrefixKind::Hex,
            digits: 2,
        },
        300,
        &mut out,
    );
    assert_eq!(out, b"012C");
}

#[test]
fn luhn() {
    assert!(crate::mask::luhn(b"4111111111111111"));
    assert!(!crate::mask::luhn(b"4111111111111112"));
}
