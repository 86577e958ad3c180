//! The remote tier against a real S3-compatible server on loopback (moto,
//! started by each test; see tests/s3server).

mod s3server;

use bitvec::prelude::*;
use futures_util::TryStreamExt;
use object_store::aws::AmazonS3Builder;
use object_store::path::Path as ObjPath;
use object_store::{ObjectMeta, ObjectStore, ObjectStoreExt, PutPayload};
use rand::{Rng, SeedableRng};
use s3server::S3Server;
use scopecache::remote::{GcPolicy, ManifestOutcome, Remote};
use scopecache::{CacheConfig, Error, IdMap, ManualClock, Scope, ScopeCache, ScopeData};
use serde_json::{json, Map, Value};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// One graph's mappings, shared by many scopes.
struct Graph {
    node_ids: IdMap,
    link_ids: IdMap,
}

impl Graph {
    fn new(nodes: usize, links: usize) -> Graph {
        Graph {
            node_ids: IdMap::from_ids((0..nodes).map(|i| format!("node-{i:08}"))).unwrap(),
            link_ids: IdMap::from_ids((0..links).map(|i| format!("link-{i:08}"))).unwrap(),
        }
    }

    fn put(&self, cache: &ScopeCache, key: &str, seed: u64) {
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        let nodes: BitVec<u64, Lsb0> = (0..self.node_ids.len()).map(|_| rng.gen::<bool>()).collect();
        let links: BitVec<u64, Lsb0> = (0..self.link_ids.len()).map(|_| rng.gen::<bool>()).collect();
        let attributes: Map<String, Value> = json!({"seed": seed, "key": key}).as_object().cloned().unwrap();
        let data = ScopeData {
            nodes: &nodes,
            links: &links,
            node_ids: &self.node_ids,
            link_ids: &self.link_ids,
            attributes: &attributes,
        };
        cache.put(key, &data).unwrap();
    }
}

fn config(remote: Option<Arc<Remote>>) -> CacheConfig {
    CacheConfig {
        fsync: false,
        ttl: None,
        remote,
        ..CacheConfig::default()
    }
}

fn open(path: &Path, remote: Option<Arc<Remote>>) -> ScopeCache {
    ScopeCache::open(path, config(remote)).unwrap()
}

/// The same scope, byte for byte: bitsets, mappings, attributes, creation time.
fn assert_same(a: &Scope, b: &Scope) {
    assert_eq!(a.key(), b.key());
    assert_eq!(a.node_words(), b.node_words());
    assert_eq!(a.link_words(), b.link_words());
    assert_eq!(a.nodes(), b.nodes());
    assert_eq!(a.links(), b.links());
    assert_eq!(
        scopecache::idmap::region_bytes_of(a.node_ids()),
        scopecache::idmap::region_bytes_of(b.node_ids())
    );
    assert_eq!(
        scopecache::idmap::region_bytes_of(a.link_ids()),
        scopecache::idmap::region_bytes_of(b.link_ids())
    );
    assert_eq!(a.attributes(), b.attributes());
    assert_eq!(a.info().created_at, b.info().created_at);
}

/// Direct access to the bucket, behind the cache's back.
struct Bucket {
    store: object_store::aws::AmazonS3,
    rt: tokio::runtime::Runtime,
}

impl Bucket {
    fn new(server: &S3Server, bucket: &str) -> Bucket {
        let store = AmazonS3Builder::new()
            .with_bucket_name(bucket)
            .with_endpoint(server.endpoint())
            .with_region("us-east-1")
            .with_access_key_id(s3server::KEY_ID)
            .with_secret_access_key(s3server::SECRET)
            .with_allow_http(true)
            .build()
            .unwrap();
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        Bucket { store, rt }
    }

    fn list(&self, prefix: &str) -> Vec<ObjectMeta> {
        let p = ObjPath::from(prefix);
        self.rt.block_on(self.store.list(Some(&p)).try_collect()).unwrap()
    }

    fn get(&self, path: &ObjPath) -> Vec<u8> {
        self.rt.block_on(async {
            self.store
                .get(path)
                .await
                .unwrap()
                .bytes()
                .await
                .unwrap()
                .to_vec()
        })
    }

    fn put(&self, path: &ObjPath, bytes: Vec<u8>) {
        self.rt
            .block_on(self.store.put(path, PutPayload::from(bytes)))
            .unwrap();
    }

    fn delete(&self, path: &ObjPath) {
        self.rt.block_on(self.store.delete(path)).unwrap();
    }
}

