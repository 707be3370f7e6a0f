//! Subjects: the one table of them, typed builders, and the validation that keeps a name
//! from ever injecting a subject.
//!
//! Every subject fluxrig uses is built here, from validated tokens, so that a rack called
//! `edge.>` or a gear called `a b` is refused before it can widen a subscription or reach
//! another rack's traffic. Names become tokens only if they are 1 to 64 bytes of ASCII
//! letters, digits, `-` and `_` ([`token`]).
//!
//! | builder | subject | direction |
//! | --- | --- | --- |
//! | [`Subject::hello`] | `flux.agent.hello` | rack → mixer |
//! | [`Subject::heartbeat`] | `flux.agent.heartbeat` | rack → mixer |
//! | [`Subject::status`] | `flux.agent.status` | rack → mixer (push reports) |
//! | [`Subject::enrollment`] | `flux.agent.enrollment.<name>.<nonce>` | mixer → rack |
//! | [`Subject::notify`] | `flux.agent.notify.<machine>` | mixer → rack |
//! | [`Subject::scenario`] | `flux.rack.<rack>.scenario` | mixer → rack |
//! | [`Subject::msg`] | `flux.msg.<rack>.<gear>.<port>` | data plane (stream [`MSG_STREAM`]) |
//! | [`Subject::dead_letter`] | `flux.dlq.<rack>.<gear>.<port>` | messages that exhausted their deliveries |
//! | [`Subject::ctrl`] | `flux.ctrl.<gear>` | gear commands (request/reply) |
//! | [`Subject::telemetry`] | `flux.telemetry.<kind>` | telemetry (stream [`TELEMETRY_STREAM`]) |
//! | [`Subject::timeout`] | `flux.event.timeout.<bucket>` | coat check timeouts |
//!
//! Control subjects (`flux.agent.>`, `flux.rack.>`, `flux.ctrl.>`) stay out of the data
//! stream, which captures `flux.msg.>` only (the Go fluxrig mixed them).
//!
//! ```
//! use snake::{Pattern, Subject};
//!
//! let s = Subject::msg("edge-1", "acceptor", "out")?;
//! assert_eq!(s.as_str(), "flux.msg.edge-1.acceptor.out");
//! assert!(Pattern::msg_rack("edge-1")?.matches(&s));
//! assert!(Subject::msg("edge.>", "acceptor", "out").is_err());
//! # Ok::<(), snake::Error>(())
//! ```

use std::fmt;
use std::sync::Arc;

use crate::Error;

/// The longest name accepted as a subject token, in bytes.
pub const MAX_TOKEN_LEN: usize = 64;

/// The JetStream stream of the data plane; it captures `flux.msg.>`.
pub const MSG_STREAM: &str = "flux-msg";

/// The JetStream stream of telemetry; it captures `flux.telemetry.>`.
pub const TELEMETRY_STREAM: &str = "flux-telemetry";

/// The stream of dead letters; it captures `flux.dlq.>`.
pub const DLQ_STREAM: &str = "flux-dlq";

/// Checks that `name` can be one subject token, and returns it.
///
/// A token is 1 to [`MAX_TOKEN_LEN`] bytes of ASCII letters, digits, `-` and `_`. This
/// refuses everything NATS gives a meaning to (`.`, `*`, `>`, a leading `$`), whitespace and
/// control characters, so a name never changes the shape of a subject. `what` names the
/// name in the error (`"rack name"`, `"port"`).
///
/// # Errors
///
/// [`Error::InvalidName`] with the reason.
pub fn token<'a>(what: &'static str, name: &'a str) -> Result<&'a str, Error> {
    let reason = if name.is_empty() {
        Some("it is empty")
    } else if name.len() > MAX_TOKEN_LEN {
        Some("it is longer than 64 bytes")
    } else if let Some(c) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || *c == '-' || *c == '_'))
    {
        Some(match c {
            '.' => "it contains `.`, the subject separator",
            '*' | '>' => "it contains a subject wildcard",
            c if c.is_whitespace() => "it contains whitespace",
            c if c.is_control() => "it contains a control character",
            _ => "only ASCII letters, digits, `-` and `_` are allowed",
        })
    } else {
        None
    };
    match reason {
        None => Ok(name),
        Some(reason) => Err(Error::InvalidName {
            what,
            name: name.to_owned(),
            reason,
        }),
    }
}

/// A concrete subject (no wildcards), built from validated tokens.
///
/// Cloning is cheap (a reference count), as every message carries one.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Subject(Arc<str>);

