//! Writing whole files: a new empty cache, and compaction, which copies
//! every live region into a new file and renames it over the old one.
//!
//! Compaction never touches bytes a reader may hold: readers of the old file
//! keep their mapping of the old inode, which lives until they let go. The
//! old file is marked retired (a flag in a new superblock) before the rename,
//! so readers learn on their next `get` that they should move.

use crate::config::CacheConfig;
use crate::error::{Error, Result};
use crate::failpoint;
use crate::format::{
    align_up, Counter, Superblock, COUNTERS_OFFSET, COUNTER_COUNT, DATA_START, FLAG_RETIRED,
};
use crate::index::{BitsRecord, IndexData, MapRecord};
use crate::io::{FileIo, IoFactory};
use crate::snapshot::{FileHandle, Snapshot};
use crate::stats::CompactReport;
use crate::txn::{LockGuard, Txn};
use std::fs::{File, OpenOptions};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Appends regions to a file that nobody else can see yet.
struct FileBuilder {
    io: Box<dyn FileIo>,
    path: PathBuf,
    end: u64,
}

impl FileBuilder {
    fn append(&mut self, bytes: &[u8]) -> Result<u64> {
        let offset = self.end;
        self.io
            .write_at(bytes, offset)
            .map_err(|e| Error::io(&self.path, "write", e))?;
        self.end = align_up(offset + bytes.len() as u64).unwrap_or(u64::MAX);
        Ok(offset)
    }

    /// Writes the stamp table, the index, the counters and both superblocks
    /// (generations `generation - 1` and `generation`), then fsyncs.
    fn finish(
        mut self,
        index: &IndexData,
        stamps: &[u64],
        counters: &[u64; COUNTER_COUNT],
        generation: u64,
        fsync: bool,
    ) -> Result<()> {
        let capacity = stamps.len() as u32;
        let table: Vec<u8> = stamps.iter().flat_map(|v| v.to_le_bytes()).collect();
        let stamps_offset = self.append(&table)?;
        let bytes = index.to_bytes()?;
        let index_offset = self.append(&bytes)?;
        let page: Vec<u8> = counters.iter().flat_map(|v| v.to_le_bytes()).collect();
        self.io
            .write_at(&page, COUNTERS_OFFSET)
            .map_err(|e| Error::io(&self.path, "write", e))?;
        let file_id = rand_u64();
        for g in [generation - 1, generation] {
            let sb = Superblock {
                generation: g,
                flags: 0,
                committed_len: index_offset + bytes.len() as u64,
                index_offset,
                index_len: bytes.len() as u64,
                index_crc: crc32fast::hash(&bytes),
                stamps_offset,
                stamps_capacity: capacity,
                file_id,
            };
            self.io
                .write_at(&sb.encode(), Superblock::slot_offset(g))
                .map_err(|e| Error::io(&self.path, "write", e))?;
        }
        if fsync {
            self.io.sync().map_err(|e| Error::io(&self.path, "fsync", e))?;
        }
        Ok(())
    }
}

fn rand_u64() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos()),
    );
    h.write_u32(std::process::id());
    h.finish()
}

fn create_new(path: &Path) -> Result<File> {
    OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(path)
        .map_err(|e| Error::io(path, "create", e))
}

/// The sibling path compaction and creation write before renaming.
pub(crate) fn temp_path(path: &Path, what: &str) -> PathBuf {
    let mut name = path.file_name().map(|n| n.to_os_string()).unwrap_or_default();
    name.push(format!(".{what}-{}.tmp", std::process::id()));
    path.with_file_name(name)
}

