//! Reading many ids by position in one go, for the covered-id iterators.
//!
//! [`IdMap::try_id`] finds the map's body anew on each call and validates
//! the id as UTF-8 with the general routine, which for short ids costs more
//! than the read itself. A cursor finds the body once and takes ASCII ids
//! (the usual case) after one word-wise ASCII test. It makes every check
//! `try_id` makes, in the same order, so a damaged map faults the same way.

use super::{Fault, IdMap, Inner};
use crate::Result;

/// Reads ids of one map by position, with the body found once.
pub(crate) struct IdCursor<'a> {
    inner: &'a Inner,
    /// The body, or the fault that finding it raised.
    body: std::result::Result<&'a [u8], Fault>,
}

impl IdMap {
    /// A cursor over this map's ids. O(1).
    pub(crate) fn cursor(&self) -> IdCursor<'_> {
        let inner = &*self.inner;
        IdCursor {
            inner,
            body: inner.body(),
        }
    }
}

impl<'a> IdCursor<'a> {
    /// The id at `index`: as [`IdMap::try_id`].
    #[inline]
    pub(crate) fn try_id(&self, index: u32) -> Result<Option<&'a str>> {
        let inner = self.inner;
        let body = self.body.map_err(|Fault| inner.error())?;
        let i = index as usize;
        if i >= inner.layout.count {
            return Ok(None);
        }
        let bytes = inner.id_bytes(body, i).map_err(|Fault| inner.error())?;
        if bytes.is_ascii() {
            // SAFETY: every byte is below 0x80, and a sequence of ASCII
            // bytes is valid UTF-8, whatever the file holds.
            return Ok(Some(unsafe { std::str::from_utf8_unchecked(bytes) }));
        }
        match std::str::from_utf8(bytes) {
            Ok(s) => Ok(Some(s)),
            Err(e) => {
                inner.fault(|| format!("id map: id {i} is not valid UTF-8: {e}"));
                Err(inner.error())
            }
        }
    }
}
