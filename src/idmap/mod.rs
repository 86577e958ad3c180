//! Id mappings: a bijection between `N` distinct id strings and the
//! positions `0..N`, stored as one contiguous byte region that is read in
//! place, whether it was built in memory or mapped from the cache file.
//!
//! # Region layout
//!
//! All integers are little-endian; the region starts 64-byte aligned.
//!
//! | bytes | field |
//! |---|---|
//! | 0..8 | magic `SCIDMAP1` |
//! | 8..16 | count N (u64) |
//! | 16..24 | slot count S (u64): 0 when N = 0, else N + N/4 + 1 |
//! | 24..32 | strings_len (u64): total bytes of all ids |
//! | 32..48 | digest: xxh3-128 (seed 0) of the body, u128 |
//! | 48..52 | flags (u32): bit 0 wide slots, bit 1 wide offsets |
//! | 52..56 | block size (u32), 65536 when written |
//! | 56..60 | CRC32 of the block-CRC table entries |
//! | 60..64 | CRC32 of header bytes 0..60 |
//!
//! Then the block-CRC table (one CRC32 per body block, zero-padded to a
//! multiple of 64 bytes), then the body: offsets (N + 1 entries), slots
//! (S entries) and strings (the ids' bytes in index order), each section
//! zero-padded to a multiple of 64 bytes.
//!
//! A slot is 0 when empty; otherwise a narrow slot holds
//! `(h & 0xFF) << 24 | (i + 1)` and a wide slot `(h & 0xFFFF_FFFF) << 32 |
//! (i + 1)`, with `h` the xxh3-64 of the id. Lookups use linear probing from
//! the home slot `(h * S) >> 64`; a probe compares the fingerprint before it
//! reads any string, so a mismatching probe costs no memory access beyond the
//! slot itself. The builder places the ids in (home slot, index) order, each
//! at the first slot from its home past the previous one (FORMAT.md §2.5);
//! older files hold the in-order insertion, which reads the same.
//!
//! # Integrity
//!
//! Opening a stored mapping checks only the header and the table, so opening is
//! cheap. Body blocks are checked against their CRC the first time any byte
//! in them is read, at most once per process. Once every block has passed
//! (or [`IdMap::verify`] has), the map is *ready*: a read then loads one
//! state word and skips the block bookkeeping, though it still checks every
//! slot value and offset it reads. A failed check marks the map corrupt for
//! good: the plain accessors then answer `None`, the `try_` accessors an
//! error. [`IdMap::verify`] checks everything at once.

mod build;
mod check;
mod cursor;
mod layout;
mod lookup;
mod sections;
#[cfg(test)]
mod tests;

use std::path::Path;
use std::sync::atomic::{AtomicU64, AtomicU8, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};

use crate::source::{AlignedBuf, RegionSource};
use crate::{Error, Result};

pub(crate) use build::BuildOptions;
pub(crate) use cursor::IdCursor;
use layout::{Header, Layout};
use sections::Sections;

/// A bijection between `N` distinct id strings and the positions `0..N`.
///
/// Invariants: `N <= u32::MAX`; the ids are distinct; `index_of(id(i)) ==
/// Some(i)` for every `i < N`. These hold for maps built by
/// [`IdMap::from_ids`]; for a map read from a file they hold unless the file
/// is damaged, in which case every check that catches the damage makes the
/// map answer `None` (or `Err` from the `try_` methods) rather than a wrong
/// position. A file crafted to pass the CRCs with inconsistent content can
/// give wrong answers, but never a panic, undefined behaviour or an endless
/// loop.
///
/// Cloning is cheap (one reference count); clones share the bytes and the
/// record of which blocks have been checked. `IdMap` is `Send + Sync`.
///
/// ```
/// use scopecache::IdMap;
///
/// let map = IdMap::from_ids(["alpha", "beta", "gamma"])?;
/// assert_eq!(map.len(), 3);
/// assert_eq!(map.index_of("beta"), Some(1));
/// assert_eq!(map.id(2), Some("gamma"));
/// assert_eq!(map.index_of("delta"), None);
/// # Ok::<(), scopecache::Error>(())
/// ```
#[derive(Clone)]
pub struct IdMap {
    inner: Arc<Inner>,
}

