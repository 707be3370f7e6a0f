//! [`Msg`]: one input message, read lazily, with the edits a gear makes to it.

use std::borrow::Cow;
use std::cell::Cell;
use std::sync::Arc;

use fluxmsg::{Codec, FluxMsg, Id, Map, MsgView, PathErrorKind, Value};

use crate::abi::{self, Edit, EditsReader, EditsWriter};

/// One input message as a guest gear sees it: read lazily from its CBOR, with the edits the
/// gear makes to it.
///
/// Readers find one field without decoding the rest of the message ([`MsgView`]), and see
/// the edits made so far: after `set_data("risk.score", 10u64)`, `data("risk")` is a map
/// holding `score`. Writers record [`abi::Edit`]s, which travel to the host as the body of
/// the message's [`Emit`](abi::RecordKind::Emit) record, so that neither side encodes the
/// whole message to change a field.
///
/// **Refused edits.** A write that cannot apply (an empty path segment such as `a..b`, a
/// path under a value that is not a map, a value or a path deeper than the codec allows, a
/// name over 65,535 bytes) does not panic and changes nothing: the message keeps the first such
/// problem ([`Msg::problem`]), and [`Out::emit`](super::Out::emit) then sends it to `error`
/// with reason [`REASON_BAD_EDIT`](super::REASON_BAD_EDIT) instead of emitting it, as a
/// native gear's `Err` would. A gear that wants to recover checks [`Msg::problem`] first.
///
/// **Malformed input.** The host sends well-formed messages (in any key order); if a field
/// cannot be read anyway, readers answer as if it were absent (`None`, 0, empty) and
/// [`Msg::to_msg`] reports the error.
///
/// `Clone` copies the edits (the input is borrowed), so that a gear can send differently
/// edited copies on several ports.
#[derive(Debug, Clone)]
pub struct Msg<'a> {
    view: MsgView<'a>,
    codec: Codec,
    edits: EditsWriter,
    /// `data` edits among `edits`: reads skip the overlay when there are none.
    data_edits: u32,
    problem: Option<Arc<abi::Error>>,
}

thread_local! {
    /// The edits buffer of the last dropped [`Msg`], for the next one: a batch allocates
    /// once for its edits, not once per message.
    static SPARE: Cell<Vec<u8>> = const { Cell::new(Vec::new()) };
}

/// Largest edits buffer kept for the next message.
const SPARE_MAX: usize = 64 * 1024;

impl Drop for Msg<'_> {
    fn drop(&mut self) {
        let buf = std::mem::take(&mut self.edits).into_buffer();
        if buf.capacity() <= SPARE_MAX {
            SPARE.set(buf);
        }
    }
}

/// What a `data` path holds once the edits are applied.
enum Item<'s> {
    Absent,
    /// CBOR from the input or from an edit.
    Raw(&'s [u8]),
    Owned(Value),
}

impl Item<'_> {
    fn is_map(&self) -> bool {
        match self {
            Item::Absent => false,
            Item::Raw(b) => b.first().is_some_and(|b| b >> 5 == 5),
            Item::Owned(v) => matches!(v, Value::Map(_)),
        }
    }

    fn type_name(&self) -> &'static str {
        match self {
            Item::Absent => "nothing",
            Item::Owned(v) => v.type_name(),
            Item::Raw(b) => match b.first().map(|b| (b >> 5, b & 0x1f)) {
                Some((0 | 1, _)) => "an integer",
                Some((2, _)) => "bytes",
                Some((3, _)) => "text",
                Some((4, _)) => "an array",
                Some((5, _)) => "a map",
                Some((7, 20 | 21)) => "a bool",
                Some((7, 22)) => "null",
                Some((7, 25..=27)) => "a float",
                _ => "a value",
            },
        }
    }

    /// The map this item is, for an edit below it (absent: a new map, as `set_path` makes).
    fn into_map(self, codec: &Codec) -> Result<Map<Value>, abi::Error> {
        match self {
            Item::Absent => Ok(Map::new()),
            Item::Raw(b) => match codec.decode_value(b)? {
                Value::Map(m) => Ok(m),
                _ => Err(abi::Error::Value("data")),
            },
            Item::Owned(Value::Map(m)) => Ok(m),
            Item::Owned(_) => Err(abi::Error::Value("data")),
        }
    }

    fn into_value(self, codec: &Codec) -> Option<Value> {
        match self {
            Item::Absent => None,
            Item::Raw(b) => codec.decode_value(b).ok(),
            Item::Owned(v) => Some(v),
        }
    }
}

