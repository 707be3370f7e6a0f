//! The one integration-test binary of snake; one module per area.

mod server;
mod subject;
