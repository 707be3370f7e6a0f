//! The decoder: a bounds-checked cursor over the input, with no recursion beyond the depth
//! limit and no reservation for items that have not arrived beyond [`MAX_RESERVE`].

use bytes::Bytes;

use crate::map::{Builder, Duplicate};
use crate::{
    DecodeErrorKind as K, Error, FluxMsg, Hop, Id, Integer, LimitExceeded, Limits, Map, Text, Value,
};

/// Where decoded byte strings come from.
pub(crate) trait Source: Copy {
    /// The bytes `input[start..end]` as [`Bytes`].
    fn bytes(self, input: &[u8], start: usize, end: usize) -> Bytes;
}

/// Copies byte strings out of the input.
#[derive(Clone, Copy)]
pub(crate) struct Copied;

impl Source for Copied {
    #[inline]
    fn bytes(self, input: &[u8], start: usize, end: usize) -> Bytes {
        Bytes::copy_from_slice(&input[start..end])
    }
}

/// Slices byte strings out of a shared input buffer.
#[derive(Clone, Copy)]
pub(crate) struct Shared<'b>(pub(crate) &'b Bytes);

impl Source for Shared<'_> {
    #[inline]
    fn bytes(self, _input: &[u8], start: usize, end: usize) -> Bytes {
        self.0.slice(start..end)
    }
}

/// A data item head: major type, argument and where it started.
#[derive(Clone, Copy)]
pub(crate) struct Head {
    pub(crate) major: u8,
    /// The additional information (low five bits of the initial byte).
    pub(crate) info: u8,
    pub(crate) arg: u64,
    pub(crate) at: usize,
}

/// The `n` bytes at `*pos`, moving `*pos` past them; `at` is where the item began, for the
/// error.
#[inline]
pub(crate) fn take<'a>(input: &'a [u8], pos: &mut usize, n: usize, at: usize) -> Result<&'a [u8]> {
    match input.get(*pos..).and_then(|rest| rest.get(..n)) {
        Some(s) => {
            *pos += n;
            Ok(s)
        }
        None => Err(Error::decode(at, K::UnexpectedEnd)),
    }
}

/// The data item head at `*pos`, moving `*pos` past it (the decoder's and
/// [`MsgView`](crate::MsgView)'s one reading of heads).
#[inline]
pub(crate) fn head(input: &[u8], pos: &mut usize) -> Result<Head> {
    let at = *pos;
    let Some(&b) = input.get(at) else {
        return Err(Error::decode(at, K::UnexpectedEnd));
    };
    *pos += 1;
    let major = b >> 5;
    let info = b & 0x1f;
    let arg = match info {
        0..=23 => u64::from(info),
        24 => u64::from(take(input, pos, 1, at)?[0]),
        25 => {
            let s = take(input, pos, 2, at)?;
            u64::from(u16::from_be_bytes([s[0], s[1]]))
        }
        26 => {
            let s = take(input, pos, 4, at)?;
            u64::from(u32::from_be_bytes([s[0], s[1], s[2], s[3]]))
        }
        27 => {
            let s = take(input, pos, 8, at)?;
            u64::from_be_bytes([s[0], s[1], s[2], s[3], s[4], s[5], s[6], s[7]])
        }
        31 if matches!(major, 2..=5 | 7) => return Err(Error::decode(at, K::IndefiniteLength)),
        _ => return Err(Error::decode(at, K::Reserved(info))),
    };
    Ok(Head {
        major,
        info,
        arg,
        at,
    })
}

struct Decoder<'a, S> {
    input: &'a [u8],
    pos: usize,
    src: S,
    max_depth: usize,
    max_decision_len: usize,
}

type Result<T> = std::result::Result<T, Error>;

/// The most items a container reserves room for before they arrive.
const MAX_RESERVE: usize = 1024;

const EXPECT_ID: &str = "an unsigned integer or a 16-byte byte string";

impl<'a, S: Source> Decoder<'a, S> {
    #[inline]
    fn err<T>(&self, at: usize, kind: K) -> Result<T> {
        Err(Error::decode(at, kind))
    }

