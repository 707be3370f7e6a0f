//! The pre-flight check of a module before it is compiled: [`inspect`] against a [`Policy`].

use wasmparser::types::{EntityType, Types};
use wasmparser::{CompositeInnerType, FuncType, Parser, ValType, Validator};

use super::key::PublicKey;
use super::sign::{SignError, Signed, digest, verify};

/// The largest module [`Policy::default`] accepts: 64 MiB.
const DEFAULT_MAX_MODULE_BYTES: usize = 64 << 20;

/// `env.log`'s type.
const LOG_TYPE: &str = "(i32, i32, i32) -> ()";
/// `alloc`'s and `malloc`'s type.
const ALLOC_TYPE: &str = "a function (i32) -> i32";
/// `free`'s type.
const FREE_TYPE: &str = "a function (i32, i32) -> ()";
/// The entry points' type.
const ENTRY_TYPE: &str = "a function (i32, i32) -> i64";

/// What [`inspect`] accepts.
#[derive(Debug, Clone)]
pub struct Policy {
    /// The per-message entry point the module must export (default `process`).
    pub entrypoint: String,
    /// Keys whose signatures are trusted; an index into this list is a module's signer.
    pub trusted_keys: Vec<PublicKey>,
    /// Accept modules that are not signed (see the rules of [`inspect`]).
    pub allow_unsigned: bool,
    /// The largest module accepted, in bytes (default 64 MiB).
    pub max_module_bytes: usize,
}

impl Default for Policy {
    fn default() -> Self {
        Policy {
            entrypoint: sdk::abi::EXPORT_PROCESS.to_owned(),
            trusted_keys: Vec::new(),
            allow_unsigned: false,
            max_module_bytes: DEFAULT_MAX_MODULE_BYTES,
        }
    }
}

/// What [`inspect`] found in an accepted module.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Inspected {
    /// The module's [`digest`](super::digest): SHA-256 without its signature sections.
    pub digest: [u8; 32],
    /// The index in [`Policy::trusted_keys`] of the key that signed it; `None` when it was
    /// accepted unsigned.
    pub signed_by: Option<usize>,
    /// The allocator export: `alloc`, or `malloc` when there is no `alloc`.
    pub alloc: &'static str,
    /// Whether it exports `process_batch`.
    pub has_batch: bool,
    /// Whether it imports `env.log`.
    pub imports_log: bool,
}

/// Why [`inspect`] refused a module.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ModuleError {
    /// The module is larger than [`Policy::max_module_bytes`].
    #[error("module is {size} bytes, more than the limit of {max}")]
    TooLarge {
        /// Its size.
        size: usize,
        /// The limit.
        max: usize,
    },
    /// A WebAssembly component: a wasm gear runs core modules.
    #[error("this is a WebAssembly component; a wasm gear runs core modules")]
    Component,
    /// Bytes that are not a valid core WebAssembly module.
    #[error("invalid wasm module: {detail}")]
    Invalid {
        /// The validator's message, with the byte offset.
        detail: String,
    },
    /// An import other than `env.log`.
    #[error(
        "module imports {module:?}.{name:?} ({kind}), which is not allowed: a wasm gear may import only env.log"
    )]
    ForbiddenImport {
        /// The import's module.
        module: String,
        /// The import's name.
        name: String,
        /// `function`, `table`, `memory`, `global` or `tag`.
        kind: &'static str,
    },
    /// `env.log` imported with another type.
    #[error("module imports env.log as {found}; it must be a function {LOG_TYPE}")]
    LogType {
        /// The type it has.
        found: String,
    },
    /// A required export is missing.
    #[error("module does not export {name} ({expected})")]
    MissingExport {
        /// The export's name.
        name: String,
        /// What it must be.
        expected: &'static str,
    },
    /// An export with the wrong kind or type.
    #[error("export {name:?} is {found}; it must be {expected}")]
    ExportType {
        /// The export's name.
        name: String,
        /// What it must be.
        expected: &'static str,
        /// What it is.
        found: String,
    },
    /// A 64-bit memory (memory64), which the host's 32-bit ABI cannot address.
    #[error("module has a 64-bit memory; a wasm gear needs a 32-bit memory")]
    Memory64,
    /// A shared memory (threads).
    #[error("module has a shared memory; a wasm gear needs an unshared memory")]
    SharedMemory,
    /// More than one memory (multi-memory), which the per-gear memory cap would count apart.
    #[error("module has {0} memories; a wasm gear has one")]
    Memories(u32),
    /// Unsigned, and the policy does not allow unsigned modules.
    #[error("module is not signed; sign it with `fluxrig wasm sign` or set allow_unsigned: true")]
    Unsigned,
    /// The signature does not hold, there are no trusted keys to check it with, or there are
    /// two signatures.
    #[error(transparent)]
    Signature(#[from] SignError),
}

