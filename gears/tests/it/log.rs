//! Tests of the `log` gear.

use fluxmsg::FluxMsg;
use gears::log::Log;
use sdk::Harness;
use serde_json::json;

fn temp_file(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("fluxrig-log-{}-{name}", std::process::id()));
    let _ = std::fs::remove_file(&dir);
    dir
}

fn lines(path: &std::path::Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(path)
        .expect("the log file exists")
        .lines()
        .map(|l| serde_json::from_str(l).expect("each line is JSON"))
        .collect()
}

#[tokio::test]
async fn a_sink_writes_one_json_line_per_message() {
    let path = temp_file("sink");
    let mut h = Harness::builder(sdk::DynGearType::of::<Log>().expect("registers"))
        .name("audit")
        .build(&json!({ "output": "file", "path": path }))
        .expect("valid");
    h.send_batch(
        "in",
        (0..3).map(|i| {
            FluxMsg::builder()
                .id(i as u64)
                .data("n", i)
                .ts(1_000 + i)
                .raw(&b"\x01\xff"[..])
                .build()
        }),
    )
    .expect("processed");
    h.shutdown().await;
    let lines = lines(&path);
    assert_eq!(lines.len(), 3);
    assert_eq!(lines[1]["gear"], "audit");
    assert_eq!(lines[1]["ts"], "2026-01-01T00:00:00.000Z");
    assert_eq!(lines[1]["id"], 1);
    assert_eq!(lines[1]["data"]["n"], 1);
    assert_eq!(lines[1]["raw"], "01ff");
    assert_eq!(
        lines[1]["msg_ts"], 1_001,
        "the message's own ts is kept beside the line's"
    );
    assert!(h.take("out").is_empty(), "a sink forwards nothing");
    let _ = std::fs::remove_file(&path);
}

#[tokio::test]
async fn card_numbers_in_texts_are_masked_and_ids_are_not() {
    let path = temp_file("mask");
    let mut h = Harness::builder(sdk::DynGearType::of::<Log>().expect("registers"))
        .name("audit")
        .build(&json!({ "output": "file", "path": path }))
        .expect("valid");
    // 4111111111111111 passes the Luhn check, as an id or a time of that length may.
    h.send(
        "in",
        FluxMsg::builder()
            .id(4_111_111_111_111_111)
            .data("pan", "4111111111111111")
            .data("note", "card 5500005555555559 declined")
            .data("amount", 4_111_111_111_111_111_u64)
            .build(),
    )
    .expect("processed");
    h.shutdown().await;
    let line = &lines(&path)[0];
    assert_eq!(line["id"], 4_111_111_111_111_111_u64);
    assert_eq!(line["data"]["pan"], "411111******1111");
    assert_eq!(line["data"]["note"], "card 550000******5559 declined");
    assert_eq!(line["data"]["amount"], 4_111_111_111_111_111_u64);
    let _ = std::fs::remove_file(&path);
}

#[tokio::test]
async fn a_tap_forwards_everything_and_samples_its_lines() {
    let path = temp_file("tap");
    let mut h = Harness::new::<Log>(&json!({
        "mode": "tap", "every": 3, "fields": ["data.n", "meta.conn.id"], "output": "file", "path": path
    }))
    .expect("valid");
    h.send_batch(
        "in",
        (0..7).map(|i| {
            FluxMsg::builder()
                .data("n", i)
                .meta("conn.id", "c1")
                .build()
        }),
    )
    .expect("processed");
    assert_eq!(h.take("out").len(), 7);
    h.shutdown().await;
    let lines = lines(&path);
    let ns: Vec<_> = lines.iter().map(|l| l["data.n"].as_i64()).collect();
    assert_eq!(ns, [Some(0), Some(3), Some(6)]);
    assert_eq!(lines[0]["meta.conn.id"], "c1");
    let _ = std::fs::remove_file(&path);
}

#[test]
fn bad_configurations_are_refused() {
    let refuse =
        |c: serde_json::Value| testkit::chain(&Harness::new::<Log>(&c).expect_err("refused"));
    assert!(refuse(json!({ "output": "file" })).contains("config.path: output: file needs a path"));
    assert!(refuse(json!({ "every": 0 })).contains("config.every"));
    assert!(refuse(json!({ "fields": ["nope"] })).contains("config.fields[0]: unknown field"));
    assert!(refuse(json!({ "output": "syslog" })).contains("config.output"));
    let e = testkit::chain(
        &Harness::new::<Log>(&json!({ "output": "file", "path": "/nonexistent-dir/x/y.log" }))
            .expect_err("refused"),
    );
    assert!(
        e.contains("failed to init") && e.contains("open_failed"),
        "{e}"
    );
}
