//! The fluxMsg envelope.

use bytes::Bytes;

use crate::map::canonical_cmp;
use crate::{Error, Id, Limits, Map, Text, Value};

/// The envelope every message travels in, field for field the Go fluxrig's `FluxMsg`.
///
/// On the wire it is a CBOR map with short text keys (shown after each field). Fields that
/// hold their default value (no id, empty text, empty map, zero) are left out of the
/// encoding, and the Go fluxrig reads a missing field as its zero value; the decoder
/// accepts both a missing field and an explicit `null` or zero.
///
/// ```
/// use fluxmsg::{FluxMsg, Id};
///
/// let msg = FluxMsg::builder()
///     .id(Id::U64(42))
///     .ts(1_767_225_600_000_000_000)
///     .meta("iso8583.mti", "0100")
///     .data_path("iso8583.field.11", "123456")?
///     .raw(&b"\x01\x00"[..])
///     .build();
/// assert_eq!(msg.meta.get("iso8583.mti").map(|t| t.as_str()), Some("0100"));
/// assert_eq!(msg.data.get_path("iso8583.field.11").and_then(|v| v.as_str()), Some("123456"));
/// # Ok::<(), fluxmsg::Error>(())
/// ```
#[derive(Debug, Clone, Default, PartialEq)]
pub struct FluxMsg {
    /// Message id (`id`); filled by the runtime on emit when absent.
    pub id: Option<Id>,
    /// Parent or correlation id (`ref_id`).
    pub ref_id: Option<Id>,
    /// OpenTelemetry trace id in hex (`trace`); empty when absent.
    pub trace: String,
    /// Id of the gear that created the message (`src_id`).
    pub src_id: Option<Id>,
    /// Routing and protocol headers (`meta`); binary values go in as `hex:<hex>`.
    pub meta: Map<Text>,
    /// Business fields (`data`), addressed by dotted paths.
    pub data: Map<Value>,
    /// System flags (`flags`); see [`FluxMsg::FLAG_SYNC_PROBE`].
    pub flags: u32,
    /// Original wire bytes, or bytes to write (`raw`).
    pub raw: Bytes,
    /// Audit trail (`path`): one hop per port arrival and per emit.
    pub path: Vec<Hop>,
    /// Creation time in Unix nanoseconds (`ts`).
    pub ts: i64,
    /// Top-level fields this version does not know, kept so that they are forwarded.
    ///
    /// Keys must not be the name of a field above: encoding such a message fails with
    /// [`Error::ReservedKey`].
    pub extra: Map<Value>,
}

impl FluxMsg {
    /// Flag bit 0: the message is a convergence probe.
    pub const FLAG_SYNC_PROBE: u32 = 0x01;

    /// The CBOR keys of the envelope, in canonical order.
    pub const KEYS: [&'static str; 10] = [
        "id", "ts", "raw", "data", "meta", "path", "flags", "trace", "ref_id", "src_id",
    ];

    /// A message with every field at its default.
    pub fn new() -> Self {
        Self::default()
    }

    /// Starts a builder.
    pub fn builder() -> FluxMsgBuilder {
        FluxMsgBuilder::default()
    }

    /// Sets a metadata entry, writing a non-UTF-8 value as `hex:<hex>` as the Go fluxrig does.
    pub fn set_meta_bytes(&mut self, key: impl Into<Text>, value: &[u8]) {
        let text = match std::str::from_utf8(value) {
            Ok(s) => Text::from(s),
            Err(_) => Text::from(hex_prefixed(value)),
        };
        self.meta.insert(key, text);
    }
}

