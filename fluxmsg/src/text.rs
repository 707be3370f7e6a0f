//! The string type of map keys, metadata and text values.

use std::borrow::Borrow;
use std::fmt;
use std::ops::Deref;

use compact_str::CompactString;

/// A UTF-8 string that keeps up to 24 bytes inline, without a heap allocation.
///
/// Nearly every key and value in a fluxMsg is that short (`iso8583.field.11`, `000000010000`,
/// `conn.id`), so decoding a message allocates for its maps, not for each of its strings.
/// `Text` reads like a `&str` (it derefs to one) and converts from and into `String`.
///
/// ```
/// use fluxmsg::Text;
///
/// let t = Text::from("0100");
/// assert_eq!(t, "0100");
/// assert_eq!(t.len(), 4);
/// let s: String = t.into();
/// assert_eq!(s, "0100");
/// ```
#[derive(Clone, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Text(CompactString);

impl Text {
    /// An empty text.
    pub const fn empty() -> Self {
        Text(CompactString::const_new(""))
    }

    /// The text as a `&str`.
    #[inline]
    pub fn as_str(&self) -> &str {
        self.0.as_str()
    }

    /// The text as a `String`.
    pub fn into_string(self) -> String {
        self.0.into_string()
    }

    /// Appends a string.
    pub fn push_str(&mut self, s: &str) {
        self.0.push_str(s);
    }

    /// Shortens the text to at most `max_len` bytes, at the last character boundary that
    /// fits (so it may end up shorter); a text within the limit is left as it is.
    ///
    /// ```
    /// use fluxmsg::Text;
    ///
    /// let mut t = Text::from("né");
    /// t.shorten(2);
    /// assert_eq!(t, "n");
    /// ```
    pub fn shorten(&mut self, max_len: usize) {
        if self.0.len() > max_len {
            let end = self.0.floor_char_boundary(max_len);
            self.0.truncate(end);
        }
    }
}

impl Deref for Text {
    type Target = str;

    #[inline]
    fn deref(&self) -> &str {
        self.0.as_str()
    }
}

impl AsRef<str> for Text {
    fn as_ref(&self) -> &str {
        self.as_str()
    }
}

impl Borrow<str> for Text {
    fn borrow(&self) -> &str {
        self.as_str()
    }
}

impl fmt::Debug for Text {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

impl fmt::Display for Text {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl From<&str> for Text {
    #[inline]
    fn from(s: &str) -> Self {
        Text(CompactString::new(s))
    }
}

impl From<&String> for Text {
    fn from(s: &String) -> Self {
        Text(CompactString::new(s))
    }
}

impl From<String> for Text {
    fn from(s: String) -> Self {
        Text(CompactString::from(s))
    }
}

impl From<&Text> for Text {
    fn from(s: &Text) -> Self {
        s.clone()
    }
}

impl From<Text> for String {
    fn from(t: Text) -> Self {
        t.into_string()
    }
}

impl PartialEq<str> for Text {
    fn eq(&self, other: &str) -> bool {
        self.as_str() == other
    }
}

impl PartialEq<&str> for Text {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

impl PartialEq<String> for Text {
    fn eq(&self, other: &String) -> bool {
        self.as_str() == other
    }
}

impl PartialEq<Text> for str {
    fn eq(&self, other: &Text) -> bool {
        self == other.as_str()
    }
}

impl PartialEq<Text> for &str {
    fn eq(&self, other: &Text) -> bool {
        *self == other.as_str()
    }
}

impl PartialEq<Text> for String {
    fn eq(&self, other: &Text) -> bool {
        self == other.as_str()
    }
}

impl FromIterator<char> for Text {
    fn from_iter<I: IntoIterator<Item = char>>(iter: I) -> Self {
        Text(iter.into_iter().collect())
    }
}
