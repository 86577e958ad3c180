//! Every corrupt byte is detected: for every byte of a small cache file, a
//! flipped byte (xor 0xFF) and a flipped bit give an error or a healed miss,
//! never a panic and never wrong data; so does every truncation. Files the
//! fuzzer found are replayed from `tests/data/fuzz-regressions/`.
//!
//! Environment:
//! - `SCOPECACHE_CORRUPT_STRIDE=n`: flip only every n-th byte (default 1: all).
//! - `SCOPECACHE_TRUNC_STRIDE=n`: truncate at every n-th length past the
//!   header pages (default 64; the header pages and the last 4 KiB are
//!   always tried at every length).
//! - `SCOPECACHE_CORRUPT_REPORT=1`: print the outcome table.
//! - `SCOPECACHE_WRITE_FUZZ_SEEDS=1` with `--ignored write_fuzz_seeds`:
//!   rewrite the seeds of `fuzz/corpus/open_file/`.

#[path = "common/sample.rs"]
mod sample;

use sample::Expected;
use scopecache::{CacheConfig, Error, ScopeCache};
use std::cell::Cell;
use std::collections::BTreeMap;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::sync::Once;

const PAGE: usize = 4096;
const SB_LEN: usize = 128;
const DATA_START: usize = 3 * PAGE;

thread_local! {
    static QUIET: Cell<bool> = const { Cell::new(false) };
}

/// Panics inside a case are counted, not printed (other panics print as usual).
fn quiet_panics() {
    static HOOK: Once = Once::new();
    HOOK.call_once(|| {
        let default = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if !QUIET.with(|q| q.get()) {
                default(info);
            }
        }));
    });
}

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .filter(|&v| v > 0)
        .unwrap_or(default)
}

fn scratch_dir() -> tempfile::TempDir {
    let shm = Path::new("/dev/shm");
    if shm.is_dir() {
        if let Ok(d) = tempfile::tempdir_in(shm) {
            return d;
        }
    }
    tempfile::tempdir().unwrap()
}

fn config() -> CacheConfig {
    // fsync is beside the point here and would only slow the healing writes.
    CacheConfig {
        fsync: false,
        ..sample::config()
    }
}

/// What one damaged file did.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum Outcome {
    /// Open failed with a corruption error.
    OpenRefused,
    /// Opened; every scope exact; verify clean.
    Harmless,
    /// Opened; every scope exact, but verify named a problem.
    ExactVerifyComplains,
    /// Opened; the scopes missing (None, Err, or a failed id lookup) are listed.
    Missed(Vec<&'static str>),
}

/// A failure of the promise, with what went wrong (shown through Debug).
#[derive(Debug)]
#[allow(dead_code)]
enum Bad {
    Panic(String),
    WrongData(String),
    UnexpectedError(String),
}

/// How one scope read back.
enum Read {
    Exact,
    Miss,
    Wrong(String),
}

/// Reads `e.key` and compares it with `e`, lookup by lookup: every answer
/// is either the original one or a refusal (None / Err).
fn read_back(cache: &ScopeCache, e: &Expected) -> Read {
    let s = match cache.get(e.key) {
        Ok(Some(s)) => s,
        Ok(None) => return Read::Miss,
        Err(err) if err.is_corruption() => return Read::Miss,
        Err(err) => return Read::Wrong(format!("get {}: unexpected error {err}", e.key)),
    };
    if s.key() != e.key {
        return Read::Wrong(format!("get {} returned key {}", e.key, s.key()));
    }
    if s.nodes() != e.nodes.as_bitslice() || s.links() != e.links.as_bitslice() {
        return Read::Wrong(format!("{}: bitsets differ", e.key));
    }
    if s.attributes() != &e.attributes {
        return Read::Wrong(format!("{}: attributes differ", e.key));
    }
    if s.node_ids().len() != e.node_ids.len() || s.link_ids().len() != e.link_ids.len() {
        return Read::Wrong(format!("{}: mapping lengths differ", e.key));
    }
    let mut missed = false;
    for (map, ids) in [(s.node_ids(), &e.node_ids), (s.link_ids(), &e.link_ids)] {
        for (i, id) in ids.iter().enumerate() {
            match map.try_index_of(id) {
                Ok(Some(j)) if j == i as u32 => {}
                Ok(Some(j)) => return Read::Wrong(format!("{}: index_of({id}) = {j}, expected {i}", e.key)),
                Ok(None) => missed = true,
                Err(err) if err.is_corruption() => missed = true,
                Err(err) => return Read::Wrong(format!("{}: index_of error {err}", e.key)),
            }
            match map.try_id(i as u32) {
                Ok(Some(x)) if x == id => {}
                Ok(Some(x)) => return Read::Wrong(format!("{}: id({i}) = {x:?}, expected {id:?}", e.key)),
                Ok(None) => missed = true,
                Err(err) if err.is_corruption() => missed = true,
                Err(err) => return Read::Wrong(format!("{}: id error {err}", e.key)),
            }
        }
        if let Ok(Some(j)) = map.try_index_of("absent-id") {
            return Read::Wrong(format!("{}: an absent id found at {j}", e.key));
        }
        let mut out = vec![None; ids.len()];
        match map.index_of_batch(ids, &mut out) {
            Ok(()) => {
                for (i, o) in out.iter().enumerate() {
                    if o.is_some_and(|j| j != i as u32) {
                        return Read::Wrong(format!("{}: index_of_batch[{i}] = {o:?}", e.key));
                    }
                }
            }
            Err(err) if err.is_corruption() => missed = true,
            Err(err) => return Read::Wrong(format!("{}: index_of_batch error {err}", e.key)),
        }
    }
    if missed {
        Read::Miss
    } else {
        Read::Exact
    }
}

