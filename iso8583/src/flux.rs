//! The mapping between unpacked messages and fluxMsg, as the reference's codec gear does it.
//!
//! Decoding writes each field to `data.iso8583.field.<n>` (a composite as a map of its
//! subfields), again under its alias, unknown BER-TLV tags to `data.iso8583.unknown_tags`
//! (`<n>.<tag>` to bytes) and the wire order of each BER-TLV field's tags to
//! `data.iso8583.tlv_order.<n>` (tags in hex, separated by spaces, so that the order
//! survives the sorted maps of fluxMsg), and the BER-TLV lengths written in a longer form
//! than they need to `data.iso8583.tlv_lengths.<n>` (`9F10:2`: the tag, and the bytes its
//! length took, 2 for `81 xx`), so that such a message packs back to the same bytes;
//! metadata gets `iso8583.mti`, `iso8583.mti_class`,
//! `codec.protocol`, `codec.spec_id`, `codec.spec_version` and `codec.spec_hash`. Text stays
//! text (amounts too); binary fields, and text that is not UTF-8, are bytes.

use std::borrow::Cow;

use fluxmsg::bytes::Bytes;
use fluxmsg::{FluxMsg, Map, Text, Value};

use crate::error::{MapError, UnpackError};
use crate::message::{FieldRef, Message};
use crate::spec::{FieldSpec, Layout, Spec, SubKey};

fn to_value(bytes: &[u8], binary: bool) -> Value {
    match std::str::from_utf8(bytes) {
        Ok(s) if !binary => Value::from(s),
        _ => Value::from(bytes),
    }
}

/// `n` as decimal text, without allocating.
fn number_text(n: u16) -> Text {
    let mut digits = [0u8; 5];
    let mut i = digits.len();
    let mut v = n;
    loop {
        i -= 1;
        digits[i] = b'0' + (v % 10) as u8;
        v /= 10;
        if v == 0 {
            break;
        }
    }
    Text::from(std::str::from_utf8(&digits[i..]).unwrap_or_default())
}

/// A subfield key as text (`9F02`, `3`), as `SubKey`'s `Display` writes it, without
/// allocating.
fn key_text(key: SubKey) -> Text {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    match key {
        SubKey::Index(i) => number_text(i),
        SubKey::Tag(t) => {
            let width = match t {
                0..=0xFF => 2,
                0x100..=0xFFFF => 4,
                0x1_0000..=0xFF_FFFF => 6,
                _ => 8,
            };
            let mut digits = [0u8; 8];
            for (j, c) in digits[..width].iter_mut().enumerate() {
                *c = HEX[((t >> (4 * (width - 1 - j))) & 0xF) as usize];
            }
            Text::from(std::str::from_utf8(&digits[..width]).unwrap_or_default())
        }
    }
}

impl Spec {
    /// Writes an unpacked message into `out`'s `data` and `meta` (see the module docs for
    /// the keys); `raw` is left to the caller.
    pub fn to_fluxmsg(&self, msg: &Message, out: &mut FluxMsg) {
        let meta = [
            ("iso8583.mti", msg.mti()),
            ("iso8583.mti_class", msg.mti().get(..2).unwrap_or_default()),
            ("codec.protocol", "iso8583"),
            ("codec.spec_id", self.id()),
            ("codec.spec_version", self.version()),
            ("codec.spec_hash", self.hash()),
        ];
        for (key, value) in meta {
            out.meta.insert(key, Text::from(value));
        }
        let mut fields = Map::with_capacity(msg.len());
        let mut unknown = Map::new();
        let mut order = Map::new();
        let mut lengths = Map::new();
        for (n, field) in msg.iter() {
            let spec = self.field(n);
            let value = match field {
                FieldRef::Value(v) => to_value(v, spec.is_some_and(FieldSpec::is_binary)),
                FieldRef::Composite(subs) => {
                    let comp = spec.and_then(FieldSpec::composite);
                    let mut m = Map::with_capacity(subs.len());
                    let mut tags = String::new();
                    let mut forms = String::new();
                    let mut unknown_here = Map::new();
                    for s in subs.iter() {
                        let key = key_text(s.key);
                        let sub_spec = comp.and_then(|c| c.subfield(s.key));
                        if matches!(s.key, SubKey::Tag(_)) {
                            if !tags.is_empty() {
                                tags.push(' ');
                            }
                            tags.push_str(key.as_str());
                            if s.length_bytes > crate::pack::tlv_shortest_form(sub_spec, s.value) {
                                if !forms.is_empty() {
                                    forms.push(' ');
                                }
                                forms.push_str(key.as_str());
                                forms.push(':');
                                forms.push(char::from(b'0' + s.length_bytes.min(9)));
                            }
                        }
                        if s.unknown {
                            unknown_here.insert(key, Value::from(s.value));
                            continue;
                        }
                        let binary = sub_spec.is_none_or(FieldSpec::is_binary);
                        m.insert(key, to_value(s.value, binary));
                    }
                    if !tags.is_empty() {
                        order.insert(number_text(n), Value::from(tags));
                    }
                    if !forms.is_empty() {
                        lengths.insert(number_text(n), Value::from(forms));
                    }
                    if !unknown_here.is_empty() {
                        unknown.insert(number_text(n), Value::Map(unknown_here));
                    }
                    Value::Map(m)
                }
            };
            fields.insert(number_text(n), value);
        }
        for (alias, path) in self.aliases() {
            let Some(field) = msg.get(path.field) else {
                continue;
            };
            let value = match path.sub {
                None => field.bytes(),
                Some(key) => field.subfield(key),
            };
            let Some(v) = value else { continue };
            let binary = self
                .path_spec(path.field, path.sub)
                .is_some_and(FieldSpec::is_binary);
            // A conflicting alias (a prefix of another) keeps only the iso8583 copy.
            let _ = out.data.set_path(alias, to_value(v, binary));
        }
        let iso = match out
            .data
            .get_or_insert_with("iso8583", || Value::Map(Map::new()))
        {
            Value::Map(m) => m,
            other => {
                *other = Value::Map(Map::new());
                match other {
                    Value::Map(m) => m,
                    _ => return,
                }
            }
        };
        iso.insert("field", Value::Map(fields));
        if !unknown.is_empty() {
            iso.insert("unknown_tags", Value::Map(unknown));
        }
        if !order.is_empty() {
            iso.insert("tlv_order", Value::Map(order));
        }
        if !lengths.is_empty() {
            iso.insert("tlv_lengths", Value::Map(lengths));
        }
    }

