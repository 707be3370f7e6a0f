//! Tests: view. `MsgView` reads what the decoder reads, field by field, on canonical and
//! non-canonical encodings; on malformed and truncated input it fails without panicking; a
//! lookup allocates nothing.

use fluxmsg::{
    Codec, DecodeErrorKind, Error, FluxMsg, LimitExceeded, MAX_DEPTH_CEILING, Map, MsgView, Text,
    Value,
};
use proptest::collection::vec;
use proptest::prelude::*;

use crate::{hostile, strategy, vectors};

/// Every chain of keys in `data` (joined with dots), and near misses: one segment more, the
/// first segment only, empty segments.
fn paths_of(data: &Map<Value>) -> Vec<String> {
    fn walk(map: &Map<Value>, prefix: &str, out: &mut Vec<String>, depth: usize) {
        for (k, v) in map.iter() {
            let path = if prefix.is_empty() {
                k.to_owned()
            } else {
                format!("{prefix}.{k}")
            };
            out.push(format!("{path}.x"));
            if let (Value::Map(m), true) = (v, depth < 6) {
                walk(m, &path, out, depth + 1);
            }
            out.push(path);
        }
    }
    let mut out = Vec::new();
    walk(data, "", &mut out, 0);
    let firsts: Vec<String> = out
        .iter()
        .filter_map(|p| p.split('.').next().map(str::to_owned))
        .collect();
    out.extend(firsts);
    out.extend(
        ["", ".", "a..b", ".a", "a.", "x", "iso8583.field.4"]
            .into_iter()
            .map(str::to_owned),
    );
    out
}

/// Asserts that the view of `bytes` reads what `msg` (their decoding by `codec`) holds.
#[track_caller]
fn assert_agrees(bytes: &[u8], codec: &Codec, msg: &FluxMsg, paths: &[String], keys: &[String]) {
    let view = MsgView::with_limits(bytes, codec.limits()).expect("the head of a valid message");
    assert_eq!(view.bytes(), bytes);
    assert_eq!(view.id(), Ok(msg.id));
    assert_eq!(view.ref_id(), Ok(msg.ref_id));
    assert_eq!(view.src_id(), Ok(msg.src_id));
    assert_eq!(view.trace(), Ok(msg.trace.as_str()));
    assert_eq!(view.ts(), Ok(msg.ts));
    assert_eq!(view.flags(), Ok(msg.flags));
    assert_eq!(view.raw(), Ok(&msg.raw[..]));
    assert_eq!(view.path_len(), Ok(msg.path.len()));
    for (i, hop) in msg.path.iter().enumerate() {
        assert_eq!(view.hop(i).as_ref(), Ok(&Some(hop.clone())), "hop {i}");
    }
    assert_eq!(view.hop(msg.path.len()), Ok(None));
    for path in paths.iter().chain(&paths_of(&msg.data)) {
        let want = msg.data.get_path(path);
        assert_eq!(
            view.data_path(codec, path).as_ref(),
            Ok(&want.cloned()),
            "data path {path:?}"
        );
        let raw = view.data_raw(path).expect("a valid message");
        let decoded = raw.map(|item| codec.decode_value(item).expect("a valid item"));
        assert_eq!(decoded.as_ref(), want, "raw data path {path:?}");
    }
    for key in keys.iter().map(String::as_str).chain(msg.meta.keys()) {
        assert_eq!(
            view.meta(key),
            Ok(msg.meta.get(key).map(Text::as_str)),
            "meta {key:?}"
        );
    }
}

/// Calls every accessor on whatever `bytes` holds: each gives a value or a decoding error
/// inside the input, never a panic. When the decoder accepts `bytes`, the view agrees.
fn probe(bytes: &[u8]) {
    let codec = Codec::new();
    let Ok(view) = MsgView::new(bytes) else {
        return;
    };
    let inside = |e: Error| match e {
        Error::Decode { offset, .. } => assert!(offset <= bytes.len(), "{e} in {}", bytes.len()),
        other => panic!("a view gave a non-decoding error: {other:?}"),
    };
    let paths = ["a", "a.b", "iso8583.field.4", "x.y.z", "g", "t"];
    let mut errors = Vec::new();
    for p in paths {
        errors.extend(view.data_path(&codec, p).err());
        errors.extend(view.data_raw(p).err());
        errors.extend(view.meta(p).err());
    }
    errors.extend(view.id().err());
    errors.extend(view.ref_id().err());
    errors.extend(view.src_id().err());
    errors.extend(view.trace().err());
    errors.extend(view.ts().err());
    errors.extend(view.flags().err());
    errors.extend(view.raw().err());
    errors.extend(view.path_len().err());
    for i in 0..3 {
        errors.extend(view.hop(i).err());
    }
    errors.into_iter().for_each(inside);
    if let Ok(msg) = codec.decode(bytes) {
        let paths: Vec<String> = paths.into_iter().map(str::to_owned).collect();
        assert_agrees(bytes, &codec, &msg, &paths, &paths);
    }
}