/// Where the region's bytes live.
#[cfg_attr(not(test), allow(dead_code, reason = "Shared is made by open()"))]
enum Backing {
    /// Built in this process.
    Heap(AlignedBuf),
    /// A slice of a shared source, usually the cache file's mapping.
    Shared {
        source: Arc<dyn RegionSource>,
        offset: usize,
        len: usize,
    },
}

impl Backing {
    #[inline(always)]
    fn region(&self) -> &[u8] {
        match self {
            Backing::Heap(buf) => buf.as_bytes(),
            // An out-of-range slice gives an empty region, which every later
            // bounds check turns into a fault; open() made sure it is in range.
            Backing::Shared { source, offset, len } => offset
                .checked_add(*len)
                .and_then(|end| source.bytes().get(*offset..end))
                .unwrap_or(&[]),
        }
    }

    fn path(&self) -> &Path {
        match self {
            Backing::Heap(_) => Path::new(""),
            Backing::Shared { source, .. } => source.path(),
        }
    }
}

/// Some body block has not passed its check yet: reads check the blocks
/// they touch.
const CHECKING: u8 = 0;
/// Every block has passed (or the map was built in this process): reads
/// skip the block bookkeeping.
const READY: u8 = 1;
/// A check failed: every read answers with a fault. Final.
const CORRUPT: u8 = 2;

/// The shared state behind an [`IdMap`].
struct Inner {
    backing: Backing,
    /// The body, `backing`'s region from `layout.body_start` to
    /// `layout.region_len`, cut into its sections once when the map is
    /// made, so that a read reaches an entry in one load rather than
    /// through the source. Lent out only by [`Inner::sections`].
    ///
    /// Invariant: the bytes belong to `backing`, which this `Inner` owns and
    /// never changes, and stay at one address, unchanged, for as long as
    /// `backing` lives; see [`locate_body`].
    sections: Sections<'static>,
    layout: Layout,
    digest: u128,
    /// Bit `k` set: body block `k` has passed its CRC check.
    verified: Box<[AtomicU64]>,
    /// How many bits of `verified` are set.
    verified_blocks: AtomicUsize,
    /// [`CHECKING`], [`READY`] or [`CORRUPT`]: the one word a read loads
    /// to choose its path. It only moves forward: CHECKING to READY once
    /// the last block passed, and either to CORRUPT when a check fails.
    mode: AtomicU8,
    /// What the first failed check found.
    reason: OnceLock<String>,
}

/// A failed check inside the read path. It carries nothing: the reason is
/// recorded in [`Inner::reason`] when the fault is raised, so the healthy
/// path never builds an error value.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Fault;

/// The sections of a map over `backing` with layout `layout`, as
/// [`Inner::sections`] holds them.
fn locate_body(backing: &Backing, layout: &Layout) -> Sections<'static> {
    let body = backing
        .region()
        .get(layout.body_start..layout.region_len)
        .unwrap_or(&[]);
    // SAFETY: the bytes are not copied, only the borrow's lifetime is
    // extended, and the result is stored beside `backing` in one `Inner`,
    // which lends it only for as long as it is itself borrowed. The bytes
    // stay valid and unchanged at this address for as long as `backing`
    // lives: a heap buffer (`Backing::Heap`) is never written once wrapped,
    // and moving it does not move its allocation; a shared source's
    // `bytes()` returns the same slice on every call (the `RegionSource`
    // contract), of a mapping that outlives it and, by the commit protocol,
    // is never written where a published region lies.
    let body: &'static [u8] = unsafe { std::slice::from_raw_parts(body.as_ptr(), body.len()) };
    Sections::new(body, layout)
}

