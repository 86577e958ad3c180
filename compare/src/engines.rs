//! The engines compared, each storing the same scope in the shape a user of
//! that engine would choose:
//! - scopecache: one `put` (mappings built with `IdMap::from_ids`);
//! - LMDB (heed) and redb: id -> index and index -> id as key-value pairs
//!   (one table each per mapping), the bitsets and attributes as values,
//!   all in one write transaction; more scopes of the same graph add only
//!   their bitsets, one transaction per scope.

use crate::workload::{self, Workload};
use crate::Res;
use bitvec::prelude::{BitSlice, Lsb0};
use scopecache::{CacheConfig, IdMap, ScopeCache, ScopeData};
use serde_json::{json, Value};
use std::hint::black_box;
use std::path::Path;
use std::time::{Duration, Instant};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Engine {
    Scopecache,
    Lmdb,
    Redb,
}

/// Random lookups per measurement.
const LOOKUPS: usize = 1 << 20;
/// Passes over the random positions for bit tests.
const BIT_PASSES: usize = 16;

impl Engine {
    pub const ALL: [Engine; 3] = [Engine::Scopecache, Engine::Lmdb, Engine::Redb];

    pub fn name(self) -> &'static str {
        match self {
            Engine::Scopecache => "scopecache",
            Engine::Lmdb => "lmdb",
            Engine::Redb => "redb",
        }
    }

    /// Whether several processes can read one store at once: redb locks
    /// its file for the one process that has it open, so it has no reader
    /// scaling test.
    pub fn multi_process_readers(self) -> bool {
        !matches!(self, Engine::Redb)
    }

    pub fn parse(s: &str) -> Res<Engine> {
        Engine::ALL
            .into_iter()
            .find(|e| e.name() == s)
            .ok_or_else(|| format!("unknown engine {s:?} (scopecache, lmdb, redb)").into())
    }

    /// Builds the mappings and stores the scope `scope-1`; returns the
    /// seconds spent building the mappings, where that is a separate step.
    pub fn put(self, dir: &Path, w: &Workload) -> Res<Option<f64>> {
        match self {
            Engine::Scopecache => sc::put(dir, w),
            Engine::Lmdb => lmdb::put(dir, w).map(|()| None),
            Engine::Redb => rdb::put(dir, w).map(|()| None),
        }
    }

    /// Adds scopes `scope-2 ..= scope-<scopes>` of the same graph; returns
    /// the seconds each put took (the new bitsets are made before timing).
    pub fn put_more(self, dir: &Path, w: &Workload, scopes: u64) -> Res<Vec<f64>> {
        match self {
            Engine::Scopecache => sc::put_more(dir, w, scopes),
            Engine::Lmdb => lmdb::put_more(dir, w, scopes),
            Engine::Redb => rdb::put_more(dir, w, scopes),
        }
    }

    /// Opens the store, reads `scope-1`'s nodes bitset, tests bit `bit`.
    pub fn fresh_get(self, dir: &Path, bit: usize) -> Res<bool> {
        match self {
            Engine::Scopecache => sc::fresh_get(dir, bit),
            Engine::Lmdb => lmdb::fresh_get(dir, bit),
            Engine::Redb => rdb::fresh_get(dir, bit),
        }
    }

    /// Times id -> index for random node and link ids, index -> id, and bit
    /// tests, one call at a time.
    pub fn read_bench(self, dir: &Path, n: usize, l: usize) -> Res<Value> {
        let node_pos = workload::random_positions(LOOKUPS, n, 21);
        let link_pos = workload::random_positions(LOOKUPS, l, 22);
        let node_buf = workload::KeyBuf::from_positions(&node_pos, workload::node_id);
        let link_buf = workload::KeyBuf::from_positions(&link_pos, |i| workload::link_id(i, n));
        let (node_keys, link_keys) = (node_buf.slices(), link_buf.slices());
        let keys = Keys {
            node_pos: &node_pos,
            link_pos: &link_pos,
            node_keys: &node_keys,
            link_keys: &link_keys,
        };
        match self {
            Engine::Scopecache => sc::read_bench(dir, &keys),
            Engine::Lmdb => lmdb::read_bench(dir, &keys),
            Engine::Redb => rdb::read_bench(dir, &keys),
        }
    }
}

