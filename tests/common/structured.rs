//! Structure-aware fuzzing of cache files: an input is a script of edits to
//! the superblock and the index of a small, valid cache file (region offsets
//! moved onto other regions, zero lengths, shared offsets, huge counts, a
//! retired flag, flipped data bytes), after which every CRC the edits broke
//! is computed again, so that the file reaches the checks behind the CRCs.
//!
//! The oracle, for any input: opening and reading never panic; every bitset
//! a `get` returns matches the CRC its entry records (no corrupt byte is
//! returned as data); and nothing a caller holds changes while it holds it
//! (no write lands in bytes lent out).
//!
//! Shared by `tests/structured.rs` (a seeded sweep and the corpus replay)
//! and the cargo-fuzz target `fuzz/fuzz_targets/structured.rs`.
#![allow(dead_code)]

use bitvec::prelude::*;
use scopecache::testing::{self, IndexData, Superblock};
use scopecache::{CacheConfig, IdMap, Scope, ScopeCache, ScopeData};
use std::path::Path;

/// Reads an input as a stream of numbers; past its end, zeros.
struct Input<'a> {
    bytes: &'a [u8],
}

impl Input<'_> {
    fn u8(&mut self) -> u8 {
        match self.bytes.split_first() {
            Some((&b, rest)) => {
                self.bytes = rest;
                b
            }
            None => 0,
        }
    }

    fn u64(&mut self) -> u64 {
        let mut v = 0u64;
        for _ in 0..8 {
            v = v << 8 | u64::from(self.u8());
        }
        v
    }

    fn done(&self) -> bool {
        self.bytes.is_empty()
    }

    fn pick<T: Copy>(&mut self, from: &[T]) -> T {
        from[self.u8() as usize % from.len()]
    }
}

fn config() -> CacheConfig {
    CacheConfig {
        ttl: None,
        fsync: false,
        ..CacheConfig::default()
    }
}

/// The base files the edits start from: one written by puts (empty and
/// shared mappings, a zero-bit bitset, a replaced entry) and its compacted
/// form, in which a zero-length region shares its offset with the next one.
pub fn bases(dir: &Path) -> Vec<Vec<u8>> {
    let path = dir.join("base.cache");
    let _ = std::fs::remove_file(&path);
    let cache = ScopeCache::open(&path, config()).expect("open the base file");
    let n200 = IdMap::from_ids((0..200).map(|i| format!("n{i}"))).expect("ids");
    let n70 = IdMap::from_ids((0..70).map(|i| format!("m{i}"))).expect("ids");
    let empty = IdMap::from_ids(Vec::<String>::new()).expect("ids");
    let put = |key: &str, nodes: &BitSlice<u64, Lsb0>, n: &IdMap, links: &BitSlice<u64, Lsb0>, l: &IdMap| {
        let mut attrs = serde_json::Map::new();
        attrs.insert("key".into(), key.into());
        cache
            .put(
                key,
                &ScopeData {
                    nodes,
                    links,
                    node_ids: n,
                    link_ids: l,
                    attributes: &attrs,
                },
            )
            .expect("put");
    };
    let a: BitVec<u64, Lsb0> = (0..200).map(|i| i % 3 == 0).collect();
    let b: BitVec<u64, Lsb0> = (0..200).map(|i| i % 5 == 1).collect();
    let c: BitVec<u64, Lsb0> = (0..70).map(|i| i % 2 == 0).collect();
    put("a", &a, &n200, BitSlice::empty(), &empty);
    put("b", &b, &n200, BitSlice::empty(), &empty);
    put("c", &c, &n70, &a, &n200);
    put("b", &a, &n200, BitSlice::empty(), &empty);
    put("d", BitSlice::empty(), &empty, &c, &n70);
    let plain = std::fs::read(&path).expect("read");
    cache.compact().expect("compact");
    let compacted = std::fs::read(&path).expect("read");
    vec![plain, compacted]
}

