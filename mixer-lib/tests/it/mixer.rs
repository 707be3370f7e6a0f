//! The mixer against racks that speak the protocol by hand: enrollment, admission, conflicts,
//! heartbeats, pushes and their reports, and the cluster key's identity.

use std::sync::Arc;
use std::time::Duration;

use crate::temp_dir;
use fluxmsg::system::{
    EnrollmentReply, Heartbeat, HeartbeatReply, Hello, Payload, PushStatus, ScenarioPush,
    StateEnvelope,
};
use mixer_lib::store::{MemoryStore, RackStatus, ScenarioRecord, Store};
use mixer_lib::{Mixer, MixerError};
use rack_lib::passport::ClusterPublic;
use snake::{Message, Pattern, Snake, Subject};

const BOOTSTRAP: &str = "let-me-in";

async fn mixer(snake: &Snake, store: Arc<dyn Store>, dir: &std::path::Path) -> Mixer {
    Mixer::builder()
        .data_dir(dir)
        .store(store)
        .snake(snake.clone())
        .bootstrap_secret(BOOTSTRAP)
        .heartbeat_interval(Duration::from_millis(200), 3)
        .start()
        .await
        .expect("a mixer")
}

/// Sends a hello as a rack would and returns the reply.
async fn hello(snake: &Snake, name: &str, secret: &str, nonce: &str) -> Option<EnrollmentReply> {
    let mut replies = snake
        .subscribe(Pattern::from(
            Subject::enrollment(name, nonce).expect("subject"),
        ))
        .await
        .expect("sub");
    let hello = Hello {
        name: name.to_owned(),
        nonce: nonce.to_owned(),
        secret: secret.to_owned(),
        version: "test".to_owned(),
        ..Hello::default()
    };
    snake
        .publish(Message::new(
            Subject::hello(),
            hello.to_message().expect("encode"),
        ))
        .await
        .expect("publish");
    let msg = tokio::time::timeout(Duration::from_secs(2), replies.next())
        .await
        .ok()??;
    Some(EnrollmentReply::from_message(&msg.payload).expect("a reply"))
}

fn open(reply: &EnrollmentReply, key: &ClusterPublic) -> fluxmsg::system::RackState {
    let envelope = StateEnvelope::from_cbor(&reply.passport).expect("an envelope");
    key.open(&envelope).expect("signed by the cluster")
}

