//! Structure-aware fuzzing: an input is a script of edits to the superblock
//! and the index of a small valid cache file (offsets moved onto other
//! regions, zero lengths, shared offsets, huge counts), after which every CRC
//! the edits broke is computed again. The oracle (see
//! `tests/common/structured.rs`): no panic, no bitset returned whose bytes do
//! not match their recorded CRC, and nothing a caller holds changes under it.
//!
//! Run (from the repository root; needs cargo-fuzz and a nightly toolchain):
//!
//! ```text
//! cargo +nightly fuzz run structured fuzz/corpus/structured -- -max_len=256 -max_total_time=1800
//! ```
//!
//! Inputs worth keeping go to `tests/data/fuzz-structured/`, which
//! `tests/structured.rs` replays in every `cargo test`.
#![no_main]

#[path = "../../tests/common/structured.rs"]
mod structured;

use libfuzzer_sys::fuzz_target;
use std::path::PathBuf;
use std::sync::OnceLock;

struct Setup {
    bases: Vec<Vec<u8>>,
    path: PathBuf,
}

fn setup() -> &'static Setup {
    static SETUP: OnceLock<Setup> = OnceLock::new();
    SETUP.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("scopecache-structured-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        Setup {
            bases: structured::bases(&dir),
            path: dir.join("case.cache"),
        }
    })
}

fuzz_target!(|data: &[u8]| {
    let s = setup();
    if let Err(e) = structured::run(&s.bases, &s.path, data) {
        panic!("{e}");
    }
});
