//! Support for the process-level fault tests: running this very test binary
//! again as a child process (so that the child is built exactly like the
//! tests, crash points included), a line protocol for children to report
//! what they did, and self-describing scopes that any reader can check on
//! its own.
//!
//! A test file that uses this module declares an ignored test named `child`
//! that calls [`child_main`] with its roles; [`Child::spawn`] runs that test
//! in a new process with the role in `SCOPECACHE_TEST_CHILD`.
#![allow(dead_code)]

use bitvec::prelude::*;
use scopecache::{CacheConfig, IdMap, Scope, ScopeCache, ScopeData};
use serde_json::{json, Map, Value};
use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::sync::mpsc::{self, Receiver};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Names the role a child process plays; absent in the parent.
pub const CHILD_ENV: &str = "SCOPECACHE_TEST_CHILD";
/// Prefix of the report lines on a child's stdout (the test harness writes
/// its own lines there too).
const MARK: &str = "@@ ";

/// A small, fast, deterministic PRNG (xorshift64*).
#[derive(Clone, Debug)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    pub fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// Uniform in `0..n` (n > 0).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    /// True with probability `pct` percent.
    pub fn pct(&mut self, pct: u64) -> bool {
        self.below(100) < pct
    }
}

/// FNV-1a, 64 bits.
fn fnv(h: &mut u64, bytes: &[u8]) {
    for &b in bytes {
        *h ^= u64::from(b);
        *h = h.wrapping_mul(0x0000_0100_0000_01B3);
    }
}

/// The content of version `ver` of the scope under `key`: a pure function of
/// `(key, ver, size)`, so that a reader can rebuild what it should see from
/// the scope's attributes alone. `size` bounds the number of nodes.
///
/// Most scopes use one of three fixed graphs (so their id mappings are
/// stored once and shared); one in five has ids of its own.
pub struct Content {
    pub key: String,
    pub ver: u64,
    pub size: u64,
    pub nodes: BitVec<u64, Lsb0>,
    pub links: BitVec<u64, Lsb0>,
    pub node_ids: IdMap,
    pub link_ids: IdMap,
    pub attributes: Map<String, Value>,
    pub digest: u64,
}

fn key_seed(key: &str, ver: u64) -> u64 {
    let mut h = 0xCBF2_9CE4_8422_2325;
    fnv(&mut h, key.as_bytes());
    fnv(&mut h, &ver.to_le_bytes());
    h
}

impl Content {
    pub fn new(key: &str, ver: u64, size: u64) -> Content {
        let mut rng = Rng::new(key_seed(key, ver));
        let g = rng.below(5);
        let (node_ids, link_ids): (Vec<String>, Vec<String>) = match g {
            0 => (Vec::new(), vec!["g0-l0".to_owned()]),
            1 => (
                (0..63).map(|i| format!("g1-n{i}")).collect(),
                (0..65).map(|i| format!("g1-l{i}")).collect(),
            ),
            2 => (
                (0..size).map(|i| format!("g2-n{i}")).collect(),
                (0..2 * size).map(|i| format!("g2-l{i}")).collect(),
            ),
            3 => (
                (0..200).map(|i| format!("g3-n{i}")).collect(),
                (0..301).map(|i| format!("g3-l{i}")).collect(),
            ),
            _ => {
                let n = rng.below(size.max(1) + 1);
                let l = rng.below(2 * size.max(1) + 1);
                (
                    (0..n).map(|i| format!("{key}/{ver}/n{i}")).collect(),
                    (0..l).map(|i| format!("{key}/{ver}/l{i}")).collect(),
                )
            }
        };
        let density = 1 + rng.below(99);
        let nodes: BitVec<u64, Lsb0> = (0..node_ids.len()).map(|_| rng.pct(density)).collect();
        let links: BitVec<u64, Lsb0> = (0..link_ids.len()).map(|_| rng.pct(density)).collect();
        let node_ids = IdMap::from_ids(&node_ids).unwrap();
        let link_ids = IdMap::from_ids(&link_ids).unwrap();
        let digest = digest_of(key, &nodes, &links, &node_ids, &link_ids);
        let attributes = json!({
            "key": key,
            "ver": ver.to_string(),
            "size": size,
            "digest": format!("{digest:016x}"),
        })
        .as_object()
        .cloned()
        .unwrap();
        Content {
            key: key.to_owned(),
            ver,
            size,
            nodes,
            links,
            node_ids,
            link_ids,
            attributes,
            digest,
        }
    }

    pub fn data(&self) -> ScopeData<'_> {
        ScopeData {
            nodes: &self.nodes,
            links: &self.links,
            node_ids: &self.node_ids,
            link_ids: &self.link_ids,
            attributes: &self.attributes,
        }
    }

    pub fn put(&self, cache: &ScopeCache) -> scopecache::Result<()> {
        cache.put(&self.key, &self.data())
    }
}

