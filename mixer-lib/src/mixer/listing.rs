//! The rack listing: every rack as listings show it, read from the store at most about once
//! a second however often it is asked for, and at once after this mixer changed a rack.
//!
//! A fleet of 10,000 racks is a few megabytes of rows: reading and decoding them on every
//! `GET /api/v1/racks` costs a fifth of a second of CPU, so a hundred clients polling it
//! would keep the mixer busy with nothing else. The listing is shared instead, as
//! Kubernetes' API server serves lists from its watch cache:
//!
//! - a listing older than [`MAX_AGE`] is still answered, and one task reads the next in the
//!   background (heartbeats' `last_seen`, health and applied hash reach the store in
//!   batches once a second anyway, see `seen.rs`); one older than [`MAX_STALE`] (nobody
//!   asked for a while) is read again before it is answered;
//! - a listing taken before an operator changed a rack through this mixer (an approval, a
//!   suspension, an activation, a removal) is never answered: the caller waits for a new
//!   one, so that what an operator just did shows at once;
//! - what racks change themselves (a hello, heartbeats, going offline) and another mixer's
//!   changes on a shared store show within [`MAX_AGE`] and a read. A mass event (a
//!   thousand racks going offline at once) thus costs the listing nothing more.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use super::{Inner, Mixer};
use crate::MixerError;
use crate::store::RackRecord;

/// How old a listing may be before it is read again (in the background).
pub const MAX_AGE: Duration = Duration::from_secs(1);

/// How old a listing may be and still be answered while the next is read: an older one (no
/// one asked for a while) is read again before anyone gets it.
pub const MAX_STALE: Duration = Duration::from_secs(3);

/// Every rack by name, as [`Store::rack_list`](crate::store::Store::rack_list) reads them
/// (no secret hash, no stats) with what heartbeats changed since the store's last batch:
/// see [`Mixer::rack_listing`].
#[derive(Debug)]
pub struct RackListing {
    racks: Vec<RackRecord>,
    taken: Instant,
    /// The mixer's count of operators' changes when it was read.
    writes: u64,
}

impl RackListing {
    /// Every rack, sorted by name.
    pub fn racks(&self) -> &[RackRecord] {
        &self.racks
    }

    /// The racks whose names sort after `name`, in order: where a page that ended at `name`
    /// goes on.
    pub fn after(&self, name: &str) -> &[RackRecord] {
        let start = self.racks.partition_point(|r| r.name.as_str() <= name);
        &self.racks[start..]
    }

    /// When it was read.
    pub fn taken(&self) -> Instant {
        self.taken
    }

    /// How many operators' changes the mixer had made when it was read: a listing with a
    /// higher count has changes this one lacks.
    pub fn writes(&self) -> u64 {
        self.writes
    }
}

/// The listing a mixer shares, and what decides whether it is still good.
#[derive(Debug, Default)]
pub(super) struct Cache {
    current: Mutex<Option<Arc<RackListing>>>,
    /// Counts the operators' changes to racks through this mixer.
    writes: AtomicU64,
    /// Held while a listing is read, so that callers who must wait share one read.
    reading: tokio::sync::Mutex<()>,
    /// Set while a background read runs.
    refreshing: AtomicBool,
}

impl Cache {
    /// Called after an operator's change to a rack (approval, suspension, activation,
    /// removal), which the next listing must show.
    pub(super) fn wrote(&self) {
        self.writes.fetch_add(1, Ordering::AcqRel);
    }

    fn current(&self) -> Option<Arc<RackListing>> {
        self.current
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Keeps `listing` unless a newer one is there already.
    fn keep(&self, listing: &Arc<RackListing>) {
        let mut current = self.current.lock().unwrap_or_else(PoisonError::into_inner);
        if current
            .as_ref()
            .is_none_or(|c| (c.writes, c.taken) < (listing.writes, listing.taken))
        {
            *current = Some(Arc::clone(listing));
        }
    }
}

impl Inner {
    /// Reads a new listing and keeps it.
    async fn read_listing(&self) -> Result<Arc<RackListing>, MixerError> {
        let writes = self.listing.writes.load(Ordering::Acquire);
        let taken = Instant::now();
        let mut racks = self.store.rack_list().await?;
        for rack in &mut racks {
            self.overlay(rack);
        }
        // By bytes, whatever the database's collation: pages are found by binary search.
        racks.sort_unstable_by(|a, b| a.name.cmp(&b.name));
        let listing = Arc::new(RackListing {
            racks,
            taken,
            writes,
        });
        self.listing.keep(&listing);
        Ok(listing)
    }
}

impl Mixer {
    /// Every rack as listings show it (no secret hash, no stats), sorted by name: what
    /// `GET /api/v1/racks` pages through.
    ///
    /// It is shared and read again at most about once a second: a listing older than
    /// [`MAX_AGE`] (but not [`MAX_STALE`]) is returned while a background task reads the
    /// next, so the racks'
    /// `last_seen` and health may be that much older than [`Mixer::racks`]' (which reads the
    /// store every time), and so may what racks changed themselves (a new rack, a rack gone
    /// offline). A change made through this mixer's [`Mixer::approve`], [`Mixer::suspend`],
    /// [`Mixer::resume`] or [`Mixer::remove`] is always in it.
    ///
    /// # Errors
    ///
    /// The store's.
    pub async fn rack_listing(&self) -> Result<Arc<RackListing>, MixerError> {
        let cache = &self.inner.listing;
        if let Some(listing) = cache.current()
            && listing.writes == cache.writes.load(Ordering::Acquire)
        {
            let age = listing.taken.elapsed();
            if age < MAX_AGE {
                return Ok(listing);
            }
            if age < MAX_STALE {
                if !cache.refreshing.swap(true, Ordering::AcqRel) {
                    let inner = Arc::clone(&self.inner);
                    tokio::spawn(async move {
                        if let Err(error) = inner.read_listing().await {
                            tracing::warn!(%error, "Could not read the rack listing again.");
                        }
                        inner.listing.refreshing.store(false, Ordering::Release);
                    });
                }
                return Ok(listing);
            }
        }
        let _reading = cache.reading.lock().await;
        // Someone who held the lock before may have read one that is good.
        if let Some(listing) = cache.current()
            && listing.writes == cache.writes.load(Ordering::Acquire)
            && listing.taken.elapsed() < MAX_AGE
        {
            return Ok(listing);
        }
        self.inner.read_listing().await
    }
}
