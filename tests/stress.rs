//! Readers always see a consistent snapshot, and never fault, while writers
//! put, replace, remove, evict and compact: real processes on one file.
//!
//! Every scope carries the digest of its own content in its attributes, and
//! its content is a function of (key, version, size), so a reader checks
//! everything it reads without coordination (`proc::check_scope`).
//!
//! - `writers_and_readers_stay_consistent`: 4 writer and 4 reader processes.
//!   Writers put, replace, remove, get (their own keys read back exactly what
//!   they last wrote, or nothing once evicted), maintain and compact, with
//!   limits tight enough that eviction happens. Readers get random keys,
//!   hold scopes across compactions and check them again, and check that the
//!   generation they see never goes back. Afterwards every key holds a
//!   version written under it (a writer's own key: its last one), and the
//!   keys missing are no more than the evictions counted.
//! - `readers_see_only_whole_scopes_of_one_writer`: two readers poll the
//!   keys that one writer is putting large scopes under.
//!
//! Environment:
//! - `SCOPECACHE_STRESS_SECS=N`: duration of the first test (default 20).
//! - `SCOPECACHE_STRESS_WRITERS=N`, `SCOPECACHE_STRESS_READERS=N`: process
//!   counts (default 4 each).

mod proc;

use proc::{
    arg, arg_num, check_scope, describe, disk_dir, env_num, report, signal_of, snapshot_of, Child, Content,
    Rng,
};
use scopecache::{CacheConfig, Scope, ScopeCache};
use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::time::{Duration, Instant};

const PRIVATE_KEYS: u64 = 15;
const SHARED_KEYS: u64 = 12;

#[test]
#[ignore = "runs only as a child process of the other tests"]
fn child() {
    proc::child_main(&[("writer", writer), ("reader", reader)]);
}

fn config() -> CacheConfig {
    CacheConfig {
        max_entries: env_num("SCOPECACHE_TEST_MAX_ENTRIES", 50) as usize,
        ttl: None,
        compact_dead_ratio: 0.3,
        compact_min_dead_bytes: 32 << 10,
        ..CacheConfig::default()
    }
}

fn private_key(w: u64, j: u64) -> String {
    format!("w{w}-{j}")
}

fn shared_key(j: u64) -> String {
    format!("s-{j}")
}

fn key_space(writers: u64) -> Vec<String> {
    let mut keys: Vec<String> = (0..writers)
        .flat_map(|w| (0..PRIVATE_KEYS).map(move |j| private_key(w, j)))
        .collect();
    keys.extend((0..SHARED_KEYS).map(shared_key));
    keys
}

fn deadline() -> Instant {
    Instant::now() + Duration::from_millis(arg_num("MILLIS"))
}

fn size(rng: &mut Rng, big: u64) -> u64 {
    if big > 0 {
        big + rng.below(big)
    } else if rng.pct(5) {
        5000
    } else {
        1 + rng.below(300)
    }
}

/// Puts, replaces, removes, gets, maintains and compacts until its time is up.
fn writer() {
    let id = arg_num("ID");
    let big = arg_num("BIG");
    let mut rng = Rng::new(arg_num("SEED"));
    let cache = ScopeCache::open(arg("PATH"), config()).unwrap();
    let end = deadline();
    // This writer's own keys: the version it last put, None once removed.
    let mut mine: HashMap<String, Option<u64>> = HashMap::new();
    let mut n = [0u64; 6];
    let mut evicted_seen = 0u64;
    let mut i = 0u64;
    while Instant::now() < end {
        i += 1;
        let r = rng.below(100);
        let private = big > 0 || rng.pct(70);
        let key = if private {
            private_key(id, rng.below(PRIVATE_KEYS))
        } else {
            shared_key(rng.below(SHARED_KEYS))
        };
        if r < 50 {
            let ver = (id << 40) | i;
            let c = Content::new(&key, ver, size(&mut rng, big));
            report(format!("begin put {key} {ver}"));
            c.put(&cache).unwrap();
            report(format!("ok put {key} {ver}"));
            if private {
                mine.insert(key, Some(ver));
            }
            n[0] += 1;
        } else if r < 60 {
            let removed = cache.remove(&key).unwrap();
            report(format!("ok rm {key} {removed}"));
            if private {
                if mine.get(&key).copied().flatten().is_none() {
                    assert!(
                        !removed,
                        "{key}: removed a key this writer never put or already removed"
                    );
                }
                mine.insert(key, None);
            }
            n[1] += 1;
        } else if r < 92 {
            let got = cache.get(&key).unwrap();
            if let Some(s) = &got {
                check_scope(&key, s).unwrap_or_else(|e| panic!("writer {id}: {e}"));
            }
            if private {
                let want = mine.get(&key).copied().flatten();
                match (&got, want) {
                    (Some(s), Some(v)) => {
                        assert_eq!(check_scope(&key, s).unwrap().ver, v, "{key}: not the last put")
                    }
                    (Some(s), None) => {
                        panic!("{key}: removed or never put, yet got {:?}", check_scope(&key, s))
                    }
                    (None, Some(_)) => {
                        // Evicted since: it stays gone until put again.
                        evicted_seen += 1;
                        mine.insert(key, None);
                    }
                    (None, None) => {}
                }
            }
            n[2] += 1;
        } else if r < 97 {
            cache.maintain().unwrap();
            n[3] += 1;
        } else if r < 99 {
            cache.compact().unwrap();
            n[4] += 1;
        } else {
            for e in cache.list().unwrap() {
                assert!(e.key.starts_with('w') || e.key.starts_with("s-"), "{}", e.key);
            }
            n[5] += 1;
        }
    }
    assert!(cache.verify().unwrap().is_clean());
    report(format!(
        "done puts={} removes={} gets={} maintains={} compacts={} lists={} evicted_seen={evicted_seen}",
        n[0], n[1], n[2], n[3], n[4], n[5]
    ));
}

