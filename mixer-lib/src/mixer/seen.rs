//! What heartbeats change, kept in memory and written in batches; and the batched writes of
//! convergence rows.
//!
//! # Durability of what heartbeats change
//!
//! A heartbeat changes its rack's `last_seen`, health, stats and applied hash. Written one by
//! one, 1,000 heartbeats a second are 1,000 transactions a second, all queued on the store's
//! one writer; so the mixer keeps these values here and writes them all every
//! [`FLUSH_INTERVAL`] in one transaction ([`Store::put_seen`](crate::store::Store::put_seen)).
//! What changes a rack's status or its lease (admission, a rack back from `offline`, a new
//! lease, a renewal, `offline`) is still written at once, with the whole record.
//!
//! So a mixer that stops or crashes loses at most the last interval of `last_seen`, health and
//! stats (and of applied hashes, which the next heartbeat reports again): after a restart a
//! rack looks up to one interval older, far inside the window after which the sweep calls it
//! `offline` (three heartbeat intervals by default). [`Mixer::flush`] writes them at once,
//! before a planned stop. This mixer's own reads ([`Mixer::racks`], [`Mixer::rack`], the
//! sweep, every read-modify-write of a record) lay the values not yet written over the
//! store's; other mixers sharing the store see them after the next batch.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};

use super::{Inner, Mixer};
use crate::MixerError;
use crate::store::{Convergence, RackRecord, Seen, StoreError};

/// How often what heartbeats changed is written.
pub(super) const FLUSH_INTERVAL: Duration = Duration::from_secs(1);

/// Convergence rows written in one transaction at most.
const CONVERGENCE_BATCH: usize = 256;

/// What heartbeats changed that the store does not have yet, by rack name, each with the
/// generation of its last change (so that a batch written meanwhile does not remove a newer
/// change).
#[derive(Debug, Default)]
pub(super) struct Unflushed {
    map: Mutex<HashMap<String, (Seen, u64)>>,
    generation: AtomicU64,
}

impl Unflushed {
    fn map(&self) -> std::sync::MutexGuard<'_, HashMap<String, (Seen, u64)>> {
        self.map.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Mixer {
    /// Writes what heartbeats changed since the last batch (`last_seen`, health, stats and
    /// applied hashes, which the mixer writes once a second) to the store now.
    ///
    /// # Errors
    ///
    /// The store's; what was not written is kept for the next batch.
    pub async fn flush(&self) -> Result<(), MixerError> {
        self.inner.flush_seen().await.map(|_| ())
    }
}

impl Inner {
    /// Lays what `rack`'s heartbeats changed and the store does not have yet over its record.
    pub(super) fn overlay(&self, rack: &mut RackRecord) {
        if let Some((seen, _)) = self.seen.map().get(&rack.name)
            && seen.id == rack.id
        {
            seen.apply_to(rack);
        }
    }

    /// Keeps `rack`'s `last_seen`, health, stats and applied hash for the next batch.
    pub(super) fn keep_seen(&self, rack: &RackRecord) {
        let seen = Seen {
            id: rack.id.clone(),
            last_seen: rack.last_seen,
            applied_hash: rack.applied_hash.clone(),
            health: rack.health.clone(),
            stats: rack.stats.clone(),
        };
        let generation = self.seen.generation.fetch_add(1, Ordering::Relaxed);
        self.seen
            .map()
            .insert(rack.name.clone(), (seen, generation));
    }

    /// Drops what a removed rack's heartbeats changed.
    pub(super) fn forget_seen(&self, name: &str) {
        self.seen.map().remove(name);
    }

    /// Writes what heartbeats changed, in one batch; how many racks it wrote.
    pub(super) async fn flush_seen(&self) -> Result<usize, MixerError> {
        let (names, batch): (Vec<(String, u64)>, Vec<Seen>) = self
            .seen
            .map()
            .iter()
            .map(|(name, (seen, generation))| ((name.clone(), *generation), seen.clone()))
            .unzip();
        if batch.is_empty() {
            return Ok(0);
        }
        self.store.put_seen(&batch).await?;
        let mut map = self.seen.map();
        for (name, generation) in names {
            if map.get(&name).is_some_and(|(_, g)| *g == generation) {
                map.remove(&name);
            }
        }
        Ok(batch.len())
    }

    /// Writes what heartbeats changed every [`FLUSH_INTERVAL`].
    pub(super) async fn flusher(self: Arc<Self>) {
        let mut ticker = tokio::time::interval(FLUSH_INTERVAL);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticker.tick().await;
            if let Err(e) = self.flush_seen().await {
                tracing::warn!(
                    error = &e as &dyn std::error::Error,
                    "Could not write what heartbeats changed; it is kept for the next batch."
                );
            }
        }
    }

    /// Records a convergence row: written with the rows other tasks record meanwhile, in one
    /// transaction; returns once it is stored.
    pub(super) async fn put_convergence(&self, row: Convergence) -> Result<(), MixerError> {
        let (done, stored) = oneshot::channel();
        let closed = || MixerError::Store(StoreError::Backend("the mixer is stopped".into()));
        self.convergence
            .queue
            .send((row, done))
            .await
            .map_err(|_| closed())?;
        match stored.await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(MixerError::Store(StoreError::Backend(Box::new(Shared(e))))),
            Err(_) => Err(closed()),
        }
    }

    /// Writes the queued convergence rows, as many at once as are waiting.
    pub(super) async fn write_convergence(self: Arc<Self>, mut queue: mpsc::Receiver<Queued>) {
        let mut batch: Vec<Queued> = Vec::new();
        while queue.recv_many(&mut batch, CONVERGENCE_BATCH).await > 0 {
            let (rows, done): (Vec<Convergence>, Vec<_>) = batch.drain(..).unzip();
            let result = self.store.put_convergences(&rows).await.map_err(Arc::new);
            for done in done {
                // The caller may have gone (its task was aborted): nobody to tell.
                let _ = done.send(result.clone());
            }
        }
    }
}

/// A queued convergence row and whom to tell when it is stored.
pub(super) type Queued = (Convergence, oneshot::Sender<Result<(), Arc<StoreError>>>);

/// The queue of the batched convergence writes.
#[derive(Debug)]
pub(super) struct ConvergenceWriter {
    queue: mpsc::Sender<Queued>,
}

impl ConvergenceWriter {
    /// The writer's end, and the receiving end for [`Inner::write_convergence`].
    pub(super) fn new() -> (ConvergenceWriter, mpsc::Receiver<Queued>) {
        let (queue, rx) = mpsc::channel(4 * CONVERGENCE_BATCH);
        (ConvergenceWriter { queue }, rx)
    }
}

/// A store failure that several callers share: it reads as its cause, so that a chain shows
/// "the database failed" once.
#[derive(Debug)]
struct Shared(Arc<StoreError>);

impl std::fmt::Display for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match std::error::Error::source(&*self.0) {
            Some(cause) => std::fmt::Display::fmt(cause, f),
            None => std::fmt::Display::fmt(&self.0, f),
        }
    }
}

impl std::error::Error for Shared {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        std::error::Error::source(&*self.0).and_then(std::error::Error::source)
    }
}
