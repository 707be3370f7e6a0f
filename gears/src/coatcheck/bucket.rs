//! The few bucket operations the gear's tasks use, behind a trait: the snake KV is the only
//! implementation outside tests; this module's tests put a double in front of it that slows an
//! operation down or makes it fail at a chosen step.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use bytes::Bytes;
use snake::{Error, Kv, KvEntry};

/// A boxed operation on the bucket.
pub(crate) type Op<'a, T> = Pin<Box<dyn Future<Output = Result<T, Error>> + Send + 'a>>;

/// Reading, writing and taking away entries (see [`Kv`] for what each does).
pub(crate) trait Bucket: Send + Sync + 'static {
    /// The live value of `key`, with its revision.
    fn get<'a>(&'a self, key: &'a str) -> Op<'a, Option<KvEntry>>;
    /// Writes `value`; its revision.
    fn put<'a>(&'a self, key: &'a str, value: Bytes) -> Op<'a, u64>;
    /// Deletes `key` only if its last revision is `revision`.
    fn delete_if<'a>(&'a self, key: &'a str, revision: u64) -> Op<'a, u64>;
}

impl Bucket for Kv {
    fn get<'a>(&'a self, key: &'a str) -> Op<'a, Option<KvEntry>> {
        Box::pin(Kv::get(self, key))
    }

    fn put<'a>(&'a self, key: &'a str, value: Bytes) -> Op<'a, u64> {
        Box::pin(Kv::put(self, key, value))
    }

    fn delete_if<'a>(&'a self, key: &'a str, revision: u64) -> Op<'a, u64> {
        Box::pin(Kv::delete_if(self, key, revision))
    }
}

/// The operations on `kv`, the bucket named `name`: in this module's tests, the double
/// registered for that name, if any.
pub(crate) fn ops(name: &str, kv: Kv) -> Arc<dyn Bucket> {
    #[cfg(test)]
    if let Some(double) = super::tests::double(name, &kv) {
        return double;
    }
    let _ = name;
    Arc::new(kv)
}
