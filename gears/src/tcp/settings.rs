//! The configuration keys the TCP gears share, and the settings checked from them.

use std::borrow::Cow;
use std::time::Duration;

use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use sdk::{ConfigError, HumanDuration};
use serde::{Deserialize, Serialize};

use super::framing::Codec;
use super::tls::Tls;

/// The keys every TCP gear shares (`io_tcp`, `io_iso8583`): mode, addresses, limits,
/// timeouts and the outbound buffer. A gear's configuration holds them at its top level
/// (flattened), beside its own keys.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[non_exhaustive]
pub struct LinkConfig {
    /// `server` listens on `bind` and serves many connections; `client` keeps one connection
    /// to `connect` open, reconnecting with backoff.
    pub mode: Mode,
    /// Server: the address to listen on, `host:port` (default loopback, `127.0.0.1:8080` for
    /// `io_tcp` and `127.0.0.1:8583` for `io_iso8583`; `:9000` is `127.0.0.1:9000`). Every
    /// interface is `0.0.0.0:9000`, written out.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bind: Option<String>,
    /// Client: the address to connect to, `host:port`. Required in client mode, refused in
    /// server mode.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connect: Option<String>,
    /// Server: how many connections may be open at once; 0 means no limit. A connection over
    /// the limit is closed as soon as it is accepted and counted as dropped `max_connections`.
    #[serde(default = "default_max_connections")]
    pub max_connections: u32,
    /// Server: how many of those may come from one IP address; 0 means no limit. One over is
    /// closed as soon as it is accepted and counted as dropped `max_connections_per_peer`.
    #[serde(default = "default_max_connections_per_peer")]
    pub max_connections_per_peer: u32,
    /// The largest frame read, in bytes, delimiter or length header not included. A longer
    /// frame closes its connection and is counted as dropped `oversized_frame`.
    #[serde(default = "default_max_frame")]
    pub max_frame: u32,
    /// The memory, in bytes, that the gear's connections may hold together for frames they
    /// have begun to read (default 64 MiB; at least `max_frame`, so that one frame of the
    /// largest size always fits). A connection's read buffer grows with the bytes that
    /// arrive (never with a length a header declares) and is charged for what it holds beyond
    /// its first 8 KiB, until its frames are complete. A connection that would take more
    /// than is left is closed and counted as dropped `partial_frame_budget`.
    #[serde(default = "default_partial_frame_budget")]
    pub partial_frame_budget: u64,
    /// A connection with no byte read or written for this long is closed; `0s` never closes.
    #[serde(default = "default_idle_timeout")]
    pub idle_timeout: HumanDuration,
    /// Once the first byte of a frame has arrived, how long the rest may take; a frame still
    /// incomplete then closes its connection (`frame_timeout`), so that a peer sending a byte
    /// now and then cannot hold a connection open. `0s` waits forever.
    #[serde(default = "default_frame_timeout")]
    pub frame_timeout: HumanDuration,
    /// Client: how long one connection attempt may take.
    #[serde(default = "default_connect_timeout")]
    pub connect_timeout: HumanDuration,
    /// Client: the wait before reconnecting after a failed attempt or a lost connection;
    /// doubled after each failed attempt up to `reconnect_max`.
    #[serde(default = "default_reconnect_wait")]
    pub reconnect_wait: HumanDuration,
    /// Client: the longest wait between two connection attempts.
    #[serde(default = "default_reconnect_max")]
    pub reconnect_max: HumanDuration,
    /// How many messages may wait to be written, per connection (server) or in total
    /// (client, also while disconnected). When full the oldest is dropped and counted as
    /// `buffer_full`.
    #[serde(default = "default_max_buffered")]
    pub max_buffered_messages: u32,
}

/// Whether the gear listens or connects.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Mode {
    /// Listen on `bind` and serve every connection that comes.
    Server,
    /// Keep one connection to `connect`.
    Client,
}

// Written by hand so that a wrong value is told the allowed ones ("is not one of ..."), which
// the derived `oneOf` (one schema per documented variant) does not do.
impl JsonSchema for Mode {
    fn schema_name() -> Cow<'static, str> {
        "Mode".into()
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "type": "string",
            "enum": ["server", "client"],
            "description": "server: listen on bind; client: keep one connection to connect"
        })
    }
}

