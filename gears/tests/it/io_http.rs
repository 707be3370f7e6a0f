//! Tests of the `io_http` gear.
