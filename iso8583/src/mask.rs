//! Rendering values for logs by their sensitivity, and masking PAN-like digit runs in text.

use std::borrow::Cow;

use crate::message::FieldRef;
use crate::spec::{Sensitivity, Spec};

/// What a masked value that shows nothing renders as.
pub const REDACTED: &str = "[redacted]";

/// Renders a value for logs by its sensitivity: `pan` shows the first 6 and last 4 digits
/// (fewer for a short value, never more than half of it), `chd`, `sad` and `pii` show
/// nothing, `none` shows the text (or `hex:` and the bytes when it is not UTF-8).
///
/// ```
/// use iso8583::{Sensitivity, mask_value};
///
/// assert_eq!(mask_value(b"4111111111111111", Sensitivity::Pan), "411111******1111");
/// assert_eq!(mask_value(b"4111111111111111=2512", Sensitivity::Sad), "[redacted]");
/// assert_eq!(mask_value(b"000000010000", Sensitivity::None), "000000010000");
/// ```
pub fn mask_value(value: &[u8], sensitivity: Sensitivity) -> String {
    match sensitivity {
        Sensitivity::None => match std::str::from_utf8(value) {
            Ok(s) => s.to_owned(),
            Err(_) => {
                let mut s = String::from("hex:");
                for b in value {
                    s.push_str(&format!("{b:02x}"));
                }
                s
            }
        },
        Sensitivity::Pan => mask_pan(value),
        _ => REDACTED.to_owned(),
    }
}

fn mask_pan(value: &[u8]) -> String {
    let n = value.len();
    // Six and four for a full PAN; for anything shorter, at most half shows.
    let (head, tail) = if n >= 16 { (6, 4) } else { (n / 4, n / 4) };
    value
        .iter()
        .enumerate()
        .map(|(i, &b)| {
            if (i < head || i >= n - tail) && b.is_ascii() {
                char::from(b)
            } else {
                '*'
            }
        })
        .collect()
}

impl Spec {
    /// Renders field `number` (or a subfield of it) for logs, by the spec's sensitivity and
    /// `log_mask`: a masked PAN, nothing for classified data, the text otherwise. A composite
    /// renders each subfield by its own class, inside its field's (a classified field hides
    /// all of them).
    pub fn render(&self, number: u16, field: FieldRef<'_>) -> String {
        let spec = self.field(number);
        let sensitivity = spec.map_or(Sensitivity::None, |f| effective(f.semantic()));
        match field {
            FieldRef::Value(v) => mask_value(v, sensitivity),
            FieldRef::Composite(_) if sensitivity != Sensitivity::None => REDACTED.to_owned(),
            FieldRef::Composite(subs) => {
                let comp = spec.and_then(|f| f.composite());
                let parts: Vec<String> = subs
                    .iter()
                    .map(|s| {
                        let sens = comp
                            .and_then(|c| c.subfield(s.key))
                            .map_or(Sensitivity::None, |f| effective(f.semantic()));
                        format!("{}={}", s.key, mask_value(s.value, sens))
                    })
                    .collect();
                format!("{{{}}}", parts.join(", "))
            }
        }
    }
}

/// A field's class for logs: `log_mask: true` on an unclassified field hides it as `pii`.
fn effective(sem: &crate::spec::Semantic) -> Sensitivity {
    match sem.sensitivity() {
        Sensitivity::None if sem.log_mask() => Sensitivity::Pii,
        s => s,
    }
}

/// Masks every run of 13 to 19 digits that passes the Luhn check (a PAN, most likely) in
/// `text`, keeping its first 6 and last 4 digits; text without one comes back borrowed.
///
/// ```
/// use iso8583::mask_pans;
///
/// assert_eq!(mask_pans("card 4111111111111111 declined"), "card 411111******1111 declined");
/// assert_eq!(mask_pans("stan 123456, rrn 000000000001"), "stan 123456, rrn 000000000001");
/// ```
pub fn mask_pans(text: &str) -> Cow<'_, str> {
    let bytes = text.as_bytes();
    let mut out: Option<String> = None;
    let mut copied = 0;
    let mut i = 0;
    while i < bytes.len() {
        if !bytes[i].is_ascii_digit() {
            i += 1;
            continue;
        }
        let start = i;
        while i < bytes.len() && bytes[i].is_ascii_digit() {
            i += 1;
        }
        let run = &bytes[start..i];
        if (13..=19).contains(&run.len()) && luhn_valid(run) {
            let s = out.get_or_insert_with(|| String::with_capacity(text.len()));
            s.push_str(&text[copied..start]);
            s.push_str(&mask_pan(run));
            copied = i;
        }
    }
    match out {
        None => Cow::Borrowed(text),
        Some(mut s) => {
            s.push_str(&text[copied..]);
            Cow::Owned(s)
        }
    }
}

/// Whether `digits` (ASCII digits, the last one the check digit) pass the Luhn check, as every
/// card number does. A byte that is not a digit fails it.
///
/// ```
/// assert!(iso8583::luhn_valid(b"4111111111111111"));
/// assert!(!iso8583::luhn_valid(b"4111111111111112"));
/// ```
pub fn luhn_valid(digits: &[u8]) -> bool {
    match digits.split_last() {
        Some((&check, payload)) if check.is_ascii_digit() => {
            luhn_check_digit(payload) == Some(check - b'0')
        }
        _ => false,
    }
}

/// The Luhn check digit that makes `payload` (ASCII digits) followed by it a valid number,
/// as a card number's last digit; `None` when a byte is not a digit.
///
/// ```
/// assert_eq!(iso8583::luhn_check_digit(b"411111111111111"), Some(1));
/// assert_eq!(iso8583::luhn_check_digit(b"41111x"), None);
/// ```
pub fn luhn_check_digit(payload: &[u8]) -> Option<u8> {
    // The digit next to the check digit is doubled, then every second one going left.
    let mut sum = 0u32;
    for (i, d) in payload.iter().rev().enumerate() {
        if !d.is_ascii_digit() {
            return None;
        }
        let mut v = u32::from(d - b'0');
        if i % 2 == 0 {
            v *= 2;
            if v > 9 {
                v -= 9;
            }
        }
        sum += v;
    }
    // A digit: the sum's remainder is below 10.
    Some((10 - sum % 10) as u8 % 10)
}
