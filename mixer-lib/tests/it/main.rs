//! mixer-lib's integration tests.

mod store;
