//! The cluster key on disk: generated on first start, kept with mode 0600, checked against
//! the identity the store remembers.
//!
//! The key file is **the** file to back up: losing it loses the cluster (every passport was
//! signed with it and every rack pinned its public half), so [`backup`] copies it, and a mixer
//! whose key does not match the public key its store recorded at first start refuses to
//! start rather than sign with a stranger's key.

use std::io::Write as _;
use std::path::{Path, PathBuf};

use rack_lib::passport::ClusterKey;

use crate::MixerError;

/// The key file's name in the data directory.
pub const KEY_FILE: &str = "cluster.key";

/// Reads the cluster key in `dir`, or makes one there (mode 0600) when there is none.
/// Returns the key and whether it was made now.
///
/// # Errors
///
/// [`MixerError::Io`] when the directory or the file cannot be read or written,
/// [`MixerError::Key`] when the file does not hold a key.
pub fn load_or_create(dir: &Path) -> Result<(ClusterKey, bool), MixerError> {
    let path = dir.join(KEY_FILE);
    match std::fs::read_to_string(&path) {
        Ok(text) => Ok((
            ClusterKey::from_hex(&text).map_err(|e| MixerError::Key {
                path: path.clone(),
                reason: e.to_string(),
            })?,
            false,
        )),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            std::fs::create_dir_all(dir).map_err(|e| io(dir.to_path_buf(), "create", e))?;
            let key = ClusterKey::generate().map_err(|e| MixerError::Key {
                path: path.clone(),
                reason: e.to_string(),
            })?;
            write_secret(&path, key.to_hex().as_bytes())?;
            tracing::warn!(path = %path.display(), public_key = %key.public().to_hex(), "Made a new cluster key: back it up, losing it loses the cluster.");
            Ok((key, true))
        }
        Err(e) => Err(io(path, "read", e)),
    }
}

/// Copies the cluster key of `dir` to `to` (a new file, mode 0600).
///
/// # Errors
///
/// [`MixerError::Io`] when it cannot be read, or `to` exists or cannot be written.
pub fn backup(dir: &Path, to: &Path) -> Result<(), MixerError> {
    let from = dir.join(KEY_FILE);
    let bytes = std::fs::read(&from).map_err(|e| io(from, "read", e))?;
    write_secret(to, &bytes)
}

/// Writes a new file readable by its owner only; never replaces one.
fn write_secret(path: &Path, bytes: &[u8]) -> Result<(), MixerError> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        options.mode(0o600);
    }
    let mut file = options
        .open(path)
        .map_err(|e| io(path.to_path_buf(), "create", e))?;
    file.write_all(bytes)
        .and_then(|()| file.sync_all())
        .map_err(|e| io(path.to_path_buf(), "write", e))
}

fn io(path: PathBuf, action: &'static str, source: std::io::Error) -> MixerError {
    MixerError::Io {
        path,
        action,
        source,
    }
}
