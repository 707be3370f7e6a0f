//! Guaranteed lanes: a gear's output published to the `flux-msg` JetStream stream, and
//! durable consumers that deliver into a gear's input queue; a delivery is acked once
//! everything derived from it reached the end of its path (see the `ack` module).

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::fmt::Write as _;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use fluxmsg::{Codec, FluxMsg};
use sdk::{InPort, Stats};
use sha2::{Digest, Sha256};
use snake::{
    Consumer, ConsumerConfig, DeliverPolicy, Message, Pattern, Snake, StreamConfig, Subject,
    TrackedPublisher,
};
use tokio::sync::{Mutex, mpsc, oneshot};
use tokio::task::JoinHandle;

use super::ack::{
    Finalizer, Ids, Outstanding, Share, Taken, Verdicts, fail_all, settle_all, spawn_acker,
};
use super::node::{Delivery, InFlight, Outgoing};
use crate::scenario::History;

/// The stream every guaranteed lane rides.
pub(crate) const STREAM: &str = "flux-msg";

/// How the bus tasks retry: 50 ms doubling up to 2 s.
fn retry() -> sdk::Backoff {
    sdk::Backoff::new(Duration::from_millis(50), Duration::from_secs(2))
}

/// Creates the `flux-msg` stream if it is not there (two minutes of publish dedup, and the
/// age and size bounds of `limits`, so that it does not grow forever), and the `flux-dlq`
/// stream that keeps the lanes' dead letters. A stream that is already there with other
/// settings (made by another rack, or by an operator) is used as it is.
pub(crate) async fn ensure_stream(
    snake: &Snake,
    limits: &super::Limits,
) -> Result<(), snake::Error> {
    let msgs = StreamConfig::new(STREAM, [Pattern::msg_all()])?
        .duplicate_window(Duration::from_secs(120))
        .max_age(limits.stream_max_age)
        .max_bytes(limits.stream_max_bytes);
    let dead_letters = StreamConfig::dead_letters()
        .max_age(limits.dead_letter_max_age)
        .max_bytes(limits.dead_letter_max_bytes);
    for cfg in [msgs, dead_letters] {
        let name = cfg.name().to_owned();
        match snake.create_stream(cfg).await {
            Err(snake::Error::StreamConflict(_)) => {
                tracing::info!(
                    stream = %name,
                    "The stream exists with other settings; using it as it is."
                );
            }
            other => other?,
        }
    }
    Ok(())
}

/// Publishes what arrives on `rx` to `subject`, and settles each batch's shares once the
/// server acked every message of it (end-to-end acknowledgement: the inputs upstream are
/// acked only then).
///
/// Messages that are there together are published together, as one pack (see
/// [`fluxmsg::pack`]) of up to [`PACK_MAX`] messages: one publish, one stored message, one
/// delivery and one ack for all of them, which is most of what a lane costs the server. A
/// message alone goes out as itself. Up to `WINDOW` publishes are in flight at once. A
/// publish that fails is sent again, the same bytes with the same dedup id, with backoff,
/// until it lands or the rack stops; then the shares of its batches are dropped unsettled,
/// so their inputs are delivered again upstream. Each publish carries a dedup id of its own
/// hop (see [`DedupIds`]), so that a message crossing several lanes, or coming back to a
/// lane it crossed before, is never taken for a duplicate; only a retry of the same publish
/// is.
pub(crate) fn spawn_publisher(
    snake: &Snake,
    subject: Subject,
    rx: mpsc::Receiver<Outgoing>,
    in_flight: Arc<InFlight>,
    stats: Arc<Stats>,
) -> JoinHandle<()> {
    tokio::spawn(Publisher::new(snake, subject, rx, in_flight, stats).run())
}

/// Publishes in flight at once per lane.
const WINDOW: usize = 256;

/// Most messages in one pack.
pub(crate) const PACK_MAX: usize = 64;

/// Most bytes in one pack when the transport sets no payload limit (the in-process bus).
const PACK_BYTES: usize = 1 << 20;

/// Bytes kept free under the transport's payload limit for what goes around a message's
/// payload (the headers with the dedup id).
const HEADROOM: usize = 1024;

