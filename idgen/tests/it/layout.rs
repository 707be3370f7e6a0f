//! Layouts, decomposition and the text form of ids.

use std::time::{Duration, UNIX_EPOCH};

use idgen::{EPOCH_UNIX_SECS, Error, Id, Layout};
use proptest::prelude::*;

/// Composes an id from parts, decomposes it, and checks the parts come back.
#[track_caller]
fn check_round_trip(layout: &Layout, time: u64, sequence: u32, machine_id: u32) {
    let id = layout
        .compose(time, sequence, machine_id)
        .expect("parts fit");
    let parts = layout.decompose(id);
    assert_eq!(
        (parts.time, parts.sequence, parts.machine_id),
        (time, sequence, machine_id)
    );
    let since = parts
        .timestamp
        .duration_since(UNIX_EPOCH)
        .expect("after 1970");
    assert_eq!(
        since.as_nanos() - Duration::from_secs(EPOCH_UNIX_SECS).as_nanos(),
        u128::from(time) * layout.time_unit().as_nanos()
    );
}

/// Valid layouts: 32 to 40 bits of time in units of 1 to 10 ms (which ends before 2554),
/// the rest split between sequence (0 to 30 bits) and machine id (1 to 30 bits).
fn layouts() -> impl Strategy<Value = Layout> {
    (32u8..=40, 1u64..=10)
        .prop_flat_map(|(time, unit_ms)| {
            let seq = 33u8.saturating_sub(time)..=30u8.min(62 - time);
            (Just(time), Just(unit_ms), seq)
        })
        .prop_map(|(time, unit_ms, seq)| {
            Layout::builder()
                .sequence_bits(seq)
                .machine_id_bits(63 - time - seq)
                .time_unit(Duration::from_millis(unit_ms))
                .build()
                .expect("within the ranges")
        })
}

#[test]
fn classic_layout_is_sonys() {
    let l = Layout::default();
    assert_eq!(l, Layout::SONYFLAKE);
    assert_eq!(
        (l.time_bits(), l.sequence_bits(), l.machine_id_bits()),
        (39, 8, 16)
    );
    assert_eq!(l.time_unit(), Duration::from_millis(10));
    assert_eq!(l.ids_per_second(), 25_600.0);
    assert_eq!(l.max_machine_id(), 65_535);
    // 2^39 units of 10 ms after 2025 ends in 2199.
    let end = l
        .end_of_time()
        .duration_since(UNIX_EPOCH)
        .expect("after 1970");
    assert_eq!(end.as_secs() / (365 * 86_400) + 1970, 2199);
}

#[test]
fn decomposition_of_a_known_id() {
    let id: Id = "1234567890123456789".parse().expect("id");
    let parts = Layout::SONYFLAKE.decompose(id);
    assert_eq!(parts.time, 1_234_567_890_123_456_789 >> 24);
    assert_eq!(
        u64::from(parts.sequence),
        (1_234_567_890_123_456_789 >> 16) & 0xff
    );
    assert_eq!(
        u64::from(parts.machine_id),
        1_234_567_890_123_456_789 & 0xffff
    );
    check_round_trip(&Layout::SONYFLAKE, 0, 0, 1);
    check_round_trip(&Layout::SONYFLAKE, 12_345, 255, 65_535);
}

#[test]
fn layout_builder_refuses_out_of_range_layouts() {
    let b = Layout::builder;
    for (builder, why) in [
        (b().sequence_bits(31), "sequence"),
        (b().machine_id_bits(0), "machine"),
        (b().machine_id_bits(31), "machine"),
        (b().sequence_bits(16).machine_id_bits(16), "time"),
        (b().time_unit(Duration::from_micros(999)), "1 ms"),
        (
            b().sequence_bits(0)
                .machine_id_bits(1)
                .time_unit(Duration::from_secs(1)),
            "2554",
        ),
    ] {
        match builder.build() {
            Err(Error::InvalidLayout(msg)) => assert!(msg.contains(why), "{msg} vs {why}"),
            other => panic!("expected InvalidLayout({why}), got {other:?}"),
        }
    }
    let wide = b()
        .sequence_bits(12)
        .machine_id_bits(10)
        .time_unit(Duration::from_millis(1))
        .build()
        .expect("Sony v2 style layout");
    assert_eq!(wide.time_bits(), 41);
    assert_eq!(wide.ids_per_second(), 4_096_000.0);
}

#[test]
fn compose_refuses_parts_that_do_not_fit() {
    let l = Layout::SONYFLAKE;
    assert!(matches!(
        l.compose(1 << 39, 0, 1),
        Err(Error::TimeExhausted { time_bits: 39 })
    ));
    assert!(matches!(l.compose(0, 256, 1), Err(Error::InvalidLayout(_))));
    assert!(matches!(
        l.compose(0, 0, 70_000),
        Err(Error::MachineIdOutOfRange { .. })
    ));
    assert!(matches!(l.compose(0, 0, 0), Err(Error::ReservedMachineId)));
}

/// Parses `text`; `Some(n)` expects id `n`, `None` a [`Error::ParseId`].
#[track_caller]
fn check_parse(text: &str, expect: Option<u64>) {
    match (text.parse::<Id>(), expect) {
        (Ok(id), Some(n)) => {
            assert_eq!(id.get(), n);
            assert_eq!(id.to_string(), text);
        }
        (Err(Error::ParseId(t)), None) => assert_eq!(t, text),
        (got, want) => panic!("{text:?}: got {got:?}, want {want:?}"),
    }
}

#[test]
fn ids_parse_from_decimal_only() {
    check_parse("0", Some(0));
    check_parse("9223372036854775807", Some(i64::MAX as u64));
    check_parse("9223372036854775808", None);
    check_parse("18446744073709551616", None);
    check_parse("", None);
    check_parse("+1", None);
    check_parse("-1", None);
    check_parse(" 1", None);
    check_parse("0x10", None);
    assert!(Id::new(1 << 63).is_err());
    assert_eq!(Id::try_from(42u64).map(u64::from).expect("fits"), 42);
}

proptest! {
    #[test]
    fn compose_decompose_round_trip(
        layout in layouts(),
        time in any::<u64>(),
        sequence in any::<u32>(),
        machine_id in any::<u32>(),
    ) {
        let time = time & ((1u64 << layout.time_bits()) - 1);
        let sequence = sequence & ((1u32 << layout.sequence_bits()) - 1);
        let machine_id = (machine_id % layout.max_machine_id()) + 1;
        check_round_trip(&layout, time, sequence, machine_id);
    }

    #[test]
    fn display_parse_round_trip(raw in 0u64..=(u64::MAX >> 1)) {
        let id = Id::new(raw).expect("63 bits");
        prop_assert_eq!(id.to_string().parse::<Id>().expect("parse"), id);
        prop_assert_eq!(id.to_string(), raw.to_string());
    }
}