/// Opens `bytes` as a cache file and uses it every way; never panics.
fn try_file(path: &Path, bytes: &[u8], expected: &[Expected]) -> Result<Outcome, Bad> {
    let _ = std::fs::remove_file(path);
    std::fs::write(path, bytes).unwrap();
    QUIET.with(|q| q.set(true));
    let r = catch_unwind(AssertUnwindSafe(|| use_file(path, expected)));
    QUIET.with(|q| q.set(false));
    match r {
        Ok(r) => r,
        Err(p) => Err(Bad::Panic(
            p.downcast_ref::<String>()
                .cloned()
                .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_default(),
        )),
    }
}

fn use_file(path: &Path, expected: &[Expected]) -> Result<Outcome, Bad> {
    let cache = match ScopeCache::open(path, config()) {
        Ok(c) => c,
        Err(e) if e.is_corruption() => return Ok(Outcome::OpenRefused),
        Err(e) => return Err(Bad::UnexpectedError(format!("open: {e}"))),
    };
    let mut missed = Vec::new();
    for e in expected {
        match read_back(&cache, e) {
            Read::Exact => {}
            Read::Miss => missed.push(e.key),
            Read::Wrong(w) => return Err(Bad::WrongData(w)),
        }
    }
    // A second get of every scope: a scope missed once stays missed (healed),
    // an exact one stays exact.
    for e in expected {
        match read_back(&cache, e) {
            Read::Wrong(w) => return Err(Bad::WrongData(format!("second read: {w}"))),
            Read::Exact if missed.contains(&e.key) => {
                return Err(Bad::WrongData(format!("{} came back after a miss", e.key)))
            }
            _ => {}
        }
    }
    let ok_or_corrupt = |what: &str, r: Result<(), Error>| match r {
        Ok(()) => Ok(()),
        Err(e) if e.is_corruption() => Ok(()),
        Err(e) => Err(Bad::UnexpectedError(format!("{what}: {e}"))),
    };
    match cache.list() {
        Ok(list) => {
            for info in list {
                if !expected.iter().any(|e| e.key == info.key) {
                    return Err(Bad::WrongData(format!("list names unknown key {:?}", info.key)));
                }
            }
        }
        Err(e) => ok_or_corrupt("list", Err(e))?,
    }
    ok_or_corrupt("stats", cache.stats().map(|_| ()))?;
    let clean = match cache.verify() {
        Ok(r) => r.is_clean(),
        Err(e) => {
            ok_or_corrupt("verify", Err(e))?;
            false
        }
    };
    Ok(if !missed.is_empty() {
        Outcome::Missed(missed)
    } else if clean {
        Outcome::Harmless
    } else {
        Outcome::ExactVerifyComplains
    })
}

/// The parts of a file, from its superblocks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Region {
    NewestSuperblock,
    /// The newest slot of a file whose two slots name the same index (a new
    /// or compacted file); true for its magic bytes.
    NewestSuperblockOfTwins(bool),
    /// The spare slot; true for its magic bytes.
    OlderSuperblock(bool),
    SuperblockPadding,
    CountersPage,
    NewestIndex,
    OlderIndex,
    StampTable,
    /// Bitsets, id mappings, alignment padding.
    OtherData,
    /// A truncated file (its outcome is checked by the truncation test).
    Truncated,
}

