//! What a `get` returns: a cached scope read in place, and its description.

use crate::clock::from_micros;
use crate::idmap::IdMap;
use crate::index::{ArchivedEntryRecord, BitsRecord};
use crate::snapshot::{Resolved, Snapshot};
use bitvec::prelude::{BitSlice, Lsb0};
use chrono::{DateTime, Utc};
use serde_json::{Map, Value};
use std::fmt;
use std::sync::Arc;

/// A cached coverage scope, read in place from the mapped file.
///
/// A `Scope` holds the snapshot it came from: it stays valid, and its bytes
/// stay the same, for as long as it lives, even after another process
/// replaced, evicted or compacted its key. Holding one keeps that snapshot's
/// mapping (address space, not memory) alive; drop it when done.
///
/// Getting the bitsets, mappings and attributes costs nothing: no copy, no
/// decoding. Their checks were made once per process when first gotten.
///
/// ```
/// # fn main() -> scopecache::Result<()> {
/// use scopecache::{ScopeCache, CacheConfig, ScopeData, IdMap};
/// use bitvec::prelude::*;
/// let dir = tempfile::tempdir().unwrap();
/// let cache = ScopeCache::open(dir.path().join("c.scope"), CacheConfig::default())?;
/// let ids = IdMap::from_ids(["a", "b", "c"])?;
/// let bits = bitvec![u64, Lsb0; 0, 1, 1];
/// let attrs = serde_json::Map::new();
/// cache.put("k", &ScopeData { nodes: &bits, links: &bits, node_ids: &ids, link_ids: &ids, attributes: &attrs })?;
/// let scope = cache.get("k")?.expect("just stored");
/// let b = scope.node_ids().index_of("b").expect("b is an id");
/// assert!(scope.nodes()[b as usize]);
/// assert_eq!(scope.nodes().count_ones(), 2);
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Scope {
    snap: Arc<Snapshot>,
    pos: usize,
    r: Arc<Resolved>,
}

impl Scope {
    pub(crate) fn new(snap: Arc<Snapshot>, pos: usize, r: Arc<Resolved>) -> Scope {
        Scope { snap, pos, r }
    }

    /// The scope's key.
    pub fn key(&self) -> &str {
        self.entry().key.as_str()
    }

    fn entry(&self) -> &ArchivedEntryRecord {
        // `pos` came from the snapshot's own `find`: it names a live entry.
        self.snap
            .entry(self.pos)
            .unwrap_or_else(|| unreachable!("a scope's position names its entry"))
    }

    /// The covered nodes: bit i is node `node_ids().id(i)`. O(1), zero-copy.
    pub fn nodes(&self) -> &BitSlice<u64, Lsb0> {
        self.snap.bits(&self.r.nodes)
    }

    /// The covered links: bit i is link `link_ids().id(i)`. O(1), zero-copy.
    pub fn links(&self) -> &BitSlice<u64, Lsb0> {
        self.snap.bits(&self.r.links)
    }

    /// The nodes bitset as raw little-endian words, for hot loops: bit i is
    /// `words[i / 64] >> (i % 64) & 1`; bits past `total_nodes` are zero.
    pub fn node_words(&self) -> &[u64] {
        self.snap.words(&self.r.nodes)
    }

    /// The links bitset as raw words; see [`Scope::node_words`].
    pub fn link_words(&self) -> &[u64] {
        self.snap.words(&self.r.links)
    }

    /// The node id mapping (index <-> id), read in place.
    pub fn node_ids(&self) -> &IdMap {
        &self.r.node_ids
    }

    /// The link id mapping (index <-> id), read in place.
    pub fn link_ids(&self) -> &IdMap {
        &self.r.link_ids
    }

    /// The attributes stored with the scope.
    pub fn attributes(&self) -> &Map<String, Value> {
        &self.r.attributes
    }

    /// The entry's description, as of the snapshot this scope came from.
    pub fn info(&self) -> EntryInfo {
        EntryInfo::from_entry(&self.snap, self.entry(), Some(self.r.attributes.clone()))
    }
}

impl fmt::Debug for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Scope")
            .field("key", &self.key())
            .field("nodes", &self.r.nodes.bits)
            .field("links", &self.r.links.bits)
            .field("generation", &self.snap.generation())
            .finish()
    }
}

/// A description of one cached entry, as `list`, `info` and
/// [`Scope::info`] return it. Byte sizes are of the entry's parts in the
/// file; mappings shared with other entries are counted in full for each.
#[derive(Clone, Debug, PartialEq)]
#[cfg_attr(feature = "cli", derive(serde::Serialize))]
pub struct EntryInfo {
    /// The key.
    pub key: String,
    /// When the scope was put.
    pub created_at: DateTime<Utc>,
    /// When it was last gotten (by any process), or put.
    pub last_accessed: DateTime<Utc>,
    /// Bits in the nodes bitset, and ids in the node mapping.
    pub total_nodes: u64,
    /// Bits in the links bitset, and ids in the link mapping.
    pub total_links: u64,
    /// Bytes of the nodes bitset.
    pub nodes_bytes: u64,
    /// Bytes of the links bitset.
    pub links_bytes: u64,
    /// Bytes of the node id mapping (shared with entries that use the same ids).
    pub node_ids_bytes: u64,
    /// Bytes of the link id mapping (likewise shared).
    pub link_ids_bytes: u64,
    /// Bytes of the attributes' JSON text.
    pub attributes_bytes: u64,
    /// The sum of the five sizes above.
    pub total_bytes: u64,
    /// True when the node and link mappings are one stored mapping each
    /// that other entries use too.
    pub shares_mappings: bool,
    /// The attributes.
    pub attributes: Map<String, Value>,
}

impl EntryInfo {
    pub(crate) fn from_entry(
        snap: &Snapshot,
        e: &ArchivedEntryRecord,
        attributes: Option<Map<String, Value>>,
    ) -> EntryInfo {
        let map_len = |i: u32| snap.chain().map(i).map_or(0, |m| m.len.to_native());
        let (nm, lm) = (e.node_map.to_native(), e.link_map.to_native());
        let nodes_bytes = BitsRecord::byte_len(e.nodes.bits.to_native());
        let links_bytes = BitsRecord::byte_len(e.links.bits.to_native());
        let node_ids_bytes = map_len(nm);
        let link_ids_bytes = map_len(lm);
        let attributes_bytes = e.attributes.len() as u64;
        let shares_mappings = snap
            .entries()
            .map(|(_, o)| o)
            .filter(|o| o.node_map.to_native() == nm || o.link_map.to_native() == lm)
            .nth(1)
            .is_some();
        let attributes = attributes.unwrap_or_else(|| match serde_json::from_str(e.attributes.as_str()) {
            Ok(Value::Object(m)) => m,
            _ => Map::new(),
        });
        EntryInfo {
            key: e.key.as_str().to_owned(),
            created_at: from_micros(e.created_us.to_native()),
            last_accessed: from_micros(snap.last_access_us(e)),
            total_nodes: e.nodes.bits.to_native(),
            total_links: e.links.bits.to_native(),
            nodes_bytes,
            links_bytes,
            node_ids_bytes,
            link_ids_bytes,
            attributes_bytes,
            total_bytes: nodes_bytes + links_bytes + node_ids_bytes + link_ids_bytes + attributes_bytes,
            shares_mappings,
            attributes,
        }
    }
}
