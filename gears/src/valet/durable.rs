//! [`DurableValet`]: the memory valet, written behind to a snake KV bucket.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use fluxmsg::bytes::Bytes;
use fluxmsg::{Codec, FluxMsg, Map, Text, Value};
use snake::{Kv, KvConfig, KvOperation, Snake};
use tokio::sync::Notify;

use super::memory::MemoryValet;
use super::{Clock, Lookup, ReturnContext, Ticket, Valet, ValetError, ValetSettings};
use crate::base64url::encode_into as encode_key;

/// How long opening a durable valet waits for the bucket to hand over its tickets.
const SYNC_TIMEOUT: Duration = Duration::from_secs(30);
/// How many KV writes the writer keeps in flight at once.
const WRITE_WINDOW: usize = 64;
/// How long the writer keeps trying to write what is left once the gear stops.
pub const FINAL_FLUSH: Duration = Duration::from_secs(5);

/// Why a [`DurableValet`] could not be opened.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DurableError {
    /// The snake KV bucket failed.
    #[error("the ticket bucket {bucket:?} failed: {source}")]
    Kv {
        /// The bucket.
        bucket: String,
        /// The cause.
        #[source]
        source: snake::Error,
    },
    /// The bucket did not hand over its tickets in time.
    #[error(
        "the ticket bucket {bucket:?} did not hand over its tickets within {0:?}",
        SYNC_TIMEOUT
    )]
    Sync {
        /// The bucket.
        bucket: String,
    },
}

/// The durable valet: a [`MemoryValet`] whose every change is also written to a snake KV
/// bucket, so that open tickets and retained replies survive a rack restart (the reference
/// loses them).
///
/// Each key is stored under `<gear>.t.<key in URL-safe base64>` as a small CBOR map: an open
/// ticket (the request with its return context and parked fields, the port, the deadline,
/// the attached requesters) or a retained reply (and when it is forgotten). `<gear>` is the
/// name given to [`open`] made a key token (see the conductor's `valet.prefix`); a name
/// with other characters than letters, digits, `-` and `_` gets a digest of itself, so that
/// two names never share keys. A correlation key takes at most (256 − the length of
/// `<gear>.t.`) × 3/4 bytes: 183 for a conductor named `switch`. [`open`]
/// reads them back: open tickets stay open with their deadlines (those past theirs expire at
/// the next sweep, to `error` with `timeout`: none is lost silently), retained replies stay
/// retained.
///
/// Writes happen **behind** the hot path: each change marks its key dirty (a newer change
/// of the same key replaces an unwritten older one), and the [`ValetWriter`] task writes
/// the dirty keys, up to 64 at a time, retrying with backoff while the bucket fails. It
/// runs until the gear **stops** (not when it drains: a draining conductor still opens and
/// closes tickets), then writes what is left, retrying for up to [`FINAL_FLUSH`]; the
/// conductor's `stop` waits for that on a multi-threaded runtime (a rack's). While the
/// bucket is down, pending writes stay bounded: a ticket opened and closed meanwhile
/// leaves nothing to write (a delete of a key never stored cancels its put), and beyond
/// four times `max_tickets` pending keys (at least 1,024) further changes stay in memory
/// only, counted in `flux.conductor.valet.unwritten` with a warning. A graceful
/// restart keeps everything; a crash loses the changes of the last few milliseconds (what
/// was not written yet). One bucket may serve several conductors: keys are prefixed with
/// the gear's name.
///
/// Opening also writes the valet's mark to the key `<gear>.owner` and remembers the mark
/// it replaced ([`predecessor`](DurableValet::predecessor)): a conductor reloaded in the
/// same process takes over its predecessor's valet in memory when that one stops, rather
/// than the bucket as it read it while the predecessor still ran.
///
/// Each open ticket is stamped with the process that stored it. Read back by a later
/// process, its requesters are marked gone ([`Ticket::gone`]): their connections ended with
/// the earlier process, so the conductor does not send them a reply or a timeout with a
/// `conn.id` that may name another connection now.
///
/// [`open`]: DurableValet::open
#[derive(Debug)]
pub struct DurableValet {
    mem: MemoryValet,
    prefix: String,
    writes: Arc<Writes>,
    kv: Kv,
    bucket: String,
    codec: Codec,
    buf: Vec<u8>,
    forgotten: Vec<Arc<str>>,
    /// This valet's mark in the bucket's owner key.
    token: String,
    /// The owner key's value when this valet opened: the valet it follows.
    predecessor: Option<String>,
}

