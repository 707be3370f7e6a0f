//! The `route` gear (work in progress).

use crate::{Error, Factory};

pub(crate) fn register(factory: &mut Factory) -> Result<(), Error> {
    let _ = factory;
    Ok(())
}
