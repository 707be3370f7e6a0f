//! Control-plane payloads: the typed bodies of the messages racks and the mixer exchange.
//!
//! Field names and types follow the Go fluxrig's system messages, so either side can talk to
//! the other. A payload travels either as the `data` of a fluxMsg ([`Payload::to_data`], as
//! the Go fluxrig sends them) or on its own as deterministic CBOR ([`Payload::to_cbor`]);
//! both use the codec's canonical encoding, so equal payloads give equal bytes.
//!
//! Every field has a default, so a missing field, or `null` where the Go fluxrig writes a
//! nil slice or map, reads as empty.
//!
//! | payload | subject | direction |
//! | --- | --- | --- |
//! | [`Hello`] | `flux.agent.hello` | rack → mixer |
//! | [`EnrollmentReply`] | `flux.agent.enrollment.<name>.<nonce>` | mixer → rack |
//! | [`Heartbeat`] | `flux.agent.heartbeat` | rack → mixer |
//! | [`HeartbeatReply`] | `flux.agent.notify.<machine>` | mixer → rack |
//! | [`ScenarioPush`] | `flux.rack.<rack>.scenario` | mixer → rack |
//! | [`PushStatus`] | `flux.agent.status` | rack → mixer |
//! | [`StateEnvelope`] of a [`RackState`] | inside [`EnrollmentReply::passport`] | mixer → rack |
//! | [`Command`] | `flux.ctrl.<gear>` | mixer → rack |
//! | [`CommandReply`] | reply subject of a command | rack → mixer |
//!
//! ```
//! use fluxmsg::system::{Hello, Payload};
//!
//! let hello = Hello {
//!     name: "edge-1".to_owned(),
//!     nonce: "5f1c".to_owned(),
//!     version: "0.1.0".to_owned(),
//!     ..Hello::default()
//! };
//! let bytes = hello.to_cbor()?;
//! assert_eq!(Hello::from_cbor(&bytes)?, hello);
//!
//! // Or as the data of a fluxMsg, as the Go fluxrig sends it.
//! let msg = fluxmsg::FluxMsg { data: hello.to_data()?, ..Default::default() };
//! assert_eq!(Hello::from_data(&msg.data)?, hello);
//! # Ok::<(), fluxmsg::Error>(())
//! ```

use std::fmt;

use bytes::Bytes;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::{Codec, Error, Map, Text, Value, from_value, to_value};

mod sealed {
    pub trait Sealed {}
}

/// A control-plane payload: converts to and from a data map and canonical CBOR.
///
/// This trait is sealed: the payloads are part of the wire format.
pub trait Payload: Serialize + DeserializeOwned + sealed::Sealed {
    /// The payload as a `data` map.
    ///
    /// # Errors
    ///
    /// [`Error::Payload`] if a field cannot be represented (none of this module's can fail).
    fn to_data(&self) -> Result<Map<Value>, Error> {
        match to_value(self)? {
            Value::Map(m) => Ok(m),
            other => Err(Error::Payload(format!(
                "is {}, not a map",
                other.type_name()
            ))),
        }
    }

    /// The payload read from a `data` map.
    ///
    /// # Errors
    ///
    /// [`Error::Payload`] when a field has the wrong type.
    fn from_data(data: &Map<Value>) -> Result<Self, Error> {
        from_value(&Value::Map(data.clone()))
    }

    /// The payload as canonical CBOR.
    ///
    /// # Errors
    ///
    /// As [`Payload::to_data`], or [`Error::Limit`] beyond the default codec's limits.
    fn to_cbor(&self) -> Result<Vec<u8>, Error> {
        let mut buf = Vec::new();
        Codec::new().encode_value(&Value::Map(self.to_data()?), &mut buf)?;
        Ok(buf)
    }

    /// The payload as the `data` of an otherwise empty fluxMsg, encoded: how the Go fluxrig
    /// sends control messages, and how this workspace's agent and mixer send them too.
    ///
    /// # Errors
    ///
    /// As [`Payload::to_data`], or [`Error::Limit`] beyond the default codec's limits.
    fn to_message(&self) -> Result<Vec<u8>, Error> {
        let msg = crate::FluxMsg {
            data: self.to_data()?,
            ..crate::FluxMsg::default()
        };
        Codec::new().encode_to_vec(&msg)
    }

