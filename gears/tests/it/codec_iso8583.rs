//! Tests of the `codec_iso8583` gear.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use fluxmsg::{FluxMsg, Value};
use gears::codec_iso8583::{CodecIso8583, ERROR_FIELD_META, ERROR_OFFSET_META, VIOLATIONS_META};
use iso8583::{Field, Message, Spec, SubKey, Subfield};
use sdk::Harness;
use serde_json::{Value as Json, json};

/// A spec with rules: DE 2 mandatory in a 0100, DE 52 forbidden in a 0800, DE 39 in a closed
/// value set.
const RULES: &str = r#"spec:
  id: test-rules
  version: 1.0.0
  fields:
    2: {name: Primary Account Number, alias: card.pan, sensitivity: pan, messages: [{mti: "0100", usage: mandatory}]}
    39: {alias: resp_code, values_ref: response_codes}
    52: {sensitivity: sad, messages: [{mti: "0800", usage: forbidden}]}
  enums:
    response_codes:
      closed: true
      values:
        "00": {name: Approved}
wire:
  source: moov:spec87ascii
"#;

/// The `ascii 0100` wire vector of the iso8583 crate: composites (bitmapped DE 48, BER-TLV
/// DE 55 with an unknown tag and a long-form length, positional DE 63).
const ASCII_0100: &str = "\
303130303732323430343030323845313932303231363431313131313131313131313131313130303030303030303030\
303030313030303031323037313033303030313233343536323531323035313234343131313131313131313131313131\
313D323531323130313132333435363738393031325445524D303030314D45524348414E543030303030303141434D45\
2053544F524520202020202020202020202020535052494E474649454C44202020205553303137413034304142303568\
656C6C6F313233343937383031323334353637383941424344454630343282025C009F02060000000100009F7C030102\
039F260811223344556677885F2A0209789F108103AABBCC303138303130384142434445464748303030303432";

const PAN: &str = "4111111111111111";

fn unhex(text: &str) -> Vec<u8> {
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&text[i..i + 2], 16).expect("hex"))
        .collect()
}

/// Writes `text` to a file of its own under the temporary directory.
fn spec_file(name: &str, text: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("gears-codec-iso8583-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temporary directory");
    let path = dir.join(name);
    std::fs::write(&path, text).expect("spec written");
    path
}

fn testdata(name: &str) -> String {
    format!(
        "{}/../iso8583/testdata/specs/{name}",
        env!("CARGO_MANIFEST_DIR")
    )
}

fn codec(config: &Json) -> Harness {
    Harness::new::<CodecIso8583>(config).expect("valid configuration")
}

fn raw(bytes: &[u8]) -> FluxMsg {
    FluxMsg::builder().raw(bytes.to_vec()).build()
}

/// A 0100 of the built-in ASCII spec with the given fields.
fn auth(fields: &[(u16, &str)]) -> Vec<u8> {
    let mut msg = Message::new("0100");
    for (n, v) in fields {
        msg.set(*n, *v);
    }
    let spec = Spec::builtin("moov:spec87ascii").expect("built in");
    spec.pack_to_vec(&msg).expect("packs")
}

fn meta(msg: &FluxMsg, key: &str) -> Option<String> {
    msg.meta.get(key).map(|t| t.as_str().to_owned())
}

/// Sends `msg` and checks that it went to `error` with `reason`; returns it.
#[track_caller]
fn check_rejected(h: &mut Harness, msg: FluxMsg, reason: &str) -> FluxMsg {
    h.send("in", msg).expect("processed");
    assert!(h.take("out").is_empty());
    let mut errors = h.take("error");
    assert_eq!(errors.len(), 1);
    let err = errors.remove(0);
    assert_eq!(meta(&err, sdk::ERROR_REASON).as_deref(), Some(reason));
    err
}

