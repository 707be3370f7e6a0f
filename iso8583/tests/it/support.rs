//! Specs shared by the test modules.

use iso8583::Spec;

/// A spec of `testdata/specs`, or a built-in one (`moov:...`).
#[track_caller]
pub(crate) fn spec(name: &str) -> Spec {
    let text = match name {
        "ascii" => include_str!("../../testdata/specs/ascii.yaml"),
        "binary" => include_str!("../../testdata/specs/binary.yaml"),
        other => return Spec::builtin(other).expect("a built-in spec"),
    };
    match Spec::from_yaml(text) {
        Ok(spec) => spec,
        Err(e) => panic!("{name}: {e}"),
    }
}

pub(crate) fn hex(text: &str) -> Vec<u8> {
    let clean: String = text.split_whitespace().collect();
    (0..clean.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&clean[i..i + 2], 16).expect("hex"))
        .collect()
}
