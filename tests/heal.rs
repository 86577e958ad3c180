//! A corrupt region heals: get misses, the entry is dropped and counted,
//! verify reports it; a corrupt root fails open with a clear error.

mod common;

use bitvec::prelude::*;
use common::{open, Model};
use scopecache::{CacheConfig, Error, IdMap, ScopeCache, ScopeData};
use std::path::Path;

const MARK: u64 = 0x5ca1_ab1e_feed_f00d;

/// Finds the file offset of the first word equal to `MARK`.
fn find_mark(path: &Path) -> usize {
    let bytes = std::fs::read(path).unwrap();
    (0..bytes.len() / 8)
        .map(|i| i * 8)
        .find(|&at| bytes[at..at + 8] == MARK.to_le_bytes())
        .expect("mark in file")
}

fn flip(path: &Path, at: usize) {
    let mut bytes = std::fs::read(path).unwrap();
    bytes[at] ^= 0xff;
    std::fs::write(path, bytes).unwrap();
}

#[test]
fn a_corrupt_bitset_heals() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c");
    let cache = open(&path);
    let ids = IdMap::from_ids((0..128).map(|i| format!("n{i}"))).unwrap();
    let marked: BitVec<u64, Lsb0> = BitVec::from_vec(vec![MARK, 1]);
    let attrs = serde_json::Map::new();
    cache
        .put(
            "bad",
            &ScopeData {
                nodes: &marked,
                links: &marked,
                node_ids: &ids,
                link_ids: &ids,
                attributes: &attrs,
            },
        )
        .unwrap();
    let good = Model::random(3, 100, 100);
    good.put(&cache, "good").unwrap();
    drop(cache);
    flip(&path, find_mark(&path) + 3);

    let cache = open(&path);
    let report = cache.verify().unwrap();
    assert!(!report.is_clean());
    assert_eq!(report.problems[0].key.as_deref(), Some("bad"), "{report:?}");
    assert!(cache.get("bad").unwrap().is_none(), "corrupt scope is a miss");
    good.check(&cache, "good");
    let stats = cache.stats().unwrap();
    assert_eq!(stats.corrupt_dropped, 1);
    assert_eq!(stats.total_entries, 1, "dropped from the index");
    assert!(cache.verify().unwrap().is_clean());
    // Another process's view agrees after reopening.
    drop(cache);
    assert!(open(&path).info("bad").unwrap().is_none());
}

#[test]
fn a_corrupt_id_mapping_is_never_returned_as_data() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c");
    let cache = open(&path);
    let ids: Vec<String> = (0..2000).map(|i| format!("unique-id-{i:06}")).collect();
    let map = IdMap::from_ids(&ids).unwrap();
    let bits = BitVec::<u64, Lsb0>::repeat(true, 2000);
    let attrs = serde_json::Map::new();
    cache
        .put(
            "k",
            &ScopeData {
                nodes: &bits,
                links: &bits,
                node_ids: &map,
                link_ids: &map,
                attributes: &attrs,
            },
        )
        .unwrap();
    drop(cache);
    // Corrupt the bytes of one id string in the mapping's body.
    let bytes = std::fs::read(&path).unwrap();
    let at = bytes.windows(16).position(|w| w == b"unique-id-001000").unwrap();
    flip(&path, at + 12);

    let cache = open(&path);
    // Getting the scope succeeds (mapping bodies are checked block by block
    // on first touch), but no lookup returns the corrupt block's data.
    let scope = cache.get("k").unwrap().expect("bitsets and headers are sound");
    assert_eq!(scope.node_ids().index_of("unique-id-001000"), None);
    assert_eq!(scope.node_ids().id(1000), None);
    assert!(scope.node_ids().try_id(1000).is_err());
    assert!(scope.node_ids().is_corrupt());
    assert!(!cache.verify().unwrap().is_clean());
    // The next write drops the entry.
    cache.maintain().unwrap();
    assert!(cache.get("k").unwrap().is_none());
    assert_eq!(cache.stats().unwrap().corrupt_dropped, 1);
}

#[test]
fn corrupt_roots_fail_open_and_quarantine_moves_the_file_aside() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c");
    Model::random(1, 50, 50).put(&open(&path), "k").unwrap();
    // Both superblock slots.
    let mut bytes = std::fs::read(&path).unwrap();
    bytes[20] ^= 0xff;
    bytes[4096 + 20] ^= 0xff;
    std::fs::write(&path, &bytes).unwrap();
    let err = ScopeCache::open(&path, CacheConfig::default()).unwrap_err();
    assert!(matches!(err, Error::Corrupt { .. }), "{err}");
    assert!(err.to_string().contains("superblock"), "{err}");

    let cfg = CacheConfig {
        quarantine_corrupt: true,
        ..CacheConfig::default()
    };
    let cache = ScopeCache::open(&path, cfg).unwrap();
    assert_eq!(cache.stats().unwrap().total_entries, 0);
    let aside: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("c.corrupt-"))
        .collect();
    assert_eq!(aside.len(), 1, "moved aside, not deleted");
    assert_eq!(std::fs::read(dir.path().join(&aside[0])).unwrap(), bytes);
}

#[test]
fn a_torn_newest_superblock_falls_back_to_the_previous_commit() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c");
    let cache = open(&path);
    let a = Model::random(1, 50, 50);
    a.put(&cache, "a").unwrap();
    Model::random(2, 50, 50).put(&cache, "b").unwrap();
    let generation = cache.generation().unwrap();
    drop(cache);
    let slot = (generation % 2) as usize * 4096;
    flip(&path, slot + 30);
    let cache = open(&path);
    assert_eq!(cache.generation().unwrap(), generation - 1);
    a.check(&cache, "a");
    assert!(cache.get("b").unwrap().is_none());
}

#[test]
fn foreign_files_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c");
    std::fs::write(&path, vec![7u8; 20_000]).unwrap();
    let err = ScopeCache::open(&path, CacheConfig::default()).unwrap_err();
    assert!(matches!(err, Error::NotACacheFile { .. }), "{err}");
    std::fs::write(&path, b"").unwrap();
    let err = ScopeCache::open(&path, CacheConfig::default()).unwrap_err();
    assert!(err.is_corruption(), "{err}");
    assert_eq!(std::fs::read(&path).unwrap().len(), 0, "never overwritten");
}

#[test]
fn quarantine_leaves_foreign_and_future_files_alone() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c");
    std::fs::write(&path, vec![7u8; 20_000]).unwrap();
    let cfg = CacheConfig {
        quarantine_corrupt: true,
        ..CacheConfig::default()
    };
    let err = ScopeCache::open(&path, cfg).unwrap_err();
    assert!(matches!(err, Error::NotACacheFile { .. }), "{err}");
    assert_eq!(std::fs::read(&path).unwrap(), vec![7u8; 20_000]);
    assert_eq!(
        std::fs::read_dir(dir.path()).unwrap().count(),
        1,
        "nothing moved aside"
    );
}
