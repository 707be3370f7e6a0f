//! Tests: vectors. The wire cases of `fluxmsg/testdata/*.toml` (their format is described at
//! the top of each file), run against the decoder, the encoder and a generic CBOR codec.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;

use bytes::Bytes;
use fluxmsg::{Codec, DecodeErrorKind, Error, FluxMsg, Id, LimitExceeded, Map, Text, Value};
use serde::Deserialize;

const FILES: [(&str, &str); 3] = [
    ("valid.toml", include_str!("../../testdata/valid.toml")),
    ("invalid.toml", include_str!("../../testdata/invalid.toml")),
    ("go.toml", include_str!("../../testdata/go.toml")),
];

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    case: Vec<Case>,
}

/// One `[[case]]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Case {
    name: String,
    hex: String,
    max_hops: Option<usize>,
    max_size: Option<usize>,
    max_depth: Option<usize>,
    max_decision_len: Option<usize>,
    // A valid case.
    canonical_hex: Option<String>,
    // An invalid case.
    error: Option<String>,
    offset: Option<usize>,
    // Facts about the decoded message.
    id: Option<String>,
    ref_id: Option<String>,
    src_id: Option<String>,
    ts: Option<i64>,
    flags: Option<u32>,
    trace: Option<String>,
    raw: Option<String>,
    meta: Option<BTreeMap<String, String>>,
    data: Option<BTreeMap<String, String>>,
    extra: Option<BTreeMap<String, String>>,
    path: Option<Vec<HopFact>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct HopFact {
    g: String,
    p: String,
    t: i64,
    /// The decision; absent for none.
    d: Option<String>,
}

fn cases(file: &str) -> Vec<Case> {
    let (_, text) = FILES
        .iter()
        .find(|(name, _)| *name == file)
        .unwrap_or_else(|| panic!("no test data file {file}"));
    let parsed: File = toml::from_str(text).unwrap_or_else(|e| panic!("{file}: {e}"));
    assert!(!parsed.case.is_empty(), "{file} holds no case");
    parsed.case
}

fn unhex(name: &str, hex: &str) -> Vec<u8> {
    let digits: Vec<u8> = hex.bytes().filter(|b| !b.is_ascii_whitespace()).collect();
    assert!(
        digits.len().is_multiple_of(2),
        "case `{name}`: odd number of hex digits"
    );
    digits
        .chunks(2)
        .map(|pair| {
            std::str::from_utf8(pair)
                .ok()
                .and_then(|s| u8::from_str_radix(s, 16).ok())
                .unwrap_or_else(|| panic!("case `{name}`: bad hex {pair:?}"))
        })
        .collect()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().fold(String::new(), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

/// The name a case gives a decoding error (see the top of invalid.toml).
fn kind_name(kind: &DecodeErrorKind) -> String {
    use DecodeErrorKind as K;
    match kind {
        K::UnexpectedEnd => "UnexpectedEnd".to_owned(),
        K::TrailingBytes => "TrailingBytes".to_owned(),
        K::InvalidUtf8 => "InvalidUtf8".to_owned(),
        K::IndefiniteLength => "IndefiniteLength".to_owned(),
        K::Reserved(info) => format!("Reserved({info})"),
        K::UnsupportedTag(tag) => format!("UnsupportedTag({tag})"),
        K::UnsupportedSimple(v) => format!("UnsupportedSimple({v})"),
        K::DuplicateKey => "DuplicateKey".to_owned(),
        K::NonTextKey => "NonTextKey".to_owned(),
        K::TypeMismatch { field, .. } => format!("TypeMismatch({field})"),
        K::OutOfRange { field } => format!("OutOfRange({field})"),
        K::BadIdLength(n) => format!("BadIdLength({n})"),
        K::MissingField(f) => format!("MissingField({f})"),
        K::Limit(LimitExceeded::Hops { .. }) => "Limit.Hops".to_owned(),
        K::Limit(LimitExceeded::Size { .. }) => "Limit.Size".to_owned(),
        K::Limit(LimitExceeded::Depth { .. }) => "Limit.Depth".to_owned(),
        K::Limit(LimitExceeded::Decision { .. }) => "Limit.Decision".to_owned(),
        other => format!("{other:?}"),
    }
}

/// A value in CBOR diagnostic notation (RFC 8949 section 8).
fn diag(v: &Value) -> String {
    let mut s = String::new();
    write_diag(&mut s, v);
    s
}

fn write_diag(out: &mut String, v: &Value) {
    match v {
        Value::Null => out.push_str("null"),
        Value::Bool(b) => {
            let _ = write!(out, "{b}");
        }
        Value::Integer(i) => {
            let _ = write!(out, "{}", i128::from(*i));
        }
        Value::Float(f) if f.is_nan() => out.push_str("NaN"),
        Value::Float(f) if f.is_infinite() => {
            out.push_str(if *f > 0.0 { "Infinity" } else { "-Infinity" });
        }
        Value::Float(f) => {
            let _ = write!(out, "{f:?}");
        }
        Value::Text(s) => {
            let _ = write!(out, "{s:?}");
        }
        Value::Bytes(b) => {
            let _ = write!(out, "h'{}'", hex(b));
        }
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                write_diag(out, item);
            }
            out.push(']');
        }
        Value::Map(m) => {
            out.push('{');
            for (i, (k, item)) in m.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                let _ = write!(out, "{k:?}: ");
                write_diag(out, item);
            }
            out.push('}');
        }
    }
}

