//! The rack: the scenario engine that applications embed.
//!
//! It parses and validates scenarios, builds gears from the catalog, connects them with hot
//! (in-process, bounded) and guaranteed (JetStream) wires, and applies a changed scenario as a
//! diff, so that untouched gears keep running.
#![doc(test(attr(deny(warnings))))]

mod engine;
mod error;
pub mod scenario;

pub use crate::engine::{
    Change, GearSpec, Graph, Injector, Limits, Plan, PortRef, Rack, RackBuilder, Subscription, Tap,
    Wire,
};
pub use crate::error::Error;
