//! Cluster keys and passports: what the mixer signs and the rack agent verifies.
//!
//! A fleet has one Ed25519 cluster key. The mixer signs with it every passport it issues (a
//! [`StateEnvelope`] of a [`RackState`]), every scenario push and every heartbeat reply that
//! carries commands. The agent **pins** the cluster's public key at its first enrollment and
//! from then on refuses anything signed by another key; the reference verifies against a key
//! carried in the passport itself, which anyone can forge.
//!
//! ```
//! use fluxmsg::system::{RackState, ScenarioPush};
//! use rack_lib::passport::ClusterKey;
//!
//! let cluster = ClusterKey::generate()?;
//! let passport = cluster.issue(&RackState { name: "edge-1".into(), ..RackState::default() })?;
//! let pinned = cluster.public();
//! assert_eq!(pinned.open(&passport)?.name, "edge-1");
//!
//! let mut push = ScenarioPush { rack_name: "edge-1".into(), ..ScenarioPush::default() };
//! cluster.sign(&mut push)?;
//! pinned.check(&push)?;
//!
//! let stranger = ClusterKey::generate()?;
//! assert!(stranger.public().check(&push).is_err());
//! # Ok::<(), rack_lib::passport::PassportError>(())
//! ```

use bytes::Bytes;
use ed25519_dalek::{Signature, Signer as _, SigningKey, Verifier as _, VerifyingKey};
use fluxmsg::system::{Payload, RackState, Signed, StateEnvelope, signed_bytes};

/// Why a key, a passport or a signature was refused.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PassportError {
    /// The operating system gave no randomness for a new key.
    #[error("no randomness for a new key: {0}")]
    Entropy(String),
    /// A key is not 32 bytes (or 64 hex characters).
    #[error("bad key: {0}")]
    BadKey(&'static str),
    /// A signature does not verify against the pinned cluster key.
    #[error("signature does not verify against the cluster key")]
    BadSignature,
    /// A signed payload could not be encoded or decoded.
    #[error("bad payload")]
    Payload(#[from] fluxmsg::Error),
}

/// The cluster's secret key: it signs passports, pushes and commands. Its bytes are wiped when
/// it is dropped; its `Debug` shows the public key only.
#[derive(Clone)]
pub struct ClusterKey(SigningKey);

impl std::fmt::Debug for ClusterKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ClusterKey(public {})", self.public().to_hex())
    }
}

impl ClusterKey {
    /// A new key from 32 bytes of the operating system's randomness.
    ///
    /// # Errors
    ///
    /// [`PassportError::Entropy`] when the operating system gives none.
    pub fn generate() -> Result<ClusterKey, PassportError> {
        use rand::TryRng as _;
        let mut seed = [0u8; 32];
        rand::rngs::SysRng
            .try_fill_bytes(&mut seed)
            .map_err(|e| PassportError::Entropy(e.to_string()))?;
        Ok(ClusterKey::from_seed(seed))
    }

    /// The key with this 32-byte seed (the seed is wiped).
    #[must_use]
    pub fn from_seed(mut seed: [u8; 32]) -> ClusterKey {
        let key = ClusterKey(SigningKey::from_bytes(&seed));
        seed.fill(0);
        key
    }

    /// The key from its seed as 64 hex characters (a key file's text).
    ///
    /// # Errors
    ///
    /// [`PassportError::BadKey`] when it is not 64 hex characters.
    pub fn from_hex(text: &str) -> Result<ClusterKey, PassportError> {
        Ok(ClusterKey::from_seed(hex32(text.trim())?))
    }

    /// Its seed as 64 lowercase hex characters, for the key file. Keep it secret.
    #[must_use]
    pub fn to_hex(&self) -> String {
        to_hex(&self.0.to_bytes())
    }

    /// Its public half, the one racks pin.
    #[must_use]
    pub fn public(&self) -> ClusterPublic {
        ClusterPublic(self.0.verifying_key())
    }

