//! Scenarios: import, check, activation, pushes, push reports and convergence rows; their
//! canonical text, hashing and SemVer.

use std::cmp::Ordering;
use std::sync::{Arc, PoisonError};

use bytes::Bytes;
use fluxmsg::system::{Payload, PushStatus, ScenarioPush};
use sha2::{Digest, Sha256};
use snake::{Message, Subject};

use super::{Inner, Mixer, SCENARIO_BUCKET};
use crate::store::{Convergence, Put, RackRecord, RackStatus, ScenarioRecord};
use crate::{MixerError, secret};

/// One version of a scenario as the mixer imported it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Imported {
    /// `meta.name`.
    pub name: String,
    /// `meta.version`.
    pub version: String,
    /// SHA-256 of its canonical bytes.
    pub hash: String,
    /// Whether it was stored now (false: the same version was there already).
    pub stored: bool,
    /// The racks it deploys to.
    pub racks: Vec<String>,
}

impl Mixer {
    /// Checks a scenario against the gear catalog and stores it as `name:version`
    /// (content-addressed, immutable); with `activate`, makes it the active scenario and
    /// pushes each rack its part.
    ///
    /// # Errors
    ///
    /// [`MixerError::Scenario`] with every problem and its `line:col`,
    /// [`MixerError::Version`] for a version that is not SemVer, the store's
    /// ([`StoreError::VersionExists`](crate::store::StoreError::VersionExists) for a changed
    /// version).
    pub async fn import(&self, yaml: &str, activate: bool) -> Result<Imported, MixerError> {
        let (imported, yaml) = self.inspect(yaml)?;
        let record = ScenarioRecord {
            name: imported.name.clone(),
            version: imported.version.clone(),
            hash: imported.hash.clone(),
            yaml,
            imported_at: self.inner.clock.now(),
        };
        let stored = self.inner.store.put_scenario(&record).await? == Put::Stored;
        if activate {
            self.activate(&imported.name, &imported.version).await?;
        }
        Ok(Imported { stored, ..imported })
    }

    /// What [`Mixer::import`] would store, without storing it (a dry run).
    ///
    /// # Errors
    ///
    /// As [`Mixer::import`].
    pub fn check(&self, yaml: &str) -> Result<Imported, MixerError> {
        Ok(self.inspect(yaml)?.0)
    }

    /// [`Mixer::check`], and the canonical text it hashed.
    fn inspect(&self, yaml: &str) -> Result<(Imported, String), MixerError> {
        let scenario = rack_lib::scenario::Scenario::parse(yaml)?;
        let validated = scenario.validate(&self.inner.factory)?;
        let version = scenario.meta.version.clone();
        if !is_semver(&version) {
            return Err(MixerError::Version(version));
        }
        let text = canonical(yaml);
        let imported = Imported {
            name: scenario.meta.name,
            version,
            hash: hash(&text),
            stored: false,
            racks: validated.racks(),
        };
        Ok((imported, text))
    }

    /// Makes `name:version` (`latest`: the highest version) the active scenario, admits the
    /// pending racks it names, and pushes each active rack it deploys to its part (several at
    /// once); returns the racks pushed to, in the scenario's order.
    ///
    /// # Errors
    ///
    /// [`MixerError::NoScenario`], [`MixerError::Scenario`] when it does not validate
    /// against this mixer's catalog (the active scenario stays as it was), or the store's and
    /// transport's. A push that fails does not stop the others: the first error is returned
    /// once every push has ended, and the racks not pushed get the scenario again at their
    /// next heartbeat after two intervals.
    pub async fn activate(&self, name: &str, version: &str) -> Result<Vec<String>, MixerError> {
        let record = self.inner.resolve(name, version).await?;
        // Validated before it becomes active: the catalog may have changed since the import.
        let targets = self.inner.targets(&record)?;
        self.inner
            .store
            .set_active(&record.name, &record.version)
            .await?;
        *self
            .inner
            .active_hash
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = None;
        // Heartbeats of racks this loop has not reached yet must not push the same
        // scenario meanwhile: they count as pushed from now.
        {
            let now = self.inner.clock.now();
            let mut live = self.inner.live();
            for target in targets.iter() {
                live.entry(target.clone()).or_default().pushed_at = Some(now);
            }
        }
        // Several at once: each push waits for its convergence row to be stored, and the rows
        // of pushes in flight are stored together.
        let record = Arc::new(record);
        let mut tasks = tokio::task::JoinSet::new();
        let mut pushed = Vec::new();
        let mut failed = None;
        let mut collect =
            |done: Result<(usize, Result<Option<String>, MixerError>), tokio::task::JoinError>| {
                match done {
                    Ok((i, Ok(Some(name)))) => pushed.push((i, name)),
                    Ok((_, Ok(None))) => {}
                    Ok((_, Err(e))) => {
                        failed.get_or_insert(e);
                    }
                    // A push task panicked: a bug, not the store's or the bus's.
                    Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
                    // Cancelled: the runtime is shutting down.
                    Err(_) => {}
                }
            };
        for (i, target) in targets.iter().enumerate() {
            if tasks.len() >= ACTIVATION_PUSHES
                && let Some(done) = tasks.join_next().await
            {
                collect(done);
            }
            let (inner, record, target) =
                (Arc::clone(&self.inner), Arc::clone(&record), target.clone());
            tasks.spawn(async move { (i, inner.activate_on(&target, &record).await) });
        }
        while let Some(done) = tasks.join_next().await {
            collect(done);
        }
        if let Some(e) = failed {
            return Err(e);
        }
        pushed.sort_unstable();
        let pushed: Vec<String> = pushed.into_iter().map(|(_, name)| name).collect();
        tracing::info!(scenario = %record.name, version = %record.version, pushed = pushed.len(), "Activated a scenario.");
        Ok(pushed)
    }

