//! Message kinds by MTI and correlation keys by MTI class.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use fluxmsg::FluxMsg;
use schemars::JsonSchema;
use sdk::{ConfigError, GearError};
use serde::{Deserialize, Serialize};

use crate::field::Field;

/// The metadata key the MTI is read from.
pub(crate) const MTI_META: &str = "iso8583.mti";

/// What a message is to the conductor.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    /// It opens a ticket and waits for a reply.
    Request,
    /// It answers a ticket.
    Response,
    /// It is routed like a request, without a ticket (nothing answers it).
    OneWay,
}

/// The kind of every MTI, 0000 to 9999.
pub(crate) struct Kinds(Vec<Kind>);

impl std::fmt::Debug for Kinds {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let responses = self.0.iter().filter(|k| **k == Kind::Response).count();
        let one_way = self.0.iter().filter(|k| **k == Kind::OneWay).count();
        f.debug_struct("Kinds")
            .field("responses", &responses)
            .field("one_way", &one_way)
            .finish_non_exhaustive()
    }
}

impl Kinds {
    /// The function digit's parity (even: request, odd: response), then the overrides,
    /// the more specific (fewer `x`) over the less.
    pub(crate) fn new(overrides: &BTreeMap<String, Kind>) -> Result<Kinds, ConfigError> {
        let mut table: Vec<Kind> = (0..10_000)
            .map(|mti| {
                if (mti / 10) % 2 == 1 {
                    Kind::Response
                } else {
                    Kind::Request
                }
            })
            .collect();
        let mut patterns = Vec::with_capacity(overrides.len());
        for (pattern, kind) in overrides {
            let digits: Vec<Option<u8>> = pattern
                .bytes()
                .map(|b| match b {
                    b'0'..=b'9' => Some(Some(b - b'0')),
                    b'x' | b'X' => Some(None),
                    _ => None,
                })
                .collect::<Option<Vec<_>>>()
                .filter(|d| d.len() == 4)
                .ok_or_else(|| {
                    ConfigError::field(
                        format!("mti_kinds.{pattern}"),
                        "an MTI pattern is 4 characters, each a digit or x (\"0180\", \"xx8x\")",
                    )
                })?;
            let wild = digits.iter().filter(|d| d.is_none()).count();
            patterns.push((wild, digits, *kind));
        }
        // Most wildcards first, so that the more specific patterns are applied last.
        patterns.sort_by_key(|(wild, ..)| std::cmp::Reverse(*wild));
        for (_, digits, kind) in &patterns {
            for (mti, slot) in table.iter_mut().enumerate() {
                let d = [mti / 1000, mti / 100 % 10, mti / 10 % 10, mti % 10];
                if digits
                    .iter()
                    .zip(d)
                    .all(|(p, d)| p.is_none_or(|p| usize::from(p) == d))
                {
                    *slot = *kind;
                }
            }
        }
        Ok(Kinds(table))
    }

    pub(crate) fn of(&self, mti: &Mti) -> Kind {
        self.0[mti.index()]
    }
}

/// A message's MTI: four ASCII digits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Mti(pub(crate) [u8; 4]);

impl Mti {
    /// The MTI in `msg`'s metadata.
    pub(crate) fn of(msg: &FluxMsg) -> Result<Mti, GearError> {
        let Some(text) = msg.meta.get(MTI_META) else {
            return Err(GearError::new("bad_mti").with_detail("no iso8583.mti in the metadata"));
        };
        let bytes = text.as_bytes();
        match <[u8; 4]>::try_from(bytes) {
            Ok(d) if d.iter().all(u8::is_ascii_digit) => Ok(Mti(d)),
            _ => {
                Err(GearError::new("bad_mti").with_detail("iso8583.mti is not four decimal digits"))
            }
        }
    }

    fn index(self) -> usize {
        self.0
            .iter()
            .fold(0usize, |n, d| n * 10 + usize::from(d - b'0'))
    }

    /// The class: the first two digits, 0 to 99.
    pub(crate) fn class(self) -> usize {
        usize::from(self.0[0] - b'0') * 10 + usize::from(self.0[1] - b'0')
    }
}

/// The correlation key: a list of field paths for every MTI class, or a map by class.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(untagged)]
#[non_exhaustive]
pub enum CorrelationKey {
    /// The same fields for every class.
    All(Vec<String>),
    /// Fields by MTI class (two digits, `"08"`), and `default` for the other classes.
    ByClass(BTreeMap<String, Vec<String>>),
}

/// The compiled key: the fields of each class (index = class).
#[derive(Debug)]
pub(crate) struct KeySpec {
    by_class: Vec<Option<Vec<Field>>>,
}

