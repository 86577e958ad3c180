//! FORMAT.md is enough to write a reader. `tests/format_reader/read_scopecache.py`
//! is a reader written from FORMAT.md alone (plain Python, plus the `xxhash`
//! package for XXH3): it checks every superblock, index, bitset and mapping
//! rule the document states and prints what the newest generation holds.
//! Here caches written through the public API are read by it, and what it
//! prints must equal what the crate's API returns; bytes flipped in a
//! bitset, a mapping or the index must make it fail, naming the check; an
//! index re-encoded to break a rule of §2.6 behind a valid CRC must be
//! refused by it and by the crate alike; and the writer guarantees that
//! FORMAT.md tells readers not to enforce are noted by it, not refused.
//!
//! Skipped (with a message) when `python3` is missing. Without the `xxhash`
//! package the reader skips its digest and lookup checks; setting
//! `SCOPECACHE_REQUIRE_XXHASH=1` (as `.ci/run` does) makes that a failure.

#[path = "common/sample.rs"]
mod sample;

use bitvec::prelude::*;
use scopecache::{CacheConfig, IdMap, Scope, ScopeCache, ScopeData};
use serde_json::{json, Map, Value};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

/// One scope as put, to compare the reader's output with.
#[derive(Clone)]
struct Spec {
    key: String,
    nodes: BitVec<u64, Lsb0>,
    links: BitVec<u64, Lsb0>,
    node_ids: Vec<String>,
    link_ids: Vec<String>,
    attributes: Map<String, Value>,
}

impl Spec {
    fn new(key: &str, node_ids: Vec<String>, link_ids: Vec<String>, seed: u64, attributes: Value) -> Spec {
        // A cheap deterministic bit pattern, different for each seed.
        let mix = seed.wrapping_mul(0xD1B5_4A32_D192_ED03);
        let bit = |i: usize| (i as u64 ^ mix).wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 63 == 1;
        Spec {
            key: key.to_string(),
            nodes: (0..node_ids.len()).map(bit).collect(),
            links: (0..link_ids.len()).map(|i| bit(i + 7)).collect(),
            node_ids,
            link_ids,
            attributes: attributes.as_object().cloned().unwrap_or_default(),
        }
    }

    fn from_sample(e: &sample::Expected) -> Spec {
        Spec {
            key: e.key.to_string(),
            nodes: e.nodes.clone(),
            links: e.links.clone(),
            node_ids: e.node_ids.clone(),
            link_ids: e.link_ids.clone(),
            attributes: e.attributes.clone(),
        }
    }

    fn put(&self, cache: &ScopeCache) {
        let n = IdMap::from_ids(&self.node_ids).unwrap();
        let l = IdMap::from_ids(&self.link_ids).unwrap();
        self.put_with(cache, &n, &l);
    }

    fn put_with(&self, cache: &ScopeCache, n: &IdMap, l: &IdMap) {
        cache
            .put(
                &self.key,
                &ScopeData {
                    nodes: &self.nodes,
                    links: &self.links,
                    node_ids: n,
                    link_ids: l,
                    attributes: &self.attributes,
                },
            )
            .unwrap();
    }
}

fn ids(prefix: &str, n: usize) -> Vec<String> {
    (0..n).map(|i| format!("{prefix}{i}")).collect()
}

fn config() -> CacheConfig {
    CacheConfig {
        fsync: false,
        auto_compact: false,
        ..sample::config()
    }
}

fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/format_reader/read_scopecache.py")
}

/// True when `python3` runs; prints why the test is skipped otherwise.
fn have_python() -> bool {
    static HAVE: OnceLock<bool> = OnceLock::new();
    *HAVE.get_or_init(|| {
        let ok = Command::new("python3")
            .args(["-c", "import sys; assert sys.version_info >= (3, 11)"])
            .output()
            .is_ok_and(|o| o.status.success());
        if !ok {
            eprintln!("skipped: the FORMAT.md reader needs python3 (3.11 or newer)");
        }
        ok
    })
}

fn run_reader(path: &Path, extra: &[&str]) -> Output {
    Command::new("python3")
        .arg(script())
        .arg(path)
        .args(extra)
        .output()
        .unwrap()
}

/// Runs the reader, which must accept the file and find every writer
/// guarantee kept, and returns its document.
fn read(path: &Path, extra: &[&str]) -> Value {
    let doc = read_noting(path, extra);
    assert_eq!(
        doc["notes"],
        json!([]),
        "{}: writer guarantees broken",
        path.display()
    );
    doc
}

