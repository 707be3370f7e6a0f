//! The `io_tcp` configuration, as written in a scenario, and the settings checked from it.

use std::borrow::Cow;

use bytes::Bytes;
use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use sdk::ConfigError;
use serde::{Deserialize, Serialize};

use crate::tcp::framing::{Codec, LengthHeader};
use crate::tcp::{LinkConfig, Settings, unescape};

/// The configuration of an [`IoTcp`](super::IoTcp) gear (the `config:` map of a scenario).
///
/// Every key but `mode` has a default; a misspelt key is an error. See the
/// [module documentation](super) for an example.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct Config {
    /// Mode, addresses, connection limits, timeouts and the outbound buffer.
    #[serde(flatten)]
    pub link: LinkConfig,
    /// How frames are cut from the byte stream and written to it.
    #[serde(default)]
    pub framing: Framing,
    /// The delimiter of `delimiter` framing, with escapes `\n`, `\r`, `\t`, `\0`, `\\` and
    /// `\xHH`; empty means `\n`. Not part of the frame; appended on write.
    #[serde(default = "default_delimiter")]
    pub delimiter: String,
    /// Client: whether frames read from the server are emitted on `out`; when false they are
    /// read and discarded.
    #[serde(default = "default_true")]
    pub read_responses: bool,
}

/// How frames are cut from a TCP byte stream.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub enum Framing {
    /// Frames end with `delimiter` (a newline by default).
    #[default]
    #[serde(rename = "delimiter")]
    Delimiter,
    /// Frames start with their length on 2 bytes, big-endian, prefix not included.
    #[serde(rename = "length_prefix2")]
    LengthPrefix2,
    /// Frames start with their length on 4 bytes, big-endian, prefix not included.
    #[serde(rename = "length_prefix4")]
    LengthPrefix4,
}

impl JsonSchema for Framing {
    fn schema_name() -> Cow<'static, str> {
        "Framing".into()
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "type": "string",
            "enum": ["delimiter", "length_prefix2", "length_prefix4"],
            "description": "delimiter: frames end with `delimiter`; length_prefix2 / \
                length_prefix4: frames start with their length on 2 / 4 bytes, big-endian, \
                prefix not included"
        })
    }
}

fn default_delimiter() -> String {
    "\n".to_owned()
}

fn default_true() -> bool {
    true
}

/// Checks `config` into the settings the tasks use.
pub(crate) fn settings(config: Config) -> Result<Settings, ConfigError> {
    let codec = match config.framing {
        Framing::Delimiter => {
            let delimiter =
                unescape(&config.delimiter).map_err(|e| ConfigError::field("delimiter", e))?;
            Codec::Delimiter(if delimiter.is_empty() {
                Bytes::from_static(b"\n")
            } else {
                Bytes::from(delimiter)
            })
        }
        Framing::LengthPrefix2 => Codec::Length(LengthHeader::big_endian(2)),
        Framing::LengthPrefix4 => Codec::Length(LengthHeader::big_endian(4)),
    };
    let mut settings = Settings::new(config.link, 8080, codec)?;
    settings.read_responses = config.read_responses;
    Ok(settings)
}
