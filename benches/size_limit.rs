//! A cache at its size limit: how often puts compact, what a put costs, and
//! whether the file stays within `max_size_bytes`, with the low-water mark
//! (the default, 0.8) and without it (1.0: evict only what each put needs),
//! side by side in one run.
//!
//! ```text
//! cargo bench --bench size_limit
//! ```
//!
//! `SCOPECACHE_BENCH_PUTS` (default 400) puts of scopes of 100,000 nodes and
//! 100,000 links (25 KB of bitsets) sharing one mapping, into a 5 MiB cache;
//! fsync is on unless `SCOPECACHE_BENCH_FSYNC=0`.

use bitvec::prelude::*;
use scopecache::{CacheConfig, IdMap, ScopeCache, ScopeData};
use std::time::Instant;

fn env(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

struct Run {
    low_water: f64,
    steady_puts: u64,
    steady_compactions: u64,
    median_put_ms: f64,
    p99_put_ms: f64,
    max_file: u64,
    entries: u64,
}

fn run(low_water: f64, puts: u64, fsync: bool) -> Run {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("full.cache");
    let max = 5u64 << 20;
    let cfg = CacheConfig {
        max_size_bytes: max,
        max_entries: 1_000_000,
        ttl: None,
        evict_low_water: low_water,
        fsync,
        ..CacheConfig::default()
    };
    let cache = ScopeCache::open(&path, cfg).expect("open");
    let ids = IdMap::from_ids((0..100_000).map(|i| format!("n{i}"))).expect("ids");
    let attrs = serde_json::Map::new();
    let mut times = Vec::new();
    let mut max_file = 0;
    let mut full_at: Option<(u64, u64)> = None;
    for i in 0..puts {
        let bits: BitVec<u64, Lsb0> = (0..100_000).map(|b| (b as u64 + i).is_multiple_of(11)).collect();
        let data = ScopeData {
            nodes: &bits,
            links: &bits,
            node_ids: &ids,
            link_ids: &ids,
            attributes: &attrs,
        };
        let t = Instant::now();
        cache.put(&format!("scope-{i:05}"), &data).expect("put");
        let dt = t.elapsed().as_secs_f64() * 1e3;
        max_file = max_file.max(std::fs::metadata(&path).expect("stat").len());
        let s = cache.stats().expect("stats");
        match full_at {
            None if s.evictions > 0 => full_at = Some((i, s.compactions)),
            Some(_) => times.push(dt),
            None => {}
        }
    }
    let s = cache.stats().expect("stats");
    let (at, base) = full_at.unwrap_or((puts, s.compactions));
    times.sort_by(f64::total_cmp);
    let pick = |q: f64| {
        times
            .get(((times.len() as f64 - 1.0) * q) as usize)
            .copied()
            .unwrap_or(f64::NAN)
    };
    Run {
        low_water,
        steady_puts: puts - at - 1,
        steady_compactions: s.compactions - base,
        median_put_ms: pick(0.5),
        p99_put_ms: pick(0.99),
        max_file,
        entries: s.total_entries,
    }
}

fn main() {
    // `cargo bench` passes `--bench`; `cargo test --benches` passes nothing.
    let puts = env("SCOPECACHE_BENCH_PUTS", 400);
    let fsync = env("SCOPECACHE_BENCH_FSYNC", 1) != 0;
    println!("{puts} puts of 25 KB scopes into a 5 MiB cache (5,242,880 bytes), fsync {fsync}");
    println!("| low-water mark | puts at the limit | compactions | puts per compaction | median put (ms) | p99 put (ms) | largest file (bytes) | entries at end |");
    println!("|---|---|---|---|---|---|---|---|");
    for lw in [0.8, 1.0] {
        let r = run(lw, puts, fsync);
        let per = r.steady_puts as f64 / r.steady_compactions.max(1) as f64;
        println!(
            "| {:.1} | {} | {} | {:.1} | {:.2} | {:.2} | {} | {} |",
            r.low_water,
            r.steady_puts,
            r.steady_compactions,
            per,
            r.median_put_ms,
            r.p99_put_ms,
            r.max_file,
            r.entries
        );
    }
}
