//! One TCP connection: its outbound queue and the task that reads and writes it.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::pin::pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use fluxmsg::{FluxMsg, Map, Text};
use sdk::Stats;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::{Notify, watch};
use tokio::time::{Instant, sleep_until};

use super::Shared;
use super::budget::{Budget, Reservation};
use super::framing::{Codec, Decoder, Refused};
use super::settings::Settings;
use crate::meta::{CONN_ID, PEER_IP, PEER_PORT};

/// The first size of a read buffer, which is not charged to the partial-frame budget.
const READ_CHUNK: usize = 8 * 1024;
/// A read buffer with less room than this left grows (or moves to a fresh one) before the
/// next read.
const MIN_READ: usize = 1024;
/// Bytes of frames encoded per write, at most (one frame may exceed it alone).
const WRITE_BATCH: usize = 64 * 1024;
/// An idle write buffer larger than this is given back rather than kept for the next batch.
const SHRINK_ABOVE: usize = 256 * 1024;

/// Connection ids, counted in the process: the low 32 bits of an id.
static NEXT_CONN_ID: AtomicU64 = AtomicU64::new(1);

/// The high 32 bits of every connection id of this process: random, drawn once, so that a
/// `conn.id` kept across a restart (a durable conductor ticket) never names a connection
/// of a later process.
fn conn_id_seed() -> u64 {
    static SEED: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    *SEED.get_or_init(|| {
        use std::hash::{BuildHasher, Hasher};
        // `RandomState` is seeded from the system's randomness; mix in time and process.
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_u32(std::process::id());
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos();
        h.write_u128(nanos);
        // Never zero, so that an id is never mistaken for a small counter.
        (h.finish() << 32) | (1 << 63)
    })
}

/// A new connection id: the process's random high half, a counter in the low half (which
/// wraps after 2^32 connections, within the same process).
pub(crate) fn next_conn_id() -> u64 {
    conn_id_seed() | (NEXT_CONN_ID.fetch_add(1, Ordering::Relaxed) & 0xffff_ffff)
}

/// A connection id as it appears in `conn.id`: 16 lower-case hex digits.
pub(crate) fn format_conn_id(id: u64) -> String {
    format!("{id:016x}")
}

/// Reads a `conn.id` back (1 to 16 hex digits).
pub(crate) fn parse_conn_id(text: &str) -> Option<u64> {
    if text.is_empty() || text.len() > 16 {
        return None;
    }
    u64::from_str_radix(text, 16).ok()
}

/// The payloads waiting to be written to one connection: bounded, oldest dropped first.
///
/// Pushed by the routing task, taken by the connection's writer; the lock is held for a
/// push or a pop, never across I/O. Whatever it still holds when dropped (the tasks were
/// aborted at the drain timeout) is counted as dropped `shutdown`.
#[derive(Debug)]
pub(crate) struct SendQueue {
    payloads: Mutex<VecDeque<Bytes>>,
    capacity: usize,
    wake: Notify,
    stats: Arc<Stats>,
}

impl Drop for SendQueue {
    fn drop(&mut self) {
        let left = self.clear();
        if left > 0 {
            self.stats.add_dropped("shutdown", left);
            tracing::warn!(
                left,
                "Dropped messages never written: the gear's tasks were aborted."
            );
        }
    }
}

impl SendQueue {
    pub(crate) fn new(capacity: usize, stats: Arc<Stats>) -> SendQueue {
        SendQueue {
            payloads: Mutex::new(VecDeque::new()),
            capacity: capacity.max(1),
            wake: Notify::new(),
            stats,
        }
    }

    /// Queues `payload`, dropping the oldest ones if the queue is full; returns how many were
    /// dropped.
    pub(crate) fn push(&self, payload: Bytes) -> u64 {
        let mut dropped = 0;
        {
            let mut queue = self.payloads.lock().unwrap_or_else(PoisonError::into_inner);
            while queue.len() >= self.capacity {
                queue.pop_front();
                dropped += 1;
            }
            queue.push_back(payload);
        }
        self.wake.notify_one();
        dropped
    }

    /// Moves the oldest payloads into `into`, at least one if any, up to about `max_bytes`.
    fn take(&self, into: &mut Vec<Bytes>, max_bytes: usize) {
        let mut queue = self.payloads.lock().unwrap_or_else(PoisonError::into_inner);
        let mut bytes = 0;
        while let Some(front) = queue.front() {
            if bytes > 0 && bytes + front.len() > max_bytes {
                break;
            }
            bytes += front.len();
            into.extend(queue.pop_front());
        }
    }