/// Decodes `bytes` with one gear and encodes the result (without `raw`) with another.
fn round_trip(spec: &str, bytes: &[u8]) -> (FluxMsg, Vec<u8>) {
    let mut decode = codec(&json!({ "spec": spec, "direction": "decode" }));
    decode.send("in", raw(bytes)).expect("processed");
    let decoded = decode.take("out").remove(0);
    let mut stripped = decoded.clone();
    stripped.raw = Default::default();
    let mut encode = codec(&json!({ "spec": spec, "direction": "encode" }));
    encode.send("in", stripped).expect("processed");
    let encoded = encode.take("out").remove(0);
    (decoded, encoded.raw.to_vec())
}

#[test]
fn decode_then_encode_gives_the_same_bytes() {
    let spec_path = testdata("ascii.yaml");
    let spec = std::fs::read_to_string(&spec_path).expect("spec");
    let spec = Spec::from_yaml(&spec).expect("loads");
    let mut msg = Message::new("0100");
    msg.set(2, PAN);
    msg.set(4, "000000010000");
    msg.set(
        48,
        Field::Composite(vec![
            Subfield::new(SubKey::Index(1), "AB"),
            Subfield::new(SubKey::Index(3), "hello"),
        ]),
    );
    msg.set(
        55,
        Field::Composite(vec![
            Subfield::new(SubKey::Tag(0x9F02), "000000010000"),
            Subfield::new(SubKey::Tag(0x82), [0x5C, 0x00]),
        ]),
    );
    let bytes = spec.pack_to_vec(&msg).expect("packs");

    let (decoded, encoded) = round_trip(&spec_path, &bytes);
    assert_eq!(encoded, bytes);
    assert_eq!(meta(&decoded, "iso8583.mti").as_deref(), Some("0100"));
    assert_eq!(
        decoded.data.get_path("card.pan"),
        Some(&Value::from(PAN)),
        "aliases are written"
    );
    assert_eq!(
        decoded.data.get_path("iso8583.field.48.3"),
        Some(&Value::from("hello"))
    );
}

#[test]
fn a_long_form_tlv_length_and_unknown_tags_come_back_as_they_came() {
    // DE 55 has tag 9F10 with a long-form length (`81 03`) and an unknown tag 9F7C.
    let bytes = unhex(ASCII_0100);
    let (decoded, encoded) = round_trip(&testdata("ascii.yaml"), &bytes);
    assert_eq!(
        decoded.data.get_path("iso8583.tlv_lengths.55"),
        Some(&Value::from("9F10:2"))
    );
    assert_eq!(encoded, bytes);
}

/// One value recorded in a histogram: the metric's name, its labels and the value.
type Record = (String, Vec<(String, String)>, f64);

/// Histogram values recorded through the `metrics` facade.
#[derive(Clone, Default)]
struct Recorded(Arc<Mutex<Vec<Record>>>);

struct Hist(metrics::Key, Recorded);

impl metrics::HistogramFn for Hist {
    fn record(&self, value: f64) {
        let labels = self
            .0
            .labels()
            .map(|l| (l.key().to_owned(), l.value().to_owned()))
            .collect();
        if let Ok(mut list) = (self.1).0.lock() {
            list.push((self.0.name().to_owned(), labels, value));
        }
    }
}

impl metrics::Recorder for Recorded {
    fn describe_counter(
        &self,
        _: metrics::KeyName,
        _: Option<metrics::Unit>,
        _: metrics::SharedString,
    ) {
    }
    fn describe_gauge(
        &self,
        _: metrics::KeyName,
        _: Option<metrics::Unit>,
        _: metrics::SharedString,
    ) {
    }
    fn describe_histogram(
        &self,
        _: metrics::KeyName,
        _: Option<metrics::Unit>,
        _: metrics::SharedString,
    ) {
    }
    fn register_counter(&self, _: &metrics::Key, _: &metrics::Metadata<'_>) -> metrics::Counter {
        metrics::Counter::noop()
    }
    fn register_gauge(&self, _: &metrics::Key, _: &metrics::Metadata<'_>) -> metrics::Gauge {
        metrics::Gauge::noop()
    }
    fn register_histogram(
        &self,
        key: &metrics::Key,
        _: &metrics::Metadata<'_>,
    ) -> metrics::Histogram {
        metrics::Histogram::from_arc(Arc::new(Hist(key.clone(), self.clone())))
    }
}

