//! The model and the codec's promises, as users rely on them.

use bytes::Bytes;
use fluxmsg::{
    Codec, DecodeErrorKind, Error, FluxMsg, Hop, Id, LimitExceeded, Map, PathErrorKind, Text, Value,
};
use proptest::prelude::*;

use crate::strategy;

fn payment() -> FluxMsg {
    let mut b = FluxMsg::builder()
        .id(Id::U64(0x0001_2345_6789))
        .ts(1_767_225_600_000_000_000)
        .raw(vec![0x5a; 200]);
    for i in 2..22 {
        b = b
            .data_path(&format!("iso8583.field.{i}"), format!("{i:012}"))
            .expect("path");
    }
    for i in 0..8 {
        b = b.meta(format!("k{i}"), format!("v{i}"));
    }
    for i in 0..3 {
        b = b.hop(Hop::new(
            Id::U64(i),
            Id::U64(i + 100),
            1_767_225_600_000_000_000 + i as i64,
        ));
    }
    b.build()
}

#[test]
fn equal_messages_give_equal_bytes_whatever_the_insertion_order() {
    let mut a = FluxMsg::new();
    a.meta.insert("zz", "1".into());
    a.meta.insert("a", "2".into());
    let mut b = FluxMsg::new();
    b.meta.insert("a", "2".into());
    b.meta.insert("zz", "1".into());
    assert_eq!(a.to_cbor().expect("a"), b.to_cbor().expect("b"));
}

#[test]
fn buffer_is_reused_and_appended_to() {
    let codec = Codec::new();
    let mut buf = vec![0xff];
    let n = codec.encode(&payment(), &mut buf).expect("encode");
    assert_eq!(buf.len(), n + 1);
    assert_eq!(codec.decode(&buf[1..]).expect("decode"), payment());
}

#[test]
fn shared_decode_does_not_copy_raw_or_byte_values() {
    let mut msg = payment();
    msg.raw = Bytes::from(vec![7u8; 64 * 1024]);
    msg.data.insert("icc", Value::from(vec![9u8; 300]));
    let input = Bytes::from(msg.to_cbor().expect("encode"));
    let back = Codec::new().decode_shared(&input).expect("decode");
    assert_eq!(back, msg);
    let span = input.as_ptr_range();
    assert!(span.contains(&back.raw.as_ptr()), "raw was copied");
    let icc = back.data.get("icc").and_then(Value::as_bytes).expect("icc");
    assert!(span.contains(&icc.as_ptr()), "byte value was copied");
    // The copying decoder really copies.
    let copied = Codec::new().decode(&input).expect("decode");
    assert!(!span.contains(&copied.raw.as_ptr()));
}

#[test]
fn unsorted_input_reads_and_re_encodes_canonically() {
    // {"ts": 1, "id": 2, "meta": {"b": "x", "a": "y"}}, keys out of order.
    let input = [
        &[0xa3][..],
        b"\x62ts\x01\x62id\x02\x64meta\xa2\x61b\x61x\x61a\x61y",
    ]
    .concat();
    let msg = FluxMsg::from_cbor(&input).expect("decode");
    assert_eq!(msg.id, Some(Id::U64(2)));
    assert_eq!(msg.meta.keys().collect::<Vec<_>>(), ["a", "b"]);
    let canonical = [
        &[0xa3][..],
        b"\x62id\x02\x62ts\x01\x64meta\xa2\x61a\x61y\x61b\x61x",
    ]
    .concat();
    assert_eq!(msg.to_cbor().expect("encode"), canonical);
}

#[test]
fn unknown_fields_are_kept_in_canonical_position() {
    // {"x": 1, "id": 2, "zzzzzzzz": "later"}
    let input = [&[0xa3][..], b"\x61x\x01\x62id\x02\x68zzzzzzzz\x65later"].concat();
    let msg = FluxMsg::from_cbor(&input).expect("decode");
    assert_eq!(msg.extra.get("x"), Some(&Value::from(1u8)));
    assert_eq!(msg.to_cbor().expect("encode"), input);
    let mut bad = msg;
    bad.extra.insert("ts", Value::Null);
    assert_eq!(bad.to_cbor(), Err(Error::ReservedKey("ts".to_owned())));
}

