//! The metadata keys of `io_http` and the conversions between HTTP headers and metadata.

use std::sync::Arc;
use std::time::Duration;

use axum::http::{HeaderMap, HeaderName, HeaderValue};
use fluxmsg::{FluxMsg, Id, Map, Text};

/// The method of a request a server received.
pub(super) const METHOD: &str = "http.method";
/// The path of a request a server received.
pub(super) const PATH: &str = "http.path";
/// The query string of a request a server received, without the `?`.
pub(super) const QUERY: &str = "http.query";
/// The method a client uses instead of its configured one.
///
/// The `http.client.*` entries are the only metadata a client reads to shape a request. A
/// server never writes them, so what an outside caller sent (`http.method`, `http.path`,
/// `http.header.*`) cannot steer a client unless the scenario copies it there on purpose.
pub(super) const CLIENT_METHOD: &str = "http.client.method";
/// The path suffix a client appends to its `url`.
pub(super) const CLIENT_PATH: &str = "http.client.path";
/// The query a client appends to its `url`'s, without the `?`.
pub(super) const CLIENT_QUERY: &str = "http.client.query";
/// The prefix of the headers a client adds to its configured ones:
/// `http.client.header.x-trace`.
pub(super) const CLIENT_HEADER_PREFIX: &str = "http.client.header.";
/// The response status.
pub(super) const STATUS: &str = "http.status";
/// The id of the request a reply answers, as text.
pub(super) const REQUEST_ID: &str = "http.request_id";
/// The prefix of header entries: `http.header.content-type`.
pub(super) const HEADER_PREFIX: &str = "http.header.";
/// The prefix every HTTP entry shares.
const HTTP_PREFIX: &str = "http.";
pub(super) use crate::meta::{PEER_IP, PEER_PORT};

/// Headers that describe one connection or one message's framing: never copied from
/// metadata, since hyper writes them for the body it actually sends.
const SKIPPED: [&str; 9] = [
    "connection",
    "content-length",
    "host",
    "keep-alive",
    "proxy-connection",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
];

/// The time source of the gear, as its tasks read it.
pub(super) type Now = Arc<dyn Fn() -> Duration + Send + Sync>;

/// `now()` in Unix nanoseconds, the unit of [`FluxMsg::ts`].
pub(super) fn unix_nanos(now: &Now) -> i64 {
    sdk::unix_nanos(now())
}

/// Writes each header as `http.header.<name>`; repeated headers are joined with `, `, and a
/// value that is not UTF-8 is written as `hex:<hex>`.
pub(super) fn headers_to_meta(headers: &HeaderMap, msg: &mut FluxMsg) {
    let mut value = Vec::new();
    for name in headers.keys() {
        value.clear();
        for (i, v) in headers.get_all(name).iter().enumerate() {
            if i > 0 {
                value.extend_from_slice(b", ");
            }
            value.extend_from_slice(v.as_bytes());
        }
        let mut key = String::with_capacity(HEADER_PREFIX.len() + name.as_str().len());
        key.push_str(HEADER_PREFIX);
        key.push_str(name.as_str());
        msg.set_meta_bytes(key, &value);
    }
}

/// Sets a header for each valid `<prefix><name>` entry (`prefix` is [`HEADER_PREFIX`] or
/// [`CLIENT_HEADER_PREFIX`]), replacing one of the same name, skipping connection and
/// framing headers. Returns how many entries were invalid.
pub(super) fn meta_to_headers(meta: &Map<Text>, prefix: &str, headers: &mut HeaderMap) -> usize {
    let mut invalid = 0;
    for (key, value) in meta {
        let Some(name) = key.strip_prefix(prefix) else {
            continue;
        };
        if SKIPPED.iter().any(|s| name.eq_ignore_ascii_case(s)) {
            continue;
        }
        match (
            HeaderName::from_bytes(name.as_bytes()),
            HeaderValue::from_bytes(value.as_bytes()),
        ) {
            (Ok(name), Ok(value)) => {
                headers.insert(name, value);
            }
            _ => {
                invalid += 1;
                tracing::debug!(key, "Skipped metadata that is not a valid HTTP header.");
            }
        }
    }
    invalid
}

/// Removes the request's `http.*` entries (method, path, query, headers, status, and the
/// `http.client.*` that shaped it) except `http.request_id`, so that a response carries only
/// its own.
pub(super) fn strip_http(meta: &mut Map<Text>) {
    if !meta
        .keys()
        .any(|k| k.starts_with(HTTP_PREFIX) && k != REQUEST_ID)
    {
        return;
    }
    *meta = std::mem::take(meta)
        .into_iter()
        .filter(|(k, _)| !k.starts_with(HTTP_PREFIX) || k.as_str() == REQUEST_ID)
        .collect();
}

/// The ids a reply may answer: its `ref_id`, then its `http.request_id` if that parses.
pub(super) fn reply_keys(msg: &FluxMsg) -> (Option<Id>, Option<Id>) {
    let by_meta = msg.meta.get(REQUEST_ID).and_then(|t| t.trim().parse().ok());
    (msg.ref_id, by_meta)
}
