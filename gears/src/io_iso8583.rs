//! The `io_iso8583` gear: ISO 8583 over TCP, as a server (acquirer side: terminals or a
//! scheme connect to it) or a client (a link to a host).
//!
//! Frames are cut by a length header; what follows it is an optional TPDU (5 bytes), an
//! optional fixed protocol header, then the ISO 8583 message. The gear emits the message's
//! bytes as `raw` (for `codec_iso8583` to decode) with the TPDU and the header in metadata,
//! and on `in` takes encoded messages (`raw`), puts the TPDU and header back and writes them
//! to the connection named by `conn.id` (server) or to its link (client). It never parses a
//! business message; only the client's own network-management messages (sign-on, echo) are
//! built and read here, with the `iso8583` crate's built-in spec.
//!
//! It runs on the same machinery as `io_tcp`: connection caps per gear and per peer, the
//! partial-frame budget, the frame and idle deadlines, bounded outbound buffers, the
//! loopback default, reconnects with backoff, and the routing of replies by `conn.id`.
//!
//! # Configuration
//!
//! ```yaml
//! gears:
//!   - name: terminals
//!     type: io_iso8583
//!     config:
//!       mode: server                  # required: server | client
//!       bind: "127.0.0.1:8583"        # server; default 127.0.0.1:8583
//!       frame_length_size: 2          # 2 (default) | 4
//!       frame_length_endian: big      # big (default) | little | ascii (decimal digits)
//!       frame_includes_header: false  # the length counts its own bytes too (default false)
//!       tpdu_enabled: true            # a 5-byte TPDU after the length (default false)
//!       tpdu_swap: true               # server: a reply's TPDU has source and destination
//!                                     # swapped (default true)
//!       tpdu_default: "6000010000"    # hex; for messages on `in` without iso8583.tpdu
//!       protocol_header_size: 0       # bytes of a fixed header after the TPDU (default 0)
//!       protocol_header_default: ""   # hex; for messages without iso8583.raw_header
//!                                     # (default: zeros)
//!       max_frame: 8192               # and every io_tcp limit: max_connections,
//!                                     # max_connections_per_peer, partial_frame_budget,
//!                                     # idle_timeout, frame_timeout, max_buffered_messages
//!   - name: host-link
//!     type: io_iso8583
//!     config:
//!       mode: client
//!       connect: "host.example:9000"  # required in client mode
//!       reconnect_wait: 100ms         # and reconnect_max, connect_timeout, as io_tcp
//!       sign_on: true                 # send a sign-on 0800 (DE 70 = 001) on connect; the
//!                                     # link is available once its 0810 has DE 39 = 00
//!       echo_interval: 30s            # send an echo 0800 (DE 70 = 301) after this long
//!                                     # without a frame read (default 0s: never)
//!       network_spec: builtin:spec87ascii  # or builtin:spec87hex, for those 0800s
//!       tls:                          # TLS 1.2 or 1.3 (rustls); files read at validation
//!         ca_file: ca.pem             # client: the CAs it trusts the server by (required)
//!         cert_file: client.pem       # client: for mutual TLS; server: required
//!         key_file: client.key
//!         server_name: host.example   # client; default the host of `connect`
//!         # client_auth: true         # server: mutual TLS, clients' certificates must
//!                                     # chain to the server's ca_file
//! ```
//!
//! Unknown keys and bad values are configuration errors, found when the scenario is
//! checked.
//!
//! # Ports
//!
//! | Port | Direction | What travels |
//! |---|---|---|
//! | `in` | input | encoded messages (`raw`), written with their TPDU and header (server: to the connection named by `conn.id`) |
//! | `out` | output | one message per frame: `raw` = the ISO 8583 bytes; meta `conn.id`, `peer.ip`, `peer.port`, `iso8583.tpdu`, `iso8583.raw_header` |
//! | `link` | output | link events: no `raw`, meta `conn.event` = `conn.up` or `conn.down`, `conn.id`, `peer.ip`, `peer.port` (and `conn.reason` on `conn.down`) |
//! | `error` | output | messages that could not be written, with `error.reason` |
//!
//! The TPDU and the protocol header travel as lower-case hex (`iso8583.tpdu`,
//! `iso8583.raw_header`); a reply that keeps its request's metadata gets them back (the
//! TPDU swapped in server mode). Error reasons on `in` are `io_tcp`'s, and `bad_tpdu` or
//! `bad_header` (metadata that is not hex of the configured size).
//!
//! # Availability
//!
//! A client is available (see `sdk::Availability`) while its link is up, and, with
//! `sign_on`, signed on: a `route` failover tree in front of two clients sends to the
//! second while the first is down. A server is always available.
//!
//! # Drops
//!
//! `io_tcp`'s (`oversized_frame`, `frame_timeout`, `partial_frame_budget`,
//! `max_connections`, `max_connections_per_peer`, `buffer_full`, `connection_closed`,
//! `shutdown`, `error_port_full`), and `bad_length_header` (a length header that is not a
//! length; the connection is closed), `short_frame` (a frame shorter than its TPDU and
//! header), `link_event_full` (a link event while the engine had no room; events never
//! wait), `network_message` (a 0800 that could not be built) and `tls_handshake` (server: a
//! connection whose TLS handshake failed or did not finish within `frame_timeout`; a client
//! retries a failed handshake with backoff, as a failed connect).
//!
//! Frames are never logged: they carry card data.

