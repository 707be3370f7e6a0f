//! Tests of the `wasm` gear with real modules: the guests of `examples/guests` built from
//! source for wasm32-unknown-unknown, and modules written by hand in WAT.

use std::path::{Path, PathBuf};

use fluxmsg::{FluxMsg, Id, Value};
use gears::wasm::{SecretKey, Wasm, module_bucket, sign};
use sdk::{DynGearType, Harness, abi};
use serde_json::{Value as Json, json};

fn testbed() -> PathBuf {
    testkit::guest_wasm("testbed")
}

fn config(source: &Path) -> Json {
    json!({ "source": source, "allow_unsigned": true, "ports": ["out", "audit"] })
}

fn with(mut config: Json, extra: &Json) -> Json {
    if let (Some(c), Some(e)) = (config.as_object_mut(), extra.as_object()) {
        for (k, v) in e {
            c.insert(k.clone(), v.clone());
        }
    }
    config
}

fn harness(config: &Json) -> Harness {
    Harness::new::<Wasm>(config).expect("the wasm gear starts")
}

fn payment(n: u64) -> FluxMsg {
    FluxMsg::builder()
        .id(Id::U64(1000 + n))
        .ts(1_767_225_600_000_000_000)
        .meta("iso8583.mti", "0100")
        .data_path("iso8583.field.4", "000000010000")
        .and_then(|b| b.data_path("iso8583.field.11", format!("{n:06}")))
        .expect("paths")
        .raw(&b"\x02\x00"[..])
        .build()
}

fn action(n: u64, action: &str) -> FluxMsg {
    let mut msg = payment(n);
    msg.meta.insert("test.action", action.into());
    msg
}

fn checked(msg: &FluxMsg) -> bool {
    msg.data.get("checked") == Some(&Value::Bool(true))
}

fn scratch_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("fluxrig-wasm-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("scratch dir");
    dir
}

fn write(dir: &Path, name: &str, bytes: &[u8]) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, bytes).expect("write module");
    path
}

#[test]
fn a_guest_edits_one_field_and_keeps_the_rest() {
    let mut h = harness(&config(&testbed()));
    let msgs: Vec<_> = (0..10).map(payment).collect();
    h.send_batch("in", msgs.clone()).expect("processed");
    let out = h.take("out");
    assert_eq!(out.len(), 10);
    for (got, sent) in out.iter().zip(&msgs) {
        let mut expected = sent.clone();
        expected.data.insert("checked", Value::Bool(true));
        assert_eq!(got, &expected);
    }
    let stats = h.stats();
    assert_eq!(
        (stats.messages_in, stats.messages_out, stats.errors),
        (10, 10, 0)
    );
}

#[test]
fn the_reference_entry_point_gives_the_same_messages_as_the_batch_one() {
    let msgs: Vec<_> = (0..5).map(payment).collect();
    let mut batch = harness(&config(&testbed()));
    let mut single = harness(&with(config(&testbed()), &json!({ "batch": "off" })));
    batch.send_batch("in", msgs.clone()).expect("processed");
    single.send_batch("in", msgs).expect("processed");
    let (a, b) = (batch.take("out"), single.take("out"));
    assert_eq!(a.len(), 5);
    assert_eq!(a, b);
}

#[test]
fn a_guest_sends_to_several_ports_drops_and_fails_messages() {
    let mut h = harness(&config(&testbed()));
    h.send_batch(
        "in",
        vec![
            action(1, "fanout"),
            action(2, "drop"),
            action(3, "error"),
            action(4, "new"),
            payment(5),
        ],
    )
    .expect("processed");
    let out = h.take("out");
    let audit = h.take("audit");
    assert_eq!(audit.len(), 1);
    assert_eq!(audit[0].id, Some(Id::U64(1001)));
    let ids: Vec<_> = out.iter().map(|m| m.id).collect();
    assert_eq!(out.len(), 3, "fanout, new and the plain one: {ids:?}");
    assert!(
        out.iter()
            .any(|m| m.data.get("created") == Some(&Value::Bool(true)))
    );
    assert_eq!(h.error_reasons(), ["guest_error"]);
    let stats = h.stats();
    assert_eq!(stats.dropped("asked_to_drop"), 1);
    assert_eq!(
        stats.dropped("wasm_drop"),
        1,
        "a new message does not answer for its input"
    );
    assert_eq!(stats.errors, 1);
}

