//! Tests of the `transform` gear.