mod hooks;
mod network;

use std::borrow::Cow;
use std::sync::Arc;

use fluxmsg::FluxMsg;
use fluxmsg::bytes::{BufMut, Bytes, BytesMut};
use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use sdk::{
    Category, ConfigError, Context, Gear, GearError, GearType, HumanDuration, InPort, Manifest,
    OutPort, Outbox, Outcome, Ports, Terminus,
};
use serde::{Deserialize, Serialize};

use self::hooks::IsoHooks;
use self::network::Network;
use crate::tcp::framing::{Codec, LengthFormat, LengthHeader};
use crate::tcp::{Front, Settings, Tls};
pub use crate::tcp::{LinkConfig, Mode, TlsConfig};
use crate::{Error, Factory};

/// The metadata key of a frame's TPDU (hex).
pub const TPDU_META: &str = "iso8583.tpdu";
/// The metadata key of a frame's protocol header (hex).
pub const RAW_HEADER_META: &str = "iso8583.raw_header";
/// The metadata key of a link event: `conn.up` or `conn.down`.
pub const CONN_EVENT_META: &str = "conn.event";
/// The metadata key of why a connection closed, on `conn.down`.
pub const CONN_REASON_META: &str = "conn.reason";
/// The length of a TPDU.
const TPDU_LEN: usize = 5;

pub(crate) fn register(factory: &mut Factory) -> Result<(), Error> {
    factory.register::<IoIso8583>()
}

/// The configuration of an [`IoIso8583`] gear (see the [module documentation](self)).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct Config {
    /// Mode, addresses, connection limits, timeouts and the outbound buffer, as `io_tcp`.
    #[serde(flatten)]
    pub link: LinkConfig,
    /// The length header's size in bytes: 2 or 4.
    #[serde(default = "default_length_size")]
    pub frame_length_size: LengthSize,
    /// How the length header writes its number.
    #[serde(default)]
    pub frame_length_endian: Endian,
    /// Whether the length counts the header's own bytes too.
    #[serde(default)]
    pub frame_includes_header: bool,
    /// Whether a 5-byte TPDU follows the length header.
    #[serde(default)]
    pub tpdu_enabled: bool,
    /// Server: whether a reply's TPDU (from its `iso8583.tpdu`) has its source and
    /// destination addresses swapped.
    #[serde(default = "default_true")]
    pub tpdu_swap: bool,
    /// The TPDU (10 hex digits) written before messages that carry none.
    #[serde(default = "default_tpdu")]
    pub tpdu_default: String,
    /// The size in bytes of a fixed protocol header after the TPDU (0: none).
    #[serde(default)]
    pub protocol_header_size: u16,
    /// The protocol header (hex, `protocol_header_size` bytes) written before messages that
    /// carry none; empty means zeros.
    #[serde(default)]
    pub protocol_header_default: String,
    /// Client: whether a sign-on (0800, DE 70 = 001) is sent on each connect; the link is
    /// available once its 0810 answers DE 39 = 00.
    #[serde(default)]
    pub sign_on: bool,
    /// Client: after this long without a frame read, an echo (0800, DE 70 = 301) is sent;
    /// `0s` never.
    #[serde(default = "default_echo_interval")]
    pub echo_interval: HumanDuration,
    /// The spec of the network-management messages: `builtin:spec87ascii` or
    /// `builtin:spec87hex`.
    #[serde(default = "default_network_spec")]
    pub network_spec: String,
    /// TLS (and mutual TLS) on every connection; none by default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<TlsConfig>,
}

/// The size of the length header.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "u8", into = "u8")]
#[non_exhaustive]
pub enum LengthSize {
    /// Two bytes.
    Two,
    /// Four bytes.
    Four,
}

