//! `ScopeParts`: an owned scope, as a computation returns it.

use crate::algebra::Coverage;
use crate::cache::ScopeData;
use crate::idmap::IdMap;
use crate::scope::Scope;
use bitvec::prelude::{BitVec, Lsb0};
use serde_json::{Map, Value};

/// The parts of a scope, owned: what the computation given to
/// [`ScopeCache::get_or_compute`](crate::ScopeCache::get_or_compute)
/// returns. [`ScopeParts::data`] borrows them as the [`ScopeData`] a
/// [`put`](crate::ScopeCache::put) takes.
///
/// `nodes.len()` must equal `node_ids.len()` and `links.len()` must equal
/// `link_ids.len()`, or the put refuses them with `Error::LengthMismatch`.
/// Cloning an [`IdMap`] is cheap, so parts built from the mappings of a
/// stored scope (`scope.node_ids().clone()`) share them: the put writes no
/// mapping.
///
/// ```
/// use scopecache::{IdMap, ScopeParts};
/// use bitvec::prelude::*;
/// let parts = ScopeParts {
///     nodes: bitvec![u64, Lsb0; 1, 0],
///     links: bitvec![u64, Lsb0; 1],
///     node_ids: IdMap::from_ids(["a", "b"])?,
///     link_ids: IdMap::from_ids(["a-b"])?,
///     attributes: serde_json::Map::new(),
/// };
/// assert_eq!(parts.data().nodes.count_ones(), 1);
/// # Ok::<(), scopecache::Error>(())
/// ```
#[derive(Clone, Debug)]
pub struct ScopeParts {
    /// Covered nodes: bit i is node `node_ids.id(i)`.
    pub nodes: BitVec<u64, Lsb0>,
    /// Covered links: bit i is link `link_ids.id(i)`.
    pub links: BitVec<u64, Lsb0>,
    /// The node id mapping.
    pub node_ids: IdMap,
    /// The link id mapping.
    pub link_ids: IdMap,
    /// The run's configuration attributes.
    pub attributes: Map<String, Value>,
}

impl ScopeParts {
    /// The parts, borrowed as a put takes them. O(1).
    pub fn data(&self) -> ScopeData<'_> {
        ScopeData {
            nodes: &self.nodes,
            links: &self.links,
            node_ids: &self.node_ids,
            link_ids: &self.link_ids,
            attributes: &self.attributes,
        }
    }

    /// A result of [`crate::algebra`] with the mappings of `like`, one of the
    /// scopes it was computed from (the mappings are shared, not copied).
    pub fn from_coverage(coverage: Coverage, like: &Scope, attributes: Map<String, Value>) -> ScopeParts {
        ScopeParts {
            nodes: coverage.nodes,
            links: coverage.links,
            node_ids: like.node_ids().clone(),
            link_ids: like.link_ids().clone(),
            attributes,
        }
    }
}
