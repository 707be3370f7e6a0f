//! Signed modules: Ed25519 over the SHA-256 of a module, in a custom section (see
//! [`SIGNATURE_SECTION`]).

use std::fmt::Write as _;

use sha2::{Digest as _, Sha256};
use wasmparser::{BinaryReader, Parser};

use super::key::{PublicKey, SecretKey};

/// The custom section that holds a module's vendor signature: the 64-byte Ed25519 signature
/// of its [`digest`].
///
/// As in the Go fluxrig, a vendor signs a module with an Ed25519 key ([`sign`]); the
/// signature is over the module's [`digest`], the SHA-256 of its bytes without its signature
/// sections, and travels in the module itself, as the payload of this custom section. Custom
/// sections do not change what a module does, so a signed module runs anywhere an unsigned
/// one does.
///
/// The digest also leaves out [`CLUSTER_SIGNATURE_SECTION`], the reference mixer's
/// counter-signature, so that a counter-signed module keeps its vendor's signature and its
/// digest. Every other section, custom or not, is signed byte for byte.
///
/// Keys travel as text: a [`PublicKey`] is 64 hex characters of its 32 bytes, a
/// [`SecretKey`] 64 hex characters of its 32-byte seed, kept in a file.
pub const SIGNATURE_SECTION: &str = "fluxrig.signature";

/// The custom section of the reference mixer's counter-signature. It is not checked here, but
/// [`digest`] leaves it out, as it does [`SIGNATURE_SECTION`].
pub const CLUSTER_SIGNATURE_SECTION: &str = "fluxrig.cluster.signature";

/// The custom sections [`digest`] leaves out and [`sign`] removes.
const STRIPPED: [&str; 2] = [SIGNATURE_SECTION, CLUSTER_SIGNATURE_SECTION];

/// Bytes of an Ed25519 signature.
const SIGNATURE_BYTES: usize = 64;

/// A failure to sign or verify a module, or to read a key.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SignError {
    /// The bytes are not a core wasm module whose sections can be walked.
    #[error("malformed wasm module: {detail}")]
    Malformed {
        /// What is wrong, with the byte offset.
        detail: String,
    },
    /// The module carries a signature that does not hold: no trusted key verifies it, or the
    /// section is not 64 bytes.
    #[error("bad signature on module {fingerprint}: {reason}")]
    BadSignature {
        /// The first 8 bytes of the module's [`digest`], in hex.
        fingerprint: String,
        /// Why it does not hold.
        reason: String,
    },
    /// The module is signed, but no trusted key was given to verify it with.
    #[error("module {fingerprint} is signed, but no trusted keys are configured to verify it")]
    NoTrustedKeys {
        /// The first 8 bytes of the module's [`digest`], in hex.
        fingerprint: String,
    },
    /// The module has more than one signature section.
    #[error("module has {count} {SIGNATURE_SECTION} sections; a module carries one signature")]
    DuplicateSignature {
        /// How many.
        count: usize,
    },
    /// A key in text form that does not parse. The text itself is never repeated.
    #[error("bad {which} key: {reason}")]
    Key {
        /// `public` or `secret`.
        which: &'static str,
        /// What is wrong with it.
        reason: String,
    },
    /// The operating system gave no randomness for a new key.
    #[error("cannot generate a key: {0}")]
    Entropy(String),
}

/// Whether a module is signed, and by whom.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signed {
    /// The module has no [`SIGNATURE_SECTION`].
    Unsigned,
    /// The signature verifies with the trusted key at this index.
    By(usize),
}

/// One top-level section of a module.
struct Section<'a> {
    /// The whole section: id, size and content.
    bytes: &'a [u8],
    /// The name of a custom section.
    name: Option<&'a str>,
    /// What follows the name of a custom section.
    payload: &'a [u8],
}

impl Section<'_> {
    fn stripped(&self) -> bool {
        self.name.is_some_and(|name| STRIPPED.contains(&name))
    }

    fn is_signature(&self) -> bool {
        self.name == Some(SIGNATURE_SECTION)
    }
}

fn malformed(e: &wasmparser::BinaryReaderError) -> SignError {
    SignError::Malformed {
        detail: e.to_string(),
    }
}

/// Splits `module` into its 8-byte header and its top-level sections, without validating
/// what the sections hold.
fn sections(module: &[u8]) -> Result<(&[u8], Vec<Section<'_>>), SignError> {
    if !Parser::is_core_wasm(module) {
        let detail = if Parser::is_component(module) {
            "a component, not a core module"
        } else {
            "no core wasm header (\\0asm, version 1)"
        };
        return Err(SignError::Malformed {
            detail: detail.to_owned(),
        });
    }
    let (header, rest) = module.split_at(8);
    let mut reader = BinaryReader::new(rest, 8);
    let mut out = Vec::new();
    while !reader.eof() {
        let start = reader.original_position() - 8;
        let id = reader.read_u8().map_err(|e| malformed(&e))?;
        let size = reader.read_var_u32().map_err(|e| malformed(&e))?;
        let size = usize::try_from(size).map_err(|_| SignError::Malformed {
            detail: "section size does not fit in memory".to_owned(),
        })?;
        let content_at = reader.original_position();
        let content = reader.read_bytes(size).map_err(|e| malformed(&e))?;
        let bytes = &rest[start..reader.original_position() - 8];
        let (name, payload) = if id == 0 {
            let mut custom = BinaryReader::new(content, content_at);
            let name = custom.read_string().map_err(|e| malformed(&e))?;
            let at = custom.original_position() - content_at;
            (Some(name), &content[at..])
        } else {
            (None, content)
        };
        out.push(Section {
            bytes,
            name,
            payload,
        });
    }
    Ok((header, out))
}