    /// Empties the queue; returns how many payloads it held.
    pub(crate) fn clear(&self) -> u64 {
        let mut queue = self.payloads.lock().unwrap_or_else(PoisonError::into_inner);
        let n = queue.len() as u64;
        queue.clear();
        n
    }
}

/// The drain signal, seen by every connection of a gear.
#[derive(Debug, Clone)]
pub(crate) struct Stop(watch::Receiver<bool>);

impl Stop {
    /// A stop signal and the sender that raises it (sending `true`, or dropping it).
    pub(crate) fn channel() -> (watch::Sender<bool>, Stop) {
        let (tx, rx) = watch::channel(false);
        (tx, Stop(rx))
    }

    /// Whether the gear is draining.
    pub(crate) fn is_set(&self) -> bool {
        *self.0.borrow() || self.0.has_changed().is_err()
    }

    /// Returns once the gear drains.
    pub(crate) async fn wait(&mut self) {
        // An error means the sender is gone: stop as well.
        let _ = self.0.wait_for(|stop| *stop).await;
    }
}

/// What a connection task needs besides the socket.
#[derive(Debug)]
pub(crate) struct Link<'a> {
    pub(crate) id: u64,
    pub(crate) peer: SocketAddr,
    pub(crate) queue: &'a SendQueue,
    pub(crate) stop: Stop,
    /// Whether frames read are emitted (false: read and discarded).
    pub(crate) emit: bool,
}

/// How a connection ended.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ConnEnd {
    /// Why, for logs: `peer_closed`, `read_error`, `write_error`, `oversized_frame`,
    /// `frame_timeout`, `partial_frame_budget`, `idle_timeout`, `drained`, `engine_closed`.
    pub(crate) reason: &'static str,
    /// Payloads taken from the queue but not (completely) written.
    pub(crate) unsent: u64,
}

/// The last time a connection read or wrote, and whether it is waiting on the engine.
#[derive(Debug)]
struct Activity {
    born: Instant,
    last_ms: AtomicU64,
    emitting: AtomicBool,
}

impl Activity {
    fn touch(&self) {
        let ms = u64::try_from(self.born.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.last_ms.store(ms, Ordering::Relaxed);
    }

    fn last(&self) -> Instant {
        self.born + Duration::from_millis(self.last_ms.load(Ordering::Relaxed))
    }
}

/// The encoded frames being written, and where each ends. Frames still unwritten when it is
/// dropped (the task was aborted at the drain timeout) are counted as dropped `shutdown`.
#[derive(Debug)]
struct WriteBuf {
    bytes: Vec<u8>,
    ends: Vec<usize>,
    written: usize,
    stats: Arc<Stats>,
}

impl Drop for WriteBuf {
    fn drop(&mut self) {
        let left = self.unsent();
        if left > 0 {
            self.stats.add_dropped("shutdown", left);
        }
    }
}

impl WriteBuf {
    fn new(stats: Arc<Stats>) -> WriteBuf {
        WriteBuf {
            bytes: Vec::new(),
            ends: Vec::new(),
            written: 0,
            stats,
        }
    }

    /// How many frames are not (completely) written; the caller counts them, not the drop.
    fn take_unsent(&mut self) -> u64 {
        let n = self.unsent();
        self.ends.clear();
        n
    }

    fn is_done(&self) -> bool {
        self.written >= self.bytes.len()
    }