#[test]
fn two_machines_share_scopes_byte_for_byte_and_mappings_travel_once() {
    let Some(server) = S3Server::start() else { return };
    server.create_bucket("shared");
    let dirs = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let url = "s3://shared/team/graphs";
    let remote_a = Arc::new(server.remote(url));
    let a = open(&dirs.0.path().join("a.cache"), None);
    let graph = Graph::new(3000, 7000);
    let keys: Vec<String> = (0..20).map(|i| format!("run-{i:02}")).collect();
    for (i, k) in keys.iter().enumerate() {
        graph.put(&a, k, i as u64);
    }
    // Machine A pushes 20 scopes of one graph: the mappings go up once.
    let map_bytes = graph.node_ids.region_len() + graph.link_ids.region_len();
    let mut uploaded = 0;
    for (i, k) in keys.iter().enumerate() {
        let r = remote_a.push(&a, k).unwrap().expect("a local key");
        assert_eq!(r.manifest, ManifestOutcome::Written);
        if i == 0 {
            assert_eq!(r.objects_uploaded, 4, "{r:?}");
        } else {
            assert_eq!((r.objects_uploaded, r.objects_present), (2, 2), "{r:?}");
            assert_eq!(r.bytes_present, map_bytes);
        }
        uploaded += r.bytes_uploaded;
    }
    let bitset_bytes = (3000u64.div_ceil(64) + 7000u64.div_ceil(64)) * 8;
    assert_eq!(uploaded, map_bytes + 20 * bitset_bytes);
    let bucket = Bucket::new(&server, "shared");
    assert_eq!(bucket.list("team/graphs/objects").len(), 2 + 40);
    assert_eq!(bucket.list("team/graphs/manifests").len(), 20);
    // Pushing again finds everything and changes nothing.
    let again = remote_a.push(&a, &keys[3]).unwrap().unwrap();
    assert_eq!(
        (again.objects_uploaded, again.manifest),
        (0, ManifestOutcome::Unchanged)
    );

    // Machine B, another folder and another handle on the bucket: read-through.
    let remote_b = Arc::new(server.remote(url));
    let b = open(&dirs.1.path().join("b.cache"), Some(Arc::clone(&remote_b)));
    let first = remote_b.pull(&b, &keys[0]).unwrap().expect("in the bucket");
    assert_eq!(
        (first.objects_downloaded, first.objects_local),
        (4, 0),
        "{first:?}"
    );
    let second = remote_b.pull(&b, &keys[1]).unwrap().unwrap();
    assert_eq!(
        (second.objects_downloaded, second.objects_local),
        (2, 2),
        "{second:?}"
    );
    assert_eq!(second.bytes_downloaded, bitset_bytes);
    for k in &keys {
        let sb = b.get(k).unwrap().expect("pulled on a local miss");
        let sa = a.get(k).unwrap().unwrap();
        assert_same(&sa, &sb);
    }
    assert_eq!(b.list().unwrap().len(), 20);
    assert!(b.verify().unwrap().is_clean());
    // One stored copy of each mapping on B too.
    assert!(b.list().unwrap().iter().all(|e| e.shares_mappings));
    let again = remote_b.pull(&b, &keys[5]).unwrap().unwrap();
    assert!(again.up_to_date);
    assert_eq!(b.get("not-anywhere").unwrap().map(|s| s.key().to_owned()), None);

    let listed = remote_b.list().unwrap();
    assert_eq!(listed.iter().map(|e| e.key.clone()).collect::<Vec<_>>(), keys);
    assert_eq!(listed[0].total_nodes, 3000);
}

