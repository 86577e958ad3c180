//! The standard coverage-scope workload, shared by the criterion benches
//! (`mod workload;`) and by `compare/` (`#[path = "../../benches/workload.rs"]`).
//!
//! It is the workload of the original's benchmark script:
//! - node ids `node-%08d` -> i, for i in 0..N;
//! - link ids `link-%08d-%08d` with (i, i * 7919 mod N) -> i, for i in 0..L;
//! - two random bitsets of N and L bits, about half the bits set;
//! - a few small attributes.
//!
//! Everything is deterministic for a given seed (splitmix64), so two
//! processes given the same sizes and seed build the same scope.
#![allow(dead_code)]

use bitvec::prelude::{BitVec, Lsb0};
use serde_json::{Map, Value};

/// The small size: 10,000 nodes and 20,000 links.
pub const SMALL: (usize, usize) = (10_000, 20_000);
/// The original's scale: 4,000,000 nodes and 8,000,000 links.
pub const FULL: (usize, usize) = (4_000_000, 8_000_000);

/// A deterministic 64-bit generator (splitmix64): fast, and enough for
/// choosing bits and lookup keys.
#[derive(Clone, Debug)]
pub struct Rng(u64);

impl Rng {
    /// A generator started at `seed`.
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    /// The next 64 random bits.
    #[inline]
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A number in `0..n` (n > 0), without modulo bias worth caring about here.
    #[inline]
    pub fn below(&mut self, n: usize) -> usize {
        ((u128::from(self.next_u64()) * n as u128) >> 64) as usize
    }
}

/// The id of node `i`.
pub fn node_id(i: usize) -> String {
    format!("node-{i:08}")
}

/// The id of link `i` in a graph of `n` nodes.
pub fn link_id(i: usize, n: usize) -> String {
    format!("link-{i:08}-{:08}", (i as u64 * 7919 % n.max(1) as u64))
}

/// All node ids, in index order.
pub fn node_ids(n: usize) -> Vec<String> {
    (0..n).map(node_id).collect()
}

/// All link ids, in index order.
pub fn link_ids(n: usize, l: usize) -> Vec<String> {
    (0..l).map(|i| link_id(i, n)).collect()
}

/// A random bitset of `len` bits, about half of them set.
pub fn random_bits(len: usize, rng: &mut Rng) -> BitVec<u64, Lsb0> {
    let words: Vec<u64> = (0..len.div_ceil(64)).map(|_| rng.next_u64()).collect();
    let mut bits = BitVec::<u64, Lsb0>::from_vec(words);
    bits.truncate(len);
    bits
}

/// The small attributes stored with each scope.
pub fn attributes(run: usize) -> Map<String, Value> {
    let mut m = Map::new();
    m.insert("run".into(), Value::from(format!("r{run}")));
    m.insert("seed".into(), Value::from(run as u64));
    m.insert("tool".into(), Value::from("coverage"));
    m
}

/// One generated scope: the id strings and two bitsets.
pub struct Workload {
    /// N.
    pub nodes_n: usize,
    /// L.
    pub links_n: usize,
    /// Node ids, index order.
    pub node_ids: Vec<String>,
    /// Link ids, index order.
    pub link_ids: Vec<String>,
    /// Covered nodes, N bits.
    pub nodes: BitVec<u64, Lsb0>,
    /// Covered links, L bits.
    pub links: BitVec<u64, Lsb0>,
    /// Attributes.
    pub attributes: Map<String, Value>,
}

impl Workload {
    /// Generates the workload for `n` nodes and `l` links.
    pub fn generate(n: usize, l: usize) -> Workload {
        let mut rng = Workload::rng(n, l);
        Workload {
            nodes_n: n,
            links_n: l,
            node_ids: node_ids(n),
            link_ids: link_ids(n, l),
            nodes: random_bits(n, &mut rng),
            links: random_bits(l, &mut rng),
            attributes: attributes(1),
        }
    }

