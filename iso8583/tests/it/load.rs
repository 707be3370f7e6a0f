//! Loading specs: every problem at once, each with its path and `line:col`.

use iso8583::{Encoding, Layout, PrefixKind, Sensitivity, Spec, SpecLoader, Usage};

use crate::support::spec;

/// Loads `text` and checks that exactly the problems `want` are reported, each as
/// `line:col: path: message` (a substring of the message).
#[track_caller]
fn check_problems(text: &str, want: &[(&str, &str, &str)]) {
    let err = Spec::from_yaml(text).expect_err("the spec must fail");
    let got: Vec<String> = err.problems.iter().map(ToString::to_string).collect();
    assert_eq!(err.problems.len(), want.len(), "{got:#?}");
    for ((at, path, message), p) in want.iter().zip(&err.problems) {
        assert_eq!(format!("{}:{}", p.line, p.col), *at, "{got:#?}");
        assert_eq!(p.path, *path, "{got:#?}");
        assert!(p.message.contains(message), "{got:#?}");
    }
}

#[test]
fn test_specs_load() {
    let ascii = spec("ascii");
    assert_eq!(
        (ascii.id(), ascii.version(), ascii.name()),
        ("test-ascii", "1.0.0", "Test ASCII")
    );
    assert_eq!(ascii.hash().len(), 12);
    let de55 = ascii.field(55).expect("55");
    assert_eq!(de55.composite().expect("tlv").layout(), Layout::Tlv);
    assert_eq!(de55.semantic().sensitivity(), Sensitivity::Chd);
    assert_eq!(
        ascii.field(2).expect("2").semantic().usage("0100"),
        Usage::Mandatory
    );
    assert_eq!(
        ascii.field(2).expect("2").semantic().usage("0800"),
        Usage::Optional
    );
    assert_eq!(
        ascii.field(52).expect("52").semantic().usage("0800"),
        Usage::Forbidden
    );
    assert_eq!(
        ascii.alias("card.pan").map(|p| p.to_string()),
        Some("2".to_owned())
    );
    assert_eq!(
        ascii.alias("emv.amount").map(|p| p.to_string()),
        Some("55.9F02".to_owned())
    );
    let binary = spec("binary");
    assert_eq!(
        binary.field(100).expect("100").prefix().kind,
        PrefixKind::Bcd
    );
    assert_eq!(binary.field(35).expect("35").encoding(), Encoding::Track2);
    // The built-in PCI classes hold for fields a spec does not classify.
    assert_eq!(
        binary.field(52).expect("52").semantic().sensitivity(),
        Sensitivity::Sad
    );
}

#[test]
fn builtins_follow_moov() {
    let ascii = Spec::builtin("moov:spec87ascii").expect("ascii");
    let f = ascii.field(52).expect("52");
    assert_eq!((f.length(), f.encoding()), (8, Encoding::HexToAscii));
    assert_eq!(ascii.field(2).expect("2").prefix().to_string(), "ASCII.LL");
    assert_eq!(
        ascii.field(36).expect("36").prefix().to_string(),
        "ASCII.LLL"
    );
    assert!(ascii.field(65).is_none() && ascii.field(90).is_some());
    let hex = Spec::builtin("moov:spec87hex").expect("hex");
    assert_eq!(hex.field(52).expect("52").length(), 16);
    assert_eq!(hex.field(2).expect("2").prefix().to_string(), "Hex.LL");
    assert!(Spec::builtin("moov:nope").is_none());
}

#[test]
fn every_problem_at_once_with_its_place() {
    check_problems(
        "spec:\n  id: x\n  fields:\n    2: {alias: card.pan, length: 19}\n    77: {name: nope}\n    4: {sensitivity: secret}\nwire:\n  source: moov:spec87ascii\n  fields:\n    55: {type: Composite, length: 999, enc: Binary, prefix: ASCII.LLX, layout: tlv}\n    2: {length: 100}\n",
        &[
            (
                "10:61",
                "wire.fields.55.prefix",
                "unknown prefix `ASCII.LLX`",
            ),
            (
                "11:8",
                "wire.fields.2.length",
                "does not fit the prefix ASCII.LL",
            ),
            ("2:3", "spec.version", "missing `spec.version`"),
            ("4:26", "spec.fields.2.length", "is a wire key"),
            ("5:5", "spec.fields.77", "field 77 is not in the wire layer"),
            (
                "6:22",
                "spec.fields.4.sensitivity",
                "must be pan, chd, sad, pii or none",
            ),
        ],
    );
}

#[test]
fn classified_fields_keep_their_mask() {
    check_problems(
        "spec: {id: x, version: '1'}\nwire: {source: moov:spec87ascii}\nspec_extra: 1\n",
        &[("3:1", "spec_extra", "unknown key")],
    );
    check_problems(
        "spec:\n  id: x\n  version: '1'\n  fields:\n    2: {sensitivity: pan, log_mask: false}\nwire: {source: moov:spec87ascii}\n",
        &[("5:37", "spec.fields.2.log_mask", "cannot be false")],
    );
}

#[test]
fn yaml_errors_and_sources() {
    check_problems("spec: [\n", &[("2:1", "", "invalid YAML")]);
    check_problems(
        "spec: {id: x, version: '1'}\nwire: {source: ../outside.yaml}\n",
        &[
            ("2:16", "wire.source", "leaves the spec's directory"),
            ("1:1", "wire", "no field 0"),
            ("1:1", "wire", "no field 1"),
        ],
    );
    let base = "fields:\n  0: {type: String, length: 4, enc: ASCII, prefix: ASCII.Fixed}\n  1: {type: Bitmap, length: 8, enc: Binary, prefix: Binary.Fixed}\n  2: {type: String, length: 19, enc: ASCII, prefix: ASCII.LLL}\n";
    let text = "spec: {id: x, version: '1'}\nwire:\n  source: base.yaml\n  fields:\n    3: {type: Numeric, length: 6}\n";
    let spec = SpecLoader::new(|p| (p == "base.yaml").then(|| base.to_owned()))
        .load("x.yaml", text)
        .expect("loads");
    assert_eq!(spec.field(2).expect("2").prefix().digits, 3);
    assert_eq!(spec.field(3).expect("3").length(), 6);
    let bad = "fields:\n  0: {type: String, length: 4, enc: Nope}\n";
    let err = SpecLoader::new(|_| Some(bad.to_owned()))
        .load("x.yaml", text)
        .expect_err("bad base");
    assert!(
        err.problems
            .iter()
            .any(|p| p.file == "base.yaml" && p.path == "fields.0.enc" && p.line == 2),
        "{err}"
    );
}
