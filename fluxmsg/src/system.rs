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
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Heartbeat {
    /// The rack's machine id.
    pub machine_id: u16,
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
    /// An instruction such as `reconnect`, or empty.
    pub command: String,
    /// An updated passport, or empty.
    #[serde(with = "byte_field")]
    pub passport: Bytes,
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
            .finish()
    }
}
