//! A small, fully known cache: three scopes with tiny bitsets, one id
//! mapping shared by two of them. Used by the corruption, golden, fuzz seed
//! and FORMAT.md reader tests.
#![allow(dead_code)]

use bitvec::prelude::*;
use scopecache::{CacheConfig, IdMap, Scope, ScopeCache, ScopeData};
use serde_json::{json, Map, Value};
use std::path::Path;

/// One scope of the sample, as plain data.
#[derive(Clone, Debug, PartialEq)]
pub struct Expected {
    pub key: &'static str,
    pub nodes: BitVec<u64, Lsb0>,
    pub links: BitVec<u64, Lsb0>,
    pub node_ids: Vec<String>,
    pub link_ids: Vec<String>,
    pub attributes: Map<String, Value>,
}

fn bits(s: &str) -> BitVec<u64, Lsb0> {
    s.chars().map(|c| c == '1').collect()
}

fn ids(prefix: &str, n: usize) -> Vec<String> {
    (0..n).map(|i| format!("{prefix}{i}")).collect()
}

/// The three scopes; `alpha` and `beta` share their node mapping.
pub fn scopes() -> Vec<Expected> {
    let obj = |v: Value| v.as_object().cloned().unwrap_or_default();
    vec![
        Expected {
            key: "alpha",
            nodes: bits("10110"),
            links: bits("011"),
            node_ids: ids("n", 5),
            link_ids: ids("n0-n", 3),
            attributes: obj(json!({"run": "a", "depth": 2})),
        },
        Expected {
            key: "beta",
            nodes: bits("01001"),
            links: bits("1"),
            node_ids: ids("n", 5),
            link_ids: ids("n4-n", 1),
            attributes: obj(json!({"run": "b", "flags": [true, null]})),
        },
        Expected {
            key: "gamma",
            nodes: bits("1000000000000000000000000000000000000000000000000000000000000000101"),
            links: bits(""),
            node_ids: ids("g", 67),
            link_ids: Vec::new(),
            attributes: Map::new(),
        },
    ]
}

pub fn config() -> CacheConfig {
    CacheConfig {
        ttl: None,
        quarantine_corrupt: false,
        ..CacheConfig::default()
    }
}

pub fn put(cache: &ScopeCache, e: &Expected) -> scopecache::Result<()> {
    let n = IdMap::from_ids(&e.node_ids)?;
    let l = IdMap::from_ids(&e.link_ids)?;
    cache.put(
        e.key,
        &ScopeData {
            nodes: &e.nodes,
            links: &e.links,
            node_ids: &n,
            link_ids: &l,
            attributes: &e.attributes,
        },
    )
}

/// Writes the sample cache at `path` (which must not exist) and returns its scopes.
pub fn write(path: &Path) -> Vec<Expected> {
    let cache = ScopeCache::open(path, config()).unwrap();
    let all = scopes();
    for e in &all {
        put(&cache, e).unwrap();
    }
    all
}

/// True when `s` holds exactly the data of `e`.
pub fn matches(s: &Scope, e: &Expected) -> bool {
    s.key() == e.key
        && s.nodes() == e.nodes.as_bitslice()
        && s.links() == e.links.as_bitslice()
        && s.attributes() == &e.attributes
        && s.node_ids().len() == e.node_ids.len()
        && s.link_ids().len() == e.link_ids.len()
        && e.node_ids.iter().enumerate().all(|(i, id)| {
            s.node_ids().index_of(id) == Some(i as u32) && s.node_ids().id(i as u32) == Some(id.as_str())
        })
        && e.link_ids.iter().enumerate().all(|(i, id)| {
            s.link_ids().index_of(id) == Some(i as u32) && s.link_ids().id(i as u32) == Some(id.as_str())
        })
}
