//! The slot fill: where each id goes in the slot table, without a random
//! write per id.
//!
//! # The placement
//!
//! The ids are ordered by (home slot, index), both ascending, and walked in
//! that order with a cursor `next`, at first 0: each id goes to slot
//! `max(home, next)`, and `next` becomes that slot + 1. An id whose slot so
//! computed is S or more *wraps*: the wrapped ids, which are the last ones
//! of the order, are placed afterwards, in that order, each in the
//! lowest-numbered slot still empty.
//!
//! Every id is then found by linear probing: the slots from its home to its
//! own are all occupied (each id sits right after its predecessor unless it
//! sits at its home), and for a wrapped id the slots from its home to S - 1
//! and from 0 to its own are occupied. The placement is a function of the
//! ids and their order alone, so equal id lists give equal regions.
//!
//! # How it is computed
//!
//! Home slots are grouped into buckets of [`BUCKET_SLOTS`] consecutive
//! slots.
//!
//! 1. Hash every id and count the ids of each bucket (in parallel over
//!    index ranges).
//! 2. Scatter the ids into bucket order (in parallel over the same ranges,
//!    each range writing behind the earlier ranges' share of each bucket, so
//!    that a bucket holds its ids in index order). An id is stored as its
//!    slot value, in the first N cells of the slot section itself, and its
//!    home slot relative to its bucket in a `u16` array.
//! 3. Sort each bucket in place by home slot with a counting sort in the
//!    cache (stable, so index order among equal homes), look for
//!    duplicates among equal homes, and note where the bucket's run of
//!    slots would end if it started empty (in parallel over bucket ranges).
//!    From these ends, the cursor at the start of each bucket.
//! 4. From the last bucket to the first: copy the bucket out of its cells
//!    and write its slots. This works in place because the id of rank `k`
//!    in the order goes to a slot of at least `k`: a bucket's slots lie at
//!    or above its own cells, which it has read, so above the cells of
//!    every bucket still to come, and below the slots of the buckets already
//!    placed.
//!
//! Memory beyond the region: 2 bytes per id for the home slots, a counter
//! per bucket and thread, and a bucket's worth of scratch (about 10 bytes
//! per id of the bucket and 4 per slot). No random write goes to memory
//! larger than a bucket's working set.

use std::ops::Range;
use std::sync::Mutex;

use xxhash_rust::xxh3::xxh3_64;

use super::super::layout::{home_slot, Layout};
use super::super::lookup::{fingerprint, slot_value, stored_index};
use super::Ids;
use crate::source::advise_huge_pages;
use crate::{Error, Result};

/// log2 of [`BUCKET_SLOTS`].
const BUCKET_SHIFT: u32 = 15;
/// Home slots per bucket. At load 0.8 a bucket holds about 26,000 ids, so
/// that a bucket's cells, home slots, scratch and counters (some 500 KB)
/// stay in the core's cache while it is sorted, and the scatter writes to
/// few enough streams (two per bucket, about 300 for 8 million ids) for
/// their lines to stay cached. Must be at most 2^16, as relative home slots
/// are `u16`. (2^12 to 2^16 measured alike within noise on 4 and 8 million
/// ids; smaller buckets mean more streams, larger ones more cache.)
pub(in crate::idmap) const BUCKET_SLOTS: usize = 1 << BUCKET_SHIFT;
/// Most threads the fill uses.
const MAX_THREADS: usize = 4;
/// Maps with fewer ids are filled on the calling thread: starting a thread
/// costs more than hashing this many ids.
const PARALLEL_MIN: usize = 1 << 16;
/// Runs of equal home slots up to this long are searched for duplicates by
/// comparing every pair; longer ones, which only colliding hashes make, by
/// sorting.
const PAIRWISE_MAX: usize = 16;

