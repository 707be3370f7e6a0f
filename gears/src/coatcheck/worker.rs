//! Store and restore: the task that talks to the bucket, at most `max_in_flight` messages at
//! once, each under `store_timeout`.
//!
//! The timeout never leaves a change behind that the message's outcome contradicts: a restore
//! that has asked for its entry's removal waits for the answer (the snake client bounds that
//! wait with its own request timeout), since the entry may be gone already; a store that timed
//! out waits for its write in the background and takes back what landed, since its message
//! went to `error`. A background store (`await_store: false`) waits for its write's answer
//! past `store_timeout`: its message has gone on, and a write that lands late is not lost.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use fluxmsg::FluxMsg;
use sdk::{Clock, Context, Emitter, GearError, OutPort, Outcome};
use snake::Snake;
use tokio::sync::{OnceCell, mpsc};
use tokio::time::{Instant, timeout_at};
use tracing::Instrument;

use super::bucket::{self, Bucket};
use super::{MISSING_REASON, MergeStrategy, OnMissing, Settings, entry};

/// How many times a restore reads an entry again when it changed between its read and its
/// delete (stored again meanwhile).
const CLAIM_ATTEMPTS: usize = 3;

/// One message's business with the bucket.
// A job waits in a channel slot; boxing the large variants would cost an allocation per
// message.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
pub(crate) enum Job {
    /// Park `value` under `key`, then send `msg` on (`parked`: what was taken out of it).
    Store {
        msg: FluxMsg,
        key: String,
        value: Bytes,
        parked: FluxMsg,
    },
    /// Park `value` under `key`; the message has gone on already.
    Background { key: String, value: Bytes },
    /// Take the entry under `key` and merge it into `msg`.
    Restore { msg: FluxMsg, key: String },
}

/// What every job shares.
struct Shared {
    snake: Snake,
    settings: Arc<Settings>,
    /// Opened on first use, and again after a failure (the daemon may come later).
    kv: OnceCell<Arc<dyn Bucket>>,
    clock: Arc<dyn Clock>,
    emitter: Emitter,
    out: OutPort,
}

/// Spawns the worker; returns the queue `process` feeds.
pub(crate) fn start(
    ctx: &mut Context,
    snake: Snake,
    settings: Arc<Settings>,
    out: OutPort,
) -> mpsc::Sender<Job> {
    let (tx, rx) = mpsc::channel(settings.max_in_flight);
    let shared = Arc::new(Shared {
        snake,
        settings,
        kv: OnceCell::new(),
        clock: ctx.clock(),
        emitter: ctx.emitter(),
        out,
    });
    let span = ctx.span().clone();
    let shutdown = ctx.shutdown().fired_owned();
    let stats = Arc::clone(shared.emitter.stats());
    let max = shared.settings.max_in_flight;
    // Up to `max_in_flight` jobs at once; on shutdown what is queued still runs.
    ctx.spawn(crate::queue::run_bounded(
        rx,
        stats,
        max,
        shutdown,
        move |job| run(Arc::clone(&shared), job).instrument(span.clone()),
    ));
    tx
}

/// Queues a job without waiting. When the queue is full or closed, the message is put back as
/// it came (its parked fields included) for `error`.
pub(crate) fn enqueue(
    jobs: Option<&mpsc::Sender<Job>>,
    settings: &Settings,
    job: Job,
    msg: &mut FluxMsg,
) -> Result<Outcome, GearError> {
    let (back, error) = match jobs {
        None => (
            job,
            GearError::new("not_running")
                .with_detail("the gear is not running (not started yet, or draining)"),
        ),
        Some(jobs) => match jobs.try_send(job) {
            Ok(()) => return Ok(Outcome::Consumed),
            Err(mpsc::error::TrySendError::Full(job)) => (
                job,
                GearError::new("overloaded").with_detail(format_args!(
                    "{} messages already wait for the bucket",
                    settings.max_in_flight
                )),
            ),
            Err(mpsc::error::TrySendError::Closed(job)) => (
                job,
                GearError::new("draining").with_detail("the gear is shutting down"),
            ),
        },
    };
    match back {
        Job::Store {
            msg: mut m, parked, ..
        } => {
            unpark(&mut m, parked, settings);
            *msg = m;
        }
        Job::Restore { msg: m, .. } => *msg = m,
        Job::Background { .. } => {}
    }
    Err(error)
}