    /// A passport: `state` with the cluster's public key in it, signed.
    ///
    /// # Errors
    ///
    /// [`PassportError::Payload`] if the state cannot be encoded.
    pub fn issue(&self, state: &RackState) -> Result<StateEnvelope, PassportError> {
        let mut state = state.clone();
        state.mixer_pub = Bytes::copy_from_slice(self.public().0.as_bytes());
        let payload = state.to_cbor()?;
        let signature = self.0.sign(&payload);
        Ok(StateEnvelope {
            payload: payload.into(),
            signature: Bytes::copy_from_slice(&signature.to_bytes()),
        })
    }

    /// Signs a payload that carries its own signature field (a push, a heartbeat reply).
    ///
    /// # Errors
    ///
    /// [`PassportError::Payload`] if it cannot be encoded.
    pub fn sign<P: Payload + Signed + Clone>(&self, payload: &mut P) -> Result<(), PassportError> {
        let bytes = signed_bytes(payload)?;
        payload.set_signature(Bytes::copy_from_slice(&self.0.sign(&bytes).to_bytes()));
        Ok(())
    }
}

/// The cluster's public key: what an agent pins and checks everything against.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct ClusterPublic(VerifyingKey);

impl std::fmt::Debug for ClusterPublic {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ClusterPublic({})", self.to_hex())
    }
}

impl ClusterPublic {
    /// The key from its 32 bytes.
    ///
    /// # Errors
    ///
    /// [`PassportError::BadKey`] when they are not a valid Ed25519 public key.
    pub fn from_bytes(bytes: &[u8]) -> Result<ClusterPublic, PassportError> {
        let bytes: [u8; 32] = bytes
            .try_into()
            .map_err(|_| PassportError::BadKey("a public key is 32 bytes"))?;
        VerifyingKey::from_bytes(&bytes)
            .map(ClusterPublic)
            .map_err(|_| PassportError::BadKey("not an Ed25519 public key"))
    }

    /// The key from 64 hex characters.
    ///
    /// # Errors
    ///
    /// [`PassportError::BadKey`] as [`ClusterPublic::from_bytes`].
    pub fn from_hex(text: &str) -> Result<ClusterPublic, PassportError> {
        ClusterPublic::from_bytes(&hex32(text.trim())?)
    }

    /// Its 32 bytes.
    #[must_use]
    pub fn to_bytes(&self) -> [u8; 32] {
        self.0.to_bytes()
    }

    /// Its 32 bytes as 64 lowercase hex characters.
    #[must_use]
    pub fn to_hex(&self) -> String {
        to_hex(self.0.as_bytes())
    }

    /// The rack state inside a passport, once its signature verifies against this key.
    ///
    /// # Errors
    ///
    /// [`PassportError::BadSignature`] when another key signed it (whatever key the passport
    /// claims inside), [`PassportError::Payload`] when it does not decode.
    pub fn open(&self, passport: &StateEnvelope) -> Result<RackState, PassportError> {
        self.verify(&passport.payload, &passport.signature)?;
        Ok(RackState::from_cbor(&passport.payload)?)
    }

    /// Checks the signature of a payload that carries its own.
    ///
    /// # Errors
    ///
    /// [`PassportError::BadSignature`] when it is missing or another key made it.
    pub fn check<P: Payload + Signed + Clone>(&self, payload: &P) -> Result<(), PassportError> {
        self.verify(&signed_bytes(payload)?, payload.signature())
    }

    fn verify(&self, bytes: &[u8], signature: &[u8]) -> Result<(), PassportError> {
        let signature =
            Signature::from_slice(signature).map_err(|_| PassportError::BadSignature)?;
        self.0
            .verify(bytes, &signature)
            .map_err(|_| PassportError::BadSignature)
    }
}

fn to_hex(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        // Writing into a String cannot fail.
        let _ = write!(s, "{b:02x}");
    }
    s
}

fn hex32(text: &str) -> Result<[u8; 32], PassportError> {
    let bad = PassportError::BadKey("expected 64 hex characters");
    if text.len() != 64 || !text.is_ascii() {
        return Err(bad);
    }
    let mut out = [0u8; 32];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(&text[2 * i..2 * i + 2], 16)
            .map_err(|_| PassportError::BadKey("expected 64 hex characters"))?;
    }
    Ok(out)
}
