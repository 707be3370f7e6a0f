//! Listening sockets, shared by the I/O gears.

use std::net::{SocketAddr, ToSocketAddrs};

use sdk::GearError;
use tokio::net::{TcpListener, TcpSocket};

/// The listen backlog.
const BACKLOG: u32 = 1024;

/// Binds `addr` (`host:port`), trying each address it resolves to. Needs a Tokio runtime.
pub(crate) fn bind(addr: &str) -> Result<TcpListener, GearError> {
    let fail = |e: &dyn std::fmt::Display| {
        GearError::new("bind").with_detail(format_args!("cannot listen on {addr}: {e}"))
    };
    if tokio::runtime::Handle::try_current().is_err() {
        return Err(fail(&"no Tokio runtime"));
    }
    let candidates: Vec<SocketAddr> = match addr.parse() {
        Ok(literal) => vec![literal],
        // A host name goes to the system resolver, which may wait on the network: off the
        // async worker.
        Err(_) => crate::offload::run(|| addr.to_socket_addrs())
            .map_err(|e| fail(&e))?
            .collect(),
    };
    let mut last = None;
    for candidate in candidates {
        match listen(candidate) {
            Ok(listener) => return Ok(listener),
            Err(e) => last = Some(e),
        }
    }
    Err(match last {
        Some(e) => fail(&e),
        None => fail(&"the address resolves to nothing"),
    })
}

fn listen(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = if addr.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    // A restarted gear can bind again while old connections linger in TIME_WAIT.
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(BACKLOG)
}
