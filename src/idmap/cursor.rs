//! Reading many ids by position in one go, for the covered-id iterators.
//!
//! [`IdMap::try_id`] finds the map's body anew on each call; a cursor finds
//! it once. It reads through the same [`Inner::id_str`], so a damaged map
//! faults the same way.

use super::sections::Sections;
use super::{Fault, IdMap, Inner};
use crate::Result;

/// Reads ids of one map by position, with the body found once.
pub(crate) struct IdCursor<'a> {
    inner: &'a Inner,
    /// The body and whether the map was ready (see [`Inner::view`]), or the
    /// fault that finding it raised.
    view: std::result::Result<(&'a Sections<'a>, bool), Fault>,
}

impl IdMap {
    /// A cursor over this map's ids. O(1).
    pub(crate) fn cursor(&self) -> IdCursor<'_> {
        let inner = &*self.inner;
        IdCursor {
            inner,
            view: inner.view(),
        }
    }
}

impl<'a> IdCursor<'a> {
    /// The id at `index`: as [`IdMap::try_id`].
    #[inline]
    pub(crate) fn try_id(&self, index: u32) -> Result<Option<&'a str>> {
        let inner = self.inner;
        self.view
            .and_then(|(body, ready)| inner.id_str(body, ready, index))
            .map_err(|Fault| inner.error())
    }
}
