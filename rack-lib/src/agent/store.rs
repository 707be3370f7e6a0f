//! The state directory: `rack.flux` (pinned key and passport) and `scenario.flux` (the last
//! good scenario), each written atomically and readable by the rack's user only.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read as _, Write as _};
use std::path::{Path, PathBuf};

use bytes::Bytes;
use fluxmsg::system::{Payload as _, ScenarioPush, StateEnvelope};
use fluxmsg::{Codec, Map, Value};

use super::error::AgentError;
use crate::passport::ClusterPublic;

/// The identity file.
pub(super) const RACK_FILE: &str = "rack.flux";
/// The last good scenario.
pub(super) const SCENARIO_FILE: &str = "scenario.flux";
/// The version written in `rack.flux`.
const IDENTITY_VERSION: u64 = 1;
/// The largest state file read: a scenario of the largest size, with room for the push.
const MAX_FILE_BYTES: u64 = (crate::scenario::MAX_YAML_BYTES as u64) + (1 << 20);

/// What `rack.flux` holds.
#[derive(Debug, Clone, Default)]
pub(super) struct Identity {
    /// The cluster key everything must be signed by.
    pub(super) pinned: Option<ClusterPublic>,
    /// The passport, unless none was issued yet or the mixer denied the last one.
    pub(super) passport: Option<StateEnvelope>,
}

/// The state directory.
#[derive(Debug, Clone)]
pub(super) struct Store {
    dir: PathBuf,
}

impl Store {
    /// The directory, created (mode 0700 on Unix) if it is missing.
    pub(super) fn open(dir: &Path) -> Result<Store, AgentError> {
        let mut builder = fs::DirBuilder::new();
        builder.recursive(true);
        #[cfg(unix)]
        std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
        builder.create(dir).map_err(|source| AgentError::Io {
            action: "create",
            path: dir.to_owned(),
            source,
        })?;
        Ok(Store {
            dir: dir.to_owned(),
        })
    }

    /// The path of one of its files.
    pub(super) fn path(&self, file: &str) -> PathBuf {
        self.dir.join(file)
    }

    /// `rack.flux`, or the empty identity when there is none.
    pub(super) fn load_identity(&self) -> Result<Identity, AgentError> {
        let path = self.path(RACK_FILE);
        let Some(bytes) = read(&path)? else {
            return Ok(Identity::default());
        };
        decode_identity(&bytes).map_err(|reason| AgentError::BadState { path, reason })
    }

    /// Writes `rack.flux`.
    pub(super) async fn save_identity(&self, identity: &Identity) -> Result<(), AgentError> {
        let bytes = encode_identity(identity).map_err(|reason| AgentError::BadState {
            path: self.path(RACK_FILE),
            reason,
        })?;
        self.write(RACK_FILE, bytes).await
    }

    /// `scenario.flux`, if there is one.
    pub(super) fn load_scenario(&self) -> Result<Option<ScenarioPush>, AgentError> {
        let path = self.path(SCENARIO_FILE);
        let Some(bytes) = read(&path)? else {
            return Ok(None);
        };
        ScenarioPush::from_cbor(&bytes)
            .map(Some)
            .map_err(|e| AgentError::BadState {
                path,
                reason: e.to_string(),
            })
    }

    /// Writes `scenario.flux`.
    pub(super) async fn save_scenario(&self, push: &ScenarioPush) -> Result<(), AgentError> {
        let bytes = push.to_cbor().map_err(|e| AgentError::BadState {
            path: self.path(SCENARIO_FILE),
            reason: e.to_string(),
        })?;
        self.write(SCENARIO_FILE, bytes).await
    }

    /// Writes a file atomically, off the async workers.
    async fn write(&self, file: &'static str, bytes: Vec<u8>) -> Result<(), AgentError> {
        let dir = self.dir.clone();
        let path = self.path(file);
        let done = tokio::task::spawn_blocking(move || write_atomic(&dir, file, &bytes)).await;
        let result = done.unwrap_or_else(|e| Err(io::Error::other(e.to_string())));
        result.map_err(|source| AgentError::Io {
            action: "write",
            path,
            source,
        })
    }
}

