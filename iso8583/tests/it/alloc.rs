//! The borrowed unpack allocates nothing, counted by a global allocator (not by timing), and
//! hostile lengths reserve nothing beyond the input.

use iso8583::{Message, MessageRef};
use testkit::{CountingAlloc, counted};

use crate::support::{hex, spec};

/// Counts per thread: other tests' threads do not show in a count.
#[global_allocator]
static GLOBAL: CountingAlloc = CountingAlloc;

/// The fewest allocations `f` made over a few runs (a first run may fill a lazy cache).
fn fewest_allocations(mut f: impl FnMut()) -> usize {
    (0..5)
        .map(|_| counted(&mut f).1.allocations)
        .min()
        .unwrap_or(usize::MAX)
}

#[test]
fn borrowed_unpack_allocates_nothing() {
    let doc: toml::Table =
        toml::from_str(include_str!("../../testdata/vectors.toml")).expect("toml");
    for case in doc["case"].as_array().expect("cases") {
        if case.get("fields").is_none() {
            continue;
        }
        let spec = spec(case["spec"].as_str().expect("spec"));
        let input = hex(case["hex"].as_str().expect("hex"));
        let mut msg = MessageRef::new();
        let n = fewest_allocations(|| {
            spec.unpack_borrowed(&input, &mut msg).expect("valid");
        });
        assert_eq!(n, 0, "{:?}", case["name"]);
        // The same counter sees the owned unpack's allocations, so it is not blind.
        let owned = fewest_allocations(|| {
            spec.unpack(&input).expect("valid");
        });
        assert!(owned > 0);
    }
}

#[test]
fn hostile_lengths_reserve_nothing_beyond_the_input() {
    let spec = spec("binary");
    // A BCD.LLL field 100 claiming 999 digits, and a TLV claiming 4 GiB.
    let mut input = hex("0200 8000000000000000 0000000010000000");
    input.extend_from_slice(&[0x09, 0x99, 0x12]);
    let (unpacked, allocated) = counted(|| spec.unpack(&input));
    assert!(unpacked.is_err());
    assert!(allocated.bytes < 64 * 1024, "{allocated:?}");
    let mut tlv = hex("0200 0000020000000000");
    tlv.extend_from_slice(&[0x0A, 0x9F, 0x02, 0x84, 0xFF, 0xFF, 0xFF, 0xFF, 0, 0, 0]);
    let (unpacked, allocated) = counted(|| spec.unpack(&tlv));
    assert!(unpacked.is_err());
    assert!(allocated.bytes < 64 * 1024, "{allocated:?}");
}

#[test]
fn owned_unpack_allocates_a_few_times_whatever_the_fields() {
    let doc: toml::Table =
        toml::from_str(include_str!("../../testdata/vectors.toml")).expect("toml");
    for case in doc["case"].as_array().expect("cases") {
        if case.get("fields").is_none() {
            continue;
        }
        let spec = spec(case["spec"].as_str().expect("spec"));
        let input = hex(case["hex"].as_str().expect("hex"));
        let fields = spec.unpack(&input).expect("valid").len();
        let n = fewest_allocations(|| {
            spec.unpack(&input).expect("valid");
        });
        // The buffer, the field list and the subfield list, each reserved once; the
        // subfield list may grow once more for BER-TLV tags the spec does not define.
        assert!(
            n <= 4,
            "{:?}: {n} allocations for {fields} fields",
            case["name"]
        );
        // Into a message kept across calls: nothing at all.
        let mut msg = Message::default();
        spec.unpack_into(&input, &mut msg).expect("valid");
        let n = fewest_allocations(|| {
            spec.unpack_into(&input, &mut msg).expect("valid");
        });
        assert_eq!(n, 0, "{:?}", case["name"]);
    }
}
