//! Tests of the `conductor` gear.

use std::collections::HashMap;
use std::time::Duration;

use fluxmsg::{FluxMsg, Value};
use gears::conductor::Conductor;
use rand::SeedableRng;
use rand::rngs::ChaCha8Rng;
use rand::seq::SliceRandom;
use sdk::{DECISION_META, DynGearType, Harness};
use serde_json::json;

/// The switch of most tests: Visa by prefix to a failover pair, the rest to `out_rest`.
fn config() -> serde_json::Value {
    json!({
        "correlation_key": {
            "default": ["data.iso8583.field.11", "data.iso8583.field.7",
                        "data.iso8583.field.32", "data.iso8583.field.41"],
            "08": ["data.iso8583.field.11", "data.iso8583.field.37"]
        },
        "park_fields": ["data.iso8583.field.62"],
        "valet": { "default_ttl": "30s", "retain_after_close": "5s" },
        "routes": [
            { "name": "visa", "match": { "field": "data.iso8583.field.2", "prefix": "4" },
              "destination": { "failover": ["out_visa_a", "out_visa_b"] } },
            { "name": "rest", "destination": "out_rest" }
        ]
    })
}

fn harness(config: &serde_json::Value) -> Harness {
    Harness::new::<Conductor>(config).expect("a valid configuration")
}

/// An authorisation request with STAN `stan` from the connection `conn`.
fn auth(mti: &str, stan: u32, conn: &str, pan: &str) -> FluxMsg {
    FluxMsg::builder()
        .meta("iso8583.mti", mti)
        .meta("conn.id", conn)
        .meta("peer.ip", "10.0.0.1")
        .data_path("iso8583.field.2", pan)
        .and_then(|b| b.data_path("iso8583.field.7", "1207223000"))
        .and_then(|b| b.data_path("iso8583.field.11", format!("{stan:06}")))
        .and_then(|b| b.data_path("iso8583.field.32", "123456"))
        .and_then(|b| b.data_path("iso8583.field.41", "TERM0001"))
        .and_then(|b| b.data_path("iso8583.field.62", format!("private-{stan}")))
        .expect("valid paths")
        .build()
}

/// The issuer's reply to a request as the conductor sent it: the response MTI, the issuer
/// link's own connection, a response code.
fn reply_to(sent: &FluxMsg) -> FluxMsg {
    let mut reply = sent.clone();
    let mti = meta(sent, "iso8583.mti").expect("an MTI");
    let mut digits: Vec<u8> = mti.bytes().collect();
    digits[2] += 1;
    reply.meta.insert(
        "iso8583.mti",
        String::from_utf8(digits).expect("digits").into(),
    );
    reply.meta.insert("conn.id", "issuer-link".into());
    reply.meta.insert("iso8583.tpdu", "6000010000".into());
    reply
        .data
        .set_path("iso8583.field.39", "00")
        .expect("a path");
    reply
}

fn meta<'a>(msg: &'a FluxMsg, key: &str) -> Option<&'a str> {
    msg.meta.get(key).map(|t| t.as_str())
}

fn field(msg: &FluxMsg, n: u32) -> Option<&str> {
    msg.data
        .get_path(&format!("iso8583.field.{n}"))
        .and_then(Value::as_str)
}

fn decision(msg: &FluxMsg) -> &str {
    meta(msg, DECISION_META).unwrap_or("")
}

#[test]
fn ten_thousand_interleaved_requests_each_get_their_own_reply() {
    let mut h = harness(&config());
    let conns = ["c0", "c1", "c2", "c3", "c4"];
    let mut owner = HashMap::new();
    for i in 0..10_000u32 {
        let conn = conns[(i as usize * 7 + i as usize / 3) % conns.len()];
        owner.insert(format!("{i:06}"), conn);
        let pan = if i % 3 == 0 {
            "5500000000000004"
        } else {
            "4111111111111111"
        };
        h.send("in", auth("0100", i, conn, pan)).expect("processed");
    }
    let mut sent = h.take("out_visa_a");
    let rest = h.take("out_rest");
    assert_eq!(sent.len() + rest.len(), 10_000);
    assert_eq!(rest.len(), 3334);
    sent.extend(rest);
    for msg in &sent {
        assert_eq!(meta(msg, "conn.id"), None, "the return context stays home");
        assert_eq!(meta(msg, "peer.ip"), None);
        assert_eq!(field(msg, 62), None, "parked");
    }
    let mut replies: Vec<FluxMsg> = sent.iter().map(reply_to).collect();
    replies.shuffle(&mut ChaCha8Rng::seed_from_u64(17));
    for chunk in replies.chunks(97) {
        h.send_batch("in_reply", chunk.iter().cloned())
            .expect("processed");
    }
    let answered = h.take("out_response");
    assert_eq!(answered.len(), 10_000);
    assert!(h.take("error").is_empty());
    let mut seen = HashMap::new();
    for msg in &answered {
        let stan = field(msg, 11).expect("a STAN");
        assert_eq!(
            meta(msg, "conn.id"),
            Some(owner[stan]),
            "STAN {stan} crossed"
        );
        assert_eq!(meta(msg, "peer.ip"), Some("10.0.0.1"));
        assert_eq!(
            meta(msg, "iso8583.tpdu"),
            None,
            "the issuer side's TPDU is not the terminal's"
        );
        assert_eq!(
            field(msg, 62),
            Some(
                format!(
                    "private-{}",
                    stan.trim_start_matches('0').parse::<u32>().unwrap_or(0)
                )
                .as_str()
            )
        );
        assert_eq!(field(msg, 39), Some("00"));
        assert_eq!(decision(msg), "reply -> out_response");
        *seen.entry(stan.to_owned()).or_insert(0) += 1;
    }
    assert!(seen.values().all(|n| *n == 1), "one reply per request");
    assert_eq!(h.stats().errors, 0);
}

#[test]
fn a_retransmission_attaches_and_every_requester_gets_the_reply() {
    let mut h = harness(&config());
    h.send("in", auth("0100", 1, "a", "4111"))
        .expect("processed");
    // A repeat (0101) from another connection, then the same connection again.
    h.send("in", auth("0101", 1, "b", "4111"))
        .expect("processed");
    h.send("in", auth("0101", 1, "a", "4111"))
        .expect("processed");
    let sent = h.take("out_visa_a");
    assert_eq!(sent.len(), 1, "retransmissions are not sent again");
    assert_eq!(h.stats().dropped("attached"), 1);
    assert_eq!(h.stats().dropped("retransmission"), 1);
    h.send("in_reply", reply_to(&sent[0])).expect("processed");
    let mut conns: Vec<String> = h
        .take("out_response")
        .iter()
        .map(|m| meta(m, "conn.id").unwrap_or("").to_owned())
        .collect();
    conns.sort();
    assert_eq!(conns, ["a", "b"]);
}