impl Engine {
    /// One reader of the scaling test: opens the store, gets `scope-1`,
    /// makes `keys` random node ids from `seed` and looks each up
    /// once (faulting in what it reads); then prints `ready`, waits for a
    /// line on stdin, and does id -> index lookups each followed by a test of
    /// that node's bit until `dur` has passed. Returns the operations done,
    /// the seconds they took and the CPU seconds the process used for them.
    pub fn reader(self, dir: &Path, n: usize, keys: usize, seed: u64, dur: Duration) -> Res<Value> {
        let pos = workload::random_positions(keys, n, seed);
        let buf = workload::KeyBuf::from_positions(&pos, workload::node_id);
        let keys = buf.slices();
        match self {
            Engine::Scopecache => sc::reader(dir, &keys, &pos, dur),
            Engine::Lmdb => lmdb::reader(dir, &keys, &pos, dur),
            Engine::Redb => rdb::reader(dir, &keys, &pos, dur),
        }
    }
}

/// CPU seconds (user + system) this process has used.
fn cpu_seconds() -> f64 {
    // SAFETY: getrusage only writes the struct it is given.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: as above; RUSAGE_SELF is always valid.
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) };
    let t = |tv: libc::timeval| tv.tv_sec as f64 + tv.tv_usec as f64 / 1e6;
    t(ru.ru_utime) + t(ru.ru_stime)
}

/// The reader loop shared by the engines: `op(key)` looks a key up and
/// tests its bit, returning the position found and the bit.
fn run_reader(
    keys: &[&str],
    pos: &[u32],
    dur: Duration,
    mut op: impl FnMut(&str) -> Option<(u32, bool)>,
) -> Res<Value> {
    use std::io::{BufRead, Write};
    let mut set = 0u64;
    for (k, &p) in keys.iter().zip(pos) {
        let (found, bit) = op(k).ok_or("a reader's id was not found")?;
        if found != p {
            return Err("a reader's lookup gave a wrong position".into());
        }
        set += u64::from(bit);
    }
    {
        let mut out = std::io::stdout().lock();
        writeln!(out, "ready")?;
        out.flush()?;
    }
    let mut line = String::new();
    std::io::stdin().lock().read_line(&mut line)?;
    let cpu0 = cpu_seconds();
    let t = Instant::now();
    let mut ops = 0u64;
    let mut set_timed = 0u64;
    'outer: loop {
        for chunk in keys.chunks(256) {
            for &k in chunk {
                let (_, bit) = op(black_box(k)).ok_or("a reader's id was not found")?;
                set_timed += u64::from(bit);
            }
            ops += chunk.len() as u64;
            if t.elapsed() >= dur {
                break 'outer;
            }
        }
    }
    let secs = t.elapsed().as_secs_f64();
    let cpu = cpu_seconds() - cpu0;
    black_box((set, set_timed));
    Ok(json!({"ops": ops, "secs": secs, "cpu_s": cpu}))
}

pub struct Keys<'a> {
    node_pos: &'a [u32],
    link_pos: &'a [u32],
    node_keys: &'a [&'a str],
    link_keys: &'a [&'a str],
}

/// Times `lookup` over `keys`, checks that it found `pos`, returns ns per call.
fn time_lookups(keys: &[&str], pos: &[u32], mut lookup: impl FnMut(&str) -> Option<u32>) -> Res<f64> {
    // One untimed pass over a slice, to warm the code path.
    for &k in keys.iter().take(1024) {
        black_box(lookup(k));
    }
    let t = Instant::now();
    let mut sum = 0u64;
    for &k in keys {
        sum += u64::from(lookup(black_box(k)).unwrap_or(u32::MAX));
    }
    let ns = t.elapsed().as_nanos() as f64 / keys.len() as f64;
    let want: u64 = pos.iter().map(|&p| u64::from(p)).sum();
    if sum != want {
        return Err("id -> index gave wrong positions".into());
    }
    Ok(ns)
}

