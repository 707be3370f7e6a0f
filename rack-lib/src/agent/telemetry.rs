//! Telemetry a rack publishes on `flux.telemetry.>`: per-gear metric snapshots and sampled
//! hops, as fluxMsgs whose `meta.type` says which.
//!
//! Telemetry never competes with business traffic: it goes out as core (at most once)
//! publishes through a token bucket ([`AgentConfig::telemetry_rate`](super::AgentConfig::telemetry_rate)),
//! and what the bucket refuses is dropped and counted, never queued; the counts travel in
//! every snapshot's `telemetry_dropped`. The mixer's side is `mixer_lib::telemetry`.
//!
//! - `flux.telemetry.metrics.<rack>`, `meta.type` = [`METRICS_TYPE`]: a [`MetricsSnapshot`]
//!   as `data`, every [`telemetry_interval`](super::AgentConfig::telemetry_interval).
//! - `flux.telemetry.hops.<rack>`, `meta.type` = [`HOPS_TYPE`]: a [`HopsBatch`] of sampled
//!   hops (which gear sent which message on which port, and why), at the same interval.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use fluxmsg::{FluxMsg, Value};
use serde::{Deserialize, Serialize};
use snake::{Message, Subject};

use super::core::Core;

/// `meta.type` of a metric snapshot.
pub const METRICS_TYPE: &str = "telemetry.metrics";
/// `meta.type` of a batch of sampled hops.
pub const HOPS_TYPE: &str = "telemetry.hops";

/// A rack's counters at one time.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct MetricsSnapshot {
    /// The rack's name.
    pub rack: String,
    /// When, in milliseconds since the Unix epoch.
    pub ts_ms: i64,
    /// Per gear.
    pub gears: BTreeMap<String, GearCounters>,
    /// Telemetry messages this rack dropped so far (the bucket was empty, or the publish
    /// failed), by reason.
    pub telemetry_dropped: BTreeMap<String, u64>,
}

/// One gear's counters (`flux.gear.*`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct GearCounters {
    /// Messages in (`flux.gear.messages_in`).
    pub messages_in: u64,
    /// Messages out (`flux.gear.messages_out`).
    pub messages_out: u64,
    /// Errors (`flux.gear.errors`).
    pub errors: u64,
    /// Dropped messages by reason (`flux.gear.messages_dropped`).
    pub dropped: BTreeMap<String, u64>,
}

/// Sampled hops of one rack.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct HopsBatch {
    /// The rack's name.
    pub rack: String,
    /// The hops, oldest first.
    pub hops: Vec<HopRecord>,
}

/// One hop of one message: a gear sent it on a port, maybe with the decision that chose
/// the port.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct HopRecord {
    /// The message's id (its text form).
    pub id: String,
    /// The gear.
    pub gear: String,
    /// The output port.
    pub port: String,
    /// When, in Unix nanoseconds.
    pub ts: i64,
    /// Why that port (route rules, failovers), when the gear said.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub decision: Option<String>,
}

/// What the telemetry of an agent did so far.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(super) struct TelemetryStats {
    /// Telemetry messages published.
    pub(super) published: u64,
    /// Dropped, by reason (`rate`: the bucket was empty; `publish`: the bus refused;
    /// `encode`).
    pub(super) dropped: BTreeMap<String, u64>,
}

/// A token bucket: `rate` tokens a second, at most `burst` saved.
#[derive(Debug, Clone)]
pub(super) struct Bucket {
    rate: f64,
    burst: f64,
    tokens: f64,
    at: Instant,
}

impl Bucket {
    pub(super) fn new(rate: f64, burst: f64) -> Bucket {
        Bucket {
            rate: rate.max(0.0),
            burst: burst.max(1.0),
            tokens: burst.max(1.0),
            at: Instant::now(),
        }
    }

