//! The NATS backend: async-nats over core NATS and JetStream.
//!
//! Core publish and subscribe map one to one. Streams are JetStream streams, consumers are
//! pull consumers with explicit acks, buckets are JetStream key-value buckets. JetStream has
//! no dead-letter subject, so snake adds one: a nak on the last allowed delivery, a `term`,
//! and the server's max-deliveries advisory (a last delivery whose ack wait ran out) each
//! publish the message to the consumer's dead-letter subject before it is terminated.

mod consumer;
mod kv;
mod options;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use async_nats::jetstream::{self, stream::StorageType};
use async_nats::{ConnectErrorKind, Event, HeaderMap, RequestErrorKind};
use bytes::Bytes;
use futures::{FutureExt, StreamExt};
use tokio::sync::watch;

pub(crate) use self::consumer::{NatsConsumer, NatsDelivery, ensure_durable};
pub(crate) use self::kv::{NatsKv, NatsKvWatch};
pub use self::options::NatsOptions;
use crate::config::{Storage, StreamConfig};
use crate::error::NatsOp;
use crate::message::GaveUp;
use crate::{ConnectionState, Error, Headers, Message, Pattern, PubAck, Subject};

/// What the connection's event callback updates.
struct Events {
    state: watch::Sender<ConnectionState>,
    dropped_slow: AtomicU64,
}

impl Events {
    fn on(&self, event: Event) {
        match event {
            Event::Connected => {
                tracing::info!("Connected to NATS.");
                self.set(ConnectionState::Connected);
            }
            Event::Disconnected => {
                tracing::warn!("Disconnected from NATS; reconnecting.");
                self.set(ConnectionState::Disconnected);
            }
            Event::Closed => self.set(ConnectionState::Closed),
            Event::SlowConsumer(sid) => {
                let n = self.dropped_slow.fetch_add(1, Ordering::Relaxed) + 1;
                tracing::warn!(
                    sid,
                    dropped_total = n,
                    reason = "slow_consumer",
                    "Dropped a message for a subscriber whose queue is full."
                );
            }
            other => tracing::warn!(event = %other, "NATS connection event."),
        }
    }

    fn set(&self, state: ConnectionState) {
        // Closed is final: a late event of the dying connection does not reopen it.
        self.state.send_if_modified(|s| {
            let change = *s != state && *s != ConnectionState::Closed;
            if change {
                *s = state;
            }
            change
        });
    }
}

pub(crate) struct Nats {
    client: async_nats::Client,
    js: jetstream::Context,
    events: Arc<Events>,
    dropped_dead: AtomicU64,
    /// How long a stream acknowledgement may take, counted from its publish.
    ack_timeout: Duration,
}

impl Nats {
    pub(crate) async fn connect(opts: NatsOptions) -> Result<Arc<Nats>, Error> {
        if let Some(url) = opts.plaintext_credentials() {
            return Err(Error::PlaintextCredentials { url });
        }
        let events = Arc::new(Events {
            state: watch::channel(ConnectionState::Disconnected).0,
            dropped_slow: AtomicU64::new(0),
        });
        let mut o = async_nats::ConnectOptions::new()
            .require_tls(opts.require_tls)
            .connection_timeout(opts.connection_timeout)
            .request_timeout(Some(opts.request_timeout))
            .max_reconnects(opts.max_reconnects);
        if let Some(token) = &opts.token {
            o = o.token(token.clone());
        }
        if let Some((user, password)) = &opts.user_password {
            o = o.user_and_password(user.clone(), password.clone());
        }
        for ca in &opts.root_certificates {
            o = o.add_root_certificates(ca.clone());
        }
        if let Some((cert, key)) = &opts.client_certificate {
            o = o.add_client_certificate(cert.clone(), key.clone());
        }
        if let Some(name) = &opts.name {
            o = o.name(name);
        }
        let ev = Arc::clone(&events);
        o = o.event_callback(move |event| {
            let ev = Arc::clone(&ev);
            async move { ev.on(event) }
        });
        let client = o
            .connect(opts.urls.as_slice())
            .await
            .map_err(|e| match e.kind() {
                ConnectErrorKind::AuthorizationViolation | ConnectErrorKind::Authentication => {
                    Error::Unauthorized { source: e.into() }
                }
                _ => Error::nats(NatsOp::Connect, e),
            })?;
        events.set(ConnectionState::Connected);
        let js = jetstream::ContextBuilder::new()
            .timeout(opts.request_timeout)
            .build(client.clone());
        Ok(Arc::new(Nats {
            client,
            js,
            events,
            dropped_dead: AtomicU64::new(0),
            ack_timeout: opts.request_timeout,
        }))
    }

