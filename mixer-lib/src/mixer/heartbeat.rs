//! Heartbeats (leases, passports, commands, the push-lag re-push) and the liveness sweep.

use std::sync::Arc;

use bytes::Bytes;
use fluxmsg::system::{Heartbeat, HeartbeatReply, Payload};
use snake::{Message, Subject};

use super::Inner;
use crate::MixerError;
use crate::secret;
use crate::store::RackStatus;

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
        let found = if hb.name.is_empty() {
            // A rack of the reference names itself by machine id only.
            self.store
                .racks()
                .await?
                .into_iter()
                .find(|r| hb.machine_id != 0 && r.machine_id == Some(hb.machine_id))
        } else {
            self.store.rack_by_name(&hb.name).await?
        };
        let found = match found {
            Some(rack) => {
                let guard = self.lock_rack(&rack.name).await;
                self.store
                    .rack_by_name(&rack.name)
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
        if rack.status == RackStatus::Offline {
            rack.status = RackStatus::Active;
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
            }
        }
        self.store.update_rack(&rack).await?;
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
            && let Some(record) = self.active_for(&rack.name).await?
            && record.hash != hb.applied_hash
        {
            let row = self.row(&rack.name).await?;
            let failed = row.asked_hash == record.hash && row.status == "failed";
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
            let racks = match self.store.racks().await {
                Ok(r) => r,
                Err(e) => {
                    tracing::warn!(
                        error = &e as &dyn std::error::Error,
                        "Could not read the racks for liveness."
                    );
                    continue;
                }
            };
            for rack in racks {
                if rack.status != RackStatus::Active || now - rack.last_seen <= window {
                    continue;
                }
                let _guard = self.lock_rack(&rack.name).await;
                let mut rack = match self.store.rack_by_name(&rack.name).await {
                    Ok(Some(rack)) => rack,
                    // Removed meanwhile.
                    Ok(None) => continue,
                    Err(e) => {
                        tracing::warn!(rack = %rack.name, error = &e as &dyn std::error::Error, "Could not read a rack for liveness.");
                        continue;
                    }
                };
                if rack.status == RackStatus::Active && now - rack.last_seen > window {
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
    }
}
