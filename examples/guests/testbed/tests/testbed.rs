//! The testbed fixture: its actions run natively, and its module (built for wasm32) has the
//! exports the host needs and no import but `env.log`.

use std::collections::BTreeSet;

use fluxmsg::{FluxMsg, Id, Value};
use guest_testbed::Testbed;
use sdk::abi;
use sdk::guest::{Output, log, simulate};

fn action(n: u64, action: Option<&str>) -> FluxMsg {
    let mut b = FluxMsg::builder().id(Id::U64(n)).data("n", n);
    if let Some(a) = action {
        b = b.meta("test.action", a);
    }
    b.build()
}

fn with_data(mut msg: FluxMsg, key: &str, value: impl Into<Value>) -> FluxMsg {
    msg.data.insert(key, value.into());
    msg
}

fn emit(index: u32, port: &str, msg: FluxMsg) -> Output {
    Output::Emit {
        index,
        port: port.into(),
        msg,
    }
}

#[test]
fn actions_run_natively() {
    let msgs = [
        action(0, None),
        action(1, Some("error")),
        action(2, Some("drop")),
        action(3, Some("fanout")),
        action(4, Some("new")),
        action(5, Some("log")),
        action(6, Some("count")),
        action(7, Some("count")),
        action(8, Some("nonsense")),
    ];
    let _ = log::take();
    let outputs = simulate(&mut Testbed::default(), &msgs).expect("simulated");
    let new = FluxMsg::builder().data("created", true).build();
    assert_eq!(
        outputs,
        [
            emit(0, "out", with_data(msgs[0].clone(), "checked", true)),
            Output::Error {
                index: 1,
                reason: "guest_error".into(),
                detail: "asked to fail".into()
            },
            Output::Drop {
                index: 2,
                reason: "asked_to_drop".into()
            },
            emit(3, "out", msgs[3].clone()),
            emit(3, "audit", msgs[3].clone()),
            emit(4, "out", new),
            emit(5, "out", msgs[5].clone()),
            emit(6, "out", with_data(msgs[6].clone(), "count", 1u64)),
            emit(7, "out", with_data(msgs[7].clone(), "count", 2u64)),
            Output::Error {
                index: 8,
                reason: "unknown_action".into(),
                detail: "see the testbed's docs".into()
            },
        ]
    );
    let levels: Vec<i32> = log::take().into_iter().map(|(level, _)| level).collect();
    assert_eq!(
        levels,
        [abi::LOG_DEBUG, abi::LOG_INFO, abi::LOG_WARN, abi::LOG_ERROR]
    );
}

/// Exports and imports of a module.
fn surface(bytes: &[u8]) -> (BTreeSet<String>, BTreeSet<(String, String)>) {
    let mut exports = BTreeSet::new();
    let mut imports = BTreeSet::new();
    for payload in wasmparser::Parser::new(0).parse_all(bytes) {
        match payload.expect("a valid module") {
            wasmparser::Payload::ExportSection(section) => {
                for export in section {
                    exports.insert(export.expect("an export").name.to_owned());
                }
            }
            wasmparser::Payload::ImportSection(section) => {
                for import in section.into_imports() {
                    let import = import.expect("an import");
                    imports.insert((import.module.to_owned(), import.name.to_owned()));
                }
            }
            _ => {}
        }
    }
    (exports, imports)
}

#[test]
fn the_modules_export_the_abi_and_import_only_the_log() {
    for name in ["testbed", "risk"] {
        let path = testkit::guest_wasm(name);
        let bytes = std::fs::read(&path).expect("the module");
        wasmparser::Validator::new()
            .validate_all(&bytes)
            .expect("a valid module");
        let (exports, imports) = surface(&bytes);
        for export in [
            abi::EXPORT_MEMORY,
            abi::EXPORT_ALLOC,
            abi::EXPORT_FREE,
            abi::EXPORT_PROCESS,
            abi::EXPORT_PROCESS_BATCH,
        ] {
            assert!(
                exports.contains(export),
                "{name}: no export {export}: {exports:?}"
            );
        }
        let log = (abi::IMPORT_MODULE.to_owned(), abi::IMPORT_LOG.to_owned());
        assert_eq!(imports, BTreeSet::from([log]), "{name}'s imports");
    }
}
