//! The transport that carries fluxMsgs between racks and between racks and the mixer.
//!
//! One async API with two backends: an in-process one (the embedded default, nothing to install)
//! and NATS JetStream through async-nats (across processes and machines).
//! Subjects, streams, key-value buckets, acks, redelivery and dead letters live here; snake is
//! the only crate of the workspace that talks to async-nats.
//!
//! It has no code yet: the API and both backends arrive with their own issue.