    pub(crate) fn state(&self) -> watch::Receiver<ConnectionState> {
        self.events.state.subscribe()
    }

    /// The server's `max_payload` as it announced it (`None` before it did).
    pub(crate) fn max_payload(&self) -> Option<usize> {
        let max = self.client.server_info().max_payload;
        (max > 0).then_some(max)
    }

    fn is_closed(&self) -> bool {
        *self.events.state.borrow() == ConnectionState::Closed
    }

    pub(crate) async fn close(&self) {
        self.events.set(ConnectionState::Closed);
        if let Err(e) = self.client.drain().await {
            tracing::warn!(error = %e, "Could not drain the NATS connection.");
        }
    }

    pub(crate) async fn flush(&self) -> Result<(), Error> {
        if self.is_closed() {
            return Err(Error::Closed);
        }
        self.client
            .flush()
            .await
            .map_err(|e| Error::nats(NatsOp::Publish, e))
    }

    pub(crate) fn dropped(&self) -> (u64, u64) {
        (
            self.events.dropped_slow.load(Ordering::Relaxed),
            self.dropped_dead.load(Ordering::Relaxed),
        )
    }

    pub(crate) async fn publish(&self, msg: Message) -> Result<(), Error> {
        if self.is_closed() {
            return Err(Error::Closed);
        }
        let subject = msg.subject.as_str().to_owned();
        let headers = to_headers(&msg.headers);
        let r = match (msg.reply, headers) {
            (None, None) => self.client.publish(subject, msg.payload).await,
            (None, Some(h)) => {
                self.client
                    .publish_with_headers(subject, h, msg.payload)
                    .await
            }
            (Some(r), None) => {
                self.client
                    .publish_with_reply(subject, r.as_str().to_owned(), msg.payload)
                    .await
            }
            (Some(r), Some(h)) => {
                self.client
                    .publish_with_reply_and_headers(subject, r.as_str().to_owned(), h, msg.payload)
                    .await
            }
        };
        r.map_err(|e| Error::nats(NatsOp::Publish, e))
    }

    pub(crate) async fn subscribe(&self, pattern: &Pattern) -> Result<NatsSubscription, Error> {
        if self.is_closed() {
            return Err(Error::Closed);
        }
        let sub = self
            .client
            .subscribe(pattern.as_str().to_owned())
            .await
            .map_err(|e| Error::nats(NatsOp::Subscribe, e))?;
        Ok(NatsSubscription { sub })
    }

    pub(crate) async fn subscribe_queue(
        &self,
        pattern: &Pattern,
        group: &str,
    ) -> Result<NatsSubscription, Error> {
        if self.is_closed() {
            return Err(Error::Closed);
        }
        let sub = self
            .client
            .queue_subscribe(pattern.as_str().to_owned(), group.to_owned())
            .await
            .map_err(|e| Error::nats(NatsOp::Subscribe, e))?;
        Ok(NatsSubscription { sub })
    }

    pub(crate) async fn request(
        &self,
        subject: Subject,
        payload: Bytes,
        timeout: Duration,
    ) -> Result<Message, Error> {
        if self.is_closed() {
            return Err(Error::Closed);
        }
        let req = async_nats::Request::new()
            .payload(payload)
            .timeout(Some(timeout));
        match self
            .client
            .send_request(subject.as_str().to_owned(), req)
            .await
        {
            Ok(m) => from_nats(
                &m.subject,
                m.reply.as_deref(),
                m.headers.as_ref(),
                m.payload,
            )
            .ok_or_else(|| {
                Error::nats(
                    NatsOp::Request,
                    "the reply's subject is not a valid subject",
                )
            }),
            Err(e) => Err(match e.kind() {
                RequestErrorKind::NoResponders => Error::NoResponders(subject.to_string()),
                RequestErrorKind::TimedOut => Error::Timeout(timeout),
                _ => Error::nats(NatsOp::Request, e),
            }),
        }
    }

