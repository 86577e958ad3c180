//! Tests of the `scopecache` command, run as a separate process.
//!
//! The import test runs the original Python cache manager when `python3`
//! with `bitarray` and `orjson` is available and `../shared/anchors` sits
//! beside the crate; it always also imports the checked-in fixtures in
//! `tests/fixtures/python_cache/` (written once by
//! `tests/fixtures/make_python_cache.py`).
//!
//! `SCOPECACHE_CLI_STRESS_ROUNDS` sets how many compact/maintain runs the
//! concurrency test makes (default 12).

mod common;

use bitvec::prelude::*;
use common::Model;
use scopecache::{CacheConfig, IdMap, ScopeCache, ScopeData};
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const BIN: &str = env!("CARGO_BIN_EXE_scopecache");

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

/// Runs and expects exit 0; returns stdout.
fn ok(args: &[&str]) -> String {
    let o = run(args);
    assert_eq!(code(&o), 0, "{args:?} failed: {}", stderr(&o));
    stdout(&o)
}

/// Runs with `--json`, expects exit 0, parses stdout as one JSON document.
fn json(args: &[&str]) -> Value {
    let mut a = args.to_vec();
    a.push("--json");
    let out = ok(&a);
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("{a:?} printed no JSON ({e}): {out}"))
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// A demo file of 3 scopes over 2000 nodes / 4000 links.
fn demo(dir: &Path) -> PathBuf {
    let f = dir.join("demo.cache");
    let v = json(&[
        "demo",
        "--nodes",
        "2000",
        "--links",
        "4000",
        "--scopes",
        "3",
        "--lookups",
        "2000",
        "--file",
        s(&f),
    ]);
    assert_eq!(v["scopes"], 3);
    assert_eq!(v["file_bytes"], std::fs::metadata(&f).unwrap().len());
    f
}

fn read_only() -> CacheConfig {
    CacheConfig {
        read_only: true,
        ttl: None,
        ..CacheConfig::default()
    }
}