/// Runs the reader, which must accept the file, and returns its document.
fn read_noting(path: &Path, extra: &[&str]) -> Value {
    let o = run_reader(path, extra);
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(
        o.status.success(),
        "the reader refused {}: {stderr}",
        path.display()
    );
    let doc: Value = serde_json::from_slice(&o.stdout).unwrap();
    if doc["xxhash"] != json!(true) {
        eprintln!("WARNING: the reader ran without xxhash; digests and lookups unchecked: {stderr}");
        assert!(
            std::env::var_os("SCOPECACHE_REQUIRE_XXHASH").is_none(),
            "SCOPECACHE_REQUIRE_XXHASH is set but python3 has no xxhash package"
        );
    }
    doc
}

/// Runs the reader, which must refuse the file naming `check`.
fn refused(path: &Path, check: &str) {
    let o = run_reader(path, &[]);
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert_eq!(
        o.status.code(),
        Some(3),
        "expected [{check}] to fail; stderr: {stderr}"
    );
    assert!(
        stderr.contains(&format!("FAIL [{check}]")),
        "expected [{check}], got: {stderr}"
    );
}

fn bit_string(b: &BitSlice<u64, Lsb0>) -> String {
    b.iter().map(|x| if *x { '1' } else { '0' }).collect()
}

fn words_hex(w: &[u64]) -> String {
    w.iter().map(|x| format!("{x:016x}")).collect()
}

fn u(v: &Value) -> u64 {
    v.as_u64().unwrap_or_else(|| panic!("not a u64: {v}"))
}

/// Compares one bitset as the reader printed it with the crate's.
fn check_bits(
    what: &str,
    got: &Value,
    bits: &BitSlice<u64, Lsb0>,
    words: &[u64],
    spec: &BitSlice<u64, Lsb0>,
) {
    assert_eq!(bits, spec, "{what}: the API returns the bits put");
    assert_eq!(u(&got["bits"]), bits.len() as u64, "{what}: bits");
    assert_eq!(u(&got["ones"]), bits.count_ones() as u64, "{what}: ones");
    match got.get("bitstring") {
        Some(s) => assert_eq!(s.as_str().unwrap(), bit_string(bits), "{what}: bit string"),
        None => assert_eq!(
            got["words_hex"].as_str().unwrap(),
            words_hex(words),
            "{what}: words"
        ),
    }
}

/// Which writer wrote a file.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Writer {
    /// This build: a mapping's bytes are those `IdMap::from_ids` gives now.
    This,
    /// An older build, whose mappings may hold the in-order slot placement
    /// (FORMAT.md §2.5): equally valid, but a fresh build of the same ids
    /// has other slot bytes and so another digest.
    Older,
}

/// Compares one mapping as the reader printed it with the crate's.
fn check_map(what: &str, got: &Value, map: &IdMap, spec: &[String], writer: Writer) {
    assert_eq!(u(&got["count"]), map.len() as u64, "{what}: N");
    assert_eq!(map.len(), spec.len(), "{what}: the API returns N ids");
    assert_eq!(u(&got["len"]), map.region_len(), "{what}: region length");
    let digest = u128::from_str_radix(got["digest"].as_str().unwrap(), 16).unwrap();
    assert_eq!(digest, map.digest(), "{what}: digest");
    // The digest is a function of the ids and their order alone (for one
    // writer's placement).
    if writer == Writer::This {
        assert_eq!(
            digest,
            IdMap::from_ids(spec).unwrap().digest(),
            "{what}: digest of a fresh map"
        );
    }
    let api: Vec<&str> = map.iter().collect::<scopecache::Result<_>>().unwrap();
    assert_eq!(api, spec, "{what}: the API returns the ids put");
    match got.get("ids") {
        Some(list) => {
            let list: Vec<&str> = list
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_str().unwrap())
                .collect();
            assert_eq!(list, api, "{what}: ids");
        }
        None => {
            let head: Vec<&str> = got["ids_head"]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_str().unwrap())
                .collect();
            assert_eq!(head, api[..head.len()], "{what}: first ids");
        }
    }
}

/// Gets every scope of `specs` through the API (before the reader runs, so
/// that the access stamps it reads are final), checking each against its spec.
fn get_all(cache: &ScopeCache, specs: &[Spec]) -> Vec<Scope> {
    specs
        .iter()
        .map(|s| {
            cache
                .get(&s.key)
                .unwrap()
                .unwrap_or_else(|| panic!("{} missing", s.key))
        })
        .collect()
}

