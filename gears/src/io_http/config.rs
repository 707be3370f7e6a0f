//! The `io_http` configuration as written in a scenario, and the settings checked from it.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, Uri};
use schemars::JsonSchema;
use sdk::{ConfigError, HumanDuration};
use serde::Deserialize;

/// Where a server listens when `bind` is not given: loopback only, so that exposing a rack
/// is a choice written in the scenario.
const DEFAULT_BIND: &str = "127.0.0.1:8081";
/// How long a server waits for a reply, and a client for a response, by default.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);
/// The largest body taken by default: 1 MiB.
const DEFAULT_MAX_BODY: u64 = 1 << 20;
/// How many requests a server keeps waiting for their replies by default.
const DEFAULT_SERVER_IN_FLIGHT: usize = 1024;
/// How many requests a client has on the wire at once by default.
const DEFAULT_CLIENT_IN_FLIGHT: usize = 64;
/// The first pause between two attempts of a client by default.
const DEFAULT_BACKOFF: Duration = Duration::from_millis(100);
/// The statuses a client retries by default.
const DEFAULT_RETRY_ON: [u16; 3] = [502, 503, 504];
/// The ceiling of `max_in_flight`, well under Tokio's channel and semaphore limits.
const MAX_IN_FLIGHT: usize = 1_000_000;
/// How long a server waits for a request head by default.
const DEFAULT_HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a server keeps an idle keep-alive connection open by default.
const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(60);
/// How many connections a server keeps open at once by default.
const DEFAULT_MAX_CONNECTIONS: usize = 1024;
/// The ceiling of `max_connections`, well under Tokio's semaphore limit.
const MAX_CONNECTIONS: usize = 1_000_000;

/// Whether an `io_http` gear serves HTTP or calls an HTTP server.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Mode {
    /// Listens on `bind`: each request leaves on `out`, and its reply arrives on `in`.
    Server,
    /// Calls `url`: each message on `in` becomes a request, and its response leaves on `out`.
    Client,
}

/// The configuration of an `io_http` gear (the scenario's `config:` map).
///
/// Keys marked *server* or *client* belong to that mode only; giving one in the other mode is
/// a configuration error rather than a silently ignored key.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct Config {
    /// `server` or `client` (required).
    pub mode: Mode,
    /// *Server*: the address to listen on, `ip:port` (default `127.0.0.1:8081`); `:port`
    /// is `127.0.0.1:port`. Every interface is `0.0.0.0:port`, written out.
    pub bind: Option<String>,
    /// Server: how long a request waits for its reply before the client gets 504. Client: how
    /// long one attempt may take, connection and body included. Default 5s.
    pub timeout: Option<HumanDuration>,
    /// Server: the largest request body, in bytes (larger ones get 413). Client: the largest
    /// response body (larger ones send the request to `error` with `too_large`).
    /// Default 1048576 (1 MiB).
    pub max_body: Option<u64>,
    /// Server: how many requests may wait for their replies at once; one more gets 503
    /// (default 1024). Client: how many requests may be on the wire at once, with as many
    /// more queued; beyond that a message goes to `error` with `overloaded` (default 64).
    pub max_in_flight: Option<usize>,
    /// *Server*: how long a request head (request line and headers) may take to arrive,
    /// counted from the accept for a connection's first request and from the first byte of
    /// each later one. A head still incomplete then closes the connection, counted as dropped
    /// `header_timeout`, so that a client sending a byte now and then cannot hold it open.
    /// Default 10s.
    pub header_read_timeout: Option<HumanDuration>,
    /// *Server*: how long a keep-alive connection may stay open with no request in flight and
    /// no byte read or written; then it is closed. Default 60s.
    pub idle_timeout: Option<HumanDuration>,
    /// *Server*: how many connections may be open at once. One over the limit is closed as
    /// soon as it is accepted, counted as dropped `max_connections`. Default 1024.
    pub max_connections: Option<usize>,
    /// *Client* (required): the URL to call, `http://host:port/path`. `https` is not
    /// supported yet.
    pub url: Option<String>,
    /// *Client*: the request method when the message has no `http.client.method` (default
    /// `POST`).
    pub method: Option<String>,
    /// *Client*: headers sent with every request; a message's `http.client.header.*` metadata
    /// adds others but never replaces these.
    pub headers: Option<BTreeMap<String, String>>,
    /// *Client*: how many times a failed attempt (connection error, timeout, a status of
    /// `retry_on`) is tried again (default 0).
    pub retries: Option<u32>,
    /// *Client*: the pause before the first retry, doubled before each next one and capped at
    /// 30s or this value, whichever is larger (default 100ms).
    pub retry_backoff: Option<HumanDuration>,
    /// *Client*: the response statuses that are retried (default `[502, 503, 504]`).
    pub retry_on: Option<Vec<u16>>,
}

