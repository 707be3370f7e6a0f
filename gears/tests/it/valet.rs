//! Tests of the valets, the conductor's ticket stores: a property test of the memory
//! valet's state machine against a simple model, and the durable valet across reopenings.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use fluxmsg::FluxMsg;
use gears::valet::{DurableValet, Lookup, MemoryValet, Valet, ValetError, ValetSettings};
use proptest::prelude::*;
use proptest::test_runner::TestCaseError;
use sdk::ManualClock;

const TTL: u64 = 10;
const RETAIN: u64 = 5;
const MAX: usize = 3;

fn settings() -> ValetSettings {
    ValetSettings::new(Duration::from_secs(TTL), Duration::from_secs(RETAIN), MAX)
}

fn request(tag: u32) -> FluxMsg {
    FluxMsg::builder().meta("tag", tag.to_string()).build()
}

#[derive(Debug, Clone)]
enum Op {
    Park(u8),
    Attach(u8),
    Redeem(u8),
    Release(u8),
    Advance(u64),
    Expire,
}

fn op() -> impl Strategy<Value = Op> {
    let key = 0u8..5;
    prop_oneof![
        3 => key.clone().prop_map(Op::Park),
        1 => key.clone().prop_map(Op::Attach),
        2 => key.clone().prop_map(Op::Redeem),
        1 => key.prop_map(Op::Release),
        2 => (1u64..8).prop_map(Op::Advance),
        1 => Just(Op::Expire),
    ]
}

/// What a key holds in the model: an open ticket (its deadline, attachments) or a retained
/// reply (until when).
#[derive(Debug, Clone, PartialEq)]
enum Model {
    Open {
        deadline: u64,
        attached: usize,
        tag: u32,
    },
    Closed {
        until: u64,
        tag: u32,
    },
}

#[derive(Debug, Default)]
struct World {
    now: u64,
    keys: HashMap<u8, Model>,
    /// Closed keys in the order they closed, for eviction at the bound.
    closed: VecDeque<u8>,
}

impl World {
    fn open(&self) -> usize {
        self.keys
            .values()
            .filter(|m| matches!(m, Model::Open { .. }))
            .count()
    }

    fn retained(&self) -> usize {
        self.keys.len() - self.open()
    }

    fn close_order_forget(&mut self, k: u8) {
        self.closed.retain(|c| *c != k);
    }

    /// The model's `expire`: open tickets past their deadline leave (returned), retained
    /// replies past their time are forgotten.
    fn expire(&mut self) -> Vec<u8> {
        let now = self.now;
        let mut due: Vec<u8> = self
            .keys
            .iter()
            .filter(|(_, m)| matches!(m, Model::Open { deadline, .. } if *deadline <= now))
            .map(|(k, _)| *k)
            .collect();
        due.sort_unstable();
        for k in &due {
            self.keys.remove(k);
        }
        let gone: Vec<u8> = self
            .keys
            .iter()
            .filter(|(_, m)| matches!(m, Model::Closed { until, .. } if *until <= now))
            .map(|(k, _)| *k)
            .collect();
        for k in gone {
            self.keys.remove(&k);
            self.close_order_forget(k);
        }
        due
    }
}

/// Runs `ops` on `valet` and on the model, checking every answer and every key's state
/// after each step; returns the model.
fn run_model(
    valet: &mut dyn Valet,
    clock: &ManualClock,
    ops: Vec<Op>,
) -> Result<World, TestCaseError> {
    let mut world = World::default();
    let mut tag = 0u32;
    for op in ops {
        match op {
            Op::Park(k) => {
                tag += 1;
                let got = valet
                    .park(&k.to_string(), request(tag), "out_a".into())
                    .map(|t| t.deadline);
                let expect = match world.keys.get(&k) {
                    Some(Model::Open { .. }) => Err(ValetError::AlreadyOpen),
                    _ if world.open() >= MAX => Err(ValetError::Full(MAX)),
                    _ => {
                        if matches!(world.keys.get(&k), Some(Model::Closed { .. })) {
                            world.close_order_forget(k);
                        }
                        world.keys.insert(
                            k,
                            Model::Open {
                                deadline: world.now + TTL,
                                attached: 0,
                                tag,
                            },
                        );
                        Ok(Duration::from_secs(world.now + TTL))
                    }
                };
                prop_assert_eq!(got, expect);
            }
            Op::Attach(k) => {
                let got = valet.attach(&k.to_string(), vec![("conn.id".into(), "x".into())]);
                let expect = match world.keys.get_mut(&k) {
                    Some(Model::Open { attached, .. }) => {
                        *attached += 1;
                        true
                    }
                    _ => false,
                };
                prop_assert_eq!(got, expect);
            }
            Op::Redeem(k) => {
                let got = valet.redeem(&k.to_string(), request(1000 + u32::from(k)));
                match world.keys.get(&k).cloned() {
                    Some(Model::Open { attached, tag, .. }) => {
                        let ticket = got.expect("an open ticket is redeemed");
                        prop_assert_eq!(ticket.attached.len(), attached);
                        prop_assert_eq!(
                            ticket.request.meta.get("tag").map(|t| t.to_string()),
                            Some(tag.to_string())
                        );
                        world.keys.insert(
                            k,
                            Model::Closed {
                                until: world.now + RETAIN,
                                tag: 1000 + u32::from(k),
                            },
                        );
                        world.closed.push_back(k);
                        while world.retained() > MAX {
                            if let Some(old) = world.closed.pop_front() {
                                world.keys.remove(&old);
                            }
                        }
                    }
                    _ => prop_assert!(got.is_none()),
                }
            }
            Op::Release(k) => {
                let got = valet.release(&k.to_string());
                match world.keys.get(&k) {
                    Some(Model::Open { .. }) => {
                        prop_assert!(got.is_some());
                        world.keys.remove(&k);
                    }
                    _ => prop_assert!(got.is_none()),
                }
            }
            Op::Advance(s) => {
                clock.advance(Duration::from_secs(s));
                world.now += s;
            }
            Op::Expire => {
                let mut due = Vec::new();
                valet.expire(&mut due);
                let mut got: Vec<u8> = due.iter().map(|(k, _)| k.parse().expect("a key")).collect();
                got.sort_unstable();
                prop_assert_eq!(got, world.expire());
            }
        }
        check_keys(valet, &world)?;
    }
    Ok(world)
}