/// The keys changed and not yet written: the value to put, or `None` to delete.
#[derive(Debug, Default)]
struct Writes {
    /// Under one lock, so that a key taken to be written is never seen as "not stored" by a
    /// delete in between (which would drop the delete and leave the put in the bucket).
    pending: Mutex<Pending>,
    /// The most pending writes; a change of a new key beyond it is not stored.
    cap: usize,
    /// Changes not stored because `cap` pending writes waited.
    over: AtomicU64,
    notify: Notify,
    /// Held by a flush: two flushes never race on the same key.
    flushing: tokio::sync::Mutex<()>,
    /// Set when the gear stops: the writer writes what is left and ends.
    closed: std::sync::atomic::AtomicBool,
}

#[derive(Debug, Default)]
struct Pending {
    dirty: HashMap<String, Option<Bytes>>,
    /// The keys that may be in the bucket (read back, or put at least once, not deleted
    /// since): a delete of any other key has nothing to delete.
    stored: std::collections::HashSet<String>,
}

impl Writes {
    fn with_cap(cap: usize) -> Writes {
        Writes {
            cap,
            ..Writes::default()
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Pending> {
        self.pending.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Marks `key` to be put (`Some`) or deleted (`None`). A delete of a key never stored
    /// only drops its unwritten put: while the bucket is down, tickets opened and closed
    /// meanwhile leave nothing pending. A new key beyond `cap` pending writes is not
    /// stored (counted, and warned about once per overflow).
    fn mark(&self, key: String, value: Option<Bytes>) {
        let mut pending = self.lock();
        if value.is_none() && !pending.stored.contains(&key) {
            pending.dirty.remove(&key);
            return;
        }
        let dirty = &mut pending.dirty;
        if self.cap > 0 && dirty.len() >= self.cap && !dirty.contains_key(&key) {
            if self.over.fetch_add(1, Ordering::Relaxed) == 0 {
                tracing::warn!(
                    pending = dirty.len(),
                    "The ticket bucket is behind by its most pending writes; further changes stay in memory only until it catches up."
                );
            }
            metrics::counter!("flux.conductor.valet.unwritten").increment(1);
            return;
        }
        dirty.insert(key, value);
        drop(pending);
        self.notify.notify_one();
    }

    fn take(&self) -> HashMap<String, Option<Bytes>> {
        let mut pending = self.lock();
        let batch = std::mem::take(&mut pending.dirty);
        for (key, value) in &batch {
            if value.is_some() {
                // May land even if the put reports a failure: counted as stored.
                pending.stored.insert(key.clone());
            }
        }
        self.over.store(0, Ordering::Relaxed);
        batch
    }

    /// A delete landed: the key is no longer in the bucket.
    fn deleted(&self, key: &str) {
        self.lock().stored.remove(key);
    }

    /// A key read back from the bucket.
    fn found(&self, key: &str, present: bool) {
        let mut pending = self.lock();
        if present {
            pending.stored.insert(key.to_owned());
        } else {
            pending.stored.remove(key);
        }
    }

    fn pending(&self) -> usize {
        self.lock().dirty.len()
    }

    /// Puts back a write that failed, unless a newer change of the key came meanwhile.
    fn retry(&self, key: String, value: Option<Bytes>) {
        self.lock().dirty.entry(key).or_insert(value);
    }
}

/// The task that writes a [`DurableValet`]'s changes to its bucket (from
/// [`DurableValet::writer`]).
#[derive(Debug, Clone)]
pub struct ValetWriter {
    writes: Arc<Writes>,
    kv: Kv,
    bucket: String,
}

impl ValetWriter {
    /// Writes changes as they come until [`close`](ValetWriter::close) is called (when the
    /// gear stops, not when it drains: a draining conductor still changes tickets), then
    /// writes what is left, retrying for up to [`FINAL_FLUSH`].
    pub async fn run(self) {
        let mut backoff = sdk::Backoff::new(Duration::from_millis(50), Duration::from_secs(5));
        while !self.is_closed() {
            self.writes.notify.notified().await;
            while !self.is_closed() && !self.flush().await {
                let wait = backoff.next_wait();
                tokio::select! {
                    () = tokio::time::sleep(wait) => {}
                    () = self.writes.notify.notified() => {}
                }
            }
            backoff.reset();
        }
        let last = async {
            while !self.flush().await {
                tokio::time::sleep(backoff.next_wait()).await;
            }
        };
        if tokio::time::timeout(FINAL_FLUSH, last).await.is_err() {
            tracing::error!(
                bucket = %self.bucket,
                unwritten = self.writes.pending(),
                "The ticket bucket failed while the conductor stopped; tickets changed since the last write are not stored."
            );
        }
    }

    /// Lets a new [`run`](ValetWriter::run) write again after [`close`](ValetWriter::close)
    /// (a reloaded conductor taking over its predecessor's valet).
    pub fn reopen(&self) {
        self.writes
            .closed
            .store(false, std::sync::atomic::Ordering::Release);
    }

    /// Tells [`run`](ValetWriter::run) to write what is left and end.
    pub fn close(&self) {
        self.writes
            .closed
            .store(true, std::sync::atomic::Ordering::Release);
        self.writes.notify.notify_one();
    }

    fn is_closed(&self) -> bool {
        self.writes
            .closed
            .load(std::sync::atomic::Ordering::Acquire)
    }

    /// Writes every change made so far; `false` if a write failed (it stays pending).
    pub async fn flush(&self) -> bool {
        let _one_at_a_time = self.writes.flushing.lock().await;
        let batch = self.writes.take();
        if batch.is_empty() {
            return true;
        }
        let mut ok = true;
        let mut tasks = tokio::task::JoinSet::new();
        let mut batch = batch.into_iter();
        loop {
            while tasks.len() < WRITE_WINDOW {
                let Some((key, value)) = batch.next() else {
                    break;
                };
                let kv = self.kv.clone();
                tasks.spawn(async move {
                    let result = match &value {
                        Some(bytes) => kv.put(&key, bytes.clone()).await.map(|_| ()),
                        None => kv.delete(&key).await.map(|_| ()),
                    };
                    (key, value, result)
                });
            }
            let Some(joined) = tasks.join_next().await else {
                break;
            };
            match joined {
                Ok((key, None, Ok(()))) => self.writes.deleted(&key),
                Ok((_, Some(_), Ok(()))) => {}
                Ok((
                    _,
                    _,
                    Err(e @ (snake::Error::InvalidKey(_) | snake::Error::ValueTooLarge { .. })),
                )) => {
                    // Retrying cannot help: the ticket stays in memory only.
                    tracing::error!(bucket = %self.bucket, error = %e, "A ticket could not be stored; it is kept in memory only.");
                }
                Ok((key, value, Err(e))) => {
                    if ok {
                        tracing::warn!(bucket = %self.bucket, error = %e, "A ticket write failed; it is retried.");
                    }
                    ok = false;
                    self.writes.retry(key, value);
                }
                Err(e) => {
                    tracing::warn!(bucket = %self.bucket, error = %e, "A ticket write task failed.");
                    ok = false;
                }
            }
        }
        ok
    }
}

/// A value no earlier marker holds: the process, the system time, and a count of the
/// markers this process wrote.
fn nonce() -> String {
    static MARKERS: AtomicU64 = AtomicU64::new(0);
    let since_epoch = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    format!(
        "{}-{}-{}",
        std::process::id(),
        since_epoch.as_nanos(),
        MARKERS.fetch_add(1, Ordering::Relaxed)
    )
}

/// This process's instance: stamped on the tickets it stores, so that a ticket read back
/// by a later process is known to come from an earlier one.
fn instance() -> &'static str {
    static INSTANCE: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    INSTANCE.get_or_init(nonce)
}

/// A gear's name as a KV key token: letters, digits, `-` and `_` kept, up to 64 of them;
/// a name that needed changes (other characters become `_`, longer names are cut) gets
/// `-` and a digest of the whole name, so that `a.b` and `a_b` do not share keys.
fn key_prefix(gear: &str) -> String {
    let kept = |c: char| c.is_ascii_alphanumeric() || c == '-' || c == '_';
    let mut name: String = gear
        .chars()
        .take(64)
        .map(|c| if kept(c) { c } else { '_' })
        .collect();
    if name.is_empty() && gear.is_empty() {
        return "conductor".to_owned();
    }
    if name != gear {
        // FNV-1a: the same digest in every process and version.
        let digest = gear.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
            (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
        });
        name.push_str(&format!("-{:08x}", digest >> 32));
    }
    name
}

impl DurableValet {
    /// Opens the bucket `bucket` (created if needed) for the conductor `gear` and reads back
    /// the tickets and retained replies it holds. `gear` names the keys: give it the
    /// rack's name too (`east.switch`) when several racks share the bucket.
    ///
    /// # Errors
    ///
    /// [`DurableError`] when the bucket cannot be opened or read.
    pub async fn open(
        snake: &Snake,
        bucket: &str,
        gear: &str,
        settings: ValetSettings,
        clock: Arc<dyn Clock>,
    ) -> Result<DurableValet, DurableError> {
        let fail = |source| DurableError::Kv {
            bucket: bucket.to_owned(),
            source,
        };
        let kv = snake
            .kv(KvConfig::new(bucket).map_err(fail)?)
            .await
            .map_err(fail)?;
        let gear = key_prefix(gear);
        let mut valet = DurableValet {
            mem: MemoryValet::new(settings, Arc::clone(&clock)),
            prefix: format!("{gear}.t."),
            // Open tickets and retained replies, twice over (a put and a delete each).
            writes: Arc::new(Writes::with_cap(
                settings.max_tickets.saturating_mul(4).max(1024),
            )),
            kv: kv.clone(),
            bucket: bucket.to_owned(),
            codec: Codec::new(),
            buf: Vec::new(),
            forgotten: Vec::new(),
            token: String::new(),
            predecessor: None,
        };
        // Watch the gear's keys, then write a marker: every entry before the marker is the
        // stored state.
        let mut watch = kv.watch(&format!("{gear}.>")).await.map_err(fail)?;
        let marker = format!("{gear}.sync");
        let owner = format!("{gear}.owner");
        let nonce = nonce();
        let mut predecessor = None;
        kv.put(&marker, nonce.clone()).await.map_err(fail)?;
        let (mut open, mut retained, mut unreadable) = (0usize, 0usize, 0usize);
        let read = async {
            while let Some(entry) = watch.next().await {
                if entry.key == marker {
                    if entry.value.as_ref() == nonce.as_bytes() {
                        return true;
                    }
                    continue;
                }
                if entry.key == owner {
                    predecessor = (entry.operation != KvOperation::Delete)
                        .then(|| String::from_utf8_lossy(&entry.value).into_owned());
                    continue;
                }
                let Some(key) = entry
                    .key
                    .strip_prefix(valet.prefix.as_str())
                    .and_then(decode_key)
                else {
                    continue;
                };
                if entry.operation == KvOperation::Delete {
                    valet.mem.remove(&key);
                    valet.writes.found(&entry.key, false);
                    continue;
                }
                match valet.decode(&entry.value) {
                    Some(Record::Open(ticket)) => {
                        valet.mem.restore_open(&key, ticket);
                        valet.writes.found(&entry.key, true);
                        open += 1;
                    }
                    Some(Record::Closed(outcome, until)) => {
                        valet.mem.restore_closed(&key, outcome, until);
                        valet.writes.found(&entry.key, true);
                        retained += 1;
                    }
                    None => unreadable += 1,
                }
            }
            false
        };
        let synced = tokio::time::timeout(SYNC_TIMEOUT, read).await;
        if !matches!(synced, Ok(true)) {
            return Err(DurableError::Sync {
                bucket: bucket.to_owned(),
            });
        }
        if unreadable > 0 {
            tracing::warn!(bucket = %bucket, unreadable, "Stored tickets that could not be read were skipped.");
        }
        // The owner key names the latest valet opened on these keys: a conductor reloaded
        // in this process takes over its predecessor's tickets when that one stops.
        kv.put(&owner, nonce.clone()).await.map_err(fail)?;
        valet.token = nonce;
        valet.predecessor = predecessor;
        tracing::info!(bucket = %bucket, open, retained, "Read back the conductor's stored tickets.");
        // Tickets past their deadline stay open until the conductor's next sweep hands them
        // over (to `error`, `timeout`); retained replies past their time read as absent and
        // are forgotten (and deleted) at that sweep too.
        Ok(valet)
    }