#[test]
fn guest_state_lives_across_calls() {
    let mut h = harness(&config(&testbed()));
    for n in 0..3 {
        h.send("in", action(n, "count")).expect("processed");
    }
    let counts: Vec<_> = h
        .take("out")
        .iter()
        .map(|m| m.data.get("count").and_then(Value::as_u64))
        .collect();
    assert_eq!(counts, [Some(1), Some(2), Some(3)]);
}

#[test]
fn an_endless_loop_hits_the_deadline_and_the_next_message_is_served() {
    let mut h = harness(&with(config(&testbed()), &json!({ "deadline": "30ms" })));
    // The call ends (a loop never would on its own) and the error says why: the deadline.
    let mut h = testkit::within_blocking("the looping batch to be cut", move || {
        h.send_batch("in", vec![payment(1), action(2, "loop"), payment(3)])
            .expect("processed");
        h
    });
    let out = h.take("out");
    assert_eq!(
        out.iter().map(|m| m.id).collect::<Vec<_>>(),
        [Some(Id::U64(1001)), Some(Id::U64(1003))]
    );
    assert!(out.iter().all(checked));
    assert_eq!(h.error_reasons(), ["deadline"]);
    // The recreated instance serves on, in both entry points.
    h.send("in", payment(4)).expect("processed");
    assert_eq!(h.take("out").len(), 1);

    let mut single = harness(&with(
        config(&testbed()),
        &json!({ "deadline": "30ms", "batch": "off" }),
    ));
    let mut single = testkit::within_blocking("the looping message to be cut", move || {
        single
            .send_batch("in", vec![action(1, "loop"), payment(2)])
            .expect("processed");
        single
    });
    assert_eq!(single.error_reasons(), ["deadline"]);
    assert_eq!(single.take("out").len(), 1);
}

#[test]
fn fuel_stops_a_loop_when_configured() {
    let mut h = harness(&with(
        config(&testbed()),
        &json!({ "deadline": "10s", "fuel": 5_000_000 }),
    ));
    h.send_batch("in", vec![action(1, "loop"), payment(2)])
        .expect("processed");
    assert_eq!(h.error_reasons(), ["out_of_fuel"]);
    assert_eq!(h.take("out").len(), 1);
}

#[test]
fn growing_memory_past_the_cap_costs_that_message_only() {
    let mut h = harness(&with(
        config(&testbed()),
        &json!({ "memory_limit_pages": 64 }),
    ));
    h.send_batch("in", vec![action(1, "grow"), payment(2)])
        .expect("processed");
    assert_eq!(h.error_reasons(), ["memory_limit"]);
    let out = h.take("out");
    assert_eq!(out.len(), 1);
    assert!(checked(&out[0]));
}

#[test]
fn a_panicking_guest_traps_and_the_gear_goes_on() {
    let mut h = harness(&config(&testbed()));
    h.send_batch(
        "in",
        vec![action(1, "panic"), payment(2), action(3, "panic")],
    )
    .expect("processed");
    assert_eq!(h.error_reasons(), ["trap", "trap"]);
    assert_eq!(h.take("out").len(), 1);
}

#[test]
fn a_module_with_too_little_memory_for_its_start_is_refused() {
    let err = Harness::new::<Wasm>(&with(
        config(&testbed()),
        &json!({ "memory_limit_pages": 1 }),
    ))
    .expect_err("the guest needs more than one page");
    assert!(testkit::chain(&err).contains("memory_limit_pages"), "{err}");
}

#[test]
fn guest_logs_reach_the_host() {
    let mut h = harness(&config(&testbed()));
    h.send("in", action(1, "log")).expect("processed");
    assert_eq!(h.take("out").len(), 1);
}

