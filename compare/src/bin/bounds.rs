//! `scopecache-bounds`: what bounds the lookups of a stored scope on this
//! machine, measured side by side in one process.
//!
//! ```text
//! cargo run --release -p scopecache-compare -- --nodes 4000000 --links 8000000 --runs 1 --engines scopecache --skip-python --readers 0 --dir /var/tmp/cmp
//! scopecache-compare __child put scopecache /var/tmp/cmp 4000000 8000000   # or write the file once like this
//! cargo run --release -p scopecache-compare --bin scopecache-bounds -- /var/tmp/cmp 4000000 8000000 5
//! ```
//!
//! Reads `scopes.cache` in DIR (written by the comparison program's put of
//! the standard workload of NODES nodes and LINKS links), then, for ROUNDS
//! rounds, times one million random lookups of each kind through the
//! engine (`IdMap::index_of`, `IdMap::id`, `IdMap::index_of_batch`), and the
//! same lookups by a *plain loop*: the probe of FORMAT.md §2.5 over the same
//! mapped bytes, written directly against the format, which checks the map
//! once up front and then reads without bounds checks or any of the
//! engine's integrity bookkeeping. It prints the median of
//! each, and then the two figures of the machine that bound them:
//! independent random cache-line reads over the mapped file (the memory
//! parallelism a batch can reach) and dependent ones (the latency of one
//! miss).
//!
//! Only narrow maps (fewer than 2^24 ids, id bytes within u32) are read by
//! the plain loop; for a wide map (such as 40M node ids, to see how the
//! lookups grow with the map) its lines say `n/a` and the engine is timed
//! alone.

use std::hint::black_box;
use std::path::Path;
use std::time::Instant;

#[path = "../../../benches/workload.rs"]
mod workload;

use scopecache::{CacheConfig, IdMap, ScopeCache};
use xxhash_rust::xxh3::xxh3_64;

type Res<T> = Result<T, Box<dyn std::error::Error>>;

/// Lookups per timed pass.
const LOOKUPS: usize = 1_000_000;

/// The sections of one narrow id map, found by reading the file directly.
struct Plain<'a> {
    offsets: &'a [[u8; 4]],
    slots: &'a [[u8; 4]],
    strings: &'a [u8],
}

fn u32_at(b: &[u8], at: usize) -> Res<u32> {
    let w = b.get(at..at + 4).ok_or("read past the end")?;
    Ok(u32::from_le_bytes(w.try_into()?))
}

fn u64_at(b: &[u8], at: usize) -> Res<usize> {
    let w = b.get(at..at + 8).ok_or("read past the end")?;
    Ok(usize::try_from(u64::from_le_bytes(w.try_into()?))?)
}

fn pad(x: usize) -> usize {
    x.next_multiple_of(64)
}

/// The id map region of `count` ids in `file`: the first 64-aligned
/// `SCIDMAP1` header with that count (FORMAT.md §2.5), or `None` if that
/// map has wide entries, which the plain loop does not read.
fn find_map(file: &[u8], count: usize) -> Res<Option<Plain<'_>>> {
    let mut at = 0;
    while at + 64 <= file.len() {
        if file.get(at..at + 8) == Some(b"SCIDMAP1") && u64_at(file, at + 8)? == count {
            let slots = u64_at(file, at + 16)?;
            let total = u64_at(file, at + 24)?;
            let flags = u32_at(file, at + 48)?;
            if flags != 0 {
                println!("the map of {count} ids has wide entries (flags {flags:#x}): no plain loop");
                return Ok(None);
            }
            let block = u32_at(file, at + 52)? as usize;
            let offsets_len = pad((count + 1) * 4);
            let slots_len = pad(slots * 4);
            let body_len = offsets_len + slots_len + pad(total);
            let body = at + 64 + pad(body_len.div_ceil(block) * 4);
            let section = |start: usize, len: usize| {
                file.get(body + start..body + start + len)
                    .ok_or("map past the end")
            };
            return Ok(Some(Plain {
                offsets: section(0, (count + 1) * 4)?.as_chunks::<4>().0,
                slots: section(offsets_len, slots * 4)?.as_chunks::<4>().0,
                strings: section(offsets_len + slots_len, total)?,
            }));
        }
        at += 64;
    }
    Err(format!("no id map of {count} ids in the file").into())
}

