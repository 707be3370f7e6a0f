//! The `log` gear: one structured line (JSON) per message, as a sink or a tap.
//!
//! As a `sink` (the default) it consumes messages; as a `tap` it also forwards every message,
//! unchanged, on `out`. `every: N` writes one line for every N messages (sampling; the others
//! are still consumed or forwarded). Lines go to stdout, stderr or a file (appended), and are
//! flushed after each batch.
//!
//! A line holds `ts` (the gear's clock, RFC 3339), `gear`, and either the whole message in
//! fluxMsg's JSON view (`id`, `meta`, `data`, `raw` in hex, …) or, with
//! `fields`, only those fields, keyed by their names. The message's own `ts` (and a `gear`
//! field) appear as `msg_ts` (and `msg_gear`). Card numbers in every text of a line are
//! masked (first 6 and last 4 digits shown, [`iso8583::mask_pans`]); numbers (ids, times)
//! are not.
//!
//! ```yaml
//! - name: audit
//!   type: log
//!   config:
//!     mode: tap
//!     every: 100
//!     fields: [id, meta.conn.id, data.amount]
//!     output: file
//!     path: /var/log/fluxrig/audit.jsonl
//! ```

use std::fs::{File, OpenOptions};
use std::io::{self, BufWriter, Write};
use std::sync::Arc;
use std::time::UNIX_EPOCH;

use fluxmsg::FluxMsg;
use schemars::JsonSchema;
use sdk::{
    Category, Clock, ConfigError, Context, Gear, GearError, GearType, InPort, Manifest, OutPort,
    Outbox, Outcome, Ports, Terminus,
};
use serde::{Deserialize, Serialize};

use crate::field::Field;
use crate::{Error, Factory};

pub(crate) fn register(factory: &mut Factory) -> Result<(), Error> {
    factory.register::<Log>()
}

/// The configuration of a `log` gear.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct Config {
    /// `sink` consumes messages; `tap` forwards them on `out`.
    #[serde(default)]
    pub mode: Mode,
    /// Write one line per this many messages (1 = every message).
    #[serde(default = "one")]
    #[schemars(range(min = 1))]
    pub every: u64,
    /// Only these fields (`id`, `meta.<key>`, `data.<path>`, …); default: the whole message.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fields: Option<Vec<String>>,
    /// Where lines go.
    #[serde(default)]
    pub output: Output,
    /// The file, with `output: file`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
}

fn one() -> u64 {
    1
}

/// Sink or tap.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Mode {
    /// Consume messages.
    #[default]
    Sink,
    /// Forward messages on `out`.
    Tap,
}

/// Where lines are written.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Output {
    /// Standard output.
    #[default]
    Stdout,
    /// Standard error.
    Stderr,
    /// A file, appended to (`path`).
    File,
}

/// The `log` gear (see the [module docs](self)).
#[derive(Debug)]
pub struct Log {
    config: Config,
    fields: Option<Vec<(String, Field)>>,
    seen: u64,
    out: OutPort,
    name: String,
    clock: Option<Arc<dyn Clock>>,
    writer: Option<BufWriter<Sink>>,
    line: Vec<u8>,
}

impl GearType for Log {
    type Config = Config;

    fn manifest() -> Manifest {
        Manifest::new("log", Category::Observability)
            .summary("writes one JSON line per message (sampled), as a sink or a tap")
            .input("in", "messages to log")
            .output("out", "in tap mode, every message, unchanged")
            .terminus(Terminus::Transparent)
    }

    fn new(config: Config, ports: &Ports) -> Result<Log, ConfigError> {
        if config.every == 0 {
            return Err(ConfigError::field("every", "must be at least 1"));
        }
        match (config.output, &config.path) {
            (Output::File, None) => {
                return Err(ConfigError::field("path", "output: file needs a path"));
            }
            (Output::Stdout | Output::Stderr, Some(_)) => {
                return Err(ConfigError::field(
                    "path",
                    "a path goes with output: file only",
                ));
            }
            _ => {}
        }
        let fields = config
            .fields
            .as_ref()
            .map(|list| {
                list.iter()
                    .enumerate()
                    .map(|(i, f)| {
                        Field::parse(f)
                            .map(|field| (f.trim().to_owned(), field))
                            .map_err(|e| ConfigError::field(format!("fields[{i}]"), e))
                    })
                    .collect::<Result<Vec<_>, _>>()
            })
            .transpose()?;
        Ok(Log {
            config,
            fields,
            seen: 0,
            out: ports.resolve_output("out")?,
            name: String::new(),
            clock: None,
            writer: None,
            line: Vec::new(),
        })
    }
}

