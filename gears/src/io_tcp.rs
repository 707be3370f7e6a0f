//! The `io_tcp` gear: a TCP server or client that turns a byte stream into messages and back.
//!
//! Frames read from a socket leave on `out` with the frame bytes in `raw`; messages that arrive
//! on `in` have their `raw` framed and written to a socket. The gear never parses a payload:
//! put a codec gear behind it.
//!
//! - **Server** (`mode: server`): listens on `bind` and serves up to `max_connections`
//!   connections. A message on `in` goes to the connection named by its `conn.id` metadata,
//!   so a reply keeps the `conn.id` of its request. Without `conn.id` it goes to the only
//!   open connection; with several open it is an error (`ambiguous_route`).
//! - **Client** (`mode: client`): keeps one connection to `connect`, reconnecting after
//!   `reconnect_wait`, doubled after each failure up to `reconnect_max`. Messages on `in` wait
//!   in the outbound buffer while it is down. `conn.id` is ignored on `in`.
//!
//! # Configuration
//!
//! ```yaml
//! gears:
//!   - name: terminals
//!     type: io_tcp
//!     config:
//!       mode: server              # required: server | client
//!       bind: "0.0.0.0:9000"      # server; default 127.0.0.1:8080 (":9000" is 127.0.0.1:9000)
//!       max_connections: 512      # server; default 4096, 0 = unlimited
//!       max_connections_per_peer: 8  # server, per IP address; default 64, 0 = unlimited
//!       framing: length_prefix2   # delimiter (default) | length_prefix2 | length_prefix4
//!       max_frame: 8192           # bytes; default 1 MiB
//!       partial_frame_budget: 16777216  # bytes, all connections' frames in progress;
//!                                 # default 64 MiB, at least max_frame
//!       idle_timeout: 5m          # default 60s, 0s = never
//!       frame_timeout: 10s        # a started frame must end within it; default 30s, 0s = never
//!       max_buffered_messages: 100  # per connection; default 1000, drop-oldest
//!   - name: upstream
//!     type: io_tcp
//!     config:
//!       mode: client
//!       connect: "switch.example:7000"  # required in client mode
//!       delimiter: "\r\n"         # default "\n"; escapes \n \r \t \0 \\ \xHH
//!       reconnect_wait: 100ms     # first backoff (default 100ms), doubled after each failure
//!       reconnect_max: 5s         # backoff ceiling (default 5s)
//!       connect_timeout: 10s      # one attempt (default 10s)
//!       read_responses: true      # emit what the server sends (default true)
//! ```
//!
//! Length prefixes are big-endian and count the payload only. See [`Config`] for every key.
//!
//! # Ports
//!
//! | Port | Direction | What travels |
//! |---|---|---|
//! | `in` | input | messages whose `raw` is written to a socket |
//! | `out` | output | one message per frame read, `raw` = the frame without its delimiter or prefix |
//! | `error` | output | messages that could not be written, with `error.reason` |
//!
//! Error reasons on `in`: `ambiguous_route` and `no_connection` (server; found by the routing
//! task, so they arrive on `error` asynchronously), `frame_too_long` (a payload over a 2-byte
//! or 4-byte prefix's limit), `overloaded` (the gear's hand-off channel of
//! 1,024 messages is full: the message is refused on the spot, never queued), `not_running`
//! (the gear is draining or stopped).
//!
//! # Metadata
//!
//! Every message on `out` carries `conn.id` (the connection, 16 hex digits, unique in the
//! process), `peer.ip` and `peer.port` (the other end), and `ts` (arrival time). Its `id` is
//! left for the engine to fill.
//!
//! # Drops
//!
//! Counted in the gear's stats (`flux.gear.messages_dropped`) by reason: `buffer_full` (the
//! oldest message of a full outbound buffer), `max_connections` and
//! `max_connections_per_peer` (a connection refused), `oversized_frame` (a frame over
//! `max_frame`, whose connection is closed), `frame_timeout` (a frame that did not complete
//! within `frame_timeout` of its first byte, whose connection is closed),
//! `partial_frame_budget` (a connection whose frame in progress needed more of the
//! budget than was left, closed),
//! `connection_closed` (messages still buffered when their connection closed), `shutdown`
//! (client messages still buffered when the gear drained while disconnected, frames already
//! read from a peer but not yet emitted when reading stopped at drain, and messages still
//! buffered when the drain timeout aborted the gear's tasks), and `error_port_full` (a
//! message for no open connection, which would go to `error`, while the engine had no room:
//! the routing task serves every connection, so it never waits).
//!
//! # Lifecycle
//!
//! Nothing opens a socket before `start`; a server that cannot bind fails `start`. Reading
//! stops when a frame waits for the engine (back-pressure closes the TCP window); each frame
//! is copied out of the read buffer, so that a message kept downstream pins nothing else.
//!
//! A read buffer starts at 8 KiB and grows by doubling with the bytes that arrive (a length
//! prefix reserves nothing before its bytes), never past one `max_frame` with its prefix or
//! delimiter. What it holds beyond its first 8 KiB comes out of `partial_frame_budget`, which
//! all connections of the gear share: taken before the buffer grows, given back as frames
//! complete (the buffer shrinks to what the bytes left need, 8 KiB when empty) or when the
//! connection closes. A connection that cannot take what it needs is closed, so that many
//! slow or stalled peers cannot hold `max_connections` × `max_frame` bytes between them;
//! small frames never need the budget. The read buffers of a server thus hold about
//! `max_connections` × 8 KiB plus `partial_frame_budget` at most.
//!
//! On `drain` the gear stops accepting and reading, writes what is buffered (bounded by the
//! engine's drain timeout), then closes each connection. A peer that closes its side closes
//! the connection: messages still buffered for it are dropped.
//!
//! # Example
//!
//! An echo server, tested with the harness and a real client:
//!
//! ```
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use gears::io_tcp::IoTcp;
//! use sdk::Harness;
//! use tokio::io::{AsyncReadExt, AsyncWriteExt};
//!
//! let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
//! rt.block_on(async {
//!     let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
//!     let bind = format!("127.0.0.1:{port}");
//!     let mut h = Harness::new::<IoTcp>(&serde_json::json!({ "mode": "server", "bind": bind }))?;
//!     h.start()?;
//!
//!     let mut client = tokio::net::TcpStream::connect(&bind).await?;
//!     client.write_all(b"ping\n").await?;
//!     let mut request = h.recv("out").await.ok_or("no frame")?;
//!     assert_eq!(&request.raw[..], b"ping");
//!
//!     // The reply keeps the request's conn.id, so it reaches the same client.
//!     request.raw = "pong".into();
//!     h.send("in", request)?;
//!     let mut reply = [0; 5];
//!     client.read_exact(&mut reply).await?;
//!     assert_eq!(&reply, b"pong\n");
//!
//!     h.shutdown().await;
//!     Ok(())
//! })
//! # }
//! ```