/// Fills the slot section (all zero on entry) with the placement of the
/// module docs, or reports the first duplicate id: the one with the lowest
/// index that equals an earlier id, with that id's first position.
///
/// Cost: two hash passes over the ids and a few sequential passes over the
/// slot section, on up to [`MAX_THREADS`] threads from [`PARALLEL_MIN`] ids.
pub(super) fn fill_slots<const WIDE: bool>(layout: &Layout, ids: &Ids<'_>, slots: &mut [u8]) -> Result<()> {
    let n = layout.count;
    let s = layout.slot_count;
    if n == 0 {
        return Ok(());
    }
    let w = if WIDE { 8 } else { 4 };
    let buckets = ((s - 1) >> BUCKET_SHIFT) + 1;
    let threads = thread_count(n);
    let ranges: Vec<Range<usize>> = (0..threads)
        .map(|t| share(n, t, threads)..share(n, t + 1, threads))
        .collect();

    // 1. Count.
    let counts = in_parallel(ranges.clone(), |r| count_buckets(ids, r, s, buckets))?;
    let mut starts = Vec::with_capacity(buckets + 1);
    let mut total = 0usize;
    for b in 0..buckets {
        starts.push(total);
        total += counts.iter().map(|c| c[b] as usize).sum::<usize>();
    }
    starts.push(total);
    if total != n {
        return Err(internal(format!("{total} ids counted of {n}")));
    }

    // 2. Scatter into the first N cells of the slot section.
    let mut homes = vec![0u16; n];
    advise_huge_pages(homes.as_ptr().cast(), n * 2);
    {
        let mut outs: Vec<Vec<Out<'_>>> = (0..threads).map(|_| Vec::with_capacity(buckets)).collect();
        let mut cells: &mut [u8] = slots;
        let mut rest: &mut [u16] = &mut homes;
        for b in 0..buckets {
            for (out, count) in outs.iter_mut().zip(&counts) {
                let m = count.get(b).map_or(0, |&m| m as usize);
                let (c, cr) = split_off(&mut cells, m * w)?;
                let (h, hr) = split_off(&mut rest, m)?;
                (cells, rest) = (cr, hr);
                out.push(Out {
                    cells: c,
                    homes: h,
                    fill: 0,
                });
            }
        }
        let jobs: Vec<_> = ranges.into_iter().zip(outs).collect();
        for done in in_parallel(jobs, |(r, mut outs)| scatter::<WIDE>(ids, r, s, &mut outs))? {
            done?;
        }
    }

    // 3. Sort each bucket in place, look for duplicates, and find where its
    // run of slots would end if it started empty.
    let mut jobs = Vec::with_capacity(threads);
    {
        let mut cells: &mut [u8] = slots;
        let mut rest: &mut [u16] = &mut homes;
        let mut first = 0;
        for t in 0..threads {
            let last = if t + 1 == threads {
                buckets
            } else {
                starts
                    .partition_point(|&x| x < share(n, t + 1, threads))
                    .clamp(first, buckets)
            };
            let m = starts[last] - starts[first];
            let (c, cr) = split_off(&mut cells, m * w)?;
            let (h, hr) = split_off(&mut rest, m)?;
            (cells, rest) = (cr, hr);
            jobs.push((first..last, c, h));
            first = last;
        }
    }
    let mut run_ends = Vec::with_capacity(buckets);
    let mut duplicate: Option<(usize, usize)> = None;
    for (ends, dup) in in_parallel(jobs, |(range, c, h)| {
        sort_buckets::<WIDE>(ids, &starts, range, c, h, s)
    })? {
        run_ends.extend(ends);
        if let Some(d) = dup {
            if duplicate.is_none_or(|best| d.1 < best.1) {
                duplicate = Some(d);
            }
        }
    }
    if let Some((first, second)) = duplicate {
        return Err(Error::DuplicateId {
            id: String::from_utf8_lossy(ids.get(second)).into_owned(),
            first: first as u64,
            second: second as u64,
        });
    }
    if run_ends.len() != buckets {
        return Err(internal(format!(
            "{} run ends for {buckets} buckets",
            run_ends.len()
        )));
    }
    // The cursor at the start of each bucket: a bucket of m ids that starts
    // at cursor c ends at max(c + m, its run end when started empty).
    let mut next_at = Vec::with_capacity(buckets);
    let mut next = 0usize;
    for b in 0..buckets {
        next_at.push(next);
        next = (next + (starts[b + 1] - starts[b])).max(run_ends[b]);
    }

    // 4. Place, from the last bucket to the first. A bucket's slots lie at
    // or above its own cells (the id of rank k goes to a slot of at least
    // k), which it has copied out, and below the slots of the buckets
    // placed before it.
    let mut values: Vec<u64> = Vec::new();
    let mut wrapped: Vec<Vec<u64>> = Vec::new();
    for b in (0..buckets).rev() {
        let (start, end) = (starts[b], starts[b + 1]);
        if start == end {
            continue;
        }
        values.clear();
        values.extend((start..end).map(|k| cell::<WIDE>(slots, k)));
        slots[start * w..end * w].fill(0);
        let base = b << BUCKET_SHIFT;
        let mut next = next_at[b];
        let mut wrap = Vec::new();
        for (&v, &home) in values.iter().zip(&homes[start..end]) {
            let p = (base + usize::from(home)).max(next);
            next = p + 1;
            if p < s {
                set_cell::<WIDE>(slots, p, v);
            } else {
                wrap.push(v);
            }
        }
        if !wrap.is_empty() {
            wrapped.push(wrap);
        }
    }
    // The wrapped ids, in order (the buckets were placed last to first), each
    // into the lowest empty slot.
    let mut p = 0;
    for &v in wrapped.iter().rev().flatten() {
        while p < s && cell::<WIDE>(slots, p) != 0 {
            p += 1;
        }
        if p == s {
            return Err(internal("no empty slot for a wrapped id".to_string()));
        }
        set_cell::<WIDE>(slots, p, v);
    }
    Ok(())
}

