//! Read-only users work.
//!
//! - A process of another user (nobody, uid 65534) that may only read the
//!   file (mode 0444, in a directory of mode 0555) opens it with the default
//!   configuration: it gets every scope, and every write returns
//!   `Error::ReadOnly` at once, even while another process holds the lock.
//!   Root bypasses permission checks, so the child drops to nobody before it
//!   starts; where that is impossible the test says so and skips.
//! - `CacheConfig { read_only: true }` on a writable file: the same, and the
//!   file's bytes do not change.
//!
//! No environment variables.

mod proc;

use proc::{arg, describe, disk_dir, report, roomy_config, snapshot_of, Child, Content};
use scopecache::{CacheConfig, Error, ScopeCache};
use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::sync::mpsc;
use std::time::{Duration, Instant};

#[test]
#[ignore = "runs only as a child process of the other tests"]
fn child() {
    proc::child_main(&[("reader", reader)]);
}

/// Every write a cache offers, each timed, each expected to be refused.
fn refused_writes(cache: &ScopeCache) -> Vec<(&'static str, Duration, String)> {
    let c = Content::new("new", 1, 10);
    let mut out = Vec::new();
    let mut time = |name: &'static str, f: &dyn Fn() -> Result<(), Error>| {
        let t = Instant::now();
        let r = f();
        let took = t.elapsed();
        let what = match r {
            Err(Error::ReadOnly { .. }) => "ReadOnly".to_owned(),
            Err(e) => format!("error {e}"),
            Ok(()) => "ok".to_owned(),
        };
        out.push((name, took, what));
    };
    time("put", &|| c.put(cache));
    time("remove", &|| cache.remove("k0").map(drop));
    time("clear", &|| cache.clear().map(drop));
    time("maintain", &|| cache.maintain().map(drop));
    time("compact", &|| cache.compact().map(drop));
    out
}

/// Runs as nobody: reads everything, tries every write.
fn reader() {
    let path = arg("PATH");
    match OpenOptions::new().write(true).open(&path) {
        Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => {}
        other => {
            report(format!("skip: this process can write the file ({other:?})"));
            return;
        }
    }
    let cache = ScopeCache::open(&path, CacheConfig::default()).unwrap();
    report(format!("read-only {}", cache.is_read_only()));
    for (k, v) in snapshot_of(&cache) {
        report(format!("scope {k} {v}"));
    }
    // The gets again: now from this process's checked mappings.
    report(format!("again {}", snapshot_of(&cache).len()));
    for (name, took, what) in refused_writes(&cache) {
        report(format!("write {name} {what} {}", took.as_micros()));
    }
    // Creating a cache where it may not is an error, not a panic.
    let dir = Path::new(&path).parent().unwrap().join("other");
    match ScopeCache::open(&dir, CacheConfig::default()) {
        Err(Error::Io { .. }) => report("create-denied io"),
        Err(e) => report(format!("create-denied other {e}")),
        Ok(_) => report("create-denied no"),
    }
}

fn fill(path: &Path) -> HashMap<String, u64> {
    let cache = ScopeCache::open(path, roomy_config()).unwrap();
    for i in 0..12u64 {
        Content::new(&format!("k{i}"), i, 300).put(&cache).unwrap();
    }
    snapshot_of(&cache)
}

