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
    assert_eq!(index.due(9, usize::MAX), []);
    assert!(index.has_due(10) && !index.has_due(9));
    assert_eq!(index.due(20, 1), [("b".to_owned(), 10)], "at most `max`");
    assert_eq!(index.due(20, usize::MAX), [("a".to_owned(), 15)]);
    assert!(!index.has_due(20));
    assert_eq!(index.due(u64::MAX, usize::MAX), []);
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
                    prop_assert_eq!(index.has_due(now), !want.is_empty());
                    prop_assert_eq!(index.due(now, usize::MAX), want);
                }
            }
        }
        let mut rest: Vec<(String, u64)> = model.into_iter().collect();
        rest.sort_by(|a, b| (a.1, &a.0).cmp(&(b.1, &b.0)));
        prop_assert_eq!(index.due(u64::MAX, usize::MAX), rest);
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

// ---------------------------------------------------------------------------------------------
// A bucket double: the real (memory) KV whose answers come late, for the timeout races.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use sdk::{DynGearType, Harness};
use serde_json::json;
use snake::{Kv, KvConfig, KvEntry, Snake, Storage};

use super::Coatcheck;
use super::bucket::{self, Bucket};

/// What a double does to each operation on its bucket.
#[derive(Debug, Default)]
struct Script {
    /// A get answers this much later.
    get_after: Duration,
    /// A put lands at once; its answer comes this much later.
    put_answer_after: Duration,
    /// Only the first this many puts answer late (all of them when `None`).
    slow_puts: Option<usize>,
    /// Puts asked for so far.
    puts: AtomicUsize,
    /// A delete lands at once; its answer comes this much later.
    delete_answer_after: Duration,
    /// The first this many deletes fail (without deleting).
    failing_deletes: usize,
    /// Deletes asked for so far.
    deletes: AtomicUsize,
    /// Puts answered so far.
    puts_answered: AtomicUsize,
    /// Gets running now, and the most at once.
    gets: AtomicUsize,
    peak_gets: AtomicUsize,
}

struct Double {
    kv: Kv,
    script: Arc<Script>,
}

/// Doubles by bucket name (each test has buckets of its own).
static DOUBLES: Mutex<BTreeMap<String, Arc<Script>>> = Mutex::new(BTreeMap::new());

/// The double registered for bucket `name`, in front of `kv`.
pub(super) fn double(name: &str, kv: &Kv) -> Option<Arc<dyn Bucket>> {
    let script = DOUBLES.lock().ok()?.get(name).cloned()?;
    Some(Arc::new(Double {
        kv: kv.clone(),
        script,
    }))
}

/// Puts a double with `script` in front of bucket `name`, and creates the bucket.
async fn doubled(snake: &Snake, name: &str, script: Script) -> (Kv, Arc<Script>) {
    let script = Arc::new(script);
    DOUBLES
        .lock()
        .expect("doubles")
        .insert(name.to_owned(), Arc::clone(&script));
    let cfg = KvConfig::new(name).expect("name").storage(Storage::Memory);
    (snake.kv(cfg).await.expect("bucket"), script)
}

impl Bucket for Double {
    fn get<'a>(&'a self, key: &'a str) -> bucket::Op<'a, Option<KvEntry>> {
        Box::pin(async move {
            let now = self.script.gets.fetch_add(1, Ordering::SeqCst) + 1;
            self.script.peak_gets.fetch_max(now, Ordering::SeqCst);
            tokio::time::sleep(self.script.get_after).await;
            self.script.gets.fetch_sub(1, Ordering::SeqCst);
            self.kv.get(key).await
        })
    }

    fn put<'a>(&'a self, key: &'a str, value: Bytes) -> bucket::Op<'a, u64> {
        Box::pin(async move {
            let landed = self.kv.put(key, value).await;
            let nth = self.script.puts.fetch_add(1, Ordering::SeqCst);
            if self.script.slow_puts.is_none_or(|n| nth < n) {
                tokio::time::sleep(self.script.put_answer_after).await;
            }
            self.script.puts_answered.fetch_add(1, Ordering::SeqCst);
            landed
        })
    }

    fn delete_if<'a>(&'a self, key: &'a str, revision: u64) -> bucket::Op<'a, u64> {
        Box::pin(async move {
            if self.script.deletes.fetch_add(1, Ordering::SeqCst) < self.script.failing_deletes {
                return Err(snake::Error::Timeout(Duration::from_secs(5)));
            }
            let landed = self.kv.delete_if(key, revision).await;
            tokio::time::sleep(self.script.delete_answer_after).await;
            landed
        })
    }
}

async fn coatcheck(snake: &Snake, config: serde_json::Value) -> Harness {
    let gear_type = DynGearType::of::<Coatcheck>().expect("registers");
    let mut h = Harness::builder(gear_type)
        .snake(snake.clone())
        .build_loaded(&config)
        .await
        .expect("a valid coatcheck config");
    h.start().expect("starts");
    h
}

