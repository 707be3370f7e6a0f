//! Pools: spreading ids over several machine ids, uniqueness, leases.

use std::collections::{HashMap, HashSet};
use std::thread;
use std::time::Duration;

use idgen::{Backwards, EPOCH_UNIX_SECS, Error, Id, Lease, ManualClock, Pool};
use proptest::prelude::*;

use crate::clock_at;

fn pool(machine_ids: &[u32], clock: &ManualClock) -> Pool<ManualClock> {
    Pool::builder()
        .machine_ids(machine_ids.iter().copied())
        .clock(clock.clone())
        .build()
        .expect("valid pool")
}

/// Mints `per_thread` ids on each of `threads` threads from one pool and checks: all ids
/// unique, each under one of the pool's machine ids, and increasing per member in each
/// thread's order. Returns how many ids each machine id minted.
#[track_caller]
fn check_pool(pool: &Pool<ManualClock>, threads: usize, per_thread: usize) -> HashMap<u32, usize> {
    let members: HashSet<u32> = pool.machine_ids().collect();
    let handles: Vec<_> = (0..threads)
        .map(|_| {
            let pool = pool.clone();
            thread::spawn(move || {
                (0..per_thread)
                    .map(|_| pool.next().expect("mint"))
                    .collect::<Vec<Id>>()
            })
        })
        .collect();
    let mut all = HashSet::new();
    let mut per_member = HashMap::new();
    for h in handles {
        let mut last: HashMap<u32, Id> = HashMap::new();
        for id in h.join().expect("thread") {
            let m = pool.decompose(id).machine_id;
            assert!(members.contains(&m), "machine id {m} is not a member");
            if let Some(prev) = last.insert(m, id) {
                assert!(prev < id, "member {m}: {prev} !< {id}");
            }
            assert!(all.insert(id), "duplicate id {id}");
            *per_member.entry(m).or_insert(0) += 1;
        }
    }
    assert_eq!(all.len(), threads * per_thread);
    per_member
}

#[test]
fn a_pool_of_k_mints_k_times_256_ids_per_unit_before_waiting() {
    let clock = clock_at(1);
    let p = pool(&[100, 101, 102, 103], &clock);
    assert_eq!(p.len(), 4);
    assert!(!p.is_empty());
    let per_member = check_pool(&p, 1, 4 * 256);
    assert_eq!(clock.sleeps(), 0);
    assert!(per_member.values().all(|&n| n == 256), "{per_member:?}");
    let next = p.decompose(p.next().expect("mint"));
    assert_eq!(clock.sleeps(), 1);
    assert_eq!((next.time, next.sequence), (101, 0));
}

#[test]
fn pool_builder_refuses_empty_and_duplicate_members() {
    let clock = clock_at(0);
    assert!(matches!(
        Pool::builder().clock(clock.clone()).build(),
        Err(Error::NoMachineId)
    ));
    assert!(matches!(
        Pool::builder()
            .machine_ids([100, 101, 100])
            .clock(clock.clone())
            .build(),
        Err(Error::DuplicateMachineId { machine_id: 100 })
    ));
    assert!(matches!(
        Pool::builder().machine_ids([100, 0]).clock(clock).build(),
        Err(Error::ReservedMachineId)
    ));
}

#[test]
fn expired_members_are_skipped_until_renewed() {
    let clock = clock_at(0);
    let soon = EPOCH_UNIX_SECS + 10;
    let later = EPOCH_UNIX_SECS + 100;
    let p = Pool::builder()
        .leases([
            Lease::new(200, "rack", soon, "mixer-1"),
            Lease::new(201, "rack", later, "mixer-1"),
        ])
        .clock(clock.clone())
        .build()
        .expect("valid leases");
    clock.advance(Duration::from_secs(10));
    let per_member = check_pool(&p, 1, 600);
    assert_eq!(per_member.get(&200), None);
    assert_eq!(per_member.get(&201), Some(&600));

    clock.advance(Duration::from_secs(90));
    assert!(matches!(p.next(), Err(Error::LeaseExpired { .. })));
    assert!(matches!(
        p.renew(&Lease::new(999, "rack", later + 100, "mixer-1")),
        Err(Error::LeaseMismatch { found: 999, .. })
    ));
    p.renew(&Lease::new(200, "rack", later + 100, "mixer-1"))
        .expect("renewal");
    assert_eq!(p.decompose(p.next().expect("renewed")).machine_id, 200);
}

#[test]
fn backwards_clock_under_error_fails_and_under_wait_waits() {
    let clock = clock_at(50);
    let strict = Pool::builder()
        .machine_ids([100, 101])
        .on_clock_backwards(Backwards::Error)
        .clock(clock.clone())
        .build()
        .expect("pool");
    let waiting = pool(&[102, 103], &clock);
    let a = strict.next().expect("mint");
    let b = waiting.next().expect("mint");
    clock.rewind(Duration::from_millis(500));
    assert!(matches!(strict.next(), Err(Error::ClockBackwards { .. })));
    let b2 = waiting.next().expect("waits");
    assert!(b2 > b);
    assert_eq!(clock.sleeps(), 1);
    assert!(strict.next().expect("caught up") > a);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]

    /// Across threads and pool members, with the sequence running out many times over:
    /// every id unique, each member's ids increasing.
    #[test]
    fn pool_ids_are_unique_across_threads_and_members(
        members in proptest::collection::hash_set(1u32..=65_535, 1..6),
        threads in 1usize..4,
        per_thread in 1usize..2_000,
        offset in 0u64..1_000_000,
    ) {
        let clock = clock_at(offset);
        let ids: Vec<u32> = members.into_iter().collect();
        let p = pool(&ids, &clock);
        let per_member = check_pool(&p, threads, per_thread);
        // Within a unit the pool fills members in turn, so a single thread never waits
        // while a member has sequence left.
        if threads == 1 {
            let per_unit = 256 * ids.len();
            prop_assert_eq!(clock.sleeps() as usize, (per_thread - 1) / per_unit);
        }
        prop_assert!(per_member.values().sum::<usize>() == threads * per_thread);
    }
}

/// Runs taken together from a pool on several threads, mixed with single ids: every id is
/// unique, under one of the pool's machine ids, and increasing per member in each thread.
#[test]
fn runs_of_ids_from_a_pool_are_unique_across_threads() {
    let clock = clock_at(100);
    let pool = pool(&[3, 4], &clock);
    let handles: Vec<_> = (0..4)
        .map(|t| {
            let pool = pool.clone();
            thread::spawn(move || {
                let mut out = Vec::new();
                for round in 0..200 {
                    if (round + t) % 3 == 0 {
                        out.push(pool.next().expect("mint"));
                    } else {
                        pool.next_ids(37, &mut out).expect("mint");
                    }
                }
                out
            })
        })
        .collect();
    let mut all = HashSet::new();
    for h in handles {
        let mut last: HashMap<u32, Id> = HashMap::new();
        for id in h.join().expect("thread") {
            let member = pool.decompose(id).machine_id;
            assert!(member == 3 || member == 4, "{member}");
            if let Some(prev) = last.insert(member, id) {
                assert!(prev < id, "{prev} !< {id}");
            }
            assert!(all.insert(id), "{id} twice");
        }
    }
    // Exactly as many as asked.
    let singles: usize = (0..4)
        .map(|t| (0..200).filter(|r| (r + t) % 3 == 0).count())
        .sum();
    assert_eq!(all.len(), singles + (800 - singles) * 37);
}