impl Subject {
    fn join(parts: &[&str]) -> Subject {
        Subject(parts.join(".").into())
    }

    /// `flux.agent.hello`: a rack introduces itself.
    pub fn hello() -> Subject {
        Subject("flux.agent.hello".into())
    }

    /// `flux.agent.heartbeat`: a rack's periodic heartbeat.
    pub fn heartbeat() -> Subject {
        Subject("flux.agent.heartbeat".into())
    }

    /// `flux.agent.status`: a rack's report on a scenario push (`applying`, `applied`,
    /// `failed`).
    pub fn status() -> Subject {
        Subject("flux.agent.status".into())
    }

    /// `flux.agent.enrollment.<name>.<nonce>`: the mixer's answer to one hello.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidName`] when `name` or `nonce` is not a valid [`token`].
    pub fn enrollment(name: &str, nonce: &str) -> Result<Subject, Error> {
        Ok(Self::join(&[
            "flux.agent.enrollment",
            token("rack name", name)?,
            token("nonce", nonce)?,
        ]))
    }

    /// `flux.agent.notify.<machine>`: the mixer's messages to one machine id.
    pub fn notify(machine_id: u32) -> Subject {
        Subject(format!("flux.agent.notify.{machine_id}").into())
    }

    /// `flux.rack.<rack>.scenario`: scenarios pushed to one rack.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidName`] when `rack` is not a valid [`token`].
    pub fn scenario(rack: &str) -> Result<Subject, Error> {
        Ok(Self::join(&[
            "flux.rack",
            token("rack name", rack)?,
            "scenario",
        ]))
    }

    /// `flux.msg.<rack>.<gear>.<port>`: the data plane, one input port.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidName`] when a name is not a valid [`token`].
    pub fn msg(rack: &str, gear: &str, port: &str) -> Result<Subject, Error> {
        Ok(Self::join(&[
            "flux.msg",
            token("rack name", rack)?,
            token("gear name", gear)?,
            token("port", port)?,
        ]))
    }

    /// `flux.dlq.<rack>.<gear>.<port>`: messages for that port that exhausted their
    /// deliveries, with the reason in headers.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidName`] when a name is not a valid [`token`].
    pub fn dead_letter(rack: &str, gear: &str, port: &str) -> Result<Subject, Error> {
        Ok(Self::join(&[
            "flux.dlq",
            token("rack name", rack)?,
            token("gear name", gear)?,
            token("port", port)?,
        ]))
    }

    /// `flux.ctrl.<gear>`: commands to one gear.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidName`] when `gear` is not a valid [`token`].
    pub fn ctrl(gear: &str) -> Result<Subject, Error> {
        Ok(Self::join(&["flux.ctrl", token("gear name", gear)?]))
    }

    /// `flux.telemetry.<kind>`: one kind of telemetry batch.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidName`] when `kind` is not a valid [`token`].
    pub fn telemetry(kind: &str) -> Result<Subject, Error> {
        Ok(Self::join(&[
            "flux.telemetry",
            token("telemetry kind", kind)?,
        ]))
    }

    /// `flux.event.timeout.<bucket>`: coat check timeouts of one bucket.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidName`] when `bucket` is not a valid [`token`].
    pub fn timeout(bucket: &str) -> Result<Subject, Error> {
        Ok(Self::join(&[
            "flux.event.timeout",
            token("bucket", bucket)?,
        ]))
    }

    /// Reads a subject from text, as a transport hands it over: dot-separated tokens, each
    /// valid as [`token`] says (so no wildcards).
    ///
    /// # Errors
    ///
    /// [`Error::InvalidName`] naming the first bad token.
    pub fn parse(s: &str) -> Result<Subject, Error> {
        for part in s.split('.') {
            token("subject token", part)?;
        }
        Ok(Subject(s.into()))
    }

    /// The subject as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The subject's tokens.
    pub fn tokens(&self) -> impl Iterator<Item = &str> + '_ {
        self.0.split('.')
    }
}

