//! Building a [`Rack`]: its name, gear catalog, transport, ids, clock and limits.

use std::collections::BTreeMap;
use std::sync::Arc;

use gears::Factory;
use sdk::{Clock, IdSource, Services};
use snake::Snake;

use super::{Graph, HopSampler, Limits, Rack};
use crate::error::Error;

/// Builds a [`Rack`].
#[derive(Debug)]
pub struct RackBuilder {
    name: String,
    factory: Factory,
    snake: Option<Snake>,
    ids: Option<Arc<dyn IdSource>>,
    clock: Option<Arc<dyn Clock>>,
    limits: Limits,
    sampler: Option<HopSampler>,
}

impl RackBuilder {
    /// A rack called `name` with the built-in gear catalog, an in-process snake, ids from a
    /// generator on this host's machine id, the system clock and default limits.
    pub fn new(name: &str) -> RackBuilder {
        RackBuilder {
            name: name.to_owned(),
            factory: Factory::builtin(),
            snake: None,
            ids: None,
            clock: None,
            limits: Limits::default(),
            sampler: None,
        }
    }

    /// The gear factory (for example the built-in one plus your own gears).
    #[must_use]
    pub fn factory(mut self, factory: Factory) -> RackBuilder {
        self.factory = factory;
        self
    }

    /// The snake handle gears get.
    #[must_use]
    pub fn snake(mut self, snake: Snake) -> RackBuilder {
        self.snake = Some(snake);
        self
    }

    /// The id source for messages and gear ids.
    #[must_use]
    pub fn ids(mut self, ids: Arc<dyn IdSource>) -> RackBuilder {
        self.ids = Some(ids);
        self
    }

    /// The clock.
    #[must_use]
    pub fn clock(mut self, clock: Arc<dyn Clock>) -> RackBuilder {
        self.clock = Some(clock);
        self
    }

    /// The limits.
    #[must_use]
    pub fn limits(mut self, limits: Limits) -> RackBuilder {
        self.limits = limits;
        self
    }

    /// Samples the hops of the rack's messages into `sampler` (telemetry for message paths).
    #[must_use]
    pub fn hop_sampler(mut self, sampler: HopSampler) -> RackBuilder {
        self.sampler = Some(sampler);
        self
    }

    /// The rack, running nothing yet.
    ///
    /// # Errors
    ///
    /// When no id generator can be made for this host.
    pub fn build(self) -> Result<Rack, Error> {
        let clock = self.clock.unwrap_or_else(|| Arc::new(idgen::SystemClock));
        let ids = match self.ids {
            Some(ids) => ids,
            None => default_ids()?,
        };
        let services = Services::new(ids, clock)
            .with_snake(self.snake.unwrap_or_else(Snake::memory))
            .with_emit_capacity(self.limits.queue);
        Ok(Rack {
            name: self.name,
            factory: self.factory,
            services,
            limits: self.limits,
            nodes: BTreeMap::new(),
            graph: Graph::new(),
            taps: Vec::new(),
            publishers: BTreeMap::new(),
            subscribers: BTreeMap::new(),
            retiring: Arc::default(),
            in_flight: Arc::default(),
            ackers: Vec::new(),
            generation: 0,
            sampler: self.sampler,
        })
    }
}

fn default_ids() -> Result<Arc<dyn IdSource>, Error> {
    let generator = idgen::Generator::builder()
        .machine_id_from_host()
        .build()
        .or_else(|_| idgen::Generator::builder().machine_id(1).build())
        .map_err(|source| Error::Ids {
            what: "the rack".to_owned(),
            source,
        })?;
    Ok(Arc::new(generator))
}
