//! Opens arbitrary bytes as a cache file and uses it every way a reader or
//! a healing writer would: the file must be refused with an error or read
//! without a crash, whatever its bytes.
//!
//! Run (from the repository root; needs cargo-fuzz and a nightly toolchain):
//!
//! ```text
//! cargo +nightly fuzz run open_file fuzz/corpus/open_file -- -max_len=65536 -timeout=10 -max_total_time=1800
//! ```
//!
//! The seeds in `fuzz/corpus/open_file/` are small valid cache files; they are
//! written again by `SCOPECACHE_WRITE_FUZZ_SEEDS=1 cargo test --test corruption
//! write_fuzz_seeds -- --ignored`. A crash found here becomes a regression
//! file in `tests/data/fuzz-regressions/`, replayed by `tests/corruption.rs`.
#![no_main]

use libfuzzer_sys::fuzz_target;
use scopecache::{CacheConfig, ScopeCache};
use std::path::PathBuf;
use std::sync::OnceLock;

fn path() -> &'static PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("scopecache-fuzz-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        dir.join("input.cache")
    })
}

/// Makes the CRCs of both superblocks, and of the index each names, right
/// again, so that mutated superblock fields and index bytes get past the
/// CRCs and reach the checks behind them (index validation, semantic checks,
/// region bounds).
fn fix_crcs(data: &mut [u8]) {
    const PAGE: usize = 4096;
    const SB: usize = 128;
    for base in [0, PAGE] {
        if data.len() < base + SB || &data[base..base + 8] != b"SCPCACHE" {
            continue;
        }
        let le = |at: usize| u64::from_le_bytes(data[at..at + 8].try_into().unwrap_or([0; 8]));
        let (off, len) = (le(base + 32), le(base + 40));
        if let Some(end) = off.checked_add(len).filter(|&e| e <= data.len() as u64) {
            let crc = crc32fast::hash(&data[off as usize..end as usize]);
            data[base + 48..base + 52].copy_from_slice(&crc.to_le_bytes());
        }
        let crc = crc32fast::hash(&data[base..base + SB - 4]);
        data[base + SB - 4..base + SB].copy_from_slice(&crc.to_le_bytes());
    }
}

fuzz_target!(|data: &[u8]| {
    let path = path();
    // A fresh inode each run, so no state of an earlier input is reused.
    let _ = std::fs::remove_file(path);
    // Inputs of odd length get their CRCs fixed; even ones are taken as
    // they are, so both the CRCs and what lies behind them are exercised.
    let mut bytes = data.to_vec();
    if bytes.len() % 2 == 1 {
        fix_crcs(&mut bytes);
    }
    std::fs::write(path, &bytes).expect("write input");
    let config = CacheConfig {
        quarantine_corrupt: false,
        ttl: None,
        ..CacheConfig::default()
    };
    let Ok(cache) = ScopeCache::open(path, config) else {
        return;
    };
    let mut keys: Vec<String> = ["a", "k0", "k1", "scope-0"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    if let Ok(list) = cache.list() {
        keys.extend(list.into_iter().take(8).map(|e| e.key));
    }
    for key in &keys {
        let _ = cache.contains(key);
        let _ = cache.info(key);
        if let Ok(Some(scope)) = cache.get(key) {
            let _ = scope.nodes().count_ones();
            let _ = scope.links().count_ones();
            let _ = scope.node_words().iter().fold(0u64, |a, w| a ^ w);
            let _ = scope.attributes().len();
            let _ = scope.info();
            for ids in [scope.node_ids(), scope.link_ids()] {
                let n = ids.len() as u32;
                let mut found = Vec::new();
                for i in [0, 1, n / 2, n.saturating_sub(1), n, n + 1, u32::MAX] {
                    let _ = ids.try_id(i);
                    if let Some(id) = ids.id(i) {
                        let back = ids.index_of(id);
                        let _ = ids.try_index_of(id);
                        found.push(id.to_owned());
                        let _ = back;
                    }
                }
                found.push("no-such-id".into());
                let mut out = vec![None; found.len()];
                let _ = ids.index_of_batch(&found, &mut out);
                let _ = ids.verify();
                let _ = ids.iter().take(64).count();
            }
        }
    }
    let _ = cache.stats();
    let _ = cache.verify();
    let _ = cache.generation();
    let _ = cache.maintain();
});