    /// This valet's mark in the bucket (unique): the conductor deposits its valet under it
    /// when it stops, for the instance that follows it.
    pub fn token(&self) -> &str {
        &self.token
    }

    /// The mark of the valet that owned these keys when this one opened, if any.
    pub fn predecessor(&self) -> Option<&str> {
        self.predecessor.as_deref()
    }

    /// The task that writes this valet's changes; run it (`ValetWriter::run`) while the
    /// valet is in use.
    pub fn writer(&self) -> ValetWriter {
        ValetWriter {
            writes: Arc::clone(&self.writes),
            kv: self.kv.clone(),
            bucket: self.bucket.clone(),
        }
    }

    /// The longest correlation key whose KV key (prefix and base64) fits snake's 256 bytes.
    fn max_key_len(&self) -> usize {
        256usize.saturating_sub(self.prefix.len()) / 4 * 3
    }

    fn kv_key(&self, key: &str) -> String {
        let mut out = self.prefix.clone();
        encode_key(key.as_bytes(), &mut out);
        out
    }

    fn persist_open(&mut self, key: &str) {
        let Some(ticket) = self.mem.open_ticket(key) else {
            return;
        };
        let mut map = Map::with_capacity(7);
        map.insert("s", Value::from("open"));
        map.insert("i", Value::from(instance()));
        if let Some(gone) = ticket.gone {
            map.insert("g", Value::from(i64::try_from(gone).unwrap_or(i64::MAX)));
        }
        map.insert("d", Value::from(sdk::unix_nanos(ticket.deadline)));
        map.insert("p", Value::from(ticket.port.clone()));
        self.buf.clear();
        if self.codec.encode(&ticket.request, &mut self.buf).is_err() {
            tracing::warn!(bucket = %self.bucket, "A ticket's request could not be encoded; it is kept in memory only.");
            return;
        }
        map.insert("r", Value::Bytes(Bytes::copy_from_slice(&self.buf)));
        let attached = ticket
            .attached
            .iter()
            .map(|ctx| {
                Value::Array(
                    ctx.iter()
                        .flat_map(|(k, v)| [Value::from(k.clone()), Value::from(v.clone())])
                        .collect(),
                )
            })
            .collect();
        map.insert("a", Value::Array(attached));
        self.write(key, &Value::Map(map));
    }

