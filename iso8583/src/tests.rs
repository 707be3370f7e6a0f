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
    assert!(crate::luhn_valid(b"4111111111111111"));
    assert!(!crate::luhn_valid(b"4111111111111112"));
    assert!(!crate::luhn_valid(b""));
    assert!(!crate::luhn_valid(b"411111111111111x"));
    for (payload, check) in [
        ("411111111111111", 1),
        ("555555555555444", 4),
        ("7992739871", 3),
        ("37828224631000", 5),
        ("", 0),
    ] {
        assert_eq!(
            crate::luhn_check_digit(payload.as_bytes()),
            Some(check),
            "{payload}"
        );
    }
}

#[test]
fn replaced_values_are_reclaimed() {
    use crate::message::{Field, FieldRef, Message, Subfield};
    use crate::spec::SubKey;

    let mut msg = Message::new("0100");
    msg.set(2, "4111111111111111");
    for i in 0..2_000u32 {
        msg.set(43, format!("{i:040}"));
        msg.set(
            55,
            Field::Composite(vec![Subfield::new(SubKey::Tag(0x9F02), format!("{i:012}"))]),
        );
    }
    // The buffer holds the live values and at most about as much garbage again.
    assert!(msg.buf.len() < 4 * 1024, "{}", msg.buf.len());
    assert!(msg.subs.len() < 200, "{}", msg.subs.len());
    assert_eq!(msg.mti(), "0100");
    assert_eq!(msg.text(2), Some("4111111111111111"));
    assert_eq!(msg.text(43), Some(format!("{:040}", 1_999).as_str()));
    assert_eq!(
        msg.get(55).and_then(|f| f.subfield(SubKey::Tag(0x9F02))),
        Some(&b"000000001999"[..])
    );
    assert_eq!(msg.remove(2), Some(Field::from("4111111111111111")));
    assert_eq!(msg.numbers().collect::<Vec<_>>(), [43, 55]);
    assert!(matches!(msg.get(55), Some(FieldRef::Composite(s)) if s.len() == 1));
    let copy = msg.clone();
    msg.set_mti("0110");
    msg.set_mti("0100");
    assert_eq!(msg, copy);
}
