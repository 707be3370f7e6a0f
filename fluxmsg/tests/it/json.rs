//! The JSON view: each mapping rule, the `$` escapes, errors with their place, and the
//! CBOR → JSON → CBOR round trip.

use fluxmsg::json::{self, serde_json};
use fluxmsg::{Error, FluxMsg, Hop, Id, Integer, Value};
use proptest::prelude::*;
use serde_json::{Value as Json, json};

use crate::strategy;

const UUID: &str = "0190a5b2-7c3d-7e4f-8a1b-2c3d4e5f6a7b";
const UUID_BYTES: [u8; 16] = [
    0x01, 0x90, 0xa5, 0xb2, 0x7c, 0x3d, 0x7e, 0x4f, 0x8a, 0x1b, 0x2c, 0x3d, 0x4e, 0x5f, 0x6a, 0x7b,
];

/// Checks that `msg` has the JSON view `expect`, that both the view and its text read back
/// to `msg`, and that CBOR → JSON text → CBOR keeps the canonical bytes.
#[track_caller]
fn check(msg: &FluxMsg, expect: &Json) {
    let view = json::to_json(msg);
    assert_eq!(&view, expect, "JSON view");
    assert_eq!(
        &json::from_json(&view).expect("from_json"),
        msg,
        "from_json"
    );
    for text in [json::to_string(msg), json::to_string_pretty(msg)] {
        assert_eq!(
            &json::from_str(&text).expect("from_str"),
            msg,
            "from_str of {text}"
        );
    }
    let cbor = msg.to_cbor().expect("encode");
    assert_eq!(cbor_json_cbor(&cbor), cbor, "CBOR → JSON → CBOR");
}

/// Checks that reading `text` fails at `path` with a reason that contains `reason`.
#[track_caller]
fn check_err(text: &str, path: &str, reason: &str) {
    match json::from_str(text) {
        Err(Error::Json { path: p, reason: r }) => {
            assert_eq!(p, path, "path of the error for {text} ({r})");
            assert!(
                r.contains(reason),
                "reason for {text}: {r:?} lacks {reason:?}"
            );
        }
        other => panic!("{text}: expected a JSON error, got {other:?}"),
    }
}

/// Decodes CBOR, goes through JSON text and encodes again.
fn cbor_json_cbor(cbor: &[u8]) -> Vec<u8> {
    let msg = FluxMsg::from_cbor(cbor).expect("decode");
    let text = json::to_string_pretty(&msg);
    let back = json::from_str(&text).expect("from_str");
    back.to_cbor().expect("encode")
}

fn with_data(key: &str, value: impl Into<Value>) -> FluxMsg {
    FluxMsg::builder().data(key, value).build()
}

fn map(entries: &[(&str, Value)]) -> Value {
    Value::Map(entries.iter().cloned().collect())
}

#[test]
fn empty_message_is_an_empty_object() {
    check(&FluxMsg::new(), &json!({}));
}

#[test]
fn envelope_fields() {
    let msg = FluxMsg::builder()
        .id(Id::U64(u64::MAX))
        .ref_id(Id::Uuid(UUID_BYTES))
        .trace("4bf92f3577b34da6a3ce929d0e0e4736")
        .src_id(Id::U64(7))
        .meta("iso8583.mti", "0100")
        .meta("peer.ip", "10.0.0.7")
        .data_path("iso8583.field.11", "123456")
        .expect("path")
        .flags(FluxMsg::FLAG_SYNC_PROBE)
        .raw(&b"\x02\x00\xab"[..])
        .hop(Hop::new(Id::U64(5), Id::Uuid(UUID_BYTES), -1))
        .ts(1_767_225_600_000_000_000)
        .build();
    check(
        &msg,
        &json!({
            "id": u64::MAX,
            "ref_id": UUID,
            "trace": "4bf92f3577b34da6a3ce929d0e0e4736",
            "src_id": 7,
            "meta": {"iso8583.mti": "0100", "peer.ip": "10.0.0.7"},
            "data": {"iso8583": {"field": {"11": "123456"}}},
            "flags": 1,
            "raw": "0200ab",
            "path": [{"g": 5, "p": UUID, "t": -1}],
            "ts": 1_767_225_600_000_000_000_i64,
        }),
    );
}

#[test]
fn nulls_and_defaults_read_as_defaults() {
    let text = r#"{"id": null, "ref_id": null, "src_id": null, "trace": "", "meta": null,
        "data": null, "flags": 0, "raw": "", "path": [], "ts": null}"#;
    assert_eq!(json::from_str(text).expect("read"), FluxMsg::new());
}