    fn persist_closed(&mut self, key: &str) {
        let Some((outcome, until)) = self.mem.lookup_closed(key) else {
            let k = self.kv_key(key);
            self.writes.mark(k, None);
            return;
        };
        self.buf.clear();
        if self.codec.encode(outcome, &mut self.buf).is_err() {
            tracing::warn!(bucket = %self.bucket, "A reply could not be encoded; it is retained in memory only.");
            let k = self.kv_key(key);
            self.writes.mark(k, None);
            return;
        }
        let mut map = Map::with_capacity(3);
        map.insert("s", Value::from("closed"));
        map.insert("u", Value::from(sdk::unix_nanos(until)));
        map.insert("o", Value::Bytes(Bytes::copy_from_slice(&self.buf)));
        self.write(key, &Value::Map(map));
    }

    fn write(&mut self, key: &str, record: &Value) {
        self.buf.clear();
        if self.codec.encode_value(record, &mut self.buf).is_err() {
            tracing::warn!(bucket = %self.bucket, "A ticket record could not be encoded.");
            return;
        }
        let value = Bytes::copy_from_slice(&self.buf);
        let k = self.kv_key(key);
        self.writes.mark(k, Some(value));
    }

    fn delete(&self, key: &str) {
        self.writes.mark(self.kv_key(key), None);
    }

