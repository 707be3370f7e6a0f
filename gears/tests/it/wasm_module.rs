//! The pre-flight check of wasm modules (`gears::wasm::inspect`) and their signatures
//! (`sign`, `verify`, `digest`, keys), on modules written in WAT.

use gears::wasm::{
    CLUSTER_SIGNATURE_SECTION, ModuleError, Policy, PublicKey, SIGNATURE_SECTION, SecretKey,
    SignError, Signed, digest, inspect, sign, verify,
};

const MEMORY: &str = r#"(memory (export "memory") 1)"#;
const ALLOC: &str = r#"(func (export "alloc") (param i32) (result i32) (i32.const 1024))"#;
const FREE: &str = r#"(func (export "free") (param i32 i32))"#;
const PROCESS: &str = r#"(func (export "process") (param i32 i32) (result i64) (i64.const 0))"#;
const LOG: &str = r#"(import "env" "log" (func (param i32 i32 i32)))"#;

/// A module of these fields, in this order (imports first).
fn wat(fields: &[&str]) -> Vec<u8> {
    let text = format!("(module {})", fields.join("\n"));
    wat::parse_str(&text).unwrap_or_else(|e| panic!("{text}: {e}"))
}

/// A module that passes every check but the signature one.
fn good() -> Vec<u8> {
    wat(&[LOG, MEMORY, ALLOC, FREE, PROCESS])
}

fn open() -> Policy {
    Policy {
        allow_unsigned: true,
        ..Policy::default()
    }
}

fn trusting(keys: &[&SecretKey]) -> Policy {
    Policy {
        trusted_keys: keys.iter().map(|k| k.public_key()).collect(),
        ..Policy::default()
    }
}

fn key(n: u8) -> SecretKey {
    SecretKey::from_seed([n; 32])
}

