//! The iso8583 crate's integration tests: one binary, one module per area.

mod alloc;
mod flux;
mod load;
mod mask;
mod roundtrip;
mod support;
mod vectors;