const ALLOC: &str = r#"
  (memory (export "memory") 1)
  (global $next (mut i32) (i32.const 1024))
  (func (export "alloc") (param $n i32) (result i32)
    (local $p i32)
    (local.set $p (global.get $next))
    (global.set $next (i32.add (global.get $next) (local.get $n)))
    (local.get $p))
  (func (export "free") (param i32 i32))
"#;

/// A module written against the reference ABI without our SDK: it logs through `env.log`,
/// drops a message whose first CBOR byte says it has fewer than two fields, and echoes the
/// rest.
fn reference_module() -> Vec<u8> {
    wat::parse_str(format!(
        r#"(module
          (import "env" "log" (func $log (param i32 i32 i32)))
          (data (i32.const 16) "hello from wat")
          {ALLOC}
          (func (export "process") (param $p i32) (param $n i32) (result i64)
            (call $log (i32.const 2) (i32.const 16) (i32.const 14))
            ;; a CBOR map head 0xa0..0xa1: fewer than two fields -> drop
            (if (i32.lt_u (i32.load8_u (local.get $p)) (i32.const 0xa2))
              (then (return (i64.const 0))))
            (i64.or
              (i64.shl (i64.extend_i32_u (local.get $p)) (i64.const 32))
              (i64.extend_i32_u (local.get $n)))))"#
    ))
    .expect("valid wat")
}

#[test]
fn a_hand_written_module_runs_against_the_reference_abi() {
    let dir = scratch_dir("reference");
    let path = write(&dir, "echo.wasm", &reference_module());
    let mut h =
        harness(&json!({ "source": format!("file://{}", path.display()), "allow_unsigned": true }));
    let small = FluxMsg::builder().id(Id::U64(7)).build();
    h.send_batch("in", vec![payment(1), small, payment(2)])
        .expect("processed");
    assert_eq!(h.take("out"), vec![payment(1), payment(2)]);
    assert_eq!(h.stats().dropped("wasm_drop"), 1);
}

#[test]
fn output_outside_the_guest_memory_goes_to_error() {
    let module = wat::parse_str(format!(
        r#"(module {ALLOC}
          (func (export "process") (param $p i32) (param $n i32) (result i64)
            (if (i32.eq (local.get $n) (i32.const 0)) (then (return (i64.const 0))))
            ;; the second message of the gear's life answers with a bogus pointer
            (if (i32.gt_u (local.get $p) (i32.const 1024))
              (then (return (i64.const 0x7fff000000000010))))
            (i64.or
              (i64.shl (i64.extend_i32_u (local.get $p)) (i64.const 32))
              (i64.extend_i32_u (local.get $n)))))"#
    ))
    .expect("valid wat");
    let dir = scratch_dir("bad-output");
    let path = write(&dir, "bad.wasm", &module);
    let mut h = harness(&json!({ "source": path, "allow_unsigned": true }));
    h.send_batch("in", vec![payment(1), payment(2), payment(3)])
        .expect("processed");
    // First message: the fresh instance allocates at 1024 and echoes. Second: a bogus
    // pointer, and the instance is recreated, so the third is served from 1024 again.
    assert_eq!(h.error_reasons(), ["bad_output"]);
    assert_eq!(h.take("out"), vec![payment(1), payment(3)]);
}

#[test]
fn a_forbidden_import_is_refused_at_load_by_name() {
    let module = wat::parse_str(format!(
        r#"(module
          (import "wasi_snapshot_preview1" "fd_write" (func (param i32 i32 i32 i32) (result i32)))
          {ALLOC}
          (func (export "process") (param i32 i32) (result i64) (i64.const 0)))"#
    ))
    .expect("valid wat");
    let dir = scratch_dir("forbidden");
    let path = write(&dir, "wasi.wasm", &module);
    let err = Harness::new::<Wasm>(&json!({ "source": path, "allow_unsigned": true }))
        .expect_err("refused");
    let text = testkit::chain(&err);
    assert!(
        text.contains("fd_write") && text.contains("wasi_snapshot_preview1"),
        "{text}"
    );
}

