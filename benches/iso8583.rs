//! `cargo bench --bench iso8583`: the ISO 8583 codec (being written).

fn main() {}
