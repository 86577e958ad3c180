//! Tests of the algebra commands of `scopecache` (union, intersection,
//! difference, covered, counts), run as a separate process on a file built
//! with the library, and checked against a plain model of the bits.

use bitvec::prelude::*;
use scopecache::{CacheConfig, IdMap, ScopeCache, ScopeData};
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const BIN: &str = env!("CARGO_BIN_EXE_scopecache");
const NODES: usize = 130;
const LINKS: usize = 70;

fn run(args: &[&str]) -> Output {
    Command::new(BIN).args(args).output().expect("the binary runs")
}

fn code(o: &Output) -> i32 {
    o.status.code().expect("exited normally")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn ok(args: &[&str]) -> String {
    let o = run(args);
    assert_eq!(code(&o), 0, "{args:?} failed: {}", stderr(&o));
    stdout(&o)
}

fn json(args: &[&str]) -> Value {
    let mut a = args.to_vec();
    a.push("--json");
    let out = ok(&a);
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("{a:?} printed no JSON ({e}): {out}"))
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// Node bit i of scope k.
fn node_bit(k: usize, i: usize) -> bool {
    (i * (k + 2) + k) % 5 < 2
}

/// Link bit i of scope k.
fn link_bit(k: usize, i: usize) -> bool {
    (i + k).is_multiple_of(3)
}

/// Scopes s0..s3 over one pair of mappings, and "other" over other node ids.
fn sample(dir: &Path) -> PathBuf {
    let f = dir.join("a.cache");
    let cache = ScopeCache::open(&f, CacheConfig::default()).unwrap();
    let node_ids = IdMap::from_ids((0..NODES).map(|i| format!("node-{i}"))).unwrap();
    let link_ids = IdMap::from_ids((0..LINKS).map(|i| format!("link-{i}"))).unwrap();
    let attrs = serde_json::Map::new();
    for k in 0..4 {
        let nodes: BitVec<u64, Lsb0> = (0..NODES).map(|i| node_bit(k, i)).collect();
        let links: BitVec<u64, Lsb0> = (0..LINKS).map(|i| link_bit(k, i)).collect();
        cache
            .put(
                &format!("s{k}"),
                &ScopeData {
                    nodes: &nodes,
                    links: &links,
                    node_ids: &node_ids,
                    link_ids: &link_ids,
                    attributes: &attrs,
                },
            )
            .unwrap();
    }
    let other_ids = IdMap::from_ids((0..NODES).map(|i| format!("other-{i}"))).unwrap();
    let nodes = bitvec![u64, Lsb0; 1; NODES];
    let links = bitvec![u64, Lsb0; 0; LINKS];
    cache
        .put(
            "other",
            &ScopeData {
                nodes: &nodes,
                links: &links,
                node_ids: &other_ids,
                link_ids: &link_ids,
                attributes: &attrs,
            },
        )
        .unwrap();
    f
}

fn stored_bits(f: &Path, key: &str) -> (Vec<bool>, Vec<bool>, Value) {
    let cache = ScopeCache::open(
        f,
        CacheConfig {
            read_only: true,
            ..CacheConfig::default()
        },
    )
    .unwrap();
    let sc = cache.get(key).unwrap().unwrap();
    (
        sc.nodes().iter().by_vals().collect(),
        sc.links().iter().by_vals().collect(),
        Value::Object(sc.attributes().clone()),
    )
}

#[test]
fn union_intersection_and_difference_store_results_sharing_the_mappings() {
    let dir = tempfile::tempdir().unwrap();
    let f = sample(dir.path());
    let mappings = json(&["stats", s(&f)])["stored_mappings"].clone();

    let v = json(&["union", s(&f), "u", "s0", "s1", "s2"]);
    let want_n: Vec<bool> = (0..NODES).map(|i| (0..3).any(|k| node_bit(k, i))).collect();
    let want_l: Vec<bool> = (0..LINKS).map(|i| (0..3).any(|k| link_bit(k, i))).collect();
    assert_eq!(v["key"], "u");
    assert_eq!(v["op"], "union");
    assert_eq!(v["inputs"], json!(["s0", "s1", "s2"]));
    assert_eq!(v["total_nodes"], NODES);
    assert_eq!(v["nodes_covered"], want_n.iter().filter(|b| **b).count());
    assert_eq!(v["links_covered"], want_l.iter().filter(|b| **b).count());
    let (n, l, attrs) = stored_bits(&f, "u");
    assert_eq!((n, l), (want_n, want_l));
    assert_eq!(attrs, json!({"op": "union", "inputs": ["s0", "s1", "s2"]}));

    let out = ok(&["intersection", s(&f), "i", "s1", "s3"]);
    assert!(out.contains("nodes covered"), "{out}");
    let (n, _, _) = stored_bits(&f, "i");
    assert_eq!(
        n,
        (0..NODES)
            .map(|i| node_bit(1, i) && node_bit(3, i))
            .collect::<Vec<_>>()
    );

    let v = json(&["difference", s(&f), "d", "s0", "s1", "s2"]);
    assert_eq!(v["inputs"], json!(["s0", "s1", "s2"]));
    let (n, l, _) = stored_bits(&f, "d");
    assert_eq!(
        n,
        (0..NODES)
            .map(|i| node_bit(0, i) && !node_bit(1, i) && !node_bit(2, i))
            .collect::<Vec<_>>()
    );
    assert_eq!(
        l,
        (0..LINKS)
            .map(|i| link_bit(0, i) && !link_bit(1, i) && !link_bit(2, i))
            .collect::<Vec<_>>()
    );
    // No mapping was written for the three results.
    assert_eq!(json(&["stats", s(&f)])["stored_mappings"], mappings);
    assert!(json(&["verify", s(&f)])["problems"]
        .as_array()
        .unwrap()
        .is_empty());
}

#[test]
fn covered_prints_the_covered_ids_in_index_order() {
    let dir = tempfile::tempdir().unwrap();
    let f = sample(dir.path());
    let want: Vec<String> = (0..NODES)
        .filter(|&i| node_bit(2, i))
        .map(|i| format!("node-{i}"))
        .collect();
    let o = run(&["covered", s(&f), "s2"]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    assert_eq!(stdout(&o).lines().collect::<Vec<_>>(), want);
    assert!(
        stderr(&o).contains(&format!("{} of {NODES} nodes covered", want.len())),
        "{}",
        stderr(&o)
    );

    let o = run(&["covered", s(&f), "s2", "--limit", "3"]);
    assert_eq!(stdout(&o).lines().collect::<Vec<_>>(), want[..3]);
    assert!(stderr(&o).contains("(showing 3)"), "{}", stderr(&o));

    let v = json(&["covered", s(&f), "s1", "--links", "--limit", "4"]);
    let want_l: Vec<String> = (0..LINKS)
        .filter(|&i| link_bit(1, i))
        .map(|i| format!("link-{i}"))
        .collect();
    assert_eq!(v["what"], "links");
    assert_eq!(v["total"], LINKS);
    assert_eq!(v["covered"], want_l.len());
    assert_eq!(v["ids"], json!(want_l[..4]));
    let v = json(&["covered", s(&f), "s1", "--links"]);
    assert_eq!(v["ids"], json!(want_l));
}

#[test]
fn counts_prints_the_least_covered_ids() {
    let dir = tempfile::tempdir().unwrap();
    let f = sample(dir.path());
    let count = |i: usize| (0..4).filter(|&k| node_bit(k, i)).count() as u64;
    let mut want: Vec<(u64, usize)> = (0..NODES).map(|i| (count(i), i)).collect();
    want.sort();
    let v = json(&["counts", s(&f), "s0", "s1", "s2", "s3", "--least", "7"]);
    assert_eq!(v["what"], "nodes");
    assert_eq!(v["total"], NODES);
    assert_eq!(v["covered_by_none"], want.iter().filter(|(c, _)| *c == 0).count());
    assert_eq!(v["covered_by_all"], want.iter().filter(|(c, _)| *c == 4).count());
    let least: Vec<(u64, usize, String)> = v["least"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["count"].as_u64().unwrap(),
                e["index"].as_u64().unwrap() as usize,
                e["id"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    let expect: Vec<(u64, usize, String)> = want[..7]
        .iter()
        .map(|&(c, i)| (c, i, format!("node-{i}")))
        .collect();
    assert_eq!(least, expect);

    let out = ok(&["counts", s(&f), "s0", "s1", "--least", "2", "--links"]);
    assert!(out.contains("ID") && out.contains("COUNT"), "{out}");
    let link_count = |i: usize| (0..2).filter(|&k| link_bit(k, i)).count();
    let mut lw: Vec<(usize, usize)> = (0..LINKS).map(|i| (link_count(i), i)).collect();
    lw.sort();
    for (_, i) in &lw[..2] {
        assert!(out.contains(&format!("link-{i} ")), "link-{i} missing in {out}");
    }
}

#[test]
fn bad_input_fails_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let f = sample(dir.path());
    let o = run(&["union", s(&f), "u", "s0", "nope"]);
    assert_eq!(code(&o), 1);
    assert!(stderr(&o).contains("no entry \"nope\""), "{}", stderr(&o));

    let o = run(&["union", s(&f), "u", "s0", "other"]);
    assert_eq!(code(&o), 1);
    assert!(stderr(&o).contains("nodes id mappings"), "{}", stderr(&o));
    let o = run(&["counts", s(&f), "other", "s1", "--json"]);
    assert_eq!(code(&o), 1);
    assert!(stderr(&o).contains("\"other\" and \"s1\""), "{}", stderr(&o));
    // Nothing was stored by the failed commands.
    assert_eq!(json(&["stats", s(&f)])["total_entries"], 5);

    // Usage errors: no input keys, a difference without a scope to subtract.
    assert_eq!(code(&run(&["union", s(&f), "u"])), 2);
    assert_eq!(code(&run(&["difference", s(&f), "d", "s0"])), 2);
    assert_eq!(code(&run(&["counts", s(&f), "s0", "--least", "x"])), 2);

    // A missing file is an error, and is not created.
    let missing = dir.path().join("missing.cache");
    for cmd in [
        vec!["covered", s(&missing), "k"],
        vec!["counts", s(&missing), "k"],
        vec!["union", s(&missing), "u", "k"],
    ] {
        let o = run(&cmd);
        assert_eq!(code(&o), 1, "{cmd:?}");
        assert!(!missing.exists(), "{cmd:?} created the file");
    }
}
