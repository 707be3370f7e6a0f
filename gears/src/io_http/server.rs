//! Server mode: an HTTP/1.1 server (its connections in [`conn`]) whose requests leave on
//! `out`, and a task that owns the table of requests waiting for their replies.

use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::pin;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::Request;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::Response;
use fluxmsg::{FluxMsg, Id};
use http_body_util::{BodyExt, LengthLimitError, Limited};
use sdk::{Context, Emitter, GearError, IdSource, OutPort, Outcome};
use tokio::sync::mpsc::error::TrySendError;
use tokio::sync::{Semaphore, mpsc, oneshot};
use tracing::Instrument;

use super::config::ServerSettings;
use super::conn::{self, Limits};
use super::meta::{self, Now};

/// What the table task receives: a request to wait for, or a reply to match.
// A slot holds the reply inline; boxing it would cost an allocation per reply.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
pub(super) enum Command {
    /// A request with this id now waits for its reply on this channel.
    Register(Id, oneshot::Sender<FluxMsg>),
    /// A message that arrived on `in`.
    Reply(FluxMsg),
}

/// What every request handler shares.
struct Shared {
    ids: Arc<dyn IdSource>,
    now: Now,
    emitter: Emitter,
    out: OutPort,
    table: mpsc::Sender<Command>,
    permits: Semaphore,
    timeout: Duration,
    max_body: usize,
    span: tracing::Span,
}

/// Binds `settings.bind` and spawns the server and the table task; returns the table's
/// sender, through which `process` hands it replies.
pub(super) fn start(
    ctx: &mut Context,
    settings: &ServerSettings,
    out: OutPort,
    now: Now,
) -> Result<mpsc::Sender<Command>, GearError> {
    let listener = crate::net::bind(&settings.bind.to_string())?;
    let local = listener.local_addr().map_or(settings.bind, |a| a);
    // Room for every request that may wait, and as many replies.
    let (table_tx, table_rx) = mpsc::channel(settings.max_in_flight.saturating_mul(2));
    let shared = Arc::new(Shared {
        ids: ctx.ids(),
        now,
        emitter: ctx.emitter(),
        out,
        table: table_tx.clone(),
        permits: Semaphore::new(settings.max_in_flight),
        timeout: settings.timeout,
        max_body: settings.max_body,
        span: ctx.span().clone(),
    });
    let sweep = settings.timeout.min(Duration::from_secs(1));
    let token = ctx.shutdown();
    ctx.spawn(table(
        table_rx,
        ctx.emitter(),
        sweep,
        token.clone().fired_owned(),
    ));

    let limits = Limits {
        header_read_timeout: settings.header_read_timeout,
        idle_timeout: settings.idle_timeout,
        max_connections: settings.max_connections,
    };
    let stats = Arc::clone(ctx.emitter().stats());
    let handler = move |peer, request| handle(Arc::clone(&shared), peer, request);
    ctx.spawn(async move {
        conn::serve(listener, limits, stats, handler, token).await;
        tracing::info!(bind = %local, "The HTTP server stopped.");
    });
    tracing::info!(bind = %local, "The HTTP server listens.");
    Ok(table_tx)
}

/// Hands a message that arrived on `in` to the table task, without waiting.
pub(super) fn accept_reply(
    table: &mpsc::Sender<Command>,
    msg: &mut FluxMsg,
) -> Result<Outcome, GearError> {
    if msg.ref_id.is_none() && !msg.meta.contains_key(meta::REQUEST_ID) {
        return Err(unmatched(
            "the reply has neither a ref_id nor http.request_id metadata",
        ));
    }
    let reply = std::mem::take(msg);
    let (cmd, error) = match table.try_send(Command::Reply(reply)) {
        Ok(()) => return Ok(Outcome::Consumed),
        Err(TrySendError::Full(cmd)) => (
            cmd,
            GearError::new("overloaded").with_detail("the reply queue of the server is full"),
        ),
        Err(TrySendError::Closed(cmd)) => (cmd, unmatched("the server has stopped")),
    };
    if let Command::Reply(reply) = cmd {
        *msg = reply;
    }
    Err(error)
}

