//! An error as a user reads it: the error and each of its causes.

use std::error::Error;

/// The error and each cause below it, top first: one entry per level of
/// [`source`](Error::source).
pub fn causes(err: &(dyn Error + 'static)) -> Vec<String> {
    let mut levels = vec![err.to_string()];
    let mut cause = err.source();
    while let Some(e) = cause {
        levels.push(e.to_string());
        cause = e.source();
    }
    levels
}

/// The error and its causes joined by `": "`, as anyhow's `{:#}` prints them.
///
/// ```
/// let io = std::io::Error::other("disk full");
/// assert_eq!(testkit::chain(&io), "disk full");
/// ```
pub fn chain(err: &(dyn Error + 'static)) -> String {
    causes(err).join(": ")
}