/// The reader's document must describe exactly `specs`, as the API does.
fn check(cache: &ScopeCache, doc: &Value, specs: &[Spec], scopes: &[Scope], writer: Writer) {
    let entries = doc["entries"].as_array().unwrap();
    let maps = doc["maps"].as_array().unwrap();
    let keys: Vec<&str> = entries.iter().map(|e| e["key"].as_str().unwrap()).collect();
    let mut want: Vec<&str> = specs.iter().map(|s| s.key.as_str()).collect();
    want.sort(); // the index is sorted by key bytes, as str's Ord is
    assert_eq!(keys, want, "entries");
    assert_eq!(u(&doc["generation"]), cache.generation().unwrap(), "generation");

    // list(): most recently accessed first, by the later of the index's
    // time and the stamp (FORMAT.md §2.3).
    let list = cache.list().unwrap();
    let mut by_access: Vec<(i64, &str)> = entries
        .iter()
        .map(|e| (e["last_access_us"].as_i64().unwrap(), e["key"].as_str().unwrap()))
        .collect();
    by_access.sort_by(|a, b| b.cmp(a));
    let distinct = by_access.windows(2).all(|w| w[0].0 != w[1].0);
    if distinct {
        let order: Vec<&str> = list.iter().map(|i| i.key.as_str()).collect();
        let doc_order: Vec<&str> = by_access.iter().map(|x| x.1).collect();
        assert_eq!(order, doc_order, "list order");
    }

    let mut map_of_ids: HashMap<&[String], u64> = HashMap::new();
    for (spec, scope) in specs.iter().zip(scopes) {
        let e = entries.iter().find(|e| e["key"] == json!(spec.key)).unwrap();
        let what = &spec.key;
        let info = cache.info(&spec.key).unwrap().unwrap();
        assert_eq!(scope.key(), spec.key);
        assert_eq!(
            e["created_us"].as_i64().unwrap(),
            info.created_at.timestamp_micros(),
            "{what}: created"
        );
        assert_eq!(
            e["last_access_us"].as_i64().unwrap(),
            info.last_accessed.timestamp_micros(),
            "{what}: last access"
        );
        assert!(
            u(&e["stamp"]) > 0,
            "{what}: the get before the reader ran raised the stamp"
        );
        assert_eq!(
            e["attributes"],
            Value::Object(info.attributes.clone()),
            "{what}: attributes (info)"
        );
        assert_eq!(
            e["attributes"],
            Value::Object(scope.attributes().clone()),
            "{what}: attributes (get)"
        );
        assert_eq!(scope.attributes(), &spec.attributes, "{what}: attributes put");
        assert_eq!(
            u(&e["attributes_bytes"]),
            info.attributes_bytes,
            "{what}: attribute bytes"
        );
        check_bits(
            &format!("{what}.nodes"),
            &e["nodes"],
            scope.nodes(),
            scope.node_words(),
            &spec.nodes,
        );
        check_bits(
            &format!("{what}.links"),
            &e["links"],
            scope.links(),
            scope.link_words(),
            &spec.links,
        );
        assert_eq!(info.total_nodes, u(&e["nodes"]["bits"]));
        assert_eq!(info.total_links, u(&e["links"]["bits"]));
        assert_eq!(
            info.nodes_bytes,
            u(&e["nodes"]["bits"]).div_ceil(64) * 8,
            "{what}: nodes bytes"
        );
        assert_eq!(
            info.links_bytes,
            u(&e["links"]["bits"]).div_ceil(64) * 8,
            "{what}: links bytes"
        );
        let (nm, lm) = (u(&e["node_map"]), u(&e["link_map"]));
        check_map(
            &format!("{what}.node_ids"),
            &maps[nm as usize],
            scope.node_ids(),
            &spec.node_ids,
            writer,
        );
        check_map(
            &format!("{what}.link_ids"),
            &maps[lm as usize],
            scope.link_ids(),
            &spec.link_ids,
            writer,
        );
        assert_eq!(
            info.node_ids_bytes,
            u(&maps[nm as usize]["len"]),
            "{what}: node mapping bytes"
        );
        assert_eq!(
            info.link_ids_bytes,
            u(&maps[lm as usize]["len"]),
            "{what}: link mapping bytes"
        );
        // One stored mapping per distinct id list, across entries (§2.5).
        for (list, m) in [(&spec.node_ids, nm), (&spec.link_ids, lm)] {
            let first = *map_of_ids.entry(list.as_slice()).or_insert(m);
            assert_eq!(first, m, "{what}: an id list already stored is stored again");
        }
    }
    // A delta chain's table keeps the records of mappings whose entries are
    // gone (§2.7); the reader marks them `named: false`.
    let named = maps.iter().filter(|m| m["named"] != json!(false)).count();
    assert_eq!(
        named,
        map_of_ids.len(),
        "maps: one per distinct id list, and no other"
    );

    // The counters page (§2.2) and the sizes the reader can work out.
    let st = cache.stats().unwrap();
    let counters: Vec<u64> = doc["counters"].as_array().unwrap().iter().map(u).collect();
    let api = [
        st.hits,
        st.misses,
        st.evictions,
        st.expiries,
        st.corrupt_dropped,
        st.puts,
        st.removes,
        st.compactions,
    ];
    assert_eq!(counters, api, "counters");
    assert!(
        st.hits >= specs.len() as u64 && (specs.is_empty() || st.puts > 0),
        "counters counted: {api:?}"
    );
    assert_eq!(st.file_bytes, u(&doc["committed"]), "committed length");
    assert_eq!(st.generation, u(&doc["generation"]));
    assert_eq!(st.stored_mappings, named as u64);
    let bitset_bytes = |e: &Value, part: &str| u(&e[part]["bits"]).div_ceil(64) * 8;
    let held: u64 = entries
        .iter()
        .map(|e| bitset_bytes(e, "nodes") + bitset_bytes(e, "links") + u(&e["attributes_bytes"]))
        .sum::<u64>()
        + maps
            .iter()
            .filter(|m| m["named"] != json!(false))
            .map(|m| u(&m["len"]))
            .sum::<u64>();
    assert_eq!(st.total_size_bytes, held, "bytes held, each mapping once");
}

