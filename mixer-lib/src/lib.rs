//! The mixer: the control plane that integrators build on.
//!
//! Registry of racks, enrollment and passports, a content-addressed scenario store, placement
//! and push, an HTTP API and telemetry. The mixer is never on the per-message path.
//!
//! It has no code yet: the control plane arrives with its own issue.
#![doc(test(attr(deny(warnings))))]
