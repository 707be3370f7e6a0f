//! Tests of the `io_http` gear: real sockets on 127.0.0.1, real time. Tests wait for events
//! (an answer, a message, a counter), each wait bounded by `testkit::PATIENCE`.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use axum::Router;
use axum::extract::Request;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::Response;
use bytes::Bytes;
use fluxmsg::{FluxMsg, Id};
use gears::io_http::IoHttp;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use sdk::{Category, Direction, DynGearType, Harness, Terminus};
use serde_json::{Value, json};
use testkit::{wait_until, within};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

// ---------------------------------------------------------------------------------------------
// Helpers

/// A started server-mode gear on a free port of 127.0.0.1, with `extra` config keys.
fn server(extra: &Value) -> (Harness, u16) {
    let port = testkit::free_port();
    let mut config = json!({ "mode": "server", "bind": format!("127.0.0.1:{port}") });
    merge(&mut config, extra);
    let mut h = Harness::new::<IoHttp>(&config).expect("a valid server config");
    h.start().expect("the server binds its port");
    (h, port)
}

/// A started client-mode gear calling `url`, with `extra` config keys.
fn client(url: &str, extra: &Value) -> Harness {
    let mut config = json!({ "mode": "client", "url": url });
    merge(&mut config, extra);
    let mut h = Harness::new::<IoHttp>(&config).expect("a valid client config");
    h.start().expect("the client starts");
    h
}

fn merge(config: &mut Value, extra: &Value) {
    let (Some(config), Some(extra)) = (config.as_object_mut(), extra.as_object()) else {
        panic!("configs are JSON objects");
    };
    for (k, v) in extra {
        config.insert(k.clone(), v.clone());
    }
}

/// What a test HTTP client got back.
#[derive(Debug)]
struct Answer {
    status: StatusCode,
    headers: HeaderMap,
    body: Bytes,
}

impl Answer {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

/// Sends one request to 127.0.0.1:`port` in a task of its own, so that the test can play the
/// rest of the scenario while it waits.
fn request(
    port: u16,
    method: Method,
    path_and_query: &str,
    headers: &[(&'static str, &'static str)],
    body: &'static [u8],
) -> tokio::task::JoinHandle<Answer> {
    let uri = format!("http://127.0.0.1:{port}{path_and_query}");
    let headers = headers.to_vec();
    tokio::spawn(async move {
        let client = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
        let mut req = axum::http::Request::new(Full::new(Bytes::from_static(body)));
        *req.method_mut() = method;
        *req.uri_mut() = uri.parse().expect("a valid test URI");
        for (name, value) in headers {
            req.headers_mut()
                .insert(name, HeaderValue::from_static(value));
        }
        let response = client.request(req).await.expect("the gear answers");
        let (parts, body) = response.into_parts();
        let body = body.collect().await.expect("a whole body").to_bytes();
        Answer {
            status: parts.status,
            headers: parts.headers,
            body,
        }
    })
}

/// Waits (bounded) for the answer of a request started with [`request`].
async fn finish(call: tokio::task::JoinHandle<Answer>) -> Answer {
    within("the HTTP answer", call)
        .await
        .expect("the test client does not panic")
}

/// Waits (bounded) for the next message on `port`.
async fn next(h: &mut Harness, port: &str) -> FluxMsg {
    within(port, h.recv(port))
        .await
        .unwrap_or_else(|| panic!("a message on {port}"))
}

#[track_caller]
fn meta<'a>(msg: &'a FluxMsg, key: &str) -> Option<&'a str> {
    msg.meta.get(key).map(|t| t.as_str())
}

#[track_caller]
fn reason(msg: &FluxMsg) -> &str {
    meta(msg, sdk::ERROR_REASON).expect("an error message has error.reason")
}

/// A test upstream server on 127.0.0.1, counting the requests it gets.
struct Upstream {
    addr: SocketAddr,
    hits: Arc<AtomicUsize>,
}