/// Gets random keys and checks every scope, until its time is up.
fn reader() {
    let id = arg_num("ID");
    let writers = arg_num("WRITERS");
    let mut rng = Rng::new(arg_num("SEED"));
    let cache = ScopeCache::open(arg("PATH"), config()).unwrap();
    let keys = key_space(writers);
    let end = deadline();
    let mut held: Vec<(Scope, proc::Seen)> = Vec::new();
    let (mut gets, mut hits, mut rechecks, mut lists) = (0u64, 0u64, 0u64, 0u64);
    let mut last_gen = 0;
    let mut gens = HashSet::new();
    while Instant::now() < end {
        let key = &keys[rng.below(keys.len() as u64) as usize];
        gets += 1;
        if let Some(s) = cache.get(key).unwrap() {
            hits += 1;
            let seen = check_scope(key, &s).unwrap_or_else(|e| panic!("reader {id}: {e}"));
            if held.len() < 8 {
                held.push((s, seen));
            } else if rng.pct(5) {
                let at = rng.below(8) as usize;
                held[at] = (s, seen);
            }
        }
        if gets % 64 == 0 {
            // Scopes held across commits and compactions read as they did.
            for (s, seen) in &held {
                assert_eq!(
                    &check_scope(&seen.key, s).unwrap(),
                    seen,
                    "reader {id}: a held scope changed"
                );
                rechecks += 1;
            }
            let g = cache.generation().unwrap();
            assert!(
                g >= last_gen,
                "reader {id}: generation went back from {last_gen} to {g}"
            );
            last_gen = g;
            gens.insert(g);
        }
        if gets % 256 == 0 {
            assert!(cache.list().unwrap().len() <= keys.len());
            lists += 1;
        }
    }
    report(format!(
        "done gets={gets} hits={hits} rechecks={rechecks} lists={lists} generations={}",
        gens.len()
    ));
}

struct Run {
    writer_logs: Vec<Vec<String>>,
    reader_logs: Vec<Vec<String>>,
}

fn run(path: &Path, writers: u64, readers: u64, millis: u64, big: u64, max_entries: u64, seed: u64) -> Run {
    let mut rng = Rng::new(seed);
    let common = |role: &str, id: u64, rng: &mut Rng| {
        let args = [
            ("PATH", path.display().to_string()),
            ("ID", id.to_string()),
            ("SEED", rng.next().to_string()),
            ("MILLIS", millis.to_string()),
            ("WRITERS", writers.to_string()),
            ("BIG", big.to_string()),
            ("MAX_ENTRIES", max_entries.to_string()),
        ];
        Child::spawn(role, &args)
    };
    let ws: Vec<Child> = (0..writers).map(|i| common("writer", i, &mut rng)).collect();
    let rs: Vec<Child> = (0..readers).map(|i| common("reader", i, &mut rng)).collect();
    let collect = |children: Vec<Child>| -> Vec<Vec<String>> {
        children
            .into_iter()
            .map(|c| {
                let role = c.role.clone();
                let mut lines = Vec::new();
                while let Some(l) = c.next_line(Duration::from_millis(millis + 60_000)) {
                    lines.push(l);
                }
                let (status, rest) = c.finish();
                lines.extend(rest);
                assert_ne!(signal_of(&status), Some(libc::SIGBUS), "{role} faulted (SIGBUS)");
                assert!(status.success(), "{role}: {}", describe(&status));
                assert!(
                    lines.last().is_some_and(|l| l.starts_with("done")),
                    "{role}: {:?}",
                    lines.last()
                );
                lines
            })
            .collect()
    };
    let writer_logs = collect(ws);
    let reader_logs = collect(rs);
    Run {
        writer_logs,
        reader_logs,
    }
}

