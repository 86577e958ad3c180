//! Id-map lookups and builds at the sizes of a large coverage scope.
//!
//! `SCOPECACHE_BENCH_NODES` sets the node count (default 1,000,000); there
//! are twice as many links. Node ids are `node-%08d`; link `i` is
//! `link-%08d-%08d` with `i` and `i * 7919 mod nodes`.

use std::hint::black_box;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use scopecache::IdMap;

fn node_count() -> usize {
    std::env::var("SCOPECACHE_BENCH_NODES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000)
}

fn node_ids(n: usize) -> Vec<String> {
    (0..n).map(|i| format!("node-{i:08}")).collect()
}

fn link_ids(nodes: usize) -> Vec<String> {
    (0..2 * nodes)
        .map(|i| format!("link-{i:08}-{:08}", (i as u64 * 7919 % nodes as u64)))
        .collect()
}

/// A fixed pseudo-random permutation of `0..n` (xorshift, so the bench
/// needs no seed handling and every run looks up the same ids).
fn shuffled(n: usize) -> Vec<u32> {
    let mut order: Vec<u32> = (0..n as u32).collect();
    let mut x = 0x9E37_79B9_7F4A_7C15u64;
    for i in (1..n).rev() {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        order.swap(i, (x % (i as u64 + 1)) as usize);
    }
    order
}

fn bench_map(c: &mut Criterion, name: &str, ids: &[String]) {
    let map = IdMap::from_ids(ids).expect("bench ids are distinct");
    let order = shuffled(ids.len());
    // Queries are cloned in random order so that they sit one after the
    // other in memory: reading a query costs no miss, only the map does.
    let queries: Vec<String> = order.iter().map(|&i| ids[i as usize].clone()).collect();

    let mut group = c.benchmark_group(name);
    group.measurement_time(Duration::from_secs(4));
    let mut k = 0usize;
    group.bench_function("index_of", |b| {
        b.iter(|| {
            let q = &queries[k];
            k += 1;
            if k == queries.len() {
                k = 0;
            }
            black_box(map.index_of(black_box(q)))
        })
    });
    let mut k = 0usize;
    group.bench_function("id", |b| {
        b.iter(|| {
            let i = order[k];
            k += 1;
            if k == order.len() {
                k = 0;
            }
            black_box(map.id(black_box(i)).map(str::len))
        })
    });
    const BATCH: usize = 4096;
    let mut out = vec![None; BATCH];
    let mut k = 0usize;
    group.throughput(Throughput::Elements(BATCH as u64));
    group.bench_function("index_of_batch_4096", |b| {
        b.iter(|| {
            if k + BATCH > queries.len() {
                k = 0;
            }
            map.index_of_batch(&queries[k..k + BATCH], &mut out)
                .expect("lengths match");
            k += BATCH;
            black_box(&out);
        })
    });
    group.finish();

    let mut group = c.benchmark_group(name);
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(10));
    group.bench_function("from_ids", |b| {
        b.iter_batched(
            || (),
            |()| IdMap::from_ids(ids).expect("bench ids are distinct"),
            BatchSize::PerIteration,
        )
    });
    group.finish();
}

fn bench(c: &mut Criterion) {
    let nodes = node_count();
    bench_map(c, "nodes", &node_ids(nodes));
    bench_map(c, "links", &link_ids(nodes));
}

criterion_group!(benches, bench);
criterion_main!(benches);
