//! Feeds arbitrary bytes to `MsgView`, the lookups a wasm guest makes in the bytes the host
//! sends. A lookup must never panic; on bytes the decoder accepts, every lookup must answer
//! what the decoded message holds.
#![no_main]

use fluxmsg::{Codec, MsgView};
use libfuzzer_sys::fuzz_target;

const PATHS: [&str; 6] = ["a", "a.b", "iso8583.field.4", "", "a..b", "x.y.z"];
const KEYS: [&str; 3] = ["a", "iso8583.mti", ""];

fuzz_target!(|input: &[u8]| {
    let codec = Codec::new();
    let Ok(view) = MsgView::new(input) else {
        return;
    };
    let decoded = codec.decode(input).ok();
    for path in PATHS {
        let raw = view.data_raw(path);
        let value = view.data_path(&codec, path);
        if let Some(msg) = &decoded {
            assert_eq!(
                value.expect("a decodable message reads"),
                msg.data.get_path(path).cloned(),
                "data path {path:?}"
            );
            assert!(raw.is_ok());
        }
    }
    for key in KEYS {
        let meta = view.meta(key);
        if let Some(msg) = &decoded {
            assert_eq!(
                meta.expect("a decodable message reads"),
                msg.meta.get(key).map(|t| t.as_str()),
                "meta key {key:?}"
            );
        }
    }
    let (id, ref_id, src_id) = (view.id(), view.ref_id(), view.src_id());
    let (trace, ts, flags, raw) = (view.trace(), view.ts(), view.flags(), view.raw());
    let path_len = view.path_len();
    let hops: Vec<_> = (0..4).map(|i| view.hop(i)).collect();
    if let Some(msg) = &decoded {
        assert_eq!(id.ok(), Some(msg.id));
        assert_eq!(ref_id.ok(), Some(msg.ref_id));
        assert_eq!(src_id.ok(), Some(msg.src_id));
        assert_eq!(trace.ok(), Some(msg.trace.as_str()));
        assert_eq!(ts.ok(), Some(msg.ts));
        assert_eq!(flags.ok(), Some(msg.flags));
        assert_eq!(raw.ok(), Some(&msg.raw[..]));
        assert_eq!(path_len.ok(), Some(msg.path.len()));
        for (i, hop) in hops.into_iter().enumerate() {
            assert_eq!(hop.ok(), Some(msg.path.get(i).cloned()), "hop {i}");
        }
        // The envelope-first bytes the wasm gear sends decode and read the same.
        let mut first = Vec::new();
        codec
            .encode_envelope_first(msg, &mut first)
            .expect("a decoded message encodes");
        assert_eq!(codec.decode(&first).as_ref(), Ok(msg));
    }
});
