//! Dotted references to parts of a message: `data.<path>`, `meta.<key>`, and the envelope
//! fields `id`, `ref_id`, `src_id`, `trace`, `flags`, `ts`, `raw`.

use std::borrow::Cow;
use std::fmt::Write as _;

use bytes::Bytes;
use fluxmsg::{FluxMsg, Id, Text, Value};
use sdk::GearError;

/// A part of a message, parsed once from configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Field {
    /// `data.<dotted path>`.
    Data(String),
    /// `meta.<key>`: everything after `meta.` is one flat key (`meta.conn.id`).
    Meta(String),
    Id,
    RefId,
    SrcId,
    Trace,
    Flags,
    Ts,
    Raw,
}

/// A borrowed view of a field's value.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Val<'a> {
    Value(&'a Value),
    Str(&'a str),
    Id(&'a Id),
    U64(u64),
    I64(i64),
    Bytes(&'a [u8]),
}

impl Field {
    /// Parses `data.x.y`, `meta.conn.id`, `id`, …
    pub(crate) fn parse(text: &str) -> Result<Field, String> {
        let text = text.trim();
        if let Some(path) = text.strip_prefix("data.") {
            if path.is_empty() || path.split('.').any(str::is_empty) {
                return Err(format!("{text:?} has an empty path segment"));
            }
            return Ok(Field::Data(path.to_owned()));
        }
        if let Some(key) = text.strip_prefix("meta.") {
            if key.is_empty() {
                return Err(format!("{text:?} names no metadata key"));
            }
            return Ok(Field::Meta(key.to_owned()));
        }
        Ok(match text {
            "id" => Field::Id,
            "ref_id" => Field::RefId,
            "src_id" => Field::SrcId,
            "trace" => Field::Trace,
            "flags" => Field::Flags,
            "ts" => Field::Ts,
            "raw" => Field::Raw,
            _ => {
                return Err(format!(
                    "unknown field {text:?}: use data.<path>, meta.<key>, id, ref_id, src_id, trace, flags, ts or raw"
                ));
            }
        })
    }

    /// The field's value in `msg`, if it is there (an empty trace or raw counts as absent).
    pub(crate) fn get<'a>(&self, msg: &'a FluxMsg) -> Option<Val<'a>> {
        match self {
            Field::Data(path) => msg.data.get_path(path).map(Val::Value),
            Field::Meta(key) => msg.meta.get(key).map(|t| Val::Str(t.as_str())),
            Field::Id => msg.id.as_ref().map(Val::Id),
            Field::RefId => msg.ref_id.as_ref().map(Val::Id),
            Field::SrcId => msg.src_id.as_ref().map(Val::Id),
            Field::Trace => (!msg.trace.is_empty()).then_some(Val::Str(&msg.trace)),
            Field::Flags => Some(Val::U64(u64::from(msg.flags))),
            Field::Ts => Some(Val::I64(msg.ts)),
            Field::Raw => (!msg.raw.is_empty()).then_some(Val::Bytes(&msg.raw)),
        }
    }

    /// Sets the field to `value`, converting it to the field's type.
    pub(crate) fn set(&self, msg: &mut FluxMsg, value: Value) -> Result<(), GearError> {
        match self {
            Field::Data(path) => {
                msg.data
                    .set_path(path, value)
                    .map_err(|e| GearError::new("path_conflict").with_detail(e))?;
            }
            Field::Meta(key) => {
                let text = text_of(&value).ok_or_else(|| type_error(self, &value, "text"))?;
                msg.meta.insert(key.as_str(), text);
            }
            Field::Id | Field::RefId | Field::SrcId => {
                let id = id_of(&value).ok_or_else(|| type_error(self, &value, "an id"))?;
                *self.id_slot(msg) = Some(id);
            }
            Field::Trace => {
                msg.trace = text_of(&value)
                    .ok_or_else(|| type_error(self, &value, "text"))?
                    .into_string();
            }
            Field::Flags => {
                msg.flags = value
                    .as_u64()
                    .and_then(|n| u32::try_from(n).ok())
                    .ok_or_else(|| type_error(self, &value, "an integer 0..2^32"))?;
            }
            Field::Ts => {
                msg.ts = value
                    .as_i64()
                    .ok_or_else(|| type_error(self, &value, "a 64-bit integer"))?;
            }
            Field::Raw => {
                msg.raw = match value {
                    Value::Bytes(b) => b,
                    Value::Text(t) => Bytes::from(t.into_string()),
                    other => return Err(type_error(self, &other, "bytes or text")),
                };
            }
        }
        Ok(())
    }

    /// Removes the field and returns what it held (envelope fields go back to their default).
    pub(crate) fn take(&self, msg: &mut FluxMsg) -> Option<Value> {
        match self {
            Field::Data(path) => msg.data.remove_path(path),
            Field::Meta(key) => msg.meta.remove(key).map(Value::Text),
            Field::Id | Field::RefId | Field::SrcId => self.id_slot(msg).take().map(id_value),
            Field::Trace => {
                (!msg.trace.is_empty()).then(|| Value::from(std::mem::take(&mut msg.trace)))
            }
            Field::Flags => Some(Value::from(std::mem::take(&mut msg.flags))),
            Field::Ts => Some(Value::from(std::mem::take(&mut msg.ts))),
            Field::Raw => (!msg.raw.is_empty()).then(|| Value::Bytes(std::mem::take(&mut msg.raw))),
        }
    }

    fn id_slot<'a>(&self, msg: &'a mut FluxMsg) -> &'a mut Option<Id> {
        match self {
            Field::RefId => &mut msg.ref_id,
            Field::SrcId => &mut msg.src_id,
            _ => &mut msg.id,
        }
    }
}

