//! Decisions: what a gear that chooses where a message goes (a router, a filter, a switch)
//! says about its choice, and how the engine keeps it in the message's path.

use fluxmsg::{FluxMsg, Limits, Text};

/// The metadata key a deciding gear writes its decision to: `flux.decision`.
///
/// A decision is a short text in the gear's own words, such as `rule 0 -> out_visa`,
/// `default -> out_other` or `rule 2 -> out_visa_b (failover: out_visa_a unavailable)`.
/// Write it with [`decide`] on the message the gear sends, before it sends it (an `Err` that
/// sends the message to `error` keeps it too, as with `no_route`).
///
/// The engine reads it when the message leaves the gear: it removes the entry from the
/// message's metadata and puts it in the [`Hop`](fluxmsg::Hop) it appends for that gear and
/// port ([`Hop::decision`](fluxmsg::Hop::decision), `d` on the wire), cut to
/// [`MAX_DECISION_LEN`] bytes ([`take_decision`] does both). So a decision belongs to one
/// hop and never travels on to the next gear, and a message's path across racks shows every
/// decision taken on the way. Each copy of a message sent to several targets carries it.
///
/// The `Harness` (feature `host`) appends no hops: a gear's tests find the decision in
/// the metadata of what the gear sent. A wasm guest writes the same key with
/// `Msg::set_meta` (feature `guest`).
pub const DECISION_META: &str = "flux.decision";

/// The most bytes of UTF-8 a decision keeps: the default
/// [`Limits::max_decision_len`] (128).
pub const MAX_DECISION_LEN: usize = Limits::DEFAULT.max_decision_len();

/// Writes `decision` to `msg`'s [`DECISION_META`] entry, replacing any earlier one, cut to
/// [`MAX_DECISION_LEN`] bytes at a character boundary.
///
/// A decision of up to 24 bytes is stored inline ([`Text`]): pass a `&'static str` or a
/// precomputed [`Text`] on a hot path, and `format!` only what must be composed per message.
///
/// ```
/// use fluxmsg::FluxMsg;
/// use sdk::{DECISION_META, decide, take_decision};
///
/// let mut msg = FluxMsg::new();
/// decide(&mut msg, "rule 0 -> out_visa");
/// assert_eq!(msg.meta.get(DECISION_META).map(|t| t.as_str()), Some("rule 0 -> out_visa"));
///
/// // What the engine does when the message leaves the gear.
/// let decision = take_decision(&mut msg);
/// assert_eq!(decision.as_deref(), Some("rule 0 -> out_visa"));
/// assert!(msg.meta.is_empty());
/// ```
pub fn decide(msg: &mut FluxMsg, decision: impl Into<Text>) {
    let mut decision = decision.into();
    decision.shorten(MAX_DECISION_LEN);
    msg.meta.insert(DECISION_META, decision);
}

/// Removes `msg`'s [`DECISION_META`] entry and returns it cut to [`MAX_DECISION_LEN`]
/// bytes at a character boundary (a gear may have written the entry without [`decide`]):
/// what the engine puts in the hop it appends ([`Hop::set_decision`](fluxmsg::Hop::set_decision)
/// cuts the same way). `None`, without touching the message, when there is no entry.
pub fn take_decision(msg: &mut FluxMsg) -> Option<Text> {
    let mut decision = msg.meta.remove(DECISION_META)?;
    decision.shorten(MAX_DECISION_LEN);
    Some(decision)
}
