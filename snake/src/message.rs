//! Messages as the transport carries them: subject, optional reply subject, headers, payload.

use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;

use crate::Subject;

/// Header names snake sets and reads.
pub mod header {
    /// The message id JetStream deduplicates on (within a stream's duplicate window).
    pub const MSG_ID: &str = "Nats-Msg-Id";
    /// Why a message went to the dead-letter subject (`max_deliver` or `terminated: …`).
    pub const DLQ_REASON: &str = "Flux-Dlq-Reason";
    /// The subject the dead letter was first published on.
    pub const DLQ_SUBJECT: &str = "Flux-Dlq-Subject";
    /// The stream the dead letter came from.
    pub const DLQ_STREAM: &str = "Flux-Dlq-Stream";
    /// How many times it was delivered before it gave up.
    pub const DLQ_DELIVERIES: &str = "Flux-Dlq-Deliveries";
}

/// Message headers: an ordered list of name/value pairs (a name may repeat).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Headers(Vec<(String, String)>);

impl Headers {
    /// No headers.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets `name` to `value`, replacing earlier values of `name`.
    pub fn insert(&mut self, name: impl Into<String>, value: impl Into<String>) {
        let name = name.into();
        self.0.retain(|(n, _)| *n != name);
        self.0.push((name, value.into()));
    }

    /// Adds a value of `name`, keeping earlier ones.
    pub fn append(&mut self, name: impl Into<String>, value: impl Into<String>) {
        self.0.push((name.into(), value.into()));
    }

    /// The first value of `name`.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// Every pair, in order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> + '_ {
        self.0.iter().map(|(n, v)| (n.as_str(), v.as_str()))
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// One message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    /// Where it was published.
    pub subject: Subject,
    /// Where an answer goes, for requests.
    pub reply: Option<Subject>,
    /// Headers.
    pub headers: Headers,
    /// The bytes, usually a CBOR fluxMsg.
    pub payload: Bytes,
}

impl Message {
    /// A message with no reply subject and no headers.
    pub fn new(subject: Subject, payload: impl Into<Bytes>) -> Self {
        Message {
            subject,
            reply: None,
            headers: Headers::new(),
            payload: payload.into(),
        }
    }

    /// Sets the message id that streams deduplicate on.
    #[must_use]
    pub fn with_id(mut self, id: impl Into<String>) -> Self {
        self.headers.insert(header::MSG_ID, id);
        self
    }

    /// Adds a header.
    #[must_use]
    pub fn with_header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.headers.insert(name, value);
        self
    }

    /// The message id, if it has one.
    pub fn id(&self) -> Option<&str> {
        self.headers.get(header::MSG_ID)
    }
}

/// Counts and logs a message that exhausted its deliveries with nowhere to go: the same
/// record for every backend.
pub(crate) fn count_dead_drop(counter: &AtomicU64, stream: &str, reason: &str) {
    let n = counter.fetch_add(1, Ordering::Relaxed) + 1;
    tracing::error!(
        stream,
        reason,
        dropped_total = n,
        "Dropped a message that exhausted its deliveries: its consumer has no dead-letter subject."
    );
}
