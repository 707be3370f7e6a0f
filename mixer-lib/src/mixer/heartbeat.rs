//! Heartbeats (leases, passports, commands, the push-lag re-push), the bounded queue they
//! wait in, and the liveness sweep.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use fluxmsg::system::{Heartbeat, HeartbeatReply, Payload};
use snake::{Message, Subject, Subscription};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::Inner;
use crate::MixerError;
use crate::secret;
use crate::store::{RackRecord, RackStatus};

/// Heartbeats waiting for a handler; one more is dropped (`heartbeat_overloaded`).
const QUEUE: usize = 4_096;
/// Heartbeats handled at once.
const HANDLERS: usize = 32;
/// A heartbeat that waited longer is dropped unanswered (`heartbeat_stale`): an agent waits
/// 2 s for its reply by default, so the answer would go to nobody, and handling it would only
/// make the fresher heartbeats behind it late too. The rack tries again at its next beat, and
/// only three missed intervals make it `offline`.
const STALE: Duration = Duration::from_secs(2);

/// How long heartbeats trust the active scenario's hash as last read: in a steady fleet,
/// most heartbeats then read nothing but their rack.
const ACTIVE_FRESH: Duration = Duration::from_secs(1);

/// Hands the heartbeats of `sub` to [`HANDLERS`] tasks through a queue of [`QUEUE`], dropping
/// (and counting) those that find it full or that waited past [`STALE`]. Aborting the task
/// returned ends the handlers too, once each has finished its heartbeat.
pub(super) fn spawn_heartbeats(inner: Arc<Inner>, mut sub: Subscription) -> JoinHandle<()> {
    let (queue, rx) = mpsc::channel::<(Instant, Message)>(QUEUE);
    let rx = Arc::new(tokio::sync::Mutex::new(rx));
    for _ in 0..HANDLERS {
        let (inner, rx) = (Arc::clone(&inner), Arc::clone(&rx));
        tokio::spawn(async move {
            loop {
                let Some((at, msg)) = rx.lock().await.recv().await else {
                    return;
                };
                if at.elapsed() > STALE {
                    inner.counters.add("heartbeat_stale");
                    continue;
                }
                Arc::clone(&inner).on_heartbeat(msg).await;
            }
        });
    }
    tokio::spawn(async move {
        while let Some(msg) = sub.next().await {
            if queue.try_send((Instant::now(), msg)).is_err() {
                inner.counters.add("heartbeat_overloaded");
            }
        }
        // `stop` aborts this task first: the transport ended the subscription.
        tracing::error!(
            subject = %Subject::heartbeat(),
            "The mixer stopped answering on a subject: its subscription ended."
        );
    })
}

impl Inner {
    pub(super) async fn on_heartbeat(self: Arc<Self>, msg: Message) {
        match self.heartbeat(&msg).await {
            Ok(Some((reply, machine_id))) => {
                // A refused heartbeat is answered on its reply subject only: the mixer does
                // not sign a `denied` onto the subject of a machine id a stranger names.
                let Some(to) = msg
                    .reply
                    .clone()
                    .or_else(|| machine_id.map(|id| Subject::notify(u32::from(id))))
                else {
                    return;
                };
                match reply.to_message() {
                    Ok(bytes) => {
                        if let Err(e) = self.snake.publish(Message::new(to, bytes)).await {
                            tracing::warn!(
                                error = &e as &dyn std::error::Error,
                                "Could not answer a heartbeat."
                            );
                        }
                    }
                    Err(e) => {
                        tracing::warn!(
                            error = &e as &dyn std::error::Error,
                            "Could not encode a heartbeat reply."
                        );
                    }
                }
            }
            Ok(None) => {}
            Err(e) => tracing::warn!(
                error = &e as &dyn std::error::Error,
                "Could not handle a heartbeat."
            ),
        }
    }

