//! A lazy reader over an encoded fluxMsg: it finds one field without decoding the others.

use std::fmt;

use crate::decode::{self, Head};
use crate::path::has_empty_segment;
use crate::{Codec, DecodeErrorKind as K, Error, Hop, Id, LimitExceeded, Limits, Text, Value};

type Result<T> = std::result::Result<T, Error>;

/// A lazy, zero-copy reader over one encoded fluxMsg.
///
/// [`MsgView::new`] looks at the top-level map head only. Each accessor then scans the
/// top-level map for its field, skipping the values it does not need (a byte or text string
/// is skipped in one step, a map or an array item by item), and reads that one field: finding
/// a field, a `meta` entry or a `data` path allocates nothing. [`MsgView::data_path`] walks
/// the nested `data` maps by dotted path and decodes only the item it finds.
///
/// On a message the decoder accepts, every accessor gives what the decoded [`FluxMsg`]
/// holds: `view.data_path(&codec, p)` is `msg.data.get_path(p).cloned()`, `view.meta(k)` is
/// `msg.meta.get(k)`, and so on (absent, `null` and default fields alike). On malformed input
/// an accessor returns the decoder's [`Error::Decode`] for what it read, and never panics;
/// being lazy, it does not check what it skips beyond its structure (text in a skipped item
/// is not validated as UTF-8, keys of a skipped map are not checked for duplicates, bytes
/// after the message are not looked at), so it accepts some messages the decoder refuses.
/// Skipping refuses what the decoder refuses in a structure: indefinite lengths, tags,
/// unknown simple values, non-text keys and nesting deeper than [`Limits::max_depth`]; it
/// recurses at most that deep.
///
/// ```
/// use fluxmsg::{Codec, FluxMsg, MsgView, Value};
///
/// let msg = FluxMsg::builder()
///     .meta("iso8583.mti", "0100")
///     .data_path("iso8583.field.4", "000000010000")?
///     .build();
/// let bytes = msg.to_cbor()?;
/// let view = MsgView::new(&bytes)?;
/// assert_eq!(view.meta("iso8583.mti")?, Some("0100"));
/// let codec = Codec::new();
/// assert_eq!(view.data_path(&codec, "iso8583.field.4")?, Some(Value::from("000000010000")));
/// assert_eq!(view.data_path(&codec, "iso8583.field.11")?, None);
/// // The raw CBOR of an item, without decoding it: a 12-byte text string.
/// assert_eq!(view.data_raw("iso8583.field.4")?.map(<[u8]>::len), Some(13));
/// # Ok::<(), fluxmsg::Error>(())
/// ```
///
/// [`FluxMsg`]: crate::FluxMsg
#[derive(Clone, Copy)]
pub struct MsgView<'a> {
    input: &'a [u8],
    /// Offset of the first key, after the top-level map head.
    body: usize,
    /// Entries the top-level map head announces.
    fields: u64,
    max_depth: usize,
    max_decision_len: usize,
}

impl fmt::Debug for MsgView<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MsgView")
            .field("len", &self.input.len())
            .field("fields", &self.fields)
            .field("max_depth", &self.max_depth)
            .finish()
    }
}

impl<'a> MsgView<'a> {
    /// A view over `bytes` under the default [`Limits`].
    ///
    /// # Errors
    ///
    /// [`Error::Decode`] when `bytes` is larger than the limit or does not start with a
    /// definite-length map head.
    pub fn new(bytes: &'a [u8]) -> Result<MsgView<'a>> {
        MsgView::with_limits(bytes, &Limits::DEFAULT)
    }

    /// A view over `bytes` under `limits`: its size, nesting depth and decision length (hops
    /// are not counted).
    ///
    /// # Errors
    ///
    /// As [`MsgView::new`].
    pub fn with_limits(bytes: &'a [u8], limits: &Limits) -> Result<MsgView<'a>> {
        if bytes.len() > limits.max_size() {
            return Err(Error::decode(
                limits.max_size(),
                K::Limit(LimitExceeded::Size {
                    len: bytes.len(),
                    max: limits.max_size(),
                }),
            ));
        }
        let mut cur = Cur::new(bytes, 0, limits.max_depth());
        let h = cur.head_of(5, "message", "a map")?;
        Ok(MsgView {
            input: bytes,
            body: cur.pos,
            fields: h.arg,
            max_depth: limits.max_depth(),
            max_decision_len: limits.max_decision_len(),
        })
    }

    /// The whole input.
    #[must_use]
    pub fn bytes(&self) -> &'a [u8] {
        self.input
    }

    /// A cursor at the value of the top-level field `name`, or `None` when it is absent.
    fn field(&self, name: &str) -> Result<Option<Cur<'a>>> {
        let mut cur = Cur::new(self.input, self.body, self.max_depth);
        for _ in 0..self.fields {
            let key = cur.key()?;
            if key == name.as_bytes() {
                return Ok(Some(cur));
            }
            // As deep as the decoder counts: `path` holds hops (maps) whose values are at
            // level 2; every other field's value is at level 1.
            cur.skip(if key == b"path" { 0 } else { 1 })?;
        }
        Ok(None)
    }