    pub(crate) async fn create_stream(&self, cfg: &StreamConfig) -> Result<(), Error> {
        let dup = match cfg.max_age {
            // JetStream refuses a duplicate window longer than the stream's max age.
            Some(age) => cfg.duplicate_window.min(age),
            None => cfg.duplicate_window,
        };
        let config = jetstream::stream::Config {
            name: cfg.name.clone(),
            subjects: cfg.subjects.iter().map(|p| p.as_str().to_owned()).collect(),
            max_age: cfg.max_age.unwrap_or_default(),
            max_bytes: cfg
                .max_bytes
                .map_or(-1, |b| i64::try_from(b).unwrap_or(i64::MAX)),
            storage: storage(cfg.storage),
            duplicate_window: dup,
            ..Default::default()
        };
        match self.js.create_stream(config).await {
            Ok(_) => Ok(()),
            Err(e) => Err(match e.kind() {
                jetstream::context::CreateStreamErrorKind::JetStream(j)
                    if j.error_code() == jetstream::ErrorCode::STREAM_NAME_EXIST =>
                {
                    Error::StreamConflict(cfg.name.clone())
                }
                _ => Error::nats(NatsOp::Stream, e),
            }),
        }
    }

    /// Sends a message to its stream; the returned future waits for the acknowledgement.
    /// Borrows the message, so that a caller that may have to send it again keeps it without
    /// a copy (the payload is shared, not copied, on the way out).
    pub(crate) async fn stream_send(&self, msg: &Message) -> Result<PendingAck, Error> {
        if self.is_closed() {
            return Err(Error::Closed);
        }
        let to = msg.subject.as_str().to_owned();
        let payload = msg.payload.clone();
        // Without headers, a plain PUB: lighter on the wire and in the stream than HPUB.
        let sent = match to_headers(&msg.headers) {
            None => self.js.publish(to, payload).await,
            Some(h) => self.js.publish_with_headers(to, h, payload).await,
        };
        let fut = sent.map_err(|e| publish_error(msg.subject.as_str(), e))?;
        Ok(PendingAck {
            fut,
            subject: msg.subject.clone(),
            deadline: tokio::time::Instant::now() + self.ack_timeout,
            timeout: self.ack_timeout,
        })
    }

    pub(crate) async fn stream_publish(&self, msg: Message) -> Result<PubAck, Error> {
        self.stream_send(&msg).await?.wait().await
    }

    pub(crate) async fn stream(&self, name: &str) -> Result<jetstream::stream::Stream, Error> {
        self.js.get_stream(name).await.map_err(|e| match e.kind() {
            jetstream::context::GetStreamErrorKind::JetStream(j)
                if j.error_code() == jetstream::ErrorCode::STREAM_NOT_FOUND =>
            {
                Error::StreamNotFound(name.to_owned())
            }
            _ => Error::nats(NatsOp::Stream, e),
        })
    }

    /// Keeps a message that gave up as a dead letter: published to `to` and acknowledged by
    /// the stream that captures it. Without a dead-letter subject, or without a stream that
    /// captures it, the message is counted and logged (and, in the second case, still
    /// published to live subscribers).
    ///
    /// # Errors
    ///
    /// The publish failed for a reason that may pass (a timeout, a lost connection): the
    /// caller should leave the message to be delivered again rather than terminate it.
    pub(crate) async fn dead_letter(
        &self,
        msg: Message,
        to: Option<&Subject>,
        gave_up: &GaveUp<'_>,
    ) -> Result<(), Error> {
        let Some(to) = to else {
            self.count_dead_drop(gave_up, "no_dead_letter_subject");
            return Ok(());
        };
        let msg = gave_up.letter(msg, to.clone());
        // Asked first: with a live subscriber on the subject and no stream, a stream publish
        // would wait out its timeout instead of failing at once.
        let kept = match self.js.stream_by_subject(to.as_str()).await {
            Ok(_) => self.stream_publish(msg.clone()).await,
            Err(e) if e.kind() == jetstream::context::GetStreamByNameErrorKind::NotFound => {
                Err(Error::NoStream(to.to_string()))
            }
            Err(e) => Err(Error::nats(NatsOp::Stream, e)),
        };
        match kept {
            Ok(ack) => {
                tracing::warn!(
                    subject = %msg.subject,
                    stream = gave_up.stream,
                    sequence = gave_up.sequence,
                    deliveries = gave_up.deliveries,
                    reason = gave_up.reason,
                    dead_letter_sequence = ack.sequence,
                    duplicate = ack.duplicate,
                    "Kept a message that gave up as a dead letter."
                );
                Ok(())
            }
            Err(Error::NoStream(_)) => {
                let _ = self.publish(msg).await;
                self.count_dead_drop(gave_up, "no_dead_letter_stream");
                Ok(())
            }
            Err(Error::Closed) => {
                self.count_dead_drop(gave_up, "closed");
                Err(Error::Closed)
            }
            Err(e) => {
                tracing::warn!(
                    stream = gave_up.stream,
                    sequence = gave_up.sequence,
                    error = %e,
                    "Could not keep a dead letter yet; the message stays to be delivered again."
                );
                Err(e)
            }
        }
    }