fn pan_request(stan: &str, pan: &str) -> FluxMsg {
    FluxMsg::builder()
        .data("stan", stan)
        .data("pan", pan)
        .build()
}

fn text<'a>(msg: &'a FluxMsg, path: &str) -> Option<&'a str> {
    msg.data.get_path(path).and_then(Value::as_str)
}

/// Finding: the restore timeout covered the delete too; a delete that landed but answered
/// after `store_timeout` took the entry while its message went to `error` without its fields,
/// and no timeout event ever came for it. The delete is now waited for.
#[tokio::test(start_paused = true)]
async fn a_restore_whose_delete_answers_late_still_restores() {
    let snake = Snake::memory();
    let script = Script {
        delete_answer_after: Duration::from_secs(3),
        ..Script::default()
    };
    let (kv, _) = doubled(&snake, "late_delete", script).await;
    let config = |mode: &str| {
        json!({
            "mode": mode, "bucket": "late_delete", "key_fields": ["data.stan"],
            "value_fields": ["data.pan"], "store_timeout": "1s"
        })
    };
    let mut st = coatcheck(&snake, config("store")).await;
    let mut rs = coatcheck(&snake, config("restore")).await;
    st.send("in", pan_request("1", "4111")).expect("sent");
    st.recv("out").await.expect("stored");
    rs.send("in", FluxMsg::builder().data("stan", "1").build())
        .expect("sent");
    let back = rs.recv("out").await;
    assert_eq!(rs.error_reasons(), Vec::<String>::new());
    let back = back.expect("restored once the delete answers");
    assert_eq!(text(&back, "pan"), Some("4111"));
    let mut watch = kv.watch(">").await.expect("watch");
    assert!(
        tokio::time::timeout(Duration::ZERO, watch.next())
            .await
            .is_err(),
        "the entry is gone"
    );
}

/// Finding: a put that landed after `store_timeout` stayed in the bucket while its message
/// went to `error`, and the sweep later made a timeout event of it. What landed late is now
/// taken back.
#[tokio::test(start_paused = true)]
async fn a_store_that_times_out_takes_back_what_lands_late() {
    let snake = Snake::memory();
    let script = Script {
        put_answer_after: Duration::from_secs(3),
        ..Script::default()
    };
    let (kv, _) = doubled(&snake, "late_put", script).await;
    let mut st = coatcheck(
        &snake,
        json!({
            "mode": "store", "bucket": "late_put", "key_fields": ["data.stan"],
            "value_fields": ["data.pan"], "store_timeout": "1s"
        }),
    )
    .await;
    let mut watch = kv.watch(">").await.expect("watch");
    st.send("in", pan_request("1", "4111")).expect("sent");
    let refused = st.recv("error").await.expect("timed out");
    assert_eq!(
        refused.meta.get("error.reason").map(|r| r.as_str()),
        Some("store_timeout")
    );
    assert_eq!(text(&refused, "pan"), Some("4111"), "the message whole");
    let landed = testkit::within("the late put", watch.next())
        .await
        .expect("put");
    assert_eq!(landed.operation, snake::KvOperation::Put);
    let gone = testkit::within("the entry taken back", watch.next())
        .await
        .expect("delete");
    assert_eq!(
        (gone.key, gone.operation),
        (landed.key, snake::KvOperation::Delete)
    );
}

/// Taking back a late write deletes that write only: a retransmission parked meanwhile stays.
#[tokio::test(start_paused = true)]
async fn taking_back_a_late_write_spares_a_retransmission() {
    let snake = Snake::memory();
    let script = Script {
        put_answer_after: Duration::from_secs(3),
        slow_puts: Some(1),
        ..Script::default()
    };
    let (_, script) = doubled(&snake, "late_again", script).await;
    let config = |mode: &str| {
        json!({
            "mode": mode, "bucket": "late_again", "key_fields": ["data.stan"],
            "value_fields": ["data.pan"], "store_timeout": "1s"
        })
    };
    let mut st = coatcheck(&snake, config("store")).await;
    let mut rs = coatcheck(&snake, config("restore")).await;
    st.send("in", pan_request("1", "4111")).expect("sent");
    assert_eq!(
        st.recv("error")
            .await
            .map(|m| text(&m, "pan").map(str::to_owned)),
        Some(Some("4111".to_owned())),
        "the first store timed out"
    );
    st.send("in", pan_request("1", "4222")).expect("sent");
    st.recv("out").await.expect("the retransmission is parked");
    testkit::wait_until("the first write's late answer", || {
        script.puts_answered.load(Ordering::SeqCst) == 2
    })
    .await;
    rs.send("in", FluxMsg::builder().data("stan", "1").build())
        .expect("sent");
    let back = rs.recv("out").await.expect("restored");
    assert_eq!(text(&back, "pan"), Some("4222"));
}

