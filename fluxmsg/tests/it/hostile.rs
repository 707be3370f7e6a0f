//! Tests: hostile. Bytes an attacker chooses (random, mutated, truncated, deeply nested, with
//! huge announced lengths) and messages the encoder must refuse.

use bytes::Bytes;
use fluxmsg::{
    Codec, DecodeErrorKind, Error, FluxMsg, Hop, Id, LimitExceeded, MAX_DEPTH_CEILING, Value,
};
use proptest::collection::vec;
use proptest::prelude::*;
use proptest::sample::Index;

use crate::strategy;

/// What the decoders may do with any input: give a message (or value) that re-encodes and
/// decodes back to itself, or a decoding error that points inside the input. Never panic.
///
/// Returns the message `decode` gave, if any.
#[track_caller]
fn check(input: &[u8]) -> Option<FluxMsg> {
    let codec = Codec::new();
    let copied = codec.decode(input);
    let shared = codec.decode_shared(&Bytes::copy_from_slice(input));
    assert_eq!(copied, shared, "decode and decode_shared disagree");
    let value = codec.decode_value(input);
    for err in [copied.as_ref().err(), value.as_ref().err()]
        .into_iter()
        .flatten()
    {
        match err {
            Error::Decode { offset, .. } => {
                assert!(*offset <= input.len(), "{err} in {} bytes", input.len());
            }
            other => panic!("decoding gave a non-decoding error: {other:?}"),
        }
    }
    if let Ok(v) = &value {
        let mut bytes = Vec::new();
        codec
            .encode_value(v, &mut bytes)
            .expect("a decoded value encodes");
        let again = codec
            .decode_value(&bytes)
            .expect("an encoded value decodes");
        assert_eq!(&again, v, "value round trip");
    }
    let msg = copied.ok()?;
    let bytes = codec
        .encode_to_vec(&msg)
        .expect("a decoded message encodes");
    assert!(
        bytes.len() <= input.len(),
        "the canonical form is never longer"
    );
    let again = codec.decode(&bytes).expect("an encoded message decodes");
    assert_eq!(again, msg, "decode, encode, decode changed the message");
    let twice = codec.encode_to_vec(&again).expect("encodes again");
    assert_eq!(twice, bytes, "canonical bytes are not stable");
    Some(msg)
}

/// Asserts that every decoder refuses `input` with `kind` at `offset`.
#[track_caller]
fn check_refused(codec: &Codec, input: &[u8], as_value: bool, kind: &DecodeErrorKind, at: usize) {
    let want = Error::Decode {
        offset: at,
        kind: kind.clone(),
    };
    if as_value {
        assert_eq!(codec.decode_value(input), Err(want));
    } else {
        assert_eq!(codec.decode(input), Err(want.clone()));
        assert_eq!(
            codec.decode_shared(&Bytes::copy_from_slice(input)),
            Err(want)
        );
    }
}

/// CBOR fragments that random inputs are assembled from, so that they get past the first
/// byte: heads of every kind, the envelope's keys, and hostile lengths.
const FRAGMENTS: &[&[u8]] = &[
    b"\xa0",
    b"\xa1",
    b"\xa2",
    b"\xa3",
    b"\xaa",
    b"\xb8\x02",
    b"\xbb\xff\xff\xff\xff\xff\xff\xff\xff",
    b"\x80",
    b"\x81",
    b"\x82",
    b"\x9b\x00\x00\x00\x01\x00\x00\x00\x00",
    b"\x9f",
    b"\xbf",
    b"\xff",
    b"\x62id",
    b"\x62ts",
    b"\x63raw",
    b"\x64data",
    b"\x64meta",
    b"\x64path",
    b"\x65flags",
    b"\x65trace",
    b"\x66ref_id",
    b"\x66src_id",
    b"\x61g",
    b"\x61p",
    b"\x61t",
    b"\x61x",
    b"\x60",
    b"\x00",
    b"\x17",
    b"\x18\xff",
    b"\x1b\xff\xff\xff\xff\xff\xff\xff\xff",
    b"\x20",
    b"\x3b\x80\x00\x00\x00\x00\x00\x00\x00",
    b"\x40",
    b"\x41\x00",
    b"\x50\x01\x90\xa5\xb2\x7c\x3d\x7e\x4f\x8a\x1b\x2c\x3d\x4e\x5f\x6a\x7b",
    b"\x5b\xff\xff\xff\xff\xff\xff\xff\xff",
    b"\x7b\x00\x00\x00\x00\x00\x00\x00\x05",
    b"\x62\xc3\x28",
    b"\xf4",
    b"\xf5",
    b"\xf6",
    b"\xf7",
    b"\xf9\x7e\x00",
    b"\xfa\x47\xc3\x50\x00",
    b"\xfb\x3f\xf1\x99\x99\x99\x99\x99\x9a",
    b"\xc1",
    b"\xd9\xd9\xf7",
    b"\x1c",
    b"\xfe",
];

