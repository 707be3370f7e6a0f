//! The crate's one error type.

/// Everything that can go wrong in this crate.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A name cannot become a subject token.
    #[error("invalid {what} `{name}`: {reason}")]
    InvalidName {
        /// What the name names (`rack name`, `gear name`, `port`, …).
        what: &'static str,
        /// The name as given (shown escaped when printed with `{:?}`).
        name: String,
        /// Why it is refused.
        reason: &'static str,
    },
}
