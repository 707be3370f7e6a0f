//! A text-keyed map kept in canonical CBOR key order.

use std::cmp::Ordering;
use std::fmt;

use crate::{Text, Value};

/// Orders text keys as RFC 8949's core deterministic encoding orders their encoded forms:
/// shorter keys first, then bytewise.
#[inline]
pub(crate) fn canonical_cmp(a: &str, b: &str) -> Ordering {
    a.len()
        .cmp(&b.len())
        .then_with(|| a.as_bytes().cmp(b.as_bytes()))
}

/// A map from text keys to `V`, kept sorted in canonical CBOR order (shorter keys first, then
/// bytewise), which is the order the encoder writes.
///
/// Lookups are binary searches; inserts keep the order. Maps in fluxMsgs are small (tens of
/// entries), where a sorted vector beats a tree or a hash map on every operation the codec
/// needs, and encoding it is a straight walk.
///
/// ```
/// use fluxmsg::{Map, Text};
///
/// let mut m: Map<Text> = Map::new();
/// m.insert("peer.ip", Text::from("10.0.0.7"));
/// m.insert("conn.id", Text::from("9f2c"));
/// assert_eq!(m.get("conn.id").map(Text::as_str), Some("9f2c"));
/// // Canonical order: equal lengths sort bytewise.
/// assert_eq!(m.keys().collect::<Vec<_>>(), ["conn.id", "peer.ip"]);
/// ```
#[derive(Clone, PartialEq)]
pub struct Map<V = Value> {
    entries: Vec<(Text, V)>,
}

impl<V> Default for Map<V> {
    fn default() -> Self {
        Map {
            entries: Vec::new(),
        }
    }
}

impl<V> Map<V> {
    /// An empty map.
    pub fn new() -> Self {
        Self::default()
    }

    /// An empty map with room for `n` entries.
    pub fn with_capacity(n: usize) -> Self {
        Map {
            entries: Vec::with_capacity(n),
        }
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether the map is empty.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    fn find(&self, key: &str) -> Result<usize, usize> {
        self.entries
            .binary_search_by(|(k, _)| canonical_cmp(k, key))
    }

    /// The value under `key`.
    pub fn get(&self, key: &str) -> Option<&V> {
        self.find(key).ok().map(|i| &self.entries[i].1)
    }

    /// The value under `key`, mutably.
    pub fn get_mut(&mut self, key: &str) -> Option<&mut V> {
        match self.find(key) {
            Ok(i) => Some(&mut self.entries[i].1),
            Err(_) => None,
        }
    }

    /// Whether `key` is present.
    pub fn contains_key(&self, key: &str) -> bool {
        self.find(key).is_ok()
    }

    /// Inserts `value` under `key`, returning the value it replaces.
    pub fn insert(&mut self, key: impl Into<Text>, value: V) -> Option<V> {
        let key = key.into();
        match self.find(&key) {
            Ok(i) => Some(std::mem::replace(&mut self.entries[i].1, value)),
            Err(i) => {
                self.entries.insert(i, (key, value));
                None
            }
        }
    }

    /// The value under `key`, inserting `make()` first if it is absent.
    pub fn get_or_insert_with(&mut self, key: &str, make: impl FnOnce() -> V) -> &mut V {
        let i = match self.find(key) {
            Ok(i) => i,
            Err(i) => {
                self.entries.insert(i, (Text::from(key), make()));
                i
            }
        };
        &mut self.entries[i].1
    }

    /// Removes `key`, returning its value.
    pub fn remove(&mut self, key: &str) -> Option<V> {
        self.find(key).ok().map(|i| self.entries.remove(i).1)
    }

    /// Removes every entry.
    pub fn clear(&mut self) {
        self.entries.clear();
    }

    /// Entries in canonical order.
    pub fn iter(&self) -> Iter<'_, V> {
        Iter(self.entries.iter())
    }

