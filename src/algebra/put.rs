//! Storing a result of the algebra back as a scope.

use super::Coverage;
use crate::cache::{ScopeCache, ScopeData};
use crate::error::Result;
use crate::scope::Scope;
use serde_json::{Map, Value};

impl ScopeCache {
    /// Stores `coverage` under `key` as a scope with the node and link
    /// mappings of `like` (one of the scopes it was computed from), and
    /// `attributes`.
    ///
    /// When `like` was gotten from this cache, its mappings are in the file
    /// already and are not written again (a put recognises a stored mapping
    /// by its digest): the file grows by the two bitsets and the new index
    /// only. Otherwise this is an ordinary [`put`](ScopeCache::put).
    ///
    /// Errors: those of [`put`](ScopeCache::put); `LengthMismatch` when the
    /// coverage's bitsets are not as long as `like`'s mappings.
    pub fn put_coverage(
        &self,
        key: &str,
        coverage: &Coverage,
        like: &Scope,
        attributes: &Map<String, Value>,
    ) -> Result<()> {
        self.put(
            key,
            &ScopeData {
                nodes: &coverage.nodes,
                links: &coverage.links,
                node_ids: like.node_ids(),
                link_ids: like.link_ids(),
                attributes,
            },
        )
    }
}