/// Every offset of interest in a file: region starts and ends, and the
/// fixed pages.
fn offsets(sb: &Superblock, idx: &IndexData) -> Vec<u64> {
    let mut v = vec![
        0,
        8192,
        12288,
        sb.committed_len,
        sb.index_offset,
        sb.stamps_offset,
    ];
    v.push(sb.index_offset + sb.index_len);
    v.push(sb.stamps_offset + 8 * u64::from(sb.stamps_capacity));
    for m in &idx.maps {
        v.extend([m.offset, m.offset + m.len]);
    }
    for e in &idx.entries {
        for r in [e.nodes, e.links] {
            v.extend([r.offset, r.offset + r.bits.div_ceil(64) * 8]);
        }
    }
    v
}

/// Applies the script in `input` to `base`; returns the crafted file and
/// the index it names.
pub fn craft(base: &[u8], input: &[u8]) -> Option<(Vec<u8>, IndexData)> {
    let (sb0, idx0) = testing::read(base)?;
    let mut file = base.to_vec();
    let (mut sb, mut idx) = (sb0, idx0);
    let mut inp = Input { bytes: input };
    let fix_bits = inp.u8() & 1 == 1;
    let offs = offsets(&sb, &idx);
    let deltas: [i64; 7] = [0, 0, 0, 8, -8, 64, -64];
    let counts: [u64; 9] = [0, 1, 63, 64, 65, 200, 1 << 24, 1 << 40, u64::MAX];
    let smalls: [u32; 7] = [0, 1, 2, 3, 63, 64, u32::MAX];
    let mut steps = 0;
    while !inp.done() && steps < 16 {
        steps += 1;
        let op = inp.u8() % 18;
        let off = (inp.pick(&offs) as i64 + inp.pick(&deltas)).max(0) as u64;
        let ne = idx.entries.len().max(1);
        let nm = idx.maps.len().max(1);
        let ei = inp.u8() as usize % ne;
        let mi = inp.u8() as usize % nm;
        match op {
            0 => sb.stamps_offset = off,
            1 => sb.stamps_capacity = inp.pick(&smalls),
            2 => {
                sb.generation =
                    inp.pick(&[sb0.generation + 1, 1 << 62, (1 << 62) + 1, u64::MAX - 1, u64::MAX])
            }
            3 => sb.committed_len = off,
            4 => sb.flags ^= 1,
            5..=10 => {
                let Some(e) = idx.entries.get_mut(ei) else {
                    continue;
                };
                match op {
                    5 => e.nodes.offset = off,
                    6 => e.links.offset = off,
                    7 => e.nodes.bits = inp.pick(&counts),
                    8 => e.slot = inp.pick(&smalls),
                    9 => e.node_map = inp.pick(&smalls),
                    _ => e.link_map = inp.pick(&smalls),
                }
            }
            11..=13 => {
                let Some(m) = idx.maps.get_mut(mi) else { continue };
                match op {
                    11 => m.offset = off,
                    12 => m.len = inp.pick(&counts),
                    _ => m.count = inp.pick(&counts),
                }
            }
            14 => {
                // Another entry naming the same regions.
                let Some(mut e) = idx.entries.get(ei).cloned() else {
                    continue;
                };
                e.key.push('x');
                if let Err(pos) = idx.entries.binary_search_by(|x| x.key.cmp(&e.key)) {
                    idx.entries.insert(pos, e);
                }
            }
            15 => {
                let at = off as usize + inp.u8() as usize;
                if let Some(b) = file.get_mut(at) {
                    *b ^= 1 << (inp.u8() % 8);
                }
            }
            16 => {
                // One entry's bitset on another's.
                let other = idx.entries.get(mi % ne).map(|e| e.links);
                if let (Some(o), Some(e)) = (other, idx.entries.get_mut(ei)) {
                    e.nodes = o;
                }
            }
            _ => {
                // A mapping's count and the bits that name it, together.
                let n = inp.pick(&counts);
                if let Some(e) = idx.entries.get_mut(ei) {
                    e.nodes.bits = n;
                    let m = e.node_map as usize;
                    if let Some(m) = idx.maps.get_mut(m) {
                        m.count = n;
                    }
                }
            }
        }
    }
    if fix_bits {
        for e in &mut idx.entries {
            for r in [&mut e.nodes, &mut e.links] {
                if let Some(crc) = testing::bits_crc(&file, r) {
                    r.crc = crc;
                }
            }
        }
    }
    testing::write(&mut file, sb, &idx, sb.committed_len == sb0.committed_len);
    Some((file, idx))
}

