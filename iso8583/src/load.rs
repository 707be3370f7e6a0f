//! Loading a spec from YAML in the Spec Definition Language: every problem is collected,
//! with its path and position, and any problem rejects the whole spec.

use sha2::{Digest, Sha256};

use crate::builtin;
use crate::error::{Problem, SpecError};
use crate::spec::{
    Composite, Encoding, FieldPath, FieldSpec, FieldType, Layout, MAX_FIELD, PadSide, Padding,
    Prefix, PrefixKind, Semantic, Sensitivity, Spec, SubKey, UnknownTags, Usage, UsageRule,
    ValueSet,
};
use crate::yaml::{self, Node, Pos};

/// Keys of the wire layer, refused in the semantic layer.
const WIRE_KEYS: [&str; 10] = [
    "type",
    "length",
    "enc",
    "prefix",
    "padding",
    "layout",
    "bitmap",
    "unknown_tags",
    "description",
    "tag",
];

/// Loads specs whose `wire.source` may name a file beside them.
///
/// `read` is given the relative path of the source (already checked not to leave the spec's
/// directory: no absolute path, no `..`) and returns its text, or `None` when it cannot be
/// read; it is how an application lets the loader see files, so this crate does no I/O.
///
/// ```
/// use iso8583::SpecLoader;
///
/// let wire = "fields:\n  \"2\": {type: String, length: 19, enc: ASCII, prefix: ASCII.LL}\n";
/// let spec_text = "spec: {id: demo, version: 1.0.0}\nwire:\n  source: wire/base.yaml\n";
/// let loader = SpecLoader::new(|path| (path == "wire/base.yaml").then(|| wire.to_owned()));
/// let err = loader.load("demo.yaml", spec_text).unwrap_err();
/// // The base has no MTI or bitmap: the loader says so, with where.
/// assert!(err.to_string().contains("field 0"));
/// ```
pub struct SpecLoader<F> {
    read: F,
}

impl<F> std::fmt::Debug for SpecLoader<F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SpecLoader").finish_non_exhaustive()
    }
}

impl<F: FnMut(&str) -> Option<String>> SpecLoader<F> {
    /// A loader that reads wire sources through `read`.
    pub fn new(read: F) -> Self {
        SpecLoader { read }
    }

    /// Loads the spec in `text`; `file` names it in problems.
    ///
    /// # Errors
    ///
    /// Every problem found, each with its file, path and `line:col`.
    pub fn load(mut self, file: &str, text: &str) -> Result<Spec, SpecError> {
        load(file, text, &mut self.read)
    }
}

impl Spec {
    /// Loads a spec from YAML whose `wire.source` is built in (`moov:spec87ascii`,
    /// `moov:spec87hex`) or absent; use [`SpecLoader`] for a source in a file.
    ///
    /// # Errors
    ///
    /// Every problem found, each with its path and `line:col`.
    pub fn from_yaml(text: &str) -> Result<Spec, SpecError> {
        load("spec", text, &mut |_| None)
    }

    /// A built-in wire layer as a spec of its own (`moov:spec87ascii`, `moov:spec87hex`):
    /// ISO 8583:1987 as moov-io/iso8583 defines it, with the PCI classes of DE 2, 34, 35,
    /// 36, 45, 52 and 55.
    pub fn builtin(name: &str) -> Option<Spec> {
        let fields = builtin::fields(name)?;
        Some(Spec {
            id: name.to_owned(),
            version: "1987".to_owned(),
            name: name.to_owned(),
            hash: hash(&[name.as_bytes()]),
            fields,
            aliases: Vec::new(),
            enums: Vec::new(),
        })
    }
}

fn hash(parts: &[&[u8]]) -> String {
    let mut h = Sha256::new();
    for p in parts {
        h.update((p.len() as u64).to_be_bytes());
        h.update(p);
    }
    let digest = h.finalize();
    digest[..6].iter().map(|b| format!("{b:02x}")).collect()
}

struct Ctx {
    file: String,
    problems: Vec<Problem>,
}

