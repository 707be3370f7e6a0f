//! Server mode's connections: the accept loop, which caps how many are open, and one task
//! per connection, which serves it with hyper and closes it when its request head is too slow
//! (`header_read_timeout`) or it idles (`idle_timeout`).
//!
//! hyper's own `header_read_timeout` is not used: its clock starts whenever the connection
//! waits for a head, so it would also close every keep-alive connection after that time and
//! leave `idle_timeout` no say. Here a connection is in one of three phases ([`Phase`]), and
//! each phase has its own deadline.

use std::convert::Infallible;
use std::future::{Future, poll_fn};
use std::io;
use std::net::SocketAddr;
use std::pin::{Pin, pin};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::Body;
use axum::http::Request;
use axum::response::Response;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use sdk::{Backoff, Shutdown, Stats};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinSet;
use tokio::time::{Instant, sleep_until};
use tracing::Instrument;

/// The first wait after a failed accept; doubled up to [`ACCEPT_BACKOFF_MAX`].
const ACCEPT_BACKOFF_MIN: Duration = Duration::from_millis(5);
const ACCEPT_BACKOFF_MAX: Duration = Duration::from_secs(1);

/// The limits every connection of a server lives under.
#[derive(Debug, Clone, Copy)]
pub(super) struct Limits {
    pub(super) header_read_timeout: Duration,
    pub(super) idle_timeout: Duration,
    pub(super) max_connections: usize,
}

