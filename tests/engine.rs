//! The engine's contract: round trips, replace, remove, clear, reopen, list
//! order, TTL, LRU by count and by size, compaction, shared mappings.

mod common;

use bitvec::prelude::*;
use common::{open, Model};
use scopecache::{CacheConfig, Error, IdMap, ManualClock, ScopeCache, ScopeData};
use std::sync::Arc;
use std::time::Duration;

#[test]
fn round_trips_at_awkward_lengths() {
    let dir = tempfile::tempdir().unwrap();
    let cache = open(&dir.path().join("c"));
    let lengths = [(0, 0), (1, 1), (7, 9), (63, 64), (64, 65), (65, 127), (129, 1000)];
    for (i, &(n, l)) in lengths.iter().enumerate() {
        Model::random(i as u64, n, l)
            .put(&cache, &format!("k{i}"))
            .unwrap();
    }
    for (i, &(n, l)) in lengths.iter().enumerate() {
        Model::random(i as u64, n, l).check(&cache, &format!("k{i}"));
    }
    drop(cache);
    let cache = open(&dir.path().join("c"));
    for (i, &(n, l)) in lengths.iter().enumerate() {
        Model::random(i as u64, n, l).check(&cache, &format!("k{i}"));
    }
    assert!(cache.verify().unwrap().is_clean());
}

#[test]
fn unaligned_bitslices_are_stored_as_their_bits() {
    let dir = tempfile::tempdir().unwrap();
    let cache = open(&dir.path().join("c"));
    let m = Model::random(5, 300, 200);
    let (n, l) = (
        IdMap::from_ids(&m.node_ids[..290]).unwrap(),
        IdMap::from_ids(&m.link_ids[..190]).unwrap(),
    );
    let attrs = serde_json::Map::new();
    let nodes = &m.nodes[3..293];
    let links = &m.links[10..200];
    cache
        .put(
            "k",
            &ScopeData {
                nodes,
                links,
                node_ids: &n,
                link_ids: &l,
                attributes: &attrs,
            },
        )
        .unwrap();
    let s = cache.get("k").unwrap().unwrap();
    assert_eq!(s.nodes(), nodes);
    assert_eq!(s.links(), links);
    // Bits past the end are zero in the raw words.
    let words = s.node_words();
    assert_eq!(words.len(), 5);
    assert_eq!(words[4] >> (290 % 64), 0);
}

#[test]
fn replace_remove_clear() {
    let dir = tempfile::tempdir().unwrap();
    let cache = open(&dir.path().join("c"));
    let a = Model::random(1, 100, 50);
    let b = Model::random(2, 80, 70);
    a.put(&cache, "k").unwrap();
    b.put(&cache, "k").unwrap();
    b.check(&cache, "k");
    assert_eq!(cache.list().unwrap().len(), 1);
    assert!(cache.contains("k").unwrap());
    assert!(cache.remove("k").unwrap());
    assert!(!cache.remove("k").unwrap());
    assert!(cache.get("k").unwrap().is_none());
    a.put(&cache, "x").unwrap();
    b.put(&cache, "y").unwrap();
    assert_eq!(cache.clear().unwrap(), 2);
    assert!(cache.list().unwrap().is_empty());
    assert_eq!(cache.stats().unwrap().total_entries, 0);
}

#[test]
fn scope_outlives_replacement_and_compaction() {
    let dir = tempfile::tempdir().unwrap();
    let cache = open(&dir.path().join("c"));
    let a = Model::random(1, 500, 400);
    a.put(&cache, "k").unwrap();
    let held = cache.get("k").unwrap().unwrap();
    Model::random(2, 10, 10).put(&cache, "k").unwrap();
    cache.compact().unwrap();
    cache.remove("k").unwrap();
    cache.compact().unwrap();
    assert_eq!(held.nodes(), a.nodes.as_bitslice());
    assert_eq!(held.node_ids().index_of("node-00000007"), Some(7));
}

#[test]
fn list_is_most_recently_accessed_first() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::new(chrono::Utc::now()));
    let cfg = CacheConfig {
        clock: clock.clone(),
        ..CacheConfig::default()
    };
    let cache = ScopeCache::open(dir.path().join("c"), cfg).unwrap();
    for k in ["a", "b", "c"] {
        Model::random(1, 10, 10).put(&cache, k).unwrap();
        clock.advance(Duration::from_secs(1));
    }
    cache.get("a").unwrap().unwrap();
    let keys: Vec<_> = cache.list().unwrap().into_iter().map(|e| e.key).collect();
    assert_eq!(keys, ["a", "c", "b"]);
    // contains and info record no access.
    clock.advance(Duration::from_secs(1));
    assert!(cache.contains("b").unwrap());
    assert!(cache.info("b").unwrap().is_some());
    assert_eq!(cache.list().unwrap()[0].key, "a");
}