/// Times `id` (index -> id) over `pos`, checks the ids' lengths.
fn time_ids(pos: &[u32], want_len: usize, mut id: impl FnMut(u32) -> Option<usize>) -> Res<f64> {
    let t = Instant::now();
    let mut sum = 0usize;
    for &p in pos {
        sum += id(black_box(p)).unwrap_or(0);
    }
    let ns = t.elapsed().as_nanos() as f64 / pos.len() as f64;
    if sum != want_len * pos.len() {
        return Err("index -> id gave wrong ids".into());
    }
    Ok(ns)
}

/// Times bit tests at `pos`; the same count must come out of every pass.
fn time_bits(pos: &[u32], test: impl Fn(usize) -> bool) -> Res<f64> {
    let once = pos.iter().filter(|&&p| test(p as usize)).count();
    let t = Instant::now();
    let mut set = 0usize;
    for _ in 0..BIT_PASSES {
        set += black_box(pos).iter().filter(|&&p| test(p as usize)).count();
    }
    let ns = t.elapsed().as_nanos() as f64 / (pos.len() * BIT_PASSES) as f64;
    if set != once * BIT_PASSES {
        return Err("bit tests disagree between passes".into());
    }
    Ok(ns)
}

fn bit_of(bytes: &[u8], i: usize) -> bool {
    bytes.get(i >> 3).is_some_and(|b| (b >> (i & 7)) & 1 == 1)
}

fn bytes_of(bits: &BitSlice<u64, Lsb0>) -> Vec<u8> {
    let mut v = bits.to_bitvec();
    v.set_uninitialized(false);
    v.into_vec().iter().flat_map(|w| w.to_le_bytes()).collect()
}

fn read_result(node: f64, link: f64, id: f64, bit: f64) -> Value {
    json!({"node_lookup_ns": node, "link_lookup_ns": link, "id_ns": id, "bit_ns": bit})
}

mod sc {
    use super::*;

    fn path(dir: &Path) -> std::path::PathBuf {
        dir.join("scopes.cache")
    }

    pub fn put(dir: &Path, w: &Workload) -> Res<Option<f64>> {
        let t = Instant::now();
        let node_ids = IdMap::from_ids(&w.node_ids)?;
        let link_ids = IdMap::from_ids(&w.link_ids)?;
        let build_s = t.elapsed().as_secs_f64();
        let cache = ScopeCache::open(path(dir), CacheConfig::default())?;
        cache.put(
            "scope-1",
            &ScopeData {
                nodes: &w.nodes,
                links: &w.links,
                node_ids: &node_ids,
                link_ids: &link_ids,
                attributes: &w.attributes,
            },
        )?;
        Ok(Some(build_s))
    }

    pub fn put_more(dir: &Path, w: &Workload, scopes: u64) -> Res<Vec<f64>> {
        let node_ids = IdMap::from_ids(&w.node_ids)?;
        let link_ids = IdMap::from_ids(&w.link_ids)?;
        let cache = ScopeCache::open(path(dir), CacheConfig::default())?;
        let mut times = Vec::new();
        for k in 2..=scopes {
            let (nodes, links) = w.bitsets(k);
            let attributes = workload::attributes(k as usize);
            let data = ScopeData {
                nodes: &nodes,
                links: &links,
                node_ids: &node_ids,
                link_ids: &link_ids,
                attributes: &attributes,
            };
            let t = Instant::now();
            cache.put(&format!("scope-{k}"), &data)?;
            times.push(t.elapsed().as_secs_f64());
        }
        if cache.stats()?.stored_mappings != 2 {
            return Err("the scopes do not share their mappings".into());
        }
        Ok(times)
    }

