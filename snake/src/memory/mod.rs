//! The in-process backend: NATS and JetStream semantics without a server.
//!
//! Core subscriptions are bounded channels (a full one drops, counted, as NATS drops for a
//! slow consumer). Streams keep messages in sequence order per stream, deduplicate by
//! message id within a window, and feed consumers that track deliveries, ack deadlines,
//! naks and dead letters. Time is `tokio::time`, so tests can pause and advance it.

pub(crate) mod kv;

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};

use tokio::sync::{Notify, mpsc, watch};
use tokio::time::{Duration, Instant};

use crate::config::{ConsumerConfig, DeliverPolicy, StreamConfig};
use crate::message::GaveUp;
use crate::subject::matches;
use crate::{ConnectionState, Error, Message, Pattern, PubAck, Subject};

/// Capacity of one core subscription's channel.
pub(crate) const SUBSCRIPTION_CAPACITY: usize = 65_536;

/// Locks a mutex, recovering the data if a panicking thread poisoned it: every critical
/// section here leaves the state consistent between statements.
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

struct Sub {
    id: u64,
    pattern: Pattern,
    tx: mpsc::Sender<Message>,
    /// The queue group it belongs to: a message goes to one member of each group.
    group: Option<String>,
}

pub(crate) struct Memory {
    subs: RwLock<Vec<Sub>>,
    streams: Mutex<HashMap<String, Arc<Stream>>>,
    pub(crate) buckets: Mutex<HashMap<String, Arc<kv::Bucket>>>,
    /// How many streams exist: publishing skips the stream table while there are none.
    stream_count: AtomicUsize,
    closed: AtomicBool,
    next_id: AtomicU64,
    /// Whether any subscription has a queue group: publishing skips the group logic while
    /// none has.
    grouped: AtomicBool,
    /// Turns through the members of a queue group.
    turn: AtomicUsize,
    dropped_slow: AtomicU64,
    dropped_dead: AtomicU64,
    state: watch::Sender<ConnectionState>,
}

impl Memory {
    pub(crate) fn new() -> Arc<Memory> {
        Arc::new(Memory {
            subs: RwLock::new(Vec::new()),
            streams: Mutex::new(HashMap::new()),
            buckets: Mutex::new(HashMap::new()),
            stream_count: AtomicUsize::new(0),
            closed: AtomicBool::new(false),
            next_id: AtomicU64::new(1),
            grouped: AtomicBool::new(false),
            turn: AtomicUsize::new(0),
            dropped_slow: AtomicU64::new(0),
            dropped_dead: AtomicU64::new(0),
            state: watch::channel(ConnectionState::Connected).0,
        })
    }

    pub(crate) fn next_id(&self) -> u64 {
        self.next_id.fetch_add(1, Ordering::Relaxed)
    }

    pub(crate) fn state(&self) -> watch::Receiver<ConnectionState> {
        self.state.subscribe()
    }

    pub(crate) fn close(&self) {
        self.closed.store(true, Ordering::Release);
        self.state.send_replace(ConnectionState::Closed);
        self.subs
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clear();
        // Consumers waiting for a message learn that none will come.
        for stream in lock(&self.streams).values() {
            stream.notify.notify_waiters();
        }
    }

    fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }

    /// Messages dropped because a core subscriber was too slow, and dead letters dropped
    /// because their consumer has no dead-letter subject.
    pub(crate) fn dropped(&self) -> (u64, u64) {
        (
            self.dropped_slow.load(Ordering::Relaxed),
            self.dropped_dead.load(Ordering::Relaxed),
        )
    }

    pub(crate) fn subscribe(
        &self,
        pattern: Pattern,
    ) -> Result<(u64, mpsc::Receiver<Message>), Error> {
        self.subscribe_in(pattern, None)
    }

    /// A subscription, in queue group `group` if one is given.
    pub(crate) fn subscribe_in(
        &self,
        pattern: Pattern,
        group: Option<String>,
    ) -> Result<(u64, mpsc::Receiver<Message>), Error> {
        if self.is_closed() {
            return Err(Error::Closed);
        }
        if group.is_some() {
            self.grouped.store(true, Ordering::Release);
        }
        let (tx, rx) = mpsc::channel(SUBSCRIPTION_CAPACITY);
        let id = self.next_id();
        self.subs
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push(Sub {
                id,
                pattern,
                tx,
                group,
            });
        Ok((id, rx))
    }

    pub(crate) fn unsubscribe(&self, id: u64) {
        self.subs
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .retain(|s| s.id != id);
    }

    /// Whether any core subscriber listens on `subject`.
    pub(crate) fn has_subscriber(&self, subject: &Subject) -> bool {
        self.subs
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .iter()
            .any(|s| s.pattern.matches(subject) && !s.tx.is_closed())
    }

    /// Core publish: to every matching subscriber (at most once), and into every stream
    /// that captures the subject.
    pub(crate) fn publish(&self, msg: Message) -> Result<(), Error> {
        if self.is_closed() {
            return Err(Error::Closed);
        }
        if self.stream_count.load(Ordering::Acquire) > 0 {
            self.capture(msg.clone());
        }
        self.fan_out(msg);
        Ok(())
    }

    /// Hands `msg` to every matching subscriber: copies to all but the last, which takes
    /// the message itself.
    fn fan_out(&self, msg: Message) {
        let subs = self
            .subs
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let grouped = self.grouped.load(Ordering::Acquire);
        // One member per queue group, chosen in turn among the group's live members.
        let chosen: Vec<u64> = if grouped {
            let mut groups: BTreeMap<&str, Vec<u64>> = BTreeMap::new();
            for sub in subs
                .iter()
                .filter(|s| !s.tx.is_closed() && s.pattern.matches(&msg.subject))
            {
                if let Some(g) = &sub.group {
                    groups.entry(g).or_default().push(sub.id);
                }
            }
            let turn = self.turn.fetch_add(1, Ordering::Relaxed);
            groups.values().map(|ids| ids[turn % ids.len()]).collect()
        } else {
            Vec::new()
        };
        let mut previous: Option<&Sub> = None;
        for sub in subs.iter().filter(|s| {
            s.pattern.matches(&msg.subject) && (s.group.is_none() || chosen.contains(&s.id))
        }) {
            if let Some(prev) = previous.replace(sub) {
                self.send(prev, msg.clone());
            }
        }
        if let Some(last) = previous {
            self.send(last, msg);
        }
    }

    #[inline]
    fn send(&self, sub: &Sub, msg: Message) {
        if let Err(mpsc::error::TrySendError::Full(msg)) = sub.tx.try_send(msg) {
            let n = self.dropped_slow.fetch_add(1, Ordering::Relaxed) + 1;
            tracing::warn!(
                subject = %msg.subject,
                pattern = %sub.pattern,
                dropped_total = n,
                reason = "slow_consumer",
                "Dropped a message for a subscriber whose queue is full."
            );
        }
    }

    /// Stores `msg` in every stream that captures its subject; the acks of those stores.
    fn capture(&self, msg: Message) -> Vec<PubAck> {
        let streams: Vec<Arc<Stream>> = lock(&self.streams)
            .values()
            .filter(|s| s.captures(&msg.subject))
            .cloned()
            .collect();
        let mut acks = Vec::with_capacity(streams.len());
        let mut msg = Some(msg);
        for (i, stream) in streams.iter().enumerate() {
            // The last stream takes the message itself; the others a copy.
            let m = if i + 1 == streams.len() {
                msg.take()
            } else {
                msg.clone()
            };
            if let Some(m) = m {
                acks.push(stream.store(m));
            }
        }
        acks
    }

    /// Publish to a stream, acknowledged once stored.
    pub(crate) fn stream_publish(&self, msg: Message) -> Result<PubAck, Error> {
        if self.is_closed() {
            return Err(Error::Closed);
        }
        let ack = self
            .capture(msg.clone())
            .into_iter()
            .next()
            .ok_or_else(|| Error::NoStream(msg.subject.to_string()))?;
        self.fan_out(msg);
        Ok(ack)
    }

    pub(crate) fn create_stream(&self, cfg: StreamConfig) -> Result<(), Error> {
        let mut streams = lock(&self.streams);
        if let Some(existing) = streams.get(&cfg.name) {
            if existing.cfg == cfg {
                return Ok(());
            }
            return Err(Error::StreamConflict(cfg.name));
        }
        streams.insert(cfg.name.clone(), Arc::new(Stream::new(cfg)));
        self.stream_count.store(streams.len(), Ordering::Release);
        Ok(())
    }

    pub(crate) fn stream(&self, name: &str) -> Result<Arc<Stream>, Error> {
        lock(&self.streams)
            .get(name)
            .cloned()
            .ok_or_else(|| Error::StreamNotFound(name.to_owned()))
    }

    /// Keeps dead letters (outside any stream lock) in the stream that captures their
    /// subject, or counts and logs them.
    fn dead_letters(&self, letters: Vec<DeadLetter>) {
        for letter in letters {
            let gave_up = GaveUp {
                stream: &letter.stream,
                sequence: letter.sequence,
                reason: &letter.reason,
                deliveries: letter.deliveries,
                part: letter.part,
            };
            let Some(to) = letter.to.clone() else {
                self.count_dead_drop(&letter.stream, &letter.reason, "no_dead_letter_subject");
                continue;
            };
            let msg = gave_up.letter(letter.msg, to);
            tracing::warn!(
                subject = %msg.subject,
                stream = %letter.stream,
                sequence = letter.sequence,
                deliveries = letter.deliveries,
                reason = %letter.reason,
                "Sent a message to its dead-letter subject."
            );
            match self.stream_publish(msg.clone()) {
                Ok(_) => {}
                Err(Error::NoStream(_)) => {
                    // Live subscribers still see it; nothing keeps it.
                    let _ = self.publish(msg);
                    self.count_dead_drop(&letter.stream, &letter.reason, "no_dead_letter_stream");
                }
                Err(_) => self.count_dead_drop(&letter.stream, &letter.reason, "closed"),
            }
        }
    }

    fn count_dead_drop(&self, stream: &str, reason: &str, cause: &str) {
        crate::message::count_dead_drop(&self.dropped_dead, stream, reason, cause);
    }
}

