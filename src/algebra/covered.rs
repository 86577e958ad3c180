//! The covered ids of a scope: iterating the set bits and naming them.

use crate::error::Result;
use crate::idmap::{IdCursor, IdMap};
use crate::scope::Scope;
use std::iter::FusedIterator;

use super::Coverage;

/// The positions of the set bits of a bitset's words, in increasing order;
/// see [`Scope::covered_node_indices`].
///
/// Invariant: yields only positions below the bitset's length, even if the
/// last word carries bits past it.
#[derive(Clone, Debug)]
pub struct CoveredIndices<'a> {
    words: &'a [u64],
    /// Index of the word after `cur`'s.
    next: usize,
    /// The remaining set bits of the current word.
    cur: u64,
    /// Bit position of bit 0 of `cur`.
    base: usize,
    /// The bitset's length in bits.
    len: usize,
}

impl<'a> CoveredIndices<'a> {
    /// The set bits below `len` of `words`.
    pub(crate) fn new(words: &'a [u64], len: usize) -> CoveredIndices<'a> {
        let words = &words[..words.len().min(len.div_ceil(64))];
        CoveredIndices {
            words,
            next: 0,
            cur: 0,
            base: 0,
            len,
        }
    }
}

impl Iterator for CoveredIndices<'_> {
    type Item = u32;

    #[inline]
    fn next(&mut self) -> Option<u32> {
        while self.cur == 0 {
            let w = *self.words.get(self.next)?;
            self.base = self.next * 64;
            self.next += 1;
            self.cur = w;
        }
        let i = self.base + self.cur.trailing_zeros() as usize;
        self.cur &= self.cur - 1;
        match u32::try_from(i) {
            Ok(i) if (i as usize) < self.len => Some(i),
            _ => {
                // Bits past the end (only a damaged file has them), or past
                // the largest position a mapping has: stop.
                self.cur = 0;
                self.next = self.words.len();
                None
            }
        }
    }
}

impl FusedIterator for CoveredIndices<'_> {}

/// The ids of the set bits of a scope, in index order, as `&str`; see
/// [`Scope::covered_node_ids`].
///
/// If the mapping fails a check while being read (a damaged file), the
/// iterator ends early; [`CoveredIds::failed`] then says so (the failure is
/// logged too). Use [`TryCoveredIds`] to get the error itself.
#[derive(Clone, Debug)]
pub struct CoveredIds<'a> {
    inner: TryCoveredIds<'a>,
    failed: bool,
}

impl CoveredIds<'_> {
    /// True once the iterator ended early because the mapping failed a check.
    pub fn failed(&self) -> bool {
        self.failed
    }
}

impl<'a> Iterator for CoveredIds<'a> {
    type Item = &'a str;

    #[inline]
    fn next(&mut self) -> Option<&'a str> {
        if self.failed {
            return None;
        }
        match self.inner.next()? {
            Ok(id) => Some(id),
            Err(_) => {
                self.failed = true;
                None
            }
        }
    }
}

impl FusedIterator for CoveredIds<'_> {}

/// The ids of the set bits of a scope, each as `Ok(id)`, or `Err` for an id
/// whose check failed; see [`Scope::try_covered_node_ids`]. Once one item is
/// `Err` the iterator ends.
pub struct TryCoveredIds<'a> {
    bits: CoveredIndices<'a>,
    map: &'a IdMap,
    ids: IdCursor<'a>,
    done: bool,
}

impl Clone for TryCoveredIds<'_> {
    fn clone(&self) -> Self {
        TryCoveredIds {
            bits: self.bits.clone(),
            map: self.map,
            ids: self.map.cursor(),
            done: self.done,
        }
    }
}

impl std::fmt::Debug for TryCoveredIds<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TryCoveredIds")
            .field("bits", &self.bits)
            .field("map", self.map)
            .field("done", &self.done)
            .finish()
    }
}

impl<'a> Iterator for TryCoveredIds<'a> {
    type Item = Result<&'a str>;

