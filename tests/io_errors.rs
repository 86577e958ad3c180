//! Injected EIO through the write layer. A failed write fails the put, every
//! earlier scope stays readable, and the next put works. A failed fsync
//! fails the put and poisons the handle (`Error::Poisoned`) until the cache
//! is opened again; the reopened handle works. Failures of compaction's
//! writes, rename and directory sync leave every scope readable.

mod common;
#[path = "common/simdisk.rs"]
mod simdisk;

use common::Model;
use scopecache::{CacheConfig, Error, ScopeCache};
use simdisk::FaultIo;
use std::path::Path;
use std::sync::Arc;

fn open(path: &Path, io: &FaultIo) -> ScopeCache {
    let cfg = CacheConfig {
        ttl: None,
        io: Some(Arc::new(io.clone())),
        ..CacheConfig::default()
    };
    ScopeCache::open(path, cfg).unwrap()
}

fn is_eio(e: &Error) -> bool {
    matches!(e, Error::Io { source, .. } if source.raw_os_error() == Some(simdisk::EIO))
}

/// Two scopes sharing their node mapping, and a third.
fn base() -> Vec<(&'static str, Model)> {
    vec![
        ("a", Model::random(1, 100, 40)),
        ("b", Model::random(2, 100, 60)),
        ("c", Model::random(3, 7, 3)),
    ]
}

fn check_all(cache: &ScopeCache, held: &[(String, Model)]) {
    for (k, m) in held {
        m.check(cache, k);
    }
    let r = cache.verify().unwrap();
    assert!(r.is_clean(), "{:?}", r.problems);
}

#[test]
fn eio_on_each_write_of_a_put() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c");
    let io = FaultIo::default();
    let cache = open(&path, &io);
    let mut held: Vec<(String, Model)> = base().into_iter().map(|(k, m)| (k.to_string(), m)).collect();
    for (k, m) in &held {
        m.put(&cache, k).unwrap();
    }
    // How many writes a put of a new scope with new mappings makes.
    io.reset();
    Model::random(50, 33, 17).put(&cache, "probe").unwrap();
    held.push(("probe".into(), Model::random(50, 33, 17)));
    let writes = io.faults().writes_seen;
    assert!(writes >= 5, "a put makes {writes} writes");
    for n in 1..=writes {
        let key = format!("new-{n}");
        let m = Model::random(100 + n, 33 + n as usize, 17);
        io.reset();
        io.faults().write = Some(n);
        let err = m.put(&cache, &key).unwrap_err();
        assert!(is_eio(&err), "write {n}: {err}");
        assert_eq!(io.faults().failed, 1);
        assert!(
            cache.get(&key).unwrap().is_none(),
            "write {n}: a failed put is not visible"
        );
        check_all(&cache, &held);
        // Not poisoned: the next put works.
        io.reset();
        m.put(&cache, &key).unwrap();
        m.check(&cache, &key);
        held.push((key, m));
    }
    drop(cache);
    let cache = open(&path, &FaultIo::default());
    check_all(&cache, &held);
}

#[test]
fn eio_on_fsync_poisons_until_reopen() {
    for n in 1..=2u64 {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c");
        let io = FaultIo::default();
        let cache = open(&path, &io);
        let held: Vec<(String, Model)> = base().into_iter().map(|(k, m)| (k.to_string(), m)).collect();
        for (k, m) in &held {
            m.put(&cache, k).unwrap();
        }
        io.reset();
        io.faults().sync = Some(n);
        let m = Model::random(9, 20, 20);
        let err = m.put(&cache, "x").unwrap_err();
        assert!(is_eio(&err), "sync {n}: {err}");
        // Every later write is refused, reads go on.
        io.reset();
        for r in [
            m.put(&cache, "y").map(|_| ()),
            cache.remove("a").map(|_| ()),
            cache.maintain().map(|_| ()),
            cache.compact().map(|_| ()),
            cache.clear().map(|_| ()),
        ] {
            assert!(matches!(r, Err(Error::Poisoned { .. })), "sync {n}: {r:?}");
        }
        assert_eq!(io.faults().writes_seen, 0, "a poisoned handle writes nothing");
        for (k, m) in &held {
            m.check(&cache, k);
        }
        drop(cache);
        let cache = open(&path, &io);
        check_all(&cache, &held);
        // The put whose fsync failed is either absent or whole.
        if cache.get("x").unwrap().is_some() {
            m.check(&cache, "x");
        }
        m.put(&cache, "y").unwrap();
        m.check(&cache, "y");
        assert!(cache.remove("a").unwrap());
    }
}

/// Arms one fault.
type Arm = Box<dyn Fn(&FaultIo)>;

#[test]
fn compaction_failures_leave_every_scope_readable() {
    // Each way compaction can fail: the n-th write of the new file, its
    // fsync, the rename, the directory fsync.
    let mut cases: Vec<(String, Arm)> = Vec::new();
    for n in 1..=12u64 {
        cases.push((
            format!("write {n}"),
            Box::new(move |io: &FaultIo| io.faults().write = Some(n)),
        ));
    }
    cases.push((
        "new file fsync".into(),
        Box::new(|io: &FaultIo| io.faults().sync = Some(1)),
    ));
    cases.push((
        "retire fsync".into(),
        Box::new(|io: &FaultIo| io.faults().sync = Some(2)),
    ));
    cases.push((
        "rename".into(),
        Box::new(|io: &FaultIo| io.faults().rename = true),
    ));
    cases.push((
        "directory fsync".into(),
        Box::new(|io: &FaultIo| io.faults().sync_dir = true),
    ));
    let mut failed_compactions = 0;
    for (what, arm) in &cases {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c");
        let io = FaultIo::default();
        let cache = open(&path, &io);
        let mut held: Vec<(String, Model)> = base().into_iter().map(|(k, m)| (k.to_string(), m)).collect();
        for (k, m) in &held {
            m.put(&cache, k).unwrap();
        }
        Model::random(4, 50, 50).put(&cache, "gone").unwrap();
        cache.remove("gone").unwrap();
        io.reset();
        arm(&io);
        let r = cache.compact();
        if r.is_err() {
            failed_compactions += 1;
        }
        let poisoned = matches!(&r, Err(Error::Io { op: "fsync", .. }));
        io.reset();
        // Every scope is readable through the same handle.
        for (k, m) in &held {
            m.check(&cache, k);
        }
        let m = Model::random(5, 10, 10);
        match m.put(&cache, "after") {
            Ok(()) => {
                m.check(&cache, "after");
                held.push(("after".into(), m));
            }
            Err(Error::Poisoned { .. }) if poisoned => {}
            Err(e) => panic!("{what}: put after a failed compaction: {e}"),
        }
        drop(cache);
        let cache = open(&path, &io);
        check_all(&cache, &held);
        assert!(cache.get("gone").unwrap().is_none());
        let m = Model::random(6, 10, 10);
        m.put(&cache, "reopened").unwrap();
        m.check(&cache, "reopened");
        let left: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.ends_with(".tmp"))
            .collect();
        assert!(
            left.is_empty() || what == "rename",
            "{what}: temporary files left: {left:?}"
        );
    }
    assert!(
        failed_compactions >= cases.len() - 2,
        "the faults were reached: {failed_compactions}"
    );
}
