//! Tests of the `io_tcp` gear.