#[derive(Debug, Clone)]
struct Sb {
    generation: u64,
    committed_len: u64,
    index_offset: u64,
    stamps_offset: u64,
    stamps_capacity: u32,
    /// Every part of the index the generation needs: its base index and
    /// each delta of its chain (FORMAT.md §2.7), as (offset, len).
    parts: Vec<(u64, u64)>,
}

fn le64(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().unwrap())
}

/// The parts of a delta chain, newest first, from the newest delta's
/// (offset, len): each delta's root (its last 64 bytes) holds the previous
/// delta's offset and length at bytes 24 and 32.
fn chain_parts(file: &[u8], mut next: (u64, u64)) -> Vec<(u64, u64)> {
    let mut parts = Vec::new();
    while next.1 > 0 {
        parts.push(next);
        let root = (next.0 + next.1) as usize - 64;
        next = (le64(file, root + 24), le64(file, root + 32));
    }
    parts
}

fn read_sb(file: &[u8], slot: usize) -> Sb {
    let b = &file[slot * PAGE..slot * PAGE + SB_LEN];
    assert_eq!(&b[0..8], b"SCPCACHE");
    let mut parts = chain_parts(file, (le64(b, 72), le64(b, 80)));
    parts.push((le64(b, 32), le64(b, 40)));
    Sb {
        parts,
        generation: le64(b, 16),
        committed_len: le64(b, 24),
        index_offset: le64(b, 32),
        stamps_offset: le64(b, 56),
        stamps_capacity: u32::from_le_bytes(b[52..56].try_into().unwrap()),
    }
}

struct Layout {
    newest_slot: usize,
    newest: Sb,
    older: Sb,
}

impl Layout {
    fn of(file: &[u8]) -> Layout {
        let (a, b) = (read_sb(file, 0), read_sb(file, 1));
        let newest_slot = if a.generation > b.generation { 0 } else { 1 };
        let (newest, older) = if newest_slot == 0 { (a, b) } else { (b, a) };
        Layout {
            newest_slot,
            newest,
            older,
        }
    }

    fn region(&self, at: usize) -> Region {
        let within = |o: u64, l: u64| (o as usize..(o + l) as usize).contains(&at);
        if at < 2 * PAGE {
            let slot = at / PAGE;
            if at % PAGE >= SB_LEN {
                Region::SuperblockPadding
            } else if slot == self.newest_slot {
                if self.newest.parts == self.older.parts {
                    Region::NewestSuperblockOfTwins(at % PAGE < 8)
                } else {
                    Region::NewestSuperblock
                }
            } else {
                Region::OlderSuperblock(at % PAGE < 8)
            }
        } else if at < DATA_START {
            Region::CountersPage
        } else if self.newest.parts.iter().any(|&(o, l)| within(o, l)) {
            Region::NewestIndex
        } else if self.older.parts.iter().any(|&(o, l)| within(o, l)) {
            Region::OlderIndex
        } else if within(
            self.newest.stamps_offset,
            8 * u64::from(self.newest.stamps_capacity),
        ) {
            Region::StampTable
        } else {
            Region::OtherData
        }
    }
}

/// The exact outcome FORMAT semantics demand for a damaged byte in `region`,
/// or None where any detected outcome is allowed.
fn demanded(region: Region, expected: &[Expected]) -> Option<Outcome> {
    match region {
        // The CRC of the newest slot fails: the previous generation (the
        // sample's last put is not in it) is read instead.
        Region::NewestSuperblock => Some(Outcome::Missed(vec![expected[expected.len() - 1].key])),
        // The spare slot failing its CRC is what an interrupted commit leaves:
        // nothing to report. A foreign magic there is reported. The same
        // holds for the newest slot when the other names the same state.
        Region::OlderSuperblock(magic) | Region::NewestSuperblockOfTwins(magic) => Some(if magic {
            Outcome::ExactVerifyComplains
        } else {
            Outcome::Harmless
        }),
        // Bytes no reader interprets as data.
        Region::SuperblockPadding | Region::CountersPage | Region::OlderIndex | Region::StampTable => {
            Some(Outcome::Harmless)
        }
        Region::NewestIndex => Some(Outcome::OpenRefused),
        Region::OtherData | Region::Truncated => None,
    }
}

