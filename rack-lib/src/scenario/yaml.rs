//! A YAML tree with a position on every node, built from saphyr-parser's events without
//! recursion, with limits on depth and size and resolved aliases.

use std::collections::{HashMap, HashSet};

use saphyr_parser::{Event, Marker, Parser, ScalarStyle, Tag};

use super::{Pos, Problem};

/// How deep collections may nest.
pub(crate) const MAX_DEPTH: usize = 64;

/// How many nodes a document may hold, aliases counted in full.
pub(crate) const MAX_NODES: usize = 100_000;

/// How many bytes of scalar text a document may hold, aliases counted in full (16 MiB): an
/// anchored scalar referenced many times costs what it expands to, not what it is written as.
pub(crate) const MAX_TEXT: usize = 16 << 20;

/// One YAML node and where it starts.
#[derive(Debug, Clone)]
pub(crate) struct Node {
    pub(crate) pos: Pos,
    pub(crate) kind: Kind,
    /// Nodes in this subtree, itself included.
    size: usize,
    /// Bytes of scalar text in this subtree.
    text: usize,
    /// Collections nested in this subtree, itself included (0 for a scalar).
    height: usize,
}

#[derive(Debug, Clone)]
pub(crate) enum Kind {
    /// A scalar as written; `plain` when it is unquoted and untagged (so it may be a number,
    /// a boolean or null), false when it is a string whatever it looks like.
    Scalar {
        text: String,
        plain: bool,
    },
    Seq(Vec<Node>),
    /// Entries in order; keys are scalars and distinct (checked while building).
    Map(Vec<(Node, Node)>),
}

/// What a scalar means under the YAML 1.2 core schema.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Scalar<'a> {
    Null,
    Bool(bool),
    Int(i64),
    UInt(u64),
    Float(f64),
    Str(&'a str),
}

impl Node {
    /// The scalar's meaning, or `None` for a collection.
    pub(crate) fn scalar(&self) -> Option<Scalar<'_>> {
        match &self.kind {
            Kind::Scalar { text, plain: true } => Some(resolve(text)),
            Kind::Scalar { text, plain: false } => Some(Scalar::Str(text)),
            Kind::Seq(_) | Kind::Map(_) => None,
        }
    }

    /// The text of a scalar that is not null (numbers and booleans as written).
    pub(crate) fn text(&self) -> Option<&str> {
        match &self.kind {
            Kind::Scalar { text, .. } if !self.is_null() => Some(text),
            _ => None,
        }
    }

    pub(crate) fn is_null(&self) -> bool {
        matches!(self.scalar(), Some(Scalar::Null))
    }

    /// What it is, for messages: "a map", "a list", "null", "a string".
    pub(crate) fn what(&self) -> &'static str {
        match &self.kind {
            Kind::Seq(_) => "a list",
            Kind::Map(_) => "a map",
            Kind::Scalar { .. } => match self.scalar() {
                Some(Scalar::Null) => "null",
                Some(Scalar::Bool(_)) => "a boolean",
                Some(Scalar::Int(_) | Scalar::UInt(_)) => "an integer",
                Some(Scalar::Float(_)) => "a number",
                _ => "a string",
            },
        }
    }
}

fn resolve(text: &str) -> Scalar<'_> {
    match text {
        "" | "~" | "null" | "Null" | "NULL" => return Scalar::Null,
        "true" | "True" | "TRUE" => return Scalar::Bool(true),
        "false" | "False" | "FALSE" => return Scalar::Bool(false),
        ".inf" | ".Inf" | ".INF" | "+.inf" | "+.Inf" | "+.INF" => {
            return Scalar::Float(f64::INFINITY);
        }
        "-.inf" | "-.Inf" | "-.INF" => return Scalar::Float(f64::NEG_INFINITY),
        ".nan" | ".NaN" | ".NAN" => return Scalar::Float(f64::NAN),
        _ => {}
    }
    let radix = |digits: &str, radix: u32| {
        (!digits.is_empty())
            .then(|| u64::from_str_radix(digits, radix).ok())
            .flatten()
    };
    if let Some(hex) = text.strip_prefix("0x") {
        if let Some(n) = radix(hex, 16) {
            return int(n);
        }
        return Scalar::Str(text);
    }
    if let Some(oct) = text.strip_prefix("0o") {
        if let Some(n) = radix(oct, 8) {
            return int(n);
        }
        return Scalar::Str(text);
    }
    let unsigned = text.strip_prefix(['-', '+']).unwrap_or(text);
    if !unsigned.is_empty() && unsigned.bytes().all(|b| b.is_ascii_digit()) {
        if let Ok(n) = text.parse::<i64>() {
            return Scalar::Int(n);
        }
        if let Ok(n) = unsigned.parse::<u64>()
            && !text.starts_with('-')
        {
            return Scalar::UInt(n);
        }
        // Too large for 64 bits: a float, as YAML readers usually do.
        return text.parse().map_or(Scalar::Str(text), Scalar::Float);
    }
    let float_chars = unsigned
        .bytes()
        .all(|b| b.is_ascii_digit() || matches!(b, b'.' | b'e' | b'E' | b'-' | b'+'));
    let starts_well = unsigned.starts_with(|c: char| c.is_ascii_digit() || c == '.');
    if float_chars
        && starts_well
        && unsigned.bytes().any(|b| b.is_ascii_digit())
        && let Ok(f) = text.parse::<f64>()
    {
        return Scalar::Float(f);
    }
    Scalar::Str(text)
}

