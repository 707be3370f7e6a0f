//! Enrollment: hellos, admission, rack secrets and passports.

use std::sync::{Arc, PoisonError};

use bytes::Bytes;
use fluxmsg::system::{EnrollmentReply, Hello, Payload, RackState};
use sha2::{Digest, Sha256};
use snake::{Message, Subject};

use super::{Inner, new_id};
use crate::store::{Millis, RackRecord, RackStatus};
use crate::{MixerError, secret};

impl Inner {
    /// Makes a rack active with a machine-id lease.
    pub(super) async fn admit(&self, rack: &mut RackRecord) -> Result<(), MixerError> {
        let lease = self
            .store
            .acquire_lease(
                &rack.id,
                self.machine_ids.clone(),
                self.clock.now(),
                self.lease_ttl,
            )
            .await?;
        rack.machine_id = Some(lease.machine_id);
        rack.status = RackStatus::Active;
        Ok(())
    }

    /// The rack's bearer secret: derived from the cluster key and the rack's id, so that
    /// the mixer never stores it (only its hash) and can put it in every passport it issues.
    fn rack_secret(&self, rack_id: &str) -> String {
        let mut h = Sha256::new();
        h.update(self.key.to_hex().as_bytes());
        h.update(b"\0rack-secret\0");
        h.update(rack_id.as_bytes());
        secret::hex(&h.finalize())
    }

    /// A signed passport for `rack`, as the CBOR of its envelope.
    pub(super) async fn passport(&self, rack: &RackRecord) -> Result<Bytes, MixerError> {
        let now = self.clock.now();
        let lease_expires_at = match rack.machine_id {
            Some(id) => self
                .store
                .lease(id)
                .await?
                .filter(|l| l.holder == rack.id)
                .map_or(0, |l| l.expires_at / 1000),
            None => 0,
        };
        let state = RackState {
            mixer_id: self.id.clone(),
            machine_id: rack.machine_id.unwrap_or(0),
            name: rack.name.clone(),
            status: rack.status.as_str().to_owned(),
            secret: self.rack_secret(&rack.id),
            mixer_pub: Bytes::new(),
            version: env!("CARGO_PKG_VERSION").to_owned(),
            created_at: rack.first_seen / 1000,
            updated_at: now / 1000,
            update_count: 0,
            lease_expires_at,
        };
        Ok(self.key.issue(&state)?.to_cbor()?.into())
    }

    pub(super) async fn on_hello(self: Arc<Self>, msg: Message) {
        if let Err(e) = self.hello(&msg).await {
            tracing::warn!(
                error = &e as &dyn std::error::Error,
                "Could not answer a hello."
            );
        }
    }

    pub(super) async fn hello(&self, msg: &Message) -> Result<(), MixerError> {
        let Ok(hello) =
            Hello::from_message(&msg.payload).or_else(|_| Hello::from_cbor(&msg.payload))
        else {
            self.counters.add("bad_hello");
            return Ok(());
        };
        // Validated before anything else: the name and nonce go into a subject.
        let Ok(reply_to) = Subject::enrollment(&hello.name, &hello.nonce) else {
            self.counters.add("bad_hello");
            tracing::warn!("Dropped a hello whose name or nonce cannot be a subject token.");
            return Ok(());
        };
        let now = self.clock.now();
        if !self
            .limits
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .allow(&hello.name, now)
        {
            self.counters.add("rate_limited");
            return Ok(());
        }
        let reply = self.enroll(&hello, now).await?;
        self.snake
            .publish(Message::new(reply_to, reply.to_message()?))
            .await?;
        Ok(())
    }

