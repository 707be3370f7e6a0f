//! The handle users hold, and the subscription, consumer and bucket handles it gives out.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::FutureExt;
use tokio::sync::{broadcast, mpsc};

use crate::config::{ConsumerConfig, KvConfig, StreamConfig};
use crate::memory::kv::Bucket;
use crate::memory::{Memory, Stream, lock};
use crate::nats::{
    Nats, NatsConsumer, NatsDelivery, NatsKv, NatsKvWatch, NatsOptions, NatsSubscription,
    PendingAck,
};
use crate::subject::kv_key;
use crate::subject::matches;
use crate::{Error, Message, Pattern, StateWatch, Subject};

/// A stream's acknowledgement of one stored message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PubAck {
    /// The stream that stored it.
    pub stream: String,
    /// Its sequence number in the stream.
    pub sequence: u64,
    /// Whether it was a repeat of a message id within the duplicate window (not stored
    /// again; `sequence` is the first one's).
    pub duplicate: bool,
}

/// A handle to the transport, cheap to clone and to share between tasks.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), snake::Error> {
/// use snake::{Message, Pattern, Snake, Subject};
///
/// let snake = Snake::memory();
/// let mut sub = snake.subscribe(Pattern::msg_all()).await?;
/// let to = Subject::msg("edge-1", "acceptor", "in")?;
/// snake.publish(Message::new(to.clone(), &b"hello"[..])).await?;
/// assert_eq!(sub.next().await.map(|m| m.subject), Some(to));
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct Snake {
    pub(crate) backend: Backend,
}

#[derive(Clone)]
pub(crate) enum Backend {
    Memory(Arc<Memory>),
    Nats(Arc<Nats>),
}

impl std::fmt::Debug for Snake {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.backend {
            Backend::Memory(_) => f.write_str("Snake(memory)"),
            Backend::Nats(_) => f.write_str("Snake(nats)"),
        }
    }
}

impl Snake {
    /// The in-process backend: NATS and JetStream semantics inside this process, nothing
    /// to install. Every clone of the handle shares the same subjects, streams and buckets.
    pub fn memory() -> Snake {
        Snake {
            backend: Backend::Memory(Memory::new()),
        }
    }

    /// The NATS backend: JetStream through async-nats, across processes and machines.
    /// Connects before returning, then reconnects on its own ([`Snake::state`] follows).
    ///
    /// # Errors
    ///
    /// [`Error::Unauthorized`] when the server refuses the credentials, [`Error::Nats`]
    /// (connect) when it cannot be reached or TLS fails.
    pub async fn nats(options: NatsOptions) -> Result<Snake, Error> {
        Ok(Snake {
            backend: Backend::Nats(Nats::connect(options).await?),
        })
    }

    /// Publishes a message at most once to every current subscriber whose pattern matches,
    /// and stores it in every stream that captures its subject.
    ///
    /// # Errors
    ///
    /// [`Error::Closed`] once the transport is closed.
    pub async fn publish(&self, msg: Message) -> Result<(), Error> {
        match &self.backend {
            Backend::Memory(m) => m.publish(msg),
            Backend::Nats(n) => n.publish(msg).await,
        }
    }

    /// Subscribes to the subjects matching `pattern` (at most once: a subscriber too slow
    /// to keep up loses messages, counted and logged).
    ///
    /// # Errors
    ///
    /// [`Error::Closed`] once the transport is closed.
    pub async fn subscribe(&self, pattern: Pattern) -> Result<Subscription, Error> {
        match &self.backend {
            Backend::Memory(m) => {
                let (id, rx) = m.subscribe(pattern)?;
                Ok(Subscription {
                    inner: SubscriptionInner::Memory {
                        rx,
                        memory: Arc::clone(m),
                        id,
                    },
                })
            }
            Backend::Nats(n) => Ok(Subscription {
                inner: SubscriptionInner::Nats(n.subscribe(&pattern).await?),
            }),
        }
    }

