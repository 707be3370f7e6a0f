//! The contract between a wasm gear's host (the `wasm` gear in `gears`) and its guest (a module,
//! built with [`guest`](crate::guest) or by hand): names, memory conventions and the byte
//! layouts that cross the boundary. Both sides use this module, so they cannot drift apart.
//!
//! # The reference ABI (Go fluxrig compatible)
//!
//! A module exports `memory`, `alloc(len: i32) -> i32` (or `malloc`), `free(ptr: i32, len: i32)`
//! and `process(ptr: i32, len: i32) -> i64`, and may import `env.log(level: i32, ptr: i32,
//! len: i32)` (levels [`LOG_DEBUG`] to [`LOG_ERROR`]). Per message the host encodes the whole
//! fluxMsg as CBOR, `alloc`s room for it in the guest, copies it in and calls `process`; the
//! result [`pack`]s a pointer (high 32 bits) and a length (low 32 bits) of a CBOR fluxMsg that
//! replaces the input on port `out`. A length of 0 drops the message. The host then `free`s
//! both buffers.
//!
//! # The batch entry point (ours)
//!
//! `process_batch(ptr: i32, len: i32) -> i64` takes many messages per call, which is what makes
//! a wasm gear cheap enough for the hot path. Same memory rules as `process`: the host
//! `alloc`s and fills the input, the guest returns a packed pointer and length of its output,
//! and the host `free`s both.
//!
//! - **Input** ([`BatchWriter`], [`BatchReader`]): a little-endian `u32` count, then per message
//!   a `u32` length and that many bytes of a CBOR fluxMsg. The `wasm` gear writes the
//!   envelope's small fields first ([`Codec::encode_envelope_first`]), so that a guest finds
//!   `meta` or an id without skipping `data`; a guest must accept any key order, as
//!   [`fluxmsg::MsgView`] does.
//! - **Output** ([`OutputWriter`], [`OutputReader`]): a `u32` count of [`Record`]s, each
//!   `u32 index` (of the input message it answers), `u8 kind` ([`RecordKind`]), `u16` length
//!   and bytes of a name (the output port, or the reason of a drop or an error), `u32` length
//!   and bytes of a body. Records come in the order the guest wrote them; an input message
//!   without records was dropped.
//! - **Edits** ([`EditsWriter`], [`EditsReader`], [`apply_edits`]): the body of an
//!   [`RecordKind::Emit`] record lists changes to the input message (`data` paths, `meta`
//!   keys, `raw`, `trace`, `flags`, `ref_id`), so that neither side decodes or encodes a whole
//!   message to change a field. Each edit is `u8 op`, `u16` length and bytes of a name, `u32`
//!   length and bytes of a value.
//!
//! A length of 0 from `process_batch` means that every message of the batch was dropped.
//! Every reader here checks every length against the bytes it has and returns an [`Error`]
//! for anything malformed; none panics.

use fluxmsg::{Codec, FluxMsg, Id, Value};

/// The guest's linear memory export.
pub const EXPORT_MEMORY: &str = "memory";
/// The guest's allocator export: `alloc(len: i32) -> i32`.
pub const EXPORT_ALLOC: &str = "alloc";
/// The reference's other name for the allocator export.
pub const EXPORT_MALLOC: &str = "malloc";
/// The guest's deallocator export: `free(ptr: i32, len: i32)`.
pub const EXPORT_FREE: &str = "free";
/// The reference entry point: `process(ptr: i32, len: i32) -> i64`, one message per call.
pub const EXPORT_PROCESS: &str = "process";
/// The batch entry point: `process_batch(ptr: i32, len: i32) -> i64`.
pub const EXPORT_PROCESS_BATCH: &str = "process_batch";
/// The module of the host's only import.
pub const IMPORT_MODULE: &str = "env";
/// The host's logging import: `env.log(level: i32, ptr: i32, len: i32)`.
pub const IMPORT_LOG: &str = "log";

/// `env.log` level: debug.
pub const LOG_DEBUG: i32 = 1;
/// `env.log` level: info (also any unknown level).
pub const LOG_INFO: i32 = 2;
/// `env.log` level: warn.
pub const LOG_WARN: i32 = 3;
/// `env.log` level: error.
pub const LOG_ERROR: i32 = 4;

