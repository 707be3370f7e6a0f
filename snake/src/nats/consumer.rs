//! Guaranteed consumers over JetStream pull consumers, with snake's dead letters.
//!
//! The server is told to deliver a message once more than the consumer's `max_deliver`: a
//! delivery past the limit (the last one's ack wait ran out, in a rack that crashed or lost
//! its connection) reaches the consumer, which dead-letters it at once instead of handing it
//! out. Should that delivery be lost as well, the server gives up and says so in an advisory,
//! and whichever handle of the consumer hears it dead-letters the message from there. A dead
//! letter's dedup id is its origin's stream and sequence, so the two paths never keep it twice.

use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::{self, AckKind, consumer::pull};
use bytes::Bytes;
use futures::{FutureExt, StreamExt};

use super::{Nats, from_nats, with_headers};
use crate::config::{ConsumerConfig, DeliverPolicy};
use crate::error::NatsOp;
use crate::message::GaveUp;
use crate::{Error, Message, Subject};

/// How long a message whose dead letter could not be kept waits before it comes back.
const RETRY_DEAD_LETTER: Duration = Duration::from_secs(1);

/// What a consumer's deliveries need to dead-letter a message.
struct Shared {
    nats: Arc<Nats>,
    stream: String,
    max_deliver: u32,
    dead_letter: Option<Subject>,
}

pub(crate) struct NatsConsumer {
    shared: Arc<Shared>,
    consumer: jetstream::consumer::Consumer<pull::Config>,
    messages: Option<pull::Stream>,
    /// An error met while taking what was ready, for the next call to `next`.
    failed: Option<Error>,
    name: String,
    durable: bool,
    advisories: tokio::task::JoinHandle<()>,
    /// The subject of the last delivery: a consumer of one subject reads it once.
    subject: Option<Subject>,
}

impl NatsConsumer {
    pub(crate) async fn new(
        nats: &Arc<Nats>,
        stream_name: &str,
        cfg: ConsumerConfig,
    ) -> Result<NatsConsumer, Error> {
        if nats.is_closed() {
            return Err(Error::Closed);
        }
        let stream = nats.stream(stream_name).await?;
        let config = pull_config(&cfg);
        let created = match &cfg.durable {
            Some(name) => stream.get_or_create_consumer(name, config).await,
            None => stream.create_consumer(config).await,
        };
        let consumer = created.map_err(|e| Error::nats(NatsOp::Consumer, e))?;
        let name = consumer.cached_info().name.clone();
        let shared = Arc::new(Shared {
            nats: Arc::clone(nats),
            stream: stream_name.to_owned(),
            max_deliver: cfg.max_deliver,
            dead_letter: cfg.dead_letter,
        });
        // The server gives up on a message whose last delivery's ack wait ran out, and says
        // so only in an advisory: dead-letter it from there.
        let advisory = format!("$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES.{stream_name}.{name}");
        let subscriber = nats
            .client
            .subscribe(advisory)
            .await
            .map_err(|e| Error::nats(NatsOp::Subscribe, e))?;
        let advisories = tokio::spawn(advisories(subscriber, stream, Arc::clone(&shared)));
        let messages = open(&consumer).await?;
        Ok(NatsConsumer {
            shared,
            consumer,
            messages: Some(messages),
            failed: None,
            name,
            durable: cfg.durable.is_some(),
            advisories,
            subject: None,
        })
    }

    pub(crate) fn name(&self) -> &str {
        &self.name
    }

    pub(crate) async fn next(&mut self) -> Result<(Message, u64, u32, NatsDelivery), Error> {
        loop {
            if let Some(e) = self.failed.take() {
                return Err(e);
            }
            if self.shared.nats.is_closed() {
                return Err(Error::Closed);
            }
            let messages = match &mut self.messages {
                Some(m) => m,
                None => self.messages.insert(open(&self.consumer).await?),
            };
            let next = messages.next().await;
            if let Some(found) = self.take(next).await? {
                return Ok(found);
            }
        }
    }

