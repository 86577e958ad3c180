//! The index's delta chain (FORMAT.md §2.7): commits append deltas, a new
//! base is written now and then, every reader sees every generation whole,
//! version 1 files move over on their first commit, and a delta that breaks
//! a rule of the chain is refused, never trusted.

use bitvec::prelude::*;
use scopecache::{CacheConfig, Error, IdMap, ScopeCache, ScopeData};
use std::collections::BTreeMap;
use std::path::Path;

fn config() -> CacheConfig {
    CacheConfig {
        fsync: false,
        ttl: None,
        auto_compact: false,
        ..CacheConfig::default()
    }
}

fn read_only() -> CacheConfig {
    CacheConfig {
        read_only: true,
        ..config()
    }
}

struct Data {
    nodes: IdMap,
    links: IdMap,
    bits: BitVec<u64, Lsb0>,
}

impl Data {
    fn new() -> Data {
        Data {
            nodes: IdMap::from_ids((0..40).map(|i| format!("n{i}"))).unwrap(),
            links: IdMap::from_ids((0..40).map(|i| format!("l{i}"))).unwrap(),
            bits: (0..40).map(|i| i % 3 == 0).collect(),
        }
    }

    fn put(&self, cache: &ScopeCache, key: &str, version: u64) {
        let mut attributes = serde_json::Map::new();
        attributes.insert("v".into(), version.into());
        cache
            .put(
                key,
                &ScopeData {
                    nodes: &self.bits,
                    links: &self.bits,
                    node_ids: &self.nodes,
                    link_ids: &self.links,
                    attributes: &attributes,
                },
            )
            .unwrap();
    }
}

/// Every key and the version its attributes carry, as `cache` reads them.
fn contents(cache: &ScopeCache) -> BTreeMap<String, u64> {
    cache
        .list()
        .unwrap()
        .into_iter()
        .map(|e| {
            let v = e.attributes["v"].as_u64().unwrap();
            (e.key, v)
        })
        .collect()
}

#[test]
fn every_generation_of_a_chain_reads_whole_from_old_and_fresh_handles() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.cache");
    let data = Data::new();
    let cache = ScopeCache::open(&path, config()).unwrap();
    let follower = ScopeCache::open(&path, read_only()).unwrap();
    let mut want = BTreeMap::new();
    let (mut deepest, mut rebased) = (0, 0);
    let mut last_depth = 0;
    let mut rng = 0x9E37_79B9_7F4A_7C15u64;
    for step in 0..300u64 {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        let key = format!("k{:03}", rng % 60);
        if rng.is_multiple_of(5) {
            assert_eq!(cache.remove(&key).unwrap(), want.remove(&key).is_some(), "{key}");
        } else {
            data.put(&cache, &key, step);
            want.insert(key, step);
        }
        let depth = cache.stats().unwrap().index_deltas;
        assert!(depth <= 32, "a writer keeps its chain short: {depth}");
        deepest = deepest.max(depth);
        if depth < last_depth {
            rebased += 1;
        }
        last_depth = depth;
        assert_eq!(contents(&cache), want, "the writer, step {step}");
        assert_eq!(
            contents(&follower),
            want,
            "a handle following the file, step {step}"
        );
        if step % 25 == 0 {
            let fresh = ScopeCache::open(&path, read_only()).unwrap();
            assert_eq!(contents(&fresh), want, "a fresh handle, step {step}");
            assert!(fresh.verify().unwrap().is_clean());
        }
    }
    assert!(deepest > 1, "commits append deltas");
    assert!(rebased > 0, "and now and then a new base");
    // Compaction writes the whole state as a base with no delta.
    cache.compact().unwrap();
    assert_eq!(cache.stats().unwrap().index_deltas, 0);
    assert_eq!(contents(&ScopeCache::open(&path, read_only()).unwrap()), want);
}

/// Two writers on one file take turns: each commit builds on the other's,
/// so a writer's model of the state is rebuilt when someone else committed.
#[test]
fn writers_taking_turns_build_on_each_others_commits() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.cache");
    let data = Data::new();
    let a = ScopeCache::open(&path, config()).unwrap();
    let b = ScopeCache::open(&path, config()).unwrap();
    let mut want = BTreeMap::new();
    for i in 0..40u64 {
        let w = if i % 3 == 0 { &a } else { &b };
        let key = format!("k{}", i % 7);
        if i % 4 == 3 {
            w.remove(&key).unwrap();
            want.remove(&key);
        } else {
            data.put(w, &key, i);
            want.insert(key, i);
        }
        assert_eq!(contents(&a), want, "a, step {i}");
        assert_eq!(contents(&b), want, "b, step {i}");
    }
    let st = a.stats().unwrap();
    assert_eq!(st.total_entries, want.len() as u64);
    assert!(a.verify().unwrap().is_clean());
}

fn newest_slot(file: &[u8]) -> usize {
    let generation = |slot: usize| u64::from_le_bytes(file[slot + 16..slot + 24].try_into().unwrap());
    if generation(0) > generation(4096) {
        0
    } else {
        4096
    }
}