/// What a caller held, copied when it got it.
struct Held {
    scope: Scope,
    nodes: Vec<u64>,
    links: Vec<u64>,
    key: String,
    attributes: serde_json::Map<String, serde_json::Value>,
    ids: Vec<Option<String>>,
}

fn ids_of(s: &Scope) -> Vec<Option<String>> {
    (0..s.node_ids().len().min(80) as u32)
        .map(|i| s.node_ids().id(i).map(str::to_owned))
        .collect()
}

fn crc_of(words: &[u64]) -> u32 {
    let bytes: Vec<u8> = words.iter().flat_map(|w| w.to_le_bytes()).collect();
    crc32fast::hash(&bytes)
}

/// Runs one crafted file through a reader and checks the oracle against the
/// index the newest valid superblock names (the crafted one, or the older
/// generation when the edit made the newer slot invalid).
pub fn check(path: &Path, file: &[u8]) -> Result<(), String> {
    std::fs::write(path, file).map_err(|e| e.to_string())?;
    let Some((_, idx)) = testing::read(file) else {
        return Ok(());
    };
    let idx = &idx;
    let Ok(cache) = ScopeCache::open(path, config()) else {
        return Ok(());
    };
    let mut keys: Vec<&str> = idx.entries.iter().map(|e| e.key.as_str()).collect();
    let mut held: Vec<Held> = Vec::new();
    for round in 0..2 {
        for key in &keys {
            let Ok(Some(s)) = cache.get(key) else { continue };
            let Some(rec) = idx.entries.iter().find(|e| e.key == *key) else {
                return Err(format!("get({key:?}) returned a scope the index does not hold"));
            };
            for (what, words, want) in [
                ("nodes", s.node_words(), rec.nodes),
                ("links", s.link_words(), rec.links),
            ] {
                let crc = crc_of(words);
                if crc != want.crc {
                    return Err(format!(
                        "round {round}: get({key:?}) returned {what} whose CRC is {crc:#x}, not the recorded {:#x}",
                        want.crc
                    ));
                }
            }
            held.push(Held {
                nodes: s.node_words().to_vec(),
                links: s.link_words().to_vec(),
                key: s.key().to_owned(),
                attributes: s.attributes().clone(),
                ids: ids_of(&s),
                scope: s,
            });
        }
        let _ = cache.list();
        let _ = cache.stats();
        let _ = cache.verify();
        let _ = cache.contains("a");
        keys.reverse();
        std::thread::sleep(std::time::Duration::from_micros(50));
    }
    for h in &held {
        let s = &h.scope;
        if s.node_words() != &h.nodes[..] || s.link_words() != &h.links[..] {
            return Err(format!("the bitsets of {:?} changed while held", h.key));
        }
        if s.key() != h.key || s.attributes() != &h.attributes {
            return Err(format!("the key or attributes of {:?} changed while held", h.key));
        }
        for (i, (now, then)) in ids_of(s).iter().zip(&h.ids).enumerate() {
            if now.is_some() && now != then {
                return Err(format!(
                    "id {i} of {:?} changed while held: {then:?} -> {now:?}",
                    h.key
                ));
            }
        }
    }
    // A second handle, reading in the other order, sees no corrupt byte either.
    if let Ok(fresh) = ScopeCache::open(path, config()) {
        for key in keys.iter().rev() {
            if let (Ok(Some(s)), Some(rec)) = (fresh.get(key), idx.entries.iter().find(|e| e.key == *key)) {
                if crc_of(s.node_words()) != rec.nodes.crc || crc_of(s.link_words()) != rec.links.crc {
                    return Err(format!("a fresh handle got corrupt bits for {key:?}"));
                }
            }
        }
    }
    Ok(())
}

/// One fuzz case: the first byte picks the base, the rest is the script.
pub fn run(bases: &[Vec<u8>], path: &Path, input: &[u8]) -> Result<(), String> {
    let Some((&which, script)) = input.split_first() else {
        return Ok(());
    };
    let base = &bases[which as usize % bases.len()];
    let Some((file, _)) = craft(base, script) else {
        return Ok(());
    };
    check(path, &file)
}
