//! [`Context`], what a running gear receives (configuration, name, span, ids, clock, emitter,
//! snake handle, counters, tasks), and [`Services`], what the engine lends every gear.

use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use idgen::Clock;
use snake::Snake;
use tokio::task::JoinSet;
use tracing::Instrument;

use crate::emit::Emitter;
use crate::error::GearError;
use crate::ids::IdSource;
use crate::port::{Availability, OutPort, PortStatus, Ports};
use crate::shutdown::Shutdown;
use crate::stats::Stats;

/// A time since the Unix epoch in nanoseconds, the unit of `FluxMsg::ts` and hop times
/// (saturating at `i64::MAX`, in the year 2262).
pub fn unix_nanos(since_epoch: Duration) -> i64 {
    i64::try_from(since_epoch.as_nanos()).unwrap_or(i64::MAX)
}

/// What the engine lends every gear: ids, time, the transport.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Services {
    /// Message ids.
    pub ids: Arc<dyn IdSource>,
    /// Wall-clock time (a [`ManualClock`](idgen::ManualClock) in tests).
    pub clock: Arc<dyn Clock>,
    /// The snake handle, for gears that keep state in KV or talk to the bus.
    pub snake: Option<Snake>,
    /// How many emissions an active gear may have pending before its tasks wait.
    pub emit_capacity: usize,
}

impl Services {
    /// Services with these ids and this clock, no snake handle, room for 1,024 emissions.
    pub fn new(ids: Arc<dyn IdSource>, clock: Arc<dyn Clock>) -> Services {
        Services {
            ids,
            clock,
            snake: None,
            emit_capacity: 1024,
        }
    }

    /// The same services with a snake handle.
    #[must_use]
    pub fn with_snake(mut self, snake: Snake) -> Services {
        self.snake = Some(snake);
        self
    }

    /// The same services with room for `capacity` pending emissions per active gear.
    #[must_use]
    pub fn with_emit_capacity(mut self, capacity: usize) -> Services {
        self.emit_capacity = capacity;
        self
    }
}

/// What a gear sees of the world: its name, configuration, ports, span, ids, clock, emitter,
/// snake handle, counters, and the tasks it spawned.
pub struct Context {
    name: Arc<str>,
    gear_type: Arc<str>,
    config: Arc<serde_json::Value>,
    span: tracing::Span,
    ports: Arc<Ports>,
    status: Arc<[PortStatus]>,
    availability: Availability,
    services: Services,
    emitter: Emitter,
    stats: Arc<Stats>,
    tasks: JoinSet<()>,
    shutdown: Shutdown,
}

impl fmt::Debug for Context {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Context")
            .field("name", &self.name)
            .field("gear_type", &self.gear_type)
            .field("ports", &self.ports)
            .field("tasks", &self.tasks.len())
            .finish_non_exhaustive()
    }
}

impl Context {
    pub(crate) fn new(
        name: &str,
        gear_type: &str,
        config: serde_json::Value,
        ports: Ports,
        services: Services,
        stats: Arc<Stats>,
        emitter: Emitter,
    ) -> Context {
        let status = ports
            .outputs()
            .iter()
            .map(|_| PortStatus::default())
            .collect();
        Context {
            span: tracing::info_span!("gear", gear = %name, gear_type = %gear_type),
            name: name.into(),
            gear_type: gear_type.into(),
            config: Arc::new(config),
            ports: Arc::new(ports),
            status,
            availability: Availability::new(),
            services,
            emitter,
            stats,
            tasks: JoinSet::new(),
            shutdown: Shutdown::new(),
        }
    }

    /// The gear's name in the scenario.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The gear's type.
    pub fn gear_type(&self) -> &str {
        &self.gear_type
    }

    /// The configuration as written in the scenario (already validated).
    pub fn config(&self) -> &serde_json::Value {
        &self.config
    }

    /// The gear's tracing span (fields `gear` and `gear_type`); its tasks run inside it.
    pub fn span(&self) -> &tracing::Span {
        &self.span
    }

    /// The gear's concrete ports.
    pub fn ports(&self) -> &Ports {
        &self.ports
    }

    /// What the engine knows about where each output port leads.
    pub fn port_status(&self, port: OutPort) -> Option<&PortStatus> {
        self.status.get(port.index())
    }

    /// The status of every output port, in port order (the engine updates them).
    pub fn port_statuses(&self) -> &[PortStatus] {
        &self.status
    }

    /// Whether the gear takes input now: a handle the gear (or its tasks) marks, for
    /// example when its link goes down or comes back. The engine makes the output ports
    /// wired to the gear follow it, so that `route` passes over a gear that is not
    /// available.
    pub fn availability(&self) -> Availability {
        self.availability.clone()
    }

    /// The next message id.
    pub fn next_id(&self) -> Result<fluxmsg::Id, GearError> {
        self.services
            .ids
            .next_id()
            .map_err(|e| GearError::new("id").with_detail(e))
    }

    /// The id source, for tasks that mint ids.
    pub fn ids(&self) -> Arc<dyn IdSource> {
        Arc::clone(&self.services.ids)
    }

    /// The clock, for tasks that read the time.
    pub fn clock(&self) -> Arc<dyn Clock> {
        Arc::clone(&self.services.clock)
    }

    /// The time now, since the Unix epoch.
    pub fn now(&self) -> Duration {
        self.services.clock.now()
    }

    /// The snake handle, if the engine has one.
    pub fn snake(&self) -> Option<&Snake> {
        self.services.snake.as_ref()
    }

    /// An emitter for the gear's own tasks.
    pub fn emitter(&self) -> Emitter {
        self.emitter.clone()
    }

    /// The gear's counters.
    pub fn stats(&self) -> &Arc<Stats> {
        &self.stats
    }

    /// Fires when the gear is drained: tasks stop producing when it does.
    pub fn shutdown(&self) -> Shutdown {
        self.shutdown.clone()
    }

    /// Runs `task` on the runtime, inside the gear's span. It is awaited (then aborted if it
    /// overstays) when the gear drains.
    pub fn spawn<F>(&mut self, task: F)
    where
        F: Future<Output = ()> + Send + 'static,
    {
        self.tasks.spawn(task.instrument(self.span.clone()));
    }

    pub(crate) fn abort_tasks(&mut self) {
        self.shutdown.fire();
        self.tasks.abort_all();
    }

    /// Fires the shutdown signal, waits up to `timeout` for the tasks, aborts the rest.
    /// Returns how many tasks had to be aborted.
    pub(crate) async fn wind_down(&mut self, timeout: Duration) -> usize {
        self.shutdown.fire();
        let gear = Arc::clone(&self.name);
        let all_done = async {
            while let Some(joined) = self.tasks.join_next().await {
                if let Err(e) = joined
                    && e.is_panic()
                {
                    tracing::error!(gear = %gear, "A gear task panicked.");
                }
            }
        };
        if tokio::time::timeout(timeout, all_done).await.is_ok() {
            return 0;
        }
        let left = self.tasks.len();
        self.tasks.abort_all();
        while self.tasks.join_next().await.is_some() {}
        left
    }
}