fn digest_of(
    key: &str,
    nodes: &BitSlice<u64, Lsb0>,
    links: &BitSlice<u64, Lsb0>,
    n: &IdMap,
    l: &IdMap,
) -> u64 {
    let mut h = 0xCBF2_9CE4_8422_2325;
    fnv(&mut h, key.as_bytes());
    for (bits, ids) in [(nodes, n), (links, l)] {
        fnv(&mut h, &(bits.len() as u64).to_le_bytes());
        fnv(&mut h, &(ids.len() as u64).to_le_bytes());
        for i in bits.iter_ones() {
            fnv(&mut h, &(i as u64).to_le_bytes());
        }
        for i in 0..ids.len() as u32 {
            fnv(&mut h, ids.id(i).unwrap_or("\0missing").as_bytes());
            fnv(&mut h, b"\0");
        }
    }
    h
}

/// What a checked scope turned out to be.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Seen {
    pub key: String,
    pub ver: u64,
    pub digest: u64,
}

/// Checks a scope read from the cache against itself and against what its
/// attributes say it is: the digest of the bits and ids read must equal the
/// digest recorded at put time, and equal that of the content rebuilt from
/// (key, ver, size). Any torn or mixed read fails one of these.
pub fn check_scope(key: &str, s: &Scope) -> Result<Seen, String> {
    let a = s.attributes();
    let field = |f: &str| {
        a.get(f)
            .ok_or_else(|| format!("{key}: attribute {f} missing in {a:?}"))
    };
    let akey = field("key")?.as_str().unwrap_or_default().to_owned();
    let ver: u64 = field("ver")?
        .as_str()
        .and_then(|v| v.parse().ok())
        .ok_or("bad ver")?;
    let size = field("size")?.as_u64().ok_or("bad size")?;
    let recorded =
        u64::from_str_radix(field("digest")?.as_str().unwrap_or_default(), 16).map_err(|e| e.to_string())?;
    if s.key() != key || akey != key {
        return Err(format!(
            "asked for {key:?}, scope key {:?}, attribute key {akey:?}",
            s.key()
        ));
    }
    let read = digest_of(key, s.nodes(), s.links(), s.node_ids(), s.link_ids());
    if read != recorded {
        return Err(format!(
            "{key} v{ver}: content digest {read:016x}, recorded {recorded:016x}"
        ));
    }
    let expected = Content::new(key, ver, size).digest;
    if read != expected {
        return Err(format!(
            "{key} v{ver}: content digest {read:016x}, rebuilt {expected:016x}"
        ));
    }
    if s.info().total_nodes != s.nodes().len() as u64 {
        return Err(format!(
            "{key}: info says {} nodes, bitset has {}",
            s.info().total_nodes,
            s.nodes().len()
        ));
    }
    Ok(Seen {
        key: key.to_owned(),
        ver,
        digest: read,
    })
}

/// Gets and checks every listed scope: key -> version.
pub fn snapshot_of(cache: &ScopeCache) -> HashMap<String, u64> {
    let mut out = HashMap::new();
    let listed_at = cache.generation().unwrap();
    for e in cache.list().unwrap() {
        let s = cache.get(&e.key).unwrap().unwrap_or_else(|| {
            panic!(
                "{} listed (generation {listed_at}) but not got (generation {}; info {:?}; verify {:?})",
                e.key,
                cache.generation().unwrap(),
                cache.info(&e.key),
                cache.verify().map(|v| v.problems)
            )
        });
        let seen = check_scope(&e.key, &s).unwrap_or_else(|err| panic!("{err}"));
        out.insert(e.key, seen.ver);
    }
    out
}

/// The configuration the fault tests write with: no eviction, no expiry,
/// fsync on, and compaction early and often.
pub fn roomy_config() -> CacheConfig {
    CacheConfig {
        max_entries: 1 << 20,
        ttl: None,
        compact_dead_ratio: 0.3,
        compact_min_dead_bytes: 16 << 10,
        ..CacheConfig::default()
    }
}

/// A directory on the real disk (so that fsync is real), under cargo's
/// per-target scratch directory.
pub fn disk_dir() -> tempfile::TempDir {
    tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap()
}

/// Reads an environment variable as a number, with a default.
pub fn env_num(name: &str, default: u64) -> u64 {
    match std::env::var(name) {
        Ok(v) => v
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("{name}={v:?} is not a number")),
        Err(_) => default,
    }
}

/// A child's argument, as passed by [`Child::spawn`].
pub fn arg(name: &str) -> String {
    std::env::var(format!("SCOPECACHE_TEST_{name}"))
        .unwrap_or_else(|_| panic!("child argument {name} missing"))
}

