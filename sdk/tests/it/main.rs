//! The sdk's integration tests: the gear contract as a gear author and an engine see it.

mod batch;
mod gears;
mod lifecycle;
mod manifest;
mod processing;
