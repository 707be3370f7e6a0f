//! Scenario pushes: verification, apply as a diff, rollback, and the reports.

use bytes::Bytes;
use fluxmsg::system::{Payload as _, PushStatus, ScenarioPush};
use snake::{Message, Subject};

use super::core::{Core, Good, chain, prepare};
use super::{PushOutcome, PushReport, scenario_bucket};
use crate::Graph;

impl Core {
    /// Handles one message of the push subscription.
    pub(super) async fn on_push(&mut self, msg: Message) {
        let rack = self.cfg.name.clone();
        let push = match ScenarioPush::from_message(&msg.payload) {
            Ok(push) => push,
            Err(e) => {
                tracing::warn!(rack = %rack, error = %e, "Push does not decode; ignored.");
                return;
            }
        };
        let checked = match &self.pinned {
            Some(key) => key.check(&push).map_err(|e| e.to_string()),
            None => Err("no cluster key is pinned".to_owned()),
        };
        if let Err(e) = checked {
            tracing::error!(rack = %rack, hash = %push.hash, error = %e, "Push refused: not signed by the pinned cluster key.");
            return;
        }
        if push.rack_name != rack {
            tracing::error!(rack = %rack, target = %push.rack_name, hash = %push.hash, "Push refused: it names another rack.");
            return;
        }
        self.report(&push, "applying", String::new()).await;
        let outcome = self.apply_push(&push).await;
        match &outcome {
            Ok(()) => {
                tracing::info!(rack = %rack, hash = %push.hash, version = %push.version, "Push applied.");
                self.report(&push, "applied", String::new()).await;
            }
            Err(e) => {
                tracing::warn!(rack = %rack, hash = %push.hash, error = %e, "Push failed.");
                self.report(&push, "failed", e.clone()).await;
            }
        }
        let report = PushReport {
            hash: push.hash.clone(),
            outcome: match outcome {
                Ok(()) => PushOutcome::Applied,
                Err(e) => PushOutcome::Failed(e),
            },
        };
        self.publish_status();
        self.status.send_modify(|s| s.last_push = Some(report));
    }

    /// Makes the rack run a verified push; the error is what the report says.
    async fn apply_push(&mut self, push: &ScenarioPush) -> Result<(), String> {
        if self.suspended {
            return Err("the rack is suspended".to_owned());
        }
        if !push.hash.is_empty() && self.running_hash().eq_ignore_ascii_case(&push.hash) {
            return Ok(());
        }
        let yaml = match push.location.strip_prefix("kv://") {
            Some(at) => self.fetch(at).await?,
            None => push.scenario.clone(),
        };
        let validated = prepare(&self.cfg, &yaml, &push.hash)?;
        self.ensure_rack().await?;
        let graph = Graph::from(&validated.plan(&self.cfg.name));
        let Some(slot) = self.rack.as_mut() else {
            return Err("no rack".to_owned());
        };
        // A plan that fails changed nothing: what ran still runs.
        let plan = slot.rack.plan(graph).map_err(|e| chain(&e))?;
        if let Err(e) = slot.rack.commit(plan).await {
            return Err(self.roll_back(chain(&e)).await);
        }
        let down: Vec<String> = self
            .health()
            .into_iter()
            .filter(|(_, state)| state != "ok")
            .map(|(gear, state)| format!("gear {gear:?}: {state}"))
            .collect();
        if !down.is_empty() {
            return Err(self.roll_back(down.join(", ")).await);
        }
        let mut saved = push.clone();
        saved.scenario = yaml;
        if let Err(e) = self.store.save_scenario(&saved).await {
            tracing::error!(rack = %self.cfg.name, hash = %push.hash, error = &e as &dyn std::error::Error, "Applied scenario not saved; a restart will not find it.");
        }
        self.good = Some(Good {
            push: saved,
            validated,
        });
        self.runs_good = true;
        Ok(())
    }

    /// Goes back to the last good scenario (or to no gears) after a failed commit; returns
    /// the failure's text with what the rollback did.
    async fn roll_back(&mut self, failure: String) -> String {
        self.runs_good = false;
        let target = self
            .good
            .as_ref()
            .map(|g| Graph::from(&g.validated.plan(&self.cfg.name)))
            .unwrap_or_default();
        let Some(slot) = self.rack.as_mut() else {
            return failure;
        };
        match slot.rack.apply(target).await {
            Ok(_) => match &self.good {
                Some(good) => {
                    self.runs_good = true;
                    format!("{failure}; rolled back to {}", good.push.hash)
                }
                None => format!("{failure}; every gear stopped (no earlier scenario)"),
            },
            Err(e) => {
                tracing::error!(rack = %self.cfg.name, error = &e as &dyn std::error::Error, "Rollback failed.");
                format!("{failure}; rollback failed: {}", chain(&e))
            }
        }
    }

    /// Reads a scenario from `<bucket>/<key>` of a snake KV bucket.
    async fn fetch(&self, at: &str) -> Result<Bytes, String> {
        let fail = |e: &dyn std::fmt::Display| format!("kv://{at}: {e}");
        let Some((bucket, key)) = at
            .split_once('/')
            .filter(|(b, k)| !b.is_empty() && !k.is_empty())
        else {
            return Err(fail(&"expected kv://<bucket>/<key>"));
        };
        let kv = self
            .snake
            .kv(scenario_bucket(bucket).map_err(|e| fail(&e))?)
            .await
            .map_err(|e| fail(&e))?;
        match kv.get(key).await.map_err(|e| fail(&e))? {
            Some(entry) if !entry.value.is_empty() => Ok(entry.value),
            _ => Err(fail(&"no such scenario")),
        }
    }

    /// Publishes a push's status on `flux.agent.status`.
    async fn report(&self, push: &ScenarioPush, status: &str, error: String) {
        let (machine_id, secret) = self
            .passport
            .as_ref()
            .map(|p| (p.state.machine_id, p.state.secret.clone()))
            .unwrap_or_default();
        let report = PushStatus {
            name: self.cfg.name.clone(),
            machine_id,
            secret,
            version: push.version.clone(),
            hash: push.hash.clone(),
            status: status.to_owned(),
            error,
            running_hash: self.running_hash(),
        };
        let sent = match report.to_message() {
            Ok(bytes) => self
                .snake
                .publish(Message::new(Subject::status(), bytes))
                .await
                .map_err(|e| e.to_string()),
            Err(e) => Err(e.to_string()),
        };
        if let Err(e) = sent {
            tracing::warn!(rack = %self.cfg.name, hash = %push.hash, status = %status, error = %e, "Push status not sent.");
        }
    }
}
