//! No committed put is lost after kill -9.
//!
//! A writer process puts, replaces and removes scopes and compacts, with
//! fsync on, reporting each operation before it starts (`begin ...`) and
//! after it returned Ok (`ok ...`). The test kills it with SIGKILL at random
//! moments, or lets it abort at a named crash point (`SCOPECACHE_CRASH_AT`),
//! then opens the file and checks that:
//! - open succeeds and `verify()` is clean;
//! - every operation reported Ok is in effect, with identical bytes;
//! - the one operation in flight, if any, is either wholly in effect or not
//!   at all, and nothing else is present (no partial scope is visible);
//! - a handle opened before the first kill and kept open reads the same.
//!
//! Environment:
//! - `SCOPECACHE_CRASH_KILLS=N`: number of kills (default 250; one in five
//!   is an abort at a crash point, in turn).
//! - `SCOPECACHE_CRASH_SEED=S`: seed of the workload and kill timing
//!   (default: from the clock; printed, so a failure can be replayed).

mod proc;

use proc::{
    arg, arg_num, describe, disk_dir, env_num, other_files, report, roomy_config, signal_of, snapshot_of,
    Child, Content, Rng,
};
use scopecache::ScopeCache;
use std::collections::HashMap;
use std::time::{Duration, Instant};

const CRASH_POINTS: [&str; 6] = [
    "commit-before-data-sync",
    "commit-before-superblock",
    "commit-after-superblock",
    "compact-before-retire",
    "compact-before-rename",
    "compact-after-rename",
];

#[test]
#[ignore = "runs only as a child process of the other tests"]
fn child() {
    proc::child_main(&[("writer", writer), ("steps", steps)]);
}

/// Runs the comma-separated operations in `OPS` (`put <key>`, `compact`),
/// then exits.
fn steps() {
    let cache = ScopeCache::open(arg("PATH"), roomy_config()).unwrap();
    for (i, op) in arg("OPS").split(',').enumerate() {
        match op.split_whitespace().collect::<Vec<_>>()[..] {
            ["put", key] => Content::new(key, i as u64, 50).put(&cache).unwrap(),
            ["compact"] => {
                cache.compact().unwrap();
            }
            _ => panic!("unknown step {op:?}"),
        }
        report(format!("ok {op}"));
    }
}

/// A handle that stayed on a file two compactions back reads what a fresh
/// handle reads, whichever compaction crash point stopped the second
/// compaction. After `compact-before-rename` the path names a retired file,
/// the successor of the one the handle reads: the handle must move to it.
#[test]
fn a_long_lived_handle_follows_a_compaction_that_died() {
    for point in [
        "compact-before-retire",
        "compact-before-rename",
        "compact-after-rename",
    ] {
        let dir = disk_dir();
        let path = dir.path().join("c");
        let long_lived = ScopeCache::open(&path, roomy_config()).unwrap();
        let run = |ops: &str, crash_at: Option<&str>| {
            let mut cmd = Child::command(
                "steps",
                &[("PATH", path.display().to_string()), ("OPS", ops.to_owned())],
            );
            if let Some(p) = crash_at {
                cmd.env("SCOPECACHE_CRASH_AT", p);
            }
            Child::spawn_command("steps", cmd).finish().0
        };
        let status = run("put a,compact,put b", None);
        assert!(status.success(), "{point}: {}", describe(&status));
        let status = run("put c,compact", Some(point));
        assert_eq!(
            signal_of(&status),
            Some(libc::SIGABRT),
            "{point}: {}",
            describe(&status)
        );
        let fresh = snapshot_of(&ScopeCache::open(&path, roomy_config()).unwrap());
        assert_eq!(fresh.len(), 3, "{point}: {fresh:?}");
        assert_eq!(
            snapshot_of(&long_lived),
            fresh,
            "{point}: the handle open since before the first compaction reads another state"
        );
    }
}