    /// One stored version of a scenario; `latest` is the highest by SemVer.
    ///
    /// # Errors
    ///
    /// [`MixerError::NoScenario`], or the store's.
    pub async fn scenario(&self, name: &str, version: &str) -> Result<ScenarioRecord, MixerError> {
        self.inner.resolve(name, version).await
    }

    /// The active scenario, if any.
    ///
    /// # Errors
    ///
    /// The store's.
    pub async fn active(&self) -> Result<Option<ScenarioRecord>, MixerError> {
        let Some((name, version)) = self.inner.store.active().await? else {
            return Ok(None);
        };
        Ok(self.inner.store.scenario(&name, &version).await?)
    }

    /// Per rack: what it was asked to run, what it runs, and how the last push went.
    ///
    /// # Errors
    ///
    /// The store's.
    pub async fn convergence(&self) -> Result<Vec<Convergence>, MixerError> {
        Ok(self.inner.store.convergence().await?)
    }
}

/// Pushes in flight at once while a scenario is activated.
const ACTIVATION_PUSHES: usize = 64;

impl Inner {
    /// One target of an activation: admits it when it is pending and pushes it `record` when
    /// it is active (or offline); the rack's name when it pushed.
    async fn activate_on(
        &self,
        target: &str,
        record: &ScenarioRecord,
    ) -> Result<Option<String>, MixerError> {
        let _guard = self.lock_rack(target).await;
        let Some(mut rack) = self.store.rack_by_name(target).await? else {
            return Ok(None);
        };
        if rack.status == RackStatus::Pending {
            // Named by the active scenario: admitted (admission path B).
            self.overlay(&mut rack);
            self.admit(&mut rack).await?;
            self.store.update_rack(&rack).await?;
            tracing::info!(rack = %rack.name, "Admitted a rack the active scenario names.");
        }
        if matches!(rack.status, RackStatus::Active | RackStatus::Offline) {
            self.push(&rack, record).await?;
            return Ok(Some(rack.name));
        }
        Ok(None)
    }

    async fn resolve(&self, name: &str, version: &str) -> Result<ScenarioRecord, MixerError> {
        let found = if version == "latest" {
            let mut versions = self.store.scenario_versions(name).await?;
            // Stable: of versions that differ only in build metadata, the last imported.
            versions.sort_by(|a, b| semver_cmp(&a.version, &b.version));
            versions.pop()
        } else {
            self.store.scenario(name, version).await?
        };
        found.ok_or_else(|| MixerError::NoScenario(format!("{name}:{version}")))
    }

    /// The racks a stored scenario deploys to.
    pub(super) fn targets(&self, record: &ScenarioRecord) -> Result<Arc<Vec<String>>, MixerError> {
        {
            let cached = self.targets.lock().unwrap_or_else(PoisonError::into_inner);
            if let Some((hash, racks)) = &*cached
                && *hash == record.hash
            {
                return Ok(Arc::clone(racks));
            }
        }
        let scenario = rack_lib::scenario::Scenario::parse(&record.yaml)?;
        let racks = Arc::new(scenario.validate(&self.factory)?.racks());
        *self.targets.lock().unwrap_or_else(PoisonError::into_inner) =
            Some((record.hash.clone(), Arc::clone(&racks)));
        Ok(racks)
    }