/// One guaranteed lane's publisher: its batches waiting for acks, by number.
struct Publisher {
    rx: mpsc::Receiver<Outgoing>,
    /// Each publish is tagged with its pack and the retry round it was sent in.
    publisher: TrackedPublisher<(u64, u64)>,
    /// The transport's payload limit: a message over it can never land, so it is refused
    /// up front instead of being retried for ever (its inputs are nak'ed upstream).
    max_payload: Option<usize>,
    subject: Subject,
    /// Makes each publish's dedup id.
    dedup: DedupIds,
    /// Publishes so far (the last part of the dedup id).
    seq: u64,
    /// Batches with messages not yet acked: how many, whether one failed, their shares.
    batches: BTreeMap<u64, Pending>,
    next_batch: u64,
    /// Packs in flight: how many messages of which batch each carries.
    packs: BTreeMap<u64, Vec<(u64, usize)>>,
    next_pack: u64,
    in_flight: Arc<InFlight>,
    stats: Arc<Stats>,
    codec: Codec,
    /// The encodings of the messages taken and not packed yet.
    buf: Vec<u8>,
    /// Each message of `buf`: its batch, its id and where it lies.
    staged: Vec<Staged>,
    /// Waits between failed publishes; reset by an ack.
    backoff: sdk::Backoff,
    /// Retry rounds so far: one per backoff wait after a failed acknowledgement. A failure of
    /// a publish sent before the last wait belongs to the outage that wait was for, and is
    /// sent again at once: a window of acks lost together (a server restart) costs one wait,
    /// not one each.
    round: u64,
}

struct Staged {
    batch: u64,
    id: Option<fluxmsg::Id>,
    span: std::ops::Range<usize>,
}

struct Pending {
    left: usize,
    total: usize,
    failed: bool,
    shares: Vec<Share>,
}

impl Publisher {
    fn new(
        snake: &Snake,
        subject: Subject,
        rx: mpsc::Receiver<Outgoing>,
        in_flight: Arc<InFlight>,
        stats: Arc<Stats>,
    ) -> Self {
        Publisher {
            rx,
            publisher: snake.tracked_publisher(WINDOW),
            max_payload: snake.max_payload(),
            dedup: DedupIds::new(&subject, &publisher_nonce()),
            subject,
            seq: 0,
            batches: BTreeMap::new(),
            next_batch: 0,
            packs: BTreeMap::new(),
            next_pack: 0,
            in_flight,
            stats,
            codec: Codec::default(),
            buf: Vec::new(),
            staged: Vec::new(),
            backoff: retry(),
            round: 0,
        }
    }

    async fn run(mut self) {
        loop {
            // With nothing outstanding, wait for work; otherwise take what is there and
            // answer acks in between, so that a steady input does not stall the acks.
            let next = if self.publisher.outstanding() == 0 {
                match self.rx.recv().await {
                    Some(batch) => Some(batch),
                    None => break,
                }
            } else {
                self.rx.try_recv().ok()
            };
            match next {
                Some(batch) => {
                    self.stage(batch);
                    // What else is there already goes into the same packs.
                    while self.staged.len() < PACK_MAX
                        && let Ok(batch) = self.rx.try_recv()
                    {
                        self.stage(batch);
                    }
                    self.publish().await;
                }
                None => self.answer().await,
            }
        }
    }

    /// Encodes a batch's messages into `buf`, to be packed; refuses (and counts) those that
    /// cannot be encoded or could never land.
    fn stage(&mut self, (msgs, shares): Outgoing) {
        let batch = self.next_batch;
        self.next_batch += 1;
        let total = msgs.len();
        self.batches.insert(
            batch,
            Pending {
                left: total,
                total,
                failed: false,
                shares,
            },
        );
        for msg in &msgs {
            let start = self.buf.len();
            // A failed encode leaves the buffer as it was.
            if let Err(e) = self.codec.encode(msg, &mut self.buf) {
                tracing::warn!(subject = %self.subject, error = %e, "A message that cannot be encoded is dropped.");
                self.stats.add_dropped("unencodable", 1);
                self.done(batch, false, 1);
                continue;
            }
            let len = self.buf.len() - start;
            // Room for the subject and the dedup header around the payload.
            if self
                .max_payload
                .is_some_and(|max| len.saturating_add(HEADROOM) > max)
            {
                self.buf.truncate(start);
                tracing::warn!(subject = %self.subject, bytes = len, max_payload = ?self.max_payload, "A message over the transport's payload limit is refused.");
                self.stats.add_dropped("oversized", 1);
                self.done(batch, false, 1);
                continue;
            }
            self.staged.push(Staged {
                batch,
                id: msg.id,
                span: start..self.buf.len(),
            });
        }
        if total == 0 {
            self.done(batch, true, 0);
        }
    }

