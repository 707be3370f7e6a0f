//! The encoder: RFC 8949 core deterministic CBOR, written straight into a `Vec<u8>`.

use crate::map::canonical_cmp;
use crate::{Error, FluxMsg, Hop, Id, Integer, LimitExceeded, Limits, Map, Text, Value};

const MAJOR_UINT: u8 = 0;
const MAJOR_NINT: u8 = 1;
const MAJOR_BYTES: u8 = 2;
const MAJOR_TEXT: u8 = 3;
const MAJOR_ARRAY: u8 = 4;
const MAJOR_MAP: u8 = 5;

/// Byte strings and texts longer than this are appended with `extend_from_slice` instead of
/// being copied into the pre-zeroed window, so that large payloads are copied once and never
/// zeroed first.
const LARGE: usize = 256;

/// An output cursor over a `Vec<u8>` whose length is a zeroed window ahead of the cursor:
/// every write checks the room once and then stores into a slice, with no per-byte capacity
/// checks. [`Writer::finish`] cuts the vector back to what was written.
pub(crate) struct Writer<'a> {
    buf: &'a mut Vec<u8>,
    pos: usize,
    /// Where this writer began: the window grows with what it wrote, not with what the
    /// vector held before (appending a message to a large batch zeroes little).
    start: usize,
}

impl<'a> Writer<'a> {
    pub(crate) fn new(buf: &'a mut Vec<u8>) -> Self {
        let pos = buf.len();
        Writer {
            buf,
            pos,
            start: pos,
        }
    }

    /// Bytes written so far, including what the vector held before.
    pub(crate) fn position(&self) -> usize {
        self.pos
    }

    /// Cuts the vector to `len` bytes (what was written, or where a failed write began).
    pub(crate) fn finish(self, len: usize) {
        self.buf.truncate(len);
    }

    /// The window from the cursor on, at least `n` bytes long.
    #[inline(always)]
    fn room(&mut self, n: usize) -> &mut [u8] {
        if self.buf.len() - self.pos < n {
            self.grow(n);
        }
        &mut self.buf[self.pos..]
    }

    #[cold]
    #[inline(never)]
    fn grow(&mut self, n: usize) {
        // The window at least doubles what this writer wrote; the vector's own growth keeps
        // reallocation amortized.
        let window = (self.pos - self.start).max(n).max(256);
        self.buf.resize(self.pos + window, 0);
    }

    #[inline(always)]
    fn byte(&mut self, b: u8) {
        self.room(1)[0] = b;
        self.pos += 1;
    }

    #[inline(always)]
    fn raw<const N: usize>(&mut self, b: &[u8; N]) {
        self.room(N)[..N].copy_from_slice(b);
        self.pos += N;
    }

    /// A data item head in its shortest form.
    #[inline(always)]
    pub(crate) fn head(&mut self, major: u8, n: u64) {
        let out = self.room(9);
        self.pos += put_head(out, major, n);
    }

    /// A text or byte string.
    #[inline(always)]
    fn string(&mut self, major: u8, s: &[u8]) {
        let n = s.len();
        if n > LARGE {
            self.head(major, n as u64);
            self.buf.truncate(self.pos);
            self.buf.extend_from_slice(s);
            self.pos = self.buf.len();
            return;
        }
        if self.buf.len() - self.pos < 9 + n {
            self.grow(9 + n);
        }
        if n < 24 {
            // The common case: a short string behind a one-byte head.
            let out = &mut self.buf[self.pos..self.pos + 1 + n];
            out[0] = (major << 5) | n as u8;
            copy_short(&mut out[1..], s);
            self.pos += 1 + n;
        } else {
            let out = &mut self.buf[self.pos..];
            let k = put_head(out, major, n as u64);
            out[k..k + n].copy_from_slice(s);
            self.pos += k + n;
        }
    }

    #[inline(always)]
    fn text(&mut self, s: &str) {
        self.string(MAJOR_TEXT, s.as_bytes());
    }

    #[inline(always)]
    fn bytes(&mut self, b: &[u8]) {
        self.string(MAJOR_BYTES, b);
    }

    #[inline(always)]
    fn int(&mut self, v: i64) {
        if v >= 0 {
            self.head(MAJOR_UINT, v as u64);
        } else {
            self.head(MAJOR_NINT, !v as u64);
        }
    }