/// Creates an empty cache file at `path` unless one exists. The file is
/// written in full under a temporary name and then linked into place, so no
/// process ever sees a half-made file; if another process won the race, its
/// file is used.
pub(crate) fn create_if_missing(path: &Path, cfg: &CacheConfig, io: &dyn IoFactory) -> Result<()> {
    if path.exists() {
        return Ok(());
    }
    let tmp = temp_path(path, "new");
    let file = create_new(&tmp)?;
    let builder = FileBuilder {
        io: io.wrap(file, &tmp),
        path: tmp.clone(),
        end: DATA_START,
    };
    let result = builder
        .finish(&IndexData::default(), &[0; 64], &[0; COUNTER_COUNT], 1, cfg.fsync)
        .and_then(|()| match std::fs::hard_link(&tmp, path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
            Err(e) => Err(Error::io(path, "link", e)),
        });
    let _ = std::fs::remove_file(&tmp);
    result?;
    if cfg.fsync {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            io.sync_dir(dir)
                .map_err(|e| Error::io(dir, "fsync directory", e))?;
        }
    }
    Ok(())
}

/// Removes compaction files that a crashed compactor left beside `path`.
/// Only the lock holder writes them, so the caller, who holds the lock, knows
/// that any it finds are stale. Returns how many were removed.
pub(crate) fn remove_stale_temps(path: &Path) -> usize {
    let (Some(dir), Some(name)) = (path.parent(), path.file_name()) else {
        return 0;
    };
    let dir = if dir.as_os_str().is_empty() {
        Path::new(".")
    } else {
        dir
    };
    let prefix = format!("{}.compact-", name.to_string_lossy());
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    let mut removed = 0;
    for e in entries.flatten() {
        let n = e.file_name();
        let n = n.to_string_lossy();
        if n.starts_with(&prefix) && n.ends_with(".tmp") {
            match std::fs::remove_file(e.path()) {
                Ok(()) => {
                    log::info!("removed stale compaction file {}", e.path().display());
                    removed += 1;
                }
                Err(err) => log::warn!("{}: could not remove: {err}", e.path().display()),
            }
        }
    }
    removed
}

/// Rewrites the transaction's index into a new file, renames it over the
/// old one, and moves the transaction (and its lock) to the new file.
/// The index must name only committed regions.
pub(crate) fn compact(txn: &mut Txn<'_>, io: &dyn IoFactory) -> Result<CompactReport> {
    let old = Arc::clone(txn.fh());
    let path = old.path.clone();
    let bytes_before = txn.end();
    let tmp = temp_path(&path, "compact");
    let file = create_new(&tmp)?;
    let lock_file = file.try_clone().map_err(|e| Error::io(&tmp, "dup", e))?;
    let result = (|| {
        let mut b = FileBuilder {
            io: io.wrap(file, &tmp),
            path: tmp.clone(),
            end: DATA_START,
        };
        let (index, stamps) = copy_live(txn, &mut b)?;
        let mut counters = txn.counters();
        counters[Counter::Compactions as usize] += 1;
        for (c, n) in txn.counts.drain(..) {
            counters[c as usize] += n;
        }
        b.finish(
            &index,
            &stamps,
            &counters,
            txn.snap.sb.generation + 2,
            txn.cfg.fsync,
        )
    })();
    if let Err(e) = result {
        let _ = std::fs::remove_file(&tmp);
        return Err(e);
    }
    // The new inode is ours alone until the rename; lock it first so that
    // no writer can slip in between the rename and our next commit.
    let renamed = (|| -> Result<LockGuard> {
        lock_file.lock().map_err(|e| Error::io(&tmp, "lock", e))?;
        let new_handle = FileHandle::open(&path, lock_file, Some(io.wrap(reopen(&tmp)?, &path)))?;
        let new_guard = LockGuard(Arc::new(new_handle));
        failpoint::hit("compact-before-retire");
        let mut retired = txn.snap.sb;
        retired.generation += 1;
        retired.flags |= FLAG_RETIRED;
        txn.publish(&retired)?;
        failpoint::hit("compact-before-rename");
        io.rename(&tmp, &path)
            .map_err(|e| Error::io(&path, "rename", e))?;
        Ok(new_guard)
    })();
    // Until the rename the new file is ours alone: if anything failed before
    // it, the new file is removed rather than left beside the cache.
    let new_guard = renamed.inspect_err(|_| {
        let _ = std::fs::remove_file(&tmp);
    })?;
    failpoint::hit("compact-after-rename");
    if txn.cfg.fsync {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            io.sync_dir(dir)
                .map_err(|e| Error::io(dir, "fsync directory", e))?;
        }
    }
    let snap = Arc::new(Snapshot::load(Arc::clone(&new_guard.0))?);
    let bytes_after = snap.sb.committed_len;
    // Replacing the guard unlocks the old inode.
    let cfg = txn.cfg;
    *txn = Txn::begin(new_guard, snap, cfg)?;
    log::info!(
        "{}: compacted {} -> {} bytes",
        path.display(),
        bytes_before,
        bytes_after
    );
    Ok(CompactReport {
        bytes_before,
        bytes_after,
    })
}