#[test]
fn ttl_slides_with_access() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::new(chrono::Utc::now()));
    let cfg = CacheConfig {
        clock: clock.clone(),
        ttl: Some(Duration::from_secs(60)),
        ..CacheConfig::default()
    };
    let cache = ScopeCache::open(dir.path().join("c"), cfg).unwrap();
    Model::random(1, 10, 10).put(&cache, "a").unwrap();
    Model::random(1, 10, 10).put(&cache, "b").unwrap();
    clock.advance(Duration::from_secs(50));
    assert!(cache.get("a").unwrap().is_some()); // slides a's TTL
    clock.advance(Duration::from_secs(50));
    assert!(cache.get("a").unwrap().is_some());
    assert!(cache.get("b").unwrap().is_none(), "b expired");
    assert!(!cache.contains("b").unwrap());
    let r = cache.maintain().unwrap();
    assert_eq!(r.expired, 1);
    assert_eq!(cache.stats().unwrap().expiries, 1);
    assert_eq!(cache.list().unwrap().len(), 1);
}

#[test]
fn lru_by_count() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::new(chrono::Utc::now()));
    let cfg = CacheConfig {
        clock: clock.clone(),
        max_entries: 3,
        ..CacheConfig::default()
    };
    let cache = ScopeCache::open(dir.path().join("c"), cfg).unwrap();
    for k in ["a", "b", "c"] {
        Model::random(1, 10, 10).put(&cache, k).unwrap();
        clock.advance(Duration::from_secs(1));
    }
    cache.get("a").unwrap().unwrap();
    clock.advance(Duration::from_secs(1));
    Model::random(1, 10, 10).put(&cache, "d").unwrap();
    let mut keys: Vec<_> = cache.list().unwrap().into_iter().map(|e| e.key).collect();
    keys.sort();
    assert_eq!(keys, ["a", "c", "d"], "b was least recently used");
    assert_eq!(cache.stats().unwrap().evictions, 1);
}

#[test]
fn lru_by_size_keeps_the_file_bounded() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::new(chrono::Utc::now()));
    let max = 400_000;
    let cfg = CacheConfig {
        clock: clock.clone(),
        max_size_bytes: max,
        ..CacheConfig::default()
    };
    let cache = ScopeCache::open(dir.path().join("c"), cfg).unwrap();
    // Each scope has mappings of its own: about 75 KB each.
    for i in 0..20u64 {
        let mut m = Model::random(i, 2000, 1000);
        m.node_ids.iter_mut().for_each(|s| s.push_str(&i.to_string()));
        m.put(&cache, &format!("k{i:02}")).unwrap();
        clock.advance(Duration::from_secs(1));
        let st = cache.stats().unwrap();
        assert!(
            st.file_bytes <= max,
            "file {} > {max} after put {i}",
            st.file_bytes
        );
    }
    let list = cache.list().unwrap();
    assert!(list.len() < 20 && !list.is_empty());
    assert_eq!(list[0].key, "k19");
    assert!(cache.stats().unwrap().evictions > 0);
    // The newest ones survive, intact.
    let mut m = Model::random(19, 2000, 1000);
    m.node_ids.iter_mut().for_each(|s| s.push_str("19"));
    m.check(&cache, "k19");
}

#[test]
fn a_scope_larger_than_the_cache_is_refused_and_nothing_is_written() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = CacheConfig {
        max_size_bytes: 50_000,
        ..CacheConfig::default()
    };
    let cache = ScopeCache::open(dir.path().join("c"), cfg).unwrap();
    let before = std::fs::metadata(dir.path().join("c")).unwrap().len();
    let err = Model::random(1, 20_000, 20_000).put(&cache, "big").unwrap_err();
    assert!(matches!(err, Error::TooLarge { .. }), "{err}");
    assert_eq!(std::fs::metadata(dir.path().join("c")).unwrap().len(), before);
}

