//! rack-lib's integration tests.

mod engine;
mod guaranteed;
mod plan;
mod scenario;
mod scenarios;