    /// Appends to `buf` the deliveries that already arrived, up to `max` in all, without
    /// waiting for another; returns how many it appended. An error that ends the pull comes
    /// from the next call to [`next`](Self::next) instead, so that what was taken is kept.
    pub(crate) async fn ready(
        &mut self,
        buf: &mut Vec<(Message, u64, u32, NatsDelivery)>,
        max: usize,
    ) -> usize {
        let mut n = 0;
        while buf.len() < max && self.failed.is_none() {
            let Some(messages) = &mut self.messages else {
                break;
            };
            let Some(next) = messages.next().now_or_never() else {
                break;
            };
            match self.take(next).await {
                Ok(Some(found)) => {
                    buf.push(found);
                    n += 1;
                }
                Ok(None) => {}
                Err(e) => self.failed = Some(e),
            }
        }
        n
    }

    /// Makes a delivery of what the pull stream gave: `None` when there is nothing to hand
    /// out (a delivery dead-lettered or terminated here, a pull that failed and is made again).
    async fn take(
        &mut self,
        next: Option<Result<jetstream::Message, pull::MessagesError>>,
    ) -> Result<Option<(Message, u64, u32, NatsDelivery)>, Error> {
        match next {
            Some(Ok(m)) => {
                let (sequence, deliveries) = match m.info() {
                    Ok(info) => (
                        info.stream_sequence,
                        u32::try_from(info.delivered).unwrap_or(u32::MAX),
                    ),
                    Err(e) => {
                        tracing::warn!(error = %e, "Skipped a delivery without JetStream metadata.");
                        return Ok(None);
                    }
                };
                let Some(reply) = m.reply.clone() else {
                    return Ok(None);
                };
                let m = m.message;
                let subject = match &self.subject {
                    Some(s) if s.as_str() == m.subject.as_str() => s.clone(),
                    _ => match Subject::parse(&m.subject) {
                        Ok(s) => self.subject.insert(s).clone(),
                        Err(e) => {
                            tracing::warn!(subject = %m.subject, error = %e, "Skipped a message whose subject snake cannot name.");
                            // Not a subject snake can carry: it would fail forever.
                            let _ = self.shared.send(reply, AckKind::Term).await;
                            return Ok(None);
                        }
                    },
                };
                let message = with_headers(subject, m.headers.as_ref(), m.payload);
                let delivery = NatsDelivery {
                    reply,
                    sequence,
                    shared: Arc::clone(&self.shared),
                };
                if deliveries > self.shared.max_deliver {
                    // Its last allowed delivery was never answered.
                    if let Err(e) = delivery.give_up(message, "max_deliver", deliveries).await {
                        tracing::warn!(consumer = %self.name, sequence, error = %e, "Could not dead-letter a message past its deliveries.");
                    }
                    return Ok(None);
                }
                Ok(Some((message, sequence, deliveries, delivery)))
            }
            Some(Err(e)) => {
                use jetstream::consumer::pull::MessagesErrorKind as K;
                match e.kind() {
                    K::ConsumerDeleted | K::PushBasedConsumer | K::RequestLimitExceeded => {
                        Err(Error::nats(NatsOp::Fetch, e))
                    }
                    K::MissingHeartbeat => {
                        // The server holds no pull request of this stream any more (it would
                        // send heartbeats otherwise) while the stream believes it does: a new
                        // stream pulls at once instead of when the old request's expiry is
                        // long past. Nothing is buffered: no message came for two heartbeats.
                        tracing::info!(consumer = %self.name, "No heartbeat from the server; pulling again.");
                        self.messages = None;
                        Ok(None)
                    }
                    _ => {
                        tracing::warn!(consumer = %self.name, error = %e, "A JetStream pull failed; pulling again.");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        Ok(None)
                    }
                }
            }
            None => {
                self.messages = None;
                Ok(None)
            }
        }
    }
}

/// Each pull request asks for up to this many messages (async-nats's default).
const PULL_BATCH: usize = 200;

/// How long a pull request waits at the server for messages before it ends and another is
/// made (async-nats's default is 30 s).
const PULL_EXPIRES: Duration = Duration::from_secs(10);