    /// Packs what was staged and sends it, answering acks whenever the window is full.
    ///
    /// A message alone is a slice of the encoded buffer (the transport's copy of it only
    /// counts a reference); a pack copies its messages once into a payload of its own.
    async fn publish(&mut self) {
        let len = self.buf.len();
        let encoded = Bytes::from(std::mem::replace(&mut self.buf, Vec::with_capacity(len)));
        let staged = std::mem::take(&mut self.staged);
        let budget = self
            .max_payload
            .map_or(PACK_BYTES, |max| max.saturating_sub(HEADROOM));
        let mut rest = &staged[..];
        while let Some(first) = rest.first() {
            // The longest run that fits a pack; a message alone always fits (see `stage`).
            let mut n = 1;
            let mut bytes = first.span.len();
            while let Some(next) = rest.get(n) {
                let more = bytes + next.span.len();
                if n == PACK_MAX || fluxmsg::pack::size_bound(n + 1, more) > budget {
                    break;
                }
                bytes = more;
                n += 1;
            }
            let (run, after) = rest.split_at(n);
            rest = after;
            let payload = if n == 1 {
                encoded.slice(first.span.clone())
            } else {
                let mut payload = Vec::with_capacity(fluxmsg::pack::size_bound(n, bytes));
                fluxmsg::pack::write(run.iter().map(|m| &encoded[m.span.clone()]), &mut payload);
                Bytes::from(payload)
            };
            let mut members: Vec<(u64, usize)> = Vec::new();
            for m in run {
                match members.last_mut() {
                    Some((batch, count)) if *batch == m.batch => *count += 1,
                    _ => members.push((m.batch, 1)),
                }
            }
            let pack = self.next_pack;
            self.next_pack += 1;
            self.packs.insert(pack, members);
            self.seq += 1;
            let out = Message::new(self.subject.clone(), payload)
                .with_id(self.dedup.id(first.id, self.seq));
            while self.publisher.is_full() {
                self.answer().await;
            }
            self.send(out, (pack, self.round)).await;
        }
        // The buffer's allocation is kept for the next round.
        let mut staged = staged;
        staged.clear();
        self.staged = staged;
    }

    /// Sends one publish, retrying what the transport refuses outright.
    async fn send(&mut self, mut out: Message, tag: (u64, u64)) {
        loop {
            match self.publisher.send(out, tag).await {
                Ok(()) => return,
                Err(refused) => {
                    if matches!(refused.error, snake::Error::Closed) {
                        self.pack_done(tag.0, false, "bus_closed");
                        return;
                    }
                    let wait = self.backoff.next_wait();
                    tracing::warn!(subject = %self.subject, error = %refused.error, retry_in = ?wait, "Publish failed; retrying.");
                    tokio::time::sleep(wait).await;
                    out = refused.message;
                }
            }
        }
    }

    /// Takes the oldest answer: an ack counts its pack done, a failure sends it again.
    async fn answer(&mut self) {
        let Some(answer) = self.publisher.next().await else {
            return;
        };
        match answer.result {
            Ok(ack) => {
                self.backoff.reset();
                // A retry of a publish that had landed: nothing is lost or doubled.
                let note = if ack.duplicate {
                    "duplicate_publish"
                } else {
                    ""
                };
                self.pack_done(answer.tag.0, true, note);
            }
            Err(snake::Error::Closed) => self.pack_done(answer.tag.0, false, "bus_closed"),
            Err(e) => {
                let (pack, round) = answer.tag;
                if round == self.round {
                    let wait = self.backoff.next_wait();
                    tracing::warn!(subject = %self.subject, error = %e, retry_in = ?wait, "Publish not acked; sending it again.");
                    tokio::time::sleep(wait).await;
                    self.round += 1;
                } else {
                    tracing::debug!(subject = %self.subject, error = %e, "Publish not acked in an outage already waited for; sending it again.");
                }
                self.send(answer.message, (pack, self.round)).await;
            }
        }
    }

