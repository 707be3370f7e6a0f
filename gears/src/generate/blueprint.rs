//! The message template, compiled once: placeholders parsed and checked, literal values
//! converted, so that building a message is a walk over a tree with no parsing.

use std::fmt::Write as _;
use std::time::Duration;

use bytes::Bytes;
use fluxmsg::{FluxMsg, Map, Text, Value};
use rand::RngExt;
use rand::rngs::ChaCha8Rng;
use sdk::ConfigError;

use super::MessageTemplate;
use super::iso::{self, IsoVar};
use crate::template::{Now, Template};

/// The most bytes of `random_hex` and digits of `random_digits` one placeholder may ask for.
pub(super) const MAX_RANDOM_LEN: usize = 4096;

/// The general placeholders, for error messages.
const KNOWN: &str = "counter, counter:START, random_int:MIN:MAX, random_float:MIN:MAX, \
     random_choice:a|b|c, random_hex:N, random_digits:N, uuid, now, now_ms, now_unix";

/// One placeholder of the `generate` gear.
#[derive(Debug, Clone, PartialEq)]
enum Var {
    /// `counter` / `counter:START`: START plus the message's index.
    Counter(u64),
    /// `random_int:MIN:MAX`, inclusive.
    Int(i64, i64),
    /// `random_float:MIN:MAX`.
    Float(f64, f64),
    /// `random_choice:a|b|c`.
    Choice(Vec<String>),
    /// `random_hex:N`: N random bytes as lowercase hex.
    Hex(usize),
    /// `random_digits:N`.
    Digits(usize),
    /// `uuid`: a version 4 UUID drawn from the seeded generator.
    Uuid,
    /// `now`, `now_ms`, `now_unix`.
    Now(Now),
    /// An ISO 8583 field: `pan`, `stan`, `rrn`, `amount`, `expiry`, the date and time fields.
    Iso(IsoVar),
}

impl Var {
    fn parse(inner: &str) -> Result<Var, String> {
        if let Some(now) = Now::parse(inner) {
            return Ok(Var::Now(now));
        }
        let (name, arg) = match inner.split_once(':') {
            Some((name, arg)) => (name.trim(), Some(arg)),
            None => (inner, None),
        };
        match (name, arg) {
            ("counter", None) => Ok(Var::Counter(0)),
            ("counter", Some(start)) => start
                .trim()
                .parse()
                .map(Var::Counter)
                .map_err(|_| format!("${{{inner}}}: START must be an integer 0..2^64")),
            ("random_int", Some(arg)) => {
                let (min, max) = range(inner, arg)?;
                Ok(Var::Int(min, max))
            }
            ("random_float", Some(arg)) => {
                let (min, max): (f64, f64) = range(inner, arg)?;
                if !(max - min).is_finite() {
                    return Err(format!(
                        "${{{inner}}}: MIN, MAX and the span between them must be finite"
                    ));
                }
                Ok(Var::Float(min, max))
            }
            ("random_choice", Some(arg)) if !arg.trim().is_empty() => Ok(Var::Choice(
                arg.split('|').map(|c| c.trim().to_owned()).collect(),
            )),
            ("random_hex", Some(n)) => length(inner, n).map(Var::Hex),
            ("random_digits", Some(n)) => length(inner, n).map(Var::Digits),
            ("uuid", None) => Ok(Var::Uuid),
            ("random_int" | "random_float", None) => {
                Err(format!("${{{inner}}} needs a range: ${{{name}:MIN:MAX}}"))
            }
            ("random_choice", _) => Err(format!(
                "${{{inner}}} needs choices: ${{random_choice:a|b|c}}"
            )),
            ("random_hex" | "random_digits", None) => {
                Err(format!("${{{inner}}} needs a length: ${{{name}:N}}"))
            }
            _ => match IsoVar::parse(inner, name, arg) {
                Some(parsed) => parsed.map(Var::Iso),
                None => Err(format!(
                    "unknown placeholder ${{{inner}}} (known: {KNOWN}; ISO 8583: {})",
                    iso::KNOWN
                )),
            },
        }
    }

