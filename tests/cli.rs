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
        .hop(Hop::new(Id::U64(5), Id::U64(6), 7))
        .hop(Hop::new(Id::U64(8), Id::U64(9), 10))
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
            "coatcheck",
            "codec_iso8583",
            "conductor",
            "filter",
            "generate",
            "io_http",
            "io_iso8583",
            "io_tcp",
            "log",
            "route",
            "sim_responder",
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
        "unknown gear type \"bento\" (known: coatcheck, codec_iso8583, conductor, filter, generate",
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

/// `--machine-ids` gives the rack a pool of machine ids; a list that could mint the same id
/// twice, or one that does not fit the id layout, is refused before anything runs.
#[test]
fn rack_run_takes_a_pool_of_machine_ids_and_refuses_bad_ones() {
    let pipeline = "examples/scenarios/pipeline.yaml";
    let run = fluxrig(
        &[
            "rack",
            "run",
            pipeline,
            "--duration",
            "60s",
            "--machine-ids",
            "100-103,200",
        ],
        b"",
    );
    assert_eq!(run.status, 0, "{run:?}");
    let out = String::from_utf8_lossy(&run.stdout);
    assert!(
        out.lines()
            .any(|l| l.split_whitespace().collect::<Vec<_>>() == ["terminals", "0", "1000", "0"]),
        "{out}"
    );
    for (ids, why) in [
        ("5-3", "runs backwards"),
        ("3,4-6,5", "machine id 5 is given twice"),
        ("seven", "is not a machine id"),
        ("70000", "does not fit in 16 bits"),
    ] {
        let run = fluxrig(&["rack", "run", pipeline, "--machine-ids", ids], b"");
        assert_ne!(run.status, 0, "{ids}: {run:?}");
        assert!(run.stderr.contains(why), "{ids}: {}", run.stderr);
    }
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

/// Three `fluxrig rack run --nats` processes (`src`, `relay`, `sink`) of one scenario, a source
/// of `n` numbered messages, a relay transforming them and a sink writing what it receives to
/// a file, every wire guaranteed.
#[cfg(feature = "nats-server-tests")]
struct Chaos {
    n: u64,
    url: String,
    dir: std::path::PathBuf,
    sink_file: std::path::PathBuf,
    fluxrig: std::path::PathBuf,
    runs: std::cell::Cell<u32>,
}

#[cfg(feature = "nats-server-tests")]
impl Chaos {
    /// The set-up in a directory of its own (`name`), against the server at `url`.
    fn new(name: &str, url: String, n: u64) -> Chaos {
        let dir = std::env::temp_dir().join(format!("fluxrig-{name}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("a temporary directory");
        let sink_file = dir.join("sink.jsonl");
        // The example binary, built by `cargo test` beside this test.
        let exe = std::env::current_exe().expect("the test's path");
        let fluxrig = exe
            .parent()
            .and_then(|deps| deps.parent())
            .map(|profile| profile.join("examples").join("fluxrig"))
            .expect("the target directory");
        // `cargo test` builds the examples with the tests; a lone `cargo test --test cli` does
        // not, and an old binary would run an old rack.
        let help = std::process::Command::new(&fluxrig)
            .args(["dlq", "--help"])
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
            .unwrap_or_default();
        assert!(
            help.contains("replay"),
            "{} is missing or out of date: run `cargo build --example fluxrig` (make test builds it)",
            fluxrig.display()
        );
        Chaos {
            n,
            url,
            dir,
            sink_file,
            fluxrig,
            runs: std::cell::Cell::new(0),
        }
    }

    /// Writes the scenario with `steps` as the relay's transform; returns its path.
    fn scenario(&self, file: &str, steps: &str) -> std::path::PathBuf {
        let path = self.dir.join(file);
        std::fs::write(
            &path,
            format!(
                r#"meta: {{ name: chaos, version: 1 }}
racks: [ {{ name: src }}, {{ name: relay }}, {{ name: sink }} ]
gears:
  - name: gen
    type: generate
    deploy: src
    config: {{ count: {}, batch: 50, rate: {{ tps: 2000 }}, template: {{ data: {{ n: "${{counter}}" }} }} }}
  - name: hop
    type: transform
    deploy: relay
    config: {{ steps: [ {steps} ] }}
  - name: out
    type: log
    deploy: sink
    config: {{ output: file, path: "{}", fields: [data.n, meta.via] }}
wires:
  - {{ from: gen.out, to: hop.in, lane: guaranteed }}
  - {{ from: hop.out, to: out.in, lane: guaranteed }}
"#,
                self.n,
                self.sink_file.display()
            ),
        )
        .expect("the scenario");
        path
    }

    /// Starts rack `name` of `scenario`; its output stays in the directory for a failure's
    /// post-mortem.
    fn rack(&self, scenario: &std::path::Path, name: &str) -> std::process::Child {
        self.runs.set(self.runs.get() + 1);
        let log = std::fs::File::create(self.dir.join(format!("{name}-{}.log", self.runs.get())))
            .expect("a log file");
        std::process::Command::new(&self.fluxrig)
            .args(["rack", "run"])
            .arg(scenario)
            .args(["--rack", name, "--nats", &self.url])
            .env("FLUXRIG_LOG", "warn")
            .stdout(log.try_clone().expect("the log file"))
            .stderr(log)
            .spawn()
            .expect("a rack process")
    }

    /// What the sink wrote so far: how often each number arrived.
    fn arrived(&self) -> std::collections::BTreeMap<u64, u32> {
        let text = std::fs::read_to_string(&self.sink_file).unwrap_or_default();
        let mut counts = std::collections::BTreeMap::new();
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
    }

    /// Waits up to `limit` for `done` to hold of what arrived, and returns that; fails with
    /// what is missing.
    fn wait_for(
        &self,
        what: &str,
        limit: std::time::Duration,
        done: &dyn Fn(&std::collections::BTreeMap<u64, u32>) -> bool,
    ) -> std::collections::BTreeMap<u64, u32> {
        let deadline = std::time::Instant::now() + limit;
        loop {
            let counts = self.arrived();
            if done(&counts) {
                return counts;
            }
            if std::time::Instant::now() >= deadline {
                let missing: Vec<u64> = (0..self.n)
                    .filter(|n| !counts.contains_key(n))
                    .take(50)
                    .collect();
                panic!(
                    "timed out waiting for {what}: {} of {} numbers arrived; missing (first \
                     50): {missing:?}; the racks' output is in {}",
                    counts.len(),
                    self.n,
                    self.dir.display()
                );
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
    }

    /// How many dead letters the server keeps, as `fluxrig dlq list` counts them.
    fn dead_letters(&self, filter: &[&str]) -> (u64, String) {
        let mut args = vec!["dlq", "list", "--nats", self.url.as_str()];
        args.extend_from_slice(filter);
        let run = fluxrig(&args, b"");
        let out = String::from_utf8_lossy(&run.stdout).into_owned();
        assert_eq!(run.status, 0, "{run:?}");
        let total = out
            .lines()
            .last()
            .and_then(|l| l.split(", ").nth(1))
            .and_then(|l| l.split(' ').next())
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("a count in {out}"));
        (total, out)
    }
}

#[cfg(feature = "nats-server-tests")]
impl Drop for Chaos {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

/// The chaos test: the relay is killed with SIGKILL mid-stream and started again, then the
/// NATS server restarts on the same store. Every one of 20,000 numbers reaches the sink at
/// least once, and the dead-letter stream is empty.
#[cfg(feature = "nats-server-tests")]
#[test]
fn chaos_a_killed_relay_and_a_restarted_server_lose_nothing() {
    use std::time::Duration;

    const N: u64 = 20_000;
    let mut server = fluxrig::snake::NatsServer::start().expect("nats-server (make setup-nats)");
    let chaos = Chaos::new("chaos", server.url(), N);
    let scenario = chaos.scenario("chaos.yaml", "{ set: meta.via, value: relay }");
    let mut sink = chaos.rack(&scenario, "sink");
    let mut relay = chaos.rack(&scenario, "relay");
    let mut src = chaos.rack(&scenario, "src");
    chaos.wait_for("the stream to flow", Duration::from_secs(120), &|c| {
        c.len() >= 2_000
    });
    relay.kill().expect("SIGKILL the relay");
    let _ = relay.wait();
    let mut relay = chaos.rack(&scenario, "relay");
    chaos.wait_for("the stream to flow again", Duration::from_secs(120), &|c| {
        c.len() >= 8_000
    });
    server
        .restart()
        .expect("nats-server restarts on the same store");
    let counts = chaos.wait_for("every number", Duration::from_secs(240), &|c| {
        c.len() as u64 == N
    });
    // Redeliveries may still be in flight: the counts only grow from here.
    let delivered: u64 = counts.values().map(|&n| u64::from(n)).sum();
    let duplicated = delivered - N;
    for child in [&mut src, &mut relay, &mut sink] {
        let _ = child.kill();
        let _ = child.wait();
    }
    let (dead, _) = chaos.dead_letters(&[]);
    println!(
        "chaos: produced {N}, delivered {delivered}, duplicated {duplicated}, dead-lettered {dead}"
    );
    assert_eq!(counts.keys().next(), Some(&0));
    assert_eq!(counts.keys().next_back(), Some(&(N - 1)));
    assert_eq!(dead, 0, "nothing is dead-lettered");
}

/// The chaos test's second case: the relay fails every 97th number (a division by zero), and
/// is killed with SIGKILL mid-stream. The failed ones end in `flux-dlq` with the relay's
/// reason, once each, and `fluxrig dlq list` shows them by rack and gear; everything else
/// arrives. Then the relay is fixed (restarted on a scenario without the division) and
/// `fluxrig dlq replay --gear hop` sends them through again: every number has arrived, and
/// the dead-letter stream is empty.
#[cfg(feature = "nats-server-tests")]
#[test]
fn chaos_poisoned_messages_are_dead_lettered_listed_and_replayed() {
    use std::time::Duration;

    const N: u64 = 4_000;
    let poisoned = |n: u64| n.is_multiple_of(97);
    let bad = (0..N).filter(|n| poisoned(*n)).count() as u64;
    let server = fluxrig::snake::NatsServer::start().expect("nats-server (make setup-nats)");
    let chaos = Chaos::new("poison", server.url(), N);
    let broken = chaos.scenario(
        "broken.yaml",
        r#"{ set: meta.via, value: relay }, { set: data.q, expr: "100 / (data.n % 97)" }"#,
    );
    let mut sink = chaos.rack(&broken, "sink");
    let mut relay = chaos.rack(&broken, "relay");
    let mut src = chaos.rack(&broken, "src");
    chaos.wait_for("the stream to flow", Duration::from_secs(120), &|c| {
        c.len() >= 1_000
    });
    relay.kill().expect("SIGKILL the relay");
    let _ = relay.wait();
    let mut relay = chaos.rack(&broken, "relay");
    let good = N - bad;
    let counts = chaos.wait_for("every good number", Duration::from_secs(240), &|c| {
        c.len() as u64 == good
    });
    assert!(
        counts.keys().all(|n| !poisoned(*n)),
        "a poisoned number arrived"
    );
    // The dead letters land once their inputs are terminated; wait for the last of them.
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    let listed = loop {
        let (dead, out) = chaos.dead_letters(&["--rack", "relay", "--gear", "hop"]);
        if dead >= bad || std::time::Instant::now() >= deadline {
            assert_eq!(dead, bad, "every poisoned number, once: {out}");
            break out;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    assert_eq!(
        listed
            .lines()
            .filter(|l| l.contains("relay.hop.in") && l.contains("terminated: hop: "))
            .count() as u64,
        bad,
        "each with the relay's reason: {listed}"
    );
    assert_eq!(chaos.dead_letters(&["--rack", "sink"]).0, 0);
    assert_eq!(chaos.dead_letters(&["--gear", "out"]).0, 0);
    // One of them in full: the reason, where it came from, and the message, alone even when
    // its lane had packed it with others.
    let sequence = listed
        .lines()
        .find(|l| l.contains("relay.hop.in"))
        .and_then(|l| l.split_whitespace().next())
        .expect("a listed sequence");
    let run = fluxrig(
        &["dlq", "show", sequence, "--nats", chaos.url.as_str()],
        b"",
    );
    let shown = String::from_utf8_lossy(&run.stdout).into_owned();
    assert_eq!(run.status, 0, "{run:?}");
    assert!(
        shown.contains("reason:     terminated: hop: ") && shown.contains("message:\n"),
        "{shown}"
    );
    let n = shown
        .split("\"n\": ")
        .nth(1)
        .and_then(|rest| rest.split(|c: char| !c.is_ascii_digit()).next())
        .and_then(|digits| digits.parse::<u64>().ok())
        .expect("the message's number");
    assert!(poisoned(n), "a poisoned number: {shown}");

    // Fixed, then replayed.
    relay.kill().expect("stop the broken relay");
    let _ = relay.wait();
    let fixed = chaos.scenario("fixed.yaml", "{ set: meta.via, value: relay }");
    let mut relay = chaos.rack(&fixed, "relay");
    let run = fluxrig(
        &[
            "dlq",
            "replay",
            "--nats",
            chaos.url.as_str(),
            "--gear",
            "hop",
        ],
        b"",
    );
    let out = String::from_utf8_lossy(&run.stdout).into_owned();
    assert_eq!(run.status, 0, "{run:?}");
    assert!(out.ends_with(&format!("{bad} replayed\n")), "{out}");
    let counts = chaos.wait_for("every number", Duration::from_secs(120), &|c| {
        c.len() as u64 == N
    });
    let delivered: u64 = counts.values().map(|&n| u64::from(n)).sum();
    for child in [&mut src, &mut relay, &mut sink] {
        let _ = child.kill();
        let _ = child.wait();
    }
    let (dead, _) = chaos.dead_letters(&[]);
    println!(
        "chaos (poisoned): produced {N}, poisoned {bad}, replayed {bad}, delivered {delivered}, \
         duplicated {}, dead-lettered at the end {dead}",
        delivered - N
    );
    assert_eq!(dead, 0, "the dead-letter stream is empty after the replay");
}

#[path = "cli/api.rs"]
mod api;

#[path = "cli/iso8583.rs"]
mod iso8583;

#[cfg(feature = "nats-server-tests")]
#[path = "cli/fleet.rs"]
mod fleet;