    /// Subscribes to the subjects matching `pattern` as one member of the queue group
    /// `group`: each message goes to one member of the group only (and to every plain
    /// subscriber as usual). Several mixers sharing one fleet answer each hello and heartbeat
    /// once this way.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidName`] when `group` is not a valid [`token`](crate::token),
    /// [`Error::Closed`] once the transport is closed.
    pub async fn subscribe_queue(
        &self,
        pattern: Pattern,
        group: &str,
    ) -> Result<Subscription, Error> {
        let group = crate::token("queue group", group)?;
        match &self.backend {
            Backend::Memory(m) => {
                let (id, rx) = m.subscribe_in(pattern, Some(group.to_owned()))?;
                Ok(Subscription {
                    inner: SubscriptionInner::Memory {
                        rx,
                        memory: Arc::clone(m),
                        id,
                    },
                })
            }
            Backend::Nats(n) => Ok(Subscription {
                inner: SubscriptionInner::Nats(n.subscribe_queue(&pattern, group).await?),
            }),
        }
    }

    /// Sends a request and waits for the first answer.
    ///
    /// # Errors
    ///
    /// [`Error::NoResponders`] when nobody listens on `subject`, [`Error::Timeout`] when
    /// no answer comes within `timeout`.
    pub async fn request(
        &self,
        subject: Subject,
        payload: impl Into<Bytes>,
        timeout: Duration,
    ) -> Result<Message, Error> {
        match &self.backend {
            Backend::Memory(m) => {
                if !m.has_subscriber(&subject) {
                    return Err(Error::NoResponders(subject.to_string()));
                }
                let inbox = Subject::parse(&format!("_INBOX.{}", m.next_id()))?;
                let mut sub = self.subscribe(Pattern::from(inbox.clone())).await?;
                let mut msg = Message::new(subject, payload);
                msg.reply = Some(inbox);
                m.publish(msg)?;
                tokio::time::timeout(timeout, sub.next())
                    .await
                    .map_err(|_| Error::Timeout(timeout))?
                    .ok_or(Error::Closed)
            }
            Backend::Nats(n) => n.request(subject, payload.into(), timeout).await,
        }
    }

    /// Answers a request: publishes `payload` to its reply subject.
    ///
    /// # Errors
    ///
    /// [`Error::NoResponders`] when the request has no reply subject; as
    /// [`Snake::publish`] otherwise.
    pub async fn respond(&self, request: &Message, payload: impl Into<Bytes>) -> Result<(), Error> {
        let reply = request
            .reply
            .clone()
            .ok_or_else(|| Error::NoResponders(request.subject.to_string()))?;
        self.publish(Message::new(reply, payload)).await
    }

    /// Creates a stream, or checks that an existing one has the same configuration.
    ///
    /// # Errors
    ///
    /// [`Error::StreamConflict`] when it exists with another configuration.
    pub async fn create_stream(&self, cfg: StreamConfig) -> Result<(), Error> {
        match &self.backend {
            Backend::Memory(m) => m.create_stream(cfg),
            Backend::Nats(n) => n.create_stream(&cfg).await,
        }
    }

    /// The largest message payload the server takes, in bytes (`None` in process, where
    /// there is no such limit). A message over it can never be published: callers that
    /// retry failed publishes should refuse it up front instead.
    pub fn max_payload(&self) -> Option<usize> {
        match &self.backend {
            Backend::Memory(_) => None,
            Backend::Nats(n) => n.max_payload(),
        }
    }

    /// Publishes to a stream and waits for its acknowledgement. To publish many messages,
    /// [`Snake::stream_publisher`] keeps a window of acks in flight instead.
    ///
    /// # Errors
    ///
    /// [`Error::NoStream`] when no stream captures the subject.
    pub async fn stream_publish(&self, msg: Message) -> Result<PubAck, Error> {
        match &self.backend {
            Backend::Memory(m) => m.stream_publish(msg),
            Backend::Nats(n) => n.stream_publish(msg).await,
        }
    }

    /// A publisher that keeps up to `window` stream acknowledgements pending rather than
    /// waiting for each one.
    pub fn stream_publisher(&self, window: usize) -> StreamPublisher {
        StreamPublisher {
            snake: self.clone(),
            window: window.max(1),
            acks: VecDeque::new(),
            pending: VecDeque::new(),
        }
    }