    /// Keys in canonical order.
    pub fn keys(&self) -> impl ExactSizeIterator<Item = &str> + '_ {
        self.entries.iter().map(|(k, _)| k.as_str())
    }

    /// Values in canonical key order.
    pub fn values(&self) -> impl ExactSizeIterator<Item = &V> + '_ {
        self.entries.iter().map(|(_, v)| v)
    }

    /// Values in canonical key order, mutably.
    pub fn values_mut(&mut self) -> impl ExactSizeIterator<Item = &mut V> + '_ {
        self.entries.iter_mut().map(|(_, v)| v)
    }
}

/// A key appeared twice in a map being built.
#[derive(Debug)]
pub(crate) struct Duplicate;

/// Builds a [`Map`] from entries in any order, refusing duplicate keys.
///
/// Entries that arrive in canonical order (what every canonical encoder writes) cost one
/// comparison each; out-of-order input is sorted once at the end. Every decoder of the
/// crate builds its maps with this.
pub(crate) struct Builder<V> {
    map: Map<V>,
    sorted: bool,
}

impl<V> Builder<V> {
    pub(crate) fn with_capacity(n: usize) -> Self {
        Builder {
            map: Map::with_capacity(n),
            sorted: true,
        }
    }

    #[inline]
    pub(crate) fn push(&mut self, key: Text, value: V) -> Result<(), Duplicate> {
        if let Some((last, _)) = self.map.entries.last() {
            match canonical_cmp(last, &key) {
                Ordering::Less => {}
                Ordering::Equal => return Err(Duplicate),
                Ordering::Greater => self.sorted = false,
            }
        }
        self.map.entries.push((key, value));
        Ok(())
    }

    pub(crate) fn finish(mut self) -> Result<Map<V>, Duplicate> {
        if !self.sorted {
            let entries = &mut self.map.entries;
            entries.sort_by(|a, b| canonical_cmp(&a.0, &b.0));
            if entries.windows(2).any(|w| w[0].0 == w[1].0) {
                return Err(Duplicate);
            }
        }
        Ok(self.map)
    }
}

impl<V: fmt::Debug> fmt::Debug for Map<V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map().entries(self.iter()).finish()
    }
}

/// Iterator over a [`Map`]'s entries, in canonical order.
#[derive(Debug, Clone)]
pub struct Iter<'a, V>(std::slice::Iter<'a, (Text, V)>);

impl<'a, V> Iterator for Iter<'a, V> {
    type Item = (&'a str, &'a V);

    #[inline]
    fn next(&mut self) -> Option<Self::Item> {
        self.0.next().map(|(k, v)| (k.as_str(), v))
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        self.0.size_hint()
    }
}

impl<V> ExactSizeIterator for Iter<'_, V> {}

impl<'a, V> IntoIterator for &'a Map<V> {
    type Item = (&'a str, &'a V);
    type IntoIter = Iter<'a, V>;

    fn into_iter(self) -> Self::IntoIter {
        self.iter()
    }
}

impl<V> IntoIterator for Map<V> {
    type Item = (Text, V);
    type IntoIter = std::vec::IntoIter<(Text, V)>;

    fn into_iter(self) -> Self::IntoIter {
        self.entries.into_iter()
    }
}

impl<K: Into<Text>, V> FromIterator<(K, V)> for Map<V> {
    fn from_iter<I: IntoIterator<Item = (K, V)>>(iter: I) -> Self {
        let mut m = Map::new();
        m.extend(iter);
        m
    }
}

impl<K: Into<Text>, V> Extend<(K, V)> for Map<V> {
    /// As [`Map::insert`] for each entry in turn (a later value under a key wins), in one
    /// sort rather than one ordered insert each, so that building a map of `n` entries from
    /// outside data costs `O(n log n)`, not `O(n²)`.
    fn extend<I: IntoIterator<Item = (K, V)>>(&mut self, iter: I) {
        let before = self.entries.len();
        self.entries
            .extend(iter.into_iter().map(|(k, v)| (k.into(), v)));
        if self.entries.len() == before {
            return;
        }
        // A stable sort keeps equal keys in arrival order; of each run the last one stays.
        self.entries.sort_by(|a, b| canonical_cmp(&a.0, &b.0));
        self.entries.dedup_by(|later, kept| {
            if later.0 == kept.0 {
                std::mem::swap(later, kept);
                true
            } else {
                false
            }
        });
    }
}
