use crate::engine::PortRef;

/// What the rack refuses.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The scenario does not parse or does not validate; nothing was changed.
    #[error(transparent)]
    Scenario(#[from] crate::scenario::ScenarioError),
    /// A gear cannot be built (unknown type, bad configuration); nothing was changed.
    #[error(transparent)]
    Gear(#[from] gears::Error),
    /// A gear failed to initialise or start.
    #[error(transparent)]
    Lifecycle(#[from] sdk::Error),
    /// Two gears of a graph have the same name.
    #[error("gear {0:?} is defined twice")]
    DuplicateGear(String),
    /// A wire or a tap names a gear the rack does not run.
    #[error("no gear {0:?} in the rack")]
    UnknownGear(String),
    /// A wire or a tap names a port the gear does not have.
    #[error("gear {gear:?} has no {dir} port {port:?} (it has: {known})")]
    UnknownPort {
        /// The gear.
        gear: String,
        /// `input` or `output`.
        dir: &'static str,
        /// The port asked for.
        port: String,
        /// The ports it has.
        known: String,
    },
    /// The transport refused something (a subject with an invalid name, the stream).
    #[error(transparent)]
    Bus(#[from] snake::Error),
    /// The consumer of a guaranteed lane into the rack cannot be created; nothing was
    /// changed.
    #[error("guaranteed lane {lane}: cannot create its consumer")]
    Lane {
        /// `rack.gear.port -> gear.port`.
        lane: String,
        /// What the transport said.
        source: snake::Error,
    },
    /// A [`Plan`](crate::Plan) was committed after the rack changed since it was made; plan
    /// again.
    #[error("the plan is stale: the rack changed since it was made")]
    StalePlan,
    /// No ids could be minted (for the rack's generator or a gear).
    #[error("cannot mint ids for {what}")]
    Ids {
        /// What needed them (`the rack`, `gear "name"`).
        what: String,
        /// Why.
        source: idgen::Error,
    },
    /// The rack is shutting down or gone.
    #[error("the rack is stopped")]
    Stopped,
    /// An injected message could not be queued within the send timeout.
    #[error("{0}: the input queue stayed full for the send timeout")]
    Full(PortRef),
}