#[test]
fn ids_also_read_from_decimal_strings_and_upper_case_uuids() {
    let text = format!(r#"{{"id": "42", "src_id": "{}"}}"#, UUID.to_uppercase());
    let msg = json::from_str(&text).expect("read");
    assert_eq!(msg.id, Some(Id::U64(42)));
    assert_eq!(msg.src_id, Some(Id::Uuid(UUID_BYTES)));
}

#[test]
fn unknown_fields_keep_their_names() {
    let mut msg = FluxMsg::builder().id(Id::U64(1)).build();
    msg.extra.insert("x", Value::Null);
    msg.extra
        .insert("zz_future", map(&[("a", Value::from(1u8))]));
    msg.extra.insert("blob", Value::from(&b"\x00\xff"[..]));
    check(
        &msg,
        &json!({"id": 1, "x": null, "zz_future": {"a": 1}, "blob": {"$bytes": "00ff"}}),
    );
}

#[test]
fn extra_fields_named_like_envelope_fields_are_left_out() {
    let mut msg = FluxMsg::builder().ts(5).build();
    msg.extra.insert("ts", Value::from("shadow"));
    msg.extra.insert("data", Value::from(1u8));
    assert_eq!(json::to_json(&msg), json!({"ts": 5}));
}

#[test]
fn plain_values_map_directly() {
    let data = [
        ("n", Value::Null),
        ("t", Value::Bool(true)),
        ("f", Value::Bool(false)),
        ("s", Value::from("héllo \"world\"")),
        (
            "a",
            Value::Array(vec![Value::from(1u8), Value::from("x"), Value::Null]),
        ),
        ("m", map(&[("k", map(&[("deep", Value::Array(vec![]))]))])),
        ("e", map(&[])),
    ];
    let msg = FluxMsg {
        data: data.into_iter().collect(),
        ..FluxMsg::new()
    };
    check(
        &msg,
        &json!({"data": {
            "n": null, "t": true, "f": false, "s": "héllo \"world\"",
            "a": [1, "x", null], "m": {"k": {"deep": []}}, "e": {},
        }}),
    );
}

#[test]
fn full_64_bit_integers() {
    let below_i64 = Integer::try_from(i128::from(i64::MIN) - 1).expect("in range");
    let cases = [
        (Value::from(0u8), json!(0)),
        (Value::from(u64::MAX), json!(u64::MAX)),
        (Value::from(i64::MAX), json!(i64::MAX)),
        (Value::from(-1i8), json!(-1)),
        (Value::from(i64::MIN), json!(i64::MIN)),
        (
            Value::Integer(below_i64),
            json!({"$int": "-9223372036854775809"}),
        ),
        (
            Value::Integer(Integer::MIN),
            json!({"$int": "-18446744073709551616"}),
        ),
    ];
    for (value, expect) in cases {
        check(&with_data("v", value), &json!({ "data": { "v": expect } }));
    }
    // `$int` also reads integers that have a plain form, which they take on writing.
    let msg = json::from_str(r#"{"data": {"v": {"$int": "-5"}}}"#).expect("read");
    assert_eq!(msg, with_data("v", -5i8));
    assert_eq!(json::to_json(&msg), json!({"data": {"v": -5}}));
}

#[test]
fn floats_keep_type_and_bits() {
    for f in [
        1.0,
        -0.0,
        0.0,
        0.1,
        1.5,
        1e300,
        -1e-300,
        5e-324,
        f64::MAX,
        f64::MIN_POSITIVE,
        1e16,
        123_456_789_012_345_680.0,
    ] {
        let msg = with_data("f", f);
        check(&msg, &json!({ "data": { "f": f } }));
        let text = json::to_string(&msg);
        assert!(text.contains(['.', 'e', 'E']), "{f:e} written as {text}");
        let back = json::from_str(&text).expect("read");
        let got = back.data.get("f").and_then(Value::as_f64).expect("a float");
        assert_eq!(got.to_bits(), f.to_bits(), "{f:e} read back from {text}");
    }
    check(
        &with_data("f", f64::NAN),
        &json!({"data": {"f": {"$float": "NaN"}}}),
    );
    check(
        &with_data("f", f64::INFINITY),
        &json!({"data": {"f": {"$float": "Infinity"}}}),
    );
    check(
        &with_data("f", f64::NEG_INFINITY),
        &json!({"data": {"f": {"$float": "-Infinity"}}}),
    );
    // An integral JSON number with an exponent is a float too.
    let msg = json::from_str(r#"{"data": {"f": 1e3}}"#).expect("read");
    assert_eq!(msg, with_data("f", 1000.0));
}

#[test]
fn bytes_are_lower_case_hex() {
    check(
        &with_data("b", Value::from(vec![0x00, 0x9a, 0xff])),
        &json!({"data": {"b": {"$bytes": "009aff"}}}),
    );
    check(
        &with_data("b", Value::from(Vec::<u8>::new())),
        &json!({"data": {"b": {"$bytes": ""}}}),
    );
    // Upper-case digits read too.
    let msg = json::from_str(r#"{"raw": "AbCd", "data": {"b": {"$bytes": "FF"}}}"#).expect("read");
    assert_eq!(msg.raw.as_ref(), b"\xab\xcd");
    assert_eq!(msg.data.get("b"), Some(&Value::from(vec![0xff])));
}

#[test]
fn a_map_whose_only_key_starts_with_dollar_is_escaped() {
    // One `$` key: escaped, wherever the map is.
    check(
        &with_data("m", map(&[("$int", Value::from("5"))])),
        &json!({"data": {"m": {"$map": {"$int": "5"}}}}),
    );
    check(
        &with_data("$ref", "x"),
        &json!({"data": {"$map": {"$ref": "x"}}}),
    );
    let mut msg = FluxMsg::new();
    msg.extra.insert("ext", map(&[("$", Value::Null)]));
    check(&msg, &json!({"ext": {"$map": {"$": null}}}));
    check(
        &with_data("m", map(&[("$map", map(&[]))])),
        &json!({"data": {"m": {"$map": {"$map": {}}}}}),
    );
    check(
        &with_data("m", map(&[("$map", map(&[("$map", map(&[]))]))])),
        &json!({"data": {"m": {"$map": {"$map": {"$map": {"$map": {}}}}}}}),
    );
    // Two keys, or one key without `$`: plain objects.
    check(
        &with_data("m", map(&[("$a", Value::Null), ("$b", Value::Null)])),
        &json!({"data": {"m": {"$a": null, "$b": null}}}),
    );
    check(
        &with_data("m", map(&[("a$", Value::Null)])),
        &json!({"data": {"m": {"a$": null}}}),
    );
    // meta holds strings only and is never escaped.
    check(
        &FluxMsg::builder().meta("$int", "5").build(),
        &json!({"meta": {"$int": "5"}}),
    );
    // `$map` reads maps of any size.
    let msg = json::from_str(r#"{"data": {"m": {"$map": {"a": 1, "b": {"$bytes": "01"}}}}}"#)
        .expect("read");
    let expect = map(&[("a", Value::from(1u8)), ("b", Value::from(vec![1u8]))]);
    assert_eq!(msg, with_data("m", expect));
}

#[test]
fn go_style_cbor_reads_and_re_encodes_canonically() {
    // {"id": h'0190…', "meta": null, "data": null, "raw": null, "path": null, "ts": …}, with
    // keys in struct order as the Go fluxrig writes them.
    let go = [
        &b"\xa6\x62id\x50"[..],
        &UUID_BYTES,
        b"\x64meta\xf6\x64data\xf6\x63raw\xf6\x64path\xf6",
        b"\x62ts\x1b\x18\x86\x72\x51\xed\xfa\x00\x00",
    ]
    .concat();
    let msg = FluxMsg::from_cbor(&go).expect("decode");
    assert_eq!(
        json::to_json(&msg),
        json!({"id": UUID, "ts": 1_767_225_600_000_000_000_i64})
    );
    let canonical = [
        &b"\xa2\x62id\x50"[..],
        &UUID_BYTES,
        b"\x62ts\x1b\x18\x86\x72\x51\xed\xfa\x00\x00",
    ]
    .concat();
    assert_eq!(cbor_json_cbor(&go), canonical);
    assert_eq!(cbor_json_cbor(&canonical), canonical);
}

#[test]
fn errors_name_the_place() {
    check_err("{", "(root)", "not JSON");
    check_err("[]", "(root)", "expected an object, found an array");
    check_err(
        r#"{"data": {"x": {"$ref": "y"}}}"#,
        "data.x",
        "unknown typed value `$ref`",
    );
    check_err(
        r#"{"data": {"a": [1, {"$": 2}]}}"#,
        "data.a[1]",
        "unknown typed value `$`",
    );
    check_err(
        r#"{"raw": "0g"}"#,
        "raw",
        "`g`, not a hex digit, at position 1",
    );
    check_err(r#"{"raw": "abc"}"#, "raw", "odd number of hex digits");
    check_err(
        r#"{"raw": 12}"#,
        "raw",
        "expected a string, found the number 12",
    );
    check_err(
        r#"{"data": {"b": {"$bytes": "é0"}}}"#,
        "data.b",
        "`é`, not a hex digit",
    );
    check_err(
        r#"{"data": {"b": {"$bytes": 1}}}"#,
        "data.b",
        "`$bytes` must hold a hex string",
    );
    check_err(
        r#"{"id": "0190a5b2-7c3d-7e4f-8a1b-2c3d4e5f6a7"}"#,
        "id",
        "invalid id `0190a5b2-7c3d-7e4f-8a1b-2c3d4e5f6a7`",
    );
    check_err(
        r#"{"ref_id": "0190a5b2x7c3d-7e4f-8a1b-2c3d4e5f6a7b"}"#,
        "ref_id",
        "invalid id",
    );
    check_err(
        r#"{"src_id": true}"#,
        "src_id",
        "expected an unsigned integer or a UUID",
    );
    check_err(r#"{"id": -1}"#, "id", "-1 is out of range for u64");
    check_err(
        r#"{"id": 1.0}"#,
        "id",
        "expected an integer, found the number 1.0",
    );
    check_err(
        r#"{"ts": 1.5}"#,
        "ts",
        "expected an integer, found the number 1.5",
    );
    check_err(
        r#"{"ts": 9223372036854775808}"#,
        "ts",
        "out of range for i64",
    );
    check_err(
        r#"{"flags": 4294967296}"#,
        "flags",
        "4294967296 is out of range for u32",
    );
    check_err(r#"{"flags": -1}"#, "flags", "out of range for u32");
    check_err(r#"{"trace": 1}"#, "trace", "expected a string");
    check_err(
        r#"{"meta": {"a": "x", "b": 1}}"#,
        "meta.b",
        "expected a string",
    );
    check_err(r#"{"meta": []}"#, "meta", "expected an object of strings");
    check_err(
        r#"{"data": 5}"#,
        "data",
        "expected an object, found an integer",
    );
    check_err(
        r#"{"data": {"$int": "5"}}"#,
        "data",
        "expected an object, found an integer",
    );
    check_err(r#"{"path": {}}"#, "path", "expected an array of hops");
    check_err(
        r#"{"path": [null]}"#,
        "path[0]",
        "expected a hop object, found null",
    );
    check_err(
        r#"{"path": [{"g": 1, "p": 2, "t": 3}, {"g": 1, "p": 2}]}"#,
        "path[1]",
        "hop lacks field `t`",
    );
    check_err(
        r#"{"path": [{"g": 1, "p": 2, "t": 3}, {"g": 1, "p": 2, "t": 3}, {"g": 0.5, "p": 2, "t": 3}]}"#,
        "path[2].g",
        "expected an integer",
    );
    check_err(
        r#"{"path": [{"g": 1, "p": 2, "t": 1e3}]}"#,
        "path[0].t",
        "expected an integer",
    );
    // Typed values.
    check_err(
        r#"{"data": {"v": {"$int": 5}}}"#,
        "data.v",
        "`$int` must hold a decimal string",
    );
    check_err(
        r#"{"data": {"v": {"$int": "+5"}}}"#,
        "data.v",
        "not a decimal integer",
    );
    check_err(
        r#"{"data": {"v": {"$int": "1.0"}}}"#,
        "data.v",
        "not a decimal integer",
    );
    check_err(
        r#"{"data": {"v": {"$int": "-"}}}"#,
        "data.v",
        "not a decimal integer",
    );
    check_err(
        r#"{"data": {"v": {"$int": "18446744073709551616"}}}"#,
        "data.v",
        "outside -2^64 ..= 2^64-1",
    );
    check_err(
        r#"{"data": {"v": {"$int": "-18446744073709551617"}}}"#,
        "data.v",
        "outside -2^64 ..= 2^64-1",
    );
    check_err(
        r#"{"data": {"v": {"$float": "nan"}}}"#,
        "data.v",
        "`$float` holds \"nan\"",
    );
    check_err(
        r#"{"data": {"v": {"$float": "1.5"}}}"#,
        "data.v",
        "finite floats are JSON numbers",
    );
    check_err(
        r#"{"data": {"v": {"$map": []}}}"#,
        "data.v",
        "`$map` must hold an object",
    );
    check_err(
        r#"{"data": {"v": {"$map": {"a": {"$x": 1}}}}}"#,
        "data.v.$map.a",
        "unknown typed value `$x`",
    );
}

#[test]
fn integer_literals_beyond_64_bits_are_refused() {
    check_err(
        r#"{"data": {"big": 18446744073709551616}}"#,
        "data.big",
        "integer 18446744073709551616 fits neither u64 nor i64",
    );
    check_err(
        r#"{"data": {"list": [1, 2, -9223372036854775809]}}"#,
        "data.list[2]",
        "fits neither u64 nor i64",
    );
    check_err(
        r#"{"data": {"s": "99999999999999999999", "a\"b\\": {"x": [[], -99999999999999999999]}}}"#,
        "data.a\"b\\.x[1]",
        "fits neither u64 nor i64",
    );
    check_err(
        r#"{"ext": 1e2, "ts": 100000000000000000000}"#,
        "ts",
        "fits neither",
    );
    // The edges of u64 and i64 are fine, and so are long numbers with a fraction.
    let msg = json::from_str(
        r#"{"data": {"a": 18446744073709551615, "b": -9223372036854775808, "c": 18446744073709551616.0}}"#,
    )
    .expect("read");
    assert_eq!(msg.data.get("a"), Some(&Value::from(u64::MAX)));
    assert_eq!(msg.data.get("b"), Some(&Value::from(i64::MIN)));
    assert_eq!(
        msg.data.get("c"),
        Some(&Value::Float(18_446_744_073_709_551_616.0))
    );
}

#[test]
fn values_alone() {
    let v = Value::Array(vec![Value::Float(f64::NAN), Value::from(Integer::MIN)]);
    let j = json::value_to_json(&v);
    assert_eq!(
        j,
        json!([{"$float": "NaN"}, {"$int": "-18446744073709551616"}])
    );
    assert_eq!(json::value_from_json(&j).expect("read"), v);
    let err = json::value_from_json(&json!([1, {"$nope": 1}])).expect_err("refused");
    assert!(
        matches!(err, Error::Json { ref path, .. } if path == "[1]"),
        "{err}"
    );
}

#[test]
fn nesting_is_bounded() {
    let mut deep = json!(1);
    for _ in 0..300 {
        deep = json!([deep]);
    }
    let err = json::from_json(&json!({ "data": { "d": deep } })).expect_err("refused");
    assert!(
        err.to_string().contains("nesting deeper than 256 levels"),
        "{err}"
    );
}

#[test]
fn error_display() {
    let err = json::from_str(r#"{"path": [{"g": 1, "p": "x", "t": 0}]}"#).expect_err("refused");
    assert_eq!(
        err.to_string(),
        "invalid JSON fluxMsg at `path[0].p`: invalid id `x`: expected a decimal u64 or a \
         hyphenated UUID"
    );
}

/// CBOR → JSON (as a value, as compact text and as pretty text) → CBOR gives the same bytes.
fn round_trip(msg: &FluxMsg) -> Result<(), TestCaseError> {
    let cbor = msg.to_cbor().expect("encode");
    let decoded = FluxMsg::from_cbor(&cbor).expect("decode");
    let view = json::to_json(&decoded);
    let from_view = json::from_json(&view).expect("from_json");
    prop_assert_eq!(&from_view, msg);
    prop_assert_eq!(&from_view.to_cbor().expect("encode"), &cbor);
    for text in [view.to_string(), format!("{view:#}")] {
        let back = json::from_str(&text).expect("from_str");
        prop_assert_eq!(&back.to_cbor().expect("encode"), &cbor, "through {}", text);
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn cbor_json_cbor_keeps_the_bytes(msg in strategy::message()) {
        round_trip(&msg)?;
    }

    #[test]
    fn values_round_trip(v in strategy::value()) {
        let back = json::value_from_json(&json::value_to_json(&v)).expect("read");
        prop_assert_eq!(back, v);
    }

    #[test]
    fn floats_read_back_bit_for_bit(bits in any::<u64>()) {
        let f = f64::from_bits(bits);
        let text = json::value_to_json(&Value::Float(f)).to_string();
        let parsed: Json = serde_json::from_str(&text).expect("parse");
        let back = json::value_from_json(&parsed).expect("read");
        if f.is_nan() {
            prop_assert!(back.as_f64().is_some_and(f64::is_nan));
        } else {
            prop_assert!(text.contains(['.', 'e', 'E']) || !f.is_finite(), "{}", text);
            prop_assert_eq!(back.as_f64().map(f64::to_bits), Some(bits), "{}", text);
        }
    }
}