    /// The active scenario, if it deploys to `rack`.
    pub(super) async fn active_for(
        &self,
        rack: &str,
    ) -> Result<Option<ScenarioRecord>, MixerError> {
        let Some((name, version)) = self.store.active().await? else {
            *self
                .active_hash
                .lock()
                .unwrap_or_else(PoisonError::into_inner) = Some((std::time::Instant::now(), None));
            return Ok(None);
        };
        // Versions are immutable: the one read last serves until another is active.
        let cached = self
            .scenario
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
            .filter(|r| r.name == name && r.version == version);
        let record = match cached {
            Some(record) => record,
            None => {
                let Some(record) = self.store.scenario(&name, &version).await? else {
                    return Ok(None);
                };
                let record = Arc::new(record);
                *self.scenario.lock().unwrap_or_else(PoisonError::into_inner) =
                    Some(Arc::clone(&record));
                record
            }
        };
        *self
            .active_hash
            .lock()
            .unwrap_or_else(PoisonError::into_inner) =
            Some((std::time::Instant::now(), Some(record.hash.clone())));
        Ok(self
            .targets(&record)?
            .iter()
            .any(|t| t == rack)
            .then(|| Arc::unwrap_or_clone(record)))
    }

    /// Pushes `record` to `rack` and records that it was asked.
    pub(super) async fn push(
        &self,
        rack: &RackRecord,
        record: &ScenarioRecord,
    ) -> Result<(), MixerError> {
        let yaml = Bytes::copy_from_slice(record.yaml.as_bytes());
        let mut push = ScenarioPush {
            version: record.version.clone(),
            name: record.name.clone(),
            rack_name: rack.name.clone(),
            machine_id: rack.machine_id.unwrap_or(0),
            scenario: yaml.clone(),
            timestamp: self.clock.now() / 1000,
            hash: record.hash.clone(),
            location: String::new(),
            signature: Bytes::new(),
        };
        // Too large for one message (with room for the envelope): the scenario goes to a
        // KV bucket and the push says where.
        if let Some(max) = self.snake.max_payload()
            && record.yaml.len() + 4096 > max
        {
            let kv = self
                .snake
                .kv(rack_lib::agent::scenario_bucket(SCENARIO_BUCKET)?)
                .await?;
            kv.put(&record.hash, yaml).await?;
            push.scenario = Bytes::new();
            push.location = format!("kv://{SCENARIO_BUCKET}/{}", record.hash);
        }
        self.key.sign(&mut push)?;
        let subject = Subject::scenario(&rack.name)?;
        self.snake
            .publish(Message::new(subject, push.to_message()?))
            .await?;
        self.live().entry(rack.name.clone()).or_default().pushed_at = Some(self.clock.now());
        let mut row = self.row(&rack.name).await?;
        row.asked_version.clone_from(&record.version);
        row.asked_hash = record.hash.clone();
        // The row's status is about the hash asked: "applied" when the rack runs it already
        // (the lag re-push will not push it again), else "pushed" until the rack reports.
        row.status = if row.applied_hash == record.hash {
            "applied"
        } else {
            "pushed"
        }
        .to_owned();
        row.error.clear();
        row.updated_at = self.clock.now();
        self.put_convergence(row).await
    }

    /// `rack`'s convergence row, or an empty one.
    pub(super) async fn row(&self, rack: &str) -> Result<Convergence, MixerError> {
        Ok(self
            .store
            .convergence_of(rack)
            .await?
            .unwrap_or_else(|| Convergence {
                rack: rack.to_owned(),
                asked_version: String::new(),
                asked_hash: String::new(),
                applied_hash: String::new(),
                status: String::new(),
                error: String::new(),
                updated_at: 0,
            }))
    }

    pub(super) async fn named_by_active(&self, rack: &str) -> Result<bool, MixerError> {
        Ok(self.active_for(rack).await?.is_some())
    }

    pub(super) async fn on_status(self: Arc<Self>, msg: Message) {
        if let Err(e) = self.status(&msg).await {
            tracing::warn!(
                error = &e as &dyn std::error::Error,
                "Could not record a push status."
            );
        }
    }