/// The same message encoded the way no canonical encoder would: every map in reverse order,
/// and every absent envelope field as an explicit `null`.
fn scrambled(msg: &FluxMsg) -> Vec<u8> {
    use ciborium::Value as C;
    fn reverse(v: C) -> C {
        match v {
            C::Map(entries) => C::Map(
                entries
                    .into_iter()
                    .rev()
                    .map(|(k, v)| (k, reverse(v)))
                    .collect(),
            ),
            C::Array(items) => C::Array(items.into_iter().map(reverse).collect()),
            other => other,
        }
    }
    let mut canonical = Vec::new();
    ciborium::into_writer(msg, &mut canonical).expect("ciborium writes to a Vec");
    let value: C = ciborium::from_reader(&canonical[..]).expect("ciborium reads its own bytes");
    let C::Map(mut fields) = reverse(value) else {
        panic!("a message is a map");
    };
    for key in FluxMsg::KEYS {
        if !fields.iter().any(|(k, _)| k.as_text() == Some(key)) {
            fields.insert(0, (C::Text(key.to_owned()), C::Null));
        }
    }
    let mut out = Vec::new();
    ciborium::into_writer(&C::Map(fields), &mut out).expect("ciborium writes to a Vec");
    out
}

fn random_path() -> impl Strategy<Value = String> {
    vec(strategy::key(), 1..4).prop_map(|parts| parts.join("."))
}

