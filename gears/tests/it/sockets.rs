//! Helpers the socket gears' tests share (`io_tcp`, `io_iso8583`): gears on free ports of
//! 127.0.0.1, connections, and bounded waits on what crosses them.

use fluxmsg::FluxMsg;
use sdk::{GearType, Harness};
use serde_json::{Value, json};
use testkit::within;
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;

/// `{"mode": mode, ...extra}`.
pub(crate) fn config(mode: &str, extra: Value) -> Value {
    let mut config = json!({ "mode": mode });
    if let (Some(config), Value::Object(extra)) = (config.as_object_mut(), extra) {
        config.extend(extra);
    }
    config
}

/// A started server gear bound to a free port of 127.0.0.1, and its address.
pub(crate) fn server<G: GearType>(extra: Value) -> (Harness, String) {
    let mut config = config("server", extra);
    // A port free a moment ago may be taken by the time the gear binds it (another test's
    // client socket): try a few.
    let mut last_error = None;
    for _ in 0..5 {
        let addr = format!("127.0.0.1:{}", testkit::free_port());
        config["bind"] = json!(addr);
        let mut h = Harness::new::<G>(&config).expect("a valid server config");
        match h.start() {
            Ok(()) => return (h, addr),
            Err(e) => last_error = Some(e),
        }
    }
    panic!("the server cannot bind a free port: {last_error:?}");
}

/// A started client gear that connects to `addr`.
pub(crate) fn client<G: GearType>(addr: &str, extra: Value) -> Harness {
    let mut config = config("client", extra);
    config["connect"] = json!(addr);
    let mut h = Harness::new::<G>(&config).expect("a valid client config");
    h.start().expect("a client starts without a server");
    h
}

pub(crate) async fn connect(addr: &str) -> TcpStream {
    let stream = within("connect", TcpStream::connect(addr))
        .await
        .expect("the gear accepts the connection");
    stream
        .set_nodelay(true)
        .expect("TCP_NODELAY on a test socket");
    stream
}

/// The next message the gear emits on `port`.
pub(crate) async fn next(h: &mut Harness, port: &str) -> FluxMsg {
    within(port, h.recv(port))
        .await
        .unwrap_or_else(|| panic!("a message on {port}"))
}

/// Exactly `n` bytes from `stream`.
pub(crate) async fn read_n(stream: &mut TcpStream, n: usize) -> Vec<u8> {
    let mut buf = vec![0; n];
    within("bytes from the gear", stream.read_exact(&mut buf))
        .await
        .expect("the gear writes to the socket");
    buf
}

/// Waits until the gear closes `stream` (EOF or reset), failing if data comes first.
pub(crate) async fn expect_closed(stream: &mut TcpStream) {
    let mut buf = [0; 64];
    match within("the gear to close the connection", stream.read(&mut buf)).await {
        Ok(0) | Err(_) => {}
        Ok(n) => panic!("expected the connection closed, read {:?}", &buf[..n]),
    }
}

pub(crate) fn text(msg: &FluxMsg, key: &str) -> String {
    msg.meta
        .get(key)
        .map(|t| t.to_string())
        .unwrap_or_else(|| panic!("meta {key} in {msg:?}"))
}
