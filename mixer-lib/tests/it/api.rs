//! The HTTP API against a real mixer and a real rack agent: auth, errors with their codes,
//! racks, scenarios with dry runs, conflicts and diffs, the catalog, dead letters, the OpenAPI
//! document, and no secret in any response.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use http_body_util::BodyExt as _;
use mixer_lib::Mixer;
use mixer_lib::api::{Api, StartError};
use mixer_lib::store::MemoryStore;
use mixer_lib::telemetry::Telemetry;
use rack_lib::agent::{Agent, AgentConfig, Enrollment};
use serde_json::Value;
use snake::Snake;
use tower::ServiceExt as _;

use crate::temp_dir;

const TOKEN: &str = "api-token-for-the-tests-0123456789";
const BOOTSTRAP: &str = "api-bootstrap-secret";

/// The router, and every response body it gave, to look for secrets in.
struct Client {
    router: axum::Router,
    seen: Arc<Mutex<Vec<String>>>,
}

impl Client {
    async fn call(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: &str,
    ) -> (StatusCode, Value, String) {
        let mut req = Request::builder().method(method).uri(path);
        if let Some(t) = token {
            req = req.header("authorization", format!("Bearer {t}"));
        }
        if body.starts_with('{') {
            req = req.header("content-type", "application/json");
        }
        let req = req.body(Body::from(body.to_owned())).expect("a request");
        let res = self.router.clone().oneshot(req).await.expect("a response");
        let status = res.status();
        let bytes = res.into_body().collect().await.expect("a body").to_bytes();
        let text = String::from_utf8_lossy(&bytes).into_owned();
        self.seen.lock().expect("lock").push(text.clone());
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::Null),
            text,
        )
    }

    async fn get(&self, path: &str) -> (StatusCode, Value) {
        let (s, v, _) = self.call(Method::GET, path, Some(TOKEN), "").await;
        (s, v)
    }

    async fn post(&self, path: &str, body: &str) -> (StatusCode, Value) {
        let (s, v, _) = self.call(Method::POST, path, Some(TOKEN), body).await;
        (s, v)
    }
}

fn scenario(version: &str, count: u32) -> String {
    format!(
        "meta: {{ name: flow, version: {version} }}\n\
         racks: [ {{ name: edge }} ]\n\
         gears:\n\
         - {{ name: gen, type: generate, config: {{ count: {count} }} }}\n\
         - {{ name: out, type: log, config: {{ output: stderr }} }}\n\
         wires: [ {{ from: gen.out, to: out.in }} ]\n"
    )
}

