//! Ports: [`PortName`], the resolved [`InPort`] and [`OutPort`] indices, and a gear's
//! [`Ports`] with their status.

use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex, OnceLock, PoisonError, Weak};

use crate::error::{ConfigError, Error};
use crate::manifest::{Direction, Manifest};

/// The output port every gear has, where refused and failed messages go.
pub const ERROR_PORT: &str = "error";

/// A validated port name: 1 to 64 bytes of `a-z`, `0-9`, `_` and `-` (never a dot).
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PortName(Arc<str>);

impl PortName {
    /// Checks `name` against the naming rule.
    pub fn new(name: &str) -> Result<PortName, Error> {
        if PortName::is_valid(name) {
            Ok(PortName(name.into()))
        } else {
            Err(Error::PortName(name.to_owned()))
        }
    }

    /// Whether `name` follows the naming rule.
    pub fn is_valid(name: &str) -> bool {
        !name.is_empty()
            && name.len() <= 64
            && name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-')
    }

    /// The name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for PortName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&*self.0, f)
    }
}

impl fmt::Display for PortName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// An input port of one gear, resolved from its name once, when the gear is built (see
/// [`Ports::resolve_input`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct InPort(pub(crate) u16);

/// An output port of one gear, resolved from its name once, when the gear is built (see
/// [`Ports::resolve_output`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct OutPort(pub(crate) u16);

impl OutPort {
    /// The `error` port, which every gear has.
    pub const ERROR: OutPort = OutPort(0);

    /// The output port at `index` of its gear's [`Ports::outputs`], for engines that keep
    /// ports by position. Gears resolve ports by name with [`Ports::resolve_output`].
    pub const fn from_index(index: u16) -> OutPort {
        OutPort(index)
    }

    /// The port's position in its gear's [`Ports::outputs`].
    pub fn index(self) -> usize {
        usize::from(self.0)
    }
}

impl InPort {
    /// The input port at `index` of its gear's [`Ports::inputs`], for engines that keep
    /// ports by position. Gears resolve ports by name with [`Ports::resolve_input`].
    pub const fn from_index(index: u16) -> InPort {
        InPort(index)
    }

    /// The port's position in its gear's [`Ports::inputs`].
    pub fn index(self) -> usize {
        usize::from(self.0)
    }
}

/// The concrete ports of one configured gear: the fixed ports of its manifest plus the
/// dynamic ones its configuration asks for. Output 0 is always `error`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ports {
    inputs: Vec<PortName>,
    outputs: Vec<PortName>,
}

impl Ports {
    /// The fixed ports of `manifest`.
    pub fn fixed(manifest: &Manifest) -> Ports {
        let mut ports = Ports {
            inputs: Vec::new(),
            outputs: vec![PortName(ERROR_PORT.into())],
        };
        for name in manifest.fixed_ports(Direction::Input) {
            ports.push(Direction::Input, PortName(name.into()));
        }
        for name in manifest.fixed_ports(Direction::Output) {
            ports.push(Direction::Output, PortName(name.into()));
        }
        ports
    }

    /// Adds a port (no effect if it is already there).
    pub fn push(&mut self, dir: Direction, name: PortName) {
        let list = match dir {
            Direction::Input => &mut self.inputs,
            Direction::Output => &mut self.outputs,
        };
        if !list.contains(&name) {
            list.push(name);
        }
    }

    /// Adds a port by name, checked against the naming rule.
    pub fn with(mut self, dir: Direction, name: &str) -> Result<Ports, Error> {
        self.push(dir, PortName::new(name)?);
        Ok(self)
    }

    /// The input ports, in order.
    pub fn inputs(&self) -> &[PortName] {
        &self.inputs
    }

    /// The output ports, in order; the first is `error`.
    pub fn outputs(&self) -> &[PortName] {
        &self.outputs
    }

    /// The input port called `name`.
    pub fn input(&self, name: &str) -> Option<InPort> {
        position(&self.inputs, name).map(InPort)
    }

