//! End-to-end acknowledgement of guaranteed inputs, as Vector's finalizers do it.
//!
//! A message taken from a guaranteed lane gets a [`Finalizer`] that owns its lane delivery.
//! Everything derived from it inside the rack (the batch it is processed in, each copy sent to
//! each target of each port) carries a [`Share`] of that finalizer. A share ends in one of
//! two ways: [`Share::settle`] (the path ended: a gear consumed or dropped it on purpose, a
//! tap read it, a guaranteed lane's publish was acked by the server), or dropped unsettled
//! (a queue discarded it, a send failed, the rack stopped). When the last share of a
//! finalizer is gone, the delivery is acked if every share settled and nak'ed otherwise, so
//! that the lane delivers it again.
//!
//! Messages that never touched a guaranteed lane carry no share: an empty `Vec`, no
//! allocation.
//!
//! One delivery may be a pack of several messages (see [`fluxmsg::pack`]): they all hold
//! shares of the one finalizer, and the delivery is acked or nak'ed as a whole.
//!
//! A message that a gear failed, sent to an `error` port that leads nowhere, poisons the
//! finalizer of the input with the same message id ([`poison`]): that input is terminated with
//! the gear's reason instead, which keeps it in the dead-letter stream rather than delivering
//! it again until its deliveries run out. In a pack, only the failed messages are
//! dead-lettered, each on its own, and the pack is acked if the rest settled.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

/// How long a nak'ed delivery waits before the lane delivers it again.
const NAK_DELAY: Duration = Duration::from_secs(1);

/// The deliveries of one lane whose verdict is still to come: while they wait in the rack,
/// the lane's acker tells the server they are in progress, so that a message queued longer
/// than `ack_wait` is not delivered a second time meanwhile.
pub(crate) type Outstanding = Arc<Mutex<Registry>>;

/// Weak references to a lane's finalizers. A finished finalizer's allocation lives on while a
/// weak reference points at it, so the list is pruned whenever it has doubled since the last
/// pruning, as well as at every progress report.
#[derive(Debug, Default)]
pub(crate) struct Registry {
    list: Vec<Weak<Finalizer>>,
    /// The length at which the list is pruned next.
    prune_at: usize,
}

impl Registry {
    fn push(&mut self, finalizer: Weak<Finalizer>) {
        self.list.push(finalizer);
        if self.list.len() >= self.prune_at {
            self.prune();
        }
    }

    fn prune(&mut self) {
        self.list.retain(|f| f.strong_count() > 0);
        self.prune_at = (self.list.len() * 2).max(1024);
    }
}

/// What becomes of a guaranteed delivery once every share of it is gone.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// Every share settled: acked.
    Ack,
    /// A share was lost or failed: delivered again later.
    Nak,
    /// A gear failed it for good: terminated with this reason, which dead-letters it.
    Term(String),
    /// Parts of a pack failed for good (each with its index and reason): those are
    /// dead-lettered, each on its own, and the delivery is acked.
    DeadLetterParts(Vec<(usize, String)>),
}

/// The ids of the messages of one delivery: what a failed message is matched against (see
/// [`poison`]).
#[derive(Debug)]
pub(crate) enum Ids {
    /// A single message.
    One(Option<fluxmsg::Id>),
    /// A pack, in order.
    Pack(Box<[Option<fluxmsg::Id>]>),
}

/// A delivery taken from a lane, registered by [`Finalizer::shares`].
pub(crate) struct Taken {
    pub(crate) delivery: snake::Delivery,
    pub(crate) ids: Ids,
    /// Parts of a pack that failed already (could not be decoded), with their reasons.
    pub(crate) broken: Vec<(usize, String)>,
}

/// Where verdicts go: the lane's acker task.
pub(crate) type Verdicts = mpsc::UnboundedSender<(snake::Delivery, Verdict)>;

/// The acknowledgement owed for one guaranteed delivery.
#[derive(Debug)]
pub(crate) struct Finalizer {
    delivery: Option<snake::Delivery>,
    /// The delivered messages' ids: what a failed message on an unwired `error` port is
    /// matched against (see [`poison`]).
    ids: Ids,
    failed: AtomicBool,
    /// The messages failed for good, by index in the delivery, with their reasons.
    poisoned: Mutex<Vec<(usize, String)>>,
    acker: Verdicts,
}

