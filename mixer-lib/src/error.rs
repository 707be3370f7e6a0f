//! The crate's error type.

use std::path::PathBuf;

use crate::store::StoreError;

/// Everything a mixer can refuse or fail at.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum MixerError {
    /// A file of the data directory could not be read or written.
    #[error("cannot {action} {}", .path.display())]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// What was being done.
        action: &'static str,
        /// The operating system's error.
        #[source]
        source: std::io::Error,
    },
    /// The cluster key file is unusable.
    #[error("cluster key {}: {reason}", .path.display())]
    Key {
        /// The key file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// The key file is not the key this mixer's store was made with: signing with it would
    /// disown every rack. Restore the right `cluster.key` from its backup.
    #[error(
        "the cluster key's public half {found} is not the one this store was made with ({expected}); restore cluster.key from its backup"
    )]
    KeyMismatch {
        /// The public key the store remembers.
        expected: String,
        /// The public key of the key file.
        found: String,
    },
    /// The operating system gave no randomness (for a rack id, the mixer's id or a salt).
    #[error("no randomness from the operating system: {0}")]
    Entropy(String),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The transport failed.
    #[error("snake")]
    Snake(#[from] snake::Error),
    /// A scenario does not parse or validate; the text lists every problem with `line:col`.
    #[error("invalid scenario")]
    Scenario(#[from] rack_lib::scenario::ScenarioError),
    /// A scenario's `meta.version` is not a SemVer version.
    #[error("scenario version `{0}` is not SemVer (MAJOR.MINOR.PATCH)")]
    Version(String),
    /// No rack of that name (or id).
    #[error("no rack `{0}`")]
    NoRack(String),
    /// No such scenario version.
    #[error("no scenario {0}")]
    NoScenario(String),
    /// A payload could not be encoded.
    #[error("payload")]
    Payload(#[from] fluxmsg::Error),
    /// A payload could not be signed.
    #[error("signature")]
    Sign(#[from] rack_lib::passport::PassportError),
}