/// Writes until killed. Its own keys are `r<run>-<i>`; it also replaces and
/// removes keys earlier runs left.
fn writer() {
    let path = arg("PATH");
    let run = arg_num("RUN");
    let mut rng = Rng::new(arg_num("SEED"));
    let cache = ScopeCache::open(&path, roomy_config()).unwrap();
    let mut keys: Vec<String> = cache.list().unwrap().into_iter().map(|e| e.key).collect();
    report(format!("ready {}", keys.len()));
    if std::env::var("SCOPECACHE_CRASH_AT").is_ok_and(|p| p.starts_with("compact")) {
        report("begin compact");
        cache.compact().unwrap();
        report("ok compact");
    }
    for i in 0u64.. {
        let r = rng.below(100);
        if !keys.is_empty() && (r < 12 || (keys.len() > 120 && r < 40)) {
            let k = keys.swap_remove(rng.below(keys.len() as u64) as usize);
            report(format!("begin rm {k}"));
            assert!(cache.remove(&k).unwrap(), "{k} was not there to remove");
            report(format!("ok rm {k}"));
        } else if r < 15 {
            report("begin compact");
            cache.compact().unwrap();
            report("ok compact");
        } else if r < 17 {
            report("begin maintain");
            let m = cache.maintain().unwrap();
            assert_eq!(m.evicted + m.expired + m.corrupt_dropped, 0, "{m:?}");
            report("ok maintain");
        } else {
            let replace = !keys.is_empty() && r < 40;
            let key = if replace {
                keys[rng.below(keys.len() as u64) as usize].clone()
            } else {
                format!("r{run}-{i}")
            };
            let ver = (run << 32) | i;
            let size = if rng.pct(10) { 3000 } else { 1 + rng.below(200) };
            let c = Content::new(&key, ver, size);
            report(format!("begin put {key} {ver}"));
            c.put(&cache).unwrap();
            report(format!("ok put {key} {ver}"));
            if !replace {
                keys.push(key);
            }
        }
    }
}

#[derive(Clone, Debug)]
enum Op {
    Put(String, u64),
    Remove(String),
    Other,
}

fn parse(words: &[&str]) -> Op {
    match words {
        ["put", k, v] => Op::Put(k.to_string(), v.parse().unwrap()),
        ["rm", k] => Op::Remove(k.to_string()),
        _ => Op::Other,
    }
}

#[derive(Default, Debug)]
struct Tally {
    kills: u64,
    crash_points: u64,
    ops_ok: u64,
    in_flight_done: u64,
    in_flight_undone: u64,
}

