//! Test support shared by the workspace's crates; never published, used only as a
//! dev-dependency.
//!
//! - Waiting: [`wait_until`] polls a condition and [`within`] awaits a future, each bounded
//!   by [`PATIENCE`] and failing with a message that names what was awaited;
//!   [`within_blocking`] does the same for a blocking call. Tests synchronise on these, on
//!   counters and signals, never on sleeps or on how long something took.
//! - Errors: [`chain`] prints an error and its causes on one line, as anyhow's `{:#}` does;
//!   [`causes`] lists them, to check that each is printed once.
//! - Sockets: [`free_port`], a port of 127.0.0.1 for gears that take a `bind` address.
//! - Wasm: [`guest_wasm`] builds the example wasm guests (`examples/guests/*`) for
//!   `wasm32-unknown-unknown` and returns a module's path, so that the tests of the `wasm`
//!   gear and of racks that use it run real modules built from source.
//! - PostgreSQL (Linux): [`postgres::Postgres`], a throwaway server in a temporary directory
//!   on a free port, started without root or Docker (as `nobody` when the tests run as root)
//!   and removed on drop or when the process ends.
//! - Allocations: [`CountingAlloc`], a global allocator that counts per thread, and
//!   [`counted`], what one call allocated on this thread.
//! - Gears (feature `gears`): the module `gears`, small fixture gears that the tests of
//!   several crates register, such as `gears::Echo`.
//!
//! | feature | what it adds |
//! | --- | --- |
//! | `gears` | the module `gears` (depends on `sdk`) |
#![doc(test(attr(deny(warnings))))]

mod alloc;
mod errors;
mod guest;
mod net;
mod wait;

#[cfg(feature = "gears")]
pub mod gears;
#[cfg(target_os = "linux")]
pub mod postgres;

pub use alloc::{Allocated, CountingAlloc, counted};
pub use errors::{causes, chain};
pub use guest::{guest_wasm, workspace_root};
pub use net::{frame, free_port, read_frame};
pub use wait::{PATIENCE, wait_until, within, within_blocking};
