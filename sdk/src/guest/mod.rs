//! The guest side of wasm gears: write a gear in Rust, build it for
//! `wasm32-unknown-unknown`, and run it in a rack with the `wasm` gear.
//!
//! A guest crate is a `cdylib` that depends on this crate without its default features:
//!
//! ```toml
//! [lib]
//! crate-type = ["cdylib", "rlib"]   # rlib: native tests can call the gear
//!
//! [dependencies]
//! sdk = { version = "0.1", default-features = false, features = ["guest"] }
//! ```
//!
//! It implements [`Gear`] and names its type with [`guest_gear!`](crate::guest_gear), which
//! on `wasm32` exports what the host calls (`memory`, `alloc`, `free`, `process`,
//! `process_batch`; the only import is `env.log`, through [`log`]). Build it with
//!
//! ```text
//! cargo build --release --target wasm32-unknown-unknown
//! ```
//!
//! and point a `wasm` gear at `target/wasm32-unknown-unknown/release/<crate>.wasm`.
//!
//! # Example
//!
//! A risk check: large amounts go to port `review`, the others get a score and go on.
//! Natively the macro exports nothing, and [`run_batch`] (or [`simulate`]) runs the gear as
//! the host would:
//!
//! ```
//! use sdk::guest::{Gear, Msg, Out, log};
//!
//! #[derive(Default)]
//! struct Risk;
//!
//! impl Gear for Risk {
//!     fn process(&mut self, mut msg: Msg<'_>, out: &mut Out) {
//!         let amount = msg.data_i64("amount").unwrap_or(0);
//!         if amount > 100_000 {
//!             log::warn("large amount");
//!             out.emit("review", &msg);
//!         } else {
//!             msg.set_data("risk.score", 10u64);
//!             out.emit("out", &msg);
//!         }
//!     }
//! }
//!
//! sdk::guest_gear!(Risk);
//!
//! # use fluxmsg::FluxMsg;
//! # use sdk::guest::{Output, simulate};
//! let small = FluxMsg::builder().data("amount", 500u64).build();
//! let large = FluxMsg::builder().data("amount", 250_000u64).build();
//! let outputs = simulate(&mut Risk, &[small.clone(), large.clone()])?;
//! let mut scored = small;
//! scored.data.set_path("risk.score", 10u64)?;
//! assert_eq!(outputs, [
//!     Output::Emit { index: 0, port: "out".into(), msg: scored },
//!     Output::Emit { index: 1, port: "review".into(), msg: large },
//! ]);
//! assert_eq!(log::take(), [(sdk::abi::LOG_WARN, "large amount".to_owned())]);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # How it runs
//!
//! - The gear value lives as long as the module instance: it is created with `Default` on
//!   the first call and keeps its state (counters, caches) across calls and batches. The host
//!   replaces the instance, and so the state, after a fault.
//! - `process_batch` ([`run_batch`]) gets a batch of messages and calls [`Gear::process`]
//!   once per message, with a [`Msg`] that reads fields lazily from the message's CBOR and
//!   records edits, and an [`Out`] that collects what happens to it; the host applies the
//!   edits to its own copy, so no whole message is encoded or decoded on either side.
//! - `process` ([`run_single`]) is the reference entry point, for hosts that only have it.
//! - A panic aborts (`wasm32-unknown-unknown` builds with `panic = "abort"`): the host sees a
//!   trap, sends that message to `error` with reason `trap`, and starts a fresh instance.
//!   So does running out of memory.
//! - Messages are read and written with the default [`fluxmsg::Codec`] limits.

pub mod log;
mod msg;
mod out;

#[cfg(target_arch = "wasm32")]
#[doc(hidden)]
#[path = "export.rs"]
pub mod __export;

use fluxmsg::{Codec, FluxMsg, MsgView};

use crate::abi::{self, BatchReader, BatchWriter, OutputReader, RecordKind};

pub use self::msg::Msg;
pub use self::out::Out;

/// The port of the reference ABI's output, and the usual one.
pub const PORT_OUT: &str = "out";
/// Error reason of a batch item that is not a message (its CBOR does not start with a map).
pub const REASON_BAD_INPUT: &str = "bad_input";
/// Error reason of an emitted [`Msg`] with a refused edit ([`Msg::problem`]).
pub const REASON_BAD_EDIT: &str = "bad_edit";
/// Error reason of an output the ABI cannot carry (a name over 65,535 bytes, a new message
/// that does not encode).
pub const REASON_BAD_OUTPUT: &str = "bad_output";