fn id_text(id: Option<&Id>) -> String {
    id.map_or_else(|| "none".to_owned(), Id::to_string)
}

/// Every case of every file: its name, its bytes and the codec its limits call for (for
/// other areas, such as the view's tests).
pub(crate) fn all_inputs() -> Vec<(String, Vec<u8>, Codec)> {
    FILES
        .iter()
        .flat_map(|(file, _)| cases(file))
        .map(|case| {
            let bytes = unhex(&case.name, &case.hex);
            let codec = codec_for(&case);
            (case.name, bytes, codec)
        })
        .collect()
}

fn codec_for(case: &Case) -> Codec {
    let mut b = Codec::builder();
    if let Some(n) = case.max_hops {
        b = b.max_hops(n);
    }
    if let Some(n) = case.max_size {
        b = b.max_size(n);
    }
    if let Some(n) = case.max_depth {
        b = b.max_depth(n);
    }
    if let Some(n) = case.max_decision_len {
        b = b.max_decision_len(n);
    }
    b.build()
        .unwrap_or_else(|e| panic!("case `{}`: {e}", case.name))
}

/// Whether every byte string of `msg` is a slice of `input`'s buffer.
fn shares_buffer(msg: &FluxMsg, input: &Bytes) -> bool {
    fn value(v: &Value, span: &std::ops::Range<*const u8>) -> bool {
        match v {
            Value::Bytes(b) => b.is_empty() || span.contains(&b.as_ptr()),
            Value::Array(items) => items.iter().all(|i| value(i, span)),
            Value::Map(m) => m.values().all(|i| value(i, span)),
            _ => true,
        }
    }
    let span = input.as_ptr_range();
    (msg.raw.is_empty() || span.contains(&msg.raw.as_ptr()))
        && msg.data.values().all(|v| value(v, &span))
        && msg.extra.values().all(|v| value(v, &span))
}