    fn integer(&mut self, v: Integer) {
        let v = i128::from(v);
        if v >= 0 {
            self.head(MAJOR_UINT, v as u64);
        } else {
            self.head(MAJOR_NINT, (-1 - v) as u64);
        }
    }

    /// A float in the shortest of half, single and double precision that keeps its value;
    /// every NaN becomes the canonical half-precision quiet NaN.
    fn float(&mut self, f: f64) {
        if f.is_nan() {
            self.raw(&[0xf9, 0x7e, 0x00]);
            return;
        }
        let h = half::f16::from_f64(f);
        if f64::from(h).to_bits() == f.to_bits() {
            let b = h.to_be_bytes();
            self.raw(&[0xf9, b[0], b[1]]);
            return;
        }
        let s = f as f32;
        if f64::from(s).to_bits() == f.to_bits() {
            let b = s.to_be_bytes();
            self.raw(&[0xfa, b[0], b[1], b[2], b[3]]);
        } else {
            let b = f.to_be_bytes();
            self.raw(&[0xfb, b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]]);
        }
    }

    #[inline(always)]
    fn id(&mut self, id: &Id) {
        match id {
            Id::U64(v) => self.head(MAJOR_UINT, *v),
            Id::Uuid(b) => {
                self.raw(&[0x50]);
                self.raw(b);
            }
        }
    }
}

/// Writes a head into `out` (at least 9 bytes) and returns its length.
#[inline(always)]
fn put_head(out: &mut [u8], major: u8, n: u64) -> usize {
    let m = major << 5;
    if n < 24 {
        out[0] = m | n as u8;
        1
    } else if n <= 0xff {
        out[0] = m | 24;
        out[1] = n as u8;
        2
    } else if n <= 0xffff {
        out[0] = m | 25;
        out[1..3].copy_from_slice(&(n as u16).to_be_bytes());
        3
    } else if n <= 0xffff_ffff {
        out[0] = m | 26;
        out[1..5].copy_from_slice(&(n as u32).to_be_bytes());
        5
    } else {
        out[0] = m | 27;
        out[1..9].copy_from_slice(&n.to_be_bytes());
        9
    }
}

/// Copies `src` into `dst` (of equal length) with fixed-size moves for short lengths, which
/// compile to a few loads and stores instead of a call to `memcpy`.
#[inline(always)]
fn copy_short(dst: &mut [u8], src: &[u8]) {
    let n = src.len();
    if (8..=16).contains(&n) {
        dst[..8].copy_from_slice(&src[..8]);
        dst[n - 8..n].copy_from_slice(&src[n - 8..]);
    } else if (4..8).contains(&n) {
        dst[..4].copy_from_slice(&src[..4]);
        dst[n - 4..n].copy_from_slice(&src[n - 4..]);
    } else if n < 4 {
        for (d, s) in dst.iter_mut().zip(src) {
            *d = *s;
        }
    } else {
        dst[..n].copy_from_slice(src);
    }
}

/// Nesting beyond the depth limit (the caller knows the limit).
struct TooDeep;

struct Encoder<'a> {
    w: Writer<'a>,
    max_depth: usize,
    max_decision_len: usize,
}

