//! mixer-lib's integration tests.

mod fleet;
mod mixer;
mod store;