impl TryFrom<u8> for LengthSize {
    type Error = String;

    fn try_from(n: u8) -> Result<LengthSize, String> {
        match n {
            2 => Ok(LengthSize::Two),
            4 => Ok(LengthSize::Four),
            n => Err(format!("{n} is not a length header size (2 or 4)")),
        }
    }
}

impl From<LengthSize> for u8 {
    fn from(size: LengthSize) -> u8 {
        match size {
            LengthSize::Two => 2,
            LengthSize::Four => 4,
        }
    }
}

impl JsonSchema for LengthSize {
    fn schema_name() -> Cow<'static, str> {
        "LengthSize".into()
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "type": "integer",
            "enum": [2, 4],
            "description": "the length header's size in bytes"
        })
    }
}

/// How the length header writes its number.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Endian {
    /// Binary, most significant byte first.
    #[default]
    Big,
    /// Binary, least significant byte first.
    Little,
    /// ASCII decimal digits, zero-padded.
    Ascii,
}

impl JsonSchema for Endian {
    fn schema_name() -> Cow<'static, str> {
        "Endian".into()
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "type": "string",
            "enum": ["big", "little", "ascii"],
            "description": "big / little: binary, big- or little-endian; ascii: decimal digits"
        })
    }
}

fn default_length_size() -> LengthSize {
    LengthSize::Two
}

fn default_true() -> bool {
    true
}

fn default_tpdu() -> String {
    "6000000000".to_owned()
}

fn default_echo_interval() -> HumanDuration {
    HumanDuration::from_secs(0)
}

fn default_network_spec() -> String {
    "builtin:spec87ascii".to_owned()
}

/// The configuration once checked.
#[derive(Debug)]
pub(crate) struct IsoSettings {
    pub(crate) tcp: Arc<Settings>,
    /// The TPDU is there (5 bytes), or not (0).
    pub(crate) tpdu_len: usize,
    pub(crate) tpdu_swap: bool,
    pub(crate) tpdu_default: Bytes,
    pub(crate) header_len: usize,
    pub(crate) header_default: Bytes,
    pub(crate) sign_on: bool,
}

impl IsoSettings {
    fn new(config: Config) -> Result<(IsoSettings, Network), ConfigError> {
        let size = usize::from(u8::from(config.frame_length_size));
        let format = match config.frame_length_endian {
            Endian::Big => LengthFormat::BigEndian,
            Endian::Little => LengthFormat::LittleEndian,
            Endian::Ascii => LengthFormat::Ascii,
        };
        let codec = Codec::Length(LengthHeader {
            size,
            format,
            inclusive: config.frame_includes_header,
        });
        let client = config.link.mode == Mode::Client;
        let mut tcp = Settings::new(config.link, 8583, codec)?;
        let echo = config.echo_interval.get();
        if !client && (config.sign_on || !echo.is_zero()) {
            let key = if config.sign_on {
                "sign_on"
            } else {
                "echo_interval"
            };
            return Err(ConfigError::field(key, "only used in client mode"));
        }
        tcp.keepalive = (!echo.is_zero()).then_some(echo);
        if let Some(tls) = &config.tls {
            tcp.tls = Some(Tls::new(tls, tcp.mode, &tcp.connect)?);
        }
        let tpdu_default = hex_bytes(&config.tpdu_default, TPDU_LEN)
            .map_err(|e| ConfigError::field("tpdu_default", e))?;
        let header_len = usize::from(config.protocol_header_size);
        let header_default = if config.protocol_header_default.is_empty() {
            Bytes::from(vec![0; header_len])
        } else {
            hex_bytes(&config.protocol_header_default, header_len)
                .map_err(|e| ConfigError::field("protocol_header_default", e))?
        };
        let network = Network::new(&config.network_spec)
            .map_err(|e| ConfigError::field("network_spec", e))?;
        Ok((
            IsoSettings {
                tcp: Arc::new(tcp),
                tpdu_len: if config.tpdu_enabled { TPDU_LEN } else { 0 },
                tpdu_swap: config.tpdu_swap,
                tpdu_default,
                header_len,
                header_default,
                sign_on: config.sign_on,
            },
            network,
        ))
    }

    /// The payload to frame: TPDU, protocol header, then the ISO 8583 bytes.
    pub(crate) fn wrap(&self, tpdu: &[u8], header: &[u8], iso: &[u8]) -> Bytes {
        let mut out = BytesMut::with_capacity(self.tpdu_len + self.header_len + iso.len());
        if self.tpdu_len > 0 {
            out.put_slice(tpdu);
        }
        out.put_slice(header);
        out.put_slice(iso);
        out.freeze()
    }
}

