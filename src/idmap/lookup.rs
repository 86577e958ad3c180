//! Reading an id map: lookups by id and by position, batches, iteration.
//!
//! Every read goes through a bounds-checked `get`, and every value read is
//! checked before it is used. Until the map is ready (every body block has
//! passed its CRC), every byte range is also passed to [`Inner::ensure`]
//! before its bytes are trusted, so that a damaged block is caught by its
//! CRC rather than giving a wrong answer; the `CHECK` parameter of the read
//! functions chooses between the two paths.

use std::iter::FusedIterator;

use xxhash_rust::xxh3::xxh3_64;

use super::layout::home_slot;
use super::sections::Sections;
use super::{Fault, IdMap, Inner};
use crate::{Error, Result};

/// Index bits of a narrow slot.
const NARROW_INDEX_MASK: u64 = 0x00FF_FFFF;
/// Index bits of a wide slot.
const WIDE_INDEX_MASK: u64 = 0xFFFF_FFFF;

/// The slot value that stores position `i` for hash `h`. `i + 1` must fit
/// the index bits, which the writer guarantees by choosing the width.
#[inline(always)]
pub(crate) fn slot_value<const WIDE: bool>(h: u64, i: usize) -> u64 {
    if WIDE {
        ((h & 0xFFFF_FFFF) << 32) | (i as u64 + 1)
    } else {
        ((h & 0xFF) << 24) | (i as u64 + 1)
    }
}

/// The fingerprint bits of a slot value, in place.
#[inline(always)]
pub(crate) fn fingerprint<const WIDE: bool>(v: u64) -> u64 {
    if WIDE {
        v & !WIDE_INDEX_MASK
    } else {
        v & !NARROW_INDEX_MASK
    }
}

/// `i + 1` as stored in a slot value.
#[inline(always)]
pub(crate) fn stored_index<const WIDE: bool>(v: u64) -> u64 {
    if WIDE {
        v & WIDE_INDEX_MASK
    } else {
        v & NARROW_INDEX_MASK
    }
}

#[inline(always)]
pub(crate) fn read_u32(bytes: &[u8], pos: usize) -> Option<u32> {
    Some(u32::from_le_bytes(*bytes.get(pos..)?.first_chunk::<4>()?))
}

#[inline(always)]
pub(crate) fn read_u64(bytes: &[u8], pos: usize) -> Option<u64> {
    Some(u64::from_le_bytes(*bytes.get(pos..)?.first_chunk::<8>()?))
}