/// Every key reads as the model says (a retained reply past its time reads as absent even
/// before `expire` forgets it), and the open count agrees.
fn check_keys(valet: &dyn Valet, world: &World) -> Result<(), TestCaseError> {
    for k in 0u8..5 {
        let expect = match world.keys.get(&k) {
            Some(Model::Open { tag, .. }) => format!("open {tag}"),
            Some(Model::Closed { until, tag }) if *until > world.now => format!("closed {tag}"),
            _ => "absent".to_owned(),
        };
        let tag_of = |m: &FluxMsg| m.meta.get("tag").map(|t| t.to_string()).unwrap_or_default();
        let got = match valet.lookup(&k.to_string()) {
            Lookup::Open(t) => format!("open {}", tag_of(&t.request)),
            Lookup::Closed(m) => format!("closed {}", tag_of(m)),
            Lookup::Absent => "absent".to_owned(),
        };
        prop_assert_eq!(got, expect, "key {}", k);
    }
    prop_assert_eq!(valet.open_tickets(), world.open());
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn the_memory_valet_behaves_as_its_model(ops in proptest::collection::vec(op(), 1..80)) {
        let clock = ManualClock::from_unix_secs(0);
        let mut valet = MemoryValet::new(settings(), Arc::new(clock.clone()));
        run_model(&mut valet, &clock, ops)?;
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    /// The durable valet answers as the model too, and a valet reopened on its bucket
    /// afterwards holds the same open tickets and retained replies.
    #[test]
    fn the_durable_valet_behaves_as_its_model_across_a_reopening(ops in proptest::collection::vec(op(), 1..60)) {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a runtime");
        runtime.block_on(async {
            let snake = snake::Snake::memory();
            let clock = ManualClock::from_unix_secs(0);
            let mut valet = open(&snake, &clock).await;
            let world = run_model(&mut valet, &clock, ops)?;
            prop_assert!(valet.writer().flush().await);
            drop(valet);
            let again = open(&snake, &clock).await;
            check_keys(&again, &world)
        })?;
    }
}

#[test]
fn expiry_hands_over_tickets_in_deadline_order_without_scanning_redeemed_ones() {
    let clock = ManualClock::from_unix_secs(0);
    let big = ValetSettings::new(Duration::from_secs(10), Duration::ZERO, 100_000);
    let mut valet = MemoryValet::new(big, Arc::new(clock.clone()));
    for i in 0..50_000u32 {
        valet
            .park(&i.to_string(), request(i), "out_a".into())
            .expect("room");
        if i % 2 == 0 {
            valet.redeem(&i.to_string(), FluxMsg::new()).expect("open");
        }
    }
    assert_eq!(valet.open_tickets(), 25_000);
    assert_eq!(valet.retained(), 0, "no retention configured");
    clock.advance(Duration::from_secs(10));
    let mut due = Vec::new();
    valet.expire(&mut due);
    assert_eq!(due.len(), 25_000);
    assert!(
        due.iter()
            .all(|(k, _)| k.parse::<u32>().is_ok_and(|n| n % 2 == 1))
    );
    assert_eq!(valet.open_tickets(), 0);
    assert_eq!(valet.next_deadline(), None, "stale deadlines are gone too");
}

async fn open(snake: &snake::Snake, clock: &ManualClock) -> DurableValet {
    DurableValet::open(
        snake,
        "valet_test",
        "gear",
        settings(),
        Arc::new(clock.clone()),
    )
    .await
    .expect("opened")
}

#[tokio::test]
async fn the_durable_valet_reads_back_open_tickets_and_retained_replies() {
    let snake = snake::Snake::memory();
    let clock = ManualClock::from_unix_secs(100);
    let mut first = open(&snake, &clock).await;
    first.park("a", request(1), "out_a".into()).expect("room");
    first.park("b", request(2), "out_b".into()).expect("room");
    first.park("c", request(3), "out_a".into()).expect("room");
    assert!(first.attach("a", vec![("conn.id".into(), "other".into())]));
    first.redeem("b", request(20)).expect("open");
    first.release("c").expect("open");
    assert!(first.writer().flush().await, "written");
    drop(first);

    let mut second = open(&snake, &clock).await;
    assert_eq!(second.open_tickets(), 1);
    match second.lookup("a") {
        Lookup::Open(t) => {
            assert_eq!(t.port, "out_a");
            assert_eq!(t.deadline, Duration::from_secs(100 + TTL));
            assert_eq!(t.attached, vec![vec![("conn.id".into(), "other".into())]]);
            assert_eq!(t.request, request(1));
        }
        other => panic!("a is {other:?}"),
    }
    assert!(matches!(second.lookup("b"), Lookup::Closed(m) if *m == request(20)));
    assert!(matches!(second.lookup("c"), Lookup::Absent));
    // Expiry deletes from the bucket too.
    clock.advance(Duration::from_secs(TTL));
    let mut due = Vec::new();
    second.expire(&mut due);
    assert_eq!(due.len(), 1);
    assert!(second.writer().flush().await);
    drop(second);
    let third = open(&snake, &clock).await;
    assert_eq!(third.open_tickets(), 0);
    assert_eq!(third.retained(), 0);
}

#[tokio::test]
async fn a_full_durable_valet_refuses_too() {
    let snake = snake::Snake::memory();
    let clock = ManualClock::from_unix_secs(0);
    let mut valet = open(&snake, &clock).await;
    for k in ["a", "b", "c"] {
        valet.park(k, request(0), "out_a".into()).expect("room");
    }
    assert_eq!(
        valet.park("d", request(0), "out_a".into()).map(|_| ()),
        Err(ValetError::Full(MAX))
    );
}

/// Review finding 9: a retained reply is due to be forgotten even when no open ticket is
/// due (the conductor sweeps on `next_deadline`).
#[test]
fn a_retained_reply_sets_the_next_deadline() {
    let clock = ManualClock::from_unix_secs(0);
    let settings = ValetSettings::new(Duration::from_secs(30), Duration::from_secs(5), 10);
    let mut valet = MemoryValet::new(settings, Arc::new(clock.clone()));
    valet.park("k", request(1), "out_a".into()).expect("room");
    valet.redeem("k", request(2)).expect("open");
    assert_eq!(valet.next_deadline(), Some(Duration::from_secs(5)));
    clock.advance(Duration::from_secs(5));
    let mut due = Vec::new();
    valet.expire(&mut due);
    assert_eq!(valet.retained(), 0);
}

/// Review finding 11: gear names that make the same key token (`a.b`, `a_b`) do not share
/// tickets.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gear_names_that_sanitise_alike_do_not_share_tickets() {
    let snake = snake::Snake::memory();
    let clock = ManualClock::from_unix_secs(100);
    let open_as = |gear: &'static str| {
        let snake = snake.clone();
        let clock = clock.clone();
        async move {
            DurableValet::open(&snake, "valet_test", gear, settings(), Arc::new(clock))
                .await
                .expect("opened")
        }
    };
    let mut dotted = open_as("a.b").await;
    dotted.park("k", request(1), "out_a".into()).expect("room");
    assert!(dotted.writer().flush().await);
    let underscored = open_as("a_b").await;
    assert_eq!(
        underscored.open_tickets(),
        0,
        "a_b does not read a.b's tickets"
    );
    let again = open_as("a.b").await;
    assert_eq!(again.open_tickets(), 1);
}

