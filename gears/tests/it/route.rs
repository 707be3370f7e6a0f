//! Tests of the `route` gear.
