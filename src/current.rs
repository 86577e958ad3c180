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
/// Invariant: generations grow along the line of files that compaction
/// puts at a path. A compaction of generation *g* retires the old file at
/// *g* + 1 and gives the new one *g* + 2, and nothing commits to a file
/// once the path names its successor. So, between files of one line, the
/// higher generation is the newer state, whether or not its file is
/// retired.
///
/// - Of one file, only a later generation replaces an earlier one.
/// - A snapshot of another file with a later generation replaces the
///   current one, even when that file is retired too: a compaction of the
///   successor may have died (or be still running) between retiring it and
///   renaming its own successor over it, and then the retired successor is
///   the newest state at the path, which the handle must not skip. A
///   reader thread that finishes loading an older file after another
///   thread moved the handle on has a lower generation and can never move
///   it back.
/// - A snapshot of another file that is not retired also replaces a
///   retired current one whatever its generation: the path names a file of
///   another line (created anew after the old one was moved aside).
/// - `locked`: the caller holds the exclusive lock on `new`'s file and has
///   checked that the path names it, so `new` is the newest state there is
///   (this is how a handle reaches a file created anew, with a low
///   generation, after its old file was moved aside).
pub(crate) fn supersedes(new: &Snapshot, cur: &Snapshot, locked: bool) -> bool {
    let same_file = new.file.dev == cur.file.dev && new.file.ino == cur.file.ino;
    if same_file {
        return new.generation() > cur.generation() || (locked && !Arc::ptr_eq(&new.file, &cur.file));
    }
    locked || new.generation() > cur.generation() || (!new.sb.is_retired() && cur.sb.is_retired())
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
    use crate::io::{FileIo, IoFactory, RealIo};
    use crate::{CacheConfig, IdMap, ScopeCache, ScopeData};
    use bitvec::prelude::*;
    use std::fs::File;
    use std::path::Path;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;

    /// The real file system, with a rename that fails on demand: a
    /// compaction then stops after retiring the old file, as one whose
    /// process died before its rename does.
    #[derive(Debug, Default)]
    struct FailingRename(AtomicBool);

    impl IoFactory for FailingRename {
        fn wrap(&self, file: File, path: &Path) -> Box<dyn FileIo> {
            RealIo.wrap(file, path)
        }
        fn rename(&self, from: &Path, to: &Path) -> std::io::Result<()> {
            if self.0.load(Ordering::Relaxed) {
                return Err(std::io::Error::other("rename refused"));
            }
            std::fs::rename(from, to)
        }
    }

    /// A handle two files behind must reach the file at the path when that
    /// file is retired too: its own compaction stopped between retiring it
    /// and renaming its successor over it, so the path still names it and
    /// it holds the newest state.
    #[test]
    fn a_handle_follows_the_path_to_a_retired_successor() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.cache");
        let io = Arc::new(FailingRename::default());
        let cfg = CacheConfig {
            fsync: false,
            ..CacheConfig::default()
        };
        let writer = ScopeCache::open(
            &path,
            CacheConfig {
                io: Some(Arc::clone(&io) as Arc<dyn IoFactory>),
                ..cfg.clone()
            },
        )
        .unwrap();
        let reader = ScopeCache::open(&path, cfg.clone()).unwrap();
        let ids = IdMap::from_ids(["a", "b"]).unwrap();
        let bits = bitvec![u64, Lsb0; 1, 0];
        let data = ScopeData {
            nodes: &bits,
            links: &bits,
            node_ids: &ids,
            link_ids: &ids,
            attributes: &serde_json::Map::new(),
        };
        writer.put("first", &data).unwrap();
        assert!(reader.get("first").unwrap().is_some());
        // The reader's file is retired and replaced; the writer commits to
        // the successor, whose compaction then stops before its rename.
        writer.compact().unwrap();
        writer.put("second", &data).unwrap();
        io.0.store(true, Ordering::Relaxed);
        assert!(writer.compact().is_err());
        let at_path = ScopeCache::open(&path, cfg).unwrap();
        assert!(at_path.current_snapshot().sb.is_retired());
        assert!(at_path.get("second").unwrap().is_some());
        assert!(
            reader.get("second").unwrap().is_some(),
            "the reader stayed on the file retired first"
        );
        assert_eq!(reader.generation().unwrap(), at_path.generation().unwrap());
    }

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