impl fmt::Display for Subject {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl AsRef<str> for Subject {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

/// A subscription pattern: a subject whose tokens may be `*` (exactly one token) or, last,
/// `>` (one or more tokens), as NATS matches them.
///
/// ```
/// use snake::{Pattern, Subject};
///
/// let p = Pattern::parse("flux.msg.*.acceptor.>")?;
/// assert!(p.matches(&Subject::msg("edge-1", "acceptor", "out")?));
/// assert!(!p.matches(&Subject::msg("edge-1", "issuer", "out")?));
/// # Ok::<(), snake::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Pattern {
    text: String,
    /// Where the first wildcard starts, and whether the pattern is `<literal prefix>.>`:
    /// the shapes that match without splitting the subject into tokens.
    shape: Shape,
}

/// How a pattern matches, decided once when it is built.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
enum Shape {
    /// No wildcard: equality.
    Exact,
    /// Literal tokens then a final `>`: a prefix test (the prefix keeps its dot).
    Prefix(usize),
    /// Anything else: token by token.
    General,
}

impl Pattern {
    fn new(text: String) -> Pattern {
        let has_star = text.split('.').any(|t| t == "*");
        let shape = if text == ">" {
            Shape::Prefix(0)
        } else if !has_star && text.ends_with(".>") {
            Shape::Prefix(text.len() - 1)
        } else if !has_star && !text.ends_with(".>") {
            Shape::Exact
        } else {
            Shape::General
        };
        Pattern { text, shape }
    }

    /// Reads a pattern: dot-separated tokens, each a valid [`token`] or `*`, and `>` only as
    /// the last token.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidName`] naming the first bad token.
    pub fn parse(s: &str) -> Result<Pattern, Error> {
        let mut parts = s.split('.').peekable();
        while let Some(part) = parts.next() {
            match part {
                "*" => {}
                ">" if parts.peek().is_none() => {}
                ">" => {
                    return Err(Error::InvalidName {
                        what: "subject pattern",
                        name: s.to_owned(),
                        reason: "`>` may only be the last token",
                    });
                }
                _ => {
                    token("subject token", part)?;
                }
            }
        }
        Ok(Pattern::new(s.to_owned()))
    }

    /// `flux.msg.>`: the whole data plane.
    pub fn msg_all() -> Pattern {
        Pattern::new("flux.msg.>".to_owned())
    }

    /// `flux.msg.<rack>.>`: every port of one rack.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidName`] when `rack` is not a valid [`token`].
    pub fn msg_rack(rack: &str) -> Result<Pattern, Error> {
        Ok(Pattern::new(format!(
            "flux.msg.{}.>",
            token("rack name", rack)?
        )))
    }

    /// `flux.dlq.>`: every dead letter.
    pub fn dead_letters() -> Pattern {
        Pattern::new("flux.dlq.>".to_owned())
    }

    /// `flux.agent.>`: everything racks send the mixer and the mixer sends racks.
    pub fn agent_all() -> Pattern {
        Pattern::new("flux.agent.>".to_owned())
    }

    /// `flux.telemetry.>`: every telemetry batch.
    pub fn telemetry_all() -> Pattern {
        Pattern::new("flux.telemetry.>".to_owned())
    }

    /// The pattern as text.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// Whether `subject` matches, as NATS decides it.
    pub fn matches(&self, subject: &Subject) -> bool {
        let subject = subject.as_str();
        match self.shape {
            Shape::Exact => self.text == subject,
            // Tokens are never empty, so anything after the prefix is one token or more.
            Shape::Prefix(n) => {
                subject.len() > n && subject.as_bytes().starts_with(&self.text.as_bytes()[..n])
            }
            Shape::General => matches(&self.text, subject),
        }
    }

    /// Whether the pattern has wildcards (else it matches exactly one subject).
    pub fn is_wildcard(&self) -> bool {
        self.shape != Shape::Exact
    }
}

impl From<Subject> for Pattern {
    fn from(s: Subject) -> Self {
        Pattern::new(s.0.to_string())
    }
}

impl fmt::Display for Pattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

/// NATS matching of a dot-separated pattern against a subject.
pub(crate) fn matches(pattern: &str, subject: &str) -> bool {
    if pattern == subject {
        return true;
    }
    let mut subject = subject.split('.');
    for p in pattern.split('.') {
        match (p, subject.next()) {
            (">", Some(_)) => return true,
            ("*", Some(_)) => {}
            (p, Some(s)) if p == s => {}
            _ => return false,
        }
    }
    subject.next().is_none()
}

/// Checks a key: 1 to 256 bytes of letters, digits, `-`, `_`, `=`, `/` and `.`, with no
/// empty dot-separated part (keys are subject tokens under the hood in NATS).
pub(crate) fn kv_key(key: &str) -> Result<&str, Error> {
    let ok = !key.is_empty()
        && key.len() <= 256
        && key
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'=' | b'/' | b'.'))
        && !key.split('.').any(str::is_empty);
    if ok {
        Ok(key)
    } else {
        Err(Error::InvalidKey(key.to_owned()))
    }
}