impl Plain<'_> {
    /// Checks what the plain loop relies on, so that it can read without
    /// bounds checks: every occupied slot names an id below N, the offsets
    /// start at 0, never decrease and end within the strings, and at least
    /// one slot is empty (so every probe ends).
    fn validate(&self) -> Res<()> {
        let n = self.offsets.len().checked_sub(1).ok_or("no offsets")?;
        let mut empty = false;
        for w in self.slots {
            let v = u32::from_le_bytes(*w);
            empty |= v == 0;
            if v != 0 && !(1..=n).contains(&((v & 0xFF_FFFF) as usize)) {
                return Err(format!("slot value {v:#x} names no id of {n}").into());
            }
        }
        let mut last = 0;
        for w in self.offsets {
            let o = u32::from_le_bytes(*w) as usize;
            if o < last || o > self.strings.len() {
                return Err(format!("offset {o} out of order or past the strings").into());
            }
            last = o;
        }
        if !empty || self.offsets.first().map(|w| u32::from_le_bytes(*w)) != Some(0) {
            return Err("no empty slot, or offsets not starting at 0".into());
        }
        Ok(())
    }

    /// The bytes of id `i`, which must be below N.
    #[inline(always)]
    fn id(&self, i: usize) -> &[u8] {
        // SAFETY: i < N (callers), so i + 1 < offsets.len(); validate()
        // found the offsets ordered and within the strings.
        unsafe {
            let a = u32::from_le_bytes(*self.offsets.get_unchecked(i)) as usize;
            let b = u32::from_le_bytes(*self.offsets.get_unchecked(i + 1)) as usize;
            self.strings.get_unchecked(a..b)
        }
    }

    /// The probe of FORMAT.md §2.5, with no checks but those validate()
    /// made once.
    #[inline(never)]
    fn index_of(&self, key: &[u8]) -> Option<u32> {
        let h = xxh3_64(key);
        let s = self.slots.len();
        let mut p = ((u128::from(h) * s as u128) >> 64) as usize;
        let want = ((h & 0xFF) << 24) as u32;
        loop {
            // SAFETY: p < s: the home slot is below s, and p wraps to 0 at s.
            let v = u32::from_le_bytes(*unsafe { self.slots.get_unchecked(p) });
            if v == 0 {
                return None;
            }
            if v & 0xFF00_0000 == want {
                // validate(): an occupied slot names 1..=N.
                let i = ((v & 0xFF_FFFF) - 1) as usize;
                if self.id(i) == key {
                    return Some(i as u32);
                }
            }
            p += 1;
            if p == s {
                p = 0;
            }
        }
    }
}

/// ns per call of `f` over `keys`; the sum of the answers must be `want`.
#[inline(never)]
fn time_keys(keys: &[&str], want: u64, f: &dyn Fn(&str) -> Option<u32>) -> Res<f64> {
    let t = Instant::now();
    let mut sum = 0u64;
    for &k in keys {
        sum += u64::from(f(black_box(k)).unwrap_or(u32::MAX));
    }
    let ns = t.elapsed().as_nanos() as f64 / keys.len() as f64;
    if sum != want {
        return Err("a lookup gave a wrong position".into());
    }
    Ok(ns)
}

/// ns per call of `f` over `pos`; the summed lengths must be `want`.
#[inline(never)]
fn time_positions(pos: &[u32], want: usize, f: &dyn Fn(u32) -> usize) -> Res<f64> {
    let t = Instant::now();
    let mut sum = 0usize;
    for &p in pos {
        sum += f(black_box(p));
    }
    let ns = t.elapsed().as_nanos() as f64 / pos.len() as f64;
    if sum != want {
        return Err("index -> id gave wrong ids".into());
    }
    Ok(ns)
}