impl Ctx {
    fn problem(&mut self, path: &str, pos: Pos, message: impl Into<String>) {
        self.problems.push(Problem {
            file: self.file.clone(),
            path: path.to_owned(),
            line: pos.line,
            col: pos.col,
            message: message.into(),
        });
    }

    /// The entries of a map node, or a problem.
    fn map<'n>(&mut self, path: &str, node: &'n Node) -> &'n [(Node, Node)] {
        match node.map() {
            Some(m) => m,
            None => {
                self.problem(
                    path,
                    node.pos,
                    format!("expected a map, found {}", node.what()),
                );
                &[]
            }
        }
    }

    fn text<'n>(&mut self, path: &str, node: &'n Node) -> Option<&'n str> {
        let t = node.text();
        if t.is_none() {
            self.problem(
                path,
                node.pos,
                format!("expected a value, found {}", node.what()),
            );
        }
        t
    }

    fn check_keys(&mut self, path: &str, entries: &[(Node, Node)], allowed: &[&str]) {
        for (k, _) in entries {
            let key = k.text().unwrap_or_default();
            if !allowed.contains(&key) {
                self.problem(
                    &join(path, key),
                    k.pos,
                    format!(
                        "unknown key `{key}` (expected one of: {})",
                        allowed.join(", ")
                    ),
                );
            }
        }
    }
}

fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_owned()
    } else {
        format!("{path}.{key}")
    }
}

fn get<'n>(entries: &'n [(Node, Node)], key: &str) -> Option<&'n Node> {
    entries
        .iter()
        .find(|(k, _)| k.text() == Some(key))
        .map(|(_, v)| v)
}

fn load(
    file: &str,
    text: &str,
    read: &mut dyn FnMut(&str) -> Option<String>,
) -> Result<Spec, SpecError> {
    let mut cx = Ctx {
        file: file.to_owned(),
        problems: Vec::new(),
    };
    let root = match yaml::parse(text) {
        Ok(root) => root,
        Err((pos, message)) => {
            cx.problem("", pos, message);
            return Err(SpecError {
                problems: cx.problems,
            });
        }
    };
    let top = cx.map("", &root);
    cx.check_keys("", top, &["spec", "wire"]);

    // Wire layer: the source, then `wire.fields` merged over it.
    let mut fields: Vec<Option<FieldSpec>> = vec![None; usize::from(MAX_FIELD) + 1];
    let mut source_text = String::new();
    match get(top, "wire") {
        None => cx.problem("wire", root.pos, "missing `wire` block"),
        Some(wire) => {
            let entries = cx.map("wire", wire);
            cx.check_keys("wire", entries, &["source", "fields"]);
            if let Some(src) = get(entries, "source")
                && let Some(name) = cx.text("wire.source", src)
            {
                if let Some(base) = builtin::fields(name) {
                    fields = base;
                } else if name.contains(':') {
                    cx.problem(
                        "wire.source",
                        src.pos,
                        format!(
                            "unknown built-in source `{name}` (expected {} or a relative path)",
                            builtin::SOURCES.join(", ")
                        ),
                    );
                } else if name.starts_with('/')
                    || name.starts_with('\\')
                    || name.split(['/', '\\']).any(|seg| seg == "..")
                {
                    cx.problem(
                        "wire.source",
                        src.pos,
                        format!("`{name}` leaves the spec's directory"),
                    );
                } else {
                    match read(name) {
                        None => cx.problem(
                            "wire.source",
                            src.pos,
                            format!("cannot read the wire source `{name}`"),
                        ),
                        Some(source) => {
                            source_text = source;
                            load_wire_file(&mut cx, name, &source_text, &mut fields);
                        }
                    }
                }
            }
            if let Some(list) = get(entries, "fields") {
                merge_fields(&mut cx, "wire.fields", list, &mut fields);
            }
        }
    }
    for n in [0u16, 1] {
        if fields[usize::from(n)].is_none() {
            cx.problem(
                "wire",
                root.pos,
                format!("the wire layer has no field {n} (the MTI and the bitmap are required)"),
            );
        }
    }

    // Semantic layer.
    let mut id = String::new();
    let mut version = String::new();
    let mut name = None;
    let mut aliases: Vec<(String, FieldPath)> = Vec::new();
    let mut enums: Vec<ValueSet> = Vec::new();
    match get(top, "spec") {
        None => cx.problem("spec", root.pos, "missing `spec` block"),
        Some(spec) => {
            let entries = cx.map("spec", spec);
            cx.check_keys(
                "spec",
                entries,
                &[
                    "id",
                    "version",
                    "name",
                    "overview",
                    "references",
                    "fields",
                    "enums",
                    "checks",
                    "x-fluxrig-simulation",
                ],
            );
            for (key, slot) in [("id", &mut id), ("version", &mut version)] {
                match get(entries, key) {
                    None => cx.problem(
                        &join("spec", key),
                        spec.pos,
                        format!("missing `spec.{key}`"),
                    ),
                    Some(v) => {
                        if let Some(t) = cx.text(&join("spec", key), v) {
                            *slot = t.to_owned();
                        }
                    }
                }
            }
            if let Some(v) = get(entries, "name") {
                name = cx.text("spec.name", v).map(str::to_owned);
            }
            if let Some(e) = get(entries, "enums") {
                enums = load_enums(&mut cx, e);
            }
            if let Some(list) = get(entries, "fields") {
                load_semantic(&mut cx, list, &mut fields, &mut aliases, &enums);
            }
        }
    }
    if !cx.problems.is_empty() {
        return Err(SpecError {
            problems: cx.problems,
        });
    }
    Ok(Spec {
        name: name.unwrap_or_else(|| id.clone()),
        hash: hash(&[text.as_bytes(), source_text.as_bytes()]),
        id,
        version,
        fields,
        aliases,
        enums,
    })
}