/// Writes `specs` into a new cache at `path` and returns the open cache.
fn write(path: &Path, specs: &[Spec]) -> ScopeCache {
    let cache = ScopeCache::open(path, config()).unwrap();
    for s in specs {
        s.put(&cache);
    }
    cache
}

fn read_and_check(cache: &ScopeCache, specs: &[Spec], extra: &[&str]) -> Value {
    read_and_check_from(cache, specs, extra, Writer::This)
}

fn read_and_check_from(cache: &ScopeCache, specs: &[Spec], extra: &[&str], writer: Writer) -> Value {
    let scopes = get_all(cache, specs);
    let doc = read(cache.path(), extra);
    check(cache, &doc, specs, &scopes, writer);
    doc
}

#[test]
fn the_sample_cache_reads_the_same() {
    if !have_python() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sample.cache");
    let specs: Vec<Spec> = sample::write(&path).iter().map(Spec::from_sample).collect();
    let cache = ScopeCache::open(&path, config()).unwrap();
    let doc = read_and_check(&cache, &specs, &[]);
    // alpha and beta share one node mapping; gamma's links are 0 bits
    // with an empty (0-id) mapping.
    let e = doc["entries"].as_array().unwrap();
    assert_eq!(e[0]["node_map"], e[1]["node_map"]);
    assert_eq!(e[2]["links"]["bits"], json!(0));
    assert_eq!(doc["maps"][u(&e[2]["link_map"]) as usize]["count"], json!(0));
}

/// Both golden files: format version 1 (no delta) and 2 (a delta chain).
#[test]
fn the_golden_files_read_as_written() {
    if !have_python() {
        return;
    }
    for version in [1, 2] {
        golden_reads_as_written(version);
    }
}

fn golden_reads_as_written(version: u32) {
    // Copied: the API's gets raise stamps in the file.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("golden.cache");
    std::fs::copy(
        Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("tests/data/golden-v{version}.cache")),
        &path,
    )
    .unwrap();
    let specs: Vec<Spec> = sample::scopes().iter().map(Spec::from_sample).collect();
    // A read-only process records no access (FORMAT.md §2.3): the stamps
    // stay as written (zero), and the last access is the index's.
    let ro = ScopeCache::open(
        &path,
        CacheConfig {
            read_only: true,
            ..config()
        },
    )
    .unwrap();
    let untouched = read(&path, &[]);
    assert_eq!(untouched["version"], json!(version));
    assert_eq!(
        untouched["deltas"].as_u64().unwrap() > 0,
        version >= 2,
        "v{version}"
    );
    drop(get_all(&ro, &specs));
    let doc = read(&path, &[]);
    assert_eq!(
        doc["counters"], untouched["counters"],
        "a read-only get counts nothing"
    );
    for e in doc["entries"].as_array().unwrap() {
        assert_eq!(e["stamp"], json!(0), "{e}");
        assert_eq!(e["last_access_us"], e["accessed_us"]);
    }
    drop(ro);
    let cache = ScopeCache::open(&path, config()).unwrap();
    // The version 1 file was written before the sorted slot placement.
    let writer = if version == 1 { Writer::Older } else { Writer::This };
    read_and_check_from(&cache, &specs, &[], writer);
}

