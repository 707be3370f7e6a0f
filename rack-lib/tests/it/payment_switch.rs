//! The shipped payment switch scenarios, running: terminals on real TCP connections send
//! authorisations through the conductor to a simulated issuer and get each reply on their own
//! connection; what cannot be delivered comes back as a decline with the DE 39 of its reason;
//! an issuer link that dies loses no request silently. The two-rack variant validates and
//! runs over the in-process transport.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use iso8583::{Message, Spec};
use rack_lib::Rack;
use rack_lib::scenario::Lane;
use snake::Snake;
use testkit::{frame, wait_until, within};
use tokio::io::AsyncWriteExt;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio::task::JoinHandle;

const SINGLE: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../examples/scenarios/payment_switch_single.yaml"
);
const TWO_RACKS: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../examples/scenarios/payment_switch.yaml"
);

/// The ports the shipped scenarios bind and connect to.
const ACQUIRER_ADDR: &str = "127.0.0.1:18583";
const ISSUER_ADDR: &str = "127.0.0.1:18584";

fn spec() -> Spec {
    Spec::builtin("moov:spec87ascii").expect("built in")
}

/// A scenario file with its ports (and anything else) replaced.
fn scenario_text(path: &str, edits: &[(&str, &str)]) -> String {
    let mut text = std::fs::read_to_string(path).expect("the scenario file");
    for (from, to) in edits {
        assert!(text.contains(from), "the scenario has {from:?}");
        text = text.replace(from, to);
    }
    text
}

/// The single-rack switch, terminals on `acquirer`, its issuer host on `issuer` and its link
/// connecting to `link` (the in-rack host unless a test stands in for it), with `ttl`.
async fn single_rack(acquirer: u16, issuer: u16, link: &str, ttl: &str) -> Rack {
    let acquirer_addr = format!("127.0.0.1:{acquirer}");
    let issuer_addr = format!("127.0.0.1:{issuer}");
    let connect = format!("connect: {link}");
    let ttl = format!("default_ttl: {ttl}");
    let text = scenario_text(
        SINGLE,
        &[
            (ACQUIRER_ADDR, &acquirer_addr),
            (&format!("connect: {ISSUER_ADDR}"), &connect),
            (ISSUER_ADDR, &issuer_addr),
            ("default_ttl: 30s", &ttl),
        ],
    );
    crate::local_rack(&text).await
}

/// Waits until the issuer link has reported its first `conn.up`.
async fn link_up(rack: &Rack) {
    wait_until("the issuer link up", || {
        rack.stats()["issuer_link"].messages_out >= 1
    })
    .await;
}

/// A Luhn-valid 16-digit PAN under `bin`.
fn pan(bin: &str, account: u64) -> String {
    let width = 15 - bin.len();
    let digits = format!("{account:0width$}");
    let mut pan = format!("{bin}{}", &digits[digits.len() - width..]);
    let check = iso8583::luhn_check_digit(pan.as_bytes()).expect("a BIN of digits");
    pan.push(char::from(b'0' + check));
    pan
}

/// A terminal's id (DE 41) by connection.
fn terminal(conn: usize) -> String {
    format!("TERM{conn:04}")
}

/// A framed 0100: its correlation key is DE 11 + 7 + 32 + 41.
fn auth(pan: &str, stan: u32, conn: usize) -> Vec<u8> {
    let mut msg = Message::new("0100");
    msg.set(2, pan);
    msg.set(3, "000000");
    msg.set(4, "000000010000");
    msg.set(7, "1207120000");
    msg.set(11, format!("{stan:06}").as_str());
    msg.set(32, "123456");
    msg.set(41, terminal(conn).as_str());
    msg.set(49, "978");
    frame(&spec().pack_to_vec(&msg).expect("packs"))
}

async fn connect(port: u16) -> (OwnedReadHalf, OwnedWriteHalf) {
    within("a connection", TcpStream::connect(("127.0.0.1", port)))
        .await
        .expect("the switch listens")
        .into_split()
}

/// Reads `count` replies from a terminal's connection, each within the patience.
fn replies(rd: OwnedReadHalf, count: usize) -> JoinHandle<Vec<Message>> {
    replies_freeing(rd, count, None)
}

/// As [`replies`], adding a permit to `window` for each reply read.
fn replies_freeing(
    mut rd: OwnedReadHalf,
    count: usize,
    window: Option<Arc<Semaphore>>,
) -> JoinHandle<Vec<Message>> {
    tokio::spawn(async move {
        let mut out = Vec::with_capacity(count);
        for _ in 0..count {
            let body = within("a reply", testkit::read_frame(&mut rd))
                .await
                .expect("the switch answers before it closes");
            out.push(spec().unpack(&body).expect("a reply that unpacks"));
            if let Some(window) = &window {
                window.add_permits(1);
            }
        }
        out
    })
}