mod config;

use std::sync::Arc;

use fluxmsg::FluxMsg;
use sdk::{
    Category, Context, Gear, GearError, GearType, InPort, Manifest, OutPort, Outbox, Outcome,
    Ports, Terminus,
};

pub use self::config::{Config, Framing};
use crate::tcp::{Front, Plain, Settings};
pub use crate::tcp::{LinkConfig, Mode};
use crate::{Error, Factory};

pub(crate) fn register(factory: &mut Factory) -> Result<(), Error> {
    factory.register::<IoTcp>()
}

/// The settings of a configuration, for the machinery's unit tests.
#[cfg(test)]
pub(crate) fn settings_of(config: Config) -> Result<Settings, sdk::ConfigError> {
    config::settings(config)
}

/// The `io_tcp` gear: a TCP server or client (see the [module documentation](self)).
#[derive(Debug)]
pub struct IoTcp {
    settings: Arc<Settings>,
    out: OutPort,
    front: Front,
}

impl GearType for IoTcp {
    type Config = Config;

    fn manifest() -> Manifest {
        Manifest::new("io_tcp", Category::Io)
            .summary("TCP server or client: frames read from sockets out, messages written to sockets in")
            .terminus(Terminus::Io)
            .input("in", "messages whose raw bytes are framed and written to a socket (server: routed by conn.id)")
            .output("out", "one message per frame read, raw = the frame; meta conn.id, peer.ip, peer.port")
    }

    fn new(config: Config, ports: &Ports) -> Result<IoTcp, sdk::ConfigError> {
        Ok(IoTcp {
            settings: Arc::new(config::settings(config)?),
            out: ports.resolve_output("out")?,
            front: Front::default(),
        })
    }
}

impl Gear for IoTcp {
    fn init(&mut self, _: &mut Context) -> Result<(), GearError> {
        self.front.init();
        Ok(())
    }

    fn start(&mut self, ctx: &mut Context) -> Result<(), GearError> {
        self.front
            .start(ctx, &self.settings, self.out, Arc::new(Plain))
    }

    fn process(
        &mut self,
        _: InPort,
        msg: &mut FluxMsg,
        _: &mut Outbox<'_>,
    ) -> Result<Outcome, GearError> {
        self.front.submit(&self.settings, msg)?;
        Ok(Outcome::Consumed)
    }

    fn drain(&mut self) {
        self.front.drain();
    }

    fn stop(&mut self) {
        self.front.stop();
    }
}
