//! Lease validation.

use std::time::Duration;

use idgen::{EPOCH_UNIX_SECS, Error, Layout, Lease};

use crate::clock_at;

const EXPIRY: u64 = EPOCH_UNIX_SECS + 3_600;

/// Validates `lease` with the classic layout at 30 minutes after the epoch (or at `now` if
/// given, in seconds after the epoch) and compares the outcome's Display text.
#[track_caller]
fn check(lease: &Lease, layout: &Layout, now: u64, expect: Result<(), &str>) {
    let got = lease.validate(layout, &clock_at(now));
    match (got, expect) {
        (Ok(()), Ok(())) => {}
        (Err(e), Err(want)) => assert_eq!(e.to_string(), want),
        (got, want) => panic!("got {got:?}, want {want:?}"),
    }
}

#[test]
fn a_lease_is_valid_strictly_before_its_expiry() {
    let lease = Lease::new(100, "rack-east", EXPIRY, "mixer-1");
    assert_eq!(
        (
            lease.machine_id(),
            lease.holder(),
            lease.expires_at(),
            lease.issuer()
        ),
        (100, "rack-east", EXPIRY, "mixer-1")
    );
    let l = Layout::SONYFLAKE;
    check(&lease, &l, 1_800, Ok(()));
    check(&lease, &l, 3_599, Ok(()));
    let expired = format!("lease of machine id 100 expired at {EXPIRY} (Unix seconds)");
    check(&lease, &l, 3_600, Err(&expired));
    check(&lease, &l, 90_000, Err(&expired));
}

#[test]
fn a_lease_must_name_a_usable_machine_id_a_holder_and_an_issuer() {
    let l = Layout::SONYFLAKE;
    check(
        &Lease::new(0, "rack", EXPIRY, "mixer-1"),
        &l,
        0,
        Err("machine id 0 is reserved for machines that are not enrolled"),
    );
    check(&Lease::new(1, "mixer-1", EXPIRY, "mixer-1"), &l, 0, Ok(()));
    check(
        &Lease::new(65_535, "rack", EXPIRY, "mixer-1"),
        &l,
        0,
        Ok(()),
    );
    check(
        &Lease::new(65_536, "rack", EXPIRY, "mixer-1"),
        &l,
        0,
        Err("machine id 65536 does not fit in 16 bits"),
    );
    let narrow = Layout::builder()
        .machine_id_bits(8)
        .sequence_bits(16)
        .build()
        .expect("layout");
    check(
        &Lease::new(300, "rack", EXPIRY, "mixer-1"),
        &narrow,
        0,
        Err("machine id 300 does not fit in 8 bits"),
    );
    check(
        &Lease::new(100, "", EXPIRY, "mixer-1"),
        &l,
        0,
        Err("invalid lease of machine id 100: the holder is empty"),
    );
    check(
        &Lease::new(100, "rack", EXPIRY, ""),
        &l,
        0,
        Err("invalid lease of machine id 100: the issuer is empty"),
    );
}

#[test]
fn builders_refuse_an_expired_lease() {
    let clock = clock_at(3_600);
    let lease = Lease::new(100, "rack", EXPIRY, "mixer-1");
    let built = idgen::Generator::builder()
        .lease(lease.clone())
        .clock(clock.clone())
        .build();
    assert!(matches!(
        built,
        Err(Error::LeaseExpired {
            machine_id: 100,
            ..
        })
    ));
    clock.rewind(Duration::from_secs(1));
    let ok = idgen::Generator::builder()
        .lease(lease)
        .clock(clock)
        .build();
    assert_eq!(
        ok.expect("valid one second before expiry").machine_id(),
        100
    );
}