pub(crate) fn fragments() -> impl Strategy<Value = Vec<u8>> {
    vec(
        prop_oneof![
            4 => proptest::sample::select(FRAGMENTS).prop_map(<[u8]>::to_vec),
            1 => vec(any::<u8>(), 1..4),
        ],
        0..64,
    )
    .prop_map(|parts| parts.concat())
}

/// One change to a valid encoding.
#[derive(Debug, Clone)]
pub(crate) enum Mutation {
    Flip(Index, u8),
    Set(Index, u8),
    Insert(Index, u8),
    Delete(Index),
    Truncate(Index),
}

pub(crate) fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        (any::<Index>(), 0u8..8).prop_map(|(i, bit)| Mutation::Flip(i, bit)),
        (any::<Index>(), any::<u8>()).prop_map(|(i, b)| Mutation::Set(i, b)),
        (any::<Index>(), any::<u8>()).prop_map(|(i, b)| Mutation::Insert(i, b)),
        any::<Index>().prop_map(Mutation::Delete),
        any::<Index>().prop_map(Mutation::Truncate),
    ]
}

pub(crate) fn mutate(bytes: &mut Vec<u8>, m: &Mutation) {
    if bytes.is_empty() {
        return;
    }
    let len = bytes.len();
    match m {
        Mutation::Flip(i, bit) => bytes[i.index(len)] ^= 1 << bit,
        Mutation::Set(i, b) => bytes[i.index(len)] = *b,
        Mutation::Insert(i, b) => bytes.insert(i.index(len + 1), *b),
        Mutation::Delete(i) => {
            bytes.remove(i.index(len));
        }
        Mutation::Truncate(i) => bytes.truncate(i.index(len)),
    }
}

/// A message as the Go fluxrig writes it: every field, in struct order, nulls and doubles.
fn go_shaped() -> Vec<u8> {
    use ciborium::Value as C;
    let text = |s: &str| C::Text(s.to_owned());
    let uuid = |last: u8| {
        let mut b = vec![0x01, 0x90, 0xa5, 0xb2, 0x7c, 0x3d, 0x7e, 0x4f, 0x8a, 0x1b];
        b.extend_from_slice(&[0, 0, 0, 0, 0, last]);
        C::Bytes(b)
    };
    let hop = C::Map(vec![
        (text("g"), uuid(4)),
        (text("p"), uuid(5)),
        (text("t"), C::Integer(1_767_225_600_000_100_000i64.into())),
    ]);
    let data = C::Map(vec![
        (text("amount"), C::Float(0.1)),
        (
            text("iso8583"),
            C::Map(vec![(
                text("field"),
                C::Map(vec![
                    (text("11"), text("123456")),
                    (text("4"), text("000000010000")),
                ]),
            )]),
        ),
    ]);
    let msg = C::Map(vec![
        (text("id"), uuid(1)),
        (text("ref_id"), uuid(0)),
        (text("trace"), text("")),
        (text("src_id"), uuid(0)),
        (
            text("meta"),
            C::Map(vec![(text("iso8583.mti"), text("0100"))]),
        ),
        (text("data"), data),
        (text("flags"), C::Integer(0.into())),
        (text("raw"), C::Null),
        (text("path"), C::Array(vec![hop])),
        (text("ts"), C::Integer(1_767_225_600_000_000_000i64.into())),
    ]);
    let mut out = Vec::new();
    ciborium::into_writer(&msg, &mut out).expect("ciborium writes to a Vec");
    out
}

