//! Regression tests for defects that the fault tests missed: each one
//! failed before its fix.
//!
//! - an empty region sharing its offset with the next region made a corrupt
//!   bitset pass for checked;
//! - a crafted superblock could put the access-stamp table over bytes lent
//!   out to callers;
//! - a crafted generation near `u64::MAX` overflowed on the next commit;
//! - two threads creating one cache, or two openers quarantining one
//!   corrupt file, raced;
//! - a `get` that healed the cache compacted it;
//! - a cache at its size limit compacted on almost every put.

mod common;

use bitvec::prelude::*;
use scopecache::testing::{self, Superblock};
use scopecache::{CacheConfig, Error, IdMap, ScopeCache, ScopeData};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Barrier};

fn config() -> CacheConfig {
    CacheConfig {
        ttl: None,
        fsync: false,
        ..CacheConfig::default()
    }
}

fn put(
    cache: &ScopeCache,
    key: &str,
    nodes: &BitSlice<u64, Lsb0>,
    n: &IdMap,
    links: &BitSlice<u64, Lsb0>,
    l: &IdMap,
) {
    cache
        .put(
            key,
            &ScopeData {
                nodes,
                links,
                node_ids: n,
                link_ids: l,
                attributes: &serde_json::Map::new(),
            },
        )
        .unwrap();
}

fn ids(prefix: &str, n: usize) -> IdMap {
    IdMap::from_ids((0..n).map(|i| format!("{prefix}{i}"))).unwrap()
}

/// The newest superblock and index of the file at `path`.
fn read(path: &Path) -> (Vec<u8>, Superblock, testing::IndexData) {
    let file = std::fs::read(path).unwrap();
    let (sb, idx) = testing::read(&file).expect("a valid file");
    (file, sb, idx)
}

#[test]
fn an_empty_bitset_never_lends_its_verdict_to_the_next_region() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.cache");
    let cache = ScopeCache::open(&path, config()).unwrap();
    let nodes = ids("n", 200);
    let empty = ids("l", 0);
    let a: BitVec<u64, Lsb0> = (0..200).map(|i| i % 3 == 0).collect();
    let b: BitVec<u64, Lsb0> = (0..200).map(|i| i % 5 == 0).collect();
    put(&cache, "a", &a, &nodes, BitSlice::empty(), &empty);
    put(&cache, "b", &b, &nodes, BitSlice::empty(), &empty);
    cache.compact().unwrap();
    drop(cache);

    // Damage one byte of b's node bitset.
    let (mut file, _, idx) = read(&path);
    let rec = idx.entries.iter().find(|e| e.key == "b").unwrap().nodes;
    file[rec.offset as usize + 1] ^= 0x10;
    std::fs::write(&path, &file).unwrap();

    // A fresh handle checks a's (empty) links bitset first, then b's nodes.
    let cache = ScopeCache::open(&path, config()).unwrap();
    let got_a = cache.get("a").unwrap().expect("a is intact");
    assert_eq!(got_a.nodes(), a.as_bitslice());
    match cache.get("b") {
        Ok(None) | Err(_) => {}
        Ok(Some(s)) => panic!(
            "the damaged bitset was returned as data (equal to the original: {})",
            s.nodes() == b.as_bitslice()
        ),
    }
    assert!(!cache.verify().unwrap().is_clean() || cache.get("b").unwrap().is_none());
}

/// Rewrites the file's newest superblock with `edit` applied, as a new
/// generation with valid CRCs.
fn craft_superblock(path: &Path, edit: impl FnOnce(&mut Superblock, &testing::IndexData)) {
    let (mut file, mut sb, idx) = read(path);
    edit(&mut sb, &idx);
    testing::write_superblock(&mut file, &sb);
    std::fs::write(path, &file).unwrap();
}

/// Puts one scope whose first node word is zero, so that a stamp written
/// over it would show.
fn one_scope(path: &Path) -> BitVec<u64, Lsb0> {
    let cache = ScopeCache::open(path, config()).unwrap();
    let nodes = ids("n", 640);
    let bits: BitVec<u64, Lsb0> = (0..640).map(|i| i >= 64 && i % 7 == 0).collect();
    put(&cache, "k", &bits, &nodes, &bits, &nodes);
    bits
}

fn assert_refused_or_untouched(path: &Path, bits: &BitSlice<u64, Lsb0>) {
    match ScopeCache::open(path, config()) {
        Err(e) => assert!(e.is_corruption(), "refused, as corrupt: {e}"),
        Ok(cache) => {
            let held = cache.get("k");
            let Ok(Some(held)) = held else { return };
            let before: Vec<u64> = held.node_words().to_vec();
            let attrs_before = held.attributes().clone();
            std::thread::sleep(std::time::Duration::from_millis(2));
            let _ = cache.get("k");
            let _ = cache.list();
            assert_eq!(
                held.node_words(),
                &before[..],
                "bytes lent out changed under the caller"
            );
            assert_eq!(held.nodes(), bits);
            assert_eq!(held.attributes(), &attrs_before);
        }
    }
}

