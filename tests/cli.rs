//! The `fluxrig` command line of `examples/fluxrig.rs`: its round trips, exit statuses and
//! error lines.
//!
//! The example's source is compiled into this test and run in process on byte buffers, from
//! argument parsing to the exit status; only its three-line `main` is left out.

use fluxrig::fluxmsg::{FluxMsg, Hop, Id};
use serde_json::json;

#[allow(dead_code)]
#[path = "../examples/fluxrig.rs"]
mod cli;

/// What a run of the command line left behind.
#[derive(Debug)]
struct Run {
    status: u8,
    stdout: Vec<u8>,
    stderr: String,
}

/// Runs `fluxrig <args>` with `stdin` as standard input.
fn fluxrig(args: &[&str], stdin: &[u8]) -> Run {
    let mut stdout = Vec::new();
    let mut stderr = Vec::new();
    let argv = std::iter::once("fluxrig").chain(args.iter().copied());
    let status = cli::run(argv, &mut &stdin[..], &mut stdout, &mut stderr);
    Run {
        status,
        stdout,
        stderr: String::from_utf8_lossy(&stderr).into_owned(),
    }
}

/// Checks that a run failed with `status` and an `error:` line, then one `caused by:` line per
/// cause, that say `reason` once.
#[track_caller]
fn check_failure(run: &Run, status: u8, reason: &str) {
    assert_eq!(run.status, status, "{run:?}");
    assert!(run.stdout.is_empty(), "{run:?}");
    assert!(run.stderr.starts_with("error: "), "{run:?}");
    assert!(run.stderr.ends_with('\n'), "{run:?}");
    assert!(
        run.stderr
            .lines()
            .skip(1)
            .all(|line| line.starts_with("  caused by: ")),
        "{run:?}"
    );
    assert_eq!(
        run.stderr.matches(reason).count(),
        1,
        "{:?} should say {reason:?} once",
        run.stderr
    );
}

fn message() -> FluxMsg {
    FluxMsg::builder()
        .id(Id::U64(42))
        .ts(1_767_225_600_000_000_000)
        .meta("iso8583.mti", "0100")
        .data_path("iso8583.field.11", "123456")
        .expect("path")
        .raw(&b"\x01\x00"[..])
        .hop(Hop {
            gear: Id::U64(5),
            port: Id::U64(6),
            ts: 7,
        })
        .hop(Hop {
            gear: Id::U64(8),
            port: Id::U64(9),
            ts: 10,
        })
        .build()
}

#[test]
fn decode_prints_json_and_encode_gives_the_bytes_back() -> anyhow::Result<()> {
    let cbor = message().to_cbor()?;
    let decoded = fluxrig(&["msg", "decode"], &cbor);
    assert_eq!(decoded.status, 0, "{decoded:?}");
    assert!(decoded.stderr.is_empty(), "{decoded:?}");
    let view: serde_json::Value = serde_json::from_slice(&decoded.stdout)?;
    assert_eq!(
        view,
        json!({
            "id": 42,
            "ts": 1_767_225_600_000_000_000_i64,
            "meta": {"iso8583.mti": "0100"},
            "data": {"iso8583": {"field": {"11": "123456"}}},
            "raw": "0100",
            "path": [{"g": 5, "p": 6, "t": 7}, {"g": 8, "p": 9, "t": 10}],
        })
    );
    let encoded = fluxrig(&["msg", "encode"], &decoded.stdout);
    assert_eq!(encoded.status, 0, "{encoded:?}");
    assert_eq!(encoded.stdout, cbor);
    Ok(())
}

#[test]
fn non_canonical_input_re_encodes_canonically() -> anyhow::Result<()> {
    // {"ts": 1, "meta": null, "data": null, "id": 2}: unsorted keys and null fields.
    let input = b"\xa4\x62ts\x01\x64meta\xf6\x64data\xf6\x62id\x02";
    let decoded = fluxrig(&["msg", "decode"], input);
    assert_eq!(decoded.status, 0, "{decoded:?}");
    let encoded = fluxrig(&["msg", "encode"], &decoded.stdout);
    assert_eq!(encoded.status, 0, "{encoded:?}");
    assert_eq!(encoded.stdout, b"\xa2\x62id\x02\x62ts\x01");
    Ok(())
}