/// A configuration checked and turned into what the gear runs with.
#[derive(Debug, Clone)]
pub(super) enum Settings {
    /// Server mode.
    Server(ServerSettings),
    /// Client mode, shared with the gear's tasks.
    Client(Arc<ClientSettings>),
}

/// What a server runs with.
#[derive(Debug, Clone)]
pub(super) struct ServerSettings {
    pub(super) bind: SocketAddr,
    pub(super) timeout: Duration,
    pub(super) max_body: usize,
    pub(super) max_in_flight: usize,
    pub(super) header_read_timeout: Duration,
    pub(super) idle_timeout: Duration,
    pub(super) max_connections: usize,
}

/// What a client runs with.
#[derive(Debug, Clone)]
pub(super) struct ClientSettings {
    /// `http://host:port`, without a path.
    pub(super) origin: String,
    /// The URL's path without its trailing `/` (empty for the root).
    pub(super) base_path: String,
    /// The URL's query, if any.
    pub(super) base_query: Option<String>,
    /// The URL as configured, for requests that add no path or query.
    pub(super) uri: Uri,
    pub(super) method: Method,
    pub(super) headers: HeaderMap,
    pub(super) timeout: Duration,
    pub(super) retries: u32,
    pub(super) retry_backoff: Duration,
    pub(super) retry_on: Vec<u16>,
    pub(super) max_in_flight: usize,
    pub(super) max_body: usize,
}

impl Settings {
    /// Checks what the schema cannot: addresses, the URL, the method, headers, ranges, and
    /// keys given in the wrong mode.
    pub(super) fn from_config(config: Config) -> Result<Settings, ConfigError> {
        let timeout = config.timeout.map_or(DEFAULT_TIMEOUT, HumanDuration::get);
        if timeout.is_zero() {
            return Err(ConfigError::field("timeout", "must be more than zero"));
        }
        let max_body = config.max_body.unwrap_or(DEFAULT_MAX_BODY);
        let max_body = usize::try_from(max_body)
            .map_err(|_| ConfigError::field("max_body", "is larger than this machine can hold"))?;
        match config.mode {
            Mode::Server => server(&config, timeout, max_body).map(Settings::Server),
            Mode::Client => {
                client(config, timeout, max_body).map(|c| Settings::Client(Arc::new(c)))
            }
        }
    }
}

fn in_flight(value: Option<usize>, default: usize) -> Result<usize, ConfigError> {
    let n = value.unwrap_or(default);
    if (1..=MAX_IN_FLIGHT).contains(&n) {
        Ok(n)
    } else {
        Err(ConfigError::field(
            "max_in_flight",
            format_args!("must be between 1 and {MAX_IN_FLIGHT}, not {n}"),
        ))
    }
}

/// A positive duration, `default` when not given.
fn positive(
    key: &str,
    value: Option<HumanDuration>,
    default: Duration,
) -> Result<Duration, ConfigError> {
    let d = value.map_or(default, HumanDuration::get);
    if d.is_zero() {
        Err(ConfigError::field(key, "must be more than zero"))
    } else {
        Ok(d)
    }
}

fn wrong_mode(key: &str, mode: &str) -> ConfigError {
    let other = if mode == "server" { "client" } else { "server" };
    ConfigError::field(
        key,
        format_args!("applies to {other} mode only; this gear is in {mode} mode"),
    )
}

fn server(
    config: &Config,
    timeout: Duration,
    max_body: usize,
) -> Result<ServerSettings, ConfigError> {
    let client_keys = [
        ("url", config.url.is_some()),
        ("method", config.method.is_some()),
        ("headers", config.headers.is_some()),
        ("retries", config.retries.is_some()),
        ("retry_backoff", config.retry_backoff.is_some()),
        ("retry_on", config.retry_on.is_some()),
    ];
    if let Some((key, _)) = client_keys.iter().find(|(_, given)| *given) {
        return Err(wrong_mode(key, "server"));
    }
    let bind = config.bind.as_deref().unwrap_or(DEFAULT_BIND);
    let max_connections = config.max_connections.unwrap_or(DEFAULT_MAX_CONNECTIONS);
    if !(1..=MAX_CONNECTIONS).contains(&max_connections) {
        return Err(ConfigError::field(
            "max_connections",
            format_args!("must be between 1 and {MAX_CONNECTIONS}, not {max_connections}"),
        ));
    }
    Ok(ServerSettings {
        bind: parse_bind(bind)?,
        timeout,
        max_body,
        max_in_flight: in_flight(config.max_in_flight, DEFAULT_SERVER_IN_FLIGHT)?,
        header_read_timeout: positive(
            "header_read_timeout",
            config.header_read_timeout,
            DEFAULT_HEADER_READ_TIMEOUT,
        )?,
        idle_timeout: positive("idle_timeout", config.idle_timeout, DEFAULT_IDLE_TIMEOUT)?,
        max_connections,
    })
}