fn unmatched(detail: impl std::fmt::Display) -> GearError {
    GearError::new("unmatched_reply").with_detail(detail)
}

/// Owns the requests waiting for replies. Ends once shutdown has fired and none waits.
async fn table(
    mut rx: mpsc::Receiver<Command>,
    emitter: Emitter,
    sweep_every: Duration,
    shutdown: impl Future<Output = ()>,
) {
    let mut pending: HashMap<Id, oneshot::Sender<FluxMsg>> = HashMap::new();
    let mut sweep = tokio::time::interval(sweep_every);
    sweep.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut shutdown = pin!(shutdown);
    let mut draining = false;
    loop {
        tokio::select! {
            cmd = rx.recv() => match cmd {
                Some(Command::Register(id, tx)) => {
                    pending.insert(id, tx);
                }
                Some(Command::Reply(reply)) => deliver(&mut pending, reply, &emitter),
                None => break,
            },
            _ = sweep.tick() => {
                // Requests that timed out, or whose client left, no longer wait.
                pending.retain(|_, tx| !tx.is_closed());
            }
            () = &mut shutdown, if !draining => draining = true,
        }
        if draining && pending.is_empty() {
            break;
        }
    }
}

fn deliver(pending: &mut HashMap<Id, oneshot::Sender<FluxMsg>>, reply: FluxMsg, emitter: &Emitter) {
    let (by_ref, by_meta) = meta::reply_keys(&reply);
    let waiting = by_ref
        .and_then(|id| pending.remove(&id))
        .or_else(|| by_meta.and_then(|id| pending.remove(&id)));
    let (reply, detail) = match waiting {
        Some(tx) => match tx.send(reply) {
            Ok(()) => return,
            Err(reply) => (reply, "its request timed out or its client left".to_owned()),
        },
        None => {
            let id = by_ref
                .or(by_meta)
                .map_or_else(String::new, |id| id.to_string());
            let detail = format!(
                "no request waits for id {id} (it timed out, was answered, or never existed)"
            );
            (reply, detail)
        }
    };
    tracing::debug!(detail = %detail, "A reply matched no waiting request.");
    // Never wait for engine room here: this one task matches replies for every request.
    // A full (or closed) engine loses the error message, counted.
    let error = unmatched(detail);
    let mut reply = reply;
    sdk::mark_error(&mut reply, &error);
    if emitter.try_emit(OutPort::ERROR, reply).is_err() {
        emitter.stats().add_dropped("error_port_full", 1);
        tracing::warn!(
            reason = error.reason(),
            detail = error.detail().unwrap_or(""),
            "The engine is full; dropped an unmatched reply instead of sending it to error."
        );
    }
}

/// Every request, whatever its method and path.
async fn handle(shared: Arc<Shared>, peer: SocketAddr, request: Request) -> Response {
    let span = shared.span.clone();
    serve_one(&shared, peer, request).instrument(span).await
}

