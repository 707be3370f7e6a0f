//! Tests of the `filter` gear.
