//! The guest SDK, run natively: records and edits as the host reads them, reads after writes
//! (checked against `apply_edits` on the whole message), the reference entry point.

use fluxmsg::{Codec, FluxMsg, Id, Map, PathErrorKind, Value};
use proptest::collection::{btree_map, vec};
use proptest::prelude::*;
use sdk::abi::{self, BatchWriter, OutputReader, Record, RecordKind};
use sdk::guest::{
    Gear, Msg, Out, Output, REASON_BAD_EDIT, REASON_BAD_INPUT, REASON_BAD_OUTPUT, log, run_batch,
    run_single, simulate,
};

/// A gear made of a closure.
struct Closure<F>(F);

impl<F: FnMut(Msg<'_>, &mut Out)> Gear for Closure<F> {
    fn process(&mut self, msg: Msg<'_>, out: &mut Out) {
        (self.0)(msg, out);
    }
}

fn payment(n: u64) -> FluxMsg {
    FluxMsg::builder()
        .id(Id::U64(1000 + n))
        .ts(1_767_225_600_000_000_000)
        .meta("iso8583.mti", "0100")
        .data_path("iso8583.field.4", format!("{:012}", n * 1000))
        .and_then(|b| b.data_path("iso8583.field.11", format!("{n:06}")))
        .expect("paths")
        .raw(&b"\x02\x00"[..])
        .build()
}

fn batch(msgs: &[FluxMsg]) -> Vec<u8> {
    let mut buf = Vec::new();
    let mut batch = BatchWriter::new(&mut buf);
    for m in msgs {
        batch
            .push(|b| Codec::new().encode(m, b).map(drop))
            .expect("encode");
    }
    batch.finish().expect("batch");
    buf
}

fn records(output: &[u8], count: u32) -> Vec<Record<'_>> {
    OutputReader::new(output, count)
        .expect("header")
        .collect::<Result<_, _>>()
        .expect("records")
}

fn edited(mut msg: FluxMsg, edits: &[u8]) -> FluxMsg {
    abi::apply_edits(&Codec::new(), &mut msg, edits).expect("edits apply");
    msg
}

#[test]
fn edits_land_on_the_right_message() {
    let msgs: Vec<_> = (0..4).map(payment).collect();
    let mut gear = Closure(|mut msg: Msg<'_>, out: &mut Out| {
        let stan = msg.data_str("iso8583.field.11").map(|s| s.into_owned());
        msg.set_data("stan", stan.unwrap_or_default());
        msg.set_data("index", u64::from(out.index()));
        out.emit("out", &msg);
    });
    let output = run_batch(&mut gear, &batch(&msgs));
    let recs = records(&output, 4);
    assert_eq!(recs.len(), 4);
    for (i, rec) in recs.iter().enumerate() {
        assert_eq!(
            (rec.index as usize, rec.kind, rec.name),
            (i, RecordKind::Emit, "out")
        );
        let mut want = msgs[i].clone();
        want.data.insert("stan", Value::from(format!("{i:06}")));
        want.data.insert("index", Value::from(i as u64));
        assert_eq!(edited(msgs[i].clone(), rec.body), want);
    }
}