/// Checks `module` against `policy` without compiling or running any of it, and says what
/// it found.
///
/// A module is refused unless it is a valid core WebAssembly module (not a component) of at
/// most [`Policy::max_module_bytes`], and:
///
/// - **imports**: at most `env.log`, a function `(i32, i32, i32) -> ()`. Nothing else (no
///   WASI, no imported memory, table, global or tag), so a guest reaches nothing but its
///   own memory and the log;
/// - **exports**: `memory` (32-bit, not shared), `alloc` or `malloc` `(i32) -> i32`, `free`
///   `(i32, i32) -> ()` and the entry point ([`Policy::entrypoint`], `process` by default)
///   `(i32, i32) -> i64`; `process_batch` `(i32, i32) -> i64` is optional, but typed right
///   when present;
/// - **signature** ([`SIGNATURE_SECTION`](super::SIGNATURE_SECTION), see [`verify`]):
///
/// | module | trusted keys | `allow_unsigned` | result |
/// |---|---|---|---|
/// | signed, a trusted key verifies it | set | either | accepted, `signed_by: Some(index)` |
/// | signed, no trusted key verifies it | set | either | [`ModuleError::Signature`] ([`SignError::BadSignature`]) |
/// | signed | none | `true` | accepted as unsigned, `signed_by: None` (the signature is not checked) |
/// | signed | none | `false` | [`ModuleError::Signature`] ([`SignError::NoTrustedKeys`]) |
/// | unsigned | either | `true` | accepted, `signed_by: None` |
/// | unsigned | either | `false` | [`ModuleError::Unsigned`] |
///
/// A module with two signature sections is refused in every case.
///
/// # Errors
///
/// The first rule the module breaks, as a [`ModuleError`] whose message names the import,
/// export or type at fault. Malformed bytes are an error, never a panic.
pub fn inspect(module: &[u8], policy: &Policy) -> Result<Inspected, ModuleError> {
    if module.len() > policy.max_module_bytes {
        return Err(ModuleError::TooLarge {
            size: module.len(),
            max: policy.max_module_bytes,
        });
    }
    if Parser::is_component(module) {
        return Err(ModuleError::Component);
    }
    let types = Validator::new()
        .validate_all(module)
        .map_err(|e| ModuleError::Invalid {
            detail: e.to_string(),
        })?;
    let invalid = || ModuleError::Invalid {
        detail: "not a core module".to_owned(),
    };
    let imports_log = check_imports(&types)?;
    check_memories(&types)?;
    let exports = Exports::of(&types).ok_or_else(invalid)?;

    match exports.get("memory") {
        None => {
            return Err(ModuleError::MissingExport {
                name: "memory".to_owned(),
                expected: "a memory",
            });
        }
        Some(EntityType::Memory(_)) => {}
        Some(other) => {
            return Err(ModuleError::ExportType {
                name: "memory".to_owned(),
                expected: "a memory",
                found: describe(&types, other),
            });
        }
    }
    let alloc = exports.alloc(&types)?;
    exports.require(
        &types,
        "free",
        &[ValType::I32, ValType::I32],
        &[],
        FREE_TYPE,
    )?;
    let entry = [ValType::I32, ValType::I32];
    exports.require(
        &types,
        &policy.entrypoint,
        &entry,
        &[ValType::I64],
        ENTRY_TYPE,
    )?;
    let batch = sdk::abi::EXPORT_PROCESS_BATCH;
    let has_batch = exports.get(batch).is_some();
    if has_batch {
        exports.require(&types, batch, &entry, &[ValType::I64], ENTRY_TYPE)?;
    }

    let signed_by = signature(module, policy)?;
    let digest = digest(module)?;
    Ok(Inspected {
        digest,
        signed_by,
        alloc,
        has_batch,
        imports_log,
    })
}

/// Applies the signature rules of the module docs.
fn signature(module: &[u8], policy: &Policy) -> Result<Option<usize>, ModuleError> {
    match verify(module, &policy.trusted_keys) {
        Ok(Signed::By(index)) => Ok(Some(index)),
        Ok(Signed::Unsigned) | Err(SignError::NoTrustedKeys { .. }) if policy.allow_unsigned => {
            Ok(None)
        }
        Ok(Signed::Unsigned) => Err(ModuleError::Unsigned),
        Err(e) => Err(e.into()),
    }
}