/// Accepts connections until `shutdown` fires, at most `limits.max_connections` open at
/// once, and serves each with `handler`. Then it stops listening, lets every connection finish
/// the requests it holds (hyper closes each once it is idle), and returns when all are closed.
pub(super) async fn serve<H, F>(
    listener: TcpListener,
    limits: Limits,
    stats: Arc<Stats>,
    handler: H,
    shutdown: Shutdown,
) where
    H: Fn(SocketAddr, Request<Body>) -> F + Clone + Send + Sync + 'static,
    F: Future<Output = Response> + Send + 'static,
{
    let permits = Arc::new(Semaphore::new(limits.max_connections));
    let mut conns = JoinSet::new();
    let mut backoff = Backoff::new(ACCEPT_BACKOFF_MIN, ACCEPT_BACKOFF_MAX);
    let mut paused_until: Option<Instant> = None;
    let mut fired = pin!(shutdown.clone().fired_owned());
    loop {
        tokio::select! {
            () = &mut fired => break,
            Some(done) = conns.join_next() => reap(done),
            accepted = listener.accept(), if paused_until.is_none() => match accepted {
                Ok((stream, peer)) => {
                    backoff.reset();
                    let Ok(permit) = Arc::clone(&permits).try_acquire_owned() else {
                        // Counted before the close, so that whoever sees the close sees the count.
                        stats.add_dropped("max_connections", 1);
                        drop(stream);
                        tracing::warn!(
                            peer = %peer,
                            max_connections = limits.max_connections,
                            "Refused a connection over max_connections."
                        );
                        continue;
                    };
                    let task = connection(
                        stream,
                        peer,
                        limits,
                        Arc::clone(&stats),
                        handler.clone(),
                        shutdown.clone(),
                        permit,
                    );
                    conns.spawn(task.instrument(tracing::Span::current()));
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
    tracing::debug!(
        open = conns.len(),
        "Stopped listening; the connections finish their requests."
    );
    while let Some(done) = conns.join_next().await {
        reap(done);
    }
}

fn reap(done: Result<(), tokio::task::JoinError>) {
    if let Err(e) = done
        && e.is_panic()
    {
        tracing::error!(error = %e, "An HTTP connection task panicked; its request is lost.");
    }
}

/// Where a connection stands, and so which deadline applies.
#[derive(Debug, Clone, Copy)]
enum Phase {
    /// A request head is on its way since then: at the accept, or at the first byte after the
    /// previous response. Ends at `header_read_timeout`.
    Head(Instant),
    /// No request in flight, and nothing read or written since then. Ends at `idle_timeout`.
    Idle(Instant),
    /// This many requests are being handled (one, with HTTP/1.1); no deadline of ours, the
    /// request's own `timeout` applies.
    Busy(usize),
}

/// The phase of one connection, moved by its socket (bytes read and written) and by its
/// service (a request starts or ends). Only the connection's own task touches it.
#[derive(Debug)]
struct Watch(Mutex<Phase>);

impl Watch {
    fn phase(&self) -> std::sync::MutexGuard<'_, Phase> {
        // Every update writes a whole `Phase`: one left by a panic is still valid.
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn read(&self, n: usize) {
        if n > 0 {
            let mut phase = self.phase();
            if let Phase::Idle(_) = *phase {
                *phase = Phase::Head(Instant::now());
            }
        }
    }

    fn wrote(&self, n: usize) {
        if n > 0 {
            let mut phase = self.phase();
            if let Phase::Idle(_) = *phase {
                *phase = Phase::Idle(Instant::now());
            }
        }
    }

    fn begin(self: &Arc<Self>) -> InFlight {
        let mut phase = self.phase();
        *phase = match *phase {
            Phase::Busy(n) => Phase::Busy(n.saturating_add(1)),
            Phase::Head(_) | Phase::Idle(_) => Phase::Busy(1),
        };
        InFlight(Arc::clone(self))
    }

    fn end(&self) {
        let mut phase = self.phase();
        *phase = match *phase {
            Phase::Busy(n) if n > 1 => Phase::Busy(n - 1),
            _ => Phase::Idle(Instant::now()),
        };
    }

    /// When the connection must close if nothing changes, and why.
    fn deadline(&self, limits: &Limits) -> Option<(Instant, &'static str)> {
        match *self.phase() {
            Phase::Head(since) => Some((since + limits.header_read_timeout, "header_timeout")),
            Phase::Idle(since) => Some((since + limits.idle_timeout, "idle_timeout")),
            Phase::Busy(_) => None,
        }
    }
}

/// One request being handled; its end (or its future dropped) makes the connection idle.
struct InFlight(Arc<Watch>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.end();
    }
}

/// How a connection ended.
enum End {
    /// hyper closed it: the client left, or it was idle at a graceful shutdown.
    Done(Result<(), hyper::Error>),
    /// A deadline of [`Watch`] passed.
    Expired(&'static str),
}

async fn connection<H, F>(
    stream: TcpStream,
    peer: SocketAddr,
    limits: Limits,
    stats: Arc<Stats>,
    handler: H,
    shutdown: Shutdown,
    _permit: OwnedSemaphorePermit,
) where
    H: Fn(SocketAddr, Request<Body>) -> F + Send + Sync + 'static,
    F: Future<Output = Response> + Send + 'static,
{
    // A response is written whole; do not hold its last segment back waiting for an ACK.
    if let Err(e) = stream.set_nodelay(true) {
        tracing::debug!(peer = %peer, error = %e, "Could not set TCP_NODELAY.");
    }
    let watch = Arc::new(Watch(Mutex::new(Phase::Head(Instant::now()))));
    let io = TokioIo::new(Watched {
        inner: stream,
        watch: Arc::clone(&watch),
    });
    let service = {
        let watch = Arc::clone(&watch);
        service_fn(move |request: Request<Incoming>| {
            let in_flight = watch.begin();
            let handled = handler(peer, request.map(Body::new));
            async move {
                let response = handled.await;
                drop(in_flight);
                Ok::<_, Infallible>(response)
            }
        })
    };
    let mut conn = pin!(
        http1::Builder::new()
            // Our own deadlines instead (see the module documentation).
            .header_read_timeout(None)
            .serve_connection(io, service)
    );
    let mut fired = pin!(shutdown.fired_owned());
    let mut closing = false;
    let mut timer = pin!(sleep_until(Instant::now()));
    let end = poll_fn(|cx| {
        if !closing && fired.as_mut().poll(cx).is_ready() {
            closing = true;
            // Finishes the request in flight, if any, then closes; at once when idle.
            conn.as_mut().graceful_shutdown();
        }
        if let Poll::Ready(done) = conn.as_mut().poll(cx) {
            return Poll::Ready(End::Done(done));
        }
        // The phase may have moved while hyper ran: follow its deadline.
        if let Some((deadline, why)) = watch.deadline(&limits) {
            if timer.deadline() != deadline {
                timer.as_mut().reset(deadline);
            }
            if timer.as_mut().poll(cx).is_ready() {
                return Poll::Ready(End::Expired(why));
            }
        }
        Poll::Pending
    })
    .await;
    match end {
        End::Done(Ok(())) => {}
        End::Done(Err(e)) => {
            tracing::debug!(peer = %peer, error = %e, "An HTTP connection ended with an error.");
        }
        End::Expired(reason) => {
            if reason == "header_timeout" {
                stats.add_dropped(reason, 1);
            }
            tracing::debug!(peer = %peer, reason, "Closed an HTTP connection.");
        }
    }
}

/// A socket that tells its [`Watch`] about the bytes it moves.
struct Watched {
    inner: TcpStream,
    watch: Arc<Watch>,
}

impl AsyncRead for Watched {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        if let Poll::Ready(Ok(())) = polled {
            self.watch.read(buf.filled().len().saturating_sub(before));
        }
        polled
    }
}

impl AsyncWrite for Watched {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write(cx, buf);
        if let Poll::Ready(Ok(n)) = polled {
            self.watch.wrote(n);
        }
        polled
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        if let Poll::Ready(Ok(n)) = polled {
            self.watch.wrote(n);
        }
        polled
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}
