//! The model of a loaded spec: the wire layer (how each field is written) and the semantic
//! layer (what it means, how sensitive it is, when it may appear).

use std::fmt;

/// The highest field number: three bitmaps of 64 bits.
pub const MAX_FIELD: u16 = 192;

/// A loaded, checked ISO 8583 spec: what [`Spec::unpack`] and [`Spec::pack`] follow.
///
/// Built by [`Spec::from_yaml`], [`SpecLoader::load`](crate::SpecLoader::load) or
/// [`Spec::builtin`]; a built spec never changes.
#[derive(Clone)]
pub struct Spec {
    pub(crate) id: String,
    pub(crate) version: String,
    pub(crate) name: String,
    pub(crate) hash: String,
    /// Indexed by field number, 0 (MTI) to [`MAX_FIELD`]; 1 is the bitmap.
    pub(crate) fields: Vec<Option<FieldSpec>>,
    /// Aliases of fields and subfields, in the order the spec gives them.
    pub(crate) aliases: Vec<(String, FieldPath)>,
    pub(crate) enums: Vec<ValueSet>,
}

impl fmt::Debug for Spec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Spec")
            .field("id", &self.id)
            .field("version", &self.version)
            .field("hash", &self.hash)
            .field("fields", &self.fields.iter().flatten().count())
            .finish_non_exhaustive()
    }
}

impl Spec {
    /// The spec's `spec.id`.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The spec's `spec.version`.
    pub fn version(&self) -> &str {
        &self.version
    }

    /// The spec's `spec.name`, or its id when it has none.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The first 12 hex digits of the SHA-256 of the spec's text (and of its wire source).
    pub fn hash(&self) -> &str {
        &self.hash
    }

    /// The definition of field `number`, if the spec has one.
    pub fn field(&self, number: u16) -> Option<&FieldSpec> {
        self.fields
            .get(usize::from(number))
            .and_then(Option::as_ref)
    }

    /// Every field the spec defines, in field number order.
    pub fn fields(&self) -> impl Iterator<Item = &FieldSpec> + '_ {
        self.fields.iter().flatten()
    }

    /// The field or subfield an alias names (`card.pan`).
    pub fn alias(&self, alias: &str) -> Option<FieldPath> {
        self.aliases
            .iter()
            .find(|(a, _)| a == alias)
            .map(|(_, path)| *path)
    }

    /// Every alias with the field or subfield it names, in the spec's order.
    pub fn aliases(&self) -> impl Iterator<Item = (&str, FieldPath)> + '_ {
        self.aliases.iter().map(|(a, p)| (a.as_str(), *p))
    }
}

/// A field or one of its subfields: `2`, `55.9F02`, `3.1`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct FieldPath {
    /// The field number.
    pub field: u16,
    /// The subfield, for a composite field.
    pub sub: Option<SubKey>,
}

impl fmt::Display for FieldPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.sub {
            None => write!(f, "{}", self.field),
            Some(sub) => write!(f, "{}.{sub}", self.field),
        }
    }
}

/// The key of a subfield: a position (positional and bitmapped layouts) or a BER-TLV tag.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum SubKey {
    /// A position or bit number, from 1.
    Index(u16),
    /// A BER-TLV tag, its bytes read as a big-endian number (`0x9F02`).
    Tag(u32),
}

impl fmt::Display for SubKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SubKey::Index(i) => write!(f, "{i}"),
            SubKey::Tag(t) if *t <= 0xFF => write!(f, "{t:02X}"),
            SubKey::Tag(t) if *t <= 0xFFFF => write!(f, "{t:04X}"),
            SubKey::Tag(t) if *t <= 0xFF_FFFF => write!(f, "{t:06X}"),
            SubKey::Tag(t) => write!(f, "{t:08X}"),
        }
    }
}

