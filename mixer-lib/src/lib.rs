//! The mixer: the control plane that integrators build on.
//!
//! It knows every rack, admits new ones, signs their identities, leases them machine ids,
//! keeps versioned scenarios and pushes each rack its part. It is a library first: the store
//! ([`store::Store`]), the admission policy and the clock ([`Clock`]) are pluggable, and a
//! mixer is a value an application builds and runs. The mixer is never on the per-message
//! path.
//!
//! ```
//! use mixer_lib::store::{MemoryStore, RackRecord, RackStatus, Store};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let store = MemoryStore::new();
//! let hashed = mixer_lib::secret::hash("s3cret")?;
//! store.insert_rack(&RackRecord::new("id-1", "edge-1", hashed, 0)).await?;
//! let rack = store.rack_by_name("edge-1").await?.ok_or("no rack")?;
//! assert_eq!(rack.status, RackStatus::Pending);
//! assert!(mixer_lib::secret::verify("s3cret", &rack.secret_hash));
//! let lease = store.acquire_lease("id-1", 100..=199, 0, 60_000).await?;
//! assert_eq!(lease.machine_id, 100);
//! # Ok(())
//! # }
//! ```
#![doc(test(attr(deny(warnings))))]

mod clock;
mod error;
pub mod keys;
mod limit;
mod mixer;
pub mod secret;
pub mod store;

pub use crate::clock::{Clock, ManualClock, SystemClock};
pub use crate::error::MixerError;
pub use crate::mixer::{Imported, Mixer, MixerBuilder, QUEUE_GROUP, SCENARIO_BUCKET};
