//! The `codec_iso8583` gear: ISO 8583 bytes to fields and back, as an [`iso8583::Spec`]
//! says.
//!
//! **Decoding** reads `raw` and writes the fields under `data.iso8583.field.<n>` (a composite
//! field as a map of its subfields), again under each alias the spec gives, and the metadata
//! `iso8583.mti`, `iso8583.mti_class`, `codec.protocol`, `codec.spec_id`,
//! `codec.spec_version` and `codec.spec_hash`; `raw` keeps the bytes. **Encoding** does the
//! reverse: the MTI from `meta.iso8583.mti`, the fields from `data.iso8583.field` and the
//! aliases (which win), packed into `raw`. Decoding a message and encoding it again gives the
//! same bytes.
//!
//! ```yaml
//! - name: codec
//!   type: codec_iso8583
//!   config:
//!     spec: specs/acquirer.yaml   # or builtin:spec87ascii, builtin:spec87hex
//!     direction: auto             # auto (default) | decode | encode
//!     on_error: reject            # reject (default) | drop | kill
//!     validation: warn            # off (default) | warn | enforce
//! ```
//!
//! - `spec`: `builtin:spec87ascii` or `builtin:spec87hex` (ISO 8583:1987 as moov-io/iso8583
//!   defines it), or the path of a spec in the Spec Definition Language (a relative path
//!   from the process's working directory; a `wire.source` file beside the spec is read from
//!   the spec's directory). The file is read and checked when the gear is built, so a spec
//!   that does not load fails the scenario's validation with every problem and its `line:col`.
//! - `direction`: `auto` decodes a message that has `raw` and no `data.iso8583`, and encodes
//!   any other.
//! - `on_error`: what happens to a message that does not decode or encode (or, under
//!   `validation: enforce`, breaks the spec's rules). `reject` sends it to `error`; `drop`
//!   drops it, counted with the reason `codecerror` or `validationerror`; `kill` sends it to
//!   `error` with `conn.close = true` in its metadata (so that an I/O gear that honours it
//!   closes the connection it came from) and fails the gear: every later message goes to
//!   `error` with the reason `killed` until the gear is rebuilt (a scenario reload).
//! - `validation`: checks each message against the spec's semantic layer (per-MTI mandatory
//!   and forbidden fields, closed value sets). `warn` lets it pass with the violations listed
//!   in `iso8583.violations` (`missing:2 forbidden:52 not_in_set:39`); `enforce` treats it
//!   as an error (then `on_error`). Each violation is counted as the metric
//!   `flux.iso8583.violations` with the labels `gear`, `kind` (`missing`, `forbidden`,
//!   `not_in_set`) and `mti`.
//!
//! Each decoded message's number of fields (subfields not counted) is recorded in the
//! histogram `flux.codec.iso8583.fields_count`, labelled with `gear`.
//!
//! # Errors
//!
//! On `error`, `error.reason` starts with the kind, `codecerror` or `validationerror`, and
//! goes on with what failed, naming the field and the byte offset: `codecerror: truncated:
//! 16 bytes needed, 3 left at byte 22 (field 2)`. The metadata `iso8583.error.field` and
//! `iso8583.error.offset` (decoding) give the same as numbers. Error texts never hold card
//! data: values never appear in them, and every text is passed through [`iso8583::mask_pans`]
//! on top.
//!
//! ```
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use fluxmsg::FluxMsg;
//! use gears::codec_iso8583::CodecIso8583;
//! use sdk::Harness;
//!
//! let mut h = Harness::new::<CodecIso8583>(&serde_json::json!({ "spec": "builtin:spec87ascii" }))?;
//! let mut auth = iso8583::Message::new("0100");
//! auth.set(2, "4111111111111111");
//! auth.set(11, "123456");
//! let bytes = iso8583::Spec::builtin("moov:spec87ascii").unwrap().pack_to_vec(&auth)?;
//!
//! h.send("in", FluxMsg::builder().raw(bytes.clone()).build())?;
//! let mut decoded = h.take("out").remove(0);
//! assert_eq!(decoded.meta.get("iso8583.mti").map(|t| t.as_str()), Some("0100"));
//!
//! // Encoding it again gives the same bytes.
//! decoded.raw = Default::default();
//! h.send("in", decoded)?;
//! assert_eq!(&h.take("out")[0].raw[..], &bytes[..]);
//!
//! // A message cut short goes to `error`, naming the field and where.
//! h.send("in", FluxMsg::builder().raw(bytes[..27].to_vec()).build())?;
//! assert_eq!(
//!     h.error_reasons(),
//!     ["codecerror: truncated: 16 bytes needed, 5 left at byte 22 (field 2)"]
//! );
//! # Ok(()) }
//! ```