async fn heartbeat(snake: &Snake, hb: &Heartbeat) -> HeartbeatReply {
    let reply = snake
        .request(
            Subject::heartbeat(),
            hb.to_message().expect("encode"),
            Duration::from_secs(2),
        )
        .await
        .expect("a heartbeat reply");
    HeartbeatReply::from_message(&reply.payload).expect("a reply")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_rack_is_pending_then_approved_and_gets_its_scenario() {
    let snake = Snake::memory();
    let dir = temp_dir("mixer-approve");
    let mixer = mixer(&snake, Arc::new(MemoryStore::new()), &dir).await;
    let key = ClusterPublic::from_hex(&mixer.public_key()).expect("key");

    let reply = hello(&snake, "edge-1", BOOTSTRAP, "n1")
        .await
        .expect("a reply");
    assert_eq!(reply.status, "pending", "{reply:?}");
    let state = open(&reply, &key);
    assert_eq!(
        (state.name.as_str(), state.status.as_str(), state.machine_id),
        ("edge-1", "pending", 0)
    );
    assert_eq!(state.mixer_pub.as_ref(), key.to_bytes());
    assert_eq!(
        mixer.rack("edge-1").await.expect("rack").status,
        RackStatus::Pending
    );

    // Pending: heartbeats are answered, signed, with the same status.
    let mut hb = Heartbeat {
        name: "edge-1".into(),
        secret: state.secret.clone(),
        seq: 1,
        ..Heartbeat::default()
    };
    let r = heartbeat(&snake, &hb).await;
    assert_eq!(r.status, "pending");
    key.check(&r).expect("signed");
    assert!(
        r.report_full_state,
        "the first heartbeat of a session was not full"
    );

    mixer.approve("edge-1").await.expect("approve");
    hb.seq = 2;
    let r = heartbeat(&snake, &hb).await;
    assert_eq!(r.status, "active");
    let envelope = StateEnvelope::from_cbor(&r.passport).expect("a new passport");
    let state = key.open(&envelope).expect("signed");
    assert_eq!(state.status, "active");
    assert!(
        state.machine_id >= 100,
        "a leased machine id: {}",
        state.machine_id
    );
    assert!(state.lease_expires_at > 0);
    assert!(!r.report_full_state, "no gap");

    // A scenario naming the rack: activating it pushes the rack its part, signed.
    let mut pushes = snake
        .subscribe(Pattern::from(Subject::scenario("edge-1").expect("subject")))
        .await
        .expect("sub");
    let yaml = "meta: { name: demo, version: 1.0.0 }\nracks: [ { name: edge-1 } ]\ngears:\n  - { name: gen, type: generate, config: { count: 1 } }\n";
    let imported = mixer.import(yaml, true).await.expect("import");
    assert_eq!(imported.racks, ["edge-1"]);
    let msg = tokio::time::timeout(Duration::from_secs(2), pushes.next())
        .await
        .expect("a push")
        .expect("open");
    let push = ScenarioPush::from_message(&msg.payload).expect("a push");
    key.check(&push).expect("signed");
    assert_eq!(
        (push.rack_name.as_str(), push.hash.as_str()),
        ("edge-1", imported.hash.as_str())
    );
    assert_eq!(push.scenario.as_ref(), yaml.as_bytes());
    let row = &mixer.convergence().await.expect("rows")[0];
    assert_eq!(
        (row.status.as_str(), row.asked_hash.as_str()),
        ("pushed", imported.hash.as_str())
    );

    // The rack reports back; a report with the wrong secret changes nothing.
    for (secret, status) in [("forged", "failed"), (state.secret.as_str(), "applied")] {
        let report = PushStatus {
            name: "edge-1".into(),
            machine_id: state.machine_id,
            secret: secret.to_owned(),
            version: push.version.clone(),
            hash: push.hash.clone(),
            status: status.to_owned(),
            error: String::new(),
            running_hash: push.hash.clone(),
        };
        snake
            .publish(Message::new(
                Subject::status(),
                report.to_message().expect("encode"),
            ))
            .await
            .expect("publish");
    }
    testkit::within("the report", async {
        loop {
            let rows = mixer.convergence().await.expect("rows");
            if rows[0].status == "applied" {
                assert_eq!(rows[0].applied_hash, imported.hash);
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    assert_eq!(mixer.refused().get("bad_secret"), Some(&1));
    mixer.stop();
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_secrets_are_denied_and_a_held_name_is_a_conflict() {
    let snake = Snake::memory();
    let dir = temp_dir("mixer-deny");
    let mixer = mixer(&snake, Arc::new(MemoryStore::new()), &dir).await;
    let reply = hello(&snake, "edge-2", "guess", "n1")
        .await
        .expect("a reply");
    assert_eq!(reply.status, "denied");
    assert!(reply.passport.is_empty());
    assert!(
        mixer.racks().await.expect("racks").is_empty(),
        "a refused rack is not stored"
    );

    let first = hello(&snake, "edge-2", BOOTSTRAP, "n2")
        .await
        .expect("a reply");
    assert_eq!(first.status, "pending");
    let key = ClusterPublic::from_hex(&mixer.public_key()).expect("key");
    let secret = open(&first, &key).secret;
    // Its answer was lost, so it asks again with the bootstrap secret: before its first
    // heartbeat, it gets the same passport.
    let retry = hello(&snake, "edge-2", BOOTSTRAP, "n3")
        .await
        .expect("a reply");
    assert_eq!(retry.status, "pending", "{retry:?}");
    assert_eq!(open(&retry, &key).secret, secret);
    // It heartbeats: the name is its own now.
    let hb = Heartbeat {
        name: "edge-2".into(),
        secret: secret.clone(),
        seq: 1,
        ..Heartbeat::default()
    };
    assert_eq!(heartbeat(&snake, &hb).await.status, "pending");
    // Someone else with the bootstrap secret and the same name: an explicit conflict.
    let other = hello(&snake, "edge-2", BOOTSTRAP, "n4")
        .await
        .expect("a reply");
    assert_eq!(other.status, "conflict", "{other:?}");
    // A wrong secret for a known name: denied.
    let wrong = hello(&snake, "edge-2", "nope", "n5")
        .await
        .expect("a reply");
    assert_eq!(wrong.status, "denied");
    // A name that cannot be a subject token gets no answer at all.
    let mut bad = snake
        .subscribe(Pattern::parse("flux.agent.enrollment.>").expect("pattern"))
        .await
        .expect("sub");
    let hostile = Hello {
        name: "edge.*".into(),
        nonce: "x".into(),
        secret: BOOTSTRAP.into(),
        ..Hello::default()
    };
    snake
        .publish(Message::new(
            Subject::hello(),
            hostile.to_message().expect("encode"),
        ))
        .await
        .expect("publish");
    assert!(
        tokio::time::timeout(Duration::from_millis(300), bad.next())
            .await
            .is_err(),
        "a hostile name was answered"
    );
    let refused = mixer.refused();
    assert_eq!(refused.get("conflict"), Some(&1), "{refused:?}");
    assert_eq!(refused.get("bad_hello"), Some(&1), "{refused:?}");
    mixer.stop();
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hellos_are_rate_limited_per_name() {
    let snake = Snake::memory();
    let dir = temp_dir("mixer-rate");
    let mixer = mixer(&snake, Arc::new(MemoryStore::new()), &dir).await;
    // Eight at once: the replies are awaited after every hello went out.
    let mut subs = Vec::new();
    for i in 0..8 {
        let nonce = format!("n{i}");
        subs.push(
            snake
                .subscribe(Pattern::from(
                    Subject::enrollment("noisy", &nonce).expect("subject"),
                ))
                .await
                .expect("sub"),
        );
        let hello = Hello {
            name: "noisy".into(),
            nonce,
            secret: "guess".into(),
            ..Hello::default()
        };
        snake
            .publish(Message::new(
                Subject::hello(),
                hello.to_message().expect("encode"),
            ))
            .await
            .expect("publish");
    }
    let mut answered = 0;
    for sub in &mut subs {
        if tokio::time::timeout(Duration::from_millis(500), sub.next())
            .await
            .is_ok()
        {
            answered += 1;
        }
    }
    // A burst of 5 per name, refilled at one per second.
    assert!((5..=6).contains(&answered), "{answered} answered");
    assert!(mixer.refused().get("rate_limited").copied().unwrap_or(0) >= 2);
    // Another name is not held up by the noisy one.
    assert!(hello(&snake, "quiet", "guess", "q1").await.is_some());
    mixer.stop();
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rack_named_by_the_active_scenario_is_admitted_and_auto_adopt_admits_all() {
    let snake = Snake::memory();
    let dir = temp_dir("mixer-named");
    let mixer = mixer(&snake, Arc::new(MemoryStore::new()), &dir).await;
    let yaml = "meta: { name: demo, version: 1.0.0 }\nracks: [ { name: named } ]\ngears:\n  - { name: gen, type: generate, config: { count: 1 } }\n";
    mixer.import(yaml, true).await.expect("import");
    let reply = hello(&snake, "named", BOOTSTRAP, "n1")
        .await
        .expect("a reply");
    assert_eq!(reply.status, "active");
    let reply = hello(&snake, "unnamed", BOOTSTRAP, "n1")
        .await
        .expect("a reply");
    assert_eq!(reply.status, "pending");
    mixer.stop();

    let snake = Snake::memory();
    let dev = Mixer::builder()
        .data_dir(temp_dir("mixer-adopt"))
        .store(Arc::new(MemoryStore::new()))
        .snake(snake.clone())
        .auto_adopt(true)
        .start()
        .await
        .expect("a mixer");
    let reply = hello(&snake, "anyone", "", "n1").await.expect("a reply");
    assert_eq!(reply.status, "active");
    dev.stop();
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mixer_refuses_to_start_with_a_key_its_store_does_not_know() {
    let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
    let snake = Snake::memory();
    let dir = temp_dir("mixer-key");
    let first = mixer(&snake, Arc::clone(&store), &dir).await;
    let public = first.public_key();
    first.stop();
    let key_file = dir.join(mixer_lib::keys::KEY_FILE);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(&key_file)
            .expect("key file")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600, "the key file is private");
    }
    // The same key again: fine, same identity.
    let again = mixer(&snake, Arc::clone(&store), &dir).await;
    assert_eq!(again.public_key(), public);
    again.stop();
    // A backup, then a lost key replaced by a new one: refused.
    let backup = dir.join("backup.key");
    mixer_lib::keys::backup(&dir, &backup).expect("backup");
    std::fs::remove_file(&key_file).expect("lose the key");
    let err = Mixer::builder()
        .data_dir(&dir)
        .store(Arc::clone(&store))
        .snake(snake.clone())
        .start()
        .await
        .expect_err("a stranger's key");
    assert!(matches!(err, MixerError::KeyMismatch { .. }), "{err}");
    // Restored from the backup: the mixer starts.
    std::fs::remove_file(&key_file).expect("remove the stranger's key");
    std::fs::copy(&backup, &key_file).expect("restore");
    let restored = mixer(&snake, store, &dir).await;
    assert_eq!(restored.public_key(), public);
    restored.stop();
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_go_shaped_hello_is_answered_as_the_reference_would() {
    let snake = Snake::memory();
    let dir = temp_dir("mixer-go");
    let mixer = mixer(&snake, Arc::new(MemoryStore::new()), &dir).await;
    let mut replies = snake
        .subscribe(Pattern::from(
            Subject::enrollment("go-rack", "abc123").expect("subject"),
        ))
        .await
        .expect("sub");
    // A fluxMsg whose data holds the reference's field names, built by hand.
    let msg = fluxmsg::FluxMsg::builder()
        .data("name", "go-rack")
        .data("nonce", "abc123")
        .data("machine_id", 0)
        .data("secret", BOOTSTRAP)
        .data("ip", "10.0.0.7")
        .data("port", 0)
        .data("version", "v0.11.0")
        .build();
    let bytes = fluxmsg::Codec::new().encode_to_vec(&msg).expect("encode");
    snake
        .publish(Message::new(Subject::hello(), bytes))
        .await
        .expect("publish");
    let reply = tokio::time::timeout(Duration::from_secs(2), replies.next())
        .await
        .expect("a reply")
        .expect("open");
    let decoded = fluxmsg::Codec::new()
        .decode(&reply.payload)
        .expect("a fluxMsg");
    assert_eq!(
        decoded.data.get("status").and_then(|v| v.as_str()),
        Some("pending")
    );
    assert!(
        matches!(decoded.data.get("passport"), Some(fluxmsg::Value::Bytes(b)) if !b.is_empty())
    );
    assert_eq!(mixer.rack("go-rack").await.expect("rack").ip, "10.0.0.7");
    mixer.stop();
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_rack_goes_offline_and_comes_back_with_its_lease() {
    let snake = Snake::memory();
    let dir = temp_dir("mixer-offline");
    let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
    let mixer = mixer(&snake, Arc::clone(&store), &dir).await;
    let reply = hello(&snake, "edge-3", BOOTSTRAP, "n1")
        .await
        .expect("a reply");
    let key = ClusterPublic::from_hex(&mixer.public_key()).expect("key");
    let secret = open(&reply, &key).secret;
    let approved = mixer.approve("edge-3").await.expect("approve");
    testkit::within("offline after three silent intervals", async {
        while mixer.rack("edge-3").await.expect("rack").status != RackStatus::Offline {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
    let hb = Heartbeat {
        name: "edge-3".into(),
        secret,
        machine_id: approved.machine_id.expect("leased"),
        seq: 1,
        full_state: true,
        ..Heartbeat::default()
    };
    let r = heartbeat(&snake, &hb).await;
    assert_eq!(r.status, "active");
    // Its first beat since the approval: the active passport, with the lease it had.
    let state = key
        .open(&StateEnvelope::from_cbor(&r.passport).expect("a passport"))
        .expect("signed");
    assert_eq!(
        (state.status.as_str(), Some(state.machine_id)),
        ("active", approved.machine_id)
    );
    let hb = Heartbeat { seq: 2, ..hb };
    let r = heartbeat(&snake, &hb).await;
    assert!(r.passport.is_empty(), "nothing changed, no new passport");
    let back = mixer.rack("edge-3").await.expect("rack");
    assert_eq!(
        (back.status, back.machine_id),
        (RackStatus::Active, approved.machine_id)
    );
    // Removing it frees its machine id.
    assert!(mixer.remove("edge-3").await.expect("remove"));
    assert!(store.leases().await.expect("leases").is_empty());
    mixer.stop();
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scenario_that_fails_validation_at_activation_leaves_the_active_one() {
    let snake = Snake::memory();
    let dir = temp_dir("mixer-activate-invalid");
    let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
    let mixer = mixer(&snake, Arc::clone(&store), &dir).await;
    let yaml = "meta: { name: demo, version: 1.0.0 }\nracks: [ { name: edge-1 } ]\ngears:\n  - { name: gen, type: generate, config: { count: 1 } }\n";
    let good = mixer.import(yaml, true).await.expect("import");
    // A version the catalog no longer accepts (stored by a mixer with another catalog).
    let bad = "meta: { name: demo, version: 2.0.0 }\nracks: [ { name: edge-1 } ]\ngears:\n  - { name: gen, type: no-such-gear }\n";
    store
        .put_scenario(&ScenarioRecord {
            name: "demo".into(),
            version: "2.0.0".into(),
            hash: "not-checked-here".into(),
            yaml: bad.into(),
            imported_at: 0,
        })
        .await
        .expect("put");
    for version in ["2.0.0", "latest"] {
        let err = mixer
            .activate("demo", version)
            .await
            .expect_err("an invalid scenario");
        assert!(matches!(err, MixerError::Scenario(_)), "{err}");
        let active = mixer.active().await.expect("active").expect("one");
        assert_eq!(
            (active.version.as_str(), active.hash.as_str()),
            ("1.0.0", good.hash.as_str()),
            "activating {version}"
        );
    }
    mixer.stop();
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn debug_output_hides_the_bootstrap_secret() {
    let dir = temp_dir("mixer-debug");
    let builder = Mixer::builder()
        .data_dir(&dir)
        .store(Arc::new(MemoryStore::new()))
        .bootstrap_secret(BOOTSTRAP);
    let text = format!("{builder:?}");
    assert!(!text.contains(BOOTSTRAP), "{text}");
    assert!(text.contains("bootstrap_secret"), "{text}");
    let mixer = builder.start().await.expect("a mixer");
    let text = format!("{mixer:?}");
    assert!(!text.contains(BOOTSTRAP), "{text}");
    mixer.stop();
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_denied_or_removed_rack_is_refused_and_nothing_answers_for_a_stranger() {
    let snake = Snake::memory();
    let dir = temp_dir("mixer-denied-heartbeat");
    let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
    let mixer = mixer(&snake, Arc::clone(&store), &dir).await;
    let key = ClusterPublic::from_hex(&mixer.public_key()).expect("key");
    let reply = hello(&snake, "edge-d", BOOTSTRAP, "n1")
        .await
        .expect("a reply");
    let secret = open(&reply, &key).secret;
    let mut rack = mixer.rack("edge-d").await.expect("rack");
    rack.status = RackStatus::Denied;
    store.update_rack(&rack).await.expect("deny");

    // A denied rack with its own secret: refused as its hello would be, without a passport,
    // and its record stays as it was.
    let hb = Heartbeat {
        name: "edge-d".into(),
        secret: secret.clone(),
        seq: 1,
        full_state: true,
        health: [("gen", fluxmsg::Text::from("ok"))].into_iter().collect(),
        ..Heartbeat::default()
    };
    let r = heartbeat(&snake, &hb).await;
    key.check(&r).expect("signed");
    assert_eq!(r.status, "denied");
    assert!(r.passport.is_empty(), "a denied rack got a passport");
    assert_eq!(mixer.rack("edge-d").await.expect("rack"), rack);
    assert_eq!(mixer.refused().get("denied"), Some(&1));

    // Nor are its reports recorded.
    let report = PushStatus {
        name: "edge-d".into(),
        secret: secret.clone(),
        hash: "h".into(),
        status: "applied".into(),
        running_hash: "h".into(),
        ..PushStatus::default()
    };
    snake
        .publish(Message::new(
            Subject::status(),
            report.to_message().expect("encode"),
        ))
        .await
        .expect("publish");
    testkit::within("the report refused", async {
        while mixer.refused().get("denied") != Some(&2) {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    assert!(mixer.convergence().await.expect("rows").is_empty());

    // Removed: its heartbeats are refused as a stranger's.
    assert!(mixer.remove("edge-d").await.expect("remove"));
    let r = heartbeat(&snake, &hb).await;
    assert_eq!(r.status, "denied");
    assert_eq!(mixer.refused().get("unknown_rack"), Some(&1));

    // A heartbeat nobody can vouch for is answered on its reply subject only, never on the
    // notify subject of the machine id it claims.
    let mut notify = snake
        .subscribe(Pattern::from(Subject::notify(4242)))
        .await
        .expect("sub");
    let forged = Heartbeat {
        name: "edge-x".into(),
        machine_id: 4242,
        secret: "forged".into(),
        ..Heartbeat::default()
    };
    snake
        .publish(Message::new(
            Subject::heartbeat(),
            forged.to_message().expect("encode"),
        ))
        .await
        .expect("publish");
    assert!(
        tokio::time::timeout(Duration::from_millis(300), notify.next())
            .await
            .is_err(),
        "the mixer answered a stranger on another rack's subject"
    );
    mixer.stop();
    let _ = std::fs::remove_dir_all(&dir);
}

/// `remove` says whether the rack was there; a store that fails is an error, not a "no".
#[cfg(feature = "sqlite")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn removing_a_rack_from_a_failing_store_is_an_error() {
    let snake = Snake::memory();
    let dir = temp_dir("mixer-remove-failing");
    let store = Arc::new(
        mixer_lib::store::SqliteStore::open(dir.join("mixer.db"))
            .await
            .expect("open"),
    );
    let mixer = mixer(&snake, Arc::clone(&store) as Arc<dyn Store>, &dir).await;
    assert!(!mixer.remove("nobody").await.expect("not there"));
    store.close().await;
    let err = mixer
        .remove("nobody")
        .await
        .expect_err("the store is closed");
    assert!(matches!(err, MixerError::Store(_)), "{err}");
    mixer.stop();
    let _ = std::fs::remove_dir_all(&dir);
}

/// `latest` follows SemVer precedence: pre-releases below their release and compared
/// identifier by identifier, build metadata ignored.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn latest_is_the_highest_version_by_semver_precedence() {
    let snake = Snake::memory();
    let dir = temp_dir("mixer-latest");
    let mixer = mixer(&snake, Arc::new(MemoryStore::new()), &dir).await;
    // Imported in this order, the expected one first: import order must not decide.
    let cases: [&[&str]; 6] = [
        &["1.0.0-rc.10", "1.0.0-rc.2"],
        &["1.0.0+build-7", "1.0.0-rc.1"],
        &["1.0.0-beta", "1.0.0-alpha.1"],
        &["1.0.0-alpha.1", "1.0.0-alpha"],
        &["1.0.0-a", "1.0.0-1"],
        &["10.0.0", "9.9.9", "2.0.0"],
    ];
    for (i, versions) in cases.iter().enumerate() {
        let name = format!("s{i}");
        for version in *versions {
            let yaml = format!(
                "meta: {{ name: {name}, version: {version} }}\nracks: [ {{ name: edge-1 }} ]\ngears:\n  - {{ name: gen, type: generate, config: {{ count: 1 }} }}\n"
            );
            mixer.import(&yaml, false).await.expect("import");
        }
        mixer.activate(&name, "latest").await.expect("activate");
        let active = mixer.active().await.expect("active").expect("one");
        assert_eq!(active.version, versions[0], "{versions:?}");
    }
    mixer.stop();
    let _ = std::fs::remove_dir_all(&dir);
}

/// A push of what the rack already runs leaves no earlier push's failure on its row.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pushing_what_a_rack_runs_clears_an_earlier_failure() {
    let snake = Snake::memory();
    let dir = temp_dir("mixer-push-running");
    let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
    let mixer = mixer(&snake, Arc::clone(&store), &dir).await;
    let mut rack = mixer_lib::store::RackRecord::new("id-1", "edge-1", "sha256$x$y".into(), 0);
    rack.status = RackStatus::Active;
    rack.machine_id = Some(100);
    store.insert_rack(&rack).await.expect("insert");
    let yaml = "meta: { name: demo, version: 1.0.0 }\nracks: [ { name: edge-1 } ]\ngears:\n  - { name: gen, type: generate, config: { count: 1 } }\n";
    let runs = mixer.check(yaml).expect("valid").hash;
    // It was asked to run 2.0.0, failed, and still runs 1.0.0.
    store
        .put_convergence(&mixer_lib::store::Convergence {
            rack: "edge-1".into(),
            asked_version: "2.0.0".into(),
            asked_hash: "two".into(),
            applied_hash: runs.clone(),
            status: "failed".into(),
            error: "2.0.0 does not start".into(),
            updated_at: 0,
        })
        .await
        .expect("row");
    // Back to 1.0.0, while the rack is away.
    mixer.import(yaml, true).await.expect("import");
    let row = &mixer.convergence().await.expect("rows")[0];
    assert_eq!(
        (
            row.asked_version.as_str(),
            row.asked_hash.as_str(),
            row.applied_hash.as_str(),
            row.status.as_str(),
            row.error.as_str()
        ),
        ("1.0.0", runs.as_str(), runs.as_str(), "applied", "")
    );
    mixer.stop();
    let _ = std::fs::remove_dir_all(&dir);
}

/// A zero heartbeat interval is taken as the shortest one, not a sweep that never runs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_zero_heartbeat_interval_still_sweeps() {
    let snake = Snake::memory();
    let dir = temp_dir("mixer-zero-interval");
    let clock = Arc::new(mixer_lib::ManualClock::new(1_000_000));
    let mixer = Mixer::builder()
        .data_dir(&dir)
        .store(Arc::new(MemoryStore::new()))
        .snake(snake.clone())
        .bootstrap_secret(BOOTSTRAP)
        .clock(Arc::clone(&clock) as Arc<dyn mixer_lib::Clock>)
        .heartbeat_interval(Duration::ZERO, 3)
        .start()
        .await
        .expect("a mixer");
    hello(&snake, "edge-z", BOOTSTRAP, "n1")
        .await
        .expect("a reply");
    mixer.approve("edge-z").await.expect("approve");
    clock.advance(60_000);
    testkit::within("offline after a silent minute", async {
        while mixer.rack("edge-z").await.expect("rack").status != RackStatus::Offline {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
    mixer.stop();
    let _ = std::fs::remove_dir_all(&dir);
}

/// A scenario activated while a rack was suspended reaches it once it is resumed: the
/// mixer compares what the rack runs with the active scenario, not with its last push.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rack_resumed_after_an_activation_gets_the_new_scenario() {
    let snake = Snake::memory();
    let dir = temp_dir("mixer-resume");
    let mixer = mixer(&snake, Arc::new(MemoryStore::new()), &dir).await;
    let key = ClusterPublic::from_hex(&mixer.public_key()).expect("key");
    let reply = hello(&snake, "edge-4", BOOTSTRAP, "n1")
        .await
        .expect("a reply");
    let secret = open(&reply, &key).secret;
    let machine_id = mixer
        .approve("edge-4")
        .await
        .expect("approve")
        .machine_id
        .expect("leased");
    let mut pushes = snake
        .subscribe(Pattern::from(Subject::scenario("edge-4").expect("subject")))
        .await
        .expect("sub");
    let yaml = |v: &str| {
        format!(
            "meta: {{ name: demo, version: {v} }}\nracks: [ {{ name: edge-4 }} ]\ngears:\n  - {{ name: gen, type: generate, config: {{ count: 1 }} }}\n"
        )
    };
    let v1 = mixer.import(&yaml("1.0.0"), true).await.expect("v1");
    let first = testkit::within("the first push", pushes.next())
        .await
        .expect("open");
    assert_eq!(
        ScenarioPush::from_message(&first.payload)
            .expect("push")
            .hash,
        v1.hash
    );
    mixer.suspend("edge-4").await.expect("suspend");
    let v2 = mixer.import(&yaml("2.0.0"), true).await.expect("v2");
    mixer.resume("edge-4").await.expect("resume");
    // The rack still runs v1 and says so; within a few beats it is pushed v2.
    let mut seq = 0;
    let got = testkit::within("the push of the version activated meanwhile", async {
        loop {
            seq += 1;
            let hb = Heartbeat {
                name: "edge-4".into(),
                machine_id,
                secret: secret.clone(),
                seq,
                applied_hash: v1.hash.clone(),
                ..Heartbeat::default()
            };
            let _ = heartbeat(&snake, &hb).await;
            if let Ok(Some(m)) =
                tokio::time::timeout(Duration::from_millis(200), pushes.next()).await
            {
                break ScenarioPush::from_message(&m.payload).expect("push");
            }
        }
    })
    .await;
    assert_eq!(got.hash, v2.hash);
    mixer.stop();
    let _ = std::fs::remove_dir_all(&dir);
}

/// What heartbeats change is the mixer's at once and the store's after the next batch (or
/// `flush`); a change of status is the store's at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn heartbeats_are_written_in_batches_and_read_at_once() {
    let snake = Snake::memory();
    let dir = temp_dir("mixer-batches");
    let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
    let mixer = mixer(&snake, Arc::clone(&store), &dir).await;
    let key = ClusterPublic::from_hex(&mixer.public_key()).expect("key");
    let reply = hello(&snake, "edge-9", BOOTSTRAP, "n1")
        .await
        .expect("a reply");
    let secret = open(&reply, &key).secret;
    let approved = mixer.approve("edge-9").await.expect("approve");
    // The approval is in the store at once.
    let stored = store
        .rack_by_name("edge-9")
        .await
        .expect("get")
        .expect("there");
    assert_eq!(
        (stored.status, stored.machine_id),
        (RackStatus::Active, approved.machine_id)
    );
    let hb = Heartbeat {
        name: "edge-9".into(),
        secret,
        machine_id: approved.machine_id.expect("leased"),
        seq: 1,
        full_state: true,
        applied_hash: "h1".into(),
        health: [("gen", fluxmsg::Text::from("ok"))].into_iter().collect(),
        ..Heartbeat::default()
    };
    assert_eq!(heartbeat(&snake, &hb).await.status, "active");
    let seen = mixer.rack("edge-9").await.expect("rack");
    assert_eq!(seen.applied_hash, "h1");
    assert_eq!(seen.health.get("gen").map(String::as_str), Some("ok"));
    assert!(seen.last_seen >= stored.last_seen);
    assert_eq!(
        mixer.racks().await.expect("racks")[0].applied_hash,
        "h1",
        "the list shows what heartbeats changed too"
    );
    mixer.flush().await.expect("flush");
    let flushed = store
        .rack_by_name("edge-9")
        .await
        .expect("get")
        .expect("there");
    assert_eq!(flushed, seen);
    mixer.stop();
    let _ = std::fs::remove_dir_all(&dir);
}
