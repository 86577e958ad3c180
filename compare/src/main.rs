//! `scopecache-compare`: runs the standard coverage-scope workload (see
//! `benches/workload.rs`) through scopecache, LMDB (heed), redb and the
//! original Python cache manager, and prints one table with ratios against
//! scopecache (or JSON with `--json`).
//!
//! ```text
//! cargo run --release -p scopecache-compare -- --nodes 10000 --links 20000 --runs 5
//! cargo run --release -p scopecache-compare -- --nodes 4000000 --links 8000000 --runs 3 --dir /var/tmp/cmp
//! ```
//!
//! Every figure is the median of `--runs` runs. Each engine's put runs in a
//! child process of its own (this binary re-executed with a hidden
//! subcommand), which reports the put time and its peak resident set
//! (VmHWM, which includes the generated input). Reads run in other children
//! after the engine's files were read once (warm page cache):
//! - fresh get: a new process opens the store, gets the scope's nodes bitset
//!   and tests one bit, timed inside the child with `Instant` (process
//!   creation and exec are not counted; the spawn-to-exit time less that of
//!   an empty child is reported in the JSON as `get_spawn_ms`);
//! - lookups: random ids, one call at a time, in a process that opened the
//!   store once;
//! - bit tests: random positions in the nodes bitset read in place;
//! - the fresh get's peak resident set (VmHWM of that child: binary,
//!   libraries, heap and mapped file pages) and its page faults (getrusage
//!   around open + get + bit);
//! - reader scaling (`--readers N`, default 8; 0 skips it): one reader
//!   process, then N at once, each doing id -> index lookups of its own
//!   random node ids, each followed by a test of that node's bit, for
//!   `--reader-ms` (default 2000) after all have opened the store and
//!   looked every key up once. Reported: the aggregate rate, its ratio to
//!   one reader's, and the CPUs the readers got (the machine is shared).
//!   Each reader cycles through `--reader-keys` ids (default 65,536): at
//!   4M nodes, about 12 MB of the file's cache lines per reader, so that
//!   more readers than cores, time-sliced, need more cache between them
//!   than one reader alone; a larger count puts one reader's lines past
//!   the cache as well.
//!
//! Disk: allocated bytes of the engine's files, for 1 scope and for 50
//! scopes sharing one pair of mappings (the mappings stored once and 50
//! bitset pairs for every Rust engine; 50 x the one-scope size for the
//! original, which stores a full copy per scope).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

#[path = "../../benches/workload.rs"]
mod workload;
use workload::Workload;

mod engines;
use engines::Engine;

/// Fresh-process gets per run.
const GETS_PER_RUN: usize = 11;
/// Scopes in the shared-mapping disk figure.
const SCOPES: u64 = 50;

type Res<T> = Result<T, Box<dyn std::error::Error>>;

struct Opts {
    nodes: usize,
    links: usize,
    runs: usize,
    dir: PathBuf,
    skip_python: bool,
    json: bool,
    python: Option<PathBuf>,
    engines: Vec<Engine>,
    readers: usize,
    reader_ms: u64,
    reader_keys: usize,
    load_before: String,
}

/// The first three fields of /proc/loadavg.
fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

const USAGE: &str = "usage: scopecache-compare [--nodes N] [--links L] [--runs R] [--dir DIR] \
[--skip-python] [--python-script PATH] [--engines scopecache,lmdb,redb] [--readers N] [--reader-ms MS] [--reader-keys K] [--json]";