    #[inline]
    fn take(&mut self, n: usize, at: usize) -> Result<&'a [u8]> {
        take(self.input, &mut self.pos, n, at)
    }

    #[inline]
    fn head(&mut self) -> Result<Head> {
        head(self.input, &mut self.pos)
    }

    /// The payload of a text or byte string whose head is `h`.
    #[inline]
    fn payload(&mut self, h: Head) -> Result<(usize, usize)> {
        let start = self.pos;
        let len = usize::try_from(h.arg).map_err(|_| Error::decode(h.at, K::UnexpectedEnd))?;
        self.take(len, h.at)?;
        Ok((start, start + len))
    }

    #[inline]
    fn str_of(&mut self, h: Head) -> Result<&'a str> {
        let (start, end) = self.payload(h)?;
        crate::utf8::from_utf8(&self.input[start..end])
            .ok_or_else(|| Error::decode(h.at, K::InvalidUtf8))
    }

    #[inline]
    fn text(&mut self, field: &'static str) -> Result<&'a str> {
        let h = self.head_of(3, field, "text")?;
        self.str_of(h)
    }

    #[inline]
    fn key(&mut self) -> Result<(&'a str, usize)> {
        let h = self.head()?;
        if h.major != 3 {
            return self.err(h.at, K::NonTextKey);
        }
        Ok((self.str_of(h)?, h.at))
    }

    /// A capacity to reserve for `n` announced items of at least `min_size` bytes each:
    /// bounded by what is left of the input, and by [`MAX_RESERVE`] so that nested
    /// containers, each announcing the rest of the input, cannot multiply the reservation.
    /// Containers larger than that grow as their items actually arrive.
    #[inline]
    fn capacity(&self, n: u64, min_size: usize) -> usize {
        let left = (self.input.len() - self.pos) / min_size;
        usize::try_from(n)
            .map_or(left, |n| n.min(left))
            .min(MAX_RESERVE)
    }

    /// The next head, which must be of major type `major`.
    #[inline]
    fn head_of(&mut self, major: u8, field: &'static str, expected: &'static str) -> Result<Head> {
        let h = self.head()?;
        if h.major != major {
            return self.err(h.at, K::TypeMismatch { field, expected });
        }
        Ok(h)
    }

    /// The entries of a map whose head is `h`, each value read by `value`; duplicate keys
    /// are refused.
    #[inline]
    fn entries<V>(
        &mut self,
        h: Head,
        mut value: impl FnMut(&mut Self) -> Result<V>,
    ) -> Result<Map<V>> {
        let mut map = Builder::with_capacity(self.capacity(h.arg, 2));
        for _ in 0..h.arg {
            let (key, at) = self.key()?;
            let v = value(self)?;
            map.push(Text::from(key), v)
                .map_err(|Duplicate| Error::decode(at, K::DuplicateKey))?;
        }
        map.finish()
            .map_err(|Duplicate| Error::decode(h.at, K::DuplicateKey))
    }

    #[inline]
    fn is_null(&mut self) -> bool {
        if self.input.get(self.pos) == Some(&0xf6) {
            self.pos += 1;
            true
        } else {
            false
        }
    }

    fn check_depth(&self, at: usize, depth: usize) -> Result<()> {
        if depth > self.max_depth {
            return self.err(
                at,
                K::Limit(LimitExceeded::Depth {
                    max: self.max_depth,
                }),
            );
        }
        Ok(())
    }

    fn value(&mut self, depth: usize) -> Result<Value> {
        let h = self.head()?;
        Ok(match h.major {
            0 => Value::Integer(Integer::from(h.arg)),
            1 => Value::Integer(Integer::from_negative_arg(h.arg)),
            2 => {
                let (start, end) = self.payload(h)?;
                Value::Bytes(self.src.bytes(self.input, start, end))
            }
            3 => Value::Text(Text::from(self.str_of(h)?)),
            4 => {
                self.check_depth(h.at, depth)?;
                let mut items = Vec::with_capacity(self.capacity(h.arg, 1));
                for _ in 0..h.arg {
                    items.push(self.value(depth + 1)?);
                }
                Value::Array(items)
            }
            5 => {
                self.check_depth(h.at, depth)?;
                Value::Map(self.map_body(h, depth)?)
            }
            6 => return self.err(h.at, K::UnsupportedTag(h.arg)),
            _ => match h.info {
                20 => Value::Bool(false),
                21 => Value::Bool(true),
                22 => Value::Null,
                25 => Value::Float(f64::from(half::f16::from_bits(h.arg as u16))),
                26 => Value::Float(f64::from(f32::from_bits(h.arg as u32))),
                27 => Value::Float(f64::from_bits(h.arg)),
                _ => return self.err(h.at, K::UnsupportedSimple(h.arg as u8)),
            },
        })
    }

    /// The entries of a map whose head is `h` and whose own nesting level is `depth`.
    fn map_body(&mut self, h: Head, depth: usize) -> Result<Map<Value>> {
        self.entries(h, |d| d.value(depth + 1))
    }

    fn map_head(&mut self, field: &'static str) -> Result<Head> {
        self.head_of(5, field, "a map")
    }

    fn id(&mut self, field: &'static str) -> Result<Id> {
        let h = self.head()?;
        match h.major {
            0 => Ok(Id::U64(h.arg)),
            2 => {
                let (start, end) = self.payload(h)?;
                let b = &self.input[start..end];
                <[u8; 16]>::try_from(b)
                    .map(Id::Uuid)
                    .map_err(|_| Error::decode(h.at, K::BadIdLength(b.len())))
            }
            _ => self.err(
                h.at,
                K::TypeMismatch {
                    field,
                    expected: EXPECT_ID,
                },
            ),
        }
    }

    fn opt_id(&mut self, field: &'static str) -> Result<Option<Id>> {
        if self.is_null() {
            return Ok(None);
        }
        self.id(field).map(Some)
    }

    fn i64(&mut self, field: &'static str) -> Result<i64> {
        let h = self.head()?;
        let v = match h.major {
            0 => i64::try_from(h.arg).ok(),
            1 => i64::try_from(h.arg).ok().map(|n| -1 - n),
            _ => {
                return self.err(
                    h.at,
                    K::TypeMismatch {
                        field,
                        expected: "an integer",
                    },
                );
            }
        };
        v.ok_or_else(|| Error::decode(h.at, K::OutOfRange { field }))
    }

    fn meta(&mut self) -> Result<Map<Text>> {
        if self.is_null() {
            return Ok(Map::new());
        }
        let h = self.map_head("meta")?;
        self.entries(h, |d| d.text("meta").map(Text::from))
    }

    fn hop(&mut self) -> Result<Hop> {
        let h = self.map_head("path")?;
        let (mut gear, mut port, mut ts, mut decision) = (None, None, None, None);
        let mut unknown = Builder::with_capacity(0);
        for _ in 0..h.arg {
            let (key, at) = self.key()?;
            let dup = match key {
                "g" => gear.replace(self.id("path")?).is_some(),
                "p" => port.replace(self.id("path")?).is_some(),
                "t" => ts.replace(self.i64("path")?).is_some(),
                "d" => decision.replace(self.decision()?).is_some(),
                // Unknown hop fields are skipped (and dropped on re-encoding), but must still
                // be unique, as keys are everywhere else.
                _ => {
                    self.value(2)?;
                    unknown.push(Text::from(key), ()).is_err()
                }
            };
            if dup {
                return self.err(at, K::DuplicateKey);
            }
        }
        unknown
            .finish()
            .map_err(|Duplicate| Error::decode(h.at, K::DuplicateKey))?;
        let missing = |f| Error::decode(h.at, K::MissingField(f));
        Ok(Hop {
            gear: gear.ok_or_else(|| missing("g"))?,
            port: port.ok_or_else(|| missing("p"))?,
            ts: ts.ok_or_else(|| missing("t"))?,
            decision: decision.flatten(),
        })
    }

    /// A hop's decision: text of at most `max_decision_len` bytes, or `null` for none.
    fn decision(&mut self) -> Result<Option<Text>> {
        if self.is_null() {
            return Ok(None);
        }
        let h = self.head_of(3, "path", "text")?;
        if h.arg > self.max_decision_len as u64 {
            return self.err(
                h.at,
                K::Limit(LimitExceeded::Decision {
                    len: h.arg,
                    max: self.max_decision_len,
                }),
            );
        }
        self.str_of(h).map(|s| Some(Text::from(s)))
    }

    fn path(&mut self, max_hops: usize) -> Result<Vec<Hop>> {
        if self.is_null() {
            return Ok(Vec::new());
        }
        let h = self.head_of(4, "path", "an array")?;
        if h.arg > max_hops as u64 {
            return self.err(
                h.at,
                K::Limit(LimitExceeded::Hops {
                    len: h.arg,
                    max: max_hops,
                }),
            );
        }
        // A hop takes at least 10 bytes: a map head and three one-byte keys and values.
        let mut hops = Vec::with_capacity(self.capacity(h.arg, 10));
        for _ in 0..h.arg {
            hops.push(self.hop()?);
        }
        Ok(hops)
    }

    fn message(&mut self, max_hops: usize) -> Result<FluxMsg> {
        let h = self.map_head("message")?;
        let mut msg = FluxMsg::default();
        let mut seen = 0u16;
        let mut extra = Builder::with_capacity(0);
        for _ in 0..h.arg {
            let (key, at) = self.key()?;
            let bit = match key {
                "id" => {
                    msg.id = self.opt_id("id")?;
                    1
                }
                "ts" => {
                    msg.ts = if self.is_null() { 0 } else { self.i64("ts")? };
                    2
                }
                "raw" => {
                    if !self.is_null() {
                        let h = self.head_of(2, "raw", "a byte string")?;
                        let (start, end) = self.payload(h)?;
                        msg.raw = self.src.bytes(self.input, start, end);
                    }
                    4
                }
                "data" => {
                    if !self.is_null() {
                        let h = self.map_head("data")?;
                        msg.data = self.map_body(h, 1)?;
                    }
                    8
                }
                "meta" => {
                    msg.meta = self.meta()?;
                    16
                }
                "path" => {
                    msg.path = self.path(max_hops)?;
                    32
                }
                "flags" => {
                    if !self.is_null() {
                        let h = self.head_of(0, "flags", "an unsigned integer")?;
                        msg.flags = u32::try_from(h.arg)
                            .map_err(|_| Error::decode(h.at, K::OutOfRange { field: "flags" }))?;
                    }
                    64
                }
                "trace" => {
                    if !self.is_null() {
                        msg.trace = self.text("trace")?.to_owned();
                    }
                    128
                }
                "ref_id" => {
                    msg.ref_id = self.opt_id("ref_id")?;
                    256
                }
                "src_id" => {
                    msg.src_id = self.opt_id("src_id")?;
                    512
                }
                _ => {
                    let value = self.value(1)?;
                    if extra.push(Text::from(key), value).is_err() {
                        return self.err(at, K::DuplicateKey);
                    }
                    0
                }
            };
            if seen & bit != 0 {
                return self.err(at, K::DuplicateKey);
            }
            seen |= bit;
        }
        msg.extra = extra
            .finish()
            .map_err(|Duplicate| Error::decode(h.at, K::DuplicateKey))?;
        self.finish()?;
        Ok(msg)
    }

    /// Refuses bytes after the top-level item.
    fn finish(&self) -> Result<()> {
        if self.pos != self.input.len() {
            return self.err(self.pos, K::TrailingBytes);
        }
        Ok(())
    }
}

fn decoder<'a, S: Source>(input: &'a [u8], src: S, limits: &Limits) -> Result<Decoder<'a, S>> {
    if input.len() > limits.max_size() {
        return Err(Error::decode(
            limits.max_size(),
            K::Limit(LimitExceeded::Size {
                len: input.len(),
                max: limits.max_size(),
            }),
        ));
    }
    Ok(Decoder {
        input,
        pos: 0,
        src,
        max_depth: limits.max_depth(),
        max_decision_len: limits.max_decision_len(),
    })
}

#[inline]
pub(crate) fn message<S: Source>(input: &[u8], src: S, limits: &Limits) -> Result<FluxMsg> {
    // The message is the whole input: `Decoder::message` checks for trailing bytes itself,
    // so that the (large) message is moved as few times as possible.
    decoder(input, src, limits)?.message(limits.max_hops())
}

pub(crate) fn value<S: Source>(input: &[u8], src: S, limits: &Limits) -> Result<Value> {
    let mut d = decoder(input, src, limits)?;
    let v = d.value(1)?;
    d.finish()?;
    Ok(v)
}
