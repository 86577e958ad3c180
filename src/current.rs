//! Which snapshot a handle reads: the check made before every read (two
//! atomic loads), loading a newer generation, following the path to the
//! file a compaction put there, and the rule for replacing the current
//! snapshot, which never moves a handle back to an older state.

use crate::cache::ScopeCache;
use crate::commit::path_names;
use crate::error::Result;
use crate::open::open_handle;
use crate::snapshot::Snapshot;
use std::sync::atomic::Ordering;
use std::sync::{Arc, RwLock};

pub(crate) fn read_lock<T>(l: &RwLock<T>) -> std::sync::RwLockReadGuard<'_, T> {
    l.read().unwrap_or_else(|p| p.into_inner())
}

fn write_lock<T>(l: &RwLock<T>) -> std::sync::RwLockWriteGuard<'_, T> {
    l.write().unwrap_or_else(|p| p.into_inner())
}

/// How often, at most, a handle whose file was retired looks at the path
/// (a compaction that crashed before its rename leaves the path on the
/// retired file, and every read would otherwise stat it).
const FOLLOW_INTERVAL_NS: i64 = 1_000_000;

/// True when `new` may replace `cur` as a handle's current snapshot.
///
/// - Of one file, only a later generation replaces an earlier one.
/// - A snapshot of another file replaces the current one only when it is
///   not retired, and the current one is retired or older. Compaction gives
///   a new file a generation above its predecessor's, so a reader thread
///   that finishes loading the retired file after a writer thread moved the
///   handle on can never move it back.
/// - `locked`: the caller holds the exclusive lock on `new`'s file and has
///   checked that the path names it, so `new` is the newest state there is
///   (this is how a handle reaches a file created anew, with a low
///   generation, after its old file was moved aside).
pub(crate) fn supersedes(new: &Snapshot, cur: &Snapshot, locked: bool) -> bool {
    let same_file = new.file.dev == cur.file.dev && new.file.ino == cur.file.ino;
    if same_file {
        return new.generation() > cur.generation() || (locked && !Arc::ptr_eq(&new.file, &cur.file));
    }
    locked || (!new.sb.is_retired() && (cur.sb.is_retired() || new.generation() > cur.generation()))
}

impl ScopeCache {
    /// The newest committed snapshot, moving to a new file if compaction
    /// replaced ours. Fast path: two atomic loads.
    pub(crate) fn snapshot(&self) -> Result<Arc<Snapshot>> {
        let cur = Arc::clone(&read_lock(&self.current));
        let [g0, g1] = cur.map.slot_generations();
        if g0.max(g1) == cur.generation() && !cur.sb.is_retired() {
            return Ok(cur);
        }
        self.refresh(cur)
    }

    /// The current snapshot as it is, without looking for a newer one.
    pub(crate) fn current_snapshot(&self) -> Arc<Snapshot> {
        Arc::clone(&read_lock(&self.current))
    }

    fn refresh(&self, cur: Arc<Snapshot>) -> Result<Arc<Snapshot>> {
        let sb = cur.file.mapping().superblock()?;
        if sb.is_retired() || cur.sb.is_retired() {
            if let Some(moved) = self.follow_path(&cur)? {
                return Ok(moved);
            }
        }
        if sb.generation == cur.generation() {
            return Ok(cur);
        }
        let snap = Arc::new(Snapshot::load_after(Arc::clone(&cur.file), Some(&cur))?);
        Ok(self.install(snap))
    }

    /// After compaction retired our file: if the path names another file
    /// now, load it. Rate-limited by a monotonic clock (a wall clock stepped
    /// back would stop the handle from following).
    fn follow_path(&self, cur: &Arc<Snapshot>) -> Result<Option<Arc<Snapshot>>> {
        let now = i64::try_from(self.started.elapsed().as_nanos()).unwrap_or(i64::MAX);
        let last = self.last_move_check.load(Ordering::Relaxed);
        if now.saturating_sub(last) < FOLLOW_INTERVAL_NS {
            return Ok(None);
        }
        self.last_move_check.store(now, Ordering::Relaxed);
        if path_names(&self.path, &cur.file)? || !self.path.exists() {
            return Ok(None);
        }
        let (fh, _) = open_handle(&self.path, self.read_only, self.io.as_ref())?;
        let snap = Arc::new(Snapshot::load(Arc::new(fh))?);
        Ok(Some(self.install(snap)))
    }

    /// Makes `snap` current if it supersedes the current snapshot; returns
    /// the current snapshot after the decision.
    pub(crate) fn install(&self, snap: Arc<Snapshot>) -> Arc<Snapshot> {
        self.install_as(snap, false)
    }

    /// `install` for a snapshot of a file the caller holds locked and has
    /// checked the path names.
    pub(crate) fn install_locked(&self, snap: Arc<Snapshot>) -> Arc<Snapshot> {
        self.install_as(snap, true)
    }

    fn install_as(&self, snap: Arc<Snapshot>, locked: bool) -> Arc<Snapshot> {
        let mut cur = write_lock(&self.current);
        if supersedes(&snap, &cur, locked) {
            *cur = Arc::clone(&snap);
        }
        Arc::clone(&cur)
    }
}

#[cfg(test)]
mod tests {
    use crate::{CacheConfig, IdMap, ScopeCache, ScopeData};
    use bitvec::prelude::*;
    use std::sync::Arc;

    /// A reader thread that finishes loading the retired file after the
    /// handle moved to the compacted one must not move it back.
    #[test]
    fn a_retired_snapshot_never_replaces_the_newer_file() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = CacheConfig {
            fsync: false,
            ..CacheConfig::default()
        };
        let cache = ScopeCache::open(dir.path().join("c.cache"), cfg).unwrap();
        let ids = IdMap::from_ids(["a", "b"]).unwrap();
        let bits = bitvec![u64, Lsb0; 1, 0];
        let data = ScopeData {
            nodes: &bits,
            links: &bits,
            node_ids: &ids,
            link_ids: &ids,
            attributes: &serde_json::Map::new(),
        };
        cache.put("k", &data).unwrap();
        let old = cache.snapshot().unwrap();
        cache.compact().unwrap();
        cache.put("after", &data).unwrap();
        // The old file now holds a retired superblock: load it as a slow
        // reader would, and offer it.
        let stale = Arc::new(crate::snapshot::Snapshot::load(Arc::clone(&old.file)).unwrap());
        assert!(stale.sb.is_retired());
        cache.install(stale);
        assert!(
            cache.get("after").unwrap().is_some(),
            "the handle moved back to the retired file"
        );
        // An older snapshot of the old file, not yet retired, neither.
        cache.install(old);
        assert!(
            cache.get("after").unwrap().is_some(),
            "the handle moved back to an older file"
        );
    }
}
