//! rack-lib's integration tests.

mod engine;
mod guaranteed;
mod lanes;
mod plan;
mod scenario;
mod scenarios;
