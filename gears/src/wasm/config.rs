//! The `wasm` gear's configuration.

use std::path::PathBuf;

use schemars::JsonSchema;
use sdk::HumanDuration;
use sdk::abi;
use serde::{Deserialize, Serialize};

#[cfg(doc)]
use super::Wasm;

/// The configuration of a [`Wasm`] gear.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct Config {
    /// Where the module is: a path, `file://<path>`, or `snake://<bucket>/<key>`.
    pub source: String,
    /// The reference ABI's per-message entry point.
    #[serde(default = "default_entrypoint")]
    pub entrypoint: String,
    /// Output ports the module may name, besides `error`; the per-message entry point emits
    /// on `out`.
    #[serde(default = "default_ports")]
    pub ports: Vec<String>,
    /// `auto`: the batch entry point when the module exports it; `off`: one call per message.
    #[serde(default)]
    pub batch: BatchMode,
    /// Most messages per batch call.
    #[serde(default = "default_max_batch")]
    #[schemars(range(min = 1, max = 65536))]
    pub max_batch: u32,
    /// Linear memory cap, in 64 KiB pages (the reference's key; 256 pages = 16 MiB).
    #[serde(default = "default_memory_pages")]
    #[schemars(range(min = 1, max = 65536))]
    pub memory_limit_pages: u32,
    /// Wall-clock limit of one call (a batch or a message), e.g. `50ms`.
    #[serde(default = "default_deadline")]
    pub deadline: HumanDuration,
    /// Fuel per call (about one unit per wasm instruction); unset: not metered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub fuel: Option<u64>,
    /// Largest output of one call, in bytes.
    #[serde(default = "default_max_output")]
    #[schemars(range(min = 1))]
    pub max_output_bytes: u64,
    /// Most output records for one input message (emits, new messages, drops, errors): each
    /// emit copies the message, so this bounds what one message can cost. A call that goes
    /// over sends the message to `error` (`bad_output`).
    #[serde(default = "default_max_records")]
    #[schemars(range(min = 1, max = 65536))]
    pub max_records_per_message: u32,
    /// Ed25519 public keys (64 hex characters each) whose signatures are trusted.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub trusted_keys: Vec<String>,
    /// Run modules that no trusted key signed. Off by default.
    #[serde(default)]
    pub allow_unsigned: bool,
    /// A directory for compiled code, so that a restart does not compile again. Anyone who can
    /// write there can run native code in the rack: give it to the rack alone.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache_dir: Option<PathBuf>,
}

/// Which entry point a [`Wasm`] gear calls.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum BatchMode {
    /// `process_batch` when the module exports it, else `process`.
    #[default]
    Auto,
    /// Always `process`, one message per call.
    Off,
}

fn default_entrypoint() -> String {
    abi::EXPORT_PROCESS.to_owned()
}
fn default_ports() -> Vec<String> {
    vec!["out".to_owned()]
}
fn default_max_batch() -> u32 {
    256
}
fn default_memory_pages() -> u32 {
    256
}
fn default_deadline() -> HumanDuration {
    HumanDuration(std::time::Duration::from_millis(100))
}
fn default_max_output() -> u64 {
    16 << 20
}
fn default_max_records() -> u32 {
    64
}
