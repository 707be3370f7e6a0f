//! The one integration-test binary of fluxmsg; one module per area.

mod alloc;
mod codec;
mod decision;
mod hostile;
#[cfg(feature = "json")]
mod json;
mod serde_ciborium;
mod strategy;
mod system;
mod vectors;
mod view;
