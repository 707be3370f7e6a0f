//! The encoder: RFC 8949 core deterministic CBOR, written straight into a `Vec<u8>`.

use crate::msg::Field;
use crate::{Error, FluxMsg, Hop, Id, Integer, LimitExceeded, Limits, Map, Value};

const MAJOR_UINT: u8 = 0;
const MAJOR_NINT: u8 = 1;
const MAJOR_BYTES: u8 = 2;
const MAJOR_TEXT: u8 = 3;
const MAJOR_ARRAY: u8 = 4;
const MAJOR_MAP: u8 = 5;

/// Writes a data item head in its shortest form.
#[inline]
pub(crate) fn head(buf: &mut Vec<u8>, major: u8, n: u64) {
    let m = major << 5;
    if n < 24 {
        buf.push(m | n as u8);
    } else if n <= 0xff {
        buf.extend_from_slice(&[m | 24, n as u8]);
    } else if n <= 0xffff {
        let b = (n as u16).to_be_bytes();
        buf.extend_from_slice(&[m | 25, b[0], b[1]]);
    } else if n <= 0xffff_ffff {
        let b = (n as u32).to_be_bytes();
        buf.extend_from_slice(&[m | 26, b[0], b[1], b[2], b[3]]);
    } else {
        buf.push(m | 27);
        buf.extend_from_slice(&n.to_be_bytes());
    }
}

#[inline]
fn text(buf: &mut Vec<u8>, s: &str) {
    head(buf, MAJOR_TEXT, s.len() as u64);
    buf.extend_from_slice(s.as_bytes());
}

#[inline]
fn bytes(buf: &mut Vec<u8>, b: &[u8]) {
    head(buf, MAJOR_BYTES, b.len() as u64);
    buf.extend_from_slice(b);
}

#[inline]
fn int(buf: &mut Vec<u8>, v: i64) {
    if v >= 0 {
        head(buf, MAJOR_UINT, v as u64);
    } else {
        head(buf, MAJOR_NINT, !v as u64);
    }
}

fn integer(buf: &mut Vec<u8>, v: Integer) {
    let v = i128::from(v);
    if v >= 0 {
        head(buf, MAJOR_UINT, v as u64);
    } else {
        head(buf, MAJOR_NINT, (-1 - v) as u64);
    }
}

/// Writes a float in the shortest of half, single and double precision that keeps its value;
/// every NaN becomes the canonical half-precision quiet NaN.
fn float(buf: &mut Vec<u8>, f: f64) {
    if f.is_nan() {
        buf.extend_from_slice(&[0xf9, 0x7e, 0x00]);
        return;
    }
    let h = half::f16::from_f64(f);
    if f64::from(h).to_bits() == f.to_bits() {
        let b = h.to_be_bytes();
        buf.extend_from_slice(&[0xf9, b[0], b[1]]);
        return;
    }
    let s = f as f32;
    if f64::from(s).to_bits() == f.to_bits() {
        buf.push(0xfa);
        buf.extend_from_slice(&s.to_be_bytes());
    } else {
        buf.push(0xfb);
        buf.extend_from_slice(&f.to_be_bytes());
    }
}

#[inline]
fn id(buf: &mut Vec<u8>, id: &Id) {
    match id {
        Id::U64(v) => head(buf, MAJOR_UINT, *v),
        Id::Uuid(b) => bytes(buf, b),
    }
}

struct Encoder<'a> {
    buf: &'a mut Vec<u8>,
    max_depth: usize,
}

impl Encoder<'_> {
    fn value(&mut self, v: &Value, depth: usize) -> Result<(), Error> {
        match v {
            Value::Null => self.buf.push(0xf6),
            Value::Bool(false) => self.buf.push(0xf4),
            Value::Bool(true) => self.buf.push(0xf5),
            Value::Integer(i) => integer(self.buf, *i),
            Value::Float(f) => float(self.buf, *f),
            Value::Text(s) => text(self.buf, s),
            Value::Bytes(b) => bytes(self.buf, b),
            Value::Array(items) => {
                self.check_depth(depth)?;
                head(self.buf, MAJOR_ARRAY, items.len() as u64);
                for item in items {
                    self.value(item, depth + 1)?;
                }
            }
            Value::Map(m) => {
                self.check_depth(depth)?;
                self.map(m, depth)?;
            }
        }
        Ok(())
    }

    fn check_depth(&self, depth: usize) -> Result<(), Error> {
        if depth > self.max_depth {
            return Err(Error::Limit(LimitExceeded::Depth {
                max: self.max_depth,
            }));
        }
        Ok(())
    }

    /// Writes a map whose own nesting level is `depth` (already checked).
    fn map(&mut self, m: &Map<Value>, depth: usize) -> Result<(), Error> {
        head(self.buf, MAJOR_MAP, m.len() as u64);
        for (k, v) in m {
            text(self.buf, k);
            self.value(v, depth + 1)?;
        }
        Ok(())
    }

    fn hop(&mut self, hop: &Hop) {
        // {"g": gear, "p": port, "t": ts}: keys already in canonical order.
        self.buf.extend_from_slice(&[0xa3, 0x61, b'g']);
        id(self.buf, &hop.gear);
        self.buf.extend_from_slice(&[0x61, b'p']);
        id(self.buf, &hop.port);
        self.buf.extend_from_slice(&[0x61, b't']);
        int(self.buf, hop.ts);
    }

    fn field(&mut self, field: Field<'_>) -> Result<(), Error> {
        let key = field.key();
        head(self.buf, MAJOR_TEXT, key.len() as u64);
        self.buf.extend_from_slice(key.as_bytes());
        match field {
            Field::Id(v) | Field::RefId(v) | Field::SrcId(v) => id(self.buf, v),
            Field::Ts(v) => int(self.buf, v),
            Field::Raw(b) => bytes(self.buf, b),
            Field::Data(m) => self.map(m, 1)?,
            Field::Meta(m) => {
                head(self.buf, MAJOR_MAP, m.len() as u64);
                for (k, v) in m {
                    text(self.buf, k);
                    text(self.buf, v);
                }
            }
            Field::Path(hops) => {
                head(self.buf, MAJOR_ARRAY, hops.len() as u64);
                for h in hops {
                    self.hop(h);
                }
            }
            Field::Flags(v) => head(self.buf, MAJOR_UINT, u64::from(v)),
            Field::Trace(s) => text(self.buf, s),
            Field::Extra(_, v) => self.value(v, 1)?,
        }
        Ok(())
    }

    fn message(&mut self, m: &FluxMsg) -> Result<(), Error> {
        head(self.buf, MAJOR_MAP, m.field_count() as u64);
        m.try_for_each_field(|f| self.field(f), |k| Error::ReservedKey(k.to_owned()))
    }
}

fn bounded(
    buf: &mut Vec<u8>,
    limits: &Limits,
    write: impl FnOnce(&mut Encoder<'_>) -> Result<(), Error>,
) -> Result<usize, Error> {
    let start = buf.len();
    let mut enc = Encoder {
        buf,
        max_depth: limits.max_depth(),
    };
    let result = write(&mut enc).and_then(|()| {
        let len = buf.len() - start;
        if len > limits.max_size() {
            return Err(Error::Limit(LimitExceeded::Size {
                len,
                max: limits.max_size(),
            }));
        }
        Ok(len)
    });
    if result.is_err() {
        buf.truncate(start);
    }
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

pub(crate) fn value(v: &Value, limits: &Limits, buf: &mut Vec<u8>) -> Result<usize, Error> {
    bounded(buf, limits, |enc| enc.value(v, 1))
}