fn type_error(field: &Field, value: &Value, want: &str) -> GearError {
    GearError::new("type_mismatch").with_detail(format_args!(
        "{field:?} takes {want}, not {}",
        value.type_name()
    ))
}

fn id_value(id: Id) -> Value {
    match id {
        Id::U64(n) => Value::from(n),
        other @ Id::Uuid(_) => Value::from(other.to_string()),
    }
}

fn id_of(value: &Value) -> Option<Id> {
    match value {
        Value::Text(t) => t.parse().ok(),
        Value::Bytes(b) => <[u8; 16]>::try_from(b.as_ref()).ok().map(Id::from),
        other => other.as_u64().map(Id::U64),
    }
}

/// The text form of a scalar (metadata values are text).
pub(crate) fn text_of(value: &Value) -> Option<Text> {
    Some(match value {
        Value::Text(t) => t.clone(),
        Value::Bool(b) => Text::from(if *b { "true" } else { "false" }),
        Value::Integer(_) | Value::Float(_) => Text::from(Val::Value(value).text().as_ref()),
        Value::Bytes(b) => {
            let mut out = String::with_capacity(4 + 2 * b.len());
            push_hex(&mut out, b);
            Text::from(out)
        }
        _ => return None,
    })
}

impl Val<'_> {
    /// The value as a number, if it is one (text that parses as a number counts).
    pub(crate) fn number(self) -> Option<f64> {
        match self {
            Val::Value(Value::Integer(i)) => Some(i128::from(*i) as f64),
            Val::Value(Value::Float(f)) => Some(*f),
            Val::Value(Value::Text(t)) => t.trim().parse().ok(),
            Val::Str(s) => s.trim().parse().ok(),
            Val::U64(n) | Val::Id(&Id::U64(n)) => Some(n as f64),
            Val::I64(n) => Some(n as f64),
            _ => None,
        }
        .filter(|f: &f64| !f.is_nan())
    }

    /// The value as text: scalars in their usual form, bytes as `hex:…`, maps and arrays as
    /// JSON.
    pub(crate) fn text(self) -> Cow<'static, str> {
        let mut out = String::new();
        self.write_text(&mut out);
        Cow::Owned(out)
    }

    /// Appends the text form to `out` without an intermediate string where possible.
    pub(crate) fn write_text(self, out: &mut String) {
        match self {
            Val::Str(s) => out.push_str(s),
            Val::Value(Value::Text(t)) => out.push_str(t),
            Val::Value(Value::Integer(i)) => {
                let _ = write!(out, "{}", i128::from(*i));
            }
            Val::Value(Value::Float(f)) => {
                let _ = write!(out, "{f}");
            }
            Val::Value(Value::Bool(b)) => out.push_str(if *b { "true" } else { "false" }),
            Val::Value(Value::Null) => out.push_str("null"),
            Val::Value(Value::Bytes(b)) => push_hex(out, b),
            Val::Bytes(b) => push_hex(out, b),
            Val::Value(v) => out.push_str(&fluxmsg::json::value_to_json(v).to_string()),
            Val::Id(id) => {
                let _ = write!(out, "{id}");
            }
            Val::U64(n) => {
                let _ = write!(out, "{n}");
            }
            Val::I64(n) => {
                let _ = write!(out, "{n}");
            }
        }
    }

    /// An owned copy.
    pub(crate) fn to_value(self) -> Value {
        match self {
            Val::Value(v) => v.clone(),
            Val::Str(s) => Value::from(s),
            Val::Id(id) => id_value(*id),
            Val::U64(n) => Value::from(n),
            Val::I64(n) => Value::from(n),
            Val::Bytes(b) => Value::Bytes(Bytes::copy_from_slice(b)),
        }
    }
}

/// `hex:` and two lowercase digits per byte, as the reference writes bytes into metadata.
fn push_hex(out: &mut String, bytes: &[u8]) {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    out.push_str("hex:");
    for b in bytes {
        out.push(char::from(DIGITS[usize::from(b >> 4)]));
        out.push(char::from(DIGITS[usize::from(b & 0x0f)]));
    }
}
