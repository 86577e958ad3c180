//! Structure-aware fuzzing, replayed: crafted files whose CRCs are valid
//! but whose superblock and index were edited (see tests/common/structured.rs
//! for the edits and the oracle). Runs the saved corpus of the cargo-fuzz
//! target `structured`, then a seeded sweep of random scripts.
//!
//! `SCOPECACHE_STRUCTURED_CASES` sets the sweep's length (default 3000).

#[path = "common/structured.rs"]
mod structured;
use rand::{Rng, SeedableRng};
use std::path::{Path, PathBuf};

fn cases() -> usize {
    std::env::var("SCOPECACHE_STRUCTURED_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3000)
}

#[test]
fn crafted_files_never_return_corrupt_bytes_nor_change_lent_ones() {
    let dir = tempfile::tempdir().unwrap();
    let bases = structured::bases(dir.path());
    let path = dir.path().join("case.cache");
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut corpus: Vec<PathBuf> = std::fs::read_dir(manifest.join("tests/data/fuzz-structured"))
        .map(|d| d.filter_map(|e| e.ok().map(|e| e.path())).collect())
        .unwrap_or_default();
    corpus.retain(|p| p.extension().is_none_or(|e| e != "md"));
    corpus.sort();
    // A panic is a failure like any other; catch it so that every case runs.
    let run = |input: &[u8]| -> Result<(), String> {
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            structured::run(&bases, &path, input)
        }))
        .unwrap_or_else(|p| {
            let what = p
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_default();
            Err(format!("panic: {what}"))
        })
    };
    let mut failures = Vec::new();
    for p in &corpus {
        let input = std::fs::read(p).unwrap();
        if let Err(e) = run(&input) {
            failures.push(format!("{}: {e}", p.display()));
        }
    }
    let mut rng = rand::rngs::StdRng::seed_from_u64(0x5c0_9eca);
    let n = cases();
    let mut opened = 0;
    for case in 0..n {
        let len = rng.gen_range(1..24);
        let input: Vec<u8> = (0..len).map(|_| rng.gen()).collect();
        match run(&input) {
            Ok(()) => {}
            Err(e) => failures.push(format!("case {case} {input:02x?}: {e}")),
        }
        if scopecache::ScopeCache::open(&path, scopecache::CacheConfig::default()).is_ok() {
            opened += 1;
        }
    }
    eprintln!(
        "structured fuzzing: {} corpus files, {n} random scripts, {opened} crafted files opened",
        corpus.len()
    );
    assert!(
        failures.is_empty(),
        "{} failures:\n{}",
        failures.len(),
        failures.join("\n")
    );
    // The sweep must reach past open for most scripts, or it tests nothing.
    assert!(opened * 5 >= n, "only {opened} of {n} crafted files opened");
}
