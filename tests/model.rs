//! Limits hold after every commit: random sequences of put, get, remove,
//! maintain, compact, reopen and clock moves, checked step by step against
//! an in-memory model: entry count, committed file size, TTL, LRU order of
//! evictions, exact data, and counters that only grow (across reopen too).
//!
//! Environment: `PROPTEST_CASES=n` runs n sequences (default 64).

mod common;

use common::Model;
use proptest::prelude::*;
use scopecache::{CacheConfig, CacheStats, ManualClock, ScopeCache};
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

const KEYS: [&str; 6] = ["a", "b", "c", "d", "e", "f"];
const MAX_ENTRIES: usize = 4;
const MAX_SIZE: u64 = 56 * 1024;
const TTL_SECS: u64 = 300;

#[derive(Clone, Debug)]
enum Op {
    Put(usize, u8),
    Get(usize),
    Remove(usize),
    Maintain,
    Compact,
    Reopen,
    Advance(u64),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        5 => (0..KEYS.len(), 0u8..4).prop_map(|(k, v)| Op::Put(k, v)),
        4 => (0..KEYS.len()).prop_map(Op::Get),
        1 => (0..KEYS.len()).prop_map(Op::Remove),
        1 => Just(Op::Maintain),
        1 => Just(Op::Compact),
        1 => Just(Op::Reopen),
        2 => prop_oneof![Just(0u64), 1u64..120, Just(TTL_SECS), Just(TTL_SECS + 1)].prop_map(Op::Advance),
    ]
}

/// Scope variants: 2 and 3 share their node mapping.
fn scope(v: u8) -> Model {
    match v {
        0 => Model::random(10, 5, 3),
        1 => Model::random(11, 64, 32),
        2 => Model::random(12, 300, 100),
        _ => Model::random(13, 300, 200),
    }
}

fn config(clock: &Arc<ManualClock>) -> CacheConfig {
    CacheConfig {
        max_entries: MAX_ENTRIES,
        max_size_bytes: MAX_SIZE,
        ttl: Some(Duration::from_secs(TTL_SECS)),
        fsync: false,
        compact_min_dead_bytes: 4096,
        clock: clock.clone(),
        ..CacheConfig::default()
    }
}

#[derive(Clone, Debug)]
struct Entry {
    variant: u8,
    last_access_us: i64,
}

fn counters(s: &CacheStats) -> [u64; 7] {
    [
        s.hits,
        s.misses,
        s.evictions,
        s.expiries,
        s.puts,
        s.removes,
        s.compactions,
    ]
}

fn matches(cache: &ScopeCache, key: &str, m: &Model) -> Result<(), String> {
    let s = cache
        .get(key)
        .map_err(|e| e.to_string())?
        .ok_or_else(|| format!("{key}: missing"))?;
    let ok = s.nodes() == m.nodes.as_bitslice()
        && s.links() == m.links.as_bitslice()
        && s.attributes() == &m.attributes
        && m.node_ids
            .iter()
            .enumerate()
            .all(|(i, id)| s.node_ids().index_of(id) == Some(i as u32))
        && m.link_ids
            .iter()
            .enumerate()
            .all(|(i, id)| s.link_ids().id(i as u32) == Some(id.as_str()));
    if ok {
        Ok(())
    } else {
        Err(format!("{key}: data differs"))
    }
}

