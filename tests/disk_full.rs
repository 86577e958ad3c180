//! A full disk leaves the last commit intact.
//!
//! - A child process whose file size limit (RLIMIT_FSIZE, with SIGXFSZ
//!   ignored) stops the cache file from growing puts scopes until a put
//!   fails: the put must return `Error::Io` (EFBIG), every scope put before
//!   must stay readable (checked by this process), and the next put succeeds
//!   once there is room (this process has no limit).
//! - The same with a compaction whose new file cannot be written: the
//!   compaction fails with `Error::Io` and the file it would replace stays
//!   whole, with no temporary file left behind.
//! - A real ENOSPC on a 2 MiB tmpfs, when this process may mount one (it
//!   needs root in a namespace that allows mounts; otherwise it says so and
//!   skips).
//!
//! No environment variables.

mod proc;

use proc::{arg, arg_num, describe, env_num, other_files, report, roomy_config, snapshot_of, Child, Content};
use scopecache::{CacheConfig, Error, ScopeCache};
use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

#[test]
#[ignore = "runs only as a child process of the other tests"]
fn child() {
    proc::child_main(&[("filler", filler), ("compactor", compactor)]);
}

/// Limits the size of any file this process writes to `limit` bytes, and
/// makes writes past it fail with EFBIG instead of killing the process.
fn limit_file_size(limit: u64) {
    let lim = libc::rlimit {
        rlim_cur: limit,
        rlim_max: limit,
    };
    // SAFETY: setrlimit and signal with valid arguments; no handler is
    // installed (SIG_IGN), so nothing runs in signal context.
    unsafe {
        assert_eq!(libc::setrlimit(libc::RLIMIT_FSIZE, &lim), 0);
        assert_ne!(libc::signal(libc::SIGXFSZ, libc::SIG_IGN), libc::SIG_ERR);
    }
}

/// Reports how an error looks: `io <errno>` for an I/O error, else its text.
fn describe_err(e: &Error) -> String {
    match e {
        Error::Io { source, op, .. } => format!("io {} {op}", source.raw_os_error().unwrap_or(-1)),
        other => format!("other {other}"),
    }
}

/// Puts ever larger scopes until a put fails, then checks its own reads.
fn filler() {
    let cache = ScopeCache::open(arg("PATH"), roomy_config()).unwrap();
    limit_file_size(arg_num("LIMIT"));
    let mut done = Vec::new();
    for i in 0u64..10_000 {
        let key = format!("F-{i}");
        let c = Content::new(&key, i, 500 + 300 * i);
        match c.put(&cache) {
            Ok(()) => {
                report(format!("ok {key} {i}"));
                done.push(c);
            }
            Err(e) => {
                report(format!("err {key} {}", describe_err(&e)));
                // This handle still reads everything committed before.
                for c in &done {
                    let s = cache.get(&c.key).unwrap().unwrap();
                    proc::check_scope(&c.key, &s).unwrap();
                }
                assert!(cache.get(&key).unwrap().is_none(), "the failed put is visible");
                report(format!("reads-ok {}", done.len()));
                return;
            }
        }
    }
    panic!("the size limit never stopped a put");
}

/// Compacts under a size limit smaller than the live data.
fn compactor() {
    let cache = ScopeCache::open(arg("PATH"), roomy_config()).unwrap();
    limit_file_size(arg_num("LIMIT"));
    match cache.compact() {
        Ok(r) => report(format!("compacted {r:?}")),
        Err(e) => report(format!("err {}", describe_err(&e))),
    }
    let n = proc::snapshot_of(&cache).len();
    report(format!("reads-ok {n}"));
}

fn parse_oks(lines: &[String]) -> HashMap<String, u64> {
    lines
        .iter()
        .filter_map(|l| l.strip_prefix("ok "))
        .map(|l| {
            let (k, v) = l.split_once(' ').unwrap();
            (k.to_owned(), v.parse().unwrap())
        })
        .collect()
}

fn run_child(role: &str, path: &Path, limit: u64) -> Vec<String> {
    let child = Child::spawn(
        role,
        &[("PATH", path.display().to_string()), ("LIMIT", limit.to_string())],
    );
    let mut lines = Vec::new();
    while let Some(l) = child.next_line(Duration::from_secs(60)) {
        lines.push(l);
    }
    let (status, rest) = child.finish();
    lines.extend(rest);
    assert!(
        status.success(),
        "{role}: {}; reported {lines:?}",
        describe(&status)
    );
    lines
}

