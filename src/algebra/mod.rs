//! Coverage algebra: union, intersection, difference and per-bit counts of
//! stored scopes, computed word by word over their mapped bitsets.
//!
//! A scope's bit `i` means "id `i` of its mapping is covered", so two scopes
//! can be combined word by word only when their bits mean the same ids:
//! when they share one node mapping and one link mapping. Scopes of one
//! graph stored in one cache do (the cache stores a mapping once and every
//! scope with the same ids uses it), and the check is two comparisons per
//! scope: the mappings' lengths and content digests
//! ([`IdMap::digest`](crate::IdMap::digest), xxh3-128 of the mapping).
//!
//! **Scopes of different mappings are refused** with
//! [`Error::MappingMismatch`](crate::Error::MappingMismatch), before any
//! word is read. Aligning them by id would cost a hash lookup per covered id
//! (about 300 ns each on a mapped 4M-id map, against well under a nanosecond
//! per 64 bits here) and would have to decide what an id known to only one
//! mapping means; a caller who wants that can look the ids of
//! [`Scope::covered_node_ids`](crate::Scope::covered_node_ids) up in the
//! other mapping.
//!
//! # Cost
//!
//! The inputs are read in place from the mapped file, never copied. Union,
//! intersection and difference read every input word once and write each
//! output word once per four inputs into a block that stays in the L1
//! cache; [`counts`] adds one table load and one 64-bit add per input byte.
//! Large operations (more than about 128 Ki input words) are split over the
//! machine's cores with scoped threads, each taking a contiguous range of
//! words. The only allocations are the results.
//!
//! ```
//! # fn main() -> scopecache::Result<()> {
//! use scopecache::{algebra, CacheConfig, Coverage, IdMap, ScopeCache, ScopeData};
//! use bitvec::prelude::*;
//! let dir = tempfile::tempdir().unwrap();
//! let cache = ScopeCache::open(dir.path().join("c.scope"), CacheConfig::default())?;
//! let ids = IdMap::from_ids(["n0", "n1", "n2", "n3"])?;
//! let attrs = serde_json::Map::new();
//! for (key, bits) in [("a", bitvec![u64, Lsb0; 1, 1, 0, 0]), ("b", bitvec![u64, Lsb0; 0, 1, 1, 0])] {
//!     cache.put(key, &ScopeData { nodes: &bits, links: &bits, node_ids: &ids, link_ids: &ids,
//!                                 attributes: &attrs })?;
//! }
//! let (a, b) = (cache.get("a")?.expect("stored"), cache.get("b")?.expect("stored"));
//! let u: Coverage = algebra::union(&[&a, &b])?;
//! assert_eq!(u.nodes, bitvec![u64, Lsb0; 1, 1, 1, 0]);
//! assert_eq!(algebra::intersection(&[&a, &b])?.nodes, bitvec![u64, Lsb0; 0, 1, 0, 0]);
//! assert_eq!(algebra::difference(&a, &b)?.nodes, bitvec![u64, Lsb0; 1, 0, 0, 0]);
//! assert_eq!(algebra::counts(&[&a, &b])?.nodes, [1, 2, 1, 0]);
//! assert_eq!(a.covered_node_ids().collect::<Vec<_>>(), ["n0", "n1"]);
//!
//! // Stored back, the result shares the inputs' mappings: none is written again.
//! cache.put_coverage("a-or-b", &u, &a, &attrs)?;
//! assert_eq!(cache.stats()?.stored_mappings, 1);
//! # Ok(()) }
//! ```

mod alloc;
mod count;
mod covered;
mod operands;
mod put;
mod split;
mod words;

pub use covered::{CoveredIds, CoveredIndices, TryCoveredIds};

use crate::error::Result;
use crate::scope::Scope;
use bitvec::prelude::{BitVec, Lsb0};
use operands::{operands, Side};
use words::Op;

/// The result of a set operation over scopes: which nodes and which links
/// it holds, as bitsets indexed like the inputs' mappings.
///
/// Invariant, for results of this module: `nodes.len()` and `links.len()`
/// are the lengths of the inputs' node and link mappings, and no bit past
/// the end is set in the last storage word. Store it back with
/// [`ScopeCache::put_coverage`](crate::ScopeCache::put_coverage).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Coverage {
    /// Bit i: node `node_ids().id(i)` of the inputs is in the result.
    pub nodes: BitVec<u64, Lsb0>,
    /// Bit i: link `link_ids().id(i)` of the inputs is in the result.
    pub links: BitVec<u64, Lsb0>,
}

