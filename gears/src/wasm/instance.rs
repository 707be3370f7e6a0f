//! One gear's instance of its module: the store with its limits, the exports, and a call that
//! copies input in, runs an entry point and copies the output out under the limits.

use std::sync::Arc;

use sdk::abi;
use wasmtime::{
    Caller, Extern, InstancePre, Linker, Memory, ResourceLimiter, Store, Trap, TypedFunc,
};

use super::engine::{Compiled, TICK};

/// Bytes of a guest log line kept; the rest is cut.
const MAX_LOG: usize = 4096;
/// Table elements a module may grow to.
const MAX_TABLE: usize = 100_000;
/// Tables one instance may have.
const MAX_TABLES: usize = 4;

/// A gear's limits, per call.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Limits {
    /// Linear memory cap in bytes.
    pub(crate) memory: usize,
    /// Epoch ticks a call may run.
    pub(crate) ticks: u64,
    /// Fuel per call, when metered.
    pub(crate) fuel: Option<u64>,
    /// Largest output a call may return.
    pub(crate) max_output: usize,
}

impl Limits {
    /// Ticks for a wall-clock deadline: rounded up, plus one because the call may start just
    /// before a tick.
    pub(crate) fn ticks_for(deadline: std::time::Duration) -> u64 {
        let tick = TICK.as_nanos().max(1);
        let n = deadline.as_nanos().div_ceil(tick);
        u64::try_from(n).unwrap_or(u64::MAX - 1).saturating_add(1)
    }
}

/// What the store carries for the host: the memory limiter and the gear's name for logs.
pub(crate) struct HostState {
    limiter: Limiter,
    gear: Arc<str>,
}

struct Limiter {
    memory: usize,
    /// Set when a growth past the cap was refused during the current call.
    hit: bool,
}

impl ResourceLimiter for Limiter {
    fn memory_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > self.memory {
            self.hit = true;
            return Ok(false);
        }
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(desired <= MAX_TABLE)
    }

    // One instance with one memory (the check refuses more) and a few tables: the caps above
    // then bound the whole store, not each of thousands of memories or tables.
    fn instances(&self) -> usize {
        1
    }

    fn memories(&self) -> usize {
        1
    }

    fn tables(&self) -> usize {
        MAX_TABLES
    }
}

/// Registers the host's imports (only `env.log`).
pub(crate) fn link(linker: &mut Linker<HostState>) -> wasmtime::Result<()> {
    linker.func_wrap(abi::IMPORT_MODULE, abi::IMPORT_LOG, guest_log)?;
    Ok(())
}

fn guest_log(mut caller: Caller<'_, HostState>, level: i32, ptr: i32, len: i32) {
    let Some(Extern::Memory(memory)) = caller.get_export(abi::EXPORT_MEMORY) else {
        return;
    };
    let start = ptr as u32 as usize;
    let len = len as u32 as usize;
    let cut = len > MAX_LOG;
    let end = start.saturating_add(len.min(MAX_LOG));
    let data = memory.data(&caller);
    let gear = &caller.data().gear;
    let Some(bytes) = data.get(start..end) else {
        tracing::warn!(gear = %gear, ptr = start, len, "A wasm guest logged from outside its memory.");
        return;
    };
    let text = String::from_utf8_lossy(bytes);
    match level {
        abi::LOG_DEBUG => tracing::debug!(gear = %gear, %text, cut, "A wasm guest logged."),
        abi::LOG_WARN => tracing::warn!(gear = %gear, %text, cut, "A wasm guest logged."),
        abi::LOG_ERROR => tracing::error!(gear = %gear, %text, cut, "A wasm guest logged."),
        _ => tracing::info!(gear = %gear, %text, cut, "A wasm guest logged."),
    }
}

/// Why a call did not give output: the reason goes to the message's `error.reason`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Fault {
    /// The wall-clock deadline passed (epoch interruption).
    Deadline,
    /// The call used up its fuel.
    Fuel,
    /// The guest tried to grow its memory past the cap (and trapped).
    Memory,
    /// Any other trap, or a failing host call.
    Trap(String),
    /// The guest answered with a pointer or length that is not in its memory, or too much.
    BadOutput(String),
}