impl Encoder<'_> {
    fn value(&mut self, v: &Value, depth: usize) -> Result<(), TooDeep> {
        match v {
            Value::Null => self.w.byte(0xf6),
            Value::Bool(false) => self.w.byte(0xf4),
            Value::Bool(true) => self.w.byte(0xf5),
            Value::Integer(i) => self.w.integer(*i),
            Value::Float(f) => self.w.float(*f),
            Value::Text(s) => self.w.text(s),
            Value::Bytes(b) => self.w.bytes(b),
            Value::Array(items) => {
                if depth > self.max_depth {
                    return Err(TooDeep);
                }
                self.w.head(MAJOR_ARRAY, items.len() as u64);
                for item in items {
                    self.value(item, depth + 1)?;
                }
            }
            Value::Map(m) => {
                if depth > self.max_depth {
                    return Err(TooDeep);
                }
                self.map(m, depth)?;
            }
        }
        Ok(())
    }

    /// Writes a map whose own nesting level is `depth` (already checked).
    fn map(&mut self, m: &Map<Value>, depth: usize) -> Result<(), TooDeep> {
        self.w.head(MAJOR_MAP, m.len() as u64);
        for (k, v) in m {
            self.w.text(k);
            // Text values, the common case, skip the recursive call.
            match v {
                Value::Text(s) => self.w.text(s),
                _ => self.value(v, depth + 1)?,
            }
        }
        Ok(())
    }

    fn hop(&mut self, hop: &Hop) -> Result<(), Error> {
        // {"d": decision, "g": gear, "p": port, "t": ts}: keys already in canonical order,
        // `d` only when there is a decision (a hop without one is the Go fluxrig's).
        match &hop.decision {
            None => self.w.raw(&[0xa3, 0x61, b'g']),
            Some(d) => self.decision(d)?,
        }
        self.w.id(&hop.gear);
        self.w.raw(&[0x61, b'p']);
        self.w.id(&hop.port);
        self.w.raw(&[0x61, b't']);
        self.w.int(hop.ts);
        Ok(())
    }

    /// A hop's map head, its decision and the key `g`.
    #[cold]
    fn decision(&mut self, d: &str) -> Result<(), Error> {
        if d.len() > self.max_decision_len {
            return Err(Error::Limit(LimitExceeded::Decision {
                len: d.len() as u64,
                max: self.max_decision_len,
            }));
        }
        self.w.raw(&[0xa4, 0x61, b'd']);
        self.w.text(d);
        self.w.raw(&[0x61, b'g']);
        Ok(())
    }

    fn meta(&mut self, m: &Map<Text>) {
        self.w.head(MAJOR_MAP, m.len() as u64);
        for (k, v) in m {
            self.w.text(k);
            self.w.text(v);
        }
    }

    /// Writes the unknown fields that sort before the envelope key `key`.
    #[inline(always)]
    fn extras_before(&mut self, extra: &mut Option<Extras<'_>>, key: &str) -> Result<(), Error> {
        let Some(extra) = extra else {
            return Ok(());
        };
        while let Some((k, v)) = extra.next_if(|(k, _)| canonical_cmp(k, key).is_le()) {
            if k == key {
                return Err(Error::ReservedKey(k.to_owned()));
            }
            self.w.text(k);
            self.value(v, 1).map_err(|TooDeep| self.too_deep())?;
        }
        Ok(())
    }

    fn too_deep(&self) -> Error {
        Error::Limit(LimitExceeded::Depth {
            max: self.max_depth,
        })
    }

    /// Writes the envelope in canonical key order, straight-line: this is the hot path.
    /// [`FluxMsg::KEYS`] lists the same order, which the serde path follows; the
    /// properties that compare both keep them in step.
    fn message(&mut self, m: &FluxMsg) -> Result<(), Error> {
        self.w.head(MAJOR_MAP, m.field_count() as u64);
        let ex = &mut (!m.extra.is_empty()).then(|| m.extra.iter().peekable());
        self.extras_before(ex, "id")?;
        self.id_field(b"\x62id", m.id.as_ref());
        self.extras_before(ex, "ts")?;
        self.ts_field(m.ts);
        self.extras_before(ex, "raw")?;
        self.raw_field(&m.raw);
        self.extras_before(ex, "data")?;
        self.data_field(&m.data)?;
        self.extras_before(ex, "meta")?;
        self.meta_field(&m.meta);
        self.extras_before(ex, "path")?;
        self.path_field(&m.path)?;
        self.extras_before(ex, "flags")?;
        self.flags_field(m.flags);
        self.extras_before(ex, "trace")?;
        self.trace_field(&m.trace);
        self.extras_before(ex, "ref_id")?;
        self.id_field(b"\x66ref_id", m.ref_id.as_ref());
        self.extras_before(ex, "src_id")?;
        self.id_field(b"\x66src_id", m.src_id.as_ref());
        for (k, v) in ex.iter_mut().flatten() {
            self.w.text(k);
            self.value(v, 1).map_err(|TooDeep| self.too_deep())?;
        }
        Ok(())
    }

    /// The envelope's small fields first, then unknown fields, then `data`, `raw` and
    /// `path`: see [`Codec::encode_envelope_first`](crate::Codec::encode_envelope_first).
    fn message_envelope_first(&mut self, m: &FluxMsg) -> Result<(), Error> {
        self.w.head(MAJOR_MAP, m.field_count() as u64);
        self.id_field(b"\x62id", m.id.as_ref());
        self.ts_field(m.ts);
        self.flags_field(m.flags);
        self.trace_field(&m.trace);
        self.id_field(b"\x66ref_id", m.ref_id.as_ref());
        self.id_field(b"\x66src_id", m.src_id.as_ref());
        self.meta_field(&m.meta);
        for (k, v) in m.extra.iter() {
            if FluxMsg::KEYS.contains(&k) {
                return Err(Error::ReservedKey(k.to_owned()));
            }
            self.w.text(k);
            self.value(v, 1).map_err(|TooDeep| self.too_deep())?;
        }
        self.data_field(&m.data)?;
        self.raw_field(&m.raw);
        self.path_field(&m.path)
    }

    #[inline(always)]
    fn id_field<const N: usize>(&mut self, key: &[u8; N], id: Option<&Id>) {
        if let Some(v) = id {
            self.w.raw(key);
            self.w.id(v);
        }
    }

    #[inline(always)]
    fn ts_field(&mut self, ts: i64) {
        if ts != 0 {
            self.w.raw(b"\x62ts");
            self.w.int(ts);
        }
    }

    #[inline(always)]
    fn raw_field(&mut self, raw: &[u8]) {
        if !raw.is_empty() {
            self.w.raw(b"\x63raw");
            self.w.bytes(raw);
        }
    }

    #[inline(always)]
    fn data_field(&mut self, data: &Map<Value>) -> Result<(), Error> {
        if !data.is_empty() {
            self.w.raw(b"\x64data");
            self.map(data, 1).map_err(|TooDeep| self.too_deep())?;
        }
        Ok(())
    }

    #[inline(always)]
    fn meta_field(&mut self, meta: &Map<Text>) {
        if !meta.is_empty() {
            self.w.raw(b"\x64meta");
            self.meta(meta);
        }
    }

    #[inline(always)]
    fn path_field(&mut self, path: &[Hop]) -> Result<(), Error> {
        if !path.is_empty() {
            self.w.raw(b"\x64path");
            self.w.head(MAJOR_ARRAY, path.len() as u64);
            for h in path {
                self.hop(h)?;
            }
        }
        Ok(())
    }

    #[inline(always)]
    fn flags_field(&mut self, flags: u32) {
        if flags != 0 {
            self.w.raw(b"\x65flags");
            self.w.head(MAJOR_UINT, u64::from(flags));
        }
    }

    #[inline(always)]
    fn trace_field(&mut self, trace: &str) {
        if !trace.is_empty() {
            self.w.raw(b"\x65trace");
            self.w.text(trace);
        }
    }
}