fn parse_bind(bind: &str) -> Result<SocketAddr, ConfigError> {
    let bad = || {
        ConfigError::field(
            "bind",
            format_args!(
                "{bind:?} is not an ip:port address such as 127.0.0.1:8081, 0.0.0.0:8081 or :8081"
            ),
        )
    };
    let trimmed = bind.trim();
    if let Some(port) = trimmed.strip_prefix(':') {
        let port: u16 = port.parse().map_err(|_| bad())?;
        return Ok(SocketAddr::from(([127, 0, 0, 1], port)));
    }
    trimmed.parse().map_err(|_| bad())
}

fn client(
    config: Config,
    timeout: Duration,
    max_body: usize,
) -> Result<ClientSettings, ConfigError> {
    let server_keys = [
        ("bind", config.bind.is_some()),
        ("header_read_timeout", config.header_read_timeout.is_some()),
        ("idle_timeout", config.idle_timeout.is_some()),
        ("max_connections", config.max_connections.is_some()),
    ];
    if let Some((key, _)) = server_keys.iter().find(|(_, given)| *given) {
        return Err(wrong_mode(key, "client"));
    }
    let Some(url) = config.url.as_deref() else {
        return Err(ConfigError::field(
            "url",
            "client mode needs a url, such as http://127.0.0.1:9000/api",
        ));
    };
    let (origin, base_path, base_query, uri) = parse_url(url)?;
    let method = match config.method.as_deref() {
        None => Method::POST,
        Some(m) => Method::from_bytes(m.trim().to_ascii_uppercase().as_bytes()).map_err(|_| {
            ConfigError::field("method", format_args!("{m:?} is not an HTTP method"))
        })?,
    };
    let mut headers = HeaderMap::new();
    for (name, value) in config.headers.iter().flatten() {
        let path = format!("headers.{name}");
        let header = HeaderName::from_bytes(name.as_bytes())
            .map_err(|_| ConfigError::field(&path, "is not a valid header name"))?;
        let value = HeaderValue::from_str(value)
            .map_err(|_| ConfigError::field(&path, "is not a valid header value"))?;
        headers.insert(header, value);
    }
    let retry_on = config.retry_on.unwrap_or_else(|| DEFAULT_RETRY_ON.to_vec());
    if let Some(bad) = retry_on.iter().find(|s| !(100..=599).contains(*s)) {
        return Err(ConfigError::field(
            "retry_on",
            format_args!("{bad} is not an HTTP status (100 to 599)"),
        ));
    }
    Ok(ClientSettings {
        origin,
        base_path,
        base_query,
        uri,
        method,
        headers,
        timeout,
        retries: config.retries.unwrap_or(0),
        retry_backoff: config
            .retry_backoff
            .map_or(DEFAULT_BACKOFF, HumanDuration::get),
        retry_on,
        max_in_flight: in_flight(config.max_in_flight, DEFAULT_CLIENT_IN_FLIGHT)?,
        max_body,
    })
}

/// `http://host:port/api?x=1` → (`http://host:port`, `/api`, `Some("x=1")`, the whole URI).
fn parse_url(url: &str) -> Result<(String, String, Option<String>, Uri), ConfigError> {
    let bad =
        |why: &dyn std::fmt::Display| ConfigError::field("url", format_args!("{url:?}: {why}"));
    let uri: Uri = url.trim().parse().map_err(|e| bad(&e))?;
    match uri.scheme_str() {
        Some("http") => {}
        Some(s) if s.eq_ignore_ascii_case("https") => {
            return Err(bad(
                &"TLS is not supported yet, so https:// cannot be used; use http://",
            ));
        }
        Some(s) => {
            return Err(bad(&format_args!(
                "the scheme {s:?} is not supported; use http://"
            )));
        }
        None => {
            return Err(bad(
                &"needs a scheme and a host, such as http://127.0.0.1:9000/api",
            ));
        }
    }
    let Some(authority) = uri.authority() else {
        return Err(bad(&"needs a host, such as http://127.0.0.1:9000/api"));
    };
    if authority.host().is_empty() {
        return Err(bad(&"needs a host, such as http://127.0.0.1:9000/api"));
    }
    let origin = format!("http://{authority}");
    let base_path = uri.path().trim_end_matches('/').to_owned();
    let base_query = uri.query().filter(|q| !q.is_empty()).map(str::to_owned);
    Ok((origin, base_path, base_query, uri))
}

