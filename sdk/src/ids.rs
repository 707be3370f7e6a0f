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

    /// Appends `n` more ids to `out` (for a batch of messages); a source that can mint
    /// several at once (as idgen's, with one clock reading per run) does.
    ///
    /// # Errors
    ///
    /// As [`IdSource::next_id`]; the ids minted before the error are in `out`.
    fn next_ids(&self, n: usize, out: &mut Vec<fluxmsg::Id>) -> Result<(), idgen::Error> {
        out.reserve(n);
        for _ in 0..n {
            out.push(self.next_id()?);
        }
        Ok(())
    }
}

/// Collects idgen's ids as fluxMsg ids.
struct AsFluxIds<'a>(&'a mut Vec<fluxmsg::Id>);

impl Extend<idgen::Id> for AsFluxIds<'_> {
    fn extend<I: IntoIterator<Item = idgen::Id>>(&mut self, ids: I) {
        self.0
            .extend(ids.into_iter().map(|id| fluxmsg::Id::U64(id.get())));
    }
}

impl<C: Clock> IdSource for Generator<C> {
    fn next_id(&self) -> Result<fluxmsg::Id, idgen::Error> {
        self.next().map(|id| fluxmsg::Id::U64(id.get()))
    }

    fn next_ids(&self, n: usize, out: &mut Vec<fluxmsg::Id>) -> Result<(), idgen::Error> {
        out.reserve(n);
        Generator::next_ids(self, n, &mut AsFluxIds(out))
    }
}

impl<C: Clock> IdSource for Pool<C> {
    fn next_id(&self) -> Result<fluxmsg::Id, idgen::Error> {
        self.next().map(|id| fluxmsg::Id::U64(id.get()))
    }

    fn next_ids(&self, n: usize, out: &mut Vec<fluxmsg::Id>) -> Result<(), idgen::Error> {
        out.reserve(n);
        Pool::next_ids(self, n, &mut AsFluxIds(out))
    }
}
