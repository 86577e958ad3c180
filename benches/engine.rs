//! Criterion benches of the public API on the standard workload
//! (see `benches/workload.rs`).
//!
//! ```text
//! cargo bench --bench engine                          # small: 10k nodes, 20k links
//! SCOPECACHE_BENCH_FULL=1 cargo bench --bench engine  # also 4M nodes, 8M links (~3 GB RAM, minutes)
//! SCOPECACHE_BENCH_DIR=/path cargo bench ...          # where cache files go (default: the temp dir)
//! ```
//!
//! Reads are measured on a warm file: before any read bench the cache file is
//! read once (its pages are in the page cache) and every id of both mappings
//! is looked up once (every page of the mapping is faulted in and every block
//! checked), so the figures are of memory, not of the disk.
//!
//! "get in a fresh process" re-executes this bench binary with
//! `SCOPECACHE_BENCH_CHILD=get`; the child times open + get + one bit test
//! with `Instant` and prints the nanoseconds, and the bench reports the sum
//! of those. Process creation, exec and dynamic loading are therefore not
//! counted; the mapping, the superblock and index checks, the first-get CRC
//! of the bitsets and the page faults of a new process are. The child also
//! prints its peak resident set (VmHWM), whose median the bench prints
//! after the group.

use bitvec::prelude::{BitSlice, Lsb0};
use criterion::{black_box, BenchmarkId, Criterion, SamplingMode, Throughput};
use scopecache::{CacheConfig, IdMap, ScopeCache, ScopeData};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

mod workload;
use workload::Workload;

const CHILD_ENV: &str = "SCOPECACHE_BENCH_CHILD";
const KEY: &str = "scope-1";
/// Random lookup keys per size (a power of two, cycled through).
const LOOKUP_KEYS: usize = 1 << 18;
/// Calls per measured iteration of the per-call benches.
const BATCH: usize = 1024;

fn bench_dir() -> tempfile::TempDir {
    let base = std::env::var_os("SCOPECACHE_BENCH_DIR").map_or_else(std::env::temp_dir, PathBuf::from);
    tempfile::Builder::new()
        .prefix("scopecache-bench")
        .tempdir_in(base)
        .unwrap()
}

fn config() -> CacheConfig {
    // Puts of one key over and over leave dead bitsets behind; automatic
    // compaction would then rewrite the whole file in the middle of a
    // measurement. The compaction bench measures it on its own.
    CacheConfig {
        auto_compact: false,
        ttl: None,
        max_entries: 1000,
        max_size_bytes: 1 << 40,
        ..CacheConfig::default()
    }
}

struct Maps {
    nodes: IdMap,
    links: IdMap,
}

impl Maps {
    fn build(w: &Workload) -> Maps {
        Maps {
            nodes: IdMap::from_ids(&w.node_ids).unwrap(),
            links: IdMap::from_ids(&w.link_ids).unwrap(),
        }
    }

    fn data<'a>(&'a self, w: &'a Workload) -> ScopeData<'a> {
        ScopeData {
            nodes: &w.nodes,
            links: &w.links,
            node_ids: &self.nodes,
            link_ids: &self.links,
            attributes: &w.attributes,
        }
    }

    fn bytes(&self, w: &Workload) -> u64 {
        self.nodes.region_len() + self.links.region_len() + (w.nodes.len() as u64 + w.links.len() as u64) / 8
    }
}

/// Configures a group for the size: a handful of flat samples at full size,
/// short runs at small size.
fn sized<'a>(
    c: &'a mut Criterion,
    name: &str,
    size: &str,
    slow: bool,
) -> criterion::BenchmarkGroup<'a, criterion::measurement::WallTime> {
    let mut g = c.benchmark_group(name);
    if size == "full" && slow {
        g.sampling_mode(SamplingMode::Flat)
            .sample_size(10)
            .warm_up_time(Duration::from_millis(1));
        g.measurement_time(Duration::from_secs(20));
    } else if slow {
        g.sampling_mode(SamplingMode::Flat)
            .sample_size(20)
            .warm_up_time(Duration::from_millis(500));
        g.measurement_time(Duration::from_secs(3));
    } else {
        g.sample_size(30)
            .warm_up_time(Duration::from_millis(500))
            .measurement_time(Duration::from_secs(2));
    }
    g
}

