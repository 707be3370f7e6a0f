//! Configuration of streams, consumers and key-value buckets.

use std::time::Duration;

use crate::{Error, Pattern, Subject, token};

/// Where a stream keeps its messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Storage {
    /// On disk (survives a server restart); the default.
    #[default]
    File,
    /// In memory.
    Memory,
}

/// How long [`StreamConfig::dead_letters`] keeps a dead letter by default: 7 days.
pub const DEAD_LETTER_MAX_AGE: Duration = Duration::from_secs(7 * 24 * 3600);

/// How many payload bytes [`StreamConfig::dead_letters`] keeps by default: 1 GiB.
pub const DEAD_LETTER_MAX_BYTES: u64 = 1 << 30;

/// A stream: which subjects it captures and how long it keeps them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamConfig {
    pub(crate) name: String,
    pub(crate) subjects: Vec<Pattern>,
    pub(crate) max_age: Option<Duration>,
    pub(crate) max_bytes: Option<u64>,
    pub(crate) storage: Storage,
    pub(crate) duplicate_window: Duration,
}

impl StreamConfig {
    /// A stream named `name` capturing `subjects`, with no age or size limit, file storage
    /// and a two-minute duplicate window (JetStream's default).
    ///
    /// # Errors
    ///
    /// [`Error::InvalidName`] when `name` is not a valid [`token`], or `subjects` is empty.
    pub fn new(name: &str, subjects: impl IntoIterator<Item = Pattern>) -> Result<Self, Error> {
        let subjects: Vec<Pattern> = subjects.into_iter().collect();
        if subjects.is_empty() {
            return Err(Error::InvalidName {
                what: "stream",
                name: name.to_owned(),
                reason: "it captures no subject",
            });
        }
        Ok(StreamConfig {
            name: token("stream name", name)?.to_owned(),
            subjects,
            max_age: None,
            max_bytes: None,
            storage: Storage::File,
            duplicate_window: Duration::from_secs(120),
        })
    }

    /// The stream of dead letters, [`DLQ_STREAM`](crate::DLQ_STREAM) capturing `flux.dlq.>`:
    /// kept 7 days and up to 1 GiB by default (a dead letter waits for an operator, so it is
    /// kept longer than the messages it came from), file storage, a two-minute duplicate
    /// window (which keeps a message given up twice once).
    pub fn dead_letters() -> Self {
        StreamConfig {
            name: crate::DLQ_STREAM.to_owned(),
            subjects: vec![Pattern::dead_letters()],
            max_age: Some(DEAD_LETTER_MAX_AGE),
            max_bytes: Some(DEAD_LETTER_MAX_BYTES),
            storage: Storage::File,
            duplicate_window: Duration::from_secs(120),
        }
    }

    /// Messages older than this are removed.
    #[must_use]
    pub fn max_age(mut self, age: Duration) -> Self {
        self.max_age = Some(age);
        self
    }

    /// When the stream holds more than this many payload bytes, the oldest messages go.
    #[must_use]
    pub fn max_bytes(mut self, bytes: u64) -> Self {
        self.max_bytes = Some(bytes);
        self
    }

    /// Where messages are kept.
    #[must_use]
    pub fn storage(mut self, storage: Storage) -> Self {
        self.storage = storage;
        self
    }

    /// A second message with the same id within this window is dropped.
    #[must_use]
    pub fn duplicate_window(mut self, window: Duration) -> Self {
        self.duplicate_window = window;
        self
    }

    /// The stream's name.
    pub fn name(&self) -> &str {
        &self.name
    }
}

/// Where a new consumer starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum DeliverPolicy {
    /// From the first message the stream still holds; the default.
    #[default]
    All,
    /// From the next message published.
    New,
}

/// A guaranteed consumer: explicit acks, bounded redelivery, dead letters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsumerConfig {
    pub(crate) durable: Option<String>,
    pub(crate) filter: Pattern,
    pub(crate) deliver: DeliverPolicy,
    pub(crate) ack_wait: Duration,
    pub(crate) max_deliver: u32,
    pub(crate) dead_letter: Option<Subject>,
}

impl ConsumerConfig {
    /// An ephemeral consumer of the messages matching `filter`: 30 s to ack, at most 5
    /// deliveries, no dead-letter subject.
    pub fn new(filter: Pattern) -> Self {
        ConsumerConfig {
            durable: None,
            filter,
            deliver: DeliverPolicy::All,
            ack_wait: Duration::from_secs(30),
            max_deliver: 5,
            dead_letter: None,
        }
    }

    /// Makes the consumer durable under `name`: its position survives the handle, and a
    /// later [`crate::Snake::consumer`] with the same name resumes it.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidName`] when `name` is not a valid [`token`].
    pub fn durable(mut self, name: &str) -> Result<Self, Error> {
        self.durable = Some(token("consumer name", name)?.to_owned());
        Ok(self)
    }

    /// Where a new consumer starts.
    #[must_use]
    pub fn deliver(mut self, policy: DeliverPolicy) -> Self {
        self.deliver = policy;
        self
    }

    /// How long a delivery may stay unacknowledged before it is delivered again.
    #[must_use]
    pub fn ack_wait(mut self, wait: Duration) -> Self {
        self.ack_wait = wait;
        self
    }

    /// How many times a message is delivered at most (at least 1).
    #[must_use]
    pub fn max_deliver(mut self, n: u32) -> Self {
        self.max_deliver = n.max(1);
        self
    }

    /// Where messages go when their deliveries are exhausted or the handler terminates
    /// them, with the reason in the [`header::DLQ_REASON`](crate::header::DLQ_REASON)
    /// header. Without one they are dropped, counted and logged.
    #[must_use]
    pub fn dead_letter(mut self, subject: Subject) -> Self {
        self.dead_letter = Some(subject);
        self
    }
}

/// A key-value bucket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KvConfig {
    pub(crate) bucket: String,
    pub(crate) ttl: Option<Duration>,
    pub(crate) history: u8,
    pub(crate) max_value_size: usize,
    pub(crate) storage: Storage,
    pub(crate) replicas: usize,
}

impl KvConfig {
    /// A bucket named `bucket`: no TTL, one revision of history, values up to 1 MiB, file
    /// storage, one replica.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidName`] when `bucket` is not a valid [`token`].
    pub fn new(bucket: &str) -> Result<Self, Error> {
        Ok(KvConfig {
            bucket: token("bucket", bucket)?.to_owned(),
            ttl: None,
            history: 1,
            max_value_size: 1 << 20,
            storage: Storage::File,
            replicas: 1,
        })
    }

    /// Entries older than this read as absent and are removed.
    #[must_use]
    pub fn ttl(mut self, ttl: Duration) -> Self {
        self.ttl = Some(ttl);
        self
    }

    /// How many revisions of each key are kept (1 to 64).
    #[must_use]
    pub fn history(mut self, n: u8) -> Self {
        self.history = n.clamp(1, 64);
        self
    }

    /// The largest value accepted, in bytes.
    #[must_use]
    pub fn max_value_size(mut self, bytes: usize) -> Self {
        self.max_value_size = bytes;
        self
    }

    /// Where the bucket is kept.
    #[must_use]
    pub fn storage(mut self, storage: Storage) -> Self {
        self.storage = storage;
        self
    }

    /// How many copies a clustered NATS deployment keeps (1 to 5; a single server takes 1
    /// only). The in-process backend keeps one whatever this says.
    #[must_use]
    pub fn replicas(mut self, n: usize) -> Self {
        self.replicas = n.clamp(1, 5);
        self
    }

    /// The bucket's name.
    pub fn bucket(&self) -> &str {
        &self.bucket
    }
}
