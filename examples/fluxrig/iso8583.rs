//! `fluxrig iso8583 decode|encode` (one ISO 8583 message to JSON and back) and
//! `fluxrig spec check|doc` (a spec's problems, a spec's fields per message type).
//!
//! The JSON of a message is `{"mti": "0100", "fields": {"2": "…", "48": {"1": "…"}}}`:
//! fields in wire order, text fields as text, binary fields as hex (text that is not UTF-8
//! as `hex:` and hex), composite fields as objects of their subfields. `decode` masks
//! classified fields (PANs show their first 6 and last 4 digits, track data, PIN blocks and
//! EMV data nothing) unless `--reveal`; what `encode` reads back must be revealed.

use std::fmt::Write as _;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use anyhow::{Context as _, anyhow, bail};
use clap::{Subcommand, ValueEnum};
use iso8583::{
    Field, FieldRef, FieldSpec, Layout, Message, Sensitivity, Spec, SpecLoader, SubKey, Subfield,
    Usage, mask_value,
};
use serde::de::{self, Deserialize, Deserializer, MapAccess, Visitor};

use super::Failure;

#[derive(Debug, Subcommand)]
pub(crate) enum Iso8583Command {
    /// Read one message on stdin (bytes, or hex with --hex) and print it as JSON.
    Decode {
        /// `builtin:spec87ascii`, `builtin:spec87hex`, or a spec file.
        #[arg(long)]
        spec: String,
        /// Stdin holds the message as hex text (whitespace ignored).
        #[arg(long)]
        hex: bool,
        /// Show classified fields (PAN, track data, PIN block, EMV data) unmasked.
        #[arg(long)]
        reveal: bool,
    },
    /// Read a message as JSON on stdin (as `decode --reveal` prints it) and write its bytes.
    Encode {
        /// `builtin:spec87ascii`, `builtin:spec87hex`, or a spec file.
        #[arg(long)]
        spec: String,
        /// Write the message as hex text instead of bytes.
        #[arg(long)]
        hex: bool,
    },
}

