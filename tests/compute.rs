//! `get_or_compute`: when many threads or processes miss one key at once,
//! exactly one computes it; the others wait and read what it stored. A
//! computation that fails releases the claim with a typed error; one that
//! dies (SIGKILL) releases it at once, and another process takes over.
//!
//! Environment: `SCOPECACHE_COMPUTE_KILLS=n` repeats the kill test n times
//! (default 3).

mod proc;

use proc::{arg, arg_num, check_scope, disk_dir, env_num, report, roomy_config, Child, Content};
use scopecache::{ComputeError, Error, GetOrCompute, OnTimeout, ScopeCache, ScopeParts};
use std::io::Write;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

const KEY: &str = "expensive/scope";

#[test]
#[ignore = "runs only as a child process of the other tests"]
fn child() {
    proc::child_main(&[("racer", racer)]);
}

/// The scope every racer computes: a pure function of the key.
fn parts(key: &str) -> ScopeParts {
    let c = Content::new(key, 7, 3000);
    ScopeParts {
        nodes: c.nodes,
        links: c.links,
        node_ids: c.node_ids,
        link_ids: c.link_ids,
        attributes: c.attributes,
    }
}

/// Appends one line to the file at `path` in one write.
fn append(path: &str, line: &str) {
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .unwrap();
    f.write_all(format!("{line}\n").as_bytes()).unwrap();
}

/// Waits for the go file, then gets or computes KEY; the computation
/// counts itself in the count file, reports itself and takes SLEEP_MS.
fn racer() {
    let cache = ScopeCache::open(arg("PATH"), roomy_config()).unwrap();
    let go = arg("GO");
    let count = arg("COUNT");
    let sleep = Duration::from_millis(arg_num("SLEEP_MS"));
    report("ready");
    while !Path::new(&go).exists() {
        std::thread::sleep(Duration::from_micros(100));
    }
    let opts = GetOrCompute {
        timeout: Duration::from_secs(60),
        ..GetOrCompute::default()
    };
    let s = cache
        .get_or_compute_with(KEY, &opts, || {
            // Counted before it is reported, so that a racer killed once
            // it reported has been counted.
            append(&count, &std::process::id().to_string());
            report(format!("computing {}", std::process::id()));
            std::thread::sleep(sleep);
            Ok(parts(KEY))
        })
        .unwrap();
    let seen = check_scope(KEY, &s).unwrap();
    report(format!("got {:016x}", seen.digest));
}

fn lines(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(str::to_owned)
        .collect()
}

/// Starts `n` racers and waits until each is ready; returns them and the
/// paths of the go and count files.
fn racers(
    dir: &Path,
    path: &Path,
    n: usize,
    sleep_ms: u64,
) -> (Vec<Child>, std::path::PathBuf, std::path::PathBuf) {
    let go = dir.join("go");
    let count = dir.join("count");
    let _ = std::fs::remove_file(&go);
    let _ = std::fs::remove_file(&count);
    let kids: Vec<Child> = (0..n)
        .map(|_| {
            Child::spawn(
                "racer",
                &[
                    ("PATH", path.display().to_string()),
                    ("GO", go.display().to_string()),
                    ("COUNT", count.display().to_string()),
                    ("SLEEP_MS", sleep_ms.to_string()),
                ],
            )
        })
        .collect();
    for k in &kids {
        k.expect_line("ready", Duration::from_secs(60));
    }
    (kids, go, count)
}

#[test]
fn eight_processes_race_and_one_computes() {
    let dir = disk_dir();
    let path = dir.path().join("c");
    let cache = ScopeCache::open(&path, roomy_config()).unwrap();
    let (kids, go, count) = racers(dir.path(), &path, 8, 300);
    std::fs::write(&go, b"").unwrap();
    let mut digests = Vec::new();
    let mut computing = Vec::new();
    for k in kids {
        let (got, before) = k.expect_line("got ", Duration::from_secs(60));
        digests.push(got);
        computing.extend(before.into_iter().filter(|l| l.starts_with("computing")));
        let (status, _) = k.finish();
        assert!(status.success(), "racer failed: {status:?}");
    }
    assert_eq!(computing.len(), 1, "computations reported: {computing:?}");
    assert_eq!(
        lines(&count).len(),
        1,
        "computations counted: {:?}",
        lines(&count)
    );
    digests.dedup();
    assert_eq!(digests.len(), 1, "racers saw different scopes: {digests:?}");
    let st = cache.stats().unwrap();
    assert_eq!(st.puts, 1);
    assert_eq!(st.total_entries, 1);
    // Each racer that looked before the put missed once: the computer and
    // at least one waiter did (the computation takes 300 ms), so there was
    // a race to lose.
    assert!(st.misses >= 2, "only {} racers missed", st.misses);
    eprintln!(
        "get_or_compute: {} of 8 racers missed the key; one computed it",
        st.misses
    );
    check_scope(KEY, &cache.get(KEY).unwrap().unwrap()).unwrap();
    assert_eq!(
        std::fs::read_dir(cache.claims_dir()).unwrap().count(),
        0,
        "claim files left behind"
    );
}

