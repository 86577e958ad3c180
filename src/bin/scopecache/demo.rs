//! `demo`: the standard workload, timed. Builds the two id mappings, stores
//! several scopes that share them, then starts a fresh process (this binary,
//! `demo-read`) that opens the file and reads a scope, and prints what each
//! step cost.

use crate::fmt::{num, pairs, secs, size};
use crate::ops::{lib, open_existing};
use crate::{print_json, progress, CmdResult, ConfigArgs, Failure, EXIT_OK};
use bitvec::prelude::{BitVec, Lsb0};
use clap::Args;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use scopecache::{IdMap, ScopeCache, ScopeData};
use serde::{Deserialize, Serialize};
use std::hint::black_box;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

/// Flags of `demo`.
#[derive(Args, Debug)]
pub struct DemoArgs {
    /// The cache file to write. An existing scopecache file there is
    /// replaced (kept with --keep); any other existing file is refused.
    #[arg(long, default_value = "scopecache-demo.cache")]
    pub file: PathBuf,
    /// Node ids ("node-%08d").
    #[arg(long, default_value_t = 1_000_000)]
    pub nodes: u32,
    /// Link ids ("link-%08d-%08d" of i and i*7919 % nodes).
    #[arg(long, default_value_t = 2_000_000)]
    pub links: u32,
    /// Scopes to store; all share the two mappings.
    #[arg(long, default_value_t = 5)]
    pub scopes: u32,
    /// Keep the entries of an existing cache file instead of starting afresh.
    #[arg(long)]
    pub keep: bool,
    /// Random lookups, bit tests and gets timed by the reader process.
    #[arg(long, default_value_t = 1_000_000)]
    pub lookups: u32,
    #[command(flatten)]
    pub config: ConfigArgs,
}

/// Flags of the hidden `demo-read`.
#[derive(Args, Debug)]
pub struct DemoReadArgs {
    /// The cache file.
    #[arg(long)]
    pub file: PathBuf,
    /// The scope to read.
    #[arg(long)]
    pub key: String,
    /// Random operations per timed loop.
    #[arg(long, default_value_t = 1_000_000)]
    pub lookups: u32,
}

/// What the reader process measured, printed as one JSON line.
#[derive(Serialize, Deserialize, Debug, Clone)]
pub struct ReaderFigures {
    /// `ScopeCache::open`, seconds.
    pub open_s: f64,
    /// The first `get` of the scope in this process (its checks included), seconds.
    pub first_get_s: f64,
    /// The first id -> index lookup and bit test, seconds.
    pub first_bit_s: f64,
    /// open + first get + first lookup and bit test, seconds.
    pub open_get_bit_s: f64,
    /// A later `get` of the same scope, ns.
    pub get_ns: f64,
    /// `index_of` of a random node id, one at a time, ns.
    pub node_lookup_ns: f64,
    /// `index_of` of a random link id, one at a time, ns.
    pub link_lookup_ns: f64,
    /// `index_of_batch` over random node ids, ns per id.
    pub batch_lookup_ns: f64,
    /// `index_of` then testing the node's bit (the original bench's loop), ns.
    pub lookup_and_test_ns: f64,
    /// `id(i)` of a random index, ns.
    pub index_to_id_ns: f64,
    /// Testing a random node bit, ns.
    pub bit_test_ns: f64,
    /// Counting the set bits of the nodes bitset, seconds.
    pub popcount_nodes_s: f64,
    /// Counting the set bits of the links bitset, seconds.
    pub popcount_links_s: f64,
    /// Set node bits found.
    pub nodes_set: u64,
    /// Set link bits found.
    pub links_set: u64,
    /// Timed operations per loop.
    pub ops: u64,
}

/// Everything `demo --json` prints.
#[derive(Serialize, Debug)]
struct DemoFigures {
    file: PathBuf,
    nodes: u32,
    links: u32,
    scopes: u32,
    generate_ids_s: f64,
    node_map_build_s: f64,
    link_map_build_s: f64,
    put_first_s: f64,
    put_first_incl_build_s: f64,
    put_shared_avg_s: f64,
    file_bytes: u64,
    bytes_per_scope: u64,
    /// File growth per put after the first, whose mappings are already stored.
    bytes_per_shared_put: u64,
    reader: ReaderFigures,
}

/// Ids in one buffer: far less memory than one `String` each at 8M ids.
struct Ids {
    buf: String,
    ends: Vec<usize>,
}