fn parse_opts(args: &[String]) -> Res<Opts> {
    let mut o = Opts {
        nodes: workload::SMALL.0,
        links: workload::SMALL.1,
        runs: 0,
        dir: std::env::temp_dir().join("scopecache-compare"),
        skip_python: false,
        json: false,
        python: None,
        engines: Engine::ALL.to_vec(),
        readers: 8,
        reader_ms: 2000,
        reader_keys: 1 << 16,
        load_before: load_average(),
    };
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let mut val = || it.next().ok_or_else(|| format!("{a} needs a value\n{USAGE}"));
        match a.as_str() {
            "--nodes" => o.nodes = val()?.parse()?,
            "--links" => o.links = val()?.parse()?,
            "--runs" => o.runs = val()?.parse()?,
            "--readers" => o.readers = val()?.parse()?,
            "--reader-ms" => o.reader_ms = val()?.parse()?,
            "--reader-keys" => o.reader_keys = val()?.parse()?,
            "--dir" => o.dir = PathBuf::from(val()?),
            "--python-script" => o.python = Some(PathBuf::from(val()?)),
            "--engines" => {
                o.engines = val()?.split(',').map(Engine::parse).collect::<Res<Vec<_>>>()?;
            }
            "--skip-python" => o.skip_python = true,
            "--json" => o.json = true,
            "-h" | "--help" => {
                println!("{USAGE}");
                std::process::exit(0);
            }
            other => return Err(format!("unknown argument {other}\n{USAGE}").into()),
        }
    }
    if o.nodes == 0 || o.links == 0 {
        return Err("--nodes and --links must be at least 1".into());
    }
    if o.runs == 0 {
        o.runs = if o.nodes >= 1_000_000 { 3 } else { 5 };
    }
    Ok(o)
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = if args.first().map(String::as_str) == Some("__child") {
        child(&args[1..])
    } else {
        parse_opts(&args).and_then(|o| run(&o))
    };
    if let Err(e) = result {
        eprintln!("scopecache-compare: {e}");
        std::process::exit(1);
    }
}

// ---------------------------------------------------------------- children

/// The hidden subcommand: `__child WHAT ENGINE DIR NODES LINKS [EXTRA]`.
/// Prints one JSON line.
fn child(args: &[String]) -> Res<()> {
    let what = args.first().map(String::as_str).unwrap_or("");
    if what == "noop" {
        println!("{{}}");
        return Ok(());
    }
    let [_, engine, dir, nodes, links, rest @ ..] = args else {
        return Err("__child WHAT ENGINE DIR NODES LINKS".into());
    };
    let engine = Engine::parse(engine)?;
    let dir = PathBuf::from(dir);
    let (n, l): (usize, usize) = (nodes.parse()?, links.parse()?);
    let out = match what {
        "put" => {
            let scopes: u64 = rest.first().map_or(Ok(1), |s| s.parse())?;
            let w = Workload::generate(n, l);
            let input_rss = workload::peak_rss_bytes().unwrap_or(0);
            let t = Instant::now();
            let build_s = engine.put(&dir, &w)?;
            let put_s = t.elapsed().as_secs_f64();
            let peak_rss = workload::peak_rss_bytes().unwrap_or(0);
            let disk1 = disk_bytes(&dir)?;
            let file1 = file_bytes(&dir)?;
            let (disk_many, stored) = if scopes > 1 {
                let times = engine.put_more(&dir, &w, scopes)?;
                (Some(disk_bytes(&dir)?), times)
            } else {
                (None, Vec::new())
            };
            json!({"put_s": put_s, "peak_rss": peak_rss, "input_rss": input_rss,
                   "disk1": disk1, "file1": file1, "disk_many": disk_many,
                   "build_s": build_s, "put_stored_s": stored})
        }
        "get" => {
            let bit: usize = rest.first().ok_or("get needs a bit")?.parse()?;
            let faults0 = minor_faults();
            let t = Instant::now();
            let v = engine.fresh_get(&dir, bit)?;
            let ns = t.elapsed().as_nanos() as u64;
            let faults = minor_faults() - faults0;
            json!({"ns": ns, "bit": v, "faults": faults,
                   "peak_rss": workload::peak_rss_bytes().unwrap_or(0)})
        }
        "reader" => {
            let seed: u64 = rest.first().ok_or("reader needs a seed")?.parse()?;
            let ms: u64 = rest.get(1).ok_or("reader needs a duration")?.parse()?;
            let keys: usize = rest.get(2).ok_or("reader needs a key count")?.parse()?;
            engine.reader(&dir, n, keys, seed, Duration::from_millis(ms))?
        }
        "read" => {
            let r = engine.read_bench(&dir, n, l)?;
            serde_json::to_value(r)?
        }
        "baseline" => {
            let bytes: usize = rest.first().ok_or("baseline needs a size")?.parse()?;
            json!({"write_fsync_s": write_fsync(&dir, bytes)?})
        }
        "memlat" => json!({"memlat_ns": memory_latency_ns(64 << 20, 4 << 20)}),
        other => return Err(format!("unknown child {other}").into()),
    };
    println!("{out}");
    Ok(())
}

