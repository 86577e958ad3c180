//! Coverage algebra against a plain-Rust model: union, intersection,
//! difference and counts of stored scopes, covered ids and membership,
//! compared bit for bit with `Vec<bool>` operations, for bit lengths of 0,
//! around word boundaries and random; refusals of scopes that do not share
//! mappings; and results stored back without writing a mapping again.
//!
//! Environment: `PROPTEST_CASES=n` runs n random cases per property
//! (default 64).

use bitvec::prelude::*;
use proptest::prelude::*;
use scopecache::{algebra, CacheConfig, Coverage, Error, IdMap, Scope, ScopeCache, ScopeData};
use serde_json::{json, Map};
use std::path::Path;

fn config() -> CacheConfig {
    CacheConfig {
        ttl: None,
        fsync: false,
        max_entries: 1000,
        ..CacheConfig::default()
    }
}

fn attrs() -> Map<String, serde_json::Value> {
    json!({"run": "model"}).as_object().cloned().unwrap_or_default()
}

fn ids(prefix: &str, n: usize) -> IdMap {
    IdMap::from_ids((0..n).map(|i| format!("{prefix}{i}"))).unwrap()
}

fn bv(bits: &[bool]) -> BitVec<u64, Lsb0> {
    bits.iter().copied().collect()
}

/// A model scope: its node bits and its link bits.
type Pair = (Vec<bool>, Vec<bool>);
/// Picks one side of a model scope.
type SideOf = fn(&Pair) -> &Vec<bool>;

/// Stores each (nodes, links) pair as scope `s{k}` over one node and one
/// link mapping, and gets them back.
fn store(path: &Path, scopes: &[Pair], n: usize, l: usize) -> (ScopeCache, Vec<Scope>) {
    let cache = ScopeCache::open(path, config()).unwrap();
    let (node_ids, link_ids) = (ids("n", n), ids("l", l));
    for (k, (nodes, links)) in scopes.iter().enumerate() {
        let (nodes, links) = (bv(nodes), bv(links));
        cache
            .put(
                &format!("s{k}"),
                &ScopeData {
                    nodes: &nodes,
                    links: &links,
                    node_ids: &node_ids,
                    link_ids: &link_ids,
                    attributes: &attrs(),
                },
            )
            .unwrap();
    }
    let got = (0..scopes.len())
        .map(|k| cache.get(&format!("s{k}")).unwrap().unwrap())
        .collect();
    (cache, got)
}

/// Bit lengths: 0, word boundaries and their neighbours, and random ones.
fn len() -> impl Strategy<Value = usize> {
    prop_oneof![
        Just(0usize),
        Just(1),
        Just(63),
        Just(64),
        Just(65),
        Just(127),
        Just(128),
        Just(129),
        0usize..700,
    ]
}

/// 1 to 7 scopes over `n` nodes and `l` links; each scope with its own
/// density, so that all-set and all-clear words occur.
fn case() -> impl Strategy<Value = (usize, usize, Vec<Pair>)> {
    (len(), len(), 1usize..8).prop_flat_map(|(n, l, k)| {
        let scope = (0u32..=100).prop_flat_map(move |d| {
            let bit = prop::bool::weighted(f64::from(d) / 100.0);
            (prop::collection::vec(bit, n), prop::collection::vec(bit, l))
        });
        (Just(n), Just(l), prop::collection::vec(scope, k))
    })
}

fn model_fold(scopes: &[Pair], side: SideOf, f: fn(bool, bool) -> bool) -> Vec<bool> {
    let mut acc = side(&scopes[0]).clone();
    for s in &scopes[1..] {
        for (a, b) in acc.iter_mut().zip(side(s)) {
            *a = f(*a, *b);
        }
    }
    acc
}

fn nodes_of(s: &Pair) -> &Vec<bool> {
    &s.0
}

fn links_of(s: &Pair) -> &Vec<bool> {
    &s.1
}

fn as_bools(b: &BitSlice<u64, Lsb0>) -> Vec<bool> {
    b.iter().by_vals().collect()
}

