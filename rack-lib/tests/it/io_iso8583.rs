//! ISO 8583 links in a running rack: the shipped echo-host scenario with real TCP clients,
//! card numbers kept out of every log, and a `route` failover tree in front of two
//! `io_iso8583` clients whose links come and go.

use std::collections::HashMap;
use std::io::Write;
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::time::Duration;

use fluxmsg::FluxMsg;
use iso8583::{Message, Spec};
use rack_lib::Rack;
use rack_lib::scenario::Scenario;
use sdk::{
    Availability, Category, ConfigError, Context, Gear, GearError, GearType, InPort, Manifest,
    Outbox, Outcome, Ports,
};
use testkit::{frame, wait_until, within};
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;

const SCENARIO: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../examples/scenarios/iso8583_echo_host.yaml"
);

fn spec() -> Spec {
    Spec::builtin("moov:spec87ascii").expect("built in")
}

/// A 0100 with a PAN and a STAN.
fn auth(pan: &str, stan: &str) -> Vec<u8> {
    let mut msg = Message::new("0100");
    msg.set(2, pan);
    msg.set(3, "000000");
    msg.set(4, "000000010000");
    msg.set(11, stan);
    spec().pack_to_vec(&msg).expect("packs")
}

async fn read_frame(stream: &mut TcpStream) -> Vec<u8> {
    within("a frame", testkit::read_frame(stream))
        .await
        .expect("a reply")
}

/// The shipped scenario, listening on `port`, its log gear writing to `log`.
async fn echo_host(port: u16, log: &std::path::Path) -> Rack {
    let text = std::fs::read_to_string(SCENARIO)
        .expect("the scenario file")
        .replace("127.0.0.1:8583", &format!("127.0.0.1:{port}"))
        .replace(
            "output: stderr",
            &format!("output: file\n      path: {:?}", log.display().to_string()),
        );
    crate::local_rack(&text).await
}

/// `clients` connections each send `per_client` requests (own PANs and STANs) and check that
/// every reply is theirs: MTI 0110, DE 39 = 00, their STAN and PAN.
async fn drive(port: u16, clients: usize, per_client: usize) {
    let mut streams = Vec::new();
    for _ in 0..clients {
        streams.push(
            within("a connection", TcpStream::connect(("127.0.0.1", port)))
                .await
                .expect("the host listens"),
        );
    }
    for round in 0..per_client {
        for (c, stream) in streams.iter_mut().enumerate() {
            let request = auth(&pan(c), &format!("{c:03}{round:03}"));
            stream.write_all(&frame(&request)).await.expect("write");
        }
    }
    for (c, stream) in streams.iter_mut().enumerate() {
        for round in 0..per_client {
            let reply = spec().unpack(&read_frame(stream).await).expect("unpacks");
            assert_eq!(reply.mti(), "0110");
            assert_eq!(reply.text(39), Some("00"));
            assert_eq!(
                reply.text(11),
                Some(format!("{c:03}{round:03}").as_str()),
                "client {c} gets its own replies, in order"
            );
            assert_eq!(reply.text(2), Some(pan(c).as_str()));
        }
    }
}

