//! The daemon: creates the bucket, keeps an index of expiry times from a watch on it, and
//! sweeps what expired into timeout events.
//!
//! A sweep works on up to [`WINDOW`] expired entries at once (each read, deleted, published),
//! on at most [`SWEEP_MAX`] per sweep (when more are due, the next sweep starts at once, unless
//! the bucket failed), and applies the changes the watch has after every [`CHUNK`] entries, so
//! that a mass expiry neither falls behind the bucket's round trips nor lets the watch overflow
//! and lose changes.

use std::collections::{BTreeSet, HashMap};
use std::future::Future;
use std::pin::pin;
use std::sync::Arc;
use std::time::Duration;

use fluxmsg::FluxMsg;
use sdk::{Clock, Context, Emitter, GearError, IdSource, OutPort, Stats};
use snake::{Kv, KvConfig, KvEntry, KvOperation, KvWatch, Message, Snake, Storage, Subject};
use tokio::task::JoinSet;
use tracing::Instrument;

use super::bucket::{self, Bucket};
use super::worker::describe;
use super::{Settings, StorageKind, TIMEOUT_EVENT_TYPE, TIMEOUT_SUBJECT_PREFIX, entry};

/// Every this many sweeps the index is rebuilt from the bucket, in case the watch missed a
/// change (a watcher that falls far behind loses changes).
const RESYNC_EVERY: u64 = 60;

/// The most changes applied from the watch before a sweep.
const DRAIN_MAX: usize = 100_000;

/// The most expired entries one sweep takes on.
pub(crate) const SWEEP_MAX: usize = 4_096;

/// How many expired entries a sweep works on at once.
pub(crate) const WINDOW: usize = 64;

/// After this many entries the sweep applies the watch's changes (a memory bucket's watcher
/// keeps 4,096 unread changes: the sweep's own deletes count).
const CHUNK: usize = 256;

/// The metadata key of a timeout event's type.
pub(crate) const EVENT_TYPE_META: &str = "event.type";
/// The metadata key of a timeout event's entry key.
pub(crate) const KEY_META: &str = "timeout.key";
/// The metadata key of a timeout event's bucket.
pub(crate) const BUCKET_META: &str = "timeout.bucket";
/// The metadata key of when the entry expired (Unix nanoseconds).
pub(crate) const EXPIRED_AT_META: &str = "timeout.expired_at";

/// Creates the bucket (or checks that it exists with this configuration).
pub(crate) async fn create_bucket(snake: &Snake, settings: &Settings) -> Result<Kv, GearError> {
    let failed = |detail: String| GearError::new("bucket_create_failed").with_detail(detail);
    let cfg = KvConfig::new(&settings.bucket)
        .map_err(|e| failed(e.to_string()))?
        .storage(match settings.storage {
            StorageKind::File => Storage::File,
            StorageKind::Memory => Storage::Memory,
        })
        .replicas(usize::from(settings.replicas));
    snake.kv(cfg).await.map_err(|e| match e {
        snake::Error::StreamConflict(_) => failed(format!(
            "bucket `{}` exists with another storage or replica count: is another daemon configured differently?",
            settings.bucket
        )),
        e => failed(describe(&e)),
    })
}

/// Spawns the sweeper.
pub(crate) fn start(
    ctx: &mut Context,
    snake: Snake,
    kv: Kv,
    settings: Arc<Settings>,
    out: OutPort,
) -> Result<(), GearError> {
    let subject = Subject::parse(&format!("{TIMEOUT_SUBJECT_PREFIX}.{}", settings.bucket))
        .map_err(|e| GearError::new("bad_subject").with_detail(e))?;
    let emitter = ctx.emitter();
    let sweeper = Sweeper {
        shared: Arc::new(Shared {
            ops: bucket::ops(&settings.bucket, kv.clone()),
            snake,
            settings,
            subject,
            ids: ctx.ids(),
            stats: Arc::clone(emitter.stats()),
        }),
        kv,
        clock: ctx.clock(),
        emitter,
        out,
        index: Index::default(),
    };
    let shutdown = ctx.shutdown().fired_owned();
    ctx.spawn(sweeper.run(shutdown));
    Ok(())
}

/// Expiry times by key, and keys by expiry time.
#[derive(Debug, Default)]
pub(crate) struct Index {
    by_key: HashMap<String, u64>,
    by_time: BTreeSet<(u64, String)>,
}

impl Index {
    /// Records that `key` expires at `expires` (Unix nanoseconds).
    pub(crate) fn put(&mut self, key: String, expires: u64) {
        if let Some(old) = self.by_key.insert(key.clone(), expires) {
            self.by_time.remove(&(old, key.clone()));
        }
        self.by_time.insert((expires, key));
    }

    pub(crate) fn remove(&mut self, key: &str) {
        if let Some(expires) = self.by_key.remove(key) {
            self.by_time.remove(&(expires, key.to_owned()));
        }
    }