fn digest_of(header: &[u8], sections: &[Section<'_>]) -> [u8; 32] {
    let mut hasher = Sha256::new();
    hasher.update(header);
    for section in sections.iter().filter(|s| !s.stripped()) {
        hasher.update(section.bytes);
    }
    hasher.finalize().into()
}

/// The SHA-256 of `module` with every [`SIGNATURE_SECTION`] and [`CLUSTER_SIGNATURE_SECTION`]
/// custom section left out: what a signature signs, and the same before and after signing.
/// Every other section is hashed verbatim, its id and size included.
///
/// # Errors
///
/// [`SignError::Malformed`] when the bytes are not a core wasm module whose sections can be
/// walked. The sections' contents are not validated here.
pub fn digest(module: &[u8]) -> Result<[u8; 32], SignError> {
    let (header, sections) = sections(module)?;
    Ok(digest_of(header, &sections))
}

/// Signs `module` with `key`: any signature sections are removed (the counter-signature
/// too, which the new signature would make stale) and a [`SIGNATURE_SECTION`] holding the
/// signature of the module's [`digest`] is appended. Signing a signed module replaces its
/// signature.
///
/// # Errors
///
/// [`SignError::Malformed`] when the bytes are not a core wasm module.
pub fn sign(module: &[u8], key: &SecretKey) -> Result<Vec<u8>, SignError> {
    let (header, sections) = sections(module)?;
    let digest = digest_of(header, &sections);
    let signature = key.sign(&digest);

    let name = SIGNATURE_SECTION.as_bytes();
    // The name's length (one LEB128 byte: it is under 128), the name, the signature.
    let content = 1 + name.len() + SIGNATURE_BYTES;
    let mut out = Vec::with_capacity(module.len() + content + 2);
    out.extend_from_slice(header);
    for section in sections.iter().filter(|s| !s.stripped()) {
        out.extend_from_slice(section.bytes);
    }
    out.push(0);
    leb128(&mut out, content);
    leb128(&mut out, name.len());
    out.extend_from_slice(name);
    out.extend_from_slice(&signature);
    Ok(out)
}

fn leb128(out: &mut Vec<u8>, mut n: usize) {
    loop {
        let low = (n & 0x7f) as u8;
        n >>= 7;
        if n == 0 {
            out.push(low);
            return;
        }
        out.push(low | 0x80);
    }
}

/// Checks the signature of `module` against the `trusted` keys.
///
/// A module without a [`SIGNATURE_SECTION`] is [`Signed::Unsigned`], whatever the keys;
/// whether that is acceptable is the caller's decision. A signed module is
/// [`Signed::By`] the index of the first trusted key that verifies it (strict Ed25519
/// verification over the [`digest`]).
///
/// # Errors
///
/// - [`SignError::Malformed`]: not a core wasm module;
/// - [`SignError::DuplicateSignature`]: more than one signature section;
/// - [`SignError::NoTrustedKeys`]: signed (whatever the section holds), and `trusted` is
///   empty;
/// - [`SignError::BadSignature`]: the section is not 64 bytes, or no trusted key verifies
///   the signature (the module was changed after signing, or someone else signed it).
pub fn verify(module: &[u8], trusted: &[PublicKey]) -> Result<Signed, SignError> {
    let (header, sections) = sections(module)?;
    let mut signatures = sections.iter().filter(|s| s.is_signature());
    let Some(section) = signatures.next() else {
        return Ok(Signed::Unsigned);
    };
    let extra = signatures.count();
    if extra > 0 {
        return Err(SignError::DuplicateSignature { count: extra + 1 });
    }
    let digest = digest_of(header, &sections);
    let bad = |reason: String| SignError::BadSignature {
        fingerprint: fingerprint(&digest),
        reason,
    };
    if trusted.is_empty() {
        return Err(SignError::NoTrustedKeys {
            fingerprint: fingerprint(&digest),
        });
    }
    let Ok(bytes) = <[u8; SIGNATURE_BYTES]>::try_from(section.payload) else {
        return Err(bad(format!(
            "the {SIGNATURE_SECTION} section holds {} bytes, not an Ed25519 signature ({SIGNATURE_BYTES})",
            section.payload.len()
        )));
    };
    trusted
        .iter()
        .position(|key| key.verifies(&digest, &bytes))
        .map(Signed::By)
        .ok_or_else(|| {
            bad(format!(
                "no trusted key ({} given) verifies its signature; it was changed after signing, or signed by another key",
                trusted.len()
            ))
        })
}

/// The first 8 bytes of a digest in hex: enough to tell modules apart in a message.
pub(crate) fn fingerprint(digest: &[u8; 32]) -> String {
    to_hex(&digest[..8])
}

/// A module digest (see [`digest`]) as 64 lowercase hex characters, as logs, the disk cache
/// and `fluxrig wasm check` show it.
#[must_use]
pub fn digest_hex(digest: &[u8; 32]) -> String {
    to_hex(digest)
}

pub(super) fn to_hex(bytes: &[u8]) -> String {
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(s, "{b:02x}");
    }
    s
}