/// `child` below `parent` (`a.b.c` below `a` is `b.c`), or `None`.
fn below<'p>(child: &'p str, parent: &str) -> Option<&'p str> {
    child.strip_prefix(parent)?.strip_prefix('.')
}

/// A text item's string, without copying it.
fn text_item(item: &[u8]) -> Option<&str> {
    let (&first, rest) = item.split_first()?;
    if first >> 5 != 3 {
        return None;
    }
    let skip = match first & 0x1f {
        0..=23 => 0,
        24 => 1,
        25 => 2,
        26 => 4,
        27 => 8,
        _ => return None,
    };
    std::str::from_utf8(rest.get(skip..)?).ok()
}

impl<'a> Msg<'a> {
    /// A message over its encoded bytes, read with the default [`Codec`].
    ///
    /// # Errors
    ///
    /// As [`MsgView::new`]: bytes that do not start with a map head.
    pub fn new(bytes: &'a [u8]) -> Result<Msg<'a>, fluxmsg::Error> {
        let codec = Codec::new();
        let view = MsgView::with_limits(bytes, codec.limits())?;
        Ok(Msg::from_view(view, codec))
    }

    /// A message over a view, whose values `codec` decodes and encodes.
    #[must_use]
    pub fn from_view(view: MsgView<'a>, codec: Codec) -> Msg<'a> {
        Msg {
            view,
            codec,
            edits: EditsWriter::from_buffer(SPARE.take()),
            data_edits: 0,
            problem: None,
        }
    }

    /// The message as it arrived, without the edits.
    #[must_use]
    pub fn view(&self) -> &MsgView<'a> {
        &self.view
    }

    /// The edits so far, encoded: the body of this message's
    /// [`Emit`](abi::RecordKind::Emit) record.
    #[must_use]
    pub fn edits(&self) -> &[u8] {
        self.edits.as_bytes()
    }

    /// The first edit that was refused, if any (see the type's docs).
    #[must_use]
    pub fn problem(&self) -> Option<&abi::Error> {
        self.problem.as_deref()
    }

    /// The whole message with the edits applied: the slow, general path (it decodes every
    /// field).
    ///
    /// # Errors
    ///
    /// The decoder's error for a malformed input message.
    pub fn to_msg(&self) -> Result<FluxMsg, abi::Error> {
        let mut msg = self.codec.decode(self.view.bytes())?;
        abi::apply_edits(&self.codec, &mut msg, self.edits.as_bytes())?;
        Ok(msg)
    }

    fn edits_iter(&self) -> impl Iterator<Item = Edit<'_>> {
        // Edits written by this type always read back; stop at the first that would not.
        EditsReader::new(self.edits.as_bytes()).map_while(Result::ok)
    }