/// Runs one case: the decoders, the encoder, ciborium and the facts.
#[track_caller]
fn check(case: &Case) {
    let name = &case.name;
    let codec = codec_for(case);
    let input = unhex(name, &case.hex);
    let shared_input = Bytes::from(input.clone());
    let decoded = codec.decode(&input);
    let shared = codec.decode_shared(&shared_input);
    assert_eq!(
        decoded, shared,
        "case `{name}`: decode and decode_shared disagree"
    );
    match (&case.canonical_hex, &case.error, case.offset) {
        (Some(canonical), None, None) => {
            let canonical = unhex(name, canonical);
            let msg = decoded.unwrap_or_else(|e| panic!("case `{name}`: {e}"));
            let shared = shared.unwrap_or_else(|e| panic!("case `{name}`: {e}"));
            assert!(
                shares_buffer(&shared, &shared_input),
                "case `{name}`: decode_shared copied a byte string"
            );
            check_encoding(name, &codec, &msg, &canonical);
            check_facts(case, &msg);
        }
        (None, Some(error), Some(offset)) => {
            let err = decoded.expect_err(&format!("case `{name}`: decoded, expected {error}"));
            let Error::Decode { offset: at, kind } = &err else {
                panic!("case `{name}`: expected a decoding error, got {err:?}");
            };
            assert_eq!(
                (kind_name(kind), *at),
                (error.clone(), offset),
                "case `{name}`: wrong error ({err})"
            );
            assert!(*at <= input.len(), "case `{name}`: offset past the input");
        }
        _ => panic!("case `{name}`: needs either canonical_hex, or error and offset"),
    }
}

/// Encoder checks of a valid case whose input decoded to `msg`.
#[track_caller]
fn check_encoding(name: &str, codec: &Codec, msg: &FluxMsg, canonical: &[u8]) {
    // Re-encoding gives the canonical bytes, appended to what the buffer held.
    let mut buf = vec![0xee];
    let n = codec
        .encode(msg, &mut buf)
        .unwrap_or_else(|e| panic!("case `{name}`: encode: {e}"));
    assert_eq!(n, buf.len() - 1, "case `{name}`: encode's length");
    assert_eq!(
        hex(&buf[1..]),
        hex(canonical),
        "case `{name}`: re-encoding is not the canonical form"
    );
    // The canonical bytes are the same message and re-encode to themselves.
    let again = codec
        .decode(canonical)
        .unwrap_or_else(|e| panic!("case `{name}`: canonical_hex does not decode: {e}"));
    assert_eq!(
        &again, msg,
        "case `{name}`: canonical_hex is another message"
    );
    let twice = codec
        .encode_to_vec(&again)
        .expect("encodes once, encodes twice");
    assert_eq!(
        twice, canonical,
        "case `{name}`: canonical form is not stable"
    );

    // A generic CBOR codec reads and writes back the very same bytes: the output is plain
    // canonical CBOR.
    let generic: ciborium::Value = ciborium::from_reader(canonical)
        .unwrap_or_else(|e| panic!("case `{name}`: ciborium cannot read it: {e}"));
    let mut out = Vec::new();
    ciborium::into_writer(&generic, &mut out)
        .unwrap_or_else(|e| panic!("case `{name}`: ciborium cannot write it: {e}"));
    assert_eq!(
        hex(&out),
        hex(canonical),
        "case `{name}`: ciborium writes other bytes"
    );

    // So does the crate's own generic value codec.
    let lax = Codec::builder()
        .max_depth(fluxmsg::MAX_DEPTH_CEILING)
        .build()
        .expect("limits");
    let value = lax
        .decode_value(canonical)
        .unwrap_or_else(|e| panic!("case `{name}`: decode_value: {e}"));
    let mut out = Vec::new();
    lax.encode_value(&value, &mut out)
        .unwrap_or_else(|e| panic!("case `{name}`: encode_value: {e}"));
    assert_eq!(
        hex(&out),
        hex(canonical),
        "case `{name}`: encode_value writes other bytes"
    );
}