    fn count_dead_drop(&self, gave_up: &GaveUp<'_>, cause: &str) {
        crate::message::count_dead_drop(&self.dropped_dead, gave_up.stream, gave_up.reason, cause);
    }

    /// The message stored at `sequence` in `stream`.
    pub(crate) async fn stream_get(
        &self,
        stream: &str,
        sequence: u64,
    ) -> Result<Option<Message>, Error> {
        let s = self.stream(stream).await?;
        match s.get_raw_message(sequence).await {
            Ok(m) => Ok(from_nats(&m.subject, None, Some(&m.headers), m.payload)),
            Err(e) if e.kind() == jetstream::stream::RawMessageErrorKind::NoMessageFound => {
                Ok(None)
            }
            Err(e) => Err(Error::nats(NatsOp::Stream, e)),
        }
    }

    /// The first message at or after `from` in `stream` whose subject matches `filter`.
    pub(crate) async fn stream_next(
        &self,
        stream: &str,
        filter: &Pattern,
        from: u64,
    ) -> Result<Option<(u64, Message)>, Error> {
        let s = self.stream(stream).await?;
        let mut from = from.max(1);
        loop {
            match s
                .get_first_raw_message_by_subject(filter.as_str(), from)
                .await
            {
                Ok(m) => match from_nats(&m.subject, None, Some(&m.headers), m.payload) {
                    Some(msg) => return Ok(Some((m.sequence, msg))),
                    // Not a subject snake can name: skip it.
                    None => from = m.sequence + 1,
                },
                Err(e) if e.kind() == jetstream::stream::RawMessageErrorKind::NoMessageFound => {
                    return Ok(None);
                }
                Err(e) => return Err(Error::nats(NatsOp::Stream, e)),
            }
        }
    }

    /// How many messages of `stream` match `filter`.
    pub(crate) async fn stream_count(&self, stream: &str, filter: &Pattern) -> Result<u64, Error> {
        let s = self.stream(stream).await?;
        let mut subjects = s
            .info_with_subjects(filter.as_str())
            .await
            .map_err(|e| Error::nats(NatsOp::Stream, e))?;
        let mut total = 0u64;
        while let Some(entry) = subjects.next().await {
            let (_, n) = entry.map_err(|e| Error::nats(NatsOp::Stream, e))?;
            total += n as u64;
        }
        Ok(total)
    }

    /// Removes the message at `sequence` from `stream`; whether it was there.
    pub(crate) async fn stream_delete(&self, stream: &str, sequence: u64) -> Result<bool, Error> {
        let s = self.stream(stream).await?;
        match s.delete_message(sequence).await {
            Ok(deleted) => Ok(deleted),
            Err(e) => match e.kind() {
                jetstream::stream::DeleteMessageErrorKind::JetStream(j)
                    if matches!(
                        j.error_code(),
                        jetstream::ErrorCode::NO_MESSAGE_FOUND
                            | jetstream::ErrorCode::SEQUENCE_NOT_FOUND
                            | jetstream::ErrorCode::STREAM_MESSAGE_DELETE_FAILED
                    ) =>
                {
                    Ok(false)
                }
                _ => Err(Error::nats(NatsOp::Stream, e)),
            },
        }
    }

    /// Deletes the consumer `name` of `stream`; whether it was there.
    pub(crate) async fn delete_consumer(&self, stream: &str, name: &str) -> Result<bool, Error> {
        let s = self.stream(stream).await?;
        match s.delete_consumer(name).await {
            Ok(status) => Ok(status.success),
            Err(e) => match e.kind() {
                jetstream::stream::ConsumerErrorKind::JetStream(j)
                    if j.error_code() == jetstream::ErrorCode::CONSUMER_NOT_FOUND =>
                {
                    Ok(false)
                }
                _ => Err(Error::nats(NatsOp::Consumer, e)),
            },
        }
    }
}

