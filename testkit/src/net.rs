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

/// `payload` behind a 2-byte big-endian length header, as ISO 8583 links frame messages.
///
/// # Panics
///
/// When `payload` is longer than 65,535 bytes.
#[must_use]
pub fn frame(payload: &[u8]) -> Vec<u8> {
    let mut out = u16::try_from(payload.len())
        .expect("a payload a 2-byte header can announce")
        .to_be_bytes()
        .to_vec();
    out.extend_from_slice(payload);
    out
}

/// Reads one frame behind a 2-byte big-endian length header (see [`frame`]).
///
/// # Errors
///
/// The stream's, for example when it closes before the frame is whole.
pub async fn read_frame(
    stream: &mut (impl tokio::io::AsyncRead + Unpin),
) -> std::io::Result<Vec<u8>> {
    use tokio::io::AsyncReadExt as _;
    let mut head = [0; 2];
    stream.read_exact(&mut head).await?;
    let mut body = vec![0; usize::from(u16::from_be_bytes(head))];
    stream.read_exact(&mut body).await?;
    Ok(body)
}
