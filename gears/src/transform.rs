//! The `transform` gear: edits fields and metadata, step by step.
//!
//! Each step sets, copies, moves or deletes one field, optionally only `when` a
//! [`Condition`] holds. A value to set is a literal, a template (`${data.pan}`, `${now}`) or a
//! Rhai expression over the message (see the crate docs on expressions).
//!
//! Fields are `data.<dotted path>` (nested maps are created as needed), `meta.<key>` (text),
//! and the envelope fields `id`, `ref_id`, `src_id`, `trace`, `flags`, `ts`, `raw`.
//!
//! ```yaml
//! - name: enrich
//!   type: transform
//!   config:
//!     steps:
//!       - set: data.currency
//!         value: EUR
//!       - set: meta.route_key
//!         template: "${meta.iso8583.mti}-${data.pan}"
//!       - set: data.fee
//!         expr: "data.amount * 15 / 1000"
//!       - copy: data.pan
//!         to: meta.pan
//!       - move: data.tmp
//!         to: data.archive.tmp
//!       - delete: data.secret
//!         when: { field: meta.export, equals: "true" }
//! ```
//!
//! Ports: `in` → `out`; a step that fails (a type mismatch, a path through a non-map, an
//! expression error) sends the message to `error` with `error.reason`, keeping the steps
//! already applied. Copying or moving a field that is absent does nothing.
//!
//! ```
//! # fn main() -> Result<(), sdk::Error> {
//! use fluxmsg::{FluxMsg, Value};
//! use sdk::Harness;
//!
//! let mut h = Harness::new::<gears::transform::Transform>(&serde_json::json!({
//!     "steps": [
//!         { "set": "data.fee", "expr": "data.amount / 100" },
//!         { "move": "data.amount", "to": "data.total.amount" },
//!         { "set": "meta.note", "template": "fee ${data.fee}" }
//!     ]
//! }))?;
//! h.send("in", FluxMsg::builder().data("amount", 1500).build())?;
//! let out = h.take("out");
//! assert_eq!(out[0].data.get_path("total.amount"), Some(&Value::from(1500)));
//! assert_eq!(out[0].meta.get("note").map(|t| t.as_str()), Some("fee 15"));
//! # Ok(()) }
//! ```

use std::sync::Arc;

use fluxmsg::{FluxMsg, Value};
use schemars::JsonSchema;
use sdk::{
    Category, Clock, ConfigError, Context, Gear, GearError, GearType, InPort, Manifest, OutPort,
    Outbox, Outcome, Ports, Terminus,
};
use serde::{Deserialize, Serialize};

use crate::condition::{Condition, Scratch, Test, how_many};
use crate::expr::Expr;
use crate::field::Field;
use crate::offload;
use crate::template::{MsgVar, Template};
use crate::{Error, Factory};

pub(crate) fn register(factory: &mut Factory) -> Result<(), Error> {
    factory.register::<Transform>()
}

/// The configuration of a `transform` gear.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct Config {
    /// The edits, applied in order.
    pub steps: Vec<Step>,
}

/// One edit. Give exactly one of `set` (with one of `value`, `template`, `expr`), `copy` or
/// `move` (with `to`), or `delete`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct Step {
    /// The field to set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub set: Option<String>,
    /// A literal value for `set`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<serde_json::Value>,
    /// A text template for `set`: `${field}` placeholders and `${now}`, `${now_ms}`,
    /// `${now_unix}`; `$$` is a literal `$`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub template: Option<String>,
    /// A Rhai expression for `set`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expr: Option<String>,
    /// The field to copy (with `to`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub copy: Option<String>,
    /// The field to move (with `to`).
    #[serde(default, rename = "move", skip_serializing_if = "Option::is_none")]
    pub move_: Option<String>,
    /// Where `copy` and `move` write.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to: Option<String>,
    /// The field to delete.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delete: Option<String>,
    /// Apply the step only when this holds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub when: Option<Condition>,
}

#[derive(Debug)]
enum Op {
    Set(Field, Source),
    Copy(Field, Field),
    Move(Field, Field),
    Delete(Field),
}

#[derive(Debug)]
enum Source {
    Value(Value),
    Template(Template<MsgVar>),
    Expr(Expr),
}

/// The `transform` gear (see the [module docs](self)).
#[derive(Debug)]
pub struct Transform {
    steps: Vec<(Option<Test>, Op)>,
    out: OutPort,
    scratch: Scratch,
    clock: Option<Arc<dyn Clock>>,
    /// A step evaluates a Rhai expression: batches run off the async worker.
    scripted: bool,
}

impl GearType for Transform {
    type Config = Config;

    fn manifest() -> Manifest {
        Manifest::new("transform", Category::Logic)
            .summary("set, copy, move and delete fields and metadata")
            .input("in", "messages to edit")
            .output("out", "edited messages")
            .terminus(Terminus::Transparent)
    }