fn reopen(p: &Path) -> Result<File> {
    OpenOptions::new()
        .read(true)
        .write(true)
        .open(p)
        .map_err(|e| Error::io(p, "open", e))
}

/// Copies every region the index names, checking each on the way, so that
/// no corrupt byte moves into the new file. Entries whose regions fail are
/// dropped (and counted). Returns the new index and its stamp table.
fn copy_live(txn: &mut Txn<'_>, b: &mut FileBuilder) -> Result<(IndexData, Vec<u64>)> {
    let snap = Arc::clone(&txn.snap);
    let fh = Arc::clone(&snap.file);
    let mut out = IndexData::default();
    let mut new_map_of: Vec<Option<u32>> = vec![None; txn.index.maps.len()];
    let mut bad_maps = vec![false; txn.index.maps.len()];
    let mut stamps = Vec::new();
    let mut dropped = 0;
    for e in &txn.index.entries {
        let mut ne = e.clone();
        let mut ok = true;
        for (m, slot) in [(e.node_map, &mut ne.node_map), (e.link_map, &mut ne.link_map)] {
            let i = m as usize;
            if bad_maps.get(i).copied().unwrap_or(true) {
                ok = false;
                continue;
            }
            if let Some(n) = new_map_of[i] {
                *slot = n;
                continue;
            }
            let rec: MapRecord = txn.index.maps[i];
            let copied = fh
                .idmap(&snap.map, rec.offset, rec.len)
                .and_then(|idmap| idmap.verify().map(|()| idmap))
                .and_then(|idmap| b.append(idmap.region_bytes()));
            match copied {
                Ok(offset) => {
                    out.maps.push(MapRecord { offset, ..rec });
                    let n = (out.maps.len() - 1) as u32;
                    new_map_of[i] = Some(n);
                    *slot = n;
                }
                Err(err) if err.is_corruption() => {
                    log::warn!(
                        "{}: compaction drops id mapping at {}: {err}",
                        fh.path.display(),
                        rec.offset
                    );
                    fh.mark_bad(rec.offset);
                    bad_maps[i] = true;
                    ok = false;
                }
                Err(err) => return Err(err),
            }
        }
        for (rec, slot) in [(e.nodes, &mut ne.nodes), (e.links, &mut ne.links)] {
            if !ok {
                break;
            }
            match fh.check_bits(&snap.map, &rec) {
                Ok(()) => {
                    let bytes = snap
                        .map
                        .region(rec.offset, BitsRecord::byte_len(rec.bits))
                        .unwrap_or(&[]);
                    *slot = BitsRecord {
                        offset: b.append(bytes)?,
                        ..rec
                    };
                }
                Err(err) => {
                    log::warn!("{}: compaction drops entry {:?}: {err}", fh.path.display(), e.key);
                    ok = false;
                }
            }
        }
        if !ok {
            dropped += 1;
            continue;
        }
        ne.slot = stamps.len() as u32;
        stamps.push(u64::try_from(e.accessed_us).unwrap_or(0));
        out.entries.push(ne);
    }
    if dropped > 0 {
        txn.counts.push((Counter::CorruptDropped, dropped));
    }
    let capacity = stamps.len().next_power_of_two().max(64);
    stamps.resize(capacity, 0);
    // Entries were kept in key order, so the index stays sorted.
    Ok((out, stamps))
}
