//! serde's traits for the model, written so that `ciborium` produces exactly the bytes of
//! the fast codec: maps in canonical order, default envelope fields left out, byte strings as
//! CBOR byte strings, `Value::Null` as CBOR null.

use std::fmt;
use std::marker::PhantomData;

use bytes::Bytes;
use serde::de::{self, DeserializeOwned, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::ser::{SerializeMap, SerializeStruct};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::map::{Builder, Duplicate};
use crate::msg::Field;
use crate::{FluxMsg, Hop, Id, Integer, Map, Text, Value};

/// Serializes a byte slice as a byte string (serde serializes `[u8]` as a sequence).
struct ByteStr<'a>(&'a [u8]);

impl Serialize for ByteStr<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(self.0)
    }
}

/// Deserializes a byte string (or a sequence of bytes, as JSON has them) into [`Bytes`].
pub(crate) struct ByteBuf(pub(crate) Bytes);

impl<'de> Deserialize<'de> for ByteBuf {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = ByteBuf;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a byte string")
            }
            fn visit_bytes<E: de::Error>(self, v: &[u8]) -> Result<ByteBuf, E> {
                Ok(ByteBuf(Bytes::copy_from_slice(v)))
            }
            fn visit_byte_buf<E: de::Error>(self, v: Vec<u8>) -> Result<ByteBuf, E> {
                Ok(ByteBuf(Bytes::from(v)))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<ByteBuf, A::Error> {
                let mut out = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(4096));
                while let Some(b) = seq.next_element::<u8>()? {
                    out.push(b);
                }
                Ok(ByteBuf(Bytes::from(out)))
            }
        }
        d.deserialize_byte_buf(V)
    }
}

/// A field that may also arrive as `null`, which reads as the default.
struct Nullable<T>(T);

impl<'de, T: Deserialize<'de> + Default> Deserialize<'de> for Nullable<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Option::<T>::deserialize(d).map(|v| Nullable(v.unwrap_or_default()))
    }
}

impl Serialize for Text {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self)
    }
}

impl<'de> Deserialize<'de> for Text {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Text;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("text")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Text, E> {
                Ok(Text::from(v))
            }
            fn visit_string<E: de::Error>(self, v: String) -> Result<Text, E> {
                Ok(Text::from(v))
            }
        }
        d.deserialize_str(V)
    }
}

impl Serialize for Id {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Id::U64(v) => s.serialize_u64(*v),
            Id::Uuid(b) => s.serialize_bytes(b),
        }
    }
}

impl<'de> Deserialize<'de> for Id {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Id;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an unsigned integer or a 16-byte byte string")
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Id, E> {
                Ok(Id::U64(v))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Id, E> {
                u64::try_from(v)
                    .map(Id::U64)
                    .map_err(|_| E::invalid_value(de::Unexpected::Signed(v), &self))
            }
            fn visit_bytes<E: de::Error>(self, v: &[u8]) -> Result<Id, E> {
                <[u8; 16]>::try_from(v)
                    .map(Id::Uuid)
                    .map_err(|_| E::invalid_length(v.len(), &self))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Id, E> {
                v.parse()
                    .map_err(|_| E::invalid_value(de::Unexpected::Str(v), &self))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Id, A::Error> {
                let bytes = ByteBuf::deserialize(de::value::SeqAccessDeserializer::new(seq))?;
                self.visit_bytes(&bytes.0)
            }
        }
        d.deserialize_any(V)
    }
}

impl Serialize for Hop {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        // Canonical key order: `d` (only with a decision), `g`, `p`, `t`.
        let mut st = s.serialize_struct("Hop", 3 + usize::from(self.decision.is_some()))?;
        if let Some(d) = &self.decision {
            st.serialize_field("d", d)?;
        } else {
            st.skip_field("d")?;
        }
        st.serialize_field("g", &self.gear)?;
        st.serialize_field("p", &self.port)?;
        st.serialize_field("t", &self.ts)?;
        st.end()
    }
}

