//! The commit protocol, all of it: how a writer takes the file, appends
//! regions, publishes a generation, and replaces the file after compaction.
//!
//! 1. Lock: take the exclusive `flock` on the file the handle reads, then
//!    check that the path still names that inode (compaction renames a new
//!    file over the path; a lock on the old one guards nothing). On a
//!    mismatch, move to the file at the path and try again.
//! 2. Begin: load the newest snapshot and copy its index into memory.
//! 3. Append every new region past the committed length, each at a 64-aligned
//!    offset ([`Appender`]); nothing below the committed length is written.
//! 4. Commit: append a delta of the index (what changed since the last
//!    generation), or now and then a new base index of the whole state,
//!    `fdatasync`, write the superblock of the next generation into the
//!    other slot, `fdatasync`. A crash before the second sync returns
//!    leaves the previous generation in force. The handle keeps its model
//!    of the state (`model.rs`) for its next commit, so a commit costs what
//!    it changes.
//! 5. Replace (compaction only): publish a `RETIRED` superblock in the old
//!    file, rename the new, already locked and synced file over the path,
//!    sync the directory.
//!
//! [`ScopeCache::write`] drives the steps for every public write, under a
//! per-handle mutex that also remembers a failed fsync.

use crate::cache::ScopeCache;
use crate::config::CacheConfig;
use crate::error::{Error, Result};
use crate::failpoint;
use crate::format::{align_up, Counter, Superblock, COUNTERS_OFFSET, COUNTER_COUNT, FLAG_RETIRED};
use crate::index::{DeltaData, EntryRecord, MapRecord, MAX_CHAIN_DEPTH};
use crate::io::{FileIo, IoFactory};
use crate::model::{Identity, Model};
use crate::open::open_handle;
use crate::snapshot::{FileHandle, Snapshot};
use crate::stats::CompactReport;
use std::collections::BTreeSet;
use std::fs::TryLockError;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::sync::Arc;

/// Holds the exclusive lock on one file; releases it when dropped.
pub(crate) struct LockGuard(pub Arc<FileHandle>);

impl Drop for LockGuard {
    fn drop(&mut self) {
        if let Err(e) = self.0.file.unlock() {
            log::warn!("{}: unlock failed: {e}", self.0.path.display());
        }
    }
}

/// True when `path` names the inode of `fh`.
pub(crate) fn path_names(path: &Path, fh: &FileHandle) -> Result<bool> {
    match std::fs::metadata(path) {
        Ok(m) => Ok(m.ino() == fh.ino && m.dev() == fh.dev),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(Error::io(path, "stat", e)),
    }
}

/// Appends regions to a file: each at the next 64-aligned offset past the
/// previous one. The one place where region offsets are given out.
///
/// A region of zero bytes occupies nothing: it is given the current aligned
/// end, which the next region then also starts at. Readers never key
/// anything by offset alone for that reason (see FORMAT.md §2).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Appender {
    end: u64,
}

impl Appender {
    pub(crate) fn at(offset: u64) -> Appender {
        Appender {
            end: align_up(offset).unwrap_or(u64::MAX),
        }
    }

    /// Where the next region goes.
    pub(crate) fn end(&self) -> u64 {
        self.end
    }

    /// Writes `parts` one after another as one region; returns its offset.
    pub(crate) fn append(&mut self, io: &dyn FileIo, path: &Path, parts: &[&[u8]]) -> Result<u64> {
        let offset = self.end;
        let mut at = offset;
        for p in parts.iter().filter(|p| !p.is_empty()) {
            io.write_at(p, at).map_err(|e| Error::io(path, "write", e))?;
            at += p.len() as u64;
        }
        self.end = align_up(at).ok_or_else(|| Error::corrupt(path, "the file cannot grow further"))?;
        Ok(offset)
    }
}