    /// The reply to a heartbeat, and the machine id whose notify subject takes it when the
    /// heartbeat has no reply subject (`None` for a refused one).
    async fn heartbeat(
        &self,
        msg: &Message,
    ) -> Result<Option<(HeartbeatReply, Option<u16>)>, MixerError> {
        let Ok(mut hb) =
            Heartbeat::from_message(&msg.payload).or_else(|_| Heartbeat::from_cbor(&msg.payload))
        else {
            self.counters.add("bad_heartbeat");
            return Ok(None);
        };
        let name = if hb.name.is_empty() {
            // A rack of the reference names itself by machine id only.
            match hb.machine_id {
                0 => None,
                id => self.store.rack_by_machine_id(id).await?.map(|r| r.name),
            }
        } else {
            Some(hb.name.clone())
        };
        let found = match name {
            Some(name) => {
                let guard = self.lock_rack(&name).await;
                self.store
                    .rack_by_name(&name)
                    .await?
                    .map(|rack| (guard, rack))
            }
            None => None,
        };
        let (_guard, mut rack) = match found {
            None => {
                // Unknown, or removed.
                self.counters.add("unknown_rack");
                return Ok(Some((self.denied()?, None)));
            }
            Some((_, rack)) if !secret::verify(&hb.secret, &rack.secret_hash) => {
                self.counters.add("bad_secret");
                return Ok(Some((self.denied()?, None)));
            }
            // Refused as its hello is: no passport, and its record stays as it is.
            Some((_, rack)) if rack.status == RackStatus::Denied => {
                self.counters.add("denied");
                return Ok(Some((self.denied()?, None)));
            }
            Some(found) => found,
        };
        self.overlay(&mut rack);
        let now = self.clock.now();
        rack.last_seen = now;
        if hb.full_state {
            rack.health = hb
                .health
                .iter()
                .map(|(k, v)| (k.to_owned(), v.to_string()))
                .collect();
        } else {
            for (k, v) in hb.health.iter() {
                rack.health.insert(k.to_owned(), v.to_string());
            }
        }
        if !hb.stats.is_empty() {
            let stats = fluxmsg::Value::Map(std::mem::take(&mut hb.stats));
            rack.stats = fluxmsg::json::value_to_json(&stats);
        }
        rack.applied_hash.clone_from(&hb.applied_hash);
        // A change of status is written at once; what only heartbeats change is written with
        // the next batch (see `seen.rs`).
        let mut write = false;
        if rack.status == RackStatus::Offline {
            rack.status = RackStatus::Active;
            write = true;
            tracing::info!(rack = %rack.name, "A rack is back.");
        }
        let mut lease_changed = false;
        // A lease is renewed once half of it has passed since this mixer last renewed it:
        // one store write fewer on most beats.
        let renew_due = self
            .live()
            .get(&rack.name)
            .and_then(|l| l.renewed_at)
            .is_none_or(|at| now - at >= self.lease_ttl / 2);
        if rack.status == RackStatus::Active && (renew_due || rack.machine_id.is_none()) {
            let renewed = match rack.machine_id {
                Some(id) => {
                    self.store
                        .renew_lease(id, &rack.id, now, self.lease_ttl)
                        .await?
                }
                None => false,
            };
            self.live().entry(rack.name.clone()).or_default().renewed_at = Some(now);
            // The lease is gone (expired, or never there): a new one, in a new passport.
            if !renewed {
                self.admit(&mut rack).await?;
                lease_changed = true;
                write = true;
            }
        }
        self.keep_seen(&rack);
        if write {
            self.store.update_rack(&rack).await?;
        }
        // A new passport when the rack's status or machine id changed since its last one (it
        // takes both from passports), or when its lease had to be taken again.
        let current = (rack.status, rack.machine_id.unwrap_or(0));
        let interval = i64::try_from(self.heartbeat_interval.as_millis()).unwrap_or(i64::MAX);
        let (reissue, commands, report_full_state, lagging) = {
            let mut live = self.live();
            let entry = live.entry(rack.name.clone()).or_default();
            let stale = entry.issued != Some(current) || hb.machine_id != current.1;
            entry.issued = Some(current);
            let gap = entry.last_seq.is_none_or(|last| hb.seq != last + 1);
            entry.last_seq = Some(hb.seq);
            let lagging = entry
                .pushed_at
                .is_none_or(|at| now - at >= interval.saturating_mul(2));
            (
                stale || lease_changed,
                std::mem::take(&mut entry.commands),
                gap && !hb.full_state,
                lagging,
            )
        };
        let passport = if reissue {
            self.passport(&rack).await?
        } else {
            Bytes::new()
        };
        // A rack that runs something else than it was asked, and has not been pushed to
        // lately, gets the active scenario again (a push it missed while away, or one sent
        // before it listened). Not in a beat that changes its passport: it takes pushes only
        // once it knows it is active.
        // The comparison is with the active scenario, not with the last push: a rack
        // suspended while a scenario was activated gets it once it runs again. A hash the rack
        // failed to apply is not pushed again until another one is activated.
        if rack.status == RackStatus::Active
            && lagging
            && !reissue
            && self.active_may_differ(&hb.applied_hash)
            && let Some(record) = self.active_for(&rack.name).await?
            && record.hash != hb.applied_hash
        {
            let failed = self
                .store
                .convergence_of(&rack.name)
                .await?
                .is_some_and(|row| row.asked_hash == record.hash && row.status == "failed");
            if !failed {
                self.push(&rack, &record).await?;
            }
        }
        let mut reply = HeartbeatReply {
            status: rack.status.as_str().to_owned(),
            command: commands.first().cloned().unwrap_or_default(),
            passport,
            commands,
            report_full_state,
            signature: Bytes::new(),
        };
        self.key.sign(&mut reply)?;
        Ok(Some((reply, Some(rack.machine_id.unwrap_or(0)))))
    }

