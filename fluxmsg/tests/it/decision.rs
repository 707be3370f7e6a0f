//! Tests: decisions. A hop's decision (`d`) round-trips through CBOR, serde, the JSON view
//! and `MsgView`; hops without one encode as before; the setter cuts a long decision at a
//! character boundary, and the encoder and decoder refuse one over the limit with a typed
//! error.

use fluxmsg::{Codec, DecodeErrorKind, Error, FluxMsg, Hop, Id, LimitExceeded, MsgView, Text};

fn routed() -> FluxMsg {
    FluxMsg::builder()
        .id(Id::U64(42))
        .hop(Hop::new(1u64, 2u64, 10))
        .hop(
            Hop::new(3u64, 4u64, 11)
                .with_decision("rule 0 -> out_visa_b (failover: out_visa_a unavailable)"),
        )
        .hop(Hop::new(5u64, 6u64, 12).with_decision("default -> out_other"))
        .build()
}

#[track_caller]
fn check_round_trip(msg: &FluxMsg) {
    let codec = Codec::new();
    let bytes = codec.encode_to_vec(msg).expect("encodes");
    assert_eq!(&codec.decode(&bytes).expect("decodes"), msg, "CBOR");
    let mut via_serde = Vec::new();
    ciborium::into_writer(msg, &mut via_serde).expect("ciborium writes");
    assert_eq!(via_serde, bytes, "ciborium writes the codec's bytes");
    let back: FluxMsg = ciborium::from_reader(&bytes[..]).expect("ciborium reads");
    assert_eq!(&back, msg, "serde");
    let view = MsgView::new(&bytes).expect("view");
    assert_eq!(view.path_len(), Ok(msg.path.len()));
    for (i, hop) in msg.path.iter().enumerate() {
        assert_eq!(view.hop(i), Ok(Some(hop.clone())), "view hop {i}");
    }
}

#[test]
fn decisions_round_trip() {
    check_round_trip(&routed());
    check_round_trip(&FluxMsg::builder().hop(Hop::new(1u64, 2u64, 3)).build());
    // An empty decision is a decision.
    check_round_trip(
        &FluxMsg::builder()
            .hop(Hop::new(1u64, 2u64, 3).with_decision(""))
            .build(),
    );
}

#[test]
fn a_hop_without_a_decision_is_the_go_fluxrig_hop() {
    let msg = FluxMsg::builder().hop(Hop::new(1u64, 2u64, 3)).build();
    assert_eq!(
        msg.to_cbor().expect("encodes"),
        b"\xa1\x64path\x81\xa3\x61g\x01\x61p\x02\x61t\x03"
    );
    let decided = FluxMsg::builder()
        .hop(Hop::new(1u64, 2u64, 3).with_decision("pass"))
        .build();
    assert_eq!(
        decided.to_cbor().expect("encodes"),
        b"\xa1\x64path\x81\xa4\x61d\x64pass\x61g\x01\x61p\x02\x61t\x03"
    );
}

#[test]
fn the_setter_cuts_at_a_character_boundary() {
    let limit = fluxmsg::Limits::DEFAULT.max_decision_len();
    assert_eq!(limit, 128);
    // 127 ASCII bytes, then a two-byte character that would cross the limit.
    let text = format!("{}é and more", "a".repeat(127));
    let hop = Hop::new(1u64, 2u64, 3).with_decision(text.as_str());
    assert_eq!(hop.decision.as_deref(), Some("a".repeat(127).as_str()));
    let mut hop = Hop::new(1u64, 2u64, 3);
    hop.set_decision("é".repeat(64));
    assert_eq!(hop.decision.as_deref().map(str::len), Some(128));
    hop.set_decision(Text::from("short"));
    assert_eq!(hop.decision.as_deref(), Some("short"));
    check_round_trip(&FluxMsg::builder().hop(hop).build());
}

#[test]
fn the_encoder_refuses_a_decision_over_the_limit() {
    let codec = Codec::builder()
        .max_decision_len(8)
        .build()
        .expect("limits");
    let mut msg = FluxMsg::builder().id(Id::U64(1)).build();
    msg.path.push(Hop::new(1u64, 2u64, 3));
    // Set through the field, past the setter's cut.
    msg.path.push(Hop {
        decision: Some(Text::from("123456789")),
        ..Hop::new(4u64, 5u64, 6)
    });
    let want = Error::Limit(LimitExceeded::Decision { len: 9, max: 8 });
    let mut buf = vec![0xee];
    assert_eq!(codec.encode(&msg, &mut buf), Err(want.clone()));
    assert_eq!(buf, [0xee], "a failed encode leaves the buffer as it was");
    assert_eq!(codec.encode_envelope_first(&msg, &mut buf), Err(want));
    assert_eq!(buf, [0xee]);
    assert_eq!(
        Codec::new().encode(&msg, &mut buf).map(|n| n > 0),
        Ok(true),
        "within the default limit"
    );
    msg.path[1].decision = Some(Text::from("12345678"));
    codec.encode_to_vec(&msg).expect("at the limit");
}

#[test]
fn the_decoder_refuses_a_decision_over_the_limit() {
    let msg = FluxMsg::builder()
        .hop(Hop::new(1u64, 2u64, 3).with_decision("a".repeat(100)))
        .build();
    let bytes = msg.to_cbor().expect("encodes");
    let strict = Codec::builder()
        .max_decision_len(99)
        .build()
        .expect("limits");
    let err = strict.decode(&bytes).expect_err("over the limit");
    let kind = DecodeErrorKind::Limit(LimitExceeded::Decision { len: 100, max: 99 });
    assert_eq!(err.decode_kind(), Some(&kind));
    assert_eq!(err.offset(), Some(10), "at the decision's head");
    assert_eq!(
        err.to_string(),
        "invalid fluxMsg at byte 10: hop decision of 100 bytes, at most 99 allowed"
    );
    let view = MsgView::with_limits(&bytes, strict.limits()).expect("view");
    assert_eq!(view.hop(0), Err(err));
}

#[cfg(feature = "json")]
#[test]
fn decisions_in_the_json_view() {
    use fluxmsg::json;
    use serde_json::json;

    let msg = routed();
    let v = json::to_json(&msg);
    assert_eq!(
        v["path"],
        json!([
            {"g": 1, "p": 2, "t": 10},
            {"g": 3, "p": 4, "t": 11, "d": "rule 0 -> out_visa_b (failover: out_visa_a unavailable)"},
            {"g": 5, "p": 6, "t": 12, "d": "default -> out_other"},
        ])
    );
    assert_eq!(json::from_json(&v), Ok(msg.clone()));
    assert_eq!(
        json::from_str(&json::to_string(&msg)).map(|m| m.to_cbor()),
        Ok(msg.to_cbor())
    );
    // `null` is no decision; anything but a string is refused where it is.
    let null = json::from_str(r#"{"path": [{"g": 1, "p": 2, "t": 3, "d": null}]}"#);
    assert_eq!(null.map(|m| m.path[0].decision.clone()), Ok(None));
    let err = json::from_str(r#"{"path": [{"g": 1, "p": 2, "t": 3, "d": 7}]}"#)
        .expect_err("not a string");
    assert_eq!(
        err.to_string(),
        "invalid JSON fluxMsg at `path[0].d`: expected a string, found the number 7"
    );
}