    async fn enroll(&self, hello: &Hello, now: Millis) -> Result<EnrollmentReply, MixerError> {
        let refuse = |status: &str, message: &str| EnrollmentReply {
            status: status.to_owned(),
            message: message.to_owned(),
            ..EnrollmentReply::default()
        };
        let _guard = self.lock_rack(&hello.name).await;
        let bootstrap = self
            .bootstrap_secret
            .as_deref()
            .is_some_and(|b| secret::constant_time_eq(b.as_bytes(), hello.secret.as_bytes()));
        let mut rack = match self.store.rack_by_name(&hello.name).await? {
            Some(mut rack) => {
                // With what its heartbeats changed and the store does not have yet.
                self.overlay(&mut rack);
                if rack.status == RackStatus::Denied {
                    self.counters.add("denied");
                    return Ok(refuse("denied", "this rack is denied"));
                }
                // A pending rack that never heartbeated has not shown it holds its secret:
                // its first answer may have been lost, so a hello with the bootstrap secret
                // gets the same passport again rather than a conflict it could not recover
                // from. Once it heartbeated, its name is its own.
                let unproved =
                    rack.status == RackStatus::Pending && rack.last_seen == rack.first_seen;
                if !secret::verify(&hello.secret, &rack.secret_hash) {
                    if bootstrap && unproved {
                        tracing::info!(rack = %hello.name, "A pending rack asked again before its first heartbeat; it gets its passport again.");
                        return self.reply(&rack).await;
                    }
                    if bootstrap {
                        self.counters.add("conflict");
                        tracing::warn!(rack = %hello.name, "Refused a hello: another identity holds this name.");
                        return Ok(refuse(
                            "conflict",
                            "another rack holds this name: remove it first, or choose another name",
                        ));
                    }
                    self.counters.add("bad_secret");
                    tracing::warn!(rack = %hello.name, "Refused a hello with a wrong secret.");
                    return Ok(refuse("denied", "wrong secret"));
                }
                rack
            }
            None => {
                if !bootstrap && !self.auto_adopt {
                    self.counters.add("denied");
                    tracing::warn!(rack = %hello.name, "Refused a new rack without the bootstrap secret.");
                    return Ok(refuse(
                        "denied",
                        "a new rack must present the bootstrap secret",
                    ));
                }
                let id = new_id()?;
                let secret = self.rack_secret(&id);
                let hashed = secret::hash(&secret).map_err(MixerError::Entropy)?;
                let rack = RackRecord::new(&id, &hello.name, hashed, now);
                match self.store.insert_rack(&rack).await {
                    Ok(()) => {}
                    // Another mixer (or a hello racing this one) registered it first.
                    Err(crate::store::StoreError::NameTaken(_)) => {
                        self.counters.add("conflict");
                        return Ok(refuse("conflict", "another rack holds this name"));
                    }
                    Err(e) => return Err(e.into()),
                }
                tracing::info!(rack = %hello.name, "A new rack introduced itself.");
                rack
            }
        };
        rack.last_seen = now;
        rack.ip.clone_from(&hello.ip);
        rack.version.clone_from(&hello.version);
        if let Some(fluxmsg::Value::Map(labels)) = hello.config.get("labels") {
            rack.labels = labels
                .iter()
                .filter_map(|(k, v)| v.as_str().map(|v| (k.to_owned(), v.to_owned())))
                .collect();
        }
        let named = self.named_by_active(&rack.name).await?;
        let was_active = rack.status == RackStatus::Active;
        match rack.status {
            RackStatus::Pending if self.auto_adopt => {
                self.admit(&mut rack).await?;
                tracing::warn!(rack = %rack.name, "Auto-adopted a rack: auto-adopt is for development only.");
            }
            RackStatus::Pending if named => self.admit(&mut rack).await?,
            // Back from silence, or asking again: keep its lease.
            RackStatus::Active | RackStatus::Offline => self.admit(&mut rack).await?,
            _ => {}
        }
        self.store.update_rack(&rack).await?;
        // A new session: the mixer does not know its state yet, and the rack has not seen a
        // push of it.
        {
            let mut live = self.live();
            let entry = live.entry(rack.name.clone()).or_default();
            entry.last_seq = None;
            entry.pushed_at = None;
            entry.issued = Some((rack.status, rack.machine_id.unwrap_or(0)));
        }
        if rack.status == RackStatus::Active && !was_active {
            tracing::info!(rack = %rack.name, machine_id = ?rack.machine_id, "A rack is active.");
        }
        self.reply(&rack).await
    }

    /// The enrollment reply that carries `rack`'s passport.
    async fn reply(&self, rack: &RackRecord) -> Result<EnrollmentReply, MixerError> {
        Ok(EnrollmentReply {
            status: rack.status.as_str().to_owned(),
            passport: self.passport(rack).await?,
            config: fluxmsg::Map::new(),
            message: String::new(),
        })
    }
}
