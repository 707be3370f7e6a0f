//! Agreement with the `sonyflake` crate, the reference implementation of the layout.

use std::time::{Duration, UNIX_EPOCH};

use chrono::{DateTime, Utc};
use idgen::{EPOCH_UNIX_SECS, Generator, Id, Layout};
use proptest::prelude::*;
use sonyflake::Sonyflake;

fn reference(machine_id: u16) -> Sonyflake {
    let epoch = DateTime::<Utc>::from_timestamp(EPOCH_UNIX_SECS as i64, 0).expect("2025-01-01");
    Sonyflake::builder()
        .start_time(epoch)
        .machine_id(&move || Ok(machine_id))
        .finalize()
        .expect("reference generator")
}

/// Decomposes `id` with both crates and checks they agree field by field.
#[track_caller]
fn check_same_parts(id: u64) {
    let ours = Layout::SONYFLAKE.decompose(Id::new(id).expect("63 bits"));
    let theirs = sonyflake::decompose(id.into());
    assert_eq!(theirs.msb, 0);
    assert_eq!(
        (
            ours.time,
            u64::from(ours.sequence),
            u64::from(ours.machine_id)
        ),
        (theirs.time, theirs.sequence, theirs.machine_id),
        "id {id}"
    );
    assert_eq!(
        ours.timestamp
            .duration_since(UNIX_EPOCH)
            .expect("after 1970"),
        Duration::from_secs(EPOCH_UNIX_SECS) + Duration::from_nanos(theirs.nanos_time() as u64)
    );
}

#[test]
fn ids_of_the_reference_decompose_identically_and_match_ours_in_time() {
    let theirs = reference(4_242);
    let ours = Generator::builder()
        .machine_id(4_242)
        .build()
        .expect("generator");
    for _ in 0..600 {
        let t = theirs.next_id().expect("reference id").to_u64();
        check_same_parts(t);
        let o = ours.next().expect("id");
        check_same_parts(o.get());
        let (pt, po) = (sonyflake::decompose(t.into()), ours.decompose(o));
        assert_eq!(pt.machine_id, u64::from(po.machine_id));
        // Minted one after the other on the same clock: the same time unit or the next
        // (either generator may have run out of sequence and waited).
        assert!(po.time.abs_diff(pt.time) <= 2, "{} vs {}", po.time, pt.time);
    }
}

proptest! {
    #[test]
    fn any_id_of_ours_decomposes_identically(
        time in 0u64..(1 << 39),
        sequence in 0u32..256,
        machine_id in 1u32..=65_535,
    ) {
        let id = Layout::SONYFLAKE.compose(time, sequence, machine_id).expect("fits");
        check_same_parts(id.get());
    }
}