use std::path::Path;
use std::sync::Arc;

use fluxmsg::bytes::Bytes;
use fluxmsg::{FluxMsg, Text};
use iso8583::{Spec, SpecLoader, Violation};
use schemars::JsonSchema;
use sdk::{
    Category, ConfigError, Context, Gear, GearError, GearType, InPort, Manifest, OutPort, Outbox,
    Outcome, Ports, Terminus,
};
use serde::{Deserialize, Serialize};

use crate::{Error, Factory};

pub(crate) fn register(factory: &mut Factory) -> Result<(), Error> {
    factory.register::<CodecIso8583>()
}

/// The metadata key that lists the violations of a message under `validation: warn`.
pub const VIOLATIONS_META: &str = "iso8583.violations";
/// The metadata key of the field a decoding error is about (0 for the MTI, 1 for a bitmap).
pub const ERROR_FIELD_META: &str = "iso8583.error.field";
/// The metadata key of the byte offset a decoding error is at.
pub const ERROR_OFFSET_META: &str = "iso8583.error.offset";

/// The configuration of a `codec_iso8583` gear.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct Config {
    /// `builtin:spec87ascii`, `builtin:spec87hex`, or the path of a YAML spec.
    pub spec: String,
    /// Which way to convert.
    #[serde(default)]
    pub direction: Direction,
    /// What a message that fails becomes.
    #[serde(default)]
    pub on_error: OnError,
    /// Whether to check messages against the spec's rules.
    #[serde(default)]
    pub validation: Validation,
}

/// Which way the gear converts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Direction {
    /// Decode a message with `raw` and no `data.iso8583`; encode the others.
    #[default]
    Auto,
    /// Bytes in `raw` to fields.
    Decode,
    /// Fields to bytes in `raw`.
    Encode,
}

/// What a message that fails becomes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum OnError {
    /// It goes to `error` with `error.reason`.
    #[default]
    Reject,
    /// It is dropped and counted (`codecerror`, `validationerror`).
    Drop,
    /// It goes to `error` with `conn.close = true`, and the gear refuses everything after it.
    Kill,
}

/// Whether messages are checked against the spec's semantic layer.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Validation {
    /// No check.
    #[default]
    Off,
    /// Count the violations and list them in `iso8583.violations`; the message passes.
    Warn,
    /// A message with a violation is an error.
    Enforce,
}

/// The `codec_iso8583` gear (see the [module docs](self)).
#[derive(Debug)]
pub struct CodecIso8583 {
    spec: Arc<Spec>,
    direction: Direction,
    on_error: OnError,
    validation: Validation,
    out: OutPort,
    /// The gear's name, for the metric's `gear` label.
    name: String,
    /// Set by the first failure under `on_error: kill`: why the gear failed.
    killed: Option<String>,
    /// The size of the last message encoded, to size the next one's buffer.
    last_len: usize,
    /// `flux.codec.iso8583.fields_count`, registered once the gear has its name.
    fields_count: metrics::Histogram,
}

/// A failed message: the reason text, the drop reason, and where (field, offset) if known.
struct Failure {
    reason: String,
    code: &'static str,
    field: Option<u16>,
    offset: Option<usize>,
}

