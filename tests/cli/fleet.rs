//! A fleet as separate processes over a real nats-server, driven through the command line: a
//! `mixer` process and two `fluxrig rack start` processes; enrollment and approval, a
//! scenario spanning both racks over a guaranteed wire, a rack killed with SIGKILL and
//! restarted without losing a message, and a mixer restarted that the racks reattach to
//! without approval. And the API's refusals as the CLI reports them.

use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use serde_json::Value;

use super::fluxrig;

const TOKEN: &str = "fleet-test-token-0123456789";
const BOOTSTRAP: &str = "fleet-test-bootstrap";
const N: u64 = 3_000;

struct Fleet {
    dir: PathBuf,
    /// The URL racks connect to.
    nats: String,
    /// How the mixer gets its NATS: `--nats <url>` by default.
    mixer_nats: Vec<String>,
    api: String,
    port: u16,
    bin: PathBuf,
    mixer: Option<Child>,
    racks: Vec<(String, Child)>,
    runs: u32,
}

impl Fleet {
    fn new(tag: &str, nats: String) -> Fleet {
        let dir = std::env::temp_dir().join(format!("fluxrig-fleet-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("a temporary directory");
        let exe = std::env::current_exe().expect("the test's path");
        let bin = exe
            .parent()
            .and_then(|deps| deps.parent())
            .map(|profile| profile.join("examples"))
            .expect("the target directory");
        for (name, probe) in [
            ("mixer", "--dangerously-disable-auth"),
            ("fluxrig", "start"),
        ] {
            let help = Command::new(bin.join(name))
                .args(if name == "mixer" {
                    vec!["--help"]
                } else {
                    vec!["rack", "--help"]
                })
                .output()
                .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
                .unwrap_or_default();
            assert!(
                help.contains(probe),
                "{} is missing or out of date: run `cargo build --examples` (make test builds them)",
                bin.join(name).display()
            );
        }
        let port = testkit::free_port();
        Fleet {
            dir,
            mixer_nats: vec!["--nats".to_owned(), nats.clone()],
            nats,
            api: format!("http://127.0.0.1:{port}"),
            port,
            bin,
            mixer: None,
            racks: Vec::new(),
            runs: 0,
        }
    }

    fn log(&mut self, name: &str) -> std::fs::File {
        self.runs += 1;
        std::fs::File::create(self.dir.join(format!("{name}-{}.log", self.runs))).expect("a log")
    }

    fn start_mixer(&mut self) {
        let log = self.log("mixer");
        let child = Command::new(self.bin.join("mixer"))
            .args(["--data-dir"])
            .arg(self.dir.join("mixer"))
            .args(["--listen", &format!("127.0.0.1:{}", self.port)])
            .args(["--token", TOKEN, "--bootstrap-secret", BOOTSTRAP])
            .args(&self.mixer_nats)
            .args(["--heartbeat-interval", "300ms"])
            .env("FLUXRIG_LOG", "info")
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect("a mixer process");
        self.mixer = Some(child);
        self.wait("the API", Duration::from_secs(30), |f| {
            f.cli(&["racks", "list"]).0 == 0
        });
    }

    fn start_rack(&mut self, name: &str, extra: &[&str]) {
        let log = self.log(name);
        let child = Command::new(self.bin.join("fluxrig"))
            .args(["rack", "start", "--name", name, "--nats", &self.nats])
            .args(extra)
            .args([
                "--bootstrap-secret",
                BOOTSTRAP,
                "--heartbeat-interval",
                "300ms",
            ])
            .arg("--state-dir")
            .arg(self.dir.join(name))
            .env("FLUXRIG_LOG", "info")
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect("a rack process");
        self.racks.retain(|(n, _)| n != name);
        self.racks.push((name.to_owned(), child));
    }

    fn kill_rack(&mut self, name: &str) {
        for (n, child) in &mut self.racks {
            if n == name {
                let _ = child.kill(); // SIGKILL
                let _ = child.wait();
            }
        }
    }

    fn kill_mixer(&mut self) {
        if let Some(mut m) = self.mixer.take() {
            let _ = m.kill();
            let _ = m.wait();
        }
    }

    /// `fluxrig <args> --api-url … --api-token …`: status, stdout, stderr.
    fn cli(&self, args: &[&str]) -> (u8, String, String) {
        let mut all = args.to_vec();
        all.extend(["--api-url", &self.api, "--api-token", TOKEN]);
        let run = fluxrig(&all, b"");
        (
            run.status,
            String::from_utf8_lossy(&run.stdout).into_owned(),
            run.stderr,
        )
    }

    fn json(&self, args: &[&str]) -> Value {
        let mut all = args.to_vec();
        all.push("--json");
        let (status, out, err) = self.cli(&all);
        assert_eq!(status, 0, "fluxrig {args:?}: {err}");
        serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"))
    }

    fn rack_status(&self, name: &str) -> Option<String> {
        let (status, out, _) = self.cli(&["racks", "show", name, "--json"]);
        (status == 0).then(|| {
            serde_json::from_str::<Value>(&out).map_or(String::new(), |v| {
                v["status"].as_str().unwrap_or_default().to_owned()
            })
        })
    }

    fn wait(&self, what: &str, limit: Duration, mut done: impl FnMut(&Fleet) -> bool) {
        let deadline = Instant::now() + limit;
        while !done(self) {
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {what}; the processes' logs are in {}",
                self.dir.display()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    fn sink(&self) -> PathBuf {
        self.dir.join("sink.jsonl")
    }

    /// How often each number reached the sink.
    fn arrived(&self) -> std::collections::BTreeMap<u64, u32> {
        let text = std::fs::read_to_string(self.sink()).unwrap_or_default();
        let mut counts = std::collections::BTreeMap::new();
        for line in text.lines() {
            if let Ok(v) = serde_json::from_str::<Value>(line)
                && let Some(n) = v["data.n"].as_u64()
            {
                *counts.entry(n).or_insert(0) += 1;
            }
        }
        counts
    }
}

impl Drop for Fleet {
    fn drop(&mut self) {
        for (_, child) in &mut self.racks {
            let _ = child.kill();
            let _ = child.wait();
        }
        self.kill_mixer();
        if !std::thread::panicking() {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

/// `GET <path>` of the server at `addr`: the body, after the status line `200`.
fn http_get(addr: &str, path: &str) -> String {
    use std::io::{Read as _, Write as _};
    let mut stream = std::net::TcpStream::connect(addr).expect("connects");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("a timeout");
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n"
    )
    .expect("writes");
    let mut response = String::new();
    stream.read_to_string(&mut response).expect("reads");
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    response
}

fn scenario(dir: &Path, sink: &Path) -> PathBuf {
    let path = dir.join("flow.yaml");
    std::fs::write(
        &path,
        format!(
            r#"meta: {{ name: flow, version: 1.0.0 }}
racks: [ {{ name: edge }}, {{ name: core }} ]
gears:
  - name: gen
    type: generate
    deploy: edge
    config: {{ count: {N}, batch: 20, rate: {{ tps: 300 }}, template: {{ data: {{ n: "${{counter}}", pan: "4111111111111111" }} }} }}
  - name: pick
    type: route
    deploy: edge
    config: {{ rules: [ {{ when: {{ field: data.pan, prefix: "4" }}, to: out_visa }} ], default: out_other }}
  - name: stamp
    type: transform
    deploy: core
    config: {{ steps: [ {{ set: meta.via, value: core }} ] }}
  - name: out
    type: log
    deploy: core
    config: {{ output: file, path: "{}", fields: [id, data.n] }}
wires:
  - {{ from: gen.out, to: pick.in }}
  - {{ from: pick.out_visa, to: stamp.in, lane: guaranteed }}
  - {{ from: stamp.out, to: out.in }}
"#,
            sink.display()
        ),
    )
    .expect("the scenario");
    path
}

#[test]
fn a_fleet_of_processes_enrolls_converges_survives_a_kill_and_a_mixer_restart() {
    let mut server = ::fluxrig::snake::NatsServer::builder()
        .start()
        .expect("a nats-server (make setup-nats)");
    let mut fleet = Fleet::new("external", server.url());
    fleet.start_mixer();

    // The API's refusals, as the CLI reports them: one line, non-zero status.
    let run = fluxrig(&["racks", "list", "--api-url", &fleet.api], b"");
    assert_eq!(run.status, 1, "{run:?}");
    assert!(
        run.stderr.starts_with("error: unauthorized (401)"),
        "{}",
        run.stderr
    );
    let run = fluxrig(
        &[
            "racks",
            "list",
            "--api-url",
            &fleet.api,
            "--api-token",
            "wrong-token-wrong-token",
        ],
        b"",
    );
    assert!(
        run.stderr
            .contains("unauthorized (401): invalid bearer token"),
        "{}",
        run.stderr
    );
    let (status, _, err) = fleet.cli(&["racks", "approve", "nobody"]);
    assert_eq!(status, 1);
    assert!(err.contains("no_rack (404)"), "{err}");
    let bad = fleet.dir.join("bad.yaml");
    std::fs::write(
        &bad,
        "meta: { name: x, version: 1.0.0 }\ngears: [ { name: a\n",
    )
    .expect("write");
    let (status, _, err) = fleet.cli(&["scenario", "import", bad.to_str().expect("utf-8")]);
    assert_eq!(status, 1);
    // `error: invalid_scenario (400): <line>:<col>: <what>`.
    let place = err
        .strip_prefix("error: invalid_scenario (400): ")
        .and_then(|rest| rest.split(": ").next())
        .and_then(|pos| pos.split_once(':'))
        .map(|(line, col)| (line.parse::<u32>(), col.parse::<u32>()));
    assert!(matches!(place, Some((Ok(_), Ok(_)))), "{err}");

    // The cluster key is backed up to a new file of the operator's only.
    let backup = fleet.dir.join("cluster.key.bak");
    let out = Command::new(fleet.bin.join("mixer"))
        .arg("--data-dir")
        .arg(fleet.dir.join("mixer"))
        .arg("--backup-key")
        .arg(&backup)
        .output()
        .expect("the mixer runs");
    assert!(out.status.success(), "{out:?}");
    let key = std::fs::read(fleet.dir.join("mixer").join("cluster.key")).expect("the key");
    assert_eq!(std::fs::read(&backup).expect("the backup"), key);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(&backup)
            .expect("metadata")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    // Two racks enroll and wait; the operator approves them.
    fleet.start_rack("edge", &[]);
    fleet.start_rack("core", &[]);
    fleet.wait("two pending racks", Duration::from_secs(30), |f| {
        f.json(&["racks", "list", "--status", "pending"])
            .as_array()
            .map(Vec::len)
            == Some(2)
    });
    for rack in ["edge", "core"] {
        let (status, out, err) = fleet.cli(&["racks", "approve", rack]);
        assert_eq!(
            (status, out.trim()),
            (0, format!("{rack}: active").as_str()),
            "{err}"
        );
    }
    let (_, table, _) = fleet.cli(&["racks", "list"]);
    assert!(table.starts_with("NAME  STATUS  MACHINE"), "{table}");

    // The scenario spans both racks; the CLI waits until both report it applied.
    let flow = scenario(&fleet.dir, &fleet.sink());
    let (status, out, err) = fleet.cli(&[
        "scenario",
        "import",
        flow.to_str().expect("utf-8"),
        "--activate",
        "--wait",
        "60s",
    ]);
    assert_eq!(status, 0, "{out}{err}");
    assert!(
        out.contains("imported flow:1.0.0") && out.contains("applied 2/2"),
        "{out}"
    );
    let status = fleet.json(&["scenario", "status"]);
    let rows = status["racks"].as_array().expect("rows");
    assert_eq!(rows.len(), 2, "{status}");
    for row in rows {
        assert_eq!(row["status"], "applied", "{status}");
        assert_eq!(row["applied_hash"], status["active"]["hash"], "{status}");
    }

    // Messages flow; the consuming rack is killed mid-stream and started again.
    fleet.wait("the first messages", Duration::from_secs(60), |f| {
        f.arrived().len() > 300
    });
    // The guaranteed wire's messages, live, with the card number masked.
    let url = fleet.nats.clone();
    let tail = fluxrig(
        &[
            "tail",
            "edge.pick.out_visa",
            "--nats",
            &url,
            "--count",
            "3",
            "--duration",
            "20s",
        ],
        b"",
    );
    let lines = String::from_utf8_lossy(&tail.stdout).into_owned();
    assert_eq!((tail.status, lines.lines().count()), (0, 3), "{tail:?}");
    assert!(
        lines.starts_with("flux.msg.edge.pick.out_visa {"),
        "{lines}"
    );
    assert!(
        !lines.contains("4111111111111111") && lines.contains("411111******1111"),
        "{lines}"
    );
    fleet.kill_rack("core");
    std::thread::sleep(Duration::from_secs(1));
    let metrics = format!("127.0.0.1:{}", testkit::free_port());
    fleet.start_rack("core", &["--metrics-addr", &metrics]);
    fleet.wait("every message", Duration::from_secs(120), |f| {
        f.arrived().len() as u64 == N
    });
    let counts = fleet.arrived();
    assert!(
        (0..N).all(|n| counts.contains_key(&n)),
        "a guaranteed message was lost"
    );
    // The restarted rack serves its own counters.
    let text = http_get(&metrics, "/metrics");
    assert!(
        text.contains("flux_gear_messages_in_total{rack=\"core\",gear=\"out\"}"),
        "{text}"
    );

    // Why did a message go where it went: the hops of a recently sampled one on both racks,
    // with the route's decision.
    let deadline = Instant::now() + Duration::from_secs(30);
    let path = 'found: loop {
        let recent = fleet.json(&["trace"]);
        for id in recent.as_array().into_iter().flatten() {
            let id = id.as_str().unwrap_or_default();
            let (status, out, _) = fleet.cli(&["trace", id, "--json"]);
            let path: Value = serde_json::from_str(&out).unwrap_or(Value::Null);
            if status == 0 && path["hops"].as_array().is_some_and(|h| h.len() >= 3) {
                break 'found path;
            }
        }
        assert!(
            Instant::now() < deadline,
            "no recent message has its three hops reported: {recent}; the logs are in {}",
            fleet.dir.display()
        );
        std::thread::sleep(Duration::from_millis(300));
    };
    let id = path["id"].as_str().expect("an id").to_owned();
    let hops: Vec<String> = path["hops"]
        .as_array()
        .expect("hops")
        .iter()
        .map(|h| {
            format!(
                "{}.{}.{}",
                h["rack"].as_str().unwrap_or(""),
                h["gear"].as_str().unwrap_or(""),
                h["port"].as_str().unwrap_or("")
            )
        })
        .collect();
    assert_eq!(
        hops,
        ["edge.gen.out", "edge.pick.out_visa", "core.stamp.out"],
        "{path}"
    );
    let decision = path["hops"][1]["decision"].as_str().unwrap_or_default();
    assert!(
        decision.contains("rule 0") && decision.contains("out_visa"),
        "{path}"
    );
    let (_, table, _) = fleet.cli(&["trace", &id]);
    assert!(
        table.contains("edge.pick -> out_visa  [") && table.contains("core.stamp -> out"),
        "{table}"
    );

    // The mixer restarts on its store: the racks reattach without approval.
    fleet.kill_mixer();
    fleet.start_mixer();
    let before = fleet.json(&["racks", "show", "core"])["last_seen"]
        .as_u64()
        .expect("last_seen");
    fleet.wait(
        "heartbeats after the restart",
        Duration::from_secs(30),
        |f| {
            f.json(&["racks", "show", "core"])["last_seen"].as_u64() > Some(before)
                && f.rack_status("edge").as_deref() == Some("active")
                && f.rack_status("core").as_deref() == Some("active")
        },
    );
    let (_, table, _) = fleet.cli(&["scenario", "status"]);
    assert_eq!(table.matches("applied").count(), 2, "{table}");
    // No process logged a card number, nor a secret.
    for entry in std::fs::read_dir(&fleet.dir)
        .expect("the logs")
        .filter_map(Result::ok)
    {
        if entry.path().extension().is_some_and(|e| e == "log") {
            let log = std::fs::read_to_string(entry.path()).unwrap_or_default();
            for secret in ["4111111111111111", TOKEN, BOOTSTRAP] {
                assert!(
                    !log.contains(secret),
                    "{secret} in {}",
                    entry.path().display()
                );
            }
        }
    }
    server.stop().expect("the server stops");
}

/// The README's first step: `mixer --nats managed --nats-port <port>` runs its own
/// nats-server, racks enroll through it, and it stops with the mixer.
#[test]
fn the_mixer_runs_and_stops_its_own_nats_server() {
    let port = testkit::free_port();
    let mut fleet = Fleet::new("managed", format!("nats://127.0.0.1:{port}"));
    fleet.mixer_nats = ["--nats", "managed", "--nats-port", &port.to_string()]
        .map(str::to_owned)
        .to_vec();
    fleet.start_mixer();
    fleet.start_rack("edge", &[]);
    // Listings show what racks change themselves within about a second.
    fleet.wait("edge to say hello", Duration::from_secs(60), |f| {
        f.json(&["racks", "list", "--status", "pending"])[0]["name"] == "edge"
    });

    // SIGTERM: the mixer stops, and its nats-server with it.
    let mut mixer = fleet.mixer.take().expect("the mixer");
    let term = Command::new("kill")
        .args(["-TERM", &mixer.id().to_string()])
        .status()
        .expect("kill runs");
    assert!(term.success());
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let exit = loop {
        if let Some(exit) = mixer.try_wait().expect("the mixer's status") {
            break exit;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the mixer did not stop on SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(exit.success(), "the mixer exited with {exit}");
    let closed = (0..200).any(|_| {
        let refused = std::net::TcpStream::connect(("127.0.0.1", port)).is_err();
        if !refused {
            std::thread::sleep(Duration::from_millis(50));
        }
        refused
    });
    assert!(closed, "the managed nats-server outlived its mixer");
}
