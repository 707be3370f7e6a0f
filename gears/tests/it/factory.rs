//! Tests of the `factory` gear.