/// Every storage word of a result holds no bit past its length.
fn tail_clear(c: &Coverage) -> bool {
    [&c.nodes, &c.links].iter().all(|v| {
        let words = v.as_raw_slice();
        let used = v.len() % 64;
        used == 0 || words.last().is_none_or(|w| w >> used == 0)
    })
}

proptest! {
    #[test]
    fn set_operations_match_the_model((n, l, scopes) in case()) {
        let dir = tempfile::tempdir().unwrap();
        let (_cache, got) = store(&dir.path().join("c"), &scopes, n, l);
        let refs: Vec<&Scope> = got.iter().collect();

        let u = algebra::union(&refs).unwrap();
        prop_assert_eq!(as_bools(&u.nodes), model_fold(&scopes, nodes_of, |a, b| a | b));
        prop_assert_eq!(as_bools(&u.links), model_fold(&scopes, links_of, |a, b| a | b));
        prop_assert!(tail_clear(&u));

        let i = algebra::intersection(&refs).unwrap();
        prop_assert_eq!(as_bools(&i.nodes), model_fold(&scopes, nodes_of, |a, b| a & b));
        prop_assert_eq!(as_bools(&i.links), model_fold(&scopes, links_of, |a, b| a & b));
        prop_assert!(tail_clear(&i));

        let last = refs.len() - 1;
        let d = algebra::difference(refs[0], refs[last]).unwrap();
        let pair = [scopes[0].clone(), scopes[last].clone()];
        prop_assert_eq!(as_bools(&d.nodes), model_fold(&pair, nodes_of, |a, b| a & !b));
        prop_assert_eq!(as_bools(&d.links), model_fold(&pair, links_of, |a, b| a & !b));
        prop_assert!(tail_clear(&d));

        let da = algebra::difference_all(refs[0], &refs[1..]).unwrap();
        let any_other_n = if scopes.len() > 1 { model_fold(&scopes[1..], nodes_of, |a, b| a | b) } else { vec![false; n] };
        let want: Vec<bool> = scopes[0].0.iter().zip(&any_other_n).map(|(a, o)| *a && !o).collect();
        prop_assert_eq!(as_bools(&da.nodes), want);
    }

    #[test]
    fn counts_match_the_model((n, l, scopes) in case()) {
        let dir = tempfile::tempdir().unwrap();
        let (_cache, got) = store(&dir.path().join("c"), &scopes, n, l);
        let refs: Vec<&Scope> = got.iter().collect();
        let c = algebra::counts(&refs).unwrap();
        let count = |side: SideOf, len: usize| -> Vec<u32> {
            (0..len).map(|i| scopes.iter().filter(|s| side(s)[i]).count() as u32).collect()
        };
        prop_assert_eq!(&c.nodes, &count(nodes_of, n));
        prop_assert_eq!(&c.links, &count(links_of, l));

        // The least covered: by count, then by index.
        for k in [0usize, 1, 5, n + 3] {
            let mut want: Vec<(u32, u32)> = c.nodes.iter().enumerate().map(|(i, &c)| (i as u32, c)).collect();
            want.sort_by_key(|&(i, c)| (c, i));
            want.truncate(k);
            prop_assert_eq!(c.least_covered_nodes(k), want);
        }
    }

    #[test]
    fn covered_ids_and_membership_match_the_model((n, l, scopes) in case()) {
        let dir = tempfile::tempdir().unwrap();
        let (_cache, got) = store(&dir.path().join("c"), &scopes, n, l);
        for (s, (nodes, links)) in got.iter().zip(&scopes) {
            let want_n: Vec<String> = (0..n).filter(|&i| nodes[i]).map(|i| format!("n{i}")).collect();
            let want_l: Vec<String> = (0..l).filter(|&i| links[i]).map(|i| format!("l{i}")).collect();
            let mut it = s.covered_node_ids();
            prop_assert_eq!(it.by_ref().collect::<Vec<_>>(), want_n.clone());
            prop_assert!(!it.failed());
            prop_assert_eq!(s.covered_link_ids().collect::<Vec<_>>(), want_l);
            let tried: Vec<&str> = s.try_covered_node_ids().collect::<Result<_, _>>().unwrap();
            prop_assert_eq!(tried, want_n);
            let idx: Vec<u32> = s.covered_link_indices().collect();
            prop_assert_eq!(idx, (0..l as u32).filter(|&i| links[i as usize]).collect::<Vec<_>>());
            for i in [0, n / 2, n.saturating_sub(1)] {
                if i < n {
                    prop_assert_eq!(s.node_covered(&format!("n{i}")), Some(nodes[i]));
                }
            }
            for i in [0, l / 3, l.saturating_sub(1)] {
                if i < l {
                    prop_assert_eq!(s.link_covered(&format!("l{i}")), Some(links[i]));
                }
            }
            prop_assert_eq!(s.node_covered(&format!("n{n}")), None);
            prop_assert_eq!(s.link_covered("n0"), None);
        }
    }
}

