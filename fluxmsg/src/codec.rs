//! The codec handle: limits plus the encode and decode entry points.

use bytes::Bytes;

use crate::{Error, FluxMsg, Value, decode, encode};

/// The deepest nesting a codec may be configured to accept; it bounds the decoder's and the
/// encoder's recursion.
pub const MAX_DEPTH_CEILING: usize = 256;

/// The limits a [`Codec`] enforces on decode and on encode.
///
/// Defaults follow the Go fluxrig: 64 hops, 2 MiB (2,097,152 bytes) of encoded message, and
/// 32 levels of nesting inside `data` (the `data` map itself is level 1); a hop's decision
/// (which the Go fluxrig does not write) holds at most 128 bytes. Unlike the Go version,
/// where the limits are process-global, each codec instance has its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    max_hops: usize,
    max_size: usize,
    max_depth: usize,
    max_decision_len: usize,
}

impl Limits {
    /// The Go fluxrig's limits.
    pub const DEFAULT: Limits = Limits {
        max_hops: 64,
        max_size: 2 * 1024 * 1024,
        max_depth: 32,
        max_decision_len: 128,
    };

    /// Most hops a message's `path` may hold.
    pub fn max_hops(&self) -> usize {
        self.max_hops
    }

    /// Most bytes an encoded message may take.
    pub fn max_size(&self) -> usize {
        self.max_size
    }

    /// Deepest nesting of maps and arrays (the `data` map is level 1).
    pub fn max_depth(&self) -> usize {
        self.max_depth
    }

    /// Most bytes of UTF-8 a hop's [`decision`](crate::Hop::decision) may take.
    pub const fn max_decision_len(&self) -> usize {
        self.max_decision_len
    }
}

impl Default for Limits {
    fn default() -> Self {
        Limits::DEFAULT
    }
}

/// Encodes and decodes fluxMsgs under a set of [`Limits`].
///
/// The encoder writes RFC 8949 core deterministic CBOR: shortest integer, length and float
/// forms (every NaN as `f97e00`), definite lengths, map keys sorted, default-valued envelope
/// fields left out. Equal messages therefore give equal bytes, and a canonical CBOR encoder
/// given the same data model (the same fields left out) agrees byte for byte; ciborium
/// through this crate's serde traits is checked to.
///
/// The decoder accepts any key order and either id form, and refuses malformed, truncated,
/// over-deep and over-large input with an [`Error::Decode`] that names the byte offset. It
/// never panics and recurses at most [`Limits::max_depth`] levels. It reserves room for at
/// most 1,024 items of a container before they arrive, and never more than the rest of the
/// input could hold, so memory follows the input actually read, not the lengths it
/// announces.
///
/// ```
/// use fluxmsg::{Codec, FluxMsg, Id};
///
/// let codec = Codec::builder().max_hops(16).build()?;
/// let msg = FluxMsg::builder().id(Id::U64(7)).ts(1).build();
/// let mut buf = Vec::new();
/// codec.encode(&msg, &mut buf)?;
/// assert_eq!(buf, [0xa2, 0x62, b'i', b'd', 0x07, 0x62, b't', b's', 0x01]);
/// assert_eq!(codec.decode(&buf)?, msg);
/// # Ok::<(), fluxmsg::Error>(())
/// ```
#[derive(Debug, Clone, Default)]
pub struct Codec {
    limits: Limits,
}

impl Codec {
    /// A codec with the default limits.
    pub fn new() -> Self {
        Self::default()
    }

    /// Starts a builder for a codec with other limits.
    pub fn builder() -> CodecBuilder {
        CodecBuilder::default()
    }

    /// The limits in force.
    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// Appends the encoding of `msg` to `buf` and returns its length.
    ///
    /// Reuse `buf` (clear it between messages) to encode without allocating.
    ///
    /// # Errors
    ///
    /// [`Error::Limit`] when the message breaks a limit, a hop's decision longer than
    /// [`Limits::max_decision_len`] included (`buf` is then left as it was), and
    /// [`Error::ReservedKey`] when [`FluxMsg::extra`] holds an envelope field's name.
    pub fn encode(&self, msg: &FluxMsg, buf: &mut Vec<u8>) -> Result<usize, Error> {
        encode::message(msg, &self.limits, buf)
    }