/// A message that gave up, on its way out of the stream lock.
struct DeadLetter {
    msg: Message,
    to: Option<Subject>,
    stream: String,
    sequence: u64,
    reason: String,
    deliveries: u32,
    part: Option<usize>,
}

struct Stored {
    msg: Message,
    at: Instant,
}

struct Pending {
    deliveries: u32,
    /// When the delivery may be made again (ack deadline, or the end of a nak's delay).
    due: Instant,
}

struct ConsumerState {
    cfg: ConsumerConfig,
    /// The next stream sequence not yet delivered for the first time.
    next_seq: u64,
    pending: BTreeMap<u64, Pending>,
}

#[derive(Default)]
struct StreamState {
    msgs: BTreeMap<u64, Stored>,
    next_seq: u64,
    bytes: u64,
    /// Message ids seen within the duplicate window, and the same ids in arrival order so
    /// that expired ones leave from the front without a scan.
    dedup: HashMap<String, u64>,
    dedup_order: VecDeque<(Instant, String)>,
    consumers: HashMap<String, ConsumerState>,
}

pub(crate) struct Stream {
    cfg: StreamConfig,
    state: Mutex<StreamState>,
    notify: Notify,
}

impl Stream {
    fn new(cfg: StreamConfig) -> Stream {
        Stream {
            cfg,
            state: Mutex::new(StreamState {
                next_seq: 1,
                ..StreamState::default()
            }),
            notify: Notify::new(),
        }
    }