#[test]
fn a_version_1_file_reads_and_moves_over_on_its_first_commit() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("old.cache");
    std::fs::copy(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/golden-v1.cache"),
        &path,
    )
    .unwrap();
    let before = std::fs::read(&path).unwrap();
    let slot = newest_slot(&before);
    assert_eq!(&before[slot + 8..slot + 12], &1u32.to_le_bytes());
    let cache = ScopeCache::open(&path, config()).unwrap();
    let keys = |c: &ScopeCache| c.list().unwrap().into_iter().map(|e| e.key).collect::<Vec<_>>();
    let mut old_keys = keys(&cache);
    old_keys.sort();
    assert_eq!(old_keys, ["alpha", "beta", "gamma"]);
    Data::new().put(&cache, "delta", 1);
    let after = std::fs::read(&path).unwrap();
    let slot = newest_slot(&after);
    assert_eq!(
        &after[slot + 8..slot + 12],
        &2u32.to_le_bytes(),
        "the commit wrote a v2 superblock"
    );
    for c in [&cache, &ScopeCache::open(&path, read_only()).unwrap()] {
        let mut k = keys(c);
        k.sort();
        assert_eq!(k, ["alpha", "beta", "delta", "gamma"]);
        assert!(c.get("alpha").unwrap().is_some());
        assert!(c.verify().unwrap().is_clean());
    }
}

fn le32(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().unwrap())
}

fn le64(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().unwrap())
}

/// A file whose newest delta was changed by `edit` (given the delta's bytes
/// and the offset of its 64-byte root), with every CRC made valid again, so
/// that only the chain's own rules stand between the bytes and a reader.
fn with_edited_delta(file: &[u8], edit: impl Fn(&mut [u8], usize)) -> Vec<u8> {
    let mut b = file.to_vec();
    let slot = newest_slot(&b);
    let (offset, len) = (le64(&b, slot + 72) as usize, le64(&b, slot + 80) as usize);
    assert!(len > 0, "the file has a delta");
    let delta = &mut b[offset..offset + len];
    edit(delta, len - 64);
    let crc = crc32fast::hash(&b[offset..offset + len]);
    b[slot + 88..slot + 92].copy_from_slice(&crc.to_le_bytes());
    let crc = crc32fast::hash(&b[slot..slot + 124]);
    b[slot + 124..slot + 128].copy_from_slice(&crc.to_le_bytes());
    b
}

#[test]
fn a_delta_that_breaks_a_rule_of_the_chain_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.cache");
    let data = Data::new();
    {
        let cache = ScopeCache::open(&path, config()).unwrap();
        for i in 0..4 {
            data.put(&cache, &format!("k{i}"), i);
        }
        assert!(cache.stats().unwrap().index_deltas >= 2);
    }
    let pristine = std::fs::read(&path).unwrap();
    let put_u32 = |d: &mut [u8], at: usize, v: u32| d[at..at + 4].copy_from_slice(&v.to_le_bytes());
    let put_u64 = |d: &mut [u8], at: usize, v: u64| d[at..at + 8].copy_from_slice(&v.to_le_bytes());
    type Edit = Box<dyn Fn(&mut [u8], usize)>;
    let cases: Vec<(&str, Edit)> = vec![
        (
            "a depth out of step",
            Box::new(move |d, r| put_u32(d, r + 56, le32(d, r + 56) + 1)),
        ),
        ("a depth of 0", Box::new(move |d, r| put_u32(d, r + 56, 0))),
        (
            "a mapping count before it that is not the chain's",
            Box::new(move |d, r| put_u32(d, r + 48, le32(d, r + 48) + 1)),
        ),
        (
            "a start below the part before it",
            Box::new(move |d, r| put_u64(d, r + 40, 12288)),
        ),
        (
            "a previous delta that fails its CRC",
            Box::new(move |d, r| put_u32(d, r + 52, le32(d, r + 52) ^ 1)),
        ),
        (
            "a previous delta outside the file",
            Box::new(move |d, r| put_u64(d, r + 24, 1 << 40)),
        ),
        (
            "a bitset outside the delta's range",
            Box::new(move |d, r| {
                // upserts[0].nodes.offset: the vector's target, then +40.
                let at = (r as i64 + i32::from_le_bytes(d[r..r + 4].try_into().unwrap()) as i64) as usize;
                put_u64(d, at + 40, 12288);
            }),
        ),
        (
            "an upsert naming a mapping the chain does not have",
            Box::new(move |d, r| {
                let at = (r as i64 + i32::from_le_bytes(d[r..r + 4].try_into().unwrap()) as i64) as usize;
                put_u32(d, at + 28, 1000);
            }),
        ),
    ];
    for (what, edit) in &cases {
        let p = dir.path().join("crafted.cache");
        std::fs::write(&p, with_edited_delta(&pristine, edit)).unwrap();
        match ScopeCache::open(&p, read_only()) {
            Err(e @ Error::Corrupt { .. }) => eprintln!("{what}: {e}"),
            other => panic!("{what}: expected Error::Corrupt, got {other:?}"),
        }
    }
    // The untouched file, rewritten the same way, is fine: the edits, not
    // the rewriting, are what is refused.
    let p = dir.path().join("same.cache");
    std::fs::write(&p, with_edited_delta(&pristine, |_, _| {})).unwrap();
    assert_eq!(
        ScopeCache::open(&p, read_only()).unwrap().list().unwrap().len(),
        4
    );
}
