//! The built-in gear catalog and the factory that turns a gear type name into a gear.
//!
//! The Go fluxrig hands generation, mapping, routing and HTTP to an embedded Bento engine; this
//! catalog does them natively, each gear in one module with its configuration, manifest, docs
//! and tests:
//!
//! | type | category | ports | what it does |
//! |---|---|---|---|
//! | [`generate`] | logic | `out` | a source for simulation and load: count or duration, constant or ramp rate, templates with counters, seeded random values, time, and ISO 8583 fields (Luhn-valid PANs, STAN and RRN sequences, amounts, expiry dates) |
//! | [`transform`] | logic | `in` → `out` | set, copy, move, delete fields and metadata; literals, templates, Rhai expressions |
//! | [`route`] | logic | `in` → `out_<name>` | ordered rules choose a port; `failover`, `round_robin`, `least_loaded`, `weighted` trees |
//! | [`conductor`] | logic | `in`, `in_reply` → `out_<name>`, `out_response` | a transaction switch: routes requests by card range, correlates replies by key through the [`valet`] (memory or durable), retransmissions, expiry, breakers |
//! | [`filter`] | logic | `in` → `out` | pass or drop by a condition (drops counted) |
//! | [`coatcheck`] | logic | `in` → `out` (daemon: `out`) | claim-check parking of fields in a snake KV bucket: `store`, `restore`, and the `daemon` that sweeps expired entries into timeout events |
//! | [`codec_iso8583`] | codec | `in` → `out` | ISO 8583 bytes to fields and back by a spec (built-in or YAML), per-MTI validation, card data masked in errors |
//! | [`sim_responder`] | logic | `in` → `out` | an authorizer simulator: answers ISO 8583 requests by ordered rules (response code, fields, delay, drop), seeded |
//! | [`log`] | observability | `in` → `out` | one JSON line per message, sampled, as a sink or a tap |
//! | [`io_tcp`] | io | `in`, `out` | TCP server or client; delimiter or length-prefix framing; replies by `conn.id` |
//! | [`io_iso8583`] | io | `in`, `out`, `link` | ISO 8583 over TCP: 2- or 4-byte length headers, TPDU, protocol header, link events and availability, sign-on and echo |
//! | [`io_http`] | io | `in`, `out` | HTTP server (reply by id, 504 on timeout) or client (timeouts, retries) |
//! | `wasm` | logic | `in` → `out` (or the configured `ports`) | runs a WebAssembly module's gear, sandboxed and bounded (feature `wasm`) |
//!
//! Every gear also has the output port `error`, where a message goes with `error.reason` in its
//! metadata when the gear refuses it or fails on it (a panic included).
//!
//! # Conditions and expressions
//!
//! `route`, `filter` and `transform` share one [`Condition`] language (`field` with `equals`,
//! `not_equals`, `prefix`, `regex`, `exists`, `gt`, `gte`, `lt`, `lte`; `all`, `any`, `not`;
//! `expr`). Fields are `data.<dotted path>`, `meta.<key>` and the envelope fields (`id`,
//! `ref_id`, `src_id`, `trace`, `flags`, `ts`, `raw`). Expressions are
//! [Rhai](https://rhai.rs): sandboxed (no file, network or process access, `eval` disabled) and
//! bounded (100,000 operations, call depth 32, 1 MiB strings, 100,000-item arrays and maps), so
//! a runaway expression costs its message, not the rack. Only the message parts an expression
//! names are handed to it.
//!
//! # Example
//!
//! The factory validates a gear's configuration against its manifest's schema before anything
//! runs, and names the field:
//!
//! ```
//! use gears::Factory;
//! use serde_json::json;
//!
//! let factory = Factory::builtin();
//! let err = factory
//!     .prepare("big-only", "filter", &json!({ "pass_if": { "field": "data.amount", "gte": "lots" } }))
//!     .unwrap_err();
//! assert_eq!(err.to_string(), "gear \"big-only\" (filter) has an invalid configuration");
//! // The cause names the field.
//! let cause = std::error::Error::source(&err).map(ToString::to_string);
//! assert_eq!(cause.as_deref(), Some("config.pass_if.gte: \"lots\" is not of type \"number\""));
//!
//! let gear = factory
//!     .prepare("big-only", "filter", &json!({ "pass_if": { "field": "data.amount", "gte": 1000 } }))
//!     .unwrap();
//! assert_eq!(gear.ports().inputs()[0].as_str(), "in");
//! ```
//!
//! External gear packs register with [`Factory::register_pack`]; a type name registered twice
//! is an error. Write a new gear with the `sdk` crate and test it with `sdk::Harness`.
//!
//! # Features
//!
//! | feature | default | adds |
//! | --- | --- | --- |
//! | `wasm` | yes | the `wasm` gear (module `wasm`): WebAssembly modules run by wasmtime with per-gear limits, signed modules and a compile cache |
//!
//! MSRV: the workspace's `rust-version`.
#![doc(test(attr(deny(warnings))))]

mod base64url;
mod condition;
mod error;
mod expr;
mod factory;
mod field;
mod meta;
mod net;
mod offload;
mod queue;
mod tcp;
mod template;

pub mod coatcheck;
pub mod codec_iso8583;
pub mod conductor;
pub mod filter;
pub mod generate;
pub mod io_http;
pub mod io_iso8583;
pub mod io_tcp;
pub mod log;
pub mod route;
pub mod sim_responder;
pub mod transform;
pub mod valet;
#[cfg(feature = "wasm")]
pub mod wasm;

pub use crate::condition::Condition;
pub use crate::error::Error;
pub use crate::factory::Factory;
/// JSON, as gear configurations hold it: [`Factory::prepare`] takes a configuration as a
/// [`serde_json::Value`], and so do [`Condition`] literals, `transform` values and `generate`
/// data. The gear contract's own (`sdk::serde_json`), re-exported so that callers name one
/// version.
pub use sdk::serde_json;

fn register_builtin(factory: &mut Factory) -> Result<(), Error> {
    generate::register(factory)?;
    transform::register(factory)?;
    route::register(factory)?;
    conductor::register(factory)?;
    filter::register(factory)?;
    log::register(factory)?;
    codec_iso8583::register(factory)?;
    coatcheck::register(factory)?;
    io_tcp::register(factory)?;
    io_iso8583::register(factory)?;
    io_http::register(factory)?;
    sim_responder::register(factory)?;
    #[cfg(feature = "wasm")]
    wasm::register(factory)?;
    Ok(())
}
