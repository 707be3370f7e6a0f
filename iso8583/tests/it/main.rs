//! The iso8583 crate's integration tests: one binary, one module per area.

fn main() {}