    /// The payload read from the `data` of an encoded fluxMsg ([`Payload::to_message`]).
    ///
    /// # Errors
    ///
    /// [`Error::Decode`] for bytes that are not a fluxMsg, [`Error::Payload`] for a wrong
    /// shape.
    fn from_message(input: &[u8]) -> Result<Self, Error> {
        Self::from_data(&Codec::new().decode(input)?.data)
    }

    /// The payload read from CBOR.
    ///
    /// # Errors
    ///
    /// [`Error::Decode`] for malformed bytes, [`Error::Payload`] for a wrong shape.
    fn from_cbor(input: &[u8]) -> Result<Self, Error> {
        from_value(&Codec::new().decode_value(input)?)
    }
}

/// Serde helpers for byte fields that the Go fluxrig may send as `null`.
mod byte_field {
    use bytes::Bytes;
    use serde::{Deserialize, Deserializer, Serializer};

    pub(super) fn serialize<S: Serializer>(b: &Bytes, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(b)
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Bytes, D::Error> {
        Ok(Option::<crate::serde_impl::ByteBuf>::deserialize(d)?
            .map(|b| b.0)
            .unwrap_or_default())
    }
}

/// Sent by a rack when it starts (`flux.agent.hello`): who it is and, on first contact, the
/// bootstrap secret.
#[derive(Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Hello {
    /// Rack name, unique in the fleet.
    pub name: String,
    /// Per-session nonce; the reply comes on `flux.agent.enrollment.<name>.<nonce>`.
    pub nonce: String,
    /// Machine id the rack holds (0 when not enrolled yet).
    pub machine_id: u16,
    /// Bootstrap secret or bearer token (empty on a reconnect with a passport).
    pub secret: String,
    /// Address the rack reports.
    pub ip: String,
    /// Port the rack reports.
    pub port: i64,
    /// Software version.
    pub version: String,
    /// Capabilities and settings the rack reports.
    #[serde(deserialize_with = "nullable")]
    pub config: Map<Value>,
}

/// The mixer's answer to a [`Hello`] (`flux.agent.enrollment.<name>.<nonce>`).
#[derive(Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct EnrollmentReply {
    /// `active`, `pending` or `inactive`.
    pub status: String,
    /// A new signed passport, or empty.
    #[serde(with = "byte_field")]
    pub passport: Bytes,
    /// Settings pushed to the rack.
    #[serde(deserialize_with = "nullable")]
    pub config: Map<Text>,
    /// Human-readable status.
    pub message: String,
}

/// Sent periodically by a rack (`flux.agent.heartbeat`).
///
/// Beyond the reference's fields: a sequence number, the hash of the scenario the rack runs
/// and per-gear health, and whether this heartbeat carries the full state or only what
/// changed since the last one (as OpAMP's agents do).
#[derive(Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Heartbeat {
    /// The rack's machine id.
    pub machine_id: u16,
    /// The rack's name.
    pub name: String,
    /// The rack's bearer secret, from its passport.
    pub secret: String,
    /// Counts up by one per heartbeat of one agent run; a gap tells the mixer it missed one.
    pub seq: u64,
    /// Whether `health` and `stats` are complete, rather than what changed.
    pub full_state: bool,
    /// The hash of the scenario the rack runs (empty when none).
    pub applied_hash: String,
    /// Per gear: `ok`, or what is wrong.
    #[serde(deserialize_with = "nullable")]
    pub health: Map<Text>,
    /// Counters and gauges.
    #[serde(deserialize_with = "nullable")]
    pub stats: Map<Value>,
    /// Current settings.
    #[serde(deserialize_with = "nullable")]
    pub config: Map<Value>,
}

