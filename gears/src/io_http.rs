//! The `io_http` gear: HTTP/1.1 in and out, plain `http://` only.
//!
//! In **server** mode the gear listens on `bind`; every request leaves on `out` as a message
//! and waits for its reply, a message that arrives on `in` and becomes the HTTP response. In
//! **client** mode every message that arrives on `in` becomes a request to `url`, and the
//! response leaves on `out` (failures send the request message to `error`).
//!
//! TLS is not supported yet: an `https://` URL is a configuration error.
//!
//! # Server
//!
//! ```yaml
//! - name: api
//!   type: io_http
//!   config:
//!     mode: server
//!     bind: 127.0.0.1:8081   # default; 0.0.0.0:8081 listens on every interface
//!     timeout: 5s            # how long a request waits for its reply (default)
//!     max_body: 1048576      # larger request bodies get 413 (default)
//!     max_in_flight: 1024    # one more waiting request gets 503 (default)
//!     header_read_timeout: 10s  # the longest a request head may take (default)
//!     idle_timeout: 60s      # an idle keep-alive connection is closed (default)
//!     max_connections: 1024  # open connections; one more is closed at once (default)
//! ```
//!
//! Connections are HTTP/1.1 with keep-alive, under three limits:
//!
//! - a request head (request line and headers) must arrive whole within
//!   `header_read_timeout`, counted from the accept for a connection's first request and from
//!   the first byte of each later one; otherwise the connection is closed and counted as
//!   dropped `header_timeout`, so that a client sending a byte now and then cannot hold it;
//! - a connection with no request in flight and no byte read or written for `idle_timeout` is
//!   closed (a request waiting for its reply is in flight: `timeout` bounds it instead);
//! - at most `max_connections` are open at once; one more is closed as soon as it is accepted,
//!   counted as dropped `max_connections` and logged.
//!
//! Each request becomes a message with a fresh id, the body in `raw`, and this metadata:
//!
//! | Key | Value |
//! |---|---|
//! | `http.method` | `GET`, `POST`, … |
//! | `http.path` | `/orders/7` |
//! | `http.query` | `a=1&b=2`, only when the URL has one |
//! | `http.header.<name>` | each header, name in lower case; repeated headers joined with `, ` |
//! | `http.request_id` | the message id as text, for replies that lose `ref_id` |
//! | `peer.ip`, `peer.port` | the client's address |
//!
//! The reply is the first message on `in` whose `ref_id` is the request's id or, failing that,
//! whose `http.request_id` metadata is. A gear that edits the request in place and sends it
//! back keeps `http.request_id`, so an echo needs no extra step. The reply gives:
//!
//! - the status from `http.status` (default 200). A status that is not a number from 200 to
//!   599 answers 500 and sends the reply to `error` with `bad_status`;
//! - the headers from `http.header.*` (connection and framing headers such as `content-length`,
//!   `transfer-encoding`, `connection` and `host` are skipped: hyper writes them);
//! - the body from `raw`.
//!
//! A reply that matches no waiting request (unknown id, already answered, or late) goes to
//! `error` with `unmatched_reply`; if the engine has no room for it right then, it is counted
//! as dropped with reason `error_port_full` instead (the task that matches replies serves
//! every request, so it never waits).
//!
//! Requests the gear answers by itself are counted as dropped, by reason: no reply within
//! `timeout` → 504, `timeout`; body over `max_body` → 413, `too_large`; more than
//! `max_in_flight` waiting → 503, `overloaded`; a body that does not arrive within `timeout`
//! → 408, `body_timeout`; an unreadable body → 400, `bad_body`; no message id → 500, `id`;
//! shutting down → 503, `closed`. The request message of a 504 has already left on `out`, so
//! it is only counted, not sent to `error`.
//!
//! # Client
//!
//! ```yaml
//! - name: upstream
//!   type: io_http
//!   config:
//!     mode: client
//!     url: http://127.0.0.1:9000/api   # required
//!     method: POST                     # default, when a message has no http.client.method
//!     headers: { content-type: application/json, authorization: Bearer s3cret }
//!     timeout: 5s                      # per attempt (default)
//!     retries: 2                       # default 0
//!     retry_backoff: 100ms             # doubled before each further retry (default)
//!     retry_on: [502, 503, 504]        # default
//!     max_in_flight: 64                # default
//!     max_body: 1048576                # largest response body (default)
//! ```
//!
//! Each message on `in` becomes a request:
//!
//! - the method is `http.client.method` if set, else `method`;
//! - the URL is `url`, with `http.client.path` appended to its path and `http.client.query`
//!   to its query. A path with a `.` or `..` segment (`%2e` too), a `?` or a `#` is refused
//!   (`bad_request`), so it cannot leave `url`'s path;
//! - the headers are `http.client.header.*`, then `headers` over them: a configured header
//!   (an `authorization`, say) is never replaced by a message's. Connection and framing
//!   headers are skipped;
//! - the body is `raw`.
//!
//! Only these `http.client.*` entries shape a request. The `http.method`, `http.path`,
//! `http.query` and `http.header.*` that a server gear writes are what an outside caller sent,
//! and a client never reads them: a request passed from a server to a client cannot choose
//! the upstream's method, add to its path or replace its credentials. A scenario that means
//! to forward some of them copies them on purpose, with a `transform` between the two gears:
//!
//! ```yaml
//! - name: forward
//!   type: transform
//!   config:
//!     steps:
//!       - copy: meta.http.path
//!         to: meta.http.client.path
//!       - copy: meta.http.header.x-trace
//!         to: meta.http.client.header.x-trace
//! ```
//!
//! The response leaves on `out` as the request message changed into a response: a fresh id,
//! `ref_id` set to the request's id, the body in `raw`, `http.status` and `http.header.*` from
//! the response. Its request's `http.*` entries (`http.client.*` included) are removed (except
//! `http.request_id`); every
//! other field and metadata entry is kept, so correlation fields survive. Any status that is
//! not in `retry_on`, 4xx included, is a normal response.
//!
//! A connection error, a timeout or a status in `retry_on` is retried up to `retries` times.
//! Then the original request message goes to `error` with `connect`, `timeout` or
//! `http_status` (the detail names the status). Other failures are not retried and go to
//! `error` at once: `bad_request` (an invalid `http.method` or path), `request` (the
//! connection broke mid-exchange), `too_large` (a response body over `max_body`).
//!
//! Requests in flight or queued when the engine's drain timeout aborts the gear's tasks are
//! counted as dropped with reason `shutdown`.
//!
//! So that a `server` and a `client` chain into a proxy, a message from a server gear sent to a
//! client gear is forwarded with its body to the configured `url`, `method` and `headers`, and
//! its response comes back with `ref_id` set to the request's id, ready for the server's `in`.
//!
//! # Ports
//!
//! | Port | Server | Client |
//! |---|---|---|
//! | `in` | replies | messages to send |
//! | `out` | requests | responses |
//! | `error` | invalid and unmatched replies | failed requests |
//!
//! # Back-pressure
//!
//! [`Gear::process`] never waits: it hands a message to the gear's tasks through a bounded
//! channel. When it is full (a client with `max_in_flight` requests running and as many
//! queued, a server with twice `max_in_flight` commands queued), the message goes to `error`
//! with `overloaded`. After `drain`, a client refuses new messages with `draining`, sends what
//! it had queued and waits for its requests; a server stops accepting connections, closes the
//! idle ones and answers the requests it holds, while the runner's drain timeout lasts.