fn load_wire_file(cx: &mut Ctx, name: &str, text: &str, fields: &mut [Option<FieldSpec>]) {
    let outer = std::mem::replace(&mut cx.file, name.to_owned());
    match yaml::parse(text) {
        Err((pos, message)) => cx.problem("", pos, message),
        Ok(root) => {
            let entries = cx.map("", &root);
            cx.check_keys("", entries, &["fields", "name", "description"]);
            match get(entries, "fields") {
                Some(list) => merge_fields(cx, "fields", list, fields),
                None => cx.problem("fields", root.pos, "the wire source has no `fields`"),
            }
        }
    }
    cx.file = outer;
}

fn field_number(cx: &mut Ctx, path: &str, key: &Node) -> Option<u16> {
    let text = key.text().unwrap_or_default();
    match text.parse::<u16>() {
        Ok(n) if n <= MAX_FIELD => Some(n),
        _ => {
            cx.problem(
                path,
                key.pos,
                format!("`{text}` is not a field number from 0 to {MAX_FIELD}"),
            );
            None
        }
    }
}

fn merge_fields(cx: &mut Ctx, path: &str, list: &Node, fields: &mut [Option<FieldSpec>]) {
    for (k, v) in cx.map(path, list) {
        let fpath = join(path, k.text().unwrap_or_default());
        let Some(n) = field_number(cx, &fpath, k) else {
            continue;
        };
        // On a problem the field stays as it was, so later checks do not cascade.
        let base = fields[usize::from(n)].clone();
        if let Some(f) = wire_field(cx, &fpath, v, n, base, false, false) {
            fields[usize::from(n)] = Some(f);
        }
    }
}