/// A write transaction on the newest generation of a locked file.
pub(crate) struct Txn<'c> {
    pub guard: LockGuard,
    /// The committed generation the transaction builds on.
    pub snap: Arc<Snapshot>,
    /// The state being built; starts as the committed one.
    pub model: Model,
    /// Keys put or removed since the last commit: what the next delta holds.
    changed: BTreeSet<String>,
    /// Records in the mapping table at the last commit; those past it are
    /// the next delta's.
    maps_before: usize,
    /// Stamp slots of entries removed since the last commit: free once the
    /// commit no longer needs them.
    freed: Vec<u32>,
    appender: Appender,
    pub cfg: &'c CacheConfig,
    pub now_us: i64,
    /// Set once anything was changed that needs a commit.
    pub dirty: bool,
    /// Set when the next commit must write a base index rather than a
    /// delta (after a `clear`, a delta would only list what is gone).
    pub write_base: bool,
    /// Set when an fsync failed: the caller must refuse further writes.
    pub poisoned: bool,
    /// Counter increments to apply once committed.
    pub counts: Vec<(Counter, u64)>,
}

impl<'c> Txn<'c> {
    /// Begins on `snap`, the newest generation of the locked file, with
    /// `model` when it describes that generation (the model a handle kept
    /// from its own last commit), or one built from the snapshot.
    pub(crate) fn begin(
        guard: LockGuard,
        snap: Arc<Snapshot>,
        cfg: &'c CacheConfig,
        model: Option<Model>,
    ) -> Txn<'c> {
        let model = match model.filter(|m| m.describes(&snap)) {
            Some(m) => m,
            None => Model::of(&snap),
        };
        Txn {
            maps_before: model.maps().len(),
            model,
            changed: BTreeSet::new(),
            freed: Vec::new(),
            dirty: snap.sb.is_retired(),
            write_base: false,
            appender: Appender::at(snap.sb.committed_len),
            now_us: cfg.clock.now().timestamp_micros(),
            guard,
            snap,
            cfg,
            poisoned: false,
            counts: Vec::new(),
        }
    }

    /// The model, for the next transaction of this handle, when everything
    /// it holds is committed.
    pub(crate) fn into_model(self) -> Option<Model> {
        (!self.dirty && !self.poisoned).then_some(self.model)
    }

    pub(crate) fn fh(&self) -> &Arc<FileHandle> {
        &self.guard.0
    }

    fn io(&self) -> Result<&dyn FileIo> {
        self.fh().io.as_deref().ok_or_else(|| Error::ReadOnly {
            path: self.fh().path.clone(),
        })
    }

    /// Appends one region made of `parts`, past the committed data.
    pub(crate) fn append(&mut self, parts: &[&[u8]]) -> Result<u64> {
        let fh = Arc::clone(self.fh());
        let io = fh.io.as_deref().ok_or_else(|| Error::ReadOnly {
            path: fh.path.clone(),
        })?;
        let offset = self.appender.append(io, &fh.path, parts)?;
        self.dirty = true;
        Ok(offset)
    }

    /// Bytes the file will hold if committed now.
    pub(crate) fn end(&self) -> u64 {
        self.appender.end()
    }

    /// The position of a mapping identical to `map` in the chain's table,
    /// intact, whether or not a live entry still names it: a region once
    /// committed is never overwritten, so it can be linked again instead of
    /// written anew (replacing the last scope that used a mapping must not
    /// rewrite it).
    pub(crate) fn committed_map(&self, map: &crate::IdMap) -> Option<u32> {
        let fh = self.fh();
        self.model.find_map(map, |m| !fh.is_bad_map(m))
    }

    /// Stores `map` unless an identical mapping is stored; returns its
    /// position in the mapping table.
    pub(crate) fn store_map(&mut self, map: &crate::IdMap) -> Result<u32> {
        if let Some(i) = self.committed_map(map) {
            return Ok(i);
        }
        let rec = MapRecord::of(map, self.append(&[map.region_bytes()])?);
        Ok(self.model.push_map(rec))
    }

    pub(crate) fn remove(&mut self, key: &str) -> bool {
        let Some(old) = self.model.remove(key) else {
            return false;
        };
        self.release(&old);
        self.changed.insert(old.key);
        self.dirty = true;
        true
    }

    pub(crate) fn insert(&mut self, e: EntryRecord) {
        self.changed.insert(e.key.clone());
        if let Some(old) = self.model.insert(e) {
            self.release(&old);
        }
        self.dirty = true;
    }

    /// Keys put or removed since the last commit, in key order.
    pub(crate) fn changed_keys(&self) -> Vec<String> {
        self.changed.iter().cloned().collect()
    }

    /// Frees the stamp slot of an entry that is gone, once committed.
    fn release(&mut self, old: &EntryRecord) {
        if old.slot != u32::MAX {
            self.freed.push(old.slot);
        }
    }

    /// The last access of a live entry: the later of the model's time and
    /// the shared stamp that readers raise without the write lock.
    pub(crate) fn last_access(snap: &Snapshot, e: &EntryRecord) -> i64 {
        if e.slot >= snap.sb.stamps_capacity {
            return e.accessed_us;
        }
        let stamp = snap.map.load(snap.stamp_offset(e.slot));
        e.accessed_us.max(i64::try_from(stamp).unwrap_or(i64::MAX))
    }

    /// Raises every entry's last access to its shared stamp and resets the
    /// access floor: before a decision that depends on recency.
    pub(crate) fn refresh_access(&mut self) {
        let snap = Arc::clone(&self.snap);
        for e in self.model.iter_mut() {
            e.accessed_us = Txn::last_access(&snap, e);
        }
        self.model.reset_floor();
    }

    /// The delta of this transaction over the committed chain, encoded; or
    /// None when a new base index should be written instead: the chain is
    /// at its depth limit, or its deltas would outgrow the base.
    fn encode_delta(&self) -> Result<Option<rkyv::util::AlignedVec>> {
        let chain = self.snap.chain();
        if self.write_base || chain.depth() >= MAX_CHAIN_DEPTH {
            return Ok(None);
        }
        let Ok(maps_before) = u32::try_from(self.maps_before) else {
            return Ok(None);
        };
        let depth = chain.depth() + 1;
        let mut delta = DeltaData {
            maps: self.model.maps()[self.maps_before..].to_vec(),
            since: self.snap.sb.committed_len,
            maps_before,
            depth,
            ..DeltaData::default()
        };
        if let Some(prev) = chain.newest() {
            (delta.prev_offset, delta.prev_len, delta.prev_crc) = (prev.offset, prev.len, prev.crc);
        }
        for k in &self.changed {
            match self.model.get(k) {
                Some(e) => delta.upserts.push(e.clone()),
                None if self.snap.find(k).is_some() => delta.removed.push(k.clone()),
                None => {}
            }
        }
        let bytes = delta.to_bytes()?;
        let chain_len = chain.deltas_len() + bytes.len() as u64;
        Ok((chain_len <= chain.base_len() + MIN_CHAIN_BYTES).then_some(bytes))
    }

    /// Publishes the transaction as the next generation: appends a delta of
    /// what changed (or, now and then, a new base index of the whole
    /// state), syncs, writes the superblock, syncs. Returns the new
    /// snapshot (or the old one if nothing changed).
    pub(crate) fn commit(&mut self) -> Result<Arc<Snapshot>> {
        if !self.dirty {
            return Ok(Arc::clone(&self.snap));
        }
        let generation = self.snap.sb.generation_after(1, &self.fh().path)?;
        let stamps = self.assign_slots()?;
        let sb = match self.encode_delta()? {
            Some(bytes) => {
                let offset = self.append(&[&bytes])?;
                self.snap.sb.with_delta(generation, offset, &bytes, stamps)
            }
            None => {
                let bytes = self.model.rebase().to_bytes()?;
                let offset = self.append(&[&bytes])?;
                Superblock::naming(generation, offset, &bytes, stamps, self.snap.sb.file_id)
            }
        };
        failpoint::hit("commit-before-data-sync");
        self.sync()?;
        failpoint::hit("commit-before-superblock");
        self.publish(&sb)?;
        failpoint::hit("commit-after-superblock");
        let snap = Arc::new(Snapshot::load_after(Arc::clone(self.fh()), Some(&self.snap))?);
        for (c, n) in self.counts.drain(..) {
            snap.count(c, n);
        }
        self.model.free_slots(self.freed.drain(..));
        self.model.identity = Some(Identity::of(&snap));
        self.changed.clear();
        self.maps_before = self.model.maps().len();
        self.write_base = false;
        self.snap = Arc::clone(&snap);
        self.appender = Appender::at(sb.committed_len);
        self.dirty = false;
        Ok(snap)
    }

    /// Writes `sb` into its slot and makes it durable.
    fn publish(&mut self, sb: &Superblock) -> Result<()> {
        self.io()?
            .write_at(&sb.encode(), Superblock::slot_offset(sb.generation))
            .map_err(|e| Error::io(&self.fh().path, "write superblock", e))?;
        self.sync()
    }

    fn sync(&mut self) -> Result<()> {
        if !self.cfg.fsync {
            return Ok(());
        }
        if let Err(e) = self.io()?.sync() {
            // After a failed fsync the kernel may have dropped the dirty
            // pages and marked them clean: retrying would "succeed" over lost
            // data. The handle stops writing until the cache is reopened.
            self.poisoned = true;
            return Err(Error::io(&self.fh().path, "fsync", e));
        }
        Ok(())
    }

    /// Step 5: retires this transaction's file and renames `new` (written
    /// whole at `tmp`, synced, and locked by `new`) over the path; then moves
    /// the transaction, and its lock, to the new file.
    pub(crate) fn replace_file(&mut self, new: LockGuard, tmp: &Path, io: &dyn IoFactory) -> Result<()> {
        let path = self.fh().path.clone();
        let renamed = (|| -> Result<()> {
            failpoint::hit("compact-before-retire");
            let mut retired = self.snap.sb;
            retired.generation = self.snap.sb.generation_after(1, &path)?;
            retired.flags |= FLAG_RETIRED;
            self.publish(&retired)?;
            failpoint::hit("compact-before-rename");
            io.rename(tmp, &path).map_err(|e| Error::io(&path, "rename", e))
        })();
        // Until the rename the new file is ours alone: if anything failed
        // before it, the new file is removed rather than left beside the cache.
        renamed.inspect_err(|_| {
            let _ = std::fs::remove_file(tmp);
        })?;
        failpoint::hit("compact-after-rename");
        if self.cfg.fsync {
            if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                io.sync_dir(dir)
                    .map_err(|e| Error::io(dir, "fsync directory", e))?;
            }
        }
        let snap = Arc::new(Snapshot::load(Arc::clone(&new.0))?);
        // Replacing the guard unlocks the old inode.
        let cfg = self.cfg;
        *self = Txn::begin(new, snap, cfg, None);
        Ok(())
    }

    /// Dead bytes: what compaction would reclaim.
    pub(crate) fn dead_bytes(&self) -> u64 {
        self.end().saturating_sub(self.model.footprint())
    }

    /// Reads the shared counters page of the locked file.
    pub(crate) fn counters(&self) -> [u64; COUNTER_COUNT] {
        let map = self.snap.map.as_ref();
        std::array::from_fn(|i| map.load(COUNTERS_OFFSET + 8 * i as u64))
    }

    /// Drops entries whose regions this process found corrupt.
    pub(crate) fn drop_known_bad(&mut self) {
        let fh = Arc::clone(self.fh());
        if !fh.any_bad() {
            return;
        }
        let maps = self.model.maps();
        let bad: Vec<String> = self
            .model
            .iter()
            .filter(|e| {
                fh.is_bad_bits(&e.nodes)
                    || fh.is_bad_bits(&e.links)
                    || [e.node_map, e.link_map]
                        .iter()
                        .any(|&m| maps.get(m as usize).is_some_and(|r| fh.is_bad_map(r)))
            })
            .map(|e| e.key.clone())
            .collect();
        for key in bad {
            log::warn!("{}: dropping corrupt entry {key:?}", fh.path.display());
            self.remove(&key);
            self.counts.push((Counter::CorruptDropped, 1));
        }
    }
}

