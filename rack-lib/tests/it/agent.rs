//! The rack agent against a fake mixer written here: enrollment, pinning, heartbeats,
//! commands, pushes with rollback, persistence and offline start.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use fluxmsg::Value;
use fluxmsg::system::{
    EnrollmentReply, Heartbeat, HeartbeatReply, Hello, Payload, PushStatus, RackState, ScenarioPush,
};
use rack_lib::Limits;
use rack_lib::agent::{Agent, AgentConfig, AgentError, AgentStatus, Enrollment, PushOutcome};
use rack_lib::passport::ClusterKey;
use snake::{Message, Snake, Subject};
use testkit::within;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

const RACK: &str = "edge-1";
const MACHINE_ID: u16 = 101;
const SECRET: &str = "rack-secret";

/// A hot-only pipeline: `source` generates, `stamp` edits, `sink` logs.
const PIPELINE: &str = "\
meta: { name: flow, version: 1.0.0 }
racks: [ { name: edge-1 } ]
gears:
  - { name: source, type: generate, config: { rate: { tps: 500 } } }
  - { name: stamp, type: transform, config: { steps: [ { set: data.stamped, value: true } ] } }
  - { name: sink, type: log }
wires:
  - { from: source.out, to: stamp.in }
  - { from: stamp.out, to: sink.in }
";

/// The same source and sink over a guaranteed lane.
const GUARANTEED: &str = "\
meta: { name: stored, version: 1.0.0 }
racks: [ { name: edge-1 } ]
gears:
  - { name: source, type: generate, config: { rate: { tps: 500 } } }
  - { name: sink, type: log }
wires:
  - { from: source.out, to: sink.in, lane: guaranteed }
";

// ---------------------------------------------------------------------------------------
// The fake mixer.

/// How the fake mixer answers; tests change it while it runs.
#[derive(Default)]
struct Script {
    /// The status a hello gets: `None` answers nothing; `conflict` and `denied` come
    /// without a passport; anything else with a passport of that status.
    answer: Option<String>,
    /// The status of a passport the next heartbeat reply carries.
    passport: Option<String>,
    /// Like `passport`, but issued by a stranger's key.
    forged_passport: Option<String>,
    /// Commands of the next heartbeat reply.
    commands: Vec<String>,
    /// Whether the next heartbeat reply is signed by a stranger's key.
    forge_reply: bool,
    /// Whether the next heartbeat reply asks for the full state.
    report_full: bool,
    /// Heartbeat replies sent so far.
    replies: u64,
    /// Whether heartbeats go unanswered (a mixer too slow to reply in time).
    silent: bool,
}

struct Mixer {
    key: ClusterKey,
    bus: Snake,
    script: Arc<Mutex<Script>>,
    hellos: mpsc::UnboundedReceiver<Hello>,
    beats: mpsc::UnboundedReceiver<Heartbeat>,
    reports: mpsc::UnboundedReceiver<PushStatus>,
    tasks: Vec<JoinHandle<()>>,
}

impl Drop for Mixer {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

fn passport(key: &ClusterKey, status: &str) -> Bytes {
    let expires = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("after 1970")
        .as_secs()
        + 3600;
    let state = RackState {
        mixer_id: "mixer-1".into(),
        machine_id: MACHINE_ID,
        name: RACK.into(),
        status: status.into(),
        secret: SECRET.into(),
        lease_expires_at: i64::try_from(expires).expect("fits"),
        ..RackState::default()
    };
    let envelope = key.issue(&state).expect("issued");
    envelope.to_cbor().expect("encoded").into()
}

impl Mixer {
    /// A mixer that answers hellos with `answer` (`None`: silently).
    async fn start(bus: &Snake, answer: Option<&str>) -> Mixer {
        Mixer::with_key(bus, answer, ClusterKey::generate().expect("a key")).await
    }