    /// A cursor at the value of the top-level field `name`, or `None` when it is absent or
    /// `null`.
    fn present(&self, name: &str) -> Result<Option<Cur<'a>>> {
        Ok(self.field(name)?.filter(|cur| !cur.is_null()))
    }

    /// The raw CBOR item at a dotted path inside `data` (`iso8583.field.4`), or `None` if
    /// any segment is missing or crosses a value that is not a map, as
    /// [`Map::get_path`](crate::Map::get_path). An empty path or segment finds nothing.
    ///
    /// The item's structure is checked (it was skipped to find its end), its content is not:
    /// decode it with [`Codec::decode_value`], as [`MsgView::data_path`] does.
    ///
    /// # Errors
    ///
    /// [`Error::Decode`] for malformed bytes on the way.
    pub fn data_raw(&self, path: &str) -> Result<Option<&'a [u8]>> {
        Ok(self
            .data_span(path)?
            .map(|(start, end)| &self.input[start..end]))
    }

    /// Where the item at `path` inside `data` starts and ends.
    fn data_span(&self, path: &str) -> Result<Option<(usize, usize)>> {
        if has_empty_segment(path) {
            return Ok(None);
        }
        let Some(mut cur) = self.present("data")? else {
            return Ok(None);
        };
        let mut entries = cur.head_of(5, "data", "a map")?.arg;
        // The level of the map being searched: `data` is level 1.
        let mut depth = 1;
        let mut rest = path;
        loop {
            let (segment, more) = match rest.split_once('.') {
                Some((segment, more)) => (segment, Some(more)),
                None => (rest, None),
            };
            if !cur.find(entries, segment.as_bytes(), depth)? {
                return Ok(None);
            }
            let Some(more) = more else {
                let start = cur.pos;
                cur.skip(depth + 1)?;
                return Ok(Some((start, cur.pos)));
            };
            let h = cur.head()?;
            if h.major != 5 {
                return Ok(None);
            }
            depth += 1;
            cur.check_depth(h.at, depth)?;
            entries = h.arg;
            rest = more;
        }
    }

    /// The value at a dotted path inside `data`, decoded with `codec` (and its limits), or
    /// `None` as for [`MsgView::data_raw`]; only that item is decoded.
    ///
    /// # Errors
    ///
    /// [`Error::Decode`] for malformed bytes on the way or in the item.
    pub fn data_path(&self, codec: &Codec, path: &str) -> Result<Option<Value>> {
        let Some((start, end)) = self.data_span(path)? else {
            return Ok(None);
        };
        // Offsets of errors in the item, as offsets in the message.
        codec
            .decode_value(&self.input[start..end])
            .map(Some)
            .map_err(|e| match e {
                Error::Decode { offset, kind } => Error::decode(start + offset, kind),
                other => other,
            })
    }

    /// The `meta` entry `key` (keys are flat: dots are part of them), or `None`.
    ///
    /// # Errors
    ///
    /// [`Error::Decode`] for malformed bytes on the way, a `meta` that is not a map, or an
    /// entry that is not text.
    pub fn meta(&self, key: &str) -> Result<Option<&'a str>> {
        let Some(mut cur) = self.present("meta")? else {
            return Ok(None);
        };
        let entries = cur.head_of(5, "meta", "a map")?.arg;
        if !cur.find(entries, key.as_bytes(), 1)? {
            return Ok(None);
        }
        cur.text("meta").map(Some)
    }

    /// The message id (`id`), in either form.
    ///
    /// # Errors
    ///
    /// [`Error::Decode`] for malformed bytes on the way or an id of the wrong type.
    pub fn id(&self) -> Result<Option<Id>> {
        self.opt_id("id")
    }

    /// The parent or correlation id (`ref_id`).
    ///
    /// # Errors
    ///
    /// As [`MsgView::id`].
    pub fn ref_id(&self) -> Result<Option<Id>> {
        self.opt_id("ref_id")
    }

    /// The id of the gear that created the message (`src_id`).
    ///
    /// # Errors
    ///
    /// As [`MsgView::id`].
    pub fn src_id(&self) -> Result<Option<Id>> {
        self.opt_id("src_id")
    }

    fn opt_id(&self, field: &'static str) -> Result<Option<Id>> {
        match self.present(field)? {
            Some(mut cur) => cur.id(field).map(Some),
            None => Ok(None),
        }
    }

    /// The trace id (`trace`), empty when absent.
    ///
    /// # Errors
    ///
    /// [`Error::Decode`] for malformed bytes on the way or a trace that is not text.
    pub fn trace(&self) -> Result<&'a str> {
        match self.present("trace")? {
            Some(mut cur) => cur.text("trace"),
            None => Ok(""),
        }
    }

    /// The creation time (`ts`), 0 when absent.
    ///
    /// # Errors
    ///
    /// [`Error::Decode`] for malformed bytes on the way or a time that is not an `i64`.
    pub fn ts(&self) -> Result<i64> {
        let Some(mut cur) = self.present("ts")? else {
            return Ok(0);
        };
        cur.i64("ts")
    }

    /// The flags (`flags`), 0 when absent.
    ///
    /// # Errors
    ///
    /// [`Error::Decode`] for malformed bytes on the way or flags that are not a `u32`.
    pub fn flags(&self) -> Result<u32> {
        let Some(mut cur) = self.present("flags")? else {
            return Ok(0);
        };
        let h = cur.head_of(0, "flags", "an unsigned integer")?;
        u32::try_from(h.arg).map_err(|_| Error::decode(h.at, K::OutOfRange { field: "flags" }))
    }

    /// How many hops `path` holds (0 when absent).
    ///
    /// # Errors
    ///
    /// [`Error::Decode`] for malformed bytes on the way or a `path` that is not an array.
    pub fn path_len(&self) -> Result<usize> {
        match self.present("path")? {
            Some(mut cur) => {
                let h = cur.head_of(4, "path", "an array")?;
                // No more hops than the bytes left could hold.
                cur.room(h.arg, 1, h.at)?;
                usize::try_from(h.arg).map_err(|_| Error::decode(h.at, K::UnexpectedEnd))
            }
            None => Ok(0),
        }
    }

    /// The hop at `index` in `path` (0 is the oldest, [`MsgView::path_len`] `- 1` the
    /// latest), decision included, or `None` past the end; only that hop is decoded.
    ///
    /// ```
    /// use fluxmsg::{FluxMsg, Hop, MsgView};
    ///
    /// let msg = FluxMsg::builder()
    ///     .hop(Hop::new(1u64, 2u64, 10))
    ///     .hop(Hop::new(3u64, 4u64, 11).with_decision("rule 0 -> out_visa"))
    ///     .build();
    /// let bytes = msg.to_cbor()?;
    /// let view = MsgView::new(&bytes)?;
    /// assert_eq!(view.path_len()?, 2);
    /// let last = view.hop(1)?.expect("two hops");
    /// assert_eq!(last.decision.as_deref(), Some("rule 0 -> out_visa"));
    /// assert_eq!(view.hop(2)?, None);
    /// # Ok::<(), fluxmsg::Error>(())
    /// ```
    ///
    /// # Errors
    ///
    /// [`Error::Decode`] for malformed bytes on the way, or a hop the decoder refuses: a
    /// missing, repeated or mistyped `g`, `p`, `t` or `d`, or a decision longer than
    /// [`Limits::max_decision_len`]. As elsewhere, the hops skipped on the way and the
    /// unknown fields of this one are checked for structure only.
    pub fn hop(&self, index: usize) -> Result<Option<Hop>> {
        let Some(mut cur) = self.present("path")? else {
            return Ok(None);
        };
        let h = cur.head_of(4, "path", "an array")?;
        if index as u64 >= h.arg {
            return Ok(None);
        }
        cur.room(h.arg, 1, h.at)?;
        for _ in 0..index {
            cur.skip(1)?;
        }
        cur.hop(self.max_decision_len).map(Some)
    }

    /// The original wire bytes (`raw`), empty when absent.
    ///
    /// # Errors
    ///
    /// [`Error::Decode`] for malformed bytes on the way or a `raw` that is not a byte string.
    pub fn raw(&self) -> Result<&'a [u8]> {
        let Some(mut cur) = self.present("raw")? else {
            return Ok(&[]);
        };
        let h = cur.head_of(2, "raw", "a byte string")?;
        cur.payload(h)
    }
}