/// Bytes the deltas of a chain may take beyond its base's length before a
/// commit writes a new base: small files rewrite their little base rarely.
const MIN_CHAIN_BYTES: u64 = 4096;

/// How a write transaction is run.
#[derive(Clone, Copy, Debug)]
pub(crate) struct WriteMode {
    /// Wait for the locks; otherwise give up at once if either is held.
    pub blocking: bool,
    /// Compact after the commit if the policy says it is worth it.
    pub compact_after: bool,
}

impl WriteMode {
    /// A caller's write: waits for the lock, compacts when worth it.
    pub(crate) const WRITE: WriteMode = WriteMode {
        blocking: true,
        compact_after: true,
    };
}

impl ScopeCache {
    /// Runs `f` in a write transaction on the newest generation, under the
    /// file's exclusive lock, then commits, then compacts if `mode` allows
    /// and it is worth it. Returns Ok(None) when `mode` does not block and a
    /// lock is held. The second value says whether a compaction ran.
    pub(crate) fn write<T>(
        &self,
        mode: WriteMode,
        f: impl FnOnce(&mut Txn<'_>) -> Result<T>,
    ) -> Result<Option<(T, Option<CompactReport>)>> {
        if self.read_only {
            return Err(Error::ReadOnly {
                path: self.path.clone(),
            });
        }
        let mut state = if mode.blocking {
            self.writer.lock().unwrap_or_else(|p| p.into_inner())
        } else {
            match self.writer.try_lock() {
                Ok(s) => s,
                Err(std::sync::TryLockError::WouldBlock) => return Ok(None),
                Err(std::sync::TryLockError::Poisoned(p)) => p.into_inner(),
            }
        };
        if state.poisoned {
            return Err(Error::Poisoned {
                path: self.path.clone(),
            });
        }
        let Some(guard) = self.lock_current(mode.blocking)? else {
            return Ok(None);
        };
        // The locked file is the one the path names: whatever it holds is
        // the newest state, so it becomes current without question.
        let cur = self.current_snapshot();
        let snap = self.install_locked(Arc::new(Snapshot::load_after(Arc::clone(&guard.0), Some(&cur))?));
        if snap.sb.is_retired() {
            // A compaction died between retiring this file and renaming its
            // successor over it: this commit clears the flag (Txn::begin
            // marks the transaction dirty), and its leftovers go.
            crate::open::remove_stale_temps(&self.path);
        }
        let mut txn = Txn::begin(guard, snap, &self.config, state.model.take());
        let out = f(&mut txn).and_then(|v| {
            txn.commit()?;
            // The operation is durable now: a failure of the compaction that
            // follows (a full disk, say) must not make the caller believe it
            // failed. The file is left as committed; a later write retries.
            let mut compacted = None;
            if mode.compact_after && crate::compact::worth_it(&txn) {
                match crate::compact::compact(&mut txn, self.io.as_ref()) {
                    Ok(c) => compacted = Some(c),
                    Err(e) => log::warn!(
                        "{}: automatic compaction failed, the commit stands: {e}",
                        self.path.display()
                    ),
                }
            }
            Ok((v, compacted))
        });
        state.poisoned |= txn.poisoned;
        self.install_locked(Arc::clone(&txn.snap));
        if out.is_ok() {
            state.model = txn.into_model();
        }
        out.map(Some)
    }

    /// Step 1: takes the exclusive lock on the file now at the path.
    fn lock_current(&self, blocking: bool) -> Result<Option<LockGuard>> {
        let mut fh = Arc::clone(&self.snapshot()?.file);
        for _ in 0..1000 {
            if blocking {
                fh.file.lock().map_err(|e| Error::io(&self.path, "lock", e))?;
            } else {
                match fh.file.try_lock() {
                    Ok(()) => {}
                    Err(TryLockError::WouldBlock) => return Ok(None),
                    Err(TryLockError::Error(e)) => return Err(Error::io(&self.path, "lock", e)),
                }
            }
            let guard = LockGuard(fh);
            if path_names(&self.path, &guard.0)? {
                return Ok(Some(guard));
            }
            drop(guard);
            fh = Arc::new(open_handle(&self.path, false, self.io.as_ref())?.0);
        }
        Err(Error::io(
            &self.path,
            "lock",
            std::io::Error::other("the file kept being replaced while taking its lock"),
        ))
    }
}