impl Inner {
    /// The body's sections, borrowed for as long as `self` is.
    #[inline(always)]
    fn sections(&self) -> &Sections<'_> {
        &self.sections
    }

    /// Records a failed check: marks the map corrupt and logs once.
    #[cold]
    #[inline(never)]
    fn fault(&self, what: impl FnOnce() -> String) -> Fault {
        let what = what();
        if self.mode.swap(CORRUPT, Ordering::AcqRel) != CORRUPT {
            log::warn!(
                "{}: id map is corrupt, lookups in it will fail: {}",
                self.backing.path().display(),
                what
            );
        }
        let _ = self.reason.set(what);
        Fault
    }

    /// The public error for a fault raised earlier.
    #[cold]
    fn error(&self) -> Error {
        let what = self
            .reason
            .get()
            .map_or("id map failed an earlier check", String::as_str);
        Error::corrupt(self.backing.path(), what.to_string())
    }

    /// The body bytes and whether every block is known good (so reads may
    /// skip the block checks), or a fault if the map is known corrupt.
    ///
    /// One atomic load: the whole per-call cost of the integrity
    /// bookkeeping once the map is [`READY`].
    #[inline(always)]
    fn view(&self) -> std::result::Result<(&Sections<'_>, bool), Fault> {
        let mode = self.mode.load(Ordering::Relaxed);
        if mode == CORRUPT {
            return Err(Fault);
        }
        Ok((self.sections(), mode == READY))
    }

    /// The body's sections, or a fault if the map is already known corrupt.
    #[inline(always)]
    fn body(&self) -> std::result::Result<&Sections<'_>, Fault> {
        self.view().map(|(body, _)| body)
    }
}