#[test]
fn put_writes_through_and_get_reads_through() {
    let Some(mut server) = S3Server::start() else {
        return;
    };
    server.create_bucket("wtbucket");
    let dirs = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let remote_a = Arc::new(server.remote("s3://wtbucket"));
    let a = open(&dirs.0.path().join("a.cache"), Some(Arc::clone(&remote_a)));
    let b = open(
        &dirs.1.path().join("b.cache"),
        Some(Arc::new(server.remote("s3://wtbucket"))),
    );
    let graph = Graph::new(500, 900);
    graph.put(&a, "k1", 1);
    assert!(remote_a.pending().is_empty());
    let sb = b.get("k1").unwrap().expect("read through");
    assert_same(&a.get("k1").unwrap().unwrap(), &sb);
    drop(sb);

    // The server goes away: local hits still answer, a local put still
    // commits, and its push waits for flush.
    server.kill();
    let t = std::time::Instant::now();
    assert!(b.get("k1").unwrap().is_some());
    assert!(
        t.elapsed() < Duration::from_millis(500),
        "a local hit must not wait on the network"
    );
    graph.put(&a, "k2", 2);
    assert!(a.get("k2").unwrap().is_some());
    assert_eq!(remote_a.pending(), vec!["k2".to_string()]);
    assert!(matches!(a.flush_remote(), Err(Error::Remote { .. })));
    assert!(matches!(b.get_remote("k2"), Err(Error::Remote { .. })));
    assert!(
        b.get("k2").unwrap().is_none(),
        "a remote failure is a miss for get"
    );

    // A new (empty) server on the same port: flush pushes the pending key.
    let server = S3Server::start_on(server.port).expect("restart");
    server.create_bucket("wtbucket");
    let flushed = a.flush_remote().unwrap();
    assert_eq!(flushed.len(), 1);
    assert!(remote_a.pending().is_empty());
    assert_same(
        &a.get("k2").unwrap().unwrap(),
        &b.get_remote("k2").unwrap().unwrap(),
    );
}

#[test]
fn two_writers_of_one_key_leave_one_complete_version() {
    let Some(server) = S3Server::start() else { return };
    server.create_bucket("race");
    let dir = tempfile::tempdir().unwrap();
    let url = "s3://race/p";
    let graph = Arc::new(Graph::new(2000, 4000));
    for round in 0..6u64 {
        let key = format!("key-{round}");
        // Two machines compute the same key with different results, at
        // different creation times, and push at the same moment.
        let writers: Vec<_> = (0..2u64)
            .map(|w| {
                let clock = Arc::new(ManualClock::new(
                    chrono::Utc::now() + chrono::Duration::seconds(w as i64),
                ));
                let cache = ScopeCache::open(
                    dir.path().join(format!("w{w}-{round}.cache")),
                    CacheConfig {
                        clock: clock.clone(),
                        ..config(None)
                    },
                )
                .unwrap();
                graph.put(&cache, &key, round * 10 + w);
                (cache, Arc::new(server.remote(url)))
            })
            .collect();
        let barrier = Arc::new(std::sync::Barrier::new(2));
        std::thread::scope(|s| {
            for (cache, remote) in &writers {
                let (barrier, key) = (Arc::clone(&barrier), key.clone());
                s.spawn(move || {
                    barrier.wait();
                    remote.push(cache, &key).unwrap().unwrap()
                });
            }
        });
        // A third machine pulls: exactly the later version, every part of it.
        let reader = open(&dir.path().join(format!("r-{round}.cache")), None);
        let remote = server.remote(url);
        remote.pull(&reader, &key).unwrap().unwrap();
        let got = reader.get(&key).unwrap().unwrap();
        let later = writers[1].0.get(&key).unwrap().unwrap();
        assert_same(&later, &got);
        assert_eq!(got.attributes()["seed"], json!(round * 10 + 1));
    }
}

