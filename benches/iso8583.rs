//! `cargo bench --bench iso8583`: the ISO 8583 codec beside another Rust one, in one run.
//!
//! The message is `auth_0100`: an authorisation request of 20 fields (DE 2, 3, 4, 7, 11,
//! 12, 14, 18, 22, 25, 32, 35, 37, 41, 42, 43, 49, 52, 55 with 15 EMV tags, and 60), on
//! moov-io's ISO 8583:1987 ASCII layout with DE 52 as 8 binary bytes and DE 55 as BER-TLV
//! behind an ASCII LLL length. Benchmarks are named `<unpack|pack>/<codec>`:
//!
//! - `iso8583-owned`: `Spec::unpack` into a new `Message` (values copied, DE 55's tags read);
//! - `iso8583-reused`: `Spec::unpack_into` a `Message` kept across calls;
//! - `iso8583-borrowed`: `Spec::unpack_borrowed`, fields as slices of the input, no heap;
//! - `iso8583-fluxmsg`: `Spec::unpack_to_fluxmsg`, the codec gear's whole decode (fields,
//!   aliases, metadata, raw) and `Spec::pack_fluxmsg` for the way back;
//! - `iso8583-codec-rs`: the crate `iso8583-codec-rs` 0.1 (`parse_bytes`, `publish_bytes`)
//!   with a JSON spec of the same layout; both codecs are checked to write the same bytes.
//!
//! Pack writes into a buffer reused across calls, for every codec that can. The owned
//! unpack returns a new `Message` each time, dropped inside the timed loop.
//!
//! `gears/decode-encode` moves batches of 64 `auth_0100` messages (`raw` only) through two
//! `codec_iso8583` gears as the rack engine drives them (`Runner::process`): one decodes
//! them into fields, then `raw` is cleared and the other encodes them back into `raw`;
//! throughput is in messages, so criterion's time is for 64 of them. The result is checked
//! to be the same bytes.

use std::hint::black_box;
use std::time::Duration;

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use fluxrig::fluxmsg::FluxMsg;
use fluxrig::fluxmsg::bytes::Bytes;
use fluxrig::sdk::Outputs;
use iso8583::{Field, Message, MessageRef, Spec, SubKey, Subfield};

#[allow(
    dead_code,
    reason = "this suite uses the runner, not the payment batch"
)]
mod runner;
#[allow(
    dead_code,
    reason = "this suite uses the runner, not the payment batch"
)]
mod shapes;

use runner::{BATCH, runner};

const SPEC: &str = r#"
spec:
  id: bench-auth
  version: 1.0.0
  fields:
    2: {alias: card.pan, sensitivity: pan}
    4: {alias: amount.transaction}
    11: {alias: trace.stan}
    37: {alias: trace.rrn}
wire:
  source: moov:spec87ascii
  fields:
    52: {type: Binary, length: 8, enc: Binary, prefix: Binary.Fixed}
    55:
      type: Composite
      length: 999
      enc: Binary
      prefix: ASCII.LLL
      layout: tlv
      subfields:
        9F02: {type: Numeric, length: 12, enc: BCD}
        9F03: {type: Numeric, length: 12, enc: BCD}
        9F26: {type: Binary, length: 8}
        9F27: {type: Binary, length: 1}
        9F10: {type: Binary, length: 32}
        9F37: {type: Binary, length: 4}
        9F36: {type: Binary, length: 2}
        95: {type: Binary, length: 5}
        9A: {type: Numeric, length: 6, enc: BCD}
        9C: {type: Numeric, length: 2, enc: BCD}
        5F2A: {type: Numeric, length: 4, enc: BCD}
        82: {type: Binary, length: 2}
        9F1A: {type: Numeric, length: 4, enc: BCD}
        9F33: {type: Binary, length: 3}
        9F34: {type: Binary, length: 3}
"#;

const FIELDS: [(u16, &str); 18] = [
    (2, "4111111111111111"),
    (3, "000000"),
    (4, "000000010000"),
    (7, "1123145900"),
    (11, "123456"),
    (12, "145900"),
    (14, "2812"),
    (18, "5999"),
    (22, "051"),
    (25, "00"),
    (32, "412345"),
    (35, "4111111111111111=28121011234567890"),
    (37, "532714123456"),
    (41, "TERM0001"),
    (42, "MERCHANT0000001"),
    (43, "ACME STORE             MONTEVIDEO     UY"),
    (49, "858"),
    (60, "POS TERMINAL 07 BATCH 000123"),
];