impl Log {
    fn write_line(&mut self, msg: &FluxMsg) -> io::Result<()> {
        let now = self.clock.as_ref().map(|c| c.now()).unwrap_or_default();
        let mut line = serde_json::Map::new();
        match &self.fields {
            Some(fields) => {
                for (name, field) in fields {
                    let value = field.get(msg).map_or(serde_json::Value::Null, |v| {
                        fluxmsg::json::value_to_json(&v.to_value())
                    });
                    line.insert(name.clone(), value);
                }
            }
            None => {
                if let serde_json::Value::Object(whole) = fluxmsg::json::to_json(msg) {
                    line = whole;
                }
            }
        }
        // The line's own time and gear come first; message fields of the same name are kept
        // under `msg_ts` and `msg_gear`.
        for (key, renamed) in [("ts", "msg_ts"), ("gear", "msg_gear")] {
            if let Some(value) = line.remove(key) {
                line.insert(renamed.into(), value);
            }
        }
        line.insert(
            "ts".into(),
            humantime::format_rfc3339_millis(UNIX_EPOCH + now)
                .to_string()
                .into(),
        );
        line.insert("gear".into(), self.name.clone().into());
        for value in line.values_mut() {
            mask_strings(value);
        }
        self.line.clear();
        serde_json::to_writer(&mut self.line, &line)?;
        self.line.push(b'\n');
        match &mut self.writer {
            Some(w) => w.write_all(&self.line),
            None => Ok(()),
        }
    }
}

/// Masks the card numbers in every text of `value` (first 6 and last 4 digits shown); numbers
/// are left alone, so that ids and times that happen to pass the Luhn check stay whole.
fn mask_strings(value: &mut serde_json::Value) {
    match value {
        serde_json::Value::String(text) => {
            if let std::borrow::Cow::Owned(masked) = iso8583::mask_pans(text) {
                *text = masked;
            }
        }
        serde_json::Value::Array(items) => items.iter_mut().for_each(mask_strings),
        serde_json::Value::Object(map) => map.values_mut().for_each(mask_strings),
        _ => {}
    }
}

impl Gear for Log {
    fn init(&mut self, ctx: &mut Context) -> Result<(), GearError> {
        self.name = ctx.name().to_owned();
        self.clock = Some(ctx.clock());
        let sink = match (self.config.output, &self.config.path) {
            (Output::File, Some(path)) => Sink::File(open(path).map_err(|e| {
                GearError::new("open_failed").with_detail(format_args!("{path}: {e}"))
            })?),
            (Output::Stderr, _) => Sink::Stderr(io::stderr()),
            _ => Sink::Stdout(io::stdout()),
        };
        self.writer = Some(BufWriter::with_capacity(64 * 1024, sink));
        Ok(())
    }

    fn process(
        &mut self,
        _: InPort,
        msg: &mut FluxMsg,
        _: &mut Outbox<'_>,
    ) -> Result<Outcome, GearError> {
        let sampled = self.seen.is_multiple_of(self.config.every);
        self.seen += 1;
        if sampled {
            self.write_line(msg)
                .map_err(|e| GearError::new("write_failed").with_detail(e))?;
        }
        Ok(match self.config.mode {
            Mode::Tap => Outcome::Emit(self.out),
            Mode::Sink => Outcome::Consumed,
        })
    }

    fn flush(&mut self) {
        if let Some(w) = &mut self.writer
            && let Err(e) = w.flush()
        {
            tracing::warn!(gear = %self.name, error = %e, "Could not flush the log output.");
        }
    }

    fn stop(&mut self) {
        self.flush();
        self.writer = None;
    }
}

#[derive(Debug)]
enum Sink {
    Stdout(io::Stdout),
    Stderr(io::Stderr),
    File(File),
}

impl Write for Sink {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Sink::Stdout(w) => w.write(buf),
            Sink::Stderr(w) => w.write(buf),
            Sink::File(w) => w.write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            Sink::Stdout(w) => w.flush(),
            Sink::Stderr(w) => w.flush(),
            Sink::File(w) => w.flush(),
        }
    }
}

fn open(path: &str) -> io::Result<File> {
    OpenOptions::new().create(true).append(true).open(path)
}