/// A background store's message has gone on: a write acknowledged after `store_timeout` is
/// parked all the same, and not counted lost.
#[tokio::test(start_paused = true)]
async fn a_background_store_acknowledged_late_is_not_counted_lost() {
    let snake = Snake::memory();
    let script = Script {
        put_answer_after: Duration::from_secs(3),
        ..Script::default()
    };
    let (kv, script) = doubled(&snake, "late_bg", script).await;
    let mut st = coatcheck(
        &snake,
        json!({
            "mode": "store", "bucket": "late_bg", "key_fields": ["data.stan"],
            "value_fields": ["data.pan"], "store_timeout": "1s", "await_store": false
        }),
    )
    .await;
    st.send("in", pan_request("1", "4111")).expect("sent");
    assert_eq!(st.take("out").len(), 1, "sent on at once");
    // The worker handles the answer in the poll that receives it; a store that gave up
    // before it counts the drop.
    testkit::wait_until("the store's outcome", || {
        script.puts_answered.load(Ordering::SeqCst) == 1 || st.stats().dropped("store_failed") > 0
    })
    .await;
    assert_eq!(st.stats().dropped("store_failed"), 0);
    let mut watch = kv.watch(">").await.expect("watch");
    let parked = testkit::within("the entry", watch.next())
        .await
        .expect("parked");
    assert_eq!(parked.operation, snake::KvOperation::Put);
}

/// Finding: the sweep took expired entries one after the other, a round trip each. It now
/// works on up to `WINDOW` at once.
#[tokio::test(start_paused = true)]
async fn the_sweep_works_on_many_expired_entries_at_once() {
    let snake = Snake::memory();
    let script = Script {
        get_after: Duration::from_millis(5),
        ..Script::default()
    };
    let (_, script) = doubled(&snake, "wide_sweep", script).await;
    let mut dm = coatcheck(
        &snake,
        json!({ "mode": "daemon", "bucket": "wide_sweep", "storage": "memory" }),
    )
    .await;
    let mut st = coatcheck(
        &snake,
        json!({
            "mode": "store", "bucket": "wide_sweep", "key_fields": ["data.stan"],
            "value_fields": ["data.pan"]
        }),
    )
    .await;
    let n = super::daemon::WINDOW * 3;
    for i in 0..n {
        st.send("in", pan_request(&i.to_string(), "4111"))
            .expect("sent");
        st.recv("out").await.expect("stored");
    }
    dm.clock().advance(Duration::from_secs(61));
    for _ in 0..n {
        dm.recv("out").await.expect("a timeout event");
    }
    assert_eq!(
        script.peak_gets.load(Ordering::SeqCst),
        super::daemon::WINDOW
    );
}

/// An entry the bucket fails to delete is swept again at the next sweep, and each entry
/// becomes one event only; a restore that fails to delete its entry leaves it to the sweep.
#[tokio::test(start_paused = true)]
async fn failed_deletes_are_tried_again_and_each_entry_times_out_once() {
    let snake = Snake::memory();
    let script = Script {
        failing_deletes: 3,
        ..Script::default()
    };
    let (_, script) = doubled(&snake, "flaky", script).await;
    let mut dm = coatcheck(
        &snake,
        json!({ "mode": "daemon", "bucket": "flaky", "storage": "memory" }),
    )
    .await;
    let config = |mode: &str| {
        json!({
            "mode": mode, "bucket": "flaky", "key_fields": ["data.stan"],
            "value_fields": ["data.pan", "data.stan"], "include_values": true
        })
    };
    let mut st = coatcheck(&snake, config("store")).await;
    let mut rs = coatcheck(&snake, config("restore")).await;
    for i in 0..3 {
        st.send("in", pan_request(&i.to_string(), "4111"))
            .expect("sent");
        st.recv("out").await.expect("stored");
    }
    // The first delete fails: the restore goes to error without the fields, the entry stays.
    rs.send("in", FluxMsg::builder().data("stan", "0").build())
        .expect("sent");
    let refused = rs.recv("error").await.expect("refused");
    assert_eq!(
        refused.meta.get("error.reason").map(|r| r.as_str()),
        Some("restore_failed")
    );
    assert_eq!(text(&refused, "pan"), None);
    // The next two fail in the first sweep; each entry still times out, once.
    dm.clock().advance(Duration::from_secs(61));
    let mut stans = Vec::new();
    for _ in 0..3 {
        let event = dm.recv("out").await.expect("a timeout event");
        stans.push(text(&event, "stan").expect("stan").to_owned());
    }
    stans.sort();
    assert_eq!(stans, ["0", "1", "2"]);
    assert_eq!(script.deletes.load(Ordering::SeqCst), 1 + 3 + 2);
    dm.advance(Duration::from_secs(5)).await;
    assert!(dm.take("out").is_empty(), "one event per entry");
}
