//! The mapping to fluxMsg and back.

use fluxmsg::{FluxMsg, Value};
use iso8583::{MapError, Message};

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

    // Back, through CBOR: the same bytes, unknown tags in their place (the long-form length
    // of 9F10 is the one thing a fluxMsg does not carry, so it comes back short).
    let cbor = flux.to_cbor().expect("cbor");
    let flux = fluxmsg::Codec::new().decode(&cbor).expect("decode");
    let mut out = Vec::new();
    spec.pack_fluxmsg(&flux, &mut out).expect("pack");
    let mut want = bytes;
    let at = want
        .windows(3)
        .position(|w| w == [0x9F, 0x10, 0x81])
        .expect("9F10");
    want.remove(at + 2);
    // DE 55's length prefix shrinks by one.
    let tlv = want
        .windows(4)
        .position(|w| w == [0x82, 0x02, 0x5C, 0x00])
        .expect("DE 55");
    let len: usize = std::str::from_utf8(&want[tlv - 3..tlv])
        .expect("digits")
        .parse()
        .expect("len");
    want[tlv - 3..tlv].copy_from_slice(format!("{:03}", len - 1).as_bytes());
    assert_eq!(out, want);
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