/// Large enough that the operations split over threads (when the machine
/// has more than one core): 6 scopes of 5,000,003 nodes and 1,000 links.
#[test]
fn large_inputs_split_over_threads_give_the_same_bits() {
    let n = 5_000_003;
    let mut x = 0x2545_F491_4F6C_DD1Du64;
    let mut rnd = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    let scopes: Vec<Pair> = (0..3)
        .map(|_| {
            let nodes: Vec<bool> = (0..n).map(|_| rnd() % 3 == 0).collect();
            let links: Vec<bool> = (0..1000).map(|_| rnd() % 2 == 0).collect();
            (nodes, links)
        })
        .collect();
    let dir = tempfile::tempdir().unwrap();
    let (_cache, got) = store(&dir.path().join("c"), &scopes, n, 1000);
    let refs: Vec<&Scope> = got.iter().collect();
    let u = algebra::union(&refs).unwrap();
    assert_eq!(as_bools(&u.nodes), model_fold(&scopes, nodes_of, |a, b| a | b));
    let i = algebra::intersection(&refs).unwrap();
    assert_eq!(as_bools(&i.nodes), model_fold(&scopes, nodes_of, |a, b| a & b));
    let c = algebra::counts(&refs).unwrap();
    let want: Vec<u32> = (0..n)
        .map(|i| scopes.iter().filter(|s| s.0[i]).count() as u32)
        .collect();
    assert_eq!(c.nodes, want);
    let ids: Vec<&str> = refs[0].covered_node_ids().collect();
    assert_eq!(ids.len(), scopes[0].0.iter().filter(|b| **b).count());
    assert_eq!(
        ids.first().copied(),
        scopes[0]
            .0
            .iter()
            .position(|b| *b)
            .map(|i| format!("n{i}"))
            .as_deref()
    );
}

#[test]
fn no_scopes_is_an_error() {
    assert!(matches!(
        algebra::union(&[]),
        Err(Error::NoScopes { op: "union" })
    ));
    assert!(matches!(
        algebra::intersection(&[]),
        Err(Error::NoScopes { op: "intersection" })
    ));
    assert!(matches!(
        algebra::counts(&[]),
        Err(Error::NoScopes { op: "counts" })
    ));
}