#[test]
fn efbig_leaves_the_last_commit_intact() {
    let dir = proc::disk_dir();
    let path = dir.path().join("c");
    let cache = ScopeCache::open(&path, roomy_config()).unwrap();
    for i in 0..3 {
        Content::new(&format!("pre-{i}"), i, 100).put(&cache).unwrap();
    }
    let before = snapshot_of(&cache);
    let limit = std::fs::metadata(&path).unwrap().len() + env_num("SCOPECACHE_TEST_EFBIG_ROOM", 400 << 10);
    let lines = run_child("filler", &path, limit);

    let err = lines
        .iter()
        .find(|l| l.starts_with("err "))
        .unwrap_or_else(|| panic!("no failed put: {lines:?}"));
    let failed_key = err.split_whitespace().nth(1).unwrap().to_owned();
    assert!(
        err.ends_with(&format!("io {} write", libc::EFBIG)),
        "expected Io(EFBIG) on write, got {err:?}"
    );
    let oks = parse_oks(&lines);
    assert!(!oks.is_empty(), "no put fitted under the limit: {lines:?}");
    assert!(lines.iter().any(|l| l.starts_with("reads-ok")), "{lines:?}");

    let cache = ScopeCache::open(&path, roomy_config()).unwrap();
    let v = cache.verify().unwrap();
    assert!(v.is_clean(), "{:?}", v.problems);
    let after = snapshot_of(&cache);
    let mut expected = before.clone();
    expected.extend(oks.clone());
    assert_eq!(
        after, expected,
        "the scopes after the failed put differ from those committed"
    );

    // With room again, the failed put works.
    let i: u64 = failed_key.trim_start_matches("F-").parse().unwrap();
    Content::new(&failed_key, i, 500 + 300 * i).put(&cache).unwrap();
    expected.insert(failed_key.clone(), i);
    assert_eq!(snapshot_of(&cache), expected);
    assert!(cache.verify().unwrap().is_clean());
    eprintln!(
        "EFBIG: {} puts fitted, {failed_key} failed with {err:?}, then succeeded without the limit",
        oks.len()
    );
}

#[test]
fn efbig_during_compaction_leaves_the_file_whole() {
    let dir = proc::disk_dir();
    let path = dir.path().join("c");
    let cache = ScopeCache::open(
        &path,
        CacheConfig {
            auto_compact: false,
            ..roomy_config()
        },
    )
    .unwrap();
    for i in 0..40 {
        Content::new(&format!("k{i}"), i, 2000).put(&cache).unwrap();
    }
    for i in 0..20 {
        assert!(cache.remove(&format!("k{i}")).unwrap());
    }
    let before = snapshot_of(&cache);
    let gen = cache.generation().unwrap();
    // Too small for the live data of the new file.
    let lines = run_child("compactor", &path, 64 << 10);
    let err = lines
        .iter()
        .find(|l| l.starts_with("err "))
        .unwrap_or_else(|| panic!("compaction succeeded: {lines:?}"));
    assert!(err.starts_with(&format!("err io {}", libc::EFBIG)), "{err:?}");
    assert_eq!(lines.last().unwrap(), &format!("reads-ok {}", before.len()));

    let cache = ScopeCache::open(&path, roomy_config()).unwrap();
    assert!(cache.verify().unwrap().is_clean());
    assert_eq!(snapshot_of(&cache), before);
    assert_eq!(
        cache.generation().unwrap(),
        gen,
        "a failed compaction published something"
    );
    assert_eq!(
        other_files(dir.path(), &path),
        Vec::<PathBuf>::new(),
        "files left behind"
    );
    // With room, it compacts.
    cache.compact().unwrap();
    assert_eq!(snapshot_of(&cache), before);
}