/// Asks the CPU to start loading the cache line holding `bytes[pos]`. Does
/// nothing if `pos` is out of range or the target has no prefetch hint.
#[inline(always)]
pub(crate) fn prefetch(bytes: &[u8], pos: usize) {
    #[cfg(target_arch = "x86_64")]
    if let Some(b) = bytes.get(pos) {
        use core::arch::x86_64::{_mm_prefetch, _MM_HINT_T0};
        // SAFETY: a prefetch is a hint: it never faults, never changes
        // memory, and needs only the SSE feature that every x86_64 target
        // has. The pointer is in bounds of a live slice besides.
        unsafe { _mm_prefetch::<_MM_HINT_T0>(std::ptr::from_ref(b).cast::<i8>()) };
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = (bytes, pos);
}

/// Whether every byte of `b` is below 0x80: as `<[u8]>::is_ascii`, in a
/// few loads rather than a byte loop for the short strings ids usually
/// are. For 1 to 16 bytes the first and the last word of the widest size
/// that fits overlap, and between them cover every byte.
#[inline(always)]
pub(super) fn is_ascii(b: &[u8]) -> bool {
    const HIGH8: u64 = 0x8080_8080_8080_8080;
    const HIGH4: u32 = 0x8080_8080;
    if let (Some(first), Some(last)) = (b.first_chunk::<8>(), b.last_chunk::<8>()) {
        if b.len() <= 16 {
            return (u64::from_le_bytes(*first) | u64::from_le_bytes(*last)) & HIGH8 == 0;
        }
        return b.is_ascii();
    }
    if let (Some(first), Some(last)) = (b.first_chunk::<4>(), b.last_chunk::<4>()) {
        return (u32::from_le_bytes(*first) | u32::from_le_bytes(*last)) & HIGH4 == 0;
    }
    // 0 to 3 bytes: the first, middle and last byte are all of them.
    match (b.first(), b.get(b.len() / 2), b.last()) {
        (Some(x), Some(y), Some(z)) => (x | y | z) & 0x80 == 0,
        _ => true,
    }
}

/// Whether `a` and `b` hold the same bytes: as `a == b`, without a call to
/// `memcmp` for the 8 to 32 bytes ids usually are. The first and the last
/// word of the widest size that fits overlap, and between them cover every
/// byte.
#[inline(always)]
pub(super) fn same_bytes(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let ends = if a.len() <= 16 {
        same_ends::<8>(a, b)
    } else if a.len() <= 32 {
        same_ends::<16>(a, b)
    } else {
        None
    };
    ends.unwrap_or_else(|| a == b)
}

/// Whether the first `N` and the last `N` bytes of `a` and `b` agree, or
/// `None` if either is shorter than `N`.
#[inline(always)]
fn same_ends<const N: usize>(a: &[u8], b: &[u8]) -> Option<bool> {
    let first = a.first_chunk::<N>()? == b.first_chunk::<N>()?;
    let last = a.last_chunk::<N>()? == b.last_chunk::<N>()?;
    Some(first & last)
}

/// Slots a batch lookup prefetches from the home slot: the expected probe
/// count at load 0.8 is about 3, and runs longer than this are rare.
const WINDOW: usize = 8;

/// Keys a batch carries through each stage together: hash and prefetch
/// the home slots of all, then read their slots and prefetch the offsets,
/// then read the offsets and prefetch the strings (their first and last
/// byte: one id in five of 13 bytes crosses a cache line, and prefetching
/// its end measured 10-15% faster per id on 4M- and 8M-id maps), then
/// compare them all.
/// Each stage is a short loop, so the CPU keeps many misses in flight
/// (32 measured 10-20% faster per id than 16 on a 4M-id map; 64 no better).
const GROUP: usize = 32;

impl Inner {
    /// Reads slot `p`, after checking its block if `CHECK`.
    #[inline(always)]
    fn slot<const WIDE: bool, const CHECK: bool>(&self, b: &Sections<'_>, p: usize) -> Result<u64, Fault> {
        if CHECK {
            let w = self.layout.slot_width();
            // Cannot overflow: p < slot_count and the slot section fits in the body.
            let pos = self.layout.slots_start + p * w;
            self.ensure(b.body, pos, pos + w)?;
        }
        b.slot::<WIDE>(p)
            .ok_or_else(|| self.fault(|| format!("id map: slot {p} lies outside the body")))
    }

    /// The bytes of id `i`, which must be below the count, after checking
    /// the blocks of its offsets and its bytes if `CHECK`.
    #[inline(always)]
    pub(super) fn id_bytes<'a, const CHECK: bool>(
        &self,
        b: &Sections<'a>,
        i: usize,
    ) -> Result<&'a [u8], Fault> {
        let l = &self.layout;
        if CHECK {
            let w = l.offset_width();
            // Cannot overflow: i < count and the offsets section holds count + 1 entries.
            self.ensure(b.body, i * w, (i + 2) * w)?;
        }
        let Some((a, bytes)) = b.id(i) else {
            return Err(self.fault(|| {
                format!(
                    "id map: offsets of id {i} are {:?}, not an ordered pair within {} string bytes",
                    b.offsets(i),
                    l.strings_len
                )
            }));
        };
        if CHECK {
            // Cannot overflow: the id lies inside the strings, inside the body.
            let start = l.strings_start + a;
            self.ensure(b.body, start, start + bytes.len())?;
        }
        Ok(bytes)
    }

    /// The id at position `index`, `None` if it is not below the count;
    /// `ready` as [`Inner::view`] gave it.
    ///
    /// An ASCII id (the usual case) is taken after one word-wise ASCII
    /// test; any other goes through the full UTF-8 check, which for short
    /// ids costs more than reading them.
    #[inline(always)]
    pub(super) fn id_str<'a>(
        &self,
        body: &Sections<'a>,
        ready: bool,
        index: u32,
    ) -> Result<Option<&'a str>, Fault> {
        let i = index as usize;
        if i >= self.layout.count {
            return Ok(None);
        }
        let bytes = if ready {
            self.id_bytes::<false>(body, i)?
        } else {
            self.id_bytes::<true>(body, i)?
        };
        if is_ascii(bytes) {
            // SAFETY: every byte is below 0x80, and a sequence of ASCII
            // bytes is valid UTF-8, whatever the file holds.
            return Ok(Some(unsafe { std::str::from_utf8_unchecked(bytes) }));
        }
        match std::str::from_utf8(bytes) {
            Ok(s) => Ok(Some(s)),
            Err(e) => Err(self.fault(|| format!("id map: id {i} is not valid UTF-8: {e}"))),
        }
    }

    /// The position of the id with bytes `key` and hash `h`.
    ///
    /// A plain probe loop: fewest instructions per lookup, so that the CPU
    /// keeps the misses of consecutive lookups in flight together. (Scanning
    /// a window of 8 slots with bit masks instead, to avoid branches, cost
    /// 15% more per lookup on a mapped 4M-id map.)
    ///
    /// Probes at most `S` slots, so that a table with no empty slot, which
    /// only a damaged file can hold, still ends the loop.
    #[inline(always)]
    fn find_in<const WIDE: bool, const CHECK: bool>(
        &self,
        body: &Sections<'_>,
        key: &[u8],
        h: u64,
    ) -> Result<Option<u32>, Fault> {
        let s = self.layout.slot_count;
        if s == 0 {
            return Ok(None);
        }
        let want = fingerprint::<WIDE>(slot_value::<WIDE>(h, 0));
        let mut p = home_slot(h, s);
        for _ in 0..s {
            let v = self.slot::<WIDE, CHECK>(body, p)?;
            if v == 0 {
                return Ok(None);
            }
            if fingerprint::<WIDE>(v) == want {
                let i = self.index_in(v, stored_index::<WIDE>(v))?;
                if same_bytes(self.id_bytes::<CHECK>(body, i)?, key) {
                    return Ok(Some(i as u32));
                }
            }
            p += 1;
            if p == s {
                p = 0;
            }
        }
        Err(self.fault(|| "id map: slot table has no empty slot".to_string()))
    }

    /// The position stored in slot value `v`, checked against the count.
    #[inline(always)]
    fn index_in(&self, v: u64, stored: u64) -> Result<usize, Fault> {
        match stored.checked_sub(1) {
            Some(i) if i < self.layout.count as u64 => Ok(i as usize),
            _ => {
                Err(self.fault(|| format!("id map: slot value {v:#x} names no id of {}", self.layout.count)))
            }
        }
    }

    /// The position of the id with bytes `key` and hash `h`; `ready` as
    /// [`Inner::view`] gave it.
    #[inline(always)]
    pub(super) fn find(
        &self,
        body: &Sections<'_>,
        ready: bool,
        key: &[u8],
        h: u64,
    ) -> Result<Option<u32>, Fault> {
        if ready && !self.layout.wide_slots {
            return self.find_in::<false, false>(body, key, h);
        }
        self.find_other(body, ready, key, h)
    }

    /// [`Inner::find`] for a map that is not ready or has wide slots: out
    /// of line, so that the common case inlines into its caller alone.
    #[inline(never)]
    fn find_other(&self, body: &Sections<'_>, ready: bool, key: &[u8], h: u64) -> Result<Option<u32>, Fault> {
        match (self.layout.wide_slots, ready) {
            (false, true) => self.find_in::<false, false>(body, key, h),
            (false, false) => self.find_in::<false, true>(body, key, h),
            (true, true) => self.find_in::<true, false>(body, key, h),
            (true, false) => self.find_in::<true, true>(body, key, h),
        }
    }

    /// Where the probe run of `h` leads, read without block checks: the
    /// first slot whose fingerprint matches (`Candidate`), an empty slot
    /// before any (`Absent`), or neither within [`WINDOW`] slots or a slot
    /// outside the body (`Unknown`). The batch uses it to choose what to
    /// prefetch and, for a ready map, as the answer once the candidate's
    /// id is compared; every other case goes through the full lookup.
    #[inline(always)]
    fn hint<const WIDE: bool>(&self, body: &Sections<'_>, h: u64) -> Hint {
        let l = &self.layout;
        let s = l.slot_count;
        if s == 0 {
            return Hint::Absent;
        }
        let want = fingerprint::<WIDE>(slot_value::<WIDE>(h, 0));
        let mut p = home_slot(h, s);
        for _ in 0..WINDOW {
            match body.slot::<WIDE>(p) {
                None => return Hint::Unknown,
                Some(0) => return Hint::Absent,
                Some(v) if fingerprint::<WIDE>(v) == want => {
                    return match stored_index::<WIDE>(v).checked_sub(1) {
                        Some(i) if i < l.count as u64 => Hint::Candidate(i as usize),
                        _ => Hint::Unknown,
                    };
                }
                Some(_) => {}
            }
            p += 1;
            if p == s {
                p = 0;
            }
        }
        Hint::Unknown
    }

    /// Looks up `count` keys, calling `emit(k, position)` in key order.
    ///
    /// Keys go through in groups of `GROUP` so that the memory misses of a
    /// group overlap; see `GROUP`.
    pub(super) fn find_batch<'k, K, E>(
        &self,
        body: &Sections<'_>,
        ready: bool,
        count: usize,
        key: K,
        mut emit: E,
    ) -> Result<(), Fault>
    where
        K: Fn(usize) -> Result<&'k [u8], Fault>,
        E: FnMut(usize, Option<u32>) -> Result<(), Fault>,
    {
        match (self.layout.wide_slots, ready) {
            (false, true) => self.find_batch_in::<false, false, K, E>(body, count, key, &mut emit),
            (false, false) => self.find_batch_in::<false, true, K, E>(body, count, key, &mut emit),
            (true, true) => self.find_batch_in::<true, false, K, E>(body, count, key, &mut emit),
            (true, false) => self.find_batch_in::<true, true, K, E>(body, count, key, &mut emit),
        }
    }

    #[inline(always)]
    fn find_batch_in<'k, const WIDE: bool, const CHECK: bool, K, E>(
        &self,
        body: &Sections<'_>,
        count: usize,
        key: K,
        emit: &mut E,
    ) -> Result<(), Fault>
    where
        K: Fn(usize) -> Result<&'k [u8], Fault>,
        E: FnMut(usize, Option<u32>) -> Result<(), Fault>,
    {
        let l = &self.layout;
        let sw = l.slot_width();
        let ow = l.offset_width();
        let mut hashes = [0u64; GROUP];
        let mut keys: [&[u8]; GROUP] = [&[]; GROUP];
        let mut hints = [Hint::Unknown; GROUP];
        let mut ids = [None::<&[u8]>; GROUP];
        let mut first = 0;
        while first < count {
            let group = (count - first).min(GROUP);
            // Each stage walks the group's arrays together, so that no
            // access needs a bounds check.
            let (hashes, keys) = (&mut hashes[..group], &mut keys[..group]);
            let (hints, ids) = (&mut hints[..group], &mut ids[..group]);
            for ((h, bytes), k) in hashes.iter_mut().zip(keys.iter_mut()).zip(first..) {
                *bytes = key(k)?;
                *h = xxh3_64(bytes);
                if l.slot_count > 0 {
                    let pos = l.slots_start + home_slot(*h, l.slot_count) * sw;
                    prefetch(body.body, pos);
                    prefetch(body.body, pos + WINDOW * sw - 1);
                }
            }
            for (hint, &h) in hints.iter_mut().zip(hashes.iter()) {
                *hint = self.hint::<WIDE>(body, h);
                if let Hint::Candidate(c) = *hint {
                    prefetch(body.body, c * ow);
                }
            }
            for (id, &hint) in ids.iter_mut().zip(hints.iter()) {
                // Read without block checks, as for the hint: offsets that
                // are not an ordered pair within the strings are left to
                // the full lookup.
                *id = match hint {
                    Hint::Candidate(c) => body.id(c).map(|(_, id)| id),
                    _ => None,
                };
                if let Some(id) = *id {
                    prefetch(id, 0);
                    prefetch(id, id.len().saturating_sub(1));
                }
            }
            let stages = hints.iter().zip(ids.iter()).zip(keys.iter().zip(hashes.iter()));
            for (((&hint, &id), (&bytes, &h)), k) in stages.zip(first..) {
                // A ready map's hint is the answer when it is definite:
                // these are the slots and offsets the full lookup would
                // read first, in the same order. A checking map, a
                // fingerprint that matched another id, or a long run take
                // the full lookup.
                let quick = match (CHECK, hint, id) {
                    (false, Hint::Absent, _) => Some(None),
                    (false, Hint::Candidate(c), Some(id)) if same_bytes(id, bytes) => Some(Some(c as u32)),
                    _ => None,
                };
                let found = match quick {
                    Some(found) => found,
                    None => self.find_in::<WIDE, CHECK>(body, bytes, h)?,
                };
                emit(k, found)?;
            }
            first += group;
        }
        Ok(())
    }
}

