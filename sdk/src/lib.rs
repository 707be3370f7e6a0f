//! The gear contract: what a gear author implements and what a gear receives.
//!
//! A **gear** is a processing unit with named one-way ports. This crate holds everything a gear
//! author needs and nothing a rack needs on top:
//!
//! - [`Gear`]: the lifecycle `init` → `start` → `process` → `drain` → `stop`. Passive gears
//!   implement [`Gear::process`], a synchronous call per message driven in batches (no boxed
//!   future, no lock per message); active gears spawn tasks in [`Gear::start`] and send through
//!   an [`Emitter`].
//! - [`GearType`]: the configuration struct (its JSON Schema comes from `schemars`), the
//!   [`Manifest`] (type, category, ports with dynamic patterns such as `out_<name>`, terminus)
//!   and the constructor, which receives the gear's resolved [`Ports`]. [`DynGearType`] erases
//!   it for the factory.
//! - [`Context`]: configuration, name, tracing span, ids, clock, emitter, snake handle,
//!   counters, tasks.
//! - [`Runner`]: drives a gear; shared by the rack engine and the [`Harness`], which runs a
//!   gear in a unit test.
//!
//! Errors are data: a gear's `Err`, and a gear's panic, send that one message to the `error`
//! port with `error.reason` (and `error.detail`) in its metadata.
//!
//! Decisions are data too: a gear that chooses where a message goes (a router, a filter, a
//! switch) writes why with [`decide`] under [`DECISION_META`], and the engine moves it into
//! the hop it appends, so a message's path shows every decision taken on the way.
//!
//! # Example
//!
//! A gear that uppercases `data.name`, tested with the harness:
//!
//! ```
//! # fn main() -> Result<(), sdk::Error> {
//! use fluxmsg::{FluxMsg, Value};
//! use sdk::{Category, Gear, GearError, GearType, Harness, InPort, Manifest, OutPort, Outcome, Outbox, Ports};
//!
//! #[derive(serde::Deserialize, schemars::JsonSchema)]
//! #[serde(deny_unknown_fields)]
//! struct Config { field: String }
//!
//! struct Upper { field: String, out: OutPort }
//!
//! impl GearType for Upper {
//!     type Config = Config;
//!     fn manifest() -> Manifest {
//!         Manifest::new("upper", Category::Logic).input("in", "any message").output("out", "edited")
//!     }
//!     // The gear gets its ports when it is built: it holds a resolved `out` from the start.
//!     fn new(config: Config, ports: &Ports) -> Result<Self, sdk::ConfigError> {
//!         Ok(Upper { field: config.field, out: ports.resolve_output("out")? })
//!     }
//! }
//!
//! impl Gear for Upper {
//!     fn process(&mut self, _: InPort, msg: &mut FluxMsg, _: &mut Outbox<'_>) -> Result<Outcome, GearError> {
//!         let Some(Value::Text(text)) = msg.data.get_path_mut(&self.field) else {
//!             return Err(GearError::new("no_field").with_detail(&self.field));
//!         };
//!         *text = text.to_uppercase().into();
//!         Ok(Outcome::Emit(self.out))
//!     }
//! }
//!
//! let mut h = Harness::new::<Upper>(&serde_json::json!({ "field": "name" }))?;
//! h.send("in", FluxMsg::builder().data("name", "ada").build())?;
//! assert_eq!(h.take("out")[0].data.get("name"), Some(&Value::from("ADA")));
//!
//! h.send("in", FluxMsg::new())?;
//! assert_eq!(h.error_reasons(), ["no_field"]);
//!
//! // A misspelt key is refused before anything runs; the cause names the field.
//! let err = Harness::new::<Upper>(&serde_json::json!({ "feild": "name" })).unwrap_err();
//! let cause = std::error::Error::source(&err).map(ToString::to_string).unwrap_or_default();
//! assert!(cause.contains("feild"), "{err}: {cause}");
//! # Ok(()) }
//! ```
//!
//! # Features
//!
//! | feature | default | adds |
//! | --- | --- | --- |
//! | `host` | yes | everything above: the gear contract for gears that run in a rack (native gears and the `wasm` gear's host), with Tokio, snake and idgen |
//! | `guest` | no | the module `guest`: the guest side of wasm gears, for `wasm32-unknown-unknown`; use it without `host` (`default-features = false, features = ["guest"]`) |
//!
//! Without either, the crate holds only [`abi`], the wasm ABI that host and guest share, and
//! the decision helpers ([`decide`], [`DECISION_META`]).
//!
//! MSRV: the workspace's `rust-version`.
#![doc(test(attr(deny(warnings))))]

pub mod abi;
mod decision;
#[cfg(feature = "guest")]
pub mod guest;

#[cfg(feature = "host")]
mod backoff;
#[cfg(feature = "host")]
mod config;
#[cfg(feature = "host")]
mod context;
#[cfg(feature = "host")]
mod emit;
#[cfg(feature = "host")]
mod error;
#[cfg(feature = "host")]
mod gear;
#[cfg(feature = "host")]
mod gear_type;
#[cfg(feature = "host")]
mod harness;
#[cfg(feature = "host")]
mod ids;
#[cfg(feature = "host")]
mod manifest;
#[cfg(feature = "host")]
mod port;
#[cfg(feature = "host")]
mod runner;
#[cfg(feature = "host")]
mod shutdown;
#[cfg(feature = "host")]
mod stats;

#[cfg(feature = "host")]
pub use crate::backoff::Backoff;
#[cfg(feature = "host")]
pub use crate::config::HumanDuration;
#[cfg(feature = "host")]
pub use crate::context::{Context, Services, unix_nanos};
pub use crate::decision::{DECISION_META, MAX_DECISION_LEN, decide, take_decision};
#[cfg(feature = "host")]
pub use crate::emit::{
    Closed, ERROR_DETAIL, ERROR_REASON, Emission, Emissions, Emitter, Outbox, Outputs, mark_error,
};
#[cfg(feature = "host")]
pub use crate::error::{ConfigError, Error, FieldError, GearError};
#[cfg(feature = "host")]
pub use crate::gear::{Gear, GearType, LoadFuture, Outcome};
#[cfg(feature = "host")]
pub use crate::gear_type::{DynGearType, Prepared};
#[cfg(feature = "host")]
pub use crate::harness::{Harness, HarnessBuilder};
#[cfg(feature = "host")]
pub use crate::ids::IdSource;
#[cfg(feature = "host")]
pub use crate::manifest::{Category, Direction, Manifest, PortSpec, Status, Terminus};
#[cfg(feature = "host")]
pub use crate::port::{Availability, ERROR_PORT, InPort, OutPort, PortName, PortStatus, Ports};
#[cfg(feature = "host")]
pub use crate::runner::Runner;
#[cfg(feature = "host")]
pub use crate::shutdown::Shutdown;
#[cfg(feature = "host")]
pub use crate::stats::{Stats, StatsSnapshot};
#[cfg(feature = "host")]
pub use idgen::{Clock, ManualClock};
/// JSON, the form of a gear's configuration: it reaches the gear type as a
/// [`serde_json::Value`] ([`DynGearType::prepare`], [`Harness::new`], [`Context::config`]),
/// and its schema is one ([`Manifest::config_schema`]). Re-exported so that gears, the
/// factory and the engine name one version.
#[cfg(feature = "host")]
pub use serde_json;
/// The logging facade: gears log with its macros, and [`Context::span`] is the gear's span,
/// which the gear's own tasks and futures enter. Re-exported so that a gear instruments with
/// the version the engine uses.
#[cfg(feature = "host")]
pub use tracing;
