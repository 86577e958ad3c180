//! What a fresh open costs in a file of many entries, and what bounds it.
//!
//! ```text
//! cargo bench --bench fresh_open            # 10,000 entries
//! cargo bench --bench fresh_open -- 1000
//! ```
//!
//! Writes (once, under the system's temp dir) a compacted file of N small
//! scopes sharing two mappings, as `benches/growth.rs` does, then reports
//! medians of 60 rounds of:
//! - a fresh handle's open + get + bit test, in this process (a new
//!   `ScopeCache`, so a new mapping, base copy and checks);
//! - the same in a new process (this binary re-executed), timed inside it,
//!   with its minor page faults: what a short-lived reader pays, since its
//!   heap is new too;
//! - a pread of the base index alone and its CRC32: the part of the open
//!   that moving bytes costs.

use bitvec::prelude::*;
use scopecache::{CacheConfig, IdMap, ScopeCache, ScopeData};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::time::Instant;

const ROUNDS: usize = 60;
const KEY: &str = "key-000007";

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn minor_faults() -> i64 {
    // SAFETY: getrusage only writes the struct it is given.
    let mut u: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: as above; RUSAGE_SELF is always valid.
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut u) };
    u.ru_minflt
}

/// Open + get + bit test; returns (ms, page faults).
fn open_get(path: &Path) -> (f64, i64) {
    let f0 = minor_faults();
    let t = Instant::now();
    let cache = ScopeCache::open(path, CacheConfig::default()).expect("open");
    let scope = cache.get(KEY).expect("get").expect("the key is there");
    assert!(scope.nodes()[3]);
    (t.elapsed().as_secs_f64() * 1e3, minor_faults() - f0)
}

fn write_file(path: &Path, n: usize) {
    let nodes = IdMap::from_ids((0..1000).map(|i| format!("node-{i:06}"))).expect("ids");
    let links = IdMap::from_ids((0..2000).map(|i| format!("link-{i:06}"))).expect("ids");
    let nb: BitVec<u64, Lsb0> = (0..1000).map(|i| i % 3 == 0).collect();
    let lb: BitVec<u64, Lsb0> = (0..2000).map(|i| i % 7 == 0).collect();
    let attributes = serde_json::Map::new();
    let data = ScopeData {
        nodes: &nb,
        links: &lb,
        node_ids: &nodes,
        link_ids: &links,
        attributes: &attributes,
    };
    let cfg = CacheConfig {
        max_entries: n + 10,
        max_size_bytes: 1 << 40,
        ttl: None,
        fsync: false,
        ..CacheConfig::default()
    };
    let tmp = path.with_extension("tmp");
    let _ = std::fs::remove_file(&tmp);
    let cache = ScopeCache::open(&tmp, cfg).expect("open");
    for i in 0..n {
        cache.put(&format!("key-{i:06}"), &data).expect("put");
    }
    cache.compact().expect("compact");
    drop(cache);
    std::fs::rename(&tmp, path).expect("rename");
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if let [_, flag, path] = &args[..] {
        if flag == "--child" {
            let (ms, faults) = open_get(Path::new(path));
            println!("{ms} {faults}");
            return;
        }
    }
    let n: usize = args.iter().skip(1).find_map(|a| a.parse().ok()).unwrap_or(10_000);
    let path: PathBuf = std::env::temp_dir().join(format!("scopecache-fresh-open-{n}.cache"));
    if !path.exists() {
        write_file(&path, n);
    }
    let file = std::fs::File::open(&path).expect("open");
    let mut slots = [[0u8; 128]; 2];
    for (k, slot) in slots.iter_mut().enumerate() {
        file.read_exact_at(slot, 4096 * k as u64).expect("superblock");
    }
    let field = |s: &[u8; 128], at: usize| u64::from_le_bytes(s[at..at + 8].try_into().expect("8 bytes"));
    let sb = if field(&slots[1], 16) > field(&slots[0], 16) {
        &slots[1]
    } else {
        &slots[0]
    };
    let (base_at, base_len) = (field(sb, 32), field(sb, 40) as usize);

    let me = std::env::current_exe().expect("this binary");
    let (mut here, mut fresh, mut faults, mut read_crc) = (vec![], vec![], vec![], vec![]);
    let mut buf = vec![0u8; base_len];
    for _ in 0..ROUNDS {
        here.push(open_get(&path).0);
        let out = std::process::Command::new(&me)
            .arg("--child")
            .arg(&path)
            .output()
            .expect("child");
        let text = String::from_utf8_lossy(&out.stdout);
        let mut it = text
            .split_whitespace()
            .map(|w| w.parse::<f64>().unwrap_or(f64::NAN));
        fresh.push(it.next().unwrap_or(f64::NAN));
        faults.push(it.next().unwrap_or(f64::NAN));
        let t = Instant::now();
        file.read_exact_at(&mut buf, base_at).expect("pread");
        std::hint::black_box(crc32fast::hash(&buf));
        read_crc.push(t.elapsed().as_secs_f64() * 1e3);
    }
    println!(
        "{n} entries, base index {base_len} bytes, medians of {ROUNDS}: open+get+bit {:.3} ms (fresh handle), \
         {:.3} ms with {:.0} page faults (fresh process); pread + CRC32 of the base {:.3} ms",
        median(here),
        median(fresh),
        median(faults),
        median(read_crc)
    );
}
