//! [`DynGearType`], a [`GearType`](crate::GearType) with its type erased for the factory, and
//! [`Prepared`], a gear built and checked but not yet running.

use std::fmt;
use std::sync::Arc;

use crate::error::{ConfigError, Error, FieldError};
use crate::gear::{Gear, GearType};
use crate::manifest::Manifest;
use crate::port::Ports;

type PrepareFn = fn(&serde_json::Value) -> Result<(Box<dyn Gear>, Ports), ConfigError>;

/// A registered gear type with its type erased: manifest, compiled config schema, constructor.
///
/// Made from a [`GearType`] with [`DynGearType::of`]; the factory keeps one per type name, and
/// the [`Harness`](crate::Harness) builds gears through the same path.
#[derive(Clone)]
pub struct DynGearType {
    manifest: Arc<Manifest>,
    schema: Arc<jsonschema::Validator>,
    prepare: PrepareFn,
}

impl fmt::Debug for DynGearType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DynGearType")
            .field("gear_type", &self.manifest.gear_type)
            .finish_non_exhaustive()
    }
}

/// A gear built from a validated configuration, not yet running.
pub struct Prepared {
    pub(crate) gear_type: String,
    pub(crate) config: serde_json::Value,
    pub(crate) ports: Ports,
    pub(crate) gear: Box<dyn Gear>,
}

impl fmt::Debug for Prepared {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Prepared")
            .field("gear_type", &self.gear_type)
            .field("ports", &self.ports)
            .finish_non_exhaustive()
    }
}

impl Prepared {
    /// The gear's type.
    pub fn gear_type(&self) -> &str {
        &self.gear_type
    }

    /// The concrete ports its configuration gives it.
    pub fn ports(&self) -> &Ports {
        &self.ports
    }

    /// The configuration it was built from.
    pub fn config(&self) -> &serde_json::Value {
        &self.config
    }
}

impl DynGearType {
    /// The type of `G`, with its manifest's `config_schema` generated from `G::Config`.
    ///
    /// # Errors
    ///
    /// [`Error::Schema`] when the generated schema does not compile, or the manifest's type name
    /// is not a valid name.
    pub fn of<G: GearType>() -> Result<DynGearType, Error> {
        let mut manifest = G::manifest();
        let schema = schemars::generate::SchemaSettings::draft2020_12()
            .into_generator()
            .into_root_schema_for::<G::Config>();
        let mut schema = schema.to_value();
        not_nullable(&mut schema);
        manifest.config_schema = schema;
        DynGearType::from_parts(manifest, prepare::<G>)
    }

    fn from_parts(manifest: Manifest, prepare: PrepareFn) -> Result<DynGearType, Error> {
        let bad = |reason: String| Error::Schema {
            gear_type: manifest.gear_type.clone(),
            reason,
        };
        if !crate::port::PortName::is_valid(&manifest.gear_type) {
            return Err(bad(
                "the type name must be 1 to 64 of a-z, 0-9, '_' and '-'".into(),
            ));
        }
        let schema =
            jsonschema::validator_for(&manifest.config_schema).map_err(|e| bad(e.to_string()))?;
        Ok(DynGearType {
            manifest: Arc::new(manifest),
            schema: Arc::new(schema),
            prepare,
        })
    }

    /// The type name.
    pub fn gear_type(&self) -> &str {
        &self.manifest.gear_type
    }

    /// The manifest.
    pub fn manifest(&self) -> &Manifest {
        &self.manifest
    }

    /// Checks `config` against the schema, then against the gear's own rules, and builds the
    /// gear (no tasks, no sockets). A missing configuration (`null`) counts as `{}`.
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] listing every schema violation with its field path, or the first
    /// problem found while reading the configuration.
    pub fn prepare(&self, config: &serde_json::Value) -> Result<Prepared, ConfigError> {
        let empty = serde_json::Value::Object(serde_json::Map::new());
        let config = if config.is_null() { &empty } else { config };
        let problems: Vec<FieldError> = self
            .schema
            .iter_errors(config)
            .map(|e| FieldError {
                path: dotted(e.instance_path().as_str()),
                reason: e.to_string(),
            })
            .collect();
        if !problems.is_empty() {
            return Err(ConfigError::from_problems(problems));
        }
        let (gear, ports) = (self.prepare)(config)?;
        Ok(Prepared {
            gear_type: self.manifest.gear_type.clone(),
            config: config.clone(),
            ports,
            gear,
        })
    }
}

fn prepare<G: GearType>(config: &serde_json::Value) -> Result<(Box<dyn Gear>, Ports), ConfigError> {
    let config: G::Config = serde_path_to_error::deserialize(config).map_err(|e| {
        let path = e.path().to_string();
        let path = if path == "." { String::new() } else { path };
        ConfigError::field(path, e.into_inner())
    })?;
    let ports = G::ports(&config)?;
    let gear = G::new(config, &ports)?;
    Ok((Box::new(gear), ports))
}

/// An optional field is one that may be left out, not one that may be null: `anyOf [T, null]`
/// becomes `T` and `type: [t, "null"]` becomes `t`, so that a wrong value inside an optional
/// field gets its own error instead of "not valid under any of the schemas".
fn not_nullable(schema: &mut serde_json::Value) {
    use serde_json::Value;
    let is_null = |v: &Value| v.get("type").and_then(Value::as_str) == Some("null");
    if let Value::Object(map) = schema {
        if let Some(Value::Array(types)) = map.get_mut("type") {
            types.retain(|t| t.as_str() != Some("null"));
            if let [only] = types.as_slice() {
                let only = only.clone();
                map.insert("type".into(), only);
            }
        }
        if let Some(Value::Array(any)) = map.get("anyOf")
            && any.len() == 2
            && let Some(keep) = any.iter().find(|v| !is_null(v))
            && any.iter().any(is_null)
        {
            let keep = keep.clone();
            map.remove("anyOf");
            if let Value::Object(inner) = keep {
                for (k, v) in inner {
                    map.entry(k).or_insert(v);
                }
            }
        }
        for v in map.values_mut() {
            not_nullable(v);
        }
    } else if let Value::Array(items) = schema {
        for v in items {
            not_nullable(v);
        }
    }
}

/// `/rules/0/regex` → `rules[0].regex`.
fn dotted(pointer: &str) -> String {
    let mut out = String::new();
    for segment in pointer.split('/').skip(1) {
        let segment = segment.replace("~1", "/").replace("~0", "~");
        if !segment.is_empty() && segment.bytes().all(|b| b.is_ascii_digit()) {
            out.push('[');
            out.push_str(&segment);
            out.push(']');
        } else {
            if !out.is_empty() {
                out.push('.');
            }
            out.push_str(&segment);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::dotted;

    #[test]
    fn pointers_become_dotted_paths() {
        assert_eq!(dotted(""), "");
        assert_eq!(dotted("/rate/tps"), "rate.tps");
        assert_eq!(dotted("/rules/0/regex"), "rules[0].regex");
        assert_eq!(dotted("/a~1b"), "a/b");
    }
}
