//! rack-lib's integration tests.

mod engine;
mod guaranteed;
mod scenario;
mod scenarios;
