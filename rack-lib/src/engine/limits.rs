//! The engine's limits: queue and batch sizes, timeouts, redelivery, the lanes' stream.

use std::time::Duration;

/// The engine's limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct Limits {
    /// Deliveries (batches) a gear's input queue holds before senders wait (default 1,024).
    pub queue: usize,
    /// Most messages a gear processes in one batch (default 64).
    pub batch: usize,
    /// How long a send on a hot wire waits on a full queue before it counts as an error
    /// (default 5 s; a send into a guaranteed lane waits as long as it takes).
    pub send_timeout: Duration,
    /// How long a gear's tasks get to finish when it drains (default 5 s).
    pub drain_timeout: Duration,
    /// How long a guaranteed lane waits for a message's ack before delivering it again
    /// (default 30 s).
    pub ack_wait: Duration,
    /// Deliveries of a message on a guaranteed lane before it goes to the dead-letter
    /// subject (default 5).
    pub max_deliver: u32,
    /// How long the `flux-msg` stream of the guaranteed lanes keeps a message (default 24 h).
    pub stream_max_age: Duration,
    /// How many bytes the `flux-msg` stream keeps before it drops its oldest messages
    /// (default 1 GiB).
    pub stream_max_bytes: u64,
    /// How long the `flux-dlq` stream keeps a dead letter (default 7 days).
    pub dead_letter_max_age: Duration,
    /// How many bytes the `flux-dlq` stream keeps before it drops its oldest dead letters
    /// (default 1 GiB).
    pub dead_letter_max_bytes: u64,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            queue: 1024,
            batch: 64,
            send_timeout: Duration::from_secs(5),
            drain_timeout: Duration::from_secs(5),
            ack_wait: Duration::from_secs(30),
            max_deliver: 5,
            stream_max_age: Duration::from_secs(24 * 60 * 60),
            stream_max_bytes: 1 << 30,
            dead_letter_max_age: snake::DEAD_LETTER_MAX_AGE,
            dead_letter_max_bytes: snake::DEAD_LETTER_MAX_BYTES,
        }
    }
}

impl Limits {
    /// The same limits with another queue size (at least 1).
    #[must_use]
    pub fn with_queue(mut self, queue: usize) -> Limits {
        self.queue = queue.max(1);
        self
    }

    /// The same limits with another batch size (at least 1).
    #[must_use]
    pub fn with_batch(mut self, batch: usize) -> Limits {
        self.batch = batch.max(1);
        self
    }

    /// The same limits with another send timeout.
    #[must_use]
    pub fn with_send_timeout(mut self, timeout: Duration) -> Limits {
        self.send_timeout = timeout;
        self
    }

    /// The same limits with another ack wait for guaranteed lanes.
    #[must_use]
    pub fn with_ack_wait(mut self, wait: Duration) -> Limits {
        self.ack_wait = wait;
        self
    }

    /// The same limits with another number of deliveries on a guaranteed lane before a
    /// message is dead-lettered (at least 1).
    #[must_use]
    pub fn with_max_deliver(mut self, deliveries: u32) -> Limits {
        self.max_deliver = deliveries.max(1);
        self
    }

    /// The same limits with other bounds for the `flux-msg` stream (they apply when this rack
    /// is the one that creates it; a stream already there is used as it is).
    #[must_use]
    pub fn with_stream_limits(mut self, max_age: Duration, max_bytes: u64) -> Limits {
        self.stream_max_age = max_age;
        self.stream_max_bytes = max_bytes;
        self
    }

    /// The same limits with other bounds for the `flux-dlq` stream (the first rack to
    /// need it creates it; a stream already there is used as it is).
    #[must_use]
    pub fn with_dead_letter_limits(mut self, max_age: Duration, max_bytes: u64) -> Limits {
        self.dead_letter_max_age = max_age;
        self.dead_letter_max_bytes = max_bytes;
        self
    }

    /// The same limits with another drain timeout.
    #[must_use]
    pub fn with_drain_timeout(mut self, timeout: Duration) -> Limits {
        self.drain_timeout = timeout;
        self
    }
}
