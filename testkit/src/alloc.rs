//! A global allocator that counts, per thread, the allocations made and the bytes requested,
//! so that a test can bound what a call allocates without seeing other tests' threads.
//!
//! A test binary installs it once, in its `main.rs`:
//!
//! ```ignore
//! #[global_allocator]
//! static GLOBAL: testkit::CountingAlloc = testkit::CountingAlloc;
//! ```
//!
//! and then measures a call with [`counted`]. Without it installed, `counted` sees nothing.
#![allow(unsafe_code)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

thread_local! {
    static ALLOCATIONS: Cell<usize> = const { Cell::new(0) };
    static REQUESTED: Cell<usize> = const { Cell::new(0) };
}

/// The system allocator, counting what each thread asks of it (see the module docs).
#[derive(Debug, Clone, Copy, Default)]
pub struct CountingAlloc;

/// What a thread asked of the allocator while a call ran.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Allocated {
    /// Allocations and reallocations.
    pub allocations: usize,
    /// Bytes requested, the new size of each reallocation included.
    pub bytes: usize,
}

fn count(bytes: usize) {
    // `try_with`: the allocator also runs while thread-locals are torn down.
    let _ = ALLOCATIONS.try_with(|c| c.set(c.get().saturating_add(1)));
    let _ = REQUESTED.try_with(|c| c.set(c.get().saturating_add(bytes)));
}

fn now() -> Allocated {
    Allocated {
        allocations: ALLOCATIONS.with(Cell::get),
        bytes: REQUESTED.with(Cell::get),
    }
}

/// Runs `f` and returns what this thread asked of the allocator meanwhile (zero unless the
/// binary's global allocator is [`CountingAlloc`]).
pub fn counted<T>(f: impl FnOnce() -> T) -> (T, Allocated) {
    let before = now();
    let out = f();
    let after = now();
    let change = Allocated {
        allocations: after.allocations - before.allocations,
        bytes: after.bytes - before.bytes,
    };
    (out, change)
}

// SAFETY: every call is passed on unchanged to the system allocator; counting touches only
// const-initialized thread-local `Cell`s, which never allocate.
unsafe impl GlobalAlloc for CountingAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        count(layout.size());
        // SAFETY: the caller upholds `GlobalAlloc::alloc`'s contract, which `System` shares.
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        count(layout.size());
        // SAFETY: as for `alloc`.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` came from `System` with this layout, through the methods above.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        count(new_size);
        // SAFETY: as for `dealloc`; the caller upholds `realloc`'s contract.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}
