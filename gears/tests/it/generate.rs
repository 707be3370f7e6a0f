//! Tests of the `generate` gear.