    /// The generator every bitset of `generate(n, l)` comes from.
    fn rng(n: usize, l: usize) -> Rng {
        Rng::new(0x5C0B_E0CA_C4E0 ^ ((n as u64) << 20) ^ (l as u64))
    }

    /// Another random pair of bitsets of the same sizes (scope number `k`).
    pub fn bitsets(&self, k: u64) -> (BitVec<u64, Lsb0>, BitVec<u64, Lsb0>) {
        let mut rng = Rng::new(0xB175_0000 + k);
        (
            random_bits(self.nodes_n, &mut rng),
            random_bits(self.links_n, &mut rng),
        )
    }

    /// Bytes of the id strings (without their heap headers).
    pub fn id_bytes(&self) -> usize {
        self.node_ids.iter().chain(&self.link_ids).map(String::len).sum()
    }
}

/// Bit `i` of the nodes bitset of `Workload::generate(n, l)`, without
/// generating the ids.
pub fn expected_node_bit(n: usize, l: usize, i: usize) -> bool {
    random_bits(n, &mut Workload::rng(n, l))[i]
}

/// `count` random positions in `0..n`.
pub fn random_positions(count: usize, n: usize, seed: u64) -> Vec<u32> {
    let mut rng = Rng::new(seed);
    (0..count).map(|_| rng.below(n) as u32).collect()
}

/// Lookup keys stored back to back in one buffer, so that reading the
/// keys in order is sequential and the prefetcher hides it: a lookup bench
/// then measures the lookup, not the misses of a million separately
/// allocated `String`s.
pub struct KeyBuf {
    text: String,
    ends: Vec<usize>,
}

impl KeyBuf {
    fn from_ids(ids: impl Iterator<Item = String>) -> KeyBuf {
        let mut k = KeyBuf {
            text: String::new(),
            ends: Vec::new(),
        };
        for id in ids {
            k.text.push_str(&id);
            k.ends.push(k.text.len());
        }
        k
    }

    /// The ids of `positions`, made by `id`.
    pub fn from_positions(positions: &[u32], id: impl Fn(usize) -> String) -> KeyBuf {
        KeyBuf::from_ids(positions.iter().map(|&i| id(i as usize)))
    }

    /// The keys as string slices into the buffer.
    pub fn slices(&self) -> Vec<&str> {
        let mut start = 0;
        self.ends
            .iter()
            .map(|&e| {
                let s = &self.text[start..e];
                start = e;
                s
            })
            .collect()
    }
}

/// `count` random node ids of a graph of `n` nodes (with repetition).
pub fn random_node_ids(count: usize, n: usize, seed: u64) -> KeyBuf {
    KeyBuf::from_ids(
        random_positions(count, n, seed)
            .into_iter()
            .map(|i| node_id(i as usize)),
    )
}

/// `count` random link ids of a graph of `n` nodes and `l` links.
pub fn random_link_ids(count: usize, n: usize, l: usize, seed: u64) -> KeyBuf {
    KeyBuf::from_ids(
        random_positions(count, l, seed)
            .into_iter()
            .map(|i| link_id(i as usize, n)),
    )
}

/// Reads every byte of the file at `path` once, so that its pages are in the
/// page cache before reads are measured ("warm").
pub fn warm_file(path: &std::path::Path) -> std::io::Result<u64> {
    use std::io::Read;
    let mut f = std::fs::File::open(path)?;
    let mut buf = vec![0u8; 1 << 20];
    let mut total = 0u64;
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            return Ok(total);
        }
        total += n as u64;
    }
}

/// Peak resident set of this process in bytes (VmHWM), if readable.
pub fn peak_rss_bytes() -> Option<u64> {
    let s = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = s.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

/// The sizes the benches run at: always small, and the original's scale
/// when `SCOPECACHE_BENCH_FULL=1`.
pub fn bench_sizes() -> Vec<(&'static str, usize, usize)> {
    let mut v = vec![("small", SMALL.0, SMALL.1)];
    if std::env::var("SCOPECACHE_BENCH_FULL").is_ok_and(|v| v == "1") {
        v.push(("full", FULL.0, FULL.1));
    }
    v
}
