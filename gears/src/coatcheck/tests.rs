use std::time::Duration;

use fluxmsg::{Codec, FluxMsg, Value};
use proptest::prelude::*;

use super::daemon::Index;
use super::key::{KeySpec, base64url, normalize};
use super::{KeyNormalize, MergeStrategy, entry};
use crate::field::Field;

#[test]
fn base64url_matches_the_rfc_4648_vectors() {
    let cases = [
        ("", ""),
        ("f", "Zg"),
        ("fo", "Zm8"),
        ("foo", "Zm9v"),
        ("foob", "Zm9vYg"),
        ("fooba", "Zm9vYmE"),
        ("foobar", "Zm9vYmFy"),
    ];
    for (input, want) in cases {
        assert_eq!(base64url(input.as_bytes()), want, "{input:?}");
    }
    // The URL-safe alphabet: `-` and `_` where the standard one has `+` and `/`.
    assert_eq!(base64url(&[0xfb, 0xff, 0xbf]), "-_-_");
}

#[test]
fn normalisation() {
    let n = |v, how| normalize(v, how);
    assert_eq!(n(" 000123 ", KeyNormalize::Numeric), "123");
    assert_eq!(n("12-3", KeyNormalize::Numeric), "123");
    assert_eq!(n("0000", KeyNormalize::Numeric), "0");
    assert_eq!(n("abc", KeyNormalize::Numeric), "");
    assert_eq!(n("  T1  ", KeyNormalize::Trim), "T1");
    assert_eq!(n("  T1  ", KeyNormalize::None), "  T1  ");
}

fn spec(fields: &[&str], how: KeyNormalize) -> KeySpec {
    let fields: Vec<String> = fields.iter().map(|f| (*f).to_owned()).collect();
    KeySpec::new(&fields, how).expect("valid key fields")
}

fn msg_with(values: &[(&str, &str)]) -> FluxMsg {
    let mut msg = FluxMsg::new();
    for (k, v) in values {
        msg.data.insert(*k, Value::from(*v));
    }
    msg
}

#[test]
fn keys_are_valid_kv_keys_and_name_no_value_in_errors() {
    let s = spec(&["data.a", "data.b"], KeyNormalize::Trim);
    let key = s
        .key(&msg_with(&[("a", "x y.z*>"), ("b", "4111111111111111")]))
        .expect("key");
    assert!(
        key.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    );
    let err = s
        .key(&msg_with(&[("a", "4111111111111111")]))
        .expect_err("b missing");
    assert_eq!(err.reason(), "no_key");
    assert!(!err.detail().unwrap_or_default().contains("4111"));
    let long = "9".repeat(200);
    let err = s
        .key(&msg_with(&[("a", &long), ("b", "1")]))
        .expect_err("too long");
    assert_eq!(err.reason(), "key_too_long");
    assert!(!err.detail().unwrap_or_default().contains("999"));
}

#[test]
fn entries_round_trip_and_refuse_garbage() {
    let codec = Codec::new();
    let mut parked = FluxMsg::new();
    parked.meta.insert("conn.id", "c-1".into());
    parked
        .data
        .set_path("iso.f.2", Value::from("4111"))
        .expect("path");
    let value = entry::encode(&codec, &parked, Duration::from_secs(7)).expect("encode");
    assert_eq!(
        entry::expiry(&value).expect("expiry"),
        Duration::from_secs(7)
    );
    let (expires, back) = entry::decode(&codec, &value).expect("decode");
    assert_eq!((expires, back), (Duration::from_secs(7), parked));
    for bad in [
        &b""[..],
        &b"\x02aaaaaaaa"[..],
        &b"\x01abc"[..],
        &b"\x01\0\0\0\0\0\0\0\x01\xff"[..],
    ] {
        assert_eq!(
            entry::decode(&codec, bad).expect_err("garbage").reason(),
            "corrupt_entry"
        );
    }
}

#[test]
fn merge_goes_key_by_key_at_any_depth() {
    let mut reply = FluxMsg::new();
    reply
        .data
        .set_path("iso.f.39", Value::from("00"))
        .expect("path");
    reply
        .data
        .set_path("iso.f.4", Value::from("reply"))
        .expect("path");
    reply.meta.insert("conn.id", "reply-conn".into());
    let mut parked = FluxMsg::new();
    parked
        .data
        .set_path("iso.f.2", Value::from("4111"))
        .expect("path");
    parked
        .data
        .set_path("iso.f.4", Value::from("parked"))
        .expect("path");
    parked.meta.insert("conn.id", "parked-conn".into());
    parked.meta.insert("acq", "a1".into());

    let mut over = reply.clone();
    entry::merge(&mut over, parked.clone(), MergeStrategy::Overwrite);
    let mut keep = reply;
    entry::merge(&mut keep, parked, MergeStrategy::Preserve);
    for (m, f4, conn) in [
        (&over, "parked", "parked-conn"),
        (&keep, "reply", "reply-conn"),
    ] {
        let s = |p| m.data.get_path(p).and_then(Value::as_str);
        assert_eq!(s("iso.f.39"), Some("00"), "the reply's own field stays");
        assert_eq!(s("iso.f.2"), Some("4111"), "a parked field comes back");
        assert_eq!(s("iso.f.4"), Some(f4));
        assert_eq!(m.meta.get("conn.id").map(|t| t.as_str()), Some(conn));
        assert_eq!(m.meta.get("acq").map(|t| t.as_str()), Some("a1"));
    }
}

