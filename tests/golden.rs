//! The format does not change by accident. `tests/data/golden-v2.cache` was
//! written by this library (format version 2) with a stopped clock; this
//! build must read it exactly, and must still write the same bytes for the
//! same calls (apart from the random file id and the superblock CRCs that
//! cover it). A change to the layout of the index (an rkyv upgrade, or rkyv
//! features unified differently by another crate in a build) fails here.
//! `tests/data/golden-v1.cache` holds the same calls written by the format
//! version 1 writer: this build must still read it exactly.
//!
//! If the format changes on purpose, bump `FORMAT_VERSION`, add a new golden
//! file, and keep reading (or refusing) the old ones. To write the newest
//! golden file again: `SCOPECACHE_WRITE_GOLDEN=1 cargo test --test golden golden_file`.

#[path = "common/sample.rs"]
mod sample;

use scopecache::{CacheConfig, ManualClock, ScopeCache};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

/// 2024-01-02T03:04:05Z, when the golden file's scopes were put.
const START_SECS: i64 = 1_704_164_645;

/// The newest format version, whose golden file this writer must reproduce.
const NEWEST: u32 = 2;

fn golden_path(version: u32) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("tests/data/golden-v{version}.cache"))
}

fn clock() -> Arc<ManualClock> {
    Arc::new(ManualClock::new(
        chrono::DateTime::from_timestamp(START_SECS, 0).unwrap(),
    ))
}

/// Writes the golden content: the sample's three scopes, one a minute, then
/// a fourth scope removed again, so that the file holds a dead region.
fn write_golden(path: &Path) {
    let clock = clock();
    let cfg = CacheConfig {
        clock: clock.clone(),
        ttl: None,
        ..CacheConfig::default()
    };
    let cache = ScopeCache::open(path, cfg).unwrap();
    let all = sample::scopes();
    for e in &all {
        sample::put(&cache, e).unwrap();
        clock.advance(Duration::from_secs(60));
    }
    let mut extra = all[0].clone();
    extra.key = "removed";
    sample::put(&cache, &extra).unwrap();
    assert!(cache.remove("removed").unwrap());
}

/// Bytes the writer may legitimately vary: the file id and the CRCs of the
/// two superblocks that cover it.
fn mask_random(mut b: Vec<u8>) -> Vec<u8> {
    for slot in [0usize, 4096] {
        if b.len() >= slot + 128 {
            b[slot + 64..slot + 72].fill(0);
            b[slot + 124..slot + 128].fill(0);
        }
    }
    b
}

#[test]
fn golden_file_reads_back_exactly() {
    if std::env::var_os("SCOPECACHE_WRITE_GOLDEN").is_some() {
        let _ = std::fs::remove_file(golden_path(NEWEST));
        write_golden(&golden_path(NEWEST));
    }
    for version in 1..=NEWEST {
        reads_back_exactly(version);
    }
}

fn reads_back_exactly(version: u32) {
    let golden = std::fs::read(golden_path(version)).expect("a golden file in tests/data");
    assert!(
        golden.len() < 32 * 1024,
        "the golden file stays small: {} bytes",
        golden.len()
    );
    // Work on a copy: opening read-write records accesses in the file.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("golden.cache");
    std::fs::write(&path, &golden).unwrap();
    for read_only in [true, false] {
        let cfg = CacheConfig {
            read_only,
            ttl: None,
            clock: clock(),
            ..CacheConfig::default()
        };
        let cache = ScopeCache::open(&path, cfg).unwrap();
        assert_eq!(cache.is_read_only(), read_only);
        assert_eq!(
            cache.generation().unwrap(),
            6,
            "v{version}: created as 1, then 3 puts, a put and a remove"
        );
        let list = cache.list().unwrap();
        let keys: Vec<&str> = list.iter().map(|e| e.key.as_str()).collect();
        assert_eq!(keys, ["gamma", "beta", "alpha"], "most recently accessed first");
        for (i, e) in sample::scopes().iter().enumerate() {
            let info = list.iter().find(|x| x.key == e.key).unwrap();
            let created = chrono::DateTime::from_timestamp(START_SECS + 60 * i as i64, 0).unwrap();
            assert_eq!(info.created_at, created, "{}", e.key);
            assert_eq!(info.last_accessed, created, "{}", e.key);
            assert_eq!(info.total_nodes, e.nodes.len() as u64);
            assert_eq!(info.total_links, e.links.len() as u64);
            let s = cache.get(e.key).unwrap().unwrap();
            assert!(
                sample::matches(&s, e),
                "{}: contents differ from the golden scope",
                e.key
            );
            assert_eq!(s.node_words(), e.nodes.as_raw_slice(), "{}: stored words", e.key);
        }
        assert!(cache.get("removed").unwrap().is_none());
        let stats = cache.stats().unwrap();
        assert_eq!(stats.total_entries, 3);
        assert_eq!(stats.puts, 4);
        assert_eq!(stats.removes, 1);
        assert_eq!(
            stats.stored_mappings, 5,
            "alpha and beta share one node mapping; gamma has an empty link mapping"
        );
        assert_eq!(stats.file_bytes, golden.len() as u64);
        assert!(stats.dead_bytes > 0, "the removed scope's regions are dead");
        let report = cache.verify().unwrap();
        assert!(report.is_clean(), "{:?}", report.problems);
        assert_eq!((report.entries, report.mappings), (3, 5));
    }
}

#[test]
fn writer_still_produces_the_golden_bytes() {
    let golden = std::fs::read(golden_path(NEWEST)).expect("the newest golden file in tests/data");
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("fresh.cache");
    write_golden(&path);
    let fresh = std::fs::read(&path).unwrap();
    assert_eq!(
        fresh.len(),
        golden.len(),
        "file length changed: a format change needs a new version"
    );
    let (g, f) = (mask_random(golden), mask_random(fresh));
    let first = g.iter().zip(f.iter()).position(|(a, b)| a != b);
    assert_eq!(
        first, None,
        "the writer's bytes changed (first difference at offset {first:?}): \
         a format change needs a new FORMAT_VERSION and golden file"
    );
}