#[test]
fn bad_input_gives_one_error_line_and_status_1() {
    // The value of "id" is missing.
    check_failure(
        &fluxrig(&["msg", "decode"], b"\xa1\x62id"),
        1,
        "invalid fluxMsg at byte 4: unexpected end of input",
    );
    check_failure(
        &fluxrig(&["msg", "decode"], b"not cbor at all"),
        1,
        "invalid fluxMsg at byte 0",
    );
    check_failure(&fluxrig(&["msg", "decode"], b""), 1, "at byte 0");
    check_failure(
        &fluxrig(&["msg", "encode"], b"{\"id\": \"nope\"}"),
        1,
        "invalid JSON fluxMsg at `id`: invalid id `nope`",
    );
    check_failure(
        &fluxrig(&["msg", "encode"], b"{\"data\": \n\n"),
        1,
        "invalid JSON fluxMsg at `(root)`: not JSON",
    );
    check_failure(
        &fluxrig(&["msg", "encode"], b"\xff\xfe"),
        1,
        "reading stdin",
    );
}

#[test]
fn limits_apply_to_both_directions() -> anyhow::Result<()> {
    let cbor = message().to_cbor()?;
    check_failure(
        &fluxrig(&["msg", "decode", "--max-hops", "1"], &cbor),
        1,
        "2 hops, at most 1 allowed",
    );
    check_failure(
        &fluxrig(&["msg", "decode", "--max-size", "8"], &cbor),
        1,
        "at most 8 allowed",
    );
    let deep = br#"{"data": {"a": {"b": {"c": 1}}}}"#;
    check_failure(
        &fluxrig(&["msg", "encode", "--max-depth", "2"], deep),
        1,
        "nesting deeper than 2 levels",
    );
    let ok = fluxrig(&["msg", "encode", "--max-depth", "3"], deep);
    assert_eq!(ok.status, 0, "{ok:?}");
    Ok(())
}

#[test]
fn usage_errors_give_status_2() {
    check_failure(
        &fluxrig(&["msg", "decode", "--max-depth", "0"], b""),
        2,
        "invalid limits",
    );
    let run = fluxrig(&["msg", "frobnicate"], b"");
    assert_eq!(run.status, 2, "{run:?}");
    assert!(run.stderr.starts_with("error:"), "{run:?}");
    let run = fluxrig(&[], b"");
    assert_eq!(run.status, 2, "{run:?}");
    let help = fluxrig(&["--help"], b"");
    assert_eq!(help.status, 0, "{help:?}");
    assert!(
        String::from_utf8_lossy(&help.stdout).contains("msg"),
        "{help:?}"
    );
}

#[test]
fn demo_runs() {
    for args in [&["demo"][..], &["msg", "demo"]] {
        let run = fluxrig(args, b"");
        assert_eq!(run.status, 0, "{run:?}");
        let out = String::from_utf8_lossy(&run.stdout);
        assert!(out.contains("\"iso8583.mti\": \"0100\""), "{out}");
        assert!(out.contains("identical bytes"), "{out}");
        assert!(
            out.contains("0190a5b2-7c3d-7e4f-8a1b-2c3d4e5f6a7b"),
            "{out}"
        );
    }
}

#[test]
fn the_gear_catalog_is_listed_and_each_manifest_shown() {
    let run = fluxrig(&["gears", "list"], b"");
    assert_eq!(run.status, 0, "{run:?}");
    let out = String::from_utf8_lossy(&run.stdout);
    let kinds: Vec<_> = out
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .collect();
    assert_eq!(
        kinds,
        [
            "filter",
            "generate",
            "io_http",
            "io_tcp",
            "log",
            "route",
            "transform",
            "wasm"
        ]
    );
    assert!(out.contains("io_tcp     io"), "{out}");

    let run = fluxrig(&["gears", "show", "route"], b"");
    assert_eq!(run.status, 0, "{run:?}");
    let manifest: serde_json::Value = serde_json::from_slice(&run.stdout).expect("JSON");
    assert_eq!(manifest["type"], "route");
    assert_eq!(manifest["ports"][2]["name"], "out_<name>");
    assert_eq!(manifest["ports"][2]["dynamic"], true);
    assert!(manifest["config_schema"]["properties"]["rules"].is_object());

    let run = fluxrig(&["gears", "show", "bento"], b"");
    check_failure(
        &run,
        1,
        "unknown gear type \"bento\" (known: filter, generate",
    );
}