#[test]
fn limits_belong_to_the_codec_instance() {
    let strict = Codec::builder()
        .max_hops(2)
        .max_size(64)
        .max_depth(2)
        .build()
        .expect("limits");
    let lax = Codec::new();
    let msg = payment();
    let bytes = lax.encode_to_vec(&msg).expect("default limits allow it");
    let mut buf = vec![1, 2, 3];
    let err = strict.encode(&msg, &mut buf).expect_err("3 hops > 2");
    assert_eq!(err, Error::Limit(LimitExceeded::Hops { len: 3, max: 2 }));
    assert_eq!(
        buf,
        [1, 2, 3],
        "a failed encode leaves the buffer as it was"
    );
    let err = strict.decode(&bytes).expect_err("too large");
    assert!(matches!(
        err.decode_kind(),
        Some(DecodeErrorKind::Limit(LimitExceeded::Size { max: 64, .. }))
    ));

    let mut deep = FluxMsg::new();
    deep.data.set_path("a.b.c", 1u8).expect("path");
    assert_eq!(
        strict.encode_to_vec(&deep),
        Err(Error::Limit(LimitExceeded::Depth { max: 2 }))
    );
    let bytes = lax.encode_to_vec(&deep).expect("encode");
    let err = strict.decode(&bytes).expect_err("too deep");
    assert!(matches!(
        err.decode_kind(),
        Some(DecodeErrorKind::Limit(LimitExceeded::Depth { max: 2 }))
    ));
}

#[test]
fn invalid_limits_are_refused() {
    assert!(matches!(
        Codec::builder().max_depth(0).build(),
        Err(Error::InvalidLimits(_))
    ));
    assert!(matches!(
        Codec::builder()
            .max_depth(fluxmsg::MAX_DEPTH_CEILING + 1)
            .build(),
        Err(Error::InvalidLimits(_))
    ));
    assert!(matches!(
        Codec::builder().max_size(0).build(),
        Err(Error::InvalidLimits(_))
    ));
}

#[test]
fn errors_name_the_byte_offset() {
    // {"id": <text>}: the id value starts at byte 4.
    let err = FluxMsg::from_cbor(b"\xa1\x62id\x61x").expect_err("text id");
    assert_eq!(err.offset(), Some(4));
    assert_eq!(
        err.to_string(),
        "invalid fluxMsg at byte 4: field `id` must be an unsigned integer or a 16-byte byte string"
    );
}

#[test]
fn dotted_paths() {
    let mut data = Map::new();
    data.set_path("iso8583.field.11", "123456").expect("set");
    data.set_path("iso8583.field.4", "000000010000")
        .expect("set");
    assert_eq!(
        data.get_path("iso8583.field.11").and_then(Value::as_str),
        Some("123456")
    );
    assert_eq!(
        data.get_path("iso8583.field"),
        data.get("iso8583").and_then(|v| v.as_map()?.get("field"))
    );
    assert_eq!(
        data.set_path("iso8583.field.11", "654321")
            .expect("replace"),
        Some(Value::from("123456"))
    );
    let before = data.clone();
    let err = data
        .set_path("iso8583.field.11.x", 1u8)
        .expect_err("conflict");
    assert_eq!(
        err,
        Error::Path {
            path: "iso8583.field.11.x".to_owned(),
            kind: PathErrorKind::KeyConflict {
                at: "iso8583.field.11".to_owned(),
                found: "text",
            },
        }
    );
    assert_eq!(data, before, "a failed set changes nothing");
    // An empty key is a key, but a path never reaches it.
    data.insert("", fluxmsg::Value::from(1u8));
    assert_eq!(data.get_path(""), None);
    assert_eq!(data.remove_path(""), None);
    data.remove("");
    for bad in ["", ".a", "a.", "a..b"] {
        assert!(matches!(
            data.set_path(bad, 1u8),
            Err(Error::Path {
                kind: PathErrorKind::EmptySegment,
                ..
            })
        ));
    }
    assert_eq!(
        data.remove_path("iso8583.field.4"),
        Some(Value::from("000000010000"))
    );
    assert_eq!(data.get_path("iso8583.field.4"), None);
    assert_eq!(data.remove_path("iso8583.nope.x"), None);
}

#[test]
fn ids_in_both_forms() {
    let uuid: Id = "0190a5b2-7c3d-7e4f-8a1b-2c3d4e5f6a7b"
        .parse()
        .expect("uuid");
    let msg = FluxMsg::builder()
        .id(uuid)
        .ref_id(Id::U64(u64::MAX))
        .build();
    let bytes = msg.to_cbor().expect("encode");
    assert_eq!(&bytes[..5], b"\xa2\x62id\x50");
    assert_eq!(FluxMsg::from_cbor(&bytes).expect("decode"), msg);
    for bad in [
        "",
        "-1",
        "18446744073709551616",
        "0190a5b2-7c3d-7e4f-8a1b-2c3d4e5f6a7",
        "0190a5b2x7c3d-7e4f-8a1b-2c3d4e5f6a7b",
    ] {
        assert!(matches!(bad.parse::<Id>(), Err(Error::ParseId(_))), "{bad}");
    }
}