/// Reads one wire field (or subfield) over `base`; `None` after a problem.
fn wire_field(
    cx: &mut Ctx,
    path: &str,
    node: &Node,
    number: u16,
    base: Option<FieldSpec>,
    sub: bool,
    tlv_sub: bool,
) -> Option<FieldSpec> {
    let entries = cx.map(path, node);
    cx.check_keys(
        path,
        entries,
        &[
            "type",
            "length",
            "description",
            "enc",
            "prefix",
            "padding",
            "subfields",
            "layout",
            "unknown_tags",
            "bitmap",
        ],
    );
    let before = cx.problems.len();
    let fresh = base.is_none();
    // The built-in PCI classes are those of top-level fields, not of subfield positions.
    let class = if sub {
        Sensitivity::None
    } else {
        builtin::default_sensitivity(number)
    };
    let mut f = base.unwrap_or_else(|| FieldSpec {
        number,
        description: String::new(),
        kind: FieldType::String,
        length: 0,
        enc: Encoding::Ascii,
        prefix: Prefix::FIXED,
        padding: None,
        composite: None,
        semantic: Semantic {
            sensitivity: class,
            log_mask: class != Sensitivity::None,
            ..Semantic::default()
        },
    });
    if fresh {
        for key in ["type", "length"] {
            if get(entries, key).is_none() && !(tlv_sub && key == "length") {
                cx.problem(&join(path, key), node.pos, format!("missing `{key}`"));
            }
        }
        if tlv_sub {
            f.kind = FieldType::Binary;
            f.enc = Encoding::Binary;
            f.length = 252;
        }
    }
    if let Some(v) = get(entries, "description") {
        f.description = v.text().unwrap_or_default().to_owned();
    }
    if let Some(v) = get(entries, "type") {
        let p = join(path, "type");
        if let Some(t) = cx.text(&p, v) {
            f.kind = match t {
                "String" => FieldType::String,
                "Numeric" => FieldType::Numeric,
                "Binary" => FieldType::Binary,
                "Bitmap" => FieldType::Bitmap,
                "Composite" => FieldType::Composite,
                "Hex" => FieldType::Hex,
                "Track2" => FieldType::Track2,
                _ => {
                    cx.problem(
                        &p,
                        v.pos,
                        format!(
                            "unknown type `{t}` (expected String, Numeric, Binary, Bitmap, \
                             Composite, Hex or Track2)"
                        ),
                    );
                    f.kind
                }
            };
        }
    }
    if let Some(v) = get(entries, "length") {
        let p = join(path, "length");
        match v.text().and_then(|t| t.parse::<usize>().ok()) {
            Some(n) if (1..=99_999).contains(&n) => f.length = n,
            _ => cx.problem(&p, v.pos, "`length` must be a whole number from 1 to 99999"),
        }
    }
    let mut tlv_enc = false;
    if let Some(v) = get(entries, "enc") {
        let p = join(path, "enc");
        if let Some(t) = cx.text(&p, v) {
            f.enc = match t {
                "ASCII" => Encoding::Ascii,
                "EBCDIC" | "EBCDIC037" => Encoding::Ebcdic037,
                "EBCDIC1047" => Encoding::Ebcdic1047,
                "BCD" => Encoding::Bcd,
                "LBCD" => Encoding::Lbcd,
                "Binary" => Encoding::Binary,
                "HexToASCII" | "BytesToASCIIHex" | "Hex" => Encoding::HexToAscii,
                "ASCIIHexToBytes" => Encoding::AsciiHexToBytes,
                "Track2" => Encoding::Track2,
                "BerTLV" => {
                    tlv_enc = true;
                    Encoding::Binary
                }
                _ => {
                    cx.problem(
                        &p,
                        v.pos,
                        format!(
                            "unknown encoding `{t}` (expected ASCII, EBCDIC, EBCDIC1047, BCD, \
                             LBCD, Binary, HexToASCII, ASCIIHexToBytes, Track2 or BerTLV)"
                        ),
                    );
                    f.enc
                }
            };
        }
    }
    if let Some(v) = get(entries, "prefix") {
        let p = join(path, "prefix");
        if let Some(t) = cx.text(&p, v) {
            match parse_prefix(t) {
                Some(prefix) => f.prefix = prefix,
                None => cx.problem(
                    &p,
                    v.pos,
                    format!(
                        "unknown prefix `{t}` (expected ASCII, BCD, Binary, EBCDIC or Hex, a \
                         dot, then Fixed, L, LL, LLL or LLLL)"
                    ),
                ),
            }
        }
    }
    if let Some(v) = get(entries, "padding") {
        let p = join(path, "padding");
        let pe = cx.map(&p, v);
        cx.check_keys(&p, pe, &["type", "pad"]);
        let side = match get(pe, "type").and_then(Node::text) {
            Some("Left") => Some(PadSide::Left),
            Some("Right") => Some(PadSide::Right),
            _ => {
                cx.problem(
                    &join(&p, "type"),
                    v.pos,
                    "`padding.type` must be Left or Right",
                );
                None
            }
        };
        let pad = match get(pe, "pad").and_then(Node::text) {
            Some(s) if s.len() == 1 => Some(s.as_bytes()[0]),
            _ => {
                cx.problem(
                    &join(&p, "pad"),
                    v.pos,
                    "`padding.pad` must be one character",
                );
                None
            }
        };
        if let (Some(side), Some(pad)) = (side, pad) {
            f.padding = Some(Padding { side, pad });
        }
    }
    // Composites.
    let layout_node = get(entries, "layout");
    if f.kind == FieldType::Composite || get(entries, "subfields").is_some() || tlv_enc {
        let mut layout = f.composite.as_ref().map(|c| c.layout);
        if tlv_enc {
            layout = Some(Layout::Tlv);
        }
        if let Some(v) = layout_node {
            layout = match v.text() {
                Some("positional") => Some(Layout::Positional),
                Some("bitmapped" | "bitmap") => Some(Layout::Bitmapped),
                Some("tlv") => Some(Layout::Tlv),
                _ => {
                    cx.problem(
                        &join(path, "layout"),
                        v.pos,
                        "`layout` must be positional, bitmapped or tlv",
                    );
                    None
                }
            };
        }
        let layout = layout.unwrap_or(Layout::Positional);
        f.kind = FieldType::Composite;
        let mut comp = f.composite.take().map_or_else(
            || Composite {
                layout,
                subfields: Vec::new(),
                bitmap: None,
                unknown_tags: UnknownTags::Preserve,
            },
            |c| *c,
        );
        comp.layout = layout;
        if let Some(v) = get(entries, "unknown_tags") {
            comp.unknown_tags = match v.text() {
                Some("preserve") => UnknownTags::Preserve,
                Some("reject") => UnknownTags::Reject,
                _ => {
                    cx.problem(
                        &join(path, "unknown_tags"),
                        v.pos,
                        "`unknown_tags` must be preserve or reject",
                    );
                    comp.unknown_tags
                }
            };
        }
        if let Some(v) = get(entries, "bitmap") {
            let p = join(path, "bitmap");
            let be = cx.map(&p, v);
            cx.check_keys(&p, be, &["length", "enc"]);
            let len = get(be, "length")
                .and_then(Node::text)
                .and_then(|t| t.parse::<usize>().ok())
                .filter(|n| (1..=16).contains(n));
            let enc = match get(be, "enc").and_then(Node::text) {
                None | Some("Binary") => Some(Encoding::Binary),
                Some("HexToASCII" | "Hex" | "BytesToASCIIHex") => Some(Encoding::HexToAscii),
                Some(_) => None,
            };
            match (len, enc) {
                (Some(len), Some(enc)) => comp.bitmap = Some((len, enc)),
                _ => cx.problem(
                    &p,
                    v.pos,
                    "`bitmap` needs `length` (bytes, 1 to 16) and `enc` (Binary or HexToASCII)",
                ),
            }
        }
        if let Some(list) = get(entries, "subfields") {
            let sp = join(path, "subfields");
            for (k, v) in cx.map(&sp, list) {
                let text = k.text().unwrap_or_default();
                let kp = join(&sp, text);
                let Some(key) = SubKey::parse(text, layout == Layout::Tlv) else {
                    let expected = if layout == Layout::Tlv {
                        "a BER-TLV tag in hex (`9F02`)"
                    } else {
                        "a position from 1"
                    };
                    cx.problem(&kp, k.pos, format!("`{text}` is not {expected}"));
                    continue;
                };
                if let (Layout::Bitmapped, SubKey::Index(i)) = (layout, key) {
                    let bits = comp.bitmap.map_or(64, |(l, _)| l * 8);
                    if usize::from(i) > bits {
                        cx.problem(&kp, k.pos, format!("bit {i} is past the {bits}-bit bitmap"));
                    }
                }
                let base = comp
                    .subfields
                    .iter()
                    .position(|(sk, _)| *sk == key)
                    .map(|i| comp.subfields.remove(i).1);
                let number = match key {
                    SubKey::Index(i) => i,
                    SubKey::Tag(_) => 0,
                };
                if let Some(sub) = wire_field(cx, &kp, v, number, base, true, layout == Layout::Tlv)
                {
                    if sub.composite.is_some() {
                        cx.problem(&kp, v.pos, "subfields cannot have subfields of their own");
                    }
                    comp.subfields.push((key, sub));
                }
            }
        }
        if layout == Layout::Positional && comp.subfields.is_empty() {
            cx.problem(path, node.pos, "a composite field needs `subfields`");
        }
        if layout == Layout::Positional {
            comp.subfields.sort_by_key(|(k, _)| *k);
        }
        if !matches!(
            f.enc,
            Encoding::Binary | Encoding::Ascii | Encoding::HexToAscii
        ) {
            cx.problem(
                &join(path, "enc"),
                node.pos,
                "a composite field's `enc` must be Binary, ASCII, HexToASCII or BerTLV",
            );
        }
        f.composite = Some(Box::new(comp));
    } else if let Some(v) = layout_node {
        cx.problem(
            &join(path, "layout"),
            v.pos,
            "`layout` is for composite fields only",
        );
    }
    // Consistency.
    if f.kind == FieldType::Bitmap && number != 1 && number != 65 {
        cx.problem(path, node.pos, "only field 1 (and 65) can be a Bitmap");
    }
    if number == 1
        && !tlv_sub
        && !matches!(
            f.enc,
            Encoding::Binary | Encoding::HexToAscii | Encoding::Ascii
        )
    {
        cx.problem(
            &join(path, "enc"),
            node.pos,
            "the bitmap's `enc` must be Binary or HexToASCII",
        );
    }
    if !f.prefix.is_fixed() && f.length > f.prefix.max_len() {
        cx.problem(
            &join(path, "length"),
            node.pos,
            format!(
                "length {} does not fit the prefix {} (at most {})",
                f.length,
                f.prefix,
                f.prefix.max_len()
            ),
        );
    }
    if let Some(p) = f.padding
        && matches!(f.enc, Encoding::Bcd | Encoding::Lbcd | Encoding::Track2)
        && !p.pad.is_ascii_hexdigit()
    {
        cx.problem(
            &join(path, "padding.pad"),
            node.pos,
            "a BCD field's pad must be a hex digit",
        );
    }
    if f.enc == Encoding::AsciiHexToBytes && f.kind == FieldType::Numeric {
        cx.problem(
            &join(path, "type"),
            node.pos,
            "ASCIIHexToBytes values are hex text: use type Hex or String",
        );
    }
    (cx.problems.len() == before).then_some(f)
}

