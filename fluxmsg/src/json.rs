//! The lossless JSON view of a fluxMsg, for people and HTTP APIs.
//!
//! [`to_json`] turns a [`FluxMsg`] into a [`serde_json::Value`] and [`from_json`] turns it
//! back; [`to_string_pretty`] and [`from_str`] do the same with JSON text. Nothing is lost on
//! the way: CBOR → JSON → CBOR gives identical bytes for a canonically encoded message, and
//! the canonical bytes for any other valid one.
//!
//! # Mapping
//!
//! A message is a JSON object holding the envelope fields that are not at their default (the
//! rule the CBOR encoder follows), plus each unknown field of [`FluxMsg::extra`] under its
//! own name. On reading, `null` or a missing key gives an envelope field its default.
//!
//! | fluxMsg | JSON |
//! | --- | --- |
//! | `id`, `ref_id`, `src_id`: [`Id::U64`] | number, such as `42` (a decimal string such as `"42"` is read too) |
//! | `id`, `ref_id`, `src_id`: [`Id::Uuid`] | hyphenated UUID string, such as `"0190a5b2-7c3d-7e4f-8a1b-2c3d4e5f6a7b"` |
//! | `trace` | string |
//! | `meta` | object of strings |
//! | `data` | object of values (below) |
//! | `flags`, `ts` | number |
//! | `raw` | lower-case hex string, such as `"0200"` |
//! | `path` | array of `{"g": id, "p": id, "t": number}`, with `"d": string` for a hop's decision (other hop keys are skipped, as in CBOR) |
//! | [`Value::Null`], [`Value::Bool`], [`Value::Text`] | `null`, `true`/`false`, string |
//! | [`Value::Integer`] that fits `u64` or `i64` | number without fraction or exponent |
//! | [`Value::Integer`] below `i64::MIN` (down to -2^64) | `{"$int": "-18446744073709551616"}` |
//! | [`Value::Float`], finite | number with a fraction or exponent, such as `1.0`, `-0.0` or `1e+300` |
//! | [`Value::Float`], not finite | `{"$float": "NaN"}`, `{"$float": "Infinity"}`, `{"$float": "-Infinity"}` |
//! | [`Value::Bytes`] | `{"$bytes": "<lower-case hex>"}` |
//! | [`Value::Array`] | array |
//! | [`Value::Map`] | object, except as below |
//! | [`Value::Map`] whose only key starts with `$` | `{"$map": {"$key": value}}` |
//!
//! An object with exactly one key that starts with `$` is a typed value, so that text,
//! numbers and objects never read as bytes or big integers by accident; any other object is
//! a map. The escape applies to every map among the values (`data` and unknown fields);
//! `meta` holds strings only and needs none, and the message object is never a typed value.
//! On reading, a typed value must be one of `$int`, `$float`, `$bytes` and `$map` (which also
//! accepts maps of any size); anything else is an error.
//!
//! Numbers keep their type: a JSON number with a fraction or an exponent is a float, and one
//! without is an integer that must fit `u64` or `i64` ([`from_str`] refuses a longer one;
//! [`from_json`] cannot, since serde_json has already read it as a float). Floats come back
//! with the same bits, including `-0.0`, because fluxmsg turns on serde_json's
//! `float_roundtrip` feature. serde_json's `arbitrary_precision` feature is not supported.
//! serde_json reads `-0` as the float `-0.0`, so that is what it becomes.
//!
//! What serde_json decides when reading text applies as well: JSON text nested deeper than
//! 127 levels is refused by its parser (a CBOR message decoded with a `max_depth` above
//! that shows as JSON that does not read back), and of two equal keys in one object the
//! last one wins, where the CBOR decoder refuses the message.
//!
//! Errors are [`Error::Json`], naming where the document went wrong (`data.iso8583.field`,
//! `path[2].g`) and why.
//!
//! # Example
//!
//! ```
//! use fluxmsg::{FluxMsg, Id, Value, json};
//!
//! let msg = FluxMsg::builder()
//!     .id(Id::U64(42))
//!     .meta("iso8583.mti", "0100")
//!     .data_path("iso8583.field.4", "000000010000")?
//!     .data("amount", 1.5)
//!     .data("pin_block", Value::from(&b"\x9a\x0f"[..]))
//!     .data("big", Value::from(i64::MIN))
//!     .build();
//!
//! let v = json::to_json(&msg);
//! assert_eq!(
//!     v,
//!     json::serde_json::json!({
//!         "id": 42,
//!         "meta": {"iso8583.mti": "0100"},
//!         "data": {
//!             "big": i64::MIN,
//!             "amount": 1.5,
//!             "iso8583": {"field": {"4": "000000010000"}},
//!             "pin_block": {"$bytes": "9a0f"},
//!         },
//!     })
//! );
//! assert_eq!(json::from_json(&v)?, msg);
//!
//! // Text works the same way, and the CBOR bytes survive the trip.
//! let text = json::to_string_pretty(&msg);
//! assert_eq!(json::from_str(&text)?.to_cbor()?, msg.to_cbor()?);
//!
//! // A mistake is reported with its place.
//! let err = json::from_str(r#"{"data": {"pin_block": {"$bytes": "9a0"}}}"#).unwrap_err();
//! assert_eq!(
//!     err.to_string(),
//!     "invalid JSON fluxMsg at `data.pin_block`: `$bytes` holds an odd number of hex digits"
//! );
//! # Ok::<(), fluxmsg::Error>(())
//! ```
#![cfg_attr(docsrs, doc(cfg(feature = "json")))]

