//! Conditions on a message, shared by `route` and `filter`.

use fluxmsg::{FluxMsg, Value};
use regex::Regex;
use rhai::Scope;
use schemars::JsonSchema;
use sdk::{ConfigError, GearError};
use serde::{Deserialize, Serialize};

use crate::expr::Expr;
use crate::field::{Field, Val};

/// One test on a message. Give a `field` and exactly one test (`equals`, `not_equals`,
/// `prefix`, `regex`, `exists`, `gt`, `gte`, `lt`, `lte`), or one of `expr`, `all`, `any`,
/// `not`.
///
/// ```yaml
/// { field: data.pan, prefix: "4" }
/// { field: data.amount, gt: 1000 }
/// { field: meta.conn.id, exists: true }
/// { all: [ { field: meta.iso8583.mti, equals: "0100" }, { expr: "data.amount % 2 == 0" } ] }
/// ```
#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct Condition {
    /// The field tested: `data.<path>`, `meta.<key>`, `id`, `ref_id`, `src_id`, `trace`,
    /// `flags`, `ts` or `raw`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
    /// Equal to this value (numbers compare by value, text in metadata compares as text).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub equals: Option<serde_json::Value>,
    /// Present and not equal to this value.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub not_equals: Option<serde_json::Value>,
    /// Its text form starts with this.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prefix: Option<String>,
    /// Its text form matches this regular expression (Rust `regex` syntax, unanchored).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub regex: Option<String>,
    /// Present (`true`) or absent (`false`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exists: Option<bool>,
    /// A number greater than this.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gt: Option<f64>,
    /// A number greater than or equal to this.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gte: Option<f64>,
    /// A number less than this.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lt: Option<f64>,
    /// A number less than or equal to this.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lte: Option<f64>,
    /// A Rhai expression that gives a bool (no `field`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expr: Option<String>,
    /// Every one of these holds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub all: Option<Vec<Condition>>,
    /// At least one of these holds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub any: Option<Vec<Condition>>,
    /// This does not hold.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub not: Option<Box<Condition>>,
}

/// A compiled [`Condition`].
#[derive(Debug, Clone)]
pub(crate) enum Test {
    Field(Field, FieldTest),
    Expr(Expr),
    All(Vec<Test>),
    Any(Vec<Test>),
    Not(Box<Test>),
}

#[derive(Debug, Clone)]
pub(crate) enum FieldTest {
    Equals(Value),
    NotEquals(Value),
    Prefix(String),
    Regex(Regex),
    Exists(bool),
    Compare(Cmp, f64),
}

#[derive(Debug, Clone, Copy)]
pub(crate) enum Cmp {
    Gt,
    Gte,
    Lt,
    Lte,
}

impl Condition {
    /// Compiles the condition; `path` names it in errors (`rules[2].when`).
    pub(crate) fn compile(&self, path: &str) -> Result<Test, ConfigError> {
        let err = |reason: String| ConfigError::field(path, reason);
        let tests = how_many(&[
            self.equals.is_some(),
            self.not_equals.is_some(),
            self.prefix.is_some(),
            self.regex.is_some(),
            self.exists.is_some(),
            self.gt.is_some(),
            self.gte.is_some(),
            self.lt.is_some(),
            self.lte.is_some(),
        ]);
        let combinators = how_many(&[
            self.expr.is_some(),
            self.all.is_some(),
            self.any.is_some(),
            self.not.is_some(),
        ]);
        match (&self.field, tests, combinators) {
            (Some(field), 1, 0) => {
                let field = Field::parse(field).map_err(|e| ConfigError::field(format!("{path}.field"), e))?;
                Ok(Test::Field(field, self.field_test(path)?))
            }
            (Some(_), _, _) => Err(err(
                "with `field`, give exactly one of equals, not_equals, prefix, regex, exists, gt, gte, lt, lte".into(),
            )),
            (None, 0, 1) => {
                if let Some(src) = &self.expr {
                    return Expr::compile(src)
                        .map(Test::Expr)
                        .map_err(|e| ConfigError::field(format!("{path}.expr"), e));
                }
                if let Some(all) = &self.all {
                    return compile_list(all, &format!("{path}.all")).map(Test::All);
                }
                if let Some(any) = &self.any {
                    return compile_list(any, &format!("{path}.any")).map(Test::Any);
                }
                let not = self.not.as_deref().unwrap_or(self);
                not.compile(&format!("{path}.not")).map(|t| Test::Not(Box::new(t)))
            }
            (None, 0, 0) => Err(err("an empty condition: give a field and a test, or expr, all, any or not".into())),
            (None, _, _) => Err(err(
                "give `field` with one test, or exactly one of expr, all, any, not".into(),
            )),
        }
    }

