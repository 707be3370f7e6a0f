//! A wasm guest built as a fixture for the host's tests and benchmark (the `wasm` gear in
//! `gears`), not as an example to copy: see `examples/guests/risk` for that.
//!
//! What it does with a message depends on `meta["test.action"]`:
//!
//! | action | behaviour |
//! | --- | --- |
//! | absent | sets `data.checked = true` and emits on `out` (the benchmark's "set one field") |
//! | `loop` | loops forever (for deadlines and fuel) |
//! | `grow` | allocates and touches 1 MiB blocks, never freed, until memory runs out (a trap) |
//! | `panic` | panics (a trap) |
//! | `error` | fails the message: reason `guest_error`, detail `asked to fail` |
//! | `drop` | drops the message: reason `asked_to_drop` |
//! | `fanout` | emits on `out` and a copy on `audit` |
//! | `new` | emits a new message with `data.created = true` on `out` (the input gets no record) |
//! | `log` | logs one line per level, then emits on `out` |
//! | `count` | counts the calls of this action in the gear's state, sets `data.count` to the count and emits on `out` |
//! | other | fails the message: reason `unknown_action` |
//!
//! Build it with `make guests` (or see the risk example's docs); the host's tests build it
//! through `testkit::guest_wasm("testbed")`.
#![doc(test(attr(deny(warnings))))]

use fluxmsg::FluxMsg;
use sdk::guest::{Gear, Msg, Out, log};

/// The fixture gear; its state is the `count` action's counter.
#[derive(Debug, Default)]
pub struct Testbed {
    count: u64,
}

/// One mebibyte, the block `grow` allocates.
const MIB: usize = 1 << 20;

impl Gear for Testbed {
    fn process(&mut self, mut msg: Msg<'_>, out: &mut Out) {
        match msg.meta("test.action") {
            None => {
                msg.set_data("checked", true);
                out.emit("out", &msg);
            }
            Some("loop") => loop {
                core::hint::black_box(&mut self.count);
            },
            Some("grow") => loop {
                let block = core::hint::black_box(vec![1u8; MIB]);
                block.leak();
            },
            Some("panic") => panic!("asked to panic"),
            Some("error") => out.error("guest_error", "asked to fail"),
            Some("drop") => out.drop("asked_to_drop"),
            Some("fanout") => {
                out.emit("out", &msg);
                out.emit("audit", &msg);
            }
            Some("new") => {
                let mut new = FluxMsg::new();
                // A one-segment path always applies.
                let _ = new.data.set_path("created", true);
                out.emit_new("out", &new);
            }
            Some("log") => {
                log::debug("testbed: debug");
                log::info("testbed: info");
                log::warn("testbed: warn");
                log::error("testbed: error");
                out.emit("out", &msg);
            }
            Some("count") => {
                self.count += 1;
                msg.set_data("count", self.count);
                out.emit("out", &msg);
            }
            Some(_) => out.error("unknown_action", "see the testbed's docs"),
        }
    }
}

sdk::guest_gear!(Testbed);