/// Sums `name=<n>` over the last lines of the logs.
fn total(logs: &[Vec<String>], name: &str) -> u64 {
    logs.iter()
        .filter_map(|l| l.last())
        .flat_map(|l| l.split_whitespace())
        .filter_map(|w| w.strip_prefix(name).and_then(|v| v.strip_prefix('=')))
        .map(|v| v.parse::<u64>().unwrap())
        .sum()
}

fn seed() -> u64 {
    env_num(
        "SCOPECACHE_STRESS_SEED",
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos() as u64,
    )
}

#[test]
fn writers_and_readers_stay_consistent() {
    let secs = env_num("SCOPECACHE_STRESS_SECS", 20);
    let writers = env_num("SCOPECACHE_STRESS_WRITERS", 4);
    let readers = env_num("SCOPECACHE_STRESS_READERS", 4);
    let seed = seed();
    eprintln!("stress: {writers} writers, {readers} readers, {secs} s, SCOPECACHE_STRESS_SEED={seed}");
    let dir = disk_dir();
    let path = dir.path().join("c");
    let max_entries = 50;
    drop(ScopeCache::open(&path, config()).unwrap());
    let started = Instant::now();
    let r = run(&path, writers, readers, secs * 1000, 0, max_entries, seed);

    // Every version written under each key, and each writer's last word on
    // its own keys.
    let mut written: HashMap<String, HashSet<u64>> = HashMap::new();
    let mut last: HashMap<String, Option<u64>> = HashMap::new();
    for log in &r.writer_logs {
        for l in log {
            let w: Vec<&str> = l.split_whitespace().collect();
            match w.as_slice() {
                ["ok", "put", k, v] => {
                    let v: u64 = v.parse().unwrap();
                    written.entry(k.to_string()).or_default().insert(v);
                    if k.starts_with('w') {
                        last.insert(k.to_string(), Some(v));
                    }
                }
                ["ok", "rm", k, _] if k.starts_with('w') => {
                    last.insert(k.to_string(), None);
                }
                _ => {}
            }
        }
    }
    let cache = ScopeCache::open(&path, config()).unwrap();
    let v = cache.verify().unwrap();
    assert!(v.is_clean(), "{:?}", v.problems);
    let actual = snapshot_of(&cache);
    assert!(actual.len() <= max_entries as usize);
    for (k, v) in &actual {
        assert!(
            written.get(k).is_some_and(|s| s.contains(v)),
            "{k} holds v{v}, never put under it"
        );
        if k.starts_with('w') {
            assert_eq!(
                last.get(k),
                Some(&Some(*v)),
                "{k}: holds v{v}, not its writer's last put"
            );
        }
    }
    let missing_private = last
        .iter()
        .filter(|(k, v)| v.is_some() && !actual.contains_key(*k))
        .count() as u64;
    let stats = cache.stats().unwrap();
    assert!(
        missing_private <= stats.evictions,
        "{missing_private} keys lost, only {} evictions",
        stats.evictions
    );
    assert!(stats.evictions > 0, "the limits never caused an eviction");
    let ops = total(&r.writer_logs, "puts")
        + total(&r.writer_logs, "removes")
        + total(&r.writer_logs, "gets")
        + total(&r.writer_logs, "maintains")
        + total(&r.writer_logs, "compacts")
        + total(&r.writer_logs, "lists");
    let reader_gets = total(&r.reader_logs, "gets");
    assert!(total(&r.writer_logs, "puts") > 0 && reader_gets > 0);
    eprintln!(
        "stress: {:.1} s, writer ops {ops} (puts {}, removes {}, gets {}, maintains {}, compacts {}), \
         reader gets {reader_gets} (hits {}, held-scope rechecks {}), generations seen by a reader up to {}, \
         evictions {}, compactions {}, keys at the end {}, missing private keys {missing_private}",
        started.elapsed().as_secs_f64(),
        total(&r.writer_logs, "puts"),
        total(&r.writer_logs, "removes"),
        total(&r.writer_logs, "gets"),
        total(&r.writer_logs, "maintains"),
        total(&r.writer_logs, "compacts"),
        total(&r.reader_logs, "hits"),
        total(&r.reader_logs, "rechecks"),
        r.reader_logs
            .iter()
            .map(|l| total(std::slice::from_ref(l), "generations"))
            .max()
            .unwrap_or(0),
        stats.evictions,
        stats.compactions,
        actual.len(),
    );
}

#[test]
fn readers_see_only_whole_scopes_of_one_writer() {
    let dir = disk_dir();
    let path = dir.path().join("c");
    drop(ScopeCache::open(&path, config()).unwrap());
    let r = run(&path, 1, 2, 4000, 20_000, 1000, seed());
    let puts = total(&r.writer_logs, "puts");
    let hits = total(&r.reader_logs, "hits");
    assert!(puts > 0 && hits > 0, "puts {puts}, reader hits {hits}");
    eprintln!("one writer, two readers: {puts} large puts, {hits} whole scopes read and checked");
}
