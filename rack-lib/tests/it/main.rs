//! rack-lib's integration tests.

mod engine;
mod scenario;
