//! Control-plane payloads: round trips, canonical bytes, Go-shaped input, secrets kept out of
//! logs.

use fluxmsg::system::{
    Command, CommandReply, EnrollmentReply, Heartbeat, HeartbeatReply, Hello, Payload, PushStatus,
    RackState, ScenarioPush, Signed, StateEnvelope, signed_bytes,
};
use fluxmsg::{Codec, Error, Map, Value};

#[track_caller]
fn check<P: Payload + PartialEq + std::fmt::Debug>(p: &P) {
    let bytes = p.to_cbor().expect("encode");
    assert_eq!(&P::from_cbor(&bytes).expect("decode"), p);
    assert_eq!(
        &P::from_data(&p.to_data().expect("to data")).expect("from data"),
        p
    );
    assert_eq!(
        &P::from_message(&p.to_message().expect("to message")).expect("from message"),
        p
    );
    // Canonical: decoding as a plain value and re-encoding changes nothing.
    let value = Codec::new().decode_value(&bytes).expect("value");
    let mut again = Vec::new();
    Codec::new()
        .encode_value(&value, &mut again)
        .expect("encode value");
    assert_eq!(again, bytes);
}

fn config() -> Map<Value> {
    let mut m = Map::new();
    m.set_path("gears.io_tcp.port", 8583u16).expect("path");
    m.insert("labels", Value::Array(vec!["edge".into(), "eu".into()]));
    m
}

#[test]
fn every_payload_round_trips() {
    check(&Hello {
        name: "edge-1".into(),
        nonce: "9d1e".into(),
        machine_id: 101,
        secret: "s3cret".into(),
        ip: "10.1.2.3".into(),
        port: 4222,
        version: "0.1.0".into(),
        config: config(),
    });
    check(&EnrollmentReply {
        status: "active".into(),
        passport: vec![1, 2, 3].into(),
        config: [("rack.max_hops", "32".into())].into_iter().collect(),
        message: "welcome".into(),
    });
    check(&Heartbeat {
        machine_id: 101,
        name: "edge-1".into(),
        secret: "s3cret".into(),
        seq: 42,
        full_state: true,
        applied_hash: "ab12".into(),
        health: [("acceptor", "ok".into())].into_iter().collect(),
        stats: config(),
        config: Map::new(),
    });
    check(&HeartbeatReply {
        status: "active".into(),
        command: "reconnect".into(),
        passport: Default::default(),
        commands: vec!["reconnect".into(), "log_level:debug".into()],
        report_full_state: true,
        signature: vec![2; 64].into(),
    });
    check(&ScenarioPush {
        version: "3".into(),
        name: "switch".into(),
        rack_name: "edge-1".into(),
        machine_id: 101,
        scenario: b"meta:\n  name: switch\n".to_vec().into(),
        timestamp: 1_767_225_600,
        hash: "ab12".into(),
        location: String::new(),
        signature: vec![9; 64].into(),
    });
    check(&PushStatus {
        name: "edge-1".into(),
        machine_id: 101,
        secret: "s3cret".into(),
        version: "3".into(),
        hash: "ab12".into(),
        status: "failed".into(),
        error: "gear risk: cannot start".into(),
        running_hash: "cd34".into(),
    });
    check(&StateEnvelope {
        payload: RackState {
            mixer_id: "m1".into(),
            machine_id: 101,
            name: "edge-1".into(),
            status: "active".into(),
            secret: "s3cret".into(),
            mixer_pub: vec![7; 32].into(),
            version: "0.1.0".into(),
            created_at: 1,
            updated_at: 2,
            update_count: 3,
            lease_expires_at: 4,
        }
        .to_cbor()
        .expect("state")
        .into(),
        signature: vec![1; 64].into(),
    });
    check(&Command {
        gear: "acceptor".into(),
        command: "drain".into(),
        args: config(),
    });
    check(&CommandReply {
        ok: true,
        message: "drained".into(),
        result: Map::new(),
    });
}

#[test]
fn keys_are_written_in_canonical_order() {
    let bytes = Command {
        gear: "g".into(),
        ..Command::default()
    }
    .to_cbor()
    .expect("encode");
    // {"args": {}, "gear": "g", "command": ""}: shorter keys first, then bytewise.
    let expected = [
        &[0xa3][..],
        b"\x64args\xa0",
        b"\x64gear\x61g",
        b"\x67command\x60",
    ]
    .concat();
    assert_eq!(bytes, expected);
}

#[test]
fn go_nulls_and_missing_fields_read_as_empty() {
    // The Go fluxrig writes nil slices and maps as null; older senders may omit fields.
    let input = [
        &[0xa3][..],
        b"\x66status\x66active",
        b"\x66config\xf6",
        b"\x68passport\xf6",
    ]
    .concat();
    let reply = EnrollmentReply::from_cbor(&input).expect("decode");
    assert_eq!(reply.status, "active");
    assert!(reply.passport.is_empty());
    assert!(reply.config.is_empty());
    assert!(reply.message.is_empty());
}

#[test]
fn wrong_types_are_refused() {
    let input = [&[0xa1][..], b"\x6amachine_id\x63abc"].concat();
    let err = Heartbeat::from_cbor(&input).expect_err("text is no machine id");
    assert!(matches!(err, Error::Payload(_)), "{err}");
    let input = [&[0xa1][..], b"\x68passport\x63abc"].concat();
    let err = HeartbeatReply::from_cbor(&input).expect_err("text is no passport");
    assert!(matches!(err, Error::Payload(_)), "{err}");
    let err = Hello::from_cbor(&[0xa1, 0x61]).expect_err("truncated");
    assert_eq!(err.offset(), Some(1));
}

#[test]
fn debug_hides_secrets_and_passports() {
    let hello = Hello {
        secret: "hunter2".into(),
        ..Hello::default()
    };
    let shown = format!("{hello:?}");
    assert!(!shown.contains("hunter2"), "{shown}");
    assert!(shown.contains("7 bytes redacted"), "{shown}");
    let reply = EnrollmentReply {
        passport: b"signed-passport".to_vec().into(),
        ..EnrollmentReply::default()
    };
    assert!(!format!("{reply:?}").contains("signed-passport"));
}

#[test]
fn signed_bytes_leave_the_signature_out() {
    let push = ScenarioPush {
        rack_name: "edge-1".into(),
        hash: "ab12".into(),
        ..ScenarioPush::default()
    };
    let mut signed = push.clone();
    signed.set_signature(vec![5; 64].into());
    assert_eq!(signed.signature().len(), 64);
    assert_eq!(
        signed_bytes(&signed).expect("bytes"),
        push.to_cbor().expect("cbor")
    );
    let mut other = signed.clone();
    other.hash = "cd34".into();
    assert_ne!(
        signed_bytes(&other).expect("bytes"),
        signed_bytes(&signed).expect("bytes")
    );
}

#[test]
fn debug_hides_the_secrets_of_heartbeats_statuses_and_passports() {
    let hb = Heartbeat {
        secret: "hunter2".into(),
        ..Heartbeat::default()
    };
    let status = PushStatus {
        secret: "hunter2".into(),
        ..PushStatus::default()
    };
    let state = RackState {
        secret: "hunter2".into(),
        ..RackState::default()
    };
    for shown in [
        format!("{hb:?}"),
        format!("{status:?}"),
        format!("{state:?}"),
    ] {
        assert!(!shown.contains("hunter2"), "{shown}");
    }
}
