//! From the YAML tree to the model: shapes, keys, names, endpoints; every problem collected.

use std::collections::{BTreeMap, HashMap};

use serde_json::Value;

use super::yaml::{Kind, Node, Scalar};
use super::{
    Deploy, Endpoint, GearDef, GearPositions, History, Lane, Meta, Pos, Problem, RackDef, Scenario,
    WireDef, WirePositions, is_name,
};

type Problems = Vec<Problem>;

const NAME_RULE: &str = "use 1 to 64 of a-z, 0-9, '_' and '-'";

/// The entries of a map whose keys were checked against the accepted ones.
struct Fields<'a> {
    pos: Pos,
    entries: &'a [(Node, Node)],
}

impl<'a> Fields<'a> {
    /// The key and value of `key`.
    fn entry(&self, key: &str) -> Option<(&'a Node, &'a Node)> {
        self.entries
            .iter()
            .find(|(k, _)| key_text(k) == Some(key))
            .map(|(k, v)| (k, v))
    }

    /// The value of `key`, if present and not null.
    fn get(&self, key: &str) -> Option<&'a Node> {
        self.entry(key).map(|(_, v)| v).filter(|v| !v.is_null())
    }
}

fn key_text(node: &Node) -> Option<&str> {
    match &node.kind {
        Kind::Scalar { text, .. } => Some(text),
        Kind::Seq(_) | Kind::Map(_) => None,
    }
}

/// `node` as a map whose keys are among `known` (used) and `ignored` (accepted, unused).
fn fields<'a>(
    node: &'a Node,
    what: &str,
    known: &[&str],
    ignored: &[&str],
    problems: &mut Problems,
) -> Option<Fields<'a>> {
    let Kind::Map(entries) = &node.kind else {
        problems.push(Problem::at(
            node.pos,
            format!("{what} must be a map, found {}", node.what()),
        ));
        return None;
    };
    for (key, _) in entries {
        let text = key_text(key).unwrap_or_default();
        if !known.contains(&text) && !ignored.contains(&text) {
            let accepted: Vec<&str> = known.iter().chain(ignored).copied().collect();
            problems.push(Problem::at(
                key.pos,
                format!(
                    "unknown key `{text}` in {what} (accepted: {})",
                    accepted.join(", ")
                ),
            ));
        }
    }
    Some(Fields {
        pos: node.pos,
        entries,
    })
}

/// The items of a list; null is an empty list.
fn list<'a>(node: &'a Node, what: &str, problems: &mut Problems) -> &'a [Node] {
    match &node.kind {
        Kind::Seq(items) => items,
        _ if node.is_null() => &[],
        _ => {
            problems.push(Problem::at(
                node.pos,
                format!("{what} must be a list, found {}", node.what()),
            ));
            &[]
        }
    }
}

/// A scalar's text: strings, and numbers or booleans as written.
fn text(node: &Node, what: &str, problems: &mut Problems) -> Option<String> {
    let text = node.text().map(str::to_owned);
    if text.is_none() {
        problems.push(Problem::at(
            node.pos,
            format!("{what} must be a string, found {}", node.what()),
        ));
    }
    text
}

/// A required string field, with the position of its value.
fn required(
    fields: &Fields<'_>,
    key: &str,
    owner: &str,
    problems: &mut Problems,
) -> Option<(String, Pos)> {
    match fields.entry(key) {
        Some((_, value)) if !value.is_null() => {
            text(value, &format!("`{key}`"), problems).map(|t| (t, value.pos))
        }
        Some((key_node, _)) => {
            problems.push(Problem::at(
                key_node.pos,
                format!("{owner} needs a `{key}`"),
            ));
            None
        }
        None => {
            problems.push(Problem::at(fields.pos, format!("{owner} needs a `{key}`")));
            None
        }
    }
}

fn check_name(name: &str, pos: Pos, what: &str, problems: &mut Problems) {
    if !is_name(name) {
        problems.push(Problem::at(
            pos,
            format!("invalid {what} name `{name}`: {NAME_RULE}"),
        ));
    }
}