impl Upstream {
    async fn start() -> Upstream {
        let hits = Arc::new(AtomicUsize::new(0));
        let counter = Arc::clone(&hits);
        let app = Router::new().fallback(move |req: Request| {
            let n = counter.fetch_add(1, Ordering::SeqCst) + 1;
            upstream(req, n)
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("a test upstream binds 127.0.0.1");
        let addr = listener.local_addr().expect("a bound address");
        tokio::spawn(async move {
            axum::serve(listener, app)
                .await
                .expect("the test upstream serves");
        });
        Upstream { addr, hits }
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    fn hits(&self) -> usize {
        self.hits.load(Ordering::SeqCst)
    }
}

/// The upstream's behaviour, by path; `hit` counts from 1.
async fn upstream(req: Request, hit: usize) -> Response {
    let (parts, body) = req.into_parts();
    let body = body
        .collect()
        .await
        .map(|c| c.to_bytes())
        .unwrap_or_default();
    let reply = |status: u16, body: Bytes| {
        let mut r = Response::new(axum::body::Body::from(body));
        *r.status_mut() = StatusCode::from_u16(status).expect("a valid test status");
        r
    };
    match parts.uri.path() {
        "/api/echo" => {
            let mut r = reply(200, body);
            let seen = |v: &str| HeaderValue::from_str(v).expect("a printable header");
            let h = r.headers_mut();
            h.insert("x-seen-method", seen(parts.method.as_str()));
            h.insert("x-seen-uri", seen(&parts.uri.to_string()));
            for name in ["x-custom", "x-config", "x-both", "authorization"] {
                if let Some(v) = parts.headers.get(name) {
                    h.insert(
                        format!("x-seen-{name}")
                            .parse::<axum::http::HeaderName>()
                            .expect("a name"),
                        v.clone(),
                    );
                }
            }
            r
        }
        "/api/missing" => reply(404, Bytes::from_static(b"nope")),
        "/api/flaky" if hit <= 2 => reply(503, Bytes::from_static(b"busy")),
        "/api/flaky" => reply(200, Bytes::from_static(b"finally")),
        "/api/unavailable" => reply(503, Bytes::from_static(b"busy")),
        // The input of the tests below, not a wait: upstreams slower than the client's
        // timeout (`slow`) or than a moment (`lingering`, still within a drain).
        "/api/slow" => {
            tokio::time::sleep(Duration::from_secs(2)).await;
            reply(200, Bytes::from_static(b"too late"))
        }
        "/api/lingering" => {
            tokio::time::sleep(Duration::from_millis(300)).await;
            reply(200, Bytes::from_static(b"lingered"))
        }
        _ => reply(500, Bytes::from_static(b"no such test path")),
    }
}

/// Opens a raw TCP connection to the server gear on 127.0.0.1:`port`.
async fn connect(port: u16) -> TcpStream {
    within("a connection", TcpStream::connect(("127.0.0.1", port)))
        .await
        .expect("the server gear accepts connections")
}

/// Reads one HTTP/1.1 response (its body framed by `content-length`) and returns its status
/// line, or `None` when the server closes the connection first.
async fn read_response(stream: &mut TcpStream) -> Option<String> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 1024];
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).into_owned();
            let length = head
                .lines()
                .filter_map(|line| line.split_once(':'))
                .find(|(name, _)| name.eq_ignore_ascii_case("content-length"))
                .and_then(|(_, value)| value.trim().parse::<usize>().ok())
                .unwrap_or(0);
            if buf.len() >= end + 4 + length {
                return head.lines().next().map(str::to_owned);
            }
        }
        match stream.read(&mut chunk).await {
            Ok(0) | Err(_) => return None,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
}

/// Sends `GET path` on `stream`, answers it through the gear, and returns the status line.
async fn exchange(h: &mut Harness, stream: &mut TcpStream, path: &str) -> String {
    let wire = format!("GET {path} HTTP/1.1\r\nhost: test\r\n\r\n");
    stream
        .write_all(wire.as_bytes())
        .await
        .expect("the request is written");
    let req = next(h, "out").await;
    assert_eq!(meta(&req, "http.path"), Some(path));
    let reply = FluxMsg::builder()
        .ref_id(req.id.expect("an id"))
        .raw(&b"ok"[..])
        .build();
    h.send("in", reply).expect("the reply is taken");
    within("the response", read_response(stream))
        .await
        .expect("a response before any close")
}

/// Waits (bounded) until the server closes `stream`, reading and discarding what it sends.
async fn closed(stream: &mut TcpStream) {
    let mut buf = [0u8; 1024];
    within("the server to close the connection", async {
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    })
    .await;
}

/// Refuses `config` and says something containing each of `expect` about it.
#[track_caller]
fn check_config_error(config: &Value, expect: &[&str]) {
    let err = Harness::new::<IoHttp>(config).expect_err("the config is refused");
    let text = testkit::chain(&err);
    for e in expect {
        assert!(text.contains(e), "{text:?} should contain {e:?}");
    }
}

// ---------------------------------------------------------------------------------------------
// Manifest and configuration

#[test]
fn manifest_is_an_io_gear_with_in_out_and_error() {
    let gear_type = DynGearType::of::<IoHttp>().expect("io_http registers");
    let m = gear_type.manifest();
    assert_eq!(m.gear_type, "io_http");
    assert_eq!(m.category, Category::Io);
    assert_eq!(m.terminus, Terminus::Io);
    let ports = |dir| {
        let mut p: Vec<&str> = m.fixed_ports(dir).collect();
        p.sort_unstable();
        p
    };
    assert_eq!(ports(Direction::Input), ["in"]);
    assert_eq!(ports(Direction::Output), ["error", "out"]);
}

