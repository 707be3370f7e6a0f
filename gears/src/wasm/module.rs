//! A checked and compiled module, and its instances: the steps of a `wasm` gear's `init`
//! for embedders and benchmarks.

use sdk::GearError;

use super::engine;
use super::instance::{Guest, Limits, Names};
use super::{BatchMode, Inspected, PAGE, Policy, digest_hex, inspect};

/// A module checked against a [`Policy`] and compiled, ready to instantiate: what a `wasm`
/// gear builds at `init`, for embedders and benchmarks that want the steps apart.
#[derive(Clone)]
pub struct Module {
    compiled: engine::Compiled,
    checked: Inspected,
    entrypoint: String,
    fuel: bool,
}

impl std::fmt::Debug for Module {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Module")
            .field("digest", &digest_hex(&self.checked.digest))
            .field("signed_by", &self.checked.signed_by)
            .field("batch", &self.checked.has_batch)
            .finish_non_exhaustive()
    }
}

impl Module {
    /// Checks `bytes` against `policy` ([`inspect`]) and compiles them for the engine with
    /// (`fuel`) or without fuel metering, once per process and digest, reading and writing
    /// compiled code in `cache_dir` when given.
    ///
    /// Compiling a large module takes a while (seconds, for the largest): asynchronous code
    /// runs it on a blocking thread, as the gear's load step does.
    ///
    /// # Errors
    ///
    /// A `module` error naming what the check or the compiler refused.
    pub fn compile(
        bytes: &[u8],
        policy: &Policy,
        fuel: bool,
        cache_dir: Option<&std::path::Path>,
    ) -> Result<Module, GearError> {
        let checked =
            inspect(bytes, policy).map_err(|e| GearError::new("module").with_detail(e))?;
        let compiled = engine::compile(bytes, checked.digest, fuel, cache_dir)
            .map_err(|e| GearError::new("module").with_detail(e))?;
        Ok(Module {
            compiled,
            checked,
            entrypoint: policy.entrypoint.clone(),
            fuel,
        })
    }

    /// What the check found: digest, signer, exports.
    #[must_use]
    pub fn inspected(&self) -> &Inspected {
        &self.checked
    }

    /// A fresh instance for the gear `gear` with a memory cap of `memory_pages` and a deadline
    /// per call (no fuel, output up to 16 MiB).
    ///
    /// # Errors
    ///
    /// A `module` error when the module does not start within its limits.
    pub fn instantiate(
        &self,
        gear: &str,
        memory_pages: u32,
        deadline: std::time::Duration,
    ) -> Result<Instance, GearError> {
        let limits = Limits {
            memory: usize::try_from(memory_pages)
                .unwrap_or(usize::MAX)
                .saturating_mul(PAGE),
            ticks: Limits::ticks_for(deadline),
            fuel: None,
            max_output: 16 << 20,
        };
        self.guest(gear, limits, BatchMode::Auto)
            .map(|guest| Instance { _guest: guest })
    }

    pub(super) fn guest(
        &self,
        gear: &str,
        limits: Limits,
        batch: BatchMode,
    ) -> Result<Guest, GearError> {
        if limits.fuel.is_some() != self.fuel {
            return Err(GearError::new("module")
                .with_detail("the module was compiled for another fuel setting"));
        }
        let names = Names {
            alloc: self.checked.alloc,
            entrypoint: self.entrypoint.clone(),
            batch: self.checked.has_batch && batch == BatchMode::Auto,
        };
        Guest::new(self.compiled.clone(), names, limits, gear)
            .map_err(|e| GearError::new("module").with_detail(e))
    }
}

/// A live instance of a [`Module`], with its own store and limits.
#[derive(Debug)]
pub struct Instance {
    _guest: Guest,
}
