//! Properties: pack then unpack gives the message back, and unpack then pack gives the bytes
//! back; arbitrary bytes never panic.

use iso8583::{Field, FieldRef, Message, MessageRef, SubKey, Subfield};
use proptest::prelude::*;

use crate::support::spec;

fn digits(min: usize, max: usize) -> impl Strategy<Value = String> {
    proptest::collection::vec(0u8..10, min..=max)
        .prop_map(|d| d.into_iter().map(|x| char::from(b'0' + x)).collect())
}

fn text(min: usize, max: usize) -> impl Strategy<Value = String> {
    proptest::collection::vec(0x20u8..0x7F, min..=max)
        .prop_map(|d| d.into_iter().map(char::from).collect())
}

fn bytes(min: usize, max: usize) -> impl Strategy<Value = Vec<u8>> {
    proptest::collection::vec(any::<u8>(), min..=max)
}

/// Messages of the binary test spec: BCD, LBCD, Track 2, EBCDIC, binary and hex fields,
/// BER-TLV with unknown tags, any subset of fields, up to the tertiary bitmap.
fn binary_message() -> impl Strategy<Value = Message> {
    (
        (
            proptest::option::of(digits(1, 19)),
            proptest::option::of(digits(6, 6)),
            proptest::option::of(digits(1, 12)),
            proptest::option::of(digits(3, 3)),
            proptest::option::of(digits(1, 11)),
            proptest::option::of((digits(12, 19), digits(4, 17))),
            proptest::option::of(text(12, 12)),
            proptest::option::of(text(8, 8)),
        ),
        (
            proptest::option::of(text(0, 40)),
            proptest::option::of(text(0, 200)),
            proptest::option::of(bytes(8, 8)),
            proptest::option::of((digits(1, 6), bytes(0, 40), 0x01u8..0x1F)),
            proptest::option::of(bytes(0, 99)),
            proptest::option::of(proptest::collection::vec(0u8..16, 0..20)),
            proptest::option::of(digits(1, 11)),
            proptest::option::of(text(0, 9)),
        ),
    )
        .prop_map(|(a, b)| {
            let mut m = Message::new("0200");
            if let Some(v) = a.0 {
                m.set(2, v);
            }
            if let Some(v) = a.1 {
                m.set(3, v);
            }
            if let Some(v) = a.2 {
                m.set(4, v);
            }
            if let Some(v) = a.3 {
                m.set(22, v);
            }
            if let Some(v) = a.4 {
                m.set(32, v);
            }
            if let Some((pan, rest)) = a.5 {
                m.set(35, format!("{pan}={rest}"));
            }
            if let Some(v) = a.6 {
                m.set(37, v);
            }
            if let Some(v) = a.7 {
                m.set(41, v);
            }
            if let Some(v) = b.0 {
                m.set(43, v);
            }
            if let Some(v) = b.1 {
                m.set(48, v);
            }
            if let Some(v) = b.2 {
                m.set(52, v);
            }
            if let Some((amount, unknown, tag_low)) = b.3 {
                let mut amount12 = "0".repeat(12 - amount.len());
                amount12.push_str(&amount);
                m.set(
                    55,
                    Field::Composite(vec![
                        Subfield {
                            key: SubKey::Tag(0x9F00 | u32::from(tag_low) | 0x20),
                            value: unknown,
                            unknown: true,
                            length_bytes: 0,
                        },
                        Subfield::new(SubKey::Tag(0x9F02), amount12),
                    ]),
                );
            }
            if let Some(v) = b.4 {
                m.set(61, v);
            }
            if let Some(v) = b.5 {
                let hex: String = v.iter().map(|n| format!("{n:X}")).collect();
                let hex = if hex.len() % 2 == 1 {
                    format!("{hex}0")
                } else {
                    hex
                };
                m.set(62, hex);
            }
            if let Some(v) = b.6 {
                m.set(100, v);
            }
            if let Some(v) = b.7 {
                m.set(150, v);
            }
            m
        })
}

/// The value pack pads to the fixed length, as unpack reads it back.
fn normalized(mut m: Message) -> Message {
    if let Some(v) = m.get(4).and_then(FieldRef::bytes) {
        let mut padded = vec![b'0'; 12 - v.len()];
        padded.extend_from_slice(v);
        m.set(4, padded);
    }
    m
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn binary_pack_unpack(msg in binary_message()) {
        let spec = spec("binary");
        let bytes = spec.pack_to_vec(&msg).expect("pack");
        let back = spec.unpack(&bytes).expect("unpack");
        prop_assert_eq!(&back, &normalized(msg));
        prop_assert_eq!(&spec.pack_to_vec(&back).expect("repack"), &bytes);
        let mut borrowed = MessageRef::new();
        spec.unpack_borrowed(&bytes, &mut borrowed).expect("borrowed");
        prop_assert!(borrowed.numbers().eq(back.numbers()));
    }

    #[test]
    fn ascii_pack_unpack(
        pan in digits(12, 19),
        stan in digits(6, 6),
        name in text(40, 40),
        extra in proptest::option::of(text(0, 999)),
        tertiary in proptest::option::of(text(3, 3)),
        tlv in proptest::collection::vec((0x01u8..0x1F, bytes(0, 130)), 0..6),
    ) {
        let spec = spec("ascii");
        let mut msg = Message::new("0100");
        msg.set(2, pan);
        msg.set(11, stan);
        msg.set(43, name);
        if let Some(v) = extra { msg.set(62, v); }
        if let Some(v) = tertiary { msg.set(130, v); }
        if !tlv.is_empty() {
            // Unknown tags, some long enough for a long-form length.
            let subs: Vec<Subfield> = tlv.into_iter().map(|(t, v)| Subfield {
                key: SubKey::Tag(0xDF00 | u32::from(t)),
                value: v,
                unknown: true,
                length_bytes: 0,
            }).collect();
            msg.set(55, Field::Composite(subs));
        }
        match spec.pack_to_vec(&msg) {
            Ok(bytes) => {
                let back = spec.unpack(&bytes).expect("unpack");
                prop_assert_eq!(&back, &msg);
                prop_assert_eq!(spec.pack_to_vec(&back).expect("repack"), bytes);
            }
            // DE 55 over its 999 bytes is the only way this message fails to pack.
            Err(e) => prop_assert_eq!(e.field, Some(55)),
        }
    }

    #[test]
    fn arbitrary_bytes_never_panic(input in bytes(0, 400)) {
        for name in ["ascii", "binary", "moov:spec87ascii", "moov:spec87hex"] {
            let spec = spec(name);
            let mut borrowed = MessageRef::new();
            let owned = spec.unpack(&input);
            let b = spec.unpack_borrowed(&input, &mut borrowed);
            if let Ok(msg) = owned {
                // What unpacks packs back to the same bytes.
                prop_assert_eq!(spec.pack_to_vec(&msg).expect("repack"), input.clone());
                prop_assert!(b.is_ok());
            }
        }
    }

    #[test]
    fn mutated_messages_never_panic(i in 0usize..400, byte in any::<u8>(), cut in 0usize..400) {
        let spec = spec("ascii");
        let doc: toml::Table = toml::from_str(include_str!("../../testdata/vectors.toml")).expect("toml");
        let input = crate::support::hex(doc["case"][1]["hex"].as_str().expect("hex"));
        let mut bad = input;
        let at = i % bad.len();
        bad[at] = byte;
        bad.truncate(cut.max(1).min(bad.len()));
        if let Ok(msg) = spec.unpack(&bad) {
            prop_assert_eq!(spec.pack_to_vec(&msg).expect("repack"), bad);
        }
    }
}