#[test]
fn a_stamp_table_over_a_bitset_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.cache");
    let bits = one_scope(&path);
    craft_superblock(&path, |sb, idx| {
        let e = &idx.entries[0];
        sb.generation += 1;
        sb.stamps_offset = e.nodes.offset - 8 * u64::from(e.slot);
        sb.stamps_capacity = e.slot + 1;
    });
    assert_refused_or_untouched(&path, &bits);
}

#[test]
fn a_stamp_table_over_the_index_or_a_mapping_is_refused() {
    for target in ["index", "mapping"] {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.cache");
        let bits = one_scope(&path);
        craft_superblock(&path, |sb, idx| {
            sb.generation += 1;
            sb.stamps_offset = match target {
                "index" => sb.index_offset,
                _ => idx.maps[0].offset,
            };
            sb.stamps_capacity = 64;
        });
        match ScopeCache::open(&path, config()) {
            Err(e) => assert!(e.is_corruption(), "{target}: {e}"),
            Ok(_) => panic!("a stamp table over the {target} was accepted"),
        }
        assert_refused_or_untouched(&path, &bits);
    }
}

#[test]
fn a_generation_at_the_end_of_its_range_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.cache");
    one_scope(&path);
    craft_superblock(&path, |sb, _| sb.generation = u64::MAX);
    match ScopeCache::open(&path, config()) {
        Err(e) => assert!(e.is_corruption(), "{e}"),
        Ok(cache) => {
            // If it opens, a put must be visible afterwards.
            let nodes = ids("n", 3);
            let bits = bitvec![u64, Lsb0; 1, 0, 1];
            put(&cache, "later", &bits, &nodes, &bits, &nodes);
            assert!(
                cache.get("later").unwrap().is_some(),
                "a committed put is invisible"
            );
        }
    }
}

fn corrupt_files(dir: &Path, name: &str) -> Vec<PathBuf> {
    let prefix = format!("{name}.corrupt-");
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.file_name().unwrap().to_string_lossy().starts_with(&prefix))
        .collect()
}

#[test]
fn threads_creating_one_cache_all_get_a_whole_file() {
    let dir = tempfile::tempdir().unwrap();
    for round in 0..60 {
        let path = dir.path().join(format!("c{round}.cache"));
        let barrier = Arc::new(Barrier::new(4));
        let handles: Vec<_> = (0..4)
            .map(|_| {
                let (path, barrier) = (path.clone(), Arc::clone(&barrier));
                std::thread::spawn(move || {
                    barrier.wait();
                    ScopeCache::open(&path, config())
                })
            })
            .collect();
        let caches: Vec<ScopeCache> = handles
            .into_iter()
            .map(|h| h.join().unwrap().unwrap_or_else(|e| panic!("round {round}: {e}")))
            .collect();
        let nodes = ids("n", 3);
        let bits = bitvec![u64, Lsb0; 1, 1, 0];
        put(&caches[0], "k", &bits, &nodes, &bits, &nodes);
        for c in &caches {
            assert!(
                c.get("k").unwrap().is_some(),
                "round {round}: handles disagree on the file"
            );
        }
        let leftovers: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.ends_with(".tmp"))
            .collect();
        assert!(leftovers.is_empty(), "{leftovers:?}");
    }
}

#[test]
fn two_openers_of_a_corrupt_file_move_only_it_aside() {
    let dir = tempfile::tempdir().unwrap();
    let pristine = dir.path().join("pristine.cache");
    one_scope(&pristine);
    let (mut bad, sb, _) = read(&pristine);
    bad[sb.index_offset as usize + 5] ^= 0x40;
    let cfg = CacheConfig {
        quarantine_corrupt: true,
        ..config()
    };
    for round in 0..40 {
        let name = format!("q{round}.cache");
        let path = dir.path().join(&name);
        std::fs::write(&path, &bad).unwrap();
        let barrier = Arc::new(Barrier::new(2));
        let handles: Vec<_> = (0..2)
            .map(|_| {
                let (path, barrier, cfg) = (path.clone(), Arc::clone(&barrier), cfg.clone());
                std::thread::spawn(move || {
                    barrier.wait();
                    ScopeCache::open(&path, cfg)
                })
            })
            .collect();
        let caches: Vec<ScopeCache> = handles.into_iter().map(|h| h.join().unwrap().unwrap()).collect();
        let aside = corrupt_files(dir.path(), &name);
        assert_eq!(
            aside.len(),
            1,
            "round {round}: only the corrupt file moves aside: {aside:?}"
        );
        assert_eq!(std::fs::read(&aside[0]).unwrap(), bad);
        let nodes = ids("n", 3);
        let bits = bitvec![u64, Lsb0; 0, 1, 0];
        put(&caches[0], "k", &bits, &nodes, &bits, &nodes);
        assert!(
            caches[1].get("k").unwrap().is_some(),
            "round {round}: the two handles ended on different files"
        );
    }
}