    /// A guaranteed consumer of the stream named `stream`; a durable one resumes where a
    /// previous handle with the same name stopped.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidName`] for a name that is not a valid [`token`](crate::token),
    /// [`Error::StreamNotFound`] when there is no such stream.
    pub async fn consumer(&self, stream: &str, cfg: ConsumerConfig) -> Result<Consumer, Error> {
        // The name also goes into advisory subjects on NATS.
        crate::token("stream name", stream)?;
        match &self.backend {
            Backend::Memory(m) => {
                let stream = m.stream(stream)?;
                let durable = cfg.durable.is_some();
                let name = cfg
                    .durable
                    .clone()
                    // `~` is not allowed in a durable name, so the two never collide.
                    .unwrap_or_else(|| format!("~ephemeral-{}", m.next_id()));
                let name = stream.add_consumer(cfg, name);
                Ok(Consumer {
                    inner: ConsumerInner::Memory {
                        memory: Arc::clone(m),
                        stream,
                        name,
                        durable,
                    },
                })
            }
            Backend::Nats(n) => Ok(Consumer {
                inner: ConsumerInner::Nats(Box::new(NatsConsumer::new(n, stream, cfg).await?)),
            }),
        }
    }

    /// The message stored at `sequence` in `stream` (`None` when there is none: never
    /// stored, removed, or aged out).
    ///
    /// # Errors
    ///
    /// [`Error::StreamNotFound`] when there is no such stream.
    pub async fn stream_get(&self, stream: &str, sequence: u64) -> Result<Option<Message>, Error> {
        match &self.backend {
            Backend::Memory(m) => Ok(m.stream(stream)?.get(sequence)),
            Backend::Nats(n) => n.stream_get(stream, sequence).await,
        }
    }

    /// The first message of `stream` at or after sequence `from` whose subject matches
    /// `filter`, with its sequence: to walk a stream, ask again from that sequence plus one.
    ///
    /// # Errors
    ///
    /// [`Error::StreamNotFound`] when there is no such stream.
    pub async fn stream_next(
        &self,
        stream: &str,
        filter: &Pattern,
        from: u64,
    ) -> Result<Option<(u64, Message)>, Error> {
        match &self.backend {
            Backend::Memory(m) => Ok(m.stream(stream)?.next_matching(filter, from)),
            Backend::Nats(n) => n.stream_next(stream, filter, from).await,
        }
    }

    /// How many messages `stream` holds whose subject matches `filter`.
    ///
    /// # Errors
    ///
    /// [`Error::StreamNotFound`] when there is no such stream.
    pub async fn stream_count(&self, stream: &str, filter: &Pattern) -> Result<u64, Error> {
        match &self.backend {
            Backend::Memory(m) => Ok(m.stream(stream)?.count(filter)),
            Backend::Nats(n) => n.stream_count(stream, filter).await,
        }
    }

    /// Removes the message at `sequence` from `stream`; whether it was there.
    ///
    /// # Errors
    ///
    /// [`Error::StreamNotFound`] when there is no such stream.
    pub async fn stream_delete(&self, stream: &str, sequence: u64) -> Result<bool, Error> {
        match &self.backend {
            Backend::Memory(m) => Ok(m.stream(stream)?.delete(sequence)),
            Backend::Nats(n) => n.stream_delete(stream, sequence).await,
        }
    }

    /// Deletes the durable consumer `name` of `stream`, with its position and pending
    /// deliveries; whether it was there.
    ///
    /// # Errors
    ///
    /// [`Error::StreamNotFound`] when there is no such stream.
    pub async fn delete_consumer(&self, stream: &str, name: &str) -> Result<bool, Error> {
        match &self.backend {
            Backend::Memory(m) => Ok(m.stream(stream)?.remove_consumer(name)),
            Backend::Nats(n) => n.delete_consumer(stream, name).await,
        }
    }

    /// Creates the durable consumer `cfg` describes if it does not exist yet, without taking
    /// anything from it: so that a lane's consumer exists, from the messages published from
    /// now on, before the side that reads it starts. An existing one is left as it is.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidName`] when `cfg` is not durable, [`Error::StreamNotFound`] when there
    /// is no such stream.
    pub async fn create_consumer(&self, stream: &str, cfg: ConsumerConfig) -> Result<(), Error> {
        crate::token("stream name", stream)?;
        let Some(name) = cfg.durable.clone() else {
            return Err(Error::InvalidName {
                what: "consumer",
                name: String::new(),
                reason: "only a durable consumer can be created ahead of its reader",
            });
        };
        match &self.backend {
            Backend::Memory(m) => {
                m.stream(stream)?.add_consumer(cfg, name);
                Ok(())
            }
            Backend::Nats(n) => crate::nats::ensure_durable(n, stream, &name, &cfg).await,
        }
    }