use std::fmt::Write as _;

use bytes::Bytes;
/// The serde_json crate this module's signatures use, so that callers name the same version.
pub use serde_json;
use serde_json::{Map as JsonMap, Number, Value as Json};

use crate::{Error, FluxMsg, Hop, Id, Integer, MAX_DEPTH_CEILING, Map, Text, Value};

/// The JSON view of a message.
///
/// Unknown fields in [`FluxMsg::extra`] that carry the name of an envelope field are left
/// out; such a message cannot be encoded to CBOR either ([`Error::ReservedKey`]).
pub fn to_json(msg: &FluxMsg) -> Json {
    let mut obj = JsonMap::new();
    for (key, value) in &msg.extra {
        if !FluxMsg::KEYS.contains(&key) {
            obj.insert(key.to_owned(), value_to_json(value));
        }
    }
    let mut put = |key: &str, value: Json| obj.insert(key.to_owned(), value);
    if let Some(id) = &msg.id {
        put("id", id_to_json(id));
    }
    if let Some(id) = &msg.ref_id {
        put("ref_id", id_to_json(id));
    }
    if !msg.trace.is_empty() {
        put("trace", Json::from(msg.trace.as_str()));
    }
    if let Some(id) = &msg.src_id {
        put("src_id", id_to_json(id));
    }
    if !msg.meta.is_empty() {
        let meta = msg
            .meta
            .iter()
            .map(|(k, v)| (k.to_owned(), Json::from(v.as_str())))
            .collect();
        put("meta", Json::Object(meta));
    }
    if !msg.data.is_empty() {
        put("data", map_to_json(&msg.data));
    }
    if msg.flags != 0 {
        put("flags", Json::from(msg.flags));
    }
    if !msg.raw.is_empty() {
        put("raw", Json::from(hex(&msg.raw)));
    }
    if !msg.path.is_empty() {
        put("path", msg.path.iter().map(hop_to_json).collect());
    }
    if msg.ts != 0 {
        put("ts", Json::from(msg.ts));
    }
    Json::Object(obj)
}

/// The JSON view of a message as compact text.
pub fn to_string(msg: &FluxMsg) -> String {
    to_json(msg).to_string()
}

/// The JSON view of a message as indented text, for people.
pub fn to_string_pretty(msg: &FluxMsg) -> String {
    format!("{:#}", to_json(msg))
}

/// The JSON view of one data value.
pub fn value_to_json(value: &Value) -> Json {
    match value {
        Value::Null => Json::Null,
        Value::Bool(b) => Json::Bool(*b),
        Value::Integer(i) => {
            if let Some(u) = i.as_u64() {
                Json::from(u)
            } else if let Some(s) = i.as_i64() {
                Json::from(s)
            } else {
                tagged("$int", Json::from(i128::from(*i).to_string()))
            }
        }
        Value::Float(f) => match Number::from_f64(*f) {
            Some(n) => Json::Number(n),
            None => {
                let name = if f.is_nan() {
                    "NaN"
                } else if *f > 0.0 {
                    "Infinity"
                } else {
                    "-Infinity"
                };
                tagged("$float", Json::from(name))
            }
        },
        Value::Text(s) => Json::from(s.as_str()),
        Value::Bytes(b) => tagged("$bytes", Json::from(hex(b))),
        Value::Array(items) => items.iter().map(value_to_json).collect(),
        Value::Map(m) => map_to_json(m),
    }
}

