//! Feeds arbitrary bytes to the ISO 8583 unpackers. The first byte picks a spec (the two
//! built-ins and the two test specs, with composites, BER-TLV and every prefix kind).
//! Unpacking must never panic; the borrowed unpack must agree with the owned one; whatever
//! unpacks must pack back to the same bytes, and errors must point inside the input.
#![no_main]

use std::sync::OnceLock;

use iso8583::{MessageRef, Spec};
use libfuzzer_sys::fuzz_target;

fn specs() -> &'static [Spec; 4] {
    static SPECS: OnceLock<[Spec; 4]> = OnceLock::new();
    SPECS.get_or_init(|| {
        let load = |text| Spec::from_yaml(text).expect("the test specs load");
        [
            Spec::builtin("moov:spec87ascii").expect("built in"),
            Spec::builtin("moov:spec87hex").expect("built in"),
            load(include_str!("../../../iso8583/testdata/specs/ascii.yaml")),
            load(include_str!("../../../iso8583/testdata/specs/binary.yaml")),
        ]
    })
}

fuzz_target!(|data: &[u8]| {
    let Some((&pick, input)) = data.split_first() else {
        return;
    };
    let spec = &specs()[usize::from(pick % 4)];
    let owned = spec.unpack(input);
    let mut borrowed = MessageRef::new();
    let b = spec.unpack_borrowed(input, &mut borrowed);
    match owned {
        Ok(msg) => {
            assert!(b.is_ok(), "owned unpack accepted what borrowed refused: {b:?}");
            assert!(borrowed.numbers().eq(msg.numbers()), "different fields");
            let bytes = spec.pack_to_vec(&msg).expect("an unpacked message packs");
            assert_eq!(bytes, input, "unpack then pack changed the bytes");
        }
        Err(e) => {
            assert!(e.offset <= input.len(), "offset past the input: {e}");
            assert!(e.partial().is_some());
        }
    }
});
