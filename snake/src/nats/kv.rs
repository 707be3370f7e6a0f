//! Key-value buckets over JetStream key-value stores.

use std::sync::Arc;

use async_nats::HeaderMap;
use async_nats::jetstream::kv::{self as jkv, Operation};
use bytes::Bytes;
use futures::StreamExt;

use super::{Nats, storage};
use crate::config::KvConfig;
use crate::error::NatsOp;
use crate::subject::kv_key as key;
use crate::{Error, KvEntry, KvOperation};

pub(crate) struct NatsKv {
    nats: Arc<Nats>,
    store: jkv::Store,
    cfg: KvConfig,
}

fn kv_error(e: impl Into<crate::error::BoxError>) -> Error {
    Error::nats(NatsOp::Kv, e)
}

fn entry(e: jkv::Entry) -> KvEntry {
    KvEntry {
        key: e.key,
        value: e.value,
        revision: e.revision,
        operation: match e.operation {
            Operation::Put => KvOperation::Put,
            Operation::Delete | Operation::Purge => KvOperation::Delete,
        },
    }
}

impl NatsKv {
    pub(crate) async fn new(nats: &Arc<Nats>, cfg: KvConfig) -> Result<NatsKv, Error> {
        if nats.is_closed() {
            return Err(Error::Closed);
        }
        let config = jkv::Config {
            bucket: cfg.bucket.clone(),
            history: i64::from(cfg.history),
            max_age: cfg.ttl.unwrap_or_default(),
            max_value_size: i32::try_from(cfg.max_value_size).unwrap_or(i32::MAX),
            storage: storage(cfg.storage),
            ..Default::default()
        };
        let store = nats.js.create_key_value(config).await.map_err(|e| {
            // Creating an existing bucket with the same configuration succeeds; the server
            // refuses another one with "stream name already in use".
            if e.kind() == async_nats::jetstream::context::CreateKeyValueErrorKind::BucketCreate
                && format!("{e:?}").contains("10058")
            {
                Error::StreamConflict(format!("KV_{}", cfg.bucket))
            } else {
                kv_error(e)
            }
        })?;
        Ok(NatsKv {
            nats: Arc::clone(nats),
            store,
            cfg,
        })
    }

    pub(crate) fn bucket(&self) -> &str {
        &self.cfg.bucket
    }

    fn check(&self, k: &str, value: &Bytes) -> Result<(), Error> {
        key(k)?;
        if value.len() > self.cfg.max_value_size {
            return Err(Error::ValueTooLarge {
                len: value.len(),
                max: self.cfg.max_value_size,
            });
        }
        Ok(())
    }

    pub(crate) async fn get(&self, k: &str) -> Result<Option<KvEntry>, Error> {
        key(k)?;
        let e = self.store.entry(k).await.map_err(kv_error)?;
        Ok(e.filter(|e| e.operation == Operation::Put).map(entry))
    }

    pub(crate) async fn put(&self, k: &str, value: Bytes) -> Result<u64, Error> {
        self.check(k, &value)?;
        self.store.put(k, value).await.map_err(kv_error)
    }

    pub(crate) async fn create(&self, k: &str, value: Bytes) -> Result<u64, Error> {
        self.check(k, &value)?;
        self.store
            .create(k, value)
            .await
            .map_err(|e| match e.kind() {
                jkv::CreateErrorKind::AlreadyExists => Error::KeyExists {
                    bucket: self.cfg.bucket.clone(),
                    key: k.to_owned(),
                },
                _ => kv_error(e),
            })
    }

    pub(crate) async fn update(&self, k: &str, value: Bytes, expected: u64) -> Result<u64, Error> {
        self.check(k, &value)?;
        match self.store.update(k, value, expected).await {
            Ok(r) => Ok(r),
            Err(e) if e.kind() == jkv::UpdateErrorKind::WrongLastRevision => {
                // The revision now there, delete markers included (0 when there is none).
                let current = self
                    .store
                    .entry(k)
                    .await
                    .map_err(kv_error)?
                    .map_or(0, |e| e.revision);
                Err(Error::WrongRevision {
                    bucket: self.cfg.bucket.clone(),
                    key: k.to_owned(),
                    expected,
                    current,
                })
            }
            Err(e) => Err(kv_error(e)),
        }
    }

    pub(crate) async fn delete(&self, k: &str) -> Result<u64, Error> {
        key(k)?;
        // async-nats's delete does not return the marker's revision: write the marker here.
        let mut headers = HeaderMap::new();
        headers.insert("KV-Operation", "DEL");
        let ack = self
            .nats
            .js
            .publish_with_headers(
                format!("$KV.{}.{k}", self.cfg.bucket),
                headers,
                Bytes::new(),
            )
            .await
            .map_err(kv_error)?
            .await
            .map_err(kv_error)?;
        Ok(ack.sequence)
    }

    pub(crate) async fn watch(&self, pattern: &str) -> Result<NatsKvWatch, Error> {
        // Entries up to the bucket's last revision now are the current state (delete
        // markers among them are skipped); later ones are changes.
        let store = &self.store;
        let status = store.status().await.map_err(kv_error)?;
        let seen = status.info.state.last_sequence;
        let watch = store.watch_with_history(pattern).await.map_err(kv_error)?;
        Ok(NatsKvWatch {
            watch,
            seen,
            pattern: pattern.to_owned(),
        })
    }
}

pub(crate) struct NatsKvWatch {
    watch: jkv::Watch,
    seen: u64,
    pattern: String,
}

impl NatsKvWatch {
    pub(crate) async fn next(&mut self) -> Option<KvEntry> {
        loop {
            match self.watch.next().await? {
                Ok(e) if e.revision <= self.seen && e.operation != Operation::Put => {}
                Ok(e) => return Some(entry(e)),
                Err(e) => {
                    tracing::warn!(pattern = %self.pattern, error = %e, "A key-value watcher failed.");
                    return None;
                }
            }
        }
    }
}