/// Bytes of output [`run_batch`] makes room for per message: a record with a port name and
/// one short edit.
const RECORD_GUESS: usize = 48;

/// A gear that runs as a wasm guest.
///
/// One value lives for the whole module instance (see the [module docs](self)); the macro
/// [`guest_gear!`](crate::guest_gear) creates it with `Default` on first use.
pub trait Gear {
    /// Handles one input message: read it, edit it, and say through `out` where it goes
    /// (emit it on one or more ports, emit new messages, drop it, or fail it). A message
    /// without any record is dropped.
    fn process(&mut self, msg: Msg<'_>, out: &mut Out);
}

/// Runs `gear` on a `process_batch` input ([`abi::BatchReader`]) and returns the output
/// ([`abi::OutputWriter`]'s bytes): what the `process_batch` export does, callable natively.
///
/// An item that is not a message (its CBOR does not start with a map head) gets an `Error`
/// record with reason [`REASON_BAD_INPUT`]; so does the first item of a truncated batch,
/// after which the rest are not read (and count as dropped). An input too short for its
/// header gives no records.
#[must_use]
pub fn run_batch<G: Gear + ?Sized>(gear: &mut G, input: &[u8]) -> Vec<u8> {
    let codec = Codec::new();
    let Ok(batch) = BatchReader::new(input) else {
        return Out::new(codec, 0).finish();
    };
    // Room for one emit with a short edit per message, so that the output seldom moves.
    let room = (batch.remaining() as usize).min(input.len()) * RECORD_GUESS;
    let mut out = Out::new(codec.clone(), room);
    for (index, item) in (0u32..).zip(batch) {
        out.begin(index);
        match item {
            Ok(bytes) => match MsgView::with_limits(bytes, codec.limits()) {
                Ok(view) => gear.process(Msg::from_view(view, codec.clone()), &mut out),
                Err(e) => out.error(REASON_BAD_INPUT, &e.to_string()),
            },
            // After the last message: no index to answer for.
            Err(abi::Error::Trailing(_)) => break,
            Err(e) => {
                out.error(REASON_BAD_INPUT, &e.to_string());
                break;
            }
        }
    }
    out.finish()
}

/// Runs `gear` on one message for the reference entry point `process`, and returns the
/// whole CBOR message to send on [`PORT_OUT`]: the input with the edits of its first emit on
/// `out` applied, or the first new message emitted on `out`, whichever came first.
///
/// `None` (a length of 0 for the host: dropped) when nothing is emitted on `out`. The
/// reference ABI has one output and no errors, so emits on other ports, drop reasons and
/// error records (including [`REASON_BAD_EDIT`]) are lost: such a message is dropped. Use
/// `process_batch` for them.
#[must_use]
pub fn run_single<G: Gear + ?Sized>(gear: &mut G, input: &[u8]) -> Option<Vec<u8>> {
    let codec = Codec::new();
    let view = MsgView::with_limits(input, codec.limits()).ok()?;
    let mut out = Out::new(codec.clone(), RECORD_GUESS);
    out.begin(0);
    gear.process(Msg::from_view(view, codec.clone()), &mut out);
    let records = out.finish();
    for record in OutputReader::new(&records, 1).ok()? {
        let record = record.ok()?;
        if record.name != PORT_OUT {
            continue;
        }
        match record.kind {
            RecordKind::Emit => {
                let mut msg = codec.decode(input).ok()?;
                abi::apply_edits(&codec, &mut msg, record.body).ok()?;
                return codec.encode_to_vec(&msg).ok();
            }
            RecordKind::EmitNew => return Some(record.body.to_vec()),
            RecordKind::Drop | RecordKind::Error => {}
        }
    }
    None
}

/// What the host makes of one output record, as [`simulate`] gives it.
// A test helper: boxing the message would only make comparisons wordier.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq)]
pub enum Output {
    /// A message sent on `port`: the input with its edits applied, or a new message.
    Emit {
        /// The input message it answers.
        index: u32,
        /// The output port.
        port: String,
        /// The message.
        msg: FluxMsg,
    },
    /// The input message was dropped.
    Drop {
        /// The input message.
        index: u32,
        /// Why.
        reason: String,
    },
    /// The input message goes to `error`.
    Error {
        /// The input message.
        index: u32,
        /// `error.reason`.
        reason: String,
        /// `error.detail`.
        detail: String,
    },
}

/// Runs `gear` natively on `msgs` as the host would: one batch through [`run_batch`], each
/// record read back and each `Emit`'s edits applied to its input message. For tests of guest
/// gears.
///
/// # Errors
///
/// A message that does not encode, output that does not parse, or edits that do not apply
/// (all bugs, in the gear or in this crate).
pub fn simulate<G: Gear + ?Sized>(
    gear: &mut G,
    msgs: &[FluxMsg],
) -> Result<Vec<Output>, abi::Error> {
    let codec = Codec::new();
    let mut input = Vec::new();
    let mut batch = BatchWriter::new(&mut input);
    for msg in msgs {
        batch.push(|buf| codec.encode(msg, buf).map(drop))?;
    }
    let count = batch.count();
    batch.finish()?;
    let output = run_batch(gear, &input);
    let mut outputs = Vec::new();
    for record in OutputReader::new(&output, count)? {
        let record = record?;
        let index = record.index;
        outputs.push(match record.kind {
            RecordKind::Emit => {
                let mut msg = msgs[index as usize].clone();
                abi::apply_edits(&codec, &mut msg, record.body)?;
                Output::Emit {
                    index,
                    port: record.name.to_owned(),
                    msg,
                }
            }
            RecordKind::EmitNew => Output::Emit {
                index,
                port: record.name.to_owned(),
                msg: codec.decode(record.body)?,
            },
            RecordKind::Drop => Output::Drop {
                index,
                reason: record.name.to_owned(),
            },
            RecordKind::Error => Output::Error {
                index,
                reason: record.name.to_owned(),
                detail: String::from_utf8_lossy(record.body).into_owned(),
            },
        });
    }
    Ok(outputs)
}

/// Checks, natively, that a type named by [`guest_gear!`](crate::guest_gear) is a gear.
#[doc(hidden)]
pub fn __assert_gear<G: Gear + Default + 'static>() {}

/// Names the module's gear type (a [`Gear`] + `Default`) and, on `wasm32`, exports the
/// entry points the host calls: `alloc`, `free`, `process` and `process_batch` (the linker
/// exports `memory`).
///
/// Use it once per crate, at its root. Natively it exports nothing (an exported `free`
/// would clash with the C library's), so the crate also builds and tests natively.
#[macro_export]
macro_rules! guest_gear {
    ($gear:ty) => {
        #[cfg(target_arch = "wasm32")]
        const _: () = {
            ::std::thread_local! {
                static GEAR: $crate::guest::__export::Slot<$gear> =
                    const { ::core::cell::RefCell::new(::core::option::Option::None) };
            }

            #[allow(unsafe_code)]
            #[unsafe(no_mangle)]
            extern "C" fn alloc(len: i32) -> i32 {
                $crate::guest::__export::alloc(len)
            }

            // The host is the only caller of the exports below, and it keeps the ABI's
            // memory contract (`sdk::abi`): that is each call's safety.

            #[allow(unsafe_code)]
            #[unsafe(no_mangle)]
            extern "C" fn free(ptr: i32, len: i32) {
                // SAFETY: the host frees, once, a buffer it got from `alloc` or an output.
                unsafe { $crate::guest::__export::free(ptr, len) }
            }

            #[allow(unsafe_code)]
            #[unsafe(no_mangle)]
            extern "C" fn process(ptr: i32, len: i32) -> i64 {
                // SAFETY: the host passes a buffer from `alloc` that it keeps until the call
                // returns.
                unsafe { $crate::guest::__export::process(&GEAR, ptr, len) }
            }

            #[allow(unsafe_code)]
            #[unsafe(no_mangle)]
            extern "C" fn process_batch(ptr: i32, len: i32) -> i64 {
                // SAFETY: the host passes a buffer from `alloc` that it keeps until the call
                // returns.
                unsafe { $crate::guest::__export::process_batch(&GEAR, ptr, len) }
            }
        };
        #[cfg(not(target_arch = "wasm32"))]
        const _: fn() -> $gear = || {
            $crate::guest::__assert_gear::<$gear>();
            <$gear as ::core::default::Default>::default()
        };
    };
}