#[test]
fn signatures_are_checked_against_the_trusted_keys() {
    let bytes = std::fs::read(testbed()).expect("module");
    let vendor = SecretKey::from_seed([7; 32]);
    let other = SecretKey::from_seed([9; 32]);
    let signed = sign(&bytes, &vendor).expect("signs");
    let dir = scratch_dir("signatures");
    let signed_path = write(&dir, "signed.wasm", &signed);
    let unsigned_path = write(&dir, "unsigned.wasm", &bytes);
    let trust = |key: &SecretKey| json!([key.public_key().to_string()]);

    // Signed by the trusted key: runs, unsigned modules not allowed.
    let mut h = harness(&json!({ "source": signed_path, "trusted_keys": trust(&vendor) }));
    h.send("in", payment(1)).expect("processed");
    assert_eq!(h.take("out").len(), 1);

    // Signed by a key nobody trusts: refused, even with allow_unsigned.
    for allow in [false, true] {
        let err = Harness::new::<Wasm>(&json!({
            "source": signed_path, "trusted_keys": trust(&other), "allow_unsigned": allow,
        }))
        .expect_err("bad signature");
        assert!(
            testkit::chain(&err).to_lowercase().contains("signature"),
            "{err}"
        );
    }

    // A signature over other bytes: one byte of the code changed after signing.
    let mut tampered = signed;
    let at = tampered.len() / 2;
    tampered[at] ^= 0x01;
    let tampered_path = write(&dir, "tampered.wasm", &tampered);
    let err = Harness::new::<Wasm>(&json!({
        "source": tampered_path, "trusted_keys": trust(&vendor),
    }))
    .expect_err("tampered");
    let text = testkit::chain(&err).to_lowercase();
    assert!(
        text.contains("signature") || text.contains("invalid"),
        "{text}"
    );

    // Unsigned: refused unless the config says so.
    let err =
        Harness::new::<Wasm>(&json!({ "source": unsigned_path, "trusted_keys": trust(&vendor) }))
            .expect_err("unsigned");
    assert!(testkit::chain(&err).contains("not signed"), "{err}");
    let err = Harness::new::<Wasm>(&json!({ "source": unsigned_path })).expect_err("unsigned");
    assert!(testkit::chain(&err).contains("not signed"), "{err}");
    harness(&json!({ "source": unsigned_path, "allow_unsigned": true }));
}

#[test]
fn bad_configurations_are_refused_before_anything_runs() {
    for (config, needle) in [
        (json!({ "source": "http://x/m.wasm" }), "unknown scheme"),
        (
            json!({ "source": "snake://bucket" }),
            "snake://<bucket>/<key>",
        ),
        (
            json!({ "source": "m.wasm", "ports": ["error"] }),
            "ports[0]",
        ),
        (
            json!({ "source": "m.wasm", "ports": ["out", "out"] }),
            "twice",
        ),
        (
            json!({ "source": "m.wasm", "trusted_keys": ["abc"] }),
            "trusted_keys[0]",
        ),
        (json!({ "source": "m.wasm", "deadline": "0s" }), "deadline"),
        (
            json!({ "source": "m.wasm", "memory_limit_pages": 0 }),
            "memory_limit_pages",
        ),
        (json!({ "source": "m.wasm", "fuel": 0 }), "fuel"),
    ] {
        let err = Harness::new::<Wasm>(&config).expect_err("refused");
        assert!(testkit::chain(&err).contains(needle), "{config}: {err}");
    }
    let err =
        Harness::new::<Wasm>(&json!({ "source": "/nonexistent/m.wasm", "allow_unsigned": true }))
            .expect_err("no file");
    assert!(
        testkit::chain(&err).contains("/nonexistent/m.wasm"),
        "{err}"
    );
}