#[test]
fn reads_see_the_writes_before_them() {
    let mut gear = Closure(|mut msg: Msg<'_>, out: &mut Out| {
        assert_eq!(
            msg.data_str("iso8583.field.4").as_deref(),
            Some("000000002000")
        );
        msg.set_data("iso8583.field.4", 5u64);
        assert_eq!(msg.data_u64("iso8583.field.4"), Some(5));
        assert_eq!(msg.data_str("iso8583.field.4"), None);
        // A write below a read path, and above one.
        msg.set_data("risk.score", 10u64);
        msg.set_data("risk.level", "low");
        let mut risk = Map::new();
        risk.insert("score", Value::from(10u64));
        risk.insert("level", Value::from("low"));
        assert_eq!(msg.data("risk"), Some(Value::Map(risk)));
        msg.set_data(
            "iso8583",
            Value::Map(Map::from_iter([("mti", Value::from("0110"))])),
        );
        assert_eq!(msg.data_str("iso8583.mti").as_deref(), Some("0110"));
        assert_eq!(msg.data("iso8583.field.11"), None);
        msg.remove_data("risk.score");
        assert_eq!(msg.data("risk.score"), None);
        assert_eq!(msg.data_str("risk.level").as_deref(), Some("low"));
        // The envelope.
        assert_eq!(msg.meta("iso8583.mti"), Some("0100"));
        msg.set_meta("iso8583.mti", "0110");
        msg.set_meta("route", "fast");
        msg.remove_meta("route");
        assert_eq!(
            (msg.meta("iso8583.mti"), msg.meta("route")),
            (Some("0110"), None)
        );
        assert_eq!(msg.raw(), b"\x02\x00");
        msg.set_raw(b"\x03");
        msg.set_trace("abc");
        msg.set_flags(7);
        msg.set_ref_id(Some(Id::Uuid([9; 16])));
        assert_eq!(msg.raw(), b"\x03");
        assert_eq!((msg.trace(), msg.flags()), ("abc", 7));
        assert_eq!(msg.ref_id(), Some(Id::Uuid([9; 16])));
        msg.set_ref_id(Some(Id::U64(3)));
        assert_eq!(msg.ref_id(), Some(Id::U64(3)));
        assert_eq!(msg.id(), Some(Id::U64(1002)));
        assert_eq!(msg.ts(), 1_767_225_600_000_000_000);
        assert!(msg.problem().is_none());
        out.emit("out", &msg);
    });
    let outputs = simulate(&mut gear, &[payment(2)]).expect("simulated");
    let mut want = payment(2);
    want.data
        .set_path(
            "iso8583",
            Value::Map(Map::from_iter([("mti", Value::from("0110"))])),
        )
        .expect("path");
    want.data.set_path("risk.level", "low").expect("path");
    want.meta.insert("iso8583.mti", "0110".into());
    want.raw = b"\x03"[..].into();
    want.trace = "abc".into();
    want.flags = 7;
    want.ref_id = Some(Id::U64(3));
    assert_eq!(
        outputs,
        [Output::Emit {
            index: 0,
            port: "out".into(),
            msg: want
        }]
    );
}

#[test]
fn one_message_goes_to_several_ports_with_its_own_edits() {
    let mut gear = Closure(|mut msg: Msg<'_>, out: &mut Out| {
        let mut audit = msg.clone();
        audit.set_meta("audited", "yes");
        msg.set_data("checked", true);
        out.emit("out", &msg);
        out.emit("audit", &audit);
        out.emit_new("new", &FluxMsg::builder().data("created", true).build());
    });
    let outputs = simulate(&mut gear, &[payment(1)]).expect("simulated");
    let mut out = payment(1);
    out.data.insert("checked", Value::Bool(true));
    let mut audit = payment(1);
    audit.meta.insert("audited", "yes".into());
    assert_eq!(
        outputs,
        [
            Output::Emit {
                index: 0,
                port: "out".into(),
                msg: out
            },
            Output::Emit {
                index: 0,
                port: "audit".into(),
                msg: audit
            },
            Output::Emit {
                index: 0,
                port: "new".into(),
                msg: FluxMsg::builder().data("created", true).build()
            },
        ]
    );
}

#[test]
fn drops_errors_and_silence() {
    let mut gear = Closure(|msg: Msg<'_>, out: &mut Out| match out.index() {
        0 => out.drop("not_mine"),
        1 => out.error("too_big", "amount over the limit"),
        2 => {}
        _ => out.emit("out", &msg),
    });
    let msgs: Vec<_> = (0..4).map(payment).collect();
    let output = run_batch(&mut gear, &batch(&msgs));
    let recs = records(&output, 4);
    let summary: Vec<_> = recs
        .iter()
        .map(|r| (r.index, r.kind, r.name, r.body))
        .collect();
    assert_eq!(
        summary,
        [
            (0, RecordKind::Drop, "not_mine", &b""[..]),
            (
                1,
                RecordKind::Error,
                "too_big",
                &b"amount over the limit"[..]
            ),
            (3, RecordKind::Emit, "out", &b""[..]),
        ]
    );
}

