//! Messages as the transport carries them: subject, optional reply subject, headers, payload.

use std::borrow::Cow;
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
    /// Its sequence number in the stream it came from.
    pub const DLQ_SEQUENCE: &str = "Flux-Dlq-Sequence";
    /// When it gave up, in milliseconds since the Unix epoch.
    pub const DLQ_TIME: &str = "Flux-Dlq-Time";
    /// The message id it had (its dead letter is deduplicated on an id of its own).
    pub const DLQ_MSG_ID: &str = "Flux-Dlq-Msg-Id";
    /// Which part of a pack (several messages published as one) it was, from 0: only that
    /// part gave up, the rest of the pack was handled.
    pub const DLQ_PART: &str = "Flux-Dlq-Part";
}

/// Message headers: an ordered list of name/value pairs (a name may repeat).
///
/// The names snake sets itself (the [`header`] constants) are kept without a copy.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Headers(pub(crate) Vec<(Cow<'static, str>, String)>);

impl Headers {
    /// No headers.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets `name` to `value`, replacing earlier values of `name`.
    pub fn insert(&mut self, name: impl Into<String>, value: impl Into<String>) {
        self.set(Cow::Owned(name.into()), value.into());
    }

    /// Sets `name` to `value`, replacing earlier values of `name`, without copying a name
    /// that is one of snake's own.
    pub(crate) fn set(&mut self, name: Cow<'static, str>, value: String) {
        self.0.retain(|(n, _)| *n != name);
        self.0.push((known(name), value));
    }

    /// Adds a value of `name`, keeping earlier ones.
    pub fn append(&mut self, name: impl Into<String>, value: impl Into<String>) {
        self.0.push((known(Cow::Owned(name.into())), value.into()));
    }

    /// Adds a value of `name` as [`append`](Self::append) does, copying `name` only when it
    /// is not one of snake's own.
    pub(crate) fn append_str(&mut self, name: &str, value: &str) {
        let name = match KNOWN.iter().find(|k| **k == name) {
            Some(k) => Cow::Borrowed(*k),
            None => Cow::Owned(name.to_owned()),
        };
        self.0.push((name, value.to_owned()));
    }

    /// Removes every value of `name`.
    pub fn remove(&mut self, name: &str) {
        self.0.retain(|(n, _)| n != name);
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
        self.0.iter().map(|(n, v)| (n.as_ref(), v.as_str()))
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// The header names snake sets and reads, kept without a copy.
const KNOWN: [&str; 9] = [
    header::MSG_ID,
    header::DLQ_REASON,
    header::DLQ_SUBJECT,
    header::DLQ_STREAM,
    header::DLQ_DELIVERIES,
    header::DLQ_SEQUENCE,
    header::DLQ_TIME,
    header::DLQ_MSG_ID,
    header::DLQ_PART,
];

/// `name`, borrowed from [`KNOWN`] when it is one of those.
fn known(name: Cow<'static, str>) -> Cow<'static, str> {
    match KNOWN.iter().find(|k| **k == name) {
        Some(k) => Cow::Borrowed(*k),
        None => name,
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
        self.headers.set(Cow::Borrowed(header::MSG_ID), id.into());
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

/// Why a stream message gave up, on its way to a dead-letter subject.
pub(crate) struct GaveUp<'a> {
    /// The stream it came from.
    pub(crate) stream: &'a str,
    /// Its sequence number there.
    pub(crate) sequence: u64,
    /// Why it gave up.
    pub(crate) reason: &'a str,
    /// How many times it was delivered.
    pub(crate) deliveries: u32,
    /// Which part of a pack gave up (`None`: the whole message).
    pub(crate) part: Option<usize>,
}

impl GaveUp<'_> {
    /// `msg` readdressed to the dead-letter subject `to`, with the reason and its origin in
    /// headers. Its dedup id is the origin's stream and sequence, so that the same message
    /// given up twice (by the consumer's delivery count and by the server's advisory, or by
    /// two instances of a rack) is kept once.
    pub(crate) fn letter(&self, mut msg: Message, to: Subject) -> Message {
        let h = &mut msg.headers;
        if let Some(id) = h.get(header::MSG_ID).map(str::to_owned) {
            h.insert(header::DLQ_MSG_ID, id);
        }
        h.insert(header::DLQ_REASON, self.reason);
        h.insert(header::DLQ_SUBJECT, msg.subject.to_string());
        h.insert(header::DLQ_STREAM, self.stream);
        h.insert(header::DLQ_SEQUENCE, self.sequence.to_string());
        h.insert(header::DLQ_DELIVERIES, self.deliveries.to_string());
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis());
        h.insert(header::DLQ_TIME, now.to_string());
        let id = match self.part {
            Some(part) => {
                h.insert(header::DLQ_PART, part.to_string());
                format!("dlq:{}:{}:{part}", self.stream, self.sequence)
            }
            None => format!("dlq:{}:{}", self.stream, self.sequence),
        };
        h.insert(header::MSG_ID, id);
        msg.subject = to;
        msg.reply = None;
        msg
    }
}

/// Counts and logs a message that gave up and could not be kept: the same record for every
/// backend. `reason` is why it gave up, `cause` why it is not kept (`no_dead_letter_subject`,
/// `no_dead_letter_stream`, `closed`, `publish_failed`).
pub(crate) fn count_dead_drop(counter: &AtomicU64, stream: &str, reason: &str, cause: &str) {
    let n = counter.fetch_add(1, Ordering::Relaxed) + 1;
    tracing::error!(
        stream,
        reason,
        cause,
        dropped_total = n,
        "Dropped a message that gave up: it could not be kept as a dead letter."
    );
}