impl<'de> Deserialize<'de> for Hop {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Hop;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a hop map {g, p, t} with an optional d")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Hop, A::Error> {
                let (mut gear, mut port, mut ts) = (None, None, None);
                let mut decision: Option<Option<Text>> = None;
                let mut unknown = Builder::with_capacity(0);
                while let Some(key) = map.next_key::<Text>()? {
                    let dup = match key.as_str() {
                        "d" => decision.replace(map.next_value()?).is_some(),
                        "g" => gear.replace(map.next_value()?).is_some(),
                        "p" => port.replace(map.next_value()?).is_some(),
                        "t" => ts.replace(map.next_value()?).is_some(),
                        // Skipped, as the codec skips them, and unique, as it requires.
                        _ => {
                            map.next_value::<IgnoredAny>()?;
                            unknown.push(key.clone(), ()).is_err()
                        }
                    };
                    if dup {
                        return Err(de::Error::custom(format_args!(
                            "duplicate hop field `{key}`"
                        )));
                    }
                }
                unknown.finish().map_err(duplicate)?;
                Ok(Hop {
                    gear: gear.ok_or_else(|| de::Error::missing_field("g"))?,
                    port: port.ok_or_else(|| de::Error::missing_field("p"))?,
                    ts: ts.ok_or_else(|| de::Error::missing_field("t"))?,
                    decision: decision.flatten(),
                })
            }
        }
        d.deserialize_map(V)
    }
}

impl<V: Serialize> Serialize for Map<V> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(Some(self.len()))?;
        for (k, v) in self {
            m.serialize_entry(k, v)?;
        }
        m.end()
    }
}

impl<'de, V: Deserialize<'de>> Deserialize<'de> for Map<V> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct MapVisitor<V>(PhantomData<V>);
        impl<'de, V: Deserialize<'de>> Visitor<'de> for MapVisitor<V> {
            type Value = Map<V>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a map with text keys")
            }
            fn visit_map<A: MapAccess<'de>>(self, access: A) -> Result<Map<V>, A::Error> {
                visit_text_map(access)
            }
        }
        d.deserialize_map(MapVisitor(PhantomData))
    }
}

/// Reads a map's entries, refusing duplicate keys.
fn visit_text_map<'de, A: MapAccess<'de>, V: Deserialize<'de>>(
    mut access: A,
) -> Result<Map<V>, A::Error> {
    let mut map = Builder::with_capacity(access.size_hint().unwrap_or(0).min(1024));
    while let Some((k, v)) = access.next_entry::<Text, V>()? {
        map.push(k, v).map_err(duplicate)?;
    }
    map.finish().map_err(duplicate)
}

fn duplicate<E: de::Error>(_: Duplicate) -> E {
    E::custom("duplicate map key")
}

impl Serialize for Value {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            // `none`, not `unit`: some CBOR serializers write `()` as an empty array.
            Value::Null => s.serialize_none(),
            Value::Bool(b) => s.serialize_bool(*b),
            Value::Integer(i) => match (i.as_u64(), i.as_i64()) {
                (Some(u), _) => s.serialize_u64(u),
                (None, Some(n)) => s.serialize_i64(n),
                (None, None) => s.serialize_i128(i128::from(*i)),
            },
            // Every NaN as the one canonical NaN, as the codec writes it.
            Value::Float(f) if f.is_nan() => s.serialize_f64(f64::NAN),
            Value::Float(f) => s.serialize_f64(*f),
            Value::Text(t) => s.serialize_str(t),
            Value::Bytes(b) => s.serialize_bytes(b),
            Value::Array(items) => s.collect_seq(items),
            Value::Map(m) => m.serialize(s),
        }
    }
}

impl<'de> Deserialize<'de> for Value {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(ValueVisitor)
    }
}

struct ValueVisitor;

impl<'de> Visitor<'de> for ValueVisitor {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a CBOR value with text map keys")
    }
    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Value, E> {
        Ok(Value::from(v))
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Value, E> {
        Ok(Value::from(v))
    }
    fn visit_i128<E: de::Error>(self, v: i128) -> Result<Value, E> {
        Integer::try_from(v)
            .map(Value::Integer)
            .map_err(|_| E::custom("integer out of CBOR range"))
    }
    fn visit_u128<E: de::Error>(self, v: u128) -> Result<Value, E> {
        u64::try_from(v)
            .map(Value::from)
            .map_err(|_| E::custom("integer out of CBOR range"))
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Value, E> {
        Ok(Value::Float(v))
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Value, E> {
        Ok(Value::Text(Text::from(v)))
    }
    fn visit_string<E: de::Error>(self, v: String) -> Result<Value, E> {
        Ok(Value::Text(Text::from(v)))
    }
    fn visit_bytes<E: de::Error>(self, v: &[u8]) -> Result<Value, E> {
        Ok(Value::Bytes(Bytes::copy_from_slice(v)))
    }
    fn visit_byte_buf<E: de::Error>(self, v: Vec<u8>) -> Result<Value, E> {
        Ok(Value::Bytes(Bytes::from(v)))
    }
    fn visit_none<E: de::Error>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_unit<E: de::Error>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        Value::deserialize(d)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(1024));
        while let Some(v) = seq.next_element()? {
            items.push(v);
        }
        Ok(Value::Array(items))
    }
    fn visit_map<A: MapAccess<'de>>(self, access: A) -> Result<Value, A::Error> {
        visit_text_map(access).map(Value::Map)
    }
}

