//! The sdk's integration tests: the gear contract as a gear author and an engine see it.

mod abi;
mod batch;
mod decision;
mod errors;
mod gears;
#[cfg(feature = "guest")]
mod guest;
mod lifecycle;
mod manifest;
mod processing;