fn parse_prefix(text: &str) -> Option<Prefix> {
    let (kind, len) = text.split_once('.')?;
    let kind = match kind {
        "ASCII" => PrefixKind::Ascii,
        "BCD" => PrefixKind::Bcd,
        "Binary" => PrefixKind::Binary,
        "EBCDIC" | "EBCDIC1047" => PrefixKind::Ebcdic,
        "Hex" => PrefixKind::Hex,
        _ => return None,
    };
    let digits = match len {
        "Fixed" => 0,
        "L" => 1,
        "LL" => 2,
        "LLL" => 3,
        "LLLL" => 4,
        _ => return None,
    };
    Some(Prefix { kind, digits })
}

fn load_enums(cx: &mut Ctx, node: &Node) -> Vec<ValueSet> {
    let mut out = Vec::new();
    for (k, v) in cx.map("spec.enums", node) {
        let name = k.text().unwrap_or_default().to_owned();
        let p = join("spec.enums", &name);
        let entries = cx.map(&p, v);
        cx.check_keys(&p, entries, &["closed", "values", "description"]);
        let closed = match get(entries, "closed").and_then(Node::text) {
            None | Some("false") => false,
            Some("true") => true,
            Some(_) => {
                cx.problem(&join(&p, "closed"), v.pos, "`closed` must be true or false");
                false
            }
        };
        let mut values = Vec::new();
        if let Some(list) = get(entries, "values") {
            let vp = join(&p, "values");
            for (vk, vv) in cx.map(&vp, list) {
                let value = vk.text().unwrap_or_default().to_owned();
                let (vname, category) = match vv.map() {
                    Some(m) => {
                        cx.check_keys(&join(&vp, &value), m, &["name", "category", "note"]);
                        (
                            get(m, "name").and_then(Node::text).map(str::to_owned),
                            get(m, "category").and_then(Node::text).map(str::to_owned),
                        )
                    }
                    None => (vv.text().map(str::to_owned), None),
                };
                values.push((value, vname, category));
            }
        } else {
            cx.problem(&join(&p, "values"), v.pos, "a value set needs `values`");
        }
        out.push(ValueSet {
            name,
            closed,
            values,
        });
    }
    out
}

