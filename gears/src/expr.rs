//! Expressions in gear configurations, in Rhai.
//!
//! Rhai is a small embedded language written in Rust: no file, network or process access,
//! and hard limits on operations, call depth and the size of strings, arrays and maps, so a
//! bad expression costs one message, never the rack. A script sees the message as variables
//! `data` and `meta` (maps), `id`, `ref_id`, `trace`, `flags`, `ts` and `raw` (a blob); only
//! the variables its text names are built for each message.

use std::sync::{Arc, OnceLock};

use fluxmsg::{FluxMsg, Integer, Map, Value};
use rhai::{AST, Dynamic, Engine, ImmutableString, Scope};
use sdk::GearError;

/// Operations one evaluation may run before it is stopped.
const MAX_OPERATIONS: u64 = 100_000;

/// The shared engine: configured once, immutable afterwards.
fn engine() -> &'static Engine {
    static ENGINE: OnceLock<Engine> = OnceLock::new();
    ENGINE.get_or_init(|| {
        let mut engine = Engine::new();
        engine
            .set_max_operations(MAX_OPERATIONS)
            .set_max_expr_depths(64, 32)
            .set_max_call_levels(32)
            .set_max_string_size(1 << 20)
            .set_max_array_size(100_000)
            .set_max_map_size(100_000)
            .set_max_variables(1_000)
            .set_max_functions(100)
            .set_max_modules(0);
        engine.disable_symbol("eval");
        engine.on_print(|text| tracing::info!(target: "fluxrig::expr", text, "An expression called print."));
        engine
            .on_debug(|text, _, pos| tracing::debug!(target: "fluxrig::expr", text, %pos, "An expression called debug."));
        engine
    })
}

/// A compiled expression.
#[derive(Debug, Clone)]
pub(crate) struct Expr {
    ast: Arc<AST>,
    uses: Uses,
}

#[derive(Debug, Clone, Copy, Default)]
struct Uses {
    data: bool,
    meta: bool,
    id: bool,
    ref_id: bool,
    trace: bool,
    flags: bool,
    ts: bool,
    raw: bool,
}

impl Expr {
    /// Compiles `src` (one expression, or statements whose last value is the result).
    pub(crate) fn compile(src: &str) -> Result<Expr, String> {
        let ast = engine()
            .compile(src)
            .map_err(|e| format!("expression does not compile: {e}"))?;
        let names = identifiers(src);
        let has = |name: &str| names.contains(&name);
        Ok(Expr {
            ast: Arc::new(ast),
            uses: Uses {
                data: has("data"),
                meta: has("meta"),
                id: has("id"),
                ref_id: has("ref_id"),
                trace: has("trace"),
                flags: has("flags"),
                ts: has("ts"),
                raw: has("raw"),
            },
        })
    }

    /// Evaluates the expression over `msg`.
    pub(crate) fn eval(
        &self,
        msg: &FluxMsg,
        scope: &mut Scope<'static>,
    ) -> Result<Value, GearError> {
        scope.clear();
        let u = self.uses;
        if u.data {
            scope.push("data", map_to_dynamic(&msg.data));
        }
        if u.meta {
            let meta: rhai::Map = msg
                .meta
                .iter()
                .map(|(k, v)| (k.into(), Dynamic::from(ImmutableString::from(v.as_str()))))
                .collect();
            scope.push("meta", meta);
        }
        if u.id {
            scope.push("id", id_dynamic(msg.id.as_ref()));
        }
        if u.ref_id {
            scope.push("ref_id", id_dynamic(msg.ref_id.as_ref()));
        }
        if u.trace {
            scope.push("trace", ImmutableString::from(msg.trace.as_str()));
        }
        if u.flags {
            scope.push("flags", i64::from(msg.flags));
        }
        if u.ts {
            scope.push("ts", msg.ts);
        }
        if u.raw {
            scope.push("raw", Dynamic::from_blob(msg.raw.to_vec()));
        }
        let result: Dynamic = engine()
            .eval_ast_with_scope(scope, &self.ast)
            .map_err(|e| GearError::new("expr_failed").with_detail(e))?;
        dynamic_to_value(result, 0)
    }

    /// Evaluates the expression as a condition: it must give a bool.
    pub(crate) fn test(
        &self,
        msg: &FluxMsg,
        scope: &mut Scope<'static>,
    ) -> Result<bool, GearError> {
        match self.eval(msg, scope)? {
            Value::Bool(b) => Ok(b),
            other => Err(GearError::new("expr_failed").with_detail(format_args!(
                "a condition must give a bool, not {}",
                other.type_name()
            ))),
        }
    }
}