#[test]
fn empty_mappings_zero_bits_and_non_ascii_ids() {
    if !have_python() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("edge.cache");
    let utf8 = vec![
        "é".to_string(),
        "日本語のノード".to_string(),
        "🦀-crab".to_string(),
        "a\u{0}b".to_string(),
        "".to_string(),
        "Ωmega-ünïcödé-id-longer-than-eight-bytes".to_string(),
    ];
    let specs = vec![
        // Both parts empty: 0-bit bitsets, 0-id mappings.
        Spec::new("empty", vec![], vec![], 1, json!({})),
        Spec::new("only-links", vec![], ids("l", 3), 2, json!({"k": "v"})),
        // Keys of 1, 8 (inline, no 0xFF terminator) and 9 bytes (out of
        // line), and non-ASCII keys.
        Spec::new(
            "x",
            utf8.clone(),
            ids("e", 1),
            3,
            json!({"é": "ü", "n": [1, 2.5, null, true]}),
        ),
        Spec::new(
            "eight-by",
            ids("n", 64),
            ids("m", 65),
            4,
            json!({"long": "x".repeat(300)}),
        ),
        Spec::new(
            "nine-byte",
            ids("n", 64),
            utf8.clone(),
            5,
            json!({"nested": {"a": {"b": []}}}),
        ),
        Spec::new("clé-ü", utf8, ids("n", 64), 6, json!({})),
        // One id list for both parts: stored once.
        Spec::new("same-ids", ids("s", 10), ids("s", 10), 7, json!({"same": true})),
    ];
    let cache = write(&path, &specs);
    read_and_check(&cache, &specs, &[]);
}

#[test]
fn shared_mappings_replace_remove_and_compact() {
    if !have_python() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("shared.cache");
    let cache = ScopeCache::open(&path, config()).unwrap();
    let (nodes, links) = (ids("node-", 200), ids("link-", 300));
    let (n, l) = (IdMap::from_ids(&nodes).unwrap(), IdMap::from_ids(&links).unwrap());
    let mut specs: Vec<Spec> = (0..4)
        .map(|k| {
            Spec::new(
                &format!("scope-{k}"),
                nodes.clone(),
                links.clone(),
                k,
                json!({"k": k}),
            )
        })
        .collect();
    for s in &specs[..2] {
        s.put_with(&cache, &n, &l); // one IdMap handed to several puts
    }
    for s in &specs[2..] {
        s.put(&cache); // equal maps built again: shared through the digest
    }
    let other = Spec::new("other-graph", ids("o", 10), ids("p", 11), 9, json!({"g": 2}));
    other.put(&cache);
    specs.push(other);
    read_and_check(&cache, &specs, &[]);

    // Replace one entry (new bits, new attributes, new link ids), remove two.
    specs[1] = Spec::new(
        "scope-1",
        nodes.clone(),
        ids("relinked-", 50),
        42,
        json!({"replaced": true}),
    );
    specs[1].put(&cache);
    assert!(cache.remove("scope-3").unwrap());
    assert!(cache.remove("other-graph").unwrap());
    specs.retain(|s| s.key != "scope-3" && s.key != "other-graph");
    let before = read_and_check(&cache, &specs, &[]);

    // Compaction retires the old file (§4.3): kept here under another name.
    let old = dir.path().join("retired.cache");
    std::fs::hard_link(&path, &old).unwrap();
    cache.compact().unwrap();
    let after = read_and_check(&cache, &specs, &[]);
    let retired = read(&old, &[]);
    assert_eq!(retired["retired"], json!(true));
    assert_eq!(before["retired"], json!(false));
    assert_eq!(after["retired"], json!(false));
    assert_eq!(retired["file_id"], before["file_id"]);
    assert_eq!(
        retired["entries"], before["entries"],
        "the retired generation repeats the last one"
    );
    assert_ne!(
        before["file_id"], after["file_id"],
        "compaction writes a new file"
    );
    assert!(
        u(&after["committed"]) < u(&before["committed"]),
        "compaction drops dead regions"
    );
}

