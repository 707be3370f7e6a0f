//! The valet: the ticket store behind the `conductor` gear.
//!
//! A **ticket** is a request waiting for its reply: the request as it arrived (its return
//! context, its parked fields), the destination port it went out on, its deadline, and the
//! return contexts of the retransmissions attached to it. The valet keeps tickets by
//! correlation key through their life:
//!
//! | operation | what it does |
//! | --- | --- |
//! | [`park`](Valet::park) | opens a ticket (refused with [`ValetError::Full`] at `max_tickets`) |
//! | [`attach`](Valet::attach) | adds a retransmission's requester to an open ticket |
//! | [`redeem`](Valet::redeem) | closes an open ticket with its reply, which is retained for `retain_after_close` so that a late retransmission is answered at once |
//! | [`expire`](Valet::expire) | removes the open tickets whose deadline passed (handed back) and forgets retained replies past their time |
//! | [`release`](Valet::release) | removes an open ticket without a reply |
//! | [`release_all`](Valet::release_all) | removes every open ticket without a reply (when the gear stops) |
//! | [`lookup`](Valet::lookup) | open, closed (with the retained reply) or absent |
//!
//! Time comes from a pluggable [`Clock`] (a [`ManualClock`](sdk::ManualClock) in tests).
//!
//! Two stores implement it: [`MemoryValet`] (the default: a hash map and a deadline heap, no
//! scan per message; tickets are lost if the process dies) and [`DurableValet`] (the same in
//! memory, written behind to a snake KV bucket so that open tickets and retained replies
//! survive a rack restart).
//!
//! ```
//! use std::sync::Arc;
//! use std::time::Duration;
//! use fluxmsg::FluxMsg;
//! use gears::valet::{Lookup, MemoryValet, Valet, ValetSettings};
//!
//! let clock = sdk::ManualClock::from_unix_secs(1_767_225_600);
//! let settings = ValetSettings::new(Duration::from_secs(30), Duration::from_secs(5), 1000);
//! let mut valet = MemoryValet::new(settings, Arc::new(clock.clone()));
//! valet.park("k1", FluxMsg::new(), "out_visa".into()).expect("room");
//! assert!(matches!(valet.lookup("k1"), Lookup::Open(_)));
//! let ticket = valet.redeem("k1", FluxMsg::new()).expect("open");
//! assert_eq!(ticket.port, "out_visa");
//! assert!(matches!(valet.lookup("k1"), Lookup::Closed(_)));
//! clock.advance(Duration::from_secs(6));
//! let mut due = Vec::new();
//! valet.expire(&mut due);
//! assert!(due.is_empty());
//! assert!(matches!(valet.lookup("k1"), Lookup::Absent));
//! ```

mod durable;
mod memory;

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use fluxmsg::{FluxMsg, Text};

pub use self::durable::{DurableError, DurableValet, FINAL_FLUSH, ValetWriter};
pub use self::memory::MemoryValet;
pub use sdk::Clock;

/// A requester's return context: the metadata that routes a reply back to it (`conn.id`
/// and the like), as `(key, value)` pairs in a fixed order.
pub type ReturnContext = Vec<(Text, Text)>;

/// A request waiting for its reply.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct Ticket {
    /// The request as it arrived: what goes to `error` when the ticket expires, and where
    /// the reply's return context and parked fields come from.
    pub request: FluxMsg,
    /// The output port the request went out on.
    pub port: Text,
    /// When the ticket expires, since the Unix epoch.
    pub deadline: Duration,
    /// The return contexts of retransmissions from other requesters, in arrival order.
    pub attached: Vec<ReturnContext>,
    /// For a ticket read back from a store written by an earlier process: how many of
    /// `attached` (the first ones) came with it. Those requesters and the request's own are
    /// gone (their connections ended with that process, and a connection id may name
    /// another one now); `None` when every requester is live.
    pub gone: Option<usize>,
}