    /// Whether a string that is only this placeholder becomes a number rather than text.
    fn is_numeric(&self) -> bool {
        matches!(
            self,
            Var::Counter(_) | Var::Int(..) | Var::Float(..) | Var::Now(Now::Unix | Now::UnixMs)
        )
    }

    /// The placeholder's value, typed: numbers as numbers, the rest as text.
    fn value(&self, cx: &mut Cx<'_>) -> Value {
        match self {
            Var::Counter(start) => Value::from(start.wrapping_add(cx.index)),
            Var::Int(min, max) => Value::from(cx.rng.random_range(*min..=*max)),
            Var::Float(min, max) => Value::Float(cx.rng.random_range(*min..=*max)),
            Var::Now(Now::Unix) => Value::from(cx.now.as_secs()),
            Var::Now(Now::UnixMs) => {
                Value::from(u64::try_from(cx.now.as_millis()).unwrap_or(u64::MAX))
            }
            _ => {
                let mut text = String::new();
                self.write(cx, &mut text);
                Value::from(text)
            }
        }
    }

    /// Appends the placeholder's text to `out`.
    fn write(&self, cx: &mut Cx<'_>, out: &mut String) {
        const HEX: &[u8; 16] = b"0123456789abcdef";
        match self {
            Var::Counter(start) => {
                let _ = write!(out, "{}", start.wrapping_add(cx.index));
            }
            Var::Int(min, max) => {
                let _ = write!(out, "{}", cx.rng.random_range(*min..=*max));
            }
            Var::Float(min, max) => {
                let _ = write!(out, "{}", cx.rng.random_range(*min..=*max));
            }
            Var::Choice(choices) => {
                let i = cx.rng.random_range(0..choices.len());
                out.push_str(choices.get(i).map_or("", String::as_str));
            }
            Var::Hex(n) => {
                for _ in 0..*n {
                    let b: u8 = cx.rng.random();
                    out.push(char::from(HEX[usize::from(b >> 4)]));
                    out.push(char::from(HEX[usize::from(b & 0x0f)]));
                }
            }
            Var::Digits(n) => {
                for _ in 0..*n {
                    out.push(char::from(b'0' + cx.rng.random_range(0..10u8)));
                }
            }
            Var::Uuid => {
                let mut b: [u8; 16] = cx.rng.random();
                b[6] = (b[6] & 0x0f) | 0x40; // version 4
                b[8] = (b[8] & 0x3f) | 0x80; // RFC 4122 variant
                for (i, byte) in b.iter().enumerate() {
                    if matches!(i, 4 | 6 | 8 | 10) {
                        out.push('-');
                    }
                    out.push(char::from(HEX[usize::from(byte >> 4)]));
                    out.push(char::from(HEX[usize::from(byte & 0x0f)]));
                }
            }
            Var::Now(form) => form.write(cx.now, out),
            Var::Iso(var) => var.write(cx, out),
        }
    }
}

/// `MIN:MAX` with MIN ≤ MAX.
fn range<T: std::str::FromStr + PartialOrd>(inner: &str, arg: &str) -> Result<(T, T), String> {
    let bad = || format!("${{{inner}}}: write MIN:MAX with two numbers");
    let (min, max) = arg.split_once(':').ok_or_else(bad)?;
    let min: T = min.trim().parse().map_err(|_| bad())?;
    let max: T = max.trim().parse().map_err(|_| bad())?;
    if min > max {
        return Err(format!("${{{inner}}}: MIN is greater than MAX"));
    }
    Ok((min, max))
}

/// `N` in 1..=[`MAX_RANDOM_LEN`].
fn length(inner: &str, n: &str) -> Result<usize, String> {
    n.trim()
        .parse()
        .ok()
        .filter(|n| (1..=MAX_RANDOM_LEN).contains(n))
        .ok_or_else(|| format!("${{{inner}}}: N must be an integer 1..={MAX_RANDOM_LEN}"))
}