#[test]
fn fields_per_decoded_message_are_recorded() {
    let recorded = Recorded::default();
    metrics::with_local_recorder(&recorded, || {
        let mut h = codec(&json!({ "spec": "builtin:spec87ascii" }));
        h.send("in", raw(&auth(&[(2, PAN), (3, "000000"), (11, "123456")])))
            .expect("processed");
        h.send("in", raw(&auth(&[(3, "000000")])))
            .expect("processed");
        // Encoding and failing to decode record nothing.
        let mut fields = h.take("out").remove(0);
        fields.raw = Default::default();
        h.send("in", fields).expect("processed");
        h.send("in", raw(b"01")).expect("processed");
    });
    let list = recorded.0.lock().expect("lock").clone();
    let gear = list
        .first()
        .map(|(_, labels, _)| labels.clone())
        .unwrap_or_default();
    assert_eq!(gear.len(), 1, "{list:?}");
    assert_eq!(gear[0].0, "gear");
    let values: Vec<(String, f64)> = list.into_iter().map(|(name, _, v)| (name, v)).collect();
    assert_eq!(
        values,
        [
            ("flux.codec.iso8583.fields_count".to_owned(), 3.0),
            ("flux.codec.iso8583.fields_count".to_owned(), 1.0)
        ]
    );
}

#[test]
fn auto_decodes_raw_and_encodes_fields() {
    let bytes = auth(&[(2, PAN), (3, "000000"), (4, "000000010000"), (11, "123456")]);
    let mut h = codec(&json!({ "spec": "builtin:spec87ascii" }));
    h.send("in", raw(&bytes)).expect("processed");
    let mut decoded = h.take("out").remove(0);
    assert_eq!(
        decoded.data.get_path("iso8583.field.11"),
        Some(&Value::from("123456"))
    );
    // It has `data.iso8583` now: the same gear encodes it, and an edit shows in the bytes.
    decoded
        .data
        .set_path("iso8583.field.11", Value::from("654321"))
        .expect("path");
    h.send("in", decoded).expect("processed");
    let encoded = h.take("out").remove(0);
    let expected = auth(&[(2, PAN), (3, "000000"), (4, "000000010000"), (11, "654321")]);
    assert_eq!(&encoded.raw[..], &expected[..]);
    assert_eq!(h.stats().errors, 0);
}

#[test]
fn a_truncated_message_goes_to_error_with_the_field_and_the_offset() {
    let bytes = auth(&[(2, PAN), (3, "000000")]);
    // MTI (4) + bitmap (16) + LL (2) + 5 digits of the PAN.
    let cut = &bytes[..27];
    let mut h = codec(&json!({ "spec": "builtin:spec87ascii" }));
    let err = check_rejected(
        &mut h,
        raw(cut),
        "codecerror: truncated: 16 bytes needed, 5 left at byte 22 (field 2)",
    );
    assert_eq!(meta(&err, ERROR_FIELD_META).as_deref(), Some("2"));
    assert_eq!(meta(&err, ERROR_OFFSET_META).as_deref(), Some("22"));
    assert_eq!(&err.raw[..], cut, "the message is left as it came");
    assert_eq!(h.stats().errors, 1);
}

#[test]
fn error_texts_never_show_a_pan() {
    let mut h = codec(&json!({ "spec": "builtin:spec87ascii", "direction": "encode" }));
    // A key that is a PAN: the error names the key, masked.
    let msg = FluxMsg::builder()
        .meta("iso8583.mti", "0100")
        .data_path(&format!("iso8583.field.{PAN}"), "x")
        .expect("path")
        .build();
    let err = check_rejected(
        &mut h,
        msg,
        "codecerror: `iso8583.field.411111******1111` is not a field or subfield of the spec",
    );
    let text = format!("{:?}", err.meta);
    assert!(!text.contains(PAN), "{text}");
}

