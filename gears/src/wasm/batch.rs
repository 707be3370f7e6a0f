//! Calls into the guest: one message through the reference ABI, or a batch whose records
//! (emits with edits, new messages, drops, errors) are applied to the messages of the call.

use std::collections::HashSet;
use std::sync::{Mutex, OnceLock, PoisonError};

use fluxmsg::{Codec, FluxMsg};
use sdk::abi::{self, BatchWriter, OutputReader, Record, RecordKind};
use sdk::{GearError, OutPort, Outbox, Outcome};

use super::instance::{Fault, Guest};

/// What `init` sets up: the instance and the state of its calls.
#[derive(Debug)]
pub(super) struct Running {
    name: String,
    guest: Guest,
    /// The last attempt to recreate the instance failed; the next call tries again.
    broken: bool,
    /// Output ports by name, as the module names them.
    ports: Vec<(String, OutPort)>,
    /// Where the per-message entry point's output goes.
    out: OutPort,
    batch: bool,
    codec: Codec,
    input: Vec<u8>,
    /// The guest's answer to the last call.
    output: Vec<u8>,
    /// Messages of the current batch call, in order.
    pending: Vec<FluxMsg>,
    /// Per message of the call: records that still need its original.
    uses: Vec<u32>,
    /// Drop reasons this gear has seen, interned.
    reasons: Vec<&'static str>,
    /// Per message of the call: its records so far.
    records: Vec<u32>,
    max_records: u32,
}

/// Drop reasons a guest may give are counted by name; names beyond this many count as
/// `wasm_drop`, so that a module cannot grow the metrics without bound.
const MAX_DROP_REASONS: usize = 64;

fn drop_reason(reason: &str) -> &'static str {
    static REASONS: OnceLock<Mutex<HashSet<&'static str>>> = OnceLock::new();
    if reason.is_empty() || reason.len() > 64 {
        return "wasm_drop";
    }
    let mut set = REASONS
        .get_or_init(Mutex::default)
        .lock()
        .unwrap_or_else(PoisonError::into_inner);
    if let Some(known) = set.get(reason) {
        return known;
    }
    if set.len() >= MAX_DROP_REASONS {
        return "wasm_drop";
    }
    let leaked: &'static str = Box::leak(reason.to_owned().into_boxed_str());
    set.insert(leaked);
    leaked
}

impl Running {
    /// The running state of gear `name` over `guest`: output ports by the module's names,
    /// `out` for the per-message entry point.
    pub(super) fn new(
        name: &str,
        guest: Guest,
        ports: Vec<(String, OutPort)>,
        out: OutPort,
        max_records: u32,
    ) -> Running {
        Running {
            name: name.to_owned(),
            batch: guest.has_batch(),
            guest,
            broken: false,
            ports,
            out,
            codec: Codec::new(),
            input: Vec::new(),
            output: Vec::new(),
            pending: Vec::new(),
            uses: Vec::new(),
            reasons: Vec::new(),
            records: Vec::new(),
            max_records,
        }
    }

    /// Whether calls go through the batch entry point.
    pub(super) fn batch(&self) -> bool {
        self.batch
    }

    /// Runs `batch` through the batch entry point, at most `max` messages per call.
    pub(super) fn run_batches(
        &mut self,
        batch: &mut Vec<FluxMsg>,
        max: usize,
        out: &mut Outbox<'_>,
    ) {
        while !batch.is_empty() {
            let n = batch.len().min(max);
            self.pending.clear();
            self.pending.extend(batch.drain(..n));
            self.call_batch(out);
        }
    }