    /// Unpacks `input` into a new fluxMsg: `raw` keeps the bytes, `data` and `meta` as
    /// [`Spec::to_fluxmsg`] writes them.
    ///
    /// # Errors
    ///
    /// As [`Spec::unpack`].
    pub fn unpack_to_fluxmsg(&self, input: &[u8]) -> Result<FluxMsg, UnpackError> {
        let msg = self.unpack(input)?;
        let mut out = FluxMsg::new();
        self.to_fluxmsg(&msg, &mut out);
        out.raw = Bytes::copy_from_slice(input);
        Ok(out)
    }

    fn path_spec(&self, field: u16, sub: Option<SubKey>) -> Option<&FieldSpec> {
        let f = self.field(field)?;
        match sub {
            None => Some(f),
            Some(k) => f.composite()?.subfield(k),
        }
    }

    /// Builds a message from a fluxMsg: the MTI from `meta.iso8583.mti`, fields from
    /// `data.iso8583.field`, unknown tags, tag order and length forms from
    /// `data.iso8583.unknown_tags`, `data.iso8583.tlv_order` and `data.iso8583.tlv_lengths`,
    /// then the spec's aliases, which win over the field copies.
    ///
    /// # Errors
    ///
    /// [`MapError`] for a missing MTI, a value that is not text or bytes (integers are taken
    /// as their decimal text), or a key that is not a field of the spec.
    pub fn from_fluxmsg(&self, flux: &FluxMsg) -> Result<Message, MapError> {
        let mti = flux.meta.get("iso8583.mti").ok_or(MapError::NoMti)?;
        let mut msg = Message::new(mti.as_str());
        // Composite fields are gathered here, then written once complete.
        let mut composites: Vec<(u16, Vec<Staged<'_>>)> = Vec::new();
        let iso = flux.data.get("iso8583").and_then(Value::as_map);
        let part = |key: &str| iso.and_then(|m| m.get(key)).and_then(Value::as_map);
        if let Some(fields) = part("field") {
            msg.fields.reserve(fields.len());
            for (key, value) in fields.iter() {
                let n = key
                    .parse::<u16>()
                    .ok()
                    .filter(|n| *n >= 2 && self.field(*n).is_some())
                    .ok_or_else(|| MapError::Unknown(format!("iso8583.field.{key}")))?;
                match value {
                    Value::Map(m) => composites.push((n, self.subfields_from(n, m, key)?)),
                    other => {
                        let bytes = bytes_of(other, || format!("iso8583.field.{key}"))?;
                        msg.set_value(n, &bytes);
                    }
                }
            }
        }
        if let Some(unknown) = part("unknown_tags") {
            for (field, tags) in unknown.iter() {
                let fpath = || format!("iso8583.unknown_tags.{field}");
                let n = field
                    .parse::<u16>()
                    .ok()
                    .filter(|n| {
                        self.field(*n)
                            .and_then(FieldSpec::composite)
                            .is_some_and(|c| c.layout() == Layout::Tlv)
                    })
                    .ok_or_else(|| MapError::Unknown(fpath()))?;
                let tags = tags.as_map().ok_or_else(|| MapError::Type {
                    path: fpath(),
                    found: tags.type_name(),
                })?;
                let subs = staged(&mut composites, n);
                for (tag, value) in tags.iter() {
                    let path = || format!("{}.{tag}", fpath());
                    let key = SubKey::parse(tag, true).ok_or_else(|| MapError::Unknown(path()))?;
                    subs.push(Staged {
                        key,
                        value: bytes_of(value, path)?,
                        unknown: true,
                        length_bytes: 0,
                    });
                }
            }
        }
        if let Some(order) = part("tlv_order") {
            for (key, value) in order.iter() {
                let (Ok(n), Some(list)) = (key.parse::<u16>(), value.as_str()) else {
                    continue;
                };
                let Some((_, subs)) = composites.iter_mut().find(|(k, _)| *k == n) else {
                    continue;
                };
                let rank: Vec<SubKey> = list
                    .split_ascii_whitespace()
                    .filter_map(|t| SubKey::parse(t, true))
                    .collect();
                subs.sort_by_key(|s| rank.iter().position(|k| *k == s.key).unwrap_or(usize::MAX));
            }
        }
        if let Some(lengths) = part("tlv_lengths") {
            for (key, value) in lengths.iter() {
                let (Ok(n), Some(list)) = (key.parse::<u16>(), value.as_str()) else {
                    continue;
                };
                let Some((_, subs)) = composites.iter_mut().find(|(k, _)| *k == n) else {
                    continue;
                };
                for item in list.split_ascii_whitespace() {
                    let Some((tag, form)) = item.split_once(':') else {
                        continue;
                    };
                    let (Some(key), Ok(form)) = (SubKey::parse(tag, true), form.parse::<u8>())
                    else {
                        continue;
                    };
                    if let Some(s) = subs.iter_mut().find(|s| s.key == key) {
                        s.length_bytes = form.min(5);
                    }
                }
            }
        }
        for (alias, path) in self.aliases() {
            let Some(value) = flux.data.get_path(alias) else {
                continue;
            };
            let bytes = bytes_of(value, || alias.to_owned())?;
            match path.sub {
                None => {
                    composites.retain(|(n, _)| *n != path.field);
                    msg.set_value(path.field, &bytes);
                }
                Some(key) => {
                    let subs = staged(&mut composites, path.field);
                    match subs.iter_mut().find(|s| s.key == key) {
                        Some(s) => s.value = bytes,
                        None => subs.push(Staged {
                            key,
                            value: bytes,
                            unknown: false,
                            length_bytes: 0,
                        }),
                    }
                }
            }
        }
        for (n, subs) in &composites {
            msg.set_composite(
                *n,
                subs.iter()
                    .map(|s| (s.key, &*s.value, s.unknown, s.length_bytes)),
            );
        }
        Ok(msg)
    }

    fn subfields_from<'a>(
        &self,
        n: u16,
        m: &'a Map<Value>,
        field_key: &str,
    ) -> Result<Vec<Staged<'a>>, MapError> {
        let path = || format!("iso8583.field.{field_key}");
        let comp = self
            .field(n)
            .and_then(FieldSpec::composite)
            .ok_or_else(|| MapError::Type {
                path: path(),
                found: "a map",
            })?;
        let tlv = comp.layout() == Layout::Tlv;
        let mut subs = Vec::with_capacity(m.len());
        for (k, v) in m.iter() {
            let sp = || format!("{}.{k}", path());
            let key = SubKey::parse(k, tlv)
                .filter(|key| comp.subfield(*key).is_some())
                .ok_or_else(|| MapError::Unknown(sp()))?;
            subs.push(Staged {
                key,
                value: bytes_of(v, sp)?,
                unknown: false,
                length_bytes: 0,
            });
        }
        Ok(subs)
    }

    /// Packs a fluxMsg's ISO 8583 fields ([`Spec::from_fluxmsg`], then [`Spec::pack`]),
    /// appending to `out`.
    ///
    /// # Errors
    ///
    /// As [`Spec::from_fluxmsg`] and [`Spec::pack`].
    pub fn pack_fluxmsg(&self, flux: &FluxMsg, out: &mut Vec<u8>) -> Result<(), MapError> {
        let msg = self.from_fluxmsg(flux)?;
        self.pack(&msg, out)?;
        Ok(())
    }
}