#[derive(Debug, Subcommand)]
pub(crate) enum SpecCommand {
    /// Load a spec and report every problem with its line:col (status 1 if any).
    Check {
        /// The spec file (YAML, the Spec Definition Language).
        file: PathBuf,
    },
    /// Document a spec: its fields, and a table of fields per message type.
    Doc {
        /// The spec file.
        file: PathBuf,
        /// The output format.
        #[arg(long, value_enum, default_value_t = DocFormat::Markdown)]
        format: DocFormat,
        /// Leave out the fields whose sensitivity is not `none`.
        #[arg(long)]
        public: bool,
    },
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub(crate) enum DocFormat {
    /// Markdown tables.
    Markdown,
}

pub(crate) fn iso8583(
    command: &Iso8583Command,
    input: &mut dyn Read,
    output: &mut dyn Write,
) -> Result<(), Failure> {
    match command {
        Iso8583Command::Decode { spec, hex, reveal } => {
            let spec = load(spec)?;
            let mut bytes = Vec::new();
            input.read_to_end(&mut bytes).context("reading stdin")?;
            if *hex {
                bytes = unhex(&String::from_utf8_lossy(&bytes)).context("reading hex on stdin")?;
            }
            let msg = spec.unpack(&bytes).context("invalid ISO 8583 message")?;
            writeln!(output, "{}", to_json(&spec, &msg, *reveal))?;
            Ok(())
        }
        Iso8583Command::Encode { spec, hex } => {
            let spec = load(spec)?;
            let mut text = String::new();
            input.read_to_string(&mut text).context("reading stdin")?;
            let json: Json = serde_json::from_str(&text).context("invalid JSON")?;
            let msg = from_json(&spec, &json)?;
            let bytes = spec
                .pack_to_vec(&msg)
                .context("the message does not pack")?;
            if *hex {
                writeln!(output, "{}", to_hex(&bytes))?;
            } else {
                output.write_all(&bytes)?;
            }
            Ok(())
        }
    }
}

pub(crate) fn spec(command: &SpecCommand, output: &mut dyn Write) -> Result<(), Failure> {
    match command {
        SpecCommand::Check { file } => {
            let spec = load_file(file)?;
            let fields = spec.fields().filter(|f| f.number() >= 2).count();
            writeln!(
                output,
                "ok: {} {} (hash {}), {fields} fields",
                spec.id(),
                spec.version(),
                spec.hash()
            )?;
            Ok(())
        }
        SpecCommand::Doc {
            file,
            format: DocFormat::Markdown,
            public,
        } => {
            let spec = load_file(file)?;
            output.write_all(markdown(&spec, *public).as_bytes())?;
            Ok(())
        }
    }
}

/// The spec a `--spec` names: `builtin:spec87ascii`, `builtin:spec87hex`, or a file.
fn load(name: &str) -> Result<Spec, Failure> {
    if let Some(builtin) = name.strip_prefix("builtin:") {
        return Spec::builtin(&format!("moov:{builtin}")).ok_or_else(|| {
            anyhow!("unknown built-in spec {name:?}: use builtin:spec87ascii or builtin:spec87hex")
                .into()
        });
    }
    load_file(Path::new(name))
}

/// Loads a spec file; every problem goes on a line of its own, with its `line:col`.
fn load_file(path: &Path) -> Result<Spec, Failure> {
    let name = path.display().to_string();
    let text = std::fs::read_to_string(path).with_context(|| format!("reading {name}"))?;
    let dir = path.parent().map(Path::to_path_buf).unwrap_or_default();
    SpecLoader::new(|rel| std::fs::read_to_string(dir.join(rel)).ok())
        .load(&name, &text)
        .map_err(|e| {
            let lines: Vec<String> = e.problems.iter().map(ToString::to_string).collect();
            anyhow::Error::msg(lines.join("\n"))
                .context(format!(
                    "{name}: the spec has {} problem(s)",
                    e.problems.len()
                ))
                .into()
        })
}

/// Whether a field's value shows in `decode` without `--reveal`.
fn classified(spec: Option<&FieldSpec>) -> Sensitivity {
    let Some(sem) = spec.map(FieldSpec::semantic) else {
        return Sensitivity::None;
    };
    match sem.sensitivity() {
        Sensitivity::None if sem.log_mask() => Sensitivity::Pii,
        s => s,
    }
}

fn text_of(value: &[u8], binary: bool) -> String {
    match std::str::from_utf8(value) {
        Ok(s) if !binary => s.to_owned(),
        _ if binary => to_hex(value),
        _ => format!("hex:{}", to_hex(value)),
    }
}

fn to_json(spec: &Spec, msg: &Message, reveal: bool) -> String {
    let q = |s: &str| serde_json::Value::from(s).to_string();
    let mut out = format!("{{\"mti\": {}, \"fields\": {{", q(msg.mti()));
    for (i, (n, field)) in msg.iter().enumerate() {
        if i > 0 {
            out.push_str(", ");
        }
        let fspec = spec.field(n);
        let sens = classified(fspec);
        let _ = write!(out, "{}: ", q(&n.to_string()));
        match field {
            FieldRef::Value(v) if reveal || sens == Sensitivity::None => {
                out.push_str(&q(&text_of(v, fspec.is_some_and(FieldSpec::is_binary))));
            }
            FieldRef::Value(v) => out.push_str(&q(&mask_value(v, sens))),
            FieldRef::Composite(_) if !reveal && sens != Sensitivity::None => {
                out.push_str(&q(&spec.render(n, field)));
            }
            FieldRef::Composite(subs) => {
                let comp = fspec.and_then(FieldSpec::composite);
                out.push('{');
                for (j, s) in subs.iter().enumerate() {
                    if j > 0 {
                        out.push_str(", ");
                    }
                    let sub_spec = comp.and_then(|c| c.subfield(s.key));
                    let sub_sens = classified(sub_spec);
                    let value = if reveal || sub_sens == Sensitivity::None {
                        text_of(s.value, sub_spec.is_none_or(FieldSpec::is_binary))
                    } else {
                        mask_value(s.value, sub_sens)
                    };
                    let _ = write!(out, "{}: {}", q(&s.key.to_string()), q(&value));
                }
                out.push('}');
            }
        }
    }
    out.push_str("}}");
    out
}

fn from_json(spec: &Spec, json: &Json) -> Result<Message, Failure> {
    let Json::Object(top) = json else {
        return Err(anyhow!("the message is not a JSON object").into());
    };
    let get = |key: &str| top.iter().find(|(k, _)| k == key).map(|(_, v)| v);
    let Some(Json::Text(mti)) = get("mti") else {
        return Err(anyhow!("the message has no \"mti\" text").into());
    };
    let mut msg = Message::new(mti.as_str());
    let fields = match get("fields") {
        None => return Ok(msg),
        Some(Json::Object(fields)) => fields,
        Some(_) => return Err(anyhow!("\"fields\" is not an object").into()),
    };
    for (key, value) in fields {
        let n = key
            .parse::<u16>()
            .ok()
            .filter(|n| *n >= 2)
            .and_then(|n| spec.field(n).map(|f| (n, f)));
        let Some((n, fspec)) = n else {
            return Err(anyhow!("fields.{key}: not a field of the spec").into());
        };
        let field = match value {
            Json::Object(subs) => {
                let Some(comp) = fspec.composite() else {
                    return Err(anyhow!("fields.{key}: field {n} has no subfields").into());
                };
                let tlv = comp.layout() == Layout::Tlv;
                let mut list = Vec::with_capacity(subs.len());
                for (k, v) in subs {
                    let path = format!("fields.{key}.{k}");
                    let Some(sub) = SubKey::parse(k, tlv) else {
                        return Err(anyhow!("{path}: not a subfield key").into());
                    };
                    let sub_spec = comp.subfield(sub);
                    let bytes = bytes_of(v, sub_spec.is_none_or(FieldSpec::is_binary), &path)?;
                    let mut s = Subfield::new(sub, bytes);
                    // A tag the spec does not define is kept as an unknown tag.
                    s.unknown = tlv && sub_spec.is_none();
                    list.push(s);
                }
                Field::Composite(list)
            }
            other => Field::Value(bytes_of(
                other,
                fspec.is_binary(),
                &format!("fields.{key}"),
            )?),
        };
        msg.set(n, field);
    }
    Ok(msg)
}

fn bytes_of(value: &Json, binary: bool, path: &str) -> Result<Vec<u8>, Failure> {
    match value {
        Json::Text(t) if binary => Ok(unhex(t).with_context(|| format!("{path}: hex"))?),
        Json::Text(t) => match t.strip_prefix("hex:") {
            Some(h) => Ok(unhex(h).with_context(|| format!("{path}: hex"))?),
            None => Ok(t.as_bytes().to_vec()),
        },
        Json::Number(n) => Ok(n.clone().into_bytes()),
        _ => Err(anyhow!("{path}: neither text nor a number").into()),
    }
}

fn to_hex(bytes: &[u8]) -> String {
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(s, "{b:02X}");
    }
    s
}