fn load_semantic(
    cx: &mut Ctx,
    list: &Node,
    fields: &mut [Option<FieldSpec>],
    aliases: &mut Vec<(String, FieldPath)>,
    enums: &[ValueSet],
) {
    const KEYS: [&str; 11] = [
        "name",
        "alias",
        "meaning",
        "note",
        "sensitivity",
        "log_mask",
        "scope",
        "values_ref",
        "messages",
        "subfields",
        "format",
    ];
    for (k, v) in cx.map("spec.fields", list) {
        let fpath = join("spec.fields", k.text().unwrap_or_default());
        let Some(n) = field_number(cx, &fpath, k) else {
            continue;
        };
        let entries = cx.map(&fpath, v);
        for (wk, _) in entries {
            let key = wk.text().unwrap_or_default();
            if WIRE_KEYS.contains(&key) {
                cx.problem(
                    &join(&fpath, key),
                    wk.pos,
                    format!("`{key}` is a wire key: it belongs under `wire.fields.{n}`"),
                );
            }
        }
        let wire_keys_ok: Vec<(Node, Node)> = entries
            .iter()
            .filter(|(wk, _)| !WIRE_KEYS.contains(&wk.text().unwrap_or_default()))
            .cloned()
            .collect();
        cx.check_keys(&fpath, &wire_keys_ok, &KEYS);
        let Some(field) = fields[usize::from(n)].as_mut() else {
            cx.problem(&fpath, k.pos, format!("field {n} is not in the wire layer"));
            continue;
        };
        let path = FieldPath {
            field: n,
            sub: None,
        };
        semantic(
            cx,
            &fpath,
            entries,
            &mut field.semantic,
            path,
            aliases,
            enums,
        );
        if let Some(subs) = get(entries, "subfields") {
            let sp = join(&fpath, "subfields");
            let Some(comp) = field.composite.as_deref_mut() else {
                cx.problem(&sp, subs.pos, format!("field {n} has no wire subfields"));
                continue;
            };
            let tlv = comp.layout == Layout::Tlv;
            for (sk, sv) in cx.map(&sp, subs) {
                let text = sk.text().unwrap_or_default();
                let kp = join(&sp, text);
                let key = SubKey::parse(text, tlv);
                let Some(sub) = key.and_then(|key| {
                    comp.subfields
                        .iter_mut()
                        .find(|(k, _)| *k == key)
                        .map(|(_, f)| f)
                }) else {
                    cx.problem(
                        &kp,
                        sk.pos,
                        format!("`{text}` is not a wire subfield of field {n}"),
                    );
                    continue;
                };
                let se = cx.map(&kp, sv);
                cx.check_keys(
                    &kp,
                    se,
                    &[
                        "name",
                        "alias",
                        "meaning",
                        "note",
                        "sensitivity",
                        "log_mask",
                        "values_ref",
                        "scope",
                        "format",
                    ],
                );
                let path = FieldPath { field: n, sub: key };
                semantic(cx, &kp, se, &mut sub.semantic, path, aliases, enums);
            }
        }
    }
}

