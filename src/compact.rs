//! Compaction: copies every live region into a new file, checking each on
//! the way, and has the commit protocol (`Txn::replace_file`) put it in
//! place of the old one; plus the policy of when compaction is worth it.
//!
//! Compaction never touches bytes a reader may hold: readers of the old file
//! keep their mapping of the old inode, which lives until they let go.

use crate::commit::{Appender, LockGuard, Txn};
use crate::error::{Error, Result};
use crate::format::{Counter, Superblock, COUNTERS_OFFSET, COUNTER_COUNT, DATA_START};
use crate::index::{BitsRecord, IndexData, MapRecord};
use crate::io::{FileIo, IoFactory};
use crate::open::create_temp;
use crate::snapshot::FileHandle;
use crate::stamps;
use crate::stats::CompactReport;
use std::fs::OpenOptions;
use std::path::Path;
use std::sync::Arc;

/// True when the transaction's file has enough dead space to compact now:
/// at least `compact_min_dead_bytes`, and over `compact_dead_ratio` of the
/// file or past `max_size_bytes`.
pub(crate) fn worth_it(txn: &Txn<'_>) -> bool {
    let cfg = txn.cfg;
    let dead = txn.dead_bytes();
    cfg.auto_compact
        && dead >= cfg.compact_min_dead_bytes
        && (dead as f64 > cfg.compact_dead_ratio * txn.end() as f64 || txn.end() > cfg.max_size_bytes)
}

/// A file that nobody else can see yet, written region by region.
struct FileBuilder<'a> {
    io: &'a dyn FileIo,
    path: &'a Path,
    appender: Appender,
}

impl FileBuilder<'_> {
    fn append(&mut self, parts: &[&[u8]]) -> Result<u64> {
        self.appender.append(self.io, self.path, parts)
    }
}

/// Writes a whole file after whatever `io` already holds below `end`: the
/// stamp table, the index, the counters, and both superblocks (generations
/// `generation - 1` and `generation`, so that either slot names it), then
/// fsyncs. Used to create a cache and by compaction.
#[allow(clippy::too_many_arguments)]
pub(crate) fn write_whole(
    io: Box<dyn FileIo>,
    path: &Path,
    end: u64,
    index: &IndexData,
    stamps: &[u64],
    counters: &[u64; COUNTER_COUNT],
    generation: u64,
    fsync: bool,
) -> Result<()> {
    let mut b = FileBuilder {
        io: io.as_ref(),
        path,
        appender: Appender::at(end),
    };
    let capacity = u32::try_from(stamps.len()).map_err(|_| Error::Config("too many entries".into()))?;
    let stamps_offset = b.append(&[&stamps::encode(stamps)])?;
    let bytes = index.to_bytes()?;
    let index_offset = b.append(&[&bytes])?;
    let page: Vec<u8> = counters.iter().flat_map(|v| v.to_le_bytes()).collect();
    io.write_at(&page, COUNTERS_OFFSET)
        .map_err(|e| Error::io(path, "write", e))?;
    let file_id = rand_u64();
    for g in [generation - 1, generation] {
        let sb = Superblock::naming(g, index_offset, &bytes, (stamps_offset, capacity), file_id);
        io.write_at(&sb.encode(), Superblock::slot_offset(g))
            .map_err(|e| Error::io(path, "write", e))?;
    }
    if fsync {
        io.sync().map_err(|e| Error::io(path, "fsync", e))?;
    }
    Ok(())
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

/// Rewrites the transaction's index into a new file, renames it over the
/// old one, and moves the transaction (and its lock) to the new file.
/// The index must name only committed regions.
pub(crate) fn compact(txn: &mut Txn<'_>, io: &dyn IoFactory) -> Result<CompactReport> {
    let path = txn.fh().path.clone();
    let bytes_before = txn.end();
    let generation = txn.snap.sb.generation_after(2, &path)?;
    let (file, tmp) = create_temp(&path, "compact")?;
    let lock_file = file.try_clone().map_err(|e| Error::io(&tmp, "dup", e))?;
    let written = (|| -> Result<LockGuard> {
        let writer = io.wrap(file, &tmp);
        let mut b = FileBuilder {
            io: writer.as_ref(),
            path: &tmp,
            appender: Appender::at(DATA_START),
        };
        let (index, stamps) = copy_live(txn, &mut b)?;
        let end = b.appender.end();
        let mut counters = txn.counters();
        counters[Counter::Compactions as usize] += 1;
        for (c, n) in txn.counts.drain(..) {
            counters[c as usize] += n;
        }
        write_whole(
            writer,
            &tmp,
            end,
            &index,
            &stamps,
            &counters,
            generation,
            txn.cfg.fsync,
        )?;
        // The new inode is ours alone until the rename; lock it first so
        // that no writer can slip in between the rename and our next commit.
        lock_file.lock().map_err(|e| Error::io(&tmp, "lock", e))?;
        let reopened = OpenOptions::new()
            .read(true)
            .write(true)
            .open(&tmp)
            .map_err(|e| Error::io(&tmp, "open", e))?;
        let handle = FileHandle::open(&path, lock_file, Some(io.wrap(reopened, &path)))?;
        Ok(LockGuard(Arc::new(handle)))
    })();
    let new = written.inspect_err(|_| {
        let _ = std::fs::remove_file(&tmp);
    })?;
    txn.replace_file(new, &tmp, io)?;
    let bytes_after = txn.snap.sb.committed_len;
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

/// Copies every region the index names, checking each on the way, so that
/// no corrupt byte moves into the new file. Entries whose regions fail are
/// dropped (and counted). Returns the new index and its stamp table.
fn copy_live(txn: &mut Txn<'_>, b: &mut FileBuilder<'_>) -> Result<(IndexData, Vec<u64>)> {
    let snap = Arc::clone(&txn.snap);
    let fh = Arc::clone(&snap.file);
    let mut out = IndexData::default();
    let maps = txn.model.maps();
    let mut new_map_of: Vec<Option<u32>> = vec![None; maps.len()];
    let mut bad_maps = vec![false; maps.len()];
    let mut stamps = Vec::new();
    let mut dropped = 0;
    for e in txn.model.iter() {
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
            let rec: MapRecord = maps[i];
            let copied = fh
                .idmap(&snap.map, rec.offset, rec.len)
                .and_then(|idmap| idmap.verify().map(|()| idmap))
                .and_then(|idmap| b.append(&[idmap.region_bytes()]));
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
                    fh.mark_bad_map(&rec);
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
                        offset: b.append(&[bytes])?,
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
        ne.accessed_us = Txn::last_access(&snap, e);
        stamps.push(u64::try_from(ne.accessed_us).unwrap_or(0));
        out.entries.push(ne);
    }
    if dropped > 0 {
        txn.counts.push((Counter::CorruptDropped, dropped));
    }
    let capacity = stamps::capacity_for(stamps.len() as u64);
    stamps.resize(usize::try_from(capacity).unwrap_or(usize::MAX), 0);
    // Entries were kept in key order, so the index stays sorted.
    Ok((out, stamps))
}
