//! The in-process store: the mixer's state in a mutex, gone with the process.

use std::collections::BTreeMap;
use std::ops::RangeInclusive;
use std::sync::{Mutex, MutexGuard, PoisonError};

use super::{
    Convergence, Lease, Millis, Put, RackRecord, ScenarioRecord, Store, StoreError, StoreFuture,
};

#[derive(Debug, Default)]
struct State {
    racks: BTreeMap<String, RackRecord>,
    leases: BTreeMap<u16, Lease>,
    scenarios: Vec<ScenarioRecord>,
    active: Option<(String, String)>,
    convergence: BTreeMap<String, Convergence>,
    settings: BTreeMap<String, String>,
}

/// The mixer's state in process: for tests and throwaway mixers.
#[derive(Debug, Default)]
pub struct MemoryStore {
    state: Mutex<State>,
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> MemoryStore {
        MemoryStore::default()
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

fn ready<'a, T: Send + 'a>(value: Result<T, StoreError>) -> StoreFuture<'a, T> {
    Box::pin(std::future::ready(value))
}

impl Store for MemoryStore {
    fn insert_rack<'a>(&'a self, rack: &'a RackRecord) -> StoreFuture<'a, ()> {
        let mut st = self.lock();
        let taken = st
            .racks
            .values()
            .any(|r| r.name == rack.name || r.id == rack.id);
        ready(if taken {
            Err(StoreError::NameTaken(rack.name.clone()))
        } else {
            st.racks.insert(rack.id.clone(), rack.clone());
            Ok(())
        })
    }

    fn update_rack<'a>(&'a self, rack: &'a RackRecord) -> StoreFuture<'a, ()> {
        let mut st = self.lock();
        ready(if !st.racks.contains_key(&rack.id) {
            Err(StoreError::NoRack(rack.id.clone()))
        } else if st
            .racks
            .values()
            .any(|r| r.name == rack.name && r.id != rack.id)
        {
            Err(StoreError::NameTaken(rack.name.clone()))
        } else {
            st.racks.insert(rack.id.clone(), rack.clone());
            Ok(())
        })
    }

    fn rack_by_name<'a>(&'a self, name: &'a str) -> StoreFuture<'a, Option<RackRecord>> {
        ready(Ok(self
            .lock()
            .racks
            .values()
            .find(|r| r.name == name)
            .cloned()))
    }

    fn rack_by_id<'a>(&'a self, id: &'a str) -> StoreFuture<'a, Option<RackRecord>> {
        ready(Ok(self.lock().racks.get(id).cloned()))
    }

    fn racks(&self) -> StoreFuture<'_, Vec<RackRecord>> {
        let mut racks: Vec<RackRecord> = self.lock().racks.values().cloned().collect();
        racks.sort_by(|a, b| a.name.cmp(&b.name));
        ready(Ok(racks))
    }

    fn delete_rack<'a>(&'a self, id: &'a str) -> StoreFuture<'a, bool> {
        let mut st = self.lock();
        let there = st.racks.remove(id).is_some();
        st.leases.retain(|_, l| l.holder != id);
        ready(Ok(there))
    }

