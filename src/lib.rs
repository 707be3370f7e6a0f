//! fluxrig for Rust: a protocol patchbay that routes, transforms and simulates business
//! message streams (ISO 8583 payments, JSON, raw TCP, IoT) through graphs of processing units
//! called gears.
//!
//! This umbrella crate re-exports The Kit's member crates as modules, so one dependency
//! reaches all of them, and owns the workspace's examples and benchmarks.
//!
//! # Crate map
//!
//! | module | crate | reach for it when |
//! | --- | --- | --- |
//! | [`fluxmsg`] | `fluxmsg` | you build, inspect, encode or decode messages (the wire language) |
//! | [`idgen`] | `idgen` | you mint ids for messages and entities |
//! | [`snake`] | `snake` | you move messages between racks and the mixer |
//! | [`sdk`] | `sdk` | you write a gear |
//! | [`gears`] | `gears` | you use the built-in gears or register your own |
//! | [`rack`] | `rack-lib` | you embed the scenario engine in an application |
//! | [`mixer`] | `mixer-lib` | you build a control plane |
//!
//! # Example
//!
//! ```
//! use fluxrig::fluxmsg::{FluxMsg, Id};
//!
//! let msg = FluxMsg::builder().id(Id::U64(1)).meta("iso8583.mti", "0100").build();
//! let bytes = msg.to_cbor()?;
//! assert_eq!(FluxMsg::from_cbor(&bytes)?, msg);
//! # Ok::<(), fluxrig::fluxmsg::Error>(())
//! ```
//!
//! # Features
//!
//! | feature | adds |
//! | --- | --- |
//! | `json` | `fluxmsg::json`, the lossless JSON view of a message |
#![doc(test(attr(deny(warnings))))]

pub use fluxmsg;
pub use gears;
pub use idgen;
pub use mixer_lib as mixer;
pub use rack_lib as rack;
pub use sdk;
pub use snake;
