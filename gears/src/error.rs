/// What the factory and the catalog refuse.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// No gear type of that name is registered.
    #[error("unknown gear type {gear_type:?} (known: {known})")]
    UnknownType {
        /// The type asked for.
        gear_type: String,
        /// The registered types, comma-separated.
        known: String,
    },
    /// A gear type of that name is already registered.
    #[error("gear type {0:?} is already registered")]
    Duplicate(String),
    /// The gear contract refused something: a manifest, a schema, or a gear's configuration
    /// ([`sdk::Error::Config`], every problem with its field path).
    #[error(transparent)]
    Gear(#[from] sdk::Error),
}