/// What each gear counted, for a failure message.
fn summary(rack: &Rack) -> String {
    rack.stats()
        .iter()
        .map(|(gear, s)| {
            format!(
                "{gear}: in {} out {} errors {} dropped {:?}",
                s.messages_in, s.messages_out, s.errors, s.dropped
            )
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// Waits for a terminal's replies; on failure says what each gear counted.
async fn collect(rack: &Rack, c: usize, reader: JoinHandle<Vec<Message>>) -> Vec<Message> {
    match reader.await {
        Ok(replies) => replies,
        Err(e) => panic!(
            "connection {c}: replies missing ({e}); the rack:\n{}",
            summary(rack)
        ),
    }
}

/// Replies by STAN, checking there is one per STAN and that each is the terminal's own.
fn by_stan(
    conn: usize,
    replies: Vec<Message>,
    pans: &HashMap<u32, String>,
) -> HashMap<u32, Message> {
    let mut out = HashMap::new();
    for reply in replies {
        assert_eq!(reply.mti(), "0110");
        assert_eq!(
            reply.text(41),
            Some(terminal(conn).as_str()),
            "connection {conn} got another terminal's reply"
        );
        let stan: u32 = reply
            .text(11)
            .and_then(|s| s.parse().ok())
            .expect("a STAN in the reply");
        assert_eq!(
            reply.text(2),
            pans.get(&stan).map(String::as_str),
            "connection {conn}, STAN {stan}: the request's own PAN"
        );
        assert!(
            out.insert(stan, reply).is_none(),
            "connection {conn}: STAN {stan} answered twice"
        );
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_interleaved_requests_each_answered_on_its_own_connection() {
    const CONNS: usize = 8;
    const PER_CONN: usize = 1250;
    const WINDOW: usize = 64;
    let (acquirer, issuer) = (testkit::free_port(), testkit::free_port());
    let rack = single_rack(acquirer, issuer, ISSUER_ADDR, "30s").await;
    link_up(&rack).await;

    // Each terminal keeps up to WINDOW requests waiting (8 x 64 in flight): a burst beyond
    // what an io_iso8583 gear queues (1,024 messages) is refused as `overloaded`, and those
    // requests would time out.
    let mut writers = Vec::new();
    let mut readers = Vec::new();
    let mut windows = Vec::new();
    for _ in 0..CONNS {
        let (rd, wr) = connect(acquirer).await;
        let window = Arc::new(Semaphore::new(WINDOW));
        readers.push(replies_freeing(rd, PER_CONN, Some(Arc::clone(&window))));
        writers.push(wr);
        windows.push(window);
    }
    // Interleaved: request n of every connection before request n + 1 of any; BINs 4 and 5.
    let mut pans: Vec<HashMap<u32, String>> = vec![HashMap::new(); CONNS];
    for n in 0..PER_CONN {
        for (c, wr) in writers.iter_mut().enumerate() {
            within("room in the window", windows[c].acquire())
                .await
                .expect("the window stays open")
                .forget();
            let stan = u32::try_from(n + 1).expect("small");
            let bin = if (n + c) % 2 == 0 { "411111" } else { "555555" };
            let pan = pan(bin, (c * PER_CONN + n) as u64);
            wr.write_all(&auth(&pan, stan, c)).await.expect("write");
            pans[c].insert(stan, pan);
        }
    }
    for (c, reader) in readers.into_iter().enumerate() {
        let got = by_stan(c, collect(&rack, c, reader).await, &pans[c]);
        assert_eq!(
            got.len(),
            PER_CONN,
            "connection {c}: every request answered"
        );
        for (stan, reply) in &got {
            assert_eq!(
                reply.text(39),
                Some("00"),
                "connection {c}, STAN {stan}; the rack:\n{}",
                summary(&rack)
            );
        }
    }
    let stats = rack.stats();
    assert_eq!(stats["acquirers"].messages_in, (CONNS * PER_CONN) as u64);
    assert_eq!(stats["decline"].messages_in, 0, "nothing declined");
    rack.shutdown(Duration::from_secs(5)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_card_range_is_declined_with_30_and_others_still_flow() {
    let (acquirer, issuer) = (testkit::free_port(), testkit::free_port());
    let rack = single_rack(acquirer, issuer, ISSUER_ADDR, "30s").await;
    link_up(&rack).await;
    let (rd, mut wr) = connect(acquirer).await;
    let reader = replies(rd, 3);
    let pans: HashMap<u32, String> = [
        (1, pan("601100", 1)), // no route
        (2, pan("411111", 2)),
        (3, pan("900000", 3)), // no route
    ]
    .into_iter()
    .collect();
    for stan in 1..=3 {
        wr.write_all(&auth(&pans[&stan], stan, 0))
            .await
            .expect("write");
    }
    let got = by_stan(0, collect(&rack, 0, reader).await, &pans);
    assert_eq!(got[&1].text(39), Some("30"));
    assert_eq!(got[&2].text(39), Some("00"));
    assert_eq!(got[&3].text(39), Some("30"));
    rack.shutdown(Duration::from_secs(5)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_the_issuer_never_answers_is_declined_with_68_after_its_ttl() {
    let (acquirer, issuer) = (testkit::free_port(), testkit::free_port());
    let rack = single_rack(acquirer, issuer, ISSUER_ADDR, "200ms").await;
    link_up(&rack).await;
    let (rd, mut wr) = connect(acquirer).await;
    let reader = replies(rd, 1);
    // The simulated issuer drops PANs under 4999. (Only that one: with a TTL this short, a
    // request the issuer does answer could time out too on a slow machine.)
    let pans: HashMap<u32, String> = [(7, pan("499999", 7))].into_iter().collect();
    wr.write_all(&auth(&pans[&7], 7, 0)).await.expect("write");
    let got = by_stan(0, collect(&rack, 0, reader).await, &pans);
    assert_eq!(got[&7].text(39), Some("68"), "timed out");
    assert_eq!(
        rack.stats()["authorizer"].messages_in,
        1,
        "the issuer saw it"
    );
    rack.shutdown(Duration::from_secs(5)).await;
}

/// An issuer host the test controls: answers the first `answer` requests with 00, then reads
/// and ignores the rest until it is aborted (the test aborts it to kill the link).
async fn issuer(listener: TcpListener, answer: usize) {
    let mut answered = 0;
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            return;
        };
        let (mut rd, mut wr) = stream.into_split();
        while let Ok(body) = testkit::read_frame(&mut rd).await {
            let Ok(mut msg) = spec().unpack(&body) else {
                continue;
            };
            if answered >= answer {
                continue;
            }
            answered += 1;
            msg.set_mti("0110");
            msg.set(39, "00");
            let Ok(reply) = spec().pack_to_vec(&msg) else {
                continue;
            };
            if wr.write_all(&frame(&reply)).await.is_err() {
                break;
            }
        }
    }
}

/// Requests `from..from + count` on every connection, interleaved, BIN 4.
async fn send_batch(
    writers: &mut [OwnedWriteHalf],
    pans: &mut [HashMap<u32, String>],
    from: usize,
    count: usize,
) {
    for n in from..from + count {
        for (c, wr) in writers.iter_mut().enumerate() {
            let stan = u32::try_from(n + 1).expect("small");
            let pan = pan("411111", (c * 10_000 + n) as u64);
            wr.write_all(&auth(&pan, stan, c)).await.expect("write");
            pans[c].insert(stan, pan);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_issuer_link_that_dies_mid_stream_loses_no_request_silently() {
    const CONNS: usize = 4;
    const PER_CONN: usize = 100;
    const ANSWERED: usize = 150;
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let host_addr = listener.local_addr().expect("an address").to_string();
    let host = tokio::spawn(issuer(listener, ANSWERED));
    let (acquirer, issuer_port) = (testkit::free_port(), testkit::free_port());
    let rack = single_rack(acquirer, issuer_port, &host_addr, "2s").await;
    link_up(&rack).await;

    let mut writers = Vec::new();
    let mut readers = Vec::new();
    for _ in 0..CONNS {
        let (rd, wr) = connect(acquirer).await;
        readers.push(replies(rd, 2 * PER_CONN));
        writers.push(wr);
    }
    let mut pans: Vec<HashMap<u32, String>> = vec![HashMap::new(); CONNS];
    // The first half: the issuer answers some, then stops answering.
    send_batch(&mut writers, &mut pans, 0, PER_CONN).await;
    wait_until("the issuer answered its share", || {
        rack.stats()["decode_replies"].messages_in >= ANSWERED as u64
    })
    .await;
    // The issuer dies: its listener and the link's connection close.
    host.abort();
    wait_until("the issuer link down", || {
        rack.stats()["issuer_link"].messages_out >= ANSWERED as u64 + 2
    })
    .await;
    // The second half goes out while the link is down.
    send_batch(&mut writers, &mut pans, PER_CONN, PER_CONN).await;

    let mut codes: HashMap<String, usize> = HashMap::new();
    for (c, reader) in readers.into_iter().enumerate() {
        let got = by_stan(c, collect(&rack, c, reader).await, &pans[c]);
        assert_eq!(
            got.len(),
            2 * PER_CONN,
            "connection {c}: every request answered"
        );
        for reply in got.values() {
            let code = reply.text(39).expect("a DE 39").to_owned();
            assert!(
                ["00", "68", "91"].contains(&code.as_str()),
                "approved, timed out or no destination: {code}"
            );
            *codes.entry(code).or_default() += 1;
        }
    }
    // What the issuer answered is approved, unless its reply came after the ticket's TTL
    // on a slow machine (then it is a 68 and the reply is unmatched).
    let approved = codes.get("00").copied().unwrap_or_default();
    assert!(approved > 0 && approved <= ANSWERED, "{codes:?}");
    assert_eq!(
        codes.values().sum::<usize>(),
        2 * CONNS * PER_CONN,
        "{codes:?}"
    );
    rack.shutdown(Duration::from_secs(5)).await;
}

#[test]
fn the_two_rack_switch_validates_with_guaranteed_lanes_between_its_racks() {
    let validated = crate::validated(&std::fs::read_to_string(TWO_RACKS).expect("the scenario"));
    assert_eq!(validated.racks(), ["acquirer", "issuer"]);
    let acquirer = validated.plan("acquirer");
    let issuer = validated.plan("issuer");
    let names = |plan: &rack_lib::scenario::RackPlan| -> Vec<String> {
        plan.gears.iter().map(|g| g.name.clone()).collect()
    };
    assert!(names(&acquirer).contains(&"switch".to_owned()));
    assert!(names(&issuer).contains(&"issuer_link".to_owned()));
    assert!(!names(&issuer).contains(&"switch".to_owned()));
    let crossing: Vec<_> = acquirer
        .wires
        .iter()
        .chain(&issuer.wires)
        .filter(|w| w.from.rack != w.to.rack)
        .collect();
    assert!(!crossing.is_empty(), "wires cross racks");
    for wire in crossing {
        assert_eq!(wire.lane, Lane::Guaranteed, "{wire:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_two_rack_switch_answers_terminals_across_racks() {
    let (acquirer_port, issuer_port) = (testkit::free_port(), testkit::free_port());
    let text = scenario_text(
        TWO_RACKS,
        &[
            (ACQUIRER_ADDR, &format!("127.0.0.1:{acquirer_port}")),
            (ISSUER_ADDR, &format!("127.0.0.1:{issuer_port}")),
        ],
    );
    let validated = crate::validated(&text);
    let snake = Snake::memory();
    let mut issuer = Rack::builder("issuer")
        .snake(snake.clone())
        .build()
        .expect("a rack");
    let mut acquirer = Rack::builder("acquirer")
        .snake(snake.clone())
        .build()
        .expect("a rack");
    issuer
        .apply_scenario(&validated)
        .await
        .expect("issuer applies");
    acquirer
        .apply_scenario(&validated)
        .await
        .expect("acquirer applies");
    link_up(&issuer).await;

    const CONNS: usize = 3;
    const PER_CONN: usize = 50;
    let mut writers = Vec::new();
    let mut readers = Vec::new();
    for _ in 0..CONNS {
        let (rd, wr) = connect(acquirer_port).await;
        readers.push(replies(rd, PER_CONN + 1));
        writers.push(wr);
    }
    let mut pans: Vec<HashMap<u32, String>> = vec![HashMap::new(); CONNS];
    for n in 0..PER_CONN {
        for (c, wr) in writers.iter_mut().enumerate() {
            let stan = u32::try_from(n + 1).expect("small");
            let pan = pan(if n % 2 == 0 { "411111" } else { "555555" }, n as u64);
            wr.write_all(&auth(&pan, stan, c)).await.expect("write");
            pans[c].insert(stan, pan);
        }
    }
    // And one each that no route takes, declined on the acquirer rack.
    for (c, wr) in writers.iter_mut().enumerate() {
        let pan = pan("601100", c as u64);
        wr.write_all(&auth(&pan, 9999, c)).await.expect("write");
        pans[c].insert(9999, pan);
    }
    for (c, reader) in readers.into_iter().enumerate() {
        let got = by_stan(c, collect(&acquirer, c, reader).await, &pans[c]);
        assert_eq!(got.len(), PER_CONN + 1);
        for (stan, reply) in &got {
            let want = if *stan == 9999 { "30" } else { "00" };
            assert_eq!(reply.text(39), Some(want), "connection {c}, STAN {stan}");
        }
    }
    acquirer.shutdown(Duration::from_secs(5)).await;
    issuer.shutdown(Duration::from_secs(5)).await;
}
