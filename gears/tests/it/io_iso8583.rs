//! Tests of the `io_iso8583` gear: real sockets on 127.0.0.1, real time. Tests wait for
//! events (a message, a counter, a closed socket), each wait bounded by `testkit::PATIENCE`.

use fluxmsg::FluxMsg;
use gears::io_iso8583::IoIso8583;
use iso8583::{Message, Spec};
use sdk::Harness;
use serde_json::{Value, json};
use testkit::{frame, wait_until, within};

use super::sockets::{self, connect, expect_closed, next, read_n, text};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

fn server(extra: Value) -> (Harness, String) {
    sockets::server::<IoIso8583>(extra)
}

fn client(addr: &str, extra: Value) -> Harness {
    sockets::client::<IoIso8583>(addr, extra)
}

/// One frame with a 2-byte big-endian length header that counts the payload only.
async fn read_frame(stream: &mut TcpStream) -> Vec<u8> {
    let head = read_n(stream, 2).await;
    read_n(stream, usize::from(u16::from_be_bytes([head[0], head[1]]))).await
}

fn spec() -> Spec {
    Spec::builtin("moov:spec87ascii").expect("built in")
}

/// The built-in wire layer with DE 70, as the gear's network-management messages use it.
fn network_spec() -> Spec {
    Spec::from_yaml(
        "spec: {id: net, version: 1.0.0}\nwire:\n  source: moov:spec87ascii\n  fields:\n    \
         70: {type: Numeric, length: 3, enc: ASCII, prefix: ASCII.Fixed}\n",
    )
    .expect("loads")
}

fn auth(stan: &str) -> Vec<u8> {
    let mut msg = Message::new("0100");
    msg.set(2, "4111111111111111");
    msg.set(11, stan);
    spec().pack_to_vec(&msg).expect("packs")
}