/// Refuses more than one memory, and 64-bit and shared memories, defined or imported.
fn check_memories(types: &Types) -> Result<(), ModuleError> {
    let types = types.as_ref();
    if types.memory_count() > 1 {
        return Err(ModuleError::Memories(types.memory_count()));
    }
    for index in 0..types.memory_count() {
        let memory = types.memory_at(index);
        if memory.memory64 {
            return Err(ModuleError::Memory64);
        }
        if memory.shared {
            return Err(ModuleError::SharedMemory);
        }
    }
    Ok(())
}

/// Refuses every import but `env.log` with its type; says whether `env.log` is imported.
fn check_imports(types: &Types) -> Result<bool, ModuleError> {
    let Some(imports) = types.as_ref().core_imports() else {
        return Err(ModuleError::Component);
    };
    let mut log = false;
    for (module, name, ty) in imports {
        if module == sdk::abi::IMPORT_MODULE && name == sdk::abi::IMPORT_LOG {
            if !is_func(types, &ty, &[ValType::I32, ValType::I32, ValType::I32], &[]) {
                return Err(ModuleError::LogType {
                    found: describe(types, &ty),
                });
            }
            log = true;
        } else {
            return Err(ModuleError::ForbiddenImport {
                module: module.to_owned(),
                name: name.to_owned(),
                kind: kind(&ty),
            });
        }
    }
    Ok(log)
}

/// A module's exports by name.
struct Exports(Vec<(String, EntityType)>);

impl Exports {
    fn of(types: &Types) -> Option<Exports> {
        let exports = types.as_ref().core_exports()?;
        Some(Exports(
            exports.map(|(name, ty)| (name.to_owned(), ty)).collect(),
        ))
    }

    fn get(&self, name: &str) -> Option<&EntityType> {
        self.0.iter().find(|(n, _)| n == name).map(|(_, ty)| ty)
    }

    /// Requires the function export `name` with these parameters and results.
    fn require(
        &self,
        types: &Types,
        name: &str,
        params: &[ValType],
        results: &[ValType],
        expected: &'static str,
    ) -> Result<(), ModuleError> {
        match self.get(name) {
            None => Err(ModuleError::MissingExport {
                name: name.to_owned(),
                expected,
            }),
            Some(ty) if is_func(types, ty, params, results) => Ok(()),
            Some(ty) => Err(ModuleError::ExportType {
                name: name.to_owned(),
                expected,
                found: describe(types, ty),
            }),
        }
    }

    /// The allocator: the first of `alloc` and `malloc` that is exported with the right type.
    fn alloc(&self, types: &Types) -> Result<&'static str, ModuleError> {
        let names = [sdk::abi::EXPORT_ALLOC, sdk::abi::EXPORT_MALLOC];
        let mut first_error = None;
        for name in names {
            if self.get(name).is_none() {
                continue;
            }
            match self.require(types, name, &[ValType::I32], &[ValType::I32], ALLOC_TYPE) {
                Ok(()) => return Ok(name),
                Err(e) => {
                    first_error.get_or_insert(e);
                }
            }
        }
        Err(first_error.unwrap_or_else(|| ModuleError::MissingExport {
            name: format!("{} (or {})", names[0], names[1]),
            expected: ALLOC_TYPE,
        }))
    }
}

fn func_type<'t>(types: &'t Types, ty: &EntityType) -> Option<&'t FuncType> {
    let (EntityType::Func(id) | EntityType::FuncExact(id)) = ty else {
        return None;
    };
    match &types[*id].composite_type.inner {
        CompositeInnerType::Func(f) => Some(f),
        _ => None,
    }
}

fn is_func(types: &Types, ty: &EntityType, params: &[ValType], results: &[ValType]) -> bool {
    func_type(types, ty).is_some_and(|f| f.params() == params && f.results() == results)
}

fn kind(ty: &EntityType) -> &'static str {
    match ty {
        EntityType::Func(_) | EntityType::FuncExact(_) => "function",
        EntityType::Table(_) => "table",
        EntityType::Memory(_) => "memory",
        EntityType::Global(_) => "global",
        EntityType::Tag(_) => "tag",
    }
}

/// What an entity is, for a message: `a function (i32) -> i64`, `a memory`…
fn describe(types: &Types, ty: &EntityType) -> String {
    let Some(f) = func_type(types, ty) else {
        return format!("a {}", kind(ty));
    };
    let list = |v: &[ValType]| {
        v.iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(", ")
    };
    let results = match f.results() {
        [] => "()".to_owned(),
        [one] => one.to_string(),
        many => format!("({})", list(many)),
    };
    format!("a function ({}) -> {results}", list(f.params()))
}