#[test]
fn a_mapping_of_many_blocks() {
    if !have_python() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("large.cache");
    let nodes: Vec<String> = (0..30_000).map(|i| format!("graph/node/{i:06}")).collect();
    let links: Vec<String> = (0..5_000)
        .map(|i| format!("ließ-{i}→{}", (i * 7) % 30_000))
        .collect();
    let specs = vec![
        Spec::new("big", nodes.clone(), links.clone(), 11, json!({"size": "large"})),
        Spec::new("big-2", nodes, links, 12, json!({"size": "large", "n": 2})),
    ];
    let cache = write(&path, &specs);
    let doc = read_and_check(&cache, &specs, &["--ids-limit", "100000"]);
    let big = &doc["maps"][u(&doc["entries"][0]["node_map"]) as usize];
    assert!(u(&big["blocks"]) >= 4, "several 64 KiB blocks: {big}");
    // Bitsets larger than the reader's bit-string limit come as words.
    assert!(doc["entries"][0]["nodes"].get("words_hex").is_some());
}

/// A copy of `src` named `name` in its directory, with the byte at `pos`
/// flipped by one bit.
fn damaged_copy(src: &Path, name: &str, pos: u64) -> PathBuf {
    let mut bytes = std::fs::read(src).unwrap();
    bytes[pos as usize] ^= 0x01;
    let dst = src.with_file_name(name);
    std::fs::write(&dst, bytes).unwrap();
    dst
}

#[test]
fn a_flipped_byte_is_detected_by_the_reader() {
    if !have_python() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let clean = dir.path().join("clean.cache");
    let specs: Vec<Spec> = sample::scopes().iter().map(Spec::from_sample).collect();
    drop(write(&clean, &specs));
    let doc = read(&clean, &[]);
    let gamma = doc["entries"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["key"] == json!("gamma"))
        .unwrap();
    let map = |k: u64| &doc["maps"][k as usize];

    // The crate's verify must find each of these too.
    let crate_finds_it = |p: &Path| {
        let cache = ScopeCache::open(
            p,
            CacheConfig {
                read_only: true,
                ..config()
            },
        )
        .unwrap();
        let report = cache.verify().unwrap();
        assert!(
            !report.problems.is_empty(),
            "{}: verify found nothing",
            p.display()
        );
    };
    // A bitset: the last word of gamma's 67 node bits.
    let p = damaged_copy(&clean, "bitset.cache", u(&gamma["nodes"]["offset"]) + 8);
    refused(&p, "bitset crc");
    crate_finds_it(&p);
    // A mapping's body (its first block), its block CRC table, its header.
    let p = damaged_copy(
        &clean,
        "block.cache",
        u(&map(u(&gamma["node_map"]))["body_offset"]),
    );
    refused(&p, "mapping block crc");
    crate_finds_it(&p);
    let p = damaged_copy(&clean, "table.cache", u(&map(0)["offset"]) + 64);
    refused(&p, "mapping block table crc");
    crate_finds_it(&p);
    let p = damaged_copy(&clean, "header.cache", u(&map(1)["offset"]) + 8);
    refused(&p, "mapping header crc");
    crate_finds_it(&p);
    // The index: the crate refuses to open the file.
    let p = damaged_copy(
        &clean,
        "index.cache",
        u(&doc["index_offset"]) + u(&doc["index_len"]) / 2,
    );
    refused(&p, "index crc");
    assert!(matches!(
        ScopeCache::open(
            &p,
            CacheConfig {
                read_only: true,
                ..config()
            }
        ),
        Err(scopecache::Error::Corrupt { .. })
    ));

    // The newest superblock: the reader falls back to the older one, as
    // the crate does, and that older generation is still complete.
    let p = damaged_copy(&clean, "superblock.cache", u(&doc["slot"]) * 4096 + 20);
    let older = read(&p, &[]);
    assert_eq!(u(&older["generation"]) + 1, u(&doc["generation"]));
    assert_eq!(older["slot"], json!(1 - u(&doc["slot"])));
    let cache = ScopeCache::open(
        &p,
        CacheConfig {
            read_only: true,
            ..config()
        },
    )
    .unwrap();
    assert_eq!(
        cache.generation().unwrap(),
        u(&older["generation"]),
        "the crate picks the same slot"
    );

    // Both superblocks: not a scopecache file any more.
    let mut bytes = std::fs::read(&clean).unwrap();
    bytes[0] ^= 0xFF;
    bytes[4096] ^= 0xFF;
    let p = clean.with_file_name("nomagic.cache");
    std::fs::write(&p, bytes).unwrap();
    refused(&p, "superblock");
}