impl IdMap {
    /// Builds a map from ids in index order: the `k`-th id gets position `k`.
    ///
    /// Errors: [`Error::DuplicateId`] naming the id and both positions if an
    /// id occurs twice; [`Error::TooManyIds`] if there are more than
    /// `u32::MAX` ids (its `count` is then the first count that did not fit,
    /// as the rest of the iterator is not consumed).
    ///
    /// Cost: O(N + total id bytes) time, one pass over the iterator. Memory:
    /// the region, about 9 bytes per id plus the id bytes (18 per id from
    /// 2^24 ids on), see [`region_len`](IdMap::region_len); the temporary
    /// copy of the ids is freed chunk by chunk as it moves into the region,
    /// so the peak stays near the region's size; placing the slots takes 2
    /// more bytes per id while it runs. From 65,536 ids on, hashing and
    /// placing the slots run on up to 4 short-lived threads (as many as the
    /// machine has cores); for a body of 4 MiB or more the digest, and the
    /// copy of the offsets and ids into the region, run on a second one.
    /// Slots are written bucket by bucket (FORMAT.md §2.5), never one
    /// random write per id.
    ///
    /// ```
    /// use scopecache::{Error, IdMap};
    ///
    /// let map = IdMap::from_ids(vec![String::from("x"), String::from("")])?;
    /// assert_eq!(map.index_of(""), Some(1));
    ///
    /// match IdMap::from_ids(["a", "b", "a"]) {
    ///     Err(Error::DuplicateId { id, first, second }) => {
    ///         assert_eq!((id.as_str(), first, second), ("a", 0, 2));
    ///     }
    ///     _ => unreachable!(),
    /// }
    /// # Ok::<(), scopecache::Error>(())
    /// ```
    pub fn from_ids<I, S>(ids: I) -> Result<IdMap>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        build::build(ids, BuildOptions::default())
    }

    /// Builds a map with explicit entry widths; see [`BuildOptions`].
    #[cfg(test)]
    pub(crate) fn from_ids_with<I, S>(ids: I, options: BuildOptions) -> Result<IdMap>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        build::build(ids, options)
    }

    /// Wraps a freshly built region. Every block is known good.
    fn from_built(buf: AlignedBuf, header: Header) -> IdMap {
        let backing = Backing::Heap(buf);
        IdMap {
            inner: Arc::new(Inner {
                sections: locate_body(&backing, &header.layout),
                backing,
                layout: header.layout,
                digest: header.digest,
                verified: Box::new([]),
                verified_blocks: AtomicUsize::new(0),
                mode: AtomicU8::new(READY),
                reason: OnceLock::new(),
            }),
        }
    }

    /// Reads a map in place from `len` bytes at `offset` in `source`.
    ///
    /// Cheap: checks the header (magic, header CRC, flags, block size, that
    /// all sizes add up without overflow and give exactly `len` bytes) and
    /// the CRC of the block table, O(len / block size). It does not read the
    /// body; body blocks are checked as lookups first touch them.
    ///
    /// Errors: [`Error::Corrupt`] naming `source.path()` for any failed
    /// check, including an `offset` that is not a multiple of 64 or a range
    /// outside the source.
    pub(crate) fn open(source: Arc<dyn RegionSource>, offset: usize, len: usize) -> Result<IdMap> {
        let header = {
            let path = source.path();
            let bad = |what: String| Error::corrupt(path, what);
            let bytes = source.bytes();
            if !offset.is_multiple_of(64) {
                return Err(bad(format!(
                    "id map: region offset {offset} is not a multiple of 64"
                )));
            }
            let region = offset
                .checked_add(len)
                .and_then(|end| bytes.get(offset..end))
                .ok_or_else(|| {
                    bad(format!(
                        "id map: region of {len} bytes at offset {offset} lies outside the {} bytes available",
                        bytes.len()
                    ))
                })?;
            let head = region.first_chunk::<{ layout::HEADER_LEN }>().ok_or_else(|| {
                bad(format!(
                    "id map: region of {len} bytes is shorter than the {}-byte header",
                    layout::HEADER_LEN
                ))
            })?;
            let header = Header::decode(head).map_err(&bad)?;
            let l = header.layout;
            if l.region_len != len {
                return Err(bad(format!(
                    "id map: the header gives a region of {} bytes, the file holds {len}",
                    l.region_len
                )));
            }
            let table = region
                .get(layout::HEADER_LEN..l.body_start)
                .ok_or_else(|| bad("id map: block table lies outside the region".to_string()))?;
            let (entries, padding) = table.split_at(l.table_entries_len().min(table.len()));
            let crc = crc32fast::hash(entries);
            if crc != header.table_crc {
                return Err(bad(format!(
                    "id map: block table CRC is {:#010x} but the table gives {crc:#010x}",
                    header.table_crc
                )));
            }
            if padding.iter().any(|&b| b != 0) {
                return Err(bad("id map: block table padding is not zero".to_string()));
            }
            header
        };
        let words = header.layout.block_count.div_ceil(64);
        let verified = (0..words).map(|_| AtomicU64::new(0)).collect();
        let backing = Backing::Shared { source, offset, len };
        Ok(IdMap {
            inner: Arc::new(Inner {
                sections: locate_body(&backing, &header.layout),
                backing,
                layout: header.layout,
                digest: header.digest,
                verified,
                verified_blocks: AtomicUsize::new(0),
                // A map with an empty body has no block to check.
                mode: AtomicU8::new(if header.layout.block_count == 0 {
                    READY
                } else {
                    CHECKING
                }),
                reason: OnceLock::new(),
            }),
        })
    }

    /// Reads a map from a copy of its region bytes (the format of FORMAT.md
    /// 2.5, as [`IdMap::region_len`] bytes), checking everything
    /// ([`verify`](IdMap::verify)) before it returns: for bytes that come
    /// from outside, such as a remote store.
    ///
    /// Errors: [`Error::Corrupt`] (with an empty path) naming the first
    /// failed check.
    ///
    /// Cost: one copy of the bytes, then O(len) for the checks.
    ///
    /// ```
    /// use scopecache::IdMap;
    /// let map = IdMap::from_ids(["a", "b"])?;
    /// # let bytes = scopecache::idmap::region_bytes_of(&map).to_vec();
    /// let copy = IdMap::from_region_bytes(&bytes)?;
    /// assert_eq!(copy.digest(), map.digest());
    /// assert!(IdMap::from_region_bytes(&bytes[..64]).is_err());
    /// # Ok::<(), scopecache::Error>(())
    /// ```
    pub fn from_region_bytes(bytes: &[u8]) -> Result<IdMap> {
        let mut buf = AlignedBuf::zeroed(bytes.len());
        buf.as_bytes_mut().copy_from_slice(bytes);
        IdMap::from_buf(buf)
    }

    /// Like [`IdMap::from_buf`] but with the checks of `open` alone (header
    /// and block table); body blocks are checked as lookups first read them.
    #[cfg(feature = "remote")]
    pub(crate) fn from_buf_unverified(buf: AlignedBuf) -> Result<IdMap> {
        let len = buf.as_bytes().len();
        IdMap::open(Arc::new(buf), 0, len)
    }

    /// [`IdMap::from_region_bytes`] of a buffer the caller filled.
    pub(crate) fn from_buf(buf: AlignedBuf) -> Result<IdMap> {
        let len = buf.as_bytes().len();
        let map = IdMap::open(Arc::new(buf), 0, len)?;
        map.verify()?;
        Ok(map)
    }

    /// The number of ids, N. O(1).
    ///
    /// ```
    /// let map = scopecache::IdMap::from_ids(["a", "b"])?;
    /// assert_eq!(map.len(), 2);
    /// # Ok::<(), scopecache::Error>(())
    /// ```
    pub fn len(&self) -> usize {
        self.inner.layout.count
    }

    /// True when the map holds no ids. O(1).
    ///
    /// ```
    /// let map = scopecache::IdMap::from_ids(Vec::<String>::new())?;
    /// assert!(map.is_empty());
    /// # Ok::<(), scopecache::Error>(())
    /// ```
    pub fn is_empty(&self) -> bool {
        self.inner.layout.count == 0
    }

    /// The content digest: xxh3-128 of the body, read from the header.
    ///
    /// Two maps with the same ids in the same order have the same digest, so
    /// it identifies the mapping. It is computed once when the map is built
    /// and never recomputed here ([`verify`](IdMap::verify) does compare it).
    /// O(1).
    ///
    /// ```
    /// use scopecache::IdMap;
    /// let a = IdMap::from_ids(["x", "y"])?;
    /// let b = IdMap::from_ids(vec!["x".to_string(), "y".to_string()])?;
    /// let c = IdMap::from_ids(["y", "x"])?;
    /// assert_eq!(a.digest(), b.digest());
    /// assert_ne!(a.digest(), c.digest());
    /// # Ok::<(), scopecache::Error>(())
    /// ```
    pub fn digest(&self) -> u128 {
        self.inner.digest
    }

    /// Bytes in the region: header, block table and body. O(1).
    ///
    /// ```
    /// let map = scopecache::IdMap::from_ids(["a"])?;
    /// assert_eq!(map.region_len() % 64, 0);
    /// # Ok::<(), scopecache::Error>(())
    /// ```
    pub fn region_len(&self) -> u64 {
        self.inner.layout.region_len as u64
    }

    /// True once any check on this map has failed in this process; from then
    /// on every lookup answers `None` (or `Err` from the `try_` methods).
    /// Maps built by [`from_ids`](IdMap::from_ids) are never corrupt. O(1).
    ///
    /// ```
    /// let map = scopecache::IdMap::from_ids(["a"])?;
    /// assert!(!map.is_corrupt());
    /// # Ok::<(), scopecache::Error>(())
    /// ```
    pub fn is_corrupt(&self) -> bool {
        self.inner.mode.load(Ordering::Relaxed) == CORRUPT
    }

    /// The whole region, exactly the bytes to write to the cache file.
    ///
    /// For an opened map whose source misbehaves (returns a shorter slice
    /// than it did at open time) this is empty.
    #[cfg_attr(not(test), allow(dead_code, reason = "called by the cache file writer"))]
    pub(crate) fn region_bytes(&self) -> &[u8] {
        self.inner.backing.region()
    }
}

/// The region bytes of `map`, exactly as stored in a cache file (FORMAT.md
/// 2.5): what [`IdMap::from_region_bytes`] reads back. Zero-copy.
pub fn region_bytes_of(map: &IdMap) -> &[u8] {
    map.region_bytes()
}

impl std::fmt::Debug for IdMap {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IdMap")
            .field("len", &self.len())
            .field("region_len", &self.region_len())
            .field("digest", &format_args!("{:032x}", self.digest()))
            .field("corrupt", &self.is_corrupt())
            .finish()
    }
}
