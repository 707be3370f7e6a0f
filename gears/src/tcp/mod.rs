//! The TCP machinery the I/O gears share (`io_tcp`, `io_iso8583`): the accept loop with its
//! connection caps, the client link with its backoff, framing, the partial-frame budget, the
//! frame and idle deadlines, the outbound queues and the routing of replies by `conn.id`.
//!
//! A gear fills [`Settings`] from its configuration ([`LinkConfig`] holds the keys they
//! share), gives [`Hooks`] for what it does beyond moving frames (reading a protocol header,
//! link events, keepalives), and drives a [`Front`] from its lifecycle.

mod budget;
mod client;
pub(crate) mod conn;
pub(crate) mod framing;
mod server;
pub(crate) mod settings;
mod tls;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use fluxmsg::FluxMsg;
use sdk::{Context, Emitter, GearError, OutPort};
use tokio::sync::mpsc;
use tokio::sync::mpsc::error::TrySendError;

use self::budget::Budget;
pub(crate) use self::conn::SendQueue;
pub use self::settings::{LinkConfig, Mode};
pub(crate) use self::settings::{Settings, unescape};
pub use self::tls::TlsConfig;
pub(crate) use self::tls::{Stream, Tls};
use crate::meta::CONN_ID;
use crate::queue::CountedRx;

/// Messages a gear's `process` may hand to its tasks before refusing with `overloaded`.
pub(crate) const EGRESS_CAPACITY: usize = 1024;

/// What a gear does beyond moving frames; every method has a default that does nothing.
pub(crate) trait Hooks: Send + Sync + 'static {
    /// A frame read, as a message with `raw` and the connection's metadata: the message to
    /// emit on `out`, or `None` when the gear took it (and counted it if it dropped it).
    fn inbound(&self, msg: FluxMsg) -> Option<FluxMsg> {
        Some(msg)
    }

    /// A connection opened (its TLS handshake done, if any); `queue` is where frames to
    /// write to it go. Called from the connection's task.
    fn up(&self, _conn: u64, _peer: SocketAddr, _queue: &SendQueue) {}

    /// A connection that was up closed.
    fn down(&self, _conn: u64, _peer: SocketAddr, _reason: &'static str) {}

    /// Client: called every `Settings::keepalive` while connected; a payload to write (an
    /// echo), or `None`.
    fn keepalive(&self) -> Option<Bytes> {
        None
    }
}

/// Hooks that do nothing: frames in, frames out.
#[derive(Debug)]
pub(crate) struct Plain;

impl Hooks for Plain {}

/// A message on its way from `process` to a socket.
#[derive(Debug)]
pub(crate) struct Egress {
    /// Server mode: the connection named by `conn.id`, if any.
    conn: Option<u64>,
    msg: FluxMsg,
}

/// The tasks' end of the egress channel; what it holds when the tasks are aborted at the
/// drain timeout is counted as dropped `shutdown`.
type EgressRx = CountedRx<Egress>;

/// What every task of one gear shares.
pub(crate) struct Shared {
    settings: Arc<Settings>,
    emitter: Emitter,
    out: OutPort,
    now: Box<dyn Fn() -> Duration + Send + Sync>,
    /// What the connections' read buffers may take for frames in progress, together.
    budget: Budget,
    hooks: Arc<dyn Hooks>,
}

impl Shared {
    /// The time now in Unix nanoseconds, from the engine's clock.
    fn now_nanos(&self) -> i64 {
        sdk::unix_nanos((self.now)())
    }
}

/// The gear's side of the machinery: the channel from `process` to the tasks, and the
/// start of the tasks.
#[derive(Debug, Default)]
pub(crate) struct Front {
    /// Where `process` hands messages to the tasks; `None` once draining.
    egress: Option<mpsc::Sender<Egress>>,
    /// The tasks' end, kept from `init` (so that messages sent before `start` wait) until
    /// `start` moves it into them.
    pending: Option<mpsc::Receiver<Egress>>,
}