mod client;
mod config;
mod conn;
mod meta;
mod server;

use fluxmsg::FluxMsg;
use sdk::{
    Category, ConfigError, Context, Gear, GearError, GearType, InPort, Manifest, OutPort, Outbox,
    Outcome, Ports, Terminus,
};
use tokio::sync::mpsc;

use self::config::Settings;
pub use self::config::{Config, Mode};
use crate::{Error, Factory};

pub(crate) fn register(factory: &mut Factory) -> Result<(), Error> {
    factory.register::<IoHttp>()
}

/// The `io_http` gear: an HTTP server whose requests leave on `out` and whose replies arrive
/// on `in`, or an HTTP client that sends what arrives on `in` and emits the responses on `out`.
///
/// See the [module documentation](self) for the configuration, ports and metadata.
#[derive(Debug)]
pub struct IoHttp {
    settings: Settings,
    out: OutPort,
    running: Option<Running>,
    draining: bool,
}

/// The channel to the gear's tasks, once started.
#[derive(Debug)]
enum Running {
    Server(mpsc::Sender<server::Command>),
    Client(mpsc::Sender<FluxMsg>),
}

impl GearType for IoHttp {
    type Config = Config;

    fn manifest() -> Manifest {
        Manifest::new("io_http", Category::Io)
            .summary(
                "HTTP server (requests out, replies in) or client (requests in, responses out)",
            )
            .terminus(Terminus::Io)
            .input(
                "in",
                "server: replies to requests; client: messages to send as requests",
            )
            .output("out", "server: requests; client: responses")
    }

    fn new(config: Config, ports: &Ports) -> Result<Self, ConfigError> {
        Ok(IoHttp {
            settings: Settings::from_config(config)?,
            out: ports.resolve_output("out")?,
            running: None,
            draining: false,
        })
    }
}

impl Gear for IoHttp {
    fn start(&mut self, ctx: &mut Context) -> Result<(), GearError> {
        let clock = ctx.clock();
        let now: meta::Now = std::sync::Arc::new(move || clock.now());
        self.running = Some(match &self.settings {
            Settings::Server(s) => Running::Server(server::start(ctx, s, self.out, now)?),
            Settings::Client(s) => Running::Client(client::start(ctx, s, self.out, now)),
        });
        Ok(())
    }

    fn process(
        &mut self,
        _port: InPort,
        msg: &mut FluxMsg,
        _out: &mut Outbox<'_>,
    ) -> Result<Outcome, GearError> {
        match &self.running {
            Some(Running::Server(table)) => server::accept_reply(table, msg),
            Some(Running::Client(_)) if self.draining => {
                Err(GearError::new("draining").with_detail("the gear is shutting down"))
            }
            Some(Running::Client(queue)) => client::enqueue(queue, msg),
            None => Err(GearError::new("not_started").with_detail("the gear has not started")),
        }
    }

    fn drain(&mut self) {
        self.draining = true;
    }

    fn stop(&mut self) {
        self.running = None;
    }
}
