//! The in-process store: the mixer's state in a mutex, gone with the process.
//!
//! Racks are kept by name (so the list comes sorted) behind `Arc`s, with an index by id:
//! reading the whole fleet clones pointers under the mutex and the records after it, so a
//! listing of 10,000 racks does not hold up the heartbeats meanwhile.

use std::collections::{BTreeMap, HashMap};
use std::ops::RangeInclusive;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use super::{
    Convergence, Lease, Millis, Put, RackRecord, RackStatus, ScenarioRecord, Seen, Store,
    StoreError, StoreFuture,
};

#[derive(Debug, Default)]
struct State {
    /// By name.
    racks: BTreeMap<String, Arc<RackRecord>>,
    /// Id to name.
    names: HashMap<String, String>,
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
        ready(
            if st.racks.contains_key(&rack.name) || st.names.contains_key(&rack.id) {
                Err(StoreError::NameTaken(rack.name.clone()))
            } else {
                st.names.insert(rack.id.clone(), rack.name.clone());
                st.racks.insert(rack.name.clone(), Arc::new(rack.clone()));
                Ok(())
            },
        )
    }

    fn update_rack<'a>(&'a self, rack: &'a RackRecord) -> StoreFuture<'a, ()> {
        let mut st = self.lock();
        let Some(old) = st.names.get(&rack.id).cloned() else {
            return ready(Err(StoreError::NoRack(rack.id.clone())));
        };
        if old != rack.name {
            if st.racks.contains_key(&rack.name) {
                return ready(Err(StoreError::NameTaken(rack.name.clone())));
            }
            st.racks.remove(&old);
            st.names.insert(rack.id.clone(), rack.name.clone());
        }
        st.racks.insert(rack.name.clone(), Arc::new(rack.clone()));
        ready(Ok(()))
    }

    fn rack_by_name<'a>(&'a self, name: &'a str) -> StoreFuture<'a, Option<RackRecord>> {
        let found = self.lock().racks.get(name).cloned();
        ready(Ok(found.map(Arc::unwrap_or_clone)))
    }

    fn rack_by_id<'a>(&'a self, id: &'a str) -> StoreFuture<'a, Option<RackRecord>> {
        let found = {
            let st = self.lock();
            st.names
                .get(id)
                .and_then(|name| st.racks.get(name))
                .cloned()
        };
        ready(Ok(found.map(Arc::unwrap_or_clone)))
    }

    fn racks(&self) -> StoreFuture<'_, Vec<RackRecord>> {
        // Pointers under the lock, copies after it.
        let racks: Vec<Arc<RackRecord>> = self.lock().racks.values().cloned().collect();
        ready(Ok(racks.into_iter().map(Arc::unwrap_or_clone).collect()))
    }

    fn rack_list(&self) -> StoreFuture<'_, Vec<RackRecord>> {
        let racks: Vec<Arc<RackRecord>> = self.lock().racks.values().cloned().collect();
        ready(Ok(racks
            .iter()
            .map(|r| RackRecord {
                id: r.id.clone(),
                name: r.name.clone(),
                machine_id: r.machine_id,
                labels: r.labels.clone(),
                secret_hash: String::new(),
                status: r.status,
                first_seen: r.first_seen,
                last_seen: r.last_seen,
                ip: r.ip.clone(),
                version: r.version.clone(),
                applied_hash: r.applied_hash.clone(),
                health: r.health.clone(),
                stats: serde_json::Value::Null,
            })
            .collect()))
    }

    fn delete_rack<'a>(&'a self, id: &'a str) -> StoreFuture<'a, bool> {
        let mut st = self.lock();
        let there = match st.names.remove(id) {
            Some(name) => st.racks.remove(&name).is_some(),
            None => false,
        };
        st.leases.retain(|_, l| l.holder != id);
        ready(Ok(there))
    }

    fn rack_by_machine_id(&self, machine_id: u16) -> StoreFuture<'_, Option<RackRecord>> {
        let found = self
            .lock()
            .racks
            .values()
            .find(|r| r.machine_id == Some(machine_id))
            .cloned();
        ready(Ok(found.map(Arc::unwrap_or_clone)))
    }

    fn stale_racks(&self, before: Millis) -> StoreFuture<'_, Vec<RackRecord>> {
        let stale: Vec<Arc<RackRecord>> = self
            .lock()
            .racks
            .values()
            .filter(|r| r.status == RackStatus::Active && r.last_seen < before)
            .cloned()
            .collect();
        ready(Ok(stale.into_iter().map(Arc::unwrap_or_clone).collect()))
    }

    fn put_seen<'a>(&'a self, seen: &'a [Seen]) -> StoreFuture<'a, ()> {
        let mut st = self.lock();
        let State { racks, names, .. } = &mut *st;
        for s in seen {
            if let Some(rack) = names.get(&s.id).and_then(|name| racks.get_mut(name)) {
                s.apply_to(Arc::make_mut(rack));
            }
        }
        ready(Ok(()))
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

    fn lease(&self, machine_id: u16) -> StoreFuture<'_, Option<Lease>> {
        ready(Ok(self.lock().leases.get(&machine_id).cloned()))
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

    fn put_convergences<'a>(&'a self, rows: &'a [Convergence]) -> StoreFuture<'a, ()> {
        let mut st = self.lock();
        for row in rows {
            st.convergence.insert(row.rack.clone(), row.clone());
        }
        ready(Ok(()))
    }

    fn convergence(&self) -> StoreFuture<'_, Vec<Convergence>> {
        ready(Ok(self.lock().convergence.values().cloned().collect()))
    }

    fn convergence_of<'a>(&'a self, rack: &'a str) -> StoreFuture<'a, Option<Convergence>> {
        ready(Ok(self.lock().convergence.get(rack).cloned()))
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