impl Ids {
    fn new(n: u32, mut f: impl FnMut(&mut String, u32)) -> Ids {
        let mut ids = Ids {
            buf: String::new(),
            ends: Vec::with_capacity(n as usize),
        };
        for i in 0..n {
            f(&mut ids.buf, i);
            ids.ends.push(ids.buf.len());
        }
        ids
    }
    fn iter(&self) -> impl Iterator<Item = &str> + '_ {
        let starts = std::iter::once(0).chain(self.ends.iter().copied());
        starts
            .zip(self.ends.iter().copied())
            .map(|(s, e)| &self.buf[s..e])
    }
}

/// The node id of position `i`.
pub fn node_id(i: u64) -> String {
    format!("node-{i:08}")
}

/// The link id of position `i` among links over `nodes` nodes.
pub fn link_id(i: u64, nodes: u64) -> String {
    format!("link-{i:08}-{:08}", i * 7919 % nodes.max(1))
}

fn random_bits(n: u32, rng: &mut StdRng) -> BitVec<u64, Lsb0> {
    let words: Vec<u64> = (0..(n as usize).div_ceil(64)).map(|_| rng.gen()).collect();
    let mut bits = BitVec::from_vec(words);
    bits.truncate(n as usize);
    bits
}

/// Replaces an existing scopecache file at `path` (after checking that it
/// is one), so the figures are of a fresh file.
fn start_afresh(path: &Path, args: &ConfigArgs) -> Result<(), Failure> {
    if !path.exists() {
        return Ok(());
    }
    let check = open_existing(path, args, true);
    if let Err(f) = check {
        return Err(Failure::msg(format!(
            "{}; refusing to replace it (choose another --file)",
            f.msg
        )));
    }
    drop(check);
    std::fs::remove_file(path).map_err(|e| Failure::at(path, e))
}

/// `demo`.
pub fn run(a: &DemoArgs, json: bool) -> CmdResult {
    if a.scopes == 0 {
        return Err(Failure::msg("--scopes must be at least 1"));
    }
    if !a.keep {
        start_afresh(&a.file, &a.config)?;
    }
    let pb = progress::bar(u64::from(3 + a.scopes + 1), "generating ids");
    let (n, l) = (a.nodes, a.links);
    let t = Instant::now();
    let node_ids = Ids::new(n, |b, i| {
        use std::fmt::Write;
        let _ = write!(b, "node-{i:08}");
    });
    let link_ids = Ids::new(l, |b, i| {
        use std::fmt::Write;
        let _ = write!(b, "link-{i:08}-{:08}", u64::from(i) * 7919 % u64::from(n.max(1)));
    });
    let generate_ids_s = t.elapsed().as_secs_f64();
    pb.inc(1);
    pb.set_message("building node id mapping");
    let t = Instant::now();
    let node_map = IdMap::from_ids(node_ids.iter()).map_err(Failure::msg)?;
    let node_map_build_s = t.elapsed().as_secs_f64();
    drop(node_ids);
    pb.inc(1);
    pb.set_message("building link id mapping");
    let t = Instant::now();
    let link_map = IdMap::from_ids(link_ids.iter()).map_err(Failure::msg)?;
    let link_map_build_s = t.elapsed().as_secs_f64();
    drop(link_ids);
    pb.inc(1);

    let cache = ScopeCache::open(&a.file, a.config.config(false)).map_err(lib(&a.file))?;
    let mut put_s = Vec::new();
    let mut first_counts = (0u64, 0u64);
    let mut len_after_first = 0u64;
    for k in 0..a.scopes {
        pb.set_message(format!("put scope {}/{}", k + 1, a.scopes));
        let mut rng = StdRng::seed_from_u64(u64::from(k));
        let nodes = random_bits(n, &mut rng);
        let links = random_bits(l, &mut rng);
        if k == 0 {
            first_counts = (nodes.count_ones() as u64, links.count_ones() as u64);
        }
        let mut attributes = serde_json::Map::new();
        attributes.insert("run".into(), format!("r{}", k + 1).into());
        attributes.insert("seed".into(), k.into());
        let data = ScopeData {
            nodes: &nodes,
            links: &links,
            node_ids: &node_map,
            link_ids: &link_map,
            attributes: &attributes,
        };
        let t = Instant::now();
        cache.put(&scope_key(k), &data).map_err(lib(&a.file))?;
        put_s.push(t.elapsed().as_secs_f64());
        if k == 0 {
            len_after_first = std::fs::metadata(&a.file)
                .map_err(|e| Failure::at(&a.file, e))?
                .len();
        }
        pb.inc(1);
    }
    drop(cache);
    drop((node_map, link_map));

    pb.set_message("timing a fresh reader process");
    let reader = spawn_reader(&a.file, &scope_key(0), a.lookups)?;
    pb.finish_and_clear();
    if (reader.nodes_set, reader.links_set) != first_counts {
        return Err(Failure::at(
            &a.file,
            format!(
                "the reader counted {} / {} set bits, the writer stored {} / {}",
                reader.nodes_set, reader.links_set, first_counts.0, first_counts.1
            ),
        ));
    }
    let file_bytes = std::fs::metadata(&a.file)
        .map_err(|e| Failure::at(&a.file, e))?
        .len();
    let shared: Vec<f64> = put_s.iter().skip(1).copied().collect();
    let f = DemoFigures {
        file: a.file.clone(),
        nodes: n,
        links: l,
        scopes: a.scopes,
        generate_ids_s,
        node_map_build_s,
        link_map_build_s,
        put_first_s: put_s[0],
        put_first_incl_build_s: put_s[0] + node_map_build_s + link_map_build_s,
        put_shared_avg_s: if shared.is_empty() {
            0.0
        } else {
            shared.iter().sum::<f64>() / shared.len() as f64
        },
        file_bytes,
        bytes_per_scope: file_bytes / u64::from(a.scopes),
        bytes_per_shared_put: if a.scopes > 1 {
            file_bytes.saturating_sub(len_after_first) / u64::from(a.scopes - 1)
        } else {
            0
        },
        reader,
    };
    if json {
        print_json(&f)?;
    } else {
        print_table(&f);
    }
    Ok(EXIT_OK)
}

