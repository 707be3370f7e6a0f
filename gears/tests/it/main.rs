//! The gears crate's integration tests: one module per gear, all through the sdk harness.

mod codec_iso8583;
mod conductor;
mod cpu;
mod factory;
mod filter;
mod generate;
mod io_http;
mod io_iso8583;
mod io_tcp;
mod log;
mod route;
mod sim_responder;
mod sockets;
mod transform;
mod valet;
#[cfg(feature = "wasm")]
mod wasm;
#[cfg(feature = "wasm")]
mod wasm_module;