/// What [`Inner::hint`] found along a probe run.
#[derive(Clone, Copy, Debug)]
enum Hint {
    /// An empty slot came before any slot with a matching fingerprint.
    Absent,
    /// The position named by the first slot with a matching fingerprint.
    Candidate(usize),
    /// Neither within the window.
    Unknown,
}

impl IdMap {
    /// The position of `id`, or `None` if it is absent or the map was found
    /// corrupt (see [`try_index_of`](IdMap::try_index_of) to tell the two
    /// apart; a failed check is logged once).
    ///
    /// Cost: one xxh3 hash of `id`, then on average about 3 slot probes
    /// (load factor 0.8), usually inside one cache line, and one string
    /// comparison; fingerprints make false string reads rare (1 in 256 per
    /// probe with narrow slots). No allocation.
    ///
    /// ```
    /// let map = scopecache::IdMap::from_ids(["a", "b"])?;
    /// assert_eq!(map.index_of("b"), Some(1));
    /// assert_eq!(map.index_of("c"), None);
    /// # Ok::<(), scopecache::Error>(())
    /// ```
    #[inline]
    pub fn index_of(&self, id: &str) -> Option<u32> {
        let inner = &*self.inner;
        let (body, ready) = inner.view().ok()?;
        inner
            .find(body, ready, id.as_bytes(), xxh3_64(id.as_bytes()))
            .ok()
            .flatten()
    }

