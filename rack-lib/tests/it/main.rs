//! rack-lib's integration tests.

mod agent;
mod dead_letters;
mod engine;
mod errors;
mod guaranteed;
mod history;
mod lanes;
mod plan;
mod scenario;
mod scenarios;