/// A tmpfs mounted for the test, unmounted when dropped (before the
/// temporary directory holding the mount point is removed).
struct Tmpfs(PathBuf, #[allow(dead_code)] tempfile::TempDir);

impl Tmpfs {
    fn mount(size: &str) -> Option<Tmpfs> {
        let dir = tempfile::tempdir().unwrap();
        let mnt = dir.path().join("mnt");
        std::fs::create_dir(&mnt).unwrap();
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(&mnt)
            .output();
        match out {
            Ok(o) if o.status.success() => Some(Tmpfs(mnt, dir)),
            Ok(o) => {
                eprintln!(
                    "skipped: cannot mount a tmpfs here: {}",
                    String::from_utf8_lossy(&o.stderr).trim()
                );
                None
            }
            Err(e) => {
                eprintln!("skipped: cannot run mount: {e}");
                None
            }
        }
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

#[test]
fn enospc_on_a_small_tmpfs_leaves_the_last_commit_intact() {
    let Some(fs) = Tmpfs::mount("3m") else { return };
    let path = fs.0.join("c");
    let filler = fs.0.join("filler");
    // Larger than any one put below needs (its two new mappings, ~500 KB
    // at the size where the disk fills), so that removing it makes room.
    std::fs::write(&filler, vec![1u8; 1 << 20]).unwrap();
    let cache = ScopeCache::open(&path, roomy_config()).unwrap();
    let mut expected = HashMap::new();
    let mut failure = None;
    for i in 0u64..10_000 {
        let key = format!("T-{i}");
        match Content::new(&key, i, 500 + 300 * i).put(&cache) {
            Ok(()) => {
                expected.insert(key, i);
            }
            Err(e) => {
                failure = Some((key, i, e));
                break;
            }
        }
    }
    let (key, i, e) = failure.expect("the tmpfs never filled up");
    match &e {
        Error::Io { source, .. } => assert_eq!(source.raw_os_error(), Some(libc::ENOSPC), "{e}"),
        other => panic!("expected Error::Io(ENOSPC), got {other}"),
    }
    assert!(!expected.is_empty());
    // The handle that failed still reads the last commit, and so does a new one.
    assert_eq!(snapshot_of(&cache), expected);
    drop(cache);
    let cache = ScopeCache::open(&path, roomy_config()).unwrap();
    assert!(cache.verify().unwrap().is_clean());
    assert_eq!(snapshot_of(&cache), expected);
    // Room again: the put that failed works.
    std::fs::remove_file(&filler).unwrap();
    Content::new(&key, i, 500 + 300 * i).put(&cache).unwrap();
    expected.insert(key.clone(), i);
    assert_eq!(snapshot_of(&cache), expected);
    assert!(cache.verify().unwrap().is_clean());
    eprintln!(
        "ENOSPC: {} puts fitted, {key} failed with {e}, then succeeded once there was room",
        expected.len() - 1
    );
}

/// A write whose commit succeeded must not report failure because the
/// automatic compaction that follows it ran out of space: the caller would
/// believe the scope not stored while it is.
#[test]
fn a_committed_put_is_not_reported_failed_when_compaction_finds_no_room() {
    let Some(fs) = Tmpfs::mount("2m") else { return };
    let path = fs.0.join("c");
    let manual = ScopeCache::open(
        &path,
        CacheConfig {
            auto_compact: false,
            ..roomy_config()
        },
    )
    .unwrap();
    let mut expected = HashMap::new();
    for i in 0..40u64 {
        // About 25 KiB each: a mapping of its own ids and its bitsets.
        let c = Content::new(&format!("k{i}"), i, 2000);
        c.put(&manual).unwrap();
        expected.insert(c.key.clone(), i);
    }
    for i in 0..20u64 {
        assert!(manual.remove(&format!("k{i}")).unwrap());
        expected.remove(&format!("k{i}"));
    }
    drop(manual);
    let live = snapshot_of(&ScopeCache::open(&path, roomy_config()).unwrap());
    assert_eq!(live, expected);
    // Leave room for a small put, but not for a compacted copy of the file.
    let file_len = std::fs::metadata(&path).unwrap().len();
    let filler = fs.0.join("filler");
    let mut f = File::create(&filler).unwrap();
    let mut filled = 0u64;
    let chunk = vec![7u8; 4096];
    while f.write_all(&chunk).is_ok() {
        filled += 4096;
    }
    drop(f);
    // Free 64 KiB: enough for one small put, far from the live data's size.
    let keep = filled.saturating_sub(64 << 10);
    OpenOptions::new()
        .write(true)
        .open(&filler)
        .unwrap()
        .set_len(keep)
        .unwrap();
    eprintln!("cache file {file_len} bytes, filler {keep} bytes");

    let auto = ScopeCache::open(
        &path,
        CacheConfig {
            compact_dead_ratio: 0.1,
            compact_min_dead_bytes: 1,
            ..roomy_config()
        },
    )
    .unwrap();
    let c = Content::new("small", 1, 10);
    let result = c.put(&auto);
    let stored = ScopeCache::open(&path, roomy_config())
        .unwrap()
        .get("small")
        .unwrap()
        .is_some();
    match result {
        Ok(()) => assert!(stored, "put returned Ok but the scope is not stored"),
        Err(e) => assert!(!stored, "put returned {e} but the scope was stored"),
    }
    if stored {
        expected.insert("small".into(), 1);
    }
    let cache = ScopeCache::open(&path, roomy_config()).unwrap();
    assert!(cache.verify().unwrap().is_clean());
    assert_eq!(snapshot_of(&cache), expected);
    // The compaction did run out of room (so the case above was the one meant).
    let stats = cache.stats().unwrap();
    assert_eq!(stats.compactions, 0, "the compaction found room after all");
    assert!(stats.dead_bytes > 0);
    assert_eq!(
        other_files(&fs.0, &path),
        vec![filler.clone()],
        "files left behind"
    );
    // Once there is room, the next write compacts.
    std::fs::remove_file(&filler).unwrap();
    Content::new("small", 2, 10).put(&auto).unwrap();
    expected.insert("small".into(), 2);
    assert_eq!(cache.stats().unwrap().compactions, 1);
    assert_eq!(snapshot_of(&cache), expected);
}