    #[inline]
    fn next(&mut self) -> Option<Result<&'a str>> {
        if self.done {
            return None;
        }
        let i = self.bits.next()?;
        match self.ids.try_id(i) {
            Ok(Some(id)) => Some(Ok(id)),
            Ok(None) => {
                self.done = true;
                Some(Err(crate::Error::LengthMismatch {
                    what: "covered ids",
                    bits: u64::from(i) + 1,
                    ids: self.map.len() as u64,
                }))
            }
            Err(e) => {
                self.done = true;
                Some(Err(e))
            }
        }
    }
}

impl FusedIterator for TryCoveredIds<'_> {}

fn try_ids<'a>(words: &'a [u64], bits: usize, map: &'a IdMap) -> TryCoveredIds<'a> {
    TryCoveredIds {
        bits: CoveredIndices::new(words, bits),
        map,
        ids: map.cursor(),
        done: false,
    }
}

/// The ids a result covers, named through the inputs' mappings.
impl Coverage {
    /// The ids of the nodes in the result, in index order, named by
    /// `node_ids`: the node mapping of the scopes it was computed from
    /// (`scope.node_ids()`). If the result has more bits than `node_ids`
    /// has ids (another mapping was passed), the iterator ends at the first
    /// set bit past the mapping's end and [`CoveredIds::failed`] is true.
    ///
    /// ```
    /// # fn main() -> scopecache::Result<()> {
    /// use scopecache::{Coverage, IdMap};
    /// use bitvec::prelude::*;
    /// let ids = IdMap::from_ids(["a", "b", "c"])?;
    /// let c = Coverage { nodes: bitvec![u64, Lsb0; 0, 1, 1], links: BitVec::new() };
    /// assert_eq!(c.covered_node_ids(&ids).collect::<Vec<_>>(), ["b", "c"]);
    /// # Ok(()) }
    /// ```
    pub fn covered_node_ids<'a>(&'a self, node_ids: &'a IdMap) -> CoveredIds<'a> {
        CoveredIds {
            inner: try_ids(self.nodes.as_raw_slice(), self.nodes.len(), node_ids),
            failed: false,
        }
    }

    /// The ids of the links in the result, named by `link_ids`; see
    /// [`covered_node_ids`](Coverage::covered_node_ids).
    pub fn covered_link_ids<'a>(&'a self, link_ids: &'a IdMap) -> CoveredIds<'a> {
        CoveredIds {
            inner: try_ids(self.links.as_raw_slice(), self.links.len(), link_ids),
            failed: false,
        }
    }
}