/// The mixer's answer to a [`Heartbeat`] (`flux.agent.notify.<machine>`).
#[derive(Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct HeartbeatReply {
    /// `active`, `pending` or `inactive`.
    pub status: String,
    /// An instruction such as `reconnect`, or empty (the first of `commands`, for racks that
    /// read one).
    pub command: String,
    /// An updated passport, or empty.
    #[serde(with = "byte_field")]
    pub passport: Bytes,
    /// Every pending instruction, in order: `shutdown`, `log_level:<level>`, `suspend`,
    /// `resume`.
    #[serde(deserialize_with = "nullable")]
    pub commands: Vec<String>,
    /// The mixer does not know the rack's state (a gap in sequence numbers, or a restart):
    /// the next heartbeat should carry all of it.
    pub report_full_state: bool,
    /// Ed25519 signature by the cluster key over [`signed_bytes`] of this reply.
    #[serde(with = "byte_field")]
    pub signature: Bytes,
}

/// A scenario pushed to one rack (`flux.rack.<rack>.scenario`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ScenarioPush {
    /// Scenario version.
    pub version: String,
    /// Scenario name.
    pub name: String,
    /// Target rack.
    pub rack_name: String,
    /// Target machine id.
    pub machine_id: u16,
    /// The scenario as YAML, projected for this rack.
    #[serde(with = "byte_field")]
    pub scenario: Bytes,
    /// When it was pushed, in Unix seconds.
    pub timestamp: i64,
    /// SHA-256 of `scenario`, in hex: what the rack reports back once it runs it.
    pub hash: String,
    /// Where the scenario is when it was too large to travel in the push (`kv://<bucket>/<key>`);
    /// `scenario` is then empty.
    pub location: String,
    /// Ed25519 signature by the cluster key over [`signed_bytes`] of this push.
    #[serde(with = "byte_field")]
    pub signature: Bytes,
}

/// What a rack made of a [`ScenarioPush`] (`flux.agent.status`): sent for every push, also
/// one identical to what runs.
#[derive(Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct PushStatus {
    /// The rack's name.
    pub name: String,
    /// The rack's machine id.
    pub machine_id: u16,
    /// The rack's bearer secret, from its passport.
    pub secret: String,
    /// The scenario version of the push.
    pub version: String,
    /// The hash of the push.
    pub hash: String,
    /// `applying`, then `applied` (every gear started and healthy) or `failed`.
    pub status: String,
    /// Why it failed (and, when the rack went back to its last good scenario, that).
    pub error: String,
    /// The hash the rack runs now (after a failure: the last good one, or empty).
    pub running_hash: String,
}

/// A rack's identity as the mixer admitted it: the payload of a passport.
#[derive(Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct RackState {
    /// The admitting mixer's id.
    pub mixer_id: String,
    /// The machine id leased to the rack.
    pub machine_id: u16,
    /// The rack's name.
    pub name: String,
    /// `active`, `pending` or `inactive`.
    pub status: String,
    /// The rack's bearer secret for heartbeats and status reports.
    pub secret: String,
    /// The cluster's Ed25519 public key (32 bytes) that signs passports, pushes and commands.
    #[serde(with = "byte_field")]
    pub mixer_pub: Bytes,
    /// Software version of the mixer.
    pub version: String,
    /// Unix seconds.
    pub created_at: i64,
    /// Unix seconds.
    pub updated_at: i64,
    /// How many times it was reissued.
    pub update_count: u64,
    /// Until when the machine-id lease holds, in Unix seconds (0: not leased).
    pub lease_expires_at: i64,
}

/// A signed payload: CBOR bytes and their Ed25519 signature (a passport is the envelope of a
/// [`RackState`]).
#[derive(Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct StateEnvelope {
    /// The payload, canonical CBOR.
    #[serde(with = "byte_field")]
    pub payload: Bytes,
    /// Ed25519 signature over `payload`.
    #[serde(with = "byte_field")]
    pub signature: Bytes,
}

/// The bytes a signature covers for a payload that carries its own `signature` field: its
/// canonical CBOR with that field empty.
///
/// # Errors
///
/// As [`Payload::to_cbor`].
pub fn signed_bytes<P: Payload + Clone + Signed>(payload: &P) -> Result<Vec<u8>, Error> {
    let mut unsigned = payload.clone();
    unsigned.set_signature(Bytes::new());
    unsigned.to_cbor()
}

/// A payload with a `signature` field (see [`signed_bytes`]).
pub trait Signed: sealed::Sealed {
    /// The signature.
    fn signature(&self) -> &Bytes;
    /// Replaces the signature.
    fn set_signature(&mut self, signature: Bytes);
}