    pub(super) async fn status(&self, msg: &Message) -> Result<(), MixerError> {
        let Ok(status) = PushStatus::from_message(&msg.payload) else {
            self.counters.add("bad_status");
            return Ok(());
        };
        if snake::token("rack name", &status.name).is_err() {
            self.counters.add("bad_status");
            return Ok(());
        }
        let _guard = self.lock_rack(&status.name).await;
        let mut rack = match self.store.rack_by_name(&status.name).await? {
            None => {
                self.counters.add("unknown_rack");
                return Ok(());
            }
            Some(rack) if !secret::verify(&status.secret, &rack.secret_hash) => {
                self.counters.add("bad_secret");
                return Ok(());
            }
            Some(rack) if rack.status == RackStatus::Denied => {
                self.counters.add("denied");
                return Ok(());
            }
            Some(rack) => rack,
        };
        let mut row = self.row(&rack.name).await?;
        if !row.asked_hash.is_empty() && row.asked_hash != status.hash {
            // About an older push: what runs still counts.
            row.applied_hash.clone_from(&status.running_hash);
        } else if status.status == "applying" && matches!(row.status.as_str(), "applied" | "failed")
        {
            // Each report is handled in its own task, so a push's `applying` can come after
            // its outcome; it is older news, running hash included.
            return Ok(());
        } else {
            row.status.clone_from(&status.status);
            row.error.clone_from(&status.error);
            row.applied_hash.clone_from(&status.running_hash);
        }
        row.updated_at = self.clock.now();
        self.put_convergence(row).await?;
        if status.status == "failed" {
            tracing::warn!(rack = %rack.name, hash = %status.hash, error = %status.error, "A rack failed to apply its scenario.");
        }
        // What the rack runs is a heartbeat's kind of change: written with the next batch.
        self.overlay(&mut rack);
        rack.applied_hash.clone_from(&status.running_hash);
        self.keep_seen(&rack);
        Ok(())
    }
}

/// A scenario's canonical text: line endings as `\n`, no trailing spaces, one final newline.
pub(crate) fn canonical(yaml: &str) -> String {
    let mut out = String::with_capacity(yaml.len() + 1);
    for line in yaml.lines() {
        out.push_str(line.trim_end());
        out.push('\n');
    }
    while out.ends_with("\n\n") {
        out.pop();
    }
    out
}

/// SHA-256 of `text`, in hex.
pub(crate) fn hash(text: &str) -> String {
    secret::hex(&Sha256::digest(text.as_bytes()))
}

fn is_semver(v: &str) -> bool {
    let core = v.split(['-', '+']).next().unwrap_or_default();
    let parts: Vec<&str> = core.split('.').collect();
    parts.len() == 3
        && parts
            .iter()
            .all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()))
}

/// SemVer 2.0.0 precedence: `MAJOR.MINOR.PATCH` numerically, a pre-release below its
/// release, pre-release identifiers one by one (numbers numerically and below words, words
/// in ASCII order, fewer below more), build metadata ignored.
fn semver_cmp(a: &str, b: &str) -> Ordering {
    fn parts(v: &str) -> (&str, Option<&str>) {
        let v = v.split_once('+').map_or(v, |(v, _build)| v);
        match v.split_once('-') {
            Some((core, pre)) => (core, Some(pre)),
            None => (v, None),
        }
    }
    fn numeric(s: &str) -> bool {
        !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit())
    }
    // Digits of any length: fewer significant digits first, then the digits themselves.
    fn cmp_numbers(a: &str, b: &str) -> Ordering {
        let (a, b) = (a.trim_start_matches('0'), b.trim_start_matches('0'));
        a.len().cmp(&b.len()).then_with(|| a.cmp(b))
    }
    let ((core_a, pre_a), (core_b, pre_b)) = (parts(a), parts(b));
    let core = core_a
        .split('.')
        .zip(core_b.split('.'))
        .map(|(x, y)| cmp_numbers(x, y))
        .find(|o| o.is_ne())
        .unwrap_or(Ordering::Equal);
    core.then_with(|| match (pre_a, pre_b) {
        (None, None) => Ordering::Equal,
        (None, Some(_)) => Ordering::Greater,
        (Some(_), None) => Ordering::Less,
        (Some(x), Some(y)) => {
            let (mut x, mut y) = (x.split('.'), y.split('.'));
            loop {
                match (x.next(), y.next()) {
                    (None, None) => return Ordering::Equal,
                    (None, Some(_)) => return Ordering::Less,
                    (Some(_), None) => return Ordering::Greater,
                    (Some(i), Some(j)) => {
                        let o = match (numeric(i), numeric(j)) {
                            (true, true) => cmp_numbers(i, j),
                            (true, false) => Ordering::Less,
                            (false, true) => Ordering::Greater,
                            (false, false) => i.cmp(j),
                        };
                        if o.is_ne() {
                            return o;
                        }
                    }
                }
            }
        }
    })
}