/// Review finding 6: a ticket opened and closed before the writer ran leaves nothing to
/// write (no delete of a key the bucket never had), so pending writes do not pile up while
/// the bucket is down.
#[tokio::test]
async fn tickets_never_written_leave_no_deletes_behind() {
    let snake = snake::Snake::memory();
    let clock = ManualClock::from_unix_secs(0);
    let settings = ValetSettings::new(Duration::from_secs(30), Duration::ZERO, 100);
    let mut valet = DurableValet::open(&snake, "valet_test", "gear", settings, Arc::new(clock))
        .await
        .expect("opened");
    let kv = snake
        .kv(snake::KvConfig::new("valet_test").expect("a bucket name"))
        .await
        .expect("the bucket");
    let before = kv.put("probe", "1").await.expect("put");
    for i in 0..50u32 {
        let key = i.to_string();
        valet.park(&key, request(i), "out_a".into()).expect("room");
        valet.release(&key).expect("open");
    }
    assert!(valet.writer().flush().await);
    let after = kv.put("probe", "2").await.expect("put");
    assert_eq!(after, before + 1, "nothing was written between the probes");
    // A ticket that was written is deleted when it closes.
    valet
        .park("kept", request(1), "out_a".into())
        .expect("room");
    assert!(valet.writer().flush().await);
    valet.release("kept").expect("open");
    assert!(valet.writer().flush().await);
    let last = kv.put("probe", "3").await.expect("put");
    assert_eq!(last, after + 3, "one put and one delete");
}