    /// The output port called `name`.
    pub fn output(&self, name: &str) -> Option<OutPort> {
        position(&self.outputs, name).map(OutPort)
    }

    /// The input port called `name`, for a gear's constructor
    /// ([`GearType::new`](crate::GearType::new)).
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] naming the missing port and the input ports the gear has: the gear is
    /// refused before anything runs.
    pub fn resolve_input(&self, name: &str) -> Result<InPort, ConfigError> {
        self.input(name)
            .ok_or_else(|| ConfigError::field("", self.missing(Direction::Input, name)))
    }

    /// The output port called `name`, for a gear's constructor
    /// ([`GearType::new`](crate::GearType::new)).
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] naming the missing port and the output ports the gear has: the gear is
    /// refused before anything runs.
    pub fn resolve_output(&self, name: &str) -> Result<OutPort, ConfigError> {
        self.output(name)
            .ok_or_else(|| ConfigError::field("", self.missing(Direction::Output, name)))
    }

    /// Why `name` cannot be resolved: `no output port "x" (it has: error, out)`.
    pub(crate) fn missing(&self, dir: Direction, name: &str) -> String {
        let (dir, list) = match dir {
            Direction::Input => ("input", &self.inputs),
            Direction::Output => ("output", &self.outputs),
        };
        if list.is_empty() {
            return format!("no {dir} port {name:?} (it has no {dir} ports)");
        }
        let known: Vec<&str> = list.iter().map(PortName::as_str).collect();
        format!("no {dir} port {name:?} (it has: {})", known.join(", "))
    }

    /// The name of an input port of this gear.
    pub fn input_name(&self, port: InPort) -> Option<&PortName> {
        self.inputs.get(port.index())
    }

    /// The name of an output port of this gear.
    pub fn output_name(&self, port: OutPort) -> Option<&PortName> {
        self.outputs.get(port.index())
    }
}

fn position(list: &[PortName], name: &str) -> Option<u16> {
    list.iter()
        .position(|p| p.as_str() == name)
        .and_then(|i| u16::try_from(i).ok())
}

/// What the engine knows about where an output port leads, for gears that choose between
/// ports (`route` destinations): whether it is available and how loaded it is.
///
/// A port is available when it is not marked unavailable ([`PortStatus::set_available`])
/// and every gear it is wired to takes input ([`PortStatus::follow`], which the engine
/// calls with the [`Availability`] of each gear the port leads to). The engine (or the
/// test harness) updates it; gears read it without a lock.
#[derive(Debug)]
pub struct PortStatus {
    available: AtomicBool,
    load: AtomicU32,
    /// The gears the port leads to, once the engine said which.
    targets: OnceLock<Arc<Targets>>,
}

impl Default for PortStatus {
    fn default() -> PortStatus {
        PortStatus::new_const()
    }
}

impl PortStatus {
    pub(crate) const fn new_const() -> PortStatus {
        PortStatus {
            available: AtomicBool::new(true),
            load: AtomicU32::new(0),
            targets: OnceLock::new(),
        }
    }

    /// Whether the port leads somewhere that can take messages now.
    pub fn is_available(&self) -> bool {
        self.available.load(Ordering::Relaxed)
            && self
                .targets
                .get()
                .is_none_or(|t| t.all_available.load(Ordering::Relaxed))
    }

    /// How many messages are in flight towards the port's destination.
    pub fn load(&self) -> u32 {
        self.load.load(Ordering::Relaxed)
    }

    /// Marks the port available or not (whatever the gears it leads to say).
    pub fn set_available(&self, available: bool) {
        self.available.store(available, Ordering::Relaxed);
    }

    /// Sets the number of messages in flight.
    pub fn set_load(&self, load: u32) {
        self.load.store(load, Ordering::Relaxed);
    }