/// For the newest superblock the older generation is read: its scopes are
/// all but the last, so the demanded outcome is checked against them.
fn check_demand(region: Region, got: &Outcome, expected: &[Expected]) -> Result<(), String> {
    match demanded(region, expected) {
        Some(Outcome::Missed(keys)) if region == Region::NewestSuperblock => {
            // The fallback generation lacks the last scope; verify also names
            // the damaged slot, which is not part of the outcome.
            if *got == Outcome::Missed(keys.clone()) {
                Ok(())
            } else {
                Err(format!("{region:?}: expected only {keys:?} missing, got {got:?}"))
            }
        }
        Some(want) if &want != got => Err(format!("{region:?}: expected {want:?}, got {got:?}")),
        // Bitsets and mappings carry their own checks: a bad byte there
        // costs the scopes using it, never the whole file.
        None if region == Region::OtherData && *got == Outcome::OpenRefused => {
            Err(format!("{region:?}: the whole file was refused"))
        }
        _ => Ok(()),
    }
}

struct Tally {
    by_class: BTreeMap<(Region, String), u64>,
    failures: Vec<String>,
    cases: u64,
}

impl Tally {
    fn new() -> Tally {
        Tally {
            by_class: BTreeMap::new(),
            failures: Vec::new(),
            cases: 0,
        }
    }

    fn record(&mut self, what: String, region: Region, r: Result<Outcome, Bad>, expected: &[Expected]) {
        self.cases += 1;
        match r {
            Ok(o) => {
                if let Err(msg) = check_demand(region, &o, expected) {
                    self.failures.push(format!("{what}: {msg}"));
                }
                let class = match &o {
                    Outcome::Missed(_) => "Missed".to_string(),
                    other => format!("{other:?}"),
                };
                *self.by_class.entry((region, class)).or_default() += 1;
            }
            Err(bad) => {
                self.failures.push(format!("{what}: {bad:?}"));
                *self.by_class.entry((region, "FAILED".into())).or_default() += 1;
            }
        }
    }

    fn finish(self, title: &str) {
        if std::env::var_os("SCOPECACHE_CORRUPT_REPORT").is_some() || !self.failures.is_empty() {
            eprintln!("{title}: {} cases", self.cases);
            for ((region, class), n) in &self.by_class {
                eprintln!("  {region:?} {class}: {n}");
            }
        }
        assert!(
            self.failures.is_empty(),
            "{title}: {} of {} cases failed; first ones:\n{}",
            self.failures.len(),
            self.cases,
            self.failures
                .iter()
                .take(20)
                .cloned()
                .collect::<Vec<_>>()
                .join("\n")
        );
    }
}

fn sample_file(dir: &Path) -> (Vec<u8>, Vec<Expected>) {
    let path = dir.join("sample.cache");
    let expected = sample::write(&path);
    (std::fs::read(&path).unwrap(), expected)
}

#[test]
fn sample_reads_back_exactly() {
    quiet_panics();
    let dir = scratch_dir();
    let (bytes, expected) = sample_file(dir.path());
    let r = try_file(&dir.path().join("case"), &bytes, &expected);
    assert!(matches!(r, Ok(Outcome::Harmless)), "{r:?}");
    let layout = Layout::of(&bytes);
    assert_eq!(layout.newest.committed_len as usize, bytes.len());
    assert_eq!(layout.newest.generation, layout.older.generation + 1);
}

#[test]
fn every_flipped_byte_is_detected() {
    let dir = scratch_dir();
    let (pristine, expected) = sample_file(dir.path());
    flip_every_byte(dir.path(), &pristine, &expected, "flipped bytes");
}

/// The same for a compacted file: both slots name one index, no dead data.
#[test]
fn every_flipped_byte_of_a_compacted_file_is_detected() {
    let dir = scratch_dir();
    let path = dir.path().join("compacted.cache");
    let expected = sample::write(&path);
    ScopeCache::open(&path, config()).unwrap().compact().unwrap();
    let pristine = std::fs::read(&path).unwrap();
    let layout = Layout::of(&pristine);
    assert_eq!(layout.newest.index_offset, layout.older.index_offset);
    flip_every_byte(dir.path(), &pristine, &expected, "flipped bytes (compacted)");
}

