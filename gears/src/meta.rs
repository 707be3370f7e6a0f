//! Metadata keys more than one gear writes.

/// The connection a message came from (hex), used to route a reply back to it.
pub(crate) const CONN_ID: &str = "conn.id";
/// The peer's IP address.
pub(crate) const PEER_IP: &str = "peer.ip";
/// The peer's port.
pub(crate) const PEER_PORT: &str = "peer.port";