fn bench_size(c: &mut Criterion, size: &str, n: usize, l: usize) {
    let w = Workload::generate(n, l);
    let dir = bench_dir();
    let maps = Maps::build(&w);
    let region_bytes = maps.bytes(&w);

    // put with new mappings: IdMap::from_ids from the id strings, then put
    // into a new, empty cache file (the open is not counted).
    {
        let mut g = sized(c, "put_new_mappings", size, true);
        g.throughput(Throughput::Bytes(region_bytes));
        g.bench_function(BenchmarkId::from_parameter(size), |b| {
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                for k in 0..iters {
                    let path = dir.path().join(format!("new-{k}.cache"));
                    let cache = ScopeCache::open(&path, config()).unwrap();
                    let t = Instant::now();
                    let m = Maps::build(&w);
                    cache.put(KEY, &m.data(&w)).unwrap();
                    total += t.elapsed();
                    drop(cache);
                    std::fs::remove_file(&path).unwrap();
                }
                total
            })
        });
        g.finish();
    }

    let path = dir.path().join("main.cache");
    let cache = ScopeCache::open(&path, config()).unwrap();
    cache.put(KEY, &maps.data(&w)).unwrap();

    // put with already-stored mappings: only the bitsets are written.
    {
        let (nodes2, links2) = w.bitsets(2);
        let data = ScopeData {
            nodes: &nodes2,
            links: &links2,
            ..maps.data(&w)
        };
        let mut g = sized(c, "put_stored_mappings", size, false);
        g.throughput(Throughput::Bytes(
            (w.nodes.len() as u64 + w.links.len() as u64) / 8,
        ));
        g.bench_function(BenchmarkId::from_parameter(size), |b| {
            b.iter(|| cache.put("scope-2", &data).unwrap())
        });
        g.finish();
    }
    drop(cache);
    // Start the read benches from a compact file holding both scopes.
    let cache = ScopeCache::open(&path, config()).unwrap();
    cache.compact().unwrap();
    let warmed = workload::warm_file(&path).unwrap();
    eprintln!(
        "[{size}] warm file: read {warmed} bytes of {} before the read benches",
        path.display()
    );

    // get in a fresh process.
    {
        let bit = (n / 2) as u64;
        let expect = w.nodes[n / 2];
        let mut g = sized(c, "get_fresh_process", size, false);
        g.sample_size(20);
        let mut rss = Vec::new();
        g.bench_function(BenchmarkId::from_parameter(size), |b| {
            b.iter_custom(|iters| {
                (0..iters)
                    .map(|_| {
                        let (t, peak) = fresh_get(&path, bit, expect);
                        rss.push(peak);
                        t
                    })
                    .sum()
            })
        });
        g.finish();
        rss.sort_unstable();
        if let Some(m) = rss.get(rss.len() / 2) {
            eprintln!(
                "[{size}] get_fresh_process: median peak RSS of the child {:.2} MB (VmHWM, {} children)",
                *m as f64 / 1e6,
                rss.len()
            );
        }
    }

    let scope = cache.get(KEY).unwrap().unwrap();
    // Prefault: every id through both mappings once.
    let mut out = vec![None; l.max(n)];
    scope
        .node_ids()
        .index_of_batch(&w.node_ids, &mut out[..n])
        .unwrap();
    assert!(out[..n].iter().enumerate().all(|(i, v)| *v == Some(i as u32)));
    scope
        .link_ids()
        .index_of_batch(&w.link_ids, &mut out[..l])
        .unwrap();
    assert!(out[..l].iter().enumerate().all(|(i, v)| *v == Some(i as u32)));
    drop(out);

    {
        let mut g = sized(c, "get_cached", size, false);
        g.bench_function(BenchmarkId::from_parameter(size), |b| {
            b.iter(|| cache.get(black_box(KEY)).unwrap())
        });
        g.finish();
    }

    let node_buf = workload::random_node_ids(LOOKUP_KEYS, n, 11);
    let link_buf = workload::random_link_ids(LOOKUP_KEYS, n, l, 12);
    let (node_keys, link_keys) = (node_buf.slices(), link_buf.slices());
    {
        let mut g = sized(c, "index_of", size, false);
        g.throughput(Throughput::Elements(BATCH as u64));
        for (what, map, keys) in [
            ("nodes", scope.node_ids(), &node_keys),
            ("links", scope.link_ids(), &link_keys),
        ] {
            g.bench_function(BenchmarkId::new(what, size), |b| {
                let mut at = 0usize;
                b.iter(|| {
                    let mut found = 0u64;
                    for k in &keys[at..at + BATCH] {
                        found += u64::from(map.index_of(black_box(k)).is_some());
                    }
                    at = (at + BATCH) % LOOKUP_KEYS;
                    assert_eq!(found, BATCH as u64);
                    found
                })
            });
        }
        g.finish();
    }
    {
        let mut g = sized(c, "index_of_batch", size, false);
        g.throughput(Throughput::Elements(BATCH as u64));
        for (what, map, keys) in [
            ("nodes", scope.node_ids(), &node_keys),
            ("links", scope.link_ids(), &link_keys),
        ] {
            g.bench_function(BenchmarkId::new(what, size), |b| {
                let mut at = 0usize;
                let mut out = vec![None; BATCH];
                b.iter(|| {
                    map.index_of_batch(black_box(&keys[at..at + BATCH]), &mut out)
                        .unwrap();
                    at = (at + BATCH) % LOOKUP_KEYS;
                    out[BATCH - 1]
                })
            });
        }
        g.finish();
    }
    let node_pos = workload::random_positions(LOOKUP_KEYS, n, 13);
    let link_pos = workload::random_positions(LOOKUP_KEYS, l, 14);
    {
        let mut g = sized(c, "id_of_index", size, false);
        g.throughput(Throughput::Elements(BATCH as u64));
        for (what, map, pos) in [
            ("nodes", scope.node_ids(), &node_pos),
            ("links", scope.link_ids(), &link_pos),
        ] {
            g.bench_function(BenchmarkId::new(what, size), |b| {
                let mut at = 0usize;
                b.iter(|| {
                    let mut len = 0usize;
                    for &p in &pos[at..at + BATCH] {
                        len += map.id(black_box(p)).map_or(0, str::len);
                    }
                    at = (at + BATCH) % LOOKUP_KEYS;
                    len
                })
            });
        }
        g.finish();
    }
    {
        let mut g = sized(c, "bit_test", size, false);
        g.throughput(Throughput::Elements(BATCH as u64));
        for (what, bits, pos) in [
            ("nodes", scope.nodes(), &node_pos),
            ("links", scope.links(), &link_pos),
        ] {
            g.bench_function(BenchmarkId::new(what, size), |b| {
                let mut at = 0usize;
                b.iter(|| {
                    let bits: &BitSlice<u64, Lsb0> = black_box(bits);
                    let set = pos[at..at + BATCH].iter().filter(|&&p| bits[p as usize]).count();
                    at = (at + BATCH) % LOOKUP_KEYS;
                    set
                })
            });
        }
        // The same through the raw words (`Scope::node_words`), for hot loops.
        for (what, words, pos) in [
            ("nodes_words", scope.node_words(), &node_pos),
            ("links_words", scope.link_words(), &link_pos),
        ] {
            g.bench_function(BenchmarkId::new(what, size), |b| {
                let mut at = 0usize;
                b.iter(|| {
                    let words: &[u64] = black_box(words);
                    let set = pos[at..at + BATCH]
                        .iter()
                        .filter(|&&p| words[p as usize / 64] >> (p % 64) & 1 == 1)
                        .count();
                    at = (at + BATCH) % LOOKUP_KEYS;
                    set
                })
            });
        }
        g.finish();
    }
    {
        let links = scope.links();
        let words = scope.link_words();
        // Both ways of visiting the set bits must agree.
        let by_words: usize = set_bits_of_words(words).fold(0usize, |a, i| a ^ i);
        assert_eq!(by_words, links.iter_ones().fold(0usize, |a, i| a ^ i));
        let mut g = sized(c, "bitset_scan", size, false);
        g.throughput(Throughput::Bytes(links.len() as u64 / 8));
        g.bench_function(BenchmarkId::new("count_ones", size), |b| {
            b.iter(|| black_box(links).count_ones())
        });
        g.bench_function(BenchmarkId::new("iter_ones", size), |b| {
            b.iter(|| black_box(links).iter_ones().fold(0usize, |a, i| a ^ i))
        });
        g.bench_function(BenchmarkId::new("iter_ones_words", size), |b| {
            b.iter(|| set_bits_of_words(black_box(words)).fold(0usize, |a, i| a ^ i))
        });
        g.finish();
    }
    drop(scope);

    {
        let report = cache.verify().unwrap();
        assert!(report.is_clean(), "{:?}", report.problems);
        let mut g = sized(c, "verify", size, true);
        g.throughput(Throughput::Bytes(report.bytes_checked));
        g.bench_function(BenchmarkId::from_parameter(size), |b| {
            b.iter(|| cache.verify().unwrap())
        });
        g.finish();
    }
    {
        let live = cache.compact().unwrap().bytes_after;
        let mut g = sized(c, "compact", size, true);
        g.throughput(Throughput::Bytes(live));
        g.bench_function(BenchmarkId::from_parameter(size), |b| {
            b.iter(|| cache.compact().unwrap())
        });
        g.finish();
    }
}