#[test]
fn a_recently_closed_key_replays_its_reply_and_then_opens_anew() {
    let mut h = harness(&config());
    h.send("in", auth("0100", 5, "a", "4111"))
        .expect("processed");
    let sent = h.take("out_visa_a");
    h.send("in_reply", reply_to(&sent[0])).expect("processed");
    assert_eq!(h.take("out_response").len(), 1);

    h.clock().advance(Duration::from_secs(4));
    h.send("in", auth("0101", 5, "c", "4111"))
        .expect("processed");
    let replay = h.take("out_response");
    assert_eq!(replay.len(), 1);
    assert_eq!(meta(&replay[0], "conn.id"), Some("c"));
    assert_eq!(meta(&replay[0], "iso8583.mti"), Some("0110"));
    assert_eq!(field(&replay[0], 62), Some("private-5"));
    assert_eq!(decision(&replay[0]), "replay -> out_response");
    assert!(h.take("out_visa_a").is_empty(), "not sent again");

    // Past the retention, the same key is a new transaction.
    h.clock().advance(Duration::from_secs(2));
    h.send("in", auth("0100", 5, "d", "4111"))
        .expect("processed");
    assert_eq!(h.take("out_visa_a").len(), 1);
}

#[tokio::test(start_paused = true)]
async fn an_expired_ticket_sends_its_request_to_error_with_timeout() {
    let mut h = harness(&config());
    h.start().expect("started");
    h.send("in", auth("0100", 9, "a", "4111"))
        .expect("processed");
    h.send("in", auth("0101", 9, "b", "4111"))
        .expect("processed");
    let sent = h.take("out_visa_a");
    h.advance(Duration::from_secs(29)).await;
    assert!(h.take("error").is_empty(), "not yet");
    h.advance(Duration::from_secs(2)).await;
    let first = h.recv("error").await.expect("a timeout");
    let second = h.recv("error").await.expect("a timeout per requester");
    let mut conns = Vec::new();
    for msg in [&first, &second] {
        assert_eq!(meta(msg, "error.reason"), Some("timeout"));
        assert_eq!(decision(msg), "timeout on out_visa_a");
        assert_eq!(field(msg, 62), Some("private-9"), "the original request");
        conns.push(meta(msg, "conn.id").unwrap_or("").to_owned());
    }
    conns.sort();
    assert_eq!(conns, ["a", "b"]);
    // A reply after the deadline matches nothing.
    h.send("in_reply", reply_to(&sent[0])).expect("processed");
    assert_eq!(h.error_reasons(), ["unmatched_reply"]);
    h.shutdown().await;
}

#[test]
fn an_expired_ticket_is_swept_by_the_next_message_too() {
    let mut h = harness(&config());
    h.send("in", auth("0100", 1, "a", "4111"))
        .expect("processed");
    h.clock().advance(Duration::from_secs(31));
    h.send("in", auth("0100", 2, "a", "4111"))
        .expect("processed");
    assert_eq!(h.error_reasons(), ["timeout"]);
    assert_eq!(h.take("out_visa_a").len(), 2);
}

#[test]
fn network_management_replies_without_de41_match_by_their_class_key() {
    let mut h = harness(&config());
    let echo = FluxMsg::builder()
        .meta("iso8583.mti", "0800")
        .meta("conn.id", "acq-1")
        .data_path("iso8583.field.11", "000777")
        .and_then(|b| b.data_path("iso8583.field.37", "123456789012"))
        .and_then(|b| b.data_path("iso8583.field.70", "301"))
        .expect("paths")
        .build();
    h.send("in", echo).expect("processed");
    let sent = h.take("out_rest");
    assert_eq!(sent.len(), 1);
    h.send("in_reply", reply_to(&sent[0])).expect("processed");
    let answered = h.take("out_response");
    assert_eq!(answered.len(), 1);
    assert_eq!(meta(&answered[0], "conn.id"), Some("acq-1"));
    assert_eq!(meta(&answered[0], "iso8583.mti"), Some("0810"));
}

#[test]
fn refusals_carry_their_reasons() {
    let mut h = harness(&json!({
        "correlation_key": ["iso8583.field.11", "iso8583.field.41"],
        "routes": [ { "match": { "field": "data.iso8583.field.2", "ranges": [ { "from": "400000", "to": "499999" } ] },
                      "destination": "out_visa" } ]
    }));
    // No route: a PAN outside every range.
    h.send("in", auth("0100", 1, "a", "5500000000000004"))
        .expect("processed");
    // No key: DE 41 missing.
    let mut no41 = auth("0100", 2, "a", "4111111111111111");
    no41.data.remove_path("iso8583.field.41");
    h.send("in", no41).expect("processed");
    // A bad MTI.
    let mut bad = auth("0100", 3, "a", "4111111111111111");
    bad.meta.insert("iso8583.mti", "01X0".into());
    h.send("in", bad).expect("processed");
    // A reply nobody waits for, and a request on the reply port.
    h.send("in_reply", auth("0110", 4, "x", "4111111111111111"))
        .expect("processed");
    h.send("in_reply", auth("0100", 5, "x", "4111111111111111"))
        .expect("processed");
    // No destination: the only port is unavailable.
    h.port_status("out_visa").set_available(false);
    h.send("in", auth("0100", 6, "a", "4111111111111111"))
        .expect("processed");
    let errors = h.take("error");
    let reasons: Vec<&str> = errors
        .iter()
        .map(|m| meta(m, "error.reason").unwrap_or(""))
        .collect();
    assert_eq!(
        reasons,
        [
            "no_route",
            "no_key",
            "bad_mti",
            "unmatched_reply",
            "not_a_reply",
            "no_destination"
        ]
    );
    assert_eq!(
        meta(&errors[1], "error.detail"),
        Some("data.iso8583.field.41 is missing")
    );
    assert_eq!(decision(&errors[0]), "no_route");
    assert_eq!(
        decision(&errors[5]),
        "route 0 -> no_destination (out_visa unavailable)"
    );
    assert_eq!(h.stats().errors, 6);
    // The refused request keeps its return context for whoever answers it.
    assert_eq!(meta(&errors[0], "conn.id"), Some("a"));
}