fn flip_every_byte(dir: &Path, pristine: &[u8], expected: &[Expected], title: &str) {
    quiet_panics();
    let pristine = pristine.to_vec();
    let expected = expected.to_vec();
    let layout = Layout::of(&pristine);
    let stride = env_usize("SCOPECACHE_CORRUPT_STRIDE", 1);
    let case = dir.join("case");
    let mut tally = Tally::new();
    for at in (0..pristine.len()).step_by(stride) {
        let region = layout.region(at);
        for (name, mask) in [("xor 0xff", 0xffu8), ("bit", 1u8 << (at % 8))] {
            let mut bytes = pristine.clone();
            bytes[at] ^= mask;
            let r = try_file(&case, &bytes, &expected);
            tally.record(format!("offset {at} ({name})"), region, r, &expected);
        }
    }
    tally.finish(title);
}

#[test]
fn every_truncation_is_detected() {
    quiet_panics();
    let dir = scratch_dir();
    let (pristine, expected) = sample_file(dir.path());
    let layout = Layout::of(&pristine);
    let stride = env_usize("SCOPECACHE_TRUNC_STRIDE", 64);
    let len = pristine.len();
    let mut lengths: Vec<usize> = (0..=DATA_START.min(len)).collect();
    lengths.extend((DATA_START..len).step_by(stride));
    lengths.extend(len.saturating_sub(4096)..=len);
    lengths.sort_unstable();
    lengths.dedup();
    let case = dir.path().join("case");
    let mut tally = Tally::new();
    for &n in &lengths {
        let r = try_file(&case, &pristine[..n], &expected);
        // A file shorter than the newest generation's committed length is
        // refused; the whole file reads back exactly.
        let want = if n as u64 >= layout.newest.committed_len {
            Outcome::Harmless
        } else {
            Outcome::OpenRefused
        };
        match &r {
            Ok(o) if *o != want => tally
                .failures
                .push(format!("length {n}: expected {want:?}, got {o:?}")),
            _ => {}
        }
        tally.record(format!("length {n}"), Region::Truncated, r, &expected);
    }
    tally.finish(&format!("truncations ({} lengths)", lengths.len()));
}

#[test]
fn empty_short_and_foreign_files_are_refused() {
    quiet_panics();
    let dir = scratch_dir();
    let path = dir.path().join("c");
    let (pristine, _) = sample_file(dir.path());
    for bytes in [
        Vec::new(),
        vec![0u8; 100],
        b"SCPCACHE".to_vec(),
        pristine[..PAGE].to_vec(),
    ] {
        std::fs::write(&path, &bytes).unwrap();
        let err = ScopeCache::open(&path, config())
            .err()
            .unwrap_or_else(|| panic!("{} bytes opened", bytes.len()));
        assert!(err.is_corruption(), "{} bytes: {err}", bytes.len());
        // The error says what was found: the file's size.
        assert!(err.to_string().contains(&format!("has {}", bytes.len())), "{err}");
        assert!(
            std::fs::read(&path).unwrap() == bytes,
            "a refused file is left as it was"
        );
    }
    let mut other = vec![0u8; 4 * PAGE];
    other[..16].copy_from_slice(b"SQLite format 3\0");
    std::fs::write(&path, &other).unwrap();
    let err = ScopeCache::open(&path, config()).err().unwrap();
    match &err {
        Error::NotACacheFile { found, .. } => assert!(found.starts_with("SQLite f"), "{err}"),
        _ => panic!("expected NotACacheFile, got {err}"),
    }
}

/// Rewrites the version of both superblocks (with valid CRCs).
fn with_version(file: &[u8], version: u32) -> Vec<u8> {
    let mut out = file.to_vec();
    for slot in 0..2 {
        let b = &mut out[slot * PAGE..slot * PAGE + SB_LEN];
        b[8..12].copy_from_slice(&version.to_le_bytes());
        let crc = crc32fast::hash(&b[..SB_LEN - 4]);
        b[SB_LEN - 4..].copy_from_slice(&crc.to_le_bytes());
    }
    out
}

#[test]
fn future_version_is_refused_by_name() {
    let dir = scratch_dir();
    let (pristine, _) = sample_file(dir.path());
    let path = dir.path().join("future");
    for v in [0, scopecache::FORMAT_VERSION + 1, 77, u32::MAX] {
        std::fs::write(&path, with_version(&pristine, v)).unwrap();
        let err = ScopeCache::open(&path, config()).err().unwrap();
        match &err {
            Error::UnsupportedVersion { found, supported, .. } => {
                assert_eq!((*found, *supported), (v, scopecache::FORMAT_VERSION));
                assert!(err.to_string().contains(&v.to_string()), "{err}");
            }
            _ => panic!("version {v}: expected UnsupportedVersion, got {err}"),
        }
        // Read-only opens refuse it the same way, and nothing was changed.
        let ro = CacheConfig {
            read_only: true,
            ..config()
        };
        assert!(matches!(
            ScopeCache::open(&path, ro),
            Err(Error::UnsupportedVersion { .. })
        ));
        assert_eq!(std::fs::read(&path).unwrap(), with_version(&pristine, v));
    }
    // Sanity: the same rewrite with the current version opens.
    std::fs::write(&path, with_version(&pristine, scopecache::FORMAT_VERSION)).unwrap();
    assert_eq!(
        ScopeCache::open(&path, config()).unwrap().list().unwrap().len(),
        3
    );
}