impl SubKey {
    /// Reads a subfield key as written in a spec or a fluxMsg path: digits are a position,
    /// anything else is a tag in hex (`9F02`).
    pub fn parse(text: &str, tlv: bool) -> Option<SubKey> {
        if text.is_empty() || text.len() > 8 {
            return None;
        }
        if tlv {
            if !text.len().is_multiple_of(2) {
                return None;
            }
            u32::from_str_radix(text, 16).ok().map(SubKey::Tag)
        } else {
            text.parse::<u16>()
                .ok()
                .filter(|i| *i >= 1)
                .map(SubKey::Index)
        }
    }
}

/// One field (or subfield) of a spec, wire and semantic layers together.
#[derive(Debug, Clone)]
pub struct FieldSpec {
    pub(crate) number: u16,
    pub(crate) description: String,
    pub(crate) kind: FieldType,
    pub(crate) length: usize,
    pub(crate) enc: Encoding,
    pub(crate) prefix: Prefix,
    pub(crate) padding: Option<Padding>,
    pub(crate) composite: Option<Box<Composite>>,
    pub(crate) semantic: Semantic,
}

impl FieldSpec {
    /// The field number (or position, for a subfield).
    pub fn number(&self) -> u16 {
        self.number
    }

    /// The wire layer's description.
    pub fn description(&self) -> &str {
        &self.description
    }

    /// The wire type (`String`, `Numeric`, `Binary`, ...).
    pub fn kind(&self) -> FieldType {
        self.kind
    }

    /// The fixed length, or the maximum for a variable-length field, in the encoding's unit
    /// (characters, digits or bytes).
    pub fn length(&self) -> usize {
        self.length
    }

    /// How the value is written.
    pub fn encoding(&self) -> Encoding {
        self.enc
    }

    /// How the length is written.
    pub fn prefix(&self) -> Prefix {
        self.prefix
    }

    /// The padding applied on pack to a value shorter than a fixed length.
    pub fn padding(&self) -> Option<Padding> {
        self.padding
    }

    /// The subfields, for a composite field.
    pub fn composite(&self) -> Option<&Composite> {
        self.composite.as_deref()
    }

    /// The semantic layer.
    pub fn semantic(&self) -> &Semantic {
        &self.semantic
    }

    /// Whether the value is bytes rather than text (binary and hex-as-ASCII encodings).
    pub fn is_binary(&self) -> bool {
        matches!(self.kind, FieldType::Binary)
            || matches!(self.enc, Encoding::Binary | Encoding::HexToAscii)
    }
}

/// The wire type of a field, in moov-io's vocabulary.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum FieldType {
    /// Any text.
    String,
    /// Digits only.
    Numeric,
    /// Bytes.
    Binary,
    /// The bitmap (field 1).
    Bitmap,
    /// Subfields (positional, bitmapped or BER-TLV).
    Composite,
    /// Hex digits.
    Hex,
    /// Track 2 data: PAN, separator, expiry, service code, discretionary data.
    Track2,
}

/// How a value is written on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Encoding {
    /// Text as bytes; lengths count characters.
    Ascii,
    /// EBCDIC code page 037; lengths count characters.
    Ebcdic037,
    /// EBCDIC code page 1047; lengths count characters.
    Ebcdic1047,
    /// Packed BCD, two digits a byte, an odd length padded on the left; lengths count digits.
    Bcd,
    /// Packed BCD with an odd length padded on the right; lengths count digits.
    Lbcd,
    /// Raw bytes; lengths count bytes.
    Binary,
    /// Bytes written as uppercase hex text (moov's `HexToASCII`); lengths count bytes.
    HexToAscii,
    /// Hex text written as the bytes it spells (moov's `ASCIIHexToBytes`); lengths count bytes.
    AsciiHexToBytes,
    /// Track 2 packed in nibbles: digits, `D` for the separator (`=` in the value), an odd
    /// length padded with `F` on the right; lengths count characters.
    Track2,
}

impl Encoding {
    /// Wire bytes for `units` units of value (characters, digits or bytes).
    pub(crate) fn wire_len(self, units: usize) -> Option<usize> {
        match self {
            Encoding::Bcd | Encoding::Lbcd | Encoding::Track2 => Some(units.div_ceil(2)),
            Encoding::HexToAscii => units.checked_mul(2),
            _ => Some(units),
        }
    }
}