#[test]
fn config_errors_name_the_problem() {
    check_config_error(&json!({}), &["mode"]);
    check_config_error(&json!({ "mode": "client" }), &["config.url", "needs a url"]);
    check_config_error(
        &json!({ "mode": "client", "url": "https://127.0.0.1:9000/api" }),
        &["config.url", "TLS is not supported yet"],
    );
    check_config_error(
        &json!({ "mode": "client", "url": "127.0.0.1:9000" }),
        &["config.url"],
    );
    check_config_error(
        &json!({ "mode": "server", "bnid": "127.0.0.1:1" }),
        &["bnid"],
    );
    check_config_error(
        &json!({ "mode": "server", "url": "http://127.0.0.1:1" }),
        &["config.url", "client mode only"],
    );
    check_config_error(
        &json!({ "mode": "client", "url": "http://127.0.0.1:1", "bind": ":1" }),
        &["config.bind", "server mode only"],
    );
    check_config_error(
        &json!({ "mode": "server", "bind": "nowhere" }),
        &["config.bind", "nowhere"],
    );
    check_config_error(
        &json!({ "mode": "client", "url": "http://127.0.0.1:1", "method": "GE T" }),
        &["config.method"],
    );
    check_config_error(
        &json!({ "mode": "client", "url": "http://127.0.0.1:1", "retry_on": [503, 42] }),
        &["config.retry_on", "42"],
    );
    check_config_error(
        &json!({ "mode": "client", "url": "http://127.0.0.1:1", "headers": { "bad name": "x" } }),
        &["headers.bad name"],
    );
    check_config_error(
        &json!({ "mode": "server", "timeout": "soon" }),
        &["timeout"],
    );
    check_config_error(
        &json!({ "mode": "server", "timeout": "0s" }),
        &["timeout", "more than zero"],
    );
    check_config_error(
        &json!({ "mode": "server", "max_in_flight": 0 }),
        &["max_in_flight"],
    );
    check_config_error(
        &json!({ "mode": "server", "max_connections": 0 }),
        &["config.max_connections"],
    );
    check_config_error(
        &json!({ "mode": "server", "header_read_timeout": "0s" }),
        &["config.header_read_timeout", "more than zero"],
    );
    check_config_error(
        &json!({ "mode": "server", "idle_timeout": "0s" }),
        &["config.idle_timeout", "more than zero"],
    );
    for key in ["header_read_timeout", "idle_timeout"] {
        check_config_error(
            &json!({ "mode": "client", "url": "http://127.0.0.1:1", key: "1s" }),
            &[&format!("config.{key}"), "server mode only"],
        );
    }
    check_config_error(
        &json!({ "mode": "client", "url": "http://127.0.0.1:1", "max_connections": 5 }),
        &["config.max_connections", "server mode only"],
    );
}

#[test]
fn defaults_are_accepted() {
    Harness::new::<IoHttp>(&json!({ "mode": "server" })).expect("server defaults are valid");
    Harness::new::<IoHttp>(&json!({ "mode": "client", "url": "http://127.0.0.1:9000/api" }))
        .expect("a client needs only a url");
}

#[tokio::test]
async fn a_port_in_use_fails_start() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("a port to hold");
    let port = taken.local_addr().expect("an address").port();
    let mut h =
        Harness::new::<IoHttp>(&json!({ "mode": "server", "bind": format!("127.0.0.1:{port}") }))
            .expect("a valid config");
    let err = h.start().expect_err("the port is taken");
    let text = testkit::chain(&err);
    assert!(
        text.contains("start") && text.contains("cannot listen on"),
        "{text}"
    );
}

#[test]
fn messages_before_start_are_refused() {
    let mut h = Harness::new::<IoHttp>(&json!({ "mode": "client", "url": "http://127.0.0.1:1" }))
        .expect("a valid config");
    h.send("in", FluxMsg::new()).expect("the runner takes it");
    assert_eq!(h.error_reasons(), ["not_started"]);
}

// ---------------------------------------------------------------------------------------------
// Server mode