#[tokio::test]
async fn a_module_loads_from_a_snake_kv_bucket() {
    let snake = snake::Snake::memory();
    let kv = snake
        .kv(module_bucket("wasm_catalog").expect("bucket"))
        .await
        .expect("bucket");
    kv.put("testbed.wasm", std::fs::read(testbed()).expect("module"))
        .await
        .expect("put");
    let config = json!({ "source": "snake://wasm_catalog/testbed.wasm", "allow_unsigned": true });
    let kind = DynGearType::of::<Wasm>().expect("type");
    let builder = || Harness::builder(kind.clone()).snake(snake.clone());
    let mut h = builder().build_loaded(&config).await.expect("loads");
    h.send("in", payment(1)).expect("processed");
    assert!(checked(&h.take("out")[0]));

    // Without the load step the gear says what is missing.
    let err = builder().build(&config).expect_err("not loaded");
    assert!(testkit::chain(&err).contains("load step"), "{err}");
    let missing = json!({ "source": "snake://wasm_catalog/nope.wasm", "allow_unsigned": true });
    let err = builder().build_loaded(&missing).await.expect_err("missing");
    assert!(testkit::chain(&err).contains("no such module"), "{err}");
}

#[test]
fn compiled_code_is_cached_on_disk_when_asked() {
    // A module of its own (a unique data segment), so that no other test compiled it first.
    let module = wat::parse_str(format!(
        r#"(module (data (i32.const 2048) "{}") {ALLOC}
          (func (export "process") (param i32 i32) (result i64) (i64.const 0)))"#,
        std::process::id()
    ))
    .expect("valid wat");
    let dir = scratch_dir("cache");
    let path = write(&dir, "m.wasm", &module);
    let cache = dir.join("cache");
    harness(&json!({ "source": path, "allow_unsigned": true, "cache_dir": cache }));
    let files: Vec<_> = std::fs::read_dir(&cache)
        .expect("cache dir made")
        .filter_map(Result::ok)
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(files.len(), 1, "{files:?}");
    assert!(files[0].ends_with(".cwasm"), "{files:?}");
}

/// A module whose `process_batch` answers every call with `output`, records written with
/// the ABI's own writer: a guest that says exactly what a test needs, hostile or not.
fn answering(name: &str, records: &[abi::Record<'_>]) -> Json {
    let mut output = abi::OutputWriter::new();
    for r in records {
        output.push(*r).expect("a record the ABI carries");
    }
    let output = output.finish();
    let data: String = output.iter().map(|b| format!("\\{b:02x}")).collect();
    // The answer at 16, the allocator above it.
    let pages = output.len() / 65536 + 2;
    let module = wat::parse_str(format!(
        r#"(module
          (memory (export "memory") {pages})
          (global $next (mut i32) (i32.const {heap}))
          (func (export "alloc") (param $n i32) (result i32)
            (local $p i32)
            (local.set $p (global.get $next))
            (global.set $next (i32.add (global.get $next) (local.get $n)))
            (local.get $p))
          (func (export "free") (param i32 i32))
          (data (i32.const 16) "{data}")
          (func (export "process") (param i32 i32) (result i64) (i64.const 0))
          (func (export "process_batch") (param i32 i32) (result i64)
            (i64.or (i64.shl (i64.const 16) (i64.const 32)) (i64.const {len}))))"#,
        heap = (pages - 1) * 65536,
        len = output.len()
    ))
    .expect("valid wat");
    let dir = scratch_dir(name);
    let path = write(&dir, "answer.wasm", &module);
    json!({ "source": path, "allow_unsigned": true })
}

fn record<'a>(kind: abi::RecordKind, name: &'a str, body: &'a [u8]) -> abi::Record<'a> {
    abi::Record {
        index: 0,
        kind,
        name,
        body,
    }
}

fn set_data(path: &str) -> Vec<u8> {
    let mut edits = abi::EditsWriter::new();
    edits
        .set_data(&fluxmsg::Codec::new(), path, &Value::from(1u64))
        .expect("an edit the ABI carries");
    edits.as_bytes().to_vec()
}