/// Covered ids and membership, for any scope. These read the bitset words
/// and the mapping in place; none allocates.
impl Scope {
    /// The positions of the covered nodes, in increasing order.
    ///
    /// Cost: a `trailing_zeros` and a clear per set bit, one load per word.
    ///
    /// ```
    /// # fn main() -> scopecache::Result<()> {
    /// # use scopecache::{CacheConfig, IdMap, ScopeCache, ScopeData};
    /// # use bitvec::prelude::*;
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let cache = ScopeCache::open(dir.path().join("c"), CacheConfig::default())?;
    /// # let ids = IdMap::from_ids(["a", "b", "c"])?;
    /// # let bits = bitvec![u64, Lsb0; 1, 0, 1];
    /// # let attributes = serde_json::Map::new();
    /// # cache.put("k", &ScopeData { nodes: &bits, links: &bits, node_ids: &ids, link_ids: &ids, attributes: &attributes })?;
    /// let scope = cache.get("k")?.expect("stored");
    /// assert_eq!(scope.covered_node_indices().collect::<Vec<_>>(), [0, 2]);
    /// # Ok(()) }
    /// ```
    pub fn covered_node_indices(&self) -> CoveredIndices<'_> {
        CoveredIndices::new(self.node_words(), self.nodes().len())
    }

    /// The positions of the covered links; see
    /// [`covered_node_indices`](Scope::covered_node_indices).
    pub fn covered_link_indices(&self) -> CoveredIndices<'_> {
        CoveredIndices::new(self.link_words(), self.links().len())
    }

    /// The ids of the covered nodes, in index order.
    ///
    /// Cost per id: finding the next set bit, then the reads of
    /// [`IdMap::id`] (the offsets pair and the string, both sequential) and
    /// an ASCII check (a full UTF-8 check for ids that are not ASCII). If the mapping is found damaged
    /// the iterator ends early and [`CoveredIds::failed`] is true; see
    /// [`try_covered_node_ids`](Scope::try_covered_node_ids) for the error.
    ///
    /// ```
    /// # fn main() -> scopecache::Result<()> {
    /// # use scopecache::{CacheConfig, IdMap, ScopeCache, ScopeData};
    /// # use bitvec::prelude::*;
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let cache = ScopeCache::open(dir.path().join("c"), CacheConfig::default())?;
    /// # let ids = IdMap::from_ids(["a", "b", "c"])?;
    /// # let bits = bitvec![u64, Lsb0; 1, 0, 1];
    /// # let attributes = serde_json::Map::new();
    /// # cache.put("k", &ScopeData { nodes: &bits, links: &bits, node_ids: &ids, link_ids: &ids, attributes: &attributes })?;
    /// let scope = cache.get("k")?.expect("stored");
    /// assert_eq!(scope.covered_node_ids().collect::<Vec<_>>(), ["a", "c"]);
    /// # Ok(()) }
    /// ```
    pub fn covered_node_ids(&self) -> CoveredIds<'_> {
        CoveredIds {
            inner: self.try_covered_node_ids(),
            failed: false,
        }
    }

    /// The ids of the covered links; see
    /// [`covered_node_ids`](Scope::covered_node_ids).
    pub fn covered_link_ids(&self) -> CoveredIds<'_> {
        CoveredIds {
            inner: self.try_covered_link_ids(),
            failed: false,
        }
    }

    /// The ids of the covered nodes, each as `Ok(id)`, or one final
    /// `Err(Error::Corrupt)` if the mapping fails a check.
    pub fn try_covered_node_ids(&self) -> TryCoveredIds<'_> {
        try_ids(self.node_words(), self.nodes().len(), self.node_ids())
    }

    /// The ids of the covered links; see
    /// [`try_covered_node_ids`](Scope::try_covered_node_ids).
    pub fn try_covered_link_ids(&self) -> TryCoveredIds<'_> {
        try_ids(self.link_words(), self.links().len(), self.link_ids())
    }

    /// Whether node `id` is covered: `None` when `id` is not in the node
    /// mapping (or the mapping is found damaged).
    ///
    /// Cost: one [`IdMap::index_of`] and a bit test.
    ///
    /// ```
    /// # fn main() -> scopecache::Result<()> {
    /// # use scopecache::{CacheConfig, IdMap, ScopeCache, ScopeData};
    /// # use bitvec::prelude::*;
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let cache = ScopeCache::open(dir.path().join("c"), CacheConfig::default())?;
    /// # let ids = IdMap::from_ids(["a", "b", "c"])?;
    /// # let bits = bitvec![u64, Lsb0; 1, 0, 1];
    /// # let attributes = serde_json::Map::new();
    /// # cache.put("k", &ScopeData { nodes: &bits, links: &bits, node_ids: &ids, link_ids: &ids, attributes: &attributes })?;
    /// let scope = cache.get("k")?.expect("stored");
    /// assert_eq!(scope.node_covered("a"), Some(true));
    /// assert_eq!(scope.node_covered("b"), Some(false));
    /// assert_eq!(scope.node_covered("zz"), None);
    /// # Ok(()) }
    /// ```
    pub fn node_covered(&self, id: &str) -> Option<bool> {
        let i = self.node_ids().index_of(id)?;
        self.nodes().get(i as usize).map(|b| *b)
    }

    /// Whether link `id` is covered; see [`node_covered`](Scope::node_covered).
    pub fn link_covered(&self, id: &str) -> Option<bool> {
        let i = self.link_ids().index_of(id)?;
        self.links().get(i as usize).map(|b| *b)
    }
}
