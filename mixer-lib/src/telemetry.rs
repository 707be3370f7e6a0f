//! The mixer's side of telemetry: the racks' metric snapshots and sampled hops from
//! `flux.telemetry.>` ([`rack_lib::agent::telemetry`]), kept in memory, rendered as
//! Prometheus text for `/metrics` and as message paths for `GET /api/v1/messages/{id}/path`.
//!
//! Telemetry is at most once and sampled: a path shows the hops the racks chose to send,
//! and the store of paths keeps the most recent messages only ([`Telemetry::start`]'s
//! `max_messages`).

use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::fmt::Write as _;
use std::sync::{Arc, Mutex, PoisonError};

use rack_lib::agent::telemetry::{
    GearCounters, HOPS_TYPE, HopRecord, HopsBatch, METRICS_TYPE, MetricsSnapshot, RackMetrics,
    from_message, prometheus_header as header, prometheus_label as escape, write_prometheus,
};
use snake::{Pattern, Snake};
use tokio::task::JoinHandle;

use crate::store::{RackRecord, RackStatus};

/// One hop of a message's path, as a rack reported it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct PathHop {
    /// The rack.
    pub rack: String,
    /// The gear that sent it.
    pub gear: String,
    /// On which port.
    pub port: String,
    /// When, in Unix nanoseconds.
    pub ts: i64,
    /// Why that port, when the gear said (route rules, failovers).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub decision: Option<String>,
}

#[derive(Debug, Default)]
struct State {
    metrics: HashMap<String, MetricsSnapshot>,
    paths: HashMap<String, Vec<PathHop>>,
    /// Message ids, oldest first, to forget the oldest path at the cap.
    order: VecDeque<String>,
    max_messages: usize,
    /// Telemetry messages taken, and refused by reason.
    received: u64,
    refused: BTreeMap<&'static str, u64>,
}

/// The telemetry the racks sent, in memory; clones share it.
#[derive(Debug, Clone)]
pub struct Telemetry {
    state: Arc<Mutex<State>>,
    task: Option<Arc<JoinHandle<()>>>,
}

impl Telemetry {
    /// An empty store that keeps the paths of at most `max_messages` messages; feed it
    /// with [`Telemetry::ingest`].
    pub fn new(max_messages: usize) -> Telemetry {
        Telemetry {
            state: Arc::new(Mutex::new(State {
                max_messages: max_messages.max(1),
                ..State::default()
            })),
            task: None,
        }
    }

    /// A store fed from `flux.telemetry.>` on `snake` until [`Telemetry::stop`].
    ///
    /// # Errors
    ///
    /// When the subscription fails.
    pub async fn start(snake: &Snake, max_messages: usize) -> Result<Telemetry, snake::Error> {
        let mut sub = snake.subscribe(Pattern::parse("flux.telemetry.>")?).await?;
        let mut telemetry = Telemetry::new(max_messages);
        let feed = telemetry.clone();
        let task = tokio::spawn(async move {
            while let Some(msg) = sub.next().await {
                feed.ingest(&msg.payload);
            }
        });
        telemetry.task = Some(Arc::new(task));
        Ok(telemetry)
    }

