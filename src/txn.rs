//! The writer's side: one write transaction at a time per file, under an
//! exclusive lock on the file, and the commit protocol that publishes it.
//!
//! Commit: append every new region past the committed length, fsync, write
//! the superblock of the next generation into the other slot, fsync. A crash
//! before the second fsync leaves the previous generation in force; regions
//! a published index points to are never written again.

use crate::config::CacheConfig;
use crate::error::{Error, Result};
use crate::failpoint;
use crate::format::{align_up, Counter, Superblock, COUNTERS_OFFSET};
use crate::index::{EntryRecord, IndexData, MapRecord};
use crate::snapshot::{FileHandle, Snapshot};
use std::collections::HashSet;
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

/// A write transaction on the newest generation of a locked file.
pub(crate) struct Txn<'c> {
    pub guard: LockGuard,
    pub snap: Arc<Snapshot>,
    /// The index being built; starts as the committed one, with every
    /// entry's `accessed_us` raised to its shared stamp.
    pub index: IndexData,
    /// The mappings of the committed generation this transaction started
    /// from (or of the file a compaction in it wrote).
    committed_maps: Vec<MapRecord>,
    /// Where the next region goes.
    end: u64,
    /// The unaligned end of the last append.
    tail: u64,
    pub cfg: &'c CacheConfig,
    pub now_us: i64,
    /// Set once anything was changed that needs a commit.
    pub dirty: bool,
    /// Set when an fsync failed: the caller must refuse further writes.
    pub poisoned: bool,
    /// Counter increments to apply once committed.
    pub counts: Vec<(Counter, u64)>,
}

