//! The mapping between unpacked messages and fluxMsg, as the reference's codec gear does it.
//!
//! Decoding writes each field to `data.iso8583.field.<n>` (a composite as a map of its
//! subfields), again under its alias, unknown BER-TLV tags to `data.iso8583.unknown_tags`
//! (`<n>.<tag>` to bytes) and the wire order of each BER-TLV field's tags to
//! `data.iso8583.tlv_order.<n>` (tags in hex, separated by spaces, so that the order
//! survives the sorted maps of fluxMsg); metadata gets `iso8583.mti`, `iso8583.mti_class`,
//! `codec.protocol`, `codec.spec_id`, `codec.spec_version` and `codec.spec_hash`. Text stays
//! text (amounts too); binary fields, and text that is not UTF-8, are bytes.

use fluxmsg::bytes::Bytes;
use fluxmsg::{FluxMsg, Map, Text, Value};

use crate::error::{MapError, UnpackError};
use crate::message::{Field, Message, Subfield};
use crate::spec::{FieldSpec, Layout, Spec, SubKey};

fn to_value(bytes: &[u8], binary: bool) -> Value {
    match std::str::from_utf8(bytes) {
        Ok(s) if !binary => Value::from(s),
        _ => Value::from(bytes),
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
        let mut fields = Map::with_capacity(msg.fields.len());
        let mut unknown = Map::new();
        let mut order = Map::new();
        for (n, field) in msg.iter() {
            let spec = self.field(n);
            let value = match field {
                Field::Value(v) => to_value(v, spec.is_some_and(FieldSpec::is_binary)),
                Field::Composite(subs) => {
                    let comp = spec.and_then(FieldSpec::composite);
                    let mut m = Map::with_capacity(subs.len());
                    let mut tags = String::new();
                    let mut unknown_here = Map::new();
                    for s in subs {
                        let Field::Value(v) = &s.value else { continue };
                        let key = s.key.to_string();
                        if matches!(s.key, SubKey::Tag(_)) {
                            if !tags.is_empty() {
                                tags.push(' ');
                            }
                            tags.push_str(&key);
                        }
                        if s.unknown {
                            unknown_here.insert(key, Value::from(v.as_slice()));
                            continue;
                        }
                        let binary = comp
                            .and_then(|c| c.subfield(s.key))
                            .is_none_or(FieldSpec::is_binary);
                        m.insert(key, to_value(v, binary));
                    }
                    if !tags.is_empty() {
                        order.insert(n.to_string(), Value::from(tags));
                    }
                    if !unknown_here.is_empty() {
                        unknown.insert(n.to_string(), Value::Map(unknown_here));
                    }
                    Value::Map(m)
                }
            };
            fields.insert(n.to_string(), value);
        }
        for (alias, path) in self.aliases() {
            let Some(field) = msg.get(path.field) else {
                continue;
            };
            let field = match path.sub {
                None => field,
                Some(key) => match field.subfield(key) {
                    Some(f) => f,
                    None => continue,
                },
            };
            let binary = self
                .path_spec(path.field, path.sub)
                .is_some_and(FieldSpec::is_binary);
            if let Field::Value(v) = field {
                // A conflicting alias (a prefix of another) keeps only the iso8583 copy.
                let _ = out.data.set_path(alias, to_value(v, binary));
            }
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
    /// `data.iso8583.field`, unknown tags and tag order from `data.iso8583.unknown_tags`
    /// and `data.iso8583.tlv_order`, then the spec's aliases, which win over the field copies.
    ///
    /// # Errors
    ///
    /// [`MapError`] for a missing MTI, a value that is not text or bytes (integers are taken
    /// as their decimal text), or a key that is not a field of the spec.
    pub fn from_fluxmsg(&self, flux: &FluxMsg) -> Result<Message, MapError> {
        let mti = flux.meta.get("iso8583.mti").ok_or(MapError::NoMti)?;
        let mut msg = Message::new(mti.as_str());
        if let Some(fields) = flux.data.get_path("iso8583.field").and_then(Value::as_map) {
            for (key, value) in fields.iter() {
                let n = key
                    .parse::<u16>()
                    .ok()
                    .filter(|n| *n >= 2 && self.field(*n).is_some())
                    .ok_or_else(|| MapError::Unknown(format!("iso8583.field.{key}")))?;
                let field = match value {
                    Value::Map(m) => {
                        let path = format!("iso8583.field.{key}");
                        Field::Composite(self.subfields_from(n, m, &path)?)
                    }
                    other => Field::Value(bytes_of(other, &format!("iso8583.field.{key}"))?),
                };
                msg.set(n, field);
            }
        }
        if let Some(unknown) = flux
            .data
            .get_path("iso8583.unknown_tags")
            .and_then(Value::as_map)
        {
            for (field, tags) in unknown.iter() {
                let fpath = format!("iso8583.unknown_tags.{field}");
                let n = field
                    .parse::<u16>()
                    .ok()
                    .filter(|n| {
                        self.field(*n)
                            .and_then(FieldSpec::composite)
                            .is_some_and(|c| c.layout() == Layout::Tlv)
                    })
                    .ok_or_else(|| MapError::Unknown(fpath.clone()))?;
                let tags = tags.as_map().ok_or_else(|| MapError::Type {
                    path: fpath.clone(),
                    found: tags.type_name(),
                })?;
                for (tag, value) in tags.iter() {
                    let path = format!("{fpath}.{tag}");
                    let key =
                        SubKey::parse(tag, true).ok_or_else(|| MapError::Unknown(path.clone()))?;
                    let sub = Subfield {
                        key,
                        value: Field::Value(bytes_of(value, &path)?),
                        unknown: true,
                        length_bytes: 0,
                    };
                    match msg.fields.iter_mut().find(|(k, _)| *k == n) {
                        Some((_, Field::Composite(subs))) => subs.push(sub),
                        _ => msg.set(n, Field::Composite(vec![sub])),
                    }
                }
            }
        }
        if let Some(order) = flux
            .data
            .get_path("iso8583.tlv_order")
            .and_then(Value::as_map)
        {
            for (key, value) in order.iter() {
                let (Ok(n), Some(list)) = (key.parse::<u16>(), value.as_str()) else {
                    continue;
                };
                let Some((_, Field::Composite(subs))) =
                    msg.fields.iter_mut().find(|(k, _)| *k == n)
                else {
                    continue;
                };
                let rank: Vec<SubKey> = list
                    .split_ascii_whitespace()
                    .filter_map(|t| SubKey::parse(t, true))
                    .collect();
                subs.sort_by_key(|s| rank.iter().position(|k| *k == s.key).unwrap_or(usize::MAX));
            }
        }
        for (alias, path) in self.aliases() {
            let Some(value) = flux.data.get_path(alias) else {
                continue;
            };
            let bytes = bytes_of(value, alias)?;
            match path.sub {
                None => msg.set(path.field, Field::Value(bytes)),
                Some(key) => {
                    let sub = Subfield::new(key, Field::Value(bytes));
                    match msg.fields.iter_mut().find(|(k, _)| *k == path.field) {
                        Some((_, Field::Composite(subs))) => {
                            match subs.iter_mut().find(|s| s.key == key) {
                                Some(s) => s.value = sub.value,
                                None => subs.push(sub),
                            }
                        }
                        _ => msg.set(path.field, Field::Composite(vec![sub])),
                    }
                }
            }
        }
        Ok(msg)
    }

    fn subfields_from(
        &self,
        n: u16,
        m: &Map<Value>,
        path: &str,
    ) -> Result<Vec<Subfield>, MapError> {
        let comp = self
            .field(n)
            .and_then(FieldSpec::composite)
            .ok_or_else(|| MapError::Type {
                path: path.to_owned(),
                found: "a map",
            })?;
        let tlv = comp.layout() == Layout::Tlv;
        let mut subs = Vec::with_capacity(m.len());
        for (k, v) in m.iter() {
            let sp = format!("{path}.{k}");
            let key = SubKey::parse(k, tlv)
                .filter(|key| comp.subfield(*key).is_some())
                .ok_or_else(|| MapError::Unknown(sp.clone()))?;
            subs.push(Subfield::new(key, Field::Value(bytes_of(v, &sp)?)));
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

fn bytes_of(value: &Value, path: &str) -> Result<Vec<u8>, MapError> {
    match value {
        Value::Text(t) => Ok(t.as_str().as_bytes().to_vec()),
        Value::Bytes(b) => Ok(b.to_vec()),
        Value::Integer(i) => Ok(i128::from(*i).to_string().into_bytes()),
        other => Err(MapError::Type {
            path: path.to_owned(),
            found: other.type_name(),
        }),
    }
}
