//! `cargo bench --bench codec`: the fluxMsg codec against other serde codecs, in one run.
//!
//! Benchmarks are named `<encode|decode>/<codec>/<shape>` so that results can be compared by
//! script (criterion writes them under `target/criterion/`). Codecs:
//!
//! - `fluxmsg`: the hand-written codec (`Codec::encode`, `Codec::decode`);
//! - `fluxmsg-borrowed`: `Codec::decode_shared`, which slices byte strings out of the input;
//! - `ciborium`: the same `FluxMsg` through serde and ciborium (byte-identical output);
//! - `cbor4ii`: the same `FluxMsg` through serde and cbor4ii;
//! - `serde_json`: the same `FluxMsg` through serde and serde_json;
//! - `copy`: copying the encoded bytes into a reused buffer (encode) or a new one (decode),
//!   the floor no codec can beat.
//!
//! Shapes: `minimal` (id and ts), `payment` (20 ISO 8583-style text fields, 8 metadata
//! entries, 3 hops, 200 bytes of raw), `nested` (an IoT reading three levels deep) and
//! `raw64k` (64 KiB of raw).

use std::hint::black_box;
use std::time::Duration;

use bytes::Bytes;
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use fluxrig::fluxmsg::{Codec, FluxMsg, Id, Map, Value};

mod shapes;

use shapes::{T0, payment};

fn minimal() -> FluxMsg {
    FluxMsg::builder()
        .id(Id::U64(0x0123_4567_89ab_cdef))
        .ts(T0)
        .build()
}

fn nested() -> FluxMsg {
    let mut data = Map::new();
    let device: Map = [
        ("id", Value::from("sensor-7f3a")),
        ("model", Value::from("TH-200")),
        ("firmware", Value::from("2.4.1")),
        ("battery", Value::from(0.87)),
    ]
    .into_iter()
    .collect();
    data.insert("device", Value::Map(device));
    let readings = (0..8)
        .map(|i| {
            let m: Map = [
                ("sensor", Value::from(["temp", "hum", "pres", "co2"][i % 4])),
                ("value", Value::from(20.5 + i as f64 * 0.25)),
                ("unit", Value::from(["C", "%", "hPa", "ppm"][i % 4])),
                ("ts", Value::from(T0 + i as i64 * 1_000_000)),
                (
                    "flags",
                    Value::Array(vec![Value::from(i as u64), Value::Bool(i % 2 == 0)]),
                ),
            ]
            .into_iter()
            .collect();
            Value::Map(m)
        })
        .collect();
    data.insert("readings", Value::Array(readings));
    data.set_path("location.lat", -34.9011).expect("path");
    data.set_path("location.lon", -56.1645).expect("path");
    data.set_path("location.alt", 43u8).expect("path");
    let mut msg = FluxMsg::builder()
        .id(Id::U64(0x0123_4567_89ab_cdef))
        .ts(T0)
        .meta("fluxrig.source", "mqtt")
        .build();
    msg.data = data;
    msg
}

fn raw64k() -> FluxMsg {
    FluxMsg::builder()
        .id(Id::U64(0x0123_4567_89ab_cdef))
        .ts(T0)
        .raw(Bytes::from(vec![0xa5; 64 * 1024]))
        .build()
}

fn shapes() -> Vec<(&'static str, FluxMsg)> {
    vec![
        ("minimal", minimal()),
        ("payment", payment()),
        ("nested", nested()),
        ("raw64k", raw64k()),
    ]
}

fn encode(c: &mut Criterion) {
    let codec = Codec::new();
    let mut g = c.benchmark_group("encode");
    for (shape, msg) in shapes() {
        let canonical = codec.encode_to_vec(&msg).expect("encode");
        g.throughput(Throughput::Bytes(canonical.len() as u64));
        let mut buf = Vec::with_capacity(canonical.len() * 2);
        g.bench_function(BenchmarkId::new("fluxmsg", shape), |b| {
            b.iter(|| {
                buf.clear();
                codec.encode(black_box(&msg), &mut buf).expect("encode");
            });
        });
        g.bench_function(BenchmarkId::new("ciborium", shape), |b| {
            b.iter(|| {
                buf.clear();
                ciborium::into_writer(black_box(&msg), &mut buf).expect("encode");
            });
        });
        let mut owned = Vec::with_capacity(canonical.len() * 2);
        g.bench_function(BenchmarkId::new("cbor4ii", shape), |b| {
            b.iter(|| {
                owned.clear();
                owned = cbor4ii::serde::to_vec(std::mem::take(&mut owned), black_box(&msg))
                    .expect("encode");
            });
        });
        g.bench_function(BenchmarkId::new("serde_json", shape), |b| {
            b.iter(|| {
                buf.clear();
                serde_json::to_writer(&mut buf, black_box(&msg)).expect("encode");
            });
        });
        g.bench_function(BenchmarkId::new("copy", shape), |b| {
            b.iter(|| {
                buf.clear();
                buf.extend_from_slice(black_box(&canonical));
            });
        });
    }
    g.finish();
}

fn decode(c: &mut Criterion) {
    let codec = Codec::new();
    let mut g = c.benchmark_group("decode");
    for (shape, msg) in shapes() {
        let canonical = codec.encode_to_vec(&msg).expect("encode");
        let shared = Bytes::from(canonical.clone());
        let from_cbor4ii = cbor4ii::serde::to_vec(Vec::new(), &msg).expect("encode");
        let json = serde_json::to_vec(&msg).expect("encode");
        // Every codec in the run reads what it is timed on.
        assert_eq!(codec.decode(&canonical).expect("fluxmsg"), msg);
        let back: FluxMsg = ciborium::from_reader(canonical.as_slice()).expect("ciborium");
        assert_eq!(back, msg);
        let back: FluxMsg = cbor4ii::serde::from_slice(&from_cbor4ii).expect("cbor4ii");
        assert_eq!(back.id, msg.id);
        let back: FluxMsg = serde_json::from_slice(&json).expect("serde_json");
        assert_eq!(back.id, msg.id);

        g.throughput(Throughput::Bytes(canonical.len() as u64));
        g.bench_function(BenchmarkId::new("fluxmsg", shape), |b| {
            b.iter(|| codec.decode(black_box(&canonical)).expect("decode"));
        });
        g.bench_function(BenchmarkId::new("fluxmsg-borrowed", shape), |b| {
            b.iter(|| codec.decode_shared(black_box(&shared)).expect("decode"));
        });
        g.bench_function(BenchmarkId::new("ciborium", shape), |b| {
            b.iter(|| {
                ciborium::from_reader::<FluxMsg, _>(black_box(canonical.as_slice()))
                    .expect("decode")
            });
        });
        g.bench_function(BenchmarkId::new("cbor4ii", shape), |b| {
            b.iter(|| {
                cbor4ii::serde::from_slice::<FluxMsg>(black_box(&from_cbor4ii)).expect("decode")
            });
        });
        g.bench_function(BenchmarkId::new("serde_json", shape), |b| {
            b.iter(|| serde_json::from_slice::<FluxMsg>(black_box(&json)).expect("decode"));
        });
        g.bench_function(BenchmarkId::new("copy", shape), |b| {
            b.iter(|| black_box(&canonical).to_vec());
        });
    }
    g.finish();
}

fn config() -> Criterion {
    Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
        .sample_size(50)
}

criterion_group! {
    name = codec;
    config = config();
    targets = encode, decode
}
criterion_main!(codec);