    /// Whether the active scenario may be another than `applied`: false only when it was read
    /// less than [`ACTIVE_FRESH`] ago and was `applied`, or none was active. A scenario that
    /// another mixer activated meanwhile is seen that much later; that mixer pushed it.
    fn active_may_differ(&self, applied: &str) -> bool {
        match &*self
            .active_hash
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
        {
            Some((at, hash)) if at.elapsed() < ACTIVE_FRESH => {
                hash.as_deref().is_some_and(|h| h != applied)
            }
            _ => true,
        }
    }

    /// The signed answer to a heartbeat the mixer refuses.
    fn denied(&self) -> Result<HeartbeatReply, MixerError> {
        let mut reply = HeartbeatReply {
            status: RackStatus::Denied.as_str().to_owned(),
            ..HeartbeatReply::default()
        };
        self.key.sign(&mut reply)?;
        Ok(reply)
    }

    /// Marks racks whose heartbeats stopped `offline`, every heartbeat interval.
    pub(super) async fn sweep(self: Arc<Self>) {
        let mut ticker = tokio::time::interval(self.heartbeat_interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let window = i64::try_from(self.heartbeat_interval.as_millis())
            .unwrap_or(i64::MAX)
            .saturating_mul(i64::from(self.missed_heartbeats));
        loop {
            ticker.tick().await;
            let now = self.clock.now();
            let before = now.saturating_sub(window);
            let racks = match self.store.stale_racks(before).await {
                Ok(r) => r,
                Err(e) => {
                    tracing::warn!(
                        error = &e as &dyn std::error::Error,
                        "Could not read the racks for liveness."
                    );
                    continue;
                }
            };
            for mut rack in racks {
                // Heartbeats this mixer has not written yet count.
                self.overlay(&mut rack);
                if rack.last_seen >= before {
                    continue;
                }
                self.mark_offline(&rack.name, before).await;
            }
        }
    }

    /// Marks `name` `offline` if it is still `active` and was last seen before `before`.
    async fn mark_offline(&self, name: &str, before: i64) {
        let _guard = self.lock_rack(name).await;
        let mut rack: RackRecord = match self.store.rack_by_name(name).await {
            Ok(Some(rack)) => rack,
            // Removed meanwhile.
            Ok(None) => return,
            Err(e) => {
                tracing::warn!(rack = %name, error = &e as &dyn std::error::Error, "Could not read a rack for liveness.");
                return;
            }
        };
        self.overlay(&mut rack);
        if rack.status == RackStatus::Active && rack.last_seen < before {
            rack.status = RackStatus::Offline;
            match self.store.update_rack(&rack).await {
                Ok(()) => {
                    tracing::warn!(rack = %rack.name, last_seen = rack.last_seen, "A rack missed its heartbeats: offline.");
                }
                Err(e) => {
                    tracing::warn!(rack = %rack.name, error = &e as &dyn std::error::Error, "Could not mark a rack offline.");
                }
            }
        }
    }
}
