//! A real mixer and real rack agents in one process: enrollment, approval, scenario push,
//! messages flowing, reports, a failed push rolled back, and a mixer restart on its SQLite
//! store that racks reattach to without approval.

use std::sync::Arc;
use std::time::Duration;

use crate::temp_dir;
use mixer_lib::Mixer;
use mixer_lib::store::{RackStatus, SqliteStore, Store};
use rack_lib::agent::{Agent, AgentConfig, Enrollment, PushOutcome};
use snake::Snake;

const BOOTSTRAP: &str = "fleet-secret";
const BEAT: Duration = Duration::from_millis(100);

async fn mixer(snake: &Snake, dir: &std::path::Path) -> Mixer {
    let store: Arc<dyn Store> = Arc::new(
        SqliteStore::open(dir.join("mixer.db"))
            .await
            .expect("a SQLite store"),
    );
    Mixer::builder()
        .data_dir(dir)
        .store(store)
        .snake(snake.clone())
        .bootstrap_secret(BOOTSTRAP)
        .heartbeat_interval(BEAT, 3)
        .start()
        .await
        .expect("a mixer")
}

async fn agent(snake: &Snake, name: &str, dir: &std::path::Path) -> Agent {
    let config = AgentConfig::new(name, dir.join(name))
        .bootstrap_secret(BOOTSTRAP)
        .heartbeat_interval(BEAT)
        .enrollment_interval(Duration::from_millis(100))
        .reply_timeout(Duration::from_millis(500));
    Agent::start(config, snake.clone()).await.expect("an agent")
}

fn scenario(version: &str, sink: &std::path::Path, extra: &str) -> String {
    format!(
        "meta: {{ name: flow, version: {version} }}\n\
         racks: [ {{ name: edge }}, {{ name: core }} ]\n\
         gears:\n\
         - {{ name: gen, type: generate, deploy: edge, config: {{ count: 20, batch: 5, template: {{ data: {{ n: \"${{counter}}\" }} }} }} }}\n\
         - {{ name: out, type: log, deploy: core, config: {{ output: file, path: \"{}\", fields: [data.n] }} }}\n\
         {extra}\
         wires: [ {{ from: gen.out, to: out.in }} ]\n",
        sink.display()
    )
}

fn lines(path: &std::path::Path) -> usize {
    std::fs::read_to_string(path).map_or(0, |t| t.lines().count())
}

/// Waits, within testkit's bound, until the agent's status satisfies `cond`.
async fn wait(
    agent: &Agent,
    what: &str,
    cond: impl FnMut(&rack_lib::agent::AgentStatus) -> bool,
) -> rack_lib::agent::AgentStatus {
    let mut status = agent.status();
    match tokio::time::timeout(Duration::from_secs(30), status.wait_for(cond)).await {
        Ok(Some(s)) => s,
        _ => panic!(
            "timed out waiting for {what}: {:?}",
            agent.status().current()
        ),
    }
}