    /// A key-value bucket, created if it does not exist.
    ///
    /// # Errors
    ///
    /// [`Error::StreamConflict`] when it exists with another configuration.
    pub async fn kv(&self, cfg: KvConfig) -> Result<Kv, Error> {
        match &self.backend {
            Backend::Memory(m) => {
                let mut buckets = lock(&m.buckets);
                let bucket = buckets
                    .entry(cfg.bucket.clone())
                    .or_insert_with(|| Arc::new(Bucket::new(cfg.clone())));
                if *bucket.config() != cfg {
                    return Err(Error::StreamConflict(format!("KV_{}", cfg.bucket)));
                }
                Ok(Kv {
                    inner: KvInner::Memory(Arc::clone(bucket)),
                })
            }
            Backend::Nats(n) => Ok(Kv {
                inner: KvInner::Nats(Arc::new(NatsKv::new(n, cfg).await?)),
            }),
        }
    }

    /// An existing key-value bucket, with the configuration it was created with; unlike
    /// [`Snake::kv`], it never creates one, so that a user of a bucket that someone else owns
    /// learns that the owner is missing.
    ///
    /// # Errors
    ///
    /// [`Error::BucketNotFound`] when there is no such bucket, [`Error::InvalidName`] for a
    /// name that is not a valid [`token`](crate::token).
    pub async fn kv_open(&self, bucket: &str) -> Result<Kv, Error> {
        crate::token("bucket", bucket)?;
        match &self.backend {
            Backend::Memory(m) => {
                let buckets = lock(&m.buckets);
                let bucket = buckets
                    .get(bucket)
                    .ok_or_else(|| Error::BucketNotFound(bucket.to_owned()))?;
                Ok(Kv {
                    inner: KvInner::Memory(Arc::clone(bucket)),
                })
            }
            Backend::Nats(n) => Ok(Kv {
                inner: KvInner::Nats(Arc::new(NatsKv::open(n, bucket).await?)),
            }),
        }
    }

    /// The connection state now and its changes.
    pub fn state(&self) -> StateWatch {
        StateWatch::new(match &self.backend {
            Backend::Memory(m) => m.state(),
            Backend::Nats(n) => n.state(),
        })
    }

    /// Waits until what was published so far (acknowledgements of deliveries included) has
    /// been written to the server, so that a clean stop loses none of it. Nothing to wait
    /// for in process.
    ///
    /// # Errors
    ///
    /// Over the network, [`Error::Closed`] once the transport is closed, or a connection
    /// that could not be flushed.
    pub async fn flush(&self) -> Result<(), Error> {
        match &self.backend {
            Backend::Memory(_) => Ok(()),
            Backend::Nats(n) => n.flush().await,
        }
    }

    /// Closes the transport: subscriptions end, publishing fails with [`Error::Closed`].
    pub async fn close(&self) {
        match &self.backend {
            Backend::Memory(m) => m.close(),
            Backend::Nats(n) => n.close().await,
        }
    }

    /// Messages dropped so far: `(slow core subscribers, dead letters with nowhere to go)`.
    pub fn dropped(&self) -> (u64, u64) {
        match &self.backend {
            Backend::Memory(m) => m.dropped(),
            Backend::Nats(n) => n.dropped(),
        }
    }
}

/// A core subscription; dropping it unsubscribes.
pub struct Subscription {
    inner: SubscriptionInner,
}

enum SubscriptionInner {
    Memory {
        rx: mpsc::Receiver<Message>,
        memory: Arc<Memory>,
        id: u64,
    },
    Nats(NatsSubscription),
}

impl std::fmt::Debug for Subscription {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.inner {
            SubscriptionInner::Memory { id, .. } => write!(f, "Subscription(memory, {id})"),
            SubscriptionInner::Nats(_) => f.write_str("Subscription(nats)"),
        }
    }
}

impl std::fmt::Debug for Memory {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Memory")
    }
}

impl Subscription {
    /// The next message, or `None` once the transport is closed.
    pub async fn next(&mut self) -> Option<Message> {
        match &mut self.inner {
            SubscriptionInner::Memory { rx, .. } => rx.recv().await,
            SubscriptionInner::Nats(n) => n.next().await,
        }
    }

