//! The cache file's memory map. Every `unsafe` that touches mapped memory
//! lives here: immutable regions are lent out as slices, and the few words
//! that processes update in place (counters, access stamps, superblock
//! generations) are reached only through atomics.

use crate::error::{Error, Result};
use crate::format::{Superblock, SUPERBLOCK_LEN, SUPERBLOCK_PAGE};
use crate::source::RegionSource;
use memmap2::{MmapOptions, MmapRaw};
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// A mapping of the cache file, possibly longer than the file: mapping past
/// the end is allowed, and pages become readable as the file grows, so one
/// mapping serves many commits. Only bytes below `valid_len` (checked against
/// the file's size) are ever touched.
pub(crate) struct Mapping {
    raw: MmapRaw,
    /// The file's size as last read by fstat; files never shrink, so it only
    /// grows.
    valid_len: AtomicU64,
    writable: bool,
    path: PathBuf,
}

impl Mapping {
    /// Maps `file` (opened read-write when `writable`) with room for growth.
    /// `file_len` is the file's current size.
    pub(crate) fn new(file: &File, path: &Path, file_len: u64, writable: bool) -> Result<Mapping> {
        // Reserve address space beyond the current end so that appends do not
        // force every reader to map again; address space is cheap on 64-bit.
        let reserve = file_len.saturating_mul(2).max(1 << 30);
        let map_len = usize::try_from(reserve)
            .map_err(|_| Error::Config(format!("{}: file too large to map", path.display())))?;
        let mut opts = MmapOptions::new();
        opts.len(map_len);
        let raw = if writable {
            opts.map_raw(file)
        } else {
            opts.map_raw_read_only(file)
        }
        .map_err(|e| Error::io(path, "mmap", e))?;
        Ok(Mapping {
            raw,
            valid_len: AtomicU64::new(file_len),
            writable,
            path: path.to_path_buf(),
        })
    }

    /// The file size this mapping was last checked against.
    pub(crate) fn valid_len(&self) -> u64 {
        self.valid_len.load(Ordering::Acquire).min(self.mapped_len())
    }

    /// Records the file's size as just read by fstat.
    pub(crate) fn note_file_len(&self, file_len: u64) {
        self.valid_len.fetch_max(file_len, Ordering::AcqRel);
    }

    /// The mapped length (at least `valid_len`).
    pub(crate) fn mapped_len(&self) -> u64 {
        self.raw.len() as u64
    }

    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// An immutable region, or None when it does not lie inside the file.
    ///
    /// Callers pass only regions of a published generation, or the
    /// superblock-free data area; see the SAFETY note.
    pub(crate) fn region(&self, offset: u64, len: u64) -> Option<&[u8]> {
        let end = offset.checked_add(len)?;
        if end > self.valid_len() || offset < crate::format::DATA_START {
            return None;
        }
        // SAFETY: [offset, end) lies inside the mapping and below the file's
        // size as last read by fstat (valid_len() is the minimum of both), so
        // no access can fault. The bytes
        // belong to appended regions: the commit protocol never writes a
        // region again once a published index points to it, and the file is
        // never truncated, so the slice stays immutable and valid for as long
        // as `self` lives.
        Some(unsafe { std::slice::from_raw_parts(self.raw.as_ptr().add(offset as usize), len as usize) })
    }

    /// A u64 that processes update in place, or None if out of range or
    /// misaligned.
    pub(crate) fn atomic_u64(&self, offset: u64) -> Option<&AtomicU64> {
        if !offset.is_multiple_of(8) || offset.checked_add(8)? > self.valid_len() {
            return None;
        }
        // SAFETY: the 8 bytes lie inside the mapping and the file (checked
        // above), the address is 8-aligned (the mapping is page-aligned and
        // offset % 8 == 0), and these words are only ever accessed atomically
        // by this crate in every process. A read-only mapping is only loaded
        // from: stores go through `store_max` and `add`, which check
        // `writable` first.
        Some(unsafe { &*(self.raw.as_ptr().add(offset as usize) as *const AtomicU64) })
    }

    /// Atomically raises the u64 at `offset` to at least `value`.
    pub(crate) fn store_max(&self, offset: u64, value: u64) {
        if self.writable {
            if let Some(a) = self.atomic_u64(offset) {
                a.fetch_max(value, Ordering::Relaxed);
            }
        }
    }

    /// Atomically sets the u64 at `offset`.
    pub(crate) fn store(&self, offset: u64, value: u64) {
        if self.writable {
            if let Some(a) = self.atomic_u64(offset) {
                a.store(value, Ordering::Relaxed);
            }
        }
    }

    /// Atomically adds to the u64 at `offset`.
    pub(crate) fn add(&self, offset: u64, value: u64) {
        if self.writable {
            if let Some(a) = self.atomic_u64(offset) {
                a.fetch_add(value, Ordering::Relaxed);
            }
        }
    }

    /// Loads the u64 at `offset` (0 when out of range).
    pub(crate) fn load(&self, offset: u64) -> u64 {
        self.atomic_u64(offset).map_or(0, |a| a.load(Ordering::Relaxed))
    }

