//! The fleet commands against a real mixer API (in this process, on a fixed clock) and a real
//! rack agent: their tables and JSON as snapshots, their one-line errors, and every request
//! they make checked against the API's OpenAPI document.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ::fluxrig::mixer::api::Api;
use ::fluxrig::mixer::store::MemoryStore;
use ::fluxrig::mixer::{ManualClock, Mixer};
use ::fluxrig::rack::agent::{Agent, AgentConfig, Enrollment};
use ::fluxrig::snake::Snake;
use axum::extract::{MatchedPath, Request};
use axum::middleware::Next;

use super::fluxrig;

const TOKEN: &str = "cli-snapshot-token-0123456789";
/// The mixer's clock: now, to the second, standing still (racks check their leases against
/// the real time, so it cannot be a fixed date).
fn now_ms() -> i64 {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    i64::try_from(secs).unwrap_or(0) * 1000
}

/// What the API saw: every request, and the route templates of those that matched.
#[derive(Default)]
struct Seen {
    all: Vec<String>,
    matched: BTreeSet<(String, String)>,
    matched_requests: usize,
}

struct Fixture {
    api: String,
    seen: Arc<Mutex<Seen>>,
    dir: std::path::PathBuf,
    /// The mixer's time, RFC 3339.
    now: String,
    runtime: tokio::runtime::Runtime,
    agent: Option<Agent>,
}