#[test]
fn another_user_reads_and_is_refused_writes() {
    let dir = disk_dir();
    let d = dir.path().join("ro");
    std::fs::create_dir(&d).unwrap();
    let path = d.join("c");
    let expected = fill(&path);
    let bytes = std::fs::read(&path).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o444)).unwrap();
    std::fs::set_permissions(&d, std::fs::Permissions::from_mode(0o555)).unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    // Another process holds the lock throughout: refusals must not wait for it.
    let held = File::open(&path).unwrap();
    held.lock().unwrap();

    let mut cmd = Child::command("reader", &[("PATH", path.display().to_string())]);
    cmd.uid(65534).gid(65534);
    let mut cmd_check = Child::command("reader", &[]);
    cmd_check.uid(65534).gid(65534).arg("--list");
    if let Err(e) = cmd_check.output() {
        eprintln!("skipped: cannot run a process as nobody here: {e}");
        return;
    }
    let child = Child::spawn_command("reader", cmd);
    let mut lines = Vec::new();
    while let Some(l) = child.next_line(Duration::from_secs(30)) {
        lines.push(l);
    }
    let (status, rest) = child.finish();
    lines.extend(rest);
    held.unlock().unwrap();
    std::fs::set_permissions(&d, std::fs::Permissions::from_mode(0o755)).unwrap();
    if let Some(skip) = lines.iter().find(|l| l.starts_with("skip")) {
        eprintln!("skipped: {skip}");
        return;
    }
    assert!(status.success(), "reader: {}; {lines:?}", describe(&status));
    assert_eq!(lines[0], "read-only true");
    let seen: HashMap<String, u64> = lines
        .iter()
        .filter_map(|l| l.strip_prefix("scope "))
        .map(|l| {
            let (k, v) = l.split_once(' ').unwrap();
            (k.to_owned(), v.parse().unwrap())
        })
        .collect();
    assert_eq!(seen, expected);
    assert!(lines.contains(&format!("again {}", expected.len())), "{lines:?}");
    let writes: Vec<&String> = lines.iter().filter(|l| l.starts_with("write ")).collect();
    assert_eq!(writes.len(), 5, "{lines:?}");
    for w in writes {
        let f: Vec<&str> = w.split_whitespace().collect();
        assert_eq!(f[2], "ReadOnly", "{w}");
        let micros: u64 = f[3].parse().unwrap();
        assert!(micros < 100_000, "{w}: a refusal took {micros} µs");
    }
    assert!(lines.iter().any(|l| l == "create-denied io"), "{lines:?}");
    assert_eq!(
        std::fs::read(&path).unwrap(),
        bytes,
        "a read-only user changed the file"
    );
    eprintln!("read-only user: {} scopes read, 5 writes refused", seen.len());
}

#[test]
fn read_only_config_reads_and_refuses_writes() {
    let dir = disk_dir();
    let path = dir.path().join("c");
    let missing = dir.path().join("missing");
    assert!(ScopeCache::open(
        &missing,
        CacheConfig {
            read_only: true,
            ..CacheConfig::default()
        }
    )
    .is_err());
    assert!(!missing.exists(), "a read-only open created a file");

    let expected = fill(&path);
    let bytes = std::fs::read(&path).unwrap();
    let held = File::open(&path).unwrap();
    held.lock().unwrap();
    let (tx, rx) = mpsc::channel();
    let p = path.clone();
    std::thread::spawn(move || {
        let cache = ScopeCache::open(
            &p,
            CacheConfig {
                read_only: true,
                ..CacheConfig::default()
            },
        )
        .unwrap();
        let got = (
            cache.is_read_only(),
            snapshot_of(&cache),
            refused_writes(&cache),
            snapshot_of(&cache),
        );
        let owned: Vec<(String, Duration, String)> =
            got.2.into_iter().map(|(n, d, w)| (n.to_owned(), d, w)).collect();
        tx.send((got.0, got.1, owned, got.3)).unwrap();
    });
    let (ro, first, writes, second) = rx
        .recv_timeout(Duration::from_secs(10))
        .expect("a read-only cache waited for the lock or hung");
    held.unlock().unwrap();
    assert!(ro);
    assert_eq!(first, expected);
    assert_eq!(second, expected);
    assert_eq!(writes.len(), 5);
    for (name, took, what) in &writes {
        assert_eq!(what, "ReadOnly", "{name}");
        assert!(*took < Duration::from_millis(100), "{name} took {took:?}");
    }
    assert_eq!(
        std::fs::read(&path).unwrap(),
        bytes,
        "a read-only cache changed the file"
    );
}
