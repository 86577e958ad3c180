//! Helpers shared by the integration tests.
#![allow(dead_code)]

use bitvec::prelude::*;
use rand::{Rng, SeedableRng};
use scopecache::{CacheConfig, IdMap, ScopeCache, ScopeData};
use serde_json::{json, Map, Value};
use std::path::Path;

/// A scope held in memory, to put and to compare against.
#[derive(Clone, Debug, PartialEq)]
pub struct Model {
    pub nodes: BitVec<u64, Lsb0>,
    pub links: BitVec<u64, Lsb0>,
    pub node_ids: Vec<String>,
    pub link_ids: Vec<String>,
    pub attributes: Map<String, Value>,
}

impl Model {
    pub fn random(seed: u64, n: usize, l: usize) -> Model {
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        Model {
            nodes: (0..n).map(|_| rng.gen::<bool>()).collect(),
            links: (0..l).map(|_| rng.gen::<bool>()).collect(),
            node_ids: (0..n).map(|i| format!("node-{i:08}")).collect(),
            link_ids: (0..l).map(|i| format!("link-{i:08}-{:08}", (i * 7919) % n.max(1))).collect(),
            attributes: json!({"seed": seed, "run": format!("r{seed}"), "nested": {"x": [1, 2.5, null]}})
                .as_object()
                .cloned()
                .unwrap_or_default(),
        }
    }

    pub fn maps(&self) -> (IdMap, IdMap) {
        (IdMap::from_ids(&self.node_ids).unwrap(), IdMap::from_ids(&self.link_ids).unwrap())
    }

    pub fn put(&self, cache: &ScopeCache, key: &str) -> scopecache::Result<()> {
        let (n, l) = self.maps();
        self.put_with(cache, key, &n, &l)
    }

    pub fn put_with(&self, cache: &ScopeCache, key: &str, n: &IdMap, l: &IdMap) -> scopecache::Result<()> {
        cache.put(
            key,
            &ScopeData { nodes: &self.nodes, links: &self.links, node_ids: n, link_ids: l, attributes: &self.attributes },
        )
    }

    /// Asserts that the cache holds exactly this scope under `key`.
    pub fn check(&self, cache: &ScopeCache, key: &str) {
        let s = cache.get(key).unwrap().unwrap_or_else(|| panic!("{key} missing"));
        assert_eq!(s.nodes(), self.nodes.as_bitslice(), "{key}: nodes");
        assert_eq!(s.links(), self.links.as_bitslice(), "{key}: links");
        assert_eq!(s.node_ids().len(), self.node_ids.len());
        assert_eq!(s.link_ids().len(), self.link_ids.len());
        for (i, id) in self.node_ids.iter().enumerate() {
            assert_eq!(s.node_ids().index_of(id), Some(i as u32));
            assert_eq!(s.node_ids().id(i as u32), Some(id.as_str()));
        }
        for (i, id) in self.link_ids.iter().enumerate() {
            assert_eq!(s.link_ids().index_of(id), Some(i as u32));
        }
        assert_eq!(s.attributes(), &self.attributes);
        assert_eq!(s.info().total_nodes, self.nodes.len() as u64);
    }
}

pub fn open(path: &Path) -> ScopeCache {
    ScopeCache::open(path, CacheConfig::default()).unwrap()
}
