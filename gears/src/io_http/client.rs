//! Client mode: a dispatcher task that turns queued messages into requests, at most
//! `max_in_flight` at once, with retries.

use std::sync::Arc;
use std::time::Duration;

use axum::http::{HeaderMap, Method, Request, StatusCode, Uri};
use bytes::Bytes;
use fluxmsg::FluxMsg;
use http_body_util::{BodyExt, Full, LengthLimitError, Limited};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use sdk::{Context, Emitter, GearError, IdSource, OutPort, Outcome, Stats};
use tokio::sync::mpsc;
use tokio::sync::mpsc::error::TrySendError;
use tracing::Instrument;

use super::config::ClientSettings;
use super::meta::{self, Now};

/// The longest pause between two attempts, unless `retry_backoff` itself is longer.
const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// What every request task shares.
struct Shared {
    client: Client<HttpConnector, Full<Bytes>>,
    settings: Arc<ClientSettings>,
    ids: Arc<dyn IdSource>,
    now: Now,
    emitter: Emitter,
    out: OutPort,
    span: tracing::Span,
}

/// Spawns the dispatcher; returns the sender through which `process` queues messages.
pub(super) fn start(
    ctx: &mut Context,
    settings: &Arc<ClientSettings>,
    out: OutPort,
    now: Now,
) -> mpsc::Sender<FluxMsg> {
    let mut connector = HttpConnector::new();
    connector.set_nodelay(true);
    connector.set_connect_timeout(Some(settings.timeout));
    let client = Client::builder(TokioExecutor::new())
        .pool_timer(TokioTimer::new())
        .build(connector);
    let (tx, rx) = mpsc::channel(settings.max_in_flight);
    let shared = Arc::new(Shared {
        client,
        settings: Arc::clone(settings),
        ids: ctx.ids(),
        now,
        emitter: ctx.emitter(),
        out,
        span: ctx.span().clone(),
    });
    let shutdown = ctx.shutdown().fired_owned();
    let stats = Arc::clone(shared.emitter.stats());
    let max = shared.settings.max_in_flight;
    // A request task per queued message, at most `max_in_flight` at once; on shutdown what is
    // already queued is sent.
    ctx.spawn(crate::queue::run_bounded(
        rx,
        stats,
        max,
        shutdown,
        move |msg| {
            let span = shared.span.clone();
            call(Arc::clone(&shared), msg).instrument(span)
        },
    ));
    tx
}

/// Queues a message that arrived on `in`, without waiting.
pub(super) fn enqueue(
    queue: &mpsc::Sender<FluxMsg>,
    msg: &mut FluxMsg,
) -> Result<Outcome, GearError> {
    let (back, error) = match queue.try_send(std::mem::take(msg)) {
        Ok(()) => return Ok(Outcome::Consumed),
        Err(TrySendError::Full(back)) => (
            back,
            GearError::new("overloaded")
                .with_detail("max_in_flight requests are running and as many wait"),
        ),
        Err(TrySendError::Closed(back)) => (
            back,
            GearError::new("draining").with_detail("the gear is shutting down"),
        ),
    };
    *msg = back;
    Err(error)
}

/// One request in flight. Dropped before [`InFlight::done`] (its task was aborted at the
/// drain timeout), its message is counted as dropped `shutdown`; a panic is counted by
/// [`finished`] instead.
struct InFlight {
    stats: Option<Arc<Stats>>,
}

impl InFlight {
    fn done(mut self) {
        self.stats = None;
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        if let Some(stats) = self.stats.take()
            && !std::thread::panicking()
        {
            stats.add_dropped("shutdown", 1);
            tracing::debug!("Dropped a request in flight: its task was aborted.");
        }
    }
}

/// Why an attempt may be tried again.
enum Retryable {
    Timeout,
    Connect(String),
    Status(StatusCode),
}

/// How one attempt ended.
enum Attempt {
    /// A response to pass on: its status, headers and body.
    Done(StatusCode, HeaderMap, Bytes),
    /// A failure worth another attempt.
    Retry(Retryable),
    /// A failure that another attempt would not fix.
    Fail(GearError),
}

/// The request a message asks for.
struct Target {
    method: Method,
    uri: Uri,
    headers: HeaderMap,
}

impl Target {
    fn of(settings: &ClientSettings, msg: &FluxMsg) -> Result<Target, GearError> {
        let bad = |detail: String| GearError::new("bad_request").with_detail(detail);
        // Only `http.client.*` shapes the request: the `http.*` a server wrote from an outside
        // request is never read here, so a caller cannot pick the method, path or headers.
        let method = match msg.meta.get(meta::CLIENT_METHOD) {
            None => settings.method.clone(),
            Some(m) => Method::from_bytes(m.trim().as_bytes()).map_err(|_| {
                bad(format!(
                    "{} {:?} is not an HTTP method",
                    meta::CLIENT_METHOD,
                    m.as_str()
                ))
            })?,
        };
        let uri = settings
            .target(
                msg.meta.get(meta::CLIENT_PATH).map(|t| t.as_str()),
                msg.meta.get(meta::CLIENT_QUERY).map(|t| t.as_str()),
            )
            .map_err(bad)?;
        // The message's headers first, then the configured ones over them: a message never
        // replaces a configured header (an `authorization`, say).
        let mut headers = HeaderMap::new();
        meta::meta_to_headers(&msg.meta, meta::CLIENT_HEADER_PREFIX, &mut headers);
        for name in settings.headers.keys() {
            headers.remove(name);
        }
        for (name, value) in &settings.headers {
            headers.append(name, value.clone());
        }
        Ok(Target {
            method,
            uri,
            headers,
        })
    }

