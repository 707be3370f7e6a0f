//! The gears crate's integration tests: one module per gear, all through the sdk harness.

mod factory;
mod filter;
mod generate;
mod io_http;
mod io_tcp;
mod log;
mod route;
mod transform;
#[cfg(feature = "wasm")]
mod wasm;
#[cfg(feature = "wasm")]
mod wasm_module;

/// A TCP port on 127.0.0.1 that was free a moment ago (the kernel picked it), for gears that
/// take a `bind` address.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("the kernel gives a free port on 127.0.0.1")
}