impl<'c> Txn<'c> {
    pub(crate) fn begin(guard: LockGuard, snap: Arc<Snapshot>, cfg: &'c CacheConfig) -> Result<Txn<'c>> {
        let mut index: IndexData = rkyv::deserialize::<IndexData, rkyv::rancor::Error>(snap.index())
            .map_err(|e| Error::corrupt(&snap.file.path, format!("index: {e}")))?;
        for (e, a) in index.entries.iter_mut().zip(snap.index().entries.iter()) {
            e.accessed_us = snap.last_access_us(a);
        }
        let end = align_up(snap.sb.committed_len).unwrap_or(u64::MAX);
        let now_us = cfg.clock.now().timestamp_micros();
        Ok(Txn {
            committed_maps: index.maps.clone(),
            dirty: snap.sb.is_retired(),
            guard,
            snap,
            index,
            end,
            tail: end,
            cfg,
            now_us,
            poisoned: false,
            counts: Vec::new(),
        })
    }

    pub(crate) fn fh(&self) -> &Arc<FileHandle> {
        &self.guard.0
    }

    fn io_err(&self, op: &'static str, e: std::io::Error) -> Error {
        Error::io(&self.fh().path, op, e)
    }

    /// Appends `bytes` at the next aligned offset past the committed data.
    pub(crate) fn append(&mut self, bytes: &[u8]) -> Result<u64> {
        let io = self.fh().io.as_ref().ok_or_else(|| Error::ReadOnly {
            path: self.fh().path.clone(),
        })?;
        let offset = self.end;
        io.write_at(bytes, offset).map_err(|e| self.io_err("write", e))?;
        self.end = align_up(offset + bytes.len() as u64).unwrap_or(u64::MAX);
        self.dirty = true;
        Ok(offset)
    }

    /// Appends `bytes` at the next aligned offset when `start` is true, or
    /// right after the previous append otherwise: one region written in
    /// several parts, so that a caller's buffer need not be copied to be
    /// joined with a last masked word.
    pub(crate) fn append_contiguous(&mut self, bytes: &[u8], start: bool) -> Result<u64> {
        if start {
            let at = self.append(bytes)?;
            self.tail = at + bytes.len() as u64;
            return Ok(at);
        }
        let io = self.fh().io.as_ref().ok_or_else(|| Error::ReadOnly {
            path: self.fh().path.clone(),
        })?;
        let offset = self.tail;
        io.write_at(bytes, offset).map_err(|e| self.io_err("write", e))?;
        self.tail = offset + bytes.len() as u64;
        self.end = align_up(self.tail).unwrap_or(u64::MAX);
        Ok(offset)
    }

    /// Bytes the file will hold if committed now.
    pub(crate) fn end(&self) -> u64 {
        self.end
    }

    /// A mapping identical to `map` that the committed file holds, intact,
    /// whether or not the new index still names it: a region once committed
    /// is never overwritten, so it can be linked again instead of written
    /// anew (replacing the last scope that used a mapping must not rewrite it).
    pub(crate) fn committed_map(&self, map: &crate::IdMap) -> Option<MapRecord> {
        self.committed_maps
            .iter()
            .find(|m| m.holds(map) && !self.fh().is_bad(m.offset))
            .copied()
    }

    /// Stores `map` unless an identical mapping is stored; returns its index.
    pub(crate) fn store_map(&mut self, map: &crate::IdMap) -> Result<u32> {
        if let Some(i) = self.index.maps.iter().position(|m| m.holds(map)) {
            return Ok(i as u32);
        }
        let rec = match self.committed_map(map) {
            Some(rec) => rec,
            None => MapRecord::of(map, self.append(map.region_bytes())?),
        };
        self.index.maps.push(rec);
        Ok((self.index.maps.len() - 1) as u32)
    }

    pub(crate) fn remove(&mut self, key: &str) -> bool {
        let removed = self.index.remove(key);
        self.dirty |= removed;
        removed
    }

    pub(crate) fn insert(&mut self, e: EntryRecord) {
        self.index.insert(e);
        self.dirty = true;
    }

    /// Gives every entry with `slot == u32::MAX` a stamp slot that neither the
    /// committed nor the new index uses, so a failed commit disturbs no stamp.
    /// Returns the table (offset, capacity) the new generation uses.
    fn assign_slots(&mut self) -> Result<(u64, u32)> {
        let sb = self.snap.sb;
        let mut used: HashSet<u32> = self
            .snap
            .index()
            .entries
            .iter()
            .map(|e| e.slot.to_native())
            .collect();
        used.extend(
            self.index
                .entries
                .iter()
                .map(|e| e.slot)
                .filter(|&s| s != u32::MAX),
        );
        let mut next = 0u32;
        let mut fresh = Vec::new();
        for e in self.index.entries.iter_mut().filter(|e| e.slot == u32::MAX) {
            while used.contains(&next) {
                next += 1;
            }
            e.slot = next;
            used.insert(next);
            fresh.push(next);
        }
        let need = used.iter().max().map_or(0, |&m| m + 1);
        if need <= sb.stamps_capacity {
            for s in fresh {
                self.snap.map.store(self.snap.stamp_offset(s), 0);
            }
            return Ok((sb.stamps_offset, sb.stamps_capacity));
        }
        // Grow the table: a new one, with the current stamps copied over.
        let capacity = need.next_power_of_two().max(64);
        let mut table = vec![0u8; 8 * capacity as usize];
        for s in 0..sb.stamps_capacity.min(capacity) {
            if fresh.contains(&s) {
                continue;
            }
            let v = self.snap.map.load(self.snap.stamp_offset(s));
            table[8 * s as usize..8 * s as usize + 8].copy_from_slice(&v.to_le_bytes());
        }
        let offset = self.append(&table)?;
        Ok((offset, capacity))
    }

    /// Publishes the transaction as the next generation; returns the new
    /// snapshot (or the old one if nothing changed).
    pub(crate) fn commit(&mut self) -> Result<Arc<Snapshot>> {
        if !self.dirty {
            return Ok(Arc::clone(&self.snap));
        }
        let (stamps_offset, stamps_capacity) = self.assign_slots()?;
        let bytes = self.index.to_bytes()?;
        let index_offset = self.append(&bytes)?;
        let index_len = bytes.len() as u64;
        failpoint::hit("commit-before-data-sync");
        self.sync()?;
        failpoint::hit("commit-before-superblock");
        let sb = Superblock {
            generation: self.snap.sb.generation + 1,
            flags: 0,
            committed_len: index_offset + index_len,
            index_offset,
            index_len,
            index_crc: crc32fast::hash(&bytes),
            stamps_offset,
            stamps_capacity,
            file_id: self.snap.sb.file_id,
        };
        self.publish(&sb)?;
        failpoint::hit("commit-after-superblock");
        let snap = Arc::new(Snapshot::load(Arc::clone(self.fh()))?);
        for (c, n) in self.counts.drain(..) {
            snap.count(c, n);
        }
        self.snap = Arc::clone(&snap);
        self.end = align_up(sb.committed_len).unwrap_or(u64::MAX);
        self.dirty = false;
        Ok(snap)
    }

    /// Writes `sb` into its slot and makes it durable.
    pub(crate) fn publish(&mut self, sb: &Superblock) -> Result<()> {
        let io = self.fh().io.as_ref().ok_or_else(|| Error::ReadOnly {
            path: self.fh().path.clone(),
        })?;
        io.write_at(&sb.encode(), Superblock::slot_offset(sb.generation))
            .map_err(|e| self.io_err("write superblock", e))?;
        self.sync()
    }

    fn sync(&mut self) -> Result<()> {
        if !self.cfg.fsync {
            return Ok(());
        }
        let io = self.fh().io.as_ref().ok_or_else(|| Error::ReadOnly {
            path: self.fh().path.clone(),
        })?;
        if let Err(e) = io.sync() {
            // After a failed fsync the kernel may have dropped the dirty
            // pages and marked them clean: retrying would "succeed" over lost
            // data. The handle stops writing until the cache is reopened.
            self.poisoned = true;
            return Err(self.io_err("fsync", e));
        }
        Ok(())
    }

    /// Dead bytes: what compaction would reclaim.
    pub(crate) fn dead_bytes(&self) -> u64 {
        self.end.saturating_sub(crate::eviction::footprint(&self.index))
    }

    /// Reads the shared counters page of the locked file.
    pub(crate) fn counters(&self) -> [u64; crate::format::COUNTER_COUNT] {
        let map = self.snap.map.as_ref();
        std::array::from_fn(|i| map.load(COUNTERS_OFFSET + 8 * i as u64))
    }

    /// Drops entries whose regions this process found corrupt.
    pub(crate) fn drop_known_bad(&mut self) {
        let fh = Arc::clone(self.fh());
        let maps = self.index.maps.clone();
        let bad: Vec<String> = self
            .index
            .entries
            .iter()
            .filter(|e| {
                fh.is_bad(e.nodes.offset)
                    || fh.is_bad(e.links.offset)
                    || [e.node_map, e.link_map]
                        .iter()
                        .any(|&m| maps.get(m as usize).is_some_and(|r| fh.is_bad(r.offset)))
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
