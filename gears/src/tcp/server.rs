//! Server mode: the listener, and the task that accepts connections and routes egress.

use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::pin;
use std::sync::Arc;
use std::time::Duration;

use sdk::GearError;
use tokio::net::{TcpListener, TcpStream};
use tokio::task::{JoinError, JoinSet};
use tokio::time::{Instant, sleep_until};
use tracing::Instrument;

use super::conn::{self, ConnEnd, Link, SendQueue, Stop, format_conn_id, next_conn_id};
use sdk::Backoff;

use super::{Egress, EgressRx, Shared, Stream};

/// The first wait after a failed accept; doubled up to [`ACCEPT_BACKOFF_MAX`].
const ACCEPT_BACKOFF_MIN: Duration = Duration::from_millis(5);
const ACCEPT_BACKOFF_MAX: Duration = Duration::from_secs(1);
/// One open connection, as the router sees it.
#[derive(Debug)]
struct Entry {
    queue: Arc<SendQueue>,
    peer: SocketAddr,
}

/// The connections of a server gear, owned by its one routing task (no lock on the map).
struct Hub {
    shared: Arc<Shared>,
    conns: HashMap<u64, Entry>,
    tasks: JoinSet<(u64, ConnEnd)>,
    owners: HashMap<tokio::task::Id, u64>,
    stop: Stop,
}

/// Accepts connections and routes egress until `shutdown` completes or the egress channel
/// closes; then stops accepting, routes what was already sent, and lets every connection
/// flush and close.
pub(crate) async fn run(
    listener: TcpListener,
    shared: Arc<Shared>,
    mut egress: EgressRx,
    shutdown: impl Future<Output = ()>,
) {
    let (stop_tx, stop) = Stop::channel();
    let mut hub = Hub {
        shared,
        conns: HashMap::new(),
        tasks: JoinSet::new(),
        owners: HashMap::new(),
        stop,
    };
    let mut backoff = Backoff::new(ACCEPT_BACKOFF_MIN, ACCEPT_BACKOFF_MAX);
    let mut paused_until: Option<Instant> = None;
    let mut shutdown = pin!(shutdown);
    loop {
        tokio::select! {
            () = &mut shutdown => break,
            msg = egress.recv() => match msg {
                Some(msg) => hub.route(msg),
                None => break,
            },
            Some(done) = hub.tasks.join_next_with_id() => hub.closed(done),
            accepted = listener.accept(), if paused_until.is_none() => match accepted {
                Ok((stream, peer)) => {
                    backoff.reset();
                    hub.admit(stream, peer);
                }
                Err(e) => {
                    let wait = backoff.next_wait();
                    tracing::warn!(error = %e, retry_in = ?wait, "Accept failed; backing off.");
                    paused_until = Some(Instant::now() + wait);
                }
            },
            () = sleep_until(paused_until.unwrap_or_else(Instant::now)), if paused_until.is_some() => {
                paused_until = None;
            }
        }
    }
    drop(listener);
    egress.close();
    while let Ok(msg) = egress.try_recv() {
        hub.route(msg);
    }
    tracing::debug!(open = hub.conns.len(), "Draining the connections.");
    let _ = stop_tx.send(true);
    while let Some(done) = hub.tasks.join_next_with_id().await {
        hub.closed(done);
    }
}