    /// What `path` inside `data` holds with the edits applied, replaying them on that path
    /// only, as `apply_edits` would on the whole message.
    fn resolve(&self, path: &str) -> Result<Item<'_>, abi::Error> {
        if fluxmsg::check_path(path).is_err() {
            return Ok(Item::Absent);
        }
        let mut item = self.view.data_raw(path)?.map_or(Item::Absent, Item::Raw);
        if self.data_edits == 0 {
            return Ok(item);
        }
        for edit in self.edits_iter() {
            match edit {
                Edit::SetData { path: at, value } => {
                    if at == path {
                        item = Item::Raw(value);
                    } else if let Some(sub) = below(path, at) {
                        // The edit replaced a map above `path`: look inside its value.
                        item = match self.codec.decode_value(value)? {
                            Value::Map(m) => {
                                m.get_path(sub).cloned().map_or(Item::Absent, Item::Owned)
                            }
                            _ => Item::Absent,
                        };
                    } else if let Some(sub) = below(at, path) {
                        // The edit set something inside `path`, which is (or became) a map.
                        let mut map = item.into_map(&self.codec)?;
                        map.set_path(sub, self.codec.decode_value(value)?)?;
                        item = Item::Owned(Value::Map(map));
                    }
                }
                Edit::RemoveData { path: at } => {
                    if at == path || below(path, at).is_some() {
                        item = Item::Absent;
                    } else if let (Some(sub), true) = (below(at, path), item.is_map()) {
                        let mut map = item.into_map(&self.codec)?;
                        map.remove_path(sub);
                        item = Item::Owned(Value::Map(map));
                    }
                }
                _ => {}
            }
        }
        Ok(item)
    }

    /// The value at a dotted path inside `data` (`iso8583.field.4`), or `None` if any
    /// segment is missing or crosses a value that is not a map (as
    /// [`Map::get_path`](fluxmsg::Map::get_path)). Only that item is decoded.
    #[must_use]
    pub fn data(&self, path: &str) -> Option<Value> {
        self.resolve(path).ok()?.into_value(&self.codec)
    }

    /// The text at `path`, borrowed from the message when it can be.
    #[must_use]
    pub fn data_str(&self, path: &str) -> Option<Cow<'_, str>> {
        match self.resolve(path).ok()? {
            Item::Absent => None,
            Item::Raw(b) => text_item(b).map(Cow::Borrowed),
            Item::Owned(Value::Text(t)) => Some(Cow::Owned(t.into_string())),
            Item::Owned(_) => None,
        }
    }

    /// The integer at `path`, if it fits an `i64` ([`Value::as_i64`]).
    #[must_use]
    pub fn data_i64(&self, path: &str) -> Option<i64> {
        self.data(path)?.as_i64()
    }

    /// The integer at `path`, if it fits a `u64` ([`Value::as_u64`]).
    #[must_use]
    pub fn data_u64(&self, path: &str) -> Option<u64> {
        self.data(path)?.as_u64()
    }

    /// The float at `path` ([`Value::as_f64`]: floats only, not integers).
    #[must_use]
    pub fn data_f64(&self, path: &str) -> Option<f64> {
        self.data(path)?.as_f64()
    }

    /// The bool at `path`.
    #[must_use]
    pub fn data_bool(&self, path: &str) -> Option<bool> {
        self.data(path)?.as_bool()
    }

    /// The `meta` entry `key` (flat: dots are part of the key).
    #[must_use]
    pub fn meta(&self, key: &str) -> Option<&str> {
        let mut found = None;
        for edit in self.edits_iter() {
            match edit {
                Edit::SetMeta { key: k, value } if k == key => found = Some(Some(value)),
                Edit::RemoveMeta { key: k } if k == key => found = Some(None),
                _ => {}
            }
        }
        found.unwrap_or_else(|| self.view.meta(key).ok().flatten())
    }

    /// The last edit `pick` recognises, if any.
    fn last<T>(&self, pick: impl Fn(Edit<'_>) -> Option<T>) -> Option<T> {
        self.edits_iter().filter_map(pick).last()
    }

    /// The message id (`id`); the host gives one to messages without.
    #[must_use]
    pub fn id(&self) -> Option<Id> {
        self.view.id().ok().flatten()
    }

    /// The parent or correlation id (`ref_id`).
    #[must_use]
    pub fn ref_id(&self) -> Option<Id> {
        match self.last(|e| match e {
            Edit::SetRefId(v) => Some(abi::ref_id_of(v).ok().flatten()),
            _ => None,
        }) {
            Some(id) => id,
            None => self.view.ref_id().ok().flatten(),
        }
    }

    /// The id of the gear that created the message (`src_id`).
    #[must_use]
    pub fn src_id(&self) -> Option<Id> {
        self.view.src_id().ok().flatten()
    }

    /// The creation time in Unix nanoseconds (`ts`), 0 when absent.
    #[must_use]
    pub fn ts(&self) -> i64 {
        self.view.ts().unwrap_or(0)
    }

    /// The trace id (`trace`), empty when absent.
    #[must_use]
    pub fn trace(&self) -> &str {
        let edited = self.edits_iter().filter_map(|e| match e {
            Edit::SetTrace(t) => Some(t),
            _ => None,
        });
        match edited.last() {
            Some(t) => t,
            None => self.view.trace().unwrap_or(""),
        }
    }

    /// The flags (`flags`).
    #[must_use]
    pub fn flags(&self) -> u32 {
        self.last(|e| match e {
            Edit::SetFlags(f) => Some(f),
            _ => None,
        })
        .unwrap_or_else(|| self.view.flags().unwrap_or(0))
    }

    /// The original wire bytes (`raw`), empty when absent.
    #[must_use]
    pub fn raw(&self) -> &[u8] {
        let edited = self.edits_iter().filter_map(|e| match e {
            Edit::SetRaw(r) => Some(r),
            _ => None,
        });
        match edited.last() {
            Some(r) => r,
            None => self.view.raw().unwrap_or(&[]),
        }
    }

    fn refuse(&mut self, e: abi::Error) {
        if self.problem.is_none() {
            self.problem = Some(Arc::new(e));
        }
    }

    fn push(&mut self, edit: Edit<'_>) {
        if let Err(e) = self.edits.push(edit) {
            self.refuse(e);
        }
    }

    /// Checks that `data.<path>` can be set: no empty segment, and no prefix that holds a
    /// value that is not a map (`set_path`'s conflict, found before the host meets it).
    fn check_set(&self, path: &str) -> Result<(), abi::Error> {
        fluxmsg::check_path(path)?;
        abi::check_depth(&self.codec, path)?;
        for (end, _) in path.match_indices('.') {
            let item = self.resolve(&path[..end])?;
            if matches!(item, Item::Absent) {
                break;
            }
            if !item.is_map() {
                return Err(abi::Error::Msg(fluxmsg::Error::Path {
                    path: path.to_owned(),
                    kind: PathErrorKind::KeyConflict {
                        at: path[..end].to_owned(),
                        found: item.type_name(),
                    },
                }));
            }
        }
        Ok(())
    }

    /// Sets `data.<path>`, creating intermediate maps (as
    /// [`Map::set_path`](fluxmsg::Map::set_path)); refused (see the type's docs) for an
    /// empty segment, more segments than the codec's depth limit, a prefix that holds a value
    /// that is not a map, or a value the codec cannot encode.
    pub fn set_data(&mut self, path: &str, value: impl Into<Value>) {
        let value = value.into();
        let done = self
            .check_set(path)
            .and_then(|()| self.edits.set_data(&self.codec, path, &value));
        match done {
            Ok(()) => self.data_edits += 1,
            Err(e) => self.refuse(e),
        }
    }

    /// Removes `data.<path>` (intermediate maps stay); refused for an empty segment or more
    /// segments than the codec's depth limit.
    pub fn remove_data(&mut self, path: &str) {
        if let Err(e) = fluxmsg::check_path(path) {
            self.refuse(e.into());
            return;
        }
        if let Err(e) = abi::check_depth(&self.codec, path) {
            self.refuse(e);
            return;
        }
        match self.edits.push(Edit::RemoveData { path }) {
            Ok(()) => self.data_edits += 1,
            Err(e) => self.refuse(e),
        }
    }

    /// Sets `meta.<key>`.
    pub fn set_meta(&mut self, key: &str, value: &str) {
        self.push(Edit::SetMeta { key, value });
    }

    /// Removes `meta.<key>`.
    pub fn remove_meta(&mut self, key: &str) {
        self.push(Edit::RemoveMeta { key });
    }

    /// Replaces `raw`.
    pub fn set_raw(&mut self, raw: &[u8]) {
        self.push(Edit::SetRaw(raw));
    }

    /// Replaces `trace`.
    pub fn set_trace(&mut self, trace: &str) {
        self.push(Edit::SetTrace(trace));
    }

    /// Replaces `flags`.
    pub fn set_flags(&mut self, flags: u32) {
        self.push(Edit::SetFlags(flags));
    }

    /// Replaces `ref_id` (`None` removes it).
    pub fn set_ref_id(&mut self, id: Option<Id>) {
        let mut buf = [0; 16];
        let bytes: &[u8] = match id {
            None => &[],
            Some(Id::U64(n)) => {
                buf[..8].copy_from_slice(&n.to_le_bytes());
                &buf[..8]
            }
            Some(Id::Uuid(b)) => {
                buf = b;
                &buf
            }
        };
        self.push(Edit::SetRefId(bytes));
    }
}
