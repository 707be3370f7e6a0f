//! [`Out`]: where a guest gear says what happens to each input message.

use fluxmsg::{Codec, FluxMsg};

use crate::abi::{OutputWriter, Record, RecordKind};

use super::{Msg, REASON_BAD_EDIT, REASON_BAD_OUTPUT};

/// What a guest gear does with the current input message: the output records of
/// `process_batch` ([`abi::Record`](crate::abi::Record)) for that message.
///
/// A message may be emitted on several ports, emitted and joined by new messages, or
/// dropped or failed with a reason; one that gets no record at all is dropped (the host
/// counts it as `wasm_drop`). Records keep the order in which they are written. Nothing here
/// panics: a port or reason over 65,535 bytes, or a new message the codec cannot encode,
/// becomes an error record with reason [`REASON_BAD_OUTPUT`].
#[derive(Debug)]
pub struct Out {
    writer: OutputWriter,
    codec: Codec,
    index: u32,
    /// Whether the current message already went to `error` for a refused edit.
    bad_edit: bool,
    scratch: Vec<u8>,
}

impl Out {
    /// An empty output with room for `capacity` bytes of records.
    pub(crate) fn new(codec: Codec, capacity: usize) -> Out {
        Out {
            writer: OutputWriter::with_capacity(capacity),
            codec,
            index: 0,
            bad_edit: false,
            scratch: Vec::new(),
        }
    }

    /// Starts the records of input message `index`.
    pub(crate) fn begin(&mut self, index: u32) {
        self.index = index;
        self.bad_edit = false;
    }

    pub(crate) fn finish(self) -> Vec<u8> {
        self.writer.finish()
    }

    /// The index of the current input message in its batch (0 for the reference entry
    /// point).
    #[must_use]
    pub fn index(&self) -> u32 {
        self.index
    }

    /// Records written so far, for every message of the batch.
    #[must_use]
    pub fn count(&self) -> u32 {
        self.writer.count()
    }

    fn push(&mut self, kind: RecordKind, name: &str, body: &[u8]) {
        let record = Record {
            index: self.index,
            kind,
            name,
            body,
        };
        if let Err(e) = self.writer.push(record) {
            let detail = e.to_string();
            // A fixed name and a short body always fit.
            let _ = self.writer.push(Record {
                index: self.index,
                kind: RecordKind::Error,
                name: REASON_BAD_OUTPUT,
                body: detail.as_bytes(),
            });
        }
    }

    /// Sends the message, with its edits, on `port`. A message with a refused edit
    /// ([`Msg::problem`]) goes to `error` instead, with reason [`REASON_BAD_EDIT`] and the
    /// problem as detail (once, however many times it is emitted).
    pub fn emit(&mut self, port: &str, msg: &Msg<'_>) {
        if let Some(problem) = msg.problem() {
            if !self.bad_edit {
                self.bad_edit = true;
                let detail = problem.to_string();
                self.push(RecordKind::Error, REASON_BAD_EDIT, detail.as_bytes());
            }
            return;
        }
        self.push(RecordKind::Emit, port, msg.edits());
    }

    /// Sends a new message on `port`, as well as whatever happens to the input message (which
    /// a new message does not answer for: without an emit or an error of its own, the input
    /// counts as dropped).
    pub fn emit_new(&mut self, port: &str, msg: &FluxMsg) {
        let mut buf = std::mem::take(&mut self.scratch);
        buf.clear();
        match self.codec.encode(msg, &mut buf) {
            Ok(_) => self.push(RecordKind::EmitNew, port, &buf),
            Err(e) => {
                let detail = format!("the new message does not encode: {e}");
                self.push(RecordKind::Error, REASON_BAD_OUTPUT, detail.as_bytes());
            }
        }
        self.scratch = buf;
    }

    /// Drops the input message, counted by the host under `reason`.
    pub fn drop(&mut self, reason: &str) {
        self.push(RecordKind::Drop, reason, &[]);
    }

    /// Sends the input message (as it arrived) to `error`, with `reason` and `detail` in
    /// its `error.reason` and `error.detail` metadata.
    pub fn error(&mut self, reason: &str, detail: &str) {
        self.push(RecordKind::Error, reason, detail.as_bytes());
    }
}