/// One envelope field that is not at its default, as the encoders visit them.
pub(crate) enum Field<'a> {
    Id(&'a Id),
    Ts(i64),
    Raw(&'a Bytes),
    Data(&'a Map<Value>),
    Meta(&'a Map<Text>),
    Path(&'a [Hop]),
    Flags(u32),
    Trace(&'a str),
    RefId(&'a Id),
    SrcId(&'a Id),
    Extra(&'a str, &'a Value),
}

impl FluxMsg {
    /// How many fields an encoding of this message holds.
    pub(crate) fn field_count(&self) -> usize {
        usize::from(self.id.is_some())
            + usize::from(self.ts != 0)
            + usize::from(!self.raw.is_empty())
            + usize::from(!self.data.is_empty())
            + usize::from(!self.meta.is_empty())
            + usize::from(!self.path.is_empty())
            + usize::from(self.flags != 0)
            + usize::from(!self.trace.is_empty())
            + usize::from(self.ref_id.is_some())
            + usize::from(self.src_id.is_some())
            + self.extra.len()
    }

    /// The envelope field at position `i` of [`FluxMsg::KEYS`], unless it is at its default.
    fn known_field(&self, i: usize) -> Option<Field<'_>> {
        match i {
            0 => self.id.as_ref().map(Field::Id),
            1 => (self.ts != 0).then_some(Field::Ts(self.ts)),
            2 => (!self.raw.is_empty()).then_some(Field::Raw(&self.raw)),
            3 => (!self.data.is_empty()).then_some(Field::Data(&self.data)),
            4 => (!self.meta.is_empty()).then_some(Field::Meta(&self.meta)),
            5 => (!self.path.is_empty()).then_some(Field::Path(&self.path)),
            6 => (self.flags != 0).then_some(Field::Flags(self.flags)),
            7 => (!self.trace.is_empty()).then_some(Field::Trace(&self.trace)),
            8 => self.ref_id.as_ref().map(Field::RefId),
            _ => self.src_id.as_ref().map(Field::SrcId),
        }
    }

    /// Calls `f` on every field to encode, in canonical key order, with the unknown fields of
    /// [`FluxMsg::extra`] merged in; `reserved` makes the error for an extra field that has an
    /// envelope field's name.
    #[inline]
    pub(crate) fn try_for_each_field<E>(
        &self,
        mut f: impl FnMut(Field<'_>) -> Result<(), E>,
        reserved: impl Fn(&str) -> E,
    ) -> Result<(), E> {
        let mut extra = self.extra.iter().peekable();
        for (i, key) in Self::KEYS.iter().enumerate() {
            while let Some((k, v)) = extra.next_if(|(k, _)| canonical_cmp(k, key).is_le()) {
                if k == *key {
                    return Err(reserved(k));
                }
                f(Field::Extra(k, v))?;
            }
            if let Some(field) = self.known_field(i) {
                f(field)?;
            }
        }
        extra.try_for_each(|(k, v)| f(Field::Extra(k, v)))
    }
}

fn hex_prefixed(bytes: &[u8]) -> String {
    let mut s = String::from("hex:");
    crate::hex::push(&mut s, bytes);
    s
}

/// One step of a message's audit trail: a CBOR map `{g, p, t}`, plus `d` when the gear that
/// sent the message recorded a decision.
///
/// A hop without a decision encodes exactly as the Go fluxrig writes it; `d` is written only
/// when [`Hop::decision`] is set, and the Go fluxrig, which skips hop fields it does not know,
/// reads such a hop too.
///
/// ```
/// use fluxmsg::{FluxMsg, Hop, Id};
///
/// let hop = Hop::new(Id::U64(5), Id::U64(6), 1).with_decision("rule 0 -> out_visa");
/// assert_eq!(hop.decision.as_deref(), Some("rule 0 -> out_visa"));
///
/// // A decision is cut to the default limit, at a character boundary.
/// let long = Hop::new(Id::U64(5), Id::U64(6), 1).with_decision("é".repeat(100));
/// assert_eq!(long.decision.as_deref().map(str::len), Some(128));
///
/// let msg = FluxMsg::builder().hop(hop).build();
/// assert_eq!(FluxMsg::from_cbor(&msg.to_cbor()?)?, msg);
/// # Ok::<(), fluxmsg::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Hop {
    /// The gear (`g`).
    pub gear: Id,
    /// The port (`p`).
    pub port: Id,
    /// When, in Unix nanoseconds (`t`).
    pub ts: i64,
    /// Why the gear sent the message to this port (`d`), in the gear's words, such as
    /// `rule 0 -> out_visa_b (failover: out_visa_a unavailable)`; `None` for gears that
    /// decide nothing.
    ///
    /// At most [`Limits::max_decision_len`] bytes: a longer one fails to encode, and the
    /// decoder refuses it. [`Hop::with_decision`] and [`Hop::set_decision`] cut it to the
    /// default limit.
    pub decision: Option<Text>,
}

impl Hop {
    /// A hop without a decision.
    pub fn new(gear: impl Into<Id>, port: impl Into<Id>, ts: i64) -> Hop {
        Hop {
            gear: gear.into(),
            port: port.into(),
            ts,
            decision: None,
        }
    }

    /// The hop with `decision`, cut as [`Hop::set_decision`] does.
    #[must_use]
    pub fn with_decision(mut self, decision: impl Into<Text>) -> Hop {
        self.set_decision(decision);
        self
    }

    /// Sets the decision, cut to the default [`Limits::max_decision_len`] (128 bytes) at the
    /// last character boundary that fits. A decision within the limit is moved in as it is.
    pub fn set_decision(&mut self, decision: impl Into<Text>) {
        let mut decision = decision.into();
        decision.shorten(Limits::DEFAULT.max_decision_len());
        self.decision = Some(decision);
    }
}

/// Builds a [`FluxMsg`] with chained setters.
#[derive(Debug, Clone, Default)]
#[must_use]
pub struct FluxMsgBuilder {
    msg: FluxMsg,
}

impl FluxMsgBuilder {
    /// Sets `id`.
    pub fn id(mut self, id: impl Into<Id>) -> Self {
        self.msg.id = Some(id.into());
        self
    }

    /// Sets `ref_id`.
    pub fn ref_id(mut self, id: impl Into<Id>) -> Self {
        self.msg.ref_id = Some(id.into());
        self
    }

    /// Sets `src_id`.
    pub fn src_id(mut self, id: impl Into<Id>) -> Self {
        self.msg.src_id = Some(id.into());
        self
    }

    /// Sets `trace`.
    pub fn trace(mut self, trace: impl Into<String>) -> Self {
        self.msg.trace = trace.into();
        self
    }

    /// Adds a metadata entry.
    pub fn meta(mut self, key: impl Into<Text>, value: impl Into<Text>) -> Self {
        self.msg.meta.insert(key, value.into());
        self
    }

    /// Adds a top-level data entry (the key is taken as is, dots included).
    pub fn data(mut self, key: impl Into<Text>, value: impl Into<Value>) -> Self {
        self.msg.data.insert(key, value.into());
        self
    }

    /// Sets a data value at a dotted path, creating intermediate maps.
    ///
    /// # Errors
    ///
    /// As [`Map::set_path`].
    pub fn data_path(mut self, path: &str, value: impl Into<Value>) -> Result<Self, Error> {
        self.msg.data.set_path(path, value)?;
        Ok(self)
    }

    /// Sets `flags`.
    pub fn flags(mut self, flags: u32) -> Self {
        self.msg.flags = flags;
        self
    }

    /// Sets `raw`.
    pub fn raw(mut self, raw: impl Into<Bytes>) -> Self {
        self.msg.raw = raw.into();
        self
    }

    /// Appends a hop to `path`.
    pub fn hop(mut self, hop: Hop) -> Self {
        self.msg.path.push(hop);
        self
    }

    /// Sets `ts`.
    pub fn ts(mut self, ts: i64) -> Self {
        self.msg.ts = ts;
        self
    }

    /// The message.
    pub fn build(self) -> FluxMsg {
        self.msg
    }
}