/// Reads a message from its JSON view.
///
/// serde_json reads an integer too long for `u64` and `i64` as a float, and this function
/// cannot tell it from one; [`from_str`] reads text and refuses it.
///
/// # Errors
///
/// [`Error::Json`] when `v` is not a message in the JSON view.
pub fn from_json(v: &Json) -> Result<FluxMsg, Error> {
    read_message(v, &At::Root)
}

/// Reads a message from JSON text.
///
/// # Errors
///
/// [`Error::Json`] when `text` is not JSON, holds an integer that fits neither `u64` nor
/// `i64`, or is not a message in the JSON view.
pub fn from_str(text: &str) -> Result<FluxMsg, Error> {
    let v: Json = serde_json::from_str(text).map_err(|e| At::Root.err(format!("not JSON: {e}")))?;
    check_integer_literals(text)?;
    from_json(&v)
}

/// Reads one data value from its JSON view.
///
/// # Errors
///
/// [`Error::Json`] when `v` is not a value in the JSON view; the error's path is relative to
/// `v`.
pub fn value_from_json(v: &Json) -> Result<Value, Error> {
    read_value(v, &At::Root, 1)
}

fn tagged(tag: &str, inner: Json) -> Json {
    let mut obj = JsonMap::new();
    obj.insert(tag.to_owned(), inner);
    Json::Object(obj)
}

fn map_to_json(m: &Map<Value>) -> Json {
    let obj: JsonMap<String, Json> = m
        .iter()
        .map(|(k, v)| (k.to_owned(), value_to_json(v)))
        .collect();
    let escape = m.len() == 1 && m.keys().all(|k| k.starts_with('$'));
    if escape {
        tagged("$map", Json::Object(obj))
    } else {
        Json::Object(obj)
    }
}

fn id_to_json(id: &Id) -> Json {
    match id {
        Id::U64(v) => Json::from(*v),
        Id::Uuid(_) => Json::from(id.to_string()),
    }
}

fn hop_to_json(hop: &Hop) -> Json {
    let mut obj = JsonMap::new();
    obj.insert("g".to_owned(), id_to_json(&hop.gear));
    obj.insert("p".to_owned(), id_to_json(&hop.port));
    obj.insert("t".to_owned(), Json::from(hop.ts));
    if let Some(d) = &hop.decision {
        obj.insert("d".to_owned(), Json::from(d.as_str()));
    }
    Json::Object(obj)
}

fn hex(bytes: &[u8]) -> String {
    let mut s = String::new();
    crate::hex::push(&mut s, bytes);
    s
}

/// A place in the document being read, rendered only when an error needs it.
#[derive(Clone, Copy)]
enum At<'a> {
    Root,
    Key(&'a At<'a>, &'a str),
    Index(&'a At<'a>, usize),
}

impl<'a> At<'a> {
    fn key(&'a self, key: &'a str) -> At<'a> {
        At::Key(self, key)
    }

    fn index(&'a self, i: usize) -> At<'a> {
        At::Index(self, i)
    }

    fn render(&self) -> String {
        let mut segments = Vec::new();
        let mut cur = self;
        loop {
            match cur {
                At::Root => break,
                At::Key(parent, key) => {
                    segments.push(Segment::Key(key));
                    cur = parent;
                }
                At::Index(parent, i) => {
                    segments.push(Segment::Index(*i));
                    cur = parent;
                }
            }
        }
        segments.reverse();
        render(&segments)
    }

    fn err(&self, reason: impl Into<String>) -> Error {
        Error::Json {
            path: self.render(),
            reason: reason.into(),
        }
    }
}

enum Segment<'a> {
    Key(&'a str),
    Index(usize),
}