/// A malformed buffer crossing the boundary.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A length points past the end of the buffer.
    #[error("truncated at byte {at}: {what} needs {need} bytes, {left} left")]
    Truncated {
        /// Offset of the item.
        at: usize,
        /// What was being read.
        what: &'static str,
        /// Bytes it needs.
        need: usize,
        /// Bytes left.
        left: usize,
    },
    /// Bytes left over after the last item the header announced.
    #[error("{0} bytes after the last item")]
    Trailing(usize),
    /// An unknown record kind.
    #[error("unknown record kind {0}")]
    Kind(u8),
    /// An unknown edit operation.
    #[error("unknown edit operation {0}")]
    Op(u8),
    /// A name or text value that is not UTF-8.
    #[error("{what} at byte {at} is not UTF-8")]
    Utf8 {
        /// Offset of the text.
        at: usize,
        /// What it is.
        what: &'static str,
    },
    /// A value that does not fit its operation (a `flags` value that is not 4 bytes…).
    #[error("bad value for {0}")]
    Value(&'static str),
    /// A record names an input message the batch does not have.
    #[error("record for message {index} of a batch of {count}")]
    Index {
        /// The record's index.
        index: u32,
        /// Messages in the batch.
        count: u32,
    },
    /// A name longer than 65,535 bytes, or a body or batch over 4 GiB.
    #[error("{0} is too long for the ABI")]
    TooLong(&'static str),
    /// A `data` path with more segments than the codec's nesting depth allows.
    #[error("data path of {segments} segments, deeper than the limit of {max}")]
    PathTooDeep {
        /// Segments of the path.
        segments: usize,
        /// The codec's depth limit.
        max: usize,
    },
    /// More records for one input message than the host accepts.
    #[error("more than {max} records for message {index}")]
    TooManyRecords {
        /// The message's index in the batch.
        index: u32,
        /// Records accepted per message.
        max: u32,
    },
    /// More edits for one message than [`MAX_EDITS`].
    #[error("more than {max} edits for one message")]
    TooManyEdits {
        /// Edits accepted per message.
        max: usize,
    },
    /// A CBOR value or message that does not decode, or an edit that does not apply.
    #[error(transparent)]
    Msg(#[from] fluxmsg::Error),
}

/// The most edits a guest may send for one message. Each edit is an ordered insert into a
/// map of the message, done by the host after the guest's call (outside its deadline), so
/// their number is bounded rather than left to the size of the output.
pub const MAX_EDITS: usize = 4096;

/// Packs a guest pointer and length into `process`'s result: pointer high, length low.
#[must_use]
pub fn pack(ptr: u32, len: u32) -> i64 {
    (i64::from(ptr) << 32) | i64::from(len)
}

/// Splits `process`'s result into pointer and length.
#[must_use]
pub fn unpack(packed: i64) -> (u32, u32) {
    let bits = packed as u64;
    ((bits >> 32) as u32, bits as u32)
}

fn len_u32(n: usize, what: &'static str) -> Result<u32, Error> {
    u32::try_from(n).map_err(|_| Error::TooLong(what))
}

fn len_u16(n: usize, what: &'static str) -> Result<u16, Error> {
    u16::try_from(n).map_err(|_| Error::TooLong(what))
}

/// A cursor over a buffer from the other side.
#[derive(Debug, Clone)]
struct Cursor<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Cursor<'a> {
    /// The next of the `left` items a header announced, read by `read`. After the last one:
    /// an error for any bytes left over, then nothing. After an error: nothing.
    fn counted<T>(
        &mut self,
        left: &mut u32,
        read: impl FnOnce(&mut Cursor<'a>) -> Result<T, Error>,
    ) -> Option<Result<T, Error>> {
        if *left == 0 {
            if self.is_done() {
                return None;
            }
            let extra = self.buf.len() - self.pos;
            self.pos = self.buf.len();
            return Some(Err(Error::Trailing(extra)));
        }
        *left -= 1;
        let item = read(self);
        if item.is_err() {
            *left = 0;
            self.pos = self.buf.len();
        }
        Some(item)
    }

    /// One output record, for a batch of `batch` messages.
    fn record(&mut self, batch: u32) -> Result<Record<'a>, Error> {
        let index = self.u32("record index")?;
        if index >= batch {
            return Err(Error::Index {
                index,
                count: batch,
            });
        }
        let kind = RecordKind::from_u8(self.u8("record kind")?)?;
        let name = self.str16("record name")?;
        let body = self.bytes32("record body")?;
        Ok(Record {
            index,
            kind,
            name,
            body,
        })
    }

    fn take(&mut self, n: usize, what: &'static str) -> Result<&'a [u8], Error> {
        let left = self.buf.len() - self.pos;
        if n > left {
            return Err(Error::Truncated {
                at: self.pos,
                what,
                need: n,
                left,
            });
        }
        let out = &self.buf[self.pos..self.pos + n];
        self.pos += n;
        Ok(out)
    }

    fn array<const N: usize>(&mut self, what: &'static str) -> Result<[u8; N], Error> {
        let mut out = [0; N];
        out.copy_from_slice(self.take(N, what)?);
        Ok(out)
    }

    fn u8(&mut self, what: &'static str) -> Result<u8, Error> {
        Ok(self.array::<1>(what)?[0])
    }

    fn u16(&mut self, what: &'static str) -> Result<u16, Error> {
        Ok(u16::from_le_bytes(self.array(what)?))
    }

    fn u32(&mut self, what: &'static str) -> Result<u32, Error> {
        Ok(u32::from_le_bytes(self.array(what)?))
    }

    fn str16(&mut self, what: &'static str) -> Result<&'a str, Error> {
        let n = usize::from(self.u16(what)?);
        let at = self.pos;
        std::str::from_utf8(self.take(n, what)?).map_err(|_| Error::Utf8 { at, what })
    }

    fn bytes32(&mut self, what: &'static str) -> Result<&'a [u8], Error> {
        let n = self.u32(what)? as usize;
        self.take(n, what)
    }

    fn is_done(&self) -> bool {
        self.pos == self.buf.len()
    }
}

/// Writes a batch of messages for `process_batch` (the host's side).
///
/// ```
/// use sdk::abi::{BatchReader, BatchWriter};
///
/// let mut buf = Vec::new();
/// let mut batch = BatchWriter::new(&mut buf);
/// batch.push(|b| { b.extend_from_slice(b"\xa0"); Ok::<_, std::convert::Infallible>(()) })?;
/// batch.finish()?;
/// let messages: Vec<&[u8]> = BatchReader::new(&buf)?.collect::<Result<_, _>>()?;
/// assert_eq!(messages, [&b"\xa0"[..]]);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug)]
pub struct BatchWriter<'a> {
    buf: &'a mut Vec<u8>,
    count: u32,
}

impl<'a> BatchWriter<'a> {
    /// Starts a batch in `buf`, which is cleared.
    pub fn new(buf: &'a mut Vec<u8>) -> BatchWriter<'a> {
        buf.clear();
        buf.extend_from_slice(&[0; 4]);
        BatchWriter { buf, count: 0 }
    }

    /// Appends one message, written by `encode` at the end of the buffer.
    ///
    /// # Errors
    ///
    /// `encode`'s error; the buffer is then left as it was before the call.
    pub fn push<E>(&mut self, encode: impl FnOnce(&mut Vec<u8>) -> Result<(), E>) -> Result<(), E> {
        let at = self.buf.len();
        self.buf.extend_from_slice(&[0; 4]);
        if let Err(e) = encode(self.buf) {
            self.buf.truncate(at);
            return Err(e);
        }
        let len = (self.buf.len() - at - 4) as u32;
        self.buf[at..at + 4].copy_from_slice(&len.to_le_bytes());
        self.count += 1;
        Ok(())
    }

    /// Messages so far.
    #[must_use]
    pub fn count(&self) -> u32 {
        self.count
    }

    /// Writes the count; returns the batch's length in bytes.
    ///
    /// # Errors
    ///
    /// [`Error::TooLong`] for a batch over 4 GiB.
    pub fn finish(self) -> Result<usize, Error> {
        len_u32(self.buf.len(), "batch")?;
        self.buf[..4].copy_from_slice(&self.count.to_le_bytes());
        Ok(self.buf.len())
    }
}

/// Reads a batch written by [`BatchWriter`] (the guest's side): each item is one message's CBOR.
#[derive(Debug, Clone)]
pub struct BatchReader<'a> {
    cur: Cursor<'a>,
    left: u32,
}

impl<'a> BatchReader<'a> {
    /// Reads the header of `buf`.
    ///
    /// # Errors
    ///
    /// [`Error::Truncated`] when `buf` is shorter than its header.
    pub fn new(buf: &'a [u8]) -> Result<BatchReader<'a>, Error> {
        let mut cur = Cursor { buf, pos: 0 };
        let left = cur.u32("batch count")?;
        Ok(BatchReader { cur, left })
    }

    /// Messages announced by the header and not read yet.
    #[must_use]
    pub fn remaining(&self) -> u32 {
        self.left
    }
}

impl<'a> Iterator for BatchReader<'a> {
    type Item = Result<&'a [u8], Error>;

    fn next(&mut self) -> Option<Self::Item> {
        self.cur
            .counted(&mut self.left, |cur| cur.bytes32("message"))
    }
}

/// What an output record says about its input message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum RecordKind {
    /// The input message, changed by the body's edits, leaves on the named port.
    Emit = 0,
    /// The body is a whole CBOR fluxMsg that leaves on the named port.
    EmitNew = 1,
    /// The input message is dropped; the name is the reason.
    Drop = 2,
    /// The input message goes to `error`; the name is the reason, the body a UTF-8 detail.
    Error = 3,
}

impl RecordKind {
    fn from_u8(b: u8) -> Result<RecordKind, Error> {
        Ok(match b {
            0 => RecordKind::Emit,
            1 => RecordKind::EmitNew,
            2 => RecordKind::Drop,
            3 => RecordKind::Error,
            other => return Err(Error::Kind(other)),
        })
    }
}

/// One output record of `process_batch`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Record<'a> {
    /// The input message it answers (0-based, in batch order).
    pub index: u32,
    /// What happens to it.
    pub kind: RecordKind,
    /// The output port ([`RecordKind::Emit`], [`RecordKind::EmitNew`]) or the reason.
    pub name: &'a str,
    /// Edits, a CBOR fluxMsg, or an error's detail, by kind.
    pub body: &'a [u8],
}

/// Writes `process_batch`'s output (the guest's side).
#[derive(Debug, Default, Clone)]
pub struct OutputWriter {
    buf: Vec<u8>,
    count: u32,
}

impl OutputWriter {
    /// An empty output.
    #[must_use]
    pub fn new() -> OutputWriter {
        OutputWriter::with_capacity(0)
    }

    /// An empty output with room for `bytes` bytes of records before it allocates again.
    #[must_use]
    pub fn with_capacity(bytes: usize) -> OutputWriter {
        let mut buf = Vec::with_capacity(bytes.saturating_add(4));
        buf.extend_from_slice(&[0; 4]);
        OutputWriter { buf, count: 0 }
    }

    /// Appends a record.
    ///
    /// # Errors
    ///
    /// [`Error::TooLong`] for a name over 65,535 bytes or a body over 4 GiB; nothing is written.
    pub fn push(&mut self, record: Record<'_>) -> Result<(), Error> {
        let name = len_u16(record.name.len(), "record name")?;
        let body = len_u32(record.body.len(), "record body")?;
        if self.buf.is_empty() {
            self.buf.extend_from_slice(&[0; 4]);
        }
        self.buf.extend_from_slice(&record.index.to_le_bytes());
        self.buf.push(record.kind as u8);
        self.buf.extend_from_slice(&name.to_le_bytes());
        self.buf.extend_from_slice(record.name.as_bytes());
        self.buf.extend_from_slice(&body.to_le_bytes());
        self.buf.extend_from_slice(record.body);
        self.count += 1;
        Ok(())
    }

    /// Records so far.
    #[must_use]
    pub fn count(&self) -> u32 {
        self.count
    }

    /// The finished output.
    #[must_use]
    pub fn finish(mut self) -> Vec<u8> {
        if self.buf.is_empty() {
            self.buf.extend_from_slice(&[0; 4]);
        }
        self.buf[..4].copy_from_slice(&self.count.to_le_bytes());
        self.buf
    }
}

/// Reads `process_batch`'s output (the host's side), checking every index against the batch.
#[derive(Debug, Clone)]
pub struct OutputReader<'a> {
    cur: Cursor<'a>,
    left: u32,
    batch: u32,
}

impl<'a> OutputReader<'a> {
    /// Reads the header of `buf`, the output for a batch of `batch` messages.
    ///
    /// # Errors
    ///
    /// [`Error::Truncated`] when `buf` is shorter than its header.
    pub fn new(buf: &'a [u8], batch: u32) -> Result<OutputReader<'a>, Error> {
        let mut cur = Cursor { buf, pos: 0 };
        let left = cur.u32("record count")?;
        Ok(OutputReader { cur, left, batch })
    }
}

impl<'a> Iterator for OutputReader<'a> {
    type Item = Result<Record<'a>, Error>;

    fn next(&mut self) -> Option<Self::Item> {
        let batch = self.batch;
        self.cur.counted(&mut self.left, |cur| cur.record(batch))
    }
}

/// One change to a message, as carried by an [`RecordKind::Emit`] record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Edit<'a> {
    /// Set `data.<path>` to a CBOR-encoded value, creating intermediate maps.
    SetData {
        /// Dotted path inside `data`.
        path: &'a str,
        /// The value, as CBOR.
        value: &'a [u8],
    },
    /// Remove `data.<path>`.
    RemoveData {
        /// Dotted path inside `data`.
        path: &'a str,
    },
    /// Set `meta.<key>`.
    SetMeta {
        /// The key (flat: dots are part of it).
        key: &'a str,
        /// The value.
        value: &'a str,
    },
    /// Remove `meta.<key>`.
    RemoveMeta {
        /// The key.
        key: &'a str,
    },
    /// Replace `raw`.
    SetRaw(&'a [u8]),
    /// Replace `trace`.
    SetTrace(&'a str),
    /// Replace `flags`.
    SetFlags(u32),
    /// Replace `ref_id`: 8 bytes (little-endian Sonyflake id), 16 bytes (UUID), or none.
    SetRefId(&'a [u8]),
}

const OP_SET_DATA: u8 = 1;
const OP_REMOVE_DATA: u8 = 2;
const OP_SET_META: u8 = 3;
const OP_REMOVE_META: u8 = 4;
const OP_SET_RAW: u8 = 5;
const OP_SET_TRACE: u8 = 6;
const OP_SET_FLAGS: u8 = 7;
const OP_SET_REF_ID: u8 = 8;

/// Writes a list of [`Edit`]s (the guest's side).
///
/// ```
/// use fluxmsg::{Codec, FluxMsg, Value};
/// use sdk::abi::{EditsWriter, apply_edits};
///
/// let codec = Codec::new();
/// let mut edits = EditsWriter::new();
/// edits.set_data(&codec, "risk.score", &Value::from(42u64))?;
/// edits.set_meta("route", "review")?;
/// let mut msg = FluxMsg::new();
/// apply_edits(&codec, &mut msg, edits.as_bytes())?;
/// assert_eq!(msg.data.get_path("risk.score"), Some(&Value::from(42u64)));
/// # Ok::<(), sdk::abi::Error>(())
/// ```
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct EditsWriter {
    buf: Vec<u8>,
}

impl EditsWriter {
    /// No edits.
    #[must_use]
    pub fn new() -> EditsWriter {
        EditsWriter::default()
    }

    /// No edits, written into `buf` (cleared first), so that a buffer can serve message after
    /// message without allocating again.
    #[must_use]
    pub fn from_buffer(mut buf: Vec<u8>) -> EditsWriter {
        buf.clear();
        EditsWriter { buf }
    }

    /// The buffer back, for [`EditsWriter::from_buffer`].
    #[must_use]
    pub fn into_buffer(self) -> Vec<u8> {
        self.buf
    }

    fn op(&mut self, op: u8, name: &str, value: &[u8]) -> Result<(), Error> {
        let n = len_u16(name.len(), "edit name")?;
        let v = len_u32(value.len(), "edit value")?;
        self.buf.push(op);
        self.buf.extend_from_slice(&n.to_le_bytes());
        self.buf.extend_from_slice(name.as_bytes());
        self.buf.extend_from_slice(&v.to_le_bytes());
        self.buf.extend_from_slice(value);
        Ok(())
    }

    /// Appends an edit whose value is already encoded.
    ///
    /// # Errors
    ///
    /// [`Error::TooLong`] for a name over 65,535 bytes.
    pub fn push(&mut self, edit: Edit<'_>) -> Result<(), Error> {
        match edit {
            Edit::SetData { path, value } => self.op(OP_SET_DATA, path, value),
            Edit::RemoveData { path } => self.op(OP_REMOVE_DATA, path, &[]),
            Edit::SetMeta { key, value } => self.op(OP_SET_META, key, value.as_bytes()),
            Edit::RemoveMeta { key } => self.op(OP_REMOVE_META, key, &[]),
            Edit::SetRaw(raw) => self.op(OP_SET_RAW, "", raw),
            Edit::SetTrace(trace) => self.op(OP_SET_TRACE, "", trace.as_bytes()),
            Edit::SetFlags(flags) => self.op(OP_SET_FLAGS, "", &flags.to_le_bytes()),
            Edit::SetRefId(id) => self.op(OP_SET_REF_ID, "", id),
        }
    }

    /// Appends "set `data.<path>` to `value`", encoding the value with `codec`.
    ///
    /// # Errors
    ///
    /// The codec's error for a value it cannot encode, or [`Error::TooLong`].
    pub fn set_data(&mut self, codec: &Codec, path: &str, value: &Value) -> Result<(), Error> {
        let n = len_u16(path.len(), "edit name")?;
        self.buf.push(OP_SET_DATA);
        self.buf.extend_from_slice(&n.to_le_bytes());
        self.buf.extend_from_slice(path.as_bytes());
        let at = self.buf.len();
        self.buf.extend_from_slice(&[0; 4]);
        if let Err(e) = codec.encode_value(value, &mut self.buf) {
            self.buf.truncate(at - path.len() - 3);
            return Err(e.into());
        }
        let len = len_u32(self.buf.len() - at - 4, "edit value")?;
        self.buf[at..at + 4].copy_from_slice(&len.to_le_bytes());
        Ok(())
    }

    /// Appends "set `meta.<key>` to `value`".
    ///
    /// # Errors
    ///
    /// [`Error::TooLong`].
    pub fn set_meta(&mut self, key: &str, value: &str) -> Result<(), Error> {
        self.push(Edit::SetMeta { key, value })
    }

    /// Whether there are no edits.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }

    /// The encoded edits, the body of an [`RecordKind::Emit`] record.
    #[must_use]
    pub fn as_bytes(&self) -> &[u8] {
        &self.buf
    }

    /// Forgets every edit.
    pub fn clear(&mut self) {
        self.buf.clear();
    }
}

/// Reads encoded [`Edit`]s (the host's side).
#[derive(Debug, Clone)]
pub struct EditsReader<'a> {
    cur: Cursor<'a>,
}

impl<'a> EditsReader<'a> {
    /// Reads `buf`.
    #[must_use]
    pub fn new(buf: &'a [u8]) -> EditsReader<'a> {
        EditsReader {
            cur: Cursor { buf, pos: 0 },
        }
    }

    fn edit(&mut self) -> Result<Edit<'a>, Error> {
        let op = self.cur.u8("edit op")?;
        let name = self.cur.str16("edit name")?;
        let at = self.cur.pos + 4;
        let value = self.cur.bytes32("edit value")?;
        let text = |what| std::str::from_utf8(value).map_err(|_| Error::Utf8 { at, what });
        Ok(match op {
            OP_SET_DATA => Edit::SetData { path: name, value },
            OP_REMOVE_DATA => Edit::RemoveData { path: name },
            OP_SET_META => Edit::SetMeta {
                key: name,
                value: text("meta value")?,
            },
            OP_REMOVE_META => Edit::RemoveMeta { key: name },
            OP_SET_RAW => Edit::SetRaw(value),
            OP_SET_TRACE => Edit::SetTrace(text("trace")?),
            OP_SET_FLAGS => Edit::SetFlags(u32::from_le_bytes(
                value.try_into().map_err(|_| Error::Value("flags"))?,
            )),
            OP_SET_REF_ID => match value.len() {
                0 | 8 | 16 => Edit::SetRefId(value),
                _ => return Err(Error::Value("ref_id")),
            },
            other => return Err(Error::Op(other)),
        })
    }
}

impl<'a> Iterator for EditsReader<'a> {
    type Item = Result<Edit<'a>, Error>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.cur.is_done() {
            return None;
        }
        let edit = self.edit();
        if edit.is_err() {
            self.cur.pos = self.cur.buf.len();
        }
        Some(edit)
    }
}

/// The id an [`Edit::SetRefId`] value stands for.
///
/// # Errors
///
/// [`Error::Value`] for a length other than 0, 8 or 16.
pub fn ref_id_of(value: &[u8]) -> Result<Option<Id>, Error> {
    match value.len() {
        0 => Ok(None),
        8 => {
            let mut b = [0; 8];
            b.copy_from_slice(value);
            Ok(Some(Id::U64(u64::from_le_bytes(b))))
        }
        16 => {
            let mut b = [0; 16];
            b.copy_from_slice(value);
            Ok(Some(Id::Uuid(b)))
        }
        _ => Err(Error::Value("ref_id")),
    }
}

/// Applies encoded edits to `msg`, decoding values with `codec` (and its limits).
///
/// Edits apply in order. On error `msg` holds the edits before the bad one, so a host that
/// must not forward a half-edited message applies them to a copy, or sends the message to
/// `error` as the `wasm` gear does.
///
/// # Errors
///
/// Any malformed edit, a value that does not decode, a path that does not apply (an empty
/// segment, a prefix that holds a non-map, more segments than the codec's depth limit), or
/// more than [`MAX_EDITS`] edits ([`Error::TooManyEdits`]).
pub fn apply_edits(codec: &Codec, msg: &mut FluxMsg, edits: &[u8]) -> Result<(), Error> {
    for (n, edit) in EditsReader::new(edits).enumerate() {
        if n == MAX_EDITS {
            return Err(Error::TooManyEdits { max: MAX_EDITS });
        }
        apply_edit(codec, msg, edit?)?;
    }
    Ok(())
}

/// Refuses a `data` path with more segments than `codec` nests values: each segment is a map
/// level, and a message nested without bound could not even be dropped safely.
///
/// # Errors
///
/// [`Error::PathTooDeep`].
pub fn check_depth(codec: &Codec, path: &str) -> Result<(), Error> {
    let segments = path.bytes().filter(|b| *b == b'.').count() + 1;
    let max = codec.limits().max_depth();
    if segments > max {
        return Err(Error::PathTooDeep { segments, max });
    }
    Ok(())
}

/// Applies one decoded edit to `msg`.
///
/// # Errors
///
/// As [`apply_edits`].
pub fn apply_edit(codec: &Codec, msg: &mut FluxMsg, edit: Edit<'_>) -> Result<(), Error> {
    match edit {
        Edit::SetData { path, value } => {
            check_depth(codec, path)?;
            let value = codec.decode_value(value)?;
            msg.data.set_path(path, value)?;
        }
        Edit::RemoveData { path } => {
            check_depth(codec, path)?;
            msg.data.remove_path(path);
        }
        Edit::SetMeta { key, value } => {
            msg.meta.insert(key, value.into());
        }
        Edit::RemoveMeta { key } => {
            msg.meta.remove(key);
        }
        Edit::SetRaw(raw) => msg.raw = bytes_of(raw),
        Edit::SetTrace(trace) => trace.clone_into(&mut msg.trace),
        Edit::SetFlags(flags) => msg.flags = flags,
        Edit::SetRefId(id) => msg.ref_id = ref_id_of(id)?,
    }
    Ok(())
}

fn bytes_of(raw: &[u8]) -> fluxmsg::bytes::Bytes {
    fluxmsg::bytes::Bytes::copy_from_slice(raw)
}