/// A child's argument as a number.
pub fn arg_num(name: &str) -> u64 {
    arg(name).parse().unwrap()
}

/// Writes one report line to the parent, in one write, flushed.
pub fn report(line: impl AsRef<str>) {
    let mut buf = String::with_capacity(line.as_ref().len() + 4);
    buf.push_str(MARK);
    buf.push_str(line.as_ref());
    buf.push('\n');
    let mut out = std::io::stdout().lock();
    out.write_all(buf.as_bytes()).unwrap();
    out.flush().unwrap();
}

/// Runs the role named in the environment, if any. Called from each test
/// binary's ignored `child` test.
pub fn child_main(roles: &[(&str, fn())]) {
    let Ok(role) = std::env::var(CHILD_ENV) else {
        return;
    };
    let f = roles
        .iter()
        .find(|(r, _)| *r == role)
        .unwrap_or_else(|| panic!("unknown child role {role:?}"))
        .1;
    f();
}

/// A child process running one role of this test binary.
pub struct Child {
    pub proc: std::process::Child,
    lines: Receiver<String>,
    reader: Option<JoinHandle<()>>,
    pub role: String,
}

impl Child {
    /// Builds the command for `role`; `args` become `SCOPECACHE_TEST_<name>`.
    pub fn command(role: &str, args: &[(&str, String)]) -> Command {
        let exe = std::env::current_exe().unwrap();
        let mut c = Command::new(exe);
        c.args([
            "child",
            "--exact",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
            "-q",
        ])
        .env(CHILD_ENV, role)
        .env_remove("SCOPECACHE_CRASH_AT")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
        for (k, v) in args {
            c.env(format!("SCOPECACHE_TEST_{k}"), v);
        }
        c
    }

    pub fn spawn(role: &str, args: &[(&str, String)]) -> Child {
        Child::spawn_command(role, Child::command(role, args))
    }

    pub fn spawn_command(role: &str, mut c: Command) -> Child {
        let mut proc = c.spawn().unwrap();
        let stdout = proc.stdout.take().unwrap();
        let (tx, rx) = mpsc::channel();
        let reader = std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if let Some(l) = line.strip_prefix(MARK) {
                    if tx.send(l.to_owned()).is_err() {
                        break;
                    }
                }
            }
        });
        Child {
            proc,
            lines: rx,
            reader: Some(reader),
            role: role.to_owned(),
        }
    }

    pub fn pid(&self) -> i32 {
        self.proc.id() as i32
    }

    /// The next report line, or None on timeout or end of output.
    pub fn next_line(&self, timeout: Duration) -> Option<String> {
        self.lines.recv_timeout(timeout).ok()
    }

    /// Waits for a line starting with `prefix`, returning it and every line
    /// before it. Panics after `timeout`.
    pub fn expect_line(&self, prefix: &str, timeout: Duration) -> (String, Vec<String>) {
        let deadline = Instant::now() + timeout;
        let mut before = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(l) if l.starts_with(prefix) => return (l, before),
                Ok(l) => before.push(l),
                Err(e) => panic!("{}: no line {prefix:?} ({e:?}); got {before:?}", self.role),
            }
        }
    }

    /// Sends a signal to the child.
    pub fn signal(&self, sig: i32) {
        // SAFETY: kill(2) with the pid of our own, not yet reaped child.
        let r = unsafe { libc::kill(self.pid(), sig) };
        assert_eq!(r, 0, "kill {sig}: {}", std::io::Error::last_os_error());
    }

    /// Waits for the child to end; returns its status and every report line
    /// not yet taken.
    pub fn finish(mut self) -> (ExitStatus, Vec<String>) {
        let status = self.proc.wait().unwrap();
        if let Some(r) = self.reader.take() {
            r.join().unwrap();
        }
        let rest = self.lines.try_iter().collect();
        (status, rest)
    }

    /// Kills the child with SIGKILL and finishes it.
    pub fn kill9(self) -> (ExitStatus, Vec<String>) {
        self.signal(libc::SIGKILL);
        self.finish()
    }
}

impl Drop for Child {
    fn drop(&mut self) {
        if let Ok(None) = self.proc.try_wait() {
            let _ = self.proc.kill();
            let _ = self.proc.wait();
        }
    }
}

/// Describes how a child ended, for assertion messages.
pub fn describe(status: &ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(c), _) => format!("exit code {c}"),
        (None, Some(s)) => format!("signal {s}"),
        _ => format!("{status:?}"),
    }
}

/// The signal that ended the child, if any.
pub fn signal_of(status: &ExitStatus) -> Option<i32> {
    use std::os::unix::process::ExitStatusExt;
    status.signal()
}

/// Files in `dir` other than `keep`.
pub fn other_files(dir: &Path, keep: &Path) -> Vec<PathBuf> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p != keep)
        .collect()
}
