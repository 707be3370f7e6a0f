//! A gear's `Runner` set up as the rack engine sets it up, for the suites that time gears
//! (`mod runner;` in `gears.rs` and `wasm.rs`).

use std::sync::Arc;

use fluxrig::fluxmsg::FluxMsg;
use fluxrig::gears::Factory;
use fluxrig::sdk::{InPort, ManualClock, Runner, Services};

use crate::shapes::payment;

/// Messages per batch, as the engine moves them.
pub(crate) const BATCH: usize = 64;

/// A built-in gear of type `gear_type`, prepared from `config` and initialized, with its `in`
/// port; ids and time come from a manual clock.
pub(crate) fn runner(gear_type: &str, config: &serde_json::Value) -> (Runner, InPort) {
    let prepared = Factory::builtin()
        .prepare(gear_type, gear_type, config)
        .expect("the bench configs are valid");
    let clock = ManualClock::from_unix_secs(1_767_225_600);
    let ids = fluxrig::idgen::Generator::builder()
        .machine_id(1)
        .clock(clock.clone())
        .build()
        .expect("a generator");
    let mut runner = Runner::new(
        gear_type,
        prepared,
        Services::new(Arc::new(ids), Arc::new(clock)),
    );
    runner.init().expect("init");
    let input = runner.context().ports().input("in").expect("an in port");
    (runner, input)
}

/// A batch of `payment` messages.
pub(crate) fn batch() -> Vec<FluxMsg> {
    vec![payment(); BATCH]
}