pub(crate) fn scenario(root: &Node, problems: &mut Problems) -> Option<Scenario> {
    let Kind::Map(_) = &root.kind else {
        problems.push(Problem::at(
            root.pos,
            format!(
                "a scenario must be a map with meta, racks, gears and wires, found {}",
                root.what()
            ),
        ));
        return None;
    };
    let top = fields(
        root,
        "the scenario",
        &["meta", "racks", "gears", "wires", "pipes"],
        &[],
        problems,
    )?;
    let meta = match top.entry("meta") {
        Some((_, node)) => meta(node, problems),
        None => {
            problems.push(Problem::at(root.pos, "the scenario needs `meta`"));
            None
        }
    };
    let racks: Vec<RackDef> = top
        .entry("racks")
        .map(|(_, v)| list(v, "`racks`", problems))
        .unwrap_or_default()
        .iter()
        .filter_map(|node| rack(node, problems))
        .collect();
    let gears: Vec<GearDef> = top
        .entry("gears")
        .map(|(_, v)| list(v, "`gears`", problems))
        .unwrap_or_default()
        .iter()
        .filter_map(|node| gear(node, problems))
        .collect();
    let wires_node = match (top.entry("wires"), top.entry("pipes")) {
        (Some(_), Some((pipes, _))) => {
            problems.push(Problem::at(
                pipes.pos,
                "`pipes` is the docs alias of `wires`: use one of them, not both",
            ));
            None
        }
        (Some((_, v)), None) => Some((v, "`wires`")),
        (None, Some((_, v))) => Some((v, "`pipes`")),
        (None, None) => None,
    };
    let wires: Vec<WireDef> = wires_node
        .map(|(v, what)| list(v, what, problems))
        .unwrap_or_default()
        .iter()
        .filter_map(|node| wire(node, problems))
        .collect();
    unique(
        racks.iter().map(|r| (r.name.as_str(), r.name_pos)),
        "rack",
        problems,
    );
    unique(
        gears.iter().map(|g| (g.name.as_str(), g.at.name)),
        "gear",
        problems,
    );
    Some(Scenario {
        meta: meta?,
        racks,
        gears,
        wires,
    })
}

fn unique<'a>(names: impl Iterator<Item = (&'a str, Pos)>, what: &str, problems: &mut Problems) {
    let mut seen: HashMap<&str, Pos> = HashMap::new();
    for (name, pos) in names {
        if let Some(first) = seen.get(name) {
            problems.push(Problem::at(
                pos,
                format!("duplicate {what} name `{name}` (first at {first})"),
            ));
        } else {
            seen.insert(name, pos);
        }
    }
}

fn meta(node: &Node, problems: &mut Problems) -> Option<Meta> {
    let f = fields(
        node,
        "`meta`",
        &["name", "version", "description"],
        &["mixer_region"],
        problems,
    )?;
    let name = required(&f, "name", "`meta`", problems);
    let version = required(&f, "version", "`meta`", problems);
    let description = f
        .get("description")
        .and_then(|d| text(d, "`description`", problems));
    Some(Meta {
        name: name?.0,
        version: version?.0,
        description,
        pos: node.pos,
    })
}

fn rack(node: &Node, problems: &mut Problems) -> Option<RackDef> {
    if let Kind::Map(entries) = &node.kind
        && let Some((key, _)) = entries.iter().find(|(k, _)| key_text(k) == Some("group"))
    {
        problems.push(Problem::at(
            key.pos,
            "rack groups are not supported: deploy gears with `deploy: { labels: {...} }` \
             to select racks by label",
        ));
        return None;
    }
    let f = fields(node, "a rack", &["name", "labels"], &["config"], problems)?;
    let name = required(&f, "name", "a rack", problems);
    let labels = f
        .get("labels")
        .map(|l| labels(l, "`labels`", problems))
        .unwrap_or_default();
    let (name, name_pos) = name?;
    check_name(&name, name_pos, "rack", problems);
    Some(RackDef {
        name,
        labels,
        pos: node.pos,
        name_pos,
    })
}