/// The positions of the set bits of `words` (bit i = word i / 64, bit
/// i % 64), one `trailing_zeros` per set bit.
fn set_bits_of_words(words: &[u64]) -> impl Iterator<Item = usize> + '_ {
    words.iter().enumerate().flat_map(|(k, &w)| {
        let mut w = w;
        std::iter::from_fn(move || {
            (w != 0).then(|| {
                let b = w.trailing_zeros() as usize;
                w &= w - 1;
                k * 64 + b
            })
        })
    })
}

/// Runs one child: open + get + bit test, timed inside the child. Returns
/// the time and the child's peak resident set in bytes.
fn fresh_get(path: &Path, bit: u64, expect: bool) -> (Duration, u64) {
    let out = Command::new(std::env::current_exe().unwrap())
        .env(CHILD_ENV, "get")
        .env("SCOPECACHE_BENCH_PATH", path)
        .env("SCOPECACHE_BENCH_BIT", bit.to_string())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "child failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    let mut it = text.split_whitespace();
    let nanos: u64 = it.next().unwrap().parse().unwrap();
    let value: u8 = it.next().unwrap().parse().unwrap();
    let peak: u64 = it.next().unwrap().parse().unwrap();
    assert_eq!(value == 1, expect, "the child read a wrong bit");
    (Duration::from_nanos(nanos), peak)
}

/// The child's side of `fresh_get`.
fn child_get() {
    let path = std::env::var_os("SCOPECACHE_BENCH_PATH").unwrap();
    let bit: usize = std::env::var("SCOPECACHE_BENCH_BIT").unwrap().parse().unwrap();
    let t = Instant::now();
    let cache = ScopeCache::open(&path, CacheConfig::default()).unwrap();
    let scope = cache.get(KEY).unwrap().unwrap();
    let value = scope.nodes()[bit];
    let elapsed = t.elapsed();
    let peak = workload::peak_rss_bytes().unwrap_or(0);
    println!("{} {} {peak}", elapsed.as_nanos(), u8::from(value));
}

fn benches(c: &mut Criterion) {
    for (size, n, l) in workload::bench_sizes() {
        bench_size(c, size, n, l);
    }
}

fn main() {
    if std::env::var(CHILD_ENV).is_ok_and(|v| v == "get") {
        child_get();
        return;
    }
    let mut c = Criterion::default().configure_from_args();
    benches(&mut c);
    c.final_summary();
}