    fn delete_forgotten(&mut self, scratch: &mut Vec<Arc<str>>) {
        std::mem::swap(scratch, &mut self.forgotten);
        for key in scratch.drain(..) {
            self.delete(&key);
        }
    }

    fn decode(&self, bytes: &[u8]) -> Option<Record> {
        let value = self.codec.decode_value(bytes).ok()?;
        let map = value.as_map()?;
        match map.get("s")?.as_str()? {
            "open" => {
                let deadline = nanos(map.get("d")?)?;
                let port = Text::from(map.get("p")?.as_str()?);
                let request = self.codec.decode(map.get("r")?.as_bytes()?).ok()?;
                let mut attached = Vec::new();
                for ctx in map.get("a")?.as_array()? {
                    let items = ctx.as_array()?;
                    let pairs: Option<ReturnContext> = items
                        .chunks_exact(2)
                        .map(|kv| Some((Text::from(kv[0].as_str()?), Text::from(kv[1].as_str()?))))
                        .collect();
                    attached.push(pairs?);
                }
                // A ticket of an earlier process: its requesters' connections are gone.
                let gone = if map.get("i").and_then(Value::as_str) == Some(instance()) {
                    map.get("g")
                        .and_then(Value::as_i64)
                        .map(|n| usize::try_from(n).unwrap_or(0).min(attached.len()))
                } else {
                    Some(attached.len())
                };
                Some(Record::Open(Ticket {
                    request,
                    port,
                    deadline,
                    attached,
                    gone,
                }))
            }
            "closed" => {
                let until = nanos(map.get("u")?)?;
                let outcome = self.codec.decode(map.get("o")?.as_bytes()?).ok()?;
                Some(Record::Closed(outcome, until))
            }
            _ => None,
        }
    }
}

enum Record {
    Open(Ticket),
    Closed(FluxMsg, Duration),
}

fn nanos(value: &Value) -> Option<Duration> {
    value
        .as_i64()
        .map(|n| Duration::from_nanos(u64::try_from(n).unwrap_or(0)))
}

/// The inverse of [`encode_key`]; `None` for text that is not its output or not UTF-8.
fn decode_key(text: &str) -> Option<String> {
    String::from_utf8(crate::base64url::decode(text)?).ok()
}

impl Valet for DurableValet {
    fn lookup(&self, key: &str) -> Lookup<'_> {
        self.mem.lookup(key)
    }