    /// Pack `pack` landed (`ok`) or never will; `count` (unless empty) names what its
    /// messages are counted as.
    fn pack_done(&mut self, pack: u64, ok: bool, count: &'static str) {
        let Some(members) = self.packs.remove(&pack) else {
            return;
        };
        for (batch, n) in members {
            if !count.is_empty() {
                self.stats.add_dropped(count, n as u64);
            }
            self.done(batch, ok, n);
        }
    }

    /// `n` messages of batch `id` are done; the last one settles (or fails) its shares.
    fn done(&mut self, id: u64, ok: bool, n: usize) {
        let Some(batch) = self.batches.get_mut(&id) else {
            return;
        };
        batch.failed |= !ok;
        batch.left = batch.left.saturating_sub(n);
        if batch.left > 0 {
            return;
        }
        if let Some(mut batch) = self.batches.remove(&id) {
            if batch.failed {
                fail_all(&batch.shares);
            } else {
                settle_all(&mut batch.shares);
            }
            self.in_flight.done(batch.total);
        }
    }
}

impl Drop for Publisher {
    /// The rack stops: what was not acked yet fails its inputs (delivered again upstream),
    /// is counted as dropped `shutdown`, and is no longer in flight.
    fn drop(&mut self) {
        let (mut left, mut in_flight) = (0, 0);
        for (_, batch) in std::mem::take(&mut self.batches) {
            fail_all(&batch.shares);
            left += batch.left;
            // The whole batch was counted in flight when it was sent, acked part included.
            in_flight += batch.total;
        }
        // Batches never taken (the task was aborted): their shares drop unsettled.
        self.rx.close();
        while let Ok((msgs, _)) = self.rx.try_recv() {
            left += msgs.len();
            in_flight += msgs.len();
        }
        self.in_flight.done(in_flight);
        if left > 0 {
            self.stats.add_dropped("shutdown", left as u64);
            tracing::warn!(subject = %self.subject, left, "Stopped with publishes not acked; their inputs will be delivered again.");
        }
    }
}

/// The dedup ids of one publisher run. The dedup id of one publish is the id of its message
/// (the first one of a pack; for people reading the stream), the lane's subject (one per rack, gear and port in the
/// fleet), the publisher's nonce (which tells this run of the publisher from an earlier one,
/// say before a crash) and its running count: `<id>:<subject>:<nonce>:<count in hex>`. Two
/// publishes share it only when they are retries of one publish, whatever lanes the message
/// crossed before and however often it comes back.
struct DedupIds {
    /// `:<subject>:<nonce>:`, the part every id of the run shares.
    middle: String,
}

impl DedupIds {
    fn new(subject: &Subject, nonce: &str) -> Self {
        DedupIds {
            middle: format!(":{subject}:{nonce}:"),
        }
    }

    /// The dedup id of publish number `seq`, whose (first) message has id `msg_id`.
    fn id(&self, msg_id: Option<fluxmsg::Id>, seq: u64) -> String {
        // An id as text is at most 36 bytes (a UUID), a count 16 hex digits.
        let mut id = String::with_capacity(self.middle.len() + 56);
        match &msg_id {
            // Writing into a String cannot fail.
            Some(msg_id) => {
                let _ = write!(id, "{msg_id}");
            }
            None => id.push('-'),
        }
        id.push_str(&self.middle);
        let _ = write!(id, "{seq:x}");
        id
    }
}

/// A value no other publisher run of this subject has had: the start time in nanoseconds and
/// a count of the publishers this process started.
fn publisher_nonce() -> String {
    static STARTED: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let n = STARTED.fetch_add(1, Ordering::Relaxed);
    format!("{nanos:x}.{n:x}")
}

