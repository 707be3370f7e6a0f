//! URL-safe base64 without padding (RFC 4648 §5): what the gears that keep state in a snake KV
//! bucket (`coatcheck`, the conductor's durable valet) make their keys of, so that any value
//! is a valid KV key.

const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

/// Appends `bytes`, encoded, to `out`.
pub(crate) fn encode_into(bytes: &[u8], out: &mut String) {
    out.reserve(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, b)| n | (u32::from(*b) << (16 - 8 * i)));
        // A chunk of n bytes gives n + 1 characters.
        for i in 0..=chunk.len() {
            out.push(char::from(ALPHABET[((n >> (18 - 6 * i)) & 0x3f) as usize]));
        }
    }
}

/// `bytes`, encoded.
pub(crate) fn encode(bytes: &[u8]) -> String {
    let mut out = String::new();
    encode_into(bytes, &mut out);
    out
}

/// The bytes `text` encodes; `None` for text that is not the output of [`encode`].
pub(crate) fn decode(text: &str) -> Option<Vec<u8>> {
    let mut bytes = Vec::with_capacity(text.len() * 3 / 4);
    for chunk in text.as_bytes().chunks(4) {
        if chunk.len() == 1 {
            return None;
        }
        let mut n = 0u32;
        for (i, c) in chunk.iter().enumerate() {
            let d = ALPHABET.iter().position(|b| b == c)?;
            n |= (d as u32) << (18 - 6 * i);
        }
        for i in 0..chunk.len() - 1 {
            bytes.push((n >> (16 - 8 * i)) as u8);
        }
    }
    Some(bytes)
}