/// How often the server tells an idle pull request that it is still there; two missed in a
/// row and the stream pulls again (see `NatsConsumer::take`).
const PULL_HEARTBEAT: Duration = Duration::from_secs(2);

/// Opens the pull stream of `consumer`.
async fn open(
    consumer: &jetstream::consumer::Consumer<pull::Config>,
) -> Result<pull::Stream, Error> {
    consumer
        .stream()
        .max_messages_per_batch(PULL_BATCH)
        .expires(PULL_EXPIRES)
        .heartbeat(PULL_HEARTBEAT)
        .messages()
        .await
        .map_err(|e| Error::nats(NatsOp::Fetch, e))
}

/// The JetStream configuration of a snake consumer.
fn pull_config(cfg: &ConsumerConfig) -> pull::Config {
    pull::Config {
        durable_name: cfg.durable.clone(),
        filter_subject: cfg.filter.as_str().to_owned(),
        deliver_policy: match cfg.deliver {
            DeliverPolicy::All => jetstream::consumer::DeliverPolicy::All,
            DeliverPolicy::New => jetstream::consumer::DeliverPolicy::New,
        },
        ack_policy: jetstream::consumer::AckPolicy::Explicit,
        ack_wait: cfg.ack_wait,
        // One more than the consumer allows: the extra delivery is dead-lettered here.
        max_deliver: i64::from(cfg.max_deliver) + 1,
        ..Default::default()
    }
}

/// Creates the durable consumer `cfg` names if it does not exist, without pulling from it.
pub(crate) async fn ensure_durable(
    nats: &Nats,
    stream_name: &str,
    name: &str,
    cfg: &ConsumerConfig,
) -> Result<(), Error> {
    let stream = nats.stream(stream_name).await?;
    stream
        .get_or_create_consumer::<pull::Config>(name, pull_config(cfg))
        .await
        .map(drop)
        .map_err(|e| Error::nats(NatsOp::Consumer, e))
}

impl Drop for NatsConsumer {
    fn drop(&mut self) {
        self.advisories.abort();
        // Messages pulled but never handed out go back to the server at once, so that a
        // durable consumer resumed right away starts after the last ack, as in process.
        // The pull subscription goes first, so that the server cannot hand them to it again
        // (it drops pull requests nobody listens to any more).
        if let Some(mut messages) = self.messages.take() {
            let mut buffered = Vec::new();
            while let Some(Some(Ok(m))) = messages.next().now_or_never() {
                buffered.push(m);
            }
            drop(messages);
            // A short delay lets the server drop the old pull request before it redelivers.
            for m in buffered {
                let _ = m
                    .ack_with(AckKind::Nak(Some(Duration::from_millis(20))))
                    .now_or_never();
            }
        }
        if !self.durable
            && let Ok(rt) = tokio::runtime::Handle::try_current()
        {
            let stream = self.shared.stream.clone();
            let name = self.name.clone();
            let js = self.shared.nats.js.clone();
            rt.spawn(async move {
                if let Ok(s) = js.get_stream(&stream).await {
                    let _ = s.delete_consumer(&name).await;
                }
            });
        }
    }
}

/// Dead-letters the messages the server reports as out of deliveries.
async fn advisories(
    mut sub: async_nats::Subscriber,
    stream: jetstream::stream::Stream,
    shared: Arc<Shared>,
) {
    while let Some(advisory) = sub.next().await {
        let Ok(v) = serde_json::from_slice::<serde_json::Value>(&advisory.payload) else {
            continue;
        };
        let Some(seq) = v.get("stream_seq").and_then(serde_json::Value::as_u64) else {
            continue;
        };
        let deliveries = v
            .get("deliveries")
            .and_then(serde_json::Value::as_u64)
            .map_or(shared.max_deliver, |d| u32::try_from(d).unwrap_or(u32::MAX));
        let msg = match stream.get_raw_message(seq).await {
            Ok(m) => from_nats(&m.subject, None, Some(&m.headers), m.payload),
            Err(e) => {
                tracing::warn!(stream = %shared.stream, sequence = seq, error = %e, "Could not read a message that exhausted its deliveries.");
                None
            }
        };
        if let Some(msg) = msg {
            let gave_up = GaveUp {
                stream: &shared.stream,
                sequence: seq,
                reason: "max_deliver",
                deliveries,
                part: None,
            };
            // A failure is logged there; the server has given up on it, so there is no
            // delivery left to leave it to.
            let _ = shared
                .nats
                .dead_letter(msg, shared.dead_letter.as_ref(), &gave_up)
                .await;
        }
    }
}

