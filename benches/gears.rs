//! `cargo bench --bench gears`: the per-message cost of the `transform`, `route` and `filter`
//! gears beside a hand-written Rust function doing the same work, in one run.
//!
//! Each benchmark moves a batch of 64 `payment` messages (the codec bench's shape: 20 ISO 8583
//! text fields, 8 metadata entries) through one gear with [`Runner::process`], exactly as the
//! rack engine does, and the baseline moves the same batch through a plain function that makes
//! the same edit or decision and pushes the message to the same kind of output list. Names are
//! `<gear>/<gear|hand>`; throughput is in messages. The target: a gear costs at most twice
//! the hand-written function, or under 1 µs per message, whichever is larger.

use std::hint::black_box;
use std::time::Duration;

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use fluxrig::fluxmsg::{FluxMsg, Text, Value};
use fluxrig::sdk::{OutPort, Outputs, Ports};
use serde_json::json;

mod runner;
mod shapes;

use runner::{BATCH, batch, runner};

/// The gear and its hand-written twin, in one group.
fn pair<H: Fn(&mut FluxMsg) -> Option<OutPort>>(
    c: &mut Criterion,
    name: &str,
    gear_type: &str,
    config: &serde_json::Value,
    make_hand: impl FnOnce(&Ports) -> H,
) {
    let (mut runner, input) = runner(gear_type, config);
    let hand = make_hand(runner.context().ports());
    // Check once that both do the same thing before timing them.
    let mut outputs = Outputs::new();
    runner
        .process(input, &mut batch(), &mut outputs)
        .expect("processed");
    let mut by_gear: Vec<_> = outputs
        .drain()
        .flat_map(|(p, msgs)| msgs.into_iter().map(move |m| (p, m)))
        .collect();
    let mut by_hand: Vec<_> = batch()
        .into_iter()
        .filter_map(|mut m| hand(&mut m).map(|p| (p, m)))
        .collect();
    assert_eq!(by_gear.len(), by_hand.len(), "{name}: same number out");
    let key = |(p, m): &(OutPort, FluxMsg)| (p.index(), m.id);
    by_gear.sort_by_key(key);
    by_hand.sort_by_key(key);
    for (g, h) in by_gear.iter().zip(&by_hand) {
        assert_eq!(g, h, "{name}: the same edit to the same port");
    }

    let mut group = c.benchmark_group(name);
    group.throughput(Throughput::Elements(BATCH as u64));
    group.bench_function("gear", |b| {
        b.iter_batched(
            batch,
            |mut msgs| {
                let mut out = Outputs::new();
                runner
                    .process(input, &mut msgs, &mut out)
                    .expect("processed");
                out
            },
            BatchSize::SmallInput,
        );
    });
    group.bench_function("hand", |b| {
        b.iter_batched(
            batch,
            |mut msgs| {
                let mut out = Vec::with_capacity(BATCH);
                for mut m in msgs.drain(..) {
                    if let Some(port) = hand(black_box(&mut m)) {
                        out.push((port, m));
                    }
                }
                out
            },
            BatchSize::SmallInput,
        );
    });
    group.finish();
}

fn port(ports: &Ports, name: &str) -> OutPort {
    ports.output(name).expect("the gear has this port")
}

fn field<'a>(m: &'a FluxMsg, n: &str) -> Option<&'a str> {
    m.data
        .get_path(&format!("iso8583.field.{n}"))
        .and_then(Value::as_str)
}

fn transform(c: &mut Criterion) {
    let config = json!({ "steps": [
        { "set": "data.currency", "value": "EUR" },
        { "copy": "data.iso8583.field.2", "to": "meta.pan" },
        { "move": "data.iso8583.field.52", "to": "data.secure.pin_block" },
        { "delete": "data.iso8583.field.55" },
        { "set": "meta.route_key", "template": "${meta.iso8583.mti}-${data.iso8583.field.41}" }
    ]});
    pair(c, "transform", "transform", &config, |ports| {
        let out = port(ports, "out");
        move |m: &mut FluxMsg| {
            m.data.insert("currency", Value::from("EUR"));
            let pan = m.data.get_path("iso8583.field.2").cloned()?;
            m.meta.insert("pan", Text::from(pan.as_str()?));
            if let Some(pin) = m.data.remove_path("iso8583.field.52") {
                m.data.set_path("secure.pin_block", pin).ok()?;
            }
            m.data.remove_path("iso8583.field.55");
            let mut key = String::new();
            key.push_str(m.meta.get("iso8583.mti").map_or("", |t| t.as_str()));
            key.push('-');
            key.push_str(field(m, "41").unwrap_or(""));
            m.meta.insert("route_key", Text::from(key));
            Some(out)
        }
    });
}

fn transform_expr(c: &mut Criterion) {
    let config = json!({ "steps": [
        { "set": "data.amount_major", "expr": "parse_int(data.iso8583.field[\"4\"]) / 100" }
    ]});
    pair(c, "transform-expr", "transform", &config, |ports| {
        let out = port(ports, "out");
        move |m: &mut FluxMsg| {
            let minor: i64 = field(m, "4")?.parse().ok()?;
            m.data.insert("amount_major", Value::from(minor / 100));
            Some(out)
        }
    });
}

fn route(c: &mut Criterion) {
    let config = json!({
        "rules": [
            { "when": { "field": "meta.iso8583.mti", "equals": "0200" }, "to": "out_financial" },
            { "when": { "field": "data.iso8583.field.2", "prefix": "5" }, "to": "out_mastercard" },
            { "when": { "all": [
                { "field": "data.iso8583.field.2", "prefix": "4" },
                { "field": "data.iso8583.field.4", "gte": 5000 }
            ] }, "to": { "failover": ["out_visa_a", "out_visa_b"] } }
        ],
        "default": "out_other"
    });
    pair(c, "route", "route", &config, |ports| {
        let [financial, mastercard, visa_a, other] =
            ["out_financial", "out_mastercard", "out_visa_a", "out_other"].map(|p| port(ports, p));
        move |m: &mut FluxMsg| {
            if m.meta.get("iso8583.mti").is_some_and(|t| t == "0200") {
                return Some(financial);
            }
            let pan = field(m, "2").unwrap_or("");
            if pan.starts_with('5') {
                return Some(mastercard);
            }
            let amount = field(m, "4").and_then(|a| a.trim().parse::<f64>().ok());
            if pan.starts_with('4') && amount.is_some_and(|a| a >= 5000.0) {
                return Some(visa_a);
            }
            Some(other)
        }
    });
}

fn filter(c: &mut Criterion) {
    let config = json!({ "pass_if": { "all": [
        { "field": "meta.iso8583.mti_class", "equals": "01" },
        { "field": "data.iso8583.field.4", "gte": 100 }
    ] } });
    pair(c, "filter", "filter", &config, |ports| {
        let out = port(ports, "out");
        move |m: &mut FluxMsg| {
            let class = m.meta.get("iso8583.mti_class").is_some_and(|t| t == "01");
            let amount = field(m, "4").and_then(|a| a.trim().parse::<f64>().ok());
            (class && amount.is_some_and(|a| a >= 100.0)).then_some(out)
        }
    });
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));
    targets = transform, transform_expr, route, filter
}
criterion_main!(benches);