#[test]
fn parked_fields_leave_with_the_ticket_and_come_back_on_the_reply() {
    let mut h = harness(&config());
    h.send("in", auth("0200", 3, "a", "4111"))
        .expect("processed");
    let sent = h.take("out_visa_a");
    assert_eq!(field(&sent[0], 62), None);
    assert_eq!(field(&sent[0], 11), Some("000003"));
    let mut reply = reply_to(&sent[0]);
    reply
        .data
        .set_path("iso8583.field.62", "issuer's own")
        .expect("path");
    h.send("in_reply", reply).expect("processed");
    let answered = h.take("out_response");
    assert_eq!(field(&answered[0], 62), Some("private-3"));
    assert_eq!(meta(&answered[0], "iso8583.mti"), Some("0210"));
}

fn breaker_config() -> serde_json::Value {
    json!({
        "correlation_key": ["data.iso8583.field.11"],
        "valet": { "default_ttl": "1s", "retain_after_close": "0s" },
        "routes": [ { "destination": { "failover": ["out_a", "out_b"] } } ],
        "breaker": { "trip_after": 2, "cooldown": "10s", "half_open_probes": 1 }
    })
}

#[test]
fn the_breaker_trips_after_timeouts_fails_over_and_recovers_through_a_probe() {
    let mut h = harness(&breaker_config());
    let clock = h.clock().clone();
    let mut stan = 0;
    let mut send = |h: &mut Harness| {
        stan += 1;
        h.send("in", auth("0100", stan, "a", "4111"))
            .expect("processed");
    };
    send(&mut h);
    send(&mut h);
    assert_eq!(h.take("out_a").len(), 2);
    // Both time out: the next message sweeps them, and out_a is open.
    clock.advance(Duration::from_secs(2));
    send(&mut h);
    assert_eq!(h.error_reasons(), ["timeout", "timeout"]);
    let failed_over = h.take("out_b");
    assert_eq!(failed_over.len(), 1);
    assert_eq!(
        decision(&failed_over[0]),
        "route 0 -> out_b (failover: out_a unavailable)"
    );
    h.send("in_reply", reply_to(&failed_over[0]))
        .expect("processed");
    assert_eq!(h.take("out_response").len(), 1);
    // Still cooling down.
    clock.advance(Duration::from_secs(5));
    send(&mut h);
    let b = h.take("out_b");
    assert_eq!(b.len(), 1);
    h.send("in_reply", reply_to(&b[0])).expect("processed");
    // Cooled down: one probe goes to out_a, the next request to out_b meanwhile.
    clock.advance(Duration::from_secs(6));
    send(&mut h);
    send(&mut h);
    let probe = h.take("out_a");
    assert_eq!(probe.len(), 1, "one probe");
    let b = h.take("out_b");
    assert_eq!(b.len(), 1);
    h.send("in_reply", reply_to(&b[0])).expect("processed");
    // The probe's reply closes the breaker.
    h.send("in_reply", reply_to(&probe[0])).expect("processed");
    send(&mut h);
    send(&mut h);
    assert_eq!(h.take("out_a").len(), 2, "closed again");
    assert!(h.take("error").is_empty());
}

#[test]
fn a_failed_probe_opens_the_breaker_again() {
    let mut h = harness(&breaker_config());
    let clock = h.clock().clone();
    for stan in 1..=2 {
        h.send("in", auth("0100", stan, "a", "4111"))
            .expect("processed");
    }
    assert_eq!(h.take("out_a").len(), 2);
    clock.advance(Duration::from_secs(12));
    h.send("in", auth("0100", 3, "a", "4111"))
        .expect("processed");
    assert_eq!(h.error_reasons(), ["timeout", "timeout"]);
    // The timeouts opened the breaker just now: the cooldown starts over.
    assert_eq!(h.take("out_b").len(), 1);
    clock.advance(Duration::from_secs(11));
    h.send("in", auth("0100", 4, "a", "4111"))
        .expect("processed");
    // Request 3 on out_b expired (one failure there); request 4 is out_a's probe.
    assert_eq!(h.error_reasons(), ["timeout"]);
    assert_eq!(h.take("out_a").len(), 1);
    clock.advance(Duration::from_secs(2));
    h.send("in", auth("0100", 5, "a", "4111"))
        .expect("processed");
    assert_eq!(h.error_reasons(), ["timeout"], "the probe timed out");
    let b = h.take("out_b");
    assert_eq!(b.len(), 1, "open again: out_b");
}

#[test]
fn max_in_flight_makes_a_busy_port_unavailable() {
    let mut h = harness(&json!({
        "correlation_key": ["data.iso8583.field.11"],
        "routes": [ { "destination": { "failover": ["out_a", "out_b"] } } ],
        "max_in_flight": 2
    }));
    for stan in 1..=3 {
        h.send("in", auth("0100", stan, "a", "4111"))
            .expect("processed");
    }
    let a = h.take("out_a");
    assert_eq!(a.len(), 2);
    assert_eq!(h.take("out_b").len(), 1);
    h.send("in_reply", reply_to(&a[0])).expect("processed");
    h.send("in", auth("0100", 4, "a", "4111"))
        .expect("processed");
    assert_eq!(h.take("out_a").len(), 1, "room again");
}

#[test]
fn a_full_valet_refuses_and_counts() {
    let mut h = harness(&json!({
        "correlation_key": ["data.iso8583.field.11"],
        "valet": { "max_tickets": 2 },
        "routes": [ { "destination": "out_a" } ]
    }));
    for stan in 1..=3 {
        h.send("in", auth("0100", stan, "a", "4111"))
            .expect("processed");
    }
    assert_eq!(h.take("out_a").len(), 2);
    let errors = h.take("error");
    assert_eq!(meta(&errors[0], "error.reason"), Some("valet_full"));
    assert_eq!(
        field(&errors[0], 62),
        Some("private-3"),
        "refused as it came"
    );
    assert_eq!(h.stats().errors, 1);
}