fn default_max_connections() -> u32 {
    4096
}

fn default_max_connections_per_peer() -> u32 {
    64
}

fn default_frame_timeout() -> HumanDuration {
    HumanDuration::from_secs(30)
}

fn default_max_frame() -> u32 {
    1 << 20
}

fn default_partial_frame_budget() -> u64 {
    64 << 20
}

fn default_idle_timeout() -> HumanDuration {
    HumanDuration::from_secs(60)
}

fn default_connect_timeout() -> HumanDuration {
    HumanDuration::from_secs(10)
}

fn default_reconnect_wait() -> HumanDuration {
    HumanDuration::from_millis(100)
}

fn default_reconnect_max() -> HumanDuration {
    HumanDuration::from_secs(5)
}

fn default_max_buffered() -> u32 {
    1000
}

/// The configuration once checked, in the shapes the tasks use.
#[derive(Debug, Clone)]
pub(crate) struct Settings {
    pub(crate) mode: Mode,
    pub(crate) bind: String,
    pub(crate) connect: String,
    /// `usize::MAX` when unlimited.
    pub(crate) max_connections: usize,
    /// `usize::MAX` when unlimited.
    pub(crate) max_connections_per_peer: usize,
    pub(crate) codec: Codec,
    pub(crate) max_frame: usize,
    /// The most that one frame takes on the wire: `max_frame` and its header or delimiter.
    pub(crate) frame_ceiling: usize,
    /// What the read buffers of all connections may take beyond their first chunk.
    pub(crate) partial_frame_budget: usize,
    /// `None` when idle connections are kept.
    pub(crate) idle_timeout: Option<Duration>,
    /// `None` when a frame may take forever.
    pub(crate) frame_timeout: Option<Duration>,
    pub(crate) connect_timeout: Duration,
    pub(crate) reconnect_wait: Duration,
    pub(crate) reconnect_max: Duration,
    pub(crate) max_buffered: usize,
    pub(crate) read_responses: bool,
    /// Client: after this long without a frame read, the gear's keepalive frame is sent.
    pub(crate) keepalive: Option<Duration>,
    /// TLS on every connection, when configured.
    pub(crate) tls: Option<Tls>,
}

impl Settings {
    /// Checks the shared keys and the rules the schema cannot express; `default_port` is the
    /// gear's port on loopback when `bind` is not set.
    pub(crate) fn new(
        config: LinkConfig,
        default_port: u16,
        codec: Codec,
    ) -> Result<Settings, ConfigError> {
        let connect = match (config.mode, config.connect) {
            (Mode::Client, None) => {
                return Err(ConfigError::field(
                    "connect",
                    "required in client mode: the host:port to connect to",
                ));
            }
            (Mode::Client, Some(addr)) => {
                check_host_port(&addr).map_err(|e| ConfigError::field("connect", e))?;
                addr
            }
            (Mode::Server, Some(_)) => {
                return Err(ConfigError::field(
                    "connect",
                    "only used in client mode (this gear is a server; did you mean bind?)",
                ));
            }
            (Mode::Server, None) => String::new(),
        };
        // Loopback only by default: exposing a rack is a choice written in the scenario.
        let bind = match config.bind {
            None => format!("127.0.0.1:{default_port}"),
            Some(bind) => match bind.strip_prefix(':') {
                Some(port) => format!("127.0.0.1:{port}"),
                None => bind,
            },
        };
        check_host_port(&bind).map_err(|e| ConfigError::field("bind", e))?;
        if config.max_frame == 0 {
            return Err(ConfigError::field("max_frame", "must be at least 1 byte"));
        }
        if config.partial_frame_budget < u64::from(config.max_frame) {
            return Err(ConfigError::field(
                "partial_frame_budget",
                format_args!(
                    "{} bytes is less than max_frame ({} bytes): one frame of the largest size \
                     must fit",
                    config.partial_frame_budget, config.max_frame
                ),
            ));
        }
        if config.max_buffered_messages == 0 {
            return Err(ConfigError::field(
                "max_buffered_messages",
                "must be at least 1",
            ));
        }
        if config.connect_timeout.get().is_zero() {
            return Err(ConfigError::field("connect_timeout", "must be positive"));
        }
        if config.reconnect_wait.get().is_zero() {
            return Err(ConfigError::field("reconnect_wait", "must be positive"));
        }
        if config.reconnect_wait > config.reconnect_max {
            return Err(ConfigError::field(
                "reconnect_wait",
                format_args!(
                    "{} is longer than reconnect_max ({})",
                    config.reconnect_wait, config.reconnect_max
                ),
            ));
        }
        let max_frame = usize::try_from(config.max_frame).unwrap_or(usize::MAX);
        let frame_ceiling = max_frame.saturating_add(codec.overhead());
        let idle = config.idle_timeout.get();
        let frame = config.frame_timeout.get();
        let unlimited_if_zero = |n: u32| match n {
            0 => usize::MAX,
            n => usize::try_from(n).unwrap_or(usize::MAX),
        };
        Ok(Settings {
            mode: config.mode,
            bind,
            connect,
            max_connections: unlimited_if_zero(config.max_connections),
            max_connections_per_peer: unlimited_if_zero(config.max_connections_per_peer),
            codec,
            max_frame,
            frame_ceiling,
            partial_frame_budget: usize::try_from(config.partial_frame_budget)
                .unwrap_or(usize::MAX),
            idle_timeout: (!idle.is_zero()).then_some(idle),
            frame_timeout: (!frame.is_zero()).then_some(frame),
            connect_timeout: config.connect_timeout.get(),
            reconnect_wait: config.reconnect_wait.get(),
            reconnect_max: config.reconnect_max.get(),
            max_buffered: usize::try_from(config.max_buffered_messages).unwrap_or(usize::MAX),
            read_responses: true,
            keepalive: None,
            tls: None,
        })
    }
}