/// Asserts the facts a valid case states about its message.
#[track_caller]
fn check_facts(case: &Case, msg: &FluxMsg) {
    let name = &case.name;
    let ids = [
        ("id", &case.id, msg.id.as_ref()),
        ("ref_id", &case.ref_id, msg.ref_id.as_ref()),
        ("src_id", &case.src_id, msg.src_id.as_ref()),
    ];
    for (field, want, got) in ids {
        if let Some(want) = want {
            assert_eq!(&id_text(got), want, "case `{name}`: {field}");
        }
    }
    if let Some(ts) = case.ts {
        assert_eq!(msg.ts, ts, "case `{name}`: ts");
    }
    if let Some(flags) = case.flags {
        assert_eq!(msg.flags, flags, "case `{name}`: flags");
    }
    if let Some(trace) = &case.trace {
        assert_eq!(&msg.trace, trace, "case `{name}`: trace");
    }
    if let Some(raw) = &case.raw {
        assert_eq!(&hex(&msg.raw), raw, "case `{name}`: raw");
    }
    if let Some(meta) = &case.meta {
        let want: Map<Text> = meta
            .iter()
            .map(|(k, v)| (k.as_str(), Text::from(v)))
            .collect();
        assert_eq!(msg.meta, want, "case `{name}`: meta");
    }
    for (path, want) in case.data.iter().flatten() {
        let got = msg
            .data
            .get_path(path)
            .map_or_else(|| "absent".to_owned(), diag);
        assert_eq!(&got, want, "case `{name}`: data at `{path}`");
    }
    if let Some(extra) = &case.extra {
        let got: BTreeMap<String, String> = msg
            .extra
            .iter()
            .map(|(k, v)| (k.to_owned(), diag(v)))
            .collect();
        assert_eq!(&got, extra, "case `{name}`: extra");
    }
    if let Some(path) = &case.path {
        type Fact = (String, String, i64, Option<String>);
        let got: Vec<Fact> = msg
            .path
            .iter()
            .map(|h| {
                let d = h.decision.as_ref().map(|d| d.as_str().to_owned());
                (h.gear.to_string(), h.port.to_string(), h.ts, d)
            })
            .collect();
        let want: Vec<Fact> = path
            .iter()
            .map(|h| (h.g.clone(), h.p.clone(), h.t, h.d.clone()))
            .collect();
        assert_eq!(got, want, "case `{name}`: path");
    }
}

fn check_file(file: &str) {
    for case in cases(file) {
        check(&case);
    }
}

#[test]
fn valid() {
    check_file("valid.toml");
}

#[test]
fn invalid() {
    check_file("invalid.toml");
}

#[test]
fn go() {
    check_file("go.toml");
}

#[test]
fn every_case_is_named_once_and_valid_files_hold_no_error() {
    let mut names = BTreeSet::new();
    for (file, _) in FILES {
        let valid_file = file != "invalid.toml";
        for case in cases(file) {
            assert!(
                names.insert(case.name.clone()),
                "case `{}` twice",
                case.name
            );
            assert_eq!(
                case.canonical_hex.is_some(),
                valid_file,
                "{file}: case `{}` is in the wrong file",
                case.name
            );
        }
    }
}

#[test]
fn every_decode_error_has_a_vector() {
    let errors: BTreeSet<String> = cases("invalid.toml")
        .into_iter()
        .filter_map(|c| c.error)
        .collect();
    let kinds: BTreeSet<&str> = errors
        .iter()
        .map(|e| e.split('(').next().unwrap_or_default())
        .collect();
    let all = [
        "UnexpectedEnd",
        "TrailingBytes",
        "InvalidUtf8",
        "IndefiniteLength",
        "Reserved",
        "UnsupportedTag",
        "UnsupportedSimple",
        "DuplicateKey",
        "NonTextKey",
        "TypeMismatch",
        "OutOfRange",
        "BadIdLength",
        "MissingField",
        "Limit.Hops",
        "Limit.Size",
        "Limit.Depth",
    ];
    for kind in all {
        assert!(kinds.contains(kind), "no invalid case for {kind}");
    }
    // Each envelope field, and the message itself, refuses a value of the wrong type.
    for field in FluxMsg::KEYS.iter().chain(&["message"]) {
        let name = format!("TypeMismatch({field})");
        assert!(errors.contains(&name), "no invalid case for {name}");
    }
}