/// The durable consumer name of a lane into `rack`: a readable prefix (the local gear and
/// port) and a hash of the lane's full identity, so that two lanes never share a name
/// (whatever `-` their names hold) and the name fits a subject token (64 bytes).
pub(crate) fn durable_name(rack: &str, sub: &super::Subscription) -> String {
    let mut hasher = Sha256::new();
    for part in [
        rack,
        &sub.to.gear,
        &sub.to.port,
        &sub.rack,
        &sub.from.gear,
        &sub.from.port,
    ] {
        // Length-prefixed, so that no two identities give the same bytes.
        hasher.update((part.len() as u64).to_be_bytes());
        hasher.update(part.as_bytes());
    }
    let digest = hasher.finalize();
    let mut prefix: String = format!("{}-{}", sub.to.gear, sub.to.port)
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '_')
        .collect();
    prefix.truncate(40);
    let mut name = prefix;
    name.push('-');
    for byte in &digest[..8] {
        // Writing into a String cannot fail.
        let _ = write!(name, "{byte:02x}");
    }
    name
}

/// Opens the durable consumer of a lane into a gear: one that exists resumes where it
/// stopped; a new one starts where `history` says (the next message published, or the
/// oldest the stream holds for `subject`).
pub(crate) async fn open_consumer(
    snake: &Snake,
    subject: &Subject,
    durable: &str,
    dead_letter: Subject,
    history: History,
    limits: &super::Limits,
) -> Result<Consumer, snake::Error> {
    let deliver = match history {
        History::New => DeliverPolicy::New,
        History::All => DeliverPolicy::All,
    };
    let cfg = ConsumerConfig::new(subject.clone().into())
        .durable(durable)?
        .deliver(deliver)
        .ack_wait(limits.ack_wait)
        .max_deliver(limits.max_deliver)
        .dead_letter(dead_letter);
    snake.consumer(STREAM, cfg).await
}

/// Creates, if it does not exist yet, the durable consumer through which rack `feed.rack`
/// reads a lane out of this rack, starting where its `history` says.
pub(crate) async fn create_feed(
    snake: &Snake,
    feed: &super::Feed,
    limits: &super::Limits,
) -> Result<(), snake::Error> {
    let lane = &feed.lane;
    let subject = Subject::msg(&lane.rack, &lane.from.gear, &lane.from.port)?;
    let deliver = match lane.history {
        History::New => DeliverPolicy::New,
        History::All => DeliverPolicy::All,
    };
    let cfg = ConsumerConfig::new(subject.into())
        .durable(&durable_name(&feed.rack, lane))?
        .deliver(deliver)
        .ack_wait(limits.ack_wait)
        .max_deliver(limits.max_deliver);
    snake.create_consumer(STREAM, cfg).await
}

/// The durables of lanes that a reload removed and that wait for what they delivered to be
/// settled before they are deleted. A lane that comes back meanwhile takes its durable out
/// (waiting for a deletion under way to finish), so that it is not deleted under it.
pub(crate) type Retiring = Arc<Mutex<BTreeSet<String>>>;

/// A running lane into the rack: the task that pulls from its durable consumer.
#[derive(Debug)]
pub(crate) struct Inlet {
    puller: JoinHandle<()>,
    /// Closed once the lane's acker ended: the lane stopped pulling and every share of
    /// what it delivered is gone, so every verdict was sent.
    settled: oneshot::Receiver<()>,
    durable: String,
}

impl Inlet {
    /// Stops pulling; what was delivered and not handled yet is delivered again later.
    pub(crate) fn abort(&self) {
        self.puller.abort();
    }

    /// The lane's durable consumer.
    pub(crate) fn durable(&self) -> &str {
        &self.durable
    }
}