    pub fn fresh_get(dir: &Path, bit: usize) -> Res<bool> {
        let cache = ScopeCache::open(path(dir), CacheConfig::default())?;
        let scope = cache.get("scope-1")?.ok_or("scope-1 is missing")?;
        Ok(scope.nodes()[bit])
    }

    pub fn read_bench(dir: &Path, k: &Keys<'_>) -> Res<Value> {
        let cache = ScopeCache::open(path(dir), CacheConfig::default())?;
        let scope = cache.get("scope-1")?.ok_or("scope-1 is missing")?;
        let (nm, lm) = (scope.node_ids(), scope.link_ids());
        let node = time_lookups(k.node_keys, k.node_pos, |s| nm.index_of(s))?;
        let link = time_lookups(k.link_keys, k.link_pos, |s| lm.index_of(s))?;
        let id = time_ids(k.node_pos, 13, |p| nm.id(p).map(str::len))?;
        let bits = scope.nodes();
        let bit = time_bits(k.node_pos, |i| bits[i])?;
        let words = scope.node_words();
        let bit_words = time_bits(k.node_pos, |i| words[i / 64] >> (i % 64) & 1 == 1)?;
        let mut out = read_result(node, link, id, bit);
        out["bit_words_ns"] = json!(bit_words);
        Ok(out)
    }
    pub fn reader(dir: &Path, keys: &[&str], pos: &[u32], dur: Duration) -> Res<Value> {
        let cache = ScopeCache::open(path(dir), CacheConfig::default())?;
        let scope = cache.get("scope-1")?.ok_or("scope-1 is missing")?;
        let (nm, bits) = (scope.node_ids(), scope.nodes());
        run_reader(keys, pos, dur, |k| {
            let i = nm.index_of(k)?;
            Some((i, bits[i as usize]))
        })
    }
}

mod lmdb {
    use super::*;
    use heed::types::Bytes;
    use heed::{Database, Env, EnvOpenOptions};

    type Db = Database<Bytes, Bytes>;

    fn env(dir: &Path) -> Res<Env> {
        let mut o = EnvOpenOptions::new();
        o.map_size(64 << 30).max_dbs(8);
        // SAFETY: heed requires that the environment is not opened twice in
        // one process and that the file is not truncated under it; each
        // process here opens it once, and no one shrinks it.
        Ok(unsafe { o.open(dir)? })
    }

    pub fn put(dir: &Path, w: &Workload) -> Res<()> {
        let env = env(dir)?;
        let mut tx = env.write_txn()?;
        for (name, ids) in [("nodes", &w.node_ids), ("links", &w.link_ids)] {
            let fwd: Db = env.create_database(&mut tx, Some(&format!("{name}_fwd")))?;
            let rev: Db = env.create_database(&mut tx, Some(&format!("{name}_rev")))?;
            for (i, id) in ids.iter().enumerate() {
                fwd.put(&mut tx, id.as_bytes(), &(i as u32).to_le_bytes())?;
                rev.put(&mut tx, &(i as u32).to_be_bytes(), id.as_bytes())?;
            }
        }
        let bits: Db = env.create_database(&mut tx, Some("bits"))?;
        put_scope(&bits, &mut tx, 1, &w.nodes, &w.links, &w.attributes)?;
        tx.commit()?;
        Ok(())
    }

    fn put_scope(
        db: &Db,
        tx: &mut heed::RwTxn<'_>,
        k: u64,
        nodes: &BitSlice<u64, Lsb0>,
        links: &BitSlice<u64, Lsb0>,
        attrs: &serde_json::Map<String, Value>,
    ) -> Res<()> {
        db.put(tx, format!("scope-{k}/nodes").as_bytes(), &bytes_of(nodes))?;
        db.put(tx, format!("scope-{k}/links").as_bytes(), &bytes_of(links))?;
        db.put(
            tx,
            format!("scope-{k}/attrs").as_bytes(),
            serde_json::to_string(attrs)?.as_bytes(),
        )?;
        Ok(())
    }