    /// Makes the port follow the availability of the gears it leads to (replacing those
    /// it followed before): it is available only while every one of them is. The engine
    /// calls it whenever it points the port somewhere; a gear has no reason to.
    pub fn follow(&self, targets: Vec<Availability>) {
        let follow = self.targets.get_or_init(|| {
            Arc::new(Targets {
                list: Mutex::new(Vec::new()),
                all_available: AtomicBool::new(true),
            })
        });
        for target in &targets {
            target.watch(follow);
        }
        *follow.list.lock().unwrap_or_else(PoisonError::into_inner) = targets;
        follow.refresh();
    }
}

/// The gears one output port leads to, and whether all of them take input.
#[derive(Debug)]
struct Targets {
    list: Mutex<Vec<Availability>>,
    all_available: AtomicBool,
}

impl Targets {
    /// Reads every target's flag again; under the lock, so that the last refresh after a
    /// change sees that change.
    fn refresh(&self) {
        let list = self.list.lock().unwrap_or_else(PoisonError::into_inner);
        let all = list.iter().all(Availability::is_available);
        self.all_available.store(all, Ordering::Relaxed);
    }
}

/// Whether a gear takes input now, as the gear says: an I/O client whose link is down is not
/// available. A gear marks itself through [`Context::availability`](crate::Context); the
/// engine makes every output port wired to the gear follow it ([`PortStatus::follow`]), so
/// that a `route` failover tree passes over a gear whose link is down.
///
/// A cheap handle: clones share one flag. A gear is available until it says otherwise.
#[derive(Debug, Clone, Default)]
pub struct Availability(Arc<AvailabilityInner>);

#[derive(Debug)]
struct AvailabilityInner {
    available: AtomicBool,
    /// The ports that follow this gear (dropped ones are pruned as they are seen).
    watchers: Mutex<Vec<Weak<Targets>>>,
}

impl Default for AvailabilityInner {
    fn default() -> AvailabilityInner {
        AvailabilityInner {
            available: AtomicBool::new(true),
            watchers: Mutex::new(Vec::new()),
        }
    }
}

impl Availability {
    /// A new flag, available.
    pub fn new() -> Availability {
        Availability::default()
    }

    /// Whether the gear takes input now.
    pub fn is_available(&self) -> bool {
        self.0.available.load(Ordering::Relaxed)
    }

    /// Marks the gear available or not; every port that follows it sees the change before
    /// this returns.
    pub fn set_available(&self, available: bool) {
        if self.0.available.swap(available, Ordering::Relaxed) == available {
            return;
        }
        let watchers: Vec<Arc<Targets>> = {
            let mut list = self
                .0
                .watchers
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            list.retain(|w| w.strong_count() > 0);
            list.iter().filter_map(Weak::upgrade).collect()
        };
        for targets in watchers {
            targets.refresh();
        }
    }

    fn watch(&self, targets: &Arc<Targets>) {
        let mut list = self
            .0
            .watchers
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        list.retain(|w| w.strong_count() > 0);
        if !list
            .iter()
            .any(|w| std::ptr::eq(w.as_ptr(), Arc::as_ptr(targets)))
        {
            list.push(Arc::downgrade(targets));
        }
    }
}

#[cfg(test)]
mod availability_tests {
    use super::{Availability, PortStatus};

    #[test]
    fn a_port_follows_every_gear_it_leads_to() {
        let (a, b) = (Availability::new(), Availability::new());
        let port = PortStatus::default();
        port.follow(vec![a.clone(), b.clone()]);
        assert!(port.is_available());
        b.set_available(false);
        assert!(!port.is_available(), "one target down");
        b.set_available(true);
        assert!(port.is_available());
        // Re-pointed at `a` alone: `b` no longer matters.
        port.follow(vec![a.clone()]);
        b.set_available(false);
        assert!(port.is_available());
        a.set_available(false);
        assert!(!port.is_available());
        // The port's own mark still counts.
        a.set_available(true);
        port.set_available(false);
        assert!(!port.is_available());
    }
}