    /// The position of `id`: `Ok(None)` if it is absent, and
    /// [`Error::Corrupt`] if a check on the bytes read failed, now or
    /// earlier. Cost as [`index_of`](IdMap::index_of).
    ///
    /// ```
    /// let map = scopecache::IdMap::from_ids(["a", "b"])?;
    /// assert_eq!(map.try_index_of("a")?, Some(0));
    /// assert_eq!(map.try_index_of("z")?, None);
    /// # Ok::<(), scopecache::Error>(())
    /// ```
    pub fn try_index_of(&self, id: &str) -> Result<Option<u32>> {
        let inner = &*self.inner;
        inner
            .view()
            .and_then(|(body, ready)| inner.find(body, ready, id.as_bytes(), xxh3_64(id.as_bytes())))
            .map_err(|Fault| inner.error())
    }

    /// The id at position `index`, or `None` if `index >= len()` or the map
    /// was found corrupt (see [`try_id`](IdMap::try_id)).
    ///
    /// Cost: two reads (the offsets pair, usually one cache line, then the
    /// string) and a UTF-8 check of the id. No allocation.
    ///
    /// ```
    /// let map = scopecache::IdMap::from_ids(["a", "b"])?;
    /// assert_eq!(map.id(0), Some("a"));
    /// assert_eq!(map.id(2), None);
    /// # Ok::<(), scopecache::Error>(())
    /// ```
    #[inline]
    pub fn id(&self, index: u32) -> Option<&str> {
        let inner = &*self.inner;
        let (body, ready) = inner.view().ok()?;
        inner.id_str(body, ready, index).ok().flatten()
    }