    /// Takes out up to `max` keys that expire at `now` or before: `(key, expires)`, soonest
    /// first.
    pub(crate) fn due(&mut self, now: u64, max: usize) -> Vec<(String, u64)> {
        let mut due = Vec::new();
        while due.len() < max
            && let Some((expires, _)) = self.by_time.first()
            && *expires <= now
        {
            let Some((expires, key)) = self.by_time.pop_first() else {
                break;
            };
            self.by_key.remove(&key);
            due.push((key, expires));
        }
        due
    }

    /// Whether a key expires at `now` or before.
    pub(crate) fn has_due(&self, now: u64) -> bool {
        self.by_time
            .first()
            .is_some_and(|(expires, _)| *expires <= now)
    }

    fn apply(&mut self, e: KvEntry) {
        match e.operation {
            KvOperation::Put => match entry::expiry(&e.value) {
                Ok(expires) => self.put(e.key, entry::nanos(expires)),
                Err(error) => tracing::warn!(
                    reason = error.reason(),
                    "A parked entry is unreadable; the sweep leaves it."
                ),
            },
            _ => self.remove(&e.key),
        }
    }
}

struct Sweeper {
    shared: Arc<Shared>,
    /// For the watch.
    kv: Kv,
    clock: Arc<dyn Clock>,
    emitter: Emitter,
    out: OutPort,
    index: Index,
}

/// What the tasks that take expired entries out share.
struct Shared {
    ops: Arc<dyn Bucket>,
    snake: Snake,
    settings: Arc<Settings>,
    subject: Subject,
    ids: Arc<dyn IdSource>,
    stats: Arc<Stats>,
}

/// How a sweep ended.
enum Sweep {
    /// Every due entry was looked at.
    Done,
    /// It stopped at [`SWEEP_MAX`] entries, all without a failure of the bucket; more are
    /// due.
    More,
    /// The engine is gone.
    Gone,
}

/// What became of one expired entry.
enum Swept {
    /// Taken out of the bucket: its timeout event, published already.
    Event(Box<FluxMsg>),
    /// Stored again with a later expiry: due at this time.
    Again(String, u64),
    /// The bucket failed: due again (at this time) at the next sweep.
    Failed(String, u64),
    /// Restored meanwhile, or unreadable.
    Nothing,
}