impl Signed for HeartbeatReply {
    fn signature(&self) -> &Bytes {
        &self.signature
    }
    fn set_signature(&mut self, signature: Bytes) {
        self.signature = signature;
    }
}

impl Signed for ScenarioPush {
    fn signature(&self) -> &Bytes {
        &self.signature
    }
    fn set_signature(&mut self, signature: Bytes) {
        self.signature = signature;
    }
}

/// A command to a gear (`flux.ctrl.<gear>`), answered by a [`CommandReply`].
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Command {
    /// The gear addressed.
    pub gear: String,
    /// What to do, for example `drain`, `close` or `kill`.
    pub command: String,
    /// Arguments of the command.
    #[serde(deserialize_with = "nullable")]
    pub args: Map<Value>,
}

/// The answer to a [`Command`].
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct CommandReply {
    /// Whether the command was carried out.
    pub ok: bool,
    /// Why not, or what happened.
    pub message: String,
    /// Results of the command.
    #[serde(deserialize_with = "nullable")]
    pub result: Map<Value>,
}

fn nullable<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de> + Default,
{
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

macro_rules! payloads {
    ($($t:ty),*) => {$(
        impl sealed::Sealed for $t {}
        impl Payload for $t {}
    )*};
}
payloads!(
    Hello,
    EnrollmentReply,
    Heartbeat,
    HeartbeatReply,
    ScenarioPush,
    PushStatus,
    RackState,
    StateEnvelope,
    Command,
    CommandReply
);

/// Shows a secret's length, never its text.
struct Redacted<'a>(&'a [u8]);

impl fmt::Debug for Redacted<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "<{} bytes redacted>", self.0.len())
    }
}

impl fmt::Debug for Hello {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Hello")
            .field("name", &self.name)
            .field("nonce", &self.nonce)
            .field("machine_id", &self.machine_id)
            .field("secret", &Redacted(self.secret.as_bytes()))
            .field("ip", &self.ip)
            .field("port", &self.port)
            .field("version", &self.version)
            .field("config", &self.config)
            .finish()
    }
}

impl fmt::Debug for EnrollmentReply {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EnrollmentReply")
            .field("status", &self.status)
            .field("passport", &Redacted(&self.passport))
            .field("config", &self.config)
            .field("message", &self.message)
            .finish()
    }
}

impl fmt::Debug for HeartbeatReply {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HeartbeatReply")
            .field("status", &self.status)
            .field("command", &self.command)
            .field("passport", &Redacted(&self.passport))
            .field("commands", &self.commands)
            .field("report_full_state", &self.report_full_state)
            .finish_non_exhaustive()
    }
}

impl fmt::Debug for Heartbeat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Heartbeat")
            .field("machine_id", &self.machine_id)
            .field("name", &self.name)
            .field("secret", &Redacted(self.secret.as_bytes()))
            .field("seq", &self.seq)
            .field("full_state", &self.full_state)
            .field("applied_hash", &self.applied_hash)
            .field("health", &self.health)
            .field("stats", &self.stats)
            .field("config", &self.config)
            .finish()
    }
}

impl fmt::Debug for PushStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PushStatus")
            .field("name", &self.name)
            .field("machine_id", &self.machine_id)
            .field("secret", &Redacted(self.secret.as_bytes()))
            .field("version", &self.version)
            .field("hash", &self.hash)
            .field("status", &self.status)
            .field("error", &self.error)
            .field("running_hash", &self.running_hash)
            .finish()
    }
}

impl fmt::Debug for RackState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RackState")
            .field("mixer_id", &self.mixer_id)
            .field("machine_id", &self.machine_id)
            .field("name", &self.name)
            .field("status", &self.status)
            .field("secret", &Redacted(self.secret.as_bytes()))
            .field("version", &self.version)
            .field("update_count", &self.update_count)
            .field("lease_expires_at", &self.lease_expires_at)
            .finish_non_exhaustive()
    }
}

impl fmt::Debug for StateEnvelope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StateEnvelope")
            .field("payload", &format_args!("<{} bytes>", self.payload.len()))
            .field(
                "signature",
                &format_args!("<{} bytes>", self.signature.len()),
            )
            .finish()
    }
}