#[tokio::test]
async fn server_request_leaves_on_out_and_its_reply_is_the_response() {
    let (mut h, port) = server(&json!({ "timeout": "3s" }));
    let call = request(
        port,
        Method::PUT,
        "/orders/7?expand=lines&x=1",
        &[("x-trace", "abc"), ("content-type", "text/plain")],
        b"hello",
    );

    let req = next(&mut h, "out").await;
    let id = req.id.expect("a request message has an id");
    assert_eq!(meta(&req, "http.method"), Some("PUT"));
    assert_eq!(meta(&req, "http.path"), Some("/orders/7"));
    assert_eq!(meta(&req, "http.query"), Some("expand=lines&x=1"));
    assert_eq!(meta(&req, "http.header.x-trace"), Some("abc"));
    assert_eq!(meta(&req, "http.header.content-type"), Some("text/plain"));
    assert_eq!(meta(&req, "http.request_id"), Some(id.to_string().as_str()));
    assert_eq!(meta(&req, "peer.ip"), Some("127.0.0.1"));
    assert!(
        meta(&req, "peer.port").is_some_and(|p| p.parse::<u16>().is_ok_and(|p| p != 0)),
        "{req:?}"
    );
    assert_eq!(&req.raw[..], b"hello");
    assert!(req.ts > 0, "the message has a timestamp");

    let reply = FluxMsg::builder()
        .ref_id(id)
        .meta("http.status", "201")
        .meta("http.header.x-reply", "yes")
        .meta("http.header.content-length", "999")
        .meta("unrelated", "ignored")
        .raw(&b"created"[..])
        .build();
    h.send("in", reply).expect("the reply is taken");

    let answer = finish(call).await;
    assert_eq!(answer.status, StatusCode::CREATED);
    assert_eq!(answer.header("x-reply"), Some("yes"));
    assert_eq!(
        answer.header("content-length"),
        Some("7"),
        "hyper frames the body"
    );
    assert_eq!(&answer.body[..], b"created");
    assert!(h.take("error").is_empty());
    assert_eq!(h.stats().dropped, Default::default());
    h.shutdown().await;
}

#[tokio::test]
async fn server_matches_a_reply_by_its_request_id_metadata() {
    let (mut h, port) = server(&json!({}));
    let call = request(port, Method::GET, "/ping", &[], b"");
    let mut msg = next(&mut h, "out").await;
    assert!(msg.raw.is_empty());
    assert_eq!(meta(&msg, "http.query"), None, "no query, no key");
    // An echo that edits the request in place: no ref_id, http.request_id kept.
    msg.id = Some(Id::U64(1));
    msg.raw = Bytes::from_static(b"pong");
    msg.meta.insert("http.status", "202".into());
    h.send("in", msg).expect("the reply is taken");

    let answer = finish(call).await;
    assert_eq!(answer.status, StatusCode::ACCEPTED);
    assert_eq!(&answer.body[..], b"pong");
    h.shutdown().await;
}

#[tokio::test]
async fn server_answers_504_when_no_reply_comes_and_a_late_reply_is_unmatched() {
    let (mut h, port) = server(&json!({ "timeout": "300ms" }));
    let call = request(port, Method::POST, "/slow", &[], b"x");
    let req = next(&mut h, "out").await;

    // No reply is sent: the gear's timeout is the only way the call ends.
    let answer = finish(call).await;
    assert_eq!(answer.status, StatusCode::GATEWAY_TIMEOUT);
    assert_eq!(h.stats().dropped("timeout"), 1);

    let late = FluxMsg::builder()
        .ref_id(req.id.expect("an id"))
        .raw(&b"too late"[..])
        .build();
    h.send("in", late).expect("the reply is taken");
    let error = next(&mut h, "error").await;
    assert_eq!(reason(&error), "unmatched_reply");
    assert_eq!(
        &error.raw[..],
        b"too late",
        "the reply itself goes to error"
    );
    h.shutdown().await;
}

#[tokio::test]
async fn server_sends_replies_that_match_nothing_to_error() {
    let (mut h, _port) = server(&json!({}));
    h.send("in", FluxMsg::builder().ref_id(Id::U64(424_242)).build())
        .expect("taken");
    let error = next(&mut h, "error").await;
    assert_eq!(reason(&error), "unmatched_reply");
    assert!(
        meta(&error, sdk::ERROR_DETAIL).is_some_and(|d| d.contains("424242")),
        "{error:?}"
    );

    h.send(
        "in",
        FluxMsg::builder().meta("http.request_id", "77").build(),
    )
    .expect("taken");
    assert_eq!(reason(&next(&mut h, "error").await), "unmatched_reply");

    // No id at all: refused at once.
    h.send("in", FluxMsg::builder().raw(&b"orphan"[..]).build())
        .expect("taken");
    assert_eq!(h.error_reasons(), ["unmatched_reply"]);
    h.shutdown().await;
}

#[tokio::test]
async fn server_answers_500_to_a_reply_with_a_bad_status() {
    let (mut h, port) = server(&json!({}));
    let call = request(port, Method::GET, "/", &[], b"");
    let req = next(&mut h, "out").await;
    let reply = FluxMsg::builder()
        .ref_id(req.id.expect("an id"))
        .meta("http.status", "abc")
        .build();
    h.send("in", reply).expect("taken");

    assert_eq!(finish(call).await.status, StatusCode::INTERNAL_SERVER_ERROR);
    let error = next(&mut h, "error").await;
    assert_eq!(reason(&error), "bad_status");
    assert_eq!(meta(&error, "http.status"), Some("abc"));
    h.shutdown().await;
}

