//! One generator: order, the per-unit ceiling, clocks that go backwards, the end of time.

use std::collections::HashSet;
use std::net::Ipv4Addr;
use std::thread;
use std::time::Duration;

use idgen::{Backwards, Error, Generator, Layout, Lease, ManualClock};
use proptest::prelude::*;

use crate::clock_at;

fn generator(machine_id: u32, clock: &ManualClock, policy: Backwards) -> Generator<ManualClock> {
    Generator::builder()
        .machine_id(machine_id)
        .clock(clock.clone())
        .on_clock_backwards(policy)
        .build()
        .expect("valid generator")
}

/// Mints `n` ids and checks that they strictly increase and carry the machine id.
#[track_caller]
fn check_mint(ids: &Generator<ManualClock>, n: usize) -> Vec<idgen::Id> {
    let out: Vec<_> = (0..n).map(|_| ids.next().expect("mint")).collect();
    for pair in out.windows(2) {
        assert!(pair[0] < pair[1], "{} !< {}", pair[0], pair[1]);
    }
    for id in &out {
        assert_eq!(ids.decompose(*id).machine_id, ids.machine_id());
    }
    out
}

#[test]
fn handles_are_send_sync_and_clone() {
    fn assert_send_sync<T: Send + Sync + Clone + 'static>() {}
    assert_send_sync::<Generator>();
    assert_send_sync::<Generator<ManualClock>>();
    assert_send_sync::<idgen::Pool>();
}

#[test]
fn a_unit_holds_256_ids_then_the_generator_waits_for_the_next() {
    let clock = clock_at(1_000);
    let ids = generator(7, &clock, Backwards::Wait);
    let out = check_mint(&ids, 256);
    assert_eq!(clock.sleeps(), 0);
    let first = ids.decompose(out[0]);
    let last = ids.decompose(out[255]);
    assert_eq!((first.time, first.sequence), (100_000, 0));
    assert_eq!((last.time, last.sequence), (100_000, 255));

    // The 257th id waits (the manual clock jumps to the next unit instead of sleeping).
    let next = ids.decompose(ids.next().expect("mint"));
    assert_eq!(clock.sleeps(), 1);
    assert_eq!((next.time, next.sequence), (100_001, 0));
}

#[test]
fn a_new_unit_restarts_the_sequence() {
    let clock = clock_at(5);
    let ids = generator(7, &clock, Backwards::Wait);
    check_mint(&ids, 3);
    clock.advance(Duration::from_millis(25));
    let parts = ids.decompose(ids.next().expect("mint"));
    assert_eq!((parts.time, parts.sequence), (502, 0));
}

#[test]
fn backwards_clock_waits_under_wait_and_never_repeats() {
    let clock = clock_at(60);
    let ids = generator(9, &clock, Backwards::Wait);
    let before = check_mint(&ids, 10);
    clock.rewind(Duration::from_secs(2));
    let after = check_mint(&ids, 10);
    assert!(before[9] < after[0]);
    assert_eq!(clock.sleeps(), 1, "one wait until the clock caught up");
    // The wait brought the clock back to the unit of the last id, not further.
    assert_eq!(ids.decompose(after[0]).time, 6_000);
}

#[test]
fn backwards_clock_is_an_error_under_error_until_it_catches_up() {
    let clock = clock_at(60);
    let ids = generator(9, &clock, Backwards::Error);
    let last = *check_mint(&ids, 5).last().expect("five ids");
    clock.rewind(Duration::from_millis(1_500));
    match ids.next() {
        Err(Error::ClockBackwards { behind }) => {
            assert!(
                behind > Duration::from_millis(1_490) && behind <= Duration::from_millis(1_500)
            );
        }
        other => panic!("expected ClockBackwards, got {other:?}"),
    }
    assert_eq!(clock.sleeps(), 0);
    clock.advance(Duration::from_millis(1_500));
    assert!(ids.next().expect("caught up") > last);
}

