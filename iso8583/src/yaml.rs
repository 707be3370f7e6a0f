//! A YAML tree with a position on every node, built from saphyr-parser's events (as rack-lib
//! reads scenarios), with limits on depth and size; anchors and aliases are refused.

use std::collections::HashSet;

use saphyr_parser::{Event, Parser, ScalarStyle};

/// How deep collections may nest.
const MAX_DEPTH: usize = 32;

/// How many nodes a spec may hold.
const MAX_NODES: usize = 200_000;

/// A line and column, from 1.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct Pos {
    pub(crate) line: u32,
    pub(crate) col: u32,
}

/// One node and where it starts.
#[derive(Debug, Clone)]
pub(crate) struct Node {
    pub(crate) pos: Pos,
    pub(crate) kind: Kind,
}

#[derive(Debug, Clone)]
pub(crate) enum Kind {
    /// A scalar as written; `plain` when unquoted (so `~`, `null` and the empty text are null).
    Scalar {
        text: String,
        plain: bool,
    },
    Seq(Vec<Node>),
    /// Entries in order; keys are scalars and distinct.
    Map(Vec<(Node, Node)>),
}

impl Node {
    /// The text of a scalar that is not null.
    pub(crate) fn text(&self) -> Option<&str> {
        match &self.kind {
            Kind::Scalar { text, plain } => {
                let null = *plain && matches!(text.as_str(), "" | "~" | "null" | "Null" | "NULL");
                (!null).then_some(text.as_str())
            }
            _ => None,
        }
    }

    /// The entries of a map.
    pub(crate) fn map(&self) -> Option<&[(Node, Node)]> {
        match &self.kind {
            Kind::Map(entries) => Some(entries),
            _ => None,
        }
    }

    /// What it is, for messages.
    pub(crate) fn what(&self) -> &'static str {
        match &self.kind {
            Kind::Seq(_) => "a list",
            Kind::Map(_) => "a map",
            Kind::Scalar { .. } if self.text().is_none() => "null",
            Kind::Scalar { .. } => "a scalar",
        }
    }
}

struct Open {
    pos: Pos,
    seq: Option<Vec<Node>>,
    map: Vec<(Node, Node)>,
    key: Option<Node>,
    seen: HashSet<String>,
}

/// Parses one YAML document.
///
/// # Errors
///
/// The first problem, with its position: a syntax error, several documents, an empty
/// document, an anchor or alias, a collection as a key, a repeated key, a limit passed.
pub(crate) fn parse(text: &str) -> Result<Node, (Pos, String)> {
    let mut stack: Vec<Open> = Vec::new();
    let mut root = None;
    let mut documents = 0;
    let mut nodes = 0usize;
    let mut last = Pos { line: 1, col: 1 };
    for event in Parser::new_from_str(text) {
        let (event, span) = event.map_err(|e| {
            (
                pos(e.marker().line(), e.marker().col()),
                format!("invalid YAML: {}", e.info()),
            )
        })?;
        let at = pos(span.start.line(), span.start.col());
        last = at;
        let finished = match event {
            Event::DocumentStart(_) => {
                documents += 1;
                if documents > 1 {
                    return Err((at, "a spec is a single YAML document".to_owned()));
                }
                None
            }
            Event::Alias(_) => return Err((at, "YAML aliases are not supported in specs".into())),
            Event::Scalar(value, style, anchor, _) => {
                if anchor != 0 {
                    return Err((at, "YAML anchors are not supported in specs".into()));
                }
                Some(Node {
                    pos: at,
                    kind: Kind::Scalar {
                        text: value.into_owned(),
                        plain: style == ScalarStyle::Plain,
                    },
                })
            }
            Event::SequenceStart(anchor, _) | Event::MappingStart(anchor, _) => {
                if anchor != 0 {
                    return Err((at, "YAML anchors are not supported in specs".into()));
                }
                if stack.len() >= MAX_DEPTH {
                    return Err((at, format!("nesting is deeper than {MAX_DEPTH} levels")));
                }
                if let Some(top) = stack.last()
                    && top.seq.is_none()
                    && top.key.is_none()
                {
                    return Err((at, "a map key must be a scalar".into()));
                }
                let seq = matches!(event, Event::SequenceStart(..)).then(Vec::new);
                stack.push(Open {
                    pos: at,
                    seq,
                    map: Vec::new(),
                    key: None,
                    seen: HashSet::new(),
                });
                None
            }
            Event::SequenceEnd | Event::MappingEnd => {
                let Some(open) = stack.pop() else {
                    return Err((at, "invalid YAML: unbalanced collection".into()));
                };
                Some(Node {
                    pos: open.pos,
                    kind: match open.seq {
                        Some(items) => Kind::Seq(items),
                        None => Kind::Map(open.map),
                    },
                })
            }
            _ => None,
        };
        let Some(node) = finished else { continue };
        nodes += 1;
        if nodes > MAX_NODES {
            return Err((at, format!("the spec has more than {MAX_NODES} nodes")));
        }
        match stack.last_mut() {
            None => root = Some(node),
            Some(Open {
                seq: Some(items), ..
            }) => items.push(node),
            Some(open) => match open.key.take() {
                Some(key) => open.map.push((key, node)),
                None => {
                    let Some(k) = node.text() else {
                        return Err((node.pos, "a map key must be a non-null scalar".into()));
                    };
                    if !open.seen.insert(k.to_owned()) {
                        return Err((node.pos, format!("duplicate key `{k}`")));
                    }
                    open.key = Some(node);
                }
            },
        }
    }
    root.ok_or_else(|| (last, "the spec is empty".to_owned()))
}

fn pos(line: usize, col: usize) -> Pos {
    Pos {
        line: u32::try_from(line).unwrap_or(u32::MAX),
        col: u32::try_from(col.saturating_add(1)).unwrap_or(u32::MAX),
    }
}