#[test]
fn shared_mapping_is_stored_once() {
    let dir = tempfile::tempdir().unwrap();
    let cache = open(&dir.path().join("c"));
    let m = Model::random(1, 50_000, 100_000);
    let (n, l) = m.maps();
    m.put_with(&cache, "a", &n, &l).unwrap();
    let after_one = cache.stats().unwrap().file_bytes;
    let mut m2 = m.clone();
    m2.nodes.fill(true);
    m2.put_with(&cache, "b", &n, &l).unwrap();
    let growth = cache.stats().unwrap().file_bytes - after_one;
    let bitsets = (50_000 + 100_000) / 8;
    assert!(
        growth < bitsets + 8192,
        "second put grew the file by {growth}, bitsets are {bitsets}"
    );
    // Even mappings built again from the same ids are recognised.
    let (n2, l2) = m.maps();
    m.put_with(&cache, "c", &n2, &l2).unwrap();
    assert_eq!(cache.stats().unwrap().stored_mappings, 2);
    // A mapping taken from a gotten scope is recognised too.
    let s = cache.get("a").unwrap().unwrap();
    m.put_with(&cache, "d", s.node_ids(), s.link_ids()).unwrap();
    assert_eq!(cache.stats().unwrap().stored_mappings, 2);
    m2.check(&cache, "b");
    m.check(&cache, "d");
}

#[test]
fn compaction_keeps_every_live_scope() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c");
    let cache = open(&path);
    let models: Vec<Model> = (0..6)
        .map(|i| Model::random(i, 3000 + i as usize, 2000))
        .collect();
    for (i, m) in models.iter().enumerate() {
        m.put(&cache, &format!("k{i}")).unwrap();
    }
    for i in [1, 3] {
        cache.remove(&format!("k{i}")).unwrap();
    }
    let before = cache.stats().unwrap();
    let r = cache.compact().unwrap();
    assert!(r.bytes_after < r.bytes_before);
    let after = cache.stats().unwrap();
    assert_eq!(after.dead_bytes, 0, "{after:?}");
    assert!(after.file_bytes < before.file_bytes);
    for i in [0, 2, 4, 5] {
        models[i].check(&cache, &format!("k{i}"));
    }
    assert!(cache.verify().unwrap().is_clean());
    // Another handle opened before the compaction follows the file.
    let other = open(&path);
    cache.compact().unwrap();
    models[0].check(&other, "k0");
    assert_eq!(
        std::fs::metadata(&path).unwrap().len(),
        cache.stats().unwrap().file_bytes
    );
}

#[test]
fn bad_input_is_refused_before_anything_is_written() {
    let dir = tempfile::tempdir().unwrap();
    let cache = open(&dir.path().join("c"));
    let m = Model::random(1, 10, 10);
    let long = "k".repeat(1025);
    for key in ["", long.as_str(), "a\0b"] {
        assert!(
            matches!(m.put(&cache, key), Err(Error::InvalidKey { .. })),
            "{key:?}"
        );
        assert!(matches!(cache.get(key), Err(Error::InvalidKey { .. })));
    }
    let (n, l) = m.maps();
    let short = bitvec![u64, Lsb0; 1; 9];
    let attrs = serde_json::Map::new();
    let err = cache
        .put(
            "k",
            &ScopeData {
                nodes: &short,
                links: &m.links,
                node_ids: &n,
                link_ids: &l,
                attributes: &attrs,
            },
        )
        .unwrap_err();
    assert!(
        matches!(
            err,
            Error::LengthMismatch {
                what: "nodes",
                bits: 9,
                ids: 10
            }
        ),
        "{err}"
    );
    assert!(matches!(
        IdMap::from_ids(["a", "b", "a"]),
        Err(Error::DuplicateId {
            first: 0,
            second: 2,
            ..
        })
    ));
    assert_eq!(cache.stats().unwrap().total_entries, 0);
    assert_eq!(cache.stats().unwrap().generation, 1);
}

#[test]
fn stats_match_the_original_fields() {
    let dir = tempfile::tempdir().unwrap();
    let cache = open(&dir.path().join("c"));
    Model::random(1, 100, 200).put(&cache, "a").unwrap();
    Model::random(2, 300, 400).put(&cache, "b").unwrap();
    cache.get("a").unwrap().unwrap();
    cache.get("zz").unwrap();
    let s = cache.stats().unwrap();
    assert_eq!(s.total_entries, 2);
    assert_eq!(s.total_nodes, 400);
    assert_eq!(s.total_links, 600);
    assert_eq!(s.average_nodes_per_entry, 200);
    assert_eq!((s.hits, s.misses, s.puts), (1, 1, 2));
    assert!(s.oldest_entry <= s.newest_entry);
    assert!(s.total_size_bytes > 0 && s.live_bytes <= s.file_bytes);
    // Counters live in the file: another handle sees them.
    let other = open(&dir.path().join("c"));
    assert_eq!(other.stats().unwrap().hits, 1);
}