    fn unsent(&self) -> u64 {
        self.ends.iter().filter(|&&end| end > self.written).count() as u64
    }
}

/// Serves one connection until the peer leaves, an error, an oversized frame, the idle
/// timeout, or the drain (which stops reading and flushes the queue first).
pub(crate) async fn run<S>(stream: S, link: Link<'_>, shared: &Shared) -> ConnEnd
where
    S: AsyncRead + AsyncWrite + Send + Unpin,
{
    let activity = Activity {
        born: Instant::now(),
        last_ms: AtomicU64::new(0),
        emitting: AtomicBool::new(false),
    };
    let meta = ConnMeta::new(link.id, link.peer);
    let mut wbuf = WriteBuf::new(Arc::clone(shared.emitter.stats()));
    let reason = {
        let (rd, wr) = tokio::io::split(stream);
        let mut reader = pin!(read_loop(
            rd,
            shared,
            &meta,
            &activity,
            link.stop.clone(),
            link.emit
        ));
        let mut writer = pin!(write_loop(
            wr,
            &shared.settings.codec,
            link.queue,
            &mut wbuf,
            &activity,
            link.stop
        ));
        let idle = shared.settings.idle_timeout;
        let mut deadline = idle.and_then(|d| activity.born.checked_add(d));
        let mut reading = true;
        loop {
            tokio::select! {
                // The reader first: at a drain both ends stop together, and the reader must
                // count the frames it read but could not emit before the connection closes.
                biased;
                end = &mut reader, if reading => match end {
                    // Draining: stop reading, let the writer flush.
                    ReadEnd::Stopped => reading = false,
                    ReadEnd::Closed(reason) => break reason,
                },
                reason = &mut writer => break reason,
                () = sleep_until(deadline.unwrap_or(activity.born)), if reading && deadline.is_some() => {
                    let now = Instant::now();
                    let next = if activity.emitting.load(Ordering::Relaxed) {
                        idle.and_then(|d| now.checked_add(d))
                    } else {
                        idle.and_then(|d| activity.last().checked_add(d))
                    };
                    match next {
                        Some(at) if at <= now => {
                            tracing::info!(idle = ?idle, "Closing an idle connection.");
                            break "idle_timeout";
                        }
                        other => deadline = other,
                    }
                }
            }
        }
    };
    ConnEnd {
        reason,
        unsent: wbuf.take_unsent(),
    }
}

/// The metadata every frame of a connection carries.
#[derive(Debug)]
struct ConnMeta {
    id: Text,
    ip: Text,
    port: Text,
}

impl ConnMeta {
    fn new(id: u64, peer: SocketAddr) -> ConnMeta {
        ConnMeta {
            id: format_conn_id(id).into(),
            ip: peer.ip().to_string().into(),
            port: peer.port().to_string().into(),
        }
    }

    fn message(&self, raw: Bytes, ts: i64) -> FluxMsg {
        let mut meta = Map::with_capacity(3);
        meta.insert(CONN_ID, self.id.clone());
        meta.insert(PEER_IP, self.ip.clone());
        meta.insert(PEER_PORT, self.port.clone());
        let mut msg = FluxMsg::new();
        msg.meta = meta;
        msg.raw = raw;
        msg.ts = ts;
        msg
    }
}

enum ReadEnd {
    Stopped,
    Closed(&'static str),
}

/// A connection's read buffer. It starts at [`READ_CHUNK`] bytes and grows by powers of two
/// with the bytes that arrive (a length prefix reserves nothing ahead of its bytes), never
/// past the most one frame takes. What it holds beyond its free part is reserved from the
/// gear's partial-frame budget before it is allocated, and given back as frames complete
/// (the buffer shrinks to what the bytes left need, its first size when empty) or when the
/// connection ends (the reservation is dropped with it).
#[derive(Debug)]
struct ReadBuf<'a> {
    bytes: BytesMut,
    /// The most one frame takes: `max_frame` and its prefix or delimiter.
    ceiling: usize,
    /// What the buffer holds free of charge: one read chunk, or one delimiter if longer, so
    /// that a budget of `max_frame` always has room for one frame of that size.
    free: usize,
    reservation: Reservation<'a>,
}

/// The budget had not enough left for the buffer a connection needed.
#[derive(Debug, Clone, Copy)]
struct Spent {
    /// The buffer's size that was wanted.
    wanted: usize,
}

impl<'a> ReadBuf<'a> {
    fn new(settings: &Settings, budget: &'a Budget) -> ReadBuf<'a> {
        ReadBuf {
            bytes: BytesMut::with_capacity(READ_CHUNK),
            ceiling: settings.frame_ceiling,
            free: READ_CHUNK.max(settings.codec.overhead()),
            reservation: budget.reservation(),
        }
    }

    /// The buffer's size for `len` bytes and a read: the next power of two, at least the
    /// first size, at most the most one frame takes (the decoder never leaves a whole
    /// `ceiling` in the buffer: a frame that long is complete, or oversized).
    fn size_for(&self, len: usize) -> usize {
        len.saturating_add(MIN_READ)
            .checked_next_power_of_two()
            .unwrap_or(usize::MAX)
            .clamp(READ_CHUNK, self.ceiling.max(READ_CHUNK))
            .max(len.saturating_add(1))
    }

    /// Once frames were taken out, gives back what the buffer holds beyond what its bytes
    /// left need (all but its first size when it is empty).
    fn settle(&mut self) {
        let size = self.size_for(self.bytes.len());
        if self.reservation.held() > size.saturating_sub(self.free) {
            self.move_to(size);
        }
    }

    /// Makes room for the next read: a nearly full buffer grows to twice what it holds, or
    /// moves to a fresh one when frames taken from its front left the room there. The budget
    /// is charged before the allocation.
    fn make_room(&mut self) -> Result<(), Spent> {
        let len = self.bytes.len();
        let size = self.size_for(len);
        let capacity = self.bytes.capacity();
        if capacity - len >= MIN_READ || capacity >= size {
            return Ok(());
        }
        // While the bytes move, the larger of the two buffers stays reserved.
        let charge = size.saturating_sub(self.free);
        if !self.reservation.resize(charge.max(self.reservation.held())) {
            return Err(Spent { wanted: size });
        }
        self.move_to(size);
        Ok(())
    }

    /// Moves the bytes to a fresh buffer of `size` (reserved already if larger) and gives
    /// back what the old one held beyond it.
    fn move_to(&mut self, size: usize) {
        let mut fresh = BytesMut::with_capacity(size);
        fresh.extend_from_slice(&self.bytes);
        self.bytes = fresh;
        let shrunk = self.reservation.resize(size.saturating_sub(self.free));
        debug_assert!(shrunk, "the size was reserved before the move");
    }
}

async fn read_loop(
    mut rd: impl AsyncRead + Unpin,
    shared: &Shared,
    meta: &ConnMeta,
    activity: &Activity,
    mut stop: Stop,
    emit: bool,
) -> ReadEnd {
    let settings = &shared.settings;
    let mut decoder = Decoder::new(settings.codec.clone(), settings.max_frame);
    let mut buf = ReadBuf::new(settings, &shared.budget);
    // When the frame now in `buf` must be complete (its first byte's arrival plus
    // `frame_timeout`); `None` while no frame is under way.
    let mut frame_due: Option<Instant> = None;
    loop {
        if !emit {
            buf.bytes.clear();
        } else if let Some(end) = emit_frames(
            &mut decoder,
            &mut buf.bytes,
            shared,
            meta,
            activity,
            &mut stop,
        )
        .await
        {
            return end;
        }
        frame_due = match (buf.bytes.is_empty(), frame_due, settings.frame_timeout) {
            (true, _, _) | (false, _, None) => None,
            (false, Some(due), Some(_)) => Some(due),
            (false, None, Some(limit)) => Instant::now().checked_add(limit),
        };
        buf.settle();
        if let Err(Spent { wanted }) = buf.make_room() {
            // Counted before the close, so that whoever sees the close sees the count.
            shared
                .emitter
                .stats()
                .add_dropped("partial_frame_budget", 1);
            tracing::warn!(
                reason = "partial_frame_budget",
                buffered = buf.bytes.len(),
                wanted,
                in_use = shared.budget.used(),
                partial_frame_budget = shared.budget.limit(),
                "Closing a connection whose frame in progress does not fit the budget left."
            );
            return ReadEnd::Closed("partial_frame_budget");
        }
        tokio::select! {
            biased;
            () = stop.wait() => return ReadEnd::Stopped,
            () = sleep_until(frame_due.unwrap_or_else(Instant::now)), if frame_due.is_some() => {
                tracing::info!(
                    frame_timeout = ?settings.frame_timeout,
                    buffered = buf.bytes.len(),
                    "Closing a connection whose frame did not complete in time."
                );
                shared.emitter.stats().add_dropped("frame_timeout", 1);
                return ReadEnd::Closed("frame_timeout");
            }
            // `make_room` left room, so the read never grows the buffer on its own.
            read = rd.read_buf(&mut buf.bytes) => match read {
                Ok(0) => return ReadEnd::Closed("peer_closed"),
                Ok(_) => activity.touch(),
                Err(e) => {
                    tracing::debug!(error = %e, "Read failed.");
                    return ReadEnd::Closed("read_error");
                }
            },
        }
    }
}

/// Emits every complete frame of `buf`; `Some` if the connection must stop reading.
async fn emit_frames(
    decoder: &mut Decoder,
    buf: &mut BytesMut,
    shared: &Shared,
    meta: &ConnMeta,
    activity: &Activity,
    stop: &mut Stop,
) -> Option<ReadEnd> {
    loop {
        let frame = match decoder.decode(buf) {
            Ok(Some(frame)) => frame,
            Ok(None) => return None,
            Err(Refused::Oversized { len }) => {
                tracing::warn!(
                    len,
                    max_frame = shared.settings.max_frame,
                    "Closing a connection that sent a frame over max_frame."
                );
                shared.emitter.stats().add_dropped("oversized_frame", 1);
                return Some(ReadEnd::Closed("oversized_frame"));
            }
            Err(Refused::BadHeader) => {
                tracing::warn!("Closing a connection that sent a length header that is not one.");
                shared.emitter.stats().add_dropped("bad_length_header", 1);
                return Some(ReadEnd::Closed("bad_length_header"));
            }
        };
        // The gear's own frames (a reply to its echo) and frames it refuses end here.
        let Some(msg) = shared
            .hooks
            .inbound(meta.message(frame, shared.now_nanos()))
        else {
            activity.touch();
            continue;
        };
        activity.emitting.store(true, Ordering::Relaxed);
        let sent = tokio::select! {
            biased;
            () = stop.wait() => None,
            sent = shared.emitter.emit(shared.out, msg) => Some(sent),
        };
        activity.emitting.store(false, Ordering::Relaxed);
        activity.touch();
        match sent {
            None => {
                // Read from the peer but never emitted: this frame and every whole frame
                // still in the buffer.
                let lost = 1 + count_frames(decoder, buf);
                shared.emitter.stats().add_dropped("shutdown", lost);
                tracing::debug!(lost, "Dropped frames read but not emitted at drain.");
                return Some(ReadEnd::Stopped);
            }
            Some(Err(_)) => return Some(ReadEnd::Closed("engine_closed")),
            Some(Ok(())) => {}
        }
    }
}

/// Decodes and discards every complete frame of `buf`; returns how many there were.
fn count_frames(decoder: &mut Decoder, buf: &mut BytesMut) -> u64 {
    let mut n = 0;
    while let Ok(Some(_)) = decoder.decode(buf) {
        n += 1;
    }
    n
}

async fn write_loop(
    mut wr: impl AsyncWrite + Unpin,
    codec: &Codec,
    queue: &SendQueue,
    wbuf: &mut WriteBuf,
    activity: &Activity,
    mut stop: Stop,
) -> &'static str {
    let mut batch = Vec::new();
    loop {
        if wbuf.is_done() {
            if wbuf.bytes.capacity() > SHRINK_ABOVE {
                // One large frame must not keep its buffer for the connection's lifetime.
                wbuf.bytes = Vec::new();
            }
            wbuf.bytes.clear();
            wbuf.ends.clear();
            wbuf.written = 0;
            // Read the signal before the queue: whatever was queued before the drain began is
            // then seen by `take`, and flushed.
            let stopping = stop.is_set();
            queue.take(&mut batch, WRITE_BATCH);
            for payload in batch.drain(..) {
                // `process` refused payloads that do not fit, so this always encodes.
                if codec.encode(&payload, &mut wbuf.bytes) {
                    wbuf.ends.push(wbuf.bytes.len());
                }
            }
            if wbuf.is_done() {
                if stopping {
                    let _ = wr.shutdown().await;
                    return "drained";
                }
                tokio::select! {
                    () = queue.wake.notified() => {}
                    () = stop.wait() => {}
                }
                continue;
            }
        }
        match wr.write(&wbuf.bytes[wbuf.written..]).await {
            Ok(0) => return "write_error",
            Ok(n) => {
                wbuf.written += n;
                activity.touch();
                // TLS keeps records in its buffer until flushed (a no-op in clear).
                if wbuf.is_done()
                    && let Err(e) = wr.flush().await
                {
                    tracing::debug!(error = %e, "Flush failed.");
                    return "write_error";
                }
            }
            Err(e) => {
                tracing::debug!(error = %e, "Write failed.");
                return "write_error";
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use bytes::Buf;

    /// Review finding 1: connection ids carry the process's random high half, so a
    /// `conn.id` stored by an earlier process does not name a connection of this one.
    #[test]
    fn connection_ids_carry_a_per_process_high_half() {
        let (a, b) = (super::next_conn_id(), super::next_conn_id());
        assert_ne!(a >> 32, 0, "the high half is set");
        assert_eq!(a >> 32, b >> 32, "one high half per process");
        assert_ne!(a, b);
        assert_eq!(super::parse_conn_id(&super::format_conn_id(a)), Some(a));
    }

    use super::{Budget, ReadBuf, Settings, Spent};

    fn settings(config: serde_json::Value) -> Settings {
        let config = serde_json::from_value(config).expect("a valid config");
        crate::io_tcp::settings_of(config).expect("valid settings")
    }

    /// Lets `n` bytes arrive the way reads do: each into the room `make_room` left.
    fn arrive(buf: &mut ReadBuf<'_>, mut n: usize) -> Result<(), Spent> {
        while n > 0 {
            buf.make_room()?;
            let room = buf.bytes.capacity() - buf.bytes.len();
            assert!(room > 0, "make_room leaves room");
            let step = room.min(n);
            buf.bytes.extend(std::iter::repeat_n(0, step));
            // Never more than twice what arrived (plus a read's minimum) is allocated.
            assert!(buf.bytes.capacity() <= (2 * (buf.bytes.len() + super::MIN_READ)).max(8192));
            n -= step;
        }
        Ok(())
    }

    #[test]
    fn a_read_buffer_is_charged_beyond_its_first_chunk_and_never_past_one_frame() {
        let settings = settings(serde_json::json!({
            "mode": "server",
            "framing": "length_prefix4",
            "max_frame": 65536,
        }));
        let budget = Budget::new(1 << 20);
        let mut buf = ReadBuf::new(&settings, &budget);
        arrive(&mut buf, 4).expect("room");
        assert_eq!(budget.used(), 0, "a prefix alone is free");
        arrive(&mut buf, 40_000).expect("room");
        assert_eq!((buf.bytes.capacity(), budget.used()), (65536, 65536 - 8192));
        // A whole frame of the largest size: the buffer stops at prefix + max_frame.
        arrive(&mut buf, 65540 - 40_004).expect("room");
        assert_eq!(buf.bytes.capacity(), 65540);
        assert_eq!(budget.used(), 65540 - 8192);
        buf.bytes.advance(65540);
        buf.settle();
        assert_eq!((buf.bytes.capacity(), budget.used()), (8192, 0));
        arrive(&mut buf, 20_000).expect("room");
        assert_eq!(budget.used(), 32768 - 8192);
        drop(buf);
        assert_eq!(budget.used(), 0, "dropped with its connection");
    }

    #[test]
    fn bytes_left_behind_a_frame_move_to_a_buffer_of_their_size() {
        let settings = settings(serde_json::json!({ "mode": "server" }));
        let budget = Budget::new(1 << 20);
        let mut buf = ReadBuf::new(&settings, &budget);
        arrive(&mut buf, 20_000).expect("room");
        assert_eq!(budget.used(), 32768 - 8192);
        // A frame of 19,900 bytes is taken; 100 bytes of the next one stay.
        buf.bytes.advance(19_900);
        buf.settle();
        assert_eq!((buf.bytes.capacity(), budget.used()), (8192, 0));
        assert_eq!(buf.bytes.len(), 100);
        // Mid-frame, a buffer never shrinks.
        arrive(&mut buf, 20_000).expect("room");
        buf.settle();
        assert_eq!((buf.bytes.capacity(), budget.used()), (32768, 32768 - 8192));
        // Frames taken from the front leave room there: the bytes left move to a buffer
        // of their size before the next read.
        buf.bytes.advance(20_000 - 2000);
        buf.settle();
        assert_eq!((buf.bytes.capacity(), budget.used()), (8192, 0));
        arrive(&mut buf, 7000).expect("room");
        assert_eq!(buf.bytes.len(), 9100);
        assert_eq!((buf.bytes.capacity(), budget.used()), (16384, 16384 - 8192));
    }

    #[test]
    fn a_buffer_the_budget_cannot_hold_is_refused_and_nothing_taken() {
        let settings = settings(serde_json::json!({
            "mode": "server",
            "max_frame": 65536,
            "partial_frame_budget": 65536,
        }));
        let budget = Budget::new(settings.partial_frame_budget);
        let mut first = ReadBuf::new(&settings, &budget);
        let mut second = ReadBuf::new(&settings, &budget);
        arrive(&mut first, 40_000).expect("room");
        let held = budget.used();
        // 56 KiB taken: the second grows to 16 KiB (8 KiB charged), not to 32 KiB.
        match arrive(&mut second, 40_000) {
            Err(Spent { wanted }) => assert_eq!(wanted, 32768),
            Ok(()) => panic!("two 40,000-byte frames fit a 64 KiB budget"),
        }
        assert_eq!(second.bytes.capacity(), 16384, "second keeps what it had");
        assert_eq!(budget.used(), held + (16384 - 8192));
        drop(second);
        assert_eq!(budget.used(), held);
    }
}