#[test]
fn a_get_that_heals_does_not_compact() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.cache");
    let cfg = CacheConfig {
        compact_dead_ratio: 0.01,
        compact_min_dead_bytes: 0,
        ..config()
    };
    let cache = ScopeCache::open(&path, cfg.clone()).unwrap();
    let nodes = ids("n", 4000);
    let bits: BitVec<u64, Lsb0> = (0..4000).map(|i| i % 2 == 0).collect();
    for k in ["a", "b", "c"] {
        put(&cache, k, &bits, &nodes, &bits, &nodes);
    }
    drop(cache);
    let (mut file, _, idx) = read(&path);
    let rec = idx.entries.iter().find(|e| e.key == "b").unwrap().nodes;
    file[rec.offset as usize + 9] ^= 1;
    std::fs::write(&path, &file).unwrap();

    let cache = ScopeCache::open(&path, cfg).unwrap();
    let before = cache.stats().unwrap();
    assert!(cache.get("b").unwrap().is_none(), "the damaged entry is a miss");
    let after = cache.stats().unwrap();
    assert_eq!(
        after.corrupt_dropped,
        before.corrupt_dropped + 1,
        "the entry was dropped"
    );
    assert_eq!(after.compactions, before.compactions, "a get compacted the file");
}

/// At a binding size limit, compaction is amortised over many puts, and
/// the file never grows past the limit.
#[test]
fn a_full_cache_compacts_once_per_many_puts() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.cache");
    let max = 5u64 << 20;
    let cfg = CacheConfig {
        max_size_bytes: max,
        max_entries: 100_000,
        ..config()
    };
    let cache = ScopeCache::open(&path, cfg).unwrap();
    let ids = ids("n", 100_000); // one mapping (~1.4 MB) shared by every scope
    let mut compactions_at_full = None;
    let puts = 300;
    for i in 0..puts {
        let bits: BitVec<u64, Lsb0> = (0..100_000).map(|b| (b + i) % 11 == 0).collect();
        put(&cache, &format!("scope-{i:04}"), &bits, &ids, &bits, &ids);
        let len = std::fs::metadata(&path).unwrap().len();
        assert!(
            len <= max,
            "put {i}: the file is {len} bytes, over the limit of {max}"
        );
        let s = cache.stats().unwrap();
        if s.evictions > 0 && compactions_at_full.is_none() {
            compactions_at_full = Some((i, s.compactions));
        }
    }
    let s = cache.stats().unwrap();
    let (full_at, base) = compactions_at_full.expect("the limit was reached");
    let steady_puts = (puts - full_at) as u64;
    let steady_compactions = s.compactions - base;
    assert!(
        steady_compactions * 10 <= steady_puts,
        "{steady_compactions} compactions in {steady_puts} puts at the size limit"
    );
    assert!(
        s.total_entries > 20,
        "the cache keeps most of its space in use: {} entries",
        s.total_entries
    );
}

#[test]
fn corrupt_error_is_typed() {
    // The crafted-file tests above accept only corruption errors; make sure
    // the error they see for a plainly corrupt file is one.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.cache");
    one_scope(&path);
    craft_superblock(&path, |sb, _| {
        sb.generation += 1;
        sb.index_offset += 64;
    });
    let err = ScopeCache::open(&path, config()).unwrap_err();
    assert!(matches!(err, Error::Corrupt { .. }), "{err}");
}

/// The index's own bytes are a region like any other: an entry whose
/// bitset lies inside the index, or two entries whose bitsets overlap,
/// are refused at open, whichever order the regions come in.
#[test]
fn regions_overlapping_the_index_or_each_other_are_refused() {
    for case in [
        "bitset inside the index",
        "bitsets overlap",
        "mapping over a bitset",
    ] {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.cache");
        let cache = ScopeCache::open(&path, config()).unwrap();
        let (n, l) = (ids("n", 70), ids("l", 130));
        let nodes: BitVec<u64, Lsb0> = (0..70).map(|i| i % 2 == 0).collect();
        let links: BitVec<u64, Lsb0> = (0..130).map(|i| i % 3 == 0).collect();
        for key in ["a", "b", "c"] {
            put(&cache, key, &nodes, &n, &links, &l);
        }
        cache.compact().unwrap();
        drop(cache);
        let (mut file, mut sb, mut idx) = read(&path);
        let index_at = (file.len() as u64).next_multiple_of(64);
        match case {
            "bitset inside the index" => idx.entries[1].links.offset = index_at,
            "bitsets overlap" => idx.entries[2].nodes.offset = idx.entries[0].links.offset,
            _ => idx.maps[0].offset = idx.entries[1].nodes.offset,
        }
        sb.generation += 1;
        testing::write(&mut file, sb, &idx, true);
        std::fs::write(&path, &file).unwrap();
        match ScopeCache::open(&path, config()) {
            Err(e) => assert!(
                e.is_corruption() && e.to_string().contains("overlaps"),
                "{case}: {e}"
            ),
            Ok(_) => panic!("{case}: accepted"),
        }
    }
}
