//! The index of one generation as readers see it: the base index and the
//! chain of deltas over it (FORMAT.md §2.7), each copied out of the file,
//! CRC-checked and validated, and merged into one view of the live entries.
//!
//! A generation of the same file that keeps the base reuses the parts it
//! shares with the generation before (they are heap copies, checked once),
//! so that following a commit costs that commit's delta and the chain's
//! overlay, not the whole index.

use crate::error::{Error, Result};
use crate::format::{Superblock, DATA_START, REGION_ALIGN};
use crate::index::{
    self, ArchivedDeltaData, ArchivedEntryRecord, ArchivedIndexData, ArchivedMapRecord, Checked,
};
use crate::mapping::Mapping;
use crate::snapshot::Resolved;
use crate::stamps;
use rkyv::util::AlignedVec;
use std::collections::HashMap;
use std::fs::File;
use std::path::Path;
use std::sync::{Arc, OnceLock};

/// The deepest chain a reader follows. Writers stop far earlier
/// (`index::MAX_CHAIN_DEPTH`); a deeper chain is refused as corrupt rather
/// than walked without bound.
const READ_MAX_DEPTH: usize = 1024;

/// Where a part of the index lies, as the superblock or a delta names it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct PartRef {
    pub offset: u64,
    pub len: u64,
    pub crc: u32,
}

impl PartRef {
    pub(crate) fn end(&self) -> u64 {
        self.offset.saturating_add(self.len)
    }
}

/// Copies a part out of the file into an aligned heap buffer and checks its
/// CRC. Everything later reads the copy, which nothing can change. With
/// `file`, the bytes are read with pread (for the base, which may be large:
/// no page of the mapping is touched for it, see `mapping::read_into`);
/// otherwise they are copied out of the mapping.
fn copy_part(
    path: &Path,
    map: &Mapping,
    file: Option<&File>,
    at: PartRef,
    what: &str,
) -> Result<AlignedVec<16>> {
    let bytes = map.region(at.offset, at.len).ok_or_else(|| {
        Error::corrupt(
            path,
            format!("{what} at {}+{} lies outside the file", at.offset, at.len),
        )
    })?;
    let mut copy = AlignedVec::<16>::with_capacity(bytes.len());
    match file {
        Some(f) => crate::mapping::read_into(f, path, at.offset, bytes.len(), &mut copy)?,
        None => copy.extend_from_slice(bytes),
    }
    crate::format::check_crc(path, &copy, at.crc, || format!("{what} at {}", at.offset))?;
    Ok(copy)
}

fn unresolved(n: usize) -> Box<[OnceLock<Arc<Resolved>>]> {
    (0..n).map(|_| OnceLock::new()).collect()
}

/// A checked base index.
pub(crate) struct Base {
    at: PartRef,
    bytes: AlignedVec<16>,
    checked: Checked,
    /// The stamp table checked together with the base's regions, when it
    /// lay below the base's end at load.
    stamps: Option<(u64, u32)>,
    resolved: Box<[OnceLock<Arc<Resolved>>]>,
}

impl Base {
    fn load(path: &Path, map: &Mapping, file: &File, at: PartRef, stamps: (u64, u32)) -> Result<Base> {
        let bytes = copy_part(path, map, Some(file), at, "index")?;
        let idx = rkyv::access::<ArchivedIndexData, rkyv::rancor::Error>(&bytes)
            .map_err(|e| Error::corrupt(path, format!("index at {}: {e}", at.offset)))?;
        let below = stamps
            .0
            .checked_add(stamps::table_len(stamps.1))
            .is_some_and(|end| end <= at.end());
        let stamps = below.then_some(stamps);
        let checked = index::check_base(path, idx, at.offset, at.len, stamps)?;
        Ok(Base {
            resolved: unresolved(idx.entries.len()),
            at,
            bytes,
            checked,
            stamps,
        })
    }

    /// The archived base index.
    pub(crate) fn index(&self) -> &ArchivedIndexData {
        // SAFETY: `self.bytes` is our own heap copy, never written after
        // load(), where these exact bytes passed `rkyv::access` validation
        // (bounds, alignment, UTF-8, and pointer checks of every field).
        unsafe { rkyv::access_unchecked::<ArchivedIndexData>(&self.bytes) }
    }
}

