//! Dotted paths over `data` maps: `iso8583.field.11` is `data → iso8583 → field → 11`.

use crate::{Error, Map, PathErrorKind, Value};

/// Whether `path` has an empty segment (or is empty).
pub(crate) fn has_empty_segment(path: &str) -> bool {
    path.is_empty()
        || path.starts_with('.')
        || path.ends_with('.')
        || path.as_bytes().windows(2).any(|w| w == b"..")
}

/// Checks that `path` is a dotted path `set_path` can take: not empty, no empty segment.
///
/// ```
/// use fluxmsg::{PathErrorKind, check_path};
///
/// assert!(check_path("iso8583.field.4").is_ok());
/// assert!(matches!(
///     check_path("a..b"),
///     Err(fluxmsg::Error::Path { kind: PathErrorKind::EmptySegment, .. })
/// ));
/// ```
///
/// # Errors
///
/// [`Error::Path`] with [`PathErrorKind::EmptySegment`].
pub fn check_path(path: &str) -> Result<(), Error> {
    if has_empty_segment(path) {
        return Err(Error::Path {
            path: path.to_owned(),
            kind: PathErrorKind::EmptySegment,
        });
    }
    Ok(())
}

fn conflict(path: &str, end: usize, found: &Value) -> Error {
    Error::Path {
        path: path.to_owned(),
        kind: PathErrorKind::KeyConflict {
            at: path[..end].to_owned(),
            found: found.type_name(),
        },
    }
}

impl Map<Value> {
    /// The value at a dotted path, or `None` if any segment is missing or crosses a non-map.
    ///
    /// An empty path or an empty segment finds nothing.
    ///
    /// ```
    /// use fluxmsg::{Map, Value};
    ///
    /// let mut data = Map::new();
    /// data.set_path("iso8583.field.11", "123456")?;
    /// assert_eq!(data.get_path("iso8583.field.11"), Some(&Value::from("123456")));
    /// assert_eq!(data.get_path("iso8583.field.12"), None);
    /// # Ok::<(), fluxmsg::Error>(())
    /// ```
    pub fn get_path(&self, path: &str) -> Option<&Value> {
        if has_empty_segment(path) {
            return None;
        }
        let mut parts = path.split('.');
        let mut cur = self.get(parts.next()?)?;
        for part in parts {
            cur = cur.as_map()?.get(part)?;
        }
        Some(cur)
    }

    /// The value at a dotted path, mutably.
    pub fn get_path_mut(&mut self, path: &str) -> Option<&mut Value> {
        if has_empty_segment(path) {
            return None;
        }
        let mut parts = path.split('.');
        let mut cur = self.get_mut(parts.next()?)?;
        for part in parts {
            match cur {
                Value::Map(m) => cur = m.get_mut(part)?,
                _ => return None,
            }
        }
        Some(cur)
    }

    /// Sets the value at a dotted path, creating intermediate maps; returns the value it
    /// replaces.
    ///
    /// # Errors
    ///
    /// [`PathErrorKind::EmptySegment`] for an empty path or segment, and
    /// [`PathErrorKind::KeyConflict`] when a prefix of the path holds a value that is not a
    /// map (the map is then left unchanged).
    ///
    /// ```
    /// use fluxmsg::{Error, Map, PathErrorKind};
    ///
    /// let mut data = Map::new();
    /// data.set_path("card.pan", "4111111111111111")?;
    /// let err = data.set_path("card.pan.last4", "1111").unwrap_err();
    /// assert!(matches!(err, Error::Path { kind: PathErrorKind::KeyConflict { .. }, .. }));
    /// # Ok::<(), fluxmsg::Error>(())
    /// ```
    pub fn set_path(
        &mut self,
        path: &str,
        value: impl Into<Value>,
    ) -> Result<Option<Value>, Error> {
        check_path(path)?;
        let Some((parents, last)) = path.rsplit_once('.') else {
            return Ok(self.insert(path, value.into()));
        };
        let mut map = self;
        let mut end = 0;
        for part in parents.split('.') {
            end += part.len();
            let child = map.get_or_insert_with(part, || Value::Map(Map::new()));
            map = match child {
                Value::Map(m) => m,
                other => return Err(conflict(path, end, other)),
            };
            end += 1;
        }
        Ok(map.insert(last, value.into()))
    }

    /// Removes the value at a dotted path and returns it; intermediate maps stay.
    pub fn remove_path(&mut self, path: &str) -> Option<Value> {
        if has_empty_segment(path) {
            return None;
        }
        match path.rsplit_once('.') {
            None => self.remove(path),
            Some((parent, last)) => match self.get_path_mut(parent)? {
                Value::Map(m) => m.remove(last),
                _ => None,
            },
        }
    }
}