#[test]
fn weighted_and_least_loaded_destinations_share_the_traffic() {
    let mut h = harness(&json!({
        "correlation_key": ["data.iso8583.field.11"],
        "routes": [
            { "match": { "field": "data.iso8583.field.2", "prefix": ["4", "2"] },
              "destination": { "weighted": [ { "port": "out_a", "weight": 3 }, { "port": "out_b", "weight": 1 } ] } },
            { "destination": { "least_loaded": ["out_c", "out_d"] } }
        ]
    }));
    for stan in 0..8 {
        h.send("in", auth("0100", stan, "a", "4111"))
            .expect("processed");
    }
    assert_eq!((h.take("out_a").len(), h.take("out_b").len()), (6, 2));
    h.port_status("out_a").set_available(false);
    for stan in 8..10 {
        h.send("in", auth("0100", stan, "a", "2221"))
            .expect("processed");
    }
    let b = h.take("out_b");
    assert_eq!(b.len(), 2);
    assert_eq!(
        decision(&b[0]),
        "route 0 -> out_b (weighted: out_a unavailable)"
    );
    // Least loaded by open tickets: c, d, then c again once d's ticket closes.
    for stan in 10..12 {
        h.send("in", auth("0100", stan, "a", "6011"))
            .expect("processed");
    }
    let c = h.take("out_c");
    let d = h.take("out_d");
    assert_eq!((c.len(), d.len()), (1, 1));
    h.send("in_reply", reply_to(&d[0])).expect("processed");
    h.send("in", auth("0100", 12, "a", "6011"))
        .expect("processed");
    assert_eq!(h.take("out_d").len(), 1, "d has fewer open tickets");
}

#[test]
fn origins_are_stamped_and_replies_go_home_by_origin() {
    let mut h = harness(&json!({
        "origin": "east",
        "known_origins": ["west"],
        "correlation_key": ["data.iso8583.field.11"],
        "replies_on_in": true,
        "routes": [ { "destination": "out_issuer" } ]
    }));
    let mut from_west = auth("0100", 1, "w-conn", "4111");
    from_west.meta.insert("conductor.origin", "west".into());
    h.send("in", from_west).expect("processed");
    h.send("in", auth("0100", 2, "local", "4111"))
        .expect("processed");
    let sent = h.take("out_issuer");
    assert!(
        sent.iter()
            .all(|m| meta(m, "conductor.origin") == Some("east"))
    );
    for msg in &sent {
        h.send("in_reply", reply_to(msg)).expect("processed");
    }
    let west = h.take("out_response_west");
    assert_eq!(west.len(), 1);
    assert_eq!(meta(&west[0], "conn.id"), Some("w-conn"));
    assert_eq!(meta(&west[0], "conductor.origin"), None);
    assert_eq!(decision(&west[0]), "reply -> out_response_west");
    let local = h.take("out_response");
    assert_eq!(meta(&local[0], "conn.id"), Some("local"));

    let mut stranger = auth("0100", 3, "s", "4111");
    stranger.meta.insert("conductor.origin", "north".into());
    h.send("in", stranger).expect("processed");
    assert_eq!(h.error_reasons(), ["unknown_origin"]);
}

#[test]
fn one_way_messages_are_routed_without_a_ticket() {
    let mut h = harness(&json!({
        "correlation_key": ["data.iso8583.field.11"],
        "mti_kinds": { "xx8x": "one_way", "0190": "request" },
        "routes": [ { "destination": "out_a" } ]
    }));
    h.send("in", auth("0180", 1, "a", "4111"))
        .expect("processed");
    h.send("in", auth("0180", 1, "a", "4111"))
        .expect("processed");
    assert_eq!(
        h.take("out_a").len(),
        2,
        "no ticket, no retransmission logic"
    );
    // An odd class overridden as a request opens a ticket.
    h.send("in", auth("0190", 2, "a", "4111"))
        .expect("processed");
    h.send("in", auth("0190", 2, "b", "4111"))
        .expect("processed");
    assert_eq!(h.take("out_a").len(), 1);
    assert_eq!(h.stats().dropped("attached"), 1);
}

#[track_caller]
fn check_refused(config: &serde_json::Value, expect: &str) {
    let err = Harness::new::<Conductor>(config).expect_err("refused");
    let text = testkit::chain(&err);
    assert!(text.contains(expect), "{text}");
}

#[test]
fn bad_configurations_are_refused_naming_the_field() {
    let routes = json!([ { "destination": "out_a" } ]);
    check_refused(
        &json!({ "correlation_key": ["de11"], "routes": routes }),
        "config.correlation_key[0]: \"de11\" is not a field path",
    );
    check_refused(
        &json!({ "correlation_key": { "8": ["data.x"] }, "routes": routes }),
        "correlation_key.8",
    );
    check_refused(
        &json!({ "correlation_key": ["data.x"], "routes": [ { "destination": "out_response" } ] }),
        "out_response is a reply port",
    );
    check_refused(
        &json!({ "correlation_key": ["data.x"], "routes": routes, "mti_kinds": { "01": "request" } }),
        "mti_kinds.01",
    );
    check_refused(
        &json!({ "correlation_key": ["data.x"],
                "routes": [ { "match": { "field": "data.pan", "ranges": [ { "from": "5", "to": "45" } ] }, "destination": "out_a" } ] }),
        "routes[0].match.ranges[0]",
    );
    check_refused(
        &json!({ "correlation_key": ["data.x"],
                "routes": [ { "destination": { "weighted": [ { "port": "out_a", "weight": 0 } ] } } ] }),
        "weight",
    );
    check_refused(
        &json!({ "correlation_key": ["data.x"], "routes": routes, "known_origins": ["West Side"] }),
        "known_origins[0]",
    );
    check_refused(
        &json!({ "correlation_key": ["data.x"], "routes": routes, "breaker": { "trip_after": 0 } }),
        "trip_after",
    );
    // The reference's short alias is accepted.
    Harness::new::<Conductor>(
        &json!({ "correlation_key": ["iso8583.field.11"], "routes": routes }),
    )
    .expect("the alias iso8583.field.<n>");
}

/// A conductor on a durable valet in the bucket of `snake`.
async fn durable(snake: &snake::Snake) -> Harness {
    let mut h = durable_loaded(snake).await;
    h.start().expect("started");
    h
}