#[tokio::test]
async fn server_answers_413_to_a_body_over_max_body() {
    let (mut h, port) = server(&json!({ "max_body": 16 }));
    let body: &'static [u8] = &[b'a'; 100];
    let answer = finish(request(port, Method::POST, "/upload", &[], body)).await;
    assert_eq!(answer.status, StatusCode::PAYLOAD_TOO_LARGE);

    // A chunked body declares no length: the limit applies while reading.
    let mut stream = connect(port).await;
    let mut wire =
        b"POST /upload HTTP/1.1\r\nhost: test\r\ntransfer-encoding: chunked\r\n\r\n64\r\n".to_vec();
    wire.extend_from_slice(body);
    wire.extend_from_slice(b"\r\n0\r\n\r\n");
    stream
        .write_all(&wire)
        .await
        .expect("the request is written");
    let mut head = [0u8; 12];
    within("the answer", stream.read_exact(&mut head))
        .await
        .expect("a status line");
    assert_eq!(&head, b"HTTP/1.1 413");

    assert_eq!(h.stats().dropped("too_large"), 2);
    assert!(h.take("out").is_empty(), "nothing left on out");

    // A body at the limit passes.
    let call = request(port, Method::POST, "/upload", &[], &[b'b'; 16]);
    let req = next(&mut h, "out").await;
    assert_eq!(req.raw.len(), 16);
    h.send(
        "in",
        FluxMsg::builder().ref_id(req.id.expect("an id")).build(),
    )
    .expect("taken");
    assert_eq!(finish(call).await.status, StatusCode::OK);
    h.shutdown().await;
}