#[test]
fn park_takes_or_copies_only_what_is_there() {
    let fields = [
        Field::parse("data.a.b").expect("field"),
        Field::parse("meta.m").expect("field"),
        Field::parse("data.absent").expect("field"),
    ];
    let mut msg = FluxMsg::new();
    msg.data.set_path("a.b", Value::from(1u8)).expect("path");
    msg.data.set_path("a.c", Value::from(2u8)).expect("path");
    msg.meta.insert("m", "v".into());
    let mut copy = msg.clone();
    let parked = entry::park(&mut msg, &fields, false);
    assert_eq!(parked.data.get_path("a.b"), Some(&Value::from(1u8)));
    assert_eq!(parked.meta.get("m").map(|t| t.as_str()), Some("v"));
    assert!(parked.data.get("absent").is_none());
    assert!(msg.data.get_path("a.b").is_none() && msg.meta.get("m").is_none());
    assert_eq!(
        msg.data.get_path("a.c"),
        Some(&Value::from(2u8)),
        "siblings stay"
    );
    let again = entry::park(&mut copy, &fields, true);
    assert_eq!(again, parked);
    assert!(copy.data.get_path("a.b").is_some() && copy.meta.get("m").is_some());
}

#[test]
fn the_index_yields_what_is_due_soonest_first_and_forgets_removed_keys() {
    let mut index = Index::default();
    index.put("a".into(), 30);
    index.put("b".into(), 10);
    index.put("c".into(), 20);
    index.put("a".into(), 15); // stored again: the later write counts
    index.remove("c");
    assert_eq!(index.due(9), []);
    assert_eq!(index.due(20), [("b".to_owned(), 10), ("a".to_owned(), 15)]);
    assert_eq!(index.due(u64::MAX), []);
}

/// What the index does to its model: a map of key to expiry.
#[derive(Debug, Clone)]
enum Op {
    Put(u8, u8),
    Remove(u8),
    Due(u8),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        (0u8..8, any::<u8>()).prop_map(|(k, e)| Op::Put(k, e)),
        (0u8..8).prop_map(Op::Remove),
        any::<u8>().prop_map(Op::Due),
    ]
}

proptest! {
    /// The index agrees with a plain map after any sequence of puts, removes and sweeps: a
    /// sweep yields exactly the keys due, soonest first, and forgets them.
    #[test]
    fn the_index_follows_its_model(ops in proptest::collection::vec(op(), 0..64)) {
        let mut index = Index::default();
        let mut model = std::collections::HashMap::new();
        for op in ops {
            match op {
                Op::Put(k, e) => {
                    index.put(k.to_string(), u64::from(e));
                    model.insert(k.to_string(), u64::from(e));
                }
                Op::Remove(k) => {
                    index.remove(&k.to_string());
                    model.remove(&k.to_string());
                }
                Op::Due(now) => {
                    let now = u64::from(now);
                    let mut want: Vec<(String, u64)> = model
                        .iter()
                        .filter(|(_, e)| **e <= now)
                        .map(|(k, e)| (k.clone(), *e))
                        .collect();
                    want.sort_by(|a, b| (a.1, &a.0).cmp(&(b.1, &b.0)));
                    model.retain(|_, e| *e > now);
                    prop_assert_eq!(index.due(now), want);
                }
            }
        }
        let mut rest: Vec<(String, u64)> = model.into_iter().collect();
        rest.sort_by(|a, b| (a.1, &a.0).cmp(&(b.1, &b.0)));
        prop_assert_eq!(index.due(u64::MAX), rest);
    }

    /// Two different lists of values never share a key, whatever they hold.
    #[test]
    fn keys_are_injective(a in proptest::collection::vec(".{1,8}", 2), b in proptest::collection::vec(".{1,8}", 2)) {
        let s = spec(&["data.x", "data.y"], KeyNormalize::None);
        let key = |v: &Vec<String>| s.key(&msg_with(&[("x", &v[0]), ("y", &v[1])])).expect("key");
        prop_assert_eq!(a == b, key(&a) == key(&b));
    }

    /// Whatever a bucket holds, reading it gives an entry or an error, never a panic.
    #[test]
    fn decoding_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
        let _ = entry::decode(&Codec::new(), &bytes);
    }
}