/// Deletes the durable consumer of a lane that a reload removed, once everything it delivered
/// into the rack is settled, unless the lane came back meanwhile (see [`Retiring`]); the lane
/// was aborted already. A failure is logged: the durable stays on the server.
pub(crate) async fn retire(snake: Snake, inlet: Inlet, retiring: Retiring) {
    let Inlet {
        settled, durable, ..
    } = inlet;
    // Closed, never sent: the acker ended (or was aborted with the rack).
    let _ = settled.await;
    let mut retiring = retiring.lock().await;
    if !retiring.remove(&durable) {
        return;
    }
    match snake.delete_consumer(STREAM, &durable).await {
        Ok(true) => {
            tracing::info!(durable, "Deleted the durable consumer of a removed lane.");
        }
        Ok(false) => {
            tracing::info!(
                durable,
                "The durable consumer of a removed lane was already gone."
            );
        }
        Err(e) => {
            tracing::warn!(durable, error = %e, "Could not delete the durable consumer of a removed lane; it stays on the server.");
        }
    }
}

/// Where a subscriber delivers.
pub(crate) struct Inbound {
    pub(crate) consumer: Consumer,
    pub(crate) durable: String,
    pub(crate) tx: mpsc::Sender<Delivery>,
    pub(crate) port: InPort,
    pub(crate) in_flight: Arc<InFlight>,
    pub(crate) stats: Arc<Stats>,
    /// The lane's ack wait (progress is reported three times per wait).
    pub(crate) ack_wait: Duration,
    /// Most messages in one delivery into the gear's queue (`Limits::batch`).
    pub(crate) batch: usize,
    /// The bus, which the acker flushes once it sent its last verdict.
    pub(crate) snake: Snake,
}

/// Pulls from a durable consumer and delivers into a gear's queue, each message with the
/// first share of its acknowledgement (see the `ack` module); returns the running lane and
/// the task that acks and naks. Aborting the puller leaves unacked messages to be delivered
/// again; the acker ends once every share of what was pulled is gone.
pub(crate) fn spawn_subscriber(inbound: Inbound) -> (Inlet, JoinHandle<()>) {
    let outstanding = Outstanding::default();
    // A third of the ack wait between progress reports leaves room for one to be late.
    let progress = (inbound.ack_wait / 3).max(Duration::from_millis(10));
    let (ended, settled) = oneshot::channel();
    let durable_name = inbound.durable.clone();
    let (acker, acker_task) = spawn_acker(
        inbound.snake.clone(),
        inbound.durable.clone(),
        Arc::clone(&outstanding),
        progress,
        ended,
    );
    let puller = Puller {
        codec: Codec::default(),
        acker,
        outstanding,
        // Half a progress period: a delivery waits at most that long in the transport's
        // buffer while the gear's queue is full before the rack takes it and keeps it alive.
        hold: progress / 2,
        taken: Vec::new(),
        ready: VecDeque::new(),
        inbound,
    };
    let inlet = Inlet {
        puller: tokio::spawn(puller.run()),
        settled,
        durable: durable_name,
    };
    (inlet, acker_task)
}

/// The task that pulls one lane into a gear's queue.
struct Puller {
    inbound: Inbound,
    codec: Codec,
    acker: Verdicts,
    outstanding: Outstanding,
    hold: Duration,
    /// Deliveries taken from the consumer, not decoded yet.
    taken: Vec<snake::Delivery>,
    /// Batches decoded and registered, waiting for room in the gear's queue.
    ready: VecDeque<(Vec<FluxMsg>, Vec<Share>)>,
}

impl Puller {
    async fn run(mut self) {
        let max = self.inbound.batch.max(1);
        // Its own handle, so that a permit held does not borrow the puller.
        let tx = self.inbound.tx.clone();
        loop {
            if self.ready.is_empty() {
                // Waits for one delivery, and takes those already there with it.
                match self.inbound.consumer.next_batch(&mut self.taken, max).await {
                    Ok(_) => {}
                    Err(snake::Error::Closed) => return,
                    Err(e) => {
                        tracing::warn!(durable = %self.inbound.durable, error = %e, "Consumer error.");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    }
                }
                self.register().await;
                continue;
            }
            // While the gear's queue is full, what the transport already pulled is taken in
            // every `hold`, so that the acker reports it in progress as it does for the rest
            // (the transport does not): a slow gear does not make it come back meanwhile.
            let permit = tokio::select! {
                biased;
                permit = tx.reserve() => Some(permit),
                () = tokio::time::sleep(self.hold) => None,
            };
            match permit {
                Some(Ok(permit)) => {
                    if let Some((msgs, shares)) = self.ready.pop_front() {
                        self.inbound.in_flight.add(msgs.len());
                        permit.send(Delivery {
                            port: self.inbound.port,
                            msgs,
                            shares,
                        });
                    }
                }
                // The gear is gone.
                Some(Err(_)) => return,
                None => {
                    while self.inbound.consumer.ready(&mut self.taken, max).await > 0 {
                        self.register().await;
                    }
                }
            }
        }
    }

