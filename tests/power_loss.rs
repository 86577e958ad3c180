//! Power loss never corrupts the file. A scripted workload (puts with shared
//! mappings, a replace, removes, compaction, maintenance, eviction) runs on
//! a simulated disk that loses power at each of its sync points in turn; the
//! file a power loss could leave (unsynced writes dropped, applied, torn at
//! sector granularity, or reordered; renames lost unless the directory was
//! synced) is reopened with the real file system and must hold exactly the
//! state after the last completed operation, or after the interrupted one:
//! every put that returned Ok is there with identical bytes, nothing partial
//! is visible, and `verify` finds nothing wrong with the newest generation.
//!
//! Environment: `SCOPECACHE_POWER_LOSS_SCRIPTS=n` also crashes n random
//! scripts (default 2); `SCOPECACHE_POWER_LOSS_SEEDS=n` tries n random fates per
//! crash point (default 6), besides "all unsynced writes lost" and "all
//! reached the disk".

mod common;
#[path = "common/simdisk.rs"]
mod simdisk;

use common::Model;
use scopecache::{CacheConfig, ManualClock, ScopeCache};
use simdisk::{Fate, SimDisk};
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

#[derive(Clone, Debug)]
enum Op {
    Put(&'static str, u64),
    Get(&'static str),
    Remove(&'static str),
    Compact,
    Maintain,
}

/// The scopes, by number: (seed, nodes, links). Equal node counts share a
/// node mapping, equal link counts a link mapping.
fn model(n: u64) -> Model {
    let (nodes, links) = match n {
        1 => (40, 30),
        2 => (40, 20),
        3 => (700, 300),
        4 => (40, 30),
        5 => (10, 5),
        6 => (20, 10),
        _ => (3, 2),
    };
    Model::random(n, nodes, links)
}

fn script() -> Vec<Op> {
    use Op::*;
    vec![
        Put("k1", 1),
        Put("k2", 2),
        Put("k3", 3),
        Get("k1"),
        Put("k1", 4),
        Remove("k2"),
        Compact,
        Put("k4", 5),
        Get("k3"),
        Maintain,
        Put("k5", 6),
        Remove("k4"),
        Maintain,
        Put("k6", 7),
        Put("k5", 2),
    ]
}

fn config(clock: &Arc<ManualClock>) -> CacheConfig {
    CacheConfig {
        max_entries: 3,
        // Ten seconds pass per operation: entries not touched for five
        // operations expire, so maintenance and puts remove some.
        ttl: Some(Duration::from_secs(45)),
        auto_compact: true,
        compact_min_dead_bytes: 0,
        compact_dead_ratio: 0.5,
        clock: clock.clone(),
        ..CacheConfig::default()
    }
}

/// Which scope each key holds.
type State = BTreeMap<String, u64>;

/// Runs the script on `disk` until an operation fails. Returns the states
/// after each completed operation (the first is the empty start) and the
/// number of operations that completed.
/// Runs `script` until the disk crashes. Returns the states after each
/// completed op, the index of the op the crash interrupted (or the script's
/// length), and whether that op had already committed (returned Ok: the crash
/// came in the automatic compaction after its commit).
fn run(path: &Path, disk: &SimDisk, script: &[Op]) -> (Vec<State>, usize, bool) {
    let clock = Arc::new(ManualClock::new(
        chrono::DateTime::UNIX_EPOCH + Duration::from_secs(1_000_000),
    ));
    // The file is made before the disk is simulated, so its creation is durable.
    drop(ScopeCache::open(path, config(&clock)).unwrap());
    let cache = ScopeCache::open(
        path,
        CacheConfig {
            io: Some(Arc::new(disk.clone())),
            ..config(&clock)
        },
    )
    .unwrap();
    let mut held: BTreeMap<&str, u64> = BTreeMap::new();
    let mut states = vec![State::new()];
    for (i, op) in script.iter().enumerate() {
        clock.advance(Duration::from_secs(10));
        let r = match op {
            Op::Put(k, m) => {
                held.insert(k, *m);
                model(*m).put(&cache, k)
            }
            Op::Get(k) => cache.get(k).map(|_| ()),
            Op::Remove(k) => cache.remove(k).map(|_| ()),
            Op::Compact => cache.compact().map(|_| ()),
            Op::Maintain => cache.maintain().map(|_| ()),
        };
        if let Err(e) = r {
            assert!(disk.crashed(), "op {i} {op:?} failed without a crash: {e}");
            return (states, i, false);
        }
        let present: State = cache
            .list()
            .unwrap()
            .into_iter()
            .map(|e| {
                let m = held[e.key.as_str()];
                (e.key, m)
            })
            .collect();
        states.push(present);
        if disk.crashed() {
            return (states, i, true);
        }
    }
    (states, script.len(), false)
}

/// True when `cache` holds exactly `state`, every scope bit for bit.
fn holds(cache: &ScopeCache, state: &State) -> bool {
    let keys: Vec<String> = cache.list().unwrap().into_iter().map(|e| e.key).collect();
    if keys.len() != state.len() || !keys.iter().all(|k| state.contains_key(k)) {
        return false;
    }
    state.iter().all(|(k, &m)| {
        let want = model(m);
        let Some(s) = cache.get(k).unwrap() else {
            return false;
        };
        s.nodes() == want.nodes.as_bitslice()
            && s.links() == want.links.as_bitslice()
            && s.attributes() == &want.attributes
            && s.node_ids().len() == want.node_ids.len()
            && s.link_ids().len() == want.link_ids.len()
            && want
                .node_ids
                .iter()
                .enumerate()
                .all(|(i, id)| s.node_ids().index_of(id) == Some(i as u32))
            && want
                .link_ids
                .iter()
                .enumerate()
                .all(|(i, id)| s.link_ids().id(i as u32) == Some(id.as_str()))
    })
}

#[derive(Default, Debug)]
struct Figures {
    crash_points: u64,
    images: u64,
    old_state: u64,
    new_state: u64,
    spare_slot_torn: u64,
    with_pending_writes: u64,
    /// Crash points by the operation they interrupted.
    by_op: BTreeMap<String, u64>,
}

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Crashes `script` at each of its sync points in turn and checks every
/// image a power loss could leave. Returns the figures; panics on failures.
fn crash_everywhere(script: &[Op]) -> Figures {
    let seeds = env_u64("SCOPECACHE_POWER_LOSS_SEEDS", 6);
    let dir = tempfile::tempdir().unwrap();
    // The reference run: no crash.
    let reference = SimDisk::new(None);
    let (states, done, _) = run(&dir.path().join("reference"), &reference, script);
    assert_eq!(done, script.len());
    let total = reference.syncs();
    assert!(total >= 1, "the script never synced");
    let mut fig = Figures::default();
    let mut failures = Vec::new();
    for crash_at in 1..=total {
        fig.crash_points += 1;
        let case = dir.path().join(format!("crash-{crash_at}"));
        std::fs::create_dir(&case).unwrap();
        let path = case.join("cache");
        let disk = SimDisk::new(Some(crash_at));
        let (crash_states, k, committed) = run(&path, &disk, script);
        assert!(k < script.len(), "crash point {crash_at} was not reached");
        assert_eq!(
            crash_states,
            states[..crash_states.len()],
            "the run before the crash differs from the reference"
        );
        let kind = format!("{:?}", script[k]);
        let kind = kind.split('(').next().unwrap_or_default().to_string();
        *fig.by_op.entry(kind).or_default() += 1;
        if disk.pending_writes(&path) > 0 {
            fig.with_pending_writes += 1;
        }
        let after = states.get(k + 1).unwrap_or(&states[k]);
        // An op that returned Ok is durable: only its outcome may be found.
        let before = if committed { after } else { &states[k] };
        let fates = [Fate::DropAll, Fate::ApplyAll]
            .into_iter()
            .chain((0..seeds).map(|s| Fate::Random(crash_at * 1000 + s)));
        for (f, fate) in fates.enumerate() {
            fig.images += 1;
            let what = format!(
                "crash at sync {crash_at} (during op {k}: {:?}), {fate:?}",
                script[k]
            );
            let Some(img) = disk.image(&path, fate) else {
                failures.push(format!("{what}: no file at the path"));
                continue;
            };
            let rec = case.join(format!("recovered-{f}"));
            std::fs::write(&rec, &img).unwrap();
            let clock = Arc::new(ManualClock::new(
                chrono::DateTime::UNIX_EPOCH + Duration::from_secs(2_000_000),
            ));
            // Without a TTL, so that every entry the file holds is read back.
            let recovered_config = || CacheConfig {
                ttl: None,
                ..config(&clock)
            };
            let cache = match ScopeCache::open(&rec, recovered_config()) {
                Ok(c) => c,
                Err(e) => {
                    failures.push(format!("{what}: open failed: {e}"));
                    continue;
                }
            };
            let report = cache.verify().unwrap();
            for p in &report.problems {
                failures.push(format!("{what}: verify: {p:?}"));
            }
            let spare = (1 - cache.generation().unwrap() % 2) as usize * 4096;
            if img.len() >= spare + 128 {
                let stored = u32::from_le_bytes(img[spare + 124..spare + 128].try_into().unwrap());
                if stored != crc32fast::hash(&img[spare..spare + 124]) {
                    fig.spare_slot_torn += 1;
                }
            }
            if holds(&cache, before) {
                fig.old_state += 1;
            } else if holds(&cache, after) {
                fig.new_state += 1;
            } else {
                let keys: Vec<String> = cache.list().unwrap().into_iter().map(|e| e.key).collect();
                failures.push(format!(
                    "{what}: holds {keys:?}, expected {before:?} or {after:?}"
                ));
                continue;
            }
            // The recovered cache takes writes.
            let m = model(9);
            m.put(&cache, "after-crash").unwrap();
            m.check(&cache, "after-crash");
            drop(cache);
            let again = ScopeCache::open(&rec, recovered_config()).unwrap();
            m.check(&again, "after-crash");
            assert!(
                again.verify().unwrap().is_clean(),
                "{what}: verify after a new commit"
            );
        }
        std::fs::remove_dir_all(&case).unwrap();
    }
    eprintln!("power loss: {total} sync points in the script; {fig:?}");
    assert!(
        failures.is_empty(),
        "{} failures:\n{}",
        failures.len(),
        failures.join("\n")
    );
    fig
}

#[test]
fn power_loss_at_every_sync_point() {
    let fig = crash_everywhere(&script());
    assert!(fig.crash_points >= 20, "{fig:?}");
    assert!(fig.old_state > 0 && fig.new_state > 0, "{fig:?}");
    // Crashes inside compaction, maintenance (expiry) and plain commits
    // were all exercised.
    for op in ["Put", "Remove", "Compact", "Maintain"] {
        assert!(
            fig.by_op.get(op).is_some_and(|&n| n > 0),
            "no crash during {op}: {fig:?}"
        );
    }
}

/// Random scripts (`SCOPECACHE_POWER_LOSS_SCRIPTS=n`, default 2), each
/// crashed at every sync point.
#[test]
fn power_loss_in_random_scripts() {
    use rand::{Rng, SeedableRng};
    const KEYS: [&str; 5] = ["k1", "k2", "k3", "k4", "k5"];
    for seed in 0..env_u64("SCOPECACHE_POWER_LOSS_SCRIPTS", 2) {
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        let script: Vec<Op> = (0..rng.gen_range(6..16))
            .map(|_| {
                let k = KEYS[rng.gen_range(0..KEYS.len())];
                match rng.gen_range(0..10) {
                    0..=4 => Op::Put(k, rng.gen_range(1..=8)),
                    5 | 6 => Op::Get(k),
                    7 => Op::Remove(k),
                    8 => Op::Compact,
                    _ => Op::Maintain,
                }
            })
            .collect();
        let fig = crash_everywhere(&script);
        assert!(fig.crash_points > 0, "script {seed}: {script:?}");
    }
}