/// A checked delta of the chain.
pub(crate) struct Delta {
    at: PartRef,
    bytes: AlignedVec<16>,
    checked: Checked,
    resolved: Box<[OnceLock<Arc<Resolved>>]>,
}

impl Delta {
    /// Copies and validates the delta at `at`; its semantic checks need the
    /// chain before it and come later (`Chain::load`).
    fn load(path: &Path, map: &Mapping, at: PartRef) -> Result<Delta> {
        let bytes = copy_part(path, map, None, at, "index delta")?;
        let d = rkyv::access::<ArchivedDeltaData, rkyv::rancor::Error>(&bytes)
            .map_err(|e| Error::corrupt(path, format!("index delta at {}: {e}", at.offset)))?;
        Ok(Delta {
            resolved: unresolved(d.upserts.len()),
            at,
            bytes,
            checked: Checked::default(),
        })
    }

    /// The archived delta.
    pub(crate) fn delta(&self) -> &ArchivedDeltaData {
        // SAFETY: `self.bytes` is our own heap copy, never written after
        // load(), where these exact bytes passed `rkyv::access` validation.
        unsafe { rkyv::access_unchecked::<ArchivedDeltaData>(&self.bytes) }
    }

    fn prev(&self) -> Option<PartRef> {
        let d = self.delta();
        (d.prev_len.to_native() > 0).then(|| PartRef {
            offset: d.prev_offset.to_native(),
            len: d.prev_len.to_native(),
            crc: d.prev_crc.to_native(),
        })
    }
}

/// The merged index of one generation: a base and the deltas over it.
///
/// Entries have positions: the base's entries first, then each delta's
/// upserts, oldest delta first. A position of a shadowed or removed entry
/// is never handed out.
pub(crate) struct Chain {
    base: Arc<Base>,
    /// Oldest first.
    deltas: Vec<Arc<Delta>>,
    /// The position of each delta's first upsert.
    starts: Vec<usize>,
    /// Every key a delta upserted or removed: its position, or None.
    overlay: HashMap<Box<str>, Option<usize>>,
    live: usize,
}

