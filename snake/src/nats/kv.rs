//! Key-value buckets over JetStream key-value stores.

use std::sync::Arc;

use async_nats::HeaderMap;
use async_nats::jetstream::context::{PublishError, PublishErrorKind};
use async_nats::jetstream::kv::{self as jkv, Operation};
use bytes::Bytes;
use futures::StreamExt;

use super::{Nats, storage};
use crate::config::{KvConfig, Storage};
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
            num_replicas: cfg.replicas,
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

    /// An existing bucket, with the configuration read from its stream.
    pub(crate) async fn open(nats: &Arc<Nats>, bucket: &str) -> Result<NatsKv, Error> {
        if nats.is_closed() {
            return Err(Error::Closed);
        }
        let stream = match nats.stream(&format!("KV_{bucket}")).await {
            Ok(s) => s,
            Err(Error::StreamNotFound(_)) => return Err(Error::BucketNotFound(bucket.to_owned())),
            Err(e) => return Err(e),
        };
        let info = &stream.cached_info().config;
        let cfg = KvConfig {
            bucket: bucket.to_owned(),
            ttl: (!info.max_age.is_zero()).then_some(info.max_age),
            history: u8::try_from(info.max_messages_per_subject.clamp(1, 64)).unwrap_or(1),
            // A negative size is the server's "no limit".
            max_value_size: usize::try_from(info.max_message_size).unwrap_or(usize::MAX),
            storage: match info.storage {
                async_nats::jetstream::stream::StorageType::Memory => Storage::Memory,
                async_nats::jetstream::stream::StorageType::File => Storage::File,
            },
            replicas: info.num_replicas.max(1),
        };
        let store = nats.js.get_key_value(bucket).await.map_err(kv_error)?;
        Ok(NatsKv {
            nats: Arc::clone(nats),
            store,
            cfg,
        })
    }

    pub(crate) fn bucket(&self) -> &str {
        &self.cfg.bucket
    }

    pub(crate) fn config(&self) -> &KvConfig {
        &self.cfg
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
                Err(self.wrong_revision(k, expected).await)
            }
            Err(e) => Err(kv_error(e)),
        }
    }

    /// The error of a write that expected `expected` at `k`, naming the revision now there
    /// (delete markers included; 0 when there is none).
    async fn wrong_revision(&self, k: &str, expected: u64) -> Error {
        let current = match self.store.entry(k).await {
            Ok(entry) => entry.map_or(0, |e| e.revision),
            Err(e) => return kv_error(e),
        };
        Error::WrongRevision {
            bucket: self.cfg.bucket.clone(),
            key: k.to_owned(),
            expected,
            current,
        }
    }

    pub(crate) async fn delete(&self, k: &str) -> Result<u64, Error> {
        key(k)?;
        self.delete_marker(k, None).await.map_err(kv_error)
    }

    pub(crate) async fn delete_if(&self, k: &str, expected: u64) -> Result<u64, Error> {
        key(k)?;
        match self.delete_marker(k, Some(expected)).await {
            Ok(r) => Ok(r),
            Err(e) if e.kind() == PublishErrorKind::WrongLastSequence => {
                Err(self.wrong_revision(k, expected).await)
            }
            Err(e) => Err(kv_error(e)),
        }
    }

    /// Writes a delete marker (async-nats's delete does not return its revision), on the
    /// condition that the key's last revision is `expected` when one is given.
    async fn delete_marker(&self, k: &str, expected: Option<u64>) -> Result<u64, PublishError> {
        let mut headers = HeaderMap::new();
        headers.insert("KV-Operation", "DEL");
        if let Some(revision) = expected {
            headers.insert(
                async_nats::header::NATS_EXPECTED_LAST_SUBJECT_SEQUENCE,
                revision.to_string().as_str(),
            );
        }
        let ack = self
            .nats
            .js
            .publish_with_headers(
                format!("$KV.{}.{k}", self.cfg.bucket),
                headers,
                Bytes::new(),
            )
            .await?
            .await?;
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