impl ClientSettings {
    /// The URI of a request whose message asks for the path suffix `path` and the query
    /// `query` (both optional): the configured path, then the suffix; the configured query,
    /// then the message's. A suffix that could leave the configured path (a `.` or `..`
    /// segment, plain or percent-encoded) or carry a query or fragment (`?`, `#`) is refused.
    pub(super) fn target(&self, path: Option<&str>, query: Option<&str>) -> Result<Uri, String> {
        let path = path.filter(|p| !p.is_empty());
        let query = query.filter(|q| !q.is_empty());
        if let Some(p) = path {
            check_suffix(p)?;
        }
        if path.is_none() && query.is_none() {
            return Ok(self.uri.clone());
        }
        let mut text = String::with_capacity(128);
        text.push_str(&self.origin);
        text.push_str(&self.base_path);
        match path {
            Some(p) => {
                if !p.starts_with('/') {
                    text.push('/');
                }
                text.push_str(p);
            }
            None if self.base_path.is_empty() => text.push('/'),
            None => {}
        }
        let queries: Vec<&str> = self
            .base_query
            .as_deref()
            .into_iter()
            .chain(query)
            .collect();
        if !queries.is_empty() {
            text.push('?');
            text.push_str(&queries.join("&"));
        }
        text.parse::<Uri>()
            .map_err(|e| format!("the request URL {text:?} is invalid: {e}"))
    }
}

/// Refuses a path suffix with a `?` or `#`, or with a segment that is `.` or `..` once
/// `%2e` is read as `.`.
fn check_suffix(path: &str) -> Result<(), String> {
    if path.contains(['?', '#']) {
        return Err(format!(
            "the path suffix {path:?} holds a query or fragment; use http.client.query"
        ));
    }
    let dots = path.split('/').any(|segment| {
        let lower = segment.to_ascii_lowercase().replace("%2e", ".");
        lower == "." || lower == ".."
    });
    if dots {
        return Err(format!(
            "the path suffix {path:?} has a . or .. segment, which could leave the configured path"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn client_settings(url: &str) -> ClientSettings {
        let config: Config =
            serde_json::from_value(serde_json::json!({ "mode": "client", "url": url }))
                .expect("a valid config");
        match Settings::from_config(config).expect("valid settings") {
            Settings::Client(c) => Arc::unwrap_or_clone(c),
            Settings::Server(_) => panic!("client mode gives client settings"),
        }
    }

    #[test]
    fn targets_join_paths_and_queries() {
        let c = client_settings("http://h:1/api/?k=v");
        assert_eq!(
            c.target(None, None).expect("uri").to_string(),
            "http://h:1/api/?k=v"
        );
        assert_eq!(
            c.target(Some("/users/7"), Some("a=1"))
                .expect("uri")
                .to_string(),
            "http://h:1/api/users/7?k=v&a=1"
        );
        assert_eq!(
            c.target(Some("x"), None).expect("uri").to_string(),
            "http://h:1/api/x?k=v"
        );
        let root = client_settings("http://h:1");
        assert_eq!(
            root.target(None, Some("q")).expect("uri").to_string(),
            "http://h:1/?q"
        );
        assert_eq!(
            root.target(Some("/a"), None).expect("uri").to_string(),
            "http://h:1/a"
        );
        assert!(root.target(Some("/a b"), None).is_err());
    }

    #[test]
    fn targets_refuse_suffixes_that_leave_the_configured_path() {
        let c = client_settings("http://h:1/api");
        for bad in [
            "/../admin",
            "..",
            "/a/./b",
            "/%2e%2e/admin",
            "/.%2E/admin",
            "/a?x=1",
            "/a#frag",
        ] {
            assert!(c.target(Some(bad), None).is_err(), "{bad:?} is refused");
        }
        assert_eq!(
            c.target(Some("/a..b/.well"), None)
                .expect("uri")
                .to_string(),
            "http://h:1/api/a..b/.well"
        );
    }

    #[test]
    fn bind_accepts_a_bare_port_on_loopback() {
        assert_eq!(
            parse_bind(":8081").expect("addr"),
            SocketAddr::from(([127, 0, 0, 1], 8081))
        );
        assert_eq!(
            parse_bind("0.0.0.0:8081").expect("addr"),
            SocketAddr::from(([0, 0, 0, 0], 8081))
        );
        assert!(parse_bind("localhost:80").is_err());
    }

    #[test]
    fn a_server_listens_on_loopback_unless_told_otherwise() {
        let config: Config = serde_json::from_value(serde_json::json!({ "mode": "server" }))
            .expect("a valid config");
        match Settings::from_config(config).expect("valid settings") {
            Settings::Server(s) => {
                assert_eq!(s.bind, SocketAddr::from(([127, 0, 0, 1], 8081)));
            }
            Settings::Client(_) => panic!("server mode gives server settings"),
        }
    }
}