#[test]
fn end_of_the_time_range_is_an_error() {
    let layout = Layout::SONYFLAKE;
    let end = layout
        .end_of_time()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("after 1970");
    // The last unit of the range still mints its 256 ids, then there is no next unit.
    let clock = ManualClock::new(end - Duration::from_millis(10));
    let ids = generator(1, &clock, Backwards::Wait);
    let out = check_mint(&ids, 256);
    assert_eq!(ids.decompose(out[255]).time, (1 << 39) - 1);
    assert!(matches!(
        ids.next(),
        Err(Error::TimeExhausted { time_bits: 39 })
    ));

    clock.set(end);
    let fresh = generator(2, &clock, Backwards::Wait);
    assert!(matches!(fresh.next(), Err(Error::TimeExhausted { .. })));
}

#[test]
fn clock_before_the_epoch_is_an_error() {
    let clock = ManualClock::from_unix_secs(idgen::EPOCH_UNIX_SECS - 1);
    let ids = generator(1, &clock, Backwards::Wait);
    assert!(matches!(ids.next(), Err(Error::BeforeEpoch { .. })));
}

#[test]
fn builder_checks_the_machine_id() {
    let clock = clock_at(0);
    let build = |b: idgen::GeneratorBuilder| b.clock(clock.clone()).build();
    assert!(matches!(
        build(Generator::builder()),
        Err(Error::NoMachineId)
    ));
    assert!(matches!(
        build(Generator::builder().machine_id(0)),
        Err(Error::ReservedMachineId)
    ));
    assert!(matches!(
        build(Generator::builder().machine_id(65_536)),
        Err(Error::MachineIdOutOfRange {
            machine_id: 65_536,
            bits: 16
        })
    ));
    let small = Layout::builder()
        .machine_id_bits(4)
        .sequence_bits(19)
        .build()
        .expect("layout");
    assert!(matches!(
        build(Generator::builder().layout(small).machine_id(16)),
        Err(Error::MachineIdOutOfRange {
            machine_id: 16,
            bits: 4
        })
    ));
}

#[test]
fn machine_id_from_addresses_takes_the_first_private_one() {
    let clock = clock_at(0);
    let ids = Generator::builder()
        .machine_id_from_ipv4([
            Ipv4Addr::new(127, 0, 0, 1),
            Ipv4Addr::new(203, 0, 113, 9),
            Ipv4Addr::new(172, 20, 3, 4),
            Ipv4Addr::new(10, 0, 0, 9),
        ])
        .clock(clock.clone())
        .build()
        .expect("private address");
    assert_eq!(ids.machine_id(), 0x0304);
    let none = Generator::builder()
        .machine_id_from_ipv4([Ipv4Addr::new(8, 8, 8, 8)])
        .clock(clock)
        .build();
    assert!(matches!(none, Err(Error::NoPrivateIpv4 { candidates: 1 })));
}

#[test]
fn a_leased_generator_stops_at_expiry_and_resumes_on_renewal() {
    let clock = clock_at(0);
    let expiry = idgen::EPOCH_UNIX_SECS + 60;
    let ids = Generator::builder()
        .lease(Lease::new(120, "rack-a", expiry, "mixer-1"))
        .clock(clock.clone())
        .build()
        .expect("valid lease");
    assert_eq!(ids.lease_expires_at(), Some(expiry));
    let before = ids.next().expect("leased");
    clock.advance(Duration::from_secs(60));
    assert!(matches!(
        ids.next(),
        Err(Error::LeaseExpired { machine_id: 120, expires_at }) if expires_at == expiry
    ));
    let other = Lease::new(121, "rack-a", expiry + 60, "mixer-1");
    assert!(matches!(
        ids.renew(&other),
        Err(Error::LeaseMismatch { found: 121, .. })
    ));
    ids.renew(&Lease::new(120, "rack-a", expiry + 60, "mixer-1"))
        .expect("renewal");
    assert!(ids.next().expect("renewed") > before);
}

#[test]
fn system_clock_generator_mints_increasing_ids_now() {
    let ids = Generator::builder()
        .machine_id(3)
        .build()
        .expect("generator");
    let a = ids.next().expect("mint");
    let b = ids.next().expect("mint");
    assert!(a < b);
    let parts = ids.decompose(b);
    let age = std::time::SystemTime::now()
        .duration_since(parts.timestamp)
        .expect("id time is not in the future");
    assert!(age < Duration::from_secs(60));
}