/// Page faults this process has taken so far (minor and major).
fn minor_faults() -> i64 {
    // SAFETY: getrusage only writes the struct it is given.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: as above; RUSAGE_SELF is always valid.
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) };
    ru.ru_minflt + ru.ru_majflt
}

/// Runs `readers` reader children of `engine` at once (see
/// `Engine::reader`): all open the store and warm up first, then start
/// together and run for `ms` milliseconds. Returns the aggregate operations
/// per second (each child's operations over its own time, summed) and the
/// CPU seconds per wall second the readers used together.
fn scale(
    engine: Engine,
    dir: &Path,
    n: usize,
    l: usize,
    readers: usize,
    ms: u64,
    keys: usize,
) -> Res<(f64, f64)> {
    use std::io::{BufRead, BufReader, Write};
    let exe = std::env::current_exe()?;
    let mut children = Vec::new();
    for r in 0..readers {
        let mut cmd = Command::new(&exe);
        // Each reader in a session of its own, as separately started
        // processes would be: with the scheduler's autogroups (Linux's
        // default), all the processes of one session share one session's
        // CPU time, so readers started from one session would be given one
        // CPU whenever another session keeps the other one busy.
        // SAFETY: setsid is async-signal-safe and touches no memory of the
        // parent.
        unsafe {
            std::os::unix::process::CommandExt::pre_exec(&mut cmd, || {
                libc::setsid();
                Ok(())
            });
        }
        let mut c = cmd
            .arg("__child")
            .args(["reader", engine.name()])
            .arg(dir)
            .args([
                n.to_string(),
                l.to_string(),
                (1000 + r).to_string(),
                ms.to_string(),
                keys.to_string(),
            ])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()?;
        let out = BufReader::new(c.stdout.take().ok_or("no stdout")?);
        children.push((c, out));
    }
    for (c, out) in &mut children {
        let mut line = String::new();
        out.read_line(&mut line)?;
        if line.trim() != "ready" {
            let _ = c.kill();
            return Err(format!("reader said {line:?} instead of ready").into());
        }
    }
    for (c, _) in &mut children {
        writeln!(c.stdin.as_mut().ok_or("no stdin")?, "go")?;
    }
    let (mut rate, mut cpu, mut wall) = (0.0, 0.0, 0.0f64);
    for (mut c, mut out) in children {
        let mut text = String::new();
        std::io::Read::read_to_string(&mut out, &mut text)?;
        if !c.wait()?.success() {
            return Err(format!("{} reader failed", engine.name()).into());
        }
        let v: Value = serde_json::from_str(text.lines().last().ok_or("reader printed nothing")?)?;
        let (ops, secs) = (
            v["ops"].as_f64().unwrap_or(0.0),
            v["secs"].as_f64().unwrap_or(1.0),
        );
        rate += ops / secs;
        cpu += v["cpu_s"].as_f64().unwrap_or(0.0);
        wall = wall.max(secs);
    }
    Ok((rate, cpu / wall.max(1e-9)))
}

/// Writes `bytes` bytes to a new file in `dir` in 8 MiB writes, then fsyncs
/// it and the directory; returns the seconds taken (the buffer is filled
/// before timing).
fn write_fsync(dir: &Path, bytes: usize) -> Res<f64> {
    use std::io::Write;
    std::fs::create_dir_all(dir)?;
    let path = dir.join("baseline.bin");
    let _ = std::fs::remove_file(&path);
    let chunk: Vec<u8> = (0..8usize << 20).map(|i| (i * 31 + 7) as u8).collect();
    let t = Instant::now();
    let mut f = std::fs::File::create(&path)?;
    let mut left = bytes;
    while left > 0 {
        let k = left.min(chunk.len());
        f.write_all(&chunk[..k])?;
        left -= k;
    }
    f.sync_all()?;
    std::fs::File::open(dir)?.sync_all()?;
    let s = t.elapsed().as_secs_f64();
    std::fs::remove_file(&path)?;
    Ok(s)
}

