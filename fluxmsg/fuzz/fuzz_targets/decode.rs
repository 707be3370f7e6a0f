//! Feeds arbitrary bytes to every fluxmsg decoder. Decoding must never panic; whatever
//! decodes must re-encode, and the re-encoding must decode to the same thing and re-encode
//! to the same bytes.
#![no_main]

use fluxmsg::{Codec, Error, bytes::Bytes};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|input: &[u8]| {
    let codec = Codec::new();

    let copied = codec.decode(input);
    let shared = codec.decode_shared(&Bytes::copy_from_slice(input));
    assert_eq!(copied, shared, "decode and decode_shared disagree");
    match copied {
        Ok(msg) => {
            let bytes = codec
                .encode_to_vec(&msg)
                .expect("a decoded message encodes");
            let again = codec.decode(&bytes).expect("an encoded message decodes");
            assert_eq!(again, msg, "decode, encode, decode changed the message");
            let twice = codec.encode_to_vec(&again).expect("encodes again");
            assert_eq!(twice, bytes, "canonical bytes are not stable");
        }
        Err(Error::Decode { offset, .. }) => assert!(offset <= input.len()),
        Err(other) => panic!("decoding gave a non-decoding error: {other:?}"),
    }

    match codec.decode_value(input) {
        Ok(value) => {
            let mut bytes = Vec::new();
            codec
                .encode_value(&value, &mut bytes)
                .expect("a decoded value encodes");
            let again = codec
                .decode_value(&bytes)
                .expect("an encoded value decodes");
            assert_eq!(again, value, "value round trip");
            let mut twice = Vec::new();
            codec
                .encode_value(&again, &mut twice)
                .expect("encodes again");
            assert_eq!(twice, bytes, "canonical value bytes are not stable");
        }
        Err(Error::Decode { offset, .. }) => assert!(offset <= input.len()),
        Err(other) => panic!("decoding gave a non-decoding error: {other:?}"),
    }

    // A pack's parts are slices of the input; written again, they read back the same.
    let payload = Bytes::copy_from_slice(input);
    match fluxmsg::pack::parts(&payload) {
        Ok(parts) => {
            let mut again = Vec::new();
            fluxmsg::pack::write(parts.iter().map(|p| p.as_ref()), &mut again);
            assert!(again.len() <= input.len(), "a pack grew when written again");
            let back = fluxmsg::pack::parts(&Bytes::from(again)).expect("a written pack reads");
            assert_eq!(
                back, parts,
                "a pack written again reads back different parts"
            );
        }
        Err(Error::Decode { offset, .. }) => assert!(offset <= input.len()),
        Err(other) => panic!("unpacking gave a non-decoding error: {other:?}"),
    }
});
