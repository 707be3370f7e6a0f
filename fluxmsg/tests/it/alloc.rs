//! Bytes requested per thread, so that tests can bound what the decoder reserves for hostile
//! input (reserved pages do not show in RSS): testkit's counting allocator.

#[global_allocator]
static GLOBAL: testkit::CountingAlloc = testkit::CountingAlloc;

/// Bytes requested from the allocator by this thread while `f` ran.
pub(crate) fn requested_by<T>(f: impl FnOnce() -> T) -> (T, usize) {
    let (out, allocated) = testkit::counted(f);
    (out, allocated.bytes)
}
