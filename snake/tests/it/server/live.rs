//! Against a real nats-server (feature `nats-server-tests`): when the binary is missing, these
//! fail with the install hint rather than skip.

#![cfg(feature = "nats-server-tests")]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::Command;
use std::time::{Duration, Instant};

use snake::{Error, NatsServer, NatsServerBuilder};

/// Starts a server, failing the test with the error's text (the install hint when the binary
/// is missing).
#[track_caller]
fn start(builder: NatsServerBuilder) -> NatsServer {
    builder.start().unwrap_or_else(|e| panic!("{e}"))
}

/// The address of a `nats://HOST:PORT` URL.
fn addr_of(url: &str) -> SocketAddr {
    let rest = url.strip_prefix("nats://").expect("a nats:// URL");
    rest.parse().expect("HOST:PORT")
}

/// Connects to `url`, checks the INFO line announces JetStream, and returns the connection.
#[track_caller]
fn check_info(url: &str) -> BufReader<TcpStream> {
    let stream = TcpStream::connect_timeout(&addr_of(url), Duration::from_secs(2))
        .unwrap_or_else(|e| panic!("connect to {url}: {e}"));
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .expect("set a read timeout");
    let mut reader = BufReader::new(stream);
    let mut info = String::new();
    reader.read_line(&mut info).expect("read INFO");
    assert!(info.starts_with("INFO {"), "{info:?}");
    assert!(info.contains("\"jetstream\":true"), "{info:?}");
    reader
}

/// Sends one request with the bare NATS protocol and returns the reply's payload.
#[track_caller]
fn request(url: &str, subject: &str, payload: &str) -> String {
    let mut reader = check_info(url);
    let out = format!(
        "CONNECT {{\"verbose\":false,\"pedantic\":false}}\r\nSUB _INBOX.it 1\r\nPUB {subject} _INBOX.it {}\r\n{payload}\r\n",
        payload.len()
    );
    reader.get_mut().write_all(out.as_bytes()).expect("send");
    for _ in 0..100 {
        let mut line = String::new();
        reader.read_line(&mut line).expect("read a reply");
        let Some(rest) = line.strip_prefix("MSG _INBOX.it 1 ") else {
            assert!(!line.starts_with("-ERR"), "{line}");
            continue;
        };
        let len: usize = rest.trim().parse().expect("a payload length");
        let mut body = vec![0; len + 2];
        reader.read_exact(&mut body).expect("read the payload");
        return String::from_utf8_lossy(&body[..len]).into_owned();
    }
    panic!("no reply to {subject}");
}

/// Waits until the server is no longer running, at most 5 s.
#[track_caller]
fn wait_exit(server: &mut NatsServer) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while server.is_running() {
        assert!(Instant::now() < deadline, "the server is still running");
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn a_server_answers_with_jetstream() {
    let mut server = start(NatsServer::builder());
    assert_eq!(server.url(), format!("nats://127.0.0.1:{}", server.port()));
    assert!(server.is_running());
    assert!(server.pid().is_some());
    assert!(server.store_dir().is_dir(), "JetStream creates its store");
    assert!(server.binary().is_file());
    check_info(&server.url());
    server.check().expect("still running");
}

#[test]
fn two_servers_get_different_ports_and_stores() {
    let a = start(NatsServer::builder());
    let b = start(NatsServer::builder());
    assert_ne!(a.port(), b.port());
    assert_ne!(a.store_dir(), b.store_dir());
    check_info(&a.url());
    check_info(&b.url());
}

#[test]
fn restart_keeps_port_store_and_streams() {
    let mut server = start(NatsServer::builder());
    let (url, port, store, pid) = (
        server.url(),
        server.port(),
        server.store_dir().to_path_buf(),
        server.pid(),
    );
    let created = request(
        &url,
        "$JS.API.STREAM.CREATE.S",
        r#"{"name":"S","subjects":["s.>"],"storage":"file"}"#,
    );
    assert!(created.contains("\"name\":\"S\""), "{created}");
    let ack = request(&url, "s.one", "hello");
    assert!(ack.contains("\"seq\":1"), "{ack}");

    server.restart().unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(server.port(), port);
    assert_eq!(server.url(), url);
    assert_eq!(server.store_dir(), store);
    assert_ne!(server.pid(), pid);
    let info = request(&url, "$JS.API.STREAM.INFO.S", "");
    assert!(info.contains("\"messages\":1"), "{info}");

    // A stopped server restarts too.
    server.stop().expect("stop");
    server.restart().unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(server.port(), port);
    check_info(&url);
}

#[test]
fn stop_is_idempotent_and_closes_the_port() {
    let mut server = start(NatsServer::builder());
    let addr = addr_of(&server.url());
    server.stop().expect("stop");
    assert_eq!(server.pid(), None);
    assert!(!server.is_running());
    server.check().expect("a stopped server is not a failure");
    server.stop().expect("stop again");
    assert!(TcpStream::connect_timeout(&addr, Duration::from_secs(1)).is_err());
}

#[test]
fn drop_stops_the_server_and_removes_a_temporary_store() {
    let server = start(NatsServer::builder());
    let addr = addr_of(&server.url());
    let (store, log) = (
        server.store_dir().to_path_buf(),
        server.log_path().to_path_buf(),
    );
    assert!(log.is_file());
    drop(server);
    assert!(TcpStream::connect_timeout(&addr, Duration::from_secs(1)).is_err());
    assert!(!store.exists());
    assert!(!log.exists());
}

#[test]
fn a_given_store_is_kept() {
    let dir = super::Scratch::new("store");
    let store = dir.0.join("js");
    let server = start(NatsServer::builder().store_dir(&store));
    assert_eq!(server.store_dir(), store);
    drop(server);
    assert!(store.join("jetstream").is_dir());
}

#[test]
fn a_server_that_exits_at_once_gives_its_log() {
    match NatsServer::builder().arg("--no-such-flag").start() {
        Err(Error::ServerStart {
            reason, log_tail, ..
        }) => {
            assert!(reason.starts_with("exited with"), "{reason}");
            assert!(
                log_tail.contains("flag provided but not defined"),
                "{log_tail}"
            );
        }
        Err(e) => panic!("not ServerStart: {e}"),
        Ok(server) => panic!("started at {}", server.url()),
    }
}

#[test]
fn an_exit_on_its_own_is_reported() {
    let mut server = start(NatsServer::builder());
    let pid = server.pid().expect("running");
    let status = Command::new(server.binary())
        .arg("--signal")
        .arg(format!("quit={pid}"))
        .status()
        .expect("run nats-server --signal");
    assert!(status.success());
    wait_exit(&mut server);
    match server.check() {
        Err(Error::ServerExited {
            pid: p, log_tail, ..
        }) => {
            assert_eq!(p, pid);
            assert!(log_tail.contains("Server Exiting"), "{log_tail}");
        }
        other => panic!("not ServerExited: {other:?}"),
    }
    // Stop and restart recover from it.
    server.stop().expect("stop");
    server.restart().unwrap_or_else(|e| panic!("{e}"));
    check_info(&server.url());
}