proptest! {
    #[test]
    fn view_reads_what_the_decoder_reads(
        msg in strategy::message(),
        paths in vec(random_path(), 0..6),
        keys in vec(strategy::key(), 0..4),
    ) {
        let codec = Codec::new();
        let bytes = msg.to_cbor().expect("encode");
        assert_agrees(&bytes, &codec, &msg, &paths, &keys);
    }

    #[test]
    fn view_reads_non_canonical_encodings(
        msg in strategy::message(),
        paths in vec(random_path(), 0..6),
        keys in vec(strategy::key(), 0..4),
    ) {
        let codec = Codec::new();
        let bytes = scrambled(&msg);
        let decoded = codec.decode(&bytes);
        prop_assert_eq!(decoded.as_ref(), Ok(&msg), "the scrambled bytes decode");
        assert_agrees(&bytes, &codec, &msg, &paths, &keys);
    }

    #[test]
    fn view_survives_arbitrary_bytes(input in vec(any::<u8>(), 0..512)) {
        probe(&input);
    }

    #[test]
    fn view_survives_fragments(input in hostile::fragments()) {
        probe(&input);
    }

    #[test]
    fn view_survives_mutated_messages(
        mut bytes in hostile::seed(),
        mutations in vec(hostile::mutation(), 1..5),
    ) {
        probe(&bytes);
        for m in &mutations {
            hostile::mutate(&mut bytes, m);
        }
        probe(&bytes);
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn view_survives_every_truncation(bytes in hostile::seed()) {
        for len in 0..bytes.len() {
            probe(&bytes[..len]);
        }
    }
}

#[test]
fn view_reads_the_wire_vectors_as_the_decoder_does() {
    let mut valid = 0;
    for (_name, bytes, codec) in vectors::all_inputs() {
        match codec.decode(&bytes) {
            Ok(msg) => {
                let keys = ["iso8583.mti".to_owned(), "absent".to_owned()];
                assert_agrees(&bytes, &codec, &msg, &[], &keys);
                valid += 1;
            }
            Err(_) => probe(&bytes),
        }
    }
    assert!(valid > 10, "only {valid} valid vectors");
}

#[test]
fn a_lookup_allocates_nothing() {
    let msg = FluxMsg::builder()
        .id(fluxmsg::Id::U64(7))
        .ts(1)
        .meta("iso8583.mti", "0100")
        .meta(
            "a.very.long.metadata.key.that.is.not.inline",
            "x".repeat(100),
        )
        .data_path("iso8583.field.4", "000000010000")
        .and_then(|b| b.data_path("iso8583.field.11", "123456"))
        .and_then(|b| b.data_path("list", Value::Array(vec![Value::from(1u8); 50])))
        .expect("paths")
        .raw(&b"\x02\x00"[..])
        .hop(fluxmsg::Hop::new(1u64, 2u64, 3))
        .build();
    let bytes = msg.to_cbor().expect("encode");
    let (found, requested) = crate::alloc::requested_by(|| {
        let view = MsgView::new(&bytes).expect("view");
        (
            view.data_raw("iso8583.field.4").ok().flatten().is_some(),
            view.data_raw("iso8583.field.99").ok().flatten().is_none(),
            view.meta("a.very.long.metadata.key.that.is.not.inline")
                .ok()
                .flatten()
                .is_some(),
            view.id().is_ok() && view.ts().is_ok() && view.raw().is_ok() && view.trace().is_ok(),
        )
    });
    assert_eq!(found, (true, true, true, true));
    assert_eq!(requested, 0, "bytes requested by lookups");
}

#[test]
fn deep_nesting_hits_the_depth_limit_without_overflowing_the_stack() {
    let depth = |max| Some(DecodeErrorKind::Limit(LimitExceeded::Depth { max }));
    let arrays = vec![0x81u8; 100_000];
    // data: {a: [[[…]]]}, then meta: {k: "v"}; the first array (offset 9) is level 2.
    let input = [&b"\xa2\x64data\xa1\x61a"[..], &arrays].concat();
    let view = MsgView::new(&input).expect("the head is fine");
    let err = view.meta("k").expect_err("meta is behind the nesting");
    assert_eq!(err.decode_kind().cloned(), depth(32));
    assert_eq!(err.offset(), Some(9 + 31));
    assert_eq!(
        view.data_raw("a")
            .expect_err("too deep")
            .decode_kind()
            .cloned(),
        depth(32)
    );
    let ceiling = Codec::builder()
        .max_depth(MAX_DEPTH_CEILING)
        .build()
        .expect("limits");
    let view = MsgView::with_limits(&input, ceiling.limits()).expect("head");
    assert_eq!(
        view.meta("k").expect_err("deeper").offset(),
        Some(9 + MAX_DEPTH_CEILING - 1)
    );
    // Nested maps down a path: {a: {a: … {a: 0}}}, `data` being the first.
    let nested =
        |levels: usize| [&b"\xa1\x64data"[..], &b"\xa1\x61a".repeat(levels), b"\x00"].concat();
    let input = nested(32);
    let view = MsgView::new(&input).expect("head");
    let path = |n: usize| vec!["a"; n].join(".");
    assert_eq!(view.data_raw(&path(32)), Ok(Some(&b"\x00"[..])));
    assert_eq!(view.data_raw(&path(33)), Ok(None), "0 is not a map");
    let input = nested(40);
    let view = MsgView::new(&input).expect("head");
    assert_eq!(
        view.data_raw(&path(40))
            .expect_err("too deep")
            .decode_kind()
            .cloned(),
        depth(32)
    );
    assert_eq!(
        view.data_raw(&path(3))
            .expect_err("the item is too deep")
            .decode_kind()
            .cloned(),
        depth(32)
    );
}

#[test]
fn huge_announced_lengths_fail_quickly() {
    let n8 = u64::MAX.to_be_bytes();
    for head in [0x9b, 0xbb, 0x5b, 0x7b] {
        let input = [&b"\xa2\x64data\xa1\x61a"[..], &[head], &n8, b"\x64meta\xa0"].concat();
        let view = MsgView::new(&input).expect("head");
        let err = view.meta("k").expect_err("data never ends");
        assert_eq!(err.decode_kind(), Some(&DecodeErrorKind::UnexpectedEnd));
        assert_eq!(err.offset(), Some(9));
    }
    // A top-level map announcing 2^64 - 1 fields ends with the input.
    let input = [&[0xbb][..], &n8, b"\x62id\x01"].concat();
    let view = MsgView::new(&input).expect("head");
    assert_eq!(view.id(), Ok(Some(fluxmsg::Id::U64(1))));
    let err = view.ts().expect_err("no more fields");
    assert_eq!(err.decode_kind(), Some(&DecodeErrorKind::UnexpectedEnd));
}

#[test]
fn what_the_view_refuses_at_its_head() {
    let kind = |bytes: &[u8]| {
        MsgView::new(bytes)
            .err()
            .and_then(|e| e.decode_kind().cloned())
    };
    assert_eq!(kind(b""), Some(DecodeErrorKind::UnexpectedEnd));
    assert_eq!(
        kind(b"\x80"),
        Some(DecodeErrorKind::TypeMismatch {
            field: "message",
            expected: "a map"
        })
    );
    assert_eq!(kind(b"\xbf"), Some(DecodeErrorKind::IndefiniteLength));
    let small = Codec::builder().max_size(4).build().expect("limits");
    let err = MsgView::with_limits(b"\xa1\x62ts\x01", small.limits()).expect_err("5 bytes");
    assert!(matches!(
        err.decode_kind(),
        Some(DecodeErrorKind::Limit(LimitExceeded::Size {
            len: 5,
            max: 4
        }))
    ));
    // Fields of the wrong type are refused when read, as the decoder names them.
    let view = MsgView::new(b"\xa2\x62ts\x61x\x64meta\xa1\x61k\x01").expect("head");
    assert_eq!(
        view.ts().err().and_then(|e| e.decode_kind().cloned()),
        Some(DecodeErrorKind::TypeMismatch {
            field: "ts",
            expected: "an integer"
        })
    );
    assert_eq!(
        view.meta("k").err().and_then(|e| e.decode_kind().cloned()),
        Some(DecodeErrorKind::TypeMismatch {
            field: "meta",
            expected: "text"
        })
    );
}