fn semantic(
    cx: &mut Ctx,
    path: &str,
    entries: &[(Node, Node)],
    sem: &mut Semantic,
    target: FieldPath,
    aliases: &mut Vec<(String, FieldPath)>,
    enums: &[ValueSet],
) {
    if let Some(v) = get(entries, "name") {
        sem.name = v.text().map(str::to_owned);
    }
    if let Some(v) = get(entries, "alias") {
        let p = join(path, "alias");
        if let Some(a) = cx.text(&p, v) {
            if fluxmsg::check_path(a).is_err() || a.starts_with("iso8583.") || a == "iso8583" {
                cx.problem(
                    &p,
                    v.pos,
                    format!("`{a}` is not a dotted data path outside `iso8583`"),
                );
            } else if let Some((_, other)) = aliases.iter().find(|(x, _)| x == a) {
                cx.problem(&p, v.pos, format!("alias `{a}` is already field {other}"));
            } else {
                aliases.push((a.to_owned(), target));
                sem.alias = Some(a.to_owned());
            }
        }
    }
    if let Some(v) = get(entries, "sensitivity") {
        let p = join(path, "sensitivity");
        sem.sensitivity = match v.text() {
            Some("pan") => Sensitivity::Pan,
            Some("chd") => Sensitivity::Chd,
            Some("sad") => Sensitivity::Sad,
            Some("pii") => Sensitivity::Pii,
            Some("none") => Sensitivity::None,
            _ => {
                cx.problem(
                    &p,
                    v.pos,
                    "`sensitivity` must be pan, chd, sad, pii or none",
                );
                sem.sensitivity
            }
        };
        sem.log_mask = sem.sensitivity != Sensitivity::None;
    }
    if let Some(v) = get(entries, "log_mask") {
        let p = join(path, "log_mask");
        match v.text() {
            Some("true") => sem.log_mask = true,
            Some("false") if sem.sensitivity != Sensitivity::None => cx.problem(
                &p,
                v.pos,
                format!(
                    "`log_mask` cannot be false on a field classified `{}`",
                    sem.sensitivity.as_str()
                ),
            ),
            Some("false") => sem.log_mask = false,
            _ => cx.problem(&p, v.pos, "`log_mask` must be true or false"),
        }
    }
    if let Some(v) = get(entries, "values_ref") {
        let p = join(path, "values_ref");
        let name = v.text().unwrap_or_default();
        match enums.iter().position(|e| e.name == name) {
            Some(i) => sem.values_ref = Some(i),
            None => cx.problem(
                &p,
                v.pos,
                format!("no value set `{name}` under `spec.enums`"),
            ),
        }
    }
    if let Some(v) = get(entries, "messages") {
        let p = join(path, "messages");
        let Some(items) = (match &v.kind {
            crate::yaml::Kind::Seq(items) => Some(items),
            _ => None,
        }) else {
            cx.problem(&p, v.pos, "`messages` must be a list");
            return;
        };
        let mut rules = Vec::new();
        for (i, item) in items.iter().enumerate() {
            let ip = format!("{p}[{i}]");
            let e = cx.map(&ip, item);
            cx.check_keys(&ip, e, &["mti", "usage", "response_value", "when", "note"]);
            let mut mtis = Vec::new();
            match get(e, "mti") {
                None => {
                    if i + 1 != items.len() {
                        cx.problem(
                            &ip,
                            item.pos,
                            "an entry without `mti` is the default and must be last",
                        );
                    }
                }
                Some(m) => {
                    let list: Vec<&Node> = match &m.kind {
                        crate::yaml::Kind::Seq(xs) => xs.iter().collect(),
                        _ => vec![m],
                    };
                    for x in list {
                        match x.text() {
                            Some(t) if t.len() == 4 && t.bytes().all(|b| b.is_ascii_digit()) => {
                                mtis.push(t.to_owned());
                            }
                            _ => cx.problem(
                                &join(&ip, "mti"),
                                x.pos,
                                "an MTI is four digits (quote it: \"0100\")",
                            ),
                        }
                    }
                }
            }
            let usage = match get(e, "usage").and_then(Node::text) {
                Some("mandatory") => Usage::Mandatory,
                Some("optional") => Usage::Optional,
                Some("forbidden") => Usage::Forbidden,
                _ => {
                    cx.problem(
                        &join(&ip, "usage"),
                        item.pos,
                        "`usage` must be mandatory, optional or forbidden",
                    );
                    Usage::Optional
                }
            };
            rules.push(UsageRule { mtis, usage });
        }
        sem.usage = rules;
    }
}
