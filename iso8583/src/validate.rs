//! Checking a message against the spec's semantic layer: per-MTI usage and closed value sets.

use crate::message::{FieldRef, Message};
use crate::spec::{Spec, Usage};

/// One way a message breaks its spec's rules.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Violation {
    /// A field the message type requires is absent.
    Missing(u16),
    /// A field the message type forbids is present.
    Forbidden(u16),
    /// A value outside a closed value set (the value is not repeated here: it may be
    /// sensitive).
    NotInSet {
        /// The field.
        field: u16,
        /// The value set's name.
        set: String,
    },
}

impl Spec {
    /// The violations of the spec's rules in `msg`: mandatory and forbidden fields for its
    /// MTI, and values outside closed value sets. Empty when it follows them all.
    pub fn validate(&self, msg: &Message) -> Vec<Violation> {
        let mut out = Vec::new();
        for f in self.fields() {
            let n = f.number();
            if n < 2 {
                continue;
            }
            let present = msg.get(n);
            match (f.semantic().usage(msg.mti()), present) {
                (Usage::Mandatory, None) => out.push(Violation::Missing(n)),
                (Usage::Forbidden, Some(_)) => out.push(Violation::Forbidden(n)),
                _ => {}
            }
            if let (Some(i), Some(FieldRef::Value(v))) = (f.semantic.values_ref, present)
                && let Some(set) = self.enums.get(i)
                && set.closed
                && !set.values.iter().any(|(x, _, _)| x.as_bytes() == v)
            {
                out.push(Violation::NotInSet {
                    field: n,
                    set: set.name.clone(),
                });
            }
        }
        out
    }

    /// The name and category of `value` in the value set field `number` refers to.
    pub fn value_info(&self, number: u16, value: &str) -> Option<(Option<&str>, Option<&str>)> {
        let i = self.field(number)?.semantic.values_ref?;
        self.enums
            .get(i)?
            .values
            .iter()
            .find(|(x, _, _)| x == value)
            .map(|(_, name, cat)| (name.as_deref(), cat.as_deref()))
    }
}