/// A Luhn-valid test PAN per client.
fn pan(client: usize) -> String {
    ["4111111111111111", "5555555555554444", "4012888888881881"][client % 3].to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_echo_host_answers_several_connections_without_crossed_replies() {
    let dir = temp_dir("echo");
    let port = testkit::free_port();
    let rack = echo_host(port, &dir.join("audit.jsonl")).await;
    drive(port, 6, 5).await;
    let stats = rack.stats();
    assert_eq!(stats["decode"].messages_in, 30);
    assert_eq!(stats["host"].messages_in, 30);
    // Each connection's conn.up reached the links log.
    wait_until("six conn.up logged", || {
        rack.stats()["links"].messages_in >= 6
    })
    .await;
    assert_eq!(stats["decode"].errors + stats["encode"].errors, 0);
    rack.shutdown(Duration::from_secs(5)).await;
    let _ = std::fs::remove_dir_all(&dir);
}

/// An empty temporary directory of this process.
fn temp_dir(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("rack-lib-iso8583-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("a temporary directory");
    dir
}

/// A writer into a shared buffer, for a tracing subscriber.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// What the whole test binary logs, at debug and above, from the first call on. A global
/// subscriber: one set for this test's thread alone misses events that other tests' threads
/// registered first.
fn captured_logs() -> &'static Captured {
    static CAPTURED: OnceLock<Captured> = OnceLock::new();
    CAPTURED.get_or_init(|| {
        let captured = Captured::default();
        let writer = captured.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_max_level(tracing::Level::DEBUG)
            .with_ansi(false)
            .with_writer(move || writer.clone())
            .finish();
        tracing::subscriber::set_global_default(subscriber)
            .expect("no other global subscriber in this test binary");
        captured
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_full_card_number_reaches_any_log_of_the_echo_host() {
    let captured = captured_logs();
    let dir = temp_dir("masking");
    let log = dir.join("audit.jsonl");

    let port = testkit::free_port();
    let rack = echo_host(port, &log).await;
    drive(port, 3, 2).await;
    // A frame that does not decode: its error goes through the logs too.
    let mut stream = TcpStream::connect(("127.0.0.1", port))
        .await
        .expect("connect");
    let request = auth(&pan(0), "999999");
    stream
        .write_all(&frame(&request[..request.len() - 3]))
        .await
        .expect("write");
    wait_until("the broken frame counted", || {
        rack.stats()["decode"].errors > 0
            || rack.stats()["decode"].dropped.values().sum::<u64>() > 0
    })
    .await;
    rack.shutdown(Duration::from_secs(5)).await;

    let logs = String::from_utf8_lossy(&captured.0.lock().unwrap_or_else(PoisonError::into_inner))
        .into_owned();
    let lines = std::fs::read_to_string(&log).expect("the log gear wrote");
    assert!(
        logs.contains("Listening."),
        "the subscriber captured the rack's logs"
    );
    assert!(
        lines.contains("411111******1111"),
        "the log gear logged the requests, masked: {lines}"
    );
    assert!(lines.contains("conn.up"), "link events logged: {lines}");
    for c in 0..3 {
        let full = pan(c);
        assert!(!logs.contains(&full), "{full} in the tracing logs");
        assert!(!lines.contains(&full), "{full} in the log gear's lines");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// A host that reads frames and hands each message to the test; it stops when aborted.
async fn upstream(
    listener: TcpListener,
    name: &'static str,
    seen: mpsc::UnboundedSender<(&'static str, String)>,
) {
    loop {
        let Ok((mut stream, _)) = listener.accept().await else {
            return;
        };
        while let Ok(body) = testkit::read_frame(&mut stream).await {
            if let Ok(msg) = spec().unpack(&body) {
                let _ = seen.send((name, msg.text(11).unwrap_or_default().to_owned()));
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_route_fails_over_when_an_iso8583_link_goes_down() {
    let a = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let b = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let (a_addr, b_addr) = (
        a.local_addr().expect("address"),
        b.local_addr().expect("address"),
    );
    let (tx, mut seen) = mpsc::unbounded_channel();
    let host_a = tokio::spawn(upstream(a, "a", tx.clone()));
    let _host_b = tokio::spawn(upstream(b, "b", tx));
    let yaml = format!(
        r#"
meta: {{ name: failover, version: 1.0.0 }}
gears:
  - name: switch
    type: route
    config:
      rules:
        - when: {{ field: raw, exists: true }}
          to: {{ failover: [out_a, out_b] }}
  - name: link-a
    type: io_iso8583
    config: {{ mode: client, connect: "{a_addr}", reconnect_wait: 50ms, reconnect_max: 200ms }}
  - name: link-b
    type: io_iso8583
    config: {{ mode: client, connect: "{b_addr}" }}
wires:
  - {{ from: switch.out_a, to: link-a.in }}
  - {{ from: switch.out_b, to: link-b.in }}
"#
    );
    let rack = crate::local_rack(&yaml).await;
    let inject = rack.injector("switch", "in").expect("an injector");
    let send = |stan: u32| {
        let inject = inject.clone();
        async move {
            let msg = FluxMsg::builder()
                .raw(auth("4111111111111111", &format!("{stan:06}")))
                .build();
            inject.send(msg).await.expect("injected");
        }
    };

    // Link events (conn.up, conn.down) leave on `link`: each counts as a message out.
    let events = |rack: &Rack, gear: &str| rack.stats()[gear].messages_out;
    wait_until("both links up", || {
        events(&rack, "link-a") >= 1 && events(&rack, "link-b") >= 1
    })
    .await;
    // Both links up: the first takes it.
    send(1).await;
    let got = within("a message upstream", seen.recv()).await;
    assert_eq!(got, Some(("a", "000001".to_owned())));
    // Link a dies (its host and listener are gone): traffic goes to b.
    host_a.abort();
    wait_until("link a down", || events(&rack, "link-a") >= 2).await;
    send(2).await;
    let got = within("a message upstream", seen.recv()).await;
    assert_eq!(got, Some(("b", "000002".to_owned())));

    let switch = &rack.stats()["switch"];
    assert_eq!(switch.errors, 0, "a destination was always available");
    rack.shutdown(Duration::from_secs(5)).await;
}

/// The availability of each running [`Toggle`] gear, by name.
fn toggles() -> &'static Mutex<HashMap<String, Availability>> {
    static TOGGLES: OnceLock<Mutex<HashMap<String, Availability>>> = OnceLock::new();
    TOGGLES.get_or_init(|| Mutex::new(HashMap::new()))
}

fn toggle(name: &str) -> Availability {
    toggles()
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .get(name)
        .cloned()
        .unwrap_or_else(|| panic!("{name} initialised"))
}

/// A sink whose availability the test sets.
#[derive(Debug)]
struct Toggle;

#[derive(Debug, serde::Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
struct ToggleConfig {}

impl GearType for Toggle {
    type Config = ToggleConfig;

    fn manifest() -> Manifest {
        Manifest::new("toggle", Category::Logic)
            .summary("a sink the test marks available or not")
            .input("in", "messages, consumed")
    }

    fn new(_: ToggleConfig, _: &Ports) -> Result<Toggle, ConfigError> {
        Ok(Toggle)
    }
}

impl Gear for Toggle {
    fn init(&mut self, ctx: &mut Context) -> Result<(), GearError> {
        toggles()
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(ctx.name().to_owned(), ctx.availability());
        Ok(())
    }

    fn process(
        &mut self,
        _: InPort,
        _: &mut FluxMsg,
        _: &mut Outbox<'_>,
    ) -> Result<Outcome, GearError> {
        Ok(Outcome::Consumed)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_port_follows_the_availability_of_the_gear_it_is_wired_to() {
    let mut factory = gears::Factory::builtin();
    factory.register::<Toggle>().expect("registered");
    let yaml = r#"
meta: { name: follow, version: 1.0.0 }
gears:
  - name: switch
    type: route
    config:
      rules:
        - when: { field: data.n, exists: true }
          to: { failover: [out_first, out_second] }
  - name: toggle-first
    type: toggle
  - name: toggle-second
    type: toggle
wires:
  - { from: switch.out_first, to: toggle-first.in }
  - { from: switch.out_second, to: toggle-second.in }
"#;
    let validated = Scenario::parse(yaml)
        .expect("parses")
        .validate(&factory)
        .expect("validates");
    let mut rack = Rack::builder("local")
        .factory(factory)
        .build()
        .expect("a rack");
    rack.apply_scenario(&validated).await.expect("applied");
    let (first, second) = (toggle("toggle-first"), toggle("toggle-second"));
    let inject = rack.injector("switch", "in").expect("an injector");
    let took = |rack: &Rack| {
        let stats = rack.stats();
        (
            stats["toggle-first"].messages_in,
            stats["toggle-second"].messages_in,
        )
    };
    let msg = || FluxMsg::builder().data("n", 1).build();

    inject.send(msg()).await.expect("sent");
    wait_until("first took it", || took(&rack) == (1, 0)).await;
    // The first gear says it takes nothing: the port wired to it follows, and the failover
    // passes over it.
    first.set_available(false);
    inject.send(msg()).await.expect("sent");
    wait_until("second took it", || took(&rack) == (1, 1)).await;
    // Both down: no destination, on error (unwired here, so counted).
    second.set_available(false);
    inject.send(msg()).await.expect("sent");
    wait_until("no destination", || rack.stats()["switch"].errors == 1).await;
    // Back up: the first again.
    first.set_available(true);
    second.set_available(true);
    inject.send(msg()).await.expect("sent");
    wait_until("first took it again", || took(&rack) == (2, 1)).await;
    rack.shutdown(Duration::from_secs(5)).await;
}