    fn new(config: Config, ports: &Ports) -> Result<Transform, ConfigError> {
        let steps = config
            .steps
            .iter()
            .enumerate()
            .map(|(i, step)| compile(step, &format!("steps[{i}]")))
            .collect::<Result<Vec<_>, _>>()?;
        let scripted = steps.iter().any(|(when, op): &(Option<Test>, Op)| {
            when.as_ref().is_some_and(Test::has_expr) || matches!(op, Op::Set(_, Source::Expr(_)))
        });
        Ok(Transform {
            steps,
            out: ports.resolve_output("out")?,
            scratch: Scratch::default(),
            clock: None,
            scripted,
        })
    }
}

fn compile(step: &Step, path: &str) -> Result<(Option<Test>, Op), ConfigError> {
    let field = |text: &str, key: &str| {
        Field::parse(text).map_err(|e| ConfigError::field(format!("{path}.{key}"), e))
    };
    let verbs = how_many(&[
        step.set.is_some(),
        step.copy.is_some(),
        step.move_.is_some(),
        step.delete.is_some(),
    ]);
    if verbs != 1 {
        return Err(ConfigError::field(
            path,
            "give exactly one of set, copy, move, delete",
        ));
    }
    let sources = how_many(&[
        step.value.is_some(),
        step.template.is_some(),
        step.expr.is_some(),
    ]);
    let op = if let Some(target) = &step.set {
        if sources != 1 || step.to.is_some() {
            return Err(ConfigError::field(
                path,
                "`set` takes exactly one of value, template, expr (and no `to`)",
            ));
        }
        let source = if let Some(v) = &step.value {
            Source::Value(
                fluxmsg::json::value_from_json(v)
                    .map_err(|e| ConfigError::field(format!("{path}.value"), e))?,
            )
        } else if let Some(t) = &step.template {
            let template = Template::parse(t, MsgVar::parse)
                .map_err(|e| ConfigError::field(format!("{path}.template"), e))?;
            match template.as_literal() {
                Some(text) => Source::Value(Value::from(text)),
                None => Source::Template(template),
            }
        } else {
            let src = step.expr.as_deref().unwrap_or_default();
            Source::Expr(
                Expr::compile(src).map_err(|e| ConfigError::field(format!("{path}.expr"), e))?,
            )
        };
        Op::Set(field(target, "set")?, source)
    } else {
        if sources != 0 {
            return Err(ConfigError::field(
                path,
                "value, template and expr go with `set` only",
            ));
        }
        let to = |verb: &str| match &step.to {
            Some(to) => field(to, "to"),
            None => Err(ConfigError::field(path, format!("`{verb}` needs `to`"))),
        };
        if let Some(from) = &step.copy {
            Op::Copy(field(from, "copy")?, to("copy")?)
        } else if let Some(from) = &step.move_ {
            Op::Move(field(from, "move")?, to("move")?)
        } else {
            if step.to.is_some() {
                return Err(ConfigError::field(path, "`delete` takes no `to`"));
            }
            Op::Delete(field(step.delete.as_deref().unwrap_or_default(), "delete")?)
        }
    };
    let when = step
        .when
        .as_ref()
        .map(|c| c.compile(&format!("{path}.when")))
        .transpose()?;
    Ok((when, op))
}

impl Gear for Transform {
    fn init(&mut self, ctx: &mut Context) -> Result<(), GearError> {
        self.clock = Some(ctx.clock());
        Ok(())
    }

    fn process(
        &mut self,
        _: InPort,
        msg: &mut FluxMsg,
        _: &mut Outbox<'_>,
    ) -> Result<Outcome, GearError> {
        self.apply(msg)
    }

    /// With a Rhai expression among the steps, the whole batch in one hand-over to a thread
    /// that may block (`block_in_place`); otherwise message by message through `process`.
    fn process_batch(&mut self, _: InPort, batch: &mut Vec<FluxMsg>, out: &mut Outbox<'_>) -> bool {
        if !self.scripted {
            return false;
        }
        offload::each(batch, out, |msg, _| self.apply(msg));
        true
    }
}

impl Transform {
    /// Applies the steps to `msg`.
    fn apply(&mut self, msg: &mut FluxMsg) -> Result<Outcome, GearError> {
        for (when, op) in &self.steps {
            if let Some(test) = when
                && !test.matches(msg, &mut self.scratch)?
            {
                continue;
            }
            match op {
                Op::Set(field, Source::Value(v)) => field.set(msg, v.clone())?,
                Op::Set(field, Source::Template(t)) => {
                    let now = self.clock.as_ref().map(|c| c.now()).unwrap_or_default();
                    let mut text = String::new();
                    t.render(&mut text, |var, out| var.write(msg, now, out));
                    field.set(msg, Value::from(text))?;
                }
                Op::Set(field, Source::Expr(e)) => {
                    let value = e.eval(msg, &mut self.scratch.scope)?;
                    field.set(msg, value)?;
                }
                Op::Copy(from, to) => {
                    if let Some(v) = from.get(msg) {
                        to.set(msg, v.to_value())?;
                    }
                }
                Op::Move(from, to) => {
                    if let Some(v) = from.take(msg) {
                        // A move that cannot write leaves the value where it was.
                        let kept = v.clone();
                        if let Err(e) = to.set(msg, v) {
                            from.set(msg, kept)?;
                            return Err(e);
                        }
                    }
                }
                Op::Delete(field) => {
                    field.take(msg);
                }
            }
        }
        Ok(Outcome::Emit(self.out))
    }
}