impl Shared {
    /// Sends an acknowledgement of `kind` for the delivery whose reply subject is `reply`.
    async fn send(&self, reply: async_nats::Subject, kind: AckKind) -> Result<(), Error> {
        self.nats
            .client
            .publish(reply, kind.into())
            .await
            .map_err(|e| Error::nats(NatsOp::Ack, e))
    }
}

/// The acknowledgement handle of one delivery: its reply subject.
pub(crate) struct NatsDelivery {
    reply: async_nats::Subject,
    sequence: u64,
    shared: Arc<Shared>,
}

impl NatsDelivery {
    pub(crate) async fn ack(self) -> Result<(), Error> {
        self.shared.send(self.reply, AckKind::Ack).await
    }

    pub(crate) async fn in_progress(&self) -> Result<(), Error> {
        self.shared
            .send(self.reply.clone(), AckKind::Progress)
            .await
    }

    pub(crate) async fn nak(
        self,
        message: Message,
        deliveries: u32,
        delay: Duration,
    ) -> Result<(), Error> {
        if deliveries >= self.shared.max_deliver {
            // The server would drop it silently: it goes to the dead-letter subject now.
            return self.give_up(message, "max_deliver", deliveries).await;
        }
        let delay = (!delay.is_zero()).then_some(delay);
        self.shared.send(self.reply, AckKind::Nak(delay)).await
    }

    pub(crate) async fn term(
        self,
        message: Message,
        deliveries: u32,
        reason: &str,
    ) -> Result<(), Error> {
        self.give_up(message, &format!("terminated: {reason}"), deliveries)
            .await
    }

    /// Dead-letters each of `parts` (payloads cut from `message`, with their reasons) as a
    /// message of its own, then acks the delivery; when one could not be kept yet, naks it
    /// instead, so that it comes back (the parts kept already are deduplicated then).
    pub(crate) async fn dead_letter_parts(
        self,
        message: Message,
        deliveries: u32,
        parts: Vec<(usize, Bytes, String)>,
    ) -> Result<(), Error> {
        let s = &self.shared;
        for (part, payload, reason) in parts {
            let reason = format!("terminated: {reason}");
            let gave_up = GaveUp {
                stream: &s.stream,
                sequence: self.sequence,
                reason: &reason,
                deliveries,
                part: Some(part),
            };
            let letter = Message::new(message.subject.clone(), payload);
            if let Err(e) = s
                .nats
                .dead_letter(letter, s.dead_letter.as_ref(), &gave_up)
                .await
            {
                let _ = s
                    .send(self.reply, AckKind::Nak(Some(RETRY_DEAD_LETTER)))
                    .await;
                return Err(e);
            }
        }
        s.send(self.reply, AckKind::Ack).await
    }

    /// Dead-letters the message and terminates the delivery; when the dead letter could not
    /// be kept yet, naks it instead, so that it comes back (past `max_deliver`, to be
    /// dead-lettered again) rather than being lost.
    async fn give_up(self, message: Message, reason: &str, deliveries: u32) -> Result<(), Error> {
        let s = &self.shared;
        let gave_up = GaveUp {
            stream: &s.stream,
            sequence: self.sequence,
            reason,
            deliveries,
            part: None,
        };
        match s
            .nats
            .dead_letter(message, s.dead_letter.as_ref(), &gave_up)
            .await
        {
            Ok(()) => s.send(self.reply, AckKind::Term).await,
            Err(e) => {
                let _ = s
                    .send(self.reply, AckKind::Nak(Some(RETRY_DEAD_LETTER)))
                    .await;
                Err(e)
            }
        }
    }
}