    fn field_test(&self, path: &str) -> Result<FieldTest, ConfigError> {
        let literal = |v: &serde_json::Value, key: &str| {
            fluxmsg::json::value_from_json(v)
                .map_err(|e| ConfigError::field(format!("{path}.{key}"), e))
        };
        Ok(if let Some(v) = &self.equals {
            FieldTest::Equals(literal(v, "equals")?)
        } else if let Some(v) = &self.not_equals {
            FieldTest::NotEquals(literal(v, "not_equals")?)
        } else if let Some(p) = &self.prefix {
            FieldTest::Prefix(p.clone())
        } else if let Some(r) = &self.regex {
            FieldTest::Regex(
                Regex::new(r).map_err(|e| ConfigError::field(format!("{path}.regex"), e))?,
            )
        } else if let Some(e) = self.exists {
            FieldTest::Exists(e)
        } else {
            let (cmp, n) = [
                (Cmp::Gt, self.gt),
                (Cmp::Gte, self.gte),
                (Cmp::Lt, self.lt),
                (Cmp::Lte, self.lte),
            ]
            .into_iter()
            .find_map(|(c, n)| n.map(|n| (c, n)))
            .ok_or_else(|| ConfigError::field(path, "no test given"))?;
            FieldTest::Compare(cmp, n)
        })
    }
}

/// How many of the options a configuration entry sets (for "give exactly one of" checks).
pub(crate) fn how_many(set: &[bool]) -> usize {
    set.iter().filter(|b| **b).count()
}

fn compile_list(list: &[Condition], path: &str) -> Result<Vec<Test>, ConfigError> {
    if list.is_empty() {
        return Err(ConfigError::field(path, "an empty list"));
    }
    list.iter()
        .enumerate()
        .map(|(i, c)| c.compile(&format!("{path}[{i}]")))
        .collect()
}

/// Scratch space for evaluating tests: the Rhai scope, reused across messages.
#[derive(Debug, Default)]
pub(crate) struct Scratch {
    pub(crate) scope: Scope<'static>,
}

impl Test {
    /// Whether the test runs a Rhai expression somewhere (then a message may keep the CPU
    /// busy up to the expression's operation limit).
    pub(crate) fn has_expr(&self) -> bool {
        match self {
            Test::Field(..) => false,
            Test::Expr(_) => true,
            Test::All(tests) | Test::Any(tests) => tests.iter().any(Test::has_expr),
            Test::Not(test) => test.has_expr(),
        }
    }

    /// Whether `msg` passes. An expression that fails is an error for that message.
    pub(crate) fn matches(&self, msg: &FluxMsg, scratch: &mut Scratch) -> Result<bool, GearError> {
        Ok(match self {
            Test::Field(field, test) => test.check(field.get(msg)),
            Test::Expr(expr) => expr.test(msg, &mut scratch.scope)?,
            Test::All(tests) => {
                for t in tests {
                    if !t.matches(msg, scratch)? {
                        return Ok(false);
                    }
                }
                true
            }
            Test::Any(tests) => {
                for t in tests {
                    if t.matches(msg, scratch)? {
                        return Ok(true);
                    }
                }
                false
            }
            Test::Not(t) => !t.matches(msg, scratch)?,
        })
    }
}

impl FieldTest {
    fn check(&self, val: Option<Val<'_>>) -> bool {
        match (self, val) {
            (FieldTest::Exists(want), v) => v.is_some() == *want,
            (_, None) => false,
            (FieldTest::Equals(lit), Some(v)) => equal(v, lit),
            (FieldTest::NotEquals(lit), Some(v)) => !equal(v, lit),
            (FieldTest::Prefix(p), Some(v)) => with_text(v, |t| t.starts_with(p.as_str())),
            (FieldTest::Regex(re), Some(v)) => with_text(v, |t| re.is_match(t)),
            (FieldTest::Compare(cmp, n), Some(v)) => v.number().is_some_and(|x| match cmp {
                Cmp::Gt => x > *n,
                Cmp::Gte => x >= *n,
                Cmp::Lt => x < *n,
                Cmp::Lte => x <= *n,
            }),
        }
    }
}