/// How a length is written: its encoding and digit count (0 for a fixed length).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Prefix {
    /// How the length digits are written.
    pub kind: PrefixKind,
    /// 0 for a fixed length; 1 to 4 for `L` to `LLLL`.
    pub digits: u8,
}

impl Prefix {
    /// A fixed length (no prefix).
    pub const FIXED: Prefix = Prefix {
        kind: PrefixKind::Ascii,
        digits: 0,
    };

    /// Whether the length is fixed.
    pub fn is_fixed(self) -> bool {
        self.digits == 0
    }

    /// Wire bytes of the prefix.
    pub(crate) fn wire_len(self) -> usize {
        let d = usize::from(self.digits);
        match self.kind {
            PrefixKind::Ascii | PrefixKind::Ebcdic => d,
            PrefixKind::Bcd => d.div_ceil(2),
            PrefixKind::Binary => d,
            PrefixKind::Hex => d * 2,
        }
    }

    /// The largest length the prefix can write.
    pub(crate) fn max_len(self) -> usize {
        match self.kind {
            PrefixKind::Binary | PrefixKind::Hex => {
                (1usize << (8 * u32::from(self.digits).min(4))) - 1
            }
            _ => 10usize.pow(u32::from(self.digits)) - 1,
        }
    }
}

impl fmt::Display for Prefix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = match self.kind {
            PrefixKind::Ascii => "ASCII",
            PrefixKind::Bcd => "BCD",
            PrefixKind::Binary => "Binary",
            PrefixKind::Ebcdic => "EBCDIC",
            PrefixKind::Hex => "Hex",
        };
        if self.digits == 0 {
            write!(f, "{kind}.Fixed")
        } else {
            write!(f, "{kind}.{}", "L".repeat(usize::from(self.digits)))
        }
    }
}

/// The encoding of a length prefix.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum PrefixKind {
    /// Decimal digits in ASCII (`LL` is two bytes).
    Ascii,
    /// Decimal digits in packed BCD (`LL` is one byte, `LLL` two).
    Bcd,
    /// A big-endian unsigned number (`LL` is two bytes).
    Binary,
    /// Decimal digits in EBCDIC (`LL` is two bytes).
    Ebcdic,
    /// An uppercase hex number, two characters a digit (`LL` is four characters).
    Hex,
}

/// Padding of a fixed-length value on pack.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Padding {
    /// Which side the pad goes on.
    pub side: PadSide,
    /// The pad character (for BCD, the pad nibble's hex digit).
    pub pad: u8,
}

/// The side of a value that padding fills.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PadSide {
    /// Before the value.
    Left,
    /// After the value.
    Right,
}

/// The subfields of a composite field.
#[derive(Debug, Clone)]
pub struct Composite {
    pub(crate) layout: Layout,
    pub(crate) subfields: Vec<(SubKey, FieldSpec)>,
    /// Bytes of a bitmapped composite's own bitmap, and whether it is hex text.
    pub(crate) bitmap: Option<(usize, Encoding)>,
    pub(crate) unknown_tags: UnknownTags,
}

impl Composite {
    /// How the subfields are laid out.
    pub fn layout(&self) -> Layout {
        self.layout
    }

    /// The subfields the spec defines, in the spec's order.
    pub fn subfields(&self) -> impl Iterator<Item = (SubKey, &FieldSpec)> + '_ {
        self.subfields.iter().map(|(k, f)| (*k, f))
    }

    /// The subfield under `key`.
    pub fn subfield(&self, key: SubKey) -> Option<&FieldSpec> {
        self.subfields
            .iter()
            .find(|(k, _)| *k == key)
            .map(|(_, f)| f)
    }

    /// The subfield under `key` and its index, looked for at `hint` first (messages tend to
    /// carry subfields in the spec's order, so the one after the last found is likely).
    #[inline]
    pub(crate) fn subfield_near(&self, key: SubKey, hint: usize) -> Option<(usize, &FieldSpec)> {
        if let Some((k, f)) = self.subfields.get(hint)
            && *k == key
        {
            return Some((hint, f));
        }
        self.subfields
            .iter()
            .position(|(k, _)| *k == key)
            .map(|i| (i, &self.subfields[i].1))
    }

    /// What happens to a BER-TLV tag the spec does not define.
    pub fn unknown_tags(&self) -> UnknownTags {
        self.unknown_tags
    }
}