/// `text` as exactly `len` bytes of hex.
fn hex_bytes(text: &str, len: usize) -> Result<Bytes, String> {
    if text.len() != len * 2 {
        return Err(format!(
            "{} hex digits, {} wanted ({len} bytes)",
            text.len(),
            len * 2
        ));
    }
    let digits = text.as_bytes();
    let mut out = Vec::with_capacity(len);
    for pair in digits.chunks_exact(2) {
        let hex = std::str::from_utf8(pair).ok();
        let byte = hex
            .and_then(|h| u8::from_str_radix(h, 16).ok())
            .ok_or_else(|| "not hex".to_owned())?;
        out.push(byte);
    }
    Ok(Bytes::from(out))
}

/// Lower-case hex of `bytes`.
pub(crate) fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(out, "{b:02x}");
    }
    out
}

/// The `io_iso8583` gear (see the [module documentation](self)).
#[derive(Debug)]
pub struct IoIso8583 {
    settings: Arc<IsoSettings>,
    network: Arc<Network>,
    out: OutPort,
    link: OutPort,
    front: Front,
}

impl GearType for IoIso8583 {
    type Config = Config;

    fn manifest() -> Manifest {
        Manifest::new("io_iso8583", Category::Io)
            .summary("ISO 8583 over TCP: length-header framing, TPDU, protocol header, link state, sign-on and echo")
            .terminus(Terminus::Io)
            .input("in", "encoded messages (raw), written with their TPDU and header (server: to the connection named by conn.id)")
            .output("out", "one message per frame, raw = the ISO 8583 bytes; meta conn.id, peer.ip, peer.port, iso8583.tpdu, iso8583.raw_header")
            .output("link", "link events: meta conn.event = conn.up | conn.down, conn.id, peer.ip, peer.port")
    }

    fn new(config: Config, ports: &Ports) -> Result<IoIso8583, ConfigError> {
        let (settings, network) = IsoSettings::new(config)?;
        Ok(IoIso8583 {
            settings: Arc::new(settings),
            network: Arc::new(network),
            out: ports.resolve_output("out")?,
            link: ports.resolve_output("link")?,
            front: Front::default(),
        })
    }
}

impl Gear for IoIso8583 {
    fn init(&mut self, _: &mut Context) -> Result<(), GearError> {
        self.front.init();
        Ok(())
    }

    fn start(&mut self, ctx: &mut Context) -> Result<(), GearError> {
        let hooks = IsoHooks::new(
            Arc::clone(&self.settings),
            Arc::clone(&self.network),
            ctx,
            self.link,
        );
        let tcp = Arc::clone(&self.settings.tcp);
        self.front.start(ctx, &tcp, self.out, Arc::new(hooks))
    }

    fn process(
        &mut self,
        _: InPort,
        msg: &mut FluxMsg,
        _: &mut Outbox<'_>,
    ) -> Result<Outcome, GearError> {
        let settings = &self.settings;
        let tpdu = match msg.meta.get(TPDU_META) {
            Some(text) if settings.tpdu_len > 0 && !text.is_empty() => {
                let mut tpdu = hex_bytes(text, TPDU_LEN)
                    .map_err(|e| GearError::new("bad_tpdu").with_detail(e))?
                    .to_vec();
                if settings.tpdu_swap && settings.tcp.mode == Mode::Server {
                    // Identifier, destination (2 bytes), source (2 bytes).
                    tpdu[1..].rotate_left(2);
                }
                Bytes::from(tpdu)
            }
            _ => settings.tpdu_default.clone(),
        };
        let header = match msg.meta.get(RAW_HEADER_META) {
            Some(text) if settings.header_len > 0 && !text.is_empty() => {
                hex_bytes(text, settings.header_len)
                    .map_err(|e| GearError::new("bad_header").with_detail(e))?
            }
            _ => settings.header_default.clone(),
        };
        let wrapped = settings.wrap(&tpdu, &header, &msg.raw);
        let iso = std::mem::replace(&mut msg.raw, wrapped);
        if let Err(e) = self.front.submit(&settings.tcp, msg) {
            // What goes to `error` is the message as it came.
            msg.raw = iso;
            return Err(e);
        }
        Ok(Outcome::Consumed)
    }

    fn drain(&mut self) {
        self.front.drain();
    }

    fn stop(&mut self) {
        self.front.stop();
    }
}