    /// `reason` interned, from the gear's own list first: the process-wide set is locked
    /// only for a reason this gear has not given before.
    fn drop_reason(&mut self, reason: &str) -> &'static str {
        if let Some(known) = self.reasons.iter().find(|r| **r == reason) {
            return known;
        }
        let interned = drop_reason(reason);
        if self.reasons.len() < MAX_DROP_REASONS {
            self.reasons.push(interned);
        }
        interned
    }

    /// After a fault: a fresh instance, or none if that fails too (then every message goes
    /// to `error` until a later attempt succeeds).
    fn recover(&mut self, fault: &Fault) {
        tracing::warn!(
            gear = %self.name,
            reason = fault.reason(),
            detail = %fault.detail(self.guest.limits()),
            "A wasm call failed; recreating the instance."
        );
        if let Err(e) = self.guest.reset() {
            tracing::error!(gear = %self.name, error = %e, "Could not recreate the wasm instance; the next call tries again.");
            self.broken = true;
        }
    }

    fn fault_error(&self, fault: &Fault) -> GearError {
        GearError::new(fault.reason()).with_detail(fault.detail(self.guest.limits()))
    }

    /// Calls the guest on `input` (the batch or the single entry point), its answer in
    /// `output`. The instance is recreated first if that failed after the last fault; if it
    /// fails again, that is an error for the messages of the call.
    fn call(&mut self, batch: bool) -> Result<Result<(), Fault>, GearError> {
        if self.broken {
            self.guest.reset().map_err(|e| {
                GearError::new("instance").with_detail(format_args!(
                    "the module cannot be instantiated again after a fault: {e}"
                ))
            })?;
            self.broken = false;
        }
        Ok(self.guest.call(batch, &self.input, &mut self.output))
    }

    /// The reference ABI: one message in, one (or none) out on `out`.
    pub(super) fn single(&mut self, msg: &mut FluxMsg) -> Result<Outcome, GearError> {
        self.input.clear();
        self.codec
            .encode(msg, &mut self.input)
            .map_err(|e| GearError::new("encode").with_detail(e))?;
        if let Err(fault) = self.call(false)? {
            let error = self.fault_error(&fault);
            self.recover(&fault);
            return Err(error);
        }
        if self.output.is_empty() {
            return Ok(Outcome::Drop("wasm_drop"));
        }
        *msg = self.codec.decode(&self.output).map_err(|e| {
            GearError::new("bad_output")
                .with_detail(format_args!("the module's output is not a fluxMsg: {e}"))
        })?;
        Ok(Outcome::Emit(self.out))
    }

    /// Encodes `pending` as a batch into `input`.
    fn encode_pending(&mut self) -> Result<(), GearError> {
        let mut writer = BatchWriter::new(&mut self.input);
        for msg in &self.pending {
            let codec = &self.codec;
            writer
                .push(|buf| codec.encode_envelope_first(msg, buf).map(drop))
                .map_err(|e| GearError::new("encode").with_detail(e))?;
        }
        writer
            .finish()
            .map(drop)
            .map_err(|e| GearError::new("encode").with_detail(e))
    }

    /// Sends `pending` on according to `output`; see [`Running::deliver`].
    fn deliver_output(&mut self, out: &mut Outbox<'_>) -> Result<(), abi::Error> {
        let output = std::mem::take(&mut self.output);
        let delivered = self.deliver(&output, out);
        self.output = output;
        delivered
    }

    /// Runs `pending` through the batch entry point; on a fault or malformed output, replays
    /// the messages one by one so that only the offender goes to `error`.
    fn call_batch(&mut self, out: &mut Outbox<'_>) {
        // A message that does not encode (rare) and a batch of one go one by one at once.
        if self.pending.len() > 1 && self.encode_pending().is_ok() {
            match self.call(true) {
                Ok(Ok(())) => match self.deliver_output(out) {
                    Ok(()) => return,
                    Err(e) => {
                        tracing::warn!(gear = %self.name, error = %e, "Malformed batch output; replaying the batch one message at a time.");
                        self.recover(&Fault::BadOutput(e.to_string()));
                    }
                },
                Ok(Err(fault)) => self.recover(&fault),
                Err(e) => {
                    for msg in self.pending.drain(..) {
                        out.error(msg, &e);
                    }
                    return;
                }
            }
        }
        self.one_by_one(out);
    }

    /// Each message of `pending` in a batch of its own; a failure sends that message to
    /// `error`.
    fn one_by_one(&mut self, out: &mut Outbox<'_>) {
        let all = std::mem::take(&mut self.pending);
        for msg in all {
            self.pending.clear();
            self.pending.push(msg);
            let failure = match self.encode_pending() {
                Ok(()) => match self.call(true) {
                    Ok(Ok(())) => match self.deliver_output(out) {
                        Ok(()) => continue,
                        Err(e) => {
                            let fault = Fault::BadOutput(format!("malformed batch output: {e}"));
                            self.recover(&fault);
                            self.fault_error(&fault)
                        }
                    },
                    Ok(Err(fault)) => {
                        let error = self.fault_error(&fault);
                        self.recover(&fault);
                        error
                    }
                    Err(e) => e,
                },
                Err(e) => e,
            };
            for msg in self.pending.drain(..) {
                out.error(msg, &failure);
            }
        }
    }

    /// Sends `pending` on according to the guest's records. Checks and decodes the whole
    /// output first: on an error nothing has moved and `pending` is intact.
    ///
    /// Each input message is counted once: emitted or sent to `error` by its emit and error
    /// records, or else dropped, with the reason of its first drop record or `wasm_drop`
    /// (new messages do not answer for their input).
    fn deliver(&mut self, output: &[u8], out: &mut Outbox<'_>) -> Result<(), abi::Error> {
        let n = self.pending.len();
        for v in [&mut self.uses, &mut self.records] {
            v.clear();
            v.resize(n, 0);
        }
        let count = u32::try_from(n).unwrap_or(u32::MAX);
        let mut records = Vec::new();
        let mut fresh = Vec::new();
        let mut drops: Vec<Option<&str>> = vec![None; n];
        if !output.is_empty() {
            for record in OutputReader::new(output, count)? {
                let record = record?;
                let i = record.index as usize;
                self.records[i] += 1;
                if self.records[i] > self.max_records {
                    return Err(abi::Error::TooManyRecords {
                        index: record.index,
                        max: self.max_records,
                    });
                }
                match record.kind {
                    RecordKind::Emit | RecordKind::Error => self.uses[i] += 1,
                    RecordKind::EmitNew => fresh.push(self.codec.decode(record.body)?),
                    RecordKind::Drop => {
                        drops[i].get_or_insert(record.name);
                    }
                }
                records.push(record);
            }
        }
        // Messages without an emit or error record: dropped.
        for (i, reason) in drops.into_iter().enumerate() {
            if self.uses[i] == 0 {
                out.drop(reason.map_or("wasm_drop", |r| self.drop_reason(r)));
            }
        }
        let mut fresh = fresh.into_iter();
        for record in records {
            let i = record.index as usize;
            match record.kind {
                RecordKind::Emit => {
                    let msg = self.original(i);
                    self.emit_edited(msg, &record, out);
                }
                RecordKind::EmitNew => {
                    if let Some(msg) = fresh.next() {
                        self.emit_on(record.name, msg, out);
                    }
                }
                RecordKind::Drop => {}
                RecordKind::Error => {
                    let msg = self.original(i);
                    let reason = if record.name.is_empty() {
                        "wasm_error".to_owned()
                    } else {
                        record.name.chars().take(64).collect()
                    };
                    let error =
                        GearError::new(reason).with_detail(String::from_utf8_lossy(record.body));
                    out.error(msg, &error);
                }
            }
        }
        self.pending.clear();
        Ok(())
    }

    /// The original of message `i` for a record that needs it: moved out for its last use,
    /// cloned before.
    fn original(&mut self, i: usize) -> FluxMsg {
        self.uses[i] = self.uses[i].saturating_sub(1);
        if self.uses[i] == 0 {
            std::mem::take(&mut self.pending[i])
        } else {
            self.pending[i].clone()
        }
    }

    /// Applies the record's edits; a message whose edits do not apply goes to `error` as the
    /// module left it (the edits before the bad one applied), like a native gear's `Err`.
    fn emit_edited(&self, mut msg: FluxMsg, record: &Record<'_>, out: &mut Outbox<'_>) {
        match abi::apply_edits(&self.codec, &mut msg, record.body) {
            Ok(()) => self.emit_on(record.name, msg, out),
            Err(e) => {
                out.error(
                    msg,
                    &GearError::new("bad_output")
                        .with_detail(format_args!("the module's edits do not apply: {e}")),
                );
            }
        }
    }

    fn emit_on(&self, port: &str, msg: FluxMsg, out: &mut Outbox<'_>) {
        match self.ports.iter().find(|(name, _)| name == port) {
            Some((_, to)) => out.emit(*to, msg),
            None => out.error(
                msg,
                &GearError::new("bad_port").with_detail(format_args!(
                    "the module emitted on {port:?}, which is not in the gear's ports"
                )),
            ),
        }
    }
}