/// How a composite field's subfields are laid out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Layout {
    /// One after the other, in order, each with its own length.
    Positional,
    /// After their own bitmap, each present subfield in bit order.
    Bitmapped,
    /// BER-TLV elements (EMV, DE 55).
    Tlv,
}

/// What a BER-TLV composite does with a tag its spec does not define.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UnknownTags {
    /// Keep it, in its place, and write it back on pack.
    Preserve,
    /// Refuse the message.
    Reject,
}

/// The semantic layer of a field: meaning, sensitivity and usage.
#[derive(Debug, Clone, Default)]
pub struct Semantic {
    pub(crate) name: Option<String>,
    pub(crate) alias: Option<String>,
    pub(crate) sensitivity: Sensitivity,
    pub(crate) log_mask: bool,
    pub(crate) usage: Vec<UsageRule>,
    pub(crate) values_ref: Option<usize>,
}

impl Semantic {
    /// The field's name.
    pub fn name(&self) -> Option<&str> {
        self.name.as_deref()
    }

    /// The field's alias (`card.pan`).
    pub fn alias(&self) -> Option<&str> {
        self.alias.as_deref()
    }

    /// How sensitive the value is.
    pub fn sensitivity(&self) -> Sensitivity {
        self.sensitivity
    }

    /// Whether logs mask the value (always true for a classified field).
    pub fn log_mask(&self) -> bool {
        self.log_mask
    }

    /// Usage in a message of type `mti`: the first rule that names it, then the default rule
    /// (a rule with no MTI), else optional.
    pub fn usage(&self, mti: &str) -> Usage {
        self.usage
            .iter()
            .find(|r| r.mtis.iter().any(|m| m == mti))
            .or_else(|| self.usage.iter().find(|r| r.mtis.is_empty()))
            .map_or(Usage::Optional, |r| r.usage)
    }
}

/// How sensitive a field's value is (PCI DSS classes).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Sensitivity {
    /// Not sensitive.
    #[default]
    None,
    /// A primary account number: logs show the first 6 and last 4 digits.
    Pan,
    /// Cardholder data (EMV data, DE 55): logs show nothing.
    Chd,
    /// Sensitive authentication data (track data, PIN block, CVV): logs show nothing.
    Sad,
    /// Personal data: logs show nothing.
    Pii,
}

impl Sensitivity {
    /// The name used in specs (`pan`, `chd`, `sad`, `pii`, `none`).
    pub fn as_str(self) -> &'static str {
        match self {
            Sensitivity::None => "none",
            Sensitivity::Pan => "pan",
            Sensitivity::Chd => "chd",
            Sensitivity::Sad => "sad",
            Sensitivity::Pii => "pii",
        }
    }
}

/// Whether a field may appear in a message type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Usage {
    /// It must be present.
    Mandatory,
    /// It may be present.
    Optional,
    /// It must be absent.
    Forbidden,
}

/// One entry of a field's per-message matrix.
#[derive(Debug, Clone)]
pub(crate) struct UsageRule {
    /// Empty: the default rule.
    pub(crate) mtis: Vec<String>,
    pub(crate) usage: Usage,
}

/// A set of values under `enums`.
#[derive(Debug, Clone)]
pub(crate) struct ValueSet {
    pub(crate) name: String,
    pub(crate) closed: bool,
    pub(crate) values: Vec<(String, Option<String>, Option<String>)>,
}