/// What one message's placeholders read: its index, the time, the random generator.
pub(crate) struct Cx<'a> {
    /// The message's index: 0 for the first.
    pub(crate) index: u64,
    /// The time, since the Unix epoch.
    pub(crate) now: Duration,
    /// The seeded generator every random value comes from.
    pub(crate) rng: &'a mut ChaCha8Rng,
}

/// A string template with the `generate` gear's placeholders, compiled, for other gears
/// (`sim_responder`'s values).
#[derive(Debug, Clone)]
pub(crate) struct ValueTemplate(Str);

impl ValueTemplate {
    /// Compiles `src`; `path` names it in errors (`rules[0].set.38`).
    pub(crate) fn compile(src: &str, path: &str) -> Result<ValueTemplate, ConfigError> {
        Str::compile(src, path).map(ValueTemplate)
    }

    /// The value for one message: a number when `src` is exactly one numeric placeholder
    /// (`${counter}`), text otherwise.
    pub(crate) fn value(&self, cx: &mut Cx<'_>) -> Value {
        self.0.value(cx)
    }
}

/// A string of the template, compiled.
#[derive(Debug, Clone)]
enum Str {
    /// No placeholder.
    Lit(String),
    /// Exactly one numeric placeholder and nothing else: a typed value.
    Typed(Var),
    /// Text with placeholders.
    Text(Template<Var>),
}

impl Str {
    fn compile(src: &str, path: &str) -> Result<Str, ConfigError> {
        let mut vars = 0usize;
        let template = Template::parse(src, |inner| {
            vars += 1;
            Var::parse(inner)
        })
        .map_err(|reason| ConfigError::field(path, reason))?;
        if let Some(lit) = template.as_literal() {
            return Ok(Str::Lit(lit.to_owned()));
        }
        // Exactly one placeholder and no literal text around it.
        let mut literal = String::new();
        let mut only = None;
        template.render(&mut literal, |var, _| only = Some(var.clone()));
        match only {
            Some(var) if vars == 1 && literal.is_empty() && var.is_numeric() => Ok(Str::Typed(var)),
            _ => Ok(Str::Text(template)),
        }
    }

    fn text(&self, cx: &mut Cx<'_>) -> String {
        match self {
            Str::Lit(s) => s.clone(),
            Str::Typed(var) => {
                let mut out = String::new();
                var.write(cx, &mut out);
                out
            }
            Str::Text(template) => {
                let mut out = String::new();
                template.render(&mut out, |var, out| var.write(cx, out));
                out
            }
        }
    }

    fn value(&self, cx: &mut Cx<'_>) -> Value {
        match self {
            Str::Typed(var) => var.value(cx),
            other => Value::from(other.text(cx)),
        }
    }
}

/// A value of `template.data`, compiled.
#[derive(Debug, Clone)]
enum Node {
    /// A value without placeholders: cloned into every message.
    Const(Value),
    /// A string with placeholders.
    Str(Str),
    Array(Vec<Node>),
    Map(Vec<(Text, Node)>),
}

impl Node {
    fn compile(json: &serde_json::Value, path: &str) -> Result<Node, ConfigError> {
        use serde_json::Value as Json;
        Ok(match json {
            Json::Null => Node::Const(Value::Null),
            Json::Bool(b) => Node::Const(Value::Bool(*b)),
            Json::Number(n) => Node::Const(number(n)),
            Json::String(s) => match Str::compile(s, path)? {
                Str::Lit(s) => Node::Const(Value::from(s)),
                other => Node::Str(other),
            },
            Json::Array(items) => {
                let items = items
                    .iter()
                    .enumerate()
                    .map(|(i, item)| Node::compile(item, &format!("{path}[{i}]")))
                    .collect::<Result<Vec<_>, _>>()?;
                Node::Array(items).fold()
            }
            Json::Object(obj) => Node::compile_map(obj, path)?,
        })
    }