    /// Stops taking telemetry from the bus (what was taken stays).
    pub fn stop(&self) {
        if let Some(task) = &self.task {
            task.abort();
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Takes one telemetry message (the encoded fluxMsg); one that does not decode or is of
    /// no known type is counted and dropped.
    pub fn ingest(&self, bytes: &[u8]) {
        let refuse = |reason: &'static str| {
            *self.state().refused.entry(reason).or_insert(0) += 1;
        };
        let Ok(msg) = fluxmsg::Codec::default().decode(bytes) else {
            return refuse("undecodable");
        };
        if let Ok(Some(snapshot)) = from_message::<MetricsSnapshot>(METRICS_TYPE, &msg) {
            if snake::token("rack name", &snapshot.rack).is_err() {
                return refuse("bad_rack_name");
            }
            let mut state = self.state();
            state.received += 1;
            // A snapshot older than the one kept (reordered on the bus) changes nothing.
            let newer = state
                .metrics
                .get(&snapshot.rack)
                .is_none_or(|old| old.ts_ms <= snapshot.ts_ms);
            if newer {
                state.metrics.insert(snapshot.rack.clone(), snapshot);
            }
            return;
        }
        if let Ok(Some(batch)) = from_message::<HopsBatch>(HOPS_TYPE, &msg) {
            let mut state = self.state();
            state.received += 1;
            for hop in batch.hops {
                state.add(&batch.rack, hop);
            }
            return;
        }
        refuse("unknown_type");
    }

    /// The hops of message `id` the racks reported, in time order.
    pub fn path(&self, id: &str) -> Vec<PathHop> {
        let mut hops = self.state().paths.get(id).cloned().unwrap_or_default();
        hops.sort_by_key(|h| h.ts);
        hops
    }

    /// The ids of the `n` most recent messages with reported hops, newest first.
    pub fn recent(&self, n: usize) -> Vec<String> {
        self.state().order.iter().rev().take(n).cloned().collect()
    }

    /// The latest snapshot of every rack that sent one.
    pub fn snapshots(&self) -> Vec<MetricsSnapshot> {
        let mut all: Vec<_> = self.state().metrics.values().cloned().collect();
        all.sort_by(|a, b| a.rack.cmp(&b.rack));
        all
    }

    /// Those of `racks` that sent no snapshot: [`Telemetry::render`] shows their heartbeats'
    /// stats instead.
    pub fn without_snapshot<'a>(&self, racks: &'a [RackRecord]) -> Vec<&'a str> {
        let state = self.state();
        racks
            .iter()
            .filter(|r| !state.metrics.contains_key(&r.name))
            .map(|r| r.name.as_str())
            .collect()
    }

    /// The fleet in the Prometheus text format: per rack and gear the counters of its
    /// latest snapshot (or, for a rack that sent none, of its last heartbeat), racks by
    /// status, and what the mixer and the telemetry refused.
    pub fn render(&self, racks: &[RackRecord], refused: &BTreeMap<&'static str, u64>) -> String {
        let state = self.state();
        let mut out = String::with_capacity(256 + racks.len() * 1024);
        let mut by_status: BTreeMap<&str, u64> = [
            RackStatus::Pending,
            RackStatus::Active,
            RackStatus::Inactive,
            RackStatus::Offline,
            RackStatus::Denied,
        ]
        .iter()
        .map(|s| (s.as_str(), 0))
        .collect();
        for r in racks {
            *by_status.entry(r.status.as_str()).or_insert(0) += 1;
        }
        header(&mut out, "flux_mixer_racks", "gauge", "Racks by status.");
        for (status, n) in &by_status {
            let _ = writeln!(out, "flux_mixer_racks{{status=\"{status}\"}} {n}");
        }
        header(
            &mut out,
            "flux_mixer_refused_total",
            "counter",
            "Hellos, heartbeats and reports the mixer refused or dropped, by reason.",
        );
        for (reason, n) in refused {
            let _ = writeln!(
                out,
                "flux_mixer_refused_total{{reason=\"{}\"}} {n}",
                escape(reason)
            );
        }
        header(
            &mut out,
            "flux_telemetry_received_total",
            "counter",
            "Telemetry messages the mixer took.",
        );
        let _ = writeln!(out, "flux_telemetry_received_total {}", state.received);
        header(
            &mut out,
            "flux_telemetry_refused_total",
            "counter",
            "Telemetry messages the mixer dropped, by reason.",
        );
        for (reason, n) in &state.refused {
            let _ = writeln!(
                out,
                "flux_telemetry_refused_total{{reason=\"{reason}\"}} {n}"
            );
        }
        header(
            &mut out,
            "flux_rack_last_seen_seconds",
            "gauge",
            "When the rack last said hello or heartbeated (Unix seconds).",
        );
        for r in racks {
            let _ = writeln!(
                out,
                "flux_rack_last_seen_seconds{{rack=\"{}\",status=\"{}\"}} {}",
                escape(&r.name),
                r.status.as_str(),
                r.last_seen / 1000
            );
        }
        // Counters per rack and gear: from the snapshot, or else the heartbeat's stats.
        let gears: Vec<RackCounters<'_>> = racks
            .iter()
            .map(|r| match state.metrics.get(&r.name) {
                Some(s) => RackCounters {
                    rack: &r.name,
                    gears: Cow::Borrowed(&s.gears),
                    dropped: Some(&s.telemetry_dropped),
                },
                None => RackCounters {
                    rack: &r.name,
                    gears: Cow::Owned(from_heartbeat(&r.stats)),
                    dropped: None,
                },
            })
            .collect();
        let views: Vec<RackMetrics<'_>> = gears
            .iter()
            .map(|g| RackMetrics {
                rack: g.rack,
                gears: &g.gears,
                telemetry_dropped: g.dropped,
            })
            .collect();
        write_prometheus(&mut out, &views);
        out
    }
}

/// One rack's counters for a render: its snapshot's, or those its heartbeat reported.
struct RackCounters<'a> {
    rack: &'a str,
    gears: Cow<'a, BTreeMap<String, GearCounters>>,
    dropped: Option<&'a BTreeMap<String, u64>>,
}

