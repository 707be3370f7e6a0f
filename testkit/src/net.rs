//! Sockets for tests.

/// A TCP port on 127.0.0.1 that was free a moment ago (the kernel picked it), for gears and
/// servers that take a `bind` address.
///
/// Another socket may take it before the caller binds it: a test that binds it later retries
/// with a new port when that matters.
///
/// # Panics
///
/// When no socket can be bound on 127.0.0.1.
#[must_use]
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("the kernel gives a free port on 127.0.0.1")
}