impl Chain {
    /// Loads and checks the chain `sb` names, reusing the parts of `reuse`
    /// (a chain of the same file) that it still names.
    ///
    /// Cost: for each part not reused, one copy, one CRC pass and one
    /// validation; then the chain's links, the stamp table, and the overlay
    /// (one hash-map insert per key the deltas name).
    pub(crate) fn load(
        path: &Path,
        file: &File,
        map: &Mapping,
        sb: &Superblock,
        reuse: Option<&Chain>,
    ) -> Result<Chain> {
        let base_at = PartRef {
            offset: sb.index_offset,
            len: sb.index_len,
            crc: sb.index_crc,
        };
        if sb
            .index_offset
            .checked_add(sb.index_len)
            .is_none_or(|end| end > sb.committed_len)
        {
            return Err(Error::corrupt(path, "index lies past the committed length"));
        }
        let reuse = reuse.filter(|c| c.base.at == base_at);
        let base = match reuse {
            Some(c) => Arc::clone(&c.base),
            None => Arc::new(Base::load(
                path,
                map,
                file,
                base_at,
                (sb.stamps_offset, sb.stamps_capacity),
            )?),
        };
        // Newest to oldest, by the links each delta holds; stop at a delta
        // the reused chain has, whose predecessors it has too.
        let mut newer: Vec<Delta> = Vec::new();
        let mut older: &[Arc<Delta>] = &[];
        let mut next = sb.has_delta().then_some(PartRef {
            offset: sb.delta_offset,
            len: sb.delta_len,
            crc: sb.delta_crc,
        });
        while let Some(at) = next {
            if let Some(i) = reuse.and_then(|c| c.deltas.iter().position(|d| d.at == at)) {
                older = reuse.map_or(&[], |c| &c.deltas[..=i]);
                break;
            }
            if newer.len() >= READ_MAX_DEPTH {
                return Err(Error::corrupt(
                    path,
                    format!("the index's delta chain is deeper than {READ_MAX_DEPTH}"),
                ));
            }
            let d = Delta::load(path, map, at)?;
            next = d.prev();
            newer.push(d);
        }
        let mut deltas: Vec<Arc<Delta>> = older.to_vec();
        let mut maps_count =
            base.index().maps.len() + deltas.iter().map(|d| d.delta().maps.len()).sum::<usize>();
        let mut end = deltas.last().map_or(base.at.end(), |d| d.at.end());
        for mut d in newer.into_iter().rev() {
            let depth = deltas.len() + 1;
            {
                let dd = d.delta();
                if dd.depth.to_native() as usize != depth || (depth == 1) != (dd.prev_len.to_native() == 0) {
                    return Err(Error::corrupt(
                        path,
                        format!(
                            "index delta at {}: depth {} at position {depth} of its chain",
                            d.at.offset, dd.depth
                        ),
                    ));
                }
                if dd.since.to_native() < end || dd.maps_before.to_native() as usize != maps_count {
                    return Err(Error::corrupt(
                        path,
                        format!(
                            "index delta at {}: follows length {} with {} mappings, but the chain \
                             before it ends at {end} with {maps_count}",
                            d.at.offset, dd.since, dd.maps_before
                        ),
                    ));
                }
                let map_ids = |i: usize| map_at(&base, &deltas, i).map(|m| m.count.to_native());
                d.checked = index::check_delta(path, dd, d.at.offset, &map_ids)?;
            }
            maps_count += d.delta().maps.len();
            end = d.at.end();
            deltas.push(Arc::new(d));
        }
        if end > sb.committed_len {
            return Err(Error::corrupt(path, "index delta lies past the committed length"));
        }
        let capacity = sb.stamps_capacity;
        let max_slot = std::iter::once(&base.checked)
            .chain(deltas.iter().map(|d| &d.checked))
            .filter_map(|c| c.max_slot)
            .max();
        if let Some(slot) = max_slot.filter(|&s| s >= capacity) {
            return Err(Error::corrupt(
                path,
                format!("index: an entry names stamp slot {slot} of {capacity}"),
            ));
        }
        check_stamps(path, sb, &base, &deltas)?;
        Ok(Chain::merge(base, deltas))
    }

    /// Builds the overlay and the positions of a checked chain.
    fn merge(base: Arc<Base>, deltas: Vec<Arc<Delta>>) -> Chain {
        let mut starts = Vec::with_capacity(deltas.len());
        let mut pos = base.index().entries.len();
        let mut overlay: HashMap<Box<str>, Option<usize>> = HashMap::new();
        for d in &deltas {
            starts.push(pos);
            let dd = d.delta();
            for k in dd.removed.iter() {
                overlay.insert(k.as_str().into(), None);
            }
            for (j, e) in dd.upserts.iter().enumerate() {
                overlay.insert(e.key.as_str().into(), Some(pos + j));
            }
            pos += dd.upserts.len();
        }
        let idx = base.index();
        let shadowed = overlay.keys().filter(|k| idx.find(k).is_some()).count();
        let upserted = overlay.values().filter(|v| v.is_some()).count();
        Chain {
            live: idx.entries.len() - shadowed + upserted,
            base,
            deltas,
            starts,
            overlay,
        }
    }

    /// The position of the live entry under `key`.
    pub(crate) fn find(&self, key: &str) -> Option<usize> {
        if !self.overlay.is_empty() {
            if let Some(&found) = self.overlay.get(key) {
                return found;
            }
        }
        self.base.index().find(key)
    }

    /// Which delta holds position `pos` (past the base), and where in it.
    fn locate(&self, pos: usize) -> Option<(usize, usize)> {
        let i = self.starts.partition_point(|&s| s <= pos).checked_sub(1)?;
        Some((i, pos - self.starts[i]))
    }

    /// The entry at `pos`, a position `find` or `entries` gave.
    pub(crate) fn entry(&self, pos: usize) -> Option<&ArchivedEntryRecord> {
        let base = &self.base.index().entries;
        if pos < base.len() {
            return base.get(pos);
        }
        let (i, j) = self.locate(pos)?;
        self.deltas[i].delta().upserts.get(j)
    }