/// A bounds-checked cursor; its errors are those of the decoder.
#[derive(Clone, Copy)]
struct Cur<'a> {
    input: &'a [u8],
    pos: usize,
    max_depth: usize,
}

impl<'a> Cur<'a> {
    fn new(input: &'a [u8], pos: usize, max_depth: usize) -> Cur<'a> {
        Cur {
            input,
            pos,
            max_depth,
        }
    }

    #[inline]
    fn take(&mut self, n: usize, at: usize) -> Result<&'a [u8]> {
        decode::take(self.input, &mut self.pos, n, at)
    }

    #[inline]
    fn head(&mut self) -> Result<Head> {
        decode::head(self.input, &mut self.pos)
    }

    /// The next head, which must be of major type `major`.
    #[inline]
    fn head_of(&mut self, major: u8, field: &'static str, expected: &'static str) -> Result<Head> {
        let h = self.head()?;
        if h.major != major {
            return Err(Error::decode(h.at, K::TypeMismatch { field, expected }));
        }
        Ok(h)
    }

    /// The payload of a text or byte string whose head is `h`.
    #[inline]
    fn payload(&mut self, h: Head) -> Result<&'a [u8]> {
        let len = usize::try_from(h.arg).map_err(|_| Error::decode(h.at, K::UnexpectedEnd))?;
        self.take(len, h.at)
    }

    #[inline]
    fn is_null(&self) -> bool {
        self.input.get(self.pos) == Some(&0xf6)
    }

    /// A map key's bytes (not checked for UTF-8: callers compare them to a `&str`).
    #[inline]
    fn key(&mut self) -> Result<&'a [u8]> {
        // Fast path: a text key shorter than 24 bytes, whose head is one byte.
        if let Some(&b) = self.input.get(self.pos)
            && (0x60..0x78).contains(&b)
        {
            let start = self.pos + 1;
            if let Some(key) = self.input.get(start..start + usize::from(b & 0x1f)) {
                self.pos = start + key.len();
                return Ok(key);
            }
        }
        let h = self.head()?;
        if h.major != 3 {
            return Err(Error::decode(h.at, K::NonTextKey));
        }
        self.payload(h)
    }

    /// A text value of `field`.
    fn text(&mut self, field: &'static str) -> Result<&'a str> {
        let h = self.head_of(3, field, "text")?;
        let bytes = self.payload(h)?;
        crate::utf8::from_utf8(bytes).ok_or_else(|| Error::decode(h.at, K::InvalidUtf8))
    }

    /// A signed 64-bit integer of `field`.
    fn i64(&mut self, field: &'static str) -> Result<i64> {
        let h = self.head()?;
        let v = match h.major {
            0 => i64::try_from(h.arg).ok(),
            1 => i64::try_from(h.arg).ok().map(|n| -1 - n),
            _ => {
                return Err(Error::decode(
                    h.at,
                    K::TypeMismatch {
                        field,
                        expected: "an integer",
                    },
                ));
            }
        };
        v.ok_or_else(|| Error::decode(h.at, K::OutOfRange { field }))
    }

    /// A hop, as the decoder reads it (but for unknown keys, which are skipped without
    /// checking that they are unique).
    fn hop(&mut self, max_decision_len: usize) -> Result<Hop> {
        let h = self.head_of(5, "path", "a map")?;
        self.room(h.arg, 2, h.at)?;
        let (mut gear, mut port, mut ts, mut decision) = (None, None, None, None);
        for _ in 0..h.arg {
            let at = self.pos;
            let dup = match self.key()? {
                b"g" => gear.replace(self.id("path")?).is_some(),
                b"p" => port.replace(self.id("path")?).is_some(),
                b"t" => ts.replace(self.i64("path")?).is_some(),
                b"d" => decision.replace(self.decision(max_decision_len)?).is_some(),
                _ => {
                    self.skip(2)?;
                    false
                }
            };
            if dup {
                return Err(Error::decode(at, K::DuplicateKey));
            }
        }
        let missing = |f| Error::decode(h.at, K::MissingField(f));
        Ok(Hop {
            gear: gear.ok_or_else(|| missing("g"))?,
            port: port.ok_or_else(|| missing("p"))?,
            ts: ts.ok_or_else(|| missing("t"))?,
            decision: decision.flatten(),
        })
    }

    /// A hop's decision: text within the limit, or `null` for none.
    fn decision(&mut self, max_len: usize) -> Result<Option<Text>> {
        if self.is_null() {
            self.pos += 1;
            return Ok(None);
        }
        let h = self.head_of(3, "path", "text")?;
        if h.arg > max_len as u64 {
            return Err(Error::decode(
                h.at,
                K::Limit(LimitExceeded::Decision {
                    len: h.arg,
                    max: max_len,
                }),
            ));
        }
        let bytes = self.payload(h)?;
        crate::utf8::from_utf8(bytes)
            .map(|s| Some(Text::from(s)))
            .ok_or_else(|| Error::decode(h.at, K::InvalidUtf8))
    }

    fn id(&mut self, field: &'static str) -> Result<Id> {
        let h = self.head()?;
        match h.major {
            0 => Ok(Id::U64(h.arg)),
            2 => {
                let b = self.payload(h)?;
                <[u8; 16]>::try_from(b)
                    .map(Id::Uuid)
                    .map_err(|_| Error::decode(h.at, K::BadIdLength(b.len())))
            }
            _ => Err(Error::decode(
                h.at,
                K::TypeMismatch {
                    field,
                    expected: "an unsigned integer or a 16-byte byte string",
                },
            )),
        }
    }

    #[inline]
    fn check_depth(&self, at: usize, depth: usize) -> Result<()> {
        if depth > self.max_depth {
            return Err(Error::decode(
                at,
                K::Limit(LimitExceeded::Depth {
                    max: self.max_depth,
                }),
            ));
        }
        Ok(())
    }

    /// Refuses a container that announces more items than the bytes left could hold (each
    /// takes at least one byte), before looping over them.
    #[inline]
    fn room(&self, items: u64, per_item: u64, at: usize) -> Result<()> {
        let left = (self.input.len() - self.pos) as u64;
        if items.saturating_mul(per_item) > left {
            return Err(Error::decode(at, K::UnexpectedEnd));
        }
        Ok(())
    }

    /// Skips one item if it is a small integer, a simple value or a string shorter than 256
    /// bytes in its shortest form: the leaves of most messages, skipped without a call.
    /// Anything else (including a non-shortest head, which the decoder accepts) is left to
    /// [`Cur::skip`]'s full path.
    #[inline(always)]
    fn skip_short(&mut self) -> bool {
        let Some(&b) = self.input.get(self.pos) else {
            return false;
        };
        let (major, info) = (b >> 5, b & 0x1f);
        let (head, len) = match (major, info) {
            (0 | 1, 0..=23) | (7, 20..=22) => (1, 0),
            (2 | 3, 0..=23) => (1, usize::from(info)),
            // A string of 24 to 255 bytes: a two-byte head.
            (2 | 3, 24) => match self.input.get(self.pos + 1) {
                Some(&n) if n >= 24 => (2, usize::from(n)),
                _ => return false,
            },
            _ => return false,
        };
        if self.input.len() - self.pos >= head + len {
            self.pos += head + len;
            true
        } else {
            false
        }
    }

    /// Skips one item whose containers (if it is one) are at nesting level `depth`.
    fn skip(&mut self, depth: usize) -> Result<()> {
        if self.skip_short() {
            return Ok(());
        }
        let h = self.head()?;
        match h.major {
            0 | 1 => Ok(()),
            2 | 3 => self.payload(h).map(drop),
            4 => {
                self.check_depth(h.at, depth)?;
                self.room(h.arg, 1, h.at)?;
                for _ in 0..h.arg {
                    if !self.skip_short() {
                        self.skip(depth + 1)?;
                    }
                }
                Ok(())
            }
            5 => {
                self.check_depth(h.at, depth)?;
                self.room(h.arg, 2, h.at)?;
                for _ in 0..h.arg {
                    // A key is text: a string's fast path skips the short ones.
                    if !(self.input.get(self.pos).is_some_and(|b| b >> 5 == 3) && self.skip_short())
                    {
                        self.key()?;
                    }
                    if !self.skip_short() {
                        self.skip(depth + 1)?;
                    }
                }
                Ok(())
            }
            6 => Err(Error::decode(h.at, K::UnsupportedTag(h.arg))),
            _ => match h.info {
                20..=22 | 25..=27 => Ok(()),
                _ => Err(Error::decode(h.at, K::UnsupportedSimple(h.arg as u8))),
            },
        }
    }

    /// Looks for `key` among the `entries` of the map whose head was just read, itself at
    /// level `depth`; on `true` the cursor is at the key's value.
    #[inline]
    fn find(&mut self, entries: u64, key: &[u8], depth: usize) -> Result<bool> {
        self.room(entries, 2, self.pos)?;
        for _ in 0..entries {
            if self.key()? == key {
                return Ok(true);
            }
            if !self.skip_short() {
                self.skip(depth + 1)?;
            }
        }
        Ok(false)
    }
}
