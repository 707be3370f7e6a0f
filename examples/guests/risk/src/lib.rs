//! An example wasm gear: a risk check on ISO 8583 amounts, written with [`sdk::guest`].
//!
//! It reads the amount in `data.iso8583.field.4` (ISO 8583 field 4, digits in minor units:
//! `"000000150000"` is 1,500.00). Amounts over 100000 (1,000.00) go to port `review` with a
//! warning in the log; the others get `data.risk.score` and go to `out`. A message without a
//! readable amount counts as 0.
//!
//! # Build
//!
//! ```text
//! rustup target add wasm32-unknown-unknown
//! cargo build --release --target wasm32-unknown-unknown -p guest-risk
//! ```
//!
//! which writes `target/wasm32-unknown-unknown/release/guest_risk.wasm` (`make guests`
//! builds it into `target/guests/…`).
//!
//! # Use it in a scenario
//!
//! ```yaml
//! gears:
//!   - name: risk
//!     type: wasm
//!     config:
//!       source: file://target/wasm32-unknown-unknown/release/guest_risk.wasm
//!       ports: [out, review]
//!       allow_unsigned: true   # or sign it and list the key in trusted_keys
//! wires:
//!   - { from: parser.out, to: risk.in }
//!   - { from: risk.out, to: approve.in }
//!   - { from: risk.review, to: manual.in }
//! ```
//!
//! # Test it natively
//!
//! The crate is also an `rlib`, so its gear runs in plain tests:
//!
//! ```
//! use fluxmsg::FluxMsg;
//! use guest_risk::Risk;
//! use sdk::guest::{Output, simulate};
//!
//! let msg = FluxMsg::builder().data_path("iso8583.field.4", "000000150000")?.build();
//! let outputs = simulate(&mut Risk, &[msg.clone()])?;
//! assert_eq!(outputs, [Output::Emit { index: 0, port: "review".into(), msg }]);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
#![doc(test(attr(deny(warnings))))]

use sdk::guest::{Gear, Msg, Out, log};

/// The risk check.
#[derive(Debug, Default)]
pub struct Risk;

impl Gear for Risk {
    fn process(&mut self, mut msg: Msg<'_>, out: &mut Out) {
        let amount = msg
            .data_str("iso8583.field.4")
            .and_then(|s| s.parse::<u64>().ok());
        if amount.unwrap_or(0) > 100_000 {
            log::warn("risk: large amount, sent to review");
            out.emit("review", &msg);
        } else {
            msg.set_data("risk.score", 10u64);
            out.emit("out", &msg);
        }
    }
}

sdk::guest_gear!(Risk);