fn labels(node: &Node, what: &str, problems: &mut Problems) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let Kind::Map(entries) = &node.kind else {
        problems.push(Problem::at(
            node.pos,
            format!("{what} must be a map, found {}", node.what()),
        ));
        return out;
    };
    for (key, value) in entries {
        let key = key_text(key).unwrap_or_default().to_owned();
        if let Some(value) = text(value, &format!("label `{key}`"), problems) {
            out.insert(key, value);
        }
    }
    out
}

fn gear(node: &Node, problems: &mut Problems) -> Option<GearDef> {
    let f = fields(
        node,
        "a gear",
        &["name", "type", "deploy", "config"],
        &["labels", "doc", "ports", "id"],
        problems,
    )?;
    let name = required(&f, "name", "a gear", problems);
    let gear_type = required(&f, "type", "a gear", problems);
    let deploy = match f.get("deploy") {
        None => Some(Deploy::Global),
        Some(d) => deploy(d, problems),
    };
    let mut at = GearPositions {
        config_key: node.pos,
        deploy: f.get("deploy").map(|d| d.pos),
        ..GearPositions::default()
    };
    let config = match f.entry("config") {
        Some((key, value)) if !value.is_null() => {
            at.config_key = key.pos;
            json(value, "", &mut at.fields, problems)
        }
        Some((key, _)) => {
            at.config_key = key.pos;
            Some(Value::Object(serde_json::Map::new()))
        }
        None => Some(Value::Object(serde_json::Map::new())),
    };
    let (name, name_pos) = name?;
    check_name(&name, name_pos, "gear", problems);
    let (gear_type, type_pos) = gear_type?;
    at.name = name_pos;
    at.gear_type = type_pos;
    Some(GearDef {
        name,
        gear_type,
        deploy: deploy?,
        config: config?,
        pos: node.pos,
        at,
    })
}

fn deploy(node: &Node, problems: &mut Problems) -> Option<Deploy> {
    match &node.kind {
        Kind::Map(_) => {
            let f = fields(node, "`deploy`", &["labels"], &[], problems)?;
            let Some(sel) = f.get("labels") else {
                problems.push(Problem::at(
                    node.pos,
                    "`deploy` as a map needs `labels` (a map of label: value)",
                ));
                return None;
            };
            let sel = labels(sel, "`deploy.labels`", problems);
            if sel.is_empty() {
                problems.push(Problem::at(
                    node.pos,
                    "`deploy.labels` must name at least one label (leave `deploy` out to run \
                     the gear on every rack)",
                ));
                return None;
            }
            Some(Deploy::Labels(sel))
        }
        Kind::Seq(_) => {
            problems.push(Problem::at(
                node.pos,
                "`deploy` must be a rack name or `{ labels: {...} }`, found a list",
            ));
            None
        }
        Kind::Scalar { .. } => text(node, "`deploy`", problems).map(Deploy::Rack),
    }
}

/// A `config:` subtree as JSON, recording the position of every node under its dotted path.
fn json(
    node: &Node,
    path: &str,
    positions: &mut BTreeMap<String, Pos>,
    problems: &mut Problems,
) -> Option<Value> {
    positions.insert(path.to_owned(), node.pos);
    match &node.kind {
        Kind::Seq(items) => {
            let mut out = Vec::with_capacity(items.len());
            let mut ok = true;
            for (i, item) in items.iter().enumerate() {
                match json(item, &format!("{path}[{i}]"), positions, problems) {
                    Some(v) => out.push(v),
                    None => ok = false,
                }
            }
            ok.then_some(Value::Array(out))
        }
        Kind::Map(entries) => {
            let mut out = serde_json::Map::new();
            let mut ok = true;
            for (key, value) in entries {
                let Some(Scalar::Str(k)) = key.scalar() else {
                    problems.push(Problem::at(
                        key.pos,
                        format!(
                            "a config key must be a string, found {} (quote it)",
                            key.what()
                        ),
                    ));
                    ok = false;
                    continue;
                };
                let sub = if path.is_empty() {
                    k.to_owned()
                } else {
                    format!("{path}.{k}")
                };
                match json(value, &sub, positions, problems) {
                    Some(v) => {
                        out.insert(k.to_owned(), v);
                    }
                    None => ok = false,
                }
            }
            ok.then_some(Value::Object(out))
        }
        Kind::Scalar { .. } => match node.scalar() {
            None | Some(Scalar::Null) => Some(Value::Null),
            Some(Scalar::Bool(b)) => Some(Value::Bool(b)),
            Some(Scalar::Int(n)) => Some(Value::from(n)),
            Some(Scalar::UInt(n)) => Some(Value::from(n)),
            Some(Scalar::Str(s)) => Some(Value::String(s.to_owned())),
            Some(Scalar::Float(f)) => {
                let v = serde_json::Number::from_f64(f).map(Value::Number);
                if v.is_none() {
                    problems.push(Problem::at(
                        node.pos,
                        "infinity and NaN cannot be used in a config (JSON has no such numbers)",
                    ));
                }
                v
            }
        },
    }
}

