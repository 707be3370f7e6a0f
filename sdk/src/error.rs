//! The crate's [`Error`], a gear's per-message [`GearError`] and the configuration's
//! [`ConfigError`] with its [`FieldError`]s.

use std::borrow::Cow;
use std::fmt;

/// What went wrong while setting up or running a gear outside the per-message path.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The configuration does not fit the gear's schema or its own rules, or names a port the
    /// gear does not have.
    #[error("gear {gear:?} ({gear_type}) has an invalid configuration")]
    Config {
        /// The gear's name in the scenario.
        gear: String,
        /// The gear's type.
        gear_type: String,
        /// Every problem found, each with its field path.
        source: ConfigError,
    },
    /// A port name breaks the naming rule (`[a-z0-9_-]+`, 1 to 64 bytes, no dots).
    #[error("invalid port name {0:?}: use 1 to 64 of a-z, 0-9, '_' and '-'")]
    PortName(String),
    /// A gear type cannot be registered: its name is invalid or its config schema does not
    /// compile.
    #[error("gear type {gear_type:?}: {reason}")]
    Schema {
        /// The type name.
        gear_type: String,
        /// What is wrong.
        reason: String,
    },
    /// A lifecycle hook (load, init, start) failed.
    #[error("gear {gear:?} failed to {stage}")]
    Lifecycle {
        /// The gear's name.
        gear: String,
        /// `load`, `init`, `start`, or `process` (a message sent to a port the gear lacks).
        stage: &'static str,
        /// What the gear said.
        source: GearError,
    },
    /// A lifecycle method was called out of order (for example `start` before `init`).
    #[error("gear {gear:?}: cannot {action} while {state}")]
    State {
        /// The gear's name.
        gear: String,
        /// What was asked.
        action: &'static str,
        /// The state the gear was in.
        state: &'static str,
    },
}

/// Why a gear refused a message or failed a lifecycle hook.
///
/// On the per-message path the reason becomes the message's `error.reason` metadata (a short,
/// stable code such as `no_route` or `timeout`) and the detail, if any, its `error.detail`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GearError {
    reason: Cow<'static, str>,
    detail: Option<String>,
}

impl GearError {
    /// An error with a short reason code.
    pub fn new(reason: impl Into<Cow<'static, str>>) -> GearError {
        GearError {
            reason: reason.into(),
            detail: None,
        }
    }

    /// The same error with a human-readable detail.
    #[must_use]
    pub fn with_detail(mut self, detail: impl fmt::Display) -> GearError {
        self.detail = Some(detail.to_string());
        self
    }

    /// The reason code.
    pub fn reason(&self) -> &str {
        &self.reason
    }

    /// The detail, if any.
    pub fn detail(&self) -> Option<&str> {
        self.detail.as_deref()
    }
}

impl fmt::Display for GearError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.detail {
            Some(detail) => write!(f, "{}: {detail}", self.reason),
            None => f.write_str(&self.reason),
        }
    }
}

impl std::error::Error for GearError {}

/// Every problem found in a gear's configuration, each naming the field it is about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    problems: Vec<FieldError>,
}

/// One configuration problem: where (a dotted field path, `rules[0].regex`) and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldError {
    /// The dotted path of the field, empty for the configuration as a whole.
    pub path: String,
    /// Why the value was refused.
    pub reason: String,
}

impl ConfigError {
    /// One problem at `path` (dotted, `rate.tps`; empty for the whole configuration).
    pub fn field(path: impl Into<String>, reason: impl fmt::Display) -> ConfigError {
        ConfigError {
            problems: vec![FieldError {
                path: path.into(),
                reason: reason.to_string(),
            }],
        }
    }

    pub(crate) fn from_problems(problems: Vec<FieldError>) -> ConfigError {
        ConfigError { problems }
    }

    /// The problems, in the order they were found.
    pub fn problems(&self) -> &[FieldError] {
        &self.problems
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, p) in self.problems.iter().enumerate() {
            if i > 0 {
                f.write_str("; ")?;
            }
            if p.path.is_empty() {
                write!(f, "config: {}", p.reason)?;
            } else {
                write!(f, "config.{}: {}", p.path, p.reason)?;
            }
        }
        Ok(())
    }
}

impl std::error::Error for ConfigError {}