    async fn with_key(bus: &Snake, answer: Option<&str>, key: ClusterKey) -> Mixer {
        let script = Arc::new(Mutex::new(Script {
            answer: answer.map(str::to_owned),
            ..Script::default()
        }));
        let (hello_tx, hellos) = mpsc::unbounded_channel();
        let (beat_tx, beats) = mpsc::unbounded_channel();
        let (report_tx, reports) = mpsc::unbounded_channel();
        let mut hello_sub = bus.subscribe(Subject::hello().into()).await.expect("sub");
        let mut beat_sub = bus
            .subscribe(Subject::heartbeat().into())
            .await
            .expect("sub");
        let mut report_sub = bus.subscribe(Subject::status().into()).await.expect("sub");
        let mut tasks = Vec::new();
        let (b, k, s) = (bus.clone(), key.clone(), Arc::clone(&script));
        tasks.push(tokio::spawn(async move {
            while let Some(msg) = hello_sub.next().await {
                let hello = Hello::from_message(&msg.payload).expect("a hello");
                let answer = s.lock().expect("lock").answer.clone();
                let _ = hello_tx.send(hello.clone());
                let Some(status) = answer else { continue };
                let reply = EnrollmentReply {
                    passport: match status.as_str() {
                        "conflict" | "denied" => Bytes::new(),
                        _ => passport(&k, &status),
                    },
                    status,
                    message: "from the test".into(),
                    ..EnrollmentReply::default()
                };
                let to = Subject::enrollment(&hello.name, &hello.nonce).expect("subject");
                let bytes = reply.to_message().expect("encoded");
                b.publish(Message::new(to, bytes)).await.expect("published");
            }
        }));
        let (b, k, s) = (bus.clone(), key.clone(), Arc::clone(&script));
        tasks.push(tokio::spawn(async move {
            while let Some(msg) = beat_sub.next().await {
                let beat = Heartbeat::from_message(&msg.payload).expect("a heartbeat");
                let _ = beat_tx.send(beat);
                if s.lock().expect("lock").silent {
                    continue;
                }
                let stranger = ClusterKey::generate().expect("a key");
                let mut reply = HeartbeatReply {
                    status: "active".into(),
                    ..HeartbeatReply::default()
                };
                let forge = {
                    let mut s = s.lock().expect("lock");
                    if let Some(status) = s.passport.take() {
                        reply.passport = passport(&k, &status);
                    }
                    if let Some(status) = s.forged_passport.take() {
                        reply.passport = passport(&stranger, &status);
                    }
                    reply.commands = std::mem::take(&mut s.commands);
                    reply.report_full_state = std::mem::take(&mut s.report_full);
                    s.replies += 1;
                    std::mem::take(&mut s.forge_reply)
                };
                if forge { &stranger } else { &k }
                    .sign(&mut reply)
                    .expect("signed");
                let bytes = reply.to_message().expect("encoded");
                let _ = b.respond(&msg, bytes).await;
            }
        }));
        tasks.push(tokio::spawn(async move {
            while let Some(msg) = report_sub.next().await {
                let _ = report_tx.send(PushStatus::from_message(&msg.payload).expect("a report"));
            }
        }));
        Mixer {
            key,
            bus: bus.clone(),
            script,
            hellos,
            beats,
            reports,
            tasks,
        }
    }

    fn script(&self, edit: impl FnOnce(&mut Script)) {
        edit(&mut self.script.lock().expect("lock"));
    }

    /// Pushes `yaml` signed by `key`; returns its hash.
    async fn push_signed(&self, key: &ClusterKey, yaml: &str) -> String {
        let hash = sha256_hex(yaml.as_bytes());
        let mut push = ScenarioPush {
            version: "1.0.0".into(),
            name: "flow".into(),
            rack_name: RACK.into(),
            machine_id: MACHINE_ID,
            scenario: Bytes::copy_from_slice(yaml.as_bytes()),
            hash: hash.clone(),
            ..ScenarioPush::default()
        };
        key.sign(&mut push).expect("signed");
        self.send(&push).await;
        hash
    }

