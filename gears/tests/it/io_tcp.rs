//! Tests of the `io_tcp` gear: real sockets on 127.0.0.1, real time. Tests wait for events
//! (a message, a counter, a closed socket), each wait bounded by `testkit::PATIENCE`.

use std::time::Duration;

use fluxmsg::FluxMsg;
use gears::io_tcp::IoTcp;
use sdk::{Category, Harness, Terminus};
use serde_json::{Value, json};
use testkit::{wait_until, within};

use super::sockets::{self, connect, expect_closed, next, read_n, text};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::time::sleep;

fn server(extra: Value) -> (Harness, String) {
    sockets::server::<IoTcp>(extra)
}

fn client(addr: &str, extra: Value) -> Harness {
    sockets::client::<IoTcp>(addr, extra)
}

fn reason(msg: &FluxMsg) -> String {
    text(msg, sdk::ERROR_REASON)
}

/// A message for the connection `request` came from.
fn reply(request: &FluxMsg, raw: &'static [u8]) -> FluxMsg {
    FluxMsg::builder()
        .meta("conn.id", text(request, "conn.id"))
        .raw(raw)
        .build()
}

fn raw(raw: &'static [u8]) -> FluxMsg {
    FluxMsg::builder().raw(raw).build()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_echo_round_trip_by_conn_id() {
    let (mut h, addr) = server(json!({}));
    let mut c = connect(&addr).await;
    c.write_all(b"hello\n").await.expect("write");

    let request = next(&mut h, "out").await;
    assert_eq!(&request.raw[..], b"hello");
    let conn_id = text(&request, "conn.id");
    assert_eq!(conn_id.len(), 16, "{conn_id}");
    assert!(conn_id.bytes().all(|b| b.is_ascii_hexdigit()), "{conn_id}");
    assert_eq!(text(&request, "peer.ip"), "127.0.0.1");
    let port = c.local_addr().expect("local address").port();
    assert_eq!(text(&request, "peer.port"), port.to_string());
    assert!(request.ts > 0, "arrival time set");

    h.send("in", reply(&request, b"world")).expect("send");
    assert_eq!(read_n(&mut c, 6).await, b"world\n");
    h.shutdown().await;
    assert!(h.error_reasons().is_empty());
    let stats = h.stats();
    assert_eq!((stats.messages_in, stats.messages_out), (1, 1));
    assert!(stats.dropped.is_empty(), "{stats:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn escaped_multi_byte_delimiter() {
    // The JSON text holds a backslash and a letter: the gear reads the escapes.
    let (mut h, addr) = server(json!({ "delimiter": "\\r\\n" }));
    let mut c = connect(&addr).await;
    c.write_all(b"a\nb\r\nc\r\n").await.expect("write");
    let first = next(&mut h, "out").await;
    assert_eq!(&first.raw[..], b"a\nb");
    assert_eq!(&next(&mut h, "out").await.raw[..], b"c");
    h.send("in", reply(&first, b"ok")).expect("send");
    assert_eq!(read_n(&mut c, 4).await, b"ok\r\n");
    h.shutdown().await;
}

/// Length-prefixed framing both ways: a frame split over several writes, then three frames
/// (one empty) in one write, then a reply.
async fn check_length_prefix(framing: &str, header: usize) {
    let (mut h, addr) = server(json!({ "framing": framing }));
    let mut c = connect(&addr).await;
    let prefix = |len: usize| -> Vec<u8> {
        let bytes = (len as u32).to_be_bytes();
        bytes[4 - header..].to_vec()
    };

    let mut split = prefix(5);
    split.extend_from_slice(b"hello");
    for part in [&split[..1], &split[1..header + 2], &split[header + 2..]] {
        c.write_all(part).await.expect("write");
        c.flush().await.expect("flush");
        // Not a synchronisation but the input: spaces the writes so that they leave as
        // separate segments and the gear sees a frame in pieces. The test holds whether or
        // not they are merged.
        sleep(Duration::from_millis(20)).await;
    }
    let mut batch = Vec::new();
    for frame in [&b"x"[..], b"", b"yz"] {
        batch.extend(prefix(frame.len()));
        batch.extend_from_slice(frame);
    }
    c.write_all(&batch).await.expect("write");

    let first = next(&mut h, "out").await;
    assert_eq!(&first.raw[..], b"hello");
    for want in [&b"x"[..], b"", b"yz"] {
        assert_eq!(&next(&mut h, "out").await.raw[..], want);
    }

    h.send("in", reply(&first, b"reply")).expect("send");
    let mut want = prefix(5);
    want.extend_from_slice(b"reply");
    assert_eq!(read_n(&mut c, header + 5).await, want);
    h.shutdown().await;
    assert!(h.error_reasons().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn length_prefix2_both_ways() {
    check_length_prefix("length_prefix2", 2).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn length_prefix4_both_ways() {
    check_length_prefix("length_prefix4", 4).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_large_frame_crosses_both_ways() {
    let (mut h, addr) = server(json!({ "framing": "length_prefix4" }));
    let mut c = connect(&addr).await;
    let body: Vec<u8> = (0..300_000_u32).map(|i| (i % 251) as u8).collect();
    let mut frame = 300_000_u32.to_be_bytes().to_vec();
    frame.extend_from_slice(&body);
    c.write_all(&frame).await.expect("write");

    let request = next(&mut h, "out").await;
    assert_eq!(request.raw.len(), body.len());
    assert!(request.raw[..] == body[..], "the frame arrives intact");
    h.send("in", request).expect("send the frame back");
    assert!(
        read_n(&mut c, frame.len()).await == frame,
        "and returns intact"
    );
    h.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replies_reach_the_right_client() {
    let (mut h, addr) = server(json!({}));
    let mut a = connect(&addr).await;
    let mut b = connect(&addr).await;
    a.write_all(b"from-a\n").await.expect("write a");
    b.write_all(b"from-b\n").await.expect("write b");
    let mut from_a = None;
    let mut from_b = None;
    for _ in 0..2 {
        let msg = next(&mut h, "out").await;
        match &msg.raw[..] {
            b"from-a" => from_a = Some(msg),
            b"from-b" => from_b = Some(msg),
            other => panic!("unexpected frame {other:?}"),
        }
    }
    let (from_a, from_b) = (from_a.expect("a's frame"), from_b.expect("b's frame"));
    assert_ne!(text(&from_a, "conn.id"), text(&from_b, "conn.id"));

    // Replies in the other order, each to its own connection.
    h.send("in", reply(&from_b, b"to-b")).expect("send");
    h.send("in", reply(&from_a, b"to-a")).expect("send");
    assert_eq!(read_n(&mut a, 5).await, b"to-a\n");
    assert_eq!(read_n(&mut b, 5).await, b"to-b\n");
    h.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_conn_id_the_only_connection_gets_it() {
    let (mut h, addr) = server(json!({}));
    let mut c = connect(&addr).await;
    c.write_all(b"hi\n").await.expect("write");
    next(&mut h, "out").await; // The gear has registered the connection.
    h.send("in", raw(b"broadcast")).expect("send");
    assert_eq!(read_n(&mut c, 10).await, b"broadcast\n");
    h.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_conn_id_two_connections_are_ambiguous() {
    let (mut h, addr) = server(json!({}));
    let mut a = connect(&addr).await;
    let mut b = connect(&addr).await;
    a.write_all(b"a\n").await.expect("write a");
    b.write_all(b"b\n").await.expect("write b");
    next(&mut h, "out").await;
    next(&mut h, "out").await;

    h.send("in", raw(b"which?")).expect("send");
    let error = next(&mut h, "error").await;
    assert_eq!(reason(&error), "ambiguous_route");
    assert_eq!(&error.raw[..], b"which?", "the error keeps the message");
    h.shutdown().await;
    // Read once the gear's tasks are done: an emission is counted just after it is sent.
    assert_eq!(h.stats().errors, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_or_closed_conn_id_is_no_connection() {
    let (mut h, addr) = server(json!({}));

    // Not a connection id at all: refused on the spot.
    let bad = FluxMsg::builder()
        .meta("conn.id", "zz")
        .raw(&b"x"[..])
        .build();
    h.send("in", bad).expect("send");
    assert_eq!(h.error_reasons(), ["no_connection"]);

    // Nothing open, no conn.id.
    h.send("in", raw(b"nobody")).expect("send");
    assert_eq!(reason(&next(&mut h, "error").await), "no_connection");

    // A well-formed id that this gear never gave.
    let mut c = connect(&addr).await;
    c.write_all(b"hi\n").await.expect("write");
    let request = next(&mut h, "out").await;
    let unknown = FluxMsg::builder()
        .meta("conn.id", "00000000ffffffff")
        .raw(&b"x"[..])
        .build();
    h.send("in", unknown).expect("send");
    assert_eq!(reason(&next(&mut h, "error").await), "no_connection");

    // A connection that closed: once the gear has noticed, its id is refused. Until then a
    // reply is queued for it, so the test sends again until one is refused.
    drop(c);
    wait_until("a reply to the closed connection to be refused", || {
        h.send("in", reply(&request, b"late")).expect("send");
        h.error_reasons()
            .iter()
            .any(|reason| reason == "no_connection")
    })
    .await;
    h.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_connections_closes_the_extra_connection() {
    let (mut h, addr) = server(json!({ "max_connections": 1 }));
    let mut a = connect(&addr).await;
    a.write_all(b"a\n").await.expect("write");
    let request = next(&mut h, "out").await;

    let mut b = connect(&addr).await;
    expect_closed(&mut b).await;
    assert_eq!(h.stats().dropped("max_connections"), 1);

    // The first connection is unaffected.
    h.send("in", reply(&request, b"still here")).expect("send");
    assert_eq!(read_n(&mut a, 11).await, b"still here\n");
    h.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_over_the_per_peer_cap_are_closed() {
    let (mut h, addr) = server(json!({ "max_connections_per_peer": 2 }));
    let mut a = connect(&addr).await;
    let mut b = connect(&addr).await;
    for (c, frame) in [(&mut a, &b"a\n"[..]), (&mut b, &b"b\n"[..])] {
        c.write_all(frame).await.expect("write");
        next(&mut h, "out").await;
    }
    // A third connection from the same address is closed at once.
    let mut third = connect(&addr).await;
    expect_closed(&mut third).await;
    assert_eq!(h.stats().dropped("max_connections_per_peer"), 1);
    // Once one closes, the address may connect again (as soon as the gear has seen the
    // close: until then a new connection is refused, so try again).
    drop(a);
    let mut again = None;
    for _ in 0..100 {
        let mut c = connect(&addr).await;
        c.write_all(b"again\n").await.expect("write");
        if let Ok(Some(_)) = tokio::time::timeout(Duration::from_millis(200), h.recv("out")).await {
            again = Some(c);
            break;
        }
    }
    assert!(
        again.is_some(),
        "a new connection is served once one closed"
    );
    h.shutdown().await;
}

/// A peer that starts a frame and then sends a byte now and then (never the delimiter) is
/// closed once the frame's time is up, although the connection is never idle.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frame_that_never_completes_closes_its_connection() {
    let (mut h, addr) = server(json!({ "frame_timeout": "300ms", "idle_timeout": "60s" }));
    let mut c = connect(&addr).await;
    c.write_all(b"done\nstart").await.expect("write");
    assert_eq!(&next(&mut h, "out").await.raw[..], b"done");
    // The input of this test: a trickle of bytes, 100 ms apart, until the gear hangs up.
    let closed = within("the gear to close a trickling connection", async {
        loop {
            sleep(Duration::from_millis(100)).await;
            if c.write_all(b"x").await.is_err() {
                return;
            }
            let mut byte = [0; 1];
            if let Ok(Ok(0)) =
                tokio::time::timeout(Duration::from_millis(1), c.read(&mut byte)).await
            {
                return;
            }
        }
    });
    closed.await;
    wait_until("the frame timeout to be counted", || {
        h.stats().dropped("frame_timeout") == 1
    })
    .await;
    h.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oversized_frame_closes_its_connection() {
    let (mut h, addr) = server(json!({ "max_frame": 8 }));
    let mut c = connect(&addr).await;
    // A frame at the limit passes; the next one never ends within the limit.
    c.write_all(b"12345678\n123456789").await.expect("write");
    assert_eq!(&next(&mut h, "out").await.raw[..], b"12345678");
    expect_closed(&mut c).await;
    assert_eq!(h.stats().dropped("oversized_frame"), 1);

    // Other connections go on.
    let mut d = connect(&addr).await;
    d.write_all(b"fine\n").await.expect("write");
    assert_eq!(&next(&mut h, "out").await.raw[..], b"fine");
    h.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oversized_length_prefix_closes_at_once() {
    let (mut h, addr) = server(json!({ "framing": "length_prefix4", "max_frame": 16 }));
    let mut c = connect(&addr).await;
    // Announces 1 GiB and sends nothing more: the gear must not wait for it.
    c.write_all(&(1_u32 << 30).to_be_bytes())
        .await
        .expect("write");
    expect_closed(&mut c).await;
    assert_eq!(h.stats().dropped("oversized_frame"), 1);
    h.shutdown().await;
}

/// The `max_frame` of the budget tests: 64 KiB, well above a read buffer's free 8 KiB.
const BIG_MAX_FRAME: u32 = 64 * 1024;

/// A 4-byte length prefix declaring `len` bytes, followed by the first `sent` of them.
fn frame_start(len: u32, sent: usize) -> Vec<u8> {
    let mut frame = len.to_be_bytes().to_vec();
    frame.extend((0..sent).map(|i| (i % 251) as u8));
    frame
}

/// Several peers each send 40,000 bytes of a 60,000-byte frame and stall. Each holds a
/// 64 KiB read buffer, 56 KiB of it charged to the gear's budget of three maximum frames:
/// three fit, the others are closed and counted. A polite peer's small frames go on, a
/// large frame is refused while the stalled peers hold the budget, and passes once they
/// have left.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stalled_partial_frames_share_one_budget() {
    let (mut h, addr) = server(json!({
        "framing": "length_prefix4",
        "max_frame": BIG_MAX_FRAME,
        "partial_frame_budget": 3 * BIG_MAX_FRAME,
    }));
    let mut polite = connect(&addr).await;
    let small = |body: &[u8]| {
        let mut frame = (body.len() as u32).to_be_bytes().to_vec();
        frame.extend_from_slice(body);
        frame
    };
    polite.write_all(&small(b"before")).await.expect("write");
    assert_eq!(&next(&mut h, "out").await.raw[..], b"before");

    const HOSTILE: usize = 6;
    let mut closed = tokio::task::JoinSet::new();
    let mut writers = Vec::new();
    for _ in 0..HOSTILE {
        let (mut rd, mut wr) = connect(&addr).await.into_split();
        // The gear may close this peer while it writes: a failed write is expected then.
        let _ = wr.write_all(&frame_start(60_000, 40_000)).await;
        writers.push(wr);
        // Ends when the gear closes the connection; the gear never writes to it.
        closed.spawn(async move {
            let mut buf = [0; 64];
            if let Ok(n @ 1..) = rd.read(&mut buf).await {
                panic!("the gear wrote {:?} to a stalled peer", &buf[..n]);
            }
        });
    }
    // Whatever order the gear reads them in, it ends with three holding the budget: the
    // last one refused found more than two others' worth taken.
    wait_until("three stalled peers refused", || {
        h.stats().dropped("partial_frame_budget") == (HOSTILE - 3) as u64
    })
    .await;
    for _ in 0..HOSTILE - 3 {
        within("a refused peer to be closed", closed.join_next())
            .await
            .expect("a peer task")
            .expect("the peer task ends cleanly");
    }

    // The polite peer's frames never needed more than the free first chunk of its buffer.
    polite.write_all(&small(b"during")).await.expect("write");
    assert_eq!(&next(&mut h, "out").await.raw[..], b"during");

    // A whole large frame needs budget that the stalled peers hold.
    let mut large = connect(&addr).await;
    let _ = large.write_all(&frame_start(60_000, 60_000)).await;
    expect_closed(&mut large).await;
    assert_eq!(
        h.stats().dropped("partial_frame_budget"),
        (HOSTILE - 2) as u64
    );

    // The stalled peers leave; once the gear has closed them, their budget is back.
    drop(writers);
    while let Some(done) = within("the stalled peers to be closed", closed.join_next()).await {
        done.expect("the peer task ends cleanly");
    }
    let mut large = connect(&addr).await;
    large
        .write_all(&frame_start(60_000, 60_000))
        .await
        .expect("write");
    let frame = next(&mut h, "out").await;
    assert_eq!(frame.raw.len(), 60_000);
    polite.write_all(&small(b"after")).await.expect("write");
    assert_eq!(&next(&mut h, "out").await.raw[..], b"after");
    h.shutdown().await;
    assert_eq!(
        h.stats().dropped("partial_frame_budget"),
        (HOSTILE - 2) as u64,
        "{:?}",
        h.stats()
    );
}

/// A length prefix alone reserves nothing: with a budget of one maximum frame, a peer that
/// declared a large frame and sent none of it leaves room for another's whole large frame,
/// and the budget a completed frame held is given back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_declared_length_takes_no_budget_before_its_bytes() {
    let (mut h, addr) = server(json!({
        "framing": "length_prefix4",
        "max_frame": BIG_MAX_FRAME,
        "partial_frame_budget": BIG_MAX_FRAME,
    }));
    // One write, one segment on loopback: once "a" is out, the gear has read the prefix of
    // the 60,000-byte frame behind it.
    let mut declared = connect(&addr).await;
    let mut bytes = frame_start(1, 0);
    bytes.push(b'a');
    bytes.extend(frame_start(60_000, 0));
    declared.write_all(&bytes).await.expect("write");
    assert_eq!(&next(&mut h, "out").await.raw[..], b"a");

    let mut whole = connect(&addr).await;
    whole
        .write_all(&frame_start(60_000, 60_000))
        .await
        .expect("write");
    assert_eq!(next(&mut h, "out").await.raw.len(), 60_000);
    // The next frame is read after the large one's buffer was given back.
    whole.write_all(&frame_start(0, 0)).await.expect("write");
    assert!(next(&mut h, "out").await.raw.is_empty());

    // Now the declared frame's bytes arrive, and it has the whole budget to itself.
    declared
        .write_all(&frame_start(60_000, 60_000)[4..])
        .await
        .expect("write");
    assert_eq!(next(&mut h, "out").await.raw.len(), 60_000);
    h.shutdown().await;
    assert!(h.stats().dropped.is_empty(), "{:?}", h.stats());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_connection_is_closed() {
    let (mut h, addr) = server(json!({ "idle_timeout": "200ms" }));
    let mut c = connect(&addr).await;
    c.write_all(b"x\n").await.expect("write");
    next(&mut h, "out").await;
    // Nothing else happens on the connection: only the idle timeout can close it, cleanly,
    // losing nothing.
    expect_closed(&mut c).await;
    h.shutdown().await;
    assert!(h.error_reasons().is_empty());
    let stats = h.stats();
    assert_eq!((stats.messages_out, stats.errors), (1, 0), "{stats:?}");
    assert!(stats.dropped.is_empty(), "{stats:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drain_flushes_buffered_replies_then_closes() {
    let (mut h, addr) = server(json!({}));
    let mut c = connect(&addr).await;
    c.write_all(b"q\n").await.expect("write");
    let request = next(&mut h, "out").await;
    for body in [&b"r1"[..], b"r2", b"r3"] {
        h.send("in", reply(&request, body)).expect("send");
    }
    h.shutdown().await;
    assert_eq!(read_n(&mut c, 9).await, b"r1\nr2\nr3\n");
    expect_closed(&mut c).await;
    assert!(h.stats().dropped.is_empty(), "{:?}", h.stats());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn frames_read_but_not_emitted_at_drain_count_as_shutdown() {
    // Room for one emission: the first frame fills the engine, the second waits for room,
    // the last two wait in the read buffer.
    let mut last_error = None;
    let mut started = None;
    for _ in 0..5 {
        let addr = format!("127.0.0.1:{}", testkit::free_port());
        let mut h = Harness::builder(sdk::DynGearType::of::<IoTcp>().expect("registers"))
            .emit_capacity(1)
            .build(&json!({ "mode": "server", "bind": addr }))
            .expect("a valid server config");
        match h.start() {
            Ok(()) => {
                started = Some((h, addr));
                break;
            }
            Err(e) => last_error = Some(e),
        }
    }
    let (mut h, addr) =
        started.unwrap_or_else(|| panic!("the server cannot bind a free port: {last_error:?}"));
    let mut c = connect(&addr).await;
    // One write, one segment on loopback: the gear reads the four frames at once, so once the
    // first is emitted the other three are in its read buffer (the second waiting for room
    // or about to), and the drain counts all three, wherever it finds the gear.
    c.write_all(b"a\nb\nc\nd\n").await.expect("write");
    wait_until("the first emission", || h.stats().messages_out >= 1).await;
    h.shutdown().await;
    assert_eq!(h.take("out").len(), 1);
    assert_eq!(h.stats().dropped("shutdown"), 3, "{:?}", h.stats());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_payload_too_long_for_its_prefix_is_refused() {
    let (mut h, _addr) = server(json!({ "framing": "length_prefix2" }));
    h.send("in", FluxMsg::builder().raw(vec![0_u8; 70_000]).build())
        .expect("send");
    assert_eq!(h.error_reasons(), ["frame_too_long"]);
    h.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_taken_port_fails_start() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = taken.local_addr().expect("address");
    let mut h = Harness::new::<IoTcp>(&json!({ "mode": "server", "bind": addr.to_string() }))
        .expect("a valid config: nothing is bound before start");
    let err = testkit::chain(&h.start().expect_err("the port is taken"));
    assert!(err.contains("start") && err.contains("bind"), "{err}");
    assert!(err.contains(&addr.to_string()), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_reconnects_to_a_late_listener() {
    let addr = format!("127.0.0.1:{}", testkit::free_port());
    let mut h = client(
        &addr,
        json!({ "reconnect_wait": "20ms", "reconnect_max": "80ms" }),
    );
    h.send("in", raw(b"early")).expect("send");
    // Not a synchronisation but the input: time without a server, in which connection
    // attempts fail and are retried. Nothing below depends on how many failed (none, on a
    // very slow machine): the message is buffered until a connection exists either way.
    sleep(Duration::from_millis(200)).await;

    let listener = TcpListener::bind(&addr)
        .await
        .expect("bind the late server");
    let (mut s, _) = within("the client to connect", listener.accept())
        .await
        .expect("accept");
    assert_eq!(read_n(&mut s, 6).await, b"early\n", "buffered while down");

    s.write_all(b"resp\n").await.expect("write");
    let response = next(&mut h, "out").await;
    assert_eq!(&response.raw[..], b"resp");
    assert_eq!(text(&response, "peer.ip"), "127.0.0.1");
    assert_eq!(
        text(&response, "peer.port"),
        addr.rsplit(':').next().expect("port")
    );
    let first_conn = text(&response, "conn.id");

    h.send("in", raw(b"later")).expect("send");
    assert_eq!(read_n(&mut s, 6).await, b"later\n");

    // The server drops the connection: the client comes back on its own.
    drop(s);
    let (mut s, _) = within("the client to reconnect", listener.accept())
        .await
        .expect("accept");
    h.send("in", raw(b"again")).expect("send");
    assert_eq!(read_n(&mut s, 6).await, b"again\n");
    s.write_all(b"r2\n").await.expect("write");
    let response = next(&mut h, "out").await;
    assert_ne!(
        text(&response, "conn.id"),
        first_conn,
        "a new connection id"
    );

    h.shutdown().await;
    assert!(h.error_reasons().is_empty());
    assert!(h.stats().dropped.is_empty(), "{:?}", h.stats());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_buffer_overflow_drops_the_oldest() {
    let addr = format!("127.0.0.1:{}", testkit::free_port());
    let mut h = client(
        &addr,
        json!({ "max_buffered_messages": 3, "reconnect_wait": "20ms", "reconnect_max": "50ms" }),
    );
    for i in 0..10 {
        h.send("in", FluxMsg::builder().raw(format!("m{i}")).build())
            .expect("send");
    }
    wait_until("7 drops", || h.stats().dropped("buffer_full") == 7).await;

    let listener = TcpListener::bind(&addr)
        .await
        .expect("bind the late server");
    let (mut s, _) = within("the client to connect", listener.accept())
        .await
        .expect("accept");
    assert_eq!(read_n(&mut s, 9).await, b"m7\nm8\nm9\n");
    h.shutdown().await;
    expect_closed(&mut s).await;
    assert_eq!(h.stats().dropped("buffer_full"), 7);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_drain_while_disconnected_counts_what_is_left() {
    let addr = format!("127.0.0.1:{}", testkit::free_port());
    let mut h = client(&addr, json!({ "reconnect_wait": "1s" }));
    h.send("in", raw(b"never")).expect("send");
    h.shutdown().await;
    assert_eq!(h.stats().dropped("shutdown"), 1);
}

/// Builds a gear from `config` and checks the error names each of `expect`.
#[track_caller]
fn check_config_error(config: &Value, expect: &[&str]) {
    let err = testkit::chain(&Harness::new::<IoTcp>(config).expect_err("the config is refused"));
    for want in expect {
        assert!(err.contains(want), "{err:?} should mention {want:?}");
    }
}

#[test]
fn config_errors_name_the_field() {
    check_config_error(&json!({}), &["mode"]);
    check_config_error(
        &json!({ "mode": "client" }),
        &["config.connect", "required in client mode"],
    );
    check_config_error(&json!({ "mode": "server", "bnd": ":80" }), &["bnd"]);
    check_config_error(
        &json!({ "mode": "server", "framing": "bogus" }),
        &["config.framing", "bogus", "length_prefix2"],
    );
    check_config_error(
        &json!({ "mode": "server", "delimiter": "\\q" }),
        &["config.delimiter", "unknown escape"],
    );
    check_config_error(
        &json!({ "mode": "server", "connect": "a:1" }),
        &["config.connect", "only used in client mode"],
    );
    check_config_error(
        &json!({ "mode": "client", "connect": "no-port" }),
        &["config.connect", "host:port"],
    );
    check_config_error(
        &json!({ "mode": "server", "bind": "0.0.0.0:99999" }),
        &["config.bind", "port"],
    );
    check_config_error(
        &json!({ "mode": "client", "connect": "a:1", "reconnect_wait": "10s", "reconnect_max": "1s" }),
        &["config.reconnect_wait", "reconnect_max"],
    );
    check_config_error(
        &json!({ "mode": "server", "idle_timeout": "soon" }),
        &["idle_timeout"],
    );
    check_config_error(
        &json!({ "mode": "server", "max_buffered_messages": 0 }),
        &["config.max_buffered_messages"],
    );
}

#[test]
fn a_partial_frame_budget_below_max_frame_is_refused() {
    check_config_error(
        &json!({ "mode": "server", "max_frame": 4096, "partial_frame_budget": 4095 }),
        &["config.partial_frame_budget", "max_frame", "4096"],
    );
    // Against the default max_frame (1 MiB) too.
    check_config_error(
        &json!({ "mode": "server", "partial_frame_budget": 65536 }),
        &["config.partial_frame_budget", "max_frame"],
    );
    Harness::new::<IoTcp>(
        &json!({ "mode": "server", "max_frame": 4096, "partial_frame_budget": 4096 }),
    )
    .expect("a budget of one maximum frame");
}

#[test]
fn defaults_and_registration() {
    // Validation opens nothing: a client to nowhere and a server on a privileged port build.
    Harness::new::<IoTcp>(&json!({ "mode": "client", "connect": "192.0.2.1:9" }))
        .expect("a client config");
    Harness::new::<IoTcp>(&json!({ "mode": "server", "bind": ":80" })).expect("a server config");

    let factory = gears::Factory::builtin();
    let kind = factory.get("io_tcp").expect("io_tcp is built in");
    let manifest = kind.manifest();
    assert_eq!(manifest.category, Category::Io);
    assert_eq!(manifest.terminus, Terminus::Io);
    assert!(!manifest.summary.is_empty());
    let ports: Vec<&str> = manifest.ports.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(ports, ["error", "in", "out"]);
    let schema = manifest.config_schema.to_string();
    for key in [
        "max_buffered_messages",
        "length_prefix4",
        "reconnect_max",
        "partial_frame_budget",
    ] {
        assert!(schema.contains(key), "the schema documents {key}");
    }
}
