//! Message shapes shared by the benchmarks (`mod shapes;` in each suite).

use bytes::Bytes;
use fluxrig::fluxmsg::{FluxMsg, Hop, Id, Map, Text};

/// 2026-01-01T00:00:00Z in nanoseconds.
pub(crate) const T0: i64 = 1_767_225_600_000_000_000;

/// An ISO 8583 authorisation as a decoder gear leaves it: 20 text fields under
/// `data.iso8583.field.<n>`, 8 metadata entries, 3 hops, 200 bytes of raw.
pub(crate) fn payment() -> FluxMsg {
    const FIELDS: [(u8, &str); 20] = [
        (2, "4111111111111111"),
        (3, "000000"),
        (4, "000000010000"),
        (7, "1123145900"),
        (11, "123456"),
        (12, "145900"),
        (13, "1123"),
        (14, "2812"),
        (18, "5999"),
        (22, "051"),
        (25, "00"),
        (32, "412345"),
        (35, "4111111111111111=28121011234567890"),
        (37, "532714123456"),
        (41, "TERM0001"),
        (42, "MERCHANT0000001"),
        (43, "ACME STORE          MONTEVIDEO   UY"),
        (49, "858"),
        (52, "0123456789abcdef"),
        (55, "9f2608a1b2c3d4e5f60718"),
    ];
    let mut data = Map::new();
    for (n, v) in FIELDS {
        data.set_path(&format!("iso8583.field.{n}"), v)
            .expect("fresh paths do not conflict");
    }
    let meta: Map<Text> = [
        ("iso8583.mti", "0100"),
        ("iso8583.mti_class", "01"),
        ("conn.id", "9f2c41d07a11"),
        ("peer.ip", "10.20.30.40"),
        ("peer.port", "51234"),
        ("codec.protocol", "iso8583"),
        ("codec.spec_id", "visa-base1"),
        (
            "traceparent",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        ),
    ]
    .into_iter()
    .map(|(k, v)| (k, Text::from(v)))
    .collect();
    FluxMsg {
        id: Some(Id::U64(0x0123_4567_89ab_cdef)),
        ref_id: Some(Id::U64(0x0123_4567_89ab_cd00)),
        trace: "4bf92f3577b34da6a3ce929d0e0e4736".to_owned(),
        src_id: Some(Id::U64(0x0500_0000_0000_0001)),
        meta,
        data,
        raw: Bytes::from((0..200u32).map(|i| (i * 7) as u8).collect::<Vec<_>>()),
        path: (0..3)
            .map(|i| {
                Hop::new(
                    Id::U64(0x0500_0000_0000_0001 + i),
                    Id::U64(0x0700_0000_0000_0001 + i),
                    T0 + 1_000 * i as i64,
                )
            })
            .collect(),
        ts: T0,
        ..FluxMsg::default()
    }
}