impl Finalizer {
    /// The first share of the acknowledgement of each delivery of `taken`, in order,
    /// registered with the lane's `outstanding` under one lock; `acker` carries the verdicts
    /// to the task that acks and naks.
    pub(crate) fn shares(
        taken: impl IntoIterator<Item = Taken>,
        acker: &Verdicts,
        outstanding: &Outstanding,
    ) -> Vec<Share> {
        let shares: Vec<Share> = taken
            .into_iter()
            .map(|taken| Share {
                finalizer: Arc::new(Finalizer {
                    delivery: Some(taken.delivery),
                    ids: taken.ids,
                    failed: AtomicBool::new(false),
                    poisoned: Mutex::new(taken.broken),
                    acker: acker.clone(),
                }),
                settled: false,
            })
            .collect();
        let mut registry = outstanding.lock().unwrap_or_else(PoisonError::into_inner);
        for share in &shares {
            registry.push(Arc::downgrade(&share.finalizer));
        }
        shares
    }
}

impl Drop for Finalizer {
    fn drop(&mut self) {
        if let Some(delivery) = self.delivery.take() {
            let mut poisoned = std::mem::take(
                self.poisoned
                    .get_mut()
                    .unwrap_or_else(PoisonError::into_inner),
            );
            let failed = self.failed.load(Ordering::Acquire);
            let verdict = match (&self.ids, poisoned.is_empty()) {
                (Ids::One(_), false) => Verdict::Term(poisoned.swap_remove(0).1),
                // The rest of the pack comes back; so do its failed parts, to fail again.
                (Ids::Pack(_), false) if failed => Verdict::Nak,
                (Ids::Pack(_), false) => {
                    poisoned.sort_unstable_by_key(|(i, _)| *i);
                    Verdict::DeadLetterParts(poisoned)
                }
                (_, true) if failed => Verdict::Nak,
                (_, true) => Verdict::Ack,
            };
            // A closed acker means the rack was aborted: the lane redelivers after ack_wait.
            let _ = self.acker.send((delivery, verdict));
        }
    }
}

/// One holder's part of a [`Finalizer`]. Dropping it unsettled fails the acknowledgement.
#[derive(Debug)]
pub(crate) struct Share {
    finalizer: Arc<Finalizer>,
    settled: bool,
}

impl Share {
    /// This holder's part ended well.
    pub(crate) fn settle(mut self) {
        self.settled = true;
    }

    /// Whether the last of `held` is a share of the same acknowledgement as `share`.
    pub(crate) fn same(held: &[Share], share: &Share) -> bool {
        held.last()
            .is_some_and(|last| Arc::ptr_eq(&last.finalizer, &share.finalizer))
    }
}

impl Clone for Share {
    fn clone(&self) -> Share {
        Share {
            finalizer: Arc::clone(&self.finalizer),
            settled: false,
        }
    }
}

impl Drop for Share {
    fn drop(&mut self) {
        if !self.settled {
            self.finalizer.failed.store(true, Ordering::Release);
        }
    }
}

/// Settles every share of `shares`.
pub(crate) fn settle_all(shares: &mut Vec<Share>) {
    for share in shares.drain(..) {
        share.settle();
    }
}

/// Fails the acknowledgement of every input `shares` derive from (a send of something derived
/// from them failed).
pub(crate) fn fail_all(shares: &[Share]) {
    for share in shares {
        share.finalizer.failed.store(true, Ordering::Release);
    }
}

/// Poisons, for each message of `failed` (what gear `gear` sent to an `error` port that leads
/// nowhere), the finalizer among `shares` of the input with the same message id, with the
/// reason the gear marked on it: that input will be terminated, and so dead-lettered, rather
/// than acked as if handled. Returns how many messages found their input.
pub(crate) fn poison(gear: &str, failed: &[fluxmsg::FluxMsg], shares: &[Share]) -> u64 {
    let mut found = 0;
    for msg in failed {
        let Some(id) = msg.id else { continue };
        let meta = |key| msg.meta.get(key).map_or("", |t: &fluxmsg::Text| t.as_str());
        let reason = || match meta(sdk::ERROR_DETAIL) {
            "" => format!("{gear}: {}", meta(sdk::ERROR_REASON)),
            detail => format!("{gear}: {}: {detail}", meta(sdk::ERROR_REASON)),
        };
        // The first message with this id not failed yet, in the first delivery holding one.
        let hit = shares.iter().find_map(|share| {
            let f = &share.finalizer;
            let mut poisoned = f.poisoned.lock().unwrap_or_else(PoisonError::into_inner);
            let index = match &f.ids {
                Ids::One(one) => (*one == Some(id) && poisoned.is_empty()).then_some(0),
                Ids::Pack(ids) => ids.iter().enumerate().position(|(i, one)| {
                    *one == Some(id) && !poisoned.iter().any(|(p, _)| *p == i)
                }),
            }?;
            poisoned.push((index, reason()));
            Some(())
        });
        if hit.is_some() {
            found += 1;
        }
    }
    found
}

