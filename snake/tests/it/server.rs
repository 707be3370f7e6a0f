//! Tests: the managed nats-server (written with it).