fn unhex(text: &str) -> anyhow::Result<Vec<u8>> {
    let digits: Vec<u8> = text.bytes().filter(|b| !b.is_ascii_whitespace()).collect();
    if !digits.len().is_multiple_of(2) {
        bail!("an odd number of hex digits");
    }
    digits
        .chunks(2)
        .map(|pair| {
            let pair = std::str::from_utf8(pair).unwrap_or("zz");
            u8::from_str_radix(pair, 16).map_err(|_| anyhow!("{pair:?} is not a hex byte"))
        })
        .collect()
}

/// The Markdown documentation of a spec: every field, then a table per message type that
/// the spec's usage rules name (and one for the others).
fn markdown(spec: &Spec, public: bool) -> String {
    let fields: Vec<&FieldSpec> = spec
        .fields()
        .filter(|f| f.number() >= 2)
        .filter(|f| !public || f.semantic().sensitivity() == Sensitivity::None)
        .collect();
    let mut out = String::new();
    let _ = writeln!(
        out,
        "# {}\n\n`{}` version {}, hash `{}`.\n\n## Fields\n",
        spec.name(),
        spec.id(),
        spec.version(),
        spec.hash()
    );
    out.push_str("| field | name | alias | type | length | prefix | sensitivity |\n");
    out.push_str("|---|---|---|---|---|---|---|\n");
    for f in &fields {
        let sem = f.semantic();
        let name = sem.name().unwrap_or(f.description());
        let alias = sem.alias().map(|a| format!("`{a}`")).unwrap_or_default();
        let _ = writeln!(
            out,
            "| {} | {} | {alias} | {:?} | {} | {} | {} |",
            f.number(),
            cell(name),
            f.kind(),
            f.length(),
            f.prefix(),
            sem.sensitivity().as_str()
        );
    }
    // The message types the usage rules name: those where some field's usage is not the
    // default one.
    let mtis: Vec<String> = (0..10_000)
        .map(|i| format!("{i:04}"))
        .filter(|mti| {
            spec.fields()
                .any(|f| f.semantic().usage(mti) != f.semantic().usage(""))
        })
        .collect();
    for mti in mtis.iter().map(Some).chain([None]) {
        let title = mti.map_or_else(
            || {
                if mtis.is_empty() {
                    "Every message type".to_owned()
                } else {
                    "Other message types".to_owned()
                }
            },
            |m| format!("MTI {m}"),
        );
        let _ = writeln!(
            out,
            "\n## {title}\n\n| field | name | usage |\n|---|---|---|"
        );
        for f in &fields {
            let sem = f.semantic();
            let usage = match sem.usage(mti.map_or("", String::as_str)) {
                Usage::Mandatory => "mandatory",
                Usage::Optional => "optional",
                Usage::Forbidden => "forbidden",
            };
            let name = sem.name().unwrap_or(f.description());
            let _ = writeln!(out, "| {} | {} | {usage} |", f.number(), cell(name));
        }
    }
    out
}