#[test]
fn read_only_handles_read_and_refuse_writes() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c");
    let m = Model::random(1, 100, 100);
    m.put(&open(&path), "a").unwrap();
    let ro = ScopeCache::open(
        &path,
        CacheConfig {
            read_only: true,
            ..CacheConfig::default()
        },
    )
    .unwrap();
    assert!(ro.is_read_only());
    m.check(&ro, "a");
    assert!(matches!(m.put(&ro, "b"), Err(Error::ReadOnly { .. })));
    assert!(matches!(ro.remove("a"), Err(Error::ReadOnly { .. })));
    assert!(matches!(ro.compact(), Err(Error::ReadOnly { .. })));
}

#[test]
fn maintain_compacts_when_dead_space_dominates() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = CacheConfig {
        auto_compact: false,
        compact_min_dead_bytes: 0,
        ..CacheConfig::default()
    };
    let cache = ScopeCache::open(dir.path().join("c"), cfg).unwrap();
    let keep = Model::random(1, 1000, 1000);
    keep.put(&cache, "keep").unwrap();
    for i in 0..5 {
        Model::random(i + 10, 20_000, 20_000)
            .put(&cache, "churn")
            .unwrap();
    }
    cache.remove("churn").unwrap();
    assert!(cache.stats().unwrap().dead_bytes > cache.stats().unwrap().live_bytes);
    // With auto_compact off, maintain still only compacts via the same rule:
    let r = cache.maintain().unwrap();
    assert!(r.compaction.is_none(), "auto_compact is off");
    drop(cache);
    let cfg = CacheConfig {
        compact_min_dead_bytes: 0,
        ..CacheConfig::default()
    };
    let cache = ScopeCache::open(dir.path().join("c"), cfg).unwrap();
    let r = cache.maintain().unwrap();
    let c = r.compaction.expect("dead space over half the file: compacted");
    assert!(c.bytes_after < c.bytes_before / 2, "{c:?}");
    keep.check(&cache, "keep");
    assert_eq!(cache.stats().unwrap().compactions, 1);
}

#[test]
fn one_handle_serves_many_threads() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<ScopeCache>();
    assert_send_sync::<scopecache::Scope>();
    let dir = tempfile::tempdir().unwrap();
    let cache = open(&dir.path().join("c"));
    let models: Vec<Model> = (0..4).map(|i| Model::random(i, 300, 200)).collect();
    std::thread::scope(|s| {
        for (t, m) in models.iter().enumerate() {
            let cache = &cache;
            s.spawn(move || {
                for round in 0..5 {
                    m.put(cache, &format!("t{t}")).unwrap();
                    m.check(cache, &format!("t{t}"));
                    if round % 2 == 1 {
                        cache.compact().unwrap();
                    }
                }
            });
        }
    });
    for (t, m) in models.iter().enumerate() {
        m.check(&cache, &format!("t{t}"));
    }
    assert!(cache.verify().unwrap().is_clean());
}

#[test]
fn replacing_the_last_user_of_a_mapping_does_not_write_it_again() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = CacheConfig {
        auto_compact: false,
        ..CacheConfig::default()
    };
    let cache = ScopeCache::open(dir.path().join("c"), cfg).unwrap();
    let m = Model::random(1, 50_000, 100_000);
    let (n, l) = m.maps();
    m.put_with(&cache, "only", &n, &l).unwrap();
    let before = cache.stats().unwrap().file_bytes;
    let mut m2 = m.clone();
    m2.nodes.fill(false);
    m2.put_with(&cache, "only", &n, &l).unwrap();
    let growth = cache.stats().unwrap().file_bytes - before;
    let bitsets = (50_000 + 100_000) / 8;
    assert!(
        growth < bitsets + 8192,
        "replace grew the file by {growth}, bitsets are {bitsets}"
    );
    m2.check(&cache, "only");
    assert_eq!(cache.stats().unwrap().stored_mappings, 2);
    assert!(cache.verify().unwrap().is_clean());
}
