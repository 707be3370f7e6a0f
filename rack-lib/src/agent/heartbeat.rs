//! Heartbeats, their replies and the mixer's commands.

use std::collections::BTreeMap;

use fluxmsg::system::{Heartbeat, HeartbeatReply, Payload as _};
use fluxmsg::{Map, Text, Value};
use snake::Subject;

use super::core::{Core, Flow};
use super::{AgentError, Enrollment};

/// A gear's health when it runs.
const OK: &str = "ok";
/// A gear's health when its graph names it but it does not run (it failed to start).
const NOT_RUNNING: &str = "not running";

impl Core {
    /// Sends one heartbeat and handles its reply.
    /// Sends a heartbeat, unless the last one still waits for its reply (a slow mixer gets
    /// one at a time); the reply comes as an event of its own ([`Core::on_heartbeat_reply`]).
    pub(super) async fn heartbeat(&mut self) -> Result<(), AgentError> {
        self.sync_pushes().await?;
        let Some(passport) = &self.passport else {
            return Ok(());
        };
        if self.in_flight.is_some() {
            tracing::debug!(rack = %self.cfg.name, seq = self.seq, "Heartbeat skipped: the last one still waits for its reply.");
            return Ok(());
        }
        self.seq += 1;
        let health = self.health();
        let full = self.full_next || !health.keys().eq(self.sent_health.keys());
        let sent: Map<Text> = health
            .iter()
            .filter(|(gear, state)| full || self.sent_health.get(*gear) != Some(*state))
            .map(|(gear, state)| (gear.as_str(), Text::from(state.as_str())))
            .collect();
        let heartbeat = Heartbeat {
            machine_id: passport.state.machine_id,
            name: self.cfg.name.clone(),
            secret: passport.state.secret.clone(),
            seq: self.seq,
            full_state: full,
            applied_hash: self.running_hash(),
            health: sent,
            stats: self.stats(),
            config: Map::new(),
        };
        self.sent_health = health;
        self.full_next = false;
        self.status.send_modify(|s| s.heartbeats = self.seq);
        let payload = match heartbeat.to_message() {
            Ok(payload) => payload,
            Err(e) => {
                tracing::warn!(rack = %self.cfg.name, error = %e, "Heartbeat cannot be encoded.");
                self.missed();
                return Ok(());
            }
        };
        let (snake, timeout) = (self.snake.clone(), self.cfg.reply_timeout);
        self.in_flight = Some(tokio::spawn(async move {
            snake.request(Subject::heartbeat(), payload, timeout).await
        }));
        Ok(())
    }

    /// What the mixer answered to a heartbeat, or why it did not.
    pub(super) async fn on_heartbeat_reply(
        &mut self,
        reply: Result<snake::Message, snake::Error>,
    ) -> Result<Flow, AgentError> {
        match reply {
            Ok(msg) => self.on_reply(&msg.payload).await,
            Err(snake::Error::Closed) => Err(AgentError::Bus(snake::Error::Closed)),
            Err(e) => {
                tracing::warn!(rack = %self.cfg.name, seq = self.seq, error = %e, "Heartbeat missed.");
                self.missed();
                Ok(Flow::Continue)
            }
        }
    }

    /// A heartbeat without a valid answer: the mixer may have missed changes, so the next
    /// one carries everything.
    fn missed(&mut self) {
        self.full_next = true;
        self.status.send_modify(|s| s.missed_heartbeats += 1);
    }

    async fn on_reply(&mut self, payload: &[u8]) -> Result<Flow, AgentError> {
        let reply = match HeartbeatReply::from_message(payload) {
            Ok(reply) => reply,
            Err(e) => {
                tracing::warn!(rack = %self.cfg.name, error = %e, "Heartbeat reply does not decode; ignored.");
                self.missed();
                return Ok(Flow::Continue);
            }
        };
        let checked = match &self.pinned {
            Some(key) => key.check(&reply).map_err(|e| e.to_string()),
            None => Err("no cluster key is pinned".to_owned()),
        };
        if let Err(e) = checked {
            tracing::error!(rack = %self.cfg.name, error = %e, "Heartbeat reply refused: not signed by the pinned cluster key.");
            self.missed();
            return Ok(Flow::Continue);
        }
        self.full_next = reply.report_full_state;
        if !reply.passport.is_empty() && self.accept_passport(&reply.passport).await {
            let status = self
                .passport
                .as_ref()
                .and_then(|p| Enrollment::parse(&p.state.status))
                .unwrap_or(Enrollment::Pending);
            self.set_enrollment(status).await?;
        }
        let commands = if reply.commands.is_empty() && !reply.command.is_empty() {
            vec![reply.command]
        } else {
            reply.commands
        };
        for command in &commands {
            if self.command(command).await == Flow::Stop {
                return Ok(Flow::Stop);
            }
        }
        Ok(Flow::Continue)
    }

    /// Carries out one command; the reference's spellings (`agent:shutdown`,
    /// `set_log_level:<level>`) are understood too.
    async fn command(&mut self, command: &str) -> Flow {
        let rack = self.cfg.name.clone();
        match command.trim() {
            "shutdown" | "agent:shutdown" => {
                tracing::info!(rack = %rack, "Shutdown requested by the mixer.");
                return Flow::Stop;
            }
            "suspend" => self.suspend().await,
            "resume" => self.resume().await,
            other => match other
                .strip_prefix("log_level:")
                .or_else(|| other.strip_prefix("set_log_level:"))
                .map(str::trim)
            {
                Some(level) if !level.is_empty() => {
                    tracing::info!(rack = %rack, level = %level, "Log level set by the mixer.");
                    if let Some(hook) = &self.cfg.on_log_level {
                        hook(level);
                    }
                }
                _ => {
                    tracing::warn!(rack = %rack, command = %other, "Unknown command from the mixer; ignored.");
                }
            },
        }
        Flow::Continue
    }

    /// Per gear of the graph the rack runs: `ok`, or `not running` when it failed to start.
    pub(super) fn health(&self) -> BTreeMap<String, String> {
        let Some(slot) = &self.rack else {
            return BTreeMap::new();
        };
        let stats = slot.rack.stats();
        slot.rack
            .graph()
            .gears
            .iter()
            .map(|g| {
                let state = if stats.contains_key(&g.name) {
                    OK
                } else {
                    NOT_RUNNING
                };
                (g.name.clone(), state.to_owned())
            })
            .collect()
    }

    /// `{ "gears": { <gear>: { messages_in, messages_out, errors, dropped: { <reason>: n } } } }`.
    fn stats(&self) -> Map<Value> {
        let mut gears = Map::new();
        if let Some(slot) = &self.rack {
            for (gear, s) in slot.rack.stats() {
                let mut counters = Map::new();
                counters.insert("messages_in", Value::from(s.messages_in));
                counters.insert("messages_out", Value::from(s.messages_out));
                counters.insert("errors", Value::from(s.errors));
                let dropped: Map<Value> = s
                    .dropped
                    .iter()
                    .map(|(reason, n)| (reason.as_str(), Value::from(*n)))
                    .collect();
                counters.insert("dropped", Value::Map(dropped));
                gears.insert(gear, Value::Map(counters));
            }
        }
        let mut stats = Map::new();
        stats.insert("gears", Value::Map(gears));
        stats
    }
}