#[test]
fn a_refused_edit_sends_the_message_to_error_once() {
    let mut gear = Closure(|mut msg: Msg<'_>, out: &mut Out| {
        match out.index() {
            0 => msg.set_data("a..b", 1u8),
            1 => msg.set_data("iso8583.field.4.x", 1u8),
            2 => msg.remove_data(""),
            3 => msg.set_data(&["a"; 33].join("."), 1u8),
            _ => {
                // Deeper than the codec's 32 levels.
                let mut v = Value::from(0u8);
                for _ in 0..40 {
                    v = Value::Array(vec![v]);
                }
                msg.set_data("deep", v);
            }
        }
        // The refused edit changed nothing; later edits still read back.
        msg.set_data("after", true);
        assert_eq!(msg.data_bool("after"), Some(true));
        out.emit("out", &msg);
        out.emit("audit", &msg);
    });
    let msgs: Vec<_> = (0..5).map(payment).collect();
    let outputs = simulate(&mut gear, &msgs).expect("simulated");
    assert_eq!(outputs.len(), 5, "one error per message: {outputs:?}");
    for (i, o) in outputs.iter().enumerate() {
        let Output::Error {
            index,
            reason,
            detail,
        } = o
        else {
            panic!("not an error: {o:?}");
        };
        assert_eq!((*index as usize, reason.as_str()), (i, REASON_BAD_EDIT));
        let want = [
            "empty path segment",
            "key conflict",
            "empty path segment",
            "33 segments, deeper than the limit of 32",
            "32 levels",
        ][i];
        assert!(detail.contains(want), "{detail}");
    }
    // The problem is there to look at before emitting.
    let bytes = payment(0).to_cbor().expect("encode");
    let mut msg = Msg::new(&bytes).expect("msg");
    msg.set_data("iso8583.field.4.x", 1u8);
    let Some(abi::Error::Msg(fluxmsg::Error::Path { path, kind })) = msg.problem() else {
        panic!("{:?}", msg.problem());
    };
    assert_eq!(path, "iso8583.field.4.x");
    assert_eq!(
        kind,
        &PathErrorKind::KeyConflict {
            at: "iso8583.field.4".into(),
            found: "text"
        }
    );
}

#[test]
fn bad_input_and_bad_output_are_error_records() {
    let long = "p".repeat(70_000);
    let mut gear = Closure(|msg: Msg<'_>, out: &mut Out| {
        let mut bad = FluxMsg::new();
        bad.extra.insert("data", Value::Null);
        out.emit_new("out", &bad);
        out.emit(&long, &msg);
    });
    // Item 0 is not a map; item 1 is a message.
    let mut input = Vec::new();
    let mut b = BatchWriter::new(&mut input);
    b.push(|buf| {
        buf.push(0x80);
        Ok::<_, std::convert::Infallible>(())
    })
    .expect("push");
    b.push(|buf| Codec::new().encode(&payment(1), buf).map(drop))
        .expect("push");
    b.finish().expect("finish");
    let output = run_batch(&mut gear, &input);
    let recs = records(&output, 2);
    let summary: Vec<_> = recs.iter().map(|r| (r.index, r.kind, r.name)).collect();
    assert_eq!(
        summary,
        [
            (0, RecordKind::Error, REASON_BAD_INPUT),
            (1, RecordKind::Error, REASON_BAD_OUTPUT),
            (1, RecordKind::Error, REASON_BAD_OUTPUT),
        ]
    );
    // A truncated batch: the first missing item is answered, the header count is kept.
    let mut cut = batch(&[payment(1), payment(2)]);
    cut.truncate(cut.len() - 3);
    let mut pass = Closure(|msg: Msg<'_>, out: &mut Out| out.emit("out", &msg));
    let output = run_batch(&mut pass, &cut);
    let summary: Vec<_> = records(&output, 2)
        .iter()
        .map(|r| (r.index, r.kind, r.name))
        .collect();
    assert_eq!(
        summary,
        [
            (0, RecordKind::Emit, "out"),
            (1, RecordKind::Error, REASON_BAD_INPUT)
        ]
    );
    // Too short for a header: no records.
    assert_eq!(run_batch(&mut pass, b"\x01"), [0, 0, 0, 0]);
    // Bytes after the last message are ignored.
    let mut extra = batch(&[payment(1)]);
    extra.push(0);
    assert_eq!(records(&run_batch(&mut pass, &extra), 1).len(), 1);
}

#[test]
fn the_reference_entry_point_returns_the_whole_message() {
    let input = payment(3).to_cbor().expect("encode");
    let mut gear = Closure(
        |mut msg: Msg<'_>, out: &mut Out| match msg.meta("test.action") {
            Some("audit") => out.emit("audit", &msg),
            Some("new") => {
                out.emit("audit", &msg);
                out.emit_new("out", &FluxMsg::builder().ts(5).build());
                out.emit("out", &msg);
            }
            Some("drop") => out.drop("no"),
            Some("bad") => {
                msg.set_data("a..b", 1u8);
                out.emit("out", &msg);
            }
            _ => {
                msg.set_data("checked", true);
                out.emit("out", &msg);
            }
        },
    );
    let got = run_single(&mut gear, &input).expect("an output");
    let mut want = payment(3);
    want.data.insert("checked", Value::Bool(true));
    assert_eq!(got, want.to_cbor().expect("encode"));

    let with = |action: &str| {
        let mut m = payment(3);
        m.meta.insert("test.action", action.into());
        m.to_cbor().expect("encode")
    };
    assert_eq!(run_single(&mut gear, &with("audit")), None);
    assert_eq!(run_single(&mut gear, &with("drop")), None);
    assert_eq!(run_single(&mut gear, &with("bad")), None);
    assert_eq!(
        run_single(&mut gear, &with("new")),
        Some(FluxMsg::builder().ts(5).build().to_cbor().expect("encode"))
    );
    assert_eq!(run_single(&mut gear, b"\x80"), None);
}