#[test]
fn a_killed_computer_is_taken_over_at_once() {
    let rounds = env_num("SCOPECACHE_COMPUTE_KILLS", 3);
    let mut takeovers = Vec::new();
    for round in 0..rounds {
        let dir = disk_dir();
        let path = dir.path().join("c");
        let cache = ScopeCache::open(&path, roomy_config()).unwrap();
        let (mut kids, go, count) = racers(dir.path(), &path, 8, 1500);
        std::fs::write(&go, b"").unwrap();
        // Find the computer: the one racer that reports computing.
        let deadline = Instant::now() + Duration::from_secs(60);
        let first = 'find: loop {
            assert!(Instant::now() < deadline, "round {round}: no racer computed");
            for (i, k) in kids.iter().enumerate() {
                if let Some(l) = k.next_line(Duration::ZERO) {
                    assert!(l.starts_with("computing"), "round {round}: unexpected {l:?}");
                    break 'find i;
                }
            }
            std::thread::sleep(Duration::from_micros(100));
        };
        let victim = kids.remove(first);
        victim.signal(libc::SIGKILL);
        let killed = Instant::now();
        // Another takes over.
        let next = 'next: loop {
            assert!(
                killed.elapsed() < Duration::from_secs(30),
                "round {round}: no racer took over"
            );
            for (i, k) in kids.iter().enumerate() {
                if let Some(l) = k.next_line(Duration::ZERO) {
                    assert!(l.starts_with("computing"), "round {round}: unexpected {l:?}");
                    break 'next i;
                }
            }
            std::thread::sleep(Duration::from_micros(100));
        };
        let took = killed.elapsed();
        let (status, _) = victim.finish();
        assert_eq!(proc::signal_of(&status), Some(libc::SIGKILL));
        let mut digests = Vec::new();
        for (i, k) in kids.into_iter().enumerate() {
            let (got, before) = k.expect_line("got ", Duration::from_secs(60));
            // The takeover's "computing" line was taken above.
            assert!(
                before.is_empty(),
                "round {round}: racer {i} (takeover {next}) also reported {before:?}"
            );
            digests.push(got);
            assert!(k.finish().0.success());
        }
        digests.dedup();
        assert_eq!(
            digests.len(),
            1,
            "round {round}: racers saw different scopes: {digests:?}"
        );
        assert_eq!(
            lines(&count).len(),
            2,
            "round {round}: the killed computation and the one that took over"
        );
        let st = cache.stats().unwrap();
        assert_eq!(st.puts, 1, "round {round}: the scope is stored once");
        assert_eq!(st.total_entries, 1);
        assert!(cache.verify().unwrap().is_clean());
        // The killed claimant's file was taken over and deleted with the claim.
        assert_eq!(std::fs::read_dir(cache.claims_dir()).unwrap().count(), 0);
        assert!(
            took < Duration::from_millis(100),
            "round {round}: took {took:?} to take over"
        );
        takeovers.push(took);
    }
    takeovers.sort();
    eprintln!(
        "get_or_compute: {rounds} computing processes killed; another took over after median {:?}, max {:?}",
        takeovers[takeovers.len() / 2],
        takeovers[takeovers.len() - 1]
    );
}

#[test]
fn threads_of_one_process_compute_once() {
    let dir = tempfile::tempdir().unwrap();
    let cache = Arc::new(ScopeCache::open(dir.path().join("c"), roomy_config()).unwrap());
    let runs = Arc::new(AtomicUsize::new(0));
    let start = Arc::new(Barrier::new(8));
    let handles: Vec<_> = (0..8)
        .map(|_| {
            let (cache, runs, start) = (Arc::clone(&cache), Arc::clone(&runs), Arc::clone(&start));
            std::thread::spawn(move || {
                start.wait();
                let s = cache
                    .get_or_compute(KEY, || {
                        runs.fetch_add(1, Ordering::SeqCst);
                        std::thread::sleep(Duration::from_millis(200));
                        Ok(parts(KEY))
                    })
                    .unwrap();
                check_scope(KEY, &s).unwrap().digest
            })
        })
        .collect();
    let mut digests: Vec<u64> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    digests.dedup();
    assert_eq!(runs.load(Ordering::SeqCst), 1);
    assert_eq!(digests.len(), 1);
    assert_eq!(cache.stats().unwrap().puts, 1);
}

