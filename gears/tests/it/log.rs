//! Tests of the `log` gear.