/// Splits the first `len` entries off `rest`.
fn split_off<'a, T>(rest: &mut &'a mut [T], len: usize) -> Result<(&'a mut [T], &'a mut [T])> {
    std::mem::take(rest)
        .split_at_mut_checked(len)
        .ok_or_else(|| internal(format!("a bucket of {len} entries overruns its section")))
}

/// An error for a broken invariant of this module, which no input can cause.
fn internal(what: String) -> Error {
    Error::corrupt("", format!("id map: while building: {what}"))
}

/// How many threads to fill a map of `n` ids with.
fn thread_count(n: usize) -> usize {
    if n < PARALLEL_MIN {
        return 1;
    }
    std::thread::available_parallelism()
        .map_or(1, |p| p.get())
        .clamp(1, MAX_THREADS)
}

/// The start of part `t` of `parts` equal parts of `0..n`.
fn share(n: usize, t: usize, parts: usize) -> usize {
    // n <= u32::MAX and t <= parts <= MAX_THREADS, so the u64 product fits.
    ((n as u64 * t as u64) / parts as u64) as usize
}

/// Runs `work` on every item, the first on the calling thread and each
/// other on a thread of its own, and returns the results in item order. An
/// item whose thread cannot be started is worked on by the calling thread.
pub(super) fn in_parallel<I: Send, R: Send>(items: Vec<I>, work: impl Fn(I) -> R + Sync) -> Result<Vec<R>> {
    if items.len() <= 1 {
        return Ok(items.into_iter().map(work).collect());
    }
    let count = items.len();
    let cells: Vec<Mutex<Option<I>>> = items.into_iter().map(|i| Mutex::new(Some(i))).collect();
    let take = |k: usize| {
        cells
            .get(k)
            .and_then(|c| c.lock().ok())
            .and_then(|mut c| c.take())
    };
    let (work, take) = (&work, &take);
    let mut results: Vec<Option<R>> = std::thread::scope(|scope| {
        let handles: Vec<_> = (1..count)
            .map(|k| {
                std::thread::Builder::new()
                    .name("idmap-build".to_string())
                    .spawn_scoped(scope, move || take(k).map(work))
            })
            .collect();
        let mut results = vec![take(0).map(work)];
        for handle in handles {
            match handle {
                Ok(h) => results.push(h.join().unwrap_or_else(|panic| std::panic::resume_unwind(panic))),
                Err(e) => {
                    log::debug!("no thread for the id map build, working inline: {e}");
                    results.push(None);
                }
            }
        }
        results
    });
    for (k, r) in results.iter_mut().enumerate() {
        if r.is_none() {
            *r = take(k).map(work);
        }
    }
    results
        .into_iter()
        .map(|r| r.ok_or_else(|| internal("a part of the work went missing".to_string())))
        .collect()
}

/// Phase 1: the number of ids of `range` in each bucket.
fn count_buckets(ids: &Ids<'_>, range: Range<usize>, s: usize, buckets: usize) -> Vec<u32> {
    let mut counts = vec![0u32; buckets];
    for i in range {
        let b = home_slot(xxh3_64(ids.get(i)), s) >> BUCKET_SHIFT;
        if let Some(c) = counts.get_mut(b) {
            *c += 1;
        }
    }
    counts
}

/// Where one index range writes the ids of one bucket.
struct Out<'a> {
    cells: &'a mut [u8],
    homes: &'a mut [u16],
    fill: usize,
}

