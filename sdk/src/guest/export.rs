//! What the exports of [`guest_gear!`](crate::guest_gear) call (wasm32 only): the guest's
//! allocator and the entry points, over pointers the host hands in.
//!
//! `free`, `process` and `process_batch` trust the ABI's memory contract
//! ([`abi`](crate::abi)): a pointer and length the host passes them are those `alloc`
//! returned (or an output the guest returned), and the host touches none of them after
//! `free`. They are `unsafe fn`s for that reason; the generated exports call them on the
//! host's word, and nothing else should.

use std::alloc::Layout;
use std::cell::RefCell;
use std::thread::LocalKey;

use super::{Gear, run_batch, run_single};
use crate::abi;

/// The instance's gear: created with `Default` on first use, kept for the instance's life.
pub type Slot<G> = RefCell<Option<G>>;

/// `alloc(len) -> ptr`: `len` bytes, aligned to 1, uninitialised (the host fills them).
/// Zero bytes give a dangling, non-null pointer. Out of memory (or a negative length)
/// aborts, which the host sees as a trap.
#[must_use]
#[allow(unsafe_code)]
pub fn alloc(len: i32) -> i32 {
    let Ok(len) = usize::try_from(len) else {
        std::process::abort();
    };
    if len == 0 {
        return std::ptr::NonNull::<u8>::dangling()
            .as_ptr()
            .expose_provenance() as i32;
    }
    let Ok(layout) = Layout::array::<u8>(len) else {
        std::process::abort();
    };
    // SAFETY: `layout` has a non-zero size.
    let ptr = unsafe { std::alloc::alloc(layout) };
    if ptr.is_null() {
        std::alloc::handle_alloc_error(layout);
    }
    ptr.expose_provenance() as i32
}

/// `free(ptr, len)`: gives back a buffer from [`alloc`] or an output of the entry points
/// (a `Box<[u8]>`, whose layout is the same); zero lengths are no-ops.
///
/// # Safety
///
/// `ptr` and `len` are those of a live buffer from `alloc(len)` or an output of
/// [`process`] or [`process_batch`], freed once, and not used after.
#[allow(unsafe_code)]
pub unsafe fn free(ptr: i32, len: i32) {
    let Ok(len) = usize::try_from(len) else {
        return;
    };
    if len == 0 {
        return;
    }
    let Ok(layout) = Layout::array::<u8>(len) else {
        return;
    };
    let ptr = std::ptr::with_exposed_provenance_mut::<u8>(ptr as u32 as usize);
    // SAFETY: by the caller's contract, `ptr` and `len` are those of a live buffer from
    // `alloc(len)` or from `output`, both allocated with `layout`, freed once.
    unsafe { std::alloc::dealloc(ptr, layout) }
}

/// The input the host wrote at `ptr`.
///
/// # Safety
///
/// `ptr` and `len` are those of a buffer from `alloc(len)` with `len` bytes written, which
/// nothing writes to or frees while the returned slice lives.
#[allow(unsafe_code)]
unsafe fn input<'a>(ptr: i32, len: i32) -> &'a [u8] {
    let Ok(len) = usize::try_from(len) else {
        std::process::abort();
    };
    if len == 0 {
        return &[];
    }
    let ptr = std::ptr::with_exposed_provenance::<u8>(ptr as u32 as usize);
    // SAFETY: by the caller's contract, `ptr` is a buffer from `alloc(len)` with `len` bytes
    // written, unchanged and alive while the slice lives.
    unsafe { std::slice::from_raw_parts(ptr, len) }
}

/// Hands `out` to the host: `pack(ptr, len)` of a leaked `Box<[u8]>` that the host frees
/// with `free(ptr, len)`, or 0 for nothing.
fn output(out: Vec<u8>) -> i64 {
    if out.is_empty() {
        return 0;
    }
    let len = out.len() as u32;
    let ptr = Box::into_raw(out.into_boxed_slice())
        .cast::<u8>()
        .expose_provenance() as u32;
    abi::pack(ptr, len)
}

/// The gear in `slot`, created on first use.
fn with_gear<G: Gear + Default + 'static, R>(
    slot: &'static LocalKey<Slot<G>>,
    f: impl FnOnce(&mut G) -> R,
) -> R {
    slot.with(|cell| {
        // The guest has one thread and the host does not call in while a call runs, so the
        // gear is never borrowed twice.
        let mut gear = cell.borrow_mut();
        f(gear.get_or_insert_with(G::default))
    })
}

/// `process(ptr, len) -> packed`: the reference entry point ([`run_single`]).
///
/// # Safety
///
/// `ptr` and `len` are those of a buffer from `alloc(len)` holding the input, which nothing
/// writes to or frees until this returns.
#[allow(unsafe_code)]
pub unsafe fn process<G: Gear + Default + 'static>(
    slot: &'static LocalKey<Slot<G>>,
    ptr: i32,
    len: i32,
) -> i64 {
    // SAFETY: the caller's contract is `input`'s, for the length of this call.
    let input = unsafe { input(ptr, len) };
    output(with_gear(slot, |gear| run_single(gear, input)).unwrap_or_default())
}

/// `process_batch(ptr, len) -> packed`: the batch entry point ([`run_batch`]).
///
/// # Safety
///
/// `ptr` and `len` are those of a buffer from `alloc(len)` holding the batch, which nothing
/// writes to or frees until this returns.
#[allow(unsafe_code)]
pub unsafe fn process_batch<G: Gear + Default + 'static>(
    slot: &'static LocalKey<Slot<G>>,
    ptr: i32,
    len: i32,
) -> i64 {
    // SAFETY: the caller's contract is `input`'s, for the length of this call.
    let input = unsafe { input(ptr, len) };
    output(with_gear(slot, |gear| run_batch(gear, input)))
}