/// The same, loaded (the bucket read) but not started.
async fn durable_loaded(snake: &snake::Snake) -> Harness {
    let mut config = config();
    config["valet"] = json!({ "store": "durable", "bucket": "tickets", "default_ttl": "30s" });
    Harness::builder(DynGearType::of::<Conductor>().expect("a gear type"))
        .name("switch")
        .snake(snake.clone())
        .build_loaded(&config)
        .await
        .expect("a valid configuration")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn durable_tickets_survive_a_restart() {
    check_restart(&snake::Snake::memory()).await;
}

/// The same against a real nats-server (feature `nats-server-tests`, after `make
/// setup-nats`): JetStream KV keeps the tickets.
#[cfg(feature = "nats-server-tests")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn durable_tickets_survive_a_restart_on_nats() {
    let server = snake::NatsServer::start().unwrap_or_else(|e| panic!("{e}"));
    let connect = || async {
        snake::Snake::nats(snake::NatsOptions::new(server.url()))
            .await
            .expect("connected")
    };
    let snake = connect().await;
    check_restart(&snake).await;
    snake.close().await;
    // A new connection (a restarted rack) reads the same bucket.
    let again = connect().await;
    let mut third = durable(&again).await;
    third
        .send("in", auth("0101", 1, "conn-x", "4111"))
        .expect("processed");
    let replay = third.take("out_response");
    assert_eq!(
        replay.len(),
        1,
        "the retained reply, read over a new connection"
    );
    assert_eq!(meta(&replay[0], "conn.id"), Some("conn-x"));
    third.shutdown().await;
}

/// Parks three tickets with one conductor, closes one, restarts, and answers the other two
/// and a retransmission of the closed one with a new conductor on the same bucket.
async fn check_restart(snake: &snake::Snake) {
    let mut first = durable(snake).await;
    for stan in 1..=3 {
        first
            .send("in", auth("0100", stan, &format!("conn-{stan}"), "4111"))
            .expect("processed");
    }
    let sent = first.take("out_visa_a");
    // One closes before the restart: its reply is retained for replay.
    first
        .send("in_reply", reply_to(&sent[2]))
        .expect("processed");
    assert_eq!(first.take("out_response").len(), 1);
    first.shutdown().await;
    drop(first);

    let mut second = durable(snake).await;
    second
        .send("in_reply", reply_to(&sent[0]))
        .expect("processed");
    second
        .send("in_reply", reply_to(&sent[1]))
        .expect("processed");
    let answered = second.take("out_response");
    let conns: Vec<&str> = answered
        .iter()
        .map(|m| meta(m, "conn.id").unwrap_or(""))
        .collect();
    assert_eq!(conns, ["conn-1", "conn-2"]);
    assert_eq!(
        field(&answered[0], 62),
        Some("private-1"),
        "parked fields survive"
    );
    // The retained reply answers a retransmission after the restart.
    second
        .send("in", auth("0101", 3, "conn-9", "4111"))
        .expect("processed");
    let replay = second.take("out_response");
    assert_eq!(meta(&replay[0], "conn.id"), Some("conn-9"));
    assert!(second.take("out_visa_a").is_empty());
    assert!(second.take("error").is_empty());
    second.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn durable_tickets_left_open_past_their_deadline_time_out_after_a_restart() {
    let snake = snake::Snake::memory();
    let mut first = durable(&snake).await;
    first
        .send("in", auth("0100", 1, "conn-1", "4111"))
        .expect("processed");
    first.shutdown().await;
    drop(first);
    let mut second = durable(&snake).await;
    second.clock().advance(Duration::from_secs(31));
    // The next message sweeps (so does the task, on its own time).
    second
        .send("in", auth("0100", 2, "conn-2", "4111"))
        .expect("processed");
    let mut errors = second.take("error");
    testkit::wait_until("the expired ticket's timeout", || {
        errors.extend(second.take("error"));
        !errors.is_empty()
    })
    .await;
    assert_eq!(meta(&errors[0], "error.reason"), Some("timeout"));
    assert_eq!(meta(&errors[0], "conn.id"), Some("conn-1"));
    second.shutdown().await;
}

#[test]
fn key_values_cannot_forge_each_others_parts() {
    let mut h = harness(&json!({
        "correlation_key": ["data.iso8583.field.11", "data.iso8583.field.41"],
        "routes": [ { "destination": "out_a" } ]
    }));
    // Joined naively, both would read `1|1:2|1:x`.
    let forge = |f11: &str, f41: &str, conn: &str| {
        let mut msg = auth("0100", 0, conn, "4111");
        msg.data.set_path("iso8583.field.11", f11).expect("path");
        msg.data.set_path("iso8583.field.41", f41).expect("path");
        msg
    };
    h.send("in", forge("1|1:2", "x", "a")).expect("processed");
    h.send("in", forge("1", "2|1:x", "b")).expect("processed");
    let sent = h.take("out_a");
    assert_eq!(sent.len(), 2, "two tickets, not a retransmission");
    h.send("in_reply", reply_to(&sent[1])).expect("processed");
    let answered = h.take("out_response");
    assert_eq!(meta(&answered[0], "conn.id"), Some("b"));
}

#[tokio::test]
async fn a_key_too_long_for_the_durable_store_is_refused() {
    let snake = snake::Snake::memory();
    let mut h = durable(&snake).await;
    let mut long = auth("0100", 1, "a", "4111");
    long.data
        .set_path("iso8583.field.41", "T".repeat(300))
        .expect("path");
    h.send("in", long).expect("processed");
    assert_eq!(h.error_reasons(), ["key_too_long"]);
    assert!(h.take("out_visa_a").is_empty());
    h.shutdown().await;
}

/// Requests flow while the sweeping task runs on another thread and the clock jumps:
/// every request ends exactly once, answered or timed out, and every reply that found no
/// ticket (it came after its ticket expired) is counted as `unmatched_reply`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_request_is_lost_or_answered_twice_while_the_sweeper_runs() {
    let mut config = config();
    config["valet"] = json!({ "default_ttl": "2s", "retain_after_close": "1s" });
    let mut h = harness(&config);
    h.start().expect("started");
    let clock = h.clock().clone();
    let mut rng = ChaCha8Rng::seed_from_u64(5);
    let mut sent = Vec::new();
    let total = 3000u32;
    for i in 0..total {
        h.send("in", auth("0100", i, &format!("c{}", i % 11), "4111"))
            .expect("processed");
        sent.extend(h.take("out_visa_a"));
        if i % 50 == 0 {
            clock.advance(Duration::from_millis(700));
            tokio::task::yield_now().await;
        }
        // Reply to a random earlier request, now and then.
        if i % 3 == 0 && !sent.is_empty() {
            let k = rand::RngExt::random_range(&mut rng, 0..sent.len());
            let request = sent.swap_remove(k);
            h.send("in_reply", reply_to(&request)).expect("processed");
        }
    }
    clock.advance(Duration::from_secs(10));
    let mut answered = Vec::new();
    let mut errors = Vec::new();
    let mut ended = |h: &mut Harness| {
        answered.extend(h.take("out_response"));
        errors.extend(h.take("error"));
        let timeouts = errors
            .iter()
            .filter(|m| meta(m, "error.reason") == Some("timeout"))
            .count();
        answered.len() + timeouts
    };
    // The sweeper, on its own thread, hands over the rest.
    let deadline = std::time::Instant::now() + testkit::PATIENCE;
    while ended(&mut h) < total as usize && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let mut ends = HashMap::new();
    for msg in answered.iter().chain(
        errors
            .iter()
            .filter(|m| meta(m, "error.reason") == Some("timeout")),
    ) {
        *ends
            .entry(field(msg, 11).expect("a STAN").to_owned())
            .or_insert(0) += 1;
    }
    assert_eq!(ends.len(), total as usize, "every request ended");
    assert!(ends.values().all(|n| *n == 1), "none ended twice");
    for msg in &answered {
        let stan: u32 = field(msg, 11).and_then(|s| s.parse().ok()).expect("a STAN");
        assert_eq!(
            meta(msg, "conn.id"),
            Some(format!("c{}", stan % 11).as_str())
        );
    }
    let others: Vec<&str> = errors
        .iter()
        .filter_map(|m| meta(m, "error.reason"))
        .filter(|r| *r != "timeout")
        .collect();
    assert!(others.iter().all(|r| *r == "unmatched_reply"), "{others:?}");
    h.shutdown().await;
}