const PIN: [u8; 8] = [0x1A, 0x2B, 0x3C, 0x4D, 0x5E, 0x6F, 0x70, 0x81];

/// The EMV tags of DE 55, as (tag, value in hex).
const EMV: [(u32, &str); 15] = [
    (0x9F02, "000000010000"),
    (0x9F03, "000000000000"),
    (0x9F26, "8E19ED4BCA5C670A"),
    (0x9F27, "80"),
    (0x9F10, "06010A03A0B800"),
    (0x9F37, "9BADBCAB"),
    (0x9F36, "00FF"),
    (0x95, "0000000000"),
    (0x9A, "251123"),
    (0x9C, "00"),
    (0x5F2A, "0858"),
    (0x82, "5C00"),
    (0x9F1A, "0858"),
    (0x9F33, "E0F0C8"),
    (0x9F34, "1E0300"),
];

fn unhex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).expect("hex"))
        .collect()
}

/// BCD-valued tags are given as their digits; the others as bytes.
fn auth_0100(spec: &Spec) -> Message {
    let mut msg = Message::new("0100");
    for (n, v) in FIELDS {
        msg.set(n, v);
    }
    msg.set(52, &PIN);
    let comp = spec.field(55).and_then(|f| f.composite()).expect("DE 55");
    let subs = EMV
        .iter()
        .map(|(tag, hex)| {
            let key = SubKey::Tag(*tag);
            let bcd = comp
                .subfield(key)
                .is_some_and(|f| f.encoding() == iso8583::Encoding::Bcd);
            let value = if bcd {
                hex.as_bytes().to_vec()
            } else {
                unhex(hex)
            };
            Subfield::new(key, value)
        })
        .collect();
    msg.set(55, Field::Composite(subs));
    msg
}

/// The same layout for iso8583-codec-rs: ASCII fields, a hex bitmap, DE 52 and 55 binary.
fn codec_rs_spec() -> iso8583_codec_rs::LoadedSpec {
    let spec87 = Spec::builtin("moov:spec87ascii").expect("spec87ascii");
    let mut fields = vec![
        serde_json::json!({"de": 0, "name": "mti", "type": "string", "length": 4}),
        serde_json::json!({"de": 1, "name": "bitmap", "type": "bitmap", "length": 8, "encoding": "hex"}),
    ];
    for n in FIELDS.iter().map(|(n, _)| *n) {
        let f = spec87.field(n).expect("field");
        let prefix = match f.prefix().digits {
            0 => "fixed",
            2 => "LLVAR",
            _ => "LLLVAR",
        };
        fields.push(serde_json::json!({
            "de": n, "name": format!("f{n}"), "type": "string", "length": f.length(),
            "prefix": prefix, "encoding": "ascii", "padding": {"side": "none"}
        }));
    }
    fields.push(serde_json::json!({"de": 52, "name": "pin", "type": "binary", "length": 8, "encoding": "binary"}));
    fields.push(serde_json::json!({"de": 55, "name": "icc", "type": "binary", "length": 999, "prefix": "LLLVAR", "encoding": "binary"}));
    let doc = serde_json::json!({"version": "1987", "fields": fields});
    iso8583_codec_rs::load_spec(&doc.to_string()).expect("codec-rs spec")
}

fn codec_rs_message(msg: &Message, bytes_55: &[u8]) -> serde_json::Value {
    let hex = |b: &[u8]| b.iter().map(|x| format!("{x:02X}")).collect::<String>();
    let mut fields = serde_json::Map::new();
    for (n, v) in FIELDS {
        fields.insert(format!("de{n:03}_f{n}"), v.into());
    }
    fields.insert("de052_pin".into(), hex(&PIN).into());
    fields.insert("de055_icc".into(), hex(bytes_55).into());
    serde_json::json!({"mti": msg.mti(), "fields": fields})
}