    fn acquire_lease<'a>(
        &'a self,
        holder: &'a str,
        range: RangeInclusive<u16>,
        now: Millis,
        ttl: Millis,
    ) -> StoreFuture<'a, Lease> {
        let mut st = self.lock();
        let expires_at = now.saturating_add(ttl);
        if let Some(own) = st
            .leases
            .values_mut()
            .find(|l| l.holder == holder && l.expires_at > now)
        {
            own.expires_at = expires_at;
            return ready(Ok(own.clone()));
        }
        let free = range
            .into_iter()
            .find(|id| st.leases.get(id).is_none_or(|l| l.expires_at <= now));
        ready(match free {
            Some(machine_id) => {
                let lease = Lease {
                    machine_id,
                    holder: holder.to_owned(),
                    expires_at,
                };
                st.leases.insert(machine_id, lease.clone());
                Ok(lease)
            }
            None => Err(StoreError::NoFreeMachineId),
        })
    }

    fn renew_lease<'a>(
        &'a self,
        machine_id: u16,
        holder: &'a str,
        now: Millis,
        ttl: Millis,
    ) -> StoreFuture<'a, bool> {
        let mut st = self.lock();
        ready(Ok(match st.leases.get_mut(&machine_id) {
            Some(l) if l.holder == holder && l.expires_at > now => {
                l.expires_at = now.saturating_add(ttl);
                true
            }
            _ => false,
        }))
    }

    fn release_leases<'a>(&'a self, holder: &'a str) -> StoreFuture<'a, ()> {
        self.lock().leases.retain(|_, l| l.holder != holder);
        ready(Ok(()))
    }

    fn leases(&self) -> StoreFuture<'_, Vec<Lease>> {
        ready(Ok(self.lock().leases.values().cloned().collect()))
    }

    fn put_scenario<'a>(&'a self, scenario: &'a ScenarioRecord) -> StoreFuture<'a, Put> {
        let mut st = self.lock();
        let existing = st
            .scenarios
            .iter()
            .find(|s| s.name == scenario.name && s.version == scenario.version);
        ready(match existing {
            Some(s) if s.hash == scenario.hash => Ok(Put::Unchanged),
            Some(_) => Err(StoreError::VersionExists {
                name: scenario.name.clone(),
                version: scenario.version.clone(),
            }),
            None => {
                st.scenarios.push(scenario.clone());
                Ok(Put::Stored)
            }
        })
    }

    fn scenario<'a>(
        &'a self,
        name: &'a str,
        version: &'a str,
    ) -> StoreFuture<'a, Option<ScenarioRecord>> {
        ready(Ok(self
            .lock()
            .scenarios
            .iter()
            .find(|s| s.name == name && s.version == version)
            .cloned()))
    }

    fn scenario_versions<'a>(&'a self, name: &'a str) -> StoreFuture<'a, Vec<ScenarioRecord>> {
        ready(Ok(self
            .lock()
            .scenarios
            .iter()
            .filter(|s| s.name == name)
            .cloned()
            .collect()))
    }

    fn scenario_names(&self) -> StoreFuture<'_, Vec<String>> {
        let mut names: Vec<String> = self
            .lock()
            .scenarios
            .iter()
            .map(|s| s.name.clone())
            .collect();
        names.sort();
        names.dedup();
        ready(Ok(names))
    }

    fn set_active<'a>(&'a self, name: &'a str, version: &'a str) -> StoreFuture<'a, ()> {
        let mut st = self.lock();
        let there = st
            .scenarios
            .iter()
            .any(|s| s.name == name && s.version == version);
        ready(if there {
            st.active = Some((name.to_owned(), version.to_owned()));
            Ok(())
        } else {
            Err(StoreError::NoScenario {
                name: name.to_owned(),
                version: version.to_owned(),
            })
        })
    }

    fn active(&self) -> StoreFuture<'_, Option<(String, String)>> {
        ready(Ok(self.lock().active.clone()))
    }

    fn put_convergence<'a>(&'a self, row: &'a Convergence) -> StoreFuture<'a, ()> {
        self.lock()
            .convergence
            .insert(row.rack.clone(), row.clone());
        ready(Ok(()))
    }

    fn convergence(&self) -> StoreFuture<'_, Vec<Convergence>> {
        ready(Ok(self.lock().convergence.values().cloned().collect()))
    }

    fn setting<'a>(&'a self, key: &'a str) -> StoreFuture<'a, Option<String>> {
        ready(Ok(self.lock().settings.get(key).cloned()))
    }

    fn set_setting<'a>(&'a self, key: &'a str, value: &'a str) -> StoreFuture<'a, ()> {
        self.lock()
            .settings
            .insert(key.to_owned(), value.to_owned());
        ready(Ok(()))
    }
}