#[test]
fn quarantine_moves_the_bad_file_aside() {
    let dir = scratch_dir();
    let (pristine, _) = sample_file(dir.path());
    let layout = Layout::of(&pristine);
    let path = dir.path().join("q.cache");
    let mut bad = pristine.clone();
    bad[layout.newest.index_offset as usize + 3] ^= 0x40;
    std::fs::write(&path, &bad).unwrap();
    assert!(ScopeCache::open(&path, config()).err().unwrap().is_corruption());
    let cfg = CacheConfig {
        quarantine_corrupt: true,
        ..config()
    };
    let cache = ScopeCache::open(&path, cfg).unwrap();
    assert!(cache.list().unwrap().is_empty(), "an empty cache starts");
    let aside: Vec<PathBuf> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            p.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with("q.cache.corrupt-")
        })
        .collect();
    assert_eq!(aside.len(), 1, "{aside:?}");
    assert_eq!(
        std::fs::read(&aside[0]).unwrap(),
        bad,
        "the bad file is kept byte for byte"
    );
    let e = &sample::scopes()[0];
    sample::put(&cache, e).unwrap();
    assert!(sample::matches(&cache.get(e.key).unwrap().unwrap(), e));
    drop(cache);
    let again = ScopeCache::open(&path, config()).unwrap();
    assert!(sample::matches(&again.get(e.key).unwrap().unwrap(), e));
}

#[test]
fn fuzz_regressions_replay() {
    quiet_panics();
    let dir = scratch_dir();
    let case = dir.path().join("case");
    // The regressions, and the fuzzing seeds (valid files) as well.
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files: Vec<PathBuf> = Vec::new();
    for sub in ["tests/data/fuzz-regressions", "fuzz/corpus/open_file"] {
        if let Ok(d) = std::fs::read_dir(manifest.join(sub)) {
            files.extend(
                d.map(|e| e.unwrap().path())
                    .filter(|p| p.is_file() && p.extension().is_none_or(|e| e != "md")),
            );
        }
    }
    files.sort();
    let expected = sample::scopes();
    let mut failures = Vec::new();
    for f in &files {
        let bytes = std::fs::read(f).unwrap();
        if let Err(bad) = try_file(&case, &bytes, &expected) {
            // Unknown files may hold other data: only panics and unexpected
            // errors count here.
            if !matches!(bad, Bad::WrongData(_)) {
                failures.push(format!("{}: {bad:?}", f.display()));
            }
        }
    }
    assert!(failures.is_empty(), "{failures:#?}");
    assert!(files.len() >= 5, "the seeds are replayed too: {files:?}");
}

/// Writes small valid cache files as fuzzing seeds.
#[test]
#[ignore]
fn write_fuzz_seeds() {
    if std::env::var_os("SCOPECACHE_WRITE_FUZZ_SEEDS").is_none() {
        return;
    }
    let out = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus/open_file");
    std::fs::create_dir_all(&out).unwrap();
    let dir = scratch_dir();
    let p = dir.path().join("s");
    let all = sample::write(&p);
    std::fs::copy(&p, out.join("three-scopes")).unwrap();
    let cache = ScopeCache::open(&p, config()).unwrap();
    cache.remove("beta").unwrap();
    std::fs::copy(&p, out.join("after-remove")).unwrap();
    cache.compact().unwrap();
    std::fs::copy(&p, out.join("compacted")).unwrap();
    drop(cache);
    let e = dir.path().join("e");
    drop(ScopeCache::open(&e, config()).unwrap());
    std::fs::copy(&e, out.join("empty")).unwrap();
    let one = dir.path().join("one");
    let cache = ScopeCache::open(&one, config()).unwrap();
    sample::put(&cache, &all[2]).unwrap();
    drop(cache);
    std::fs::copy(&one, out.join("one-scope")).unwrap();
}