#[test]
fn rack_run_runs_the_shipped_pipeline_to_the_end() {
    let run = fluxrig(
        &[
            "rack",
            "run",
            "examples/scenarios/pipeline.yaml",
            "--duration",
            "60s",
        ],
        b"",
    );
    assert_eq!(run.status, 0, "{run:?}");
    let out = String::from_utf8_lossy(&run.stdout);
    assert!(out.contains("in/out: declined"), "live counts: {out}");
    let terminals = out
        .lines()
        .find(|l| l.starts_with("terminals "))
        .expect("a final line for the generator");
    assert_eq!(
        terminals.split_whitespace().collect::<Vec<_>>(),
        ["terminals", "0", "1000", "0"],
        "{out}"
    );
}

#[test]
fn rack_run_runs_the_shipped_wasm_scenario_to_the_end() {
    // The scenario names the module where `make guests` (and testkit) put it.
    let module = testkit::guest_wasm("risk");
    assert!(
        module.ends_with("target/guests/wasm32-unknown-unknown/release/guest_risk.wasm"),
        "{}",
        module.display()
    );
    let run = fluxrig(
        &[
            "rack",
            "run",
            "examples/scenarios/wasm_risk.yaml",
            "--duration",
            "60s",
        ],
        b"",
    );
    assert_eq!(run.status, 0, "{run:?}");
    let out = String::from_utf8_lossy(&run.stdout);
    let counts = |gear: &str| -> Vec<u64> {
        out.lines()
            .rev()
            .find(|l| l.split_whitespace().next() == Some(gear))
            .unwrap_or_else(|| panic!("a final line for {gear}: {out}"))
            .split_whitespace()
            .skip(1)
            .map(|n| n.parse().expect("a count"))
            .collect()
    };
    assert_eq!(counts("risk"), [500, 500, 0], "{out}");
    let (scored, review) = (counts("scored")[0], counts("review")[0]);
    assert_eq!(scored + review, 500, "{out}");
    assert!(scored > 0 && review > 0, "both ways taken: {out}");
}