/// A stream acknowledgement still to come.
pub(crate) struct PendingAck {
    fut: jetstream::context::PublishAckFuture,
    subject: Subject,
    /// When the acknowledgement is given up, counted from the publish. The client's own
    /// timeout only starts when its future is first awaited, so acknowledgements awaited one
    /// after another (a window of them, lost together when the server restarts) would each
    /// wait it out in turn: 256 lost acks, 21 minutes.
    deadline: tokio::time::Instant,
    timeout: Duration,
}

impl PendingAck {
    pub(crate) async fn wait(self) -> Result<PubAck, Error> {
        let ack = match tokio::time::timeout_at(self.deadline, self.fut).await {
            Ok(answer) => answer.map_err(|e| publish_error(self.subject.as_str(), e))?,
            Err(_) => return Err(Error::Timeout(self.timeout)),
        };
        Ok(PubAck {
            stream: ack.stream,
            sequence: ack.sequence,
            duplicate: ack.duplicate,
        })
    }
}

fn publish_error(subject: &str, e: jetstream::context::PublishError) -> Error {
    match e.kind() {
        jetstream::context::PublishErrorKind::StreamNotFound => Error::NoStream(subject.to_owned()),
        _ => Error::nats(NatsOp::StreamPublish, e),
    }
}

/// A core subscription.
pub(crate) struct NatsSubscription {
    sub: async_nats::Subscriber,
}

impl NatsSubscription {
    pub(crate) async fn next(&mut self) -> Option<Message> {
        loop {
            let m = self.sub.next().await?;
            if let Some(m) = convert(m) {
                return Some(m);
            }
        }
    }

    pub(crate) async fn next_batch(&mut self, buf: &mut Vec<Message>, max: usize) -> usize {
        let Some(first) = self.next().await else {
            return 0;
        };
        buf.push(first);
        let mut n = 1;
        while n < max {
            match self.sub.next().now_or_never() {
                Some(Some(m)) => {
                    if let Some(m) = convert(m) {
                        buf.push(m);
                        n += 1;
                    }
                }
                _ => break,
            }
        }
        n
    }
}

fn convert(m: async_nats::Message) -> Option<Message> {
    from_nats(
        &m.subject,
        m.reply.as_deref(),
        m.headers.as_ref(),
        m.payload,
    )
}

/// A message as snake carries it; `None` (logged) when the subject is not one snake can name.
pub(crate) fn from_nats(
    subject: &str,
    reply: Option<&str>,
    headers: Option<&HeaderMap>,
    payload: Bytes,
) -> Option<Message> {
    let subject = match Subject::parse(subject) {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!(subject, error = %e, "Skipped a message whose subject snake cannot name.");
            return None;
        }
    };
    let mut msg = with_headers(subject, headers, payload);
    msg.reply = reply.and_then(|r| Subject::parse(r).ok());
    Some(msg)
}

/// A message as snake carries it, on a subject already read.
pub(crate) fn with_headers(
    subject: Subject,
    headers: Option<&HeaderMap>,
    payload: Bytes,
) -> Message {
    let mut msg = Message::new(subject, payload);
    if let Some(h) = headers {
        for (name, values) in h.iter() {
            for v in values {
                msg.headers.append_str(name.as_ref(), v.as_str());
            }
        }
    }
    msg
}

fn to_headers(headers: &Headers) -> Option<HeaderMap> {
    if headers.is_empty() {
        return None;
    }
    let mut map = HeaderMap::new();
    if let [(name, value)] = headers.0.as_slice() {
        // One header, as a lane's dedup id: a single insert, and the name JetStream reads
        // most often without parsing it.
        if *name == crate::header::MSG_ID {
            map.insert(async_nats::header::NATS_MESSAGE_ID, value.as_str());
        } else {
            map.insert(name.as_ref(), value.as_str());
        }
        return Some(map);
    }
    for (name, value) in headers.iter() {
        map.append(name, value);
    }
    Some(map)
}

fn storage(s: Storage) -> StorageType {
    match s {
        Storage::File => StorageType::File,
        Storage::Memory => StorageType::Memory,
    }
}