fn wire(node: &Node, problems: &mut Problems) -> Option<WireDef> {
    let f = fields(
        node,
        "a wire",
        &["from", "to", "lane", "history"],
        &["id"],
        problems,
    )?;
    let from = required(&f, "from", "a wire", problems);
    let to = required(&f, "to", "a wire", problems);
    let lane_node = f.get("lane");
    let lane = match lane_node {
        None => Some(None),
        Some(l) => match l.text() {
            Some("hot") => Some(Some(Lane::Hot)),
            Some("guaranteed") => Some(Some(Lane::Guaranteed)),
            _ => {
                let found = l
                    .text()
                    .map_or_else(|| l.what().to_owned(), |t| format!("`{t}`"));
                problems.push(Problem::at(
                    l.pos,
                    format!("unknown lane {found} (lanes: hot, guaranteed)"),
                ));
                None
            }
        },
    };
    let history_node = f.get("history");
    let history = match history_node {
        None => Some(None),
        Some(h) => match h.text() {
            Some("new") => Some(Some(History::New)),
            Some("all") => Some(Some(History::All)),
            _ => {
                let found = h
                    .text()
                    .map_or_else(|| h.what().to_owned(), |t| format!("`{t}`"));
                problems.push(Problem::at(
                    h.pos,
                    format!("unknown history {found} (histories: new, all)"),
                ));
                None
            }
        },
    };
    let from = from.and_then(|(t, pos)| endpoint(&t, pos, problems).map(|e| (e, pos)));
    let to = to.and_then(|(t, pos)| endpoint(&t, pos, problems).map(|e| (e, pos)));
    let ((from, from_pos), (to, to_pos)) = (from?, to?);
    Some(WireDef {
        from,
        to,
        lane: lane?,
        history: history?,
        pos: node.pos,
        at: WirePositions {
            from: from_pos,
            to: to_pos,
            lane: lane_node.map(|l| l.pos),
            history: history_node.map(|h| h.pos),
        },
    })
}

fn endpoint(text: &str, pos: Pos, problems: &mut Problems) -> Option<Endpoint> {
    let segments: Vec<&str> = text.split('.').collect();
    if !(2..=3).contains(&segments.len()) {
        problems.push(Problem::at(
            pos,
            format!(
                "endpoint `{text}` must be `gear.port` or `rack.gear.port` (port names never \
                 contain dots)"
            ),
        ));
        return None;
    }
    if let Some(bad) = segments.iter().find(|s| !is_name(s)) {
        problems.push(Problem::at(
            pos,
            format!("endpoint `{text}`: invalid segment `{bad}`: {NAME_RULE}"),
        ));
        return None;
    }
    let (rack, gear, port) = match segments.as_slice() {
        [gear, port] => (None, *gear, *port),
        [rack, gear, port] => (Some((*rack).to_owned()), *gear, *port),
        _ => return None,
    };
    Some(Endpoint {
        rack,
        gear: gear.to_owned(),
        port: port.to_owned(),
    })
}
