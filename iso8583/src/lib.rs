//! ISO 8583 for fluxrig: specs in the Spec Definition Language, pack and unpack, the
//! mapping to fluxMsg, and masking of card data.
//!
//! A [`Spec`] says how each field of a message is written (the wire layer, in moov-io's
//! vocabulary: `type`, `length`, `enc`, `prefix`, `padding`, `subfields`) and what it means
//! (the semantic layer: `name`, `alias`, `sensitivity`, per-MTI `usage`, value sets). Load
//! one from YAML with [`Spec::from_yaml`] or [`SpecLoader`], or take a built-in wire layer
//! with [`Spec::builtin`] (`moov:spec87ascii`, `moov:spec87hex`). Loading checks everything
//! at once and reports every problem with its path and `line:col`; a spec that fails never
//! runs.
//!
//! [`Spec::unpack`] reads bytes into a [`Message`], which owns its values in one buffer
//! (a handful of allocations whatever the number of fields, none with [`Spec::unpack_into`]
//! and a message kept across calls) and lends them out as [`FieldRef`]s; [`Spec::pack`]
//! writes one back. Unpacking then packing any valid message gives back the same bytes,
//! unknown BER-TLV tags and long-form lengths included, in their place.
//! [`Spec::unpack_borrowed`] reads into a [`MessageRef`] of slices of the input without
//! allocating, for hot paths that read a few fields. Untrusted input never panics, and what
//! the codec reserves follows the input's size (a copy of it, the values decoded from it,
//! an entry per element), never a length the input claims; errors name the field, subfield
//! and byte offset, and keep the fields read before them.
//!
//! [`Spec::to_fluxmsg`] and [`Spec::from_fluxmsg`] map messages to and from fluxMsg as the
//! reference's `codec_iso8583` gear does (`data.iso8583.field.<n>`, aliases,
//! `meta.iso8583.mti`, and what it takes to pack the same bytes again: unknown tags, their
//! order and length forms). [`Spec::render`], [`mask_value`] and [`mask_pans`] keep card data
//! out of logs.
//!
//! This crate has no async runtime and does no I/O: framing, connections and gears live in
//! `gears`.
//!
//! # Example
//!
//! ```
//! use iso8583::{Message, Spec};
//!
//! let spec = Spec::from_yaml(r#"
//! spec:
//!   id: demo-auth
//!   version: 1.0.0
//!   fields:
//!     2: {name: Primary Account Number, alias: card.pan, sensitivity: pan}
//!     4: {alias: amount.transaction}
//! wire:
//!   source: moov:spec87ascii
//! "#)?;
//!
//! let mut msg = Message::new("0100");
//! msg.set(2, "4111111111111111");
//! msg.set(3, "000000");
//! msg.set(4, "10000"); // padded on the left with zeros to 12 digits, as the spec says
//! let bytes = spec.pack_to_vec(&msg)?;
//! assert_eq!(&bytes[..4], b"0100");
//!
//! let back = spec.unpack(&bytes)?;
//! assert_eq!(back.text(4), Some("000000010000"));
//! assert_eq!(spec.pack_to_vec(&back)?, bytes);
//!
//! // For logs: the PAN masked by its sensitivity.
//! assert_eq!(spec.render(2, back.get(2).unwrap()), "411111******1111");
//!
//! // As fluxMsg: fields, aliases and metadata; amounts stay text.
//! let flux = spec.unpack_to_fluxmsg(&bytes)?;
//! assert_eq!(flux.data.get_path("card.pan").and_then(|v| v.as_str()), Some("4111111111111111"));
//! assert_eq!(flux.meta.get("iso8583.mti_class").map(|t| t.as_str()), Some("01"));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # Features
//!
//! None: the crate is the codec, whole.
//!
//! MSRV: the workspace's `rust-version`.
#![deny(missing_docs)]
#![doc(test(attr(deny(warnings))))]

mod builtin;
mod ebcdic;
mod error;
mod flux;
mod load;
mod mask;
mod message;
mod pack;
mod spec;
mod unpack;
mod validate;
mod wire;
mod yaml;

pub use crate::error::{
    MapError, PackError, PackErrorKind, Problem, SpecError, UnpackError, UnpackErrorKind,
};
pub use crate::load::SpecLoader;
pub use crate::mask::{REDACTED, luhn_check_digit, luhn_valid, mask_pans, mask_value};
pub use crate::message::{Field, FieldRef, Message, MessageRef, Subfield, SubfieldRef, Subfields};
pub use crate::spec::{
    Composite, Encoding, FieldPath, FieldSpec, FieldType, Layout, MAX_FIELD, PadSide, Padding,
    Prefix, PrefixKind, Semantic, Sensitivity, Spec, SubKey, UnknownTags, Usage,
};
pub use crate::validate::Violation;

#[cfg(test)]
mod tests;