/// Nanoseconds per dependent load at random places in `words` u64s
/// (a random cyclic permutation, chased for `steps` steps): the machine's
/// memory latency, TLB misses included, as the lookups over a large
/// mapping meet it.
fn memory_latency_ns(words: usize, steps: usize) -> f64 {
    let mut rng = workload::Rng::new(99);
    let mut order: Vec<usize> = (0..words).collect();
    for i in (1..words).rev() {
        order.swap(i, rng.below(i + 1));
    }
    let mut next = vec![0u64; words];
    for w in order.windows(2) {
        next[w[0]] = w[1] as u64;
    }
    next[order[words - 1]] = order[0] as u64;
    drop(order);
    let mut at = 0usize;
    let t = Instant::now();
    for _ in 0..steps {
        at = next[at] as usize;
    }
    let ns = t.elapsed().as_nanos() as f64 / steps as f64;
    std::hint::black_box(at);
    ns
}

/// Allocated bytes (st_blocks * 512) of all files under `dir`.
fn disk_bytes(dir: &Path) -> Res<u64> {
    use std::os::unix::fs::MetadataExt;
    let mut total = 0;
    for e in std::fs::read_dir(dir)? {
        let m = e?.metadata()?;
        total += if m.is_dir() { 0 } else { m.blocks() * 512 };
    }
    Ok(total)
}

/// Apparent lengths of all files under `dir`.
fn file_bytes(dir: &Path) -> Res<u64> {
    let mut total = 0;
    for e in std::fs::read_dir(dir)? {
        let m = e?.metadata()?;
        total += if m.is_dir() { 0 } else { m.len() };
    }
    Ok(total)
}

fn run_child(args: &[String]) -> Res<(Value, Duration)> {
    let exe = std::env::current_exe()?;
    let t = Instant::now();
    let out = Command::new(exe)
        .arg("__child")
        .args(args)
        .stdin(Stdio::null())
        .output()?;
    let wall = t.elapsed();
    if !out.status.success() {
        return Err(format!("child {args:?} failed: {}", String::from_utf8_lossy(&out.stderr)).into());
    }
    let text = String::from_utf8(out.stdout)?;
    let line = text.lines().last().ok_or("child printed nothing")?;
    Ok((serde_json::from_str(line)?, wall))
}

// ---------------------------------------------------------------- parent

