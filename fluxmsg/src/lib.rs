//! fluxMsg, the one message envelope of fluxrig: its model, its CBOR codec and the
//! control-plane payloads that travel in it.
//!
//! A [`FluxMsg`] carries identity (`id`, `ref_id`, `trace`, `src_id`), routing headers
//! (`meta`), business fields (`data`, a tree of [`Value`]s addressed by dotted paths), the
//! original wire bytes (`raw`), an audit trail (`path`, a list of [`Hop`]s), `flags` and a
//! creation time (`ts`). On the wire it is a CBOR map with short text keys, compatible with
//! the Go fluxrig in both directions.
//!
//! Use this crate to build, inspect, encode and decode messages. It does no I/O and has no
//! async runtime; transports live in `snake`, processing in `sdk` and `gears`.
//! [`MsgView`] reads single fields of an encoded message without decoding the rest (what a
//! wasm guest does on its hot path).
//!
//! # Example
//!
//! ```
//! use fluxmsg::{Codec, FluxMsg, Hop, Id};
//!
//! let msg = FluxMsg::builder()
//!     .id(Id::U64(0x0123_4567_89ab))
//!     .ts(1_767_225_600_000_000_000)
//!     .meta("iso8583.mti", "0100")
//!     .data_path("iso8583.field.4", "000000010000")?
//!     .data_path("iso8583.field.11", "123456")?
//!     .raw(&b"\x02\x00\x30\x20"[..])
//!     .hop(Hop::new(Id::U64(5), Id::U64(6), 1_767_225_600_000_100_000))
//!     .hop(Hop::new(Id::U64(7), Id::U64(8), 1_767_225_600_000_200_000).with_decision("rule 0 -> out_visa"))
//!     .build();
//!
//! // One codec per runtime, with its own limits; one buffer, reused.
//! let codec = Codec::new();
//! let mut buf = Vec::with_capacity(256);
//! codec.encode(&msg, &mut buf)?;
//! let back = codec.decode(&buf)?;
//! assert_eq!(back, msg);
//!
//! // Equal messages give equal bytes.
//! assert_eq!(back.to_cbor()?, buf);
//! # Ok::<(), fluxmsg::Error>(())
//! ```
//!
//! # Wire format
//!
//! - Encoding is RFC 8949 core deterministic CBOR: shortest integer, length and float
//!   forms, definite lengths, map keys sorted (shorter first, then bytewise). Envelope
//!   fields at their default (no id, empty text, map, array or byte string, zero) are left
//!   out; the Go fluxrig reads a missing field as its zero value.
//! - Decoding accepts any key order, `null` or a missing key for any envelope field, ids as
//!   unsigned integers (Sonyflake, [`Id::U64`]) or 16-byte byte strings (the Go fluxrig's
//!   UUIDv7, [`Id::Uuid`], kept byte for byte), and non-shortest heads. It refuses
//!   indefinite lengths, tags, simple values other than `false`, `true` and `null`, map keys
//!   that are not text, duplicate keys, invalid UTF-8 and trailing bytes.
//! - Unknown top-level fields are kept in [`FluxMsg::extra`] and written back in canonical
//!   position, so gears forward them. Unknown fields inside a hop are skipped.
//! - A hop is `{g, p, t}`, plus `d` (text, at most [`Limits::max_decision_len`] bytes) when
//!   the gear recorded a decision ([`Hop::decision`]); a hop without one encodes as the Go
//!   fluxrig writes it, and the Go fluxrig skips `d`.
//! - A canonically encoded message decodes and re-encodes to identical bytes; any other
//!   valid message re-encodes to its canonical bytes.
//! - [`Codec::decode_shared`] decodes from [`bytes::Bytes`] without copying `raw` or any
//!   byte string in `data`.
//!
//! # serde
//!
//! [`FluxMsg`], [`Value`], [`Map`], [`Text`], [`Id`] and [`Hop`] implement serde's traits so
//! that `ciborium` writes exactly the bytes of [`Codec::encode`] and reads them back; the
//! codec itself does not go through serde, which is why it is several times faster.
//! Reading through serde is more lenient where the serde data model cannot tell the
//! difference: ciborium skips tags, and ids may also arrive as text (as human-readable
//! formats write them). The limits of [`Codec`] apply to the codec only.
//!
//! # Features
//!
//! | feature | adds |
//! | --- | --- |
//! | `json` | the module `json`: the lossless JSON view of a message, for people and HTTP APIs |
//!
//! MSRV: the workspace's `rust-version`.
#![cfg_attr(docsrs, feature(doc_cfg))]
#![doc(test(attr(deny(warnings))))]

mod codec;
mod decode;
mod encode;
mod error;
mod hex;
mod id;
#[cfg(feature = "json")]
pub mod json;
mod map;
mod msg;
pub mod pack;
mod path;
mod serde_impl;
pub mod system;
mod text;
mod utf8;
mod value;
mod view;

pub use crate::codec::{Codec, CodecBuilder, Limits, MAX_DEPTH_CEILING};
pub use crate::error::{DecodeErrorKind, Error, LimitExceeded, PathErrorKind};
pub use crate::id::Id;
pub use crate::map::{Iter as MapIter, Map};
pub use crate::msg::{FluxMsg, FluxMsgBuilder, Hop};
pub use crate::path::check_path;
pub use crate::serde_impl::{from_value, to_value};
pub use crate::text::Text;
pub use crate::value::{Integer, IntegerOutOfRange, Value};
pub use crate::view::MsgView;
pub use bytes;