fn render(segments: &[Segment<'_>]) -> String {
    if segments.is_empty() {
        return "(root)".to_owned();
    }
    let mut s = String::new();
    for (i, segment) in segments.iter().enumerate() {
        match segment {
            Segment::Key(key) if i == 0 => s.push_str(key),
            Segment::Key(key) => {
                s.push('.');
                s.push_str(key);
            }
            // Writing to a String cannot fail.
            Segment::Index(n) => {
                let _ = write!(s, "[{n}]");
            }
        }
    }
    s
}

/// What a JSON value is, for error messages.
fn kind(v: &Json) -> String {
    match v {
        Json::Null => "null".to_owned(),
        Json::Bool(b) => format!("`{b}`"),
        Json::Number(n) => format!("the number {n}"),
        Json::String(_) => "a string".to_owned(),
        Json::Array(_) => "an array".to_owned(),
        Json::Object(_) => "an object".to_owned(),
    }
}

fn expected(at: &At<'_>, what: &str, found: &Json) -> Error {
    at.err(format!("expected {what}, found {}", kind(found)))
}

fn read_message(v: &Json, at: &At<'_>) -> Result<FluxMsg, Error> {
    let Json::Object(obj) = v else {
        return Err(expected(at, "an object", v));
    };
    let mut msg = FluxMsg::default();
    for (key, v) in obj {
        let at = at.key(key);
        let envelope = FluxMsg::KEYS.contains(&key.as_str());
        if envelope && v.is_null() {
            continue;
        }
        match key.as_str() {
            "id" => msg.id = Some(read_id(v, &at)?),
            "ref_id" => msg.ref_id = Some(read_id(v, &at)?),
            "src_id" => msg.src_id = Some(read_id(v, &at)?),
            "trace" => msg.trace = read_str(v, &at)?.to_owned(),
            "meta" => msg.meta = read_meta(v, &at)?,
            "data" => match read_value(v, &at, 1)? {
                Value::Map(m) => msg.data = m,
                other => {
                    let found = other.type_name();
                    return Err(at.err(format!("expected an object, found {found}")));
                }
            },
            "flags" => msg.flags = read_int(v, &at, "u32")?,
            "raw" => msg.raw = Bytes::from(read_hex(read_str(v, &at)?, &at, "`raw`")?),
            "path" => msg.path = read_path(v, &at)?,
            "ts" => msg.ts = read_int(v, &at, "i64")?,
            _ => {
                msg.extra.insert(key.as_str(), read_value(v, &at, 1)?);
            }
        }
    }
    Ok(msg)
}

fn read_str<'v>(v: &'v Json, at: &At<'_>) -> Result<&'v str, Error> {
    v.as_str().ok_or_else(|| expected(at, "a string", v))
}

/// Reads a JSON integer into `T` (named `ty` in errors).
fn read_int<T: TryFrom<i128>>(v: &Json, at: &At<'_>, ty: &str) -> Result<T, Error> {
    let Json::Number(n) = v else {
        return Err(expected(at, "an integer", v));
    };
    let wide = if let Some(u) = n.as_u64() {
        i128::from(u)
    } else if let Some(i) = n.as_i64() {
        i128::from(i)
    } else {
        return Err(expected(at, "an integer", v));
    };
    T::try_from(wide).map_err(|_| at.err(format!("{n} is out of range for {ty}")))
}

fn read_id(v: &Json, at: &At<'_>) -> Result<Id, Error> {
    match v {
        Json::Number(_) => read_int(v, at, "u64").map(Id::U64),
        Json::String(s) => s.parse().map_err(|e: Error| at.err(e.to_string())),
        _ => Err(expected(at, "an unsigned integer or a UUID string", v)),
    }
}

fn read_meta(v: &Json, at: &At<'_>) -> Result<Map<Text>, Error> {
    let Json::Object(obj) = v else {
        return Err(expected(at, "an object of strings", v));
    };
    let entries = obj
        .iter()
        .map(|(key, value)| Ok((key.as_str(), Text::from(read_str(value, &at.key(key))?))))
        .collect::<Result<Vec<_>, Error>>()?;
    Ok(entries.into_iter().collect())
}

fn read_path(v: &Json, at: &At<'_>) -> Result<Vec<Hop>, Error> {
    let Json::Array(items) = v else {
        return Err(expected(at, "an array of hops", v));
    };
    let mut hops = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        let at = at.index(i);
        let Json::Object(obj) = item else {
            return Err(expected(&at, "a hop object", item));
        };
        let field = |name: &'static str| {
            obj.get(name)
                .map(|v| (v, at.key(name)))
                .ok_or_else(|| at.err(format!("hop lacks field `{name}`")))
        };
        let (g, g_at) = field("g")?;
        let (p, p_at) = field("p")?;
        let (t, t_at) = field("t")?;
        // A decision's length is the codec's business (`Limits::max_decision_len`), as the
        // number of hops is.
        let decision = match obj.get("d") {
            None | Some(Json::Null) => None,
            Some(d) => Some(Text::from(read_str(d, &at.key("d"))?)),
        };
        hops.push(Hop {
            gear: read_id(g, &g_at)?,
            port: read_id(p, &p_at)?,
            ts: read_int(t, &t_at, "i64")?,
            decision,
        });
    }
    Ok(hops)
}

