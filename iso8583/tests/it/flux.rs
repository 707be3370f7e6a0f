//! The mapping to fluxMsg and back.

use fluxmsg::{FluxMsg, Value};
use iso8583::{FieldRef, MapError, Message};

use crate::support::{hex, spec};

fn vector(i: usize) -> Vec<u8> {
    let doc: toml::Table =
        toml::from_str(include_str!("../../testdata/vectors.toml")).expect("toml");
    hex(doc["case"][i]["hex"].as_str().expect("hex"))
}

fn text<'a>(msg: &'a FluxMsg, path: &str) -> Option<&'a str> {
    msg.data.get_path(path).and_then(Value::as_str)
}

#[test]
fn fields_aliases_metadata_and_back() {
    let spec = spec("ascii");
    let bytes = vector(1);
    let flux = spec.unpack_to_fluxmsg(&bytes).expect("unpack");
    assert_eq!(flux.raw.as_ref(), bytes.as_slice());
    assert_eq!(text(&flux, "iso8583.field.2"), Some("4111111111111111"));
    assert_eq!(text(&flux, "iso8583.field.4"), Some("000000010000"));
    assert_eq!(text(&flux, "card.pan"), Some("4111111111111111"));
    assert_eq!(text(&flux, "amount.transaction"), Some("000000010000"));
    assert_eq!(text(&flux, "iso8583.field.63.2"), Some("ABCDEFGH"));
    assert_eq!(text(&flux, "iso8583.field.55.9F02"), Some("000000010000"));
    assert_eq!(text(&flux, "emv.amount"), Some("000000010000"));
    let pin = flux
        .data
        .get_path("iso8583.field.52")
        .and_then(Value::as_bytes);
    assert_eq!(pin.map(|b| b.as_ref()), Some(&hex("0123456789ABCDEF")[..]));
    let unknown = flux
        .data
        .get_path("iso8583.unknown_tags.55.9F7C")
        .and_then(Value::as_bytes);
    assert_eq!(unknown.map(|b| b.as_ref()), Some(&[1u8, 2, 3][..]));
    assert_eq!(
        text(&flux, "iso8583.tlv_order.55"),
        Some("82 9F02 9F7C 9F26 5F2A 9F10")
    );
    let meta = |k: &str| flux.meta.get(k).map(|t| t.as_str().to_owned());
    assert_eq!(meta("iso8583.mti").as_deref(), Some("0100"));
    assert_eq!(meta("iso8583.mti_class").as_deref(), Some("01"));
    assert_eq!(meta("codec.spec_id").as_deref(), Some("test-ascii"));
    assert_eq!(meta("codec.spec_version").as_deref(), Some("1.0.0"));
    assert_eq!(meta("codec.spec_hash").as_deref(), Some(spec.hash()));

    // The length of 9F10 came in the long form (`81 03`), which is kept.
    assert_eq!(text(&flux, "iso8583.tlv_lengths.55"), Some("9F10:2"));

    // Back, through CBOR: the same bytes, unknown tags in their place, the long-form length
    // as it came.
    let cbor = flux.to_cbor().expect("cbor");
    let flux = fluxmsg::Codec::new().decode(&cbor).expect("decode");
    let mut out = Vec::new();
    spec.pack_fluxmsg(&flux, &mut out).expect("pack");
    assert_eq!(out, bytes);
}