#[test]
fn a_damaged_or_missing_object_fails_the_pull_and_stores_nothing() {
    let Some(server) = S3Server::start() else { return };
    server.create_bucket("dmg");
    let dir = tempfile::tempdir().unwrap();
    let a = open(&dir.path().join("a.cache"), None);
    let remote = server.remote("s3://dmg");
    let graph = Graph::new(1500, 2500);
    graph.put(&a, "k", 7);
    remote.push(&a, "k").unwrap().unwrap();
    let bucket = Bucket::new(&server, "dmg");
    let objects = bucket.list("objects");
    assert_eq!(objects.len(), 4);

    // Change one byte of each object in turn, behind the cache's back.
    for o in &objects {
        let original = bucket.get(&o.location);
        let mut bad = original.clone();
        let at = bad.len() / 2;
        bad[at] ^= 0x10;
        bucket.put(&o.location, bad);
        let b = open(&dir.path().join("b.cache"), None);
        match remote.pull(&b, "k") {
            Err(Error::RemoteCorrupt { location, what }) => {
                assert!(location.contains(o.location.as_ref()), "{location}");
                assert!(what.contains("hash"), "{what}");
            }
            other => panic!("expected a damaged object, got {other:?}"),
        }
        assert!(b.list().unwrap().is_empty(), "nothing stored");
        assert!(b.verify().unwrap().is_clean());
        bucket.put(&o.location, original);
    }
    // A missing object.
    let gone = &objects[0].location;
    let original = bucket.get(gone);
    bucket.delete(gone);
    let b = open(&dir.path().join("c.cache"), None);
    assert!(matches!(remote.pull(&b, "k"), Err(Error::RemoteMissing { .. })));
    assert!(b.list().unwrap().is_empty());
    bucket.put(gone, original);
    // A damaged manifest.
    let manifest = &bucket.list("manifests")[0].location;
    let good = bucket.get(manifest);
    let text = String::from_utf8(good.clone())
        .unwrap()
        .replace("\"bits\": 1500", "\"bits\": 1501");
    bucket.put(manifest, text.into_bytes());
    assert!(matches!(remote.pull(&b, "k"), Err(Error::RemoteCorrupt { .. })));
    bucket.put(manifest, good.clone());
    // A mapping that hashes to its name but is not a valid mapping (as a
    // hostile machine could push): the full check refuses it.
    let m: Value = serde_json::from_slice(&good).unwrap();
    let map_name = m["node_ids"]["object"].as_str().unwrap().to_owned();
    let mut crafted = bucket.get(&ObjPath::from(format!("objects/{map_name}")));
    let at = crafted.len() - 1;
    crafted[at] ^= 1;
    let crafted_name = blake3::hash(&crafted).to_hex().to_string();
    bucket.put(&ObjPath::from(format!("objects/{crafted_name}")), crafted);
    let text = String::from_utf8(good.clone())
        .unwrap()
        .replace(&map_name, &crafted_name);
    bucket.put(manifest, text.into_bytes());
    match remote.pull(&b, "k") {
        Err(Error::RemoteCorrupt { what, .. }) => assert!(what.contains("not a valid id mapping"), "{what}"),
        other => panic!("expected a refused mapping, got {other:?}"),
    }
    assert!(b.list().unwrap().is_empty());
    bucket.put(manifest, good);
    // Whole again: the pull succeeds.
    remote.pull(&b, "k").unwrap().unwrap();
    assert_same(&a.get("k").unwrap().unwrap(), &b.get("k").unwrap().unwrap());
}

#[test]
fn a_server_stopped_mid_transfer_fails_cleanly_and_the_next_pull_succeeds() {
    let Some(server) = S3Server::start() else { return };
    server.create_bucket("stop");
    let dir = tempfile::tempdir().unwrap();
    let a = open(&dir.path().join("a.cache"), None);
    let remote = server.remote("s3://stop");
    // Large enough mappings (~30 MB) that the transfer is under way when
    // the server stops.
    let graph = Graph::new(400_000, 1_000_000);
    graph.put(&a, "big", 1);
    graph.put(&a, "small", 2);
    remote.push(&a, "big").unwrap().unwrap();
    remote.push(&a, "small").unwrap().unwrap();

    let b = open(&dir.path().join("b.cache"), None);
    // The file has a committed entry of its own to keep (another graph,
    // so that the pull must download the mappings).
    let b_remote = server.remote("s3://stop");
    Graph::new(100, 200).put(&b, "local-only", 3);
    let before = b.list().unwrap();
    let received = AtomicU64::new(0);
    let paused = AtomicBool::new(false);
    let progress = |n: u64| {
        if received.fetch_add(n, Ordering::Relaxed) + n > 1 << 20 && !paused.swap(true, Ordering::Relaxed) {
            server.pause();
        }
    };
    let t = std::time::Instant::now();
    let err = b_remote.pull_with_progress(&b, "big", &progress).unwrap_err();
    server.resume();
    assert!(
        paused.load(Ordering::Relaxed),
        "the server was stopped mid-transfer"
    );
    assert!(matches!(err, Error::Remote { .. }), "{err:?}");
    assert!(
        t.elapsed() < Duration::from_secs(30),
        "the timeout bounds the wait"
    );
    eprintln!("pull with the server stopped: {err}");
    // The local file is intact: same entries, every byte checks.
    assert_eq!(b.list().unwrap(), before);
    assert!(b.verify().unwrap().is_clean());
    assert!(b.get("big").unwrap().is_none());
    // The next attempt succeeds.
    b_remote.pull(&b, "big").unwrap().unwrap();
    assert_same(&a.get("big").unwrap().unwrap(), &b.get("big").unwrap().unwrap());
}

