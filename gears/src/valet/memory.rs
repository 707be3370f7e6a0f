//! [`MemoryValet`]: tickets in a hash map, deadlines in a heap, retained replies in a queue.

use std::cmp::Reverse;
use std::collections::hash_map::Entry as MapEntry;
use std::collections::{BinaryHeap, HashMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use fluxmsg::{FluxMsg, Text};

use super::{Clock, Lookup, ReturnContext, Ticket, Valet, ValetError, ValetSettings};

/// The in-memory valet, the default (see the [module docs](super)).
///
/// Every operation costs a hash lookup and, for a new deadline, a heap push: no scan of
/// the tickets. A redeemed ticket's deadline stays in the heap until its time comes or the
/// heap is rebuilt (when it holds twice as many deadlines as keys, and 1,024 more): each
/// entry carries a generation, so a stale one is recognised and skipped. Retained
/// replies expire in the order they were retained (one retention for all), so a queue
/// holds them.
///
/// Tickets are lost if the process dies; [`DurableValet`](super::DurableValet) keeps them.
#[derive(Debug)]
pub struct MemoryValet {
    settings: ValetSettings,
    clock: Arc<dyn Clock>,
    map: HashMap<Arc<str>, Entry>,
    open: usize,
    retained: usize,
    /// Open tickets' deadlines, earliest first.
    deadlines: BinaryHeap<Reverse<(Duration, u64, Arc<str>)>>,
    /// Retained replies, oldest first, with the time they are forgotten.
    closed: VecDeque<(Duration, u64, Arc<str>)>,
    generation: u64,
}

#[derive(Debug)]
enum Entry {
    Open {
        ticket: Ticket,
        generation: u64,
    },
    Closed {
        outcome: FluxMsg,
        until: Duration,
        generation: u64,
    },
}

impl MemoryValet {
    /// An empty valet with these settings, reading the time from `clock`.
    pub fn new(settings: ValetSettings, clock: Arc<dyn Clock>) -> MemoryValet {
        MemoryValet {
            settings,
            clock,
            map: HashMap::new(),
            open: 0,
            retained: 0,
            deadlines: BinaryHeap::new(),
            closed: VecDeque::new(),
            generation: 0,
        }
    }

    /// The settings.
    pub fn settings(&self) -> &ValetSettings {
        &self.settings
    }

    fn next_generation(&mut self) -> u64 {
        self.generation += 1;
        self.generation
    }

    /// Puts back an open ticket read from a store (deadline and all), replacing what the
    /// key held. Not bounded by `max_tickets`: tickets that were open stay open.
    pub(crate) fn restore_open(&mut self, key: &str, ticket: Ticket) {
        self.forget(key);
        let key: Arc<str> = key.into();
        let generation = self.next_generation();
        self.deadlines
            .push(Reverse((ticket.deadline, generation, Arc::clone(&key))));
        self.map.insert(key, Entry::Open { ticket, generation });
        self.open += 1;
    }

    /// Puts back a retained reply read from a store, forgotten at `until`.
    pub(crate) fn restore_closed(&mut self, key: &str, outcome: FluxMsg, until: Duration) {
        self.forget(key);
        let key: Arc<str> = key.into();
        let generation = self.next_generation();
        // Restored replies may come in any order: keep the queue sorted by time.
        let at = self.closed.partition_point(|(t, ..)| *t <= until);
        self.closed
            .insert(at, (until, generation, Arc::clone(&key)));
        self.map.insert(
            key,
            Entry::Closed {
                outcome,
                until,
                generation,
            },
        );
        self.retained += 1;
    }

    /// Removes whatever the key holds (an open ticket or a retained reply).
    pub(crate) fn remove(&mut self, key: &str) {
        self.forget(key);
    }

    /// The retained reply under `key` and when it is forgotten, if any.
    pub(crate) fn lookup_closed(&self, key: &str) -> Option<(&FluxMsg, Duration)> {
        match self.map.get(key) {
            Some(Entry::Closed { outcome, until, .. }) => Some((outcome, *until)),
            _ => None,
        }
    }

    /// Removes whatever the key holds, keeping the counts right.
    fn forget(&mut self, key: &str) {
        match self.map.remove(key) {
            Some(Entry::Open { .. }) => self.open -= 1,
            Some(Entry::Closed { .. }) => self.retained -= 1,
            None => {}
        }
    }

    /// As [`Valet::expire`], also naming the retained replies it forgot.
    pub(crate) fn expire_into(
        &mut self,
        due: &mut Vec<(Arc<str>, Ticket)>,
        forgotten: &mut Vec<Arc<str>>,
    ) {
        let now = self.clock.now();
        while let Some(Reverse((deadline, generation, _))) = self.deadlines.peek() {
            if *deadline > now {
                break;
            }
            let generation = *generation;
            let Some(Reverse((_, _, key))) = self.deadlines.pop() else {
                break;
            };
            if let MapEntry::Occupied(slot) = self.map.entry(Arc::clone(&key))
                && matches!(slot.get(), Entry::Open { generation: g, .. } if *g == generation)
                && let Entry::Open { ticket, .. } = slot.remove()
            {
                self.open -= 1;
                due.push((key, ticket));
            }
        }
        while let Some((until, generation, _)) = self.closed.front() {
            if *until > now {
                break;
            }
            let generation = *generation;
            let Some((_, _, key)) = self.closed.pop_front() else {
                break;
            };
            if self.remove_closed(&key, generation) {
                forgotten.push(key);
            }
        }
        self.compact();
    }

    /// Redeemed tickets leave their deadlines behind: rebuilds the heap when they
    /// dominate, so that it holds at most twice as many deadlines as keys (and 1,024 more).
    /// A rebuild walks the keys once and comes after at least as many pushes: amortised, a
    /// constant cost per ticket.
    fn compact(&mut self) {
        if self.deadlines.len() <= 2 * self.map.len() + 1024 {
            return;
        }
        self.deadlines = self
            .map
            .iter()
            .filter_map(|(key, entry)| match entry {
                Entry::Open { ticket, generation } => {
                    Some(Reverse((ticket.deadline, *generation, Arc::clone(key))))
                }
                Entry::Closed { .. } => None,
            })
            .collect();
    }

    /// Removes the retained reply under `key` if it is the one of `generation`.
    fn remove_closed(&mut self, key: &str, generation: u64) -> bool {
        let current = matches!(
            self.map.get(key),
            Some(Entry::Closed { generation: g, .. }) if *g == generation
        );
        if current {
            self.map.remove(key);
            self.retained -= 1;
        }
        current
    }

    /// Forgets the oldest retained replies beyond `max_tickets`; returns their keys.
    pub(crate) fn evict_into(&mut self, forgotten: &mut Vec<Arc<str>>) {
        while self.retained > self.settings.max_tickets {
            let Some((_, generation, key)) = self.closed.pop_front() else {
                break;
            };
            if self.remove_closed(&key, generation) {
                forgotten.push(key);
            }
        }
    }

    /// The open ticket under `key`, if any.
    pub(crate) fn open_ticket(&self, key: &str) -> Option<&Ticket> {
        match self.map.get(key) {
            Some(Entry::Open { ticket, .. }) => Some(ticket),
            _ => None,
        }
    }
}

impl MemoryValet {
    /// As [`Valet::redeem`], also naming the retained replies evicted to make room.
    pub(crate) fn redeem_into(
        &mut self,
        key: &str,
        outcome: FluxMsg,
        forgotten: &mut Vec<Arc<str>>,
    ) -> Option<Ticket> {
        if !matches!(self.map.get(key), Some(Entry::Open { .. })) {
            return None;
        }
        // The stored key is kept for the retained reply: no new allocation per reply.
        let Some((key, Entry::Open { ticket, .. })) = self.map.remove_entry(key) else {
            return None;
        };
        self.open -= 1;
        if self.settings.retain_after_close > Duration::ZERO {
            let until = self
                .clock
                .now()
                .saturating_add(self.settings.retain_after_close);
            let generation = self.next_generation();
            self.closed.push_back((until, generation, Arc::clone(&key)));
            self.map.insert(
                key,
                Entry::Closed {
                    outcome,
                    until,
                    generation,
                },
            );
            self.retained += 1;
            self.evict_into(forgotten);
        }
        Some(ticket)
    }
}

impl Valet for MemoryValet {
    fn lookup(&self, key: &str) -> Lookup<'_> {
        match self.map.get(key) {
            None => Lookup::Absent,
            Some(Entry::Open { ticket, .. }) => Lookup::Open(ticket),
            Some(Entry::Closed { outcome, until, .. }) => {
                if *until > self.clock.now() {
                    Lookup::Closed(outcome)
                } else {
                    Lookup::Absent
                }
            }
        }
    }

    fn park(&mut self, key: &str, request: FluxMsg, port: Text) -> Result<&Ticket, ValetError> {
        if matches!(self.map.get(key), Some(Entry::Open { .. })) {
            return Err(ValetError::AlreadyOpen);
        }
        if self.open >= self.settings.max_tickets {
            return Err(ValetError::Full(self.settings.max_tickets));
        }
        self.forget(key);
        self.compact();
        let deadline = self.clock.now().saturating_add(self.settings.default_ttl);
        let generation = self.next_generation();
        let key: Arc<str> = key.into();
        self.deadlines
            .push(Reverse((deadline, generation, Arc::clone(&key))));
        self.open += 1;
        let ticket = Ticket {
            request,
            port,
            deadline,
            attached: Vec::new(),
            gone: None,
        };
        match self.map.entry(key) {
            MapEntry::Vacant(slot) => match slot.insert(Entry::Open { ticket, generation }) {
                Entry::Open { ticket, .. } => Ok(ticket),
                Entry::Closed { .. } => Err(ValetError::AlreadyOpen),
            },
            // `forget` emptied it.
            MapEntry::Occupied(_) => Err(ValetError::AlreadyOpen),
        }
    }

    fn attach(&mut self, key: &str, requester: ReturnContext) -> bool {
        match self.map.get_mut(key) {
            Some(Entry::Open { ticket, .. }) => {
                ticket.attached.push(requester);
                true
            }
            _ => false,
        }
    }

    fn redeem(&mut self, key: &str, outcome: FluxMsg) -> Option<Ticket> {
        let mut forgotten = Vec::new();
        self.redeem_into(key, outcome, &mut forgotten)
    }

    fn release(&mut self, key: &str) -> Option<Ticket> {
        if !matches!(self.map.get(key), Some(Entry::Open { .. })) {
            return None;
        }
        match self.map.remove(key) {
            Some(Entry::Open { ticket, .. }) => {
                self.open -= 1;
                Some(ticket)
            }
            _ => None,
        }
    }

    fn expire(&mut self, due: &mut Vec<(Arc<str>, Ticket)>) {
        let mut forgotten = Vec::new();
        self.expire_into(due, &mut forgotten);
    }

    fn next_deadline(&self) -> Option<Duration> {
        let open = self.deadlines.peek().map(|Reverse((d, ..))| *d);
        let retained = self.closed.front().map(|(until, ..)| *until);
        match (open, retained) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    fn open_tickets(&self) -> usize {
        self.open
    }

    fn retained(&self) -> usize {
        self.retained
    }

    fn for_each_open(&self, f: &mut dyn FnMut(&Ticket)) {
        for entry in self.map.values() {
            if let Entry::Open { ticket, .. } = entry {
                f(ticket);
            }
        }
    }

    fn release_all(&mut self, due: &mut Vec<(Arc<str>, Ticket)>) {
        let keys: Vec<Arc<str>> = self
            .map
            .iter()
            .filter(|(_, e)| matches!(e, Entry::Open { .. }))
            .map(|(k, _)| Arc::clone(k))
            .collect();
        for key in keys {
            if let Some(Entry::Open { ticket, .. }) = self.map.remove(&key) {
                self.open -= 1;
                due.push((key, ticket));
            }
        }
        self.deadlines.clear();
    }

    fn set_settings(&mut self, settings: ValetSettings) {
        self.settings = settings;
    }
}