/// Ids minted concurrently through clones of one generator: unique overall, increasing in
/// each thread's order.
#[track_caller]
fn check_threads(threads: usize, per_thread: usize) {
    let clock = clock_at(10);
    let ids = generator(77, &clock, Backwards::Wait);
    let handles: Vec<_> = (0..threads)
        .map(|_| {
            let ids = ids.clone();
            thread::spawn(move || {
                (0..per_thread)
                    .map(|_| ids.next().expect("mint"))
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    let mut all = HashSet::new();
    for h in handles {
        let mine = h.join().expect("thread");
        assert!(mine.windows(2).all(|w| w[0] < w[1]), "per-thread order");
        for id in mine {
            assert!(all.insert(id), "duplicate id {id}");
        }
    }
    assert_eq!(all.len(), threads * per_thread);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]

    #[test]
    fn ids_are_unique_across_threads(threads in 1usize..5, per_thread in 1usize..1500) {
        check_threads(threads, per_thread);
    }

    /// Any walk of the clock, forwards and backwards, under either policy: ids never
    /// repeat and never decrease, and an error happens only while the clock is behind.
    #[test]
    fn any_clock_walk_keeps_ids_increasing(
        wait in any::<bool>(),
        steps in proptest::collection::vec((0usize..300, -3_000i64..3_000), 1..30),
    ) {
        let clock = clock_at(100);
        let policy = if wait { Backwards::Wait } else { Backwards::Error };
        let ids = generator(5, &clock, policy);
        let mut last: Option<idgen::Id> = None;
        for (n, step_ms) in steps {
            for _ in 0..n {
                match ids.next() {
                    Ok(id) => {
                        prop_assert!(last.is_none_or(|l| l < id));
                        last = Some(id);
                    }
                    Err(Error::ClockBackwards { .. }) => {
                        prop_assert!(!wait);
                        let lag = ids.decompose(last.expect("an id before")).timestamp;
                        let now = std::time::UNIX_EPOCH + idgen::Clock::now(&clock);
                        prop_assert!(now < lag);
                        break;
                    }
                    Err(e) => return Err(TestCaseError::fail(e.to_string())),
                }
            }
            let by = Duration::from_millis(step_ms.unsigned_abs());
            if step_ms >= 0 { clock.advance(by) } else { clock.rewind(by) }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    /// Runs of ids taken together (`next_ids`) and one at a time, on a clock that walks and
    /// a sequence that fills up: the ids are exactly as many as asked, unique and increasing,
    /// as if each had been taken alone.
    #[test]
    fn runs_of_ids_keep_every_id_unique_and_increasing(
        steps in proptest::collection::vec((0usize..600, any::<bool>(), 0u64..30), 1..20),
    ) {
        let clock = clock_at(100);
        let ids = generator(9, &clock, Backwards::Wait);
        let mut all: Vec<idgen::Id> = Vec::new();
        for (n, together, step_ms) in steps {
            let before = all.len();
            if together {
                ids.next_ids(n, &mut all).expect("mint");
            } else {
                all.extend((0..n).map(|_| ids.next().expect("mint")));
            }
            prop_assert_eq!(all.len() - before, n);
            clock.advance(Duration::from_millis(step_ms));
        }
        for pair in all.windows(2) {
            prop_assert!(pair[0] < pair[1], "{} !< {}", pair[0], pair[1]);
        }
        for id in &all {
            prop_assert_eq!(ids.decompose(*id).machine_id, 9);
        }
    }
}

#[test]
fn machine_id_from_host_is_a_private_address_or_a_typed_error() {
    // The outcome depends on the host's addresses; either way it is never machine id 0 or
    // an untyped failure.
    match Generator::builder()
        .machine_id_from_host()
        .clock(clock_at(0))
        .build()
    {
        Ok(ids) => assert_ne!(ids.machine_id(), 0),
        Err(Error::NoPrivateIpv4 { .. } | Error::HostAddresses(_) | Error::ReservedMachineId) => {}
        Err(e) => panic!("unexpected error: {e}"),
    }
}
