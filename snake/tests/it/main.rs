//! The one integration-test binary of snake; one module per area.

mod conformance;
#[cfg(feature = "nats-server-tests")]
mod nats;
mod server;
mod subject;
