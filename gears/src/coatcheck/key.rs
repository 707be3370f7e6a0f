//! The claim-check key: the values of `key_fields`, normalised, joined, and encoded as
//! URL-safe base64 without padding, so that any value gives a valid KV key.

use fluxmsg::FluxMsg;
use sdk::{ConfigError, GearError};

use super::KeyNormalize;
use crate::field::Field;

/// The longest joined key, in bytes: its base64 form (4 characters for 3 bytes) stays within
/// the 256 bytes a KV key may have.
pub(crate) const MAX_JOINED: usize = 192;

/// The key fields, parsed once from configuration.
#[derive(Debug)]
pub(crate) struct KeySpec {
    fields: Vec<(Field, String)>,
    normalize: KeyNormalize,
}

impl KeySpec {
    /// Parses `key_fields` (`meta.<key>` or `data.<path>` each, at least one).
    pub(crate) fn new(paths: &[String], normalize: KeyNormalize) -> Result<KeySpec, ConfigError> {
        if paths.is_empty() {
            return Err(ConfigError::field(
                "key_fields",
                "give at least one meta.<key> or data.<path>",
            ));
        }
        let fields = paths
            .iter()
            .enumerate()
            .map(|(i, p)| Ok((message_field(p, &format!("key_fields[{i}]"))?, p.clone())))
            .collect::<Result<_, ConfigError>>()?;
        Ok(KeySpec { fields, normalize })
    }

    /// The key of `msg`. The error names the field, never its value (it may be a card
    /// number).
    pub(crate) fn key(&self, msg: &FluxMsg) -> Result<String, GearError> {
        let mut joined = Vec::with_capacity(64);
        for (field, path) in &self.fields {
            let Some(val) = field.get(msg) else {
                return Err(GearError::new("no_key")
                    .with_detail(format_args!("the key field {path} is missing")));
            };
            let text = val.text();
            let value = normalize(&text, self.normalize);
            if value.is_empty() {
                return Err(GearError::new("no_key").with_detail(format_args!(
                    "the key field {path} is empty once normalised"
                )));
            }
            // Each value with its length in front, so that no two lists of values join alike.
            joined.extend_from_slice(value.len().to_string().as_bytes());
            joined.push(b':');
            joined.extend_from_slice(value.as_bytes());
        }
        if joined.len() > MAX_JOINED {
            return Err(GearError::new("key_too_long").with_detail(format_args!(
                "the key fields' values take {} bytes, more than {MAX_JOINED}",
                joined.len()
            )));
        }
        Ok(base64url(&joined))
    }
}

/// A `meta.<key>` or `data.<path>` reference; `at` names the configuration key for errors.
pub(crate) fn message_field(path: &str, at: &str) -> Result<Field, ConfigError> {
    match Field::parse(path) {
        Ok(f @ (Field::Meta(_) | Field::Data(_))) => Ok(f),
        Ok(_) => Err(ConfigError::field(
            at,
            format_args!("{path:?} is an envelope field: use meta.<key> or data.<path>"),
        )),
        Err(e) => Err(ConfigError::field(at, e)),
    }
}

/// One key value, normalised.
///
/// - `trim`: without leading and trailing whitespace.
/// - `numeric`: its ASCII digits only (spaces, signs and separators go), without leading
///   zeros; all zeros give `0`, no digit at all gives the empty string (refused as a key).
/// - `none`: as it is.
pub(crate) fn normalize(value: &str, how: KeyNormalize) -> String {
    match how {
        KeyNormalize::Trim => value.trim().to_owned(),
        KeyNormalize::None => value.to_owned(),
        KeyNormalize::Numeric => {
            let digits: String = value.chars().filter(char::is_ascii_digit).collect();
            match digits.trim_start_matches('0') {
                "" if digits.is_empty() => String::new(),
                "" => "0".to_owned(),
                rest => rest.to_owned(),
            }
        }
    }
}

/// URL-safe base64 without padding (RFC 4648 §5).
pub(crate) fn base64url(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        // A chunk of n bytes gives n + 1 characters.
        for i in 0..=chunk.len() {
            let index = (n >> (18 - 6 * i)) & 0x3f;
            out.push(char::from(ALPHABET[index as usize]));
        }
    }
    out
}
