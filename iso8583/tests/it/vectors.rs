//! The wire vectors of `testdata/vectors.toml`, through unpack, the borrowed unpack and pack.

use iso8583::{FieldRef, Message, MessageRef, SubKey};

use crate::support::{hex, spec};

#[test]
fn vectors() {
    let doc: toml::Table =
        toml::from_str(include_str!("../../testdata/vectors.toml")).expect("toml");
    let cases = doc["case"].as_array().expect("cases");
    assert!(cases.len() >= 10);
    for case in cases {
        check(case.as_table().expect("a case"));
    }
}

fn expected_bytes(text: &str) -> Vec<u8> {
    match text.strip_prefix("hex:") {
        Some(h) => hex(h),
        None => text.as_bytes().to_vec(),
    }
}

fn lookup<'m>(msg: &'m Message, key: &str) -> Option<&'m [u8]> {
    let (n, sub) = match key.split_once('.') {
        Some((n, s)) => (n, Some(s)),
        None => (key, None),
    };
    let n: u16 = n.parse().ok()?;
    if n == 0 {
        return Some(msg.mti().as_bytes());
    }
    let field = msg.get(n)?;
    match sub {
        None => field.bytes(),
        Some(s) => {
            let tlv = field
                .subfields()?
                .iter()
                .any(|x| matches!(x.key, SubKey::Tag(_)));
            let key = SubKey::parse(s, tlv)?;
            field.subfield(key)
        }
    }
}

#[track_caller]
fn check(case: &toml::Table) {
    let name = case["name"].as_str().expect("name");
    let spec = spec(case["spec"].as_str().expect("spec"));
    let input = hex(case["hex"].as_str().expect("hex"));
    let mut borrowed = MessageRef::new();
    let borrowed_result = spec.unpack_borrowed(&input, &mut borrowed);
    match (case.get("fields"), case.get("error")) {
        (Some(fields), None) => {
            let msg = spec
                .unpack(&input)
                .unwrap_or_else(|e| panic!("{name}: {e}"));
            for (key, want) in fields.as_table().expect("fields") {
                let got = lookup(&msg, key).unwrap_or_else(|| panic!("{name}: no {key}"));
                assert_eq!(
                    got,
                    expected_bytes(want.as_str().expect("text")).as_slice(),
                    "{name}: field {key}"
                );
            }
            let packed = spec
                .pack_to_vec(&msg)
                .unwrap_or_else(|e| panic!("{name}: {e}"));
            assert_eq!(packed, input, "{name}: pack gives the same bytes back");
            borrowed_result.unwrap_or_else(|e| panic!("{name}: borrowed: {e}"));
            assert!(
                borrowed.numbers().eq(msg.numbers()),
                "{name}: the same fields borrowed"
            );
            for (key, want) in fields.as_table().expect("fields") {
                let Ok(n) = key.parse::<u16>() else { continue };
                if n == 0 {
                    continue;
                }
                let got = spec.value(&borrowed, n);
                let want = expected_bytes(want.as_str().expect("text"));
                assert_eq!(
                    got.as_deref(),
                    Some(want.as_slice()),
                    "{name}: borrowed {key}"
                );
            }
        }
        (None, Some(error)) => {
            let error = error.as_table().expect("error");
            let err = spec.unpack(&input).expect_err(name);
            let kind = format!("{:?}", err.kind);
            assert!(
                kind.starts_with(error["kind"].as_str().expect("kind")),
                "{name}: {err}"
            );
            let field = error.get("field").and_then(toml::Value::as_integer);
            assert_eq!(err.field.map(i64::from), field, "{name}: field of {err}");
            let sub = error.get("sub").and_then(toml::Value::as_str);
            assert_eq!(
                err.sub.map(|s| s.to_string()),
                sub.map(str::to_owned),
                "{name}: {err}"
            );
            let offset = error["offset"].as_integer().expect("offset");
            assert_eq!(err.offset as i64, offset, "{name}: offset of {err}");
            let partial = err.partial().expect("a partial message");
            assert!(
                partial.numbers().all(|n| err.field.is_none_or(|f| n < f)),
                "{name}"
            );
            let berr = borrowed_result.expect_err(name);
            assert_eq!(
                (berr.kind, berr.field, berr.offset),
                (err.kind, err.field, err.offset),
                "{name}"
            );
        }
        _ => panic!("{name}: a case has `fields` or `error`"),
    }
}

#[test]
fn partial_result_keeps_the_fields_before_the_error() {
    let spec = spec("moov:spec87ascii");
    let mut msg = Message::new("0100");
    msg.set(3, "000000");
    msg.set(11, "123456");
    msg.set(41, "TERM0001");
    let bytes = spec.pack_to_vec(&msg).expect("pack");
    let err = spec
        .unpack(&bytes[..bytes.len() - 3])
        .expect_err("truncated");
    assert_eq!(err.field, Some(41));
    let partial = err.partial().expect("partial");
    assert_eq!(partial.numbers().collect::<Vec<_>>(), [3, 11]);
    assert_eq!(partial.text(11), Some("123456"));
    assert!(matches!(partial.get(3), Some(FieldRef::Value(b"000000"))));
}