#[test]
fn a_failed_computation_is_an_error_and_releases_the_claim() {
    let dir = tempfile::tempdir().unwrap();
    let cache = ScopeCache::open(dir.path().join("c"), roomy_config()).unwrap();
    let e = cache
        .get_or_compute(KEY, || {
            Err::<ScopeParts, ComputeError>("the graph server is down".into())
        })
        .unwrap_err();
    match &e {
        Error::Compute { key, source } => {
            assert_eq!(key, KEY);
            assert_eq!(source.to_string(), "the graph server is down");
        }
        e => panic!("expected Error::Compute, got {e:?}"),
    }
    assert!(std::error::Error::source(&e).is_some());
    assert!(e.to_string().contains("the graph server is down"), "{e}");
    assert!(cache.get(KEY).unwrap().is_none());
    // A panic in the computation releases the claim too.
    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        cache.get_or_compute(KEY, || -> Result<ScopeParts, ComputeError> {
            panic!("compute panicked")
        })
    }));
    assert!(r.is_err());
    // Not held: the next caller computes at once, without waiting.
    let t = Instant::now();
    let opts = GetOrCompute {
        timeout: Duration::ZERO,
        ..GetOrCompute::default()
    };
    let s = cache.get_or_compute_with(KEY, &opts, || Ok(parts(KEY))).unwrap();
    assert!(t.elapsed() < Duration::from_secs(5));
    check_scope(KEY, &s).unwrap();
    // Bad input fails before anything runs.
    let bad = cache.get_or_compute("", || -> Result<ScopeParts, ComputeError> { panic!("not run") });
    assert!(matches!(bad, Err(Error::InvalidKey { .. })));
    let mut wrong = parts("x");
    wrong.nodes.push(true);
    let e = cache.get_or_compute("x", || Ok(wrong)).unwrap_err();
    assert!(matches!(e, Error::LengthMismatch { what: "nodes", .. }), "{e:?}");
    assert_eq!(std::fs::read_dir(cache.claims_dir()).unwrap().count(), 0);
}

#[test]
fn a_waiter_times_out_with_an_error_or_computes_itself() {
    let dir = tempfile::tempdir().unwrap();
    let cache = Arc::new(ScopeCache::open(dir.path().join("c"), roomy_config()).unwrap());
    let (started_tx, started_rx) = std::sync::mpsc::channel();
    let (release_tx, release_rx) = std::sync::mpsc::channel::<()>();
    let holder = {
        let cache = Arc::clone(&cache);
        std::thread::spawn(move || {
            cache
                .get_or_compute(KEY, move || {
                    started_tx.send(()).unwrap();
                    release_rx.recv().unwrap();
                    let mut p = parts(KEY);
                    p.attributes.insert("by".into(), "holder".into());
                    Ok(p)
                })
                .unwrap()
                .attributes()["by"]
                .clone()
        })
    };
    started_rx.recv().unwrap();
    let opts = GetOrCompute {
        timeout: Duration::from_millis(50),
        ..GetOrCompute::default()
    };
    let t = Instant::now();
    let e = cache
        .get_or_compute_with(KEY, &opts, || -> Result<ScopeParts, ComputeError> {
            panic!("not run")
        })
        .unwrap_err();
    let waited = t.elapsed();
    match e {
        Error::ComputeTimeout { key, waited: w } => {
            assert_eq!(key, KEY);
            assert!(w >= Duration::from_millis(50));
        }
        e => panic!("expected ComputeTimeout, got {e:?}"),
    }
    assert!(
        waited >= Duration::from_millis(50) && waited < Duration::from_secs(5),
        "{waited:?}"
    );

    let opts = GetOrCompute {
        on_timeout: OnTimeout::Compute,
        ..opts
    };
    let s = cache
        .get_or_compute_with(KEY, &opts, || {
            let mut p = parts(KEY);
            p.attributes.insert("by".into(), "waiter".into());
            Ok(p)
        })
        .unwrap();
    assert_eq!(s.attributes()["by"], "waiter");
    release_tx.send(()).unwrap();
    assert_eq!(holder.join().unwrap(), "holder");
    // Both computed and stored; the holder's put came last.
    assert_eq!(cache.stats().unwrap().puts, 2);
    assert_eq!(cache.get(KEY).unwrap().unwrap().attributes()["by"], "holder");
}

#[test]
fn a_read_only_cache_that_misses_does_not_compute() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c");
    drop(ScopeCache::open(&path, roomy_config()).unwrap());
    let ro = ScopeCache::open(
        &path,
        scopecache::CacheConfig {
            read_only: true,
            ..roomy_config()
        },
    )
    .unwrap();
    let r = ro.get_or_compute(KEY, || -> Result<ScopeParts, ComputeError> { panic!("not run") });
    assert!(matches!(r, Err(Error::ReadOnly { .. })), "{r:?}");
}