impl Fixture {
    fn start() -> Fixture {
        let dir = std::env::temp_dir().join(format!("fluxrig-cli-api-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("a directory");
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("a runtime");
        let seen = Arc::new(Mutex::new(Seen::default()));
        let now_ms = now_ms();
        let now = humantime::format_rfc3339_seconds(
            std::time::UNIX_EPOCH + Duration::from_millis(u64::try_from(now_ms).unwrap_or(0)),
        )
        .to_string();
        let (api, agent) = runtime.block_on(async {
            let snake = Snake::memory();
            let mixer = Mixer::builder()
                .data_dir(&dir)
                .store(Arc::new(MemoryStore::new()))
                .clock(Arc::new(ManualClock::new(now_ms)))
                .snake(snake.clone())
                .bootstrap_secret("cli-bootstrap")
                .heartbeat_interval(Duration::from_millis(100), 1000)
                .start()
                .await
                .expect("a mixer");
            let (all, matched) = (Arc::clone(&seen), Arc::clone(&seen));
            let router = Api::builder(mixer)
                .token(TOKEN)
                .router()
                .expect("a router")
                .route_layer(axum::middleware::from_fn(
                    move |req: Request, next: Next| {
                        let route = req
                            .extensions()
                            .get::<MatchedPath>()
                            .map(|m| m.as_str().to_owned());
                        if let Some(route) = route {
                            let mut seen = matched.lock().expect("lock");
                            seen.matched_requests += 1;
                            seen.matched
                                .insert((req.method().as_str().to_lowercase(), route));
                        }
                        next.run(req)
                    },
                ))
                .layer(axum::middleware::from_fn(
                    move |req: Request, next: Next| {
                        all.lock().expect("lock").all.push(format!(
                            "{} {}",
                            req.method(),
                            req.uri().path()
                        ));
                        next.run(req)
                    },
                ));
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
                .await
                .expect("binds");
            let addr = listener.local_addr().expect("an address");
            tokio::spawn(async move {
                let _ = axum::serve(listener, router).await;
            });
            let agent = Agent::start(
                AgentConfig::new("edge", dir.join("edge"))
                    .bootstrap_secret("cli-bootstrap")
                    .label("zone", "a")
                    .heartbeat_interval(Duration::from_millis(100))
                    .enrollment_interval(Duration::from_millis(100)),
                snake,
            )
            .await
            .expect("an agent");
            let mut status = agent.status();
            tokio::time::timeout(
                Duration::from_secs(30),
                status.wait_for(|s| s.enrollment == Enrollment::Pending),
            )
            .await
            .expect("pending in time");
            (format!("http://{addr}"), agent)
        });
        Fixture {
            api,
            seen,
            dir,
            now,
            runtime,
            agent: Some(agent),
        }
    }

    fn wait_for(&self, want: Enrollment) {
        let mut status = self.agent.as_ref().expect("the agent").status();
        let reached = self.runtime.block_on(async {
            tokio::time::timeout(
                Duration::from_secs(30),
                status.wait_for(|s| s.enrollment == want),
            )
            .await
        });
        assert!(
            matches!(reached, Ok(Some(_))),
            "the rack did not become {want:?}"
        );
    }

    fn run(&self, args: &[&str]) -> (u8, String, String) {
        let mut all = args.to_vec();
        all.extend(["--api-url", &self.api, "--api-token", TOKEN]);
        let run = fluxrig(&all, b"");
        (
            run.status,
            String::from_utf8_lossy(&run.stdout).into_owned(),
            run.stderr,
        )
    }

    /// Runs a command that must succeed; its stdout.
    fn ok(&self, args: &[&str]) -> String {
        let (status, out, err) = self.run(args);
        assert_eq!(status, 0, "fluxrig {args:?}: {err}");
        assert!(err.is_empty(), "{err}");
        out
    }
}

impl Drop for Fixture {
    fn drop(&mut self) {
        if let Some(agent) = self.agent.take() {
            let _ = self.runtime.block_on(agent.shutdown());
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn scenario(version: &str, count: u32) -> String {
    format!(
        "meta: {{ name: flow, version: {version} }}\n\
         racks: [ {{ name: edge }} ]\n\
         gears:\n\
         - {{ name: gen, type: generate, config: {{ count: {count} }} }}\n\
         - {{ name: pick, type: route, config: {{ rules: [], default: out_all }} }}\n\
         wires: [ {{ from: gen.out, to: pick.in }} ]\n"
    )
}

#[test]
fn fleet_commands_print_tables_and_json_and_match_the_openapi_document() {
    let f = Fixture::start();

    // A pending rack, as a table and as JSON.
    assert_eq!(
        f.ok(&["racks", "list"]),
        format!(
            "NAME  STATUS   MACHINE  APPLIED  LAST SEEN             LABELS\n\
             edge  pending  -        -        {}  zone=a\n",
            f.now
        )
    );
    let json: serde_json::Value =
        serde_json::from_str(&f.ok(&["racks", "list", "--json"])).expect("JSON");
    assert_eq!(json[0]["name"], "edge");
    assert_eq!(json[0]["status"], "pending");
    assert!(json[0].get("secret_hash").is_none(), "{json}");
    assert_eq!(
        f.ok(&["racks", "list", "--status", "active"]),
        "NAME  STATUS  MACHINE  APPLIED  LAST SEEN  LABELS\n"
    );

    assert_eq!(f.ok(&["racks", "approve", "edge"]), "edge: active\n");
    // The clock stands still, so the mixer re-pushes nothing: push once the rack listens.
    f.wait_for(Enrollment::Active);

    // Import, activate and wait: the live counter ends in one line.
    let file = f.dir.join("flow.yaml");
    std::fs::write(&file, scenario("1.0.0", 1)).expect("write");
    let out = f.ok(&[
        "scenario",
        "import",
        file.to_str().expect("utf-8"),
        "--activate",
        "--wait",
        "30s",
    ]);
    let hash = {
        let first = out.lines().next().unwrap_or_default();
        assert!(first.starts_with("imported flow:1.0.0 ("), "{out}");
        first
            .split(['(', ')'])
            .nth(1)
            .unwrap_or_default()
            .to_owned()
    };
    assert_eq!(hash.len(), 12, "{out}");
    assert!(
        out.contains("), racks: edge\nactivated, pushed to: edge\n"),
        "{out}"
    );
    assert!(out.contains("applied 1/1"), "{out}");
    std::fs::write(&file, scenario("1.1.0", 2)).expect("write");
    f.ok(&["scenario", "import", file.to_str().expect("utf-8")]);

    assert_eq!(
        f.ok(&["scenario", "list"]),
        "NAME  VERSIONS      ACTIVE\nflow  1.0.0, 1.1.0  1.0.0\n"
    );
    assert_eq!(
        f.ok(&["scenario", "status"]),
        format!(
            "active: flow:1.0.0 ({hash})\n\
             RACK  VERSION  ASKED         APPLIED       STATUS   ERROR\n\
             edge  1.0.0    {hash}  {hash}  applied\n"
        )
    );
    assert_eq!(
        f.ok(&["scenario", "show", "flow", "1.1.0"]),
        scenario("1.1.0", 2)
    );
    let diff = f.ok(&["scenario", "diff", "flow", "1.0.0", "1.1.0"]);
    assert!(
        diff.starts_with("--- flow:1.0.0\n+++ flow:1.1.0\n"),
        "{diff}"
    );
    assert!(diff.contains("-- { name: gen, type: generate, config: { count: 1 } }\n+- { name: gen, type: generate, config: { count: 2 } }"), "{diff}");
    let status: serde_json::Value =
        serde_json::from_str(&f.ok(&["scenario", "status", "--json"])).expect("JSON");
    assert_eq!(status["racks"][0]["applied_hash"], status["active"]["hash"]);

    let show = f.ok(&["racks", "show", "edge"]);
    for line in [
        "name        edge\n",
        "status      active\n",
        "machine id  ",
        "labels      zone=a\n",
        "health:\n  gen ",
    ] {
        assert!(show.contains(line), "{line:?} not in\n{show}");
    }
    assert_eq!(
        f.ok(&["racks", "log-level", "edge", "debug"]),
        "edge: log level debug at its next heartbeat\n"
    );
    assert_eq!(f.ok(&["racks", "suspend", "edge"]), "edge: inactive\n");
    assert_eq!(f.ok(&["racks", "activate", "edge"]), "edge: active\n");
    assert_eq!(
        f.ok(&["racks", "shutdown", "edge", "--json"]).trim(),
        "null"
    );

    // Errors: one line on stderr, status 1, no backtrace.
    for (args, want) in [
        (
            vec!["racks", "show", "nobody"],
            "error: no_rack (404): no rack `nobody`\n",
        ),
        (
            vec!["racks", "log-level", "edge", "loud"],
            "error: bad_request (400): no log level `loud`: trace, debug, info, warn or error\n",
        ),
        (
            vec!["scenario", "show", "flow", "9.9.9"],
            "error: no_scenario (404): no scenario flow:9.9.9\n",
        ),
        (
            vec!["trace", "42"],
            "error: not_found (404): no hop of message 42 was reported (hops are sampled and kept for recent messages only)\n",
        ),
    ] {
        let (status, out, err) = f.run(&args);
        assert_eq!(
            (status, out.as_str(), err.as_str()),
            (1, "", want),
            "{args:?}"
        );
    }
    assert_eq!(f.ok(&["racks", "remove", "edge"]), "removed edge\n");

    // Every request the commands made matched a route, and every route is in the document.
    let doc = Api::openapi();
    let doc = serde_json::to_value(&doc).expect("JSON");
    let seen = f.seen.lock().expect("lock");
    assert!(seen.all.len() >= 20, "{:?}", seen.all);
    // The 404s above are answers of matched routes: no request fell through to the fallback.
    assert_eq!(seen.matched_requests, seen.all.len(), "{:?}", seen.all);
    assert!(seen.matched.len() >= 12, "{:?}", seen.matched);
    for (method, route) in &seen.matched {
        assert!(
            doc["paths"][route][method].is_object(),
            "the CLI's {method} {route} is not in the OpenAPI document"
        );
    }
}

#[test]
fn racks_list_follows_the_pages_of_a_large_fleet() {
    let dir = std::env::temp_dir().join(format!("fluxrig-cli-pages-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a runtime");
    let api = runtime.block_on(async {
        let store = Arc::new(MemoryStore::new());
        for i in 0..250 {
            let mut r = ::fluxrig::mixer::store::RackRecord::new(
                &format!("id-{i}"),
                &format!("rack-{i:03}"),
                "hash".into(),
                now_ms(),
            );
            if i % 3 == 0 {
                r.status = ::fluxrig::mixer::store::RackStatus::Inactive;
            }
            ::fluxrig::mixer::store::Store::insert_rack(store.as_ref(), &r)
                .await
                .expect("insert");
        }
        let mixer = Mixer::builder()
            .data_dir(&dir)
            .store(store)
            .snake(Snake::memory())
            .start()
            .await
            .expect("a mixer");
        let router = Api::builder(mixer).token(TOKEN).router().expect("a router");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("binds");
        let addr = listener.local_addr().expect("an address");
        tokio::spawn(async move {
            let _ = axum::serve(listener, router).await;
        });
        format!("http://{addr}")
    });
    let list = |extra: &[&str]| {
        let mut args = vec![
            "racks",
            "list",
            "--json",
            "--api-url",
            &api,
            "--api-token",
            TOKEN,
        ];
        args.extend(extra);
        let run = fluxrig(&args, b"");
        assert_eq!(run.status, 0, "{}", run.stderr);
        let racks: serde_json::Value = serde_json::from_slice(&run.stdout).expect("JSON");
        racks
            .as_array()
            .expect("a list")
            .iter()
            .map(|r| r["name"].as_str().expect("a name").to_owned())
            .collect::<Vec<_>>()
    };
    // Three pages of the API's default size, as one list in name order.
    let all = list(&[]);
    let want: Vec<String> = (0..250).map(|i| format!("rack-{i:03}")).collect();
    assert_eq!(all, want);
    let inactive = list(&["--status", "inactive"]);
    assert_eq!(inactive.len(), 84);
    assert!(
        inactive
            .iter()
            .all(|n| n[5..].parse::<u32>().is_ok_and(|i| i % 3 == 0))
    );
    let _ = std::fs::remove_dir_all(&dir);
}
