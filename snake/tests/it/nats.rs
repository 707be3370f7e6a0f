//! What only the NATS backend has: a server restart in the middle of a guaranteed stream,
//! reconnection, TLS and mutual TLS, token and user/password authentication.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
use snake::{
    ConnectionState, ConsumerConfig, Error, Message, NatsOptions, NatsServer, Pattern, Snake,
    StateWatch, StreamConfig, Subject,
};

/// A directory of its own under the system's temporary directory, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new() -> TempDir {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let dir = std::env::temp_dir().join(format!(
            "snake-nats-test-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&dir).expect("temp dir");
        TempDir(dir)
    }

    fn write(&self, name: &str, text: &str) -> PathBuf {
        let path = self.0.join(name);
        std::fs::write(&path, text).expect("write");
        path
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A server started with `config` (nats-server configuration text) in `dir`.
fn server_with(dir: &TempDir, config: &str) -> NatsServer {
    let file = dir.write("server.conf", config);
    NatsServer::builder()
        .config_file(file)
        .start()
        .expect("nats-server")
}

/// Waits until `state` reads `want`.
async fn wait_for(state: &mut StateWatch, want: ConnectionState) {
    let reached = async {
        while state.current() != want {
            state.changed().await.expect("state sender alive");
        }
    };
    tokio::time::timeout(Duration::from_secs(10), reached)
        .await
        .unwrap_or_else(|_| panic!("state {want:?} within 10 s"));
}

/// A core publish and subscribe round trip works on `snake`.
async fn check_round_trip(snake: &Snake) {
    let to = Subject::msg("r1", "g", "in").expect("subject");
    let mut sub = snake.subscribe(to.clone().into()).await.expect("sub");
    snake
        .publish(Message::new(to.clone(), &b"core"[..]))
        .await
        .expect("publish");
    let got = tokio::time::timeout(Duration::from_secs(5), sub.next())
        .await
        .expect("in time")
        .expect("message");
    assert_eq!(got.payload, b"core"[..]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn restart_in_the_middle_of_a_guaranteed_stream() {
    const N: u64 = 100_000;
    const CHUNK: u64 = 1_000;
    let mut server = NatsServer::start().expect("nats-server");
    let options = NatsOptions::new(server.url()).request_timeout(Duration::from_secs(2));
    let snake = Snake::nats(options).await.expect("connect");
    let cfg = StreamConfig::new("restart", [Pattern::msg_all()]).expect("config");
    snake.create_stream(cfg).await.expect("stream");
    let to = Subject::msg("r1", "g", "in").expect("subject");

    // The publisher: chunks of 1,000 with a window of acks; a chunk that fails (the server
    // is away) is published again, whole: the message ids make the repeats harmless.
    let publisher = {
        let snake = snake.clone();
        let to = to.clone();
        tokio::spawn(async move {
            let mut retries = 0u32;
            let mut start = 0;
            while start < N {
                let mut p = snake.stream_publisher(256);
                let mut sent = Ok(());
                for i in start..(start + CHUNK).min(N) {
                    let msg =
                        Message::new(to.clone(), i.to_be_bytes().to_vec()).with_id(i.to_string());
                    sent = p.publish(msg).await;
                    if sent.is_err() {
                        break;
                    }
                }
                let sent = sent.and(p.flush().await.map(drop));
                match sent {
                    Ok(()) => start += CHUNK,
                    Err(_) => {
                        retries += 1;
                        // A publisher's backoff while the server restarts, not a wait.
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                }
            }
            retries
        })
    };

    let cfg = ConsumerConfig::new(to.into())
        .durable("restart")
        .expect("name")
        .ack_wait(Duration::from_secs(5))
        .max_deliver(100);
    let mut consumer = snake.consumer("restart", cfg).await.expect("consumer");
    // For the report below, not an assertion: a stall fails the wait for the next delivery.
    let started = Instant::now();
    // For each id, the indexes (in consumption order) of its deliveries.
    let mut seen: HashMap<u64, Vec<u64>> = HashMap::new();
    let mut consumed = 0u64;
    let mut restarted_at = None;
    while (seen.len() as u64) < N {
        let d = tokio::time::timeout(Duration::from_secs(20), consumer.next())
            .await
            .unwrap_or_else(|_| panic!("stalled with {} of {N} ids", seen.len()))
            .expect("delivery");
        let id = u64::from_be_bytes(d.message.payload[..].try_into().expect("8 bytes"));
        seen.entry(id).or_default().push(consumed);
        consumed += 1;
        // Acks may be lost around the restart; the redeliveries show it.
        let _ = d.ack().await;
        if consumed == N / 2 {
            restarted_at = Some(consumed);
            tokio::task::block_in_place(|| server.restart()).expect("restart");
        }
    }
    let retries = publisher.await.expect("publisher");
    let restarted_at = restarted_at.expect("restarted");
    assert_eq!(seen.len() as u64, N, "every id consumed");
    assert!(seen.keys().all(|id| *id < N));
    // A repeat is an id first delivered before the restart (its ack may have been lost in
    // the stop), or among what the server had already sent into the client's buffers then.
    const IN_FLIGHT: u64 = 1_000;
    let duplicates: Vec<(u64, Vec<u64>)> =
        seen.into_iter().filter(|(_, at)| at.len() > 1).collect();
    for (id, at) in &duplicates {
        assert!(
            at[0] < restarted_at + IN_FLIGHT,
            "id {id} repeated, first delivered at {} (restart at {restarted_at})",
            at[0]
        );
    }
    eprintln!(
        "restart: {N} ids, {consumed} deliveries, {} duplicated ids, {retries} publish retries, {:?}",
        duplicates.len(),
        started.elapsed()
    );
}

/// Acknowledgements lost together (a server restart drops every reply in flight) fail
/// together, each at its publish's deadline: awaited one after another, they do not each wait
/// a whole timeout in turn (a window of 256 lost acks would stall a lane for 21 minutes).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lost_acks_fail_at_their_publish_deadline_not_one_after_another() {
    const N: u32 = 20;
    const TIMEOUT: Duration = Duration::from_millis(500);
    let server = NatsServer::start().expect("nats-server");
    let options = NatsOptions::new(server.url()).request_timeout(TIMEOUT);
    let snake = Snake::nats(options).await.expect("connect");
    // A listener that never answers: each publish finds a responder, and no ack ever comes.
    let to = Subject::msg("r1", "g", "in").expect("subject");
    let mut swallow = snake.subscribe(to.clone().into()).await.expect("sub");
    snake.flush().await.expect("flush");

    let mut publisher = snake.tracked_publisher::<u32>(N as usize);
    let started = Instant::now();
    for i in 0..N {
        let msg = Message::new(to.clone(), i.to_be_bytes().to_vec()).with_id(i.to_string());
        publisher
            .send(msg, i)
            .await
            .map_err(|e| e.error)
            .expect("sent");
    }
    for i in 0..N {
        let answer = publisher.next().await.expect("an answer per publish");
        assert_eq!(answer.tag, i, "answers in publish order");
        assert!(answer.result.is_err(), "publish {i}: {:?}", answer.result);
    }
    let took = started.elapsed();
    // One after another they would take N timeouts (10 s); together, about one.
    assert!(
        took < TIMEOUT * (N / 2),
        "{N} lost acks took {took:?}, as if each waited its timeout in turn"
    );
    assert!(swallow.next().await.is_some(), "the publishes were sent");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reconnects_after_a_restart() {
    let mut server = NatsServer::start().expect("nats-server");
    let snake = Snake::nats(NatsOptions::new(server.url()))
        .await
        .expect("connect");
    let cfg = StreamConfig::new("again", [Pattern::msg_all()]).expect("config");
    snake.create_stream(cfg).await.expect("stream");
    let mut state = snake.state();
    assert_eq!(state.current(), ConnectionState::Connected);
    server.stop().expect("stop");
    wait_for(&mut state, ConnectionState::Disconnected).await;
    tokio::task::block_in_place(|| server.restart()).expect("restart");
    wait_for(&mut state, ConnectionState::Connected).await;
    check_round_trip(&snake).await;
    let to = Subject::msg("r1", "g", "in").expect("subject");
    let ack = snake
        .stream_publish(Message::new(to.clone(), &b"after"[..]))
        .await
        .expect("stream publish after the restart");
    let mut c = snake
        .consumer("again", ConsumerConfig::new(to.into()))
        .await
        .expect("consumer");
    // The round trip's core message is in the stream too, first.
    let first = c.next().await.expect("delivery");
    assert_eq!(first.message.payload, b"core"[..]);
    first.ack().await.expect("ack");
    let d = c.next().await.expect("delivery");
    assert_eq!(
        (d.sequence, d.message.payload.as_ref()),
        (ack.sequence, &b"after"[..])
    );
    d.ack().await.expect("ack");
}

/// A certificate authority, and a server certificate for 127.0.0.1 and localhost, written to
/// `dir` as `ca.pem`, `server.pem`, `server.key`; plus a client certificate (`client.pem`,
/// `client.key`).
fn certificates(dir: &TempDir) {
    let ca_key = KeyPair::generate().expect("key");
    let mut ca = CertificateParams::new(Vec::<String>::new()).expect("params");
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.distinguished_name
        .push(rcgen::DnType::CommonName, "snake test CA");
    let ca_cert = ca.self_signed(&ca_key).expect("ca");
    dir.write("ca.pem", &ca_cert.pem());
    let issuer = Issuer::new(ca, ca_key);
    for (name, sans) in [
        (
            "server",
            vec!["127.0.0.1".to_owned(), "localhost".to_owned()],
        ),
        ("client", vec!["rack-1".to_owned()]),
    ] {
        let key = KeyPair::generate().expect("key");
        let params = CertificateParams::new(sans).expect("params");
        let cert = params.signed_by(&key, &issuer).expect("sign");
        dir.write(&format!("{name}.pem"), &cert.pem());
        dir.write(&format!("{name}.key"), &key.serialize_pem());
    }
}

fn tls_config(dir: &Path, verify: bool) -> String {
    let p = |f: &str| dir.join(f).display().to_string();
    format!(
        "tls {{\n  cert_file: \"{}\"\n  key_file: \"{}\"\n  ca_file: \"{}\"\n  verify: {verify}\n}}\n",
        p("server.pem"),
        p("server.key"),
        p("ca.pem"),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_with_a_local_ca() {
    let dir = TempDir::new();
    certificates(&dir);
    let server = server_with(&dir, &tls_config(&dir.0, false));
    let options = NatsOptions::new(server.url())
        .root_certificate(dir.0.join("ca.pem"))
        .require_tls(true);
    let snake = Snake::nats(options).await.expect("tls connect");
    check_round_trip(&snake).await;
    // Without the CA, the server's certificate is not trusted.
    let err = Snake::nats(NatsOptions::new(server.url()).require_tls(true))
        .await
        .expect_err("untrusted");
    assert!(matches!(err, Error::Nats { .. }), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mutual_tls() {
    let dir = TempDir::new();
    certificates(&dir);
    let server = server_with(&dir, &tls_config(&dir.0, true));
    let options = NatsOptions::new(server.url())
        .root_certificate(dir.0.join("ca.pem"))
        .client_certificate(dir.0.join("client.pem"), dir.0.join("client.key"));
    let snake = Snake::nats(options).await.expect("mtls connect");
    check_round_trip(&snake).await;
    // Without a client certificate the server ends the handshake.
    let err = Snake::nats(NatsOptions::new(server.url()).root_certificate(dir.0.join("ca.pem")))
        .await
        .expect_err("no client certificate");
    assert!(
        matches!(err, Error::Nats { .. } | Error::Unauthorized { .. }),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_auth() {
    let dir = TempDir::new();
    let server = server_with(&dir, "authorization {\n  token: \"s3cret\"\n}\n");
    let snake = Snake::nats(NatsOptions::new(server.url()).token("s3cret"))
        .await
        .expect("good token");
    check_round_trip(&snake).await;
    for bad in [
        NatsOptions::new(server.url()).token("wrong"),
        NatsOptions::new(server.url()),
    ] {
        let err = Snake::nats(bad).await.expect_err("bad token");
        assert!(matches!(err, Error::Unauthorized { .. }), "{err}");
        assert_eq!(err.to_string(), "nats: authorization refused");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn user_and_password_auth() {
    let dir = TempDir::new();
    let server = server_with(
        &dir,
        "authorization {\n  user: rack\n  password: \"s3cret\"\n}\n",
    );
    let good = NatsOptions::new(server.url()).user_and_password("rack", "s3cret");
    assert!(!format!("{good:?}").contains("s3cret"), "{good:?}");
    let snake = Snake::nats(good).await.expect("good credentials");
    check_round_trip(&snake).await;
    let err = Snake::nats(NatsOptions::new(server.url()).user_and_password("rack", "nope"))
        .await
        .expect_err("bad password");
    assert!(matches!(err, Error::Unauthorized { .. }), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_letters_without_a_subject_are_counted() {
    let server = NatsServer::start().expect("nats-server");
    let snake = Snake::nats(NatsOptions::new(server.url()))
        .await
        .expect("connect");
    let cfg = StreamConfig::new("counted", [Pattern::msg_all()]).expect("config");
    snake.create_stream(cfg).await.expect("stream");
    let to = Subject::msg("r1", "g", "in").expect("subject");
    for payload in [&b"nak"[..], &b"expire"[..]] {
        snake
            .stream_publish(Message::new(to.clone(), payload))
            .await
            .expect("publish");
    }
    let cfg = ConsumerConfig::new(to.into())
        .max_deliver(1)
        .ack_wait(Duration::from_millis(300));
    let mut c = snake.consumer("counted", cfg).await.expect("consumer");
    // One nak'd on its last delivery, one left to run out its ack wait (the advisory path).
    let first = c.next().await.expect("delivery");
    first.nak(Duration::ZERO).await.expect("nak");
    let _second = c.next().await.expect("delivery");
    testkit::wait_until("both dead letters counted", || snake.dropped() == (0, 2)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ack_wait_running_out_on_the_last_delivery_dead_letters() {
    let server = NatsServer::start().expect("nats-server");
    let snake = Snake::nats(NatsOptions::new(server.url()))
        .await
        .expect("connect");
    let cfg = StreamConfig::new("expiring", [Pattern::msg_all()]).expect("config");
    snake.create_stream(cfg).await.expect("stream");
    snake
        .create_stream(StreamConfig::dead_letters())
        .await
        .expect("dead-letter stream");
    let to = Subject::msg("r1", "g", "in").expect("subject");
    let dlq = Subject::dead_letter("r1", "g", "in").expect("dlq");
    let mut letters = snake.subscribe(Pattern::dead_letters()).await.expect("sub");
    snake
        .stream_publish(Message::new(to.clone(), &b"slow"[..]).with_id("m-9"))
        .await
        .expect("publish");
    let cfg = ConsumerConfig::new(to.clone().into())
        .max_deliver(2)
        .ack_wait(Duration::from_millis(300))
        .dead_letter(dlq.clone());
    let mut c = snake.consumer("expiring", cfg).await.expect("consumer");
    // Never acked: delivered twice, then the server gives up and says so in an advisory.
    for n in 1..=2 {
        let d = c.next().await.expect("delivery");
        assert_eq!(d.deliveries, n);
    }
    let letter = tokio::time::timeout(Duration::from_secs(5), letters.next())
        .await
        .expect("a dead letter")
        .expect("open");
    assert_eq!(letter.subject, dlq);
    assert_eq!(letter.headers.get(snake::header::DLQ_MSG_ID), Some("m-9"));
    assert_eq!(letter.payload, b"slow"[..]);
    let h = |name| letter.headers.get(name);
    assert_eq!(
        (
            h(snake::header::DLQ_REASON),
            h(snake::header::DLQ_SUBJECT),
            h(snake::header::DLQ_STREAM),
            h(snake::header::DLQ_DELIVERIES)
        ),
        (
            Some("max_deliver"),
            Some(to.as_str()),
            Some("expiring"),
            // The server's own count: the extra delivery, past the limit, went unanswered too.
            Some("3")
        )
    );
    assert_eq!(snake.dropped(), (0, 0));
}