    /// A map whose dotted keys (`card.pan`) become nested maps.
    fn compile_map(
        obj: &serde_json::Map<String, serde_json::Value>,
        path: &str,
    ) -> Result<Node, ConfigError> {
        let mut entries: Vec<(Text, Node)> = Vec::with_capacity(obj.len());
        for (key, json) in obj {
            let here = if path.is_empty() {
                key.clone()
            } else {
                format!("{path}.{key}")
            };
            if key.split('.').any(str::is_empty) {
                return Err(ConfigError::field(
                    here,
                    "a key must not be empty or have an empty dotted segment",
                ));
            }
            let node = Node::compile(json, &here)?;
            insert(&mut entries, key, node, &here)?;
        }
        let entries = entries.into_iter().map(|(k, n)| (k, n.fold())).collect();
        Ok(Node::Map(entries).fold())
    }

    /// A container whose members are all constant becomes one constant.
    fn fold(self) -> Node {
        match self {
            Node::Array(items) if items.iter().all(|n| matches!(n, Node::Const(_))) => {
                Node::Const(Value::Array(
                    items
                        .into_iter()
                        .map(|n| match n {
                            Node::Const(v) => v,
                            _ => Value::Null,
                        })
                        .collect(),
                ))
            }
            Node::Map(entries) if entries.iter().all(|(_, n)| matches!(n, Node::Const(_))) => {
                Node::Const(Value::Map(
                    entries
                        .into_iter()
                        .map(|(k, n)| match n {
                            Node::Const(v) => (k, v),
                            _ => (k, Value::Null),
                        })
                        .collect(),
                ))
            }
            other => other,
        }
    }

    fn build(&self, cx: &mut Cx<'_>) -> Value {
        match self {
            Node::Const(v) => v.clone(),
            Node::Str(s) => s.value(cx),
            Node::Array(items) => Value::Array(items.iter().map(|n| n.build(cx)).collect()),
            Node::Map(entries) => Value::Map(build_map(entries, cx)),
        }
    }
}

fn build_map(entries: &[(Text, Node)], cx: &mut Cx<'_>) -> Map<Value> {
    let mut map = Map::with_capacity(entries.len());
    for (key, node) in entries {
        map.insert(key.clone(), node.build(cx));
    }
    map
}

/// Inserts `node` at the dotted `key` of `entries`, merging maps; a key given twice (as
/// `a.b` and inside `a`) is an error.
fn insert(
    entries: &mut Vec<(Text, Node)>,
    key: &str,
    node: Node,
    path: &str,
) -> Result<(), ConfigError> {
    let (head, rest) = match key.split_once('.') {
        Some((head, rest)) => (head, Some(rest)),
        None => (key, None),
    };
    let clash = || ConfigError::field(path, format_args!("the key {head:?} is given twice"));
    let existing = entries.iter_mut().find(|(k, _)| k.as_str() == head);
    match (existing, rest) {
        (None, None) => entries.push((Text::from(head), node)),
        (None, Some(rest)) => {
            let mut inner = Vec::new();
            insert(&mut inner, rest, node, path)?;
            entries.push((Text::from(head), Node::Map(inner)));
        }
        (Some((_, slot)), rest) => {
            let inner = match slot {
                Node::Map(inner) => inner,
                Node::Const(Value::Map(map)) => {
                    let owned = std::mem::take(map);
                    *slot = Node::Map(
                        owned
                            .into_iter()
                            .map(|(k, v)| (k, Node::Const(v)))
                            .collect(),
                    );
                    match slot {
                        Node::Map(inner) => inner,
                        _ => return Err(clash()),
                    }
                }
                _ => return Err(clash()),
            };
            match (rest, node) {
                (Some(rest), node) => insert(inner, rest, node, path)?,
                (None, Node::Map(more)) => {
                    for (k, n) in more {
                        insert(inner, &k, n, path)?;
                    }
                }
                (None, Node::Const(Value::Map(more))) => {
                    for (k, v) in more {
                        insert(inner, &k, Node::Const(v), path)?;
                    }
                }
                (None, _) => return Err(clash()),
            }
        }
    }
    Ok(())
}

