//! rack-lib's integration tests.

mod engine;
mod errors;
mod guaranteed;
mod lanes;
mod plan;
mod scenario;
mod scenarios;