#[tokio::test]
async fn server_answers_503_beyond_max_in_flight() {
    let (mut h, port) = server(&json!({ "max_in_flight": 1, "timeout": "3s" }));
    let first = request(port, Method::GET, "/first", &[], b"");
    let req = next(&mut h, "out").await;

    let second = finish(request(port, Method::GET, "/second", &[], b"")).await;
    assert_eq!(second.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(h.stats().dropped("overloaded"), 1);

    h.send(
        "in",
        FluxMsg::builder().ref_id(req.id.expect("an id")).build(),
    )
    .expect("taken");
    assert_eq!(finish(first).await.status, StatusCode::OK);
    h.shutdown().await;
}

#[tokio::test]
async fn server_stops_listening_on_shutdown() {
    let (mut h, port) = server(&json!({}));
    h.shutdown().await;
    let connect = within(
        "connect",
        tokio::net::TcpStream::connect(("127.0.0.1", port)),
    )
    .await;
    assert!(connect.is_err(), "the listener is closed");
}

#[tokio::test]
async fn server_closes_a_connection_whose_head_trickles_in() {
    let (mut h, port) = server(&json!({ "header_read_timeout": "200ms" }));
    let mut stream = connect(port).await;
    let head = b"GET /slow HTTP/1.1\r\nhost: test\r\nx-slow: ";
    let mut sent = 0;
    within("the server to close a head that trickles in", async {
        let mut buf = [0u8; 256];
        loop {
            // A head that never ends: the request line, then one header value for ever.
            let byte = head.get(sent).copied().unwrap_or(b'a');
            if stream.write_all(&[byte]).await.is_err() {
                return;
            }
            sent += 1;
            // The input of this test: a peer that sends one byte every 20ms.
            tokio::time::sleep(Duration::from_millis(20)).await;
            match stream.try_read(&mut buf) {
                Ok(0) => return,
                Ok(n) => panic!("the server answered an endless head: {:?}", &buf[..n]),
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                Err(_) => return,
            }
        }
    })
    .await;
    assert!(sent > 1, "the head was sent a byte at a time");
    wait_until("the slow head to be counted", || {
        h.stats().dropped("header_timeout") == 1
    })
    .await;
    assert!(h.take("out").is_empty(), "no request left on out");

    // The server still serves others.
    let mut other = connect(port).await;
    assert_eq!(
        exchange(&mut h, &mut other, "/after").await,
        "HTTP/1.1 200 OK"
    );
    h.shutdown().await;
}

#[tokio::test]
async fn server_closes_an_idle_keep_alive_connection_but_not_a_busy_one() {
    let (mut h, port) = server(&json!({ "idle_timeout": "200ms", "header_read_timeout": "1h" }));
    let mut stream = connect(port).await;
    stream
        .write_all(b"GET /held HTTP/1.1\r\nhost: test\r\n\r\n")
        .await
        .expect("the request is written");
    let req = next(&mut h, "out").await;
    // The input of this test: a reply that comes well after idle_timeout. The request is in
    // flight all along, so its connection stays open.
    tokio::time::sleep(Duration::from_millis(600)).await;
    let reply = FluxMsg::builder()
        .ref_id(req.id.expect("an id"))
        .raw(&b"late but fine"[..])
        .build();
    h.send("in", reply).expect("the reply is taken");
    let status = within("the response", read_response(&mut stream)).await;
    assert_eq!(status.as_deref(), Some("HTTP/1.1 200 OK"));

    // Then the keep-alive connection sits idle, and the server closes it.
    closed(&mut stream).await;
    assert_eq!(
        h.stats().dropped,
        Default::default(),
        "an idle close drops nothing"
    );
    h.shutdown().await;
}

#[tokio::test]
async fn server_refuses_connections_over_max_connections() {
    let (mut h, port) = server(&json!({ "max_connections": 2 }));
    let mut first = connect(port).await;
    let mut second = connect(port).await;
    assert_eq!(
        exchange(&mut h, &mut first, "/first").await,
        "HTTP/1.1 200 OK"
    );
    assert_eq!(
        exchange(&mut h, &mut second, "/second").await,
        "HTTP/1.1 200 OK"
    );

    // Both are open and served: a third is closed at once, unserved.
    let mut third = connect(port).await;
    // The server may have closed it already, so the write may fail.
    let _ = third
        .write_all(b"GET /third HTTP/1.1\r\nhost: test\r\n\r\n")
        .await;
    closed(&mut third).await;
    assert_eq!(h.stats().dropped("max_connections"), 1);
    assert!(h.take("out").is_empty(), "the third request never left");

    // The first two still work.
    assert_eq!(
        exchange(&mut h, &mut first, "/first/again").await,
        "HTTP/1.1 200 OK"
    );

    // Once one closes, a new connection takes its place (as soon as the server has noticed).
    drop(second);
    let (mut fourth, req) = within("a free connection slot", async {
        loop {
            let mut stream = connect(port).await;
            // A refused connection may fail this write; the select below tells.
            let _ = stream
                .write_all(b"GET /fourth HTTP/1.1\r\nhost: test\r\n\r\n")
                .await;
            let mut byte = [0u8; 1];
            tokio::select! {
                req = h.recv("out") => break (stream, req.expect("the request of an admitted connection")),
                _ = stream.read(&mut byte) => {
                    // Refused: the server has not noticed the close yet. Try again shortly.
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            }
        }
    })
    .await;
    assert_eq!(meta(&req, "http.path"), Some("/fourth"));
    h.send(
        "in",
        FluxMsg::builder().ref_id(req.id.expect("an id")).build(),
    )
    .expect("the reply is taken");
    let status = within("the response", read_response(&mut fourth)).await;
    assert_eq!(status.as_deref(), Some("HTTP/1.1 200 OK"));
    h.shutdown().await;
}

// ---------------------------------------------------------------------------------------------
// Client mode

#[tokio::test]
async fn client_sends_a_request_and_emits_the_response() {
    let up = Upstream::start().await;
    let mut h = client(
        &up.url("/api"),
        &json!({ "headers": { "x-config": "cfg", "X-Both": "from-config" } }),
    );
    let msg = FluxMsg::builder()
        .id(Id::U64(7))
        .meta("http.client.path", "/echo")
        .meta("http.client.query", "a=1")
        .meta("http.client.header.x-custom", "c")
        .meta("http.client.header.x-both", "from-meta")
        .meta("corr.key", "k1")
        .data("order", "o-1")
        .raw(&b"ping"[..])
        .build();
    h.send("in", msg).expect("queued");

    let res = next(&mut h, "out").await;
    assert_eq!(meta(&res, "http.status"), Some("200"));
    assert_eq!(&res.raw[..], b"ping");
    assert_eq!(res.ref_id, Some(Id::U64(7)));
    assert!(
        res.id.is_some_and(|id| id != Id::U64(7)),
        "a fresh id: {res:?}"
    );
    assert_eq!(
        meta(&res, "corr.key"),
        Some("k1"),
        "correlation fields survive"
    );
    assert_eq!(res.data.get("order").and_then(|v| v.as_str()), Some("o-1"));
    assert_eq!(meta(&res, "http.header.x-seen-method"), Some("POST"));
    assert_eq!(meta(&res, "http.header.x-seen-uri"), Some("/api/echo?a=1"));
    assert_eq!(meta(&res, "http.header.x-seen-x-custom"), Some("c"));
    assert_eq!(meta(&res, "http.header.x-seen-x-config"), Some("cfg"));
    assert_eq!(
        meta(&res, "http.header.x-seen-x-both"),
        Some("from-config"),
        "a configured header is never replaced by metadata"
    );
    assert_eq!(
        meta(&res, "http.client.path"),
        None,
        "the request's http.* entries are gone"
    );
    assert_eq!(meta(&res, "http.client.header.x-custom"), None);

    // The method comes from the message when it says one.
    let put = FluxMsg::builder()
        .id(Id::U64(8))
        .meta("http.client.method", "PUT")
        .meta("http.client.path", "echo")
        .build();
    h.send("in", put).expect("queued");
    let res = next(&mut h, "out").await;
    assert_eq!(meta(&res, "http.header.x-seen-method"), Some("PUT"));
    assert_eq!(meta(&res, "http.header.x-seen-uri"), Some("/api/echo"));
    assert_eq!(up.hits(), 2);
    assert!(h.take("error").is_empty());
    h.shutdown().await;
}

#[tokio::test]
async fn client_passes_4xx_on_out() {
    let up = Upstream::start().await;
    let mut h = client(&up.url("/api/missing"), &json!({ "retries": 3 }));
    h.send("in", FluxMsg::builder().id(Id::U64(1)).build())
        .expect("queued");
    let res = next(&mut h, "out").await;
    assert_eq!(meta(&res, "http.status"), Some("404"));
    assert_eq!(&res.raw[..], b"nope");
    assert_eq!(up.hits(), 1, "a 4xx is not retried");
    h.shutdown().await;
}

#[tokio::test]
async fn client_retries_503_until_it_succeeds() {
    let up = Upstream::start().await;
    let mut h = client(
        &up.url("/api/flaky"),
        &json!({ "retries": 2, "retry_backoff": "10ms" }),
    );
    h.send("in", FluxMsg::builder().id(Id::U64(5)).build())
        .expect("queued");
    let res = next(&mut h, "out").await;
    assert_eq!(meta(&res, "http.status"), Some("200"));
    assert_eq!(&res.raw[..], b"finally");
    assert_eq!(res.ref_id, Some(Id::U64(5)));
    assert_eq!(up.hits(), 3, "two 503s, then the 200");
    assert!(h.take("error").is_empty());
    h.shutdown().await;
}

#[tokio::test]
async fn client_sends_the_request_to_error_when_retry_statuses_persist() {
    let up = Upstream::start().await;
    let mut h = client(
        &up.url("/api/unavailable"),
        &json!({ "retries": 1, "retry_backoff": "10ms" }),
    );
    h.send(
        "in",
        FluxMsg::builder().id(Id::U64(3)).raw(&b"req"[..]).build(),
    )
    .expect("queued");
    let error = next(&mut h, "error").await;
    assert_eq!(reason(&error), "http_status");
    assert!(
        meta(&error, sdk::ERROR_DETAIL).is_some_and(|d| d.contains("503")),
        "{error:?}"
    );
    assert_eq!(error.id, Some(Id::U64(3)), "the original request message");
    assert_eq!(&error.raw[..], b"req");
    assert_eq!(up.hits(), 2);
    h.shutdown().await;
}

#[tokio::test]
async fn client_gives_up_with_timeout_after_its_retries() {
    let up = Upstream::start().await;
    let mut h = client(
        &up.url("/api/slow"),
        &json!({ "timeout": "200ms", "retries": 1, "retry_backoff": "10ms" }),
    );
    let msg = FluxMsg::builder()
        .id(Id::U64(9))
        .meta("corr.key", "k9")
        .raw(&b"payload"[..])
        .build();
    h.send("in", msg.clone()).expect("queued");
    // The upstream answers only after the timeout: both attempts are cut by it.
    let mut error = next(&mut h, "error").await;
    assert_eq!(reason(&error), "timeout");
    assert_eq!(up.hits(), 2, "one attempt and one retry");
    error.meta.remove(sdk::ERROR_REASON);
    error.meta.remove(sdk::ERROR_DETAIL);
    assert_eq!(error, msg, "the original request message, unchanged");
    h.shutdown().await;
}

#[tokio::test]
async fn client_reports_connect_when_nothing_listens() {
    let port = testkit::free_port();
    let mut h = client(&format!("http://127.0.0.1:{port}/api"), &json!({}));
    h.send("in", FluxMsg::builder().id(Id::U64(2)).build())
        .expect("queued");
    let error = next(&mut h, "error").await;
    assert_eq!(reason(&error), "connect");
    assert!(
        meta(&error, sdk::ERROR_DETAIL).is_some_and(|d| d.contains(&port.to_string())),
        "{error:?}"
    );
    h.shutdown().await;
}

#[tokio::test]
async fn client_refuses_a_bad_method_in_metadata() {
    let up = Upstream::start().await;
    let mut h = client(&up.url("/api/echo"), &json!({}));
    h.send(
        "in",
        FluxMsg::builder()
            .meta("http.client.method", "GE T")
            .build(),
    )
    .expect("queued");
    assert_eq!(reason(&next(&mut h, "error").await), "bad_request");
    h.send(
        "in",
        FluxMsg::builder()
            .meta("http.client.path", "/../admin")
            .build(),
    )
    .expect("queued");
    let error = next(&mut h, "error").await;
    assert_eq!(reason(&error), "bad_request");
    assert!(
        meta(&error, sdk::ERROR_DETAIL).is_some_and(|d| d.contains("..")),
        "{error:?}"
    );
    assert_eq!(up.hits(), 0);
    h.shutdown().await;
}

#[tokio::test]
async fn client_overload_goes_to_error() {
    let up = Upstream::start().await;
    let mut h = client(&up.url("/api/lingering"), &json!({ "max_in_flight": 1 }));
    // One on the wire, one queued; the rest find the queue full. process never waits, so
    // the dispatcher may or may not have taken the first yet: at least 3 of 5 are refused.
    for i in 0..5 {
        h.send("in", FluxMsg::builder().id(Id::U64(i)).build())
            .expect("taken");
    }
    let refused = h.error_reasons();
    assert!(refused.len() >= 3, "{refused:?}");
    assert!(refused.iter().all(|r| r == "overloaded"), "{refused:?}");
    h.shutdown().await;
}

#[tokio::test]
async fn client_drain_lets_requests_in_flight_finish() {
    let up = Upstream::start().await;
    let mut h = client(&up.url("/api/lingering"), &json!({}));
    h.send("in", FluxMsg::builder().id(Id::U64(11)).build())
        .expect("queued");
    // The request has reached the upstream, which answers 300ms later, within the drain.
    wait_until("the request to reach the upstream", || up.hits() == 1).await;
    within("the drain", h.shutdown()).await;
    let out = h.take("out");
    assert_eq!(out.len(), 1, "the response came during the drain");
    assert_eq!(&out[0].raw[..], b"lingered");
}

// ---------------------------------------------------------------------------------------------
// Server and client together

#[tokio::test]
async fn a_caller_cannot_steer_a_client_behind_a_server() {
    let up = Upstream::start().await;
    let (mut front, port) = server(&json!({}));
    let mut back = client(
        &up.url("/api/echo"),
        &json!({ "method": "PUT", "headers": { "authorization": "Bearer configured" } }),
    );
    // A hostile caller: its own method, a path and query to append, its own credentials.
    let call = request(
        port,
        Method::DELETE,
        "/admin/users?drop=all",
        &[("authorization", "Bearer hostile"), ("x-custom", "hostile")],
        b"payload",
    );
    // The scenario wires the server's out straight to the client's in, and back.
    let req = next(&mut front, "out").await;
    assert_eq!(meta(&req, "http.method"), Some("DELETE"));
    back.send("in", req).expect("the client queues the request");
    let res = next(&mut back, "out").await;
    front.send("in", res).expect("the response is the reply");

    let answer = finish(call).await;
    assert_eq!(answer.status, StatusCode::OK, "{answer:?}");
    assert_eq!(answer.header("x-seen-method"), Some("PUT"));
    assert_eq!(answer.header("x-seen-uri"), Some("/api/echo"));
    assert_eq!(
        answer.header("x-seen-authorization"),
        Some("Bearer configured")
    );
    assert_eq!(
        answer.header("x-seen-x-custom"),
        None,
        "no caller header is forwarded"
    );
    assert_eq!(&answer.body[..], b"payload");
    assert_eq!(up.hits(), 1);
    assert!(back.take("error").is_empty());
    back.shutdown().await;
    front.shutdown().await;
}

#[tokio::test]
async fn a_scenario_forwards_only_what_it_copies_to_the_client() {
    let up = Upstream::start().await;
    let (mut front, port) = server(&json!({}));
    let mut forward = Harness::new::<gears::transform::Transform>(&json!({
        "steps": [
            { "copy": "meta.http.path", "to": "meta.http.client.path" },
            { "copy": "meta.http.header.x-custom", "to": "meta.http.client.header.x-custom" },
            { "copy": "meta.http.header.authorization", "to": "meta.http.client.header.authorization" }
        ]
    }))
    .expect("a valid transform");
    let mut back = client(
        &up.url("/api"),
        &json!({ "headers": { "authorization": "Bearer configured" } }),
    );
    let call = request(
        port,
        Method::DELETE,
        "/echo",
        &[("authorization", "Bearer hostile"), ("x-custom", "chosen")],
        b"",
    );
    let req = next(&mut front, "out").await;
    forward.send("in", req).expect("the transform takes it");
    let req = forward.take("out").pop().expect("the transformed request");
    back.send("in", req).expect("the client queues the request");
    let res = next(&mut back, "out").await;
    front.send("in", res).expect("the response is the reply");

    let answer = finish(call).await;
    assert_eq!(answer.status, StatusCode::OK, "{answer:?}");
    assert_eq!(
        answer.header("x-seen-uri"),
        Some("/api/echo"),
        "the path was copied"
    );
    assert_eq!(
        answer.header("x-seen-x-custom"),
        Some("chosen"),
        "so was this header"
    );
    assert_eq!(
        answer.header("x-seen-method"),
        Some("POST"),
        "the method was not"
    );
    assert_eq!(
        answer.header("x-seen-authorization"),
        Some("Bearer configured"),
        "a configured header wins even over a copied one"
    );
    back.shutdown().await;
    front.shutdown().await;
}
