//! Ed25519 keys that sign and verify modules, and their text form.

use std::fmt;
use std::str::FromStr;

use ed25519_dalek::{Signature, Signer as _, SigningKey, VerifyingKey};

use super::sign::{SignError, to_hex};

/// A public Ed25519 key: it verifies the signatures of one signer ([`verify`](super::verify),
/// [`Policy::trusted_keys`](super::Policy::trusted_keys)).
///
/// Its text form is 64 hex characters of its 32 bytes: [`Display`](fmt::Display) writes
/// them in lower case, [`FromStr`] reads either case.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct PublicKey(VerifyingKey);

impl PublicKey {
    /// Whether `signature` is this key's signature of `message` (strict Ed25519
    /// verification).
    pub(crate) fn verifies(&self, message: &[u8], signature: &[u8; 64]) -> bool {
        self.0
            .verify_strict(message, &Signature::from_bytes(signature))
            .is_ok()
    }
}

impl fmt::Display for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&to_hex(self.0.as_bytes()))
    }
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PublicKey({self})")
    }
}

impl FromStr for PublicKey {
    type Err = SignError;

    /// Parses 64 hex characters, as [`Display`](fmt::Display) writes them (surrounding white
    /// space ignored).
    ///
    /// # Errors
    ///
    /// [`SignError::Key`] for a wrong length, a character that is not hex, or 32 bytes that
    /// are not a point of the curve.
    fn from_str(text: &str) -> Result<PublicKey, SignError> {
        let bytes = from_hex(text, "public")?;
        VerifyingKey::from_bytes(&bytes)
            .map(PublicKey)
            .map_err(|_| SignError::Key {
                which: "public",
                reason: "not a valid Ed25519 public key".to_owned(),
            })
    }
}

/// A secret Ed25519 key: it signs modules ([`sign`](super::sign)). Its bytes are wiped when
/// it is dropped, and its `Debug` shows the public key only.
///
/// Its text form, for a key file, is 64 hex characters of its 32-byte seed
/// ([`to_hex`](SecretKey::to_hex), [`FromStr`]).
#[derive(Clone)]
pub struct SecretKey(SigningKey);

impl SecretKey {
    /// A new key from 32 bytes of the operating system's randomness.
    ///
    /// # Errors
    ///
    /// [`SignError::Entropy`] when the operating system gives no randomness.
    pub fn generate() -> Result<SecretKey, SignError> {
        use rand::TryRng as _;
        let mut seed = [0u8; 32];
        rand::rngs::SysRng
            .try_fill_bytes(&mut seed)
            .map_err(|e| SignError::Entropy(e.to_string()))?;
        Ok(SecretKey::from_seed(seed))
    }

    /// The key with this 32-byte seed (the seed is wiped).
    #[must_use]
    pub fn from_seed(mut seed: [u8; 32]) -> SecretKey {
        let key = SecretKey(SigningKey::from_bytes(&seed));
        seed.fill(0);
        key
    }

    /// Its public key.
    #[must_use]
    pub fn public_key(&self) -> PublicKey {
        PublicKey(self.0.verifying_key())
    }

    /// Its seed as 64 lowercase hex characters, for a key file. Keep it secret.
    #[must_use]
    pub fn to_hex(&self) -> String {
        to_hex(self.0.as_bytes())
    }

    /// Its signature of `message`.
    pub(crate) fn sign(&self, message: &[u8]) -> [u8; 64] {
        self.0.sign(message).to_bytes()
    }
}

impl fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SecretKey")
            .field("public", &self.public_key())
            .finish_non_exhaustive()
    }
}

impl FromStr for SecretKey {
    type Err = SignError;

    /// Parses the 64 hex characters of a seed, as [`to_hex`](SecretKey::to_hex) writes them
    /// (a trailing newline is fine).
    ///
    /// # Errors
    ///
    /// [`SignError::Key`] for a wrong length or a character that is not hex; the error never
    /// repeats the text.
    fn from_str(text: &str) -> Result<SecretKey, SignError> {
        Ok(SecretKey::from_seed(from_hex(text, "secret")?))
    }
}

/// 32 bytes from 64 hex characters (either case; surrounding white space ignored).
fn from_hex(text: &str, which: &'static str) -> Result<[u8; 32], SignError> {
    let bad = |reason: String| SignError::Key { which, reason };
    let text = text.trim();
    if text.len() != 64 {
        return Err(bad(format!(
            "expected 64 hex characters, got {}",
            text.chars().count()
        )));
    }
    let mut out = [0; 32];
    for (byte, pair) in out.iter_mut().zip(text.as_bytes().chunks_exact(2)) {
        let (Some(high), Some(low)) = (nibble(pair[0]), nibble(pair[1])) else {
            return Err(bad("expected hex characters only (0-9, a-f)".to_owned()));
        };
        *byte = (high << 4) | low;
    }
    Ok(out)
}

fn nibble(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}