/// `bytes` with its newest generation's index changed by `f` (given the
/// index and the position of its `entries` elements) and its CRCs made
/// right again, as FORMAT.md lays them out.
/// `bytes` with `f` applied to the base index and the CRCs made valid
/// again; the file must have no delta (a compacted file).
fn recommitted(bytes: &[u8], doc: &Value, f: impl FnOnce(&mut [u8], usize)) -> Vec<u8> {
    assert_eq!(
        doc["deltas"],
        json!(0),
        "crafted files start from a compacted file"
    );
    let mut b = bytes.to_vec();
    let sb = u(&doc["slot"]) as usize * 4096;
    let (off, len) = (u(&doc["index_offset"]) as usize, u(&doc["index_len"]) as usize);
    let ix = &mut b[off..off + len];
    let root = len - 16;
    let target =
        |at: usize| (at as i64 + i32::from_le_bytes(ix[at..at + 4].try_into().unwrap()) as i64) as usize;
    let entries = target(root);
    f(ix, entries);
    let crc = crc32fast::hash(&b[off..off + len]);
    b[sb + 48..sb + 52].copy_from_slice(&crc.to_le_bytes());
    let crc = crc32fast::hash(&b[sb..sb + 124]);
    b[sb + 124..sb + 128].copy_from_slice(&crc.to_le_bytes());
    b
}

fn put_u32(b: &mut [u8], at: usize, v: u32) {
    b[at..at + 4].copy_from_slice(&v.to_le_bytes());
}

fn put_u64(b: &mut [u8], at: usize, v: u64) {
    b[at..at + 8].copy_from_slice(&v.to_le_bytes());
}

/// Indexes that pass their CRC but break a rule of FORMAT.md §2.6: the
/// reader refuses each, naming the rule, and so does the crate.
#[test]
fn rules_behind_a_valid_crc_are_enforced_by_both_readers() {
    if !have_python() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let clean = dir.path().join("clean.cache");
    let specs: Vec<Spec> = sample::scopes().iter().map(Spec::from_sample).collect();
    write(&clean, &specs).compact().unwrap(); // one base index, no delta
    let doc = read(&clean, &[]);
    let bytes = std::fs::read(&clean).unwrap();
    let alpha_map = u(&doc["entries"][0]["node_map"]);
    let map_offset = u(&doc["maps"][alpha_map as usize]["offset"]);
    type Change = Box<dyn Fn(&mut [u8], usize)>;
    let cases: Vec<(&str, &str, Change)> = vec![
        // The sample's keys are inline strings: swapping two unsorts them.
        (
            "unsorted keys",
            "index semantics",
            Box::new(|ix, e| {
                let (a, b) = (ix[e..e + 8].to_vec(), ix[e + 96..e + 104].to_vec());
                ix[e..e + 8].copy_from_slice(&b);
                ix[e + 96..e + 104].copy_from_slice(&a);
            }),
        ),
        (
            "slot past the capacity",
            "index semantics",
            Box::new(|ix, e| put_u32(ix, e + 24, 64)),
        ),
        (
            "map index out of range",
            "index semantics",
            Box::new(|ix, e| put_u32(ix, e + 28, 99)),
        ),
        (
            "a bitset laid over a mapping",
            "no overlapping regions",
            Box::new(move |ix, e| put_u64(ix, e + 40, map_offset)),
        ),
        (
            "a bitset outside the data area",
            "region placement",
            Box::new(|ix, e| put_u64(ix, e + 40, 4096)),
        ),
        (
            "maps elements overlapping the entries elements",
            "index validation",
            Box::new(|ix, _| {
                let root = ix.len() - 16;
                let rel = i32::from_le_bytes(ix[root + 8..root + 12].try_into().unwrap());
                ix[root + 8..root + 12].copy_from_slice(&(rel - 8).to_le_bytes());
            }),
        ),
        (
            // beta's attributes (out of line) pointed at alpha's, which lie
            // before the end of the previously claimed string.
            "strings out of rkyv's order",
            "index validation",
            Box::new(|ix, e| {
                let alpha_target =
                    (e + 88) as i64 + i32::from_le_bytes(ix[e + 92..e + 96].try_into().unwrap()) as i64;
                let beta = e + 96 + 88;
                let alpha_len = ix[e + 88..e + 92].to_vec();
                ix[beta..beta + 4].copy_from_slice(&alpha_len);
                let rel = alpha_target - beta as i64;
                ix[beta + 4..beta + 8].copy_from_slice(&(rel as i32).to_le_bytes());
            }),
        ),
        (
            "an out-of-line string of 8 bytes",
            "index validation",
            Box::new(|ix, e| put_u32(ix, e + 88, 8 | 0x80)),
        ),
    ];
    for (name, check, change) in &cases {
        let p = dir.path().join("crafted.cache");
        std::fs::write(&p, recommitted(&bytes, &doc, change)).unwrap();
        refused(&p, check);
        match ScopeCache::open(
            &p,
            CacheConfig {
                read_only: true,
                ..config()
            },
        ) {
            Err(scopecache::Error::Corrupt { .. }) => {}
            other => panic!("{name}: the crate should refuse the file as corrupt, got {other:?}"),
        }
    }
    // A version this reader does not read, and a file of another kind.
    let other_version = |v: u32| {
        let mut b = bytes.clone();
        for sb in [0, 4096] {
            put_u32(&mut b, sb + 8, v);
            let crc = crc32fast::hash(&b[sb..sb + 124]);
            put_u32(&mut b, sb + 124, crc);
        }
        b
    };
    let p = dir.path().join("v3.cache");
    std::fs::write(&p, other_version(3)).unwrap();
    let o = run_reader(&p, &[]);
    assert!(String::from_utf8_lossy(&o.stderr).contains("unsupported version 3"));
    assert!(matches!(
        ScopeCache::open(
            &p,
            CacheConfig {
                read_only: true,
                ..config()
            }
        ),
        Err(scopecache::Error::UnsupportedVersion { found: 3, .. })
    ));
}