impl Fault {
    pub(crate) fn reason(&self) -> &'static str {
        match self {
            Fault::Deadline => "deadline",
            Fault::Fuel => "out_of_fuel",
            Fault::Memory => "memory_limit",
            Fault::Trap(_) => "trap",
            Fault::BadOutput(_) => "bad_output",
        }
    }

    pub(crate) fn detail(&self, limits: &Limits) -> String {
        match self {
            Fault::Deadline => format!(
                "the module ran past its deadline of about {} ms",
                u128::from(limits.ticks.saturating_sub(1)) * TICK.as_millis()
            ),
            Fault::Fuel => format!(
                "the module used up its fuel ({} units)",
                limits.fuel.unwrap_or(0)
            ),
            Fault::Memory => format!(
                "the module tried to grow its memory past {} bytes",
                limits.memory
            ),
            Fault::Trap(detail) | Fault::BadOutput(detail) => detail.clone(),
        }
    }
}

struct Exports {
    memory: Memory,
    alloc: TypedFunc<i32, i32>,
    free: TypedFunc<(i32, i32), ()>,
    process: TypedFunc<(i32, i32), i64>,
    batch: Option<TypedFunc<(i32, i32), i64>>,
}

/// Names of the exports to use, from the pre-flight check.
#[derive(Debug, Clone)]
pub(crate) struct Names {
    pub(crate) alloc: &'static str,
    pub(crate) entrypoint: String,
    pub(crate) batch: bool,
}

/// A live instance with the limits of its gear.
pub(crate) struct Guest {
    compiled: Compiled,
    names: Names,
    limits: Limits,
    gear: Arc<str>,
    store: Store<HostState>,
    exports: Exports,
}

impl std::fmt::Debug for Guest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Guest")
            .field("gear", &self.gear)
            .field("names", &self.names)
            .field("limits", &self.limits)
            .finish_non_exhaustive()
    }
}

fn instantiate(
    compiled: &Compiled,
    names: &Names,
    limits: &Limits,
    gear: &Arc<str>,
) -> Result<(Store<HostState>, Exports), String> {
    let state = HostState {
        limiter: Limiter {
            memory: limits.memory,
            hit: false,
        },
        gear: gear.clone(),
    };
    let mut store = Store::new(&compiled.engine, state);
    store.limiter(|s| &mut s.limiter);
    // Start-up code (a start function, data initialisers) runs under the same limits.
    store.set_epoch_deadline(limits.ticks);
    store.epoch_deadline_trap();
    if let Some(fuel) = limits.fuel {
        store
            .set_fuel(fuel)
            .map_err(|e| format!("cannot set fuel: {e}"))?;
    }
    let pre: &InstancePre<HostState> = &compiled.pre;
    let instance = pre.instantiate(&mut store).map_err(|e| {
        if store.data().limiter.hit {
            format!(
                "the module's memory does not fit its cap of {} bytes (raise memory_limit_pages)",
                limits.memory
            )
        } else {
            format!("cannot instantiate: {e:#}")
        }
    })?;
    let memory = instance
        .get_memory(&mut store, abi::EXPORT_MEMORY)
        .ok_or("the module exports no memory")?;
    let typed = |store: &mut Store<HostState>, name: &str| {
        instance
            .get_typed_func::<(i32, i32), i64>(store, name)
            .map_err(|e| format!("export {name:?}: {e:#}"))
    };
    let process = typed(&mut store, &names.entrypoint)?;
    let batch = if names.batch {
        Some(typed(&mut store, abi::EXPORT_PROCESS_BATCH)?)
    } else {
        None
    };
    let alloc = instance
        .get_typed_func::<i32, i32>(&mut store, names.alloc)
        .map_err(|e| format!("export {:?}: {e:#}", names.alloc))?;
    let free = instance
        .get_typed_func::<(i32, i32), ()>(&mut store, abi::EXPORT_FREE)
        .map_err(|e| format!("export \"free\": {e:#}"))?;
    Ok((
        store,
        Exports {
            memory,
            alloc,
            free,
            process,
            batch,
        },
    ))
}

