//! proptest strategies for random messages and values, shared by the areas.

use fluxmsg::{FluxMsg, Hop, Id, Integer, Map, Text, Value};
use proptest::collection::{btree_map, vec};
use proptest::prelude::*;

pub(crate) fn id() -> impl Strategy<Value = Id> {
    prop_oneof![
        any::<u64>().prop_map(Id::U64),
        any::<[u8; 16]>().prop_map(Id::Uuid)
    ]
}

fn integer() -> impl Strategy<Value = Integer> {
    prop_oneof![
        any::<u64>().prop_map(Integer::from),
        any::<i64>().prop_map(Integer::from),
        (i128::from(Integer::MIN)..i128::from(i64::MIN))
            .prop_map(|v| Integer::try_from(v).expect("in range")),
        (0u64..30).prop_map(Integer::from),
        prop::sample::select(vec![Integer::MIN, Integer::MAX, Integer::from(i64::MIN)]),
    ]
}

fn float() -> impl Strategy<Value = f64> {
    prop_oneof![
        any::<f64>(),
        any::<u64>().prop_map(f64::from_bits),
        any::<f32>().prop_map(f64::from),
        Just(f64::NAN),
        Just(-f64::NAN),
        Just(f64::from_bits(0x7ff8_0000_0000_0001)),
        Just(f64::INFINITY),
        Just(f64::NEG_INFINITY),
        Just(-0.0),
        Just(0.0),
        Just(1.5),
        Just(65504.0),
        Just(5.960_464_477_539_063e-8),
        Just(100_000.0),
        Just(1.1),
    ]
}

/// Keys, many of them starting with `$` like the JSON view's typed-value tags.
pub(crate) fn key() -> impl Strategy<Value = String> {
    prop_oneof![
        "[a-z0-9_.]{0,10}",
        "\\PC{0,6}",
        "\\$[a-z]{0,5}",
        prop::sample::select(vec!["$int", "$float", "$bytes", "$map", "$"]).prop_map(String::from),
    ]
}

pub(crate) fn value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        integer().prop_map(Value::Integer),
        float().prop_map(Value::Float),
        "\\PC{0,30}".prop_map(Value::from),
        vec(any::<u8>(), 0..40).prop_map(Value::from),
    ];
    leaf.prop_recursive(3, 48, 6, |inner| {
        prop_oneof![
            vec(inner.clone(), 0..5).prop_map(Value::Array),
            btree_map(key(), inner.clone(), 0..5).prop_map(|m| Value::Map(m.into_iter().collect())),
            // One-key maps, which the JSON view must tell from typed values.
            (key(), inner).prop_map(|(k, v)| Value::Map(Map::from_iter([(k, v)]))),
        ]
    })
}

pub(crate) fn data() -> impl Strategy<Value = Map<Value>> {
    btree_map(key(), value(), 0..6).prop_map(|m| m.into_iter().collect())
}

/// Hops with and without a decision; a decision of up to 30 characters holds at most 120
/// bytes, within the default limit.
fn hop() -> impl Strategy<Value = Hop> {
    (
        id(),
        id(),
        any::<i64>(),
        proptest::option::of("\\PC{0,30}".prop_map(Text::from)),
    )
        .prop_map(|(gear, port, ts, decision)| Hop {
            gear,
            port,
            ts,
            decision,
        })
}

fn extra() -> impl Strategy<Value = Map<Value>> {
    btree_map(key(), value(), 0..3).prop_map(|m| {
        m.into_iter()
            .filter(|(k, _)| !FluxMsg::KEYS.contains(&k.as_str()))
            .collect()
    })
}

pub(crate) fn message() -> impl Strategy<Value = FluxMsg> {
    (
        (
            proptest::option::of(id()),
            proptest::option::of(id()),
            prop_oneof![Just(String::new()), "[0-9a-f]{32}", "\\PC{0,8}"],
            proptest::option::of(id()),
            btree_map(key(), "\\PC{0,30}".prop_map(Text::from), 0..6),
        ),
        (
            data(),
            prop_oneof![Just(0u32), any::<u32>()],
            vec(any::<u8>(), 0..64),
            vec(hop(), 0..4),
            any::<i64>(),
            extra(),
        ),
    )
        .prop_map(
            |((id, ref_id, trace, src_id, meta), (data, flags, raw, path, ts, extra))| FluxMsg {
                id,
                ref_id,
                trace,
                src_id,
                meta: meta.into_iter().collect(),
                data,
                flags,
                raw: raw.into(),
                path,
                ts,
                extra,
            },
        )
}
