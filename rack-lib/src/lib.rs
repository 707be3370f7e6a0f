//! The rack: the scenario engine that applications embed.
//!
//! A rack runs gears (processing units from the [`gears`] catalog, or your own written with
//! `sdk`) and carries fluxMsgs along the wires between them: hot wires are bounded in-process
//! queues, guaranteed wires go through snake's streams (JetStream across machines). It parses
//! and validates scenarios ([`scenario`]), builds the gears, connects them, and applies a
//! changed scenario as a diff, so that untouched gears keep running with their state.
//!
//! Reach for it to run a scenario inside your own process: a service that routes payments,
//! a test bench, a simulator. It is not the place to write a gear (that is `sdk`) or to
//! manage a fleet of racks (that is `mixer-lib`, which pushes scenarios to racks); it reads
//! no files or flags of its own beyond the scenario text you hand it and, for the
//! [`agent`], the state directory you give it.
//!
//! - [`scenario::Scenario`] parses YAML with a line and column on every problem;
//!   [`Scenario::validate`](scenario::Scenario::validate) checks it against a
//!   [`gears::Factory`] and says what each rack runs.
//! - [`Rack`] ([`Rack::builder`]) runs a [`Graph`]: [`Rack::apply`] (or
//!   [`Rack::apply_scenario`]) is [`Rack::plan`], a [`Plan`] that can be inspected without
//!   running anything, then [`Rack::commit`]. Start-up is the diff from the empty graph.
//! - [`Injector`] and [`Tap`] put messages into a gear's port and read them from one, for
//!   an embedding application and for tests; [`Rack::stats`] gives every gear's counters.
//! - [`Rack::shutdown`] stops sources, drains what is in flight, then stops every gear.
//! - [`agent::Agent`] is the rack's side of the control protocol: it enrolls with a mixer,
//!   heartbeats, applies the scenarios the mixer pushes (rolling back a failed one) and
//!   keeps its passport and last good scenario in a state directory to start offline.
//!
//! # Example
//!
//! A scenario of two built-in gears, run in process: `cents` turns amounts into cents and
//! `big` passes those of 100.00 or more.
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use std::time::Duration;
//! use fluxmsg::{FluxMsg, Value};
//! use rack_lib::Rack;
//! use rack_lib::scenario::Scenario;
//!
//! let scenario = Scenario::parse(
//!     r#"
//! meta: { name: checkout, version: 1.0.0 }
//! gears:
//!   - name: cents
//!     type: transform
//!     config: { steps: [ { set: data.amount, expr: "data.amount * 100" } ] }
//!   - name: big
//!     type: filter
//!     config: { pass_if: { field: data.amount, gte: 10000 } }
//! wires:
//!   - { from: cents.out, to: big.in }
//! "#,
//! )?;
//! let scenario = scenario.validate(&gears::Factory::builtin())?;
//!
//! // A scenario without racks runs on one rack called `local`; in process by default.
//! let mut rack = Rack::builder("local").build()?;
//! let change = rack.apply_scenario(&scenario).await?;
//! assert_eq!(change.added.len(), 2);
//!
//! let mut out = rack.tap("big", "out").await?;
//! let input = rack.injector("cents", "in")?;
//! for amount in [20, 250] {
//!     input.send(FluxMsg::builder().data("amount", amount).build()).await?;
//! }
//! let msg = out.recv().await.ok_or("the rack stopped")?;
//! assert_eq!(msg.data.get("amount"), Some(&Value::from(25_000)));
//! assert_eq!(rack.stats()["big"].dropped("filtered"), 1);
//!
//! // Sources stop, what is in flight drains, every gear stops.
//! assert!(rack.shutdown(Duration::from_secs(5)).await.drained);
//! # Ok(())
//! # }
//! ```
//!
//! # Features
//!
//! | feature | adds |
//! | --- | --- |
//! | `nats-server-tests` | the integration tests that start a real `nats-server` (`make test` turns it on after `make setup-nats`) |
//!
//! MSRV: the workspace's `rust-version`.
#![doc(test(attr(deny(warnings))))]

pub mod agent;
mod engine;
mod error;
pub mod passport;
pub mod scenario;

pub use crate::engine::{
    Change, Feed, GearSpec, Graph, HopSample, HopSampler, Injector, Limits, Plan, PortRef, Rack,
    RackBuilder, Stopped, Subscription, Tap, Wire,
};
pub use crate::error::Error;
/// JSON, the form of a gear's configuration in a [`Graph`] and a [`scenario`]: the gear
/// contract's own (`sdk::serde_json`), re-exported so that callers name one version.
pub use sdk::serde_json;