/// A subfield on its way from a fluxMsg into a [`Message`].
struct Staged<'a> {
    key: SubKey,
    value: Cow<'a, [u8]>,
    unknown: bool,
    length_bytes: u8,
}

/// The staged subfields of field `n`, new and empty if it has none yet.
fn staged<'v, 'a>(
    composites: &'v mut Vec<(u16, Vec<Staged<'a>>)>,
    n: u16,
) -> &'v mut Vec<Staged<'a>> {
    let i = match composites.iter().position(|(k, _)| *k == n) {
        Some(i) => i,
        None => {
            composites.push((n, Vec::new()));
            composites.len() - 1
        }
    };
    &mut composites[i].1
}

/// A value's bytes: text and bytes as they are, integers as their decimal text.
fn bytes_of(value: &Value, path: impl FnOnce() -> String) -> Result<Cow<'_, [u8]>, MapError> {
    match value {
        Value::Text(t) => Ok(Cow::Borrowed(t.as_str().as_bytes())),
        Value::Bytes(b) => Ok(Cow::Borrowed(b.as_ref())),
        Value::Integer(i) => Ok(Cow::Owned(i128::from(*i).to_string().into_bytes())),
        other => Err(MapError::Type {
            path: path(),
            found: other.type_name(),
        }),
    }
}
