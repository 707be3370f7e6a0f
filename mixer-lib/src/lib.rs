//! The mixer: the control plane that integrators build on.
//!
//! It knows every rack, admits new ones, signs their identities, leases them machine ids,
//! keeps versioned scenarios and pushes each rack its part. It is a library first: the store
//! ([`store::Store`]), the admission policy and the clock ([`Clock`]) are pluggable, and a
//! mixer is a value an application builds and runs. The mixer is never on the per-message
//! path.
//!
//! ```
//! use std::sync::Arc;
//!
//! use mixer_lib::Mixer;
//! use mixer_lib::store::MemoryStore;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! # let dir = std::env::temp_dir().join(format!("mixer-doc-{}", std::process::id()));
//! // Without `.store(..)` the state goes to `<data_dir>/mixer.db`; without `.snake(..)` the
//! // mixer answers on the in-process transport.
//! let mixer = Mixer::builder()
//!     .data_dir(&dir)
//!     .store(Arc::new(MemoryStore::new()))
//!     .bootstrap_secret("s3cret")
//!     .start()
//!     .await?;
//! let yaml = "meta: { name: demo, version: 1.0.0 }\n\
//!             racks: [ { name: edge-1 } ]\n\
//!             gears: [ { name: gen, type: generate, config: { count: 1 } } ]\n";
//! let imported = mixer.import(yaml, true).await?;
//! assert_eq!(imported.racks, ["edge-1"]);
//! assert_eq!(mixer.active().await?.map(|s| s.hash), Some(imported.hash));
//! // No rack has said hello yet: nothing to converge.
//! assert!(mixer.racks().await?.is_empty());
//! mixer.stop();
//! # std::fs::remove_dir_all(&dir)?;
//! # Ok(())
//! # }
//! ```
//!
//! The pieces: [`Mixer`] (enrollment, heartbeats, scenarios, pushes and their reports),
//! [`store`] (the state, in memory, SQLite or PostgreSQL), [`keys`] (the cluster key on
//! disk) and [`secret`] (rack secrets). The rack's side is [`rack_lib::agent`]; the payloads
//! are [`fluxmsg::system`]'s.
#![doc(test(attr(deny(warnings))))]

pub mod api;
mod clock;
mod error;
pub mod keys;
mod limit;
mod mixer;
pub mod secret;
pub mod store;
pub mod telemetry;

pub use crate::clock::{Clock, ManualClock, SystemClock};
pub use crate::error::MixerError;
pub use crate::mixer::{
    Imported, LISTING_MAX_AGE, LISTING_MAX_STALE, Mixer, MixerBuilder, QUEUE_GROUP, RackListing,
    SCENARIO_BUCKET,
};