/// Phase 2: writes each id of `range` behind the ids already in its bucket.
fn scatter<const WIDE: bool>(
    ids: &Ids<'_>,
    range: Range<usize>,
    s: usize,
    outs: &mut [Out<'_>],
) -> Result<()> {
    for i in range {
        let h = xxh3_64(ids.get(i));
        let home = home_slot(h, s);
        let out = outs
            .get_mut(home >> BUCKET_SHIFT)
            .ok_or_else(|| internal(format!("home slot {home} of id {i} is past the buckets")))?;
        let k = out.fill;
        match out.homes.get_mut(k) {
            Some(slot) => *slot = (home & (BUCKET_SLOTS - 1)) as u16,
            None => return Err(internal(format!("bucket of id {i} is full"))),
        }
        set_cell::<WIDE>(out.cells, k, slot_value::<WIDE>(h, i));
        out.fill = k + 1;
    }
    Ok(())
}

/// Per-thread buffers for one bucket.
#[derive(Default)]
struct Scratch {
    values: Vec<u64>,
    homes: Vec<u16>,
    counts: Vec<u32>,
}

/// Phase 3 for the buckets of `range`, whose ids are in `cells` and
/// `homes`: sorts each bucket in place by home slot (stable, so index order
/// among equal homes), and returns for each the slot after its run of
/// slots when the run starts empty (0 for an empty bucket), with the first
/// duplicate found among them.
fn sort_buckets<const WIDE: bool>(
    ids: &Ids<'_>,
    starts: &[usize],
    range: Range<usize>,
    cells: &mut [u8],
    homes: &mut [u16],
    s: usize,
) -> (Vec<usize>, Option<(usize, usize)>) {
    let w = if WIDE { 8 } else { 4 };
    let mut scratch = Scratch::default();
    let mut ends = Vec::with_capacity(range.len());
    let mut duplicate: Option<(usize, usize)> = None;
    // The caller split `cells` and `homes` at these buckets' starts.
    let origin = starts[range.start];
    for b in range {
        let (start, end) = (starts[b] - origin, starts[b + 1] - origin);
        let (c, h) = (&mut cells[start * w..end * w], &mut homes[start..end]);
        sort_bucket::<WIDE>(c, h, &mut scratch, s);
        for (k, &v) in scratch.values.iter().enumerate() {
            set_cell::<WIDE>(c, k, v);
        }
        h.copy_from_slice(&scratch.homes);
        let base = b << BUCKET_SHIFT;
        let mut next = 0;
        for &home in h.iter() {
            next = (base + usize::from(home)).max(next) + 1;
        }
        ends.push(next);
        if let Some(d) = bucket_duplicate::<WIDE>(ids, &scratch.values, h) {
            if duplicate.is_none_or(|best| d.1 < best.1) {
                duplicate = Some(d);
            }
        }
    }
    (ends, duplicate)
}

/// Counting sort by home slot of one bucket, whose slot values are `cells`
/// and relative home slots `homes`, into `scratch.values` and
/// `scratch.homes`. Stable: ids of equal home stay in index order.
fn sort_bucket<const WIDE: bool>(cells: &[u8], homes: &[u16], scratch: &mut Scratch, s: usize) {
    let m = homes.len();
    let counts = &mut scratch.counts;
    counts.clear();
    counts.resize(BUCKET_SLOTS.min(s) + 1, 0);
    // Relative home slots are below min(BUCKET_SLOTS, S): in range.
    for &h in homes {
        counts[usize::from(h) + 1] += 1;
    }
    for k in 1..counts.len() {
        counts[k] += counts[k - 1];
    }
    scratch.values.clear();
    scratch.values.resize(m, 0);
    scratch.homes.clear();
    scratch.homes.resize(m, 0);
    for (k, &h) in homes.iter().enumerate() {
        let at = &mut counts[usize::from(h)];
        let d = *at as usize;
        *at += 1;
        scratch.values[d] = cell::<WIDE>(cells, k);
        scratch.homes[d] = h;
    }
}

/// The position of the id in slot value `v`.
#[inline(always)]
fn index_of<const WIDE: bool>(v: u64) -> usize {
    (stored_index::<WIDE>(v) - 1) as usize
}

/// The first duplicate among the sorted ids of one bucket: ids with equal
/// strings have equal hashes, so equal home slots and fingerprints.
///
/// Most ids share their home slot with no other id of equal fingerprint,
/// so each id is first compared, without branches, with the three before
/// it; only a match there, or a run of more than four equal home slots,
/// leads to a closer look.
fn bucket_duplicate<const WIDE: bool>(
    ids: &Ids<'_>,
    values: &[u64],
    homes: &[u16],
) -> Option<(usize, usize)> {
    let m = homes.len().min(values.len());
    let (homes, values) = (&homes[..m], &values[..m]);
    let fp = |k: usize| fingerprint::<WIDE>(values[k]);
    let mut best: Option<(usize, usize)> = None;
    let mut k = 1;
    while k < m {
        // `&` and `|`, not `&&` and `||`: no branch on the comparisons.
        let suspect = if k >= 4 {
            let (h, f) = (homes[k], fp(k));
            ((homes[k - 1] == h) & (fp(k - 1) == f))
                | ((homes[k - 2] == h) & (fp(k - 2) == f))
                | ((homes[k - 3] == h) & (fp(k - 3) == f))
                | (homes[k - 4] == h)
        } else {
            true
        };
        if !suspect {
            k += 1;
            continue;
        }
        // The run of equal home slots that holds id k.
        let h = homes[k];
        let r0 = homes[..k].iter().rposition(|&x| x != h).map_or(0, |p| p + 1);
        let r1 = homes[k..].iter().position(|&x| x != h).map_or(m, |p| k + p);
        let found = if r1 - r0 > PAIRWISE_MAX {
            let found = run_duplicate::<WIDE>(ids, &values[r0..r1]);
            k = r1;
            found
        } else {
            let later = values[k];
            let earlier = values[r0..k].iter().find(|&&e| same_id::<WIDE>(ids, e, later));
            k += 1;
            earlier.map(|&e| (index_of::<WIDE>(e), index_of::<WIDE>(later)))
        };
        if let Some(d) = found {
            if best.is_none_or(|b| d.1 < b.1) {
                best = Some(d);
            }
        }
    }
    best
}

/// Whether slot values `a` and `b` name equal ids.
#[inline]
fn same_id<const WIDE: bool>(ids: &Ids<'_>, a: u64, b: u64) -> bool {
    fingerprint::<WIDE>(a) == fingerprint::<WIDE>(b)
        && ids.get(index_of::<WIDE>(a)) == ids.get(index_of::<WIDE>(b))
}

/// The first duplicate among the ids of one long run of equal home slots,
/// given in index order: the pair (first position, second position) of the
/// id whose second occurrence comes first. Sorting the run by fingerprint,
/// bytes and index makes equal ids adjacent, so the cost is O(L log L)
/// comparisons for a run of L ids.
fn run_duplicate<const WIDE: bool>(ids: &Ids<'_>, run: &[u64]) -> Option<(usize, usize)> {
    let same = |a: u64, b: u64| same_id::<WIDE>(ids, a, b);
    let mut sorted = run.to_vec();
    sorted.sort_unstable_by(|&a, &b| {
        fingerprint::<WIDE>(a)
            .cmp(&fingerprint::<WIDE>(b))
            .then_with(|| ids.get(index_of::<WIDE>(a)).cmp(ids.get(index_of::<WIDE>(b))))
            .then_with(|| index_of::<WIDE>(a).cmp(&index_of::<WIDE>(b)))
    });
    // Equal strings are now adjacent, in index order: the first two of
    // each such class are its first and second occurrence.
    let mut best: Option<(usize, usize)> = None;
    let mut k = 0;
    while k < sorted.len() {
        let mut e = k + 1;
        while e < sorted.len() && same(sorted[k], sorted[e]) {
            e += 1;
        }
        if e - k >= 2 {
            let d = (index_of::<WIDE>(sorted[k]), index_of::<WIDE>(sorted[k + 1]));
            if best.is_none_or(|b| d.1 < b.1) {
                best = Some(d);
            }
        }
        k = e;
    }
    best
}

/// Slot value `k` of a slot section (or of the first N cells of one).
#[inline(always)]
fn cell<const WIDE: bool>(cells: &[u8], k: usize) -> u64 {
    if WIDE {
        let mut b = [0u8; 8];
        b.copy_from_slice(&cells[k * 8..k * 8 + 8]);
        u64::from_le_bytes(b)
    } else {
        let mut b = [0u8; 4];
        b.copy_from_slice(&cells[k * 4..k * 4 + 4]);
        u64::from(u32::from_le_bytes(b))
    }
}

#[inline(always)]
fn set_cell<const WIDE: bool>(cells: &mut [u8], k: usize, v: u64) {
    if WIDE {
        cells[k * 8..k * 8 + 8].copy_from_slice(&v.to_le_bytes());
    } else {
        cells[k * 4..k * 4 + 4].copy_from_slice(&(v as u32).to_le_bytes());
    }
}