/// ns per id of `index_of_batch` over `keys` in slices of 1,024.
fn time_batch(map: &IdMap, keys: &[&str], want: u64) -> Res<f64> {
    let mut out = vec![None; 1024];
    let t = Instant::now();
    let mut sum = 0u64;
    for c in keys.chunks(1024) {
        let out = &mut out[..c.len()];
        map.index_of_batch(c, out)?;
        sum += out.iter().map(|x| u64::from(x.unwrap_or(0))).sum::<u64>();
    }
    let ns = t.elapsed().as_nanos() as f64 / keys.len() as f64;
    if sum != want {
        return Err("a batch gave a wrong position".into());
    }
    Ok(ns)
}

/// ns per random cache-line read over `bytes`: independent reads (as
/// many in flight as the core allows), then a chain of dependent ones.
fn line_reads(bytes: &[u8]) -> (f64, f64) {
    let mut rng = workload::Rng::new(5);
    let lines = bytes.len() / 64;
    let at: Vec<usize> = (0..2_000_000).map(|_| rng.below(lines) * 64).collect();
    let t = Instant::now();
    let mut sum = 0u64;
    for &i in &at {
        sum = sum.wrapping_add(u64::from(bytes[i]));
    }
    black_box(sum);
    let independent = t.elapsed().as_nanos() as f64 / at.len() as f64;
    let chain = &at[..500_000];
    let t = Instant::now();
    let mut bit = 0usize;
    for &i in chain {
        // The next address depends on the byte just read.
        bit = usize::from(bytes[(i ^ bit) % bytes.len()] & 1);
    }
    black_box(bit);
    let dependent = t.elapsed().as_nanos() as f64 / chain.len() as f64;
    (independent, dependent)
}

/// The median of `v`, `None` if it is empty.
fn median(mut v: Vec<f64>) -> Option<f64> {
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied()
}

/// The file's bytes, mapped read-only. The mapping lives until the process
/// ends.
fn map_file(path: &Path) -> Res<&'static [u8]> {
    use std::os::fd::AsRawFd;
    let file = std::fs::File::open(path)?;
    let len = usize::try_from(file.metadata()?.len())?;
    if len == 0 {
        return Err("the cache file is empty".into());
    }
    // SAFETY: a fresh read-only shared mapping of `len` bytes of an open
    // file; the kernel chooses the address. The result is checked below.
    let p = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            len,
            libc::PROT_READ,
            libc::MAP_SHARED,
            file.as_raw_fd(),
            0,
        )
    };
    if p == libc::MAP_FAILED {
        return Err(std::io::Error::last_os_error().into());
    }
    // SAFETY: the mapping is `len` readable bytes and is never unmapped.
    // Nothing writes the file while this program runs (it is the caller's
    // file, written before); if something did, the reads would see other
    // bytes, which this measurement program tolerates.
    Ok(unsafe { std::slice::from_raw_parts(p.cast::<u8>(), len) })
}