    /// The once-per-snapshot slot for the resolved form of entry `pos`,
    /// shared by every snapshot that shares the part holding the entry.
    pub(crate) fn resolved(&self, pos: usize) -> Option<&OnceLock<Arc<Resolved>>> {
        if pos < self.base.resolved.len() {
            return self.base.resolved.get(pos);
        }
        let (i, j) = self.locate(pos)?;
        self.deltas[i].resolved.get(j)
    }

    /// Every live entry with its position: the base's unshadowed entries in
    /// key order, then those the deltas upserted, in no particular order.
    pub(crate) fn entries(&self) -> impl Iterator<Item = (usize, &ArchivedEntryRecord)> + '_ {
        let shadow = !self.overlay.is_empty();
        let base = self
            .base
            .index()
            .entries
            .iter()
            .enumerate()
            .filter(move |(_, e)| !shadow || !self.overlay.contains_key(e.key.as_str()));
        let upserted = self
            .overlay
            .values()
            .filter_map(|v| *v)
            .filter_map(|pos| self.entry(pos).map(|e| (pos, e)));
        base.chain(upserted)
    }

    /// Live entries.
    pub(crate) fn len(&self) -> usize {
        self.live
    }

    /// The mapping record at position `i` of the chain's table.
    pub(crate) fn map(&self, i: u32) -> Option<&ArchivedMapRecord> {
        map_at(&self.base, &self.deltas, i as usize)
    }

    /// The chain's table of mapping records, in order. Some may be named by
    /// no live entry.
    pub(crate) fn maps(&self) -> impl Iterator<Item = &ArchivedMapRecord> + '_ {
        let base = self.base.index().maps.iter();
        base.chain(self.deltas.iter().flat_map(|d| d.delta().maps.iter()))
    }

    /// Deltas over the base.
    pub(crate) fn depth(&self) -> u32 {
        self.deltas.len() as u32
    }

    /// Bytes of the base index.
    pub(crate) fn base_len(&self) -> u64 {
        self.base.at.len
    }

    /// Bytes of all deltas together.
    pub(crate) fn deltas_len(&self) -> u64 {
        self.deltas.iter().map(|d| d.at.len).sum()
    }

    /// The newest delta, if any.
    pub(crate) fn newest(&self) -> Option<PartRef> {
        self.deltas.last().map(|d| d.at)
    }
}

fn map_at<'a>(base: &'a Base, deltas: &'a [Arc<Delta>], i: usize) -> Option<&'a ArchivedMapRecord> {
    let maps = &base.index().maps;
    if i < maps.len() {
        return maps.get(i);
    }
    let mut rest = i - maps.len();
    for d in deltas {
        let m = &d.delta().maps;
        if rest < m.len() {
            return m.get(rest);
        }
        rest -= m.len();
    }
    None
}

/// The stamp table, the one region written in place, must alias nothing
/// that is lent out: it lies inside the committed file and is either the
/// table checked with the base's regions or one a delta introduced, apart
/// from that delta's other regions. (Regions of different parts lie in
/// disjoint ranges of the file, so that is all that needs checking.)
fn check_stamps(path: &Path, sb: &Superblock, base: &Base, deltas: &[Arc<Delta>]) -> Result<()> {
    let (start, capacity) = (sb.stamps_offset, sb.stamps_capacity);
    let len = stamps::table_len(capacity);
    let end = start.saturating_add(len);
    if start < DATA_START || !start.is_multiple_of(REGION_ALIGN) || end > sb.committed_len {
        return Err(Error::corrupt(
            path,
            format!("the access-stamp table at {start}+{len} lies outside the committed file"),
        ));
    }
    if base.stamps == Some((start, capacity)) {
        return Ok(());
    }
    for d in deltas {
        if d.delta().since.to_native() <= start && end <= d.at.offset {
            if d.checked.disjoint_from(start, end) {
                return Ok(());
            }
            return Err(Error::corrupt(
                path,
                format!(
                    "the access-stamp table at {start}..{end} overlaps a region of the delta at {}",
                    d.at.offset
                ),
            ));
        }
    }
    Err(Error::corrupt(
        path,
        format!(
            "the access-stamp table at {start}..{end} is neither the base index's nor one a delta introduced"
        ),
    ))
}