    pub fn put_more(dir: &Path, w: &Workload, scopes: u64) -> Res<Vec<f64>> {
        let env = env(dir)?;
        let mut times = Vec::new();
        for k in 2..=scopes {
            let (nodes, links) = w.bitsets(k);
            let t = Instant::now();
            let mut tx = env.write_txn()?;
            let bits: Db = env.open_database(&tx, Some("bits"))?.ok_or("no bits table")?;
            put_scope(
                &bits,
                &mut tx,
                k,
                &nodes,
                &links,
                &workload::attributes(k as usize),
            )?;
            tx.commit()?;
            times.push(t.elapsed().as_secs_f64());
        }
        Ok(times)
    }

    pub fn fresh_get(dir: &Path, bit: usize) -> Res<bool> {
        let env = env(dir)?;
        let tx = env.read_txn()?;
        let bits: Db = env.open_database(&tx, Some("bits"))?.ok_or("no bits table")?;
        let v = bits.get(&tx, b"scope-1/nodes")?.ok_or("scope-1 is missing")?;
        Ok(bit_of(v, bit))
    }

    pub fn read_bench(dir: &Path, k: &Keys<'_>) -> Res<Value> {
        let env = env(dir)?;
        let tx = env.read_txn()?;
        let open =
            |name: &str| -> Res<Db> { Ok(env.open_database(&tx, Some(name))?.ok_or("missing table")?) };
        let (nf, nr, lf) = (open("nodes_fwd")?, open("nodes_rev")?, open("links_fwd")?);
        let get_u32 = |db: &Db, key: &str| -> Option<u32> {
            let v = db.get(&tx, key.as_bytes()).ok()??;
            Some(u32::from_le_bytes(v.try_into().ok()?))
        };
        let node = time_lookups(k.node_keys, k.node_pos, |s| get_u32(&nf, s))?;
        let link = time_lookups(k.link_keys, k.link_pos, |s| get_u32(&lf, s))?;
        let id = time_ids(k.node_pos, 13, |p| {
            nr.get(&tx, &p.to_be_bytes()).ok().flatten().map(<[u8]>::len)
        })?;
        let bits = open("bits")?
            .get(&tx, b"scope-1/nodes")?
            .ok_or("scope-1 is missing")?;
        let bit = time_bits(k.node_pos, |i| bit_of(bits, i))?;
        Ok(read_result(node, link, id, bit))
    }
    pub fn reader(dir: &Path, keys: &[&str], pos: &[u32], dur: Duration) -> Res<Value> {
        let env = env(dir)?;
        let tx = env.read_txn()?;
        let nf: Db = env
            .open_database(&tx, Some("nodes_fwd"))?
            .ok_or("missing table")?;
        let bits = env
            .open_database::<Bytes, Bytes>(&tx, Some("bits"))?
            .ok_or("no bits table")?
            .get(&tx, b"scope-1/nodes")?
            .ok_or("scope-1 is missing")?;
        run_reader(keys, pos, dur, |k| {
            let v = nf.get(&tx, k.as_bytes()).ok()??;
            let i = u32::from_le_bytes(v.try_into().ok()?);
            Some((i, bit_of(bits, i as usize)))
        })
    }
}

mod rdb {
    use super::*;
    use redb::{Database, TableDefinition};

    const NODES_FWD: TableDefinition<&str, u32> = TableDefinition::new("nodes_fwd");
    const NODES_REV: TableDefinition<u32, &str> = TableDefinition::new("nodes_rev");
    const LINKS_FWD: TableDefinition<&str, u32> = TableDefinition::new("links_fwd");
    const LINKS_REV: TableDefinition<u32, &str> = TableDefinition::new("links_rev");
    const BITS: TableDefinition<&str, &[u8]> = TableDefinition::new("bits");

    fn path(dir: &Path) -> std::path::PathBuf {
        dir.join("scopes.redb")
    }

