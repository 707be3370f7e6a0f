//! rack-lib's integration tests.

mod agent;
mod dead_letters;
mod engine;
mod errors;
mod guaranteed;
mod history;
mod io_iso8583;
mod lanes;
mod payment_switch;
mod plan;
mod scenario;
mod scenarios;