    /// Decodes what was taken into batches of at most `Limits::batch` messages, each
    /// delivery with the first share of its acknowledgement (registered, so that it is kept
    /// alive from now on; the messages of a pack share it); terminates what cannot be
    /// decoded (in a pack, only the parts that cannot be, which are dead-lettered when the
    /// rest is done).
    async fn register(&mut self) {
        // Every message decoded, in order, and how many each delivery gave.
        let mut decoded = Vec::with_capacity(self.taken.len());
        let mut counts = Vec::with_capacity(self.taken.len());
        let mut taken = Vec::with_capacity(self.taken.len());
        // Taken out for the loop and put back after, to keep its allocation.
        let mut pulled = std::mem::take(&mut self.taken);
        for delivery in pulled.drain(..) {
            let payload = delivery.message.payload.clone();
            if !fluxmsg::pack::is_pack(&payload) {
                match self.codec.decode_shared(&payload) {
                    Ok(msg) => {
                        let ids = Ids::One(msg.id);
                        decoded.push(msg);
                        counts.push(1);
                        taken.push(Taken {
                            delivery,
                            ids,
                            broken: Vec::new(),
                        });
                    }
                    Err(e) => self.undecodable(delivery, &e).await,
                }
                continue;
            }
            let parts = match fluxmsg::pack::parts(&payload) {
                Ok(parts) => parts,
                Err(e) => {
                    self.undecodable(delivery, &e).await;
                    continue;
                }
            };
            let before = decoded.len();
            let mut ids = Vec::with_capacity(parts.len());
            let mut broken = Vec::new();
            for (i, part) in parts.iter().enumerate() {
                match self.codec.decode_shared(part) {
                    Ok(msg) => {
                        ids.push(msg.id);
                        decoded.push(msg);
                    }
                    Err(e) => {
                        self.inbound.stats.add_dropped("undecodable", 1);
                        ids.push(None);
                        broken.push((i, format!("undecodable: {e}")));
                    }
                }
            }
            counts.push(decoded.len() - before);
            taken.push(Taken {
                delivery,
                ids: Ids::Pack(ids.into_boxed_slice()),
                broken,
            });
        }
        self.taken = pulled;
        if taken.is_empty() {
            return;
        }
        let shares = Finalizer::shares(taken, &self.acker, &self.outstanding);
        let max = self.inbound.batch.max(1);
        let (mut msgs, mut held) = (Vec::with_capacity(max), Vec::new());
        let mut decoded = decoded.into_iter();
        for (count, share) in counts.into_iter().zip(shares) {
            for msg in decoded.by_ref().take(count) {
                if msgs.len() == max {
                    self.ready
                        .push_back((std::mem::take(&mut msgs), std::mem::take(&mut held)));
                }
                if !Share::same(&held, &share) {
                    held.push(share.clone());
                }
                msgs.push(msg);
            }
            // Its part here is done: the batches it went into hold copies.
            share.settle();
        }
        if !msgs.is_empty() {
            self.ready.push_back((msgs, held));
        }
    }

    /// Terminates a delivery that is not a message or a pack.
    async fn undecodable(&self, delivery: snake::Delivery, e: &fluxmsg::Error) {
        self.inbound.stats.add_dropped("undecodable", 1);
        let reason = format!("undecodable: {e}");
        if let Err(e) = delivery.term(&reason).await {
            tracing::warn!(durable = %self.inbound.durable, error = %e, "Term failed.");
        }
    }
}
