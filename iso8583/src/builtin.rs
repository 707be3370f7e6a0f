//! The built-in wire layers: ISO 8583:1987 as moov-io/iso8583 defines it in its
//! `spec87ascii` and `spec87hex`, field for field.

use crate::spec::{
    Encoding, FieldSpec, FieldType, MAX_FIELD, PadSide, Padding, Prefix, PrefixKind, Semantic,
    Sensitivity,
};

/// One row: number, type, length, digits of the length prefix (0 fixed), left zero padding,
/// description.
type Row = (u16, FieldType, usize, u8, bool, &'static str);

use FieldType::{Numeric as N, String as S};

const ROWS: &[Row] = &[
    (0, S, 4, 0, false, "Message Type Indicator"),
    (1, FieldType::Bitmap, 16, 0, false, "Bitmap"),
    (2, S, 19, 2, false, "Primary Account Number"),
    (3, N, 6, 0, true, "Processing Code"),
    (4, S, 12, 0, true, "Transaction Amount"),
    (5, S, 12, 0, true, "Settlement Amount"),
    (6, S, 12, 0, true, "Billing Amount"),
    (7, S, 10, 0, false, "Transmission Date & Time"),
    (8, S, 8, 0, false, "Billing Fee Amount"),
    (9, S, 8, 0, false, "Settlement Conversion Rate"),
    (10, S, 8, 0, false, "Cardholder Billing Conversion Rate"),
    (11, S, 6, 0, false, "Systems Trace Audit Number (STAN)"),
    (12, S, 6, 0, false, "Local Transaction Time"),
    (13, S, 4, 0, false, "Local Transaction Date"),
    (14, S, 4, 0, false, "Expiration Date"),
    (15, S, 4, 0, false, "Settlement Date"),
    (16, S, 4, 0, false, "Currency Conversion Date"),
    (17, S, 4, 0, false, "Capture Date"),
    (18, S, 4, 0, false, "Merchant Type"),
    (19, S, 3, 0, false, "Acquiring Institution Country Code"),
    (20, S, 3, 0, false, "PAN Extended Country Code"),
    (21, S, 3, 0, false, "Forwarding Institution Country Code"),
    (22, S, 3, 0, false, "Point of Sale (POS) Entry Mode"),
    (23, S, 3, 0, false, "Card Sequence Number (CSN)"),
    (24, S, 3, 0, false, "Function Code"),
    (25, S, 2, 0, false, "Point of Service Condition Code"),
    (26, S, 2, 0, false, "Point of Service PIN Capture Code"),
    (
        27,
        S,
        1,
        0,
        false,
        "Authorizing Identification Response Length",
    ),
    (28, S, 9, 0, false, "Transaction Fee Amount"),
    (29, S, 9, 0, false, "Settlement Fee Amount"),
    (30, S, 9, 0, false, "Transaction Processing Fee Amount"),
    (31, S, 9, 0, false, "Settlement Processing Fee Amount"),
    (
        32,
        S,
        11,
        2,
        false,
        "Acquiring Institution Identification Code",
    ),
    (
        33,
        S,
        11,
        2,
        false,
        "Forwarding Institution Identification Code",
    ),
    (34, S, 28, 2, false, "Extended Primary Account Number"),
    (35, S, 37, 2, false, "Track 2 Data"),
    (36, S, 104, 3, false, "Track 3 Data"),
    (37, S, 12, 0, false, "Retrieval Reference Number"),
    (38, S, 6, 0, false, "Authorization Identification Response"),
    (39, S, 2, 0, false, "Response Code"),
    (40, S, 3, 0, false, "Service Restriction Code"),
    (41, S, 8, 0, false, "Card Acceptor Terminal Identification"),
    (42, S, 15, 0, false, "Card Acceptor Identification Code"),
    (43, S, 40, 0, false, "Card Acceptor Name/Location"),
    (44, S, 99, 2, false, "Additional Data"),
    (45, S, 76, 2, false, "Track 1 Data"),
    (46, S, 999, 3, false, "Additional data (ISO)"),
    (47, S, 999, 3, false, "Additional data (National)"),
    (48, S, 999, 3, false, "Additional data (Private)"),
    (49, S, 3, 0, false, "Transaction Currency Code"),
    (50, S, 3, 0, false, "Settlement Currency Code"),
    (51, S, 3, 0, false, "Cardholder Billing Currency Code"),
    (52, S, 8, 0, false, "PIN Data"),
    (53, S, 16, 0, false, "Security Related Control Information"),
    (54, S, 120, 3, false, "Additional Amounts"),
    (55, S, 999, 3, false, "ICC Data - EMV Having Multiple Tags"),
    (56, S, 999, 3, false, "Reserved (ISO)"),
    (57, S, 999, 3, false, "Reserved (National)"),
    (58, S, 999, 3, false, "Reserved (National)"),
    (59, S, 999, 3, false, "Reserved (National)"),
    (60, S, 999, 3, false, "Reserved (National)"),
    (61, S, 999, 3, false, "Reserved (Private)"),
    (62, S, 999, 3, false, "Reserved (Private)"),
    (63, S, 999, 3, false, "Reserved (Private)"),
    (64, S, 8, 0, false, "Message Authentication Code (MAC)"),
    (90, S, 42, 0, false, "Original Data Elements"),
];

/// The PCI classes of the 1987 fields (the reference's guidance): logs mask them whatever
/// the spec on top says, unless it classifies them itself.
pub(crate) fn default_sensitivity(n: u16) -> Sensitivity {
    match n {
        2 | 34 => Sensitivity::Pan,
        35 | 36 | 45 | 52 => Sensitivity::Sad,
        55 => Sensitivity::Chd,
        _ => Sensitivity::None,
    }
}

/// The names `wire.source` accepts for a built-in layer.
pub(crate) const SOURCES: [&str; 2] = ["moov:spec87ascii", "moov:spec87hex"];

/// The fields of a built-in wire layer, indexed by number, or `None` for an unknown name.
pub(crate) fn fields(source: &str) -> Option<Vec<Option<FieldSpec>>> {
    let hex = match source {
        "moov:spec87ascii" => false,
        "moov:spec87hex" => true,
        _ => return None,
    };
    let mut out: Vec<Option<FieldSpec>> = vec![None; usize::from(MAX_FIELD) + 1];
    for &(n, kind, length, digits, pad, desc) in ROWS {
        // spec87ascii writes PIN data and the MAC (and the bitmap) as hex text of their bytes;
        // spec87hex writes every field so, with hex length prefixes, and its processing code
        // is a string without padding; its PIN data is 16 bytes.
        let binary_in_ascii = matches!(n, 1 | 52 | 64);
        let enc = if hex || binary_in_ascii {
            Encoding::HexToAscii
        } else {
            Encoding::Ascii
        };
        let kind = if hex && kind == N { S } else { kind };
        let length = match n {
            1 => 8,
            52 if hex => 16,
            _ => length,
        };
        let prefix = Prefix {
            kind: if hex || binary_in_ascii {
                PrefixKind::Hex
            } else {
                PrefixKind::Ascii
            },
            digits,
        };
        let padding = (pad && !(hex && n == 3)).then_some(Padding {
            side: PadSide::Left,
            pad: b'0',
        });
        let sensitivity = default_sensitivity(n);
        out[usize::from(n)] = Some(FieldSpec {
            number: n,
            description: desc.to_owned(),
            kind,
            length,
            enc,
            prefix,
            padding,
            composite: None,
            semantic: Semantic {
                sensitivity,
                log_mask: sensitivity != Sensitivity::None,
                ..Semantic::default()
            },
        });
    }
    Some(out)
}