    /// Loads the u64 at `offset` with Acquire ordering: what a writer wrote
    /// before it stored this word is visible after this load, on weakly
    /// ordered CPUs too.
    fn load_acquire(&self, offset: u64) -> u64 {
        self.atomic_u64(offset).map_or(0, |a| a.load(Ordering::Acquire))
    }

    /// The generations currently in the two superblock slots, read without
    /// checking anything: a cheap test of whether a new commit may exist.
    /// Acquire loads, so that a new generation seen here comes with the
    /// superblock and the regions the writer published before it.
    pub(crate) fn slot_generations(&self) -> [u64; 2] {
        [self.load_acquire(16), self.load_acquire(SUPERBLOCK_PAGE + 16)]
    }

    /// Copies both superblock slots out of the mapping, word by word with
    /// atomic loads, since a writer may be rewriting one of them right now;
    /// the copy's CRC tells whether it was torn.
    pub(crate) fn read_superblocks(&self) -> [[u8; SUPERBLOCK_LEN]; 2] {
        let mut out = [[0u8; SUPERBLOCK_LEN]; 2];
        for (slot, buf) in out.iter_mut().enumerate() {
            let base = slot as u64 * SUPERBLOCK_PAGE;
            for (i, chunk) in buf.chunks_exact_mut(8).enumerate() {
                chunk.copy_from_slice(&self.load_acquire(base + 8 * i as u64).to_le_bytes());
            }
        }
        out
    }

    /// The newest usable superblock.
    pub(crate) fn superblock(&self) -> Result<Superblock> {
        let slots = self.read_superblocks();
        Superblock::choose(&self.path, [&slots[0], &slots[1]])
    }
}

/// Reads the `len` bytes at `offset` of `file` into `out` (replacing what
/// it held) with pread instead of through the mapping: for a region that is
/// copied out once anyway (the index), so no page of the mapping is touched
/// for it. A fresh process would otherwise take a page fault there (4-10 us
/// on the project machine, against about 2 us for a pread of a few KiB), and
/// the fault would map the whole page-cache folio around it (up to 2 MiB of
/// resident set when the file was written in large pieces).
///
/// Both paths read the same page cache, so the bytes are those the mapping
/// shows. The caller checks that the region lies below the file's size;
/// a file that is shorter anyway (truncated since) is reported as corrupt.
pub(crate) fn read_into(
    file: &File,
    path: &Path,
    offset: u64,
    len: usize,
    out: &mut rkyv::util::AlignedVec<16>,
) -> Result<()> {
    use std::os::fd::AsRawFd;
    out.clear();
    out.reserve(len);
    crate::source::populate(out.as_ptr(), out.capacity());
    // Straight into the buffer's spare capacity: zeroing it first would
    // write every byte once more for nothing.
    while out.len() < len {
        let done = out.len();
        let want = len - done;
        let at = offset
            .checked_add(done as u64)
            .and_then(|at| libc::off_t::try_from(at).ok());
        let Some(at) = at else {
            return Err(Error::corrupt(
                path,
                format!("region {offset}+{len} lies past any file offset"),
            ));
        };
        // SAFETY: `reserve(len)` made the capacity at least `len`, so the
        // `want` bytes from `done` lie inside the allocation, which nothing
        // else borrows (`out` is borrowed mutably). pread writes at most
        // `want` bytes there and returns how many it wrote.
        let n = unsafe { libc::pread(file.as_raw_fd(), out.as_mut_ptr().add(done).cast(), want, at) };
        match n {
            n if n > 0 => {
                // SAFETY: pread initialized the `n <= want` bytes after
                // `done`, so the first `done + n` bytes are initialized.
                unsafe { out.set_len(done + n as usize) };
            }
            0 => {
                return Err(Error::corrupt(
                    path,
                    format!("region {offset}+{len} lies past the end of the file: it was truncated"),
                ))
            }
            _ => {
                let e = std::io::Error::last_os_error();
                if e.kind() != std::io::ErrorKind::Interrupted {
                    return Err(Error::io(path, "pread", e));
                }
            }
        }
    }
    Ok(())
}

/// One immutable region of a mapping, lent to a read-in-place structure.
pub(crate) struct MappedRegion {
    map: Arc<Mapping>,
    offset: u64,
    len: u64,
}

impl MappedRegion {
    /// The region, or a Corrupt error when it does not lie in the file.
    pub(crate) fn new(map: &Arc<Mapping>, offset: u64, len: u64) -> Result<MappedRegion> {
        if map.region(offset, len).is_none() {
            return Err(Error::corrupt(
                map.path(),
                format!(
                    "region {offset}+{len} lies outside the file of {} bytes",
                    map.valid_len()
                ),
            ));
        }
        Ok(MappedRegion {
            map: Arc::clone(map),
            offset,
            len,
        })
    }
}

impl RegionSource for MappedRegion {
    fn bytes(&self) -> &[u8] {
        // Checked in new(); the mapping cannot shrink.
        self.map.region(self.offset, self.len).unwrap_or(&[])
    }
    fn path(&self) -> &Path {
        self.map.path()
    }
}