fn bench(c: &mut Criterion) {
    let spec = Spec::from_yaml(SPEC).expect("spec");
    let msg = auth_0100(&spec);
    let bytes = spec.pack_to_vec(&msg).expect("pack");
    assert_eq!(spec.unpack(&bytes).expect("unpack"), msg);
    let flux = spec.unpack_to_fluxmsg(&bytes).expect("fluxmsg");

    let rs_spec = codec_rs_spec();
    let mut borrowed = MessageRef::new();
    spec.unpack_borrowed(&bytes, &mut borrowed)
        .expect("borrowed");
    let de55 = borrowed.field(55).expect("DE 55");
    let rs_msg = codec_rs_message(&msg, de55);
    let rs_bytes = iso8583_codec_rs::iso8583::publish_bytes(&rs_msg, &rs_spec).expect("codec-rs");
    assert_eq!(rs_bytes, bytes, "both codecs write the same message");
    iso8583_codec_rs::iso8583::parse_bytes(&bytes, &rs_spec).expect("codec-rs parse");
    println!(
        "auth_0100: {} bytes, {} fields",
        bytes.len(),
        msg.numbers().count()
    );

    let mut g = c.benchmark_group("unpack");
    g.throughput(Throughput::Elements(1));
    g.bench_function("iso8583-owned", |b| {
        b.iter(|| spec.unpack(black_box(&bytes)).expect("unpack"));
    });
    let mut reused = Message::default();
    g.bench_function("iso8583-reused", |b| {
        b.iter(|| {
            spec.unpack_into(black_box(&bytes), &mut reused)
                .expect("unpack");
        });
    });
    g.bench_function("iso8583-borrowed", |b| {
        b.iter(|| {
            spec.unpack_borrowed(black_box(&bytes), &mut borrowed)
                .expect("unpack");
        });
    });
    g.bench_function("iso8583-fluxmsg", |b| {
        b.iter(|| spec.unpack_to_fluxmsg(black_box(&bytes)).expect("unpack"));
    });
    g.bench_function("iso8583-codec-rs", |b| {
        b.iter(|| {
            iso8583_codec_rs::iso8583::parse_bytes(black_box(&bytes), &rs_spec).expect("parse")
        });
    });
    g.finish();

    let mut g = c.benchmark_group("pack");
    g.throughput(Throughput::Elements(1));
    let mut out = Vec::with_capacity(512);
    g.bench_function("iso8583", |b| {
        b.iter(|| {
            out.clear();
            spec.pack(black_box(&msg), &mut out).expect("pack");
        });
    });
    g.bench_function("iso8583-fluxmsg", |b| {
        b.iter(|| {
            out.clear();
            spec.pack_fluxmsg(black_box(&flux), &mut out).expect("pack");
        });
    });
    g.bench_function("iso8583-codec-rs", |b| {
        b.iter(|| {
            iso8583_codec_rs::iso8583::publish_bytes(black_box(&rs_msg), &rs_spec).expect("publish")
        });
    });
    g.finish();

    gears(c, &bytes);
}

/// Decodes `msgs` with one `codec_iso8583` gear, then encodes them back with another.
fn decode_encode(
    decode: &mut (fluxrig::sdk::Runner, fluxrig::sdk::InPort),
    encode: &mut (fluxrig::sdk::Runner, fluxrig::sdk::InPort),
    msgs: &mut Vec<FluxMsg>,
) -> Outputs {
    let mut out = Outputs::new();
    decode.0.process(decode.1, msgs, &mut out).expect("decoded");
    let mut decoded: Vec<FluxMsg> = out.drain().flat_map(|(_, m)| m).collect();
    for m in &mut decoded {
        m.raw = Bytes::new();
    }
    let mut out = Outputs::new();
    encode
        .0
        .process(encode.1, &mut decoded, &mut out)
        .expect("encoded");
    out
}

fn gears(c: &mut Criterion, bytes: &[u8]) {
    let path = std::env::temp_dir().join(format!("bench-iso8583-{}.yaml", std::process::id()));
    std::fs::write(&path, SPEC).expect("the spec written");
    let config = |direction| serde_json::json!({ "spec": path, "direction": direction });
    let mut decode = runner("codec_iso8583", &config("decode"));
    let mut encode = runner("codec_iso8583", &config("encode"));
    let _ = std::fs::remove_file(&path);
    let raw = Bytes::copy_from_slice(bytes);
    let batch = || vec![FluxMsg::builder().raw(raw.clone()).build(); BATCH];
    let mut out = decode_encode(&mut decode, &mut encode, &mut batch());
    let back: Vec<FluxMsg> = out.drain().flat_map(|(_, m)| m).collect();
    assert_eq!(back.len(), BATCH);
    assert!(
        back.iter().all(|m| m.raw == raw),
        "the gears give the same bytes back"
    );

    let mut g = c.benchmark_group("gears");
    g.throughput(Throughput::Elements(BATCH as u64));
    g.bench_function("decode-encode", |b| {
        b.iter_batched(
            batch,
            |mut msgs| decode_encode(&mut decode, &mut encode, &mut msgs),
            BatchSize::SmallInput,
        );
    });
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(2))
        .sample_size(50);
    targets = bench
}
criterion_main!(benches);