/// Checks that `config` is refused, naming `field`.
#[track_caller]
fn check_config_error(config: &Value, field: &str) {
    let err = Harness::new::<IoIso8583>(config).expect_err("refused");
    let text = testkit::chain(&err);
    assert!(text.contains(field), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replies_keep_their_connection_tpdu_swapped_and_header() {
    let (mut h, addr) = server(json!({
        "tpdu_enabled": true,
        "protocol_header_size": 2,
    }));
    let mut clients = Vec::new();
    for k in 0..3_u8 {
        let mut c = connect(&addr).await;
        let mut payload = vec![0x60, 0x00, k, 0x00, 0x99, 0xAB, k];
        payload.extend(auth(&format!("00000{k}")));
        c.write_all(&frame(&payload)).await.expect("write");
        clients.push(c);
    }
    // Answer in reverse order of arrival: each reply finds its own connection.
    let mut requests = Vec::new();
    for _ in 0..3 {
        requests.push(next(&mut h, "out").await);
    }
    requests.reverse();
    for request in &requests {
        let mut reply = request.clone();
        let stan = spec().unpack(&request.raw).expect("unpacks");
        let mut answer = stan.clone();
        answer.set_mti("0110");
        answer.set(39, "00");
        reply.raw = spec().pack_to_vec(&answer).expect("packs").into();
        h.send("in", reply).expect("send");
    }
    for (k, c) in clients.iter_mut().enumerate() {
        let k = u8::try_from(k).expect("small");
        let got = read_frame(c).await;
        // TPDU 60 0000+k 0099 comes back as 60 0099 0000+k; the header as it came.
        assert_eq!(&got[..7], &[0x60, 0x00, 0x99, 0x00, k, 0xAB, k]);
        let reply = spec().unpack(&got[7..]).expect("unpacks");
        assert_eq!(reply.mti(), "0110");
        assert_eq!(reply.text(11), Some(format!("00000{k}").as_str()));
    }
    let up = next(&mut h, "link").await;
    assert_eq!(text(&up, "conn.event"), "conn.up");
    assert!(h.error_reasons().is_empty());
    drop(clients);
    h.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn length_headers_little_endian_ascii_and_inclusive() {
    for (extra, head) in [
        (json!({ "frame_length_endian": "little" }), vec![3_u8, 0]),
        (
            json!({ "frame_length_endian": "ascii", "frame_length_size": 4 }),
            b"0003".to_vec(),
        ),
        (
            json!({ "frame_includes_header": true, "frame_length_size": 4 }),
            vec![0, 0, 0, 7],
        ),
    ] {
        let (mut h, addr) = server(extra);
        let mut c = connect(&addr).await;
        let mut bytes = head.clone();
        bytes.extend_from_slice(b"abc");
        c.write_all(&bytes).await.expect("write");
        let request = next(&mut h, "out").await;
        assert_eq!(&request.raw[..], b"abc");
        h.send("in", request).expect("send");
        assert_eq!(
            read_n(&mut c, bytes.len()).await,
            bytes,
            "written back alike"
        );
        h.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_frames_close_their_connection_and_are_counted() {
    let (mut h, addr) = server(json!({
        "max_frame": 64,
        "frame_timeout": "200ms",
        "max_connections": 2,
        "frame_length_endian": "ascii",
        "frame_length_size": 4,
        "tpdu_enabled": true,
    }));
    // An oversized length.
    let mut c = connect(&addr).await;
    c.write_all(b"9999").await.expect("write");
    expect_closed(&mut c).await;
    // A length that is not digits.
    let mut c = connect(&addr).await;
    c.write_all(b"00x1").await.expect("write");
    expect_closed(&mut c).await;
    // A frame shorter than its TPDU: dropped, the connection kept.
    let mut c = connect(&addr).await;
    c.write_all(b"0002ab").await.expect("write");
    // A truncated (slow) frame: closed at the frame deadline.
    c.write_all(b"0010abc").await.expect("write");
    expect_closed(&mut c).await;
    // Too many connections, once the gear saw the three above close.
    let mut events = Vec::new();
    while events.iter().filter(|e| *e == "conn.down").count() < 3 {
        events.push(text(&next(&mut h, "link").await, "conn.event"));
    }
    let _a = connect(&addr).await;
    let _b = connect(&addr).await;
    while events.iter().filter(|e| *e == "conn.up").count() < 5 {
        events.push(text(&next(&mut h, "link").await, "conn.event"));
    }
    let mut extra = connect(&addr).await;
    expect_closed(&mut extra).await;
    let dropped = |reason: &str| h.stats().dropped.get(reason).copied().unwrap_or(0);
    wait_until("every refusal counted", || {
        dropped("oversized_frame") == 1
            && dropped("bad_length_header") == 1
            && dropped("short_frame") == 1
            && dropped("frame_timeout") == 1
            && dropped("max_connections") == 1
    })
    .await;
    h.shutdown().await;
}

/// A host that answers every 0800 with an 0810 carrying `response` in DE 39, and hands the
/// other frames it reads to the test.
async fn host(
    listener: TcpListener,
    response: &'static str,
    seen: tokio::sync::mpsc::UnboundedSender<Message>,
) {
    let Ok((mut stream, _)) = listener.accept().await else {
        return;
    };
    loop {
        let Ok(body) = testkit::read_frame(&mut stream).await else {
            return;
        };
        let Ok(mut msg) = network_spec().unpack(&body) else {
            return;
        };
        if msg.mti() == "0800" {
            let _ = seen.send(msg.clone());
            msg.set_mti("0810");
            msg.set(39, response);
            let answer = network_spec().pack_to_vec(&msg).expect("packs");
            if stream.write_all(&frame(&answer)).await.is_err() {
                return;
            }
        } else {
            let _ = seen.send(msg);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_signs_on_echoes_and_is_available_only_while_signed_on() {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("address").to_string();
    let (tx, mut seen) = tokio::sync::mpsc::unbounded_channel();
    let mut h = client(&addr, json!({ "sign_on": true, "echo_interval": "100ms" }));
    // The host reads nothing yet, so no 0810 can have come.
    assert!(!h.is_available(), "not before its sign-on is answered");
    let host = tokio::spawn(host(listener, "00", tx));

    let sign_on = within("a sign-on", seen.recv()).await.expect("a sign-on");
    assert_eq!((sign_on.mti(), sign_on.text(70)), ("0800", Some("001")));
    assert_eq!(sign_on.text(7).map(str::len), Some(10));
    wait_until("signed on", || h.is_available()).await;
    let up = next(&mut h, "link").await;
    assert_eq!(text(&up, "conn.event"), "conn.up");
    // With nothing read for echo_interval, an echo goes out.
    let echo = within("an echo", seen.recv()).await.expect("an echo");
    assert_eq!(echo.text(70), Some("301"));
    // Business messages go to the host; the 0810s never reach `out`.
    h.send("in", FluxMsg::builder().raw(auth("000042")).build())
        .expect("send");
    loop {
        let msg = within("the request", seen.recv()).await.expect("a message");
        if msg.mti() == "0100" {
            assert_eq!(msg.text(11), Some("000042"));
            break;
        }
    }
    assert!(
        h.take("out").is_empty(),
        "answers to the gear's own 0800s stay in the gear"
    );

    // The host goes away: the link is down and the gear unavailable.
    host.abort();
    let down = next(&mut h, "link").await;
    assert_eq!(text(&down, "conn.event"), "conn.down");
    wait_until("unavailable", || !h.is_available()).await;
    h.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_sign_on_keeps_the_client_unavailable() {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("address").to_string();
    let (tx, mut seen) = tokio::sync::mpsc::unbounded_channel();
    let host = tokio::spawn(host(listener, "91", tx));
    let mut h = client(&addr, json!({ "sign_on": true }));
    within("a sign-on", seen.recv()).await.expect("a sign-on");
    let up = next(&mut h, "link").await;
    assert_eq!(text(&up, "conn.event"), "conn.up");
    // The refused 0810 ended in the gear; what comes on `in` is still written.
    h.send("in", FluxMsg::builder().raw(auth("000001")).build())
        .expect("send");
    within("the request", seen.recv()).await.expect("a message");
    assert!(!h.is_available());
    host.abort();
    h.shutdown().await;
}

#[test]
fn config_errors_name_the_field() {
    check_config_error(
        &json!({ "mode": "server", "frame_length_size": 3 }),
        "frame_length_size",
    );
    check_config_error(
        &json!({ "mode": "server", "frame_length_endian": "middle" }),
        "frame_length_endian",
    );
    check_config_error(
        &json!({ "mode": "server", "tpdu_default": "60" }),
        "tpdu_default",
    );
    check_config_error(
        &json!({ "mode": "server", "protocol_header_size": 2, "protocol_header_default": "zz00" }),
        "protocol_header_default",
    );
    check_config_error(&json!({ "mode": "server", "sign_on": true }), "sign_on");
    check_config_error(&json!({ "mode": "client" }), "connect");
    check_config_error(
        &json!({ "mode": "server", "framing": "delimiter" }),
        "framing",
    );
    check_config_error(
        &json!({ "mode": "server", "network_spec": "visa" }),
        "network_spec",
    );
}

#[test]
fn defaults_listen_on_loopback_8583_and_registration() {
    let factory = gears::Factory::builtin();
    let gear = factory.get("io_iso8583").expect("registered");
    let outputs: Vec<&str> = gear
        .manifest()
        .fixed_ports(sdk::Direction::Output)
        .collect();
    assert!(outputs.contains(&"link"), "{outputs:?}");
    // Without bind, a server listens on 127.0.0.1:8583 (refused here only if taken).
    let h = Harness::new::<IoIso8583>(&json!({ "mode": "server" }));
    assert!(h.is_ok());
}

/// A directory of this test's own under the temporary directory, removed when dropped.
struct TempDir(std::path::PathBuf);

impl TempDir {
    fn new(name: &str) -> TempDir {
        let dir = std::env::temp_dir().join(format!("gears-iso8583-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("a temporary directory");
        TempDir(dir)
    }

    fn path(&self, file: &str) -> String {
        self.0.join(file).display().to_string()
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A certificate authority (`ca.pem`), a server certificate for 127.0.0.1 and localhost
/// (`server.pem`, `server.key`) and a client certificate (`client.pem`, `client.key`).
fn certificates(name: &str) -> TempDir {
    use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
    let dir = TempDir::new(name);
    let ca_key = KeyPair::generate().expect("key");
    let mut ca = CertificateParams::new(Vec::<String>::new()).expect("params");
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.distinguished_name
        .push(rcgen::DnType::CommonName, "io_iso8583 test CA");
    let ca_cert = ca.self_signed(&ca_key).expect("ca");
    std::fs::write(dir.path("ca.pem"), ca_cert.pem()).expect("written");
    let issuer = Issuer::new(ca, ca_key);
    for (name, sans) in [
        (
            "server",
            vec!["127.0.0.1".to_owned(), "localhost".to_owned()],
        ),
        ("client", vec!["terminal-1".to_owned()]),
    ] {
        let key = KeyPair::generate().expect("key");
        let params = CertificateParams::new(sans).expect("params");
        let cert = params.signed_by(&key, &issuer).expect("sign");
        std::fs::write(dir.path(&format!("{name}.pem")), cert.pem()).expect("written");
        std::fs::write(dir.path(&format!("{name}.key")), key.serialize_pem()).expect("written");
    }
    dir
}

/// A TLS server and client gear: a request crosses from client to server and its reply
/// back.
async fn check_tls_round_trip(server_tls: Value, client_tls: Value) {
    let (mut server, addr) = server(json!({ "tls": server_tls }));
    let mut client = client(&addr, json!({ "tls": client_tls }));
    wait_until("the link is up", || client.is_available()).await;
    client
        .send("in", FluxMsg::builder().raw(auth("000007")).build())
        .expect("send");
    let request = next(&mut server, "out").await;
    assert_eq!(&request.raw[..], &auth("000007")[..]);
    let mut reply = request.clone();
    reply.raw = b"reply".to_vec().into();
    server.send("in", reply).expect("send");
    let got = next(&mut client, "out").await;
    assert_eq!(&got.raw[..], b"reply");
    client.shutdown().await;
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_links_carry_messages_both_ways() {
    let dir = certificates("tls");
    check_tls_round_trip(
        json!({ "cert_file": dir.path("server.pem"), "key_file": dir.path("server.key") }),
        json!({ "ca_file": dir.path("ca.pem") }),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mutual_tls_needs_a_client_certificate() {
    let dir = certificates("mtls");
    let server_tls = json!({
        "cert_file": dir.path("server.pem"),
        "key_file": dir.path("server.key"),
        "ca_file": dir.path("ca.pem"),
        "client_auth": true,
    });
    check_tls_round_trip(
        server_tls.clone(),
        json!({
            "ca_file": dir.path("ca.pem"),
            "cert_file": dir.path("client.pem"),
            "key_file": dir.path("client.key"),
        }),
    )
    .await;

    // Without a certificate the server refuses the handshake.
    let (server, addr) = server(json!({ "tls": server_tls }));
    let client = client(&addr, json!({ "tls": { "ca_file": dir.path("ca.pem") } }));
    wait_until("the handshake refused", || {
        server
            .stats()
            .dropped
            .get("tls_handshake")
            .copied()
            .unwrap_or(0)
            >= 1
    })
    .await;
    // (The client may believe in its link for a moment: under TLS 1.3 its side of the
    // handshake ends before the server checks the certificate it did not send.)
    drop(client);
    // A client in clear is refused the same way.
    let mut plain = connect(&addr).await;
    plain
        .write_all(&frame(&auth("000001")))
        .await
        .expect("write");
    // The server answers with a TLS alert, then closes.
    let mut rest = Vec::new();
    let _ = within("the server to close", plain.read_to_end(&mut rest)).await;
    wait_until("both handshakes refused", || {
        server
            .stats()
            .dropped
            .get("tls_handshake")
            .copied()
            .unwrap_or(0)
            >= 2
    })
    .await;
    let mut server = server;
    assert!(server.take("out").is_empty());
    assert!(
        server.take("link").is_empty(),
        "a connection that failed its handshake was never up"
    );
}

#[test]
fn tls_config_errors_name_the_field() {
    let dir = certificates("tls-config");
    check_config_error(&json!({ "mode": "server", "tls": {} }), "tls.cert_file");
    check_config_error(
        &json!({ "mode": "server", "tls": { "cert_file": dir.path("server.pem") } }),
        "tls.key_file",
    );
    check_config_error(
        &json!({ "mode": "server", "tls": {
            "cert_file": dir.path("server.pem"), "key_file": dir.path("server.key"), "client_auth": true,
        } }),
        "tls.ca_file",
    );
    check_config_error(
        &json!({ "mode": "client", "connect": "127.0.0.1:1", "tls": {} }),
        "tls.ca_file",
    );
    check_config_error(
        &json!({ "mode": "client", "connect": "127.0.0.1:1", "tls": { "ca_file": dir.path("missing.pem") } }),
        "tls.ca_file",
    );
    check_config_error(
        &json!({ "mode": "server", "tls": { "cert_file": "a", "key_file": "b", "verify": true } }),
        "verify",
    );
}