impl KeySpec {
    pub(crate) fn new(key: &CorrelationKey) -> Result<KeySpec, ConfigError> {
        let mut by_class: Vec<Option<Vec<Field>>> = vec![None; 100];
        match key {
            CorrelationKey::All(paths) => {
                let fields = fields(paths, "correlation_key")?;
                by_class.iter_mut().for_each(|c| *c = Some(fields.clone()));
            }
            CorrelationKey::ByClass(map) => {
                if map.is_empty() {
                    return Err(ConfigError::field(
                        "correlation_key",
                        "name the key fields: a list, or a map by MTI class",
                    ));
                }
                if let Some(paths) = map.get("default") {
                    let fields = fields(paths, "correlation_key.default")?;
                    by_class.iter_mut().for_each(|c| *c = Some(fields.clone()));
                }
                for (class, paths) in map {
                    if class == "default" {
                        continue;
                    }
                    let path = format!("correlation_key.{class}");
                    let n = match class.as_bytes() {
                        [a, b] if a.is_ascii_digit() && b.is_ascii_digit() => {
                            usize::from(a - b'0') * 10 + usize::from(b - b'0')
                        }
                        _ => {
                            return Err(ConfigError::field(
                                path,
                                "a key of correlation_key is `default` or an MTI class of two digits (\"01\", \"08\")",
                            ));
                        }
                    };
                    by_class[n] = Some(fields(paths, &path)?);
                }
            }
        }
        Ok(KeySpec { by_class })
    }

    /// Writes the key of `msg` into `key`: the class, the request's function digit (a
    /// response's, made even: 0110 keys as 0100), and each field's text after its length
    /// (`6:000123`), so that no value, whatever it holds, can shift another's place.
    pub(crate) fn build(
        &self,
        mti: Mti,
        msg: &FluxMsg,
        key: &mut String,
        text: &mut String,
    ) -> Result<(), GearError> {
        let class = mti.class();
        let Some(fields) = &self.by_class[class] else {
            return Err(GearError::new("no_key")
                .with_detail(format_args!("no correlation_key for MTI class {class:02}")));
        };
        key.clear();
        key.push(char::from(mti.0[0]));
        key.push(char::from(mti.0[1]));
        key.push(char::from(mti.0[2] & !1));
        for field in fields {
            match field.get(msg) {
                Some(value) => {
                    text.clear();
                    value.write_text(text);
                    let _ = write!(key, "|{}:", text.len());
                    key.push_str(text);
                }
                None => {
                    return Err(GearError::new("no_key")
                        .with_detail(format_args!("{} is missing", field_name(field))));
                }
            }
        }
        Ok(())
    }
}

/// How a field is named in errors.
pub(crate) fn field_name(field: &Field) -> String {
    match field {
        Field::Data(path) => format!("data.{path}"),
        Field::Meta(key) => format!("meta.{key}"),
        other => format!("{other:?}").to_lowercase(),
    }
}

/// Parses a field path of the configuration: `data.<path>`, `meta.<key>`, or the short
/// alias `iso8583.field.<n>` for `data.iso8583.field.<n>`.
pub(crate) fn field(text: &str, path: &str) -> Result<Field, ConfigError> {
    let text = text.trim();
    let full;
    let text = if text.starts_with("iso8583.field.") {
        full = format!("data.{text}");
        full.as_str()
    } else {
        text
    };
    if !(text.starts_with("data.") || text.starts_with("meta.")) {
        return Err(ConfigError::field(
            path,
            format!(
                "{text:?} is not a field path: use data.<path>, meta.<key>, or iso8583.field.<n> for data.iso8583.field.<n>"
            ),
        ));
    }
    Field::parse(text).map_err(|e| ConfigError::field(path, e))
}

fn fields(paths: &[String], path: &str) -> Result<Vec<Field>, ConfigError> {
    if paths.is_empty() {
        return Err(ConfigError::field(path, "an empty list of key fields"));
    }
    paths
        .iter()
        .enumerate()
        .map(|(i, p)| field(p, &format!("{path}[{i}]")))
        .collect()
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::{Kind, Kinds, Mti};

    #[test]
    fn the_function_digit_decides_and_overrides_win_by_specificity() {
        let mut overrides = BTreeMap::new();
        overrides.insert("xx8x".to_owned(), Kind::OneWay);
        overrides.insert("0180".to_owned(), Kind::Request);
        let kinds = Kinds::new(&overrides).expect("valid");
        let kind = |m: &[u8; 4]| kinds.of(&Mti(*m));
        assert_eq!(kind(b"0100"), Kind::Request);
        assert_eq!(kind(b"0110"), Kind::Response);
        assert_eq!(kind(b"0120"), Kind::Request);
        assert_eq!(kind(b"0430"), Kind::Response);
        assert_eq!(kind(b"0101"), Kind::Request, "a repeat is a request");
        assert_eq!(kind(b"0810"), Kind::Response);
        assert_eq!(kind(b"0280"), Kind::OneWay);
        assert_eq!(kind(b"0180"), Kind::Request, "the exact MTI wins");
        assert!(Kinds::new(&BTreeMap::from([("01x".to_owned(), Kind::OneWay)])).is_err());
    }
}