impl Failure {
    fn codec(text: impl std::fmt::Display) -> Failure {
        Failure {
            reason: format!("codecerror: {}", iso8583::mask_pans(&text.to_string())),
            code: "codecerror",
            field: None,
            offset: None,
        }
    }
}

impl GearType for CodecIso8583 {
    type Config = Config;

    fn manifest() -> Manifest {
        Manifest::new("codec_iso8583", Category::Codec)
            .summary("ISO 8583 bytes to fields and back, by a spec")
            .input(
                "in",
                "messages to decode (`raw`) or encode (`data.iso8583`)",
            )
            .output("out", "decoded or encoded messages")
            .terminus(Terminus::Transparent)
    }

    /// Loads the spec (reading its file), so that a spec that does not load fails here.
    fn new(config: Config, ports: &Ports) -> Result<CodecIso8583, ConfigError> {
        let spec = load_spec(&config.spec).map_err(|e| ConfigError::field("spec", e))?;
        Ok(CodecIso8583 {
            spec: Arc::new(spec),
            direction: config.direction,
            on_error: config.on_error,
            validation: config.validation,
            out: ports.resolve_output("out")?,
            name: String::new(),
            killed: None,
            last_len: 0,
            fields_count: metrics::Histogram::noop(),
        })
    }
}

/// Loads the spec a configuration names: a built-in one, or a file.
fn load_spec(name: &str) -> Result<Spec, String> {
    if let Some(builtin) = name.strip_prefix("builtin:") {
        return Spec::builtin(&format!("moov:{builtin}")).ok_or_else(|| {
            format!("unknown built-in spec {name:?}: use builtin:spec87ascii or builtin:spec87hex")
        });
    }
    if let Some(spec) = name
        .starts_with("moov:")
        .then(|| Spec::builtin(name))
        .flatten()
    {
        return Ok(spec);
    }
    let path = Path::new(name);
    let text =
        std::fs::read_to_string(path).map_err(|e| format!("cannot read the spec {name}: {e}"))?;
    let dir = path.parent().map(Path::to_path_buf).unwrap_or_default();
    SpecLoader::new(|rel| std::fs::read_to_string(dir.join(rel)).ok())
        .load(name, &text)
        .map_err(|e| e.to_string())
}

impl Gear for CodecIso8583 {
    fn init(&mut self, ctx: &mut Context) -> Result<(), GearError> {
        ctx.name().clone_into(&mut self.name);
        self.fields_count =
            metrics::histogram!("flux.codec.iso8583.fields_count", "gear" => self.name.clone());
        Ok(())
    }

    fn process(
        &mut self,
        _: InPort,
        msg: &mut FluxMsg,
        _: &mut Outbox<'_>,
    ) -> Result<Outcome, GearError> {
        if let Some(why) = &self.killed {
            return Err(GearError::new("killed").with_detail(why));
        }
        let decode = match self.direction {
            Direction::Decode => true,
            Direction::Encode => false,
            Direction::Auto => !msg.raw.is_empty() && msg.data.get("iso8583").is_none(),
        };
        let result = if decode {
            self.decode(msg)
        } else {
            self.encode(msg)
        };
        match result {
            Ok(()) => Ok(Outcome::Emit(self.out)),
            Err(failure) => self.fail(msg, failure),
        }
    }
}

impl CodecIso8583 {
    fn decode(&mut self, msg: &mut FluxMsg) -> Result<(), Failure> {
        let unpacked = self.spec.unpack(&msg.raw).map_err(|e| Failure {
            field: e.field,
            offset: Some(e.offset),
            ..Failure::codec(&e)
        })?;
        self.fields_count.record(unpacked.len() as f64);
        let violations = self.check(&unpacked);
        self.spec.to_fluxmsg(&unpacked, msg);
        self.judge(msg, unpacked.mti(), &violations)
    }