type Extras<'a> = std::iter::Peekable<crate::map::Iter<'a, Value>>;

fn bounded(
    buf: &mut Vec<u8>,
    limits: &Limits,
    write: impl FnOnce(&mut Encoder<'_>) -> Result<(), Error>,
) -> Result<usize, Error> {
    let start = buf.len();
    let mut enc = Encoder {
        w: Writer::new(buf),
        max_depth: limits.max_depth(),
        max_decision_len: limits.max_decision_len(),
    };
    let result = write(&mut enc).and_then(|()| {
        let len = enc.w.position() - start;
        if len > limits.max_size() {
            return Err(Error::Limit(LimitExceeded::Size {
                len,
                max: limits.max_size(),
            }));
        }
        Ok(len)
    });
    let end = match result {
        Ok(len) => start + len,
        Err(_) => start,
    };
    enc.w.finish(end);
    result
}

pub(crate) fn message(msg: &FluxMsg, limits: &Limits, buf: &mut Vec<u8>) -> Result<usize, Error> {
    if msg.path.len() > limits.max_hops() {
        return Err(Error::Limit(LimitExceeded::Hops {
            len: msg.path.len() as u64,
            max: limits.max_hops(),
        }));
    }
    bounded(buf, limits, |enc| enc.message(msg))
}

pub(crate) fn message_envelope_first(
    msg: &FluxMsg,
    limits: &Limits,
    buf: &mut Vec<u8>,
) -> Result<usize, Error> {
    if msg.path.len() > limits.max_hops() {
        return Err(Error::Limit(LimitExceeded::Hops {
            len: msg.path.len() as u64,
            max: limits.max_hops(),
        }));
    }
    bounded(buf, limits, |enc| enc.message_envelope_first(msg))
}

pub(crate) fn value(v: &Value, limits: &Limits, buf: &mut Vec<u8>) -> Result<usize, Error> {
    let max = limits.max_depth();
    bounded(buf, limits, |enc| {
        enc.value(v, 1)
            .map_err(|TooDeep| Error::Limit(LimitExceeded::Depth { max }))
    })
}