/// How many of the input scopes cover each node and each link; see
/// [`counts`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Counts {
    /// `nodes[i]`: the number of inputs with node bit i set.
    pub nodes: Vec<u32>,
    /// `links[i]`: the number of inputs with link bit i set.
    pub links: Vec<u32>,
}

impl Counts {
    /// The `n` least covered nodes as `(index, count)`, by count and then by
    /// index; fewer if there are fewer nodes. See [`least`].
    pub fn least_covered_nodes(&self, n: usize) -> Vec<(u32, u32)> {
        least(&self.nodes, n)
    }

    /// The `n` least covered links as `(index, count)`; see [`least`].
    pub fn least_covered_links(&self, n: usize) -> Vec<(u32, u32)> {
        least(&self.links, n)
    }
}

/// The `n` smallest entries of `counts` as `(index, count)`, ordered by count
/// and then by index (so ties go to the lower index); all of them, so
/// ordered, when `n >= counts.len()`.
///
/// Cost: one pass, O(len * log n) at worst and O(len) when most entries are
/// not among the smallest; memory O(n).
///
/// ```
/// assert_eq!(scopecache::algebra::least(&[3, 0, 2, 0, 5], 3), [(1, 0), (3, 0), (2, 2)]);
/// ```
pub fn least(counts: &[u32], n: usize) -> Vec<(u32, u32)> {
    use std::collections::BinaryHeap;
    if n == 0 {
        return Vec::new();
    }
    // A max-heap of the n smallest (count, index) seen so far.
    let mut heap: BinaryHeap<(u32, u32)> = BinaryHeap::with_capacity(n.min(counts.len()) + 1);
    for (i, &c) in counts.iter().enumerate() {
        let item = (c, i as u32);
        if heap.len() < n {
            heap.push(item);
        } else if heap.peek().is_some_and(|top| item < *top) {
            heap.pop();
            heap.push(item);
        }
    }
    heap.into_sorted_vec().into_iter().map(|(c, i)| (i, c)).collect()
}

fn bits_of(side: &Side<'_>, op: Op) -> BitVec<u64, Lsb0> {
    let words = words::combine(op, &side.inputs, side.words, side.bits);
    let mut v = BitVec::from_vec(words);
    v.truncate(side.bits);
    v
}

fn combine(op: Op, name: &'static str, scopes: &[&Scope]) -> Result<Coverage> {
    let o = operands(name, scopes)?;
    Ok(Coverage {
        nodes: bits_of(&o.nodes, op),
        links: bits_of(&o.links, op),
    })
}

/// The nodes and links covered by any of `scopes`: the bitwise OR.
///
/// Errors, before any word is read: [`Error::NoScopes`](crate::Error::NoScopes)
/// for an empty slice, [`Error::MappingMismatch`](crate::Error::MappingMismatch)
/// when the scopes do not share their node and link mappings,
/// [`Error::LengthMismatch`](crate::Error::LengthMismatch) for a scope whose
/// bitset is not as long as its mapping (only a damaged file has one).
///
/// Cost: reads every input word once, in place; writes one result. Uses
/// every core for large inputs. See the [module documentation](self).
pub fn union(scopes: &[&Scope]) -> Result<Coverage> {
    combine(Op::Or, "union", scopes)
}

/// The nodes and links covered by every one of `scopes`: the bitwise AND.
/// Errors and cost as [`union`].
pub fn intersection(scopes: &[&Scope]) -> Result<Coverage> {
    combine(Op::And, "intersection", scopes)
}

/// The nodes and links covered by `a` and not by `b`: `a AND NOT b`.
/// Errors and cost as [`union`].
pub fn difference(a: &Scope, b: &Scope) -> Result<Coverage> {
    combine(Op::AndNot, "difference", &[a, b])
}

/// The nodes and links covered by `first` and by none of `others`:
/// `first AND NOT (others[0] OR others[1] ...)`. With no others, `first`
/// itself. Errors and cost as [`union`].
pub fn difference_all(first: &Scope, others: &[&Scope]) -> Result<Coverage> {
    let mut all = Vec::with_capacity(others.len() + 1);
    all.push(first);
    all.extend_from_slice(others);
    combine(Op::AndNot, "difference", &all)
}

/// For every node and every link, how many of `scopes` cover it.
///
/// Errors as [`union`]. Cost: one table load and one 64-bit add per input
/// byte (eight bits), plus one pass over the `u32` results; uses every core
/// for large inputs. The results take 4 bytes per node and per link.
pub fn counts(scopes: &[&Scope]) -> Result<Counts> {
    let o = operands("counts", scopes)?;
    Ok(Counts {
        nodes: count::count(&o.nodes.inputs, o.nodes.bits),
        links: count::count(&o.links.inputs, o.links.bits),
    })
}