#[test]
fn on_error_drop_counts_the_message() {
    let mut h = codec(&json!({ "spec": "builtin:spec87ascii", "on_error": "drop" }));
    h.send("in", raw(b"01")).expect("processed");
    h.send("in", FluxMsg::builder().data("x", 1).build())
        .expect("processed");
    assert!(h.take("out").is_empty());
    assert!(h.take("error").is_empty());
    assert_eq!(h.stats().dropped("codecerror"), 2);
}

#[test]
fn on_error_kill_fails_the_gear() {
    let mut h = codec(&json!({ "spec": "builtin:spec87ascii", "on_error": "kill" }));
    let err = check_rejected(
        &mut h,
        raw(b"01"),
        "codecerror: truncated: 4 bytes needed, 2 left at byte 0 (MTI)",
    );
    assert_eq!(meta(&err, "conn.close").as_deref(), Some("true"));
    // A good message after it is refused too.
    check_rejected(&mut h, raw(&auth(&[(3, "000000")])), "killed");
}

#[test]
fn validation_enforce_rejects_and_warn_passes() {
    let spec = spec_file("rules.yaml", RULES);
    let spec = spec.to_str().expect("utf-8");
    let no_pan = auth(&[(3, "000000"), (39, "99")]);

    let mut enforce = codec(&json!({ "spec": spec, "validation": "enforce" }));
    let err = check_rejected(
        &mut enforce,
        raw(&no_pan),
        "validationerror: field 2 is mandatory in a 0100; field 39 is not in the value set response_codes",
    );
    assert_eq!(meta(&err, ERROR_FIELD_META).as_deref(), Some("2"));
    assert_eq!(
        meta(&err, VIOLATIONS_META).as_deref(),
        Some("missing:2 not_in_set:39")
    );
    // A message that follows the rules passes.
    enforce
        .send("in", raw(&auth(&[(2, PAN), (39, "00")])))
        .expect("processed");
    assert_eq!(enforce.take("out").len(), 1);

    let mut warn = codec(&json!({ "spec": spec, "validation": "warn" }));
    warn.send("in", raw(&no_pan)).expect("processed");
    let passed = warn.take("out");
    assert_eq!(passed.len(), 1);
    assert_eq!(
        meta(&passed[0], VIOLATIONS_META).as_deref(),
        Some("missing:2 not_in_set:39")
    );

    // Encoding is checked too; under `on_error: drop` the message is counted.
    let mut encode = codec(
        &json!({ "spec": spec, "validation": "enforce", "on_error": "drop", "direction": "encode" }),
    );
    let msg = FluxMsg::builder()
        .meta("iso8583.mti", "0800")
        .data_path("iso8583.field.52", "ABCDEFGH")
        .expect("path")
        .build();
    encode.send("in", msg).expect("processed");
    assert_eq!(encode.stats().dropped("validationerror"), 1);
}

/// Checks that `config` is refused with a cause that says `expect`.
#[track_caller]
fn check_refused(config: &Json, expect: &str) {
    let err = Harness::new::<CodecIso8583>(config).expect_err("refused");
    let cause = std::error::Error::source(&err)
        .map(ToString::to_string)
        .unwrap_or_default();
    assert!(cause.contains(expect), "{cause:?} should say {expect:?}");
}

#[test]
fn a_spec_that_does_not_load_is_refused_with_line_and_column() {
    let bad = spec_file(
        "bad.yaml",
        "spec:\n  id: bad\n  version: 1.0.0\n  fields:\n    2: {sensitivity: secret}\nwire:\n  source: moov:spec87ascii\n",
    );
    let bad = bad.to_str().expect("utf-8");
    check_refused(
        &json!({ "spec": bad }),
        &format!("config.spec: the spec has 1 problem(s): {bad}:5:"),
    );
    check_refused(
        &json!({ "spec": "no/such/spec.yaml" }),
        "config.spec: cannot read the spec no/such/spec.yaml",
    );
    check_refused(
        &json!({ "spec": "builtin:spec93" }),
        "unknown built-in spec \"builtin:spec93\"",
    );
    check_refused(
        &json!({ "spec": "builtin:spec87ascii", "on_error": "explode" }),
        "on_error",
    );
}