    fn captures(&self, subject: &Subject) -> bool {
        self.cfg.subjects.iter().any(|p| p.matches(subject))
    }

    fn store(&self, msg: Message) -> PubAck {
        let now = Instant::now();
        let mut st = lock(&self.state);
        self.expire(&mut st, now);
        let window = self.cfg.duplicate_window;
        while let Some((at, _)) = st.dedup_order.front() {
            if now.duration_since(*at) < window {
                break;
            }
            if let Some((_, id)) = st.dedup_order.pop_front() {
                st.dedup.remove(&id);
            }
        }
        if let Some(id) = msg.id()
            && let Some(&seq) = st.dedup.get(id)
        {
            return PubAck {
                stream: self.cfg.name.clone(),
                sequence: seq,
                duplicate: true,
            };
        }
        let seq = st.next_seq;
        st.next_seq += 1;
        if let Some(id) = msg.id() {
            st.dedup.insert(id.to_owned(), seq);
            st.dedup_order.push_back((now, id.to_owned()));
        }
        st.bytes += msg.payload.len() as u64;
        st.msgs.insert(seq, Stored { msg, at: now });
        if let Some(max) = self.cfg.max_bytes {
            while st.bytes > max {
                let Some((_, old)) = st.msgs.pop_first() else {
                    break;
                };
                st.bytes -= old.msg.payload.len() as u64;
            }
        }
        drop(st);
        self.notify.notify_waiters();
        PubAck {
            stream: self.cfg.name.clone(),
            sequence: seq,
            duplicate: false,
        }
    }

    /// Removes messages older than the stream's `max_age`.
    fn expire(&self, st: &mut StreamState, now: Instant) {
        let Some(max_age) = self.cfg.max_age else {
            return;
        };
        while let Some(entry) = st.msgs.first_entry() {
            if now.duration_since(entry.get().at) < max_age {
                break;
            }
            let old = entry.remove();
            st.bytes -= old.msg.payload.len() as u64;
        }
    }

    /// Adds a consumer (or resumes a durable one) and returns its name.
    pub(crate) fn add_consumer(&self, cfg: ConsumerConfig, name: String) -> String {
        let mut st = lock(&self.state);
        let next_seq = match cfg.deliver {
            DeliverPolicy::All => st.msgs.keys().next().copied().unwrap_or(st.next_seq),
            DeliverPolicy::New => st.next_seq,
        };
        st.consumers.entry(name.clone()).or_insert(ConsumerState {
            cfg,
            next_seq,
            pending: BTreeMap::new(),
        });
        name
    }

    pub(crate) fn remove_consumer(&self, name: &str) -> bool {
        lock(&self.state).consumers.remove(name).is_some()
    }

    /// The stored message at `sequence`.
    pub(crate) fn get(&self, sequence: u64) -> Option<Message> {
        let mut st = lock(&self.state);
        self.expire(&mut st, Instant::now());
        st.msgs.get(&sequence).map(|s| s.msg.clone())
    }

    /// The first stored message at or after `from` whose subject matches `filter`.
    pub(crate) fn next_matching(&self, filter: &Pattern, from: u64) -> Option<(u64, Message)> {
        let mut st = lock(&self.state);
        self.expire(&mut st, Instant::now());
        st.msgs
            .range(from..)
            .find(|(_, s)| filter.matches(&s.msg.subject))
            .map(|(seq, s)| (*seq, s.msg.clone()))
    }

    /// How many stored messages match `filter`.
    pub(crate) fn count(&self, filter: &Pattern) -> u64 {
        let mut st = lock(&self.state);
        self.expire(&mut st, Instant::now());
        st.msgs
            .values()
            .filter(|s| filter.matches(&s.msg.subject))
            .count() as u64
    }

