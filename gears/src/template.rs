//! Text templates with `${...}` placeholders, shared by `transform` and `generate`.
//!
//! `$$` writes a literal `$`. What a placeholder means is up to the gear: the parser hands the
//! text between the braces to a closure that turns it into the gear's own variable type, once,
//! at configuration time.

use std::time::{Duration, UNIX_EPOCH};

use fluxmsg::FluxMsg;

use crate::field::Field;

/// A parsed template: literal text and variables.
#[derive(Debug, Clone)]
pub(crate) struct Template<V> {
    parts: Vec<Part<V>>,
}

#[derive(Debug, Clone)]
enum Part<V> {
    Lit(String),
    Var(V),
}

impl<V> Template<V> {
    /// Parses `src`, turning each placeholder's inner text into a `V` with `var`.
    pub(crate) fn parse(
        src: &str,
        mut var: impl FnMut(&str) -> Result<V, String>,
    ) -> Result<Template<V>, String> {
        let mut parts = Vec::new();
        let mut lit = String::new();
        let mut rest = src;
        while let Some(at) = rest.find('$') {
            lit.push_str(&rest[..at]);
            let after = &rest[at + 1..];
            if let Some(tail) = after.strip_prefix('$') {
                lit.push('$');
                rest = tail;
            } else if let Some(inner) = after.strip_prefix('{') {
                let end = inner
                    .find('}')
                    .ok_or_else(|| format!("unclosed placeholder at byte {at} of {src:?}"))?;
                if !lit.is_empty() {
                    parts.push(Part::Lit(std::mem::take(&mut lit)));
                }
                parts.push(Part::Var(var(inner[..end].trim())?));
                rest = &inner[end + 1..];
            } else {
                lit.push('$');
                rest = after;
            }
        }
        lit.push_str(rest);
        if !lit.is_empty() {
            parts.push(Part::Lit(lit));
        }
        Ok(Template { parts })
    }

    /// The text, if the template has no placeholder.
    pub(crate) fn as_literal(&self) -> Option<&str> {
        match self.parts.as_slice() {
            [] => Some(""),
            [Part::Lit(s)] => Some(s),
            _ => None,
        }
    }

    /// Writes the template into `out`, each variable through `write`.
    pub(crate) fn render(&self, out: &mut String, mut write: impl FnMut(&V, &mut String)) {
        for part in &self.parts {
            match part {
                Part::Lit(s) => out.push_str(s),
                Part::Var(v) => write(v, out),
            }
        }
    }
}

/// The clock placeholders every template understands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Now {
    /// `now`: RFC 3339 UTC with milliseconds.
    Rfc3339,
    /// `now_unix`: seconds since the Unix epoch.
    Unix,
    /// `now_ms`: milliseconds since the Unix epoch.
    UnixMs,
}

impl Now {
    pub(crate) fn parse(name: &str) -> Option<Now> {
        match name {
            "now" => Some(Now::Rfc3339),
            "now_unix" => Some(Now::Unix),
            "now_ms" => Some(Now::UnixMs),
            _ => None,
        }
    }

    /// Writes the time `since_epoch` in this form.
    pub(crate) fn write(self, since_epoch: Duration, out: &mut String) {
        use std::fmt::Write as _;
        let _ = match self {
            Now::Rfc3339 => write!(
                out,
                "{}",
                humantime::format_rfc3339_millis(UNIX_EPOCH + since_epoch)
            ),
            Now::Unix => write!(out, "{}", since_epoch.as_secs()),
            Now::UnixMs => write!(out, "{}", since_epoch.as_millis()),
        };
    }
}

/// A placeholder of a message template: a field of the message or the time.
#[derive(Debug, Clone)]
pub(crate) enum MsgVar {
    Field(Field),
    Now(Now),
}

impl MsgVar {
    pub(crate) fn parse(inner: &str) -> Result<MsgVar, String> {
        match Now::parse(inner) {
            Some(now) => Ok(MsgVar::Now(now)),
            None => Field::parse(inner).map(MsgVar::Field),
        }
    }

    /// Writes the placeholder's value for `msg` at `now`; an absent field writes nothing.
    pub(crate) fn write(&self, msg: &FluxMsg, now: Duration, out: &mut String) {
        match self {
            MsgVar::Field(field) => {
                if let Some(val) = field.get(msg) {
                    val.write_text(out);
                }
            }
            MsgVar::Now(form) => form.write(now, out),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Template;

    fn parse(src: &str) -> Result<Template<String>, String> {
        Template::parse(src, |v| Ok(v.to_owned()))
    }

    fn render(t: &Template<String>) -> String {
        let mut out = String::new();
        t.render(&mut out, |v, out| {
            out.push('<');
            out.push_str(v);
            out.push('>');
        });
        out
    }

    #[test]
    fn placeholders_literals_and_escapes() {
        assert_eq!(
            render(&parse("a ${x} b ${ y }").expect("parses")),
            "a <x> b <y>"
        );
        assert_eq!(
            render(&parse("cost: $$5 $ ok").expect("parses")),
            "cost: $5 $ ok"
        );
        assert_eq!(parse("plain").expect("parses").as_literal(), Some("plain"));
        assert!(parse("${open").is_err());
    }
}