    /// Waits for at least one message, then appends up to `max` that are ready to `buf`;
    /// returns how many (0 once the transport is closed). This is the batched path.
    pub async fn next_batch(&mut self, buf: &mut Vec<Message>, max: usize) -> usize {
        match &mut self.inner {
            SubscriptionInner::Memory { rx, .. } => rx.recv_many(buf, max.max(1)).await,
            SubscriptionInner::Nats(n) => n.next_batch(buf, max.max(1)).await,
        }
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        if let SubscriptionInner::Memory { memory, id, .. } = &self.inner {
            memory.unsubscribe(*id);
        }
    }
}

/// Publishes to streams with a bounded window of pending acknowledgements.
pub struct StreamPublisher {
    snake: Snake,
    window: usize,
    acks: VecDeque<PubAck>,
    /// Acknowledgements still to come (over the network).
    pending: VecDeque<PendingAck>,
}

impl std::fmt::Debug for StreamPublisher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StreamPublisher")
            .field("snake", &self.snake)
            .field("window", &self.window)
            .field("acks", &self.acks)
            .field("pending", &self.pending.len())
            .finish()
    }
}

impl StreamPublisher {
    /// Publishes one message; waits only when `window` acknowledgements are pending.
    ///
    /// # Errors
    ///
    /// As [`Snake::stream_publish`], for this message or one still pending.
    pub async fn publish(&mut self, msg: Message) -> Result<(), Error> {
        if let Backend::Nats(n) = &self.snake.backend {
            let n = Arc::clone(n);
            if self.pending.len() == self.window
                && let Some(oldest) = self.pending.pop_front()
            {
                self.keep(oldest.wait().await?);
            }
            self.pending.push_back(n.stream_send(&msg).await?);
            return Ok(());
        }
        // In process, the acknowledgement is immediate; the window bounds what is kept.
        let ack = self.snake.stream_publish(msg).await?;
        if self.acks.len() == self.window {
            self.acks.pop_front();
        }
        self.acks.push_back(ack);
        Ok(())
    }

    /// Waits for every pending acknowledgement and returns them, oldest first.
    ///
    /// # Errors
    ///
    /// As [`Snake::stream_publish`].
    pub async fn flush(&mut self) -> Result<Vec<PubAck>, Error> {
        while let Some(pending) = self.pending.pop_front() {
            let ack = pending.wait().await?;
            self.keep(ack);
        }
        Ok(self.acks.drain(..).collect())
    }

    /// Keeps a received acknowledgement for [`flush`](Self::flush): the last `window`, as in
    /// process.
    fn keep(&mut self, ack: PubAck) {
        if self.acks.len() + self.pending.len() >= self.window {
            self.acks.pop_front();
        }
        self.acks.push_back(ack);
    }
}

/// A guaranteed consumer; an ephemeral one is removed when its handle is dropped.
pub struct Consumer {
    inner: ConsumerInner,
}

enum ConsumerInner {
    Memory {
        memory: Arc<Memory>,
        stream: Arc<Stream>,
        name: String,
        durable: bool,
    },
    Nats(Box<NatsConsumer>),
}

impl std::fmt::Debug for Consumer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.inner {
            ConsumerInner::Memory { stream, name, .. } => {
                write!(f, "Consumer(memory, {}, {name})", stream.name())
            }
            ConsumerInner::Nats(n) => write!(f, "Consumer(nats, {})", n.name()),
        }
    }
}

impl std::fmt::Debug for Stream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Stream({})", self.name())
    }
}

impl Consumer {
    /// The next delivery: a redelivery that is due, or the next new message, waiting for
    /// one. A message delivered `max_deliver` times and still not acked goes to the
    /// dead-letter subject instead of being delivered again.
    ///
    /// # Errors
    ///
    /// [`Error::Closed`] once the transport is closed.
    pub async fn next(&mut self) -> Result<Delivery, Error> {
        match &mut self.inner {
            ConsumerInner::Memory {
                memory,
                stream,
                name,
                ..
            } => {
                let (message, sequence, deliveries) = stream.next(memory, name).await?;
                Ok(Delivery {
                    message,
                    sequence,
                    deliveries,
                    acker: Acker::Memory {
                        memory: Arc::clone(memory),
                        stream: Arc::clone(stream),
                        consumer: name.clone(),
                    },
                })
            }
            ConsumerInner::Nats(n) => {
                let (message, sequence, deliveries, acker) = n.next().await?;
                Ok(Delivery {
                    message,
                    sequence,
                    deliveries,
                    acker: Acker::Nats(acker),
                })
            }
        }
    }