    /// The id at position `index`: `Ok(None)` if `index >= len()`, and
    /// [`Error::Corrupt`] if a check failed, now or earlier, including an id
    /// that is not valid UTF-8. Cost as [`id`](IdMap::id).
    ///
    /// ```
    /// let map = scopecache::IdMap::from_ids(["a", "é"])?;
    /// assert_eq!(map.try_id(1)?, Some("é"));
    /// assert_eq!(map.try_id(7)?, None);
    /// # Ok::<(), scopecache::Error>(())
    /// ```
    pub fn try_id(&self, index: u32) -> Result<Option<&str>> {
        let inner = &*self.inner;
        inner
            .view()
            .and_then(|(body, ready)| inner.id_str(body, ready, index))
            .map_err(|Fault| inner.error())
    }

    /// Looks up many ids at once: `out[k]` becomes the position of `ids[k]`,
    /// or `None` if it is absent.
    ///
    /// Faster per id than calling [`index_of`](IdMap::index_of) in a loop,
    /// because the memory misses of up to 32 consecutive ids overlap: ids
    /// are hashed and their slots prefetched ahead of the lookups.
    ///
    /// Errors: [`Error::BatchLength`] if the two slices differ in length, in which case `out` is left untouched; and
    /// [`Error::Corrupt`] if a check failed, in which case the contents of
    /// `out` are unspecified.
    ///
    /// Cost: as many lookups, without allocation.
    ///
    /// ```
    /// let map = scopecache::IdMap::from_ids(["a", "b", "c"])?;
    /// let mut out = [None; 3];
    /// map.index_of_batch(&["c", "x", "a"], &mut out)?;
    /// assert_eq!(out, [Some(2), None, Some(0)]);
    /// # Ok::<(), scopecache::Error>(())
    /// ```
    pub fn index_of_batch<S: AsRef<str>>(&self, ids: &[S], out: &mut [Option<u32>]) -> Result<()> {
        if ids.len() != out.len() {
            return Err(Error::BatchLength {
                ids: ids.len(),
                out: out.len(),
            });
        }
        let inner = &*self.inner;
        inner
            .view()
            .and_then(|(body, ready)| {
                inner.find_batch(
                    body,
                    ready,
                    ids.len(),
                    |k| Ok(ids.get(k).map_or(&[][..], |s| s.as_ref().as_bytes())),
                    |k, found| {
                        if let Some(slot) = out.get_mut(k) {
                            *slot = found;
                        }
                        Ok(())
                    },
                )
            })
            .map_err(|Fault| inner.error())
    }