async fn serve_one(shared: &Shared, peer: SocketAddr, request: Request) -> Response {
    let stats = shared.emitter.stats();
    let refuse = |reason: &'static str, status: StatusCode, text: String| {
        stats.add_dropped(reason, 1);
        tracing::debug!(reason, status = status.as_u16(), %peer, "Refused an HTTP request.");
        plain(status, text)
    };
    let Ok(_permit) = shared.permits.try_acquire() else {
        return refuse(
            "overloaded",
            StatusCode::SERVICE_UNAVAILABLE,
            "too many requests in flight".to_owned(),
        );
    };
    let (parts, body) = request.into_parts();
    let too_large = || {
        refuse(
            "too_large",
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("the body is over {} bytes", shared.max_body),
        )
    };
    let declared = parts
        .headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > shared.max_body as u64) {
        return too_large();
    }
    let read = tokio::time::timeout(
        shared.timeout,
        Limited::new(body, shared.max_body).collect(),
    );
    let body = match read.await {
        Ok(Ok(collected)) => collected.to_bytes(),
        Ok(Err(e)) if e.is::<LengthLimitError>() => return too_large(),
        Ok(Err(e)) => {
            return refuse(
                "bad_body",
                StatusCode::BAD_REQUEST,
                format!("reading the body failed: {e}"),
            );
        }
        Err(_) => {
            return refuse(
                "body_timeout",
                StatusCode::REQUEST_TIMEOUT,
                format!("the body did not arrive within {:?}", shared.timeout),
            );
        }
    };
    let id = match shared.ids.next_id() {
        Ok(id) => id,
        Err(e) => {
            tracing::warn!(error = %e, "Could not mint a message id.");
            return refuse(
                "id",
                StatusCode::INTERNAL_SERVER_ERROR,
                "no message id".to_owned(),
            );
        }
    };

    let mut msg = FluxMsg::new();
    msg.id = Some(id);
    msg.ts = meta::unix_nanos(&shared.now);
    msg.raw = body;
    msg.meta.insert(meta::METHOD, parts.method.as_str().into());
    msg.meta.insert(meta::PATH, parts.uri.path().into());
    if let Some(query) = parts.uri.query().filter(|q| !q.is_empty()) {
        msg.meta.insert(meta::QUERY, query.into());
    }
    meta::headers_to_meta(&parts.headers, &mut msg);
    msg.meta.insert(meta::PEER_IP, peer.ip().to_string().into());
    msg.meta
        .insert(meta::PEER_PORT, peer.port().to_string().into());
    msg.meta.insert(meta::REQUEST_ID, id.to_string().into());

    // The request waits in the table before it leaves, so that no reply can overtake it;
    // registering, emitting and waiting all count against `timeout`.
    let (tx, rx) = oneshot::channel();
    let exchange = async {
        let register = Command::Register(id, tx);
        shared.table.send(register).await.map_err(|_| ())?;
        shared.emitter.emit(shared.out, msg).await.map_err(|_| ())?;
        rx.await.map_err(|_| ())
    };
    let reply = match tokio::time::timeout(shared.timeout, exchange).await {
        Ok(Ok(reply)) => reply,
        Ok(Err(())) => {
            return refuse(
                "closed",
                StatusCode::SERVICE_UNAVAILABLE,
                "the server is shutting down".to_owned(),
            );
        }
        Err(_) => {
            return refuse(
                "timeout",
                StatusCode::GATEWAY_TIMEOUT,
                format!("no reply within {:?}", shared.timeout),
            );
        }
    };
    match status_of(&reply) {
        Ok(status) => {
            let mut response = Response::new(Body::from(reply.raw));
            *response.status_mut() = status;
            meta::meta_to_headers(&reply.meta, meta::HEADER_PREFIX, response.headers_mut());
            response
        }
        Err(error) => {
            tracing::debug!(error = %error, "A reply could not become a response.");
            if shared.emitter.error(reply, &error).await.is_err() {
                stats.add_dropped("closed", 1);
            }
            plain(
                StatusCode::INTERNAL_SERVER_ERROR,
                "the reply was invalid".to_owned(),
            )
        }
    }
}

/// The status a reply asks for: `http.status`, 200 if absent.
fn status_of(reply: &FluxMsg) -> Result<StatusCode, GearError> {
    let Some(text) = reply.meta.get(meta::STATUS) else {
        return Ok(StatusCode::OK);
    };
    parse_status(text).ok_or_else(|| {
        GearError::new("bad_status").with_detail(format_args!(
            "http.status {:?} is not a status from 200 to 599",
            text.as_str()
        ))
    })
}

fn parse_status(text: &str) -> Option<StatusCode> {
    let code: u16 = text.trim().parse().ok()?;
    if (200..=599).contains(&code) {
        StatusCode::from_u16(code).ok()
    } else {
        None
    }
}

fn plain(status: StatusCode, mut text: String) -> Response {
    text.push('\n');
    let mut response = Response::new(Body::from(text));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}