impl Hub {
    fn admit(&mut self, stream: TcpStream, peer: SocketAddr) {
        let settings = &self.shared.settings;
        if self.conns.len() >= settings.max_connections {
            // Counted before the close, so that whoever sees the close sees the count.
            self.shared
                .emitter
                .stats()
                .add_dropped("max_connections", 1);
            drop(stream);
            tracing::warn!(
                peer = %peer,
                max_connections = settings.max_connections,
                "Refused a connection over max_connections."
            );
            return;
        }
        let from_peer = self
            .conns
            .values()
            .filter(|e| e.peer.ip() == peer.ip())
            .count();
        if from_peer >= settings.max_connections_per_peer {
            self.shared
                .emitter
                .stats()
                .add_dropped("max_connections_per_peer", 1);
            drop(stream);
            tracing::warn!(
                peer = %peer,
                max_connections_per_peer = settings.max_connections_per_peer,
                "Refused a connection over max_connections_per_peer."
            );
            return;
        }
        // Frames are written whole; do not hold them back waiting for more.
        if let Err(e) = stream.set_nodelay(true) {
            tracing::debug!(peer = %peer, error = %e, "Could not set TCP_NODELAY.");
        }
        let id = next_conn_id();
        let queue = Arc::new(SendQueue::new(
            settings.max_buffered,
            Arc::clone(self.shared.emitter.stats()),
        ));
        let span = tracing::info_span!("conn", conn_id = %format_conn_id(id), peer = %peer);
        span.in_scope(|| tracing::info!(open = self.conns.len() + 1, "Connection accepted."));
        let link_queue = Arc::clone(&queue);
        let shared = Arc::clone(&self.shared);
        let stop = self.stop.clone();
        let task = self.tasks.spawn(
            async move {
                let link = Link {
                    id,
                    peer,
                    queue: &link_queue,
                    stop,
                    emit: true,
                };
                let stream = match &shared.settings.tls {
                    None => Stream::Plain(stream),
                    Some(tls) => {
                        // A peer that never completes its handshake holds the connection no
                        // longer than a frame could.
                        let settings = &shared.settings;
                        let deadline = settings.frame_timeout.unwrap_or(settings.connect_timeout);
                        match tls.handshake(stream, deadline).await {
                            Ok(stream) => stream,
                            Err(e) => {
                                shared.emitter.stats().add_dropped("tls_handshake", 1);
                                tracing::warn!(error = %e, "Closing a connection whose TLS handshake failed.");
                                let end = ConnEnd {
                                    reason: "tls_handshake",
                                    unsent: 0,
                                };
                                return (id, end);
                            }
                        }
                    }
                };
                // Up once the connection can carry frames (after its TLS handshake).
                shared.hooks.up(id, peer, link.queue);
                (id, conn::run(stream, link, &shared).await)
            }
            .instrument(span),
        );
        self.owners.insert(task.id(), id);
        self.conns.insert(id, Entry { queue, peer });
    }

    fn closed(&mut self, done: Result<(tokio::task::Id, (u64, ConnEnd)), JoinError>) {
        let (task, id, end) = match done {
            Ok((task, (id, end))) => (task, id, end),
            Err(e) => {
                let Some(&id) = self.owners.get(&e.id()) else {
                    return;
                };
                tracing::error!(conn_id = %format_conn_id(id), error = %e, "A connection task failed.");
                let end = ConnEnd {
                    reason: "task_failed",
                    unsent: 0,
                };
                (e.id(), id, end)
            }
        };
        self.owners.remove(&task);
        let Some(entry) = self.conns.remove(&id) else {
            return;
        };
        // A connection that never finished its TLS handshake was never up.
        if end.reason != "tls_handshake" {
            self.shared.hooks.down(id, entry.peer, end.reason);
        }
        let lost = entry.queue.clear() + end.unsent;
        if lost > 0 {
            self.shared
                .emitter
                .stats()
                .add_dropped("connection_closed", lost);
        }
        tracing::info!(
            conn_id = %format_conn_id(id),
            peer = %entry.peer,
            reason = end.reason,
            lost,
            "Connection closed."
        );
    }

    /// Hands `msg` to the connection it is for, or sends it to `error` if the engine has room
    /// (counted as dropped with reason `error_port_full` otherwise). Never waits.
    fn route(&self, msg: Egress) {
        let Egress { conn, msg } = msg;
        let target = match conn {
            Some(id) => self.conns.get(&id).ok_or_else(|| {
                GearError::new("no_connection").with_detail(format_args!(
                    "connection {} is not open",
                    format_conn_id(id)
                ))
            }),
            None => match self.conns.len() {
                1 => self
                    .conns
                    .values()
                    .next()
                    .ok_or_else(|| GearError::new("no_connection")),
                0 => Err(GearError::new("no_connection")
                    .with_detail("no connection is open and the message has no conn.id")),
                n => Err(GearError::new("ambiguous_route").with_detail(format_args!(
                    "{n} connections are open and the message has no conn.id"
                ))),
            },
        };
        match target {
            Ok(entry) => {
                let dropped = entry.queue.push(msg.raw);
                if dropped > 0 {
                    self.shared
                        .emitter
                        .stats()
                        .add_dropped("buffer_full", dropped);
                }
            }
            Err(error) => {
                // Never wait for engine room here: this one task routes for every
                // connection. A full (or closed) engine loses the error message, counted.
                let mut msg = msg;
                sdk::mark_error(&mut msg, &error);
                if self
                    .shared
                    .emitter
                    .try_emit(sdk::OutPort::ERROR, msg)
                    .is_err()
                {
                    self.shared
                        .emitter
                        .stats()
                        .add_dropped("error_port_full", 1);
                    tracing::warn!(
                        reason = error.reason(),
                        detail = error.detail().unwrap_or(""),
                        "The engine is full; dropped an unroutable message instead of sending it to error."
                    );
                }
            }
        }
    }
}