    /// The ids in position order, each as `Ok(id)`, or `Err` for an id whose
    /// check failed.
    ///
    /// The iterator always yields exactly [`len`](IdMap::len) items; once the
    /// map is found corrupt, every later item is `Err`, so collecting into a
    /// `Result<Vec<_>>` stops at the first failure.
    ///
    /// Cost: O(1) to create; each step costs as [`try_id`](IdMap::try_id),
    /// with sequential, cache-friendly reads.
    ///
    /// ```
    /// let map = scopecache::IdMap::from_ids(["a", "b"])?;
    /// let ids: Vec<&str> = map.iter().collect::<Result<_, _>>()?;
    /// assert_eq!(ids, ["a", "b"]);
    /// # Ok::<(), scopecache::Error>(())
    /// ```
    pub fn iter(&self) -> IdIter<'_> {
        IdIter {
            map: self,
            next: 0,
            end: self.inner.layout.count,
        }
    }
}

/// The ids of an [`IdMap`] in position order; see [`IdMap::iter`].
///
/// Invariant: yields exactly `len()` items, each `Ok(id)` or, for an id
/// whose check failed or any id after that, `Err(Error::Corrupt)`.
///
/// ```
/// let map = scopecache::IdMap::from_ids(["a", "b", "c"])?;
/// let mut it = map.iter();
/// assert_eq!(it.len(), 3);
/// assert_eq!(it.next_back().transpose()?, Some("c"));
/// # Ok::<(), scopecache::Error>(())
/// ```
#[derive(Clone, Debug)]
pub struct IdIter<'a> {
    map: &'a IdMap,
    next: usize,
    end: usize,
}

impl<'a> IdIter<'a> {
    fn item(&self, i: usize) -> Result<&'a str> {
        let map: &'a IdMap = self.map;
        match map.try_id(i as u32) {
            Ok(Some(s)) => Ok(s),
            Ok(None) => Err(map.inner.error()),
            Err(e) => Err(e),
        }
    }
}

impl<'a> Iterator for IdIter<'a> {
    type Item = Result<&'a str>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.next >= self.end {
            return None;
        }
        let i = self.next;
        self.next += 1;
        Some(self.item(i))
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let n = self.end - self.next;
        (n, Some(n))
    }
}

impl DoubleEndedIterator for IdIter<'_> {
    fn next_back(&mut self) -> Option<Self::Item> {
        if self.next >= self.end {
            return None;
        }
        self.end -= 1;
        Some(self.item(self.end))
    }
}

impl ExactSizeIterator for IdIter<'_> {}
impl FusedIterator for IdIter<'_> {}