fn run(ops: &[Op], path: &Path) -> Result<CacheStats, TestCaseError> {
    let clock = Arc::new(ManualClock::new(
        chrono::DateTime::UNIX_EPOCH + Duration::from_secs(1_000_000),
    ));
    let mut cache = ScopeCache::open(path, config(&clock)).unwrap();
    let ttl_us = (TTL_SECS * 1_000_000) as i64;
    let mut model: BTreeMap<&str, Entry> = BTreeMap::new();
    let mut last = counters(&cache.stats().unwrap());
    let mut puts = 0u64;
    for (step, op) in ops.iter().enumerate() {
        let now = clock.now_us();
        let before: BTreeSet<&str> = model.keys().copied().collect();
        let mut removed_key = None;
        let mut put_key = None;
        match op {
            Op::Put(k, v) => {
                scope(*v)
                    .put(&cache, KEYS[*k])
                    .map_err(|e| TestCaseError::fail(format!("step {step}: put: {e}")))?;
                puts += 1;
                model.insert(
                    KEYS[*k],
                    Entry {
                        variant: *v,
                        last_access_us: now,
                    },
                );
                put_key = Some(KEYS[*k]);
                let s = cache.stats().unwrap();
                prop_assert!(
                    s.file_bytes <= MAX_SIZE,
                    "step {step}: file {} > {MAX_SIZE}",
                    s.file_bytes
                );
            }
            Op::Get(k) => {
                let key = KEYS[*k];
                let got = cache.get(key).unwrap();
                match model.get_mut(key) {
                    Some(e) if now - e.last_access_us <= ttl_us => {
                        prop_assert!(got.is_some(), "step {step}: {key} is live but get missed");
                        matches(&cache, key, &scope(e.variant)).map_err(TestCaseError::fail)?;
                        e.last_access_us = now;
                    }
                    Some(_) => prop_assert!(
                        got.is_none(),
                        "step {step}: {key} is older than the TTL but was returned"
                    ),
                    None => prop_assert!(
                        got.is_none(),
                        "step {step}: {key} was never stored or is gone, but was returned"
                    ),
                }
            }
            Op::Remove(k) => {
                let key = KEYS[*k];
                let had = cache.remove(key).unwrap();
                prop_assert_eq!(
                    had,
                    model.remove(key).is_some(),
                    "step {}: remove({}) result",
                    step,
                    key
                );
                removed_key = Some(key);
            }
            Op::Maintain => {
                cache.maintain().unwrap();
            }
            Op::Compact => {
                cache.compact().unwrap();
            }
            Op::Reopen => {
                drop(cache);
                cache = ScopeCache::open(path, config(&clock)).unwrap();
            }
            Op::Advance(s) => clock.advance(Duration::from_secs(*s)),
        }
        // What the file holds now.
        let present: BTreeSet<String> = cache.list().unwrap().into_iter().map(|e| e.key).collect();
        prop_assert!(
            present.len() <= MAX_ENTRIES,
            "step {step}: {} entries",
            present.len()
        );
        for k in &present {
            prop_assert!(
                model.contains_key(k.as_str()),
                "step {step}: {k} is stored but was removed or evicted"
            );
        }
        let gone: Vec<&str> = before
            .iter()
            .copied()
            .filter(|k| Some(*k) != removed_key && !present.contains(*k))
            .collect();
        if !gone.is_empty() {
            prop_assert!(
                !matches!(op, Op::Get(_) | Op::Advance(_) | Op::Reopen),
                "step {step}: {gone:?} vanished in a read {op:?}"
            );
        }
        // Entries that vanished were expired or least recently used: none
        // was accessed later than an entry that stayed.
        for g in &gone {
            let ga = model[g].last_access_us;
            let expired = now - ga > ttl_us;
            if !expired {
                for s in present.iter().filter(|s| Some(s.as_str()) != put_key) {
                    let sa = model[s.as_str()].last_access_us;
                    prop_assert!(
                        ga <= sa,
                        "step {step}: evicted {g} (access {ga}) before {s} (access {sa})"
                    );
                }
            }
        }
        for g in gone {
            model.remove(g);
        }
        let stats = cache.stats().unwrap();
        prop_assert_eq!(stats.total_entries, present.len() as u64);
        let now_c = counters(&stats);
        for (i, (a, b)) in last.iter().zip(now_c.iter()).enumerate() {
            prop_assert!(b >= a, "step {step}: counter {i} went from {a} to {b}");
        }
        prop_assert_eq!(stats.puts, puts, "step {}: puts counter", step);
        last = now_c;
    }
    let v = cache.verify().unwrap();
    prop_assert!(v.is_clean(), "{:?}", v.problems);
    Ok(cache.stats().unwrap())
}

trait NowUs {
    fn now_us(&self) -> i64;
}

impl NowUs for ManualClock {
    fn now_us(&self) -> i64 {
        scopecache::Clock::now(self).timestamp_micros()
    }
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: std::env::var("PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(64),
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn limits_hold_after_every_step(ops in proptest::collection::vec(op(), 1..48)) {
        let dir = tempfile::tempdir().unwrap();
        run(&ops, &dir.path().join("cache"))?;
    }
}

/// The random sequences reach every limit: evictions (by count and by
/// size), expiries and compactions all happen, so the checks above bite.
#[test]
fn sequences_reach_the_limits() {
    use proptest::test_runner::{Config, TestRunner};
    let mut runner = TestRunner::new(Config {
        cases: 32,
        failure_persistence: None,
        ..Config::default()
    });
    let totals = std::cell::RefCell::new([0u64; 4]);
    let size_evictions = std::cell::Cell::new(0u64);
    runner
        .run(&proptest::collection::vec(op(), 24..48), |ops| {
            let dir = tempfile::tempdir().unwrap();
            let s = run(&ops, &dir.path().join("cache"))?;
            let mut t = totals.borrow_mut();
            for (i, v) in [s.evictions, s.expiries, s.compactions, s.puts]
                .into_iter()
                .enumerate()
            {
                t[i] += v;
            }
            Ok(())
        })
        .unwrap();
    // A file of large scopes holds fewer than MAX_ENTRIES of them.
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::new(
        chrono::DateTime::UNIX_EPOCH + Duration::from_secs(1_000_000),
    ));
    let cache = ScopeCache::open(dir.path().join("c"), config(&clock)).unwrap();
    for (i, k) in KEYS.iter().enumerate() {
        clock.advance(Duration::from_secs(1));
        // Each with mappings of its own.
        Model::random(20 + i as u64, 300 + i, 200 + i)
            .put(&cache, k)
            .unwrap();
        let st = cache.stats().unwrap();
        assert!(st.file_bytes <= MAX_SIZE);
        size_evictions.set(st.evictions);
    }
    assert!(
        cache.list().unwrap().len() < MAX_ENTRIES,
        "size, not count, limits this cache"
    );
    let [evictions, expiries, compactions, puts] = *totals.borrow();
    assert!(
        evictions > 0 && expiries > 0 && compactions > 0 && puts > 0,
        "{:?}",
        totals.borrow()
    );
    assert!(size_evictions.get() > 0);
}