/// Runs `f` on the text form of `v`, borrowing when the value is text already.
fn with_text(v: Val<'_>, f: impl FnOnce(&str) -> bool) -> bool {
    match v {
        Val::Str(s) => f(s),
        Val::Value(Value::Text(t)) => f(t),
        other => f(&other.text()),
    }
}

fn equal(v: Val<'_>, lit: &Value) -> bool {
    if let Val::Value(value) = v
        && value == lit
    {
        return true;
    }
    let is_number = matches!(lit, Value::Integer(_) | Value::Float(_));
    if is_number && let (Some(a), Some(b)) = (v.number(), Val::Value(lit).number()) {
        return a == b;
    }
    match lit {
        Value::Text(t) => with_text(v, |s| s == t.as_str()),
        Value::Bool(_) | Value::Integer(_) | Value::Float(_) => {
            matches!(v, Val::Str(_)) && with_text(v, |s| s == Val::Value(lit).text())
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use fluxmsg::FluxMsg;

    use super::{Condition, Scratch};

    fn cond(json: serde_json::Value) -> Condition {
        serde_json::from_value(json).expect("a condition")
    }

    #[test]
    fn field_tests() {
        let msg = FluxMsg::builder()
            .data("amount", 1500)
            .data("pan", "4111")
            .meta("mti", "0100")
            .build();
        let mut s = Scratch::default();
        let check = |c: serde_json::Value, s: &mut Scratch| {
            cond(c)
                .compile("c")
                .expect("compiles")
                .matches(&msg, s)
                .expect("runs")
        };
        assert!(check(
            serde_json::json!({"field": "data.amount", "gt": 1000}),
            &mut s
        ));
        assert!(!check(
            serde_json::json!({"field": "data.amount", "lt": 1000}),
            &mut s
        ));
        assert!(check(
            serde_json::json!({"field": "data.amount", "equals": 1500}),
            &mut s
        ));
        assert!(check(
            serde_json::json!({"field": "data.amount", "equals": 1500.0}),
            &mut s
        ));
        assert!(check(
            serde_json::json!({"field": "data.pan", "prefix": "4"}),
            &mut s
        ));
        assert!(check(
            serde_json::json!({"field": "meta.mti", "equals": "0100"}),
            &mut s
        ));
        assert!(check(
            serde_json::json!({"field": "meta.mti", "gte": 100}),
            &mut s
        ));
        assert!(check(
            serde_json::json!({"field": "meta.mti", "regex": "^01"}),
            &mut s
        ));
        assert!(check(
            serde_json::json!({"field": "meta.nope", "exists": false}),
            &mut s
        ));
        assert!(!check(
            serde_json::json!({"field": "meta.nope", "not_equals": "x"}),
            &mut s
        ));
        assert!(check(
            serde_json::json!({"all": [{"field": "data.pan", "prefix": "4"}, {"not": {"field": "data.amount", "lt": 10}}]}),
            &mut s
        ));
        assert!(check(
            serde_json::json!({"any": [{"field": "id", "exists": true}, {"expr": "data.amount == 1500"}]}),
            &mut s
        ));
    }

    #[test]
    fn malformed_conditions_name_their_path() {
        let err = |c: serde_json::Value| {
            cond(c)
                .compile("rules[1].when")
                .expect_err("refused")
                .to_string()
        };
        assert!(
            err(serde_json::json!({"field": "data.x"}))
                .contains("config.rules[1].when: with `field`")
        );
        assert!(
            err(serde_json::json!({"field": "data.x", "gt": 1, "lt": 2})).contains("exactly one")
        );
        assert!(
            err(serde_json::json!({"field": "data.x", "regex": "("}))
                .contains("config.rules[1].when.regex")
        );
        assert!(
            err(serde_json::json!({"field": "bogus", "exists": true}))
                .contains("unknown field \"bogus\"")
        );
        assert!(
            err(serde_json::json!({"all": []})).contains("config.rules[1].when.all: an empty list")
        );
        assert!(err(serde_json::json!({})).contains("an empty condition"));
    }
}