/// Checks the shape `host:port` without resolving the host (no I/O at validation time).
fn check_host_port(addr: &str) -> Result<(), String> {
    let Some((host, port)) = addr.rsplit_once(':') else {
        return Err(format!("{addr:?} is not host:port"));
    };
    if host.is_empty() {
        return Err(format!("{addr:?} has no host"));
    }
    port.parse::<u16>()
        .map(|_| ())
        .map_err(|_| format!("{addr:?} has no valid port (0 to 65535)"))
}

/// Reads the escapes of a delimiter: `\n`, `\r`, `\t`, `\0`, `\\` and `\xHH`.
pub(crate) fn unescape(text: &str) -> Result<Vec<u8>, String> {
    let mut out = Vec::with_capacity(text.len());
    let mut bytes = text.bytes();
    while let Some(b) = bytes.next() {
        if b != b'\\' {
            out.push(b);
            continue;
        }
        let escaped = match bytes.next() {
            Some(b'n') => b'\n',
            Some(b'r') => b'\r',
            Some(b't') => b'\t',
            Some(b'0') => 0,
            Some(b'\\') => b'\\',
            Some(b'x') => {
                let hex = [bytes.next(), bytes.next()];
                let [Some(hi), Some(lo)] = hex else {
                    return Err(format!("{text:?}: \\x needs two hex digits"));
                };
                std::str::from_utf8(&[hi, lo])
                    .ok()
                    .and_then(|h| u8::from_str_radix(h, 16).ok())
                    .ok_or_else(|| format!("{text:?}: \\x needs two hex digits"))?
            }
            Some(other) => {
                return Err(format!(
                    "{text:?}: unknown escape \\{} (use \\n, \\r, \\t, \\0, \\\\ or \\xHH)",
                    char::from(other)
                ));
            }
            None => return Err(format!("{text:?} ends with a lone backslash")),
        };
        out.push(escaped);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bind_of(config: serde_json::Value) -> String {
        let config: LinkConfig = serde_json::from_value(config).expect("a valid config");
        Settings::new(
            config,
            8080,
            Codec::Delimiter(bytes::Bytes::from_static(b"\n")),
        )
        .expect("valid settings")
        .bind
    }

    #[test]
    fn a_server_listens_on_loopback_unless_told_otherwise() {
        let server = serde_json::json!({ "mode": "server" });
        assert_eq!(bind_of(server), "127.0.0.1:8080");
        let bare = serde_json::json!({ "mode": "server", "bind": ":9000" });
        assert_eq!(bind_of(bare), "127.0.0.1:9000");
        let every = serde_json::json!({ "mode": "server", "bind": "0.0.0.0:9000" });
        assert_eq!(bind_of(every), "0.0.0.0:9000");
    }
}