#[test]
fn scopes_of_different_mappings_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let cache = ScopeCache::open(dir.path().join("c"), config()).unwrap();
    let a_ids = ids("n", 100);
    let b_ids = ids("m", 100); // same length, other ids
    let c_ids = ids("n", 101); // other length
    let links = ids("l", 10);
    let bits100 = bitvec![u64, Lsb0; 1; 100];
    let bits101 = bitvec![u64, Lsb0; 1; 101];
    let lbits = bitvec![u64, Lsb0; 0; 10];
    for (key, nodes, map) in [
        ("a", &bits100, &a_ids),
        ("b", &bits100, &b_ids),
        ("c", &bits101, &c_ids),
    ] {
        cache
            .put(
                key,
                &ScopeData {
                    nodes,
                    links: &lbits,
                    node_ids: map,
                    link_ids: &links,
                    attributes: &attrs(),
                },
            )
            .unwrap();
    }
    let other_links = ids("k", 10);
    cache
        .put(
            "d",
            &ScopeData {
                nodes: &bits100,
                links: &lbits,
                node_ids: &a_ids,
                link_ids: &other_links,
                attributes: &attrs(),
            },
        )
        .unwrap();
    let [a, b, c, d] = ["a", "b", "c", "d"].map(|k| cache.get(k).unwrap().unwrap());
    for (other, what) in [(&b, "nodes"), (&c, "nodes"), (&d, "links")] {
        let e = algebra::union(&[&a, &a, other]).unwrap_err();
        match &e {
            Error::MappingMismatch { what: w, left, right } => {
                assert_eq!((*w, left.as_str(), right.as_str()), (what, "a", other.key()));
            }
            e => panic!("expected MappingMismatch, got {e:?}"),
        }
        assert!(e.to_string().contains(what), "{e}");
        assert!(matches!(
            algebra::intersection(&[&a, other]),
            Err(Error::MappingMismatch { .. })
        ));
        assert!(matches!(
            algebra::difference(&a, other),
            Err(Error::MappingMismatch { .. })
        ));
        assert!(matches!(
            algebra::counts(&[other, &a]),
            Err(Error::MappingMismatch { .. })
        ));
    }
    // One scope alone always combines.
    assert_eq!(algebra::union(&[&b]).unwrap().nodes, bits100);
}

/// A result stored back shares the inputs' mappings: the file grows by the
/// bitsets and the index, not by a mapping, and no mapping is added.
#[test]
fn a_result_put_back_writes_no_mapping() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c");
    let (n, l) = (200_000, 300_000);
    let scopes: Vec<Pair> = (0..3)
        .map(|k| {
            (
                (0..n).map(|i| (i + k) % 3 == 0).collect(),
                (0..l).map(|i| (i * 7 + k) % 5 == 0).collect(),
            )
        })
        .collect();
    let (cache, got) = store(&path, &scopes, n, l);
    let refs: Vec<&Scope> = got.iter().collect();
    let mapping_bytes = got[0].node_ids().region_len() + got[0].link_ids().region_len();
    let before = cache.stats().unwrap();
    let size_before = std::fs::metadata(&path).unwrap().len();

    let u = algebra::union(&refs).unwrap();
    let mut a = attrs();
    a.insert("op".into(), "union".into());
    cache.put_coverage("u", &u, refs[1], &a).unwrap();

    let after = cache.stats().unwrap();
    let growth = std::fs::metadata(&path).unwrap().len() - size_before;
    eprintln!(
        "put_coverage: file grew {growth} bytes; bitsets {}, mappings {mapping_bytes}",
        (n.div_ceil(64) + l.div_ceil(64)) * 8
    );
    let bitset_bytes = (n.div_ceil(64) * 8 + l.div_ceil(64) * 8) as u64;
    assert_eq!(after.stored_mappings, before.stored_mappings);
    assert_eq!(after.stored_mappings, 2);
    // The bitsets (each padded to 64 bytes) and the new index, which is far
    // smaller than either mapping (200,000 and 300,000 ids).
    assert!(
        growth >= bitset_bytes,
        "grew {growth} bytes, bitsets are {bitset_bytes}"
    );
    assert!(
        growth < bitset_bytes + 8192,
        "grew {growth} bytes: bitsets {bitset_bytes}, mappings would add {mapping_bytes}"
    );
    let s = cache.get("u").unwrap().unwrap();
    assert_eq!(s.nodes(), u.nodes.as_bitslice());
    assert_eq!(s.links(), u.links.as_bitslice());
    assert_eq!(s.attributes()["op"], "union");
    assert_eq!(s.node_ids().digest(), got[0].node_ids().digest());
    assert!(
        cache
            .list()
            .unwrap()
            .iter()
            .find(|e| e.key == "u")
            .unwrap()
            .shares_mappings
    );
    // The stored result combines with its inputs.
    let again = algebra::union(&[&s, refs[0]]).unwrap();
    assert_eq!(again, u);

    // A coverage of the wrong length is refused before anything is written.
    let short = Coverage {
        nodes: bitvec![u64, Lsb0; 1; 5],
        links: u.links.clone(),
    };
    assert!(matches!(
        cache.put_coverage("bad", &short, refs[0], &a),
        Err(Error::LengthMismatch {
            what: "nodes",
            bits: 5,
            ..
        })
    ));
    assert!(cache.get("bad").unwrap().is_none());
}