impl Guest {
    /// Instantiates `compiled` for the gear `gear`.
    pub(crate) fn new(
        compiled: Compiled,
        names: Names,
        limits: Limits,
        gear: &str,
    ) -> Result<Guest, String> {
        let gear: Arc<str> = gear.into();
        let (store, exports) = instantiate(&compiled, &names, &limits, &gear)?;
        Ok(Guest {
            compiled,
            names,
            limits,
            gear,
            store,
            exports,
        })
    }

    /// Throws the instance away and starts a fresh one: after a fault the guest's state cannot
    /// be trusted.
    pub(crate) fn reset(&mut self) -> Result<(), String> {
        let (store, exports) = instantiate(&self.compiled, &self.names, &self.limits, &self.gear)?;
        self.store = store;
        self.exports = exports;
        Ok(())
    }

    /// Whether the module has the batch entry point.
    pub(crate) fn has_batch(&self) -> bool {
        self.exports.batch.is_some()
    }

    /// The gear's limits.
    pub(crate) fn limits(&self) -> &Limits {
        &self.limits
    }

    /// Runs the batch entry point (`batch`) or the single one on `input`, and replaces `out`
    /// with what the guest returned (empty for a length of 0).
    pub(crate) fn call(
        &mut self,
        batch: bool,
        input: &[u8],
        out: &mut Vec<u8>,
    ) -> Result<(), Fault> {
        let Guest {
            store,
            exports: ex,
            limits,
            names,
            ..
        } = self;
        let entry = match (batch, &ex.batch) {
            (true, Some(f)) => f,
            (true, None) => {
                return Err(Fault::Trap("the module has no batch entry point".into()));
            }
            (false, _) => &ex.process,
        };
        let len = i32::try_from(input.len())
            .map_err(|_| Fault::Trap(format!("{} bytes of input do not fit", input.len())))?;
        store.data_mut().limiter.hit = false;
        store.set_epoch_deadline(limits.ticks);
        if let Some(fuel) = limits.fuel {
            store
                .set_fuel(fuel)
                .map_err(|e| Fault::Trap(format!("cannot set fuel: {e}")))?;
        }
        let ptr = ex
            .alloc
            .call(&mut *store, len)
            .map_err(|e| fault(store, &e))?;
        ex.memory
            .write(&mut *store, ptr as u32 as usize, input)
            .map_err(|_| {
                Fault::BadOutput(format!(
                    "{}({len}) returned {ptr:#x}, which is not in the module's memory",
                    names.alloc
                ))
            })?;
        let packed = entry
            .call(&mut *store, (ptr, len))
            .map_err(|e| fault(store, &e))?;
        let (out_ptr, out_len) = abi::unpack(packed);
        out.clear();
        if out_len > 0 {
            let (start, n) = (out_ptr as usize, out_len as usize);
            if n > limits.max_output {
                return Err(Fault::BadOutput(format!(
                    "the module returned {n} bytes, more than the limit of {}",
                    limits.max_output
                )));
            }
            let data = ex.memory.data(&*store);
            let Some(bytes) = start.checked_add(n).and_then(|end| data.get(start..end)) else {
                return Err(Fault::BadOutput(format!(
                    "the module returned {n} bytes at {start:#x}, outside its memory of {} bytes",
                    data.len()
                )));
            };
            out.extend_from_slice(bytes);
        }
        ex.free
            .call(&mut *store, (ptr, len))
            .map_err(|e| fault(store, &e))?;
        if out_len > 0 {
            ex.free
                .call(&mut *store, (out_ptr as i32, out_len as i32))
                .map_err(|e| fault(store, &e))?;
        }
        Ok(())
    }
}

/// Names the fault behind a failed call.
fn fault(store: &Store<HostState>, error: &wasmtime::Error) -> Fault {
    if store.data().limiter.hit {
        return Fault::Memory;
    }
    match error.downcast_ref::<Trap>() {
        Some(Trap::Interrupt) => Fault::Deadline,
        Some(Trap::OutOfFuel) => Fault::Fuel,
        Some(trap) => Fault::Trap(format!("wasm trap: {trap}")),
        None => Fault::Trap(format!("{error:#}")),
    }
}
