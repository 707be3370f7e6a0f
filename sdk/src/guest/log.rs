//! Log lines from a guest, through the host's `env.log` import.
//!
//! On `wasm32` each call is one call of the host import `env.log(level, ptr, len)` (levels
//! [`LOG_DEBUG`] to [`LOG_ERROR`]); the host logs the line with the gear's name and cuts
//! very long lines. Natively (tests), lines are kept per thread, up to [`KEPT`] of them, and
//! [`take`] hands them over.

use crate::abi::{LOG_DEBUG, LOG_ERROR, LOG_INFO, LOG_WARN};

/// Logs `msg` at debug level.
pub fn debug(msg: &str) {
    write(LOG_DEBUG, msg);
}

/// Logs `msg` at info level.
pub fn info(msg: &str) {
    write(LOG_INFO, msg);
}

/// Logs `msg` at warn level.
pub fn warn(msg: &str) {
    write(LOG_WARN, msg);
}

/// Logs `msg` at error level.
pub fn error(msg: &str) {
    write(LOG_ERROR, msg);
}

/// Logs `msg` at `level` ([`LOG_DEBUG`] to [`LOG_ERROR`]; the host reads other levels as
/// info).
#[cfg(target_arch = "wasm32")]
pub fn write(level: i32, msg: &str) {
    // Pointers and lengths are 32 bits on wasm32, as the import takes them.
    let ptr = msg.as_ptr().expose_provenance() as i32;
    host::log(level, ptr, msg.len() as i32);
}

#[cfg(target_arch = "wasm32")]
#[allow(unsafe_code)]
mod host {
    #[link(wasm_import_module = "env")]
    // SAFETY: the host's `env.log` reads `len` bytes at `ptr` from the guest's memory,
    // checking the range, and writes nothing: any arguments are safe.
    unsafe extern "C" {
        #[link_name = "log"]
        pub(super) safe fn log(level: i32, ptr: i32, len: i32);
    }
}

/// Lines kept per thread natively; older ones go first.
#[cfg(not(target_arch = "wasm32"))]
pub const KEPT: usize = 1024;

#[cfg(not(target_arch = "wasm32"))]
thread_local! {
    static LINES: std::cell::RefCell<std::collections::VecDeque<(i32, String)>> =
        const { std::cell::RefCell::new(std::collections::VecDeque::new()) };
}

/// Logs `msg` at `level` ([`LOG_DEBUG`] to [`LOG_ERROR`]; the host reads other levels as
/// info).
#[cfg(not(target_arch = "wasm32"))]
pub fn write(level: i32, msg: &str) {
    LINES.with(|lines| {
        let mut lines = lines.borrow_mut();
        if lines.len() == KEPT {
            lines.pop_front();
        }
        lines.push_back((level, msg.to_owned()));
    });
}

/// Natively: the lines this thread logged since the last call, oldest first, with their
/// levels.
#[cfg(not(target_arch = "wasm32"))]
#[must_use]
pub fn take() -> Vec<(i32, String)> {
    LINES.with(|lines| lines.borrow_mut().drain(..).collect())
}