impl Front {
    /// Opens the channel (the gear's `init`).
    pub(crate) fn init(&mut self) {
        let (tx, rx) = mpsc::channel(EGRESS_CAPACITY);
        self.egress = Some(tx);
        self.pending = Some(rx);
    }

    /// Starts the tasks (the gear's `start`): binds and accepts (server) or connects
    /// (client). A server that cannot bind fails.
    pub(crate) fn start(
        &mut self,
        ctx: &mut Context,
        settings: &Arc<Settings>,
        out: OutPort,
        hooks: Arc<dyn Hooks>,
    ) -> Result<(), GearError> {
        let Some(egress) = self.pending.take() else {
            return Err(GearError::new("state").with_detail("start without init, or twice"));
        };
        let clock = ctx.clock();
        let shared = Arc::new(Shared {
            settings: Arc::clone(settings),
            emitter: ctx.emitter(),
            out,
            now: Box::new(move || clock.now()),
            budget: Budget::new(settings.partial_frame_budget),
            hooks,
        });
        let egress = EgressRx::new(egress, Arc::clone(shared.emitter.stats()));
        let shutdown = ctx.shutdown().fired_owned();
        match settings.mode {
            Mode::Server => {
                let listener = crate::net::bind(&settings.bind)?;
                match listener.local_addr() {
                    Ok(addr) => tracing::info!(bind = %addr, "Listening."),
                    Err(e) => tracing::info!(bind = %settings.bind, error = %e, "Listening."),
                }
                ctx.spawn(server::run(listener, shared, egress, shutdown));
            }
            Mode::Client => {
                let queue = Arc::new(SendQueue::new(
                    settings.max_buffered,
                    Arc::clone(shared.emitter.stats()),
                ));
                let (stop_tx, stop) = conn::Stop::channel();
                ctx.spawn(client::pump(
                    Arc::clone(&shared),
                    Arc::clone(&queue),
                    egress,
                    shutdown,
                    stop_tx,
                ));
                ctx.spawn(client::link(shared, queue, stop));
            }
        }
        Ok(())
    }

    /// Hands `msg` (its `raw` the payload to frame) to the tasks, routed by its `conn.id` in
    /// server mode; refuses it when the payload does not fit the framing, the `conn.id` is
    /// not one, the channel is full (`overloaded`) or the gear is draining (`not_running`).
    pub(crate) fn submit(&self, settings: &Settings, msg: &mut FluxMsg) -> Result<(), GearError> {
        settings.codec.check(msg.raw.len())?;
        let conn = match (settings.mode, msg.meta.get(CONN_ID)) {
            (Mode::Server, Some(text)) if !text.is_empty() => {
                // A conn.id this gear never made cannot name an open connection.
                Some(conn::parse_conn_id(text).ok_or_else(|| {
                    GearError::new("no_connection")
                        .with_detail(format_args!("conn.id {text:?} is not a connection id"))
                })?)
            }
            _ => None,
        };
        let Some(egress) = &self.egress else {
            return Err(GearError::new("not_running").with_detail("the gear is draining"));
        };
        let permit = egress.try_reserve().map_err(|e| match e {
            TrySendError::Full(()) => GearError::new("overloaded").with_detail(format_args!(
                "{EGRESS_CAPACITY} messages are already waiting for the gear's tasks"
            )),
            TrySendError::Closed(()) => {
                GearError::new("not_running").with_detail("the gear's tasks are gone")
            }
        })?;
        permit.send(Egress {
            conn,
            msg: std::mem::take(msg),
        });
        Ok(())
    }

    /// The tasks route what is already in the channel, then flush and close (the gear's
    /// `drain`).
    pub(crate) fn drain(&mut self) {
        self.egress = None;
    }

    /// Drops both ends (the gear's `stop`).
    pub(crate) fn stop(&mut self) {
        self.egress = None;
        self.pending = None;
    }
}