    /// Waits for the next delivery as [`next`](Self::next) does, then appends it to `buf`
    /// with the deliveries already at hand after it, up to `max` in all (at least one);
    /// returns how many it appended.
    ///
    /// # Errors
    ///
    /// As [`next`](Self::next), when nothing was appended.
    pub async fn next_batch(
        &mut self,
        buf: &mut Vec<Delivery>,
        max: usize,
    ) -> Result<usize, Error> {
        let first = self.next().await?;
        buf.push(first);
        Ok(1 + self.ready(buf, max.max(1) - 1).await)
    }

    /// Appends to `buf` the deliveries at hand now (a message the NATS backend has already
    /// pulled, a message due in process), up to `max`, without waiting for one; returns how
    /// many it appended. An error is left for the next call to [`next`](Self::next).
    ///
    /// A delivery still in the backend's buffer is not reported in progress, so a caller that
    /// is slow to ask for deliveries can take them with this to keep them alive itself.
    pub async fn ready(&mut self, buf: &mut Vec<Delivery>, max: usize) -> usize {
        let mut n = 0;
        match &mut self.inner {
            ConsumerInner::Memory {
                memory,
                stream,
                name,
                ..
            } => {
                while n < max {
                    // A look that finds nothing ends at once; it holds nothing back.
                    let Some(Ok((message, sequence, deliveries))) =
                        stream.next(memory, name).now_or_never()
                    else {
                        break;
                    };
                    buf.push(Delivery {
                        message,
                        sequence,
                        deliveries,
                        acker: Acker::Memory {
                            memory: Arc::clone(memory),
                            stream: Arc::clone(stream),
                            consumer: name.clone(),
                        },
                    });
                    n += 1;
                }
            }
            ConsumerInner::Nats(c) => {
                let mut taken = Vec::new();
                c.ready(&mut taken, max).await;
                n = taken.len();
                buf.extend(
                    taken
                        .into_iter()
                        .map(|(message, sequence, deliveries, acker)| Delivery {
                            message,
                            sequence,
                            deliveries,
                            acker: Acker::Nats(acker),
                        }),
                );
            }
        }
        n
    }

    /// The consumer's name (its durable name, or a generated one).
    pub fn name(&self) -> &str {
        match &self.inner {
            ConsumerInner::Memory { name, .. } => name,
            ConsumerInner::Nats(n) => n.name(),
        }
    }
}

impl Drop for Consumer {
    fn drop(&mut self) {
        if let ConsumerInner::Memory {
            stream,
            name,
            durable: false,
            ..
        } = &self.inner
        {
            stream.remove_consumer(name);
        }
    }
}

/// One delivery of a stream message, to be acknowledged.
pub struct Delivery {
    /// The message.
    pub message: Message,
    /// Its sequence number in the stream.
    pub sequence: u64,
    /// How many times it has been delivered, this time included.
    pub deliveries: u32,
    acker: Acker,
}

enum Acker {
    Memory {
        memory: Arc<Memory>,
        stream: Arc<Stream>,
        consumer: String,
    },
    Nats(NatsDelivery),
}

impl std::fmt::Debug for Delivery {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Delivery")
            .field("message", &self.message)
            .field("sequence", &self.sequence)
            .field("deliveries", &self.deliveries)
            .finish_non_exhaustive()
    }
}

impl Delivery {
    /// Handled: it will not be delivered again.
    ///
    /// # Errors
    ///
    /// None in process; over the network, a lost acknowledgement.
    pub async fn ack(self) -> Result<(), Error> {
        match self.acker {
            Acker::Memory {
                stream, consumer, ..
            } => {
                stream.ack(&consumer, self.sequence);
                Ok(())
            }
            Acker::Nats(n) => n.ack().await,
        }
    }