#[test]
fn edits_that_do_not_apply_send_the_message_to_error() {
    use abi::RecordKind::Emit;
    // Our SDK refuses such edits in the guest, so a hand-written module sends them.
    // data.iso8583.field.4 holds a string: a path under it conflicts.
    let conflict = set_data("iso8583.field.4.x");
    // A path deeper than the codec's depth limit (32), and one as deep as the ABI carries:
    // refused before a map is built, so the host never holds a message it cannot drop.
    let deep = set_data(&["a"; 40].join("."));
    let deepest = set_data(&vec!["a"; 32_000].join("."));
    for (name, edits) in [("conflict", conflict), ("deep", deep), ("deepest", deepest)] {
        let mut h = harness(&answering(name, &[record(Emit, "out", &edits)]));
        h.send("in", payment(1)).expect("processed");
        let failed = h.take("error");
        assert_eq!(failed.len(), 1, "{name}");
        assert_eq!(
            failed[0].meta.get("error.reason").map(|r| r.as_str()),
            Some("bad_output"),
            "{name}"
        );
        assert!(h.take("out").is_empty(), "{name}");
    }
}

#[test]
fn each_input_is_counted_once_whatever_the_records_say() {
    use abi::RecordKind::{Drop, Emit};
    // Emitted and "dropped": emitted, no drop counted.
    let mut h = harness(&answering(
        "emit-and-drop",
        &[record(Emit, "out", &[]), record(Drop, "late", &[])],
    ));
    h.send("in", payment(1)).expect("processed");
    assert_eq!(h.take("out"), vec![payment(1)]);
    assert!(h.stats().dropped.is_empty(), "{:?}", h.stats().dropped);

    // Dropped three times: one drop, with the first reason.
    let mut h = harness(&answering(
        "drop-thrice",
        &[
            record(Drop, "first", &[]),
            record(Drop, "second", &[]),
            record(Drop, "first", &[]),
        ],
    ));
    h.send("in", payment(1)).expect("processed");
    let dropped = h.stats().dropped;
    assert_eq!(
        dropped.into_iter().collect::<Vec<_>>(),
        [("first".to_owned(), 1)]
    );
}

#[test]
fn a_message_with_more_records_than_the_cap_goes_to_error() {
    use abi::RecordKind::Emit;
    let records = vec![record(Emit, "out", &[]); 5];
    let mut config = answering("fan-out", &records);
    config["max_records_per_message"] = json!(4);
    let mut h = harness(&config);
    h.send("in", payment(1)).expect("processed");
    assert_eq!(h.error_reasons(), ["bad_output"]);
    assert!(h.take("out").is_empty());

    config["max_records_per_message"] = json!(5);
    let mut h = harness(&config);
    h.send("in", payment(1)).expect("processed");
    assert_eq!(h.take("out").len(), 5);
}

#[test]
fn a_new_message_that_does_not_decode_fails_the_input_unchanged() {
    use abi::RecordKind::{Emit, EmitNew};
    let mut h = harness(&answering(
        "bad-new",
        &[
            record(Emit, "out", &[]),
            record(EmitNew, "out", b"\xff\x00"),
        ],
    ));
    h.send("in", payment(1)).expect("processed");
    assert!(
        h.take("out").is_empty(),
        "nothing of a malformed answer is sent"
    );
    let mut failed = h.take("error");
    assert_eq!(failed.len(), 1);
    assert_eq!(
        failed[0].meta.get("error.reason").map(|r| r.as_str()),
        Some("bad_output")
    );
    failed[0].meta.remove("error.reason");
    failed[0].meta.remove("error.detail");
    assert_eq!(failed[0], payment(1), "the message as it came in");
}

#[test]
fn a_module_with_two_memories_is_refused_at_load() {
    let module = wat::parse_str(
        r#"(module
          (memory (export "memory") 1)
          (memory 1)
          (func (export "alloc") (param i32) (result i32) (i32.const 1024))
          (func (export "free") (param i32 i32))
          (func (export "process") (param i32 i32) (result i64) (i64.const 0)))"#,
    )
    .expect("valid wat");
    let dir = scratch_dir("memories");
    let path = write(&dir, "two.wasm", &module);
    let err = Harness::new::<Wasm>(&json!({ "source": path, "allow_unsigned": true }))
        .expect_err("refused");
    assert!(testkit::chain(&err).contains("2 memories"), "{err}");
}
