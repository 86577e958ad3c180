//! How the cost of a put and of a fresh open grows with the number of
//! entries in the file: small scopes (1,000 nodes, 2,000 links) sharing two
//! mappings, at 10, 1,000 and 10,000 entries.
//!
//! ```text
//! cargo bench --bench growth
//! ```
//!
//! For each size: the median of `SCOPECACHE_BENCH_REPS` (default 50) puts of
//! new keys (fsync off, and on), and of a fresh handle's open + get + bit
//! test (a new `ScopeCache`, so a new mapping and snapshot; the page cache is
//! warm). `SCOPECACHE_BENCH_SIZES=10,1000` picks the sizes.

use bitvec::prelude::*;
use scopecache::{CacheConfig, IdMap, ScopeCache, ScopeData};
use std::time::Instant;

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn mean(v: &[f64]) -> f64 {
    v.iter().sum::<f64>() / v.len() as f64
}

fn main() {
    let reps: usize = std::env::var("SCOPECACHE_BENCH_REPS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(50);
    let sizes: Vec<usize> = std::env::var("SCOPECACHE_BENCH_SIZES")
        .ok()
        .map(|v| v.split(',').filter_map(|s| s.trim().parse().ok()).collect())
        .unwrap_or_else(|| vec![10, 1000, 10_000]);
    let nodes = IdMap::from_ids((0..1000).map(|i| format!("node-{i:06}"))).expect("ids");
    let links = IdMap::from_ids((0..2000).map(|i| format!("link-{i:06}"))).expect("ids");
    let nb: BitVec<u64, Lsb0> = (0..1000).map(|i| i % 3 == 0).collect();
    let lb: BitVec<u64, Lsb0> = (0..2000).map(|i| i % 7 == 0).collect();
    let mut attrs = serde_json::Map::new();
    attrs.insert("run".into(), "growth".into());
    let data = ScopeData {
        nodes: &nb,
        links: &lb,
        node_ids: &nodes,
        link_ids: &links,
        attributes: &attrs,
    };
    println!(
        "| entries | put, fsync off (ms) | mean | put, fsync on (ms) | fresh open + get + bit (ms) | file (bytes) |"
    );
    println!("|---|---|---|---|---|---|");
    for &n in &sizes {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("growth.cache");
        let cfg = |fsync: bool| CacheConfig {
            max_entries: n + 2 * reps + 10,
            max_size_bytes: 1 << 40,
            ttl: None,
            fsync,
            ..CacheConfig::default()
        };
        let cache = ScopeCache::open(&path, cfg(false)).expect("open");
        for i in 0..n {
            cache.put(&format!("scope-{i:06}"), &data).expect("put");
        }
        let mut off = Vec::new();
        for i in 0..reps {
            let t = Instant::now();
            cache.put(&format!("extra-{i:06}"), &data).expect("put");
            off.push(t.elapsed().as_secs_f64() * 1e3);
            cache.remove(&format!("extra-{i:06}")).expect("remove");
        }
        drop(cache);
        let synced = ScopeCache::open(&path, cfg(true)).expect("open");
        let mut on = Vec::new();
        for i in 0..reps {
            let t = Instant::now();
            synced.put(&format!("synced-{i:06}"), &data).expect("put");
            on.push(t.elapsed().as_secs_f64() * 1e3);
            synced.remove(&format!("synced-{i:06}")).expect("remove");
        }
        drop(synced);
        let mut fresh = Vec::new();
        for i in 0..reps {
            let key = format!("scope-{:06}", (i * 7919) % n);
            let t = Instant::now();
            let c = ScopeCache::open(&path, cfg(true)).expect("open");
            let s = c.get(&key).expect("get").expect("stored");
            let bit = s.nodes()[3];
            fresh.push(t.elapsed().as_secs_f64() * 1e3);
            std::hint::black_box(bit);
        }
        let len = std::fs::metadata(&path).expect("stat").len();
        println!(
            "| {n} | {:.3} | {:.3} | {:.3} | {:.3} | {len} |",
            median(off.clone()),
            mean(&off),
            median(on),
            median(fresh)
        );
    }
}
