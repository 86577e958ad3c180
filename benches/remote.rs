//! The remote tier against a loopback S3-compatible server (moto), at the
//! original's scale: `cargo bench --bench remote --features remote`
//! (`-- --nodes N --links L --runs R` to change the workload).
//!
//! Prints the median of R runs of:
//! - a pull of a scope whose mappings are not local (a fresh cache file);
//! - a pull of a second scope of the same graph (mappings local);
//! - a push that finds every object in the bucket already, and a
//!   write-through `put` of a scope whose objects are all in the bucket.

#[path = "../tests/s3server/mod.rs"]
mod s3server;

use bitvec::prelude::*;
use rand::{Rng, SeedableRng};
use scopecache::remote::Remote;
use scopecache::{CacheConfig, IdMap, ScopeCache, ScopeData};
use std::sync::Arc;
use std::time::{Duration, Instant};

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn arg(name: &str, default: usize) -> usize {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn bits(n: usize, seed: u64) -> BitVec<u64, Lsb0> {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let mut v: BitVec<u64, Lsb0> = BitVec::repeat(false, n);
    for w in v.as_raw_mut_slice() {
        *w = rng.gen();
    }
    v.set_uninitialized(false);
    v
}

fn main() {
    let nodes = arg("--nodes", 4_000_000);
    let links = arg("--links", 8_000_000);
    let runs = arg("--runs", 5).max(1);
    let Some(server) = s3server::S3Server::start() else {
        eprintln!("no S3 test server; nothing measured");
        return;
    };
    server.create_bucket("bench-bucket");
    let url = "s3://bench-bucket/bench";
    let connect_with = |verify_mappings: bool| {
        let mut c = server.config(url);
        c.timeout = Duration::from_secs(300);
        c.verify_mappings = verify_mappings;
        Remote::new(c).expect("a remote")
    };
    let connect = || connect_with(true);
    let remote = Arc::new(connect());
    let dir = tempfile::tempdir().expect("a temporary folder");
    let config = |remote: Option<Arc<Remote>>| CacheConfig {
        max_entries: 1000,
        ttl: None,
        remote,
        ..CacheConfig::default()
    };
    let t = Instant::now();
    let node_ids = IdMap::from_ids((0..nodes).map(|i| format!("node-{i:08}"))).expect("node ids");
    let link_ids = IdMap::from_ids((0..links).map(|i| format!("link-{i:08}-{:08}", (i * 7919) % nodes)))
        .expect("link ids");
    eprintln!("built the mappings in {:.2?}", t.elapsed());
    let attrs = serde_json::Map::new();
    let source = ScopeCache::open(dir.path().join("source.cache"), config(None)).expect("source cache");
    let keys: Vec<String> = (0..runs + 1).map(|i| format!("scope-{i}")).collect();
    for (i, k) in keys.iter().enumerate() {
        let (n, l) = (bits(nodes, 2 * i as u64), bits(links, 2 * i as u64 + 1));
        let data = ScopeData {
            nodes: &n,
            links: &l,
            node_ids: &node_ids,
            link_ids: &link_ids,
            attributes: &attrs,
        };
        source.put(k, &data).expect("put");
    }
    let t = Instant::now();
    for k in &keys {
        remote.push(&source, k).expect("push").expect("a local key");
    }
    eprintln!("pushed {} scopes in {:.2?}", keys.len(), t.elapsed());

    // 1. A pull whose mappings are not local: a fresh file each run.
    let mut cold = Vec::new();
    let mut cold_bytes = 0;
    let mut warm = Vec::new();
    for run in 0..runs {
        let path = dir.path().join(format!("pull-{run}.cache"));
        let cache = ScopeCache::open(&path, config(None)).expect("cache");
        let puller = connect();
        let t = Instant::now();
        let r = puller
            .pull(&cache, &keys[0])
            .expect("pull")
            .expect("in the bucket");
        cold.push(t.elapsed());
        assert_eq!(r.objects_local, 0);
        cold_bytes = r.bytes_downloaded;
        // 2. A second scope of the same graph: the mappings are local.
        let t = Instant::now();
        let r = puller
            .pull(&cache, &keys[1 + run % runs])
            .expect("pull")
            .expect("in the bucket");
        warm.push(t.elapsed());
        assert_eq!(r.objects_local, 2);
        drop(cache);
        let _ = std::fs::remove_file(&path);
    }
    let cold_m = median(cold.clone());
    println!(
        "pull, mappings not local: median {:.1} ms for {} MB = {:.0} MB/s (runs: {:?})",
        cold_m.as_secs_f64() * 1e3,
        cold_bytes / 1_000_000,
        cold_bytes as f64 / 1e6 / cold_m.as_secs_f64(),
        cold
    );
    println!(
        "pull, second scope (mappings local): median {:.1} ms (runs: {:?})",
        median(warm.clone()).as_secs_f64() * 1e3,
        warm
    );

    // 1b. The same, trusting the bucket's writers (no full mapping check).
    let mut trusted = Vec::new();
    for run in 0..runs {
        let path = dir.path().join(format!("trusted-{run}.cache"));
        let cache = ScopeCache::open(&path, config(None)).expect("cache");
        let puller = connect_with(false);
        let t = Instant::now();
        puller
            .pull(&cache, &keys[0])
            .expect("pull")
            .expect("in the bucket");
        trusted.push(t.elapsed());
        drop(cache);
        let _ = std::fs::remove_file(&path);
    }
    let trusted_m = median(trusted.clone());
    println!(
        "pull, mappings not local, verify_mappings off: median {:.1} ms = {:.0} MB/s (runs: {:?})",
        trusted_m.as_secs_f64() * 1e3,
        cold_bytes as f64 / 1e6 / trusted_m.as_secs_f64(),
        trusted
    );

    // 3. A push that finds every object (and the same manifest) in the bucket.
    let mut again = Vec::new();
    for run in 0..runs.max(5) {
        let t = Instant::now();
        remote.push(&source, &keys[run % keys.len()]).expect("push");
        again.push(t.elapsed());
    }
    println!(
        "push, every object in the bucket: median {:.1} ms (runs: {:?})",
        median(again.clone()).as_secs_f64() * 1e3,
        again
    );
    // ... and a write-through put of a scope whose objects are all there.
    let wt = ScopeCache::open(dir.path().join("wt.cache"), config(Some(Arc::clone(&remote)))).expect("cache");
    let (n, l) = (bits(nodes, 0), bits(links, 1));
    let data = ScopeData {
        nodes: &n,
        links: &l,
        node_ids: &node_ids,
        link_ids: &link_ids,
        attributes: &attrs,
    };
    wt.put("first", &data).expect("put");
    let mut puts = Vec::new();
    for run in 0..runs.max(5) {
        let t = Instant::now();
        wt.put(&keys[0], &data).expect("put");
        puts.push(t.elapsed());
        assert!(remote.pending().is_empty(), "run {run}: the write-through failed");
    }
    println!(
        "write-through put, every object in the bucket (local put included): median {:.1} ms (runs: {:?})",
        median(puts.clone()).as_secs_f64() * 1e3,
        puts
    );
}