/// Puts fields taken out of a message back, for a message that goes to `error`.
pub(crate) fn unpark(msg: &mut FluxMsg, parked: FluxMsg, settings: &Settings) {
    if !settings.include_values {
        entry::merge(msg, parked, MergeStrategy::Overwrite);
    }
}

async fn run(shared: Arc<Shared>, job: Job) {
    let settings = &shared.settings;
    let wait = settings.timeout;
    let deadline = Instant::now() + wait;
    match job {
        Job::Store {
            mut msg,
            key,
            value,
            parked,
        } => {
            let kv = match shared
                .bucket("store_failed", "store_timeout", deadline)
                .await
            {
                Ok(kv) => kv,
                Err(e) => {
                    unpark(&mut msg, parked, settings);
                    return shared.error(msg, &e).await;
                }
            };
            let mut put = kv.put(&key, value);
            match timeout_at(deadline, &mut put).await {
                Ok(Ok(_)) => shared.emit(msg).await,
                Ok(Err(e)) => {
                    unpark(&mut msg, parked, settings);
                    shared.error(msg, &store_failed(&e)).await;
                }
                Err(_) => {
                    unpark(&mut msg, parked, settings);
                    shared.error(msg, &late("store_timeout", wait)).await;
                    // The write may land yet: an entry left behind would become a timeout
                    // event for a message that went to `error`.
                    if let Ok(revision) = put.await {
                        shared.take_back(kv.as_ref(), &key, revision).await;
                    }
                }
            }
        }
        Job::Background { key, value } => {
            // The message has gone on: a write that lands late is still what it needs, so
            // the bucket's answer decides, however late it comes.
            let put = async {
                let kv = shared
                    .bucket("store_failed", "store_timeout", deadline)
                    .await?;
                kv.put(&key, value)
                    .await
                    .map(|_| ())
                    .map_err(|e| store_failed(&e))
            };
            let Err(failure) = put.await else {
                return;
            };
            tracing::warn!(
                bucket = %settings.bucket,
                reason = failure.reason(),
                detail = failure.detail().unwrap_or_default(),
                "A background store failed; its parked fields are lost."
            );
            shared.emitter.stats().add_dropped("store_failed", 1);
        }
        Job::Restore { mut msg, key } => match shared.claim(&key, deadline).await {
            Ok(Some(parked)) => {
                entry::merge(&mut msg, parked, settings.merge);
                shared.emit(msg).await;
            }
            Ok(None) => match settings.on_missing {
                OnMissing::Error => {
                    let e = GearError::new(MISSING_REASON).with_detail(format_args!(
                        "no parked entry for this key in bucket `{}` (never stored, already restored, or expired)",
                        settings.bucket
                    ));
                    shared.error(msg, &e).await;
                }
                OnMissing::Drop => shared.emitter.stats().add_dropped(MISSING_REASON, 1),
                OnMissing::Forward => shared.emit(msg).await,
            },
            Err(e) => shared.error(msg, &e).await,
        },
    }
}

fn store_failed(e: &snake::Error) -> GearError {
    GearError::new("store_failed").with_detail(describe(e))
}

fn late(reason: &'static str, wait: Duration) -> GearError {
    GearError::new(reason).with_detail(format_args!("the bucket did not answer within {wait:?}"))
}

