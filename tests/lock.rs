//! A crashed lock holder never wedges the cache.
//!
//! A writer process puts in a loop. The test waits until the file's lock is
//! held, stops the writer (SIGSTOP) and checks that the lock is still held,
//! so that the writer is known to die holding it, kills it with SIGKILL and
//! measures how long this process then takes to get the lock and commit a
//! put. The bound asserted is generous (1 s); the figures are printed.
//!
//! Environment:
//! - `SCOPECACHE_LOCK_KILLS=N`: number of writers killed holding the lock
//!   (default 20).

mod proc;

use proc::{arg, describe, disk_dir, env_num, report, roomy_config, signal_of, snapshot_of, Child, Content};
use scopecache::ScopeCache;
use std::fs::{File, TryLockError};
use std::path::Path;
use std::time::{Duration, Instant};

#[test]
#[ignore = "runs only as a child process of the other tests"]
fn child() {
    proc::child_main(&[("looper", looper)]);
}

/// Replaces a few large scopes in a loop, forever.
fn looper() {
    let cache = ScopeCache::open(arg("PATH"), roomy_config()).unwrap();
    report("ready");
    for i in 0u64.. {
        Content::new(&format!("L-{}", i % 8), i, 20_000)
            .put(&cache)
            .unwrap();
    }
}

/// Whether some process holds the lock of the file now at `path`.
fn lock_held(path: &Path) -> bool {
    let f = File::open(path).unwrap();
    match f.try_lock() {
        Ok(()) => false,
        Err(TryLockError::WouldBlock) => true,
        Err(TryLockError::Error(e)) => panic!("try_lock: {e}"),
    }
}

#[test]
fn killed_lock_holder_releases_the_lock() {
    let rounds = env_num("SCOPECACHE_LOCK_KILLS", 20);
    let dir = disk_dir();
    let path = dir.path().join("c");
    drop(ScopeCache::open(&path, roomy_config()).unwrap());
    let mut waits = Vec::new();
    for round in 0..rounds {
        let child = Child::spawn("looper", &[("PATH", path.display().to_string())]);
        child.expect_line("ready", Duration::from_secs(30));
        let deadline = Instant::now() + Duration::from_secs(30);
        // Catch the writer holding the lock.
        loop {
            assert!(
                Instant::now() < deadline,
                "round {round}: never saw the writer hold the lock"
            );
            if !lock_held(&path) {
                std::thread::sleep(Duration::from_micros(200));
                continue;
            }
            child.signal(libc::SIGSTOP);
            if lock_held(&path) {
                break;
            }
            child.signal(libc::SIGCONT);
        }
        let killed = Instant::now();
        child.signal(libc::SIGKILL);
        let cache = ScopeCache::open(&path, roomy_config()).unwrap();
        Content::new("after", round, 10).put(&cache).unwrap();
        let waited = killed.elapsed();
        let (status, _) = child.finish();
        assert_eq!(signal_of(&status), Some(libc::SIGKILL), "{}", describe(&status));
        assert!(
            waited < Duration::from_secs(1),
            "round {round}: took {waited:?} to get the lock"
        );
        assert!(cache.verify().unwrap().is_clean());
        assert_eq!(snapshot_of(&cache).get("after"), Some(&round));
        waits.push(waited);
    }
    waits.sort();
    eprintln!(
        "lock test: {rounds} writers killed holding the lock; lock taken and put committed after median {:?}, max {:?}",
        waits[waits.len() / 2],
        waits[waits.len() - 1]
    );
}