    fn park(&mut self, key: &str, request: FluxMsg, port: Text) -> Result<&Ticket, ValetError> {
        let most = self.max_key_len();
        if key.len() > most {
            return Err(ValetError::KeyTooLong(most));
        }
        self.mem.park(key, request, port)?;
        self.persist_open(key);
        self.mem.open_ticket(key).ok_or(ValetError::AlreadyOpen)
    }

    fn attach(&mut self, key: &str, requester: ReturnContext) -> bool {
        if !self.mem.attach(key, requester) {
            return false;
        }
        self.persist_open(key);
        true
    }

    fn redeem(&mut self, key: &str, outcome: FluxMsg) -> Option<Ticket> {
        let mut forgotten = std::mem::take(&mut self.forgotten);
        let ticket = self.mem.redeem_into(key, outcome, &mut forgotten);
        self.forgotten = forgotten;
        if ticket.is_some() {
            self.persist_closed(key);
        }
        let mut scratch = Vec::new();
        self.delete_forgotten(&mut scratch);
        ticket
    }

    fn release(&mut self, key: &str) -> Option<Ticket> {
        let ticket = self.mem.release(key)?;
        self.delete(key);
        Some(ticket)
    }

    fn expire(&mut self, due: &mut Vec<(Arc<str>, Ticket)>) {
        let start = due.len();
        let mut forgotten = std::mem::take(&mut self.forgotten);
        self.mem.expire_into(due, &mut forgotten);
        self.forgotten = forgotten;
        for (key, _) in &due[start..] {
            self.delete(key);
        }
        let mut scratch = Vec::new();
        self.delete_forgotten(&mut scratch);
    }

    fn next_deadline(&self) -> Option<Duration> {
        self.mem.next_deadline()
    }

    fn open_tickets(&self) -> usize {
        self.mem.open_tickets()
    }

    fn retained(&self) -> usize {
        self.mem.retained()
    }

    fn for_each_open(&self, f: &mut dyn FnMut(&Ticket)) {
        self.mem.for_each_open(f);
    }

    fn release_all(&mut self, due: &mut Vec<(Arc<str>, Ticket)>) {
        let start = due.len();
        self.mem.release_all(due);
        for (key, _) in &due[start..] {
            self.delete(key);
        }
    }

    fn set_settings(&mut self, settings: ValetSettings) {
        self.mem.set_settings(settings);
    }
}

#[cfg(test)]
mod tests {
    use super::{decode_key, encode_key};

    #[test]
    fn keys_round_trip_through_base64() {
        for key in [
            "",
            "a",
            "ab",
            "abc",
            "abcd",
            "010\u{1f}000123\u{1f}TERM0001",
            "é✓",
        ] {
            let mut text = String::new();
            encode_key(key.as_bytes(), &mut text);
            assert!(
                text.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
            );
            assert_eq!(decode_key(&text).as_deref(), Some(key));
        }
    }
}