#[test]
fn a_link_that_dies_mid_stream_fails_new_requests_over_and_times_the_open_ones_out() {
    let mut h = harness(&config());
    for stan in 0..5 {
        h.send("in", auth("0100", stan, "a", "4111"))
            .expect("processed");
    }
    assert_eq!(h.take("out_visa_a").len(), 5);
    // The link behind out_visa_a goes down: the engine marks the port unavailable.
    h.port_status("out_visa_a").set_available(false);
    for stan in 5..10 {
        h.send("in", auth("0100", stan, "a", "4111"))
            .expect("processed");
    }
    let b = h.take("out_visa_b");
    assert_eq!(b.len(), 5);
    for msg in &b {
        h.send("in_reply", reply_to(msg)).expect("processed");
    }
    assert_eq!(h.take("out_response").len(), 5);
    h.clock().advance(Duration::from_secs(31));
    h.send("in", auth("0100", 10, "a", "4111"))
        .expect("processed");
    let timeouts = h.take("error");
    let mut stans: Vec<&str> = timeouts.iter().filter_map(|m| field(m, 11)).collect();
    stans.sort_unstable();
    assert_eq!(stans, ["000000", "000001", "000002", "000003", "000004"]);
    assert!(
        timeouts
            .iter()
            .all(|m| meta(m, "error.reason") == Some("timeout"))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn routes_with_expressions_run_off_the_async_worker_and_still_correlate() {
    let mut h = harness(&json!({
        "correlation_key": ["data.iso8583.field.11"],
        "routes": [
            { "name": "big", "when": { "expr": "data.amount > 1000" }, "destination": "out_big" },
            { "destination": "out_small" }
        ]
    }));
    let mut big = auth("0100", 1, "a", "4111");
    big.data.set_path("amount", 5000).expect("path");
    let mut small = auth("0100", 2, "b", "4111");
    small.data.set_path("amount", 10).expect("path");
    h.send_batch("in", [big, small]).expect("processed");
    let sent = h.take("out_big");
    assert_eq!(sent.len(), 1);
    assert_eq!(decision(&sent[0]), "big -> out_big");
    assert_eq!(h.take("out_small").len(), 1);
    h.send("in_reply", reply_to(&sent[0])).expect("processed");
    assert_eq!(meta(&h.take("out_response")[0], "conn.id"), Some("a"));
}

#[test]
fn a_durable_valet_needs_the_load_step() {
    let mut config = config();
    config["valet"] = json!({ "store": "durable", "bucket": "tickets" });
    // `Harness::new` skips `Gear::load`, where the bucket is opened (a rack always loads).
    let err = Harness::new::<Conductor>(&config).expect_err("not loaded");
    assert!(
        testkit::chain(&err).contains("the durable valet is opened when the gear loads"),
        "{}",
        testkit::chain(&err)
    );
    config["valet"] = json!({ "store": "durable", "bucket": "no.dots" });
    let err = Harness::new::<Conductor>(&config).expect_err("a bad bucket name");
    assert!(
        testkit::chain(&err).contains("valet.bucket"),
        "{}",
        testkit::chain(&err)
    );
}

#[test]
fn a_reply_on_in_is_matched_too_and_origins_are_stripped_without_our_own() {
    let mut h = harness(&json!({
        "known_origins": ["west"],
        "correlation_key": ["data.iso8583.field.11"],
        "replies_on_in": true,
        "routes": [ { "destination": "out_issuer" } ]
    }));
    let mut from_west = auth("0100", 1, "w", "4111");
    from_west.meta.insert("conductor.origin", "west".into());
    h.send("in", from_west).expect("processed");
    let sent = h.take("out_issuer");
    assert_eq!(
        meta(&sent[0], "conductor.origin"),
        None,
        "stripped before the external hop"
    );
    // One wire for everything: the response's MTI makes it a reply.
    h.send("in", reply_to(&sent[0])).expect("processed");
    let home = h.take("out_response_west");
    assert_eq!(home.len(), 1);
    assert_eq!(meta(&home[0], "conn.id"), Some("w"));
}

/// Rewrites the stored tickets of the conductor `switch` as if an earlier process had
/// stored them.
async fn stamp_as_earlier_process(snake: &snake::Snake) {
    let kv = snake
        .kv(snake::KvConfig::new("tickets").expect("a bucket name"))
        .await
        .expect("the bucket");
    let mut watch = kv.watch("switch.>").await.expect("a watch");
    kv.put("switch.test-marker", "end").await.expect("put");
    let codec = fluxmsg::Codec::new();
    let mut rewrite = Vec::new();
    while let Some(entry) = watch.next().await {
        if entry.key == "switch.test-marker" {
            break;
        }
        if !entry.key.starts_with("switch.t.") || entry.operation != snake::KvOperation::Put {
            continue;
        }
        let value = codec.decode_value(&entry.value).expect("a stored record");
        let mut map = value.as_map().expect("a map").clone();
        map.insert("i", Value::from("an-earlier-process"));
        let mut buf = Vec::new();
        codec
            .encode_value(&Value::Map(map), &mut buf)
            .expect("encoded");
        rewrite.push((entry.key.clone(), buf));
    }
    assert!(!rewrite.is_empty(), "tickets were stored");
    for (key, buf) in rewrite {
        kv.put(&key, buf).await.expect("put");
    }
}

/// Review finding 1: after a restart of the process, `conn.id` values stored with tickets
/// name connections of the earlier process: neither the reply nor the timeout goes out
/// with them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tickets_of_an_earlier_process_do_not_answer_its_connections() {
    let snake = snake::Snake::memory();
    let mut first = durable(&snake).await;
    for stan in 1..=2 {
        first
            .send("in", auth("0100", stan, &format!("conn-{stan}"), "4111"))
            .expect("processed");
    }
    let sent = first.take("out_visa_a");
    first.shutdown().await;
    drop(first);
    stamp_as_earlier_process(&snake).await;

    let mut second = durable(&snake).await;
    // A retransmission on a connection of this process attaches, and is answered.
    second
        .send("in", auth("0101", 1, "conn-new", "4111"))
        .expect("processed");
    second
        .send("in_reply", reply_to(&sent[0]))
        .expect("processed");
    let answered = second.take("out_response");
    assert_eq!(answered.len(), 1, "only the live requester: {answered:?}");
    assert_eq!(meta(&answered[0], "conn.id"), Some("conn-new"));
    let errors = second.take("error");
    assert_eq!(errors.len(), 1);
    assert_eq!(meta(&errors[0], "error.reason"), Some("requester_gone"));
    assert_eq!(meta(&errors[0], "conn.id"), None);
    // The other one times out: to error as requester_gone, without its old conn.id.
    second.clock().advance(Duration::from_secs(31));
    let mut errors = Vec::new();
    testkit::wait_until("the restored ticket's expiry", || {
        errors.extend(second.take("error"));
        !errors.is_empty()
    })
    .await;
    assert_eq!(meta(&errors[0], "error.reason"), Some("requester_gone"));
    assert_eq!(meta(&errors[0], "conn.id"), None);
    second.shutdown().await;
}

/// Review finding 2: what the conductor changes while it drains is stored too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn changes_made_while_draining_survive_a_restart() {
    let snake = snake::Snake::memory();
    let mut first = durable(&snake).await;
    first
        .send("in", auth("0100", 1, "conn-1", "4111"))
        .expect("processed");
    let sent1 = first.take("out_visa_a");
    first.runner().drain(Duration::from_secs(1)).await;
    // Draining: the reply closes ticket 1, a new request opens ticket 2.
    first
        .send("in_reply", reply_to(&sent1[0]))
        .expect("processed");
    assert_eq!(first.take("out_response").len(), 1);
    first
        .send("in", auth("0100", 2, "conn-2", "4111"))
        .expect("processed");
    let sent2 = first.take("out_visa_a");
    assert_eq!(sent2.len(), 1);
    first.shutdown().await;
    drop(first);

    let mut second = durable(&snake).await;
    second
        .send("in", auth("0101", 1, "conn-9", "4111"))
        .expect("processed");
    let replay = second.take("out_response");
    assert_eq!(replay.len(), 1, "ticket 1 was closed: its reply replays");
    assert_eq!(meta(&replay[0], "conn.id"), Some("conn-9"));
    second
        .send("in_reply", reply_to(&sent2[0]))
        .expect("processed");
    let answered = second.take("out_response");
    assert_eq!(answered.len(), 1, "ticket 2 was stored");
    assert_eq!(meta(&answered[0], "conn.id"), Some("conn-2"));
    assert!(second.take("error").is_empty());
    second.shutdown().await;
}