    /// Takes a token if there is one.
    pub(super) fn take(&mut self, now: Instant) -> bool {
        let elapsed = now.saturating_duration_since(self.at).as_secs_f64();
        self.at = now;
        self.tokens = (self.tokens + elapsed * self.rate).min(self.burst);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// `payload` (a serde value) as the `data` of a fluxMsg of type `kind`.
///
/// # Errors
///
/// When the payload has no map form (none of this module's types).
pub fn to_message<T: Serialize>(kind: &str, payload: &T) -> Result<FluxMsg, fluxmsg::Error> {
    let json = serde_json::to_value(payload).map_err(|e| fluxmsg::Error::Payload(e.to_string()))?;
    let Value::Map(data) = fluxmsg::json::value_from_json(&json)? else {
        return Err(fluxmsg::Error::Payload("telemetry is not a map".into()));
    };
    let mut msg = FluxMsg::default();
    msg.meta.insert("type", fluxmsg::Text::from(kind));
    msg.data = data;
    Ok(msg)
}

/// The payload of a telemetry fluxMsg of type `kind`; `None` for another type.
///
/// # Errors
///
/// When the data does not have the payload's shape.
pub fn from_message<T: for<'de> Deserialize<'de>>(
    kind: &str,
    msg: &FluxMsg,
) -> Result<Option<T>, fluxmsg::Error> {
    if msg.meta.get("type").map(fluxmsg::Text::as_str) != Some(kind) {
        return Ok(None);
    }
    let json = fluxmsg::json::value_to_json(&Value::Map(msg.data.clone()));
    serde_json::from_value(json)
        .map(Some)
        .map_err(|e| fluxmsg::Error::Payload(e.to_string()))
}

impl Core {
    /// Publishes a metric snapshot, if the bucket lets it.
    pub(super) async fn publish_telemetry(&mut self) {
        let snapshot = self.snapshot();
        self.metrics.send_replace(snapshot.clone());
        let subject = format!("flux.telemetry.metrics.{}", self.cfg.name);
        self.send_telemetry(&subject, METRICS_TYPE, &snapshot).await;
        if let Some((sampler, task)) = &self.hops {
            for (reason, n) in [
                ("hops_behind", sampler.dropped()),
                ("hops_rate", task.dropped.load(Ordering::Relaxed)),
            ] {
                if n > 0 {
                    self.telemetry.dropped.insert(reason.into(), n);
                }
            }
        }
    }

    async fn send_telemetry<T: Serialize>(&mut self, subject: &str, kind: &str, payload: &T) {
        if !self.telemetry_bucket.take(Instant::now()) {
            *self.telemetry.dropped.entry("rate".into()).or_insert(0) += 1;
            return;
        }
        let encoded =
            to_message(kind, payload).and_then(|m| fluxmsg::Codec::default().encode_to_vec(&m));
        let (Ok(subject), Ok(bytes)) = (Subject::parse(subject), encoded) else {
            *self.telemetry.dropped.entry("encode".into()).or_insert(0) += 1;
            return;
        };
        match self
            .snake
            .publish(Message::new(subject, bytes::Bytes::from(bytes)))
            .await
        {
            Ok(()) => self.telemetry.published += 1,
            Err(e) => {
                *self.telemetry.dropped.entry("publish".into()).or_insert(0) += 1;
                tracing::debug!(rack = %self.cfg.name, error = %e, "Telemetry not published.");
            }
        }
    }

    /// The rack's counters now.
    pub(super) fn snapshot(&self) -> MetricsSnapshot {
        MetricsSnapshot {
            rack: self.cfg.name.clone(),
            ts_ms: now_ms(),
            gears: self.gear_counters(),
            telemetry_dropped: self.telemetry.dropped.clone(),
        }
    }

    fn gear_counters(&self) -> BTreeMap<String, GearCounters> {
        self.rack
            .as_ref()
            .map(|slot| counters_of(&slot.rack))
            .unwrap_or_default()
    }
}

/// A running rack's per-gear counters.
pub fn counters_of(rack: &crate::Rack) -> BTreeMap<String, GearCounters> {
    rack.stats()
        .into_iter()
        .map(|(gear, s)| {
            (
                gear,
                GearCounters {
                    messages_in: s.messages_in,
                    messages_out: s.messages_out,
                    errors: s.errors,
                    dropped: s
                        .dropped
                        .iter()
                        .map(|(reason, n)| (reason.to_string(), *n))
                        .collect(),
                },
            )
        })
        .collect()
}

/// One rack's counters, for [`write_prometheus`].
#[derive(Debug, Clone, Copy)]
pub struct RackMetrics<'a> {
    /// The rack's name.
    pub rack: &'a str,
    /// Its gears' counters.
    pub gears: &'a BTreeMap<String, GearCounters>,
    /// What its telemetry dropped, by reason, when known.
    pub telemetry_dropped: Option<&'a BTreeMap<String, u64>>,
}

/// Appends the racks' per-gear counters to `out` in the Prometheus text format
/// (`flux_gear_messages_in_total{rack,gear}`, `_out_total`, `flux_gear_errors_total`,
/// `flux_gear_messages_dropped_total{rack,gear,reason}`,
/// `flux_rack_telemetry_dropped_total{rack,reason}`): what a rack's own `/metrics` and the
/// mixer's fleet-wide one both serve.
pub fn write_prometheus(out: &mut String, racks: &[RackMetrics<'_>]) {
    use std::fmt::Write as _;
    for (name, help, pick) in [
        (
            "flux_gear_messages_in_total",
            "Messages into a gear (flux.gear.messages_in).",
            0,
        ),
        (
            "flux_gear_messages_out_total",
            "Messages out of a gear (flux.gear.messages_out).",
            1,
        ),
        (
            "flux_gear_errors_total",
            "Messages a gear failed (flux.gear.errors).",
            2,
        ),
    ] {
        prometheus_header(out, name, "counter", help);
        for RackMetrics { rack, gears, .. } in racks {
            let rack = prometheus_label(rack);
            for (gear, c) in gears.iter() {
                let v = [c.messages_in, c.messages_out, c.errors][pick];
                let _ = writeln!(
                    out,
                    "{name}{{rack=\"{rack}\",gear=\"{}\"}} {v}",
                    prometheus_label(gear)
                );
            }
        }
    }
    prometheus_header(
        out,
        "flux_gear_messages_dropped_total",
        "counter",
        "Messages a gear dropped, by reason (flux.gear.messages_dropped).",
    );
    for RackMetrics { rack, gears, .. } in racks {
        let rack = prometheus_label(rack);
        for (gear, c) in gears.iter() {
            for (reason, n) in &c.dropped {
                let _ = writeln!(
                    out,
                    "flux_gear_messages_dropped_total{{rack=\"{rack}\",gear=\"{}\",reason=\"{}\"}} {n}",
                    prometheus_label(gear),
                    prometheus_label(reason)
                );
            }
        }
    }
    prometheus_header(
        out,
        "flux_rack_telemetry_dropped_total",
        "counter",
        "Telemetry a rack dropped rather than delay business traffic, by reason.",
    );
    for RackMetrics {
        rack,
        telemetry_dropped,
        ..
    } in racks
    {
        for (reason, n) in telemetry_dropped.iter().flat_map(|d| d.iter()) {
            let _ = writeln!(
                out,
                "flux_rack_telemetry_dropped_total{{rack=\"{}\",reason=\"{}\"}} {n}",
                prometheus_label(rack),
                prometheus_label(reason)
            );
        }
    }
}

/// Appends the `# HELP` and `# TYPE` lines of a metric.
pub fn prometheus_header(out: &mut String, name: &str, kind: &str, help: &str) {
    use std::fmt::Write as _;
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

/// A label value as the text format wants it: `\`, `"` and newlines escaped.
pub fn prometheus_label(value: &str) -> std::borrow::Cow<'_, str> {
    if !value.contains(['\\', '"', '\n']) {
        return std::borrow::Cow::Borrowed(value);
    }
    std::borrow::Cow::Owned(
        value
            .replace('\\', "\\\\")
            .replace('"', "\\\"")
            .replace('\n', "\\n"),
    )
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// The task that publishes sampled hops on `flux.telemetry.hops.<rack>`: a task of its own,
/// so that a busy agent loop never leaves the sampler's channel to fill up.
#[derive(Debug)]
pub(super) struct HopsTask {
    task: tokio::task::JoinHandle<()>,
    /// Batches its bucket refused.
    dropped: std::sync::Arc<AtomicU64>,
}

impl HopsTask {
    /// A sampler of one message in `one_in` and the task that publishes what it samples,
    /// every `telemetry_interval`, through a bucket of its own at `telemetry_rate`.
    pub(super) fn start(
        cfg: &super::AgentConfig,
        snake: &snake::Snake,
        one_in: u64,
    ) -> (crate::HopSampler, HopsTask) {
        let (sampler, mut rx) = crate::HopSampler::new(one_in, MAX_HOPS_PER_BATCH * 4);
        let dropped = std::sync::Arc::new(AtomicU64::new(0));
        let (rack, snake, every) = (cfg.name.clone(), snake.clone(), cfg.telemetry_interval);
        let mut bucket = Bucket::new(cfg.telemetry_rate.0, cfg.telemetry_rate.1);
        let refused = std::sync::Arc::clone(&dropped);
        let task = tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
            let Ok(subject) = Subject::parse(&format!("flux.telemetry.hops.{rack}")) else {
                return;
            };
            loop {
                tick.tick().await;
                let mut batch = HopsBatch {
                    rack: rack.clone(),
                    hops: Vec::new(),
                };
                while batch.hops.len() < MAX_HOPS_PER_BATCH {
                    let Ok(h) = rx.try_recv() else { break };
                    batch.hops.push(HopRecord {
                        id: h.id.to_string(),
                        gear: h.gear.to_string(),
                        port: h.port,
                        ts: h.ts,
                        decision: h.decision.map(|d| d.to_string()),
                    });
                }
                if batch.hops.is_empty() {
                    continue;
                }
                if !bucket.take(Instant::now()) {
                    refused.fetch_add(1, Ordering::Relaxed);
                    continue;
                }
                let bytes = to_message(HOPS_TYPE, &batch)
                    .and_then(|m| fluxmsg::Codec::default().encode_to_vec(&m));
                match bytes {
                    Ok(bytes) => {
                        let msg = Message::new(subject.clone(), bytes::Bytes::from(bytes));
                        if let Err(e) = snake.publish(msg).await {
                            refused.fetch_add(1, Ordering::Relaxed);
                            tracing::debug!(rack = %rack, error = %e, "Sampled hops not published.");
                        }
                    }
                    Err(_) => {
                        refused.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
        });
        (sampler, HopsTask { task, dropped })
    }

    /// Ends the task.
    pub(super) fn stop(self) {
        self.task.abort();
    }
}

/// The most hops one batch carries.
pub(super) const MAX_HOPS_PER_BATCH: usize = 512;

/// The default interval between snapshots.
pub(super) const DEFAULT_INTERVAL: Duration = Duration::from_secs(5);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bucket_lets_a_burst_through_then_the_rate() {
        let mut bucket = Bucket::new(2.0, 3.0);
        let t0 = Instant::now();
        assert_eq!((0..5).filter(|_| bucket.take(t0)).count(), 3);
        assert!(!bucket.take(t0 + Duration::from_millis(100)));
        assert!(bucket.take(t0 + Duration::from_millis(700)));
    }

    #[test]
    fn a_snapshot_goes_through_a_fluxmsg_and_back() {
        let mut snapshot = MetricsSnapshot {
            rack: "edge".into(),
            ts_ms: 42,
            ..MetricsSnapshot::default()
        };
        snapshot.gears.insert(
            "gen".into(),
            GearCounters {
                messages_in: 1,
                messages_out: 2,
                errors: 3,
                dropped: BTreeMap::from([("unwired".into(), 4)]),
            },
        );
        let msg = to_message(METRICS_TYPE, &snapshot).expect("a message");
        let back: Option<MetricsSnapshot> = from_message(METRICS_TYPE, &msg).expect("decodes");
        assert_eq!(back, Some(snapshot));
        let other: Option<HopsBatch> = from_message(HOPS_TYPE, &msg).expect("no error");
        assert_eq!(other, None);
    }
}