    fn encode(&mut self, msg: &mut FluxMsg) -> Result<(), Failure> {
        let message = self.spec.from_fluxmsg(msg).map_err(|e| {
            let field = match &e {
                iso8583::MapError::Pack(p) => p.field,
                _ => None,
            };
            Failure {
                field,
                ..Failure::codec(&e)
            }
        })?;
        let mut bytes = Vec::with_capacity(self.last_len);
        self.spec.pack(&message, &mut bytes).map_err(|e| Failure {
            field: e.field,
            ..Failure::codec(&e)
        })?;
        self.last_len = bytes.len();
        let violations = self.check(&message);
        msg.raw = Bytes::from(bytes);
        self.judge(msg, message.mti(), &violations)
    }

    /// The violations of `message`, counted; none when validation is off.
    fn check(&self, message: &iso8583::Message) -> Vec<Violation> {
        if self.validation == Validation::Off {
            return Vec::new();
        }
        let violations = self.spec.validate(message);
        for v in &violations {
            metrics::counter!(
                "flux.iso8583.violations",
                "gear" => self.name.clone(),
                "kind" => kind(v),
                "mti" => message.mti().to_owned()
            )
            .increment(1);
        }
        violations
    }

    /// Lists the violations in the metadata (`warn`) or fails the message (`enforce`).
    fn judge(&self, msg: &mut FluxMsg, mti: &str, violations: &[Violation]) -> Result<(), Failure> {
        if violations.is_empty() {
            return Ok(());
        }
        let list = violations
            .iter()
            .map(|v| format!("{}:{}", kind(v), field(v)))
            .collect::<Vec<_>>()
            .join(" ");
        msg.meta.insert(VIOLATIONS_META, Text::from(list.as_str()));
        if self.validation != Validation::Enforce {
            return Ok(());
        }
        let text = violations
            .iter()
            .map(|v| match v {
                Violation::Missing(n) => format!("field {n} is mandatory in a {mti}"),
                Violation::Forbidden(n) => format!("field {n} is forbidden in a {mti}"),
                Violation::NotInSet { field, set } => {
                    format!("field {field} is not in the value set {set}")
                }
                other => format!("{other:?}"),
            })
            .collect::<Vec<_>>()
            .join("; ");
        Err(Failure {
            reason: format!("validationerror: {}", iso8583::mask_pans(&text)),
            code: "validationerror",
            field: violations.first().map(field),
            offset: None,
        })
    }

    /// Applies `on_error` to a message that failed.
    fn fail(&mut self, msg: &mut FluxMsg, failure: Failure) -> Result<Outcome, GearError> {
        if self.on_error == OnError::Drop {
            tracing::debug!(gear = %self.name, reason = %failure.reason, "Dropped an ISO 8583 message that failed.");
            return Ok(Outcome::Drop(failure.code));
        }
        if let Some(n) = failure.field {
            msg.meta
                .insert(ERROR_FIELD_META, Text::from(n.to_string().as_str()));
        }
        if let Some(offset) = failure.offset {
            msg.meta
                .insert(ERROR_OFFSET_META, Text::from(offset.to_string().as_str()));
        }
        let detail = format!("spec {} {}", self.spec.id(), self.spec.version());
        if self.on_error == OnError::Kill {
            msg.meta.insert("conn.close", Text::from("true"));
            tracing::error!(gear = %self.name, reason = %failure.reason, "An ISO 8583 message failed under on_error: kill; the gear refuses every message from now on.");
            self.killed = Some(failure.reason.clone());
        }
        Err(GearError::new(failure.reason).with_detail(detail))
    }
}

fn kind(v: &Violation) -> &'static str {
    match v {
        Violation::Missing(_) => "missing",
        Violation::Forbidden(_) => "forbidden",
        Violation::NotInSet { .. } => "not_in_set",
        _ => "other",
    }
}

fn field(v: &Violation) -> u16 {
    match v {
        Violation::Missing(n) | Violation::Forbidden(n) => *n,
        Violation::NotInSet { field, .. } => *field,
        _ => 0,
    }
}