impl Sweeper {
    async fn run(mut self, shutdown: impl Future<Output = ()>) {
        let mut shutdown = pin!(shutdown);
        let mut tick = tokio::time::interval(self.shared.settings.sweep_interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut watch = self.watch().await;
        let mut sweeps: u64 = 0;
        loop {
            tokio::select! {
                e = next(&mut watch), if watch.is_some() => match e {
                    Some(e) => self.index.apply(e),
                    None => {
                        tracing::warn!(bucket = %self.shared.settings.bucket, "The watch on the bucket ended; it starts again at the next sweep.");
                        watch = None;
                    }
                },
                _ = tick.tick() => {
                    sweeps += 1;
                    if watch.is_none() || sweeps.is_multiple_of(RESYNC_EVERY) {
                        // A new watch lists every live entry again before the changes.
                        if let Some(w) = self.watch().await {
                            watch = Some(w);
                        }
                    }
                    // Changes that arrived meanwhile first, so that the sweep sees them.
                    if let Some(w) = watch.as_mut() {
                        drain_ready(w, &mut self.index).await;
                    }
                    match self.sweep(&mut watch).await {
                        Sweep::Done => {}
                        // The rest at once, once shutdown and the watch had their turn.
                        Sweep::More => tick.reset_immediately(),
                        Sweep::Gone => break,
                    }
                }
                () = &mut shutdown => break,
            }
        }
    }

    async fn watch(&self) -> Option<KvWatch> {
        match self.kv.watch(">").await {
            Ok(w) => Some(w),
            Err(e) => {
                tracing::warn!(bucket = %self.shared.settings.bucket, error = %describe(&e), "Cannot watch the bucket; trying again at the next sweep.");
                None
            }
        }
    }

    /// Takes up to [`SWEEP_MAX`] expired entries out of the bucket, [`WINDOW`] at once, and
    /// sends their timeout events; applies the watch's changes every [`CHUNK`] entries.
    async fn sweep(&mut self, watch: &mut Option<KvWatch>) -> Sweep {
        let now = self.clock.now();
        let due = self.index.due(entry::nanos(now), SWEEP_MAX);
        let full = due.len() == SWEEP_MAX;
        let mut due = due.into_iter();
        let mut running = JoinSet::new();
        let (mut finished, mut failed): (usize, usize) = (0, 0);
        loop {
            while running.len() < WINDOW
                && let Some((key, expires)) = due.next()
            {
                let shared = Arc::clone(&self.shared);
                running.spawn(shared.take(key, expires, now).in_current_span());
            }
            let Some(done) = running.join_next().await else {
                break;
            };
            match done {
                Ok(Swept::Event(event)) => {
                    if self.emitter.emit(self.out, *event).await.is_err() {
                        self.emitter.stats().add_dropped("shutdown", 1);
                        return Sweep::Gone;
                    }
                }
                Ok(Swept::Again(key, expires)) => self.index.put(key, expires),
                Ok(Swept::Failed(key, expires)) => {
                    failed += 1;
                    self.index.put(key, expires);
                }
                Ok(Swept::Nothing) => {}
                Err(e) => {
                    tracing::warn!(bucket = %self.shared.settings.bucket, error = %e, "A sweep task ended early.");
                }
            }
            finished += 1;
            if finished.is_multiple_of(CHUNK)
                && let Some(w) = watch.as_mut()
            {
                drain_ready(w, &mut self.index).await;
            }
        }
        // A failing bucket waits for the next tick: hurrying would only hammer it.
        if full && failed == 0 && self.index.has_due(entry::nanos(now)) {
            Sweep::More
        } else {
            Sweep::Done
        }
    }
}

impl Shared {
    /// Takes the expired entry under `key` out of the bucket and publishes its timeout event.
    async fn take(self: Arc<Self>, key: String, expires: u64, now: Duration) -> Swept {
        let bucket = &self.settings.bucket;
        let found = match self.ops.get(&key).await {
            Ok(Some(found)) => found,
            // Restored meanwhile.
            Ok(None) => return Swept::Nothing,
            Err(e) => {
                tracing::warn!(bucket = %bucket, error = %describe(&e), "Cannot read an expired entry; the next sweep tries again.");
                return Swept::Failed(key, expires);
            }
        };
        let Ok((expires_at, parked)) = entry::decode(&self.settings.codec, &found.value) else {
            tracing::warn!(bucket = %bucket, "An expired entry is unreadable; the sweep leaves it.");
            return Swept::Nothing;
        };
        if expires_at > now {
            // Stored again with a later expiry.
            return Swept::Again(key, entry::nanos(expires_at));
        }
        match self.ops.delete_if(&key, found.revision).await {
            Ok(_) => {}
            // Restored or stored again meanwhile: the watch tells which.
            Err(snake::Error::WrongRevision { .. }) => return Swept::Nothing,
            Err(e) => {
                tracing::warn!(bucket = %bucket, error = %describe(&e), "Cannot remove an expired entry; the next sweep tries again.");
                return Swept::Failed(key, expires);
            }
        }
        let event = self.event(parked, key, expires_at, now);
        self.publish(&event).await;
        Swept::Event(Box::new(event))
    }

    fn event(&self, parked: FluxMsg, key: String, expired_at: Duration, now: Duration) -> FluxMsg {
        let mut event = parked;
        event.id = self.ids.next_id().ok();
        event.ts = sdk::unix_nanos(now);
        event
            .meta
            .insert(EVENT_TYPE_META, TIMEOUT_EVENT_TYPE.into());
        event.meta.insert(KEY_META, key.into());
        event
            .meta
            .insert(BUCKET_META, self.settings.bucket.as_str().into());
        event
            .meta
            .insert(EXPIRED_AT_META, entry::nanos(expired_at).to_string().into());
        event
    }

    /// Publishes `event` on `flux.event.timeout.<bucket>`; a failure is counted, the event
    /// still goes on `out`.
    async fn publish(&self, event: &FluxMsg) {
        let payload = match self.settings.codec.encode_to_vec(event) {
            Ok(p) => p,
            Err(e) => {
                tracing::warn!(bucket = %self.settings.bucket, error = %e, "Cannot encode a timeout event for the bus.");
                self.stats.add_dropped("event_publish_failed", 1);
                return;
            }
        };
        if let Err(e) = self
            .snake
            .publish(Message::new(self.subject.clone(), payload))
            .await
        {
            tracing::warn!(bucket = %self.settings.bucket, error = %e, "Cannot publish a timeout event on the bus.");
            self.stats.add_dropped("event_publish_failed", 1);
        }
    }
}

async fn next(watch: &mut Option<KvWatch>) -> Option<KvEntry> {
    match watch.as_mut() {
        Some(w) => w.next().await,
        None => None,
    }
}

/// Applies the changes the watch has at hand now (up to a bound, so that a busy bucket
/// cannot hold the sweep back), without waiting for more.
async fn drain_ready(watch: &mut KvWatch, index: &mut Index) {
    for _ in 0..DRAIN_MAX {
        // A zero timeout polls the watch once: what is ready comes, nothing is waited for.
        match tokio::time::timeout(Duration::ZERO, watch.next()).await {
            Ok(Some(e)) => index.apply(e),
            Ok(None) | Err(_) => break,
        }
    }
}