    /// Still being worked on: the ack deadline starts again from now, so that a message that
    /// waits in a queue longer than `ack_wait` is not delivered a second time meanwhile.
    ///
    /// # Errors
    ///
    /// As [`Delivery::ack`].
    pub async fn in_progress(&self) -> Result<(), Error> {
        match &self.acker {
            Acker::Memory {
                stream, consumer, ..
            } => {
                stream.in_progress(consumer, self.sequence);
                Ok(())
            }
            Acker::Nats(n) => n.in_progress().await,
        }
    }

    /// Not handled: deliver it again after `delay` (counts toward `max_deliver`).
    ///
    /// # Errors
    ///
    /// As [`Delivery::ack`].
    pub async fn nak(self, delay: Duration) -> Result<(), Error> {
        match self.acker {
            Acker::Memory {
                memory,
                stream,
                consumer,
            } => {
                stream.nak(&memory, &consumer, self.sequence, delay);
                Ok(())
            }
            Acker::Nats(n) => n.nak(self.message, self.deliveries, delay).await,
        }
    }

    /// Never deliver it again: it goes to the dead-letter subject with `reason`.
    ///
    /// # Errors
    ///
    /// As [`Delivery::ack`].
    pub async fn term(self, reason: &str) -> Result<(), Error> {
        match self.acker {
            Acker::Memory {
                memory,
                stream,
                consumer,
            } => {
                stream.term(&memory, &consumer, self.sequence, reason);
                Ok(())
            }
            Acker::Nats(n) => n.term(self.message, self.deliveries, reason).await,
        }
    }

    /// Handled, except `parts`: payloads cut from this one (the messages of a pack that
    /// failed for good), each with its index in the pack and the reason. Each goes to the
    /// dead-letter subject as a dead letter of its own (marked with its part), and the
    /// delivery is acked, so the rest is not delivered again.
    ///
    /// # Errors
    ///
    /// As [`Delivery::ack`]; over the network, a dead letter that could not be kept yet, in
    /// which case the delivery is nak'ed instead and comes back.
    pub async fn dead_letter_parts(self, parts: Vec<(usize, Bytes, String)>) -> Result<(), Error> {
        match self.acker {
            Acker::Memory {
                memory,
                stream,
                consumer,
            } => {
                stream.dead_letter_parts(&memory, &consumer, self.sequence, parts);
                Ok(())
            }
            Acker::Nats(n) => {
                n.dead_letter_parts(self.message, self.deliveries, parts)
                    .await
            }
        }
    }
}

/// What a key-value entry records.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum KvOperation {
    /// A value was written.
    Put,
    /// The key was deleted.
    Delete,
}

/// One revision of a key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KvEntry {
    /// The key.
    pub key: String,
    /// The value (empty for a delete).
    pub value: Bytes,
    /// The bucket-wide revision of this write.
    pub revision: u64,
    /// Put or delete.
    pub operation: KvOperation,
}

/// A key-value bucket.
#[derive(Clone)]
pub struct Kv {
    inner: KvInner,
}

#[derive(Clone)]
enum KvInner {
    Memory(Arc<Bucket>),
    Nats(Arc<NatsKv>),
}

impl std::fmt::Debug for Kv {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.inner {
            KvInner::Memory(b) => write!(f, "Kv(memory, {})", b.config().bucket()),
            KvInner::Nats(n) => write!(f, "Kv(nats, {})", n.bucket()),
        }
    }
}

impl Kv {
    /// The live value of `key`, with its revision.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidKey`].
    pub async fn get(&self, key: &str) -> Result<Option<KvEntry>, Error> {
        match &self.inner {
            KvInner::Memory(b) => b.get(key),
            KvInner::Nats(n) => n.get(key).await,
        }
    }

    /// Writes `value`; returns its revision.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidKey`], [`Error::ValueTooLarge`].
    pub async fn put(&self, key: &str, value: impl Into<Bytes>) -> Result<u64, Error> {
        match &self.inner {
            KvInner::Memory(b) => b.put(key, value.into()),
            KvInner::Nats(n) => n.put(key, value.into()).await,
        }
    }

    /// Writes `value` only if the key has no live value.
    ///
    /// # Errors
    ///
    /// [`Error::KeyExists`], and as [`Kv::put`].
    pub async fn create(&self, key: &str, value: impl Into<Bytes>) -> Result<u64, Error> {
        match &self.inner {
            KvInner::Memory(b) => b.create(key, value.into()),
            KvInner::Nats(n) => n.create(key, value.into()).await,
        }
    }

