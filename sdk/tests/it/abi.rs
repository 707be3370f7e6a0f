//! The wasm ABI's readers take bytes from the other side of the sandbox: whatever they are
//! given, they return items or typed errors and never panic, and what the writers write they
//! read back unchanged.

use fluxmsg::{Codec, FluxMsg, Value};
use proptest::collection::vec;
use proptest::prelude::*;
use sdk::abi::{
    self, BatchReader, BatchWriter, Edit, EditsReader, EditsWriter, OutputReader, OutputWriter,
    Record, RecordKind,
};

fn kind() -> impl Strategy<Value = RecordKind> {
    prop_oneof![
        Just(RecordKind::Emit),
        Just(RecordKind::EmitNew),
        Just(RecordKind::Drop),
        Just(RecordKind::Error),
    ]
}

/// Records as (index, kind, name, body), indexes below 8.
fn records() -> impl Strategy<Value = Vec<(u32, RecordKind, String, Vec<u8>)>> {
    vec(
        (0u32..8, kind(), "[a-z_]{0,12}", vec(any::<u8>(), 0..24)),
        0..6,
    )
}

fn output_of(records: &[(u32, RecordKind, String, Vec<u8>)]) -> Vec<u8> {
    let mut out = OutputWriter::new();
    for (index, kind, name, body) in records {
        out.push(Record {
            index: *index,
            kind: *kind,
            name,
            body,
        })
        .expect("short record");
    }
    out.finish()
}

/// A valid edit list with every op.
fn edits() -> impl Strategy<Value = Vec<u8>> {
    vec(
        (0u8..8, "[a-z]{1,6}(\\.[a-z]{1,6}){0,2}", any::<u32>()),
        0..6,
    )
    .prop_map(|ops| {
        let codec = Codec::new();
        let mut w = EditsWriter::new();
        for (op, name, n) in &ops {
            let done = match op {
                0 => w.set_data(&codec, name, &Value::from(u64::from(*n))),
                1 => w.push(Edit::RemoveData { path: name }),
                2 => w.set_meta(name, "v"),
                3 => w.push(Edit::RemoveMeta { key: name }),
                4 => w.push(Edit::SetRaw(&n.to_le_bytes())),
                5 => w.push(Edit::SetTrace(name)),
                6 => w.push(Edit::SetFlags(*n)),
                _ => w.push(Edit::SetRefId(&[7; 8])),
            };
            done.expect("short edit");
        }
        w.as_bytes().to_vec()
    })
}

/// Reads everything a buffer offers with every reader; each returns within a bounded number
/// of items and never panics.
fn read_everything(bytes: &[u8]) {
    if let Ok(batch) = BatchReader::new(bytes) {
        // One item per message, plus at most one error for trailing bytes.
        let announced = batch.remaining() as usize;
        assert!(batch.take(announced + 2).count() <= announced + 1);
    }
    for count in [0, 1, 8, u32::MAX] {
        if let Ok(output) = OutputReader::new(bytes, count) {
            // A record takes at least 11 bytes; an error ends the reading.
            let records: Vec<_> = output.take(bytes.len() + 2).collect();
            assert!(records.len() <= bytes.len() / 11 + 1);
            for r in records.iter().flatten() {
                assert!(r.index < count);
            }
        }
    }
    assert!(EditsReader::new(bytes).take(bytes.len() + 2).count() <= bytes.len());
    let mut msg = FluxMsg::new();
    let _ = abi::apply_edits(&Codec::new(), &mut msg, bytes);
}