fn read_hex(s: &str, at: &At<'_>, what: &str) -> Result<Vec<u8>, Error> {
    let mut out = Vec::with_capacity(s.len() / 2);
    let mut high = None;
    for (i, b) in s.bytes().enumerate() {
        let Some(digit) = crate::hex::digit(b) else {
            // Every byte before `i` is an ASCII digit, so `i` starts a character.
            let c = s.get(i..).and_then(|rest| rest.chars().next());
            let c = c.unwrap_or(char::REPLACEMENT_CHARACTER);
            return Err(at.err(format!(
                "{what} holds `{c}`, not a hex digit, at position {i}"
            )));
        };
        match high.take() {
            None => high = Some(digit),
            Some(h) => out.push((h << 4) | digit),
        }
    }
    if high.is_some() {
        return Err(at.err(format!("{what} holds an odd number of hex digits")));
    }
    Ok(out)
}

/// Reads a value whose own nesting level (if it is an array or a map) is `depth`.
fn read_value(v: &Json, at: &At<'_>, depth: usize) -> Result<Value, Error> {
    Ok(match v {
        Json::Null => Value::Null,
        Json::Bool(b) => Value::Bool(*b),
        Json::Number(n) => {
            if let Some(u) = n.as_u64() {
                Value::from(u)
            } else if let Some(i) = n.as_i64() {
                Value::from(i)
            } else if let Some(f) = n.as_f64() {
                Value::Float(f)
            } else {
                return Err(at.err(format!("unsupported number {n}")));
            }
        }
        Json::String(s) => Value::Text(Text::from(s)),
        Json::Array(items) => {
            check_depth(at, depth)?;
            let mut out = Vec::with_capacity(items.len());
            for (i, item) in items.iter().enumerate() {
                out.push(read_value(item, &at.index(i), depth + 1)?);
            }
            Value::Array(out)
        }
        Json::Object(obj) => {
            let mut entries = obj.iter();
            if let (Some((tag, inner)), None) = (entries.next(), entries.next())
                && tag.starts_with('$')
            {
                return read_typed(tag, inner, at, depth);
            }
            check_depth(at, depth)?;
            Value::Map(read_entries(obj, at, depth)?)
        }
    })
}

fn check_depth(at: &At<'_>, depth: usize) -> Result<(), Error> {
    if depth > MAX_DEPTH_CEILING {
        return Err(at.err(format!("nesting deeper than {MAX_DEPTH_CEILING} levels")));
    }
    Ok(())
}

fn read_entries(
    obj: &JsonMap<String, Json>,
    at: &At<'_>,
    depth: usize,
) -> Result<Map<Value>, Error> {
    // Built in one sort (`Map: FromIterator`), not one ordered insert per key.
    let entries = obj
        .iter()
        .map(|(key, value)| Ok((key.as_str(), read_value(value, &at.key(key), depth + 1)?)))
        .collect::<Result<Vec<_>, Error>>()?;
    Ok(entries.into_iter().collect())
}