#[test]
fn rack_check_shows_the_plan_and_refuses_bad_scenarios_with_their_position() {
    let run = fluxrig(&["rack", "check", "examples/scenarios/tcp_echo.yaml"], b"");
    assert_eq!(run.status, 0, "{run:?}");
    let out = String::from_utf8_lossy(&run.stdout);
    assert!(out.contains("rack local: 2 gears, 2 wires"), "{out}");
    assert!(
        out.contains("local.shout.out -> local.listener.in (hot)"),
        "{out}"
    );

    let dir = std::env::temp_dir().join(format!("fluxrig-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("a temp dir");
    let bad = dir.join("bad.yaml");
    std::fs::write(
        &bad,
        "meta: { name: x, version: 1.0.0 }\ngears:\n  - { name: a, type: bento }\n",
    )
    .expect("written");
    let run = fluxrig(&["rack", "run", bad.to_str().expect("utf-8 path")], b"");
    assert_eq!(run.status, 1, "{run:?}");
    assert!(
        run.stderr.contains("3:") && run.stderr.contains("bento"),
        "{run:?}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_nested_error_prints_each_cause_once_on_its_own_line() {
    let dir = scratch("causes");

    // A bad field deep in a gear's configuration: the file, then the problem at its position.
    let deep = dir.join("deep.yaml");
    std::fs::write(
        &deep,
        "meta: { name: x, version: 1.0.0 }
gears:
  - name: edit
    type: transform
    config:
      steps:
        - { set: data.a, value: 1 }
        - set: data.b
          when: { all: [{ field: data.a, exists: true }, { field: data.a, gte: ten }] }
          value: 2
",
    )
    .expect("written");
    let deep = deep.to_str().expect("a UTF-8 path");
    let run = fluxrig(&["rack", "run", deep], b"");
    assert_eq!(run.status, 1, "{run:?}");
    assert_eq!(
        run.stderr,
        format!(
            "error: {deep}\n  caused by: 9:80: gear `edit` (transform): \
             config.steps[1].when.all[1].gte: \"ten\" is not of type \"number\"\n"
        )
    );

    // A gear that cannot start: the rack, the gear and the stage, then what the gear said.
    let missing = dir.join("no-such-dir").join("out.log");
    let sink = dir.join("sink.yaml");
    std::fs::write(
        &sink,
        format!(
            "meta: {{ name: x, version: 1.0.0 }}
gears:
  - name: sink
    type: log
    config: {{ output: file, path: {} }}
",
            missing.display()
        ),
    )
    .expect("written");
    let run = fluxrig(&["rack", "run", sink.to_str().expect("a UTF-8 path")], b"");
    assert_eq!(run.status, 1, "{run:?}");
    let lines: Vec<&str> = run.stderr.lines().collect();
    assert_eq!(lines.len(), 2, "{run:?}");
    assert_eq!(lines[0], "error: gear \"sink\" failed to init");
    let cause = format!("  caused by: open_failed: {}: ", missing.display());
    assert!(lines[1].starts_with(&cause), "{run:?}");
    assert_eq!(run.stderr.matches("open_failed").count(), 1, "{run:?}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// A scratch directory for one test.
fn scratch(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("fluxrig-cli-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("a temp dir");
    dir
}

/// The smallest module the `wasm` gear accepts: it returns its input unchanged.
const ECHO_WAT: &str = r#"(module
  (import "env" "log" (func (param i32 i32 i32)))
  (memory (export "memory") 1)
  (func (export "alloc") (param i32) (result i32) (i32.const 1024))
  (func (export "free") (param i32 i32))
  (func (export "process") (param $p i32) (param $n i32) (result i64)
    (i64.or (i64.shl (i64.extend_i32_u (local.get $p)) (i64.const 32))
            (i64.extend_i32_u (local.get $n)))))"#;

#[test]
fn wasm_keygen_sign_and_check() {
    let dir = scratch("wasm");
    let module = dir.join("echo.wasm");
    std::fs::write(&module, wat::parse_str(ECHO_WAT).expect("wat")).expect("write module");
    let module = module.to_str().expect("a UTF-8 path");
    let key = dir.join("vendor.key");
    let key = key.to_str().expect("a UTF-8 path");

    let keygen = fluxrig(&["wasm", "keygen", "--out", key], b"");
    assert_eq!(keygen.status, 0, "{keygen:?}");
    let public = String::from_utf8(keygen.stdout).expect("text");
    let public = public.trim();
    assert_eq!(public.len(), 64, "{public:?}");
    assert!(public.bytes().all(|b| b.is_ascii_hexdigit()), "{public:?}");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(key)
            .expect("key file")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    // An existing key is never overwritten.
    check_failure(
        &fluxrig(&["wasm", "keygen", "--out", key], b""),
        1,
        "never overwritten",
    );

    // Unsigned: refused unless allowed.
    check_failure(
        &fluxrig(&["wasm", "check", module, "--trusted-key", public], b""),
        1,
        "module is not signed",
    );
    let open = fluxrig(&["wasm", "check", module, "--allow-unsigned"], b"");
    assert_eq!(open.status, 0, "{open:?}");
    let text = String::from_utf8(open.stdout).expect("text");
    assert!(text.contains("signed by: nobody trusted"), "{text}");
    assert!(
        text.contains("exports: memory, alloc, free, process\n"),
        "{text}"
    );
    assert!(text.contains("imports: env.log\n"), "{text}");

    let signed = dir.join("signed.wasm");
    let signed = signed.to_str().expect("a UTF-8 path");
    let sign = fluxrig(&["wasm", "sign", module, "--key", key, "-o", signed], b"");
    assert_eq!(sign.status, 0, "{sign:?}");
    assert!(
        String::from_utf8_lossy(&sign.stdout).contains(public),
        "{sign:?}"
    );

    // Checked with the signer's key: passes, and says by which key.
    let other = "3b6a27bcceb6a42d62a3a8d02a6f0d73653215771de243a63ac048a18b59da29";
    let check = fluxrig(
        &[
            "wasm",
            "check",
            signed,
            "--trusted-key",
            other,
            "--trusted-key",
            public,
        ],
        b"",
    );
    assert_eq!(check.status, 0, "{check:?}");
    let text = String::from_utf8(check.stdout).expect("text");
    assert!(
        text.contains(&format!("signed by: trusted key 2 ({public})")),
        "{text}"
    );
    let digest = text
        .lines()
        .find_map(|l| l.strip_prefix("digest: "))
        .expect("a digest line");
    assert_eq!(digest.len(), 64, "{text}");

    // Checked with another key: refused, even with --allow-unsigned.
    for extra in [&[][..], &["--allow-unsigned"]] {
        let mut args = vec!["wasm", "check", signed, "--trusted-key", other];
        args.extend_from_slice(extra);
        check_failure(&fluxrig(&args, b""), 1, "bad signature on module");
    }

    // Signing in place, with the same key, gives the same bytes.
    let in_place = fluxrig(&["wasm", "sign", module, "--key", key], b"");
    assert_eq!(in_place.status, 0, "{in_place:?}");
    assert_eq!(std::fs::read(module).ok(), std::fs::read(signed).ok());

    check_failure(
        &fluxrig(&["wasm", "check", module, "--trusted-key", "abcd"], b""),
        1,
        "bad public key: expected 64 hex characters",
    );
    let missing = dir.join("missing.wasm");
    check_failure(
        &fluxrig(
            &[
                "wasm",
                "check",
                missing.to_str().expect("UTF-8"),
                "--allow-unsigned",
            ],
            b"",
        ),
        1,
        "reading",
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// The chaos test: three `fluxrig rack run --nats` processes run one scenario (a source of
/// 20,000 numbered messages, a relay, a sink writing what it receives), every wire
/// guaranteed. The relay is killed with SIGKILL mid-stream and started again, then the NATS
/// server restarts on the same store. Every number reaches the sink at least once, and nothing
/// is dead-lettered.
#[cfg(feature = "nats-server-tests")]
#[test]
fn chaos_a_killed_relay_and_a_restarted_server_lose_nothing() {
    use std::collections::BTreeMap;
    use std::process::{Child, Command};
    use std::time::{Duration, Instant};

    const N: u64 = 20_000;
    let mut server = fluxrig::snake::NatsServer::start().expect("nats-server (make setup-nats)");
    let url = server.url();
    let dir = std::env::temp_dir().join(format!("fluxrig-chaos-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("a temporary directory");
    let sink_file = dir.join("sink.jsonl");
    let scenario = dir.join("chaos.yaml");
    std::fs::write(
        &scenario,
        format!(
            r#"meta: {{ name: chaos, version: 1 }}
racks: [ {{ name: src }}, {{ name: relay }}, {{ name: sink }} ]
gears:
  - name: gen
    type: generate
    deploy: src
    config: {{ count: {N}, batch: 50, rate: {{ tps: 2000 }}, template: {{ data: {{ n: "${{counter}}" }} }} }}
  - name: hop
    type: transform
    deploy: relay
    config: {{ steps: [ {{ set: meta.via, value: relay }} ] }}
  - name: out
    type: log
    deploy: sink
    config: {{ output: file, path: "{}", fields: [data.n, meta.via] }}
wires:
  - {{ from: gen.out, to: hop.in, lane: guaranteed }}
  - {{ from: hop.out, to: out.in, lane: guaranteed }}
"#,
            sink_file.display()
        ),
    )
    .expect("the scenario");

    // The example binary, built by `cargo test` beside this test (or built now).
    let exe = std::env::current_exe().expect("the test's path");
    let fluxrig = exe
        .parent()
        .and_then(|deps| deps.parent())
        .map(|profile| profile.join("examples").join("fluxrig"))
        .expect("the target directory");
    // `cargo test` builds the examples with the tests; a lone `cargo test --test cli` does
    // not, and an old binary would run an old rack.
    let help = Command::new(&fluxrig)
        .args(["rack", "run", "--help"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default();
    assert!(
        help.contains("--nats"),
        "{} is missing or out of date: run `cargo build --example fluxrig` (make test builds it)",
        fluxrig.display()
    );
    // Each run's output stays in the directory for a failure's post-mortem.
    let runs = std::cell::Cell::new(0);
    let rack = |name: &str| -> Child {
        runs.set(runs.get() + 1);
        let log = std::fs::File::create(dir.join(format!("{name}-{}.log", runs.get())))
            .expect("a log file");
        Command::new(&fluxrig)
            .args(["rack", "run"])
            .arg(&scenario)
            .args(["--rack", name, "--nats", &url])
            .env("FLUXRIG_LOG", "warn")
            .stdout(log.try_clone().expect("the log file"))
            .stderr(log)
            .spawn()
            .expect("a rack process")
    };
    // What the sink wrote so far: how often each number arrived.
    let arrived = || -> BTreeMap<u64, u32> {
        let text = std::fs::read_to_string(&sink_file).unwrap_or_default();
        let mut counts = BTreeMap::new();
        for line in text.lines() {
            let Ok(v) = serde_json::from_str::<serde_json::Value>(line) else {
                continue; // a line being written
            };
            assert_eq!(v["meta.via"], "relay", "{line}");
            if let Some(n) = v["data.n"].as_u64() {
                *counts.entry(n).or_insert(0) += 1;
            }
        }
        counts
    };
    let wait_for = |what: &str, limit: Duration, done: &dyn Fn(&BTreeMap<u64, u32>) -> bool| {
        let deadline = Instant::now() + limit;
        loop {
            let counts = arrived();
            if done(&counts) {
                return counts;
            }
            if Instant::now() >= deadline {
                let missing: Vec<u64> = (0..N)
                    .filter(|n| !counts.contains_key(n))
                    .take(50)
                    .collect();
                panic!(
                    "timed out waiting for {what}: {} of {N} numbers arrived; missing (first 50): \
                     {missing:?}; the racks' output is in {}",
                    counts.len(),
                    dir.display()
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    };

    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let watcher = watch_dead_letters(url.clone(), std::sync::Arc::clone(&stop));
    let mut sink = rack("sink");
    let mut relay = rack("relay");
    let mut src = rack("src");
    wait_for("the stream to flow", Duration::from_secs(120), &|c| {
        c.len() >= 2_000
    });
    relay.kill().expect("SIGKILL the relay");
    let _ = relay.wait();
    let mut relay = rack("relay");
    wait_for("the stream to flow again", Duration::from_secs(120), &|c| {
        c.len() >= 8_000
    });
    server
        .restart()
        .expect("nats-server restarts on the same store");
    let counts = wait_for("every number", Duration::from_secs(240), &|c| {
        c.len() as u64 == N
    });
    // Redeliveries may still be in flight: the counts only grow from here.
    let delivered: u64 = counts.values().map(|&n| u64::from(n)).sum();
    let duplicated = delivered - N;
    for child in [&mut src, &mut relay, &mut sink] {
        let _ = child.kill();
        let _ = child.wait();
    }
    stop.store(true, std::sync::atomic::Ordering::Release);
    let dead = watcher.join().expect("the watcher");
    println!(
        "chaos: produced {N}, delivered {delivered}, duplicated {duplicated}, dead-lettered {dead}"
    );
    assert_eq!(counts.keys().next(), Some(&0));
    assert_eq!(counts.keys().next_back(), Some(&(N - 1)));
    assert_eq!(dead, 0, "nothing is dead-lettered");
    let _ = std::fs::remove_dir_all(&dir);
}

/// Counts the dead letters published on `flux.dlq.>` (core subjects: a watcher sees those
/// published while it is connected, which is the whole run but for the server's restart)
/// until `stop` is set.
#[cfg(feature = "nats-server-tests")]
fn watch_dead_letters(
    url: String,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
) -> std::thread::JoinHandle<u64> {
    use std::sync::atomic::Ordering;
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a runtime");
        runtime.block_on(async move {
            let bus = fluxrig::snake::Snake::nats(fluxrig::snake::NatsOptions::new(url))
                .await
                .expect("the watcher connects");
            let mut dead = bus
                .subscribe(fluxrig::snake::Pattern::dead_letters())
                .await
                .expect("a dead-letter subscription");
            let mut count = 0;
            while !stop.load(Ordering::Acquire) {
                if let Ok(Some(_)) =
                    tokio::time::timeout(std::time::Duration::from_millis(200), dead.next()).await
                {
                    count += 1;
                }
            }
            count
        })
    })
}