    /// Removes the message at `sequence`; whether it was there.
    pub(crate) fn delete(&self, sequence: u64) -> bool {
        let mut st = lock(&self.state);
        match st.msgs.remove(&sequence) {
            Some(old) => {
                st.bytes -= old.msg.payload.len() as u64;
                true
            }
            None => false,
        }
    }

    /// The next delivery for consumer `name`, waiting for one.
    pub(crate) async fn next(
        &self,
        memory: &Memory,
        name: &str,
    ) -> Result<(Message, u64, u32), Error> {
        loop {
            let notified = self.notify.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let (found, letters, wake) = self.poll(name)?;
            memory.dead_letters(letters);
            if let Some(found) = found {
                return Ok(found);
            }
            if memory.is_closed() {
                return Err(Error::Closed);
            }
            match wake {
                Some(at) => {
                    tokio::select! {
                        () = &mut notified => {}
                        () = tokio::time::sleep_until(at) => {}
                    }
                }
                None => notified.await,
            }
        }
    }

    /// One look for a delivery: a due redelivery first, then the next new message. Also
    /// returns the messages that exhausted their deliveries, and when to look again.
    #[allow(clippy::type_complexity)]
    fn poll(
        &self,
        name: &str,
    ) -> Result<
        (
            Option<(Message, u64, u32)>,
            Vec<DeadLetter>,
            Option<Instant>,
        ),
        Error,
    > {
        let now = Instant::now();
        let mut guard = lock(&self.state);
        self.expire(&mut guard, now);
        let st = &mut *guard;
        let consumer = st
            .consumers
            .get_mut(name)
            .ok_or_else(|| Error::StreamNotFound(format!("{}/{name}", self.cfg.name)))?;
        let mut letters = Vec::new();
        // Due redeliveries, oldest sequence first.
        let due: Vec<u64> = consumer
            .pending
            .iter()
            .filter(|(_, p)| p.due <= now)
            .map(|(seq, _)| *seq)
            .collect();
        for seq in due {
            let Some(stored) = st.msgs.get(&seq) else {
                // Removed by the stream's limits: nothing left to deliver.
                consumer.pending.remove(&seq);
                continue;
            };
            let Some(p) = consumer.pending.get_mut(&seq) else {
                continue;
            };
            if p.deliveries >= consumer.cfg.max_deliver {
                let deliveries = p.deliveries;
                consumer.pending.remove(&seq);
                letters.push(self.letter(
                    (seq, stored),
                    &consumer.cfg,
                    "max_deliver".to_owned(),
                    deliveries,
                ));
                continue;
            }
            p.deliveries += 1;
            p.due = now + consumer.cfg.ack_wait;
            return Ok((Some((stored.msg.clone(), seq, p.deliveries)), letters, None));
        }
        // The next new message that passes the filter.
        let first = st.msgs.keys().next().copied().unwrap_or(st.next_seq);
        consumer.next_seq = consumer.next_seq.max(first);
        while consumer.next_seq < st.next_seq {
            let seq = consumer.next_seq;
            consumer.next_seq += 1;
            let Some(stored) = st.msgs.get(&seq) else {
                continue;
            };
            if !matches(consumer.cfg.filter.as_str(), stored.msg.subject.as_str()) {
                continue;
            }
            consumer.pending.insert(
                seq,
                Pending {
                    deliveries: 1,
                    due: now + consumer.cfg.ack_wait,
                },
            );
            return Ok((Some((stored.msg.clone(), seq, 1)), letters, None));
        }
        let wake = consumer.pending.values().map(|p| p.due).min();
        Ok((None, letters, wake))
    }

    pub(crate) fn ack(&self, name: &str, seq: u64) {
        if let Some(c) = lock(&self.state).consumers.get_mut(name) {
            c.pending.remove(&seq);
        }
    }