    /// Writes `value` only if the key's last revision is `revision` (compare and set).
    ///
    /// # Errors
    ///
    /// [`Error::WrongRevision`], and as [`Kv::put`].
    pub async fn update(
        &self,
        key: &str,
        value: impl Into<Bytes>,
        revision: u64,
    ) -> Result<u64, Error> {
        match &self.inner {
            KvInner::Memory(b) => b.update(key, value.into(), revision),
            KvInner::Nats(n) => n.update(key, value.into(), revision).await,
        }
    }

    /// Deletes `key` (a delete marker with its own revision).
    ///
    /// # Errors
    ///
    /// [`Error::InvalidKey`].
    pub async fn delete(&self, key: &str) -> Result<u64, Error> {
        match &self.inner {
            KvInner::Memory(b) => b.delete(key),
            KvInner::Nats(n) => n.delete(key).await,
        }
    }

    /// Deletes `key` only if its last revision is `revision` (compare and delete), so that of
    /// two parties that read the same entry, one only takes it away.
    ///
    /// # Errors
    ///
    /// [`Error::WrongRevision`], and as [`Kv::delete`].
    pub async fn delete_if(&self, key: &str, revision: u64) -> Result<u64, Error> {
        match &self.inner {
            KvInner::Memory(b) => b.delete_if(key, revision),
            KvInner::Nats(n) => n.delete_if(key, revision).await,
        }
    }

    /// The configuration of the bucket (as read from the server for one opened with
    /// [`Snake::kv_open`]).
    pub fn config(&self) -> &KvConfig {
        match &self.inner {
            KvInner::Memory(b) => b.config(),
            KvInner::Nats(n) => n.config(),
        }
    }

    /// Watches the keys matching `pattern` (`*` one dot-separated part, `>` the rest): the
    /// current live entries first, then every change.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidKey`] for a malformed pattern.
    pub async fn watch(&self, pattern: &str) -> Result<KvWatch, Error> {
        let ok = pattern
            .split('.')
            .all(|p| p == "*" || p == ">" || kv_key(p).is_ok());
        if !ok {
            return Err(Error::InvalidKey(pattern.to_owned()));
        }
        match &self.inner {
            KvInner::Memory(b) => {
                let (current, seen, rx) = b.watch(pattern);
                Ok(KvWatch {
                    inner: KvWatchInner::Memory {
                        pattern: pattern.to_owned(),
                        current: current.into(),
                        seen,
                        rx,
                    },
                })
            }
            KvInner::Nats(n) => Ok(KvWatch {
                inner: KvWatchInner::Nats(Box::new(n.watch(pattern).await?)),
            }),
        }
    }
}

/// Changes to watched keys.
pub struct KvWatch {
    inner: KvWatchInner,
}

enum KvWatchInner {
    Memory {
        pattern: String,
        current: VecDeque<KvEntry>,
        seen: u64,
        rx: broadcast::Receiver<KvEntry>,
    },
    Nats(Box<NatsKvWatch>),
}

impl std::fmt::Debug for KvWatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.inner {
            KvWatchInner::Memory { pattern, .. } => write!(f, "KvWatch(memory, {pattern})"),
            KvWatchInner::Nats(_) => f.write_str("KvWatch(nats)"),
        }
    }
}

impl KvWatch {
    /// The next entry: first the live entries at the time of the watch, then each change.
    /// `None` when the bucket is gone.
    pub async fn next(&mut self) -> Option<KvEntry> {
        let (pattern, current, seen, rx) = match &mut self.inner {
            KvWatchInner::Memory {
                pattern,
                current,
                seen,
                rx,
            } => (pattern, current, seen, rx),
            KvWatchInner::Nats(n) => return n.next().await,
        };
        if let Some(e) = current.pop_front() {
            return Some(e);
        }
        loop {
            match rx.recv().await {
                Ok(e) if e.revision > *seen && matches(pattern, &e.key) => {
                    *seen = e.revision;
                    return Some(e);
                }
                Ok(_) => {}
                Err(broadcast::error::RecvError::Lagged(n)) => {
                    tracing::warn!(
                        pattern = %pattern,
                        missed = n,
                        reason = "watcher_lagged",
                        "A key-value watcher fell behind and missed changes."
                    );
                }
                Err(broadcast::error::RecvError::Closed) => return None,
            }
        }
    }
}