impl Shared {
    /// The bucket, opened once, by `deadline`; `failed` is the reason of any failure but a
    /// missing bucket, `late_reason` that of a bucket that does not answer in time.
    async fn bucket(
        &self,
        failed: &'static str,
        late_reason: &'static str,
        deadline: Instant,
    ) -> Result<Arc<dyn Bucket>, GearError> {
        let open = self.kv.get_or_try_init(|| async {
            let kv = self.snake.kv_open(&self.settings.bucket).await?;
            Ok::<_, snake::Error>(bucket::ops(&self.settings.bucket, kv))
        });
        match timeout_at(deadline, open).await {
            Ok(Ok(kv)) => Ok(Arc::clone(kv)),
            Ok(Err(snake::Error::BucketNotFound(b))) => Err(GearError::new("bucket_not_found")
                .with_detail(format_args!(
                    "bucket `{b}` not found: the coatcheck gear in daemon mode creates it, and none has"
                ))),
            Ok(Err(e)) => Err(GearError::new(failed).with_detail(describe(&e))),
            Err(_) => Err(late(late_reason, self.settings.timeout)),
        }
    }

    /// Takes the live entry under `key` out of the bucket: `None` when there is none, it has
    /// expired (the daemon's to sweep), or someone else took it first. Reading the entry waits
    /// until `deadline` at most; removing it is waited for, however long the bucket takes to
    /// answer, since once asked for the removal may land.
    async fn claim(&self, key: &str, deadline: Instant) -> Result<Option<FluxMsg>, GearError> {
        let kv = self
            .bucket("restore_failed", "restore_timeout", deadline)
            .await?;
        let failed = |e: &snake::Error| GearError::new("restore_failed").with_detail(describe(e));
        for _ in 0..CLAIM_ATTEMPTS {
            let found = timeout_at(deadline, kv.get(key))
                .await
                .map_err(|_| late("restore_timeout", self.settings.timeout))?;
            let Some(found) = found.map_err(|e| failed(&e))? else {
                return Ok(None);
            };
            let (expires, parked) = entry::decode(&self.settings.codec, &found.value)?;
            if expires <= self.clock.now() {
                return Ok(None);
            }
            match kv.delete_if(key, found.revision).await {
                Ok(_) => return Ok(Some(parked)),
                // Stored again, restored or swept meanwhile: look again.
                Err(snake::Error::WrongRevision { .. }) => {}
                Err(e) => return Err(failed(&e)),
            }
        }
        Ok(None)
    }

    /// Deletes what a store that timed out wrote (`revision`), unless it changed since.
    async fn take_back(&self, kv: &dyn Bucket, key: &str, revision: u64) {
        match kv.delete_if(key, revision).await {
            Ok(_) => tracing::debug!(
                bucket = %self.settings.bucket,
                "A store that timed out landed late; its entry is taken back."
            ),
            // Stored again (a retransmission), restored or swept since: not ours to delete.
            Err(snake::Error::WrongRevision { .. }) => {}
            Err(e) => {
                tracing::warn!(
                    bucket = %self.settings.bucket,
                    error = %describe(&e),
                    "A store that timed out landed late and cannot be taken back; it will time out."
                );
            }
        }
    }

    async fn emit(&self, msg: FluxMsg) {
        if self.emitter.emit(self.out, msg).await.is_err() {
            self.emitter.stats().add_dropped("shutdown", 1);
        }
    }

    async fn error(&self, msg: FluxMsg, error: &GearError) {
        if self.emitter.error(msg, error).await.is_err() {
            self.emitter.stats().add_dropped("shutdown", 1);
        }
    }
}

/// A snake error as text without the key (it may be made of card data).
pub(crate) fn describe(e: &snake::Error) -> String {
    match e {
        snake::Error::KeyExists { bucket, .. } => format!("an entry exists in bucket `{bucket}`"),
        snake::Error::WrongRevision { bucket, .. } => {
            format!("the entry in bucket `{bucket}` changed meanwhile")
        }
        snake::Error::InvalidKey(_) => "the key is not a valid KV key".to_owned(),
        e => e.to_string(),
    }
}