#[test]
fn committed_puts_survive_kill_9() {
    let kills = env_num("SCOPECACHE_CRASH_KILLS", 250);
    let seed = env_num(
        "SCOPECACHE_CRASH_SEED",
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos() as u64,
    );
    eprintln!("crash test: {kills} kills, SCOPECACHE_CRASH_SEED={seed}");
    let mut rng = Rng::new(seed);
    let dir = disk_dir();
    let path = dir.path().join("c");
    let mut model: HashMap<String, u64> = HashMap::new();
    let mut t = Tally::default();
    // A reader that stays open across every kill, compaction and crash.
    let long_lived = ScopeCache::open(&path, roomy_config()).unwrap();
    let started = Instant::now();
    for run in 0..kills {
        let point = (run % 5 == 4).then(|| CRASH_POINTS[(run / 5) as usize % CRASH_POINTS.len()]);
        let mut cmd = Child::command(
            "writer",
            &[
                ("PATH", path.display().to_string()),
                ("RUN", run.to_string()),
                ("SEED", rng.next().to_string()),
            ],
        );
        if let Some(p) = point {
            cmd.env("SCOPECACHE_CRASH_AT", p);
        }
        let child = Child::spawn_command("writer", cmd);
        let (ready, _) = child.expect_line("ready", Duration::from_secs(30));
        assert_eq!(
            ready,
            format!("ready {}", model.len()),
            "run {run}: the writer sees another state at open"
        );
        let mut log = Vec::new();
        let (status, rest) = if let Some(p) = point {
            // The child aborts by itself at the crash point.
            let deadline = Instant::now() + Duration::from_secs(30);
            while let Some(l) = child.next_line(deadline.saturating_duration_since(Instant::now())) {
                log.push(l);
            }
            let (status, rest) = child.finish();
            assert_eq!(
                signal_of(&status),
                Some(libc::SIGABRT),
                "run {run}: crash point {p} did not abort: {}",
                describe(&status)
            );
            t.crash_points += 1;
            (status, rest)
        } else {
            let begins = rng.below(10);
            let mut seen = 0;
            while seen < begins {
                let l = child
                    .next_line(Duration::from_secs(30))
                    .expect("the writer stopped reporting");
                seen += u64::from(l.starts_with("begin"));
                log.push(l);
            }
            std::thread::sleep(Duration::from_micros(rng.below(4000)));
            let (status, rest) = child.kill9();
            assert_eq!(
                signal_of(&status),
                Some(libc::SIGKILL),
                "run {run}: writer ended early: {}",
                describe(&status)
            );
            (status, rest)
        };
        let _ = status;
        t.kills += 1;
        log.extend(rest);

        // What the log says is committed, and what may be.
        let mut in_flight = None;
        for l in &log {
            let words: Vec<&str> = l.split_whitespace().collect();
            match words.first() {
                Some(&"begin") => in_flight = Some(parse(&words[1..])),
                Some(&"ok") => {
                    match parse(&words[1..]) {
                        Op::Put(k, v) => {
                            model.insert(k, v);
                        }
                        Op::Remove(k) => {
                            assert!(
                                model.remove(&k).is_some(),
                                "run {run}: removed {k}, unknown to the model"
                            );
                        }
                        Op::Other => {}
                    }
                    t.ops_ok += 1;
                    in_flight = None;
                }
                _ => {}
            }
        }

        let cache = ScopeCache::open(&path, roomy_config())
            .unwrap_or_else(|e| panic!("run {run} ({point:?}): open after the kill failed: {e}"));
        let v = cache.verify().unwrap();
        assert!(
            v.is_clean(),
            "run {run} ({point:?}): verify found {:?}",
            v.problems
        );
        let actual = snapshot_of(&cache);
        let touched = match &in_flight {
            Some(Op::Put(k, _) | Op::Remove(k)) => Some(k.clone()),
            _ => None,
        };
        for (k, v) in &model {
            if Some(k) != touched.as_ref() {
                assert_eq!(
                    actual.get(k),
                    Some(v),
                    "run {run} ({point:?}): committed {k} v{v} lost or changed"
                );
            }
        }
        for k in actual.keys() {
            assert!(
                model.contains_key(k) || Some(k) == touched.as_ref(),
                "run {run} ({point:?}): {k} present but never put"
            );
        }
        match &in_flight {
            Some(Op::Put(k, v)) => {
                let got = actual.get(k);
                assert!(
                    got == Some(v) || got == model.get(k),
                    "run {run}: in-flight put of {k} v{v} left {got:?}"
                );
                if got == Some(v) && model.get(k) != Some(v) {
                    t.in_flight_done += 1;
                } else {
                    t.in_flight_undone += 1;
                }
            }
            Some(Op::Remove(k)) => {
                let got = actual.get(k);
                assert!(
                    got.is_none() || got == model.get(k),
                    "run {run}: in-flight remove of {k} left {got:?}"
                );
                if got.is_none() {
                    t.in_flight_done += 1;
                } else {
                    t.in_flight_undone += 1;
                }
            }
            _ => {}
        }
        assert_eq!(
            snapshot_of(&long_lived),
            actual,
            "run {run} ({point:?}): a handle open since the start reads another state"
        );
        model = actual;
    }
    let elapsed = started.elapsed();
    let leftovers = other_files(dir.path(), &path);
    eprintln!(
        "crash test: {t:?}, {} keys at the end, {} leftover files, {:.1} s",
        model.len(),
        leftovers.len(),
        elapsed.as_secs_f64()
    );
    assert_eq!(t.kills, kills);
    assert!(
        t.ops_ok > kills,
        "the writers did too little work to prove anything: {t:?}"
    );
}