    /// Appends an encoding of `msg` with the envelope's small fields first (`id`, `ts`,
    /// `flags`, `trace`, `ref_id`, `src_id`, `meta`, unknown fields), then `data`, `raw` and
    /// `path`, and returns its length.
    ///
    /// The bytes are not canonical (they differ from [`Codec::encode`]'s) but decode to the
    /// same message: our decoder and [`MsgView`](crate::MsgView) accept any key order. A
    /// [`MsgView`](crate::MsgView) finds a metadata key or an id without skipping `data`,
    /// which is why the `wasm` gear's batch input uses it.
    ///
    /// # Errors
    ///
    /// As [`Codec::encode`].
    pub fn encode_envelope_first(&self, msg: &FluxMsg, buf: &mut Vec<u8>) -> Result<usize, Error> {
        encode::message_envelope_first(msg, &self.limits, buf)
    }

    /// Encodes `msg` into a new vector.
    ///
    /// # Errors
    ///
    /// As [`Codec::encode`].
    pub fn encode_to_vec(&self, msg: &FluxMsg) -> Result<Vec<u8>, Error> {
        let mut buf = Vec::new();
        self.encode(msg, &mut buf)?;
        Ok(buf)
    }

    /// Decodes one message that fills all of `input`, copying strings and byte strings.
    ///
    /// # Errors
    ///
    /// [`Error::Decode`] with the offset and the reason.
    #[inline]
    pub fn decode(&self, input: &[u8]) -> Result<FluxMsg, Error> {
        decode::message(input, decode::Copied, &self.limits)
    }

    /// Decodes one message that fills all of `input` without copying byte strings: `raw`
    /// and every [`Value::Bytes`] are slices of `input`'s buffer (text is still copied).
    ///
    /// This is the zero-copy path for large payloads, and the natural one for bytes that
    /// arrive as [`Bytes`] from a transport. A decoded slice keeps the whole input buffer
    /// alive; copy it out with [`Bytes::copy_from_slice`] to keep a small part for long.
    ///
    /// # Errors
    ///
    /// As [`Codec::decode`].
    #[inline]
    pub fn decode_shared(&self, input: &Bytes) -> Result<FluxMsg, Error> {
        decode::message(input, decode::Shared(input), &self.limits)
    }

    /// Encodes one [`Value`] (the top-level value is nesting level 1).
    ///
    /// # Errors
    ///
    /// [`Error::Limit`] for too deep or too large a value.
    pub fn encode_value(&self, value: &Value, buf: &mut Vec<u8>) -> Result<usize, Error> {
        encode::value(value, &self.limits, buf)
    }

    /// Decodes one CBOR data item that fills all of `input` into a [`Value`].
    ///
    /// # Errors
    ///
    /// As [`Codec::decode`].
    pub fn decode_value(&self, input: &[u8]) -> Result<Value, Error> {
        decode::value(input, decode::Copied, &self.limits)
    }
}

/// Builds a [`Codec`] with validated limits.
#[derive(Debug, Clone, Default)]
#[must_use]
pub struct CodecBuilder {
    limits: Limits,
}

impl CodecBuilder {
    /// Most hops a message's `path` may hold (default 64).
    pub fn max_hops(mut self, n: usize) -> Self {
        self.limits.max_hops = n;
        self
    }

    /// Most bytes an encoded message may take (default 2 MiB).
    pub fn max_size(mut self, n: usize) -> Self {
        self.limits.max_size = n;
        self
    }

    /// Deepest nesting of maps and arrays, `data` being level 1 (default 32, at most
    /// [`MAX_DEPTH_CEILING`]).
    pub fn max_depth(mut self, n: usize) -> Self {
        self.limits.max_depth = n;
        self
    }

    /// Most bytes a hop's [`decision`](crate::Hop::decision) may take (default 128); 0 refuses
    /// every decision but an empty one.
    pub fn max_decision_len(mut self, n: usize) -> Self {
        self.limits.max_decision_len = n;
        self
    }

    /// The codec.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidLimits`] when `max_depth` is 0 or above [`MAX_DEPTH_CEILING`], or
    /// `max_size` is 0.
    pub fn build(self) -> Result<Codec, Error> {
        if self.limits.max_depth == 0 || self.limits.max_depth > MAX_DEPTH_CEILING {
            return Err(Error::InvalidLimits("max_depth must be within 1..=256"));
        }
        if self.limits.max_size == 0 {
            return Err(Error::InvalidLimits("max_size must be at least 1"));
        }
        Ok(Codec {
            limits: self.limits,
        })
    }
}

impl FluxMsg {
    /// Encodes the message with the default limits.
    ///
    /// # Errors
    ///
    /// As [`Codec::encode`].
    pub fn to_cbor(&self) -> Result<Vec<u8>, Error> {
        Codec::new().encode_to_vec(self)
    }

    /// Decodes a message with the default limits.
    ///
    /// # Errors
    ///
    /// As [`Codec::decode`].
    pub fn from_cbor(input: &[u8]) -> Result<FluxMsg, Error> {
        Codec::new().decode(input)
    }
}