fn main() -> Res<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [dir, n, l, rest @ ..] = &args[..] else {
        return Err("usage: scopecache-bounds DIR NODES LINKS [ROUNDS]".into());
    };
    let (n, l): (usize, usize) = (n.parse()?, l.parse()?);
    let rounds: usize = rest.first().map_or(Ok(5), |r| r.parse())?;
    let path = Path::new(dir).join("scopes.cache");
    let bytes = map_file(&path)?;
    let (plain_nodes, plain_links) = (find_map(bytes, n)?, find_map(bytes, l)?);
    for plain in [&plain_nodes, &plain_links].into_iter().flatten() {
        plain.validate()?;
    }
    let cache = ScopeCache::open(&path, CacheConfig::default())?;
    let scope = cache.get("scope-1")?.ok_or("scope-1 is missing")?;
    let (nm, lm) = (scope.node_ids(), scope.link_ids());

    let node_pos = workload::random_positions(LOOKUPS, n, 21);
    let link_pos = workload::random_positions(LOOKUPS, l, 22);
    let node_buf = workload::KeyBuf::from_positions(&node_pos, workload::node_id);
    let link_buf = workload::KeyBuf::from_positions(&link_pos, |i| workload::link_id(i, n));
    let (node_keys, link_keys) = (node_buf.slices(), link_buf.slices());
    let sum = |p: &[u32]| p.iter().map(|&p| u64::from(p)).sum::<u64>();
    let (node_sum, link_sum) = (sum(&node_pos), sum(&link_pos));
    let id_len = workload::node_id(0).len() * LOOKUPS;

    // Each measurement, in the order printed; a plain loop over a wide map
    // is `None`.
    type Timed<'a> = Option<Box<dyn Fn() -> Res<f64> + 'a>>;
    let measures: Vec<(&str, Timed)> = vec![
        (
            "id -> index, nodes, engine",
            Some(Box::new(|| time_keys(&node_keys, node_sum, &|k| nm.index_of(k)))),
        ),
        (
            "id -> index, nodes, plain loop",
            plain_nodes.as_ref().map(|p| -> Box<dyn Fn() -> Res<f64>> {
                Box::new(|| time_keys(&node_keys, node_sum, &|k| p.index_of(k.as_bytes())))
            }),
        ),
        (
            "id -> index, links, engine",
            Some(Box::new(|| time_keys(&link_keys, link_sum, &|k| lm.index_of(k)))),
        ),
        (
            "id -> index, links, plain loop",
            plain_links.as_ref().map(|p| -> Box<dyn Fn() -> Res<f64>> {
                Box::new(|| time_keys(&link_keys, link_sum, &|k| p.index_of(k.as_bytes())))
            }),
        ),
        (
            "index -> id, nodes, engine",
            Some(Box::new(|| {
                time_positions(&node_pos, id_len, &|p| nm.id(p).map_or(0, str::len))
            })),
        ),
        (
            "index -> id, nodes, plain loop",
            plain_nodes.as_ref().map(|plain| -> Box<dyn Fn() -> Res<f64>> {
                Box::new(|| {
                    time_positions(&node_pos, id_len, &|p| {
                        // Positions come from random_positions(.., n, ..): below N.
                        let id = plain.id(p as usize);
                        if id.is_ascii() {
                            id.len()
                        } else {
                            0
                        }
                    })
                })
            }),
        ),
        (
            "batch id -> index, nodes, engine",
            Some(Box::new(|| time_batch(nm, &node_keys, node_sum))),
        ),
        (
            "batch id -> index, links, engine",
            Some(Box::new(|| time_batch(lm, &link_keys, link_sum))),
        ),
    ];
    // One untimed pass of each lookup, so that every round finds the
    // file's pages mapped in both mappings.
    for (_, m) in &measures[..4] {
        if let Some(m) = m {
            m()?;
        }
    }
    let mut ns = vec![Vec::new(); measures.len()];
    for _ in 0..rounds {
        for ((_, m), v) in measures.iter().zip(&mut ns) {
            if let Some(m) = m {
                v.push(m()?);
            }
        }
    }
    println!("scopecache-bounds: {n} nodes, {l} links, median of {rounds} rounds of {LOOKUPS} random lookups (ns each)");
    for ((name, _), v) in measures.iter().zip(ns) {
        match median(v) {
            Some(m) => println!("{name:34} {m:8.1}"),
            None => println!("{name:34} {:>8}", "n/a"),
        }
    }
    let (mut independent, mut dependent) = (Vec::new(), Vec::new());
    for _ in 0..rounds {
        let (i, d) = line_reads(bytes);
        independent.push(i);
        dependent.push(d);
    }
    println!(
        "random 64-byte line reads over the {} MB file: {:.1} ns each independent, {:.1} ns each dependent",
        bytes.len() >> 20,
        median(independent).unwrap_or(f64::NAN),
        median(dependent).unwrap_or(f64::NAN)
    );
    Ok(())
}