/// Text for a Markdown table cell.
fn cell(text: &str) -> String {
    text.replace('|', "\\|").replace('\n', " ")
}

/// JSON that keeps the order of object keys (the workspace's serde_json sorts them), so that
/// BER-TLV tags are written back in the order they came.
#[derive(Debug)]
enum Json {
    Text(String),
    Number(String),
    Object(Vec<(String, Json)>),
    Other,
}

impl<'de> Deserialize<'de> for Json {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Json, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Json;

            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("JSON")
            }

            fn visit_str<E: de::Error>(self, v: &str) -> Result<Json, E> {
                Ok(Json::Text(v.to_owned()))
            }

            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Json, E> {
                Ok(Json::Number(v.to_string()))
            }

            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Json, E> {
                Ok(Json::Number(v.to_string()))
            }

            fn visit_f64<E: de::Error>(self, _: f64) -> Result<Json, E> {
                Ok(Json::Other)
            }

            fn visit_bool<E: de::Error>(self, _: bool) -> Result<Json, E> {
                Ok(Json::Other)
            }

            fn visit_unit<E: de::Error>(self) -> Result<Json, E> {
                Ok(Json::Other)
            }

            fn visit_seq<A: de::SeqAccess<'de>>(self, mut seq: A) -> Result<Json, A::Error> {
                while seq.next_element::<Json>()?.is_some() {}
                Ok(Json::Other)
            }

            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Json, A::Error> {
                let mut entries = Vec::new();
                while let Some((k, v)) = map.next_entry::<String, Json>()? {
                    entries.push((k, v));
                }
                Ok(Json::Object(entries))
            }
        }
        deserializer.deserialize_any(V)
    }
}