fn scope_key(k: u32) -> String {
    format!("scope{}", k + 1)
}

fn spawn_reader(file: &Path, key: &str, lookups: u32) -> Result<ReaderFigures, Failure> {
    let exe = std::env::current_exe().map_err(|e| Failure::msg(format!("cannot find this program: {e}")))?;
    let out = Command::new(&exe)
        .arg("demo-read")
        .arg("--file")
        .arg(file)
        .arg("--key")
        .arg(key)
        .arg("--lookups")
        .arg(lookups.to_string())
        .output()
        .map_err(|e| Failure::msg(format!("{}: cannot start the reader process: {e}", exe.display())))?;
    if !out.status.success() {
        return Err(Failure::msg(format!(
            "the reader process failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    let stdout = String::from_utf8_lossy(&out.stdout);
    let line = stdout.lines().last().unwrap_or("");
    serde_json::from_str(line).map_err(|e| Failure::msg(format!("the reader process printed {line:?}: {e}")))
}

fn print_table(f: &DemoFigures) {
    let r = &f.reader;
    let ns = |v: f64| format!("{v:.0} ns");
    println!(
        "scopecache demo: {} nodes, {} links, {} scopes sharing two id mappings -> {}",
        num(u64::from(f.nodes)),
        num(u64::from(f.links)),
        f.scopes,
        f.file.display()
    );
    println!();
    print!(
        "{}",
        pairs(&[
            (
                "build node id mapping (IdMap::from_ids)",
                secs(f.node_map_build_s)
            ),
            (
                "build link id mapping (IdMap::from_ids)",
                secs(f.link_map_build_s)
            ),
            (
                "put, new mappings (incl. from_ids)",
                format!(
                    "{} (put alone {})",
                    secs(f.put_first_incl_build_s),
                    secs(f.put_first_s)
                ),
            ),
            ("put, shared mappings (average)", secs(f.put_shared_avg_s)),
            (
                "fresh process: open + get + bit test",
                format!(
                    "{} (open {}, first get {}, first lookup + bit {})",
                    secs(r.open_get_bit_s),
                    secs(r.open_s),
                    secs(r.first_get_s),
                    secs(r.first_bit_s)
                ),
            ),
            ("repeated get", ns(r.get_ns)),
            ("node id -> index, one at a time", ns(r.node_lookup_ns)),
            ("link id -> index, one at a time", ns(r.link_lookup_ns)),
            (
                "node id -> index, index_of_batch",
                format!("{} per id", ns(r.batch_lookup_ns))
            ),
            ("node id -> index + bit test", ns(r.lookup_and_test_ns)),
            ("index -> id", ns(r.index_to_id_ns)),
            ("bit test", ns(r.bit_test_ns)),
            (
                "popcount nodes / links",
                format!("{} / {}", secs(r.popcount_nodes_s), secs(r.popcount_links_s))
            ),
            (
                "bytes on disk",
                format!("{} ({} bytes)", size(f.file_bytes), num(f.file_bytes))
            ),
            (
                "bytes per scope",
                format!("{} ({} bytes)", size(f.bytes_per_scope), num(f.bytes_per_scope))
            ),
            (
                "file growth per shared-mapping put",
                format!(
                    "{} ({} bytes)",
                    size(f.bytes_per_shared_put),
                    num(f.bytes_per_shared_put)
                ),
            ),
        ])
    );
    println!("(timed loops: {} random operations each)", num(r.ops));
}

/// `demo-read`: the fresh process. Prints one JSON line of [`ReaderFigures`].
pub fn run_reader(a: &DemoReadArgs) -> CmdResult {
    let mut rng = StdRng::seed_from_u64(0x5c09e);
    let t0 = Instant::now();
    let cache = open_existing(&a.file, &ConfigArgs::default(), false)?;
    let open_s = t0.elapsed().as_secs_f64();
    let t = Instant::now();
    let scope = cache
        .get(&a.key)
        .map_err(lib(&a.file))?
        .ok_or_else(|| Failure::at(&a.file, format!("no entry {:?}", a.key)))?;
    let first_get_s = t.elapsed().as_secs_f64();
    let n = scope.node_ids().len() as u64;
    let l = scope.link_ids().len() as u64;
    if n == 0 || l == 0 {
        return Err(Failure::at(&a.file, "the demo scope has no nodes or no links"));
    }
    let t = Instant::now();
    let probe = node_id(rng.gen_range(0..n));
    let i = scope
        .node_ids()
        .index_of(&probe)
        .ok_or_else(|| Failure::at(&a.file, format!("id {probe} missing")))?;
    black_box(scope.nodes()[i as usize]);
    let first_bit_s = t.elapsed().as_secs_f64();
    let open_get_bit_s = t0.elapsed().as_secs_f64();

    let ops = u64::from(a.lookups.max(1));
    let per_op = |t: Instant| t.elapsed().as_secs_f64() * 1e9 / ops as f64;

    let gets = ops.min(100_000);
    let t = Instant::now();
    for _ in 0..gets {
        black_box(cache.get(&a.key).map_err(lib(&a.file))?);
    }
    let get_ns = t.elapsed().as_secs_f64() * 1e9 / gets as f64;

    let node_keys: Vec<String> = (0..ops).map(|_| node_id(rng.gen_range(0..n))).collect();
    let link_keys: Vec<String> = (0..ops).map(|_| link_id(rng.gen_range(0..l), n)).collect();
    let indices: Vec<u32> = (0..ops).map(|_| rng.gen_range(0..n) as u32).collect();

    let t = Instant::now();
    let mut found = 0u64;
    for k in &node_keys {
        found += u64::from(scope.node_ids().index_of(k).is_some());
    }
    let node_lookup_ns = per_op(t);
    let t = Instant::now();
    for k in &link_keys {
        found += u64::from(scope.link_ids().index_of(k).is_some());
    }
    let link_lookup_ns = per_op(t);
    if found != 2 * ops {
        return Err(Failure::at(
            &a.file,
            format!("{} of {} ids were not found", 2 * ops - found, 2 * ops),
        ));
    }
    let mut out = vec![None; 4096];
    let t = Instant::now();
    for chunk in node_keys.chunks(4096) {
        let o = &mut out[..chunk.len()];
        scope.node_ids().index_of_batch(chunk, o).map_err(lib(&a.file))?;
        black_box(&o);
    }
    let batch_lookup_ns = per_op(t);
    let t = Instant::now();
    let nodes = scope.nodes();
    let mut c = 0u64;
    for k in &node_keys {
        if let Some(i) = scope.node_ids().index_of(k) {
            c += u64::from(nodes[i as usize]);
        }
    }
    black_box(c);
    let lookup_and_test_ns = per_op(t);
    let t = Instant::now();
    let mut len = 0usize;
    for &i in &indices {
        len += scope.node_ids().id(i).map_or(0, str::len);
    }
    black_box(len);
    let index_to_id_ns = per_op(t);
    let t = Instant::now();
    let mut c = 0u64;
    for &i in &indices {
        c += u64::from(nodes[i as usize]);
    }
    black_box(c);
    let bit_test_ns = per_op(t);
    let t = Instant::now();
    let nodes_set = scope.nodes().count_ones() as u64;
    let popcount_nodes_s = t.elapsed().as_secs_f64();
    let t = Instant::now();
    let links_set = scope.links().count_ones() as u64;
    let popcount_links_s = t.elapsed().as_secs_f64();

    let f = ReaderFigures {
        open_s,
        first_get_s,
        first_bit_s,
        open_get_bit_s,
        get_ns,
        node_lookup_ns,
        link_lookup_ns,
        batch_lookup_ns,
        lookup_and_test_ns,
        index_to_id_ns,
        bit_test_ns,
        popcount_nodes_s,
        popcount_links_s,
        nodes_set,
        links_set,
        ops,
    };
    println!("{}", serde_json::to_string(&f).map_err(Failure::msg)?);
    Ok(EXIT_OK)
}