#[track_caller]
fn refused(module: &[u8], policy: &Policy) -> ModuleError {
    match inspect(module, policy) {
        Ok(found) => panic!("accepted: {found:?}"),
        Err(e) => e,
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A custom section `name` holding `payload`, as appended to a module.
fn custom(name: &str, payload: &[u8]) -> Vec<u8> {
    let size = 1 + name.len() + payload.len();
    assert!(size < 128 && name.len() < 128, "one-byte sizes only");
    let mut out = vec![0, size as u8, name.len() as u8];
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(payload);
    out
}

fn count(haystack: &[u8], needle: &[u8]) -> usize {
    haystack
        .windows(needle.len())
        .filter(|w| *w == needle)
        .count()
}

#[test]
fn a_module_importing_env_log_is_accepted() {
    let found = inspect(&good(), &open()).expect("accepted");
    assert!(found.imports_log);
    assert_eq!(found.alloc, "alloc");
    assert!(!found.has_batch);
    assert_eq!(found.signed_by, None);
    assert_eq!(found.digest, digest(&good()).expect("digest"));

    let found = inspect(&wat(&[MEMORY, ALLOC, FREE, PROCESS]), &open()).expect("accepted");
    assert!(!found.imports_log);
}

#[test]
fn a_wasi_import_is_refused_by_name() {
    let module = wat(&[
        r#"(import "wasi_snapshot_preview1" "fd_write" (func (param i32 i32 i32 i32) (result i32)))"#,
        MEMORY,
        ALLOC,
        FREE,
        PROCESS,
    ]);
    let err = refused(&module, &open());
    assert!(
        matches!(&err, ModuleError::ForbiddenImport { module, name, kind: "function" }
            if module == "wasi_snapshot_preview1" && name == "fd_write"),
        "{err:?}"
    );
    assert_eq!(
        err.to_string(),
        r#"module imports "wasi_snapshot_preview1"."fd_write" (function), which is not allowed: a wasm gear may import only env.log"#
    );
}

#[test]
fn imported_memories_tables_globals_and_other_env_functions_are_refused() {
    let cases = [
        (r#"(import "env" "memory" (memory 1))"#, "memory", "memory"),
        (
            r#"(import "env" "table" (table 1 funcref))"#,
            "table",
            "table",
        ),
        (r#"(import "env" "seed" (global i32))"#, "seed", "global"),
        (
            r#"(import "env" "now" (func (result i64)))"#,
            "now",
            "function",
        ),
    ];
    for (import, want_name, want_kind) in cases {
        let module = wat(&[import, LOG, MEMORY, ALLOC, FREE, PROCESS]);
        let err = refused(&module, &open());
        assert!(
            matches!(&err, ModuleError::ForbiddenImport { module, name, kind }
                if module == "env" && name == want_name && *kind == want_kind),
            "{import}: {err:?}"
        );
        assert!(
            err.to_string()
                .contains(&format!("\"env\".\"{want_name}\" ({want_kind})")),
            "{err}"
        );
    }
}

#[test]
fn env_log_of_another_type_is_refused_with_the_expected_type() {
    for (import, found) in [
        (
            r#"(import "env" "log" (func (param i32 i32)))"#,
            "a function (i32, i32) -> ()",
        ),
        (
            r#"(import "env" "log" (func (param i32 i32 i32) (result i32)))"#,
            "a function (i32, i32, i32) -> i32",
        ),
        (r#"(import "env" "log" (global i32))"#, "a global"),
    ] {
        let err = refused(&wat(&[import, MEMORY, ALLOC, FREE, PROCESS]), &open());
        assert!(matches!(&err, ModuleError::LogType { .. }), "{err:?}");
        assert_eq!(
            err.to_string(),
            format!(
                "module imports env.log as {found}; it must be a function (i32, i32, i32) -> ()"
            )
        );
    }
}

#[test]
fn each_required_export_is_named_when_missing() {
    let cases = [
        (wat(&[ALLOC, FREE, PROCESS]), "memory"),
        (wat(&[MEMORY, FREE, PROCESS]), "alloc (or malloc)"),
        (wat(&[MEMORY, ALLOC, PROCESS]), "free"),
        (wat(&[MEMORY, ALLOC, FREE]), "process"),
    ];
    for (module, missing) in cases {
        let err = refused(&module, &open());
        assert!(
            matches!(&err, ModuleError::MissingExport { name, .. } if name == missing),
            "{missing}: {err:?}"
        );
        assert!(
            err.to_string()
                .starts_with(&format!("module does not export {missing} (")),
            "{err}"
        );
    }
    let err = refused(&wat(&[MEMORY, ALLOC, FREE]), &open());
    assert_eq!(
        err.to_string(),
        "module does not export process (a function (i32, i32) -> i64)"
    );
}

#[test]
fn a_mistyped_export_is_named_with_both_types() {
    let process = r#"(func (export "process") (param i32 i32) (result i32) (i32.const 0))"#;
    let err = refused(&wat(&[MEMORY, ALLOC, FREE, process]), &open());
    assert!(
        matches!(&err, ModuleError::ExportType { name, .. } if name == "process"),
        "{err:?}"
    );
    assert_eq!(
        err.to_string(),
        r#"export "process" is a function (i32, i32) -> i32; it must be a function (i32, i32) -> i64"#
    );

    let free = r#"(func (export "free") (param i32))"#;
    let err = refused(&wat(&[MEMORY, ALLOC, free, PROCESS]), &open());
    assert!(
        err.to_string()
            .contains("must be a function (i32, i32) -> ()"),
        "{err}"
    );

    let memory = r#"(memory 1) (global (export "memory") i32 (i32.const 0))"#;
    let err = refused(&wat(&[memory, ALLOC, FREE, PROCESS]), &open());
    assert_eq!(
        err.to_string(),
        r#"export "memory" is a global; it must be a memory"#
    );
}

#[test]
fn the_entry_point_is_the_policys() {
    let handle = r#"(func (export "handle") (param i32 i32) (result i64) (i64.const 0))"#;
    let module = wat(&[MEMORY, ALLOC, FREE, handle]);
    let policy = Policy {
        entrypoint: "handle".to_owned(),
        ..open()
    };
    inspect(&module, &policy).expect("accepted with entrypoint handle");
    let err = refused(&module, &open());
    assert!(
        matches!(&err, ModuleError::MissingExport { name, .. } if name == "process"),
        "{err:?}"
    );
}

#[test]
fn the_batch_entry_point_is_detected_and_checked() {
    let batch = r#"(func (export "process_batch") (param i32 i32) (result i64) (i64.const 0))"#;
    let found = inspect(&wat(&[MEMORY, ALLOC, FREE, PROCESS, batch]), &open()).expect("accepted");
    assert!(found.has_batch);

    let bad = r#"(func (export "process_batch") (param i32) (result i64) (i64.const 0))"#;
    let err = refused(&wat(&[MEMORY, ALLOC, FREE, PROCESS, bad]), &open());
    assert!(
        matches!(&err, ModuleError::ExportType { name, .. } if name == "process_batch"),
        "{err:?}"
    );
}

#[test]
fn malloc_stands_for_alloc() {
    let malloc = r#"(func (export "malloc") (param i32) (result i32) (i32.const 1024))"#;
    let found = inspect(&wat(&[MEMORY, malloc, FREE, PROCESS]), &open()).expect("accepted");
    assert_eq!(found.alloc, "malloc");

    // Both: alloc first; a mistyped alloc falls back to a good malloc.
    let found = inspect(&wat(&[MEMORY, ALLOC, malloc, FREE, PROCESS]), &open()).expect("accepted");
    assert_eq!(found.alloc, "alloc");
    let bad_alloc = r#"(func (export "alloc") (param i64) (result i32) (i32.const 0))"#;
    let found =
        inspect(&wat(&[MEMORY, bad_alloc, malloc, FREE, PROCESS]), &open()).expect("accepted");
    assert_eq!(found.alloc, "malloc");

    let bad_malloc = r#"(func (export "malloc") (param i32))"#;
    let err = refused(&wat(&[MEMORY, bad_malloc, FREE, PROCESS]), &open());
    assert!(
        matches!(&err, ModuleError::ExportType { name, .. } if name == "malloc"),
        "{err:?}"
    );
}

#[test]
fn memory64_and_shared_memories_are_refused() {
    let err = refused(
        &wat(&[r#"(memory (export "memory") i64 1)"#, ALLOC, FREE, PROCESS]),
        &open(),
    );
    assert!(matches!(err, ModuleError::Memory64), "{err:?}");
    let err = refused(
        &wat(&[
            r#"(memory (export "memory") 1 2 shared)"#,
            ALLOC,
            FREE,
            PROCESS,
        ]),
        &open(),
    );
    assert!(matches!(err, ModuleError::SharedMemory), "{err:?}");
}

#[test]
fn a_signed_module_verifies_by_the_signers_index() {
    let (vendor, other) = (key(7), key(9));
    let signed = sign(&good(), &vendor).expect("signs");
    assert_eq!(
        verify(&signed, &[other.public_key(), vendor.public_key()]).expect("verifies"),
        Signed::By(1)
    );
    let found = inspect(&signed, &trusting(&[&other, &vendor])).expect("accepted");
    assert_eq!(found.signed_by, Some(1));
    // Also when unsigned modules are allowed.
    let policy = Policy {
        allow_unsigned: true,
        ..trusting(&[&vendor])
    };
    assert_eq!(
        inspect(&signed, &policy).expect("accepted").signed_by,
        Some(0)
    );
    assert_eq!(
        verify(&good(), &[vendor.public_key()]).expect("no signature"),
        Signed::Unsigned
    );
}

#[test]
fn a_signature_by_another_key_is_refused_even_when_unsigned_modules_are_allowed() {
    let signed = sign(&good(), &key(7)).expect("signs");
    let fingerprint = hex(&digest(&signed).expect("digest")[..8]);
    let err = verify(&signed, &[key(9).public_key()]).expect_err("bad signature");
    assert!(matches!(&err, SignError::BadSignature { .. }), "{err:?}");
    assert!(
        err.to_string().contains(&fingerprint),
        "{err} lacks {fingerprint}"
    );
    for allow_unsigned in [false, true] {
        let policy = Policy {
            allow_unsigned,
            ..trusting(&[&key(9)])
        };
        let err = refused(&signed, &policy);
        assert!(
            matches!(&err, ModuleError::Signature(SignError::BadSignature { .. })),
            "{err:?}"
        );
        assert!(
            err.to_string().starts_with("bad signature on module "),
            "{err}"
        );
    }
}

#[test]
fn a_module_changed_after_signing_is_refused() {
    let vendor = key(7);
    let signed = sign(&good(), &vendor).expect("signs");
    // `alloc` returns 1024 (i32.const 0x41, LEB128 0x80 0x08): make it 1025.
    let at = signed
        .windows(3)
        .position(|w| w == [0x41, 0x80, 0x08])
        .expect("the constant");
    let mut tampered = signed.clone();
    tampered[at + 1] = 0x81;
    inspect(&tampered, &open()).expect("still a valid module");
    let err = refused(&tampered, &trusting(&[&vendor]));
    assert!(
        matches!(&err, ModuleError::Signature(SignError::BadSignature { .. })),
        "{err:?}"
    );

    // A flipped bit of the signature itself.
    let mut forged = signed;
    let last = forged.len() - 1;
    forged[last] ^= 1;
    let err = verify(&forged, &[vendor.public_key()]).expect_err("bad signature");
    assert!(matches!(err, SignError::BadSignature { .. }), "{err:?}");
}

#[test]
fn unsigned_modules_are_refused_unless_the_policy_allows_them() {
    for policy in [Policy::default(), trusting(&[&key(7)])] {
        let err = refused(&good(), &policy);
        assert!(matches!(err, ModuleError::Unsigned), "{err:?}");
        assert_eq!(
            err.to_string(),
            "module is not signed; sign it with `fluxrig wasm sign` or set allow_unsigned: true"
        );
    }
    let policy = Policy {
        allow_unsigned: true,
        ..trusting(&[&key(7)])
    };
    assert_eq!(inspect(&good(), &policy).expect("accepted").signed_by, None);
}

#[test]
fn a_signed_module_without_trusted_keys_runs_only_when_unsigned_ones_may() {
    let signed = sign(&good(), &key(7)).expect("signs");
    assert_eq!(inspect(&signed, &open()).expect("accepted").signed_by, None);
    let err = refused(&signed, &Policy::default());
    assert!(
        matches!(
            &err,
            ModuleError::Signature(SignError::NoTrustedKeys { .. })
        ),
        "{err:?}"
    );
    assert!(
        err.to_string().contains("no trusted keys are configured"),
        "{err}"
    );
    let err = verify(&signed, &[]).expect_err("no keys");
    assert!(matches!(err, SignError::NoTrustedKeys { .. }), "{err:?}");
}

#[test]
fn signing_again_replaces_the_signature() {
    let (first, second) = (key(1), key(2));
    let once = sign(&good(), &first).expect("signs");
    let twice = sign(&once, &second).expect("signs again");
    assert_eq!(once.len(), twice.len());
    assert_eq!(count(&twice, SIGNATURE_SECTION.as_bytes()), 1);
    assert_eq!(
        verify(&twice, &[second.public_key()]).expect("verifies"),
        Signed::By(0)
    );
    let err = verify(&twice, &[first.public_key()]).expect_err("old key");
    assert!(matches!(err, SignError::BadSignature { .. }), "{err:?}");
    // Signing is deterministic (Ed25519), and a re-signed module is the once-signed one.
    assert_eq!(sign(&twice, &first).expect("signs"), once);
}

#[test]
fn the_digest_ignores_signature_sections_only() {
    let module = good();
    let plain = digest(&module).expect("digest");
    let signed = sign(&module, &key(3)).expect("signs");
    assert_eq!(digest(&signed).expect("digest"), plain);
    assert_eq!(
        inspect(&signed, &trusting(&[&key(3)]))
            .expect("accepted")
            .digest,
        plain
    );

    let mut counter_signed = signed;
    counter_signed.extend(custom(CLUSTER_SIGNATURE_SECTION, &[5; 64]));
    assert_eq!(digest(&counter_signed).expect("digest"), plain);
    assert_eq!(
        verify(&counter_signed, &[key(3).public_key()]).expect("verifies"),
        Signed::By(0)
    );

    let mut other = module.clone();
    other.extend(custom("fluxrig.notes", b"hello"));
    assert_ne!(digest(&other).expect("digest"), plain);
    // The sections before the signature are signed too.
    let signed_other = sign(&other, &key(3)).expect("signs");
    let mut without_notes = module;
    without_notes.extend_from_slice(&signed_other[other.len()..]);
    let err = verify(&without_notes, &[key(3).public_key()]).expect_err("notes removed");
    assert!(matches!(err, SignError::BadSignature { .. }), "{err:?}");
}

#[test]
fn two_signatures_or_a_short_one_are_refused() {
    let signed = sign(&good(), &key(7)).expect("signs");
    let mut twice = signed.clone();
    twice.extend_from_slice(&signed[good().len()..]);
    let err = verify(&twice, &[key(7).public_key()]).expect_err("two signatures");
    assert!(
        matches!(err, SignError::DuplicateSignature { count: 2 }),
        "{err:?}"
    );
    let err = refused(&twice, &open());
    assert!(
        matches!(
            err,
            ModuleError::Signature(SignError::DuplicateSignature { .. })
        ),
        "{err:?}"
    );

    let mut short = good();
    short.extend(custom(SIGNATURE_SECTION, &[1; 10]));
    let err = refused(&short, &trusting(&[&key(7)]));
    assert!(err.to_string().contains("holds 10 bytes"), "{err}");
}

#[test]
fn malformed_bytes_are_errors_not_panics() {
    for bytes in [
        &b""[..],
        b"\0asm",
        b"not wasm at all",
        b"\0asm\x01\0\0\0\x01\xff\xff\xff\xff\x0f",
        b"\0asm\x01\0\0\0\0\x05\x20abc",
    ] {
        let err = refused(bytes, &open());
        assert!(
            matches!(err, ModuleError::Invalid { .. }),
            "{bytes:?}: {err:?}"
        );
        assert!(
            matches!(digest(bytes), Err(SignError::Malformed { .. })),
            "{bytes:?}"
        );
        assert!(
            matches!(verify(bytes, &[]), Err(SignError::Malformed { .. })),
            "{bytes:?}"
        );
        assert!(
            matches!(sign(bytes, &key(1)), Err(SignError::Malformed { .. })),
            "{bytes:?}"
        );
    }
    let component = b"\0asm\x0d\0\x01\0";
    assert!(matches!(
        refused(component, &open()),
        ModuleError::Component
    ));
    assert!(matches!(
        digest(component),
        Err(SignError::Malformed { .. })
    ));

    let signed = sign(&good(), &key(1)).expect("signs");
    let unsigned_len = good().len();
    let trusted = [key(1).public_key()];
    for len in 0..signed.len() {
        let prefix = &signed[..len];
        let checked = inspect(prefix, &trusting(&[&key(1)]));
        // Only the whole unsigned module is a valid prefix, and it is not signed.
        assert!(checked.is_err(), "prefix of {len} bytes accepted");
        let _ = verify(prefix, &trusted);
        let _ = digest(prefix);
        let _ = sign(prefix, &key(1));
        if len != unsigned_len {
            assert!(
                inspect(prefix, &open()).is_err(),
                "prefix of {len} bytes accepted"
            );
        }
    }
    // One flipped byte at a time: never a panic.
    for at in 0..signed.len() {
        let mut bytes = signed.clone();
        bytes[at] ^= 0x5a;
        let _ = inspect(&bytes, &trusting(&[&key(1)]));
        let _ = verify(&bytes, &trusted);
        let _ = sign(&bytes, &key(1));
    }
}

#[test]
fn modules_over_the_size_limit_are_refused() {
    let module = good();
    let policy = Policy {
        max_module_bytes: module.len() - 1,
        ..open()
    };
    let err = refused(&module, &policy);
    assert!(
        matches!(err, ModuleError::TooLarge { size, max } if size == module.len() && max == module.len() - 1),
        "{err:?}"
    );
    let policy = Policy {
        max_module_bytes: module.len(),
        ..open()
    };
    inspect(&module, &policy).expect("at the limit");
}

#[test]
fn keys_round_trip_through_text() {
    let secret = key(42);
    let text = secret.to_hex();
    assert_eq!(text.len(), 64);
    let back = format!("{text}\n").parse::<SecretKey>().expect("parses");
    assert_eq!(back.to_hex(), text);
    let public = secret.public_key().to_string();
    assert_eq!(
        public.parse::<PublicKey>().expect("parses"),
        secret.public_key()
    );
    assert_eq!(
        public.to_uppercase().parse::<PublicKey>().expect("parses"),
        secret.public_key()
    );

    let err = "abcd".parse::<PublicKey>().expect_err("short");
    assert_eq!(
        err.to_string(),
        "bad public key: expected 64 hex characters, got 4"
    );
    let err = "zz".repeat(32).parse::<SecretKey>().expect_err("not hex");
    assert_eq!(
        err.to_string(),
        "bad secret key: expected hex characters only (0-9, a-f)"
    );
    let err = format!("{text}00").parse::<SecretKey>().expect_err("long");
    assert!(!err.to_string().contains(&text), "{err}");
    // 2 is not the y coordinate of a point of the curve.
    let mut not_a_point = [0u8; 32];
    not_a_point[0] = 2;
    let err = hex(&not_a_point)
        .parse::<PublicKey>()
        .expect_err("not a point");
    assert_eq!(
        err.to_string(),
        "bad public key: not a valid Ed25519 public key"
    );

    let (a, b) = (
        SecretKey::generate().expect("key"),
        SecretKey::generate().expect("key"),
    );
    assert_ne!(a.to_hex(), b.to_hex());
    let signed = sign(&good(), &a).expect("signs");
    assert_eq!(
        verify(&signed, &[b.public_key(), a.public_key()]).expect("verifies"),
        Signed::By(1)
    );
}