    /// Moves the ack deadline of a pending delivery to `ack_wait` from now.
    pub(crate) fn in_progress(&self, name: &str, seq: u64) {
        if let Some(c) = lock(&self.state).consumers.get_mut(name) {
            let wait = c.cfg.ack_wait;
            if let Some(p) = c.pending.get_mut(&seq) {
                p.due = Instant::now() + wait;
            }
        }
    }

    /// Schedules a redelivery after `delay`; a nak on the last allowed delivery sends the
    /// message to the dead-letter subject at once, as the NATS backend does.
    pub(crate) fn nak(&self, memory: &Memory, name: &str, seq: u64, delay: Duration) {
        let letter = {
            let mut guard = lock(&self.state);
            let st = &mut *guard;
            let Some(c) = st.consumers.get_mut(name) else {
                return;
            };
            let Some(p) = c.pending.get_mut(&seq) else {
                return;
            };
            if p.deliveries < c.cfg.max_deliver {
                p.due = Instant::now() + delay;
                None
            } else {
                let deliveries = p.deliveries;
                c.pending.remove(&seq);
                st.msgs.get(&seq).map(|stored| {
                    self.letter((seq, stored), &c.cfg, "max_deliver".to_owned(), deliveries)
                })
            }
        };
        memory.dead_letters(letter.into_iter().collect());
        self.notify.notify_waiters();
    }

    pub(crate) fn term(&self, memory: &Memory, name: &str, seq: u64, reason: &str) {
        let letters = self.give_up(name, seq, |stored, cfg, deliveries| {
            vec![self.letter(
                (seq, stored),
                cfg,
                format!("terminated: {reason}"),
                deliveries,
            )]
        });
        memory.dead_letters(letters);
    }

    /// Acks a delivery and sends `parts` (payloads cut from it, each with its reason) to the
    /// dead-letter subject, each as a dead letter of its own.
    pub(crate) fn dead_letter_parts(
        &self,
        memory: &Memory,
        name: &str,
        seq: u64,
        parts: Vec<(usize, bytes::Bytes, String)>,
    ) {
        let letters = self.give_up(name, seq, |stored, cfg, deliveries| {
            parts
                .into_iter()
                .map(|(part, payload, reason)| DeadLetter {
                    msg: Message::new(stored.msg.subject.clone(), payload),
                    part: Some(part),
                    ..self.letter(
                        (seq, stored),
                        cfg,
                        format!("terminated: {reason}"),
                        deliveries,
                    )
                })
                .collect()
        });
        memory.dead_letters(letters);
    }

    /// Ends the pending delivery `seq` of consumer `name` for good and returns the dead
    /// letters `letters` makes of it (from the stored message, the consumer's settings and
    /// the deliveries so far); none when it is not pending.
    fn give_up(
        &self,
        name: &str,
        seq: u64,
        letters: impl FnOnce(&Stored, &ConsumerConfig, u32) -> Vec<DeadLetter>,
    ) -> Vec<DeadLetter> {
        let mut guard = lock(&self.state);
        let st = &mut *guard;
        let Some(c) = st.consumers.get_mut(name) else {
            return Vec::new();
        };
        let Some(p) = c.pending.remove(&seq) else {
            return Vec::new();
        };
        st.msgs
            .get(&seq)
            .map_or_else(Vec::new, |stored| letters(stored, &c.cfg, p.deliveries))
    }

    pub(crate) fn name(&self) -> &str {
        &self.cfg.name
    }

    /// The dead letter of a stored message, for the consumer configured by `cfg`.
    fn letter(
        &self,
        (sequence, stored): (u64, &Stored),
        cfg: &ConsumerConfig,
        reason: String,
        deliveries: u32,
    ) -> DeadLetter {
        DeadLetter {
            msg: stored.msg.clone(),
            to: cfg.dead_letter.clone(),
            stream: self.cfg.name.clone(),
            sequence,
            reason,
            deliveries,
            part: None,
        }
    }
}
