//! Key-value buckets of the in-process backend: revisions, compare-and-set, watch, TTL.

use std::collections::HashMap;
use std::sync::Mutex;

use bytes::Bytes;
use tokio::sync::broadcast;
use tokio::time::Instant;

use crate::config::KvConfig;
use crate::memory::lock;
use crate::subject::kv_key as key;
use crate::subject::matches;
use crate::{Error, KvEntry, KvOperation};

#[derive(Default)]
struct State {
    revision: u64,
    keys: HashMap<String, Vec<(KvEntry, Instant)>>,
}

pub(crate) struct Bucket {
    cfg: KvConfig,
    state: Mutex<State>,
    events: broadcast::Sender<KvEntry>,
}

impl Bucket {
    pub(crate) fn new(cfg: KvConfig) -> Bucket {
        Bucket {
            cfg,
            state: Mutex::new(State::default()),
            events: broadcast::channel(4096).0,
        }
    }

    pub(crate) fn config(&self) -> &KvConfig {
        &self.cfg
    }

    fn alive(&self, at: Instant, now: Instant) -> bool {
        self.cfg.ttl.is_none_or(|ttl| now.duration_since(at) < ttl)
    }

    /// The latest live entry of `key` (a put, not expired).
    fn latest<'a>(&self, st: &'a State, key: &str, now: Instant) -> Option<&'a KvEntry> {
        st.keys
            .get(key)
            .and_then(|h| h.last())
            .filter(|(e, at)| e.operation == KvOperation::Put && self.alive(*at, now))
            .map(|(e, _)| e)
    }

    pub(crate) fn get(&self, k: &str) -> Result<Option<KvEntry>, Error> {
        key(k)?;
        let st = lock(&self.state);
        Ok(self.latest(&st, k, Instant::now()).cloned())
    }

    /// Writes an entry if `check` accepts the key's current state.
    fn write(
        &self,
        k: &str,
        value: Bytes,
        operation: KvOperation,
        check: impl FnOnce(Option<&KvEntry>, u64) -> Result<(), Error>,
    ) -> Result<u64, Error> {
        key(k)?;
        if value.len() > self.cfg.max_value_size {
            return Err(Error::ValueTooLarge {
                len: value.len(),
                max: self.cfg.max_value_size,
            });
        }
        let now = Instant::now();
        let mut st = lock(&self.state);
        let last_revision = st
            .keys
            .get(k)
            .and_then(|h| h.last())
            .filter(|(_, at)| self.alive(*at, now))
            .map_or(0, |(e, _)| e.revision);
        check(self.latest(&st, k, now), last_revision)?;
        st.revision += 1;
        let entry = KvEntry {
            key: k.to_owned(),
            value,
            revision: st.revision,
            operation,
        };
        let history = usize::from(self.cfg.history);
        let h = st.keys.entry(k.to_owned()).or_default();
        h.push((entry.clone(), now));
        if h.len() > history {
            h.drain(..h.len() - history);
        }
        // Sent under the lock, so that watchers see revisions in order. No watcher is fine;
        // a lagging one learns of it from its receiver.
        let _ = self.events.send(entry.clone());
        drop(st);
        Ok(entry.revision)
    }

    pub(crate) fn put(&self, k: &str, value: Bytes) -> Result<u64, Error> {
        self.write(k, value, KvOperation::Put, |_, _| Ok(()))
    }

    pub(crate) fn create(&self, k: &str, value: Bytes) -> Result<u64, Error> {
        let bucket = &self.cfg.bucket;
        self.write(k, value, KvOperation::Put, |live, _| match live {
            Some(_) => Err(Error::KeyExists {
                bucket: bucket.clone(),
                key: k.to_owned(),
            }),
            None => Ok(()),
        })
    }

    pub(crate) fn update(&self, k: &str, value: Bytes, expected: u64) -> Result<u64, Error> {
        let bucket = &self.cfg.bucket;
        self.write(k, value, KvOperation::Put, |_, current| {
            if current == expected {
                Ok(())
            } else {
                Err(Error::WrongRevision {
                    bucket: bucket.clone(),
                    key: k.to_owned(),
                    expected,
                    current,
                })
            }
        })
    }

    pub(crate) fn delete(&self, k: &str) -> Result<u64, Error> {
        self.write(k, Bytes::new(), KvOperation::Delete, |_, _| Ok(()))
    }

    pub(crate) fn delete_if(&self, k: &str, expected: u64) -> Result<u64, Error> {
        let bucket = &self.cfg.bucket;
        self.write(k, Bytes::new(), KvOperation::Delete, |_, current| {
            if current == expected {
                Ok(())
            } else {
                Err(Error::WrongRevision {
                    bucket: bucket.clone(),
                    key: k.to_owned(),
                    expected,
                    current,
                })
            }
        })
    }

    /// The live entries matching `pattern`, and a receiver of every later change.
    pub(crate) fn watch(&self, pattern: &str) -> (Vec<KvEntry>, u64, broadcast::Receiver<KvEntry>) {
        let rx = self.events.subscribe();
        let now = Instant::now();
        let st = lock(&self.state);
        let mut current: Vec<KvEntry> = st
            .keys
            .keys()
            .filter(|k| matches(pattern, k))
            .filter_map(|k| self.latest(&st, k, now).cloned())
            .collect();
        current.sort_by_key(|e| e.revision);
        (current, st.revision, rx)
    }
}
