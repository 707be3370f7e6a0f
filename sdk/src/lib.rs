//! The gear contract: what a gear author implements and what a gear receives.
//!
//! Lifecycle (init, start, process, drain, stop), named ports, manifests with a JSON Schema of
//! the gear's configuration, the context a gear runs in, and a test harness that runs a gear
//! without a rack.
//! With the feature `guest`, it will also hold the guest side of WebAssembly gears.
//!
//! It has no code yet: the contract arrives with the gear catalog issue.