#[test]
fn logs_are_kept_natively() {
    let _ = log::take();
    let mut gear = Closure(|msg: Msg<'_>, out: &mut Out| {
        log::debug("d");
        log::info("i");
        log::warn("w");
        log::error("e");
        out.emit("out", &msg);
    });
    simulate(&mut gear, &[payment(1)]).expect("simulated");
    let levels = [abi::LOG_DEBUG, abi::LOG_INFO, abi::LOG_WARN, abi::LOG_ERROR];
    let want: Vec<_> = levels
        .into_iter()
        .zip(["d", "i", "w", "e"])
        .map(|(l, s)| (l, s.to_owned()))
        .collect();
    assert_eq!(log::take(), want);
    assert!(log::take().is_empty());
}

/// Paths over a small alphabet, so that edits overlap reads in every way.
const KEYS: [&str; 3] = ["a", "b", "c"];

fn all_paths() -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for a in KEYS {
        out.push(a.to_owned());
        for b in KEYS {
            out.push(format!("{a}.{b}"));
            for c in KEYS {
                out.push(format!("{a}.{b}.{c}"));
            }
        }
    }
    out
}

fn path() -> impl Strategy<Value = String> {
    prop_oneof![
        20 => proptest::sample::select(all_paths()),
        1 => proptest::sample::select(vec!["", "a..b", ".a", "b."]).prop_map(str::to_owned),
    ]
}

fn value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        "[a-z]{0,30}".prop_map(Value::from),
        any::<f64>().prop_map(Value::Float),
    ];
    leaf.prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            vec(inner.clone(), 0..3).prop_map(Value::Array),
            btree_map(proptest::sample::select(KEYS.to_vec()), inner, 0..4)
                .prop_map(|m| Value::Map(m.into_iter().collect())),
        ]
    })
}

fn id() -> impl Strategy<Value = Option<Id>> {
    prop_oneof![
        Just(None),
        any::<u64>().prop_map(|n| Some(Id::U64(n))),
        any::<[u8; 16]>().prop_map(|b| Some(Id::Uuid(b))),
    ]
}

fn message() -> impl Strategy<Value = FluxMsg> {
    (
        btree_map(proptest::sample::select(KEYS.to_vec()), value(), 0..4),
        btree_map(
            proptest::sample::select(vec!["k", "x.y"]),
            "[a-z]{0,5}",
            0..3,
        ),
        id(),
        vec(any::<u8>(), 0..4),
    )
        .prop_map(|(data, meta, ref_id, raw)| FluxMsg {
            id: Some(Id::U64(1)),
            data: data.into_iter().collect(),
            meta: meta.into_iter().map(|(k, v)| (k, v.into())).collect(),
            ref_id,
            raw: raw.into(),
            ..FluxMsg::default()
        })
}