#[test]
fn covered_ids_that_are_not_ascii_read_back() {
    let dir = tempfile::tempdir().unwrap();
    let cache = ScopeCache::open(dir.path().join("c"), config()).unwrap();
    let names = ["é", "a", "日本", "", "z\u{1F600}", "b"];
    let map = IdMap::from_ids(names).unwrap();
    let bits = bitvec![u64, Lsb0; 1, 0, 1, 1, 1, 0];
    cache
        .put(
            "k",
            &ScopeData {
                nodes: &bits,
                links: &bits,
                node_ids: &map,
                link_ids: &map,
                attributes: &attrs(),
            },
        )
        .unwrap();
    let s = cache.get("k").unwrap().unwrap();
    assert_eq!(
        s.covered_node_ids().collect::<Vec<_>>(),
        ["é", "日本", "", "z\u{1F600}"]
    );
    assert_eq!(s.node_covered("日本"), Some(true));
    assert_eq!(s.node_covered("b"), Some(false));
}

/// A damaged mapping ends the covered ids with an error, never a wrong id.
#[test]
fn covered_ids_of_a_damaged_mapping_end_with_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c");
    let n = 5000;
    let nodes: Vec<bool> = (0..n).map(|i| i % 2 == 0).collect();
    drop(store(&path, &[(nodes, vec![true; 3])], n, 3));
    // Damage the string of node id "n4000" in the file.
    let mut bytes = std::fs::read(&path).unwrap();
    let at = bytes
        .windows(5)
        .position(|w| w == b"n4000")
        .expect("the id is in the file");
    bytes[at + 1] ^= 0x01;
    std::fs::write(&path, &bytes).unwrap();

    let cache = ScopeCache::open(&path, config()).unwrap();
    let s = cache.get("s0").unwrap().expect("the bitsets are intact");
    let mut it = s.covered_node_ids();
    let got: Vec<&str> = it.by_ref().collect();
    assert!(it.failed());
    assert!(got.len() < n / 2, "{} ids", got.len());
    for (k, id) in got.iter().enumerate() {
        assert_eq!(*id, format!("n{}", 2 * k));
    }
    let tried: Vec<scopecache::Result<&str>> = s.try_covered_node_ids().collect();
    assert!(
        matches!(tried.last(), Some(Err(Error::Corrupt { .. }))),
        "{:?}",
        tried.last()
    );
    assert!(tried[..tried.len() - 1].iter().all(|r| r.is_ok()));
}

/// A result not stored back names its ids through the inputs' mappings.
#[test]
fn a_result_names_its_ids_through_the_inputs_mappings() {
    let n = 300;
    let scopes: Vec<Pair> = (0..3)
        .map(|k| ((0..n).map(|i| (i + k) % 7 == 0).collect(), vec![k == 1; 65]))
        .collect();
    let dir = tempfile::tempdir().unwrap();
    let (_cache, got) = store(&dir.path().join("c"), &scopes, n, 65);
    let refs: Vec<&Scope> = got.iter().collect();
    let u = algebra::union(&refs).unwrap();
    let want: Vec<String> = (0..n)
        .filter(|&i| (0..3).any(|k| (i + k) % 7 == 0))
        .map(|i| format!("n{i}"))
        .collect();
    assert_eq!(u.covered_node_ids(got[0].node_ids()).collect::<Vec<_>>(), want);
    assert_eq!(u.covered_link_ids(got[0].link_ids()).count(), 65);
    // Through a mapping too short for the result, the iteration fails
    // instead of naming wrong or missing ids.
    let short = ids("n", 10);
    let mut it = u.covered_node_ids(&short);
    assert_eq!(it.by_ref().collect::<Vec<_>>(), ["n0", "n5", "n6", "n7"]);
    assert!(it.failed());
}