#[test]
fn gc_deletes_old_scopes_and_unreferenced_objects_only() {
    let Some(server) = S3Server::start() else { return };
    server.create_bucket("gcbucket");
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::new(chrono::Utc::now() - chrono::Duration::days(10)));
    let a = ScopeCache::open(
        dir.path().join("a.cache"),
        CacheConfig {
            clock: clock.clone(),
            ..config(None)
        },
    )
    .unwrap();
    let remote = server.remote("s3://gcbucket");
    let old_graph = Graph::new(100, 200);
    let new_graph = Graph::new(300, 400);
    old_graph.put(&a, "old", 1);
    clock.set(chrono::Utc::now());
    new_graph.put(&a, "new", 2);
    remote.push(&a, "old").unwrap().unwrap();
    remote.push(&a, "new").unwrap().unwrap();
    // Local eviction deletes nothing remote.
    a.remove("old").unwrap();
    a.remove("new").unwrap();
    assert_eq!(remote.list().unwrap().len(), 2);
    // A grace of a day protects objects just written, even unreferenced ones.
    let r = remote
        .gc(GcPolicy {
            max_age: Duration::from_secs(5 * 86400),
            grace: Duration::from_secs(86400),
        })
        .unwrap();
    assert_eq!(r.deleted_keys, vec!["old".to_string()]);
    assert_eq!((r.deleted_objects, r.kept_objects), (0, 8));
    let r = remote
        .gc(GcPolicy {
            max_age: Duration::from_secs(5 * 86400),
            grace: Duration::ZERO,
        })
        .unwrap();
    assert_eq!((r.deleted_objects, r.kept_objects, r.kept_keys), (4, 4, 1));
    let b = open(&dir.path().join("b.cache"), None);
    assert!(remote.pull(&b, "old").unwrap().is_none());
    remote.pull(&b, "new").unwrap().unwrap();
}

#[test]
fn the_commands_push_pull_list_and_gc() {
    let Some(server) = S3Server::start() else { return };
    server.create_bucket("cli-bucket");
    let dir = tempfile::tempdir().unwrap();
    let (fa, fb) = (dir.path().join("a.cache"), dir.path().join("b.cache"));
    {
        let a = open(&fa, None);
        let graph = Graph::new(800, 1600);
        for i in 0..3 {
            graph.put(&a, &format!("cli-{i}"), i);
        }
    }
    let run = |args: &[&str]| -> (i32, Value) {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_scopecache"))
            .arg("--json")
            .args(args)
            .env("AWS_ENDPOINT_URL", server.endpoint())
            .env("AWS_ALLOW_HTTP", "true")
            .env("AWS_REGION", "us-east-1")
            .env("AWS_ACCESS_KEY_ID", s3server::KEY_ID)
            .env("AWS_SECRET_ACCESS_KEY", s3server::SECRET)
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        let v = serde_json::from_str(&stdout).unwrap_or(Value::Null);
        (out.status.code().unwrap_or(-1), v)
    };
    let url = "s3://cli-bucket/x";
    let fa_s = fa.to_str().unwrap();
    let fb_s = fb.to_str().unwrap();
    let (code, v) = run(&["push", fa_s, "--remote", url]);
    assert_eq!(code, 0, "{v}");
    assert_eq!(v["pushed"].as_array().unwrap().len(), 3);
    assert_eq!(v["pushed"][1]["objects_present"], 2, "{v}");
    let (code, v) = run(&["remote-list", "--remote", url]);
    assert_eq!(code, 0);
    assert_eq!(v.as_array().unwrap().len(), 3);
    assert_eq!(v[0]["key"], "cli-0");
    let (code, v) = run(&["pull", fb_s, "--remote", url, "cli-2", "cli-0"]);
    assert_eq!(code, 0, "{v}");
    assert_eq!(v["pulled"][1]["objects_local"], 2, "{v}");
    let (code, v) = run(&["pull", fb_s, "--remote", url, "missing"]);
    assert_eq!((code, v["not_in_bucket"][0].as_str()), (1, Some("missing")));
    let b = open(&fb, None);
    assert_same(
        &open(&fa, None).get("cli-2").unwrap().unwrap(),
        &b.get("cli-2").unwrap().unwrap(),
    );
    drop(b);
    let (code, v) = run(&[
        "remote-gc",
        "--remote",
        url,
        "--older-than",
        "0",
        "--grace-hours",
        "0",
    ]);
    assert_eq!(code, 0, "{v}");
    assert_eq!(v["deleted_keys"].as_array().unwrap().len(), 3);
    assert_eq!(v["deleted_objects"], 2 + 6);
    let (code, _) = run(&["push", fa_s, "--remote", "http://not-s3"]);
    assert_eq!(code, 1);
}