impl State {
    fn add(&mut self, rack: &str, hop: HopRecord) {
        if !self.paths.contains_key(&hop.id) {
            while self.order.len() >= self.max_messages {
                if let Some(old) = self.order.pop_front() {
                    self.paths.remove(&old);
                }
            }
            self.order.push_back(hop.id.clone());
        }
        let hops = self.paths.entry(hop.id).or_default();
        // A path is bounded as a message's own is (fluxMsg's hop limit).
        if hops.len() < fluxmsg::Limits::default().max_hops() * 4 {
            hops.push(PathHop {
                rack: rack.to_owned(),
                gear: hop.gear,
                port: hop.port,
                ts: hop.ts,
                decision: hop.decision,
            });
        }
    }
}

/// A heartbeat's `stats.gears` as counters.
fn from_heartbeat(stats: &serde_json::Value) -> BTreeMap<String, GearCounters> {
    stats["gears"]
        .as_object()
        .map(|gears| {
            gears
                .iter()
                .map(|(gear, s)| {
                    let n = |k: &str| s[k].as_u64().unwrap_or(0);
                    let dropped = s["dropped"]
                        .as_object()
                        .map(|d| {
                            d.iter()
                                .map(|(r, v)| (r.clone(), v.as_u64().unwrap_or(0)))
                                .collect()
                        })
                        .unwrap_or_default();
                    (
                        gear.clone(),
                        GearCounters {
                            messages_in: n("messages_in"),
                            messages_out: n("messages_out"),
                            errors: n("errors"),
                            dropped,
                        },
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use rack_lib::agent::telemetry::to_message;

    use super::*;

    fn encode<T: serde::Serialize>(kind: &str, payload: &T) -> Vec<u8> {
        let msg = to_message(kind, payload).expect("a message");
        fluxmsg::Codec::default()
            .encode_to_vec(&msg)
            .expect("encodes")
    }

    #[test]
    fn snapshots_and_hops_become_metrics_and_paths() {
        let t = Telemetry::new(2);
        let mut snapshot = MetricsSnapshot {
            rack: "edge".into(),
            ts_ms: 10,
            ..MetricsSnapshot::default()
        };
        snapshot.gears.insert(
            "pick\"x".into(),
            GearCounters {
                messages_in: 5,
                messages_out: 4,
                errors: 1,
                dropped: BTreeMap::from([("unwired".into(), 1)]),
            },
        );
        t.ingest(&encode(METRICS_TYPE, &snapshot));
        // An older snapshot does not replace it.
        let old = MetricsSnapshot {
            rack: "edge".into(),
            ts_ms: 5,
            ..MetricsSnapshot::default()
        };
        t.ingest(&encode(METRICS_TYPE, &old));
        t.ingest(b"\xff not a fluxmsg");
        let hop = |id: &str, gear: &str, ts| HopRecord {
            id: id.into(),
            gear: gear.into(),
            port: "out_visa".into(),
            ts,
            decision: Some("rule 0".into()),
        };
        t.ingest(&encode(
            HOPS_TYPE,
            &HopsBatch {
                rack: "edge".into(),
                hops: vec![
                    hop("1", "b", 20),
                    hop("1", "a", 10),
                    hop("2", "a", 1),
                    hop("3", "a", 1),
                ],
            },
        ));
        // At most two messages' paths: the oldest (1) went.
        assert!(t.path("1").is_empty());
        assert_eq!(t.path("3")[0].decision.as_deref(), Some("rule 0"));
        let mut rack = RackRecord::new("id-1", "edge", String::new(), 1_000);
        rack.status = RackStatus::Active;
        let text = t.render(&[rack], &BTreeMap::from([("rate", 3)]));
        for line in [
            "flux_mixer_racks{status=\"active\"} 1",
            "flux_mixer_refused_total{reason=\"rate\"} 3",
            "flux_gear_messages_in_total{rack=\"edge\",gear=\"pick\\\"x\"} 5",
            "flux_gear_errors_total{rack=\"edge\",gear=\"pick\\\"x\"} 1",
            "flux_gear_messages_dropped_total{rack=\"edge\",gear=\"pick\\\"x\",reason=\"unwired\"} 1",
            "flux_telemetry_refused_total{reason=\"undecodable\"} 1",
            "flux_telemetry_received_total 3",
        ] {
            assert!(text.lines().any(|l| l == line), "{line} not in\n{text}");
        }
    }

    #[test]
    fn a_rack_without_snapshots_shows_its_heartbeat_counters() {
        let t = Telemetry::new(10);
        let mut rack = RackRecord::new("id-1", "core", String::new(), 0);
        rack.stats = serde_json::json!({ "gears": { "out": { "messages_in": 7, "messages_out": 0, "errors": 0, "dropped": {} } } });
        let text = t.render(&[rack], &BTreeMap::new());
        assert!(
            text.contains("flux_gear_messages_in_total{rack=\"core\",gear=\"out\"} 7"),
            "{text}"
        );
    }
}