/// The identifiers in `src` (a cheap scan: words that start with a letter or `_`).
fn identifiers(src: &str) -> Vec<&str> {
    src.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .filter(|w| w.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_'))
        .collect()
}

fn id_dynamic(id: Option<&fluxmsg::Id>) -> Dynamic {
    match id {
        None => Dynamic::UNIT,
        Some(fluxmsg::Id::U64(n)) => {
            i64::try_from(*n).map_or_else(|_| Dynamic::from(n.to_string()), Dynamic::from)
        }
        Some(other) => Dynamic::from(other.to_string()),
    }
}

fn map_to_dynamic(map: &Map<Value>) -> Dynamic {
    let m: rhai::Map = map.iter().map(|(k, v)| (k.into(), to_dynamic(v))).collect();
    Dynamic::from_map(m)
}

fn to_dynamic(value: &Value) -> Dynamic {
    match value {
        Value::Null => Dynamic::UNIT,
        Value::Bool(b) => Dynamic::from_bool(*b),
        Value::Integer(i) => {
            let wide = i128::from(*i);
            i64::try_from(wide).map_or_else(|_| Dynamic::from_float(wide as f64), Dynamic::from_int)
        }
        Value::Float(f) => Dynamic::from_float(*f),
        Value::Text(t) => Dynamic::from(ImmutableString::from(t.as_str())),
        Value::Bytes(b) => Dynamic::from_blob(b.to_vec()),
        Value::Array(items) => Dynamic::from_array(items.iter().map(to_dynamic).collect()),
        Value::Map(m) => map_to_dynamic(m),
    }
}

fn dynamic_to_value(d: Dynamic, depth: usize) -> Result<Value, GearError> {
    if depth > 32 {
        return Err(GearError::new("expr_failed").with_detail("result nested too deep"));
    }
    if d.is_unit() {
        return Ok(Value::Null);
    }
    if let Some(b) = d.clone().try_cast::<bool>() {
        return Ok(Value::Bool(b));
    }
    if let Some(i) = d.clone().try_cast::<i64>() {
        return Ok(Value::Integer(Integer::from(i)));
    }
    if let Some(f) = d.clone().try_cast::<f64>() {
        return Ok(Value::Float(f));
    }
    if d.is_string() || d.is_char() {
        return Ok(Value::from(d.to_string()));
    }
    if d.is_blob() {
        let blob = d.cast::<rhai::Blob>();
        return Ok(Value::Bytes(blob.into()));
    }
    if d.is_array() {
        let items = d.cast::<rhai::Array>();
        return items
            .into_iter()
            .map(|x| dynamic_to_value(x, depth + 1))
            .collect::<Result<Vec<_>, _>>()
            .map(Value::Array);
    }
    if d.is_map() {
        let m = d.cast::<rhai::Map>();
        // Built in one sort (`Map: FromIterator`), not one ordered insert per key.
        let entries = m
            .into_iter()
            .map(|(k, v)| Ok((k.to_string(), dynamic_to_value(v, depth + 1)?)))
            .collect::<Result<Vec<_>, GearError>>()?;
        return Ok(Value::Map(entries.into_iter().collect()));
    }
    Err(GearError::new("expr_failed").with_detail(format_args!(
        "cannot store a {} in a message",
        d.type_name()
    )))
}

#[cfg(test)]
mod tests {
    use fluxmsg::{FluxMsg, Value};
    use rhai::Scope;

    use super::Expr;

    #[test]
    fn reads_the_message_and_gives_values() {
        let msg = FluxMsg::builder()
            .data("amount", 1500)
            .meta("country", "FR")
            .build();
        let mut scope = Scope::new();
        let e = Expr::compile("data.amount * 2 + 1").expect("compiles");
        assert_eq!(e.eval(&msg, &mut scope).expect("runs"), Value::from(3001));
        let c =
            Expr::compile(r#"data.amount > 1000 && meta["country"] == "FR""#).expect("compiles");
        assert!(c.test(&msg, &mut scope).expect("runs"));
    }

    #[test]
    fn runaway_scripts_are_stopped() {
        let mut scope = Scope::new();
        let e = Expr::compile("let x = 0; loop { x += 1; }").expect("compiles");
        let err = e.eval(&FluxMsg::new(), &mut scope).expect_err("stopped");
        assert_eq!(err.reason(), "expr_failed");
        assert!(Expr::compile("1 +").is_err());
        assert!(Expr::compile(r#"eval("1")"#).is_err());
    }
}
