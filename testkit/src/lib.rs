//! Test support shared by the workspace's crates; never published.
//!
//! It will hold the NATS server harness, a mock snake transport and fixture builders for
//! messages and scenarios, as the crates that need them arrive.