/// Reads a whole file; `None` when it does not exist.
fn read(path: &Path) -> Result<Option<Vec<u8>>, AgentError> {
    let fail = |source| AgentError::Io {
        action: "read",
        path: path.to_owned(),
        source,
    };
    let file = match File::open(path) {
        Ok(file) => file,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(fail(e)),
    };
    let mut bytes = Vec::new();
    file.take(MAX_FILE_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(fail)?;
    if bytes.len() as u64 > MAX_FILE_BYTES {
        return Err(AgentError::BadState {
            path: path.to_owned(),
            reason: format!("larger than {MAX_FILE_BYTES} bytes"),
        });
    }
    Ok(Some(bytes))
}

/// Temp file in the same directory, write, fsync, rename over the file, fsync the directory.
fn write_atomic(dir: &Path, file: &str, bytes: &[u8]) -> io::Result<()> {
    let tmp = dir.join(format!(".{file}.tmp"));
    match fs::remove_file(&tmp) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
        _ => {}
    }
    let mut options = OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut out = options.open(&tmp)?;
    out.write_all(bytes)?;
    out.sync_all()?;
    drop(out);
    fs::rename(&tmp, dir.join(file))?;
    #[cfg(unix)]
    File::open(dir)?.sync_all()?;
    Ok(())
}

/// `rack.flux`: a canonical CBOR map `{ "version": 1, "pinned_key": <32 bytes>,
/// "passport": <the StateEnvelope's CBOR> }`; `passport` is absent once the mixer denied it.
fn encode_identity(identity: &Identity) -> Result<Vec<u8>, String> {
    let mut map = Map::new();
    map.insert("version", Value::from(IDENTITY_VERSION));
    if let Some(key) = &identity.pinned {
        map.insert("pinned_key", Value::from(key.to_bytes().to_vec()));
    }
    if let Some(passport) = &identity.passport {
        let cbor = passport.to_cbor().map_err(|e| e.to_string())?;
        map.insert("passport", Value::from(cbor));
    }
    let mut buf = Vec::new();
    Codec::new()
        .encode_value(&Value::Map(map), &mut buf)
        .map_err(|e| e.to_string())?;
    Ok(buf)
}

fn decode_identity(bytes: &[u8]) -> Result<Identity, String> {
    let value = Codec::new()
        .decode_value(bytes)
        .map_err(|e| e.to_string())?;
    let map = value.as_map().ok_or("not a CBOR map")?;
    match map.get("version").and_then(Value::as_u64) {
        Some(IDENTITY_VERSION) => {}
        Some(v) => return Err(format!("unknown version {v}")),
        None => return Err("no version".to_owned()),
    }
    let bytes_of = |key: &str| -> Result<Option<&Bytes>, String> {
        match map.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(v) => v
                .as_bytes()
                .map(Some)
                .ok_or_else(|| format!("`{key}` is not a byte string")),
        }
    };
    let pinned = bytes_of("pinned_key")?
        .map(|b| ClusterPublic::from_bytes(b).map_err(|e| format!("pinned_key: {e}")))
        .transpose()?;
    let passport = bytes_of("passport")?
        .map(|b| StateEnvelope::from_cbor(b).map_err(|e| format!("passport: {e}")))
        .transpose()?;
    Ok(Identity { pinned, passport })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_identity_reads_back_as_written() {
        let key = crate::passport::ClusterKey::from_seed([7; 32]);
        let passport = key
            .issue(&fluxmsg::system::RackState::default())
            .expect("issued");
        let identity = Identity {
            pinned: Some(key.public()),
            passport: Some(passport.clone()),
        };
        let bytes = encode_identity(&identity).expect("encoded");
        let back = decode_identity(&bytes).expect("decoded");
        assert_eq!(back.pinned, Some(key.public()));
        assert_eq!(back.passport, Some(passport));
        let denied = encode_identity(&Identity {
            pinned: Some(key.public()),
            passport: None,
        })
        .expect("encoded");
        assert!(
            decode_identity(&denied)
                .expect("decoded")
                .passport
                .is_none()
        );
        assert!(decode_identity(b"\x01").is_err());
    }
}