    pub fn put(dir: &Path, w: &Workload) -> Res<()> {
        let db = Database::create(path(dir))?;
        let tx = db.begin_write()?;
        for (fwd, rev, ids) in [
            (NODES_FWD, NODES_REV, &w.node_ids),
            (LINKS_FWD, LINKS_REV, &w.link_ids),
        ] {
            let mut f = tx.open_table(fwd)?;
            let mut r = tx.open_table(rev)?;
            for (i, id) in ids.iter().enumerate() {
                f.insert(id.as_str(), i as u32)?;
                r.insert(i as u32, id.as_str())?;
            }
        }
        {
            let mut b = tx.open_table(BITS)?;
            put_scope(&mut b, 1, &w.nodes, &w.links, &w.attributes)?;
        }
        tx.commit()?;
        Ok(())
    }

    fn put_scope(
        t: &mut redb::Table<'_, &str, &[u8]>,
        k: u64,
        nodes: &BitSlice<u64, Lsb0>,
        links: &BitSlice<u64, Lsb0>,
        attrs: &serde_json::Map<String, Value>,
    ) -> Res<()> {
        t.insert(format!("scope-{k}/nodes").as_str(), bytes_of(nodes).as_slice())?;
        t.insert(format!("scope-{k}/links").as_str(), bytes_of(links).as_slice())?;
        t.insert(
            format!("scope-{k}/attrs").as_str(),
            serde_json::to_string(attrs)?.as_bytes(),
        )?;
        Ok(())
    }

    pub fn put_more(dir: &Path, w: &Workload, scopes: u64) -> Res<Vec<f64>> {
        let db = Database::create(path(dir))?;
        let mut times = Vec::new();
        for k in 2..=scopes {
            let (nodes, links) = w.bitsets(k);
            let t = Instant::now();
            let tx = db.begin_write()?;
            {
                let mut b = tx.open_table(BITS)?;
                put_scope(&mut b, k, &nodes, &links, &workload::attributes(k as usize))?;
            }
            tx.commit()?;
            times.push(t.elapsed().as_secs_f64());
        }
        Ok(times)
    }

    pub fn fresh_get(dir: &Path, bit: usize) -> Res<bool> {
        let db = Database::open(path(dir))?;
        let tx = db.begin_read()?;
        let t = tx.open_table(BITS)?;
        let v = t.get("scope-1/nodes")?.ok_or("scope-1 is missing")?;
        Ok(bit_of(v.value(), bit))
    }

    pub fn read_bench(dir: &Path, k: &Keys<'_>) -> Res<Value> {
        let db = Database::open(path(dir))?;
        let tx = db.begin_read()?;
        let (nf, nr, lf) = (
            tx.open_table(NODES_FWD)?,
            tx.open_table(NODES_REV)?,
            tx.open_table(LINKS_FWD)?,
        );
        let node = time_lookups(k.node_keys, k.node_pos, |s| {
            nf.get(s).ok().flatten().map(|g| g.value())
        })?;
        let link = time_lookups(k.link_keys, k.link_pos, |s| {
            lf.get(s).ok().flatten().map(|g| g.value())
        })?;
        let id = time_ids(k.node_pos, 13, |p| {
            nr.get(p).ok().flatten().map(|g| g.value().len())
        })?;
        let bits_t = tx.open_table(BITS)?;
        let guard = bits_t.get("scope-1/nodes")?.ok_or("scope-1 is missing")?;
        let bits = guard.value();
        let bit = time_bits(k.node_pos, |i| bit_of(bits, i))?;
        Ok(read_result(node, link, id, bit))
    }

    pub fn reader(dir: &Path, keys: &[&str], pos: &[u32], dur: Duration) -> Res<Value> {
        let db = Database::open(path(dir))?;
        let tx = db.begin_read()?;
        let nf = tx.open_table(NODES_FWD)?;
        let bits_t = tx.open_table(BITS)?;
        let guard = bits_t.get("scope-1/nodes")?.ok_or("scope-1 is missing")?;
        let bits = guard.value();
        run_reader(keys, pos, dur, |k| {
            let i = nf.get(k).ok()??.value();
            Some((i, bit_of(bits, i as usize)))
        })
    }
}