#[derive(Debug, Clone)]
enum Op {
    Set(String, Value),
    Remove(String),
    SetMeta(&'static str, String),
    RemoveMeta(&'static str),
    Raw(Vec<u8>),
    Trace(String),
    Flags(u32),
    RefId(Option<Id>),
}

fn op() -> impl Strategy<Value = Op> {
    let meta_key = proptest::sample::select(vec!["k", "x.y", "z"]);
    prop_oneof![
        6 => (path(), value()).prop_map(|(p, v)| Op::Set(p, v)),
        3 => path().prop_map(Op::Remove),
        1 => (meta_key.clone(), "[a-z]{0,5}").prop_map(|(k, v)| Op::SetMeta(k, v)),
        1 => meta_key.prop_map(Op::RemoveMeta),
        1 => vec(any::<u8>(), 0..4).prop_map(Op::Raw),
        1 => "[0-9a-f]{0,8}".prop_map(Op::Trace),
        1 => any::<u32>().prop_map(Op::Flags),
        1 => id().prop_map(Op::RefId),
    ]
}

/// Applies `op` to the message and to the model; a write the model refuses must be refused
/// by the message (with the model's error when it is the first), and leave both unchanged.
fn apply(msg: &mut Msg<'_>, model: &mut FluxMsg, op: &Op) {
    let had = msg.problem().is_some();
    let refused = match op.clone() {
        Op::Set(p, v) => {
            msg.set_data(&p, v.clone());
            model.data.set_path(&p, v).err()
        }
        Op::Remove(p) => {
            msg.remove_data(&p);
            model.data.remove_path(&p);
            let empty = p.is_empty() || p.starts_with('.') || p.ends_with('.') || p.contains("..");
            empty.then_some(fluxmsg::Error::Path {
                path: p,
                kind: PathErrorKind::EmptySegment,
            })
        }
        Op::SetMeta(k, v) => {
            msg.set_meta(k, &v);
            model.meta.insert(k, v.into());
            None
        }
        Op::RemoveMeta(k) => {
            msg.remove_meta(k);
            model.meta.remove(k);
            None
        }
        Op::Raw(r) => {
            msg.set_raw(&r);
            model.raw = r.into();
            None
        }
        Op::Trace(t) => {
            msg.set_trace(&t);
            model.trace = t;
            None
        }
        Op::Flags(f) => {
            msg.set_flags(f);
            model.flags = f;
            None
        }
        Op::RefId(id) => {
            msg.set_ref_id(id);
            model.ref_id = id;
            None
        }
    };
    match refused {
        Some(e) if !had => match msg.problem() {
            Some(abi::Error::Msg(got)) => assert_eq!(got, &e, "{op:?}"),
            other => panic!("{op:?}: expected {e}, got {other:?}"),
        },
        Some(_) => assert!(msg.problem().is_some()),
        None => assert_eq!(msg.problem().is_some(), had, "{op:?} refused"),
    }
}

/// Asserts that every reader of `msg` gives what `model` holds.
fn assert_reads(msg: &Msg<'_>, model: &FluxMsg) {
    for p in all_paths()
        .iter()
        .map(String::as_str)
        .chain(["", "a..b", "d"])
    {
        let want = model.data.get_path(p);
        assert_eq!(msg.data(p).as_ref(), want, "data({p:?})");
        assert_eq!(
            msg.data_str(p).as_deref(),
            want.and_then(Value::as_str),
            "data_str({p:?})"
        );
        assert_eq!(msg.data_i64(p), want.and_then(Value::as_i64));
        assert_eq!(msg.data_bool(p), want.and_then(Value::as_bool));
    }
    for k in ["k", "x.y", "z"] {
        assert_eq!(
            msg.meta(k),
            model.meta.get(k).map(|t| t.as_str()),
            "meta({k:?})"
        );
    }
    assert_eq!(msg.raw(), &model.raw[..]);
    assert_eq!(msg.trace(), model.trace);
    assert_eq!(msg.flags(), model.flags);
    assert_eq!(msg.ref_id(), model.ref_id);
    assert_eq!(msg.id(), model.id);
}

proptest! {
    #[test]
    fn reads_after_writes_agree_with_apply_edits(
        original in message(),
        ops in vec(op(), 0..12),
    ) {
        let bytes = original.to_cbor().expect("encode");
        let mut msg = Msg::new(&bytes).expect("msg");
        let mut model = original.clone();
        assert_reads(&msg, &model);
        for op in &ops {
            apply(&mut msg, &mut model, op);
            assert_reads(&msg, &model);
        }
        // The whole message, and what the host makes of the emitted edits.
        prop_assert_eq!(msg.to_msg().expect("decodes"), model.clone());
        let problem = msg.problem().is_some();
        let mut gear = Closure(|mut m: Msg<'_>, out: &mut Out| {
            let mut shadow = original.clone();
            for op in &ops {
                apply(&mut m, &mut shadow, op);
            }
            out.emit("out", &m);
        });
        let outputs = simulate(&mut gear, std::slice::from_ref(&original)).expect("simulated");
        match &outputs[..] {
            [Output::Emit { msg: got, .. }] if !problem => prop_assert_eq!(got, &model),
            [Output::Error { reason, .. }] if problem => prop_assert_eq!(reason, REASON_BAD_EDIT),
            other => prop_assert!(false, "problem: {problem}, outputs: {other:?}"),
        }
    }
}