/// Verdicts the acker takes from its queue at once.
const VERDICTS: usize = 256;

/// The task that acks (every share settled) or naks (one was lost or failed) the deliveries
/// of one guaranteed lane, and every `progress` tells the server that those still in the rack
/// are in progress. It ends when the lane's subscriber and every finalizer are gone, flushes
/// `snake` so that its last verdicts reach the server, and drops `ended` then (however it
/// ends), so that its receiver knows.
pub(crate) fn spawn_acker(
    snake: snake::Snake,
    durable: String,
    outstanding: Outstanding,
    progress: Duration,
    ended: oneshot::Sender<()>,
) -> (Verdicts, JoinHandle<()>) {
    let (acker, mut verdicts) = mpsc::unbounded_channel::<(snake::Delivery, Verdict)>();
    let task = tokio::spawn(async move {
        let _ended = ended;
        let mut ticker = tokio::time::interval(progress);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        ticker.tick().await;
        let mut burst = Vec::with_capacity(VERDICTS);
        loop {
            tokio::select! {
                n = verdicts.recv_many(&mut burst, VERDICTS) => {
                    if n == 0 {
                        break;
                    }
                    for (delivery, verdict) in burst.drain(..) {
                        let result = match verdict {
                            Verdict::Ack => delivery.ack().await,
                            Verdict::Nak => delivery.nak(NAK_DELAY).await,
                            Verdict::Term(reason) => delivery.term(&reason).await,
                            Verdict::DeadLetterParts(failed) => dead_letter_parts(delivery, failed).await,
                        };
                        if let Err(e) = result {
                            tracing::warn!(durable, error = %e, "Ack failed; the message will be delivered again.");
                        }
                    }
                }
                _ = ticker.tick() => keep_alive(&outstanding, &durable).await,
            }
        }
        // A clean stop: the last acks are on their way before the rack is gone.
        match snake.flush().await {
            // Closed by its owner: nothing more can be sent.
            Ok(()) | Err(snake::Error::Closed) => {}
            Err(e) => {
                tracing::warn!(durable, error = %e, "Could not flush the last acks; their messages may be delivered again.");
            }
        }
    });
    (acker, task)
}

/// Dead-letters the `failed` parts of a pack, each with its reason, and acks the rest.
async fn dead_letter_parts(
    delivery: snake::Delivery,
    failed: Vec<(usize, String)>,
) -> Result<(), snake::Error> {
    match fluxmsg::pack::parts(&delivery.message.payload) {
        Ok(parts) => {
            let letters = failed
                .into_iter()
                .filter_map(|(i, reason)| Some((i, parts.get(i)?.clone(), reason)))
                .collect();
            delivery.dead_letter_parts(letters).await
        }
        // It was read as a pack when it was taken; should that change, all of it is kept.
        Err(e) => delivery.term(&format!("undecodable pack: {e}")).await,
    }
}

/// Tells the server that every delivery of the lane still in the rack is in progress.
async fn keep_alive(outstanding: &Outstanding, durable: &str) {
    let live: Vec<Arc<Finalizer>> = {
        let mut registry = outstanding.lock().unwrap_or_else(PoisonError::into_inner);
        registry.prune();
        registry.list.iter().filter_map(Weak::upgrade).collect()
    };
    for finalizer in live {
        if let Some(delivery) = &finalizer.delivery
            && let Err(e) = delivery.in_progress().await
        {
            tracing::warn!(durable, error = %e, "A progress report failed; the message may be delivered again.");
        }
    }
}
