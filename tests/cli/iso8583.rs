//! `fluxrig iso8583 decode|encode` and `fluxrig spec check|doc`.

use serde_json::json;

use super::{check_failure, fluxrig};

const PAN: &str = "4111111111111111";

/// A 0100 in `builtin:spec87ascii`: PAN, processing code, amount, STAN, track 2, PIN block.
fn auth() -> Vec<u8> {
    let mut msg = ::iso8583::Message::new("0100");
    msg.set(2, PAN);
    msg.set(3, "000000");
    msg.set(4, "000000010000");
    msg.set(11, "123456");
    msg.set(35, "4111111111111111=2512101");
    msg.set(52, &[0x01, 0x23, 0x45, 0x67, 0x89, 0xAB, 0xCD, 0xEF]);
    let spec = ::iso8583::Spec::builtin("moov:spec87ascii").expect("built in");
    spec.pack_to_vec(&msg).expect("packs")
}

fn spec_path(name: &str) -> String {
    format!("{}/examples/specs/{name}", env!("CARGO_MANIFEST_DIR"))
}

/// Writes `text` to a file of its own under the temporary directory.
fn temp_spec(name: &str, text: &str) -> String {
    let dir = std::env::temp_dir().join(format!("fluxrig-cli-iso8583-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temporary directory");
    let path = dir.join(name);
    std::fs::write(&path, text).expect("spec written");
    path.to_string_lossy().into_owned()
}

#[test]
fn decode_then_encode_gives_the_same_bytes() -> anyhow::Result<()> {
    let bytes = auth();
    let decoded = fluxrig(
        &[
            "iso8583",
            "decode",
            "--spec",
            "builtin:spec87ascii",
            "--reveal",
        ],
        &bytes,
    );
    assert_eq!(decoded.status, 0, "{decoded:?}");
    let view: serde_json::Value = serde_json::from_slice(&decoded.stdout)?;
    assert_eq!(
        view,
        json!({"mti": "0100", "fields": {
            "2": PAN,
            "3": "000000",
            "4": "000000010000",
            "11": "123456",
            "35": "4111111111111111=2512101",
            "52": "0123456789ABCDEF",
        }})
    );
    let encoded = fluxrig(
        &["iso8583", "encode", "--spec", "builtin:spec87ascii"],
        &decoded.stdout,
    );
    assert_eq!(encoded.status, 0, "{encoded:?}");
    assert_eq!(encoded.stdout, bytes);

    // The same through hex, in both directions.
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    let decoded = fluxrig(
        &[
            "iso8583",
            "decode",
            "--spec",
            "builtin:spec87ascii",
            "--hex",
            "--reveal",
        ],
        hex.as_bytes(),
    );
    assert_eq!(decoded.status, 0, "{decoded:?}");
    let encoded = fluxrig(
        &[
            "iso8583",
            "encode",
            "--spec",
            "builtin:spec87ascii",
            "--hex",
        ],
        &decoded.stdout,
    );
    assert_eq!(encoded.status, 0, "{encoded:?}");
    assert_eq!(
        String::from_utf8(encoded.stdout)?,
        format!("{}\n", hex.to_uppercase())
    );
    Ok(())
}

#[test]
fn decode_masks_card_data_unless_revealed() -> anyhow::Result<()> {
    let decoded = fluxrig(
        &["iso8583", "decode", "--spec", "builtin:spec87ascii"],
        &auth(),
    );
    assert_eq!(decoded.status, 0, "{decoded:?}");
    let text = String::from_utf8(decoded.stdout)?;
    assert!(!text.contains(PAN), "{text}");
    let view: serde_json::Value = serde_json::from_str(&text)?;
    assert_eq!(view["fields"]["2"], "411111******1111");
    assert_eq!(view["fields"]["35"], "[redacted]");
    assert_eq!(view["fields"]["52"], "[redacted]");
    assert_eq!(view["fields"]["11"], "123456");
    Ok(())
}

#[test]
fn a_truncated_message_names_the_field_and_the_offset() {
    let bytes = auth();
    check_failure(
        &fluxrig(
            &["iso8583", "decode", "--spec", "builtin:spec87ascii"],
            &bytes[..27],
        ),
        1,
        "truncated: 16 bytes needed, 5 left at byte 22 (field 2)",
    );
    check_failure(
        &fluxrig(&["iso8583", "decode", "--spec", "builtin:spec93"], &bytes),
        1,
        "unknown built-in spec",
    );
}

#[test]
fn a_spec_file_decodes_composites_as_objects() -> anyhow::Result<()> {
    let spec = format!(
        "{}/iso8583/testdata/specs/ascii.yaml",
        env!("CARGO_MANIFEST_DIR")
    );
    let input = json!({"mti": "0100", "fields": {
        "2": PAN,
        "48": {"1": "AB", "3": "hello"},
        "55": {"9F02": "000000010000", "82": "5C00"},
    }});
    let encoded = fluxrig(
        &["iso8583", "encode", "--spec", &spec],
        input.to_string().as_bytes(),
    );
    assert_eq!(encoded.status, 0, "{encoded:?}");
    let decoded = fluxrig(
        &["iso8583", "decode", "--spec", &spec, "--reveal"],
        &encoded.stdout,
    );
    assert_eq!(decoded.status, 0, "{decoded:?}");
    let view: serde_json::Value = serde_json::from_slice(&decoded.stdout)?;
    assert_eq!(view, input);
    Ok(())
}

#[test]
fn spec_check_passes_the_sample_and_gives_line_and_column() {
    let run = fluxrig(&["spec", "check", &spec_path("acquirer.yaml")], b"");
    assert_eq!(run.status, 0, "{run:?}");
    assert!(
        String::from_utf8_lossy(&run.stdout).starts_with("ok: sample-acquirer 1.0.0"),
        "{run:?}"
    );

    let bad = temp_spec(
        "bad.yaml",
        "spec:\n  id: bad\n  version: 1.0.0\n  fields:\n    2: {sensitivity: secret}\n    3: {usage: sometimes}\nwire:\n  source: moov:spec87ascii\n",
    );
    let run = fluxrig(&["spec", "check", &bad], b"");
    assert_eq!(run.status, 1, "{run:?}");
    assert!(run.stdout.is_empty(), "{run:?}");
    assert!(
        run.stderr
            .starts_with(&format!("error: {bad}: the spec has 2 problem(s)\n")),
        "{run:?}"
    );
    assert!(run.stderr.contains(&format!("{bad}:5:")), "{run:?}");
    assert!(run.stderr.contains(&format!("{bad}:6:")), "{run:?}");
}

#[test]
fn spec_doc_tables_the_fields_per_message_type() {
    let run = fluxrig(
        &[
            "spec",
            "doc",
            &spec_path("acquirer.yaml"),
            "--format",
            "markdown",
        ],
        b"",
    );
    assert_eq!(run.status, 0, "{run:?}");
    let doc = String::from_utf8_lossy(&run.stdout);
    assert!(doc.starts_with("# Sample acquirer\n"), "{doc}");
    assert!(doc.contains("\n## MTI 0100\n"), "{doc}");
    assert!(doc.contains("\n## MTI 0800\n"), "{doc}");
    assert!(doc.contains("\n## Other message types\n"), "{doc}");
    assert!(
        doc.contains("| 2 | Primary Account Number | mandatory |"),
        "{doc}"
    );
    assert!(doc.contains("| 52 | PIN Data | forbidden |"), "{doc}");

    let public = fluxrig(
        &[
            "spec",
            "doc",
            &spec_path("acquirer.yaml"),
            "--format",
            "markdown",
            "--public",
        ],
        b"",
    );
    assert_eq!(public.status, 0, "{public:?}");
    let doc = String::from_utf8_lossy(&public.stdout);
    assert!(!doc.contains("Primary Account Number"), "{doc}");
    assert!(!doc.contains("PIN Data"), "{doc}");
    assert!(doc.contains("| 11 | System Trace Audit Number |"), "{doc}");
}