/// Two writer guarantees that FORMAT.md §2.6 tells readers not to enforce:
/// the reader notes a break and reads on, and the crate opens the file.
#[test]
fn writer_guarantees_are_noted_not_enforced() {
    if !have_python() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let clean = dir.path().join("clean.cache");
    let specs: Vec<Spec> = sample::scopes().iter().map(Spec::from_sample).collect();
    write(&clean, &specs).compact().unwrap(); // one base index, no delta
    let doc = read(&clean, &[]);
    let bytes = std::fs::read(&clean).unwrap();
    type Change = Box<dyn Fn(&mut [u8], usize)>;
    let cases: Vec<(&str, usize, Change)> = vec![
        // gamma dropped from `entries`: its two maps are named by no entry.
        (
            "every map named",
            2,
            Box::new(|ix, _| {
                let root = ix.len() - 16;
                put_u32(ix, root + 4, 2);
            }),
        ),
        // beta given alpha's stamp slot.
        (
            "unique stamp slots",
            3,
            Box::new(|ix, e| put_u32(ix, e + 96 + 24, 0)),
        ),
    ];
    for (guarantee, entries, change) in &cases {
        let p = dir.path().join("noted.cache");
        std::fs::write(&p, recommitted(&bytes, &doc, change)).unwrap();
        let got = read_noting(&p, &[]);
        let notes = got["notes"].as_array().unwrap();
        assert!(
            !notes.is_empty() && notes.iter().all(|n| n.as_str().unwrap().starts_with(guarantee)),
            "{guarantee}: {notes:?}"
        );
        assert_eq!(got["entries"].as_array().unwrap().len(), *entries);
        let cache = ScopeCache::open(
            &p,
            CacheConfig {
                read_only: true,
                ..config()
            },
        )
        .unwrap();
        assert_eq!(
            cache.list().unwrap().len(),
            *entries,
            "{guarantee}: the crate reads the file"
        );
    }
}

/// Indexes of no entries (empty vectors), a stamp table that had to grow
/// (§2.3), and a key of the longest length.
#[test]
fn empty_indexes_and_a_grown_stamp_table() {
    if !have_python() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("grow.cache");
    let cache = ScopeCache::open(&path, config()).unwrap();
    let fresh = read_and_check(&cache, &[], &[]);
    assert_eq!(
        fresh["stamp_capacity"],
        json!(64),
        "a new file has a 64-slot table"
    );

    let node_ids = ids("n", 3);
    let mut specs: Vec<Spec> = (0..70)
        .map(|k| {
            Spec::new(
                &format!("entry-{k:03}"),
                node_ids.clone(),
                ids("l", k % 4),
                k as u64,
                json!({"k": k}),
            )
        })
        .collect();
    specs.push(Spec::new(
        &"k".repeat(scopecache::MAX_KEY_LEN),
        node_ids,
        vec![],
        99,
        json!({}),
    ));
    for s in &specs {
        s.put(&cache);
    }
    let grown = read_and_check(&cache, &specs, &[]);
    assert_eq!(
        grown["stamp_capacity"],
        json!(128),
        "64 slots, then a table twice as large"
    );

    assert_eq!(cache.clear().unwrap(), specs.len() as u64);
    let cleared = read_and_check(&cache, &[], &[]);
    assert_eq!(cleared["maps"], json!([]));
}
