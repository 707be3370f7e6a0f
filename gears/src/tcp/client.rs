//! Client mode: one connection, kept open with backoff, and one queue that outlives it.

use std::future::Future;
use std::pin::pin;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio::time::{sleep, timeout};
use tracing::Instrument;

use super::conn::{self, Link, SendQueue, Stop, format_conn_id, next_conn_id};
use sdk::Backoff;

use super::{Egress, EgressRx, Shared, Stream};

/// Moves egress into the queue until `shutdown` completes or the egress channel closes; then
/// moves what was already sent and raises `stop`, so that the link flushes and closes.
pub(crate) async fn pump(
    shared: Arc<Shared>,
    queue: Arc<SendQueue>,
    mut egress: EgressRx,
    shutdown: impl Future<Output = ()>,
    stop: watch::Sender<bool>,
) {
    let push = |msg: Egress| {
        let dropped = queue.push(msg.msg.raw);
        if dropped > 0 {
            shared.emitter.stats().add_dropped("buffer_full", dropped);
        }
    };
    let mut shutdown = pin!(shutdown);
    loop {
        tokio::select! {
            () = &mut shutdown => break,
            msg = egress.recv() => match msg {
                Some(msg) => push(msg),
                None => break,
            },
        }
    }
    egress.close();
    while let Ok(msg) = egress.try_recv() {
        push(msg);
    }
    let _ = stop.send(true);
}

/// Connects, serves the connection, and reconnects with backoff until `stop` is raised; then
/// counts what the queue still holds as dropped `shutdown`.
pub(crate) async fn link(shared: Arc<Shared>, queue: Arc<SendQueue>, mut stop: Stop) {
    let settings = &shared.settings;
    let target = settings.connect.as_str();
    let mut backoff = Backoff::new(settings.reconnect_wait, settings.reconnect_max);
    let mut wait = Duration::ZERO;
    let mut failures = 0_u32;
    loop {
        if !wait.is_zero() {
            tokio::select! {
                () = stop.wait() => break,
                () = sleep(wait) => {}
            }
        }
        let attempt = tokio::select! {
            () = stop.wait() => break,
            attempt = timeout(settings.connect_timeout, TcpStream::connect(target)) => attempt,
        };
        let connected = match attempt {
            Ok(Ok(stream)) => stream.peer_addr().map(|peer| (stream, peer)),
            Ok(Err(e)) => Err(e),
            Err(_) => Err(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                format!("no answer within {:?}", settings.connect_timeout),
            )),
        };
        let connected = match connected {
            Ok((stream, peer)) => {
                if let Err(e) = stream.set_nodelay(true) {
                    tracing::debug!(error = %e, "Could not set TCP_NODELAY.");
                }
                match &settings.tls {
                    None => Ok((Stream::Plain(stream), peer)),
                    Some(tls) => tokio::select! {
                        () = stop.wait() => break,
                        tls = tls.handshake(stream, settings.connect_timeout) => tls.map(|s| (s, peer)),
                    },
                }
            }
            Err(e) => Err(e),
        };
        let (stream, peer) = match connected {
            Ok(connected) => connected,
            Err(e) => {
                wait = backoff.next_wait();
                failures += 1;
                if failures == 1 {
                    tracing::warn!(connect = target, error = %e, retry_in = ?wait, "Cannot connect; retrying with backoff.");
                } else {
                    tracing::debug!(connect = target, error = %e, failures, retry_in = ?wait, "Cannot connect; retrying.");
                }
                continue;
            }
        };
        backoff.reset();
        failures = 0;
        let id = next_conn_id();
        let span = tracing::info_span!("conn", conn_id = %format_conn_id(id), peer = %peer);
        span.in_scope(|| tracing::info!("Connected."));
        let link = Link {
            id,
            peer,
            queue: &queue,
            stop: stop.clone(),
            emit: settings.read_responses,
        };
        shared.hooks.up(id, peer, &queue);
        let run = conn::run(stream, link, &shared).instrument(span.clone());
        let end = match settings.keepalive {
            None => run.await,
            Some(every) => {
                tokio::select! {
                    end = run => end,
                    never = keepalive(&shared, &queue, every) => match never {},
                }
            }
        };
        shared.hooks.down(id, peer, end.reason);
        if end.unsent > 0 {
            shared
                .emitter
                .stats()
                .add_dropped("connection_closed", end.unsent);
        }
        span.in_scope(|| tracing::info!(reason = end.reason, lost = end.unsent, "Disconnected."));
        if stop.is_set() {
            break;
        }
        wait = backoff.next_wait();
    }
    let left = queue.clear();
    if left > 0 {
        tracing::warn!(
            left,
            "Dropping messages never written: the gear is draining while disconnected."
        );
        shared.emitter.stats().add_dropped("shutdown", left);
    }
}

/// Asks the gear for a keepalive frame every `every` and queues it; never returns.
async fn keepalive(
    shared: &Shared,
    queue: &SendQueue,
    every: Duration,
) -> std::convert::Infallible {
    loop {
        sleep(every).await;
        if let Some(payload) = shared.hooks.keepalive() {
            let dropped = queue.push(payload);
            if dropped > 0 {
                shared.emitter.stats().add_dropped("buffer_full", dropped);
            }
        }
    }
}
