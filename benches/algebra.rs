//! Criterion benches of the coverage algebra over stored scopes sharing
//! their mappings: union, intersection and difference, per-bit counts, and
//! covered-id iteration.
//!
//! ```text
//! cargo bench --bench algebra                          # small: 50 scopes of 10k nodes + 20k links
//! SCOPECACHE_BENCH_FULL=1 cargo bench --bench algebra  # also 50 scopes of 4M nodes + 8M links (~2 GB RAM)
//! SCOPECACHE_BENCH_DIR=/path cargo bench ...           # where the cache file goes (default: the temp dir)
//! ```
//!
//! The 50 scopes (random bits, about half set) are put into one cache file
//! and gotten back once; every measurement reads their bitsets in place from
//! the mapped file. The file was just written, so its pages are in the page
//! cache, and criterion's warm-up faults them into this process: the figures
//! are of memory, not of the disk. Throughput is given in input bytes (the
//! bitset words of every input scope) for the set operations and counts,
//! and in ids for the covered-id iteration.

use bitvec::prelude::{BitVec, Lsb0};
use criterion::{black_box, Criterion, Throughput};
use scopecache::{algebra, CacheConfig, IdMap, Scope, ScopeCache, ScopeData};
use std::path::PathBuf;
use std::time::Duration;

mod workload;
use workload::Rng;

/// Scopes combined.
const SCOPES: usize = 50;

fn bench_dir() -> tempfile::TempDir {
    let base = std::env::var_os("SCOPECACHE_BENCH_DIR").map_or_else(std::env::temp_dir, PathBuf::from);
    tempfile::Builder::new()
        .prefix("scopecache-bench-algebra")
        .tempdir_in(base)
        .unwrap()
}

fn random_bits(len: usize, rng: &mut Rng) -> BitVec<u64, Lsb0> {
    workload::random_bits(len, rng)
}

/// Puts `SCOPES` random scopes of `n` nodes and `l` links over one pair of
/// mappings and gets them back.
fn setup(dir: &std::path::Path, n: usize, l: usize) -> (ScopeCache, Vec<Scope>) {
    let config = CacheConfig {
        ttl: None,
        fsync: false,
        auto_compact: false,
        max_entries: 1000,
        max_size_bytes: 1 << 40,
        ..CacheConfig::default()
    };
    let cache = ScopeCache::open(dir.join("algebra.cache"), config).unwrap();
    let node_ids = IdMap::from_ids(workload::node_ids(n)).unwrap();
    let link_ids = IdMap::from_ids(workload::link_ids(n, l)).unwrap();
    let attributes = workload::attributes(0);
    let mut rng = Rng::new(42);
    for k in 0..SCOPES {
        let nodes = random_bits(n, &mut rng);
        let links = random_bits(l, &mut rng);
        cache
            .put(
                &format!("run-{k:02}"),
                &ScopeData {
                    nodes: &nodes,
                    links: &links,
                    node_ids: &node_ids,
                    link_ids: &link_ids,
                    attributes: &attributes,
                },
            )
            .unwrap();
    }
    let scopes = (0..SCOPES)
        .map(|k| cache.get(&format!("run-{k:02}")).unwrap().unwrap())
        .collect();
    (cache, scopes)
}

fn bench_size(c: &mut Criterion, size: &str, n: usize, l: usize) {
    let dir = bench_dir();
    let (_cache, scopes) = setup(dir.path(), n, l);
    let refs: Vec<&Scope> = scopes.iter().collect();
    let input_bytes = (SCOPES * (n.div_ceil(64) + l.div_ceil(64)) * 8) as u64;
    let full = size == "full";

    let mut g = c.benchmark_group(format!("algebra/{size}"));
    g.warm_up_time(Duration::from_secs(1));
    g.sample_size(if full { 30 } else { 50 });
    g.measurement_time(Duration::from_secs(if full { 4 } else { 2 }));

    g.throughput(Throughput::Bytes(input_bytes));
    g.bench_function(format!("union of {SCOPES}"), |b| {
        b.iter(|| black_box(algebra::union(black_box(&refs)).unwrap()))
    });
    g.bench_function(format!("intersection of {SCOPES}"), |b| {
        b.iter(|| black_box(algebra::intersection(black_box(&refs)).unwrap()))
    });
    g.bench_function(format!("counts of {SCOPES}"), |b| {
        b.iter(|| black_box(algebra::counts(black_box(&refs)).unwrap()))
    });
    g.throughput(Throughput::Bytes(input_bytes / SCOPES as u64 * 2));
    g.bench_function("difference of 2", |b| {
        b.iter(|| black_box(algebra::difference(black_box(refs[0]), black_box(refs[1])).unwrap()))
    });

    let s = refs[0];
    let covered = s.nodes().count_ones() as u64;
    g.throughput(Throughput::Elements(covered));
    g.bench_function("covered node ids", |b| {
        b.iter(|| {
            let mut bytes = 0usize;
            for id in s.covered_node_ids() {
                bytes += black_box(id).len();
            }
            bytes
        })
    });
    g.bench_function("covered node indices", |b| {
        b.iter(|| {
            s.covered_node_indices()
                .fold(0u64, |a, i| a.wrapping_add(u64::from(black_box(i))))
        })
    });
    g.finish();
}

fn main() {
    let mut c = Criterion::default().configure_from_args();
    for (size, n, l) in workload::bench_sizes() {
        bench_size(&mut c, size, n, l);
    }
    c.final_summary();
}