/// A JSON number as an integer when it is one, a float otherwise.
fn number(n: &serde_json::Number) -> Value {
    if let Some(u) = n.as_u64() {
        Value::from(u)
    } else if let Some(i) = n.as_i64() {
        Value::from(i)
    } else {
        Value::Float(n.as_f64().unwrap_or(f64::NAN))
    }
}

/// The compiled `template`: what every message is made of.
#[derive(Debug, Clone)]
pub(super) struct Blueprint {
    meta: Vec<(Text, Str)>,
    data: Vec<(Text, Node)>,
    raw: Option<Str>,
    trace: Option<Str>,
}

impl Blueprint {
    /// Compiles `template`, naming the first bad string by its path (`template.data.amount`).
    pub(super) fn compile(template: &MessageTemplate) -> Result<Blueprint, ConfigError> {
        let meta = template
            .meta
            .iter()
            .map(|(key, src)| {
                let str = Str::compile(src, &format!("template.meta.{key}"))?;
                Ok((Text::from(key.as_str()), str))
            })
            .collect::<Result<Vec<_>, ConfigError>>()?;
        let data = match Node::compile_map(&template.data, "template.data")? {
            Node::Map(entries) => entries,
            Node::Const(Value::Map(map)) => {
                map.into_iter().map(|(k, v)| (k, Node::Const(v))).collect()
            }
            _ => Vec::new(),
        };
        let one = |src: &Option<String>, path: &str| {
            src.as_deref().map(|s| Str::compile(s, path)).transpose()
        };
        Ok(Blueprint {
            meta,
            data,
            raw: one(&template.raw, "template.raw")?,
            trace: one(&template.trace, "template.trace")?,
        })
    }

    /// Builds message `cx.index`: placeholders are drawn in a fixed order (meta, data, raw,
    /// trace, each in template order), so one seed always gives the same messages.
    pub(super) fn build(&self, cx: &mut Cx<'_>) -> FluxMsg {
        let mut msg = FluxMsg::new();
        msg.ts = sdk::unix_nanos(cx.now);
        for (key, str) in &self.meta {
            msg.meta.insert(key.clone(), Text::from(str.text(cx)));
        }
        msg.data = build_map(&self.data, cx);
        if let Some(raw) = &self.raw {
            msg.raw = Bytes::from(raw.text(cx));
        }
        if let Some(trace) = &self.trace {
            msg.trace = trace.text(cx);
        }
        msg
    }
}

#[cfg(test)]
mod tests {
    use super::Var;

    #[test]
    fn placeholders_parse_with_their_arguments() {
        assert_eq!(Var::parse("counter"), Ok(Var::Counter(0)));
        assert_eq!(Var::parse("counter: 1000"), Ok(Var::Counter(1000)));
        assert_eq!(Var::parse("random_int:-5:5"), Ok(Var::Int(-5, 5)));
        assert_eq!(Var::parse("random_float:0.5:2"), Ok(Var::Float(0.5, 2.0)));
        assert_eq!(
            Var::parse("random_choice:a|b c|"),
            Ok(Var::Choice(vec!["a".into(), "b c".into(), String::new()]))
        );
        assert_eq!(Var::parse("random_hex:4"), Ok(Var::Hex(4)));
        assert_eq!(Var::parse("uuid"), Ok(Var::Uuid));
    }

    #[test]
    fn bad_placeholders_say_why() {
        let err = |s: &str| Var::parse(s).expect_err(s);
        assert!(err("nope").contains("unknown placeholder ${nope}"));
        assert!(err("random_int:9:1").contains("MIN is greater than MAX"));
        assert!(err("random_int:a:1").contains("MIN:MAX"));
        assert!(err("random_int").contains("needs a range"));
        assert!(err("random_float:0:inf").contains("finite"));
        assert!(err("random_hex:0").contains("1..=4096"));
        assert!(err("random_digits:x").contains("1..=4096"));
        assert!(err("random_choice:").contains("needs choices"));
        assert!(err("counter:-1").contains("START"));
        assert!(err("uuid:4").contains("unknown placeholder"));
    }
}
