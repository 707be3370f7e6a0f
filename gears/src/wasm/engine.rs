//! The process-wide wasmtime engines, the epoch ticker and the compiled-module cache.
//!
//! Two engines: one without fuel metering (the default, faster code) and one with it, for gears
//! that set `fuel`. Both interrupt on epochs; one thread advances both epochs every [`TICK`],
//! so a call's wall-clock deadline is a number of ticks. A module is validated and compiled
//! once per engine and digest, then shared by every gear that runs it, as an
//! [`InstancePre`] with the host's imports already resolved.

use std::collections::HashMap;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock, PoisonError};
use std::time::Duration;

use wasmtime::{Config, Engine, InstancePre, Linker, Module, OptLevel};

use super::instance::{HostState, link};

/// How often the epoch advances: the resolution of call deadlines.
pub(crate) const TICK: Duration = Duration::from_millis(1);

struct Engines {
    plain: Engine,
    fueled: Engine,
}

/// A compiled module with the host's imports resolved, ready to instantiate.
#[derive(Clone)]
pub(crate) struct Compiled {
    pub(crate) engine: Engine,
    pub(crate) pre: InstancePre<HostState>,
}

type Key = (bool, [u8; 32]);

static ENGINES: OnceLock<Result<Engines, String>> = OnceLock::new();
static COMPILED: OnceLock<Mutex<HashMap<Key, Compiled>>> = OnceLock::new();

fn engine_config(fuel: bool) -> Config {
    let mut config = Config::new();
    config
        .epoch_interruption(true)
        .consume_fuel(fuel)
        .cranelift_opt_level(OptLevel::Speed);
    config
}

fn engines() -> Result<&'static Engines, String> {
    ENGINES
        .get_or_init(|| {
            let make = |fuel| {
                Engine::new(&engine_config(fuel))
                    .map_err(|e| format!("cannot start the wasm engine: {e}"))
            };
            let engines = Engines {
                plain: make(false)?,
                fueled: make(true)?,
            };
            let (plain, fueled) = (engines.plain.clone(), engines.fueled.clone());
            std::thread::Builder::new()
                .name("fluxrig-wasm-epoch".into())
                .spawn(move || {
                    loop {
                        std::thread::sleep(TICK);
                        plain.increment_epoch();
                        fueled.increment_epoch();
                    }
                })
                .map_err(|e| format!("cannot start the wasm epoch thread: {e}"))?;
            Ok(engines)
        })
        .as_ref()
        .map_err(Clone::clone)
}

/// The engine for gears with (`fuel`) or without fuel metering.
pub(crate) fn engine(fuel: bool) -> Result<Engine, String> {
    let engines = engines()?;
    Ok(if fuel {
        engines.fueled.clone()
    } else {
        engines.plain.clone()
    })
}

/// The module whose bytes have `digest`, compiled for the engine chosen by `fuel`: from this
/// process's cache, from `cache_dir` when given, or compiled now (and then written there).
pub(crate) fn compile(
    bytes: &[u8],
    digest: [u8; 32],
    fuel: bool,
    cache_dir: Option<&Path>,
) -> Result<Compiled, String> {
    let cache = COMPILED.get_or_init(Mutex::default);
    if let Some(found) = cache
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .get(&(fuel, digest))
    {
        return Ok(found.clone());
    }
    let engine = engine(fuel)?;
    let module = match cache_dir {
        Some(dir) => from_disk(&engine, bytes, &digest, dir)?,
        None => Module::new(&engine, bytes).map_err(|e| format!("cannot compile: {e:#}"))?,
    };
    let mut linker = Linker::new(&engine);
    link(&mut linker).map_err(|e| format!("cannot link the host imports: {e:#}"))?;
    let pre = linker
        .instantiate_pre(&module)
        .map_err(|e| format!("cannot link the module: {e:#}"))?;
    let compiled = Compiled { engine, pre };
    cache
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .insert((fuel, digest), compiled.clone());
    Ok(compiled)
}

/// The file in `dir` for a module: its digest and a hash of everything that makes compiled
/// code incompatible (wasmtime's version, the engine's settings, the host CPU).
fn cache_file(engine: &Engine, digest: &[u8; 32], dir: &Path) -> PathBuf {
    let mut hasher = DefaultHasher::new();
    engine.precompile_compatibility_hash().hash(&mut hasher);
    dir.join(format!(
        "{}-{:016x}.cwasm",
        super::sign::to_hex(digest),
        hasher.finish()
    ))
}

fn from_disk(
    engine: &Engine,
    bytes: &[u8],
    digest: &[u8; 32],
    dir: &Path,
) -> Result<Module, String> {
    let file = cache_file(engine, digest, dir);
    if file.exists() {
        // SAFETY: wasmtime runs the native code in the file as it is. The file is one this
        // process family wrote (named by the module's SHA-256 and the engine's compatibility
        // hash) into a directory the operator gives the rack for this purpose; the `cache_dir`
        // documentation says that it must not be writable by anyone the rack does not trust.
        // wasmtime checks the header, version and engine settings and refuses a mismatch.
        #[allow(unsafe_code)]
        let loaded = unsafe { Module::deserialize_file(engine, &file) };
        match loaded {
            Ok(module) => {
                tracing::debug!(file = %file.display(), "Loaded the wasm module from the compile cache.");
                return Ok(module);
            }
            Err(e) => {
                tracing::warn!(file = %file.display(), error = %e, "Unusable compile cache entry; compiling again.");
            }
        }
    }
    let module = Module::new(engine, bytes).map_err(|e| format!("cannot compile: {e:#}"))?;
    if let Err(e) = write_cache(&module, dir, &file) {
        tracing::warn!(dir = %dir.display(), error = %e, "Could not write the wasm compile cache.");
    }
    Ok(module)
}

fn write_cache(module: &Module, dir: &Path, file: &Path) -> Result<(), String> {
    let code = module.serialize().map_err(|e| e.to_string())?;
    std::fs::create_dir_all(dir).map_err(|e| e.to_string())?;
    // Written aside, then renamed: a reader never sees half a file.
    let tmp = file.with_extension(format!("tmp{}", std::process::id()));
    std::fs::write(&tmp, code).map_err(|e| e.to_string())?;
    std::fs::rename(&tmp, file).map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        e.to_string()
    })
}