#[test]
fn meta_bytes_fall_back_to_hex() {
    let mut msg = FluxMsg::new();
    msg.set_meta_bytes("iso8583.raw_header", &[0x16, 0x01, 0xff]);
    msg.set_meta_bytes("peer.ip", b"10.0.0.1");
    assert_eq!(
        msg.meta.get("iso8583.raw_header").map(Text::as_str),
        Some("hex:1601ff")
    );
    assert_eq!(msg.meta.get("peer.ip").map(Text::as_str), Some("10.0.0.1"));
}

proptest! {
    #[test]
    fn decode_inverts_encode(msg in strategy::message()) {
        let codec = Codec::new();
        let bytes = codec.encode_to_vec(&msg).expect("encode");
        prop_assert_eq!(&codec.decode(&bytes).expect("decode"), &msg);
        let shared = Bytes::from(bytes.clone());
        prop_assert_eq!(&codec.decode_shared(&shared).expect("decode"), &msg);
        // Canonical bytes re-encode identically.
        prop_assert_eq!(codec.encode_to_vec(&codec.decode(&bytes).expect("decode")).expect("encode"), bytes);
    }

    #[test]
    fn a_pack_gives_back_each_message_and_is_never_taken_for_one(
        msgs in proptest::collection::vec(strategy::message(), 0..8),
    ) {
        let codec = Codec::new();
        let encoded: Vec<Vec<u8>> = msgs
            .iter()
            .map(|m| codec.encode_to_vec(m).expect("encode"))
            .collect();
        let mut payload = Vec::new();
        fluxmsg::pack::write(encoded.iter().map(Vec::as_slice), &mut payload);
        prop_assert!(fluxmsg::pack::is_pack(&payload));
        prop_assert!(payload.len() <= fluxmsg::pack::size_bound(msgs.len(), encoded.iter().map(Vec::len).sum()));
        let parts = fluxmsg::pack::parts(&Bytes::from(payload.clone())).expect("a pack");
        prop_assert_eq!(parts.len(), msgs.len());
        for (part, msg) in parts.iter().zip(&msgs) {
            prop_assert_eq!(&codec.decode_shared(part).expect("decode"), msg);
            // A single message is never a pack, and a pack never a message.
            prop_assert!(!fluxmsg::pack::is_pack(part));
        }
        prop_assert!(codec.decode(&payload).is_err());
        // Cut short anywhere, a pack is refused, never half read.
        for cut in 0..payload.len() {
            prop_assert!(fluxmsg::pack::parts(&Bytes::copy_from_slice(&payload[..cut])).is_err());
        }
    }

    #[test]
    fn envelope_first_bytes_decode_to_the_same_message(msg in strategy::message()) {
        let codec = Codec::new();
        let mut first = Vec::new();
        codec.encode_envelope_first(&msg, &mut first).expect("encode");
        let canonical = codec.encode_to_vec(&msg).expect("encode");
        prop_assert_eq!(first.len(), canonical.len(), "the same fields, in another order");
        prop_assert_eq!(&codec.decode(&first).expect("decode"), &msg);
        let view = fluxmsg::MsgView::new(&first).expect("a view");
        prop_assert_eq!(view.id().expect("id"), msg.id);
        for (k, v) in msg.meta.iter() {
            prop_assert_eq!(view.meta(k).expect("meta"), Some(v.as_str()));
        }
    }
}

#[test]
fn envelope_first_puts_meta_before_data() {
    let msg = payment();
    let mut bytes = Vec::new();
    Codec::new()
        .encode_envelope_first(&msg, &mut bytes)
        .expect("encode");
    let at = |key: &[u8]| {
        bytes
            .windows(key.len())
            .position(|w| w == key)
            .expect("the key is there")
    };
    assert!(at(b"\x64meta") < at(b"\x64data"));
    assert!(at(b"\x64data") < at(b"\x64path"));
}

proptest! {
    /// Building a map in one go (`collect`, `extend`: one sort) gives the map that inserting
    /// each entry in turn gives, repeated keys included (the last value wins).
    #[test]
    fn extend_is_insert_in_turn(
        start in proptest::collection::vec(("[a-d]{0,3}", any::<u8>()), 0..20),
        more in proptest::collection::vec(("[a-d]{0,3}", any::<u8>()), 0..40),
    ) {
        let mut one_by_one: fluxmsg::Map<u8> = fluxmsg::Map::new();
        for (k, v) in start.iter().chain(&more) {
            one_by_one.insert(k.as_str(), *v);
        }
        let mut at_once: fluxmsg::Map<u8> = start.iter().map(|(k, v)| (k.as_str(), *v)).collect();
        at_once.extend(more.iter().map(|(k, v)| (k.as_str(), *v)));
        prop_assert_eq!(at_once, one_by_one);
    }
}