/// Review finding 5: tickets sent before the breaker opened, expiring after a probe closed
/// it, do not open it again.
#[test]
fn stragglers_sent_before_a_trip_do_not_reopen_the_breaker() {
    let mut config = breaker_config();
    config["valet"]["default_ttl"] = json!("30s");
    let mut h = harness(&config);
    let clock = h.clock().clone();
    let send = |h: &mut Harness, stan: u32| {
        h.send("in", auth("0100", stan, "a", "4111"))
            .expect("processed");
    };
    send(&mut h, 1);
    send(&mut h, 2);
    clock.advance(Duration::from_secs(20));
    send(&mut h, 3);
    send(&mut h, 4);
    assert_eq!(h.take("out_a").len(), 4);
    // 1 and 2 expire: the breaker opens.
    clock.advance(Duration::from_secs(11));
    send(&mut h, 5);
    assert_eq!(h.error_reasons(), ["timeout", "timeout"]);
    let b = h.take("out_b");
    assert_eq!(b.len(), 1);
    h.send("in_reply", reply_to(&b[0])).expect("processed");
    // Cooled down: a probe, answered, closes it.
    clock.advance(Duration::from_secs(11));
    send(&mut h, 6);
    let probe = h.take("out_a");
    assert_eq!(probe.len(), 1);
    h.send("in_reply", reply_to(&probe[0])).expect("processed");
    // 3 and 4, sent before the trip, expire now: out_a stays closed.
    clock.advance(Duration::from_secs(9));
    send(&mut h, 7);
    assert_eq!(h.error_reasons(), ["timeout", "timeout"]);
    assert_eq!(h.take("out_a").len(), 1, "the breaker stayed closed");
    assert!(h.take("out_b").is_empty());
}

/// Review finding 4: a request whose key collides with another's open ticket (two
/// terminals with the same TID and STAN) is refused, not attached; after the close it is
/// not answered with the other's reply either.
#[test]
fn a_different_request_under_the_same_key_is_refused_not_attached() {
    let mut h = harness(&config());
    h.send("in", auth("0100", 7, "terminal-a", "4111111111111111"))
        .expect("processed");
    let mut b = auth("0100", 7, "terminal-b", "4222222222222222");
    h.send("in", b.clone()).expect("processed");
    assert_eq!(h.error_reasons(), ["duplicate_key"]);
    let sent = h.take("out_visa_a");
    assert_eq!(sent.len(), 1, "only A's request goes out");
    // A's own retransmission still attaches.
    h.send("in", auth("0101", 7, "terminal-a2", "4111111111111111"))
        .expect("processed");
    assert!(h.take("error").is_empty());
    h.send("in_reply", reply_to(&sent[0])).expect("processed");
    let answered = h.take("out_response");
    let conns: Vec<_> = answered.iter().map(|m| meta(m, "conn.id")).collect();
    assert_eq!(conns, [Some("terminal-a2"), Some("terminal-a")]);
    // Retained: B is refused, A's retransmission replays (without the digest).
    b.meta.insert("iso8583.mti", "0101".into());
    h.send("in", b).expect("processed");
    assert_eq!(h.error_reasons(), ["duplicate_key"]);
    h.send("in", auth("0101", 7, "terminal-a", "4111111111111111"))
        .expect("processed");
    let replay = h.take("out_response");
    assert_eq!(replay.len(), 1);
    assert_eq!(meta(&replay[0], "conductor.fingerprint"), None);
    assert!(decision(&replay[0]).starts_with("replay"));
}