/// Valid encodings to start mutating from.
pub(crate) fn seed() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        4 => strategy::message().prop_map(|m| Codec::new().encode_to_vec(&m).expect("encode")),
        1 => Just(go_shaped()),
    ]
}

proptest! {
    #[test]
    fn arbitrary_bytes(input in vec(any::<u8>(), 0..2048)) {
        check(&input);
    }

    #[test]
    fn arbitrary_fragments(input in fragments()) {
        check(&input);
    }

    #[test]
    fn mutated_messages(mut bytes in seed(), mutations in vec(mutation(), 1..5)) {
        prop_assert!(check(&bytes).is_some(), "the seed is valid");
        for m in &mutations {
            mutate(&mut bytes, m);
        }
        check(&bytes);
    }

    #[test]
    fn bytes_after_a_message(msg in strategy::message(), tail in vec(any::<u8>(), 1..16)) {
        let mut bytes = Codec::new().encode_to_vec(&msg).expect("encode");
        let len = bytes.len();
        bytes.extend_from_slice(&tail);
        check_refused(&Codec::new(), &bytes, false, &DecodeErrorKind::TrailingBytes, len);
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn every_truncation_fails(bytes in seed()) {
        let codec = Codec::new();
        for len in 0..bytes.len() {
            let err = codec.decode(&bytes[..len]).expect_err("a prefix is not a message");
            // CBOR items are self-delimiting: a prefix of a valid message is valid as far as
            // it goes, and the input ends before the message does.
            prop_assert_eq!(err.decode_kind(), Some(&DecodeErrorKind::UnexpectedEnd));
            prop_assert!(err.offset().is_some_and(|at| at <= len));
            let shared = Bytes::copy_from_slice(&bytes[..len]);
            prop_assert_eq!(codec.decode_shared(&shared), Err(err));
        }
    }
}

#[test]
fn go_shaped_seed_decodes() {
    let msg = check(&go_shaped()).expect("the Go-shaped message is valid");
    assert_eq!(
        msg.ref_id,
        Some(Id::Uuid([
            0x01, 0x90, 0xa5, 0xb2, 0x7c, 0x3d, 0x7e, 0x4f, 0x8a, 0x1b, 0, 0, 0, 0, 0, 0
        ]))
    );
    assert_eq!(msg.data.get("amount"), Some(&Value::Float(0.1)));
    assert_eq!(msg.path.len(), 1);
}

#[test]
fn deep_nesting_hits_the_depth_limit_without_overflowing_the_stack() {
    let depth = |max| DecodeErrorKind::Limit(LimitExceeded::Depth { max });
    let codec = Codec::new();
    let ceiling = Codec::builder()
        .max_depth(MAX_DEPTH_CEILING)
        .build()
        .expect("limits");

    // 100,000 nested one-item arrays, then maps; the array or map at offset n is level n + 1.
    let arrays = vec![0x81u8; 100_000];
    check_refused(&codec, &arrays, true, &depth(32), 32);
    check_refused(
        &ceiling,
        &arrays,
        true,
        &depth(MAX_DEPTH_CEILING),
        MAX_DEPTH_CEILING,
    );
    let maps = b"\xa1\x61a".repeat(100_000);
    check_refused(&codec, &maps, true, &depth(32), 32 * 3);

    // In data (level 1, so the first array at offset 9 is level 2), in an unknown top-level
    // field (level 1) and in an unknown hop field (level 2).
    let in_data = [&b"\xa1\x64data\xa1\x61a"[..], &arrays].concat();
    check_refused(&codec, &in_data, false, &depth(32), 9 + 31);
    let in_extra = [&b"\xa1\x61x"[..], &arrays].concat();
    check_refused(&codec, &in_extra, false, &depth(32), 3 + 32);
    let hop = b"\xa1\x64path\x81\xa4\x61g\x01\x61p\x02\x61t\x03\x61x";
    let in_hop = [&hop[..], &arrays].concat();
    check_refused(&codec, &in_hop, false, &depth(32), hop.len() + 31);
    check_refused(
        &ceiling,
        &in_hop,
        false,
        &depth(MAX_DEPTH_CEILING),
        hop.len() + 255,
    );
}

#[test]
fn nested_containers_cannot_multiply_what_they_reserve() {
    // 31 nested arrays, each announcing 2^32 - 1 items, around one 64 KiB byte string: every
    // level could claim the rest of the input. What the decoder asks of the allocator must
    // follow what it read, not what the heads announce.
    let mut input = b"\xa1\x64data\xa1\x61a".to_vec();
    for _ in 0..31 {
        input.extend_from_slice(&[0x9a, 0xff, 0xff, 0xff, 0xff]);
    }
    input.extend_from_slice(&[0x5a, 0x00, 0x01, 0x00, 0x00]);
    input.resize(input.len() + 65_536, 0x5a);
    let (result, requested) = crate::alloc::requested_by(|| Codec::new().decode(&input));
    let err = result.expect_err("the arrays never end");
    assert_eq!(err.decode_kind(), Some(&DecodeErrorKind::UnexpectedEnd));
    assert!(
        requested < 4 << 20,
        "{requested} bytes requested for {} bytes of input",
        input.len()
    );
}

#[test]
fn many_unknown_hop_keys_are_still_checked_for_duplicates() {
    // 5,000 distinct keys out of order, then a repeat of one of them.
    let mut hop = vec![0xb9, 0x13, 0x88];
    hop.extend_from_slice(b"\x61g\x01\x61p\x02\x61t\x03");
    for i in (0..4_996u32).rev() {
        let key = format!("k{i:05}");
        hop.push(0x60 | key.len() as u8);
        hop.extend_from_slice(key.as_bytes());
        hop.push(0x00);
    }
    hop.extend_from_slice(b"\x66k00042\x00");
    let input = [&b"\xa1\x64path\x81"[..], &hop].concat();
    let err = Codec::new().decode(&input).expect_err("k00042 twice");
    assert_eq!(err.decode_kind(), Some(&DecodeErrorKind::DuplicateKey));
    // Without the repeat, it decodes.
    let mut hop_ok = hop.clone();
    hop_ok.truncate(hop.len() - 8);
    hop_ok[1..3].copy_from_slice(&[0x13, 0x87]);
    let input = [&b"\xa1\x64path\x81"[..], &hop_ok].concat();
    assert_eq!(
        Codec::new().decode(&input).expect("unique keys").path.len(),
        1
    );
}

#[test]
fn huge_announced_lengths_fail_without_reserving_memory() {
    let codec = Codec::new();
    let end = DecodeErrorKind::UnexpectedEnd;
    let huge: [u64; 4] = [u64::MAX, 1 << 40, u64::from(u32::MAX), 1 << 20];
    for n in huge {
        let n8 = n.to_be_bytes();
        // Arrays and maps announce more items than there are bytes: the first missing item
        // is at the end of the input.
        for major in [0x9b, 0xbb] {
            let input = [&[major][..], &n8].concat();
            check_refused(&codec, &input, true, &end, 9);
            // Three bytes: three array items, or one map entry {"a": 0}.
            let tail: &[u8] = if major == 0x9b {
                b"\x00\x00\x00"
            } else {
                b"\x61a\x00"
            };
            let input = [&[major][..], &n8, tail].concat();
            check_refused(&codec, &input, true, &end, 12);
        }
        // Strings longer than the input: refused at their head.
        for major in [0x5b, 0x7b] {
            let input = [&[major][..], &n8, b"abc"].concat();
            check_refused(&codec, &input, true, &end, 0);
        }
        // The same inside a message.
        let msg = |head: &[u8]| [&b"\xa1\x64data\xa1\x61a"[..], head, &n8].concat();
        check_refused(&codec, &msg(&[0x9b]), false, &end, 18);
        check_refused(&codec, &msg(&[0xbb]), false, &end, 18);
        check_refused(&codec, &msg(&[0x5b]), false, &end, 9);
        check_refused(
            &codec,
            &[&b"\xa1\x63raw\x5b"[..], &n8].concat(),
            false,
            &end,
            5,
        );
        check_refused(&codec, &[&b"\xbb"[..], &n8].concat(), false, &end, 9);
        check_refused(
            &codec,
            &[&b"\xa1\x64meta\xbb"[..], &n8].concat(),
            false,
            &end,
            15,
        );
        // A path longer than max_hops is refused at its head, whatever follows.
        let hops = DecodeErrorKind::Limit(LimitExceeded::Hops { len: n, max: 64 });
        check_refused(
            &codec,
            &[&b"\xa1\x64path\x9b"[..], &n8].concat(),
            false,
            &hops,
            6,
        );
    }
}

fn hop(i: u64) -> Hop {
    Hop::new(Id::U64(i), Id::U64(i + 1), 1)
}

/// Asserts that encoding `msg` fails with `want` and leaves the buffer as it was, and that
/// the buffer still takes a valid message afterwards.
#[track_caller]
fn check_encode_refused(codec: &Codec, msg: &FluxMsg, want: &Error) {
    let mut buf = vec![0xde, 0xad];
    assert_eq!(codec.encode(msg, &mut buf).as_ref(), Err(want));
    assert_eq!(
        buf,
        [0xde, 0xad],
        "a failed encode leaves the buffer as it was"
    );
    assert_eq!(
        codec.encode_envelope_first(msg, &mut buf).as_ref(),
        Err(want)
    );
    assert_eq!(buf, [0xde, 0xad], "so does the envelope-first encoding");
    let ok = FluxMsg::builder().id(Id::U64(1)).build();
    codec
        .encode(&ok, &mut buf)
        .expect("the buffer is still usable");
    assert_eq!(buf, b"\xde\xad\xa1\x62id\x01");
}

#[test]
fn encoder_refuses_messages_that_break_a_limit() {
    let codec = Codec::builder()
        .max_hops(2)
        .max_depth(3)
        .max_size(100)
        .build()
        .expect("limits");

    let mut long_path = FluxMsg::builder().id(Id::U64(1)).build();
    long_path.path = (0..3).map(hop).collect();
    let want = Error::Limit(LimitExceeded::Hops { len: 3, max: 2 });
    check_encode_refused(&codec, &long_path, &want);
    long_path.path.pop();
    codec
        .encode_to_vec(&long_path)
        .expect("max_hops hops are fine");

    // data is level 1; a.b is level 3, a.b.c level 4. The encoder has written part of the
    // message before it finds out.
    let mut deep = FluxMsg::builder()
        .id(Id::U64(1))
        .raw(vec![7; 10])
        .data_path("a.b.c.d", 1u8)
        .expect("path")
        .build();
    check_encode_refused(
        &codec,
        &deep,
        &Error::Limit(LimitExceeded::Depth { max: 3 }),
    );
    deep.data.remove_path("a.b.c");
    codec
        .encode_to_vec(&deep)
        .expect("max_depth levels are fine");
    let mut deep_extra = FluxMsg::new();
    deep_extra.extra.insert(
        "x",
        Value::Array(vec![Value::Array(vec![Value::Array(vec![Value::Array(
            vec![],
        )])])]),
    );
    check_encode_refused(
        &codec,
        &deep_extra,
        &Error::Limit(LimitExceeded::Depth { max: 3 }),
    );

    for key in FluxMsg::KEYS {
        let mut reserved = FluxMsg::builder().id(Id::U64(1)).build();
        reserved.extra.insert("a", Value::Null);
        reserved.extra.insert(key, Value::Null);
        check_encode_refused(&codec, &reserved, &Error::ReservedKey(key.to_owned()));
    }

    let big = FluxMsg::builder().id(Id::U64(1)).raw(vec![0; 200]).build();
    let len = Codec::new()
        .encode_to_vec(&big)
        .expect("default limits")
        .len();
    check_encode_refused(
        &codec,
        &big,
        &Error::Limit(LimitExceeded::Size { len, max: 100 }),
    );

    // A value nested far deeper than any limit is refused too, without recursing that far.
    let mut v = Value::Null;
    for _ in 0..1000 {
        v = Value::Array(vec![v]);
    }
    let mut buf = vec![1];
    assert_eq!(
        Codec::new().encode_value(&v, &mut buf),
        Err(Error::Limit(LimitExceeded::Depth { max: 32 }))
    );
    assert_eq!(buf, [1]);
    let mut buf = vec![1];
    let big = Value::Bytes(Bytes::from(vec![0; 100]));
    assert_eq!(
        codec.encode_value(&big, &mut buf),
        Err(Error::Limit(LimitExceeded::Size { len: 102, max: 100 }))
    );
    assert_eq!(buf, [1]);
}
