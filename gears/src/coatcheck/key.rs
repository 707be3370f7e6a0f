//! The claim-check key: the values of `key_fields`, normalised, joined, and encoded as
//! URL-safe base64 without padding, so that any value gives a valid KV key.

use std::borrow::Cow;
use std::fmt::Write as _;

use fluxmsg::FluxMsg;
use sdk::{ConfigError, GearError};

use super::KeyNormalize;
pub(crate) use crate::base64url::encode as base64url;
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
        let mut joined = String::with_capacity(64);
        let mut text = String::new();
        for (field, path) in &self.fields {
            let Some(val) = field.get(msg) else {
                return Err(GearError::new("no_key")
                    .with_detail(format_args!("the key field {path} is missing")));
            };
            text.clear();
            val.write_text(&mut text);
            let value = normalize(&text, self.normalize);
            if value.is_empty() {
                return Err(GearError::new("no_key").with_detail(format_args!(
                    "the key field {path} is empty once normalised"
                )));
            }
            // Each value with its length in front, so that no two lists of values join alike.
            let _ = write!(joined, "{}:", value.len());
            joined.push_str(&value);
        }
        if joined.len() > MAX_JOINED {
            return Err(GearError::new("key_too_long").with_detail(format_args!(
                "the key fields' values take {} bytes, more than {MAX_JOINED}",
                joined.len()
            )));
        }
        Ok(base64url(joined.as_bytes()))
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
pub(crate) fn normalize(value: &str, how: KeyNormalize) -> Cow<'_, str> {
    match how {
        KeyNormalize::Trim => Cow::Borrowed(value.trim()),
        KeyNormalize::None => Cow::Borrowed(value),
        KeyNormalize::Numeric => {
            let digits: String = value.chars().filter(char::is_ascii_digit).collect();
            Cow::Owned(match digits.trim_start_matches('0') {
                "" if digits.is_empty() => String::new(),
                "" => "0".to_owned(),
                rest => rest.to_owned(),
            })
        }
    }
}