/// What the valet knows about a key.
#[derive(Debug)]
pub enum Lookup<'a> {
    /// No ticket, and no retained reply.
    Absent,
    /// An open ticket.
    Open(&'a Ticket),
    /// A ticket closed recently: its reply, retained for replay.
    Closed(&'a FluxMsg),
}

/// Why the valet refused a ticket.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ValetError {
    /// It holds `max_tickets` open tickets.
    #[error("the valet holds its maximum of {0} open tickets")]
    Full(usize),
    /// A ticket is already open under the key (attach to it instead).
    #[error("a ticket is already open under this key")]
    AlreadyOpen,
    /// The store cannot hold a key this long (the durable store: its KV keys are bounded);
    /// the most bytes it takes.
    #[error("the correlation key is longer than the {0} bytes the store takes")]
    KeyTooLong(usize),
}

/// How long tickets live and how many there may be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct ValetSettings {
    /// How long a ticket waits for its reply.
    pub default_ttl: Duration,
    /// How long a reply is retained after its ticket closed.
    pub retain_after_close: Duration,
    /// The most open tickets; as many retained replies are kept at most (the oldest go
    /// first).
    pub max_tickets: usize,
}

impl ValetSettings {
    /// Settings with these values.
    pub fn new(default_ttl: Duration, retain_after_close: Duration, max_tickets: usize) -> Self {
        ValetSettings {
            default_ttl,
            retain_after_close,
            max_tickets,
        }
    }
}

/// A ticket store (see the [module docs](self)). Implementations read the time from their
/// clock.
pub trait Valet: Send + fmt::Debug {
    /// What the valet knows about `key` now.
    fn lookup(&self, key: &str) -> Lookup<'_>;

    /// Opens a ticket for `request`, sent on `port`, expiring `default_ttl` from now; a
    /// retained reply under the same key is forgotten.
    ///
    /// # Errors
    ///
    /// [`ValetError::Full`] at `max_tickets` open tickets; [`ValetError::AlreadyOpen`];
    /// [`ValetError::KeyTooLong`] for a key the store cannot hold.
    fn park(&mut self, key: &str, request: FluxMsg, port: Text) -> Result<&Ticket, ValetError>;

    /// Attaches a retransmission's requester to the open ticket under `key`; `false` when
    /// none is open.
    fn attach(&mut self, key: &str, requester: ReturnContext) -> bool;

    /// Closes the open ticket under `key` with its reply, `outcome`, retained for replay;
    /// returns the ticket, or `None` when none is open (the reply is not retained then).
    fn redeem(&mut self, key: &str, outcome: FluxMsg) -> Option<Ticket>;

    /// Removes the open ticket under `key` without a reply.
    fn release(&mut self, key: &str) -> Option<Ticket>;

    /// Moves the open tickets whose deadline passed into `due` (with their keys), and
    /// forgets the retained replies past their time.
    fn expire(&mut self, due: &mut Vec<(Arc<str>, Ticket)>);

    /// When [`expire`](Valet::expire) has work next: the earliest deadline of an open ticket
    /// (it may be one already redeemed) or time a retained reply is forgotten, if any.
    fn next_deadline(&self) -> Option<Duration>;

    /// How many tickets are open.
    fn open_tickets(&self) -> usize;

    /// How many replies are retained.
    fn retained(&self) -> usize;

    /// Calls `f` with every open ticket (to rebuild per-port counts after a restart).
    fn for_each_open(&self, f: &mut dyn FnMut(&Ticket));

    /// Removes every open ticket without a reply, into `due` (with their keys): what a
    /// store that does not outlive the gear hands back when the gear stops.
    fn release_all(&mut self, due: &mut Vec<(Arc<str>, Ticket)>);

    /// Replaces the settings (a reloaded gear's, for the valet it takes over); they apply
    /// to tickets opened and replies retained from now on.
    fn set_settings(&mut self, settings: ValetSettings);
}

/// The default time-to-live of a ticket: one minute, as the reference.
pub const DEFAULT_TTL: Duration = Duration::from_secs(60);
/// The default retention of a reply after its ticket closed: five seconds.
pub const DEFAULT_RETAIN: Duration = Duration::from_secs(5);
/// The default bound on open tickets.
pub const DEFAULT_MAX_TICKETS: usize = 100_000;

impl Default for ValetSettings {
    fn default() -> Self {
        ValetSettings::new(DEFAULT_TTL, DEFAULT_RETAIN, DEFAULT_MAX_TICKETS)
    }
}
