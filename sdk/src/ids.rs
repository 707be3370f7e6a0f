//! [`IdSource`]: where a gear gets message ids (an idgen generator or pool).

use std::fmt::Debug;

use idgen::{Clock, Generator, Pool};

/// Where a gear gets message ids: an idgen [`Generator`] or [`Pool`], behind one interface.
pub trait IdSource: Debug + Send + Sync + 'static {
    /// The next id.
    ///
    /// # Errors
    ///
    /// When the generator cannot mint (lease expired, clock before the epoch, time exhausted).
    fn next_id(&self) -> Result<fluxmsg::Id, idgen::Error>;
}

impl<C: Clock> IdSource for Generator<C> {
    fn next_id(&self) -> Result<fluxmsg::Id, idgen::Error> {
        self.next().map(|id| fluxmsg::Id::U64(id.get()))
    }
}

impl<C: Clock> IdSource for Pool<C> {
    fn next_id(&self) -> Result<fluxmsg::Id, idgen::Error> {
        self.next().map(|id| fluxmsg::Id::U64(id.get()))
    }
}