    async fn push(&self, yaml: &str) -> String {
        self.push_signed(&self.key, yaml).await
    }

    async fn send(&self, push: &ScenarioPush) {
        let to = Subject::scenario(RACK).expect("subject");
        let bytes = push.to_message().expect("encoded");
        self.bus
            .publish(Message::new(to, bytes))
            .await
            .expect("published");
    }

    async fn hello(&mut self) -> Hello {
        within("a hello", self.hellos.recv())
            .await
            .expect("the mixer runs")
    }

    async fn report(&mut self) -> PushStatus {
        within("a push status", self.reports.recv())
            .await
            .expect("the mixer runs")
    }

    /// The next heartbeat for which `cond` holds.
    async fn beat_where(
        &mut self,
        what: &str,
        mut cond: impl FnMut(&Heartbeat) -> bool,
    ) -> Heartbeat {
        within(what, async {
            loop {
                let beat = self.beats.recv().await.expect("the mixer runs");
                if cond(&beat) {
                    return beat;
                }
            }
        })
        .await
    }

    /// Forgets the heartbeats received so far.
    fn drain(&mut self) {
        while self.beats.try_recv().is_ok() {}
    }

    /// Waits until the mixer has sent `n` more heartbeat replies, then for the heartbeat
    /// after them, so that the agent handled them.
    async fn replies_handled(&mut self, n: u64) {
        let target = self.script.lock().expect("lock").replies + n;
        let script = Arc::clone(&self.script);
        testkit::wait_until("heartbeat replies sent", || {
            script.lock().expect("lock").replies >= target
        })
        .await;
        self.drain();
        self.beat_where("the next heartbeat", |_| true).await;
    }
}

/// Reports `applying` then `applied` for `hash`.
async fn expect_applied(mixer: &mut Mixer, hash: &str) {
    let applying = mixer.report().await;
    assert_eq!(
        (applying.status.as_str(), applying.hash.as_str()),
        ("applying", hash)
    );
    let applied = mixer.report().await;
    assert_eq!(
        (
            applied.status.as_str(),
            applied.hash.as_str(),
            applied.error.as_str()
        ),
        ("applied", hash, "")
    );
    assert_eq!(applied.running_hash, hash);
    assert_eq!(applied.name, RACK);
    assert_eq!(applied.machine_id, MACHINE_ID);
    assert_eq!(applied.secret, SECRET);
}

/// A gear's `messages_in` in a heartbeat's `stats.gears`.
fn messages_in(beat: &Heartbeat, gear: &str) -> u64 {
    beat.stats
        .get("gears")
        .and_then(Value::as_map)
        .and_then(|g| g.get(gear))
        .and_then(Value::as_map)
        .and_then(|c| c.get("messages_in"))
        .and_then(Value::as_u64)
        .unwrap_or(0)
}

fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::{Digest as _, Sha256};
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

// ---------------------------------------------------------------------------------------
// The agent.

/// A state directory of its own, removed at the end.
struct StateDir(PathBuf);

impl StateDir {
    fn new(test: &str) -> StateDir {
        let dir =
            std::env::temp_dir().join(format!("rack-lib-agent-{}-{test}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        StateDir(dir)
    }

    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for StateDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn config(dir: &StateDir) -> AgentConfig {
    let mut limits = Limits::default();
    limits.drain_timeout = Duration::from_secs(1);
    AgentConfig::new(RACK, dir.path())
        .bootstrap_secret("boot")
        .label("region", "east")
        .heartbeat_interval(Duration::from_millis(20))
        .enrollment_interval(Duration::from_millis(20))
        .reply_timeout(Duration::from_secs(1))
        .limits(limits)
}

async fn wait_status(
    agent: &Agent,
    what: &str,
    cond: impl FnMut(&AgentStatus) -> bool,
) -> AgentStatus {
    within(what, agent.status().wait_for(cond))
        .await
        .expect("the agent runs")
}

/// An agent enrolled as active with `mixer`.
async fn active(bus: &Snake, mixer: &Mixer, dir: &StateDir) -> Agent {
    mixer.script(|s| s.answer = Some("active".into()));
    let agent = Agent::start(config(dir), bus.clone())
        .await
        .expect("starts");
    wait_status(&agent, "active", |s| s.enrollment == Enrollment::Active).await;
    agent
}

/// An active agent running `yaml`, and its hash.
async fn running(bus: &Snake, mixer: &mut Mixer, dir: &StateDir, yaml: &str) -> (Agent, String) {
    let agent = active(bus, mixer, dir).await;
    let hash = mixer.push(yaml).await;
    expect_applied(mixer, &hash).await;
    (agent, hash)
}

// ---------------------------------------------------------------------------------------
// Tests.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pending_rack_becomes_active_and_runs_a_push() {
    let dir = StateDir::new("pending");
    let bus = Snake::memory();
    let mut mixer = Mixer::start(&bus, Some("pending")).await;
    let agent = Agent::start(config(&dir), bus.clone())
        .await
        .expect("starts");

    let hello = mixer.hello().await;
    assert_eq!((hello.name.as_str(), hello.secret.as_str()), (RACK, "boot"));
    assert_eq!(hello.machine_id, 0);
    assert_eq!(hello.nonce.len(), 16);
    let labels = hello.config.get("labels").and_then(Value::as_map);
    assert_eq!(
        labels.and_then(|l| l.get("region")).and_then(Value::as_str),
        Some("east")
    );
    wait_status(&agent, "pending", |s| s.enrollment == Enrollment::Pending).await;
    let first = mixer.beat_where("a first heartbeat", |_| true).await;
    assert_eq!((first.seq, first.full_state), (1, true));
    assert_eq!(
        (first.machine_id, first.secret.as_str()),
        (MACHINE_ID, SECRET)
    );
    assert_eq!(first.applied_hash, "");
    let second = mixer.beat_where("a second heartbeat", |_| true).await;
    assert_eq!((second.seq, second.full_state), (2, false));

    // The operator approves: the next reply carries an active passport.
    mixer.script(|s| s.passport = Some("active".into()));
    wait_status(&agent, "active", |s| s.enrollment == Enrollment::Active).await;
    let hash = mixer.push(PIPELINE).await;
    expect_applied(&mut mixer, &hash).await;
    // The set of gears changed, so the next heartbeat carries all of it.
    let full = mixer
        .beat_where("a heartbeat with the new gears", |b| b.applied_hash == hash)
        .await;
    assert!(full.full_state);
    let gears: Vec<(&str, &str)> = full.health.iter().map(|(g, h)| (g, h.as_str())).collect();
    assert_eq!(gears, [("sink", "ok"), ("stamp", "ok"), ("source", "ok")]);
    let beat = mixer
        .beat_where("messages through the pipeline", |b| {
            messages_in(b, "sink") > 0 && messages_in(b, "stamp") > 0
        })
        .await;
    // Nothing changed since: only counters.
    assert!(!beat.full_state && beat.health.is_empty());
    let status = agent.status().current();
    assert_eq!(status.running_hash, hash);
    assert_eq!(
        status.last_push.map(|p| p.outcome),
        Some(PushOutcome::Applied)
    );
    within("shutdown", agent.shutdown())
        .await
        .expect("a clean stop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mixer_too_slow_to_answer_heartbeats_delays_no_push() {
    let dir = StateDir::new("slow-mixer");
    let bus = Snake::memory();
    let mut mixer = Mixer::start(&bus, Some("active")).await;
    let agent = active(&bus, &mixer, &dir).await;
    // Heartbeats now wait for their whole reply timeout, one after another; a push must
    // still be taken in between (before, the agent's loop was in a heartbeat nearly all the
    // time, and the next tick always came before the push).
    mixer.script(|s| s.silent = true);
    wait_status(&agent, "a heartbeat missed", |s| s.missed_heartbeats > 0).await;
    let hash = mixer.push(PIPELINE).await;
    expect_applied(&mut mixer, &hash).await;
    let missed = agent.status().current().missed_heartbeats;
    assert!(missed >= 1, "{missed} heartbeats missed");
    let _ = agent.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_identical_push_is_applied_without_a_restart() {
    let dir = StateDir::new("identical");
    let bus = Snake::memory();
    let mut mixer = Mixer::start(&bus, None).await;
    let (agent, hash) = running(&bus, &mut mixer, &dir, PIPELINE).await;
    let before = mixer
        .beat_where("a hundred messages", |b| messages_in(b, "sink") >= 100)
        .await;

    assert_eq!(mixer.push(PIPELINE).await, hash);
    expect_applied(&mut mixer, &hash).await;
    // A restarted gear would count from zero again.
    mixer.drain();
    let after = mixer.beat_where("a heartbeat", |_| true).await;
    assert!(messages_in(&after, "sink") >= messages_in(&before, "sink"));
    assert!(messages_in(&after, "stamp") >= messages_in(&before, "stamp"));
    within("shutdown", agent.shutdown())
        .await
        .expect("a clean stop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_push_that_fails_reports_why_and_the_last_good_scenario_keeps_running() {
    let dir = StateDir::new("rollback");
    let bus = Snake::memory();
    let mut mixer = Mixer::start(&bus, None).await;
    let (agent, good) = running(&bus, &mut mixer, &dir, PIPELINE).await;
    let before = mixer
        .beat_where("messages", |b| messages_in(b, "sink") >= 50)
        .await;

    // A listener on a port that is taken fails to start.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("a port");
    let port = taken.local_addr().expect("an address").port();
    let listener = format!(
        "{PIPELINE}  - {{ from: listener.out, to: sink.in }}\n"
    )
    .replace(
        "  - { name: sink, type: log }\n",
        &format!(
            "  - {{ name: sink, type: log }}\n  - {{ name: listener, type: io_tcp, config: {{ mode: server, bind: \"127.0.0.1:{port}\" }} }}\n"
        ),
    );
    let bad = mixer.push(&listener).await;
    assert_eq!(mixer.report().await.status, "applying");
    let failed = mixer.report().await;
    assert_eq!(
        (failed.status.as_str(), failed.hash.as_str()),
        ("failed", bad.as_str())
    );
    assert!(
        failed.error.contains("\"listener\" failed to start"),
        "{}",
        failed.error
    );
    assert!(
        failed.error.contains(&format!("rolled back to {good}")),
        "{}",
        failed.error
    );
    assert_eq!(failed.running_hash, good);
    mixer.drain();
    mixer.script(|s| s.report_full = true);
    let after = mixer.beat_where("the full state", |b| b.full_state).await;
    assert_eq!(after.applied_hash, good);
    let gears: Vec<(&str, &str)> = after.health.iter().map(|(g, h)| (g, h.as_str())).collect();
    assert_eq!(gears, [("sink", "ok"), ("stamp", "ok"), ("source", "ok")]);
    assert!(messages_in(&after, "sink") >= messages_in(&before, "sink"));
    assert!(matches!(
        agent.status().current().last_push.map(|p| p.outcome),
        Some(PushOutcome::Failed(_))
    ));

    // A configuration that validation refuses changes nothing.
    let invalid = PIPELINE.replace("steps: [ { set: data.stamped, value: true } ]", "steps: 3");
    mixer.push(&invalid).await;
    assert_eq!(mixer.report().await.status, "applying");
    let failed = mixer.report().await;
    assert_eq!(failed.status, "failed");
    assert!(
        failed.error.contains("does not validate"),
        "{}",
        failed.error
    );
    assert_eq!(failed.running_hash, good);

    // So does a push whose YAML is not what its hash says.
    let mut push = ScenarioPush {
        rack_name: RACK.into(),
        scenario: Bytes::from_static(PIPELINE.as_bytes()),
        hash: sha256_hex(b"something else"),
        ..ScenarioPush::default()
    };
    mixer.key.sign(&mut push).expect("signed");
    mixer.send(&push).await;
    assert_eq!(mixer.report().await.status, "applying");
    let failed = mixer.report().await;
    assert!(failed.error.contains("hash mismatch"), "{}", failed.error);
    assert_eq!(agent.status().current().running_hash, good);
    within("shutdown", agent.shutdown())
        .await
        .expect("a clean stop");
    drop(taken);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pushes_passports_and_replies_signed_by_another_key_are_refused() {
    let dir = StateDir::new("forged");
    let bus = Snake::memory();
    let mut mixer = Mixer::start(&bus, None).await;
    let agent = active(&bus, &mixer, &dir).await;

    // A forged push gets no answer at all; the real one after it is the first answered.
    let stranger = ClusterKey::generate().expect("a key");
    mixer.push_signed(&stranger, PIPELINE).await;
    let other = PIPELINE.replace("tps: 500", "tps: 400");
    let hash = mixer.push(&other).await;
    expect_applied(&mut mixer, &hash).await;

    // A passport from another key would suspend the rack; a reply signed by another key
    // would stop it.
    mixer.script(|s| s.forged_passport = Some("inactive".into()));
    mixer.replies_handled(1).await;
    mixer.script(|s| {
        s.forge_reply = true;
        s.commands = vec!["shutdown".into()];
    });
    mixer.replies_handled(1).await;
    let status = agent.status().current();
    assert_eq!(status.enrollment, Enrollment::Active);
    assert!(!status.suspended);
    assert_eq!(status.running_hash, hash);
    assert!(status.missed_heartbeats >= 1);
    within("shutdown", agent.shutdown())
        .await
        .expect("a clean stop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_configured_cluster_key_refuses_another_mixers_passport() {
    let dir = StateDir::new("configured-key");
    let bus = Snake::memory();
    let mut mixer = Mixer::start(&bus, Some("active")).await;
    let ours = ClusterKey::generate().expect("a key");
    let agent = Agent::start(config(&dir).cluster_key(ours.public()), bus.clone())
        .await
        .expect("starts");
    for _ in 0..3 {
        mixer.hello().await;
    }
    assert_eq!(agent.status().current().enrollment, Enrollment::Enrolling);
    assert!(mixer.beats.try_recv().is_err());
    within("shutdown", agent.shutdown())
        .await
        .expect("a clean stop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_conflict_ends_the_agent_with_an_error() {
    let dir = StateDir::new("conflict");
    let bus = Snake::memory();
    let _mixer = Mixer::start(&bus, Some("conflict")).await;
    let agent = Agent::start(config(&dir), bus.clone())
        .await
        .expect("starts");
    let ended = within("the agent to end", agent.run_until_shutdown()).await;
    match ended {
        Err(AgentError::Conflict { name, message }) => {
            assert_eq!((name.as_str(), message.as_str()), (RACK, "from the test"));
        }
        other => panic!("expected a conflict, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_agent_resumes_its_passport_and_runs_its_saved_scenario_offline() {
    let dir = StateDir::new("offline");
    let bus = Snake::memory();
    let mut mixer = Mixer::start(&bus, None).await;
    let (agent, hash) = running(&bus, &mut mixer, &dir, PIPELINE).await;
    within("shutdown", agent.shutdown())
        .await
        .expect("a clean stop");
    #[cfg(unix)]
    for file in ["rack.flux", "scenario.flux"] {
        use std::os::unix::fs::PermissionsExt as _;
        let meta = std::fs::metadata(dir.path().join(file)).expect("saved");
        assert_eq!(meta.permissions().mode() & 0o777, 0o600, "{file}");
    }

    // Another process, and no mixer answers.
    let bus = Snake::memory();
    let mut mixer = Mixer::with_key(&bus, None, mixer.key.clone()).await;
    let agent = Agent::start(config(&dir), bus.clone())
        .await
        .expect("starts");
    wait_status(&agent, "the saved scenario", |s| s.running_hash == hash).await;
    let hello = mixer.hello().await;
    assert_eq!(
        (hello.machine_id, hello.secret.as_str()),
        (MACHINE_ID, SECRET)
    );
    assert_eq!(agent.status().current().enrollment, Enrollment::Enrolling);

    // The mixer comes back and pushes the same scenario: nothing restarts.
    mixer.script(|s| s.answer = Some("active".into()));
    let before = mixer
        .beat_where("messages", |b| {
            b.applied_hash == hash && messages_in(b, "sink") >= 100
        })
        .await;
    wait_status(&agent, "active", |s| s.enrollment == Enrollment::Active).await;
    mixer.push(PIPELINE).await;
    expect_applied(&mut mixer, &hash).await;
    mixer.drain();
    let after = mixer.beat_where("a heartbeat", |_| true).await;
    assert!(messages_in(&after, "sink") >= messages_in(&before, "sink"));
    within("shutdown", agent.shutdown())
        .await
        .expect("a clean stop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_saved_scenario_with_a_guaranteed_wire_waits_for_the_mixer() {
    let dir = StateDir::new("guaranteed");
    let bus = Snake::memory();
    let mut mixer = Mixer::start(&bus, None).await;
    let (agent, hash) = running(&bus, &mut mixer, &dir, GUARANTEED).await;
    within("shutdown", agent.shutdown())
        .await
        .expect("a clean stop");

    let bus = Snake::memory();
    let mut mixer = Mixer::with_key(&bus, None, mixer.key.clone()).await;
    let agent = Agent::start(config(&dir), bus.clone())
        .await
        .expect("starts");
    for _ in 0..2 {
        mixer.hello().await;
    }
    assert_eq!(agent.status().current().running_hash, "");

    mixer.script(|s| s.answer = Some("active".into()));
    wait_status(&agent, "active", |s| s.enrollment == Enrollment::Active).await;
    mixer.push(GUARANTEED).await;
    expect_applied(&mut mixer, &hash).await;
    mixer
        .beat_where("messages over the lane", |b| messages_in(b, "sink") > 0)
        .await;
    within("shutdown", agent.shutdown())
        .await
        .expect("a clean stop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commands_set_the_log_level_suspend_resume_and_shut_down() {
    let dir = StateDir::new("commands");
    let bus = Snake::memory();
    let mut mixer = Mixer::start(&bus, Some("active")).await;
    let levels = Arc::new(Mutex::new(Vec::new()));
    let seen = Arc::clone(&levels);
    let agent = Agent::start(
        config(&dir).on_log_level(move |level| seen.lock().expect("lock").push(level.to_owned())),
        bus.clone(),
    )
    .await
    .expect("starts");
    wait_status(&agent, "active", |s| s.enrollment == Enrollment::Active).await;
    let hash = mixer.push(PIPELINE).await;
    expect_applied(&mut mixer, &hash).await;

    mixer.script(|s| s.commands = vec!["log_level:debug".into(), "suspend".into()]);
    wait_status(&agent, "suspended", |s| {
        s.suspended && s.running_hash.is_empty()
    })
    .await;
    assert_eq!(*levels.lock().expect("lock"), ["debug"]);
    mixer.drain();
    let beat = mixer
        .beat_where("a heartbeat without gears", |b| b.applied_hash.is_empty())
        .await;
    assert!(beat.full_state && beat.health.is_empty());
    // A push while suspended is refused.
    mixer.push(PIPELINE).await;
    assert_eq!(mixer.report().await.status, "applying");
    let refused = mixer.report().await;
    assert_eq!(
        (refused.status.as_str(), refused.error.as_str()),
        ("failed", "the rack is suspended")
    );

    mixer.script(|s| s.commands = vec!["resume".into()]);
    wait_status(&agent, "resumed", |s| {
        !s.suspended && s.running_hash == hash
    })
    .await;
    mixer.drain();
    mixer
        .beat_where("messages again", |b| {
            b.applied_hash == hash && messages_in(b, "sink") > 0
        })
        .await;

    mixer.script(|s| s.commands = vec!["shutdown".into()]);
    within("the agent to end", agent.run_until_shutdown())
        .await
        .expect("a clean stop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_denied_secret_drops_the_passport() {
    let dir = StateDir::new("denied");
    let bus = Snake::memory();
    let mixer = Mixer::start(&bus, None).await;
    let agent = active(&bus, &mixer, &dir).await;
    within("shutdown", agent.shutdown())
        .await
        .expect("a clean stop");

    let bus = Snake::memory();
    let mut mixer = Mixer::with_key(&bus, Some("denied"), mixer.key.clone()).await;
    let agent = Agent::start(config(&dir), bus.clone())
        .await
        .expect("starts");
    let hello = mixer.hello().await;
    assert_eq!(
        (hello.machine_id, hello.secret.as_str()),
        (MACHINE_ID, SECRET)
    );
    wait_status(&agent, "denied", |s| s.enrollment == Enrollment::Denied).await;
    let hello = mixer.hello().await;
    assert_eq!((hello.machine_id, hello.secret.as_str()), (0, "boot"));
    within("shutdown", agent.shutdown())
        .await
        .expect("a clean stop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scenario_too_large_for_a_push_is_read_from_a_kv_bucket() {
    let dir = StateDir::new("kv");
    let bus = Snake::memory();
    let mut mixer = Mixer::start(&bus, None).await;
    let agent = active(&bus, &mixer, &dir).await;
    let kv = bus
        .kv(rack_lib::agent::scenario_bucket("scenarios").expect("a bucket"))
        .await
        .expect("the bucket");
    kv.put("flow-1", PIPELINE.as_bytes().to_vec())
        .await
        .expect("stored");
    let hash = sha256_hex(PIPELINE.as_bytes());
    let mut push = ScenarioPush {
        rack_name: RACK.into(),
        hash: hash.clone(),
        location: "kv://scenarios/flow-1".into(),
        ..ScenarioPush::default()
    };
    mixer.key.sign(&mut push).expect("signed");
    mixer.send(&push).await;
    expect_applied(&mut mixer, &hash).await;
    within("shutdown", agent.shutdown())
        .await
        .expect("a clean stop");
}

#[cfg(feature = "nats-server-tests")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_enrolls_and_runs_a_push_over_nats() {
    let server = snake::NatsServer::start().expect("nats-server (make setup-nats)");
    let connect = || Snake::nats(snake::NatsOptions::new(server.url()));
    let (mixer_bus, rack_bus) = (
        connect().await.expect("the mixer connects"),
        connect().await.expect("the rack connects"),
    );
    let dir = StateDir::new("nats");
    let mut mixer = Mixer::start(&mixer_bus, Some("active")).await;
    let agent = Agent::start(config(&dir), rack_bus).await.expect("starts");
    wait_status(&agent, "active", |s| s.enrollment == Enrollment::Active).await;
    // A heartbeat sent after the agent subscribed to pushes: the server has the
    // subscription (the mixer's connection is another one).
    mixer.drain();
    mixer.beat_where("a heartbeat", |_| true).await;
    let hash = mixer.push(PIPELINE).await;
    expect_applied(&mut mixer, &hash).await;
    mixer
        .beat_where("messages through the pipeline", |b| {
            b.applied_hash == hash && messages_in(b, "sink") > 0
        })
        .await;
    within("shutdown", agent.shutdown())
        .await
        .expect("a clean stop");
}