async fn until<F: Fn() -> bool>(what: &str, f: F) {
    testkit::within(what, async {
        while !f() {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn racks_enroll_get_approved_run_their_scenario_and_survive_a_mixer_restart() {
    let snake = Snake::memory();
    let dir = temp_dir("fleet-e2e");
    let sink = dir.join("sink.jsonl");
    let mixer = mixer(&snake, &dir).await;
    let edge = agent(&snake, "edge", &dir).await;
    let core = agent(&snake, "core", &dir).await;
    for a in [&edge, &core] {
        wait(a, "pending", |s| s.enrollment == Enrollment::Pending).await;
    }
    assert!(
        mixer
            .racks()
            .await
            .expect("racks")
            .iter()
            .all(|r| r.status == RackStatus::Pending)
    );
    mixer.approve("edge").await.expect("approve");
    mixer.approve("core").await.expect("approve");
    for a in [&edge, &core] {
        wait(a, "active with a machine id", |s| {
            s.enrollment == Enrollment::Active && s.machine_id >= 100
        })
        .await;
    }
    let ids: Vec<u16> = [&edge, &core]
        .iter()
        .map(|a| a.status().current().machine_id)
        .collect();
    assert_ne!(ids[0], ids[1], "two racks, two machine ids");

    let v1 = mixer
        .import(&scenario("1.0.0", &sink, ""), true)
        .await
        .expect("import");
    for a in [&edge, &core] {
        let s = wait(a, "a report", |s| {
            s.last_push.as_ref().is_some_and(|p| p.hash == v1.hash)
        })
        .await;
        assert_eq!(
            (s.last_push.map(|p| p.outcome), s.running_hash),
            (Some(PushOutcome::Applied), v1.hash.clone())
        );
    }
    until("the messages to flow", || lines(&sink) >= 20).await;
    testkit::within("convergence", async {
        loop {
            let rows = mixer.convergence().await.expect("rows");
            if rows.len() == 2
                && rows
                    .iter()
                    .all(|r| r.status == "applied" && r.applied_hash == v1.hash)
            {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;

    // A version whose new gear cannot start: reported failed, with the gear's error, and the
    // rack goes back to what ran.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("a port");
    let port = taken.local_addr().expect("addr").port();
    let broken = format!(
        "- {{ name: listener, type: io_tcp, deploy: core, config: {{ mode: server, bind: \"127.0.0.1:{port}\" }} }}\n"
    );
    let v2 = mixer
        .import(&scenario("2.0.0", &sink, &broken), true)
        .await
        .expect("import");
    let s = wait(&core, "a report", |s| {
        s.last_push.as_ref().is_some_and(|p| p.hash == v2.hash)
    })
    .await;
    assert!(
        matches!(&s.last_push.as_ref().map(|p| &p.outcome), Some(PushOutcome::Failed(e)) if e.contains("listener")),
        "{s:?}"
    );
    assert_eq!(s.running_hash, v1.hash, "rolled back");
    testkit::within("the failure in the convergence view", async {
        loop {
            let rows = mixer.convergence().await.expect("rows");
            if let Some(row) = rows.iter().find(|r| r.rack == "core")
                && row.status == "failed"
            {
                assert!(row.error.contains("listener"), "{row:?}");
                assert_eq!(row.applied_hash, v1.hash);
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    drop(taken);
    // Back to the good version.
    mixer.activate("flow", "1.0.0").await.expect("activate");

    // The mixer restarts on the same store and key: the racks carry on, no approval needed,
    // nothing restarts.
    let heartbeats = edge.status().current().heartbeats;
    mixer.stop();
    drop(mixer);
    let mixer = self::mixer(&snake, &dir).await;
    until("heartbeats to the new mixer", || {
        edge.status().current().heartbeats > heartbeats + 3
    })
    .await;
    for name in ["edge", "core"] {
        assert_eq!(
            mixer.rack(name).await.expect("known").status,
            RackStatus::Active
        );
    }
    for a in [&edge, &core] {
        let s = a.status().current();
        assert_eq!(
            (s.enrollment, s.running_hash.as_str()),
            (Enrollment::Active, v1.hash.as_str())
        );
    }
    edge.shutdown().await.expect("edge stops");
    core.shutdown().await.expect("core stops");
    mixer.stop();
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rack_without_the_bootstrap_secret_is_denied_and_a_stolen_name_conflicts() {
    let snake = Snake::memory();
    let dir = temp_dir("fleet-deny");
    let mixer = mixer(&snake, &dir).await;
    let stranger = Agent::start(
        AgentConfig::new("edge", dir.join("stranger"))
            .bootstrap_secret("guess")
            .enrollment_interval(Duration::from_millis(100))
            .reply_timeout(Duration::from_millis(500)),
        snake.clone(),
    )
    .await
    .expect("an agent");
    wait(&stranger, "denied", |s| s.enrollment == Enrollment::Denied).await;
    stranger.shutdown().await.expect("stops");
    let first = agent(&snake, "edge", &dir).await;
    wait(&first, "pending", |s| s.enrollment == Enrollment::Pending).await;
    // Once it heartbeated, the name is its own.
    wait(&first, "a heartbeat answered", |s| {
        s.heartbeats >= 1 && s.missed_heartbeats == 0
    })
    .await;
    testkit::within("the heartbeat recorded", async {
        loop {
            let rack = mixer.rack("edge").await.expect("known");
            if rack.last_seen > rack.first_seen {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    // Another rack with the bootstrap secret and the same name, from its own state.
    let thief = agent(&snake, "edge", &dir.join("thief")).await;
    let ended = testkit::within("the conflict", thief.run_until_shutdown()).await;
    assert!(
        matches!(ended, Err(rack_lib::agent::AgentError::Conflict { .. })),
        "{ended:?}"
    );
    first.shutdown().await.expect("stops");
    mixer.stop();
    let _ = std::fs::remove_dir_all(&dir);
}

/// Two mixers sharing one PostgreSQL database (and one cluster key, one bus) while 50 racks
/// say hello at once: every rack gets one answer, active, and no two racks share a machine
/// id; a third mixer started on the same database afterwards knows all 50 (a restart keeps
/// the registry).
#[cfg(feature = "postgres-tests")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_racks_enrolling_at_once_against_two_mixers_on_one_postgres_get_distinct_ids() {
    use std::collections::BTreeSet;

    use fluxmsg::system::{EnrollmentReply, Hello, Payload, StateEnvelope};
    use mixer_lib::store::PostgresStore;
    use rack_lib::passport::ClusterPublic;
    use snake::{Message, Pattern, Subject};

    let url = crate::store::postgres::database().await;
    let dir = temp_dir("fleet-pg");
    let snake = Snake::memory();
    let start = || async {
        let store: Arc<dyn Store> = Arc::new(PostgresStore::connect(&url).await.expect("connect"));
        Mixer::builder()
            .data_dir(&dir)
            .store(store)
            .snake(snake.clone())
            .auto_adopt(true)
            .hello_rates((10.0, 10.0), (10_000.0, 10_000.0))
            .start()
            .await
            .expect("a mixer")
    };
    let one = start().await;
    let two = start().await;
    assert_eq!(one.public_key(), two.public_key(), "one cluster");
    let key = ClusterPublic::from_hex(&one.public_key()).expect("key");

    let mut subs = Vec::new();
    for i in 0..50 {
        let name = format!("rack-{i}");
        subs.push(
            snake
                .subscribe(Pattern::from(
                    Subject::enrollment(&name, "n").expect("subject"),
                ))
                .await
                .expect("sub"),
        );
    }
    for i in 0..50 {
        let hello = Hello {
            name: format!("rack-{i}"),
            nonce: "n".into(),
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
    let mut ids = BTreeSet::new();
    for sub in &mut subs {
        let msg = testkit::within("a reply", sub.next()).await.expect("open");
        let reply = EnrollmentReply::from_message(&msg.payload).expect("a reply");
        assert_eq!(reply.status, "active", "{reply:?}");
        let state = key
            .open(&StateEnvelope::from_cbor(&reply.passport).expect("passport"))
            .expect("signed");
        assert!(
            ids.insert(state.machine_id),
            "machine id {} twice",
            state.machine_id
        );
        // Exactly one answer: the two mixers are one queue group.
        assert!(
            tokio::time::timeout(Duration::from_millis(20), sub.next())
                .await
                .is_err(),
            "two answers"
        );
    }
    assert_eq!(ids.len(), 50);
    one.stop();
    two.stop();
    let third = start().await;
    let racks = third.racks().await.expect("racks");
    assert_eq!(racks.len(), 50);
    assert!(racks.iter().all(|r| r.status == RackStatus::Active));
    third.stop();
    let _ = std::fs::remove_dir_all(&dir);
}

/// The same fleet over a real nats-server: enrollment, approval, a push, messages across the
/// two racks on a guaranteed lane, and the reports.
#[cfg(feature = "nats-server-tests")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fleet_over_nats_enrolls_gets_its_scenario_and_moves_messages() {
    let server = snake::NatsServer::start().expect("nats-server (make setup-nats)");
    let connect = || async {
        Snake::nats(snake::NatsOptions::new(server.url()))
            .await
            .expect("connect")
    };
    let dir = temp_dir("fleet-nats");
    let sink = dir.join("sink.jsonl");
    let mixer = mixer(&connect().await, &dir).await;
    let edge = agent(&connect().await, "edge", &dir).await;
    let core = agent(&connect().await, "core", &dir).await;
    for a in [&edge, &core] {
        wait(a, "pending", |s| s.enrollment == Enrollment::Pending).await;
    }
    mixer.approve("edge").await.expect("approve");
    mixer.approve("core").await.expect("approve");
    for a in [&edge, &core] {
        wait(a, "active", |s| s.enrollment == Enrollment::Active).await;
    }
    let v1 = mixer
        .import(&scenario("1.0.0", &sink, ""), true)
        .await
        .expect("import");
    for a in [&edge, &core] {
        let s = wait(a, "a report", |s| {
            s.last_push.as_ref().is_some_and(|p| p.hash == v1.hash)
        })
        .await;
        assert_eq!(s.running_hash, v1.hash, "{s:?}");
    }
    until("the messages to cross the guaranteed lane", || {
        lines(&sink) >= 20
    })
    .await;
    testkit::within("convergence", async {
        loop {
            let rows = mixer.convergence().await.expect("rows");
            if rows.len() == 2 && rows.iter().all(|r| r.status == "applied") {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
    edge.shutdown().await.expect("edge stops");
    core.shutdown().await.expect("core stops");
    mixer.stop();
    let _ = std::fs::remove_dir_all(&dir);
}