#[test]
fn demo_and_the_reading_commands() {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("d.cache");
    let v = json(&[
        "demo",
        "--nodes",
        "2000",
        "--links",
        "4000",
        "--scopes",
        "3",
        "--lookups",
        "5000",
        "--file",
        s(&f),
    ]);
    // The reader process counted the set bits of scope1; the library agrees.
    let cache = ScopeCache::open(&f, read_only()).unwrap();
    let s1 = cache.get("scope1").unwrap().unwrap();
    assert_eq!(v["reader"]["nodes_set"], s1.nodes().count_ones() as u64);
    assert_eq!(v["reader"]["links_set"], s1.links().count_ones() as u64);
    assert_eq!(v["reader"]["ops"], 5000);
    assert!(v["reader"]["node_lookup_ns"].as_f64().unwrap() > 0.0);
    assert_eq!(v["bytes_per_scope"], v["file_bytes"].as_u64().unwrap() / 3);
    drop((s1, cache));

    let st = json(&["stats", s(&f)]);
    assert_eq!(st["total_entries"], 3);
    assert_eq!(st["stored_mappings"], 2);
    assert_eq!(st["total_nodes"], 6000);
    assert_eq!(st["total_links"], 12000);
    assert_eq!(st["average_nodes_per_entry"], 2000);
    assert_eq!(st["puts"], 3);
    assert_eq!(st["file_bytes"], std::fs::metadata(&f).unwrap().len());
    assert!(st["hits"].as_u64().unwrap() >= 1, "the reader's gets count: {st}");
    let human = ok(&["stats", s(&f)]);
    assert!(human.contains("entries               3 (max 100)"), "{human}");
    assert!(human.contains("stored mappings       2"), "{human}");
    assert!(
        human.contains("total nodes           6,000 (avg 2,000 per entry)"),
        "{human}"
    );
    let oldest = human.lines().find(|l| l.starts_with("oldest entry")).unwrap();
    let t = oldest.split_whitespace().nth(2).unwrap();
    assert_eq!(
        chrono::DateTime::parse_from_rfc3339(t).unwrap().timestamp(),
        st["oldest_entry"]
            .as_str()
            .map(|s| chrono::DateTime::parse_from_rfc3339(s).unwrap().timestamp())
            .unwrap()
    );
    assert!(
        oldest.ends_with("(just now)") || oldest.ends_with(" s ago)"),
        "{oldest}"
    );
    let human = ok(&["stats", s(&f), "--max-size", "1M"]);
    let expect = format!(
        "{:.2}% of 1.00 MB",
        100.0 * std::fs::metadata(&f).unwrap().len() as f64 / (1 << 20) as f64
    );
    assert!(human.contains(&expect), "{expect} in {human}");

    let list = json(&["list", s(&f)]);
    let keys: Vec<&str> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["key"].as_str().unwrap())
        .collect();
    let mut sorted = keys.clone();
    sorted.sort();
    assert_eq!(sorted, ["scope1", "scope2", "scope3"]);
    // Most recently accessed first: the reader process got scope1 last.
    assert_eq!(keys[0], "scope1");
    for e in list.as_array().unwrap() {
        assert_eq!(e["shares_mappings"], true);
        assert_eq!(e["total_nodes"], 2000);
        assert_eq!(e["nodes_bytes"], 256);
    }
    let human = ok(&["list", s(&f)]);
    assert!(human.lines().next().unwrap().starts_with("KEY"), "{human}");
    assert!(
        human.contains("scope2") && human.contains("2,000") && human.contains("4,000"),
        "{human}"
    );
    assert!(human.trim_end().ends_with("3 entries"), "{human}");

    let info = json(&["info", s(&f), "scope2"]);
    assert_eq!(info["key"], "scope2");
    assert_eq!(info["total_links"], 4000);
    assert_eq!(info["attributes"], json!({"run": "r2", "seed": 1}));
    assert_eq!(
        info["total_bytes"].as_u64().unwrap(),
        [
            "nodes_bytes",
            "links_bytes",
            "node_ids_bytes",
            "link_ids_bytes",
            "attributes_bytes"
        ]
        .iter()
        .map(|k| info[k].as_u64().unwrap())
        .sum::<u64>()
    );
    let human = ok(&["info", s(&f), "scope2"]);
    assert!(human.contains("total nodes      2,000"), "{human}");
    assert!(human.contains("(shared with other entries)"), "{human}");
    assert!(human.contains(r#"{"run":"r2","seed":1}"#), "{human}");
    assert!(
        human.contains("expires") && human.contains("(in 23 h)"),
        "{human}"
    );

    let ver = json(&["verify", s(&f)]);
    assert_eq!(ver["entries"], 3);
    assert_eq!(ver["problems"], json!([]));
    assert!(ok(&["verify", s(&f)]).contains("OK: no problems found"));
}

#[test]
fn demo_refuses_to_replace_a_file_that_is_not_a_cache() {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("precious.txt");
    std::fs::write(&f, b"not a cache, keep me").unwrap();
    let o = run(&[
        "demo",
        "--nodes",
        "100",
        "--links",
        "100",
        "--scopes",
        "1",
        "--file",
        s(&f),
    ]);
    assert_eq!(code(&o), 1);
    assert!(stderr(&o).contains("refusing to replace"), "{}", stderr(&o));
    assert_eq!(std::fs::read(&f).unwrap(), b"not a cache, keep me");
}

#[test]
fn missing_files_are_errors_and_are_not_created() {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("absent.cache");
    let out = dir.path().join("out");
    let cmds: Vec<Vec<&str>> = vec![
        vec!["stats", s(&f)],
        vec!["list", s(&f)],
        vec!["info", s(&f), "k"],
        vec!["rm", s(&f), "k"],
        vec!["clear", s(&f)],
        vec!["maintain", s(&f)],
        vec!["compact", s(&f)],
        vec!["verify", s(&f)],
        vec!["export", s(&f), "k", "--out", s(&out)],
    ];
    for c in cmds {
        let o = run(&c);
        assert_eq!(code(&o), 1, "{c:?}");
        let err = stderr(&o);
        assert!(
            err.starts_with(&format!("scopecache: {}: ", f.display())),
            "{c:?}: {err}"
        );
        assert!(!f.exists(), "{c:?} created the file");
    }
    assert!(!out.exists());
}

#[test]
fn garbage_and_corrupt_files() {
    let dir = tempfile::tempdir().unwrap();
    let junk = dir.path().join("junk.cache");
    std::fs::write(&junk, vec![0xA5u8; 20_000]).unwrap();
    for c in ["stats", "list", "verify"] {
        let o = run(&[c, s(&junk)]);
        assert_eq!(code(&o), 1, "{c}");
        assert!(stderr(&o).contains(s(&junk)), "{c}: {}", stderr(&o));
        assert!(
            stderr(&o).contains("not a scopecache file"),
            "{c}: {}",
            stderr(&o)
        );
    }

    // Flip a byte inside scope2's nodes bitset: verify finds it and exits 3.
    let f = demo(dir.path());
    let ex = dir.path().join("ex");
    ok(&["export", s(&f), "scope2", "--out", s(&ex)]);
    let words = std::fs::read(ex.join("nodes.u64le")).unwrap();
    let mut file = std::fs::read(&f).unwrap();
    let at: Vec<usize> = file
        .windows(words.len())
        .enumerate()
        .filter(|(_, w)| *w == words)
        .map(|(i, _)| i)
        .collect();
    assert_eq!(at.len(), 1, "the bitset occurs once in the file");
    file[at[0] + 17] ^= 0x5A;
    std::fs::write(&f, &file).unwrap();

    let o = run(&["verify", s(&f)]);
    assert_eq!(code(&o), 3, "{}", stderr(&o));
    let out = stdout(&o);
    assert!(
        out.contains("CORRUPT: 1 problems") && out.contains("entry \"scope2\""),
        "{out}"
    );
    let o = run(&["verify", s(&f), "--json"]);
    assert_eq!(code(&o), 3);
    let v: Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(v["problems"].as_array().unwrap().len(), 1);
    assert_eq!(v["problems"][0]["key"], "scope2");
    // Only reading the index, stats does not notice.
    assert_eq!(json(&["stats", s(&f)])["total_entries"], 3);

    // Both superblocks damaged: the file cannot even be opened. verify says
    // it is corrupt (3); stats fails (1); both name the file.
    file[40] ^= 0xFF;
    file[4096 + 40] ^= 0xFF;
    std::fs::write(&f, &file).unwrap();
    for (c, want) in [("verify", 3), ("stats", 1)] {
        let o = run(&[c, s(&f)]);
        assert_eq!(code(&o), want, "{c}");
        let err = stderr(&o);
        assert!(
            err.starts_with(&format!("scopecache: {}: corrupt: ", f.display())),
            "{c}: {err}"
        );
    }
}

#[test]
fn bad_keys_and_usage_errors() {
    let dir = tempfile::tempdir().unwrap();
    let f = demo(dir.path());
    for c in [
        vec!["info", s(&f), "nope"],
        vec!["rm", s(&f), "nope"],
        vec!["export", s(&f), "nope", "--out", "x"],
    ] {
        let o = run(&c);
        assert_eq!(code(&o), 1, "{c:?}");
        assert!(stderr(&o).contains(r#"no entry "nope""#), "{c:?}: {}", stderr(&o));
    }
    let long = "k".repeat(2000);
    let o = run(&["info", s(&f), &long]);
    assert_eq!(code(&o), 1);
    assert!(stderr(&o).contains("invalid key"), "{}", stderr(&o));
    for c in [
        vec!["stats"],
        vec!["frobnicate", s(&f)],
        vec!["stats", s(&f), "--max-size", "5Q"],
        vec!["stats", s(&f), "--max-entries", "many"],
        vec!["export", s(&f), "scope1"],
    ] {
        assert_eq!(code(&run(&c)), 2, "{c:?}");
    }
    let help = ok(&["export", "--help"]);
    assert!(
        help.contains("nodes.u64le") && help.contains("|u1") && help.contains("link_ids.txt"),
        "{help}"
    );
    let help = ok(&["import-python", "--help"]);
    assert!(help.contains("0x80 >> i%8") && help.contains("UTC"), "{help}");
}

#[test]
fn rm_clear_compact_and_maintain() {
    let dir = tempfile::tempdir().unwrap();
    let f = demo(dir.path());
    let v = json(&["rm", s(&f), "scope2"]);
    assert_eq!(v["removed"], true);
    let keys: Vec<String> = json(&["list", s(&f)])
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["key"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(keys.len(), 2);
    assert!(!keys.contains(&"scope2".to_owned()));
    let st = json(&["stats", s(&f)]);
    assert!(
        st["dead_bytes"].as_u64().unwrap() >= 768,
        "the bitsets are dead: {st}"
    );
    assert_eq!(st["removes"], 1);

    let before = std::fs::metadata(&f).unwrap().len();
    let c = json(&["compact", s(&f)]);
    let after = std::fs::metadata(&f).unwrap().len();
    // compact() commits its transaction before compacting, which may append a few bytes.
    assert!(c["bytes_before"].as_u64().unwrap() >= before, "{c}");
    assert_eq!(c["bytes_after"], after);
    assert!(after < before, "{after} < {before}");
    assert_eq!(json(&["stats", s(&f)])["compactions"], 1);
    let human = ok(&["compact", s(&f)]);
    assert!(
        human.starts_with(&format!("compacted {}: ", f.display())),
        "{human}"
    );
    assert_eq!(code(&run(&["verify", s(&f)])), 0);

    // maintain evicts the least recently used beyond --max-entries.
    ok(&["info", s(&f), "scope1"]);
    let m = json(&["maintain", s(&f), "--max-entries", "1"]);
    assert_eq!(m["evicted"], 1);
    assert_eq!(m["expired"], 0);
    assert_eq!(json(&["list", s(&f)]).as_array().unwrap().len(), 1);
    let human = ok(&["maintain", s(&f)]);
    assert!(
        human.contains("evicted          0") && human.contains("compaction"),
        "{human}"
    );

    assert!(ok(&["clear", s(&f)]).contains("removed 1 entries"));
    assert_eq!(json(&["clear", s(&f)])["removed"], 0);
    assert!(ok(&["list", s(&f)]).starts_with("no entries"));
    assert_eq!(json(&["stats", s(&f)])["total_entries"], 0);
}

/// Parses a .npy v1.0 file of dtype |u1: returns (shape, data).
fn parse_npy(b: &[u8]) -> (String, &[u8]) {
    assert_eq!(&b[..8], b"\x93NUMPY\x01\x00");
    let hl = u16::from_le_bytes([b[8], b[9]]) as usize;
    assert_eq!((10 + hl) % 64, 0, "data aligned to 64");
    let h = std::str::from_utf8(&b[10..10 + hl]).unwrap();
    assert!(h.ends_with('\n'));
    assert!(
        h.contains("'descr': '|u1'") && h.contains("'fortran_order': False"),
        "{h}"
    );
    let shape = h
        .split("'shape': (")
        .nth(1)
        .unwrap()
        .split(')')
        .next()
        .unwrap()
        .to_owned();
    (shape, &b[10 + hl..])
}

#[test]
fn export_writes_the_scope_as_plain_files() {
    let dir = tempfile::tempdir().unwrap();
    let f = demo(dir.path());
    let out = dir.path().join("export");
    let v = json(&["export", s(&f), "scope3", "--out", s(&out)]);
    assert_eq!(v["total_nodes"], 2000);
    let cache = ScopeCache::open(&f, read_only()).unwrap();
    let scope = cache.get("scope3").unwrap().unwrap();
    for (name, bits, map) in [
        ("nodes", scope.nodes(), scope.node_ids()),
        ("links", scope.links(), scope.link_ids()),
    ] {
        let raw = std::fs::read(out.join(format!("{name}.u64le"))).unwrap();
        assert_eq!(raw.len(), bits.len().div_ceil(64) * 8);
        let words: Vec<u64> = raw
            .chunks(8)
            .map(|c| u64::from_le_bytes(c.try_into().unwrap()))
            .collect();
        let decoded: Vec<bool> = (0..words.len() * 64)
            .map(|i| words[i / 64] >> (i % 64) & 1 == 1)
            .collect();
        assert_eq!(&decoded[..bits.len()], bits.iter().by_vals().collect::<Vec<_>>());
        assert!(
            decoded[bits.len()..].iter().all(|b| !b),
            "bits past the end are zero"
        );

        let npy = std::fs::read(out.join(format!("{name}.npy"))).unwrap();
        let (shape, data) = parse_npy(&npy);
        assert_eq!(shape, format!("{},", bits.len()));
        assert_eq!(data, bits.iter().by_vals().map(u8::from).collect::<Vec<_>>());

        let text = std::fs::read_to_string(out.join(format!("{}_ids.txt", &name[..4]))).unwrap();
        let ids: Vec<&str> = text.lines().collect();
        assert_eq!(ids.len(), map.len());
        for (i, id) in ids.iter().enumerate() {
            assert_eq!(map.id(i as u32), Some(*id));
        }
    }
    let attrs: Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("attributes.json")).unwrap()).unwrap();
    assert_eq!(&attrs, &Value::Object(scope.attributes().clone()));
    let info: Value = serde_json::from_str(&std::fs::read_to_string(out.join("info.json")).unwrap()).unwrap();
    assert_eq!(info["key"], "scope3");
    assert_eq!(info["total_links"], 4000);
    assert!(ok(&["export", s(&f), "scope1", "--out", s(&out)]).starts_with("exported \"scope1\""));

    // An id holding a newline cannot be written one per line.
    let g = dir.path().join("nl.cache");
    let c = ScopeCache::open(&g, CacheConfig::default()).unwrap();
    let ids = IdMap::from_ids(["plain", "two\nlines"]).unwrap();
    let bits = bitvec![u64, Lsb0; 1, 0];
    let attrs = serde_json::Map::new();
    c.put(
        "k",
        &ScopeData {
            nodes: &bits,
            links: &bits,
            node_ids: &ids,
            link_ids: &ids,
            attributes: &attrs,
        },
    )
    .unwrap();
    let o = run(&["export", s(&g), "k", "--out", s(&dir.path().join("nl"))]);
    assert_eq!(code(&o), 1);
    assert!(
        stderr(&o).contains("newline") && stderr(&o).contains("node_ids.txt"),
        "{}",
        stderr(&o)
    );
}

/// Checks an imported cache against what the original wrote: every
/// non-stale entry, bit for bit, id for id, with its times and attributes.
fn check_import(pydir: &Path, expected: &Value, file: &Path) {
    let meta: Value =
        serde_json::from_str(&std::fs::read_to_string(pydir.join("cache_metadata.json")).unwrap()).unwrap();
    let cache = ScopeCache::open(file, read_only()).unwrap();
    let mut keys: Vec<String> = cache.list().unwrap().into_iter().map(|e| e.key).collect();
    keys.sort();
    assert_eq!(keys, ["alpha", "beta", "gamma"]);
    for k in &keys {
        let want = &expected[k.as_str()];
        let info = cache.info(k).unwrap().unwrap();
        let naive = |f: &str| meta[k.as_str()][f].as_str().unwrap().to_owned();
        assert_eq!(
            info.created_at.format("%Y-%m-%dT%H:%M:%S%.6f").to_string(),
            naive("created_at"),
            "{k}"
        );
        assert_eq!(
            info.last_accessed.format("%Y-%m-%dT%H:%M:%S%.6f").to_string(),
            naive("last_accessed"),
            "{k}"
        );
        let scope = cache.get(k).unwrap().unwrap();
        let bits = |b: &BitSlice<u64, Lsb0>| b.iter().by_vals().map(u8::from).collect::<Vec<u8>>();
        let list = |v: &Value| {
            v.as_array()
                .unwrap()
                .iter()
                .map(|x| x.as_u64().unwrap() as u8)
                .collect::<Vec<u8>>()
        };
        assert_eq!(bits(scope.nodes()), list(&want["nodes"]), "{k} nodes");
        assert_eq!(bits(scope.links()), list(&want["links"]), "{k} links");
        for (map, ids) in [
            (scope.node_ids(), &want["node_ids"]),
            (scope.link_ids(), &want["link_ids"]),
        ] {
            let ids: Vec<&str> = ids
                .as_array()
                .unwrap()
                .iter()
                .map(|x| x.as_str().unwrap())
                .collect();
            let got: Vec<&str> = map.iter().collect::<Result<_, _>>().unwrap();
            assert_eq!(got, ids, "{k} ids");
        }
        assert_eq!(
            &Value::Object(scope.attributes().clone()),
            &want["attributes"],
            "{k} attributes"
        );
    }
    let st = cache.stats().unwrap();
    assert_eq!(st.stored_mappings, 4, "alpha and beta share their two mappings");
    assert!(cache.verify().unwrap().is_clean());
}

/// The newest last access among the entries, naive, as RFC 3339 UTC plus an hour.
fn an_hour_after_newest(pydir: &Path) -> String {
    let meta: Value =
        serde_json::from_str(&std::fs::read_to_string(pydir.join("cache_metadata.json")).unwrap()).unwrap();
    let newest = meta
        .as_object()
        .unwrap()
        .values()
        .map(|m| {
            chrono::NaiveDateTime::parse_from_str(
                m["last_accessed"].as_str().unwrap(),
                "%Y-%m-%dT%H:%M:%S%.f",
            )
            .unwrap()
        })
        .max()
        .unwrap();
    (newest.and_utc() + chrono::Duration::hours(1)).to_rfc3339()
}

fn import_and_check(pydir: &Path, expected: &Value, now: Option<&str>) {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("imported.cache");
    let mut args = vec!["import-python", s(pydir), s(&f)];
    if let Some(t) = now {
        args.extend(["--now", t]);
    }
    let v = json(&args);
    assert_eq!(v["imported"], json!(["alpha", "beta", "gamma"]));
    assert_eq!(v["skipped"].as_array().unwrap().len(), 1);
    assert_eq!(v["skipped"][0]["key"], "stale");
    assert!(
        v["skipped"][0]["reason"].as_str().unwrap().starts_with("expired"),
        "{v}"
    );
    assert_eq!(v["mappings_decoded"], 2, "identical mapping files decoded once");
    check_import(pydir, expected, &f);
    let list = json(&["list", s(&f)]);
    assert_eq!(list.as_array().unwrap().len(), 3);
    // With a TTL long enough, the stale entry comes too; human summary.
    let g = dir.path().join("all.cache");
    let mut args = vec!["import-python", s(pydir), s(&g), "--ttl-hours", "0"];
    if let Some(t) = now {
        args.extend(["--now", t]);
    }
    let out = ok(&args);
    assert!(out.starts_with("imported 4 of 4 entries"), "{out}");
    assert!(out.contains("taken as UTC"), "{out}");
}

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

#[test]
fn import_python_from_checked_in_fixtures() {
    let pydir = fixtures().join("python_cache");
    let expected: Value = serde_json::from_str(
        &std::fs::read_to_string(fixtures().join("python_cache_expected.json")).unwrap(),
    )
    .unwrap();
    import_and_check(&pydir, &expected, Some(&an_hour_after_newest(&pydir)));
}

#[test]
fn import_python_skips_broken_entries() {
    let dir = tempfile::tempdir().unwrap();
    let pydir = dir.path().join("py");
    std::fs::create_dir(&pydir).unwrap();
    for e in std::fs::read_dir(fixtures().join("python_cache")).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), pydir.join(e.file_name())).unwrap();
    }
    std::fs::remove_file(pydir.join("beta_links.bits")).unwrap();
    std::fs::write(pydir.join("gamma_mappings.json.gz"), b"not gzip at all").unwrap();
    std::fs::write(pydir.join("alpha_nodes.bits"), [0u8; 2]).unwrap();
    let f = dir.path().join("x.cache");
    let now = an_hour_after_newest(&pydir);
    let o = run(&[
        "import-python",
        s(&pydir),
        s(&f),
        "--now",
        &now,
        "--ttl-hours",
        "0",
        "--json",
    ]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let v: Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(v["imported"], json!(["stale"]));
    let reasons: Vec<(String, String)> = v["skipped"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| {
            (
                x["key"].as_str().unwrap().to_owned(),
                x["reason"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert_eq!(reasons.len(), 3);
    let reason = |k: &str| {
        reasons
            .iter()
            .find(|(key, _)| key == k)
            .map(|(_, r)| r.clone())
            .unwrap()
    };
    assert!(
        reason("alpha").contains("2 bytes, but 20 bits need 3"),
        "{reasons:?}"
    );
    assert!(reason("beta").contains("beta_links.bits"), "{reasons:?}");
    assert!(reason("gamma").contains("not gzip"), "{reasons:?}");
    let err = stderr(&o);
    assert_eq!(err.matches("warning").count(), 3, "one warning each: {err}");

    let o = run(&["import-python", s(&dir.path().join("nowhere")), s(&f)]);
    assert_eq!(code(&o), 1);
    assert!(stderr(&o).contains("cache_metadata.json"), "{}", stderr(&o));
}

#[test]
fn import_python_from_the_original_run_now() {
    let anchors = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/anchors");
    let have_python = Command::new("python3")
        .args(["-c", "import bitarray, orjson"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !anchors.join("seed_cache_manager_fixed.py").exists() || !have_python {
        eprintln!(
            "skipped: needs {} and python3 with bitarray and orjson",
            anchors.display()
        );
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let pydir = dir.path().join("py");
    let expected_path = dir.path().join("expected.json");
    let o = Command::new("python3")
        .arg(fixtures().join("make_python_cache.py"))
        .args([&anchors, &pydir, &expected_path])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let expected: Value = serde_json::from_str(&std::fs::read_to_string(&expected_path).unwrap()).unwrap();
    // Fresh times, judged against the real clock: the three live entries
    // are seconds old (or, read as UTC in a zone ahead of it, in the
    // future), the stale one three days old, whatever the local zone.
    import_and_check(&pydir, &expected, None);
}

#[test]
fn compact_and_maintain_are_safe_while_another_process_reads_and_writes() {
    let rounds: usize = std::env::var("SCOPECACHE_CLI_STRESS_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(12);
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("busy.cache");
    let config = CacheConfig {
        ttl: None,
        fsync: false,
        ..CacheConfig::default()
    };
    let cache = ScopeCache::open(&f, config).unwrap();
    let models: Vec<Model> = (0..6)
        .map(|i| Model::random(i, 300 + 50 * i as usize, 500))
        .collect();
    for (i, m) in models.iter().enumerate() {
        m.put(&cache, &format!("k{i}")).unwrap();
    }
    let cli = {
        let f = f.clone();
        std::thread::spawn(move || {
            let mut runs = 0;
            for r in 0..rounds {
                let c = if r % 3 == 2 { "maintain" } else { "compact" };
                let o = run(&[c, s(&f), "--ttl-hours", "0", "--json"]);
                assert_eq!(code(&o), 0, "{c}: {}", stderr(&o));
                runs += 1;
            }
            runs
        })
    };
    let mut checks = 0u64;
    let mut i = 0usize;
    while !cli.is_finished() || checks < 50 {
        let k = i % models.len();
        // Rewrite one entry with another model's data, then read all back.
        let m = &models[(k + i / models.len()) % models.len()];
        m.put(&cache, &format!("k{k}")).unwrap();
        for j in 0..models.len() {
            let scope = cache.get(&format!("k{j}")).unwrap().expect("no entry is lost");
            let seed = scope.attributes()["seed"].as_u64().unwrap() as usize;
            let want = &models[seed];
            assert_eq!(scope.nodes(), want.nodes.as_bitslice());
            assert_eq!(scope.links(), want.links.as_bitslice());
            assert_eq!(scope.node_ids().len(), want.node_ids.len());
            let probe = i % want.node_ids.len();
            assert_eq!(
                scope.node_ids().index_of(&want.node_ids[probe]),
                Some(probe as u32)
            );
            checks += 1;
        }
        i += 1;
    }
    assert_eq!(cli.join().unwrap(), rounds);
    assert!(checks >= 50);
    let st = cache.stats().unwrap();
    assert!(st.compactions >= (rounds as u64 * 2) / 3, "{st:?}");
    assert!(cache.verify().unwrap().is_clean());
    drop(cache);
    assert_eq!(code(&run(&["verify", s(&f)])), 0);
}
