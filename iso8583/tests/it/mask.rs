//! Masking by sensitivity, and PAN-like runs in free text.

use iso8583::{Field, Message, REDACTED, Sensitivity, mask_pans, mask_value};

use crate::support::{hex, spec};

#[test]
fn by_sensitivity() {
    assert_eq!(
        mask_value(b"4111111111111111", Sensitivity::Pan),
        "411111******1111"
    );
    assert_eq!(
        mask_value(b"4111111111111111111", Sensitivity::Pan),
        "411111*********1111"
    );
    assert_eq!(mask_value(b"12345678", Sensitivity::Pan), "12****78");
    for s in [Sensitivity::Sad, Sensitivity::Chd, Sensitivity::Pii] {
        assert_eq!(mask_value(b"4111111111111111=2512", s), REDACTED);
    }
    assert_eq!(mask_value(&[0xFF, 0x00], Sensitivity::None), "hex:ff00");
}

#[test]
fn spec_render_hides_track2_pin_and_emv() {
    let spec = spec("ascii");
    let doc: toml::Table =
        toml::from_str(include_str!("../../testdata/vectors.toml")).expect("toml");
    let msg = spec
        .unpack(&hex(doc["case"][1]["hex"].as_str().expect("hex")))
        .expect("unpack");
    let render = |n| spec.render(n, msg.get(n).expect("present"));
    assert_eq!(render(2), "411111******1111");
    assert_eq!(render(35), REDACTED);
    assert_eq!(render(52), REDACTED);
    assert_eq!(render(55), REDACTED);
    assert_eq!(render(11), "123456");
    assert_eq!(render(63), "{1=01, 2=ABCDEFGH, 3=000042}");
    // Debug never shows values.
    let debug = format!("{msg:?}");
    assert!(
        !debug.contains("4111") && debug.contains("16 bytes"),
        "{debug}"
    );
    let mut m = Message::new("0100");
    m.set(2, Field::from("4111111111111111"));
    assert!(!format!("{m:?}").contains("4111"));
}

#[test]
fn pans_in_text() {
    assert_eq!(
        mask_pans("pan=4111111111111111, other 5500005555555559."),
        "pan=411111******1111, other 550000******5559."
    );
    // Not Luhn, too short or too long: left alone.
    let plain = "4111111111111112 123456789012 41111111111111111111111";
    assert_eq!(mask_pans(plain), plain);
    assert!(matches!(
        mask_pans("nothing here"),
        std::borrow::Cow::Borrowed(_)
    ));
}
