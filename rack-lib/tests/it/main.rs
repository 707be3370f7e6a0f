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

/// `yaml` parsed and validated against the built-in gear catalog.
fn validated(yaml: &str) -> rack_lib::scenario::Validated {
    rack_lib::scenario::Scenario::parse(yaml)
        .expect("parses")
        .validate(&gears::Factory::builtin())
        .expect("validates")
}

/// A rack called `local` on the in-process transport, running `yaml`.
async fn local_rack(yaml: &str) -> rack_lib::Rack {
    let mut rack = rack_lib::Rack::builder("local").build().expect("a rack");
    rack.apply_scenario(&validated(yaml))
        .await
        .expect("applied");
    rack
}
