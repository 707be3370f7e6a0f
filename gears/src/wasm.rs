//! `wasm`: business logic compiled to WebAssembly, run in a sandbox with enforced limits.
//!
//! The module comes from a file or from a snake KV bucket. It is checked before it is compiled
//! (imports against the allow-list, required exports, the Ed25519 signature), compiled once
//! per process (and optionally cached on disk), then instantiated per gear from a
//! pre-linked [`wasmtime::InstancePre`]. Each gear has its own store with:
//!
//! - a **memory cap** (`memory_limit_pages`, 64 KiB pages): growing past it fails, and the
//!   trap that follows is reported as `memory_limit`;
//! - a **wall-clock deadline** per call (`deadline`), enforced by epoch interruption:
//!   `deadline`;
//! - optional **fuel** per call (`fuel`, about one unit per instruction): `out_of_fuel`.
//!
//! A trap, a deadline, exhausted fuel or output that does not parse costs that message only:
//! it goes to `error` with the reason in `error.reason` and the explanation in `error.detail`,
//! the instance is replaced by a fresh one (the guest's state is lost with it), and the next
//! message is served.
//!
//! Guest calls do not hold up the rack's async workers: each batch goes into the guest (through
//! either entry point) after the worker's other tasks moved to another thread
//! (`tokio::task::block_in_place`, once per batch), and the gear's load step reads and
//! compiles the module on the blocking pool. A guest that runs to its deadline on every
//! message then costs its own gear's throughput, not other gears' I/O.
//!
//! # ABI
//!
//! [`sdk::abi`] has the details. Modules built for the Go fluxrig (exports `alloc` or `malloc`,
//! `free`, `process`, import `env.log`) run unchanged: one call per message, the whole fluxMsg
//! as CBOR in and out, the output replacing the input on port `out`, a length of 0 dropping
//! it. Modules that also export `process_batch` (every module built with the guest SDK,
//! [`sdk::guest`]) get whole batches per call and answer with edits per message and any number
//! of outputs on named ports; `batch: off` forces the per-message entry point. When a batch
//! call faults, its messages are replayed one by one, so that only the offending one goes to
//! `error`. An input message that no emit or error record answers counts as dropped (with
//! the reason of its drop record, or `wasm_drop`); `max_records_per_message` bounds the
//! records, and so the copies, one message may cost.
//!
//! # Trust
//!
//! | module | `trusted_keys` set | none set |
//! |---|---|---|
//! | signed by a trusted key | runs | runs if `allow_unsigned` |
//! | signed, no trusted key verifies it | refused | runs if `allow_unsigned` |
//! | unsigned | runs if `allow_unsigned` | runs if `allow_unsigned` |
//!
//! See [`inspect`] for the exact rules. Sign with `fluxrig wasm sign` (or [`sign`]).
//!
//! # Configuration
//!
//! ```yaml
//! - name: risk
//!   type: wasm
//!   config:
//!     source: file://guests/risk.wasm   # or a path, or snake://<bucket>/<key>
//!     ports: [out, review]              # output ports the module may name (besides error)
//!     memory_limit_pages: 256           # 16 MiB
//!     deadline: 50ms                    # per call
//!     fuel: 10000000                    # optional
//!     trusted_keys: ["<64 hex chars>"]  # Ed25519 public keys
//!     allow_unsigned: false
//!     cache_dir: /var/cache/fluxrig/wasm  # optional compiled-code cache
//! ```
//!
//! # Example
//!
//! ```
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use gears::Factory;
//!
//! // A module written by hand against the reference ABI: it returns its input unchanged.
//! let module = wat::parse_str(r#"(module
//!   (memory (export "memory") 1)
//!   (global $next (mut i32) (i32.const 1024))
//!   (func (export "alloc") (param $n i32) (result i32)
//!     (local $p i32) (local.set $p (global.get $next))
//!     (global.set $next (i32.add (global.get $next) (local.get $n))) (local.get $p))
//!   (func (export "free") (param i32 i32))
//!   (func (export "process") (param $p i32) (param $n i32) (result i64)
//!     (i64.or (i64.shl (i64.extend_i32_u (local.get $p)) (i64.const 32))
//!             (i64.extend_i32_u (local.get $n)))))"#)?;
//! let dir = std::env::temp_dir().join(format!("fluxrig-wasm-doc-{}", std::process::id()));
//! std::fs::create_dir_all(&dir)?;
//! let path = dir.join("echo.wasm");
//! std::fs::write(&path, module)?;
//!
//! let factory = Factory::builtin();
//! let config = serde_json::json!({ "source": path, "allow_unsigned": true, "batch": "off" });
//! let mut gear = sdk::Harness::builder(factory.get("wasm").ok_or("no wasm gear")?.clone())
//!     .build(&config)?;
//! let msg = fluxmsg::FluxMsg::builder().meta("k", "v").build();
//! gear.send("in", msg.clone())?;
//! assert_eq!(gear.take("out"), vec![msg]);
//! # std::fs::remove_dir_all(&dir)?;
//! # Ok(()) }
//! ```

mod batch;
mod check;
mod config;
mod engine;
mod gear;
mod instance;
mod key;
mod module;
mod sign;
mod source;

pub use self::check::{Inspected, ModuleError, Policy, inspect};
pub use self::config::{BatchMode, Config};
pub use self::gear::Wasm;
pub use self::key::{PublicKey, SecretKey};
pub use self::module::{Instance, Module};
pub use self::sign::{
    CLUSTER_SIGNATURE_SECTION, SIGNATURE_SECTION, SignError, Signed, digest, digest_hex, sign,
    verify,
};
pub use self::source::{Source, SourceError, module_bucket};

use crate::{Error, Factory};

pub(crate) fn register(factory: &mut Factory) -> Result<(), Error> {
    factory.register::<Wasm>()
}

/// Bytes in a wasm page.
pub const PAGE: usize = 64 * 1024;
/// The largest module a gear loads (also the value size of a module bucket).
pub const MAX_MODULE_BYTES: usize = 64 << 20;