/// Reads `{tag: inner}`, an object whose only key starts with `$`, found at `at`.
fn read_typed(tag: &str, inner: &Json, at: &At<'_>, depth: usize) -> Result<Value, Error> {
    let text = |what: &str| {
        inner
            .as_str()
            .ok_or_else(|| at.err(format!("`{tag}` must hold {what}, found {}", kind(inner))))
    };
    match tag {
        "$int" => {
            let s = text("a decimal string")?;
            let digits = s.strip_prefix('-').unwrap_or(s);
            if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
                return Err(at.err(format!("`$int` holds \"{s}\", not a decimal integer")));
            }
            s.parse::<i128>()
                .ok()
                .and_then(|n| Integer::try_from(n).ok())
                .map(Value::Integer)
                .ok_or_else(|| at.err(format!("`$int` {s} is outside -2^64 ..= 2^64-1")))
        }
        "$float" => match text("\"NaN\", \"Infinity\" or \"-Infinity\"")? {
            "NaN" => Ok(Value::Float(f64::NAN)),
            "Infinity" => Ok(Value::Float(f64::INFINITY)),
            "-Infinity" => Ok(Value::Float(f64::NEG_INFINITY)),
            other => Err(at.err(format!(
                "`$float` holds \"{other}\", expected \"NaN\", \"Infinity\" or \"-Infinity\" \
                 (finite floats are JSON numbers)"
            ))),
        },
        "$bytes" => {
            let s = text("a hex string")?;
            read_hex(s, at, "`$bytes`").map(|b| Value::Bytes(Bytes::from(b)))
        }
        "$map" => {
            let Json::Object(obj) = inner else {
                return Err(at.err(format!("`$map` must hold an object, found {}", kind(inner))));
            };
            check_depth(at, depth)?;
            Ok(Value::Map(read_entries(obj, &at.key(tag), depth)?))
        }
        _ => Err(at.err(format!(
            "unknown typed value `{tag}`: expected `$int`, `$float`, `$bytes` or `$map` \
             (write a map whose only key starts with `$` as {{\"$map\": {{...}}}})"
        ))),
    }
}

/// Refuses an integer literal that fits neither `u64` nor `i64`, which serde_json would read
/// as a float; `text` is known to be valid JSON.
fn check_integer_literals(text: &str) -> Result<(), Error> {
    enum Frame {
        Object(String),
        Array(usize),
    }
    let b = text.as_bytes();
    let mut stack: Vec<Frame> = Vec::new();
    let mut key_next = false;
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'{' => {
                stack.push(Frame::Object(String::new()));
                key_next = true;
                i += 1;
            }
            b'[' => {
                stack.push(Frame::Array(0));
                i += 1;
            }
            b'}' | b']' => {
                stack.pop();
                key_next = false;
                i += 1;
            }
            b',' => {
                match stack.last_mut() {
                    Some(Frame::Object(_)) => key_next = true,
                    Some(Frame::Array(n)) => *n += 1,
                    None => {}
                }
                i += 1;
            }
            b'"' => {
                let start = i;
                i += 1;
                while i < b.len() && b[i] != b'"' {
                    i += if b[i] == b'\\' { 2 } else { 1 };
                }
                i += 1;
                if key_next {
                    key_next = false;
                    let raw = text.get(start..i).unwrap_or_default();
                    let key: String = serde_json::from_str(raw).unwrap_or_default();
                    if let Some(Frame::Object(k)) = stack.last_mut() {
                        *k = key;
                    }
                }
            }
            b'-' | b'0'..=b'9' => {
                let start = i;
                while i < b.len() && matches!(b[i], b'-' | b'+' | b'.' | b'e' | b'E' | b'0'..=b'9')
                {
                    i += 1;
                }
                let literal = text.get(start..i).unwrap_or_default();
                let integer = !literal.contains(['.', 'e', 'E']);
                if integer && literal.parse::<u64>().is_err() && literal.parse::<i64>().is_err() {
                    let segments: Vec<_> = stack
                        .iter()
                        .map(|frame| match frame {
                            Frame::Object(key) => Segment::Key(key),
                            Frame::Array(n) => Segment::Index(*n),
                        })
                        .collect();
                    return Err(Error::Json {
                        path: render(&segments),
                        reason: format!(
                            "integer {literal} fits neither u64 nor i64 \
                             (write integers down to -2^64 as {{\"$int\": \"<decimal>\"}})"
                        ),
                    });
                }
            }
            _ => i += 1,
        }
    }
    Ok(())
}