proptest! {
    #[test]
    fn readers_survive_arbitrary_bytes(bytes in vec(any::<u8>(), 0..256)) {
        read_everything(&bytes);
    }

    #[test]
    fn readers_survive_mutated_outputs(
        recs in records(),
        at in any::<prop::sample::Index>(),
        byte in any::<u8>(),
        cut in any::<prop::sample::Index>(),
    ) {
        let mut bytes = output_of(&recs);
        let i = at.index(bytes.len());
        bytes[i] = byte;
        read_everything(&bytes);
        bytes.truncate(cut.index(bytes.len() + 1));
        read_everything(&bytes);
    }

    #[test]
    fn readers_survive_mutated_edits(
        edits in edits(),
        at in any::<prop::sample::Index>(),
        byte in any::<u8>(),
    ) {
        let mut bytes = edits;
        if !bytes.is_empty() {
            let i = at.index(bytes.len());
            bytes[i] = byte;
        }
        read_everything(&bytes);
    }

    #[test]
    fn outputs_read_back_as_written(recs in records()) {
        let bytes = output_of(&recs);
        let read: Vec<_> = OutputReader::new(&bytes, 8)
            .expect("header")
            .collect::<Result<_, _>>()
            .expect("records");
        prop_assert_eq!(read.len(), recs.len());
        for (r, (index, kind, name, body)) in read.iter().zip(&recs) {
            prop_assert_eq!(r.index, *index);
            prop_assert_eq!(r.kind, *kind);
            prop_assert_eq!(r.name, name.as_str());
            prop_assert_eq!(r.body, body.as_slice());
        }
    }

    #[test]
    fn batches_read_back_as_written(msgs in vec(vec(any::<u8>(), 0..40), 0..6)) {
        let mut buf = Vec::new();
        let mut w = BatchWriter::new(&mut buf);
        for m in &msgs {
            w.push(|b| {
                b.extend_from_slice(m);
                Ok::<(), ()>(())
            })
            .expect("infallible");
        }
        w.finish().expect("small batch");
        let read: Vec<&[u8]> = BatchReader::new(&buf)
            .expect("header")
            .collect::<Result<_, _>>()
            .expect("messages");
        prop_assert_eq!(read, msgs.iter().map(Vec::as_slice).collect::<Vec<_>>());
    }

    #[test]
    fn valid_edits_read_back_whole(edits in edits()) {
        prop_assert!(EditsReader::new(&edits).all(|e| e.is_ok()));
    }
}

#[test]
fn an_index_past_the_batch_is_an_error_not_a_record() {
    let bytes = output_of(&[(5, RecordKind::Drop, "late".into(), vec![])]);
    let mut read = OutputReader::new(&bytes, 5).expect("header");
    assert!(matches!(
        read.next(),
        Some(Err(abi::Error::Index { index: 5, count: 5 }))
    ));
    assert!(read.next().is_none());
}

#[test]
fn a_count_larger_than_the_records_is_truncation() {
    let mut bytes = output_of(&[(0, RecordKind::Drop, "x".into(), vec![])]);
    bytes[..4].copy_from_slice(&1_000_000u32.to_le_bytes());
    let read: Vec<_> = OutputReader::new(&bytes, 1).expect("header").collect();
    assert_eq!(read.len(), 2, "one record, then one error, then nothing");
    assert!(matches!(read[1], Err(abi::Error::Truncated { .. })));
}

/// A guest cannot make the host do unbounded work after its call: past `MAX_EDITS` edits for
/// one message, the message is refused (the edits before applied, as for any bad edit).
#[test]
fn edits_past_the_limit_are_refused() {
    let edits = |n: usize| {
        let mut w = EditsWriter::new();
        for i in 0..n {
            w.set_meta(&format!("k{i}"), "v").expect("an edit");
        }
        w.into_buffer()
    };
    let codec = Codec::new();
    let mut msg = FluxMsg::new();
    abi::apply_edits(&codec, &mut msg, &edits(abi::MAX_EDITS)).expect("the limit applies");
    assert_eq!(msg.meta.len(), abi::MAX_EDITS);
    let mut msg = FluxMsg::new();
    let err = abi::apply_edits(&codec, &mut msg, &edits(abi::MAX_EDITS + 1))
        .expect_err("one over the limit is refused");
    assert!(
        matches!(err, abi::Error::TooManyEdits { max } if max == abi::MAX_EDITS),
        "{err}"
    );
}