#[test]
fn tlv_length_forms_and_unknown_tags_survive_fluxmsg() {
    let spec = spec("ascii");
    // DE 55 with a defined tag in a two-byte long form (`82 00 06`), an unknown tag in the
    // long form (`81 02`), a defined one in the short form, and a long value (0x90 bytes,
    // where `81 90` is the shortest form).
    let mut de55 = vec![0x9F, 0x02, 0x82, 0x00, 0x06, 0, 0, 0, 1, 0, 0];
    de55.extend_from_slice(&[0x9F, 0x7C, 0x81, 0x02, 0xAB, 0xCD]);
    de55.extend_from_slice(&[0x82, 0x02, 0x5C, 0x00]);
    de55.extend_from_slice(&[0xDF, 0x01, 0x81, 0x90]);
    de55.extend(std::iter::repeat_n(0x5A, 0x90));
    let mut msg = Message::new("0100");
    msg.set(2, "4111111111111111");
    let mut bytes = spec.pack_to_vec(&msg).expect("pack");
    // Field 55 set by hand: bit 55 of the bitmap, then LLL and the TLV bytes.
    let bitmap_at = 4;
    let mut bitmap = u64::from_str_radix(
        std::str::from_utf8(&bytes[bitmap_at..bitmap_at + 16]).expect("hex"),
        16,
    )
    .expect("bitmap");
    bitmap |= 1 << (64 - 55);
    bytes.splice(bitmap_at..bitmap_at + 16, format!("{bitmap:016X}").bytes());
    bytes.extend_from_slice(format!("{:03}", de55.len()).as_bytes());
    bytes.extend_from_slice(&de55);

    let unpacked = spec.unpack(&bytes).expect("unpack");
    let forms: Vec<_> = unpacked
        .get(55)
        .and_then(FieldRef::subfields)
        .expect("DE 55")
        .iter()
        .map(|s| (s.key.to_string(), s.length_bytes, s.unknown))
        .collect();
    assert_eq!(
        forms,
        [
            ("9F02".to_owned(), 3, false),
            ("9F7C".to_owned(), 2, true),
            ("82".to_owned(), 1, false),
            ("DF01".to_owned(), 2, true),
        ]
    );
    let flux = spec.unpack_to_fluxmsg(&bytes).expect("to fluxMsg");
    // Only the lengths longer than they need to be are listed.
    assert_eq!(text(&flux, "iso8583.tlv_lengths.55"), Some("9F02:3 9F7C:2"));
    let cbor = flux.to_cbor().expect("cbor");
    let flux = fluxmsg::Codec::new().decode(&cbor).expect("decode");
    let mut out = Vec::new();
    spec.pack_fluxmsg(&flux, &mut out).expect("pack");
    assert_eq!(out, bytes);
}

#[test]
fn aliases_win_and_errors_name_the_path() {
    let spec = spec("ascii");
    let mut flux = FluxMsg::new();
    flux.meta.insert("iso8583.mti", "0200".into());
    flux.data
        .set_path("iso8583.field.2", "4000000000000002")
        .expect("path");
    flux.data
        .set_path("card.pan", "4111111111111111")
        .expect("path");
    flux.data
        .set_path("iso8583.field.4", 10000u32)
        .expect("path");
    let msg = spec.from_fluxmsg(&flux).expect("map");
    assert_eq!(msg.text(2), Some("4111111111111111"));
    assert_eq!(msg.text(4), Some("10000"));
    let bytes = spec.pack_to_vec(&msg).expect("pack");
    assert_eq!(
        spec.unpack(&bytes).expect("unpack").text(4),
        Some("000000010000")
    );

    flux.data.set_path("iso8583.field.66", "x").expect("path");
    assert!(
        matches!(spec.from_fluxmsg(&flux), Err(MapError::Unknown(p)) if p == "iso8583.field.66")
    );
    assert!(matches!(
        spec.from_fluxmsg(&FluxMsg::new()),
        Err(MapError::NoMti)
    ));
    let mut m = Message::new("0800");
    m.set(70, "301");
    assert_eq!(spec.validate(&m), []);
}

#[test]
fn validation() {
    let spec = spec("ascii");
    let mut m = Message::new("0100");
    m.set(39, "99");
    let v = spec.validate(&m);
    assert!(v.contains(&iso8583::Violation::Missing(2)), "{v:?}");
    assert!(
        v.iter()
            .any(|x| matches!(x, iso8583::Violation::NotInSet { field: 39, .. }))
    );
    m.set(39, "00");
    assert_eq!(
        spec.value_info(39, "00"),
        Some((Some("Approved"), Some("approved")))
    );
}