fn int(n: u64) -> Scalar<'static> {
    i64::try_from(n).map_or(Scalar::UInt(n), Scalar::Int)
}

pub(crate) fn pos(marker: &Marker) -> Pos {
    Pos {
        line: u32::try_from(marker.line()).unwrap_or(u32::MAX),
        col: u32::try_from(marker.col().saturating_add(1)).unwrap_or(u32::MAX),
    }
}

/// A collection being built.
struct Open {
    pos: Pos,
    anchor: usize,
    body: Body,
}

enum Body {
    Seq(Vec<Node>),
    Map {
        entries: Vec<(Node, Node)>,
        key: Option<Node>,
        seen: HashSet<String>,
    },
}

#[derive(Default)]
struct Builder {
    stack: Vec<Open>,
    anchors: HashMap<usize, Node>,
    root: Option<Node>,
    nodes: usize,
    text: usize,
    documents: usize,
}

/// Parses one YAML document into a tree.
///
/// # Errors
///
/// The first problem: a syntax error, more than one document, an empty document, a limit
/// passed, a key that is not a scalar or is repeated, an unsupported tag or merge key.
pub(crate) fn parse(text: &str) -> Result<Node, Problem> {
    let mut builder = Builder::default();
    let mut last = Pos { line: 1, col: 1 };
    for event in Parser::new_from_str(text) {
        let (event, span) = event
            .map_err(|e| Problem::at(pos(e.marker()), format!("invalid YAML: {}", e.info())))?;
        let at = pos(&span.start);
        last = at;
        builder.event(event, at)?;
    }
    builder
        .root
        .ok_or_else(|| Problem::at(last, "the scenario is empty"))
}

impl Builder {
    fn event(&mut self, event: Event<'_>, at: Pos) -> Result<(), Problem> {
        match event {
            Event::DocumentStart(_) => {
                self.documents += 1;
                if self.documents > 1 {
                    return Err(Problem::at(
                        at,
                        "a scenario is a single YAML document (found another `---`)",
                    ));
                }
            }
            Event::Alias(id) => {
                let Some(node) = self.anchors.get(&id) else {
                    return Err(Problem::at(at, "alias to an unknown anchor"));
                };
                if self.stack.len() + node.height > MAX_DEPTH {
                    return Err(Problem::at(
                        at,
                        format!("nesting is deeper than {MAX_DEPTH} levels (through this alias)"),
                    ));
                }
                let (size, text) = (node.size, node.text);
                // Charged before it is copied: the copy is what an alias bomb would cost.
                self.count(size, text, at)?;
                let Some(mut node) = self.anchors.get(&id).cloned() else {
                    return Err(Problem::at(at, "alias to an unknown anchor"));
                };
                node.pos = at;
                self.push(node, 0)?;
            }
            Event::Scalar(value, style, anchor, tag) => {
                let plain = match tag.as_deref() {
                    None => style == ScalarStyle::Plain,
                    Some(tag) => core_tag(tag, at)? != "str",
                };
                if plain && value == "<<" && self.expects_key() {
                    return Err(Problem::at(at, "merge keys (`<<`) are not supported"));
                }
                self.count(1, value.len(), at)?;
                let node = Node {
                    pos: at,
                    text: value.len(),
                    kind: Kind::Scalar {
                        text: value.into_owned(),
                        plain,
                    },
                    size: 1,
                    height: 0,
                };
                self.push(node, anchor)?;
            }
            Event::SequenceStart(anchor, ref tag) | Event::MappingStart(anchor, ref tag) => {
                if let Some(tag) = tag.as_deref() {
                    core_tag(tag, at)?;
                }
                if self.stack.len() >= MAX_DEPTH {
                    return Err(Problem::at(
                        at,
                        format!("nesting is deeper than {MAX_DEPTH} levels"),
                    ));
                }
                if self.expects_key() {
                    return Err(Problem::at(
                        at,
                        "a map key must be a scalar, not a collection",
                    ));
                }
                self.count(1, 0, at)?;
                let body = if matches!(event, Event::SequenceStart(..)) {
                    Body::Seq(Vec::new())
                } else {
                    Body::Map {
                        entries: Vec::new(),
                        key: None,
                        seen: HashSet::new(),
                    }
                };
                self.stack.push(Open {
                    pos: at,
                    anchor,
                    body,
                });
            }
            Event::SequenceEnd | Event::MappingEnd => {
                let Some(open) = self.stack.pop() else {
                    return Err(Problem::at(at, "invalid YAML: unbalanced collection"));
                };
                let (kind, children) = match open.body {
                    Body::Seq(items) => {
                        let children = items
                            .iter()
                            .map(|n| (n.size, n.height, n.text))
                            .collect::<Vec<_>>();
                        (Kind::Seq(items), children)
                    }
                    Body::Map { entries, .. } => {
                        let children = entries
                            .iter()
                            .flat_map(|(k, v)| {
                                [(k.size, k.height, k.text), (v.size, v.height, v.text)]
                            })
                            .collect::<Vec<_>>();
                        (Kind::Map(entries), children)
                    }
                };
                let size = 1 + children.iter().map(|c| c.0).sum::<usize>();
                let height = 1 + children.iter().map(|c| c.1).max().unwrap_or(0);
                let text = children.iter().map(|c| c.2).sum::<usize>();
                let node = Node {
                    pos: open.pos,
                    kind,
                    size,
                    text,
                    height,
                };
                self.push(node, open.anchor)?;
            }
            Event::Nothing | Event::StreamStart | Event::StreamEnd | Event::DocumentEnd => {}
        }
        Ok(())
    }