    fn request(&self, body: &Bytes) -> Request<Full<Bytes>> {
        let mut request = Request::new(Full::new(body.clone()));
        *request.method_mut() = self.method.clone();
        *request.uri_mut() = self.uri.clone();
        *request.headers_mut() = self.headers.clone();
        request
    }
}

/// Sends one message as a request, retrying as configured, and emits the response on `out`
/// or the message on `error`.
async fn call(shared: Arc<Shared>, msg: FluxMsg) {
    let in_flight = InFlight {
        stats: Some(Arc::clone(shared.emitter.stats())),
    };
    attempt_all(shared, msg).await;
    in_flight.done();
}

async fn attempt_all(shared: Arc<Shared>, msg: FluxMsg) {
    let settings = &shared.settings;
    let target = match Target::of(settings, &msg) {
        Ok(target) => target,
        Err(error) => return fail(&shared, msg, &error).await,
    };
    let mut attempt: u32 = 0;
    let mut backoff = sdk::Backoff::new(settings.retry_backoff, MAX_BACKOFF);
    loop {
        let once = attempt_once(&shared, &target, &msg.raw);
        let retryable = match tokio::time::timeout(settings.timeout, once).await {
            Err(_) => Retryable::Timeout,
            Ok(Attempt::Retry(why)) => why,
            Ok(Attempt::Fail(error)) => return fail(&shared, msg, &error).await,
            Ok(Attempt::Done(status, headers, body)) => {
                return succeed(&shared, msg, status, &headers, body).await;
            }
        };
        let attempts = attempt.saturating_add(1);
        if attempt >= settings.retries {
            let error = match retryable {
                Retryable::Timeout => GearError::new("timeout").with_detail(format_args!(
                    "no response from {} within {:?} ({})",
                    target.uri,
                    settings.timeout,
                    tries(attempts)
                )),
                Retryable::Connect(why) => GearError::new("connect").with_detail(format_args!(
                    "{} ({}): {why}",
                    target.uri,
                    tries(attempts)
                )),
                Retryable::Status(status) => GearError::new("http_status").with_detail(
                    format_args!("{} answered {status} ({})", target.uri, tries(attempts)),
                ),
            };
            return fail(&shared, msg, &error).await;
        }
        let wait = backoff.next_wait();
        tracing::debug!(
            attempt = attempts,
            wait_ms = wait.as_millis() as u64,
            uri = %target.uri,
            "An HTTP attempt failed; retrying."
        );
        tokio::time::sleep(wait).await;
        attempt = attempts;
    }
}

/// `1 attempt`, `3 attempts`.
fn tries(n: u32) -> String {
    if n == 1 {
        "1 attempt".to_owned()
    } else {
        format!("{n} attempts")
    }
}

async fn attempt_once(shared: &Shared, target: &Target, body: &Bytes) -> Attempt {
    let response = match shared.client.request(target.request(body)).await {
        Ok(response) => response,
        Err(e) if e.is_connect() => return Attempt::Retry(Retryable::Connect(chain(&e))),
        Err(e) => {
            return Attempt::Fail(GearError::new("request").with_detail(format_args!(
                "{}: {}",
                target.uri,
                chain(&e)
            )));
        }
    };
    let status = response.status();
    if shared.settings.retry_on.contains(&status.as_u16()) {
        return Attempt::Retry(Retryable::Status(status));
    }
    let (parts, body) = response.into_parts();
    let max = shared.settings.max_body;
    match Limited::new(body, max).collect().await {
        Ok(collected) => Attempt::Done(status, parts.headers, collected.to_bytes()),
        Err(e) if e.is::<LengthLimitError>() => {
            Attempt::Fail(GearError::new("too_large").with_detail(format_args!(
                "the response body of {} is over {max} bytes",
                target.uri
            )))
        }
        Err(e) => Attempt::Fail(GearError::new("request").with_detail(format_args!(
            "reading the response of {} failed: {e}",
            target.uri
        ))),
    }
}

/// An error and its sources, `: `-separated.
fn chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(e) = source {
        text.push_str(": ");
        text.push_str(&e.to_string());
        source = e.source();
    }
    text
}

/// Turns the request message into its response and emits it on `out`.
async fn succeed(
    shared: &Shared,
    mut msg: FluxMsg,
    status: StatusCode,
    headers: &HeaderMap,
    body: Bytes,
) {
    let request_id = msg.id;
    msg.id = match shared.ids.next_id() {
        Ok(id) => Some(id),
        Err(e) => {
            tracing::warn!(error = %e, "Could not mint a message id; the engine will fill it.");
            None
        }
    };
    msg.ref_id = request_id;
    msg.ts = meta::unix_nanos(&shared.now);
    msg.raw = body;
    meta::strip_http(&mut msg.meta);
    msg.meta.insert(meta::STATUS, status.as_str().into());
    meta::headers_to_meta(headers, &mut msg);
    if shared.emitter.emit(shared.out, msg).await.is_err() {
        shared.emitter.stats().add_dropped("closed", 1);
    }
}

/// Sends the request message, unchanged but for its `error.*` metadata, to `error`.
async fn fail(shared: &Shared, msg: FluxMsg, error: &GearError) {
    tracing::debug!(
        reason = error.reason(),
        detail = error.detail().unwrap_or(""),
        "An HTTP request failed."
    );
    if shared.emitter.error(msg, error).await.is_err() {
        shared.emitter.stats().add_dropped("closed", 1);
    }
}