#[derive(Default)]
struct Samples(BTreeMap<&'static str, Vec<f64>>);

impl Samples {
    fn push(&mut self, k: &'static str, v: Option<f64>) {
        if let Some(v) = v {
            self.0.entry(k).or_default().push(v);
        }
    }

    fn median(&self, k: &str) -> Option<f64> {
        let mut v = self.0.get(k)?.clone();
        if v.is_empty() {
            return None;
        }
        v.sort_by(f64::total_cmp);
        let m = v.len() / 2;
        Some(if v.len() % 2 == 1 {
            v[m]
        } else {
            (v[m - 1] + v[m]) / 2.0
        })
    }
}

/// The metrics, in table order: key, heading, unit.
const METRICS: &[(&str, &str, &str)] = &[
    ("put_s", "put, new mappings", "s"),
    ("put_stored_ms", "put, stored mappings", "ms"),
    ("get_ms", "fresh-process open+get+bit", "ms"),
    ("get_rss_mb", "peak RSS, fresh open+get+bit", "MB"),
    ("get_faults", "page faults in open+get+bit", "n"),
    ("node_lookup_ns", "id -> index, node ids", "ns"),
    ("link_lookup_ns", "id -> index, link ids", "ns"),
    ("id_ns", "index -> id, node ids", "ns"),
    ("bit_ns", "bit test", "ns"),
    ("bit_words_ns", "bit test, raw words", "ns"),
    ("disk1_mb", "disk, 1 scope", "MB"),
    ("disk50_mb", "disk, 50 scopes", "MB"),
    ("peak_rss_mb", "peak RSS of put", "MB"),
    ("scale1_mops", "1 reader: lookup+bit", "M/s"),
    ("scale_mops", "N readers at once: lookup+bit", "M/s"),
    ("scale_ratio", "N readers / 1 reader", "x"),
    ("scale_eff", "per CPU-second, N / 1 reader", "x"),
];

fn run(o: &Opts) -> Res<()> {
    std::fs::create_dir_all(&o.dir)?;
    let expect_bit = workload::expected_node_bit(o.nodes, o.links, o.nodes / 2);
    let mut results: Vec<(String, Samples)> = Vec::new();
    let mut extra = serde_json::Map::new();
    let (nn, ll) = (o.nodes.to_string(), o.links.to_string());
    let noop: Vec<f64> = (0..GETS_PER_RUN)
        .map(|_| run_child(&["noop".to_string()]).map(|(_, d)| d.as_secs_f64() * 1e3))
        .collect::<Res<_>>()?;
    let mut noop_s = Samples::default();
    noop.into_iter().for_each(|v| noop_s.push("noop", Some(v)));
    let noop_ms = noop_s.median("noop").unwrap_or(0.0);

    let (lat, _) = run_child(&[
        "memlat".into(),
        "scopecache".into(),
        ".".into(),
        "1".into(),
        "1".into(),
    ])?;
    let memlat_ns = lat["memlat_ns"].as_f64().unwrap_or(0.0);
    extra.insert("memory_latency_ns".into(), json!(memlat_ns));

    for &engine in &o.engines {
        let mut s = Samples::default();
        let dir = o.dir.join(engine.name());
        for run in 0..o.runs {
            eprintln!("{}: run {}/{}", engine.name(), run + 1, o.runs);
            let _ = std::fs::remove_dir_all(&dir);
            std::fs::create_dir_all(&dir)?;
            let d = dir.display().to_string();
            let scopes = if run == 0 { SCOPES } else { 1 };
            let (put, _) = run_child(&[
                "put".into(),
                engine.name().into(),
                d.clone(),
                nn.clone(),
                ll.clone(),
                scopes.to_string(),
            ])?;
            s.push("put_s", put["put_s"].as_f64());
            s.push("peak_rss_mb", put["peak_rss"].as_f64().map(mb));
            s.push("input_rss_mb", put["input_rss"].as_f64().map(mb));
            s.push("disk1_mb", put["disk1"].as_f64().map(mb));
            s.push("disk50_mb", put["disk_many"].as_f64().map(mb));
            s.push("build_s", put["build_s"].as_f64());
            for t in put["put_stored_s"].as_array().into_iter().flatten() {
                s.push("put_stored_ms", t.as_f64().map(|x| x * 1e3));
            }
            if engine == Engine::Scopecache {
                let bytes = put["file1"].as_u64().unwrap_or(0);
                let (b, _) = run_child(&[
                    "baseline".into(),
                    engine.name().into(),
                    d.clone(),
                    nn.clone(),
                    ll.clone(),
                    bytes.to_string(),
                ])?;
                s.push("write_fsync_s", b["write_fsync_s"].as_f64());
            }
            // The 50-scope state is what is read; warm it first.
            for e in std::fs::read_dir(&dir)? {
                let p = e?.path();
                if p.is_file() {
                    workload::warm_file(&p)?;
                }
            }
            for _ in 0..GETS_PER_RUN {
                let (g, wall) = run_child(&[
                    "get".into(),
                    engine.name().into(),
                    d.clone(),
                    nn.clone(),
                    ll.clone(),
                    (o.nodes / 2).to_string(),
                ])?;
                if g["bit"].as_bool() != Some(expect_bit) {
                    return Err(format!("{}: fresh get read a wrong bit", engine.name()).into());
                }
                s.push("get_ms", g["ns"].as_f64().map(|ns| ns / 1e6));
                s.push("get_rss_mb", g["peak_rss"].as_f64().map(mb));
                s.push("get_faults", g["faults"].as_f64());
                s.push("get_spawn_ms", Some(wall.as_secs_f64() * 1e3 - noop_ms));
            }
            let (r, _) = run_child(&[
                "read".into(),
                engine.name().into(),
                d.clone(),
                nn.clone(),
                ll.clone(),
            ])?;
            if o.readers > 0 && engine.multi_process_readers() {
                let (one, one_cpu) = scale(engine, &dir, o.nodes, o.links, 1, o.reader_ms, o.reader_keys)?;
                let (many, many_cpu) = scale(
                    engine,
                    &dir,
                    o.nodes,
                    o.links,
                    o.readers,
                    o.reader_ms,
                    o.reader_keys,
                )?;
                s.push("scale1_mops", Some(one / 1e6));
                s.push("scale_mops", Some(many / 1e6));
                s.push("scale_ratio", Some(many / one));
                s.push("scale_eff", Some((many / many_cpu) / (one / one_cpu)));
                s.push("scale1_cpus", Some(one_cpu));
                s.push("scale_cpus", Some(many_cpu));
            }
            for k in [
                "node_lookup_ns",
                "link_lookup_ns",
                "bit_ns",
                "bit_words_ns",
                "id_ns",
            ] {
                s.push(k, r[k].as_f64());
            }
        }
        let _ = std::fs::remove_dir_all(&dir);
        results.push((engine.name().to_string(), s));
    }

    if !o.skip_python {
        match python_script(o) {
            Some(script) if python_ready() => {
                let mut s = Samples::default();
                for run in 0..o.runs {
                    eprintln!("original (python): run {}/{}", run + 1, o.runs);
                    let dir = o.dir.join("python");
                    let out = Command::new("python3")
                        .arg(&script)
                        .arg(&nn)
                        .arg(&ll)
                        .arg(&dir)
                        .output()?;
                    if !out.status.success() {
                        return Err(format!(
                            "{}: {}",
                            script.display(),
                            String::from_utf8_lossy(&out.stderr)
                        )
                        .into());
                    }
                    let v: Value = serde_json::from_str(String::from_utf8(out.stdout)?.trim())?;
                    s.push("put_s", v["store_s"].as_f64());
                    s.push("get_ms", v["load_s"].as_f64().map(|x| x * 1e3));
                    s.push("node_lookup_ns", v["lookup_ns"].as_f64());
                    s.push("disk1_mb", v["disk_bytes"].as_f64().map(mb));
                    s.push(
                        "disk50_mb",
                        v["disk_bytes"].as_f64().map(|b| mb(b) * SCOPES as f64),
                    );
                    s.push(
                        "peak_rss_mb",
                        v["maxrss_mb"].as_f64().map(|m| m * 1024.0 * 1024.0 / 1e6),
                    );
                    let _ = std::fs::remove_dir_all(&dir);
                }
                results.push(("original (python)".to_string(), s));
                extra.insert(
                    "python_notes".into(),
                    "get = load_scope in a new manager object of the same process; id lookup = dict lookup + bit test; \
                     disk for 50 scopes = 50 x one scope (every scope stores its own mappings)"
                        .into(),
                );
            }
            _ => eprintln!(
                "the original is skipped: python3 with bitarray and orjson, or seed_bench.py, was not found"
            ),
        }
    }

    report(o, &results, noop_ms, memlat_ns, extra)
}

fn mb(bytes: f64) -> f64 {
    bytes / 1e6
}

fn python_ready() -> bool {
    Command::new("python3")
        .args(["-c", "import bitarray, orjson"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

fn python_script(o: &Opts) -> Option<PathBuf> {
    if let Some(p) = &o.python {
        return Some(p.clone());
    }
    let rel = Path::new("shared/anchors/seed_bench.py");
    let here = Path::new(env!("CARGO_MANIFEST_DIR"));
    [
        Path::new("..").join(rel),
        here.join("../..").join(rel),
        here.join("../../..").join(rel),
    ]
    .into_iter()
    .find(|p| p.is_file())
}

fn report(
    o: &Opts,
    results: &[(String, Samples)],
    noop_ms: f64,
    memlat_ns: f64,
    extra: serde_json::Map<String, Value>,
) -> Res<()> {
    let base = results.iter().find(|(n, _)| n == "scopecache").map(|(_, s)| s);
    if o.json {
        let mut engines = serde_json::Map::new();
        for (name, s) in results {
            let mut m = serde_json::Map::new();
            for k in s.0.keys() {
                m.insert((*k).into(), json!(s.median(k)));
            }
            m.insert("runs".into(), json!(s.0.get("put_s").map_or(0, Vec::len)));
            engines.insert(name.clone(), Value::Object(m));
        }
        let mut top = json!({"nodes": o.nodes, "links": o.links, "runs": o.runs,
            "noop_spawn_ms": noop_ms, "engines": engines});
        if let Some(t) = top.as_object_mut() {
            t.extend(extra);
        }
        println!("{}", serde_json::to_string_pretty(&top)?);
    }
    let table = table(o, results, base, noop_ms, memlat_ns);
    if o.json {
        eprint!("{table}");
    } else {
        print!("{table}");
    }
    Ok(())
}

fn table(
    o: &Opts,
    results: &[(String, Samples)],
    base: Option<&Samples>,
    noop_ms: f64,
    memlat_ns: f64,
) -> String {
    use std::fmt::Write;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "scopecache-compare: {} nodes, {} links, median of {} runs (warm page cache for reads)",
        o.nodes, o.links, o.runs
    );
    let mut head = format!("| {:<32} |", "metric");
    let mut rule = format!("|{:-<34}|", "");
    for (name, _) in results {
        head += &format!(" {name:>20} |");
        rule += &format!("{:-<22}|", "");
    }
    let _ = writeln!(out, "{head}\n{rule}");
    for (k, label, unit) in METRICS {
        let mut line = format!("| {:<32} |", format!("{label} ({unit})"));
        let b = base.and_then(|s| s.median(k));
        for (name, s) in results {
            let cell = match (s.median(k), b) {
                (Some(v), Some(b)) if name != "scopecache" && b > 0.0 => {
                    format!("{} ({:.1}x)", fmt(v), v / b)
                }
                (Some(v), _) => fmt(v),
                (None, _) => "n/a".to_string(),
            };
            line += &format!(" {cell:>20} |");
        }
        let _ = writeln!(out, "{line}");
    }
    if let Some(b) = base {
        if let (Some(p), Some(w)) = (b.median("put_s"), b.median("write_fsync_s")) {
            let _ = writeln!(
                out,
                "\nscopecache put / (write + fsync of the same bytes: {:.3} s) = {:.2}x",
                w,
                p / w
            );
        }
        let _ = writeln!(
            out,
            "memory latency of this machine: {memlat_ns:.0} ns per dependent load at random over 512 MiB"
        );
        if let Some(x) = b.median("build_s") {
            let _ = writeln!(
                out,
                "of the scopecache put, building the two IdMaps took {x:.3} s"
            );
        }
        if let Some(x) = b.median("input_rss_mb") {
            let _ = writeln!(
                out,
                "peak RSS includes the generated input: {x:.0} MB before the put"
            );
        }
    }
    if o.readers > 0 {
        for (name, s) in results {
            if let (Some(a), Some(b)) = (s.median("scale1_cpus"), s.median("scale_cpus")) {
                let _ = writeln!(
                    out,
                    "{name}: 1 reader used {a:.2} CPUs, {} readers at once {b:.2} CPUs (of {})",
                    o.readers,
                    std::thread::available_parallelism().map_or(0, |n| n.get())
                );
            } else if name == Engine::Redb.name() {
                let _ = writeln!(
                    out,
                    "{name}: no reader scaling (a redb file is open in one process at a time)"
                );
            }
        }
    }
    let _ = writeln!(
        out,
        "load average before and after: {} / {}",
        o.load_before,
        load_average()
    );
    let _ = writeln!(out, "(ratios are against scopecache; fresh get is timed inside the child; an empty child costs {noop_ms:.2} ms to spawn)");
    out
}

fn fmt(v: f64) -> String {
    if v >= 100.0 {
        format!("{v:.0}")
    } else if v >= 10.0 {
        format!("{v:.1}")
    } else if v >= 0.1 {
        format!("{v:.2}")
    } else {
        format!("{v:.4}")
    }
}