    fn expects_key(&self) -> bool {
        matches!(
            self.stack.last(),
            Some(Open {
                body: Body::Map { key: None, .. },
                ..
            })
        )
    }

    /// Charges `nodes` nodes and `text` bytes of scalars to the document.
    fn count(&mut self, nodes: usize, text: usize, at: Pos) -> Result<(), Problem> {
        self.text = self.text.saturating_add(text);
        if self.text > MAX_TEXT {
            return Err(Problem::at(
                at,
                format!(
                    "the scenario holds more than {} MiB of text (an alias counts as a copy \
                     of what it refers to)",
                    MAX_TEXT >> 20
                ),
            ));
        }
        self.nodes = self.nodes.saturating_add(nodes);
        if self.nodes > MAX_NODES {
            return Err(Problem::at(
                at,
                format!(
                    "the scenario has more than {MAX_NODES} nodes (an alias counts as a copy \
                     of what it refers to)"
                ),
            ));
        }
        Ok(())
    }

    /// Attaches a finished node to the collection being built, or makes it the root.
    fn push(&mut self, node: Node, anchor: usize) -> Result<(), Problem> {
        if anchor != 0 {
            // A stored copy costs as much as the nodes it holds.
            self.count(node.size, node.text, node.pos)?;
            self.anchors.insert(anchor, node.clone());
        }
        match self.stack.last_mut() {
            None => self.root = Some(node),
            Some(Open {
                body: Body::Seq(items),
                ..
            }) => items.push(node),
            Some(Open {
                body: Body::Map { entries, key, seen },
                ..
            }) => match key.take() {
                Some(k) => entries.push((k, node)),
                None => {
                    let Kind::Scalar { text, .. } = &node.kind else {
                        return Err(Problem::at(
                            node.pos,
                            "a map key must be a scalar, not a collection",
                        ));
                    };
                    if !seen.insert(text.clone()) {
                        return Err(Problem::at(node.pos, format!("duplicate key `{text}`")));
                    }
                    *key = Some(node);
                }
            },
        }
        Ok(())
    }
}

/// The suffix of a core schema tag (`str`, `int`, `map`, ...); any other tag is refused.
fn core_tag(tag: &Tag, at: Pos) -> Result<&str, Problem> {
    const CORE: [&str; 7] = ["str", "int", "float", "bool", "null", "map", "seq"];
    if tag.is_yaml_core_schema() && CORE.contains(&tag.suffix.as_str()) {
        Ok(&tag.suffix)
    } else {
        Err(Problem::at(
            at,
            format!("unsupported YAML tag `{}{}`", tag.handle, tag.suffix),
        ))
    }
}