async fn wait(agent: &Agent, what: &str, want: Enrollment) {
    let mut status = agent.status();
    if tokio::time::timeout(
        Duration::from_secs(30),
        status.wait_for(|s| s.enrollment == want),
    )
    .await
    .ok()
    .flatten()
    .is_none()
    {
        panic!(
            "timed out waiting for {what}: {:?}",
            agent.status().current()
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_api_runs_a_fleet_and_never_shows_a_secret() {
    let snake = Snake::memory();
    let dir = temp_dir("mixer-api");
    let mixer = Mixer::builder()
        .data_dir(&dir)
        .store(Arc::new(MemoryStore::new()))
        .snake(snake.clone())
        .bootstrap_secret(BOOTSTRAP)
        .heartbeat_interval(Duration::from_millis(100), 3)
        .start()
        .await
        .expect("a mixer");
    let telemetry = Telemetry::start(&snake, 1000).await.expect("telemetry");
    let router = Api::builder(mixer.clone())
        .token(TOKEN)
        .telemetry(telemetry.clone())
        .config(serde_json::json!({ "bootstrap_secret": BOOTSTRAP, "api": { "token": TOKEN } }))
        .router()
        .expect("a router");
    let c = Client {
        router,
        seen: Arc::default(),
    };

    // Auth: health needs no token; everything else does, and the right one.
    let (s, health, _) = c.call(Method::GET, "/api/v1/health", None, "").await;
    assert_eq!((s, health["status"].as_str()), (StatusCode::OK, Some("ok")));
    let (s, body, _) = c.call(Method::GET, "/api/v1/racks", None, "").await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    assert_eq!(body["code"], "unauthorized");
    let (s, _, _) = c
        .call(
            Method::GET,
            "/api/v1/racks",
            Some("not-the-token-at-all"),
            "",
        )
        .await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    let (s, _) = c.get("/api/v1/config").await;
    assert_eq!(s, StatusCode::OK);

    // A real rack says hello and waits; the API approves it.
    let agent = Agent::start(
        AgentConfig::new("edge", dir.join("edge"))
            .bootstrap_secret(BOOTSTRAP)
            .label("zone", "a")
            .heartbeat_interval(Duration::from_millis(100))
            .telemetry_interval(Duration::from_millis(100))
            .hop_sampling(1)
            .enrollment_interval(Duration::from_millis(100))
            .reply_timeout(Duration::from_millis(500)),
        snake.clone(),
    )
    .await
    .expect("an agent");
    wait(&agent, "pending", Enrollment::Pending).await;
    let (s, racks) = c.get("/api/v1/racks?status=pending").await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(racks[0]["name"], "edge");
    assert_eq!(racks[0]["labels"]["zone"], "a");
    let (_, none) = c.get("/api/v1/racks?label=zone=b").await;
    assert_eq!(none, Value::Array(vec![]));
    let (s, bad) = c.get("/api/v1/racks?status=sleepy").await;
    assert_eq!(
        (s, bad["code"].as_str()),
        (StatusCode::BAD_REQUEST, Some("bad_request"))
    );
    let (s, approved) = c.post("/api/v1/racks/edge/approve", "").await;
    assert_eq!(
        (s, approved["status"].as_str()),
        (StatusCode::OK, Some("active"))
    );
    wait(&agent, "active", Enrollment::Active).await;

    // Unknown racks are 404 with their code, on every rack route.
    for (method, path) in [
        (Method::GET, "/api/v1/racks/nobody"),
        (Method::POST, "/api/v1/racks/nobody/approve"),
        (Method::POST, "/api/v1/racks/nobody/shutdown"),
        (Method::GET, "/api/v1/racks/nobody/stats"),
        (Method::DELETE, "/api/v1/racks/nobody"),
    ] {
        let (s, body, _) = c.call(method, path, Some(TOKEN), "").await;
        assert_eq!(
            (s, body["code"].as_str()),
            (StatusCode::NOT_FOUND, Some("no_rack")),
            "{path}"
        );
    }
    let (s, _) = c
        .post("/api/v1/racks/edge/log-level", r#"{"level":"loud"}"#)
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    let (s, _) = c
        .post("/api/v1/racks/edge/log-level", r#"{"level":"debug"}"#)
        .await;
    assert_eq!(s, StatusCode::ACCEPTED);

    // A malformed scenario: 400 with line and column.
    let (s, bad) = c
        .post(
            "/api/v1/scenarios",
            "meta: { name: x, version: 1.0.0 }\ngears: [ { name: a\n",
        )
        .await;
    assert_eq!(
        (s, bad["code"].as_str()),
        (StatusCode::BAD_REQUEST, Some("invalid_scenario"))
    );
    assert!(bad["problems"][0]["line"].as_u64().is_some(), "{bad}");
    assert!(bad["problems"][0]["col"].as_u64().is_some(), "{bad}");
    let (s, bad) = c
        .post(
            "/api/v1/scenarios",
            &scenario("1.0.0", 1).replace("type: log", "type: teleport"),
        )
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert!(
        bad["message"]
            .as_str()
            .is_some_and(|m| m.contains("teleport")),
        "{bad}"
    );

    // A dry run stores nothing; an import with activation pushes to the rack.
    let (s, dry) = c
        .post("/api/v1/scenarios?dry_run=true", &scenario("1.0.0", 1))
        .await;
    assert_eq!((s, dry["stored"].as_bool()), (StatusCode::OK, Some(false)));
    let (_, list) = c.get("/api/v1/scenarios").await;
    assert_eq!(list, Value::Array(vec![]));
    let (s, imported) = c
        .post("/api/v1/scenarios?activate=true", &scenario("1.0.0", 1))
        .await;
    assert_eq!(s, StatusCode::OK, "{imported}");
    assert_eq!(imported["pushed"][0], "edge");
    let hash = imported["hash"].as_str().expect("a hash").to_owned();
    // The same version with other content is a conflict.
    let (s, conflict) = c.post("/api/v1/scenarios", &scenario("1.0.0", 2)).await;
    assert_eq!(
        (s, conflict["code"].as_str()),
        (StatusCode::CONFLICT, Some("conflict"))
    );
    let (s, _) = c.post("/api/v1/scenarios", &scenario("1.1.0", 2)).await;
    assert_eq!(s, StatusCode::OK);

    let (_, versions) = c.get("/api/v1/scenarios/flow/versions").await;
    assert_eq!(versions.as_array().map(Vec::len), Some(2));
    let (_, latest) = c.get("/api/v1/scenarios/flow/versions/latest").await;
    assert_eq!(latest["version"], "1.1.0");
    let (s, _) = c.get("/api/v1/scenarios/flow/versions/9.9.9").await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    let (s, _, diff) = c
        .call(
            Method::GET,
            "/api/v1/scenarios/flow/diff?from=1.0.0&to=latest",
            Some(TOKEN),
            "",
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    assert!(diff.contains("-") && diff.contains("count: 2"), "{diff}");
    let (_, active) = c.get("/api/v1/scenarios/active").await;
    assert_eq!(active["version"], "1.0.0");

    // The rack reports the push applied: the status shows the same hash asked and applied.
    let mut applied = Value::Null;
    for _ in 0..300 {
        let (_, status) = c.get("/api/v1/scenarios/status").await;
        if status["racks"][0]["status"] == "applied" {
            applied = status;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        applied["racks"][0]["asked_hash"],
        hash.as_str(),
        "{applied}"
    );
    assert_eq!(applied["racks"][0]["applied_hash"], hash.as_str());
    let (s, stats) = c.get("/api/v1/racks/edge/stats").await;
    assert_eq!((s, stats["rack"].as_str()), (StatusCode::OK, Some("edge")));

    // The fleet's metrics: racks by status and, once the rack's snapshots arrive, its
    // gears' counters; behind the token like the rest.
    let mut metrics = String::new();
    for _ in 0..300 {
        let (s, _, text) = c.call(Method::GET, "/metrics", Some(TOKEN), "").await;
        assert_eq!(s, StatusCode::OK);
        if telemetry
            .snapshots()
            .iter()
            .any(|m| m.gears.contains_key("gen"))
        {
            metrics = text;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        metrics.contains("flux_mixer_racks{status=\"active\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("flux_gear_messages_out_total{rack=\"edge\",gear=\"gen\"}"),
        "{metrics}"
    );
    let (s, _, _) = c.call(Method::GET, "/metrics", None, "").await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    // Paths: every message is sampled here, so the generator's hops are reported.
    let mut path = Value::Null;
    for _ in 0..300 {
        if let Some(id) = telemetry.recent(1).first() {
            path = c.get(&format!("/api/v1/messages/{id}/path")).await.1;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(path["hops"][0]["rack"], "edge", "{path}");
    assert_eq!(path["hops"][0]["gear"], "gen", "{path}");
    assert_eq!(path["hops"][0]["port"], "out", "{path}");
    let (_, recent) = c.get("/api/v1/messages?limit=5").await;
    assert!(
        recent
            .as_array()
            .is_some_and(|r| !r.is_empty() && r.len() <= 5),
        "{recent}"
    );
    // An id nobody reported is 404, text that is no id 400.
    let (s, body) = c.get("/api/v1/messages/123/path").await;
    assert_eq!(
        (s, body["code"].as_str()),
        (StatusCode::NOT_FOUND, Some("not_found"))
    );
    let (s, _) = c.get("/api/v1/messages/not-an-id/path").await;
    assert_eq!(s, StatusCode::BAD_REQUEST);

    // Suspend and activate again.
    let (_, suspended) = c.post("/api/v1/racks/edge/suspend", "").await;
    assert_eq!(suspended["status"], "inactive");
    wait(&agent, "inactive", Enrollment::Inactive).await;
    let (_, resumed) = c.post("/api/v1/racks/edge/activate", "").await;
    assert_eq!(resumed["status"], "active");

    // The catalog.
    let (_, gears) = c.get("/api/v1/gears").await;
    assert!(
        gears
            .as_array()
            .is_some_and(|g| g.iter().any(|g| g["type"] == "route"))
    );
    let (_, route) = c.get("/api/v1/gears/route").await;
    assert!(route["config_schema"].is_object(), "{route}");
    let (s, _) = c.get("/api/v1/gears/teleport").await;
    assert_eq!(s, StatusCode::NOT_FOUND);

    // Dead letters through snake: none yet.
    let (s, dlq) = c.get("/api/v1/dlq?rack=edge").await;
    assert_eq!(s, StatusCode::OK, "{dlq}");
    assert_eq!(dlq["count"], 0);
    let (s, _) = c.get("/api/v1/dlq/12345").await;
    assert_eq!(s, StatusCode::NOT_FOUND);

    // Every route served is in the OpenAPI document, which is 3.1.
    let (_, doc) = c.get("/api/v1/openapi.json").await;
    assert!(
        doc["openapi"]
            .as_str()
            .is_some_and(|v| v.starts_with("3.1")),
        "{}",
        doc["openapi"]
    );
    for (method, path) in [
        ("get", "/api/v1/health"),
        ("get", "/api/v1/config"),
        ("get", "/api/v1/racks"),
        ("get", "/api/v1/racks/{rack}"),
        ("delete", "/api/v1/racks/{rack}"),
        ("post", "/api/v1/racks/{rack}/approve"),
        ("post", "/api/v1/racks/{rack}/suspend"),
        ("post", "/api/v1/racks/{rack}/activate"),
        ("post", "/api/v1/racks/{rack}/log-level"),
        ("post", "/api/v1/racks/{rack}/shutdown"),
        ("get", "/api/v1/racks/{rack}/stats"),
        ("get", "/api/v1/scenarios"),
        ("post", "/api/v1/scenarios"),
        ("get", "/api/v1/scenarios/active"),
        ("get", "/api/v1/scenarios/status"),
        ("get", "/api/v1/scenarios/{name}/versions"),
        ("get", "/api/v1/scenarios/{name}/versions/{version}"),
        (
            "post",
            "/api/v1/scenarios/{name}/versions/{version}/activate",
        ),
        ("get", "/api/v1/scenarios/{name}/diff"),
        ("get", "/api/v1/gears"),
        ("get", "/api/v1/gears/{type}"),
        ("get", "/api/v1/dlq"),
        ("get", "/api/v1/dlq/{sequence}"),
        ("post", "/api/v1/dlq/{sequence}/replay"),
        ("get", "/api/v1/messages/{id}/path"),
        ("get", "/api/v1/messages"),
    ] {
        assert!(
            doc["paths"][path][method].is_object(),
            "{method} {path} not in the document"
        );
    }

    // Remove the rack: 204, then 404.
    let (s, _, _) = c
        .call(Method::DELETE, "/api/v1/racks/edge", Some(TOKEN), "")
        .await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    let (s, _) = c.get("/api/v1/racks/edge").await;
    assert_eq!(s, StatusCode::NOT_FOUND);

    // No secret in any response: not the token, not the bootstrap secret, not the rack's
    // secret (the agent keeps it on disk), not a secret's hash.
    let rack_secret = std::fs::read_dir(dir.join("edge"))
        .expect("the agent's state")
        .filter_map(Result::ok)
        .filter_map(|e| std::fs::read_to_string(e.path()).ok())
        .collect::<String>();
    let seen = c.seen.lock().expect("lock").join("\n");
    for secret in [TOKEN, BOOTSTRAP, "sha256$"] {
        assert!(!seen.contains(secret), "`{secret}` in a response");
    }
    for word in rack_secret
        .split(|c: char| !c.is_ascii_hexdigit())
        .filter(|w| w.len() >= 32)
    {
        assert!(!seen.contains(word), "the rack's secret in a response");
    }
    agent.shutdown().await.expect("stops");
    mixer.stop();
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn the_api_refuses_to_start_open_or_exposed() {
    let dir = temp_dir("mixer-api-start");
    let mixer = Mixer::builder()
        .data_dir(&dir)
        .store(Arc::new(MemoryStore::new()))
        .start()
        .await
        .expect("a mixer");
    let no_token = Api::builder(mixer.clone())
        .serve("127.0.0.1:0".parse().expect("addr"))
        .await;
    assert!(matches!(no_token, Err(StartError::NoToken)), "{no_token:?}");
    let weak = Api::builder(mixer.clone()).token("short").router();
    assert!(matches!(weak, Err(StartError::WeakToken)));
    let exposed = Api::builder(mixer.clone())
        .dangerously_disable_auth()
        .serve("0.0.0.0:0".parse().expect("addr"))
        .await;
    assert!(
        matches!(exposed, Err(StartError::NotLoopback(_))),
        "{exposed:?}"
    );
    // Open on loopback: it serves, over real TCP, without a token.
    let open = Api::builder(mixer.clone())
        .dangerously_disable_auth()
        .serve("127.0.0.1:0".parse().expect("addr"))
        .await
        .expect("serves on loopback");
    let mut stream = tokio::net::TcpStream::connect(open.local_addr())
        .await
        .expect("connects");
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    stream
        .write_all(b"GET /api/v1/racks HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
        .await
        .expect("writes");
    let mut response = String::new();
    stream.read_to_string(&mut response).await.expect("reads");
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    open.shutdown().await;
    mixer.stop();
    let _ = std::fs::remove_dir_all(&dir);
}

/// `GET` with the token through `router`: the status, the `Link` header and the body.
async fn get_page(router: &axum::Router, path: &str) -> (StatusCode, Option<String>, Value) {
    let req = Request::builder()
        .uri(path)
        .header("authorization", format!("Bearer {TOKEN}"))
        .body(Body::empty())
        .expect("a request");
    let res = router.clone().oneshot(req).await.expect("a response");
    let status = res.status();
    if status == StatusCode::OK {
        assert_eq!(res.headers()["content-type"], "application/json");
    }
    let link = res
        .headers()
        .get("link")
        .map(|l| l.to_str().expect("text").to_owned());
    let bytes = res.into_body().collect().await.expect("a body").to_bytes();
    (
        status,
        link,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    )
}

/// Every page from `path` on, following `rel="next"`: the names, in order.
async fn all_pages(router: &axum::Router, path: &str) -> (Vec<String>, usize) {
    let (mut names, mut pages, mut path) = (Vec::new(), 0, path.to_owned());
    loop {
        let (s, link, body) = get_page(router, &path).await;
        assert_eq!(s, StatusCode::OK, "{path}: {body}");
        pages += 1;
        for r in body.as_array().expect("an array") {
            names.push(r["name"].as_str().expect("a name").to_owned());
        }
        let Some(link) = link else {
            return (names, pages);
        };
        let next = link
            .strip_prefix('<')
            .and_then(|l| l.strip_suffix(">; rel=\"next\""))
            .expect("a next link");
        path = next.to_owned();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn racks_are_listed_a_page_at_a_time_and_show_changes_at_once() {
    let store = Arc::new(MemoryStore::new());
    let mut want = Vec::new();
    // Seen now, so that the liveness sweep leaves an approved one active.
    let now = i64::try_from(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("after 1970")
            .as_millis(),
    )
    .expect("in range");
    for i in 0..250 {
        let name = format!("rack-{i:03}");
        let mut r =
            mixer_lib::store::RackRecord::new(&format!("id-{i}"), &name, "hash".into(), now);
        // Not active: the liveness sweep would mark those offline.
        r.status = if i % 2 == 0 {
            mixer_lib::store::RackStatus::Inactive
        } else {
            mixer_lib::store::RackStatus::Pending
        };
        r.labels.insert("zone".into(), format!("z {}", i % 5));
        r.stats = serde_json::json!({ "gears": { "gen": { "messages_in": i } } });
        mixer_lib::store::Store::insert_rack(store.as_ref(), &r)
            .await
            .expect("insert");
        want.push(name);
    }
    let mixer = Mixer::builder()
        .data_dir(temp_dir("mixer-api-pages"))
        .store(store.clone())
        .snake(Snake::memory())
        .start()
        .await
        .expect("a mixer");
    let router = Api::builder(mixer.clone())
        .token(TOKEN)
        .router()
        .expect("a router");

    // The default page, then every page: each rack once, by name.
    let (_, link, first) = get_page(&router, "/api/v1/racks").await;
    assert_eq!(
        first.as_array().map(Vec::len),
        Some(mixer_lib::api::DEFAULT_PAGE)
    );
    assert_eq!(
        link.as_deref(),
        Some("</api/v1/racks?limit=100&after=rack-099>; rel=\"next\"")
    );
    assert_eq!(first[0]["stats"], Value::Null, "listings carry no stats");
    assert_eq!(
        all_pages(&router, "/api/v1/racks?limit=60").await,
        (want.clone(), 5)
    );
    assert_eq!(
        all_pages(&router, "/api/v1/racks?limit=1000").await,
        (want.clone(), 1)
    );
    assert_eq!(
        all_pages(&router, "/api/v1/racks?after=rack-247").await,
        (want[248..].to_vec(), 1)
    );

    // Filters ride along to the next page; a label value is percent-encoded.
    let (names, pages) = all_pages(
        &router,
        "/api/v1/racks?status=inactive&label=zone=z%200&limit=7",
    )
    .await;
    let filtered: Vec<String> = (0..250)
        .filter(|i| i % 2 == 0 && i % 5 == 0)
        .map(|i| format!("rack-{i:03}"))
        .collect();
    assert_eq!((names, pages), (filtered, 4));
    let (_, link, _) = get_page(&router, "/api/v1/racks?label=zone=z%201&limit=2").await;
    assert_eq!(
        link.as_deref(),
        Some("</api/v1/racks?limit=2&after=rack-006&label=zone%3Dz%201>; rel=\"next\"")
    );

    // `/metrics` shows the heartbeats' stats of racks that sent no snapshot (the listing
    // has none).
    let req = Request::builder()
        .uri("/metrics")
        .header("authorization", format!("Bearer {TOKEN}"))
        .body(Body::empty())
        .expect("a request");
    let res = router.clone().oneshot(req).await.expect("a response");
    let bytes = res.into_body().collect().await.expect("a body").to_bytes();
    let metrics = String::from_utf8_lossy(&bytes);
    assert!(
        metrics.contains("flux_gear_messages_in_total{rack=\"rack-249\",gear=\"gen\"} 249"),
        "{metrics}"
    );

    for bad in ["limit=0", "limit=1001", "limit=ten", "page=2"] {
        let (s, _, body) = get_page(&router, &format!("/api/v1/racks?{bad}")).await;
        assert_eq!(
            (s, body["code"].as_str()),
            (StatusCode::BAD_REQUEST, Some("bad_request")),
            "{bad}"
        );
    }

    // What this mixer changes shows in the next listing; what another mixer writes to the
    // store, once the listing is read again (within about a second).
    mixer.approve("rack-001").await.expect("approve");
    let (_, _, page) = get_page(&router, "/api/v1/racks?after=rack-000&limit=1").await;
    assert_eq!(
        (page[0]["name"].as_str(), page[0]["status"].as_str()),
        (Some("rack-001"), Some("active"))
    );
    let late = mixer_lib::store::RackRecord::new("id-late", "rack-999", "hash".into(), 1_000);
    mixer_lib::store::Store::insert_rack(store.as_ref(), &late)
        .await
        .expect("insert");
    let mut seen = false;
    for _ in 0..100 {
        let (_, _, page) = get_page(&router, "/api/v1/racks?after=rack-998").await;
        if page[0]["name"] == "rack-999" {
            seen = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(seen, "a rack another mixer wrote never showed");
    // A listing nobody asked for in a while is read again before it is answered.
    let idle = mixer_lib::store::RackRecord::new("id-idle", "rack-a00", "hash".into(), now);
    mixer_lib::store::Store::insert_rack(store.as_ref(), &idle)
        .await
        .expect("insert");
    tokio::time::sleep(mixer_lib::LISTING_MAX_STALE + Duration::from_millis(100)).await;
    let (_, _, page) = get_page(&router, "/api/v1/racks?after=rack-999").await;
    assert_eq!(page[0]["name"], "rack-a00", "{page}");
}
