//! The serde path (through ciborium) and the fast codec agree byte for byte, both ways.

use fluxmsg::{Codec, FluxMsg, Value};
use proptest::prelude::*;

use crate::strategy;

fn ciborium_bytes<T: serde::Serialize>(v: &T) -> Vec<u8> {
    let mut out = Vec::new();
    ciborium::into_writer(v, &mut out).expect("ciborium encodes every message");
    out
}

#[track_caller]
fn check(msg: &FluxMsg) {
    let codec = Codec::new();
    let ours = codec.encode_to_vec(msg).expect("encode");
    let theirs = ciborium_bytes(msg);
    assert_eq!(ours, theirs, "fast path and ciborium disagree on {msg:?}");
    let via_serde: FluxMsg = ciborium::from_reader(ours.as_slice()).expect("ciborium decodes");
    assert_eq!(&via_serde, msg);
    assert_eq!(&codec.decode(&theirs).expect("decode"), msg);
}

proptest! {
    #[test]
    fn messages_agree(msg in strategy::message()) {
        check(&msg);
    }

    #[test]
    fn values_agree(v in strategy::value()) {
        let codec = Codec::new();
        let mut ours = Vec::new();
        codec.encode_value(&v, &mut ours).expect("encode");
        prop_assert_eq!(&ours, &ciborium_bytes(&v));
        let back: Value = ciborium::from_reader(ours.as_slice()).expect("decode");
        prop_assert_eq!(&back, &v);
        prop_assert_eq!(&codec.decode_value(&ours).expect("decode"), &v);
    }
}

#[test]
fn default_message_is_an_empty_map() {
    check(&FluxMsg::default());
    assert_eq!(FluxMsg::default().to_cbor().expect("encode"), [0xa0]);
}

#[test]
fn go_shaped_message_reads_through_serde() {
    // Every field present, as the Go fluxrig writes them: nulls for nil maps and slices.
    let go = [
        &[0xaa][..],
        b"\x62id\x50",
        &[7; 16],
        b"\x66ref_id\x50",
        &[0; 16],
        b"\x65trace\x60",
        b"\x66src_id\x50",
        &[0; 16],
        b"\x64meta\xf6",
        b"\x64data\xf6",
        b"\x65flags\x00",
        b"\x63raw\xf6",
        b"\x64path\xf6",
        b"\x62ts\x1a\x00\x01\x00\x00",
    ]
    .concat();
    let fast = Codec::new().decode(&go).expect("fast path");
    let serde: FluxMsg = ciborium::from_reader(go.as_slice()).expect("serde path");
    assert_eq!(fast, serde);
    assert_eq!(fast.id, Some(fluxmsg::Id::Uuid([7; 16])));
    assert_eq!(fast.ts, 65536);
}

#[test]
fn large_byte_strings_read_through_serde() {
    // ciborium reads byte strings past its 4 KiB scratch buffer only as owned buffers.
    let mut msg = FluxMsg::builder().raw(vec![0xa5; 64 * 1024]).build();
    msg.data.insert("blob", Value::from(vec![1u8; 10_000]));
    check(&msg);
}