/// Review finding 4: a response forged on `in` does not close a ticket unless the wire is
/// declared to carry replies (`replies_on_in`).
#[test]
fn a_response_on_in_is_refused_by_default() {
    let mut h = harness(&config());
    h.send("in", auth("0100", 1, "terminal-a", "4111"))
        .expect("processed");
    let sent = h.take("out_visa_a");
    h.send("in", reply_to(&sent[0])).expect("processed");
    assert_eq!(h.error_reasons(), ["not_a_request"]);
    assert!(h.take("out_response").is_empty());
    // The ticket is still open: the real reply answers A.
    h.send("in_reply", reply_to(&sent[0])).expect("processed");
    let answered = h.take("out_response");
    assert_eq!(meta(&answered[0], "conn.id"), Some("terminal-a"));
}

/// Review finding 3: a reloaded durable conductor loads (reads the bucket) while the old
/// instance still runs; what the old one changes after that read is not lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_keeps_what_the_old_instance_changed_after_the_new_one_loaded() {
    let snake = snake::Snake::memory();
    let mut old = durable(&snake).await;
    old.send("in", auth("0100", 1, "conn-1", "4111"))
        .expect("processed");
    let sent1 = old.take("out_visa_a");
    // The rack loads the new instance first…
    let mut new = durable_loaded(&snake).await;
    // …while the old one still works: it closes ticket 1 and opens ticket 2.
    old.send("in_reply", reply_to(&sent1[0]))
        .expect("processed");
    assert_eq!(old.take("out_response").len(), 1);
    old.send("in", auth("0100", 2, "conn-2", "4111"))
        .expect("processed");
    let sent2 = old.take("out_visa_a");
    // Then it stops the old one and starts the new one.
    old.shutdown().await;
    new.start().expect("started");
    new.send("in", auth("0101", 1, "conn-9", "4111"))
        .expect("processed");
    let replay = new.take("out_response");
    assert_eq!(replay.len(), 1, "ticket 1 is closed: its reply replays");
    assert_eq!(meta(&replay[0], "conn.id"), Some("conn-9"));
    new.send("in_reply", reply_to(&sent2[0]))
        .expect("processed");
    let answered = new.take("out_response");
    assert_eq!(answered.len(), 1, "ticket 2 is known");
    assert_eq!(meta(&answered[0], "conn.id"), Some("conn-2"));
    assert!(new.take("error").is_empty());
    // The old instance is dropped after the new one started: the new one still writes, and
    // a third instance after it finds ticket 3.
    drop(old);
    new.send("in", auth("0100", 3, "conn-3", "4111"))
        .expect("processed");
    let sent3 = new.take("out_visa_a");
    new.shutdown().await;
    drop(new);
    let mut third = durable(&snake).await;
    third
        .send("in_reply", reply_to(&sent3[0]))
        .expect("processed");
    assert_eq!(third.take("out_response").len(), 1, "ticket 3 was written");
    third.shutdown().await;
}

/// Review finding 3: a memory valet's open tickets do not vanish silently when the gear
/// stops: their requests go to error with `shutdown`, each to its requester.
#[tokio::test]
async fn a_memory_valet_hands_its_open_tickets_to_error_when_the_gear_drains() {
    let mut h = harness(&config());
    h.start().expect("started");
    h.send("in", auth("0100", 1, "conn-1", "4111"))
        .expect("processed");
    h.send("in", auth("0101", 1, "conn-2", "4111"))
        .expect("processed");
    let sent = h.take("out_visa_a");
    h.runner().drain(Duration::from_secs(1)).await;
    // Draining: a new request opens no ticket that would vanish at stop.
    h.send("in", auth("0100", 2, "conn-3", "4111"))
        .expect("processed");
    assert!(h.take("out_visa_a").is_empty());
    h.shutdown().await;
    let errors = h.take("error");
    let mut conns: Vec<_> = errors.iter().map(|m| meta(m, "conn.id")).collect();
    conns.sort();
    assert_eq!(conns, [Some("conn-1"), Some("conn-2"), Some("conn-3")]);
    assert!(
        errors
            .iter()
            .all(|m| meta(m, "error.reason") == Some("shutdown"))
    );
    assert_eq!(sent.len(), 1);
}

/// Review finding 11: two racks running the same scenario on one bucket keep their
/// tickets apart with `valet.prefix`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn racks_sharing_a_bucket_keep_their_tickets_apart_with_a_prefix() {
    let snake = snake::Snake::memory();
    let on = |prefix: &str| {
        let mut config = config();
        config["valet"] = json!({ "store": "durable", "bucket": "tickets", "prefix": prefix });
        config
    };
    let build = |config: serde_json::Value| {
        let snake = snake.clone();
        async move {
            let mut h = Harness::builder(DynGearType::of::<Conductor>().expect("a gear type"))
                .name("switch")
                .snake(snake)
                .build_loaded(&config)
                .await
                .expect("a valid configuration");
            h.start().expect("started");
            h
        }
    };
    let mut east = build(on("east")).await;
    east.send("in", auth("0100", 1, "conn-1", "4111"))
        .expect("processed");
    let sent = east.take("out_visa_a");
    east.shutdown().await;
    let mut west = build(on("west")).await;
    west.send("in_reply", reply_to(&sent[0]))
        .expect("processed");
    assert_eq!(
        west.error_reasons(),
        ["unmatched_reply"],
        "west has no east tickets"
    );
    west.shutdown().await;
    let mut east = build(on("east")).await;
    east.send("in_reply", reply_to(&sent[0]))
        .expect("processed");
    assert_eq!(east.take("out_response").len(), 1);
    east.shutdown().await;
    check_refused(
        &json!({ "correlation_key": ["data.x"], "routes": [ { "destination": "out_a" } ],
                 "valet": { "store": "durable", "prefix": "" } }),
        "valet.prefix",
    );
}