impl Serialize for FluxMsg {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(Some(self.field_count()))?;
        self.try_for_each_field(
            |field| match field {
                Field::Id(v) => m.serialize_entry("id", v),
                Field::Ts(v) => m.serialize_entry("ts", &v),
                Field::Raw(b) => m.serialize_entry("raw", &ByteStr(b)),
                Field::Data(d) => m.serialize_entry("data", d),
                Field::Meta(d) => m.serialize_entry("meta", d),
                Field::Path(p) => m.serialize_entry("path", p),
                Field::Flags(v) => m.serialize_entry("flags", &v),
                Field::Trace(t) => m.serialize_entry("trace", t),
                Field::RefId(v) => m.serialize_entry("ref_id", v),
                Field::SrcId(v) => m.serialize_entry("src_id", v),
                Field::Extra(k, v) => m.serialize_entry(k, v),
            },
            |k| serde::ser::Error::custom(format_args!("extra field `{k}` is reserved")),
        )?;
        m.end()
    }
}

impl<'de> Deserialize<'de> for FluxMsg {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_map(MsgVisitor)
    }
}

struct MsgVisitor;

impl<'de> Visitor<'de> for MsgVisitor {
    type Value = FluxMsg;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a fluxMsg map")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<FluxMsg, A::Error> {
        fn take<'de, T: Deserialize<'de> + Default, A: MapAccess<'de>>(
            map: &mut A,
        ) -> Result<T, A::Error> {
            map.next_value::<Nullable<T>>().map(|n| n.0)
        }
        let mut msg = FluxMsg::default();
        let mut seen = 0u16;
        let mut extra = Builder::with_capacity(0);
        while let Some(key) = map.next_key::<Text>()? {
            let bit = match key.as_str() {
                "id" => {
                    msg.id = map.next_value()?;
                    1
                }
                "ts" => {
                    msg.ts = take(&mut map)?;
                    2
                }
                "raw" => {
                    msg.raw = map
                        .next_value::<Option<ByteBuf>>()?
                        .map(|b| b.0)
                        .unwrap_or_default();
                    4
                }
                "data" => {
                    msg.data = take(&mut map)?;
                    8
                }
                "meta" => {
                    msg.meta = take(&mut map)?;
                    16
                }
                "path" => {
                    msg.path = take(&mut map)?;
                    32
                }
                "flags" => {
                    msg.flags = take(&mut map)?;
                    64
                }
                "trace" => {
                    msg.trace = take(&mut map)?;
                    128
                }
                "ref_id" => {
                    msg.ref_id = map.next_value()?;
                    256
                }
                "src_id" => {
                    msg.src_id = map.next_value()?;
                    512
                }
                _ => {
                    extra.push(key, map.next_value()?).map_err(duplicate)?;
                    0
                }
            };
            if seen & bit != 0 {
                return Err(duplicate(Duplicate));
            }
            seen |= bit;
        }
        msg.extra = extra.finish().map_err(duplicate)?;
        Ok(msg)
    }
}

/// Converts a serializable value into a [`Value`], through the same CBOR a peer would see.
///
/// This is how typed payloads (see [`crate::system`]) go into a message's `data`.
///
/// # Errors
///
/// [`crate::Error::Payload`] when the value cannot be represented (for example a map with
/// non-text keys).
pub fn to_value<T: Serialize + ?Sized>(value: &T) -> Result<Value, crate::Error> {
    let mut buf = Vec::new();
    ciborium::into_writer(value, &mut buf)
        .map_err(|e| crate::Error::Payload(format!("cannot be encoded: {e}")))?;
    ciborium::from_reader(buf.as_slice())
        .map_err(|e| crate::Error::Payload(format!("cannot be represented: {e}")))
}

/// Converts a [`Value`] into a typed value, through CBOR.
///
/// # Errors
///
/// [`crate::Error::Payload`] when the value does not have the shape `T` expects.
pub fn from_value<T: DeserializeOwned>(value: &Value) -> Result<T, crate::Error> {
    let mut buf = Vec::new();
    ciborium::into_writer(value, &mut buf)
        .map_err(|e| crate::Error::Payload(format!("cannot be encoded: {e}")))?;
    ciborium::from_reader(buf.as_slice())
        .map_err(|e| crate::Error::Payload(format!("does not fit: {e}")))
}
