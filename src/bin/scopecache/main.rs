//! The `scopecache` operator command: runs the standard demo workload, and
//! inspects, maintains, exports and migrates cache files.
//!
//! Exit codes: 0 success, 1 error, 2 usage error, 3 `verify` found
//! corruption. Errors go to stderr as `scopecache: <file>: <cause>`.

mod algebra;
mod demo;
mod export;
mod fmt;
mod import_python;
mod ops;
mod progress;
#[cfg(feature = "remote")]
mod remote;

use clap::{Args, Parser, Subcommand};
use scopecache::CacheConfig;
use std::fmt::Display;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

/// Exit code of a successful run.
pub const EXIT_OK: u8 = 0;
/// Exit code of a failed run.
pub const EXIT_ERROR: u8 = 1;
/// Exit code of `verify` when it found corruption.
pub const EXIT_CORRUPT: u8 = 3;

#[derive(Parser, Debug)]
#[command(
    name = "scopecache",
    version,
    about = "Inspect, maintain, export and migrate scopecache files, and run the standard demo workload.",
    after_help = "Exit codes: 0 ok, 1 error, 2 usage error, 3 `verify` found corruption.\n\
                  Commands that only read (stats, list, info, verify, export, covered, counts) open the file read-only \
                  and never create it."
)]
struct Cli {
    /// Print one JSON document instead of human-readable text.
    #[arg(long, global = true)]
    json: bool,
    /// Also log informational messages to stderr (warnings are always shown).
    #[arg(short, long, global = true)]
    verbose: bool,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// Run the standard workload: build two id mappings, store several
    /// scopes sharing them, then time a fresh process that opens the file
    /// and reads a scope. Leaves the file for the other commands.
    Demo(demo::DemoArgs),
    /// Internal: the fresh reader process the demo starts.
    #[command(hide = true)]
    DemoRead(demo::DemoReadArgs),
    /// Statistics of a cache file: entries, sizes, live and dead bytes, counters.
    Stats(FileArgs),
    /// List the entries, most recently accessed first.
    List(FileArgs),
    /// Describe one entry.
    Info(KeyArgs),
    /// Remove one entry (its space is reclaimed by the next compaction).
    Rm(KeyArgs),
    /// Remove every entry.
    Clear(FileArgs),
    /// Expire entries past their TTL, evict down to the limits, drop corrupt
    /// entries, and compact if dead space makes it worth it.
    Maintain(FileArgs),
    /// Rewrite the file with only its live data, now. Safe while other
    /// processes read and write the file.
    Compact(FileArgs),
    /// Check every byte of the newest generation; exit 3 if anything is wrong.
    Verify(FileArgs),
    /// Write one scope out as plain files.
    #[command(long_about = export::LONG_ABOUT)]
    Export(export::ExportArgs),
    /// Migrate a cache directory written by the original Python cache manager.
    #[command(long_about = import_python::LONG_ABOUT)]
    ImportPython(import_python::ImportArgs),
    /// Store the union of scopes (what any of them covers) as a new scope
    /// sharing their id mappings.
    Union(algebra::SetArgs),
    /// Store the intersection of scopes (what all of them cover) as a new scope.
    Intersection(algebra::SetArgs),
    /// Store what the first scope covers and none of the others do as a new scope.
    Difference(algebra::DiffArgs),
    /// Print the ids a scope covers, one per line, in index order.
    Covered(algebra::CoveredArgs),
    /// Count how many of the scopes cover each id; print the least covered.
    Counts(algebra::CountsArgs),
    /// Upload scopes of a cache file to a remote bucket (objects it holds
    /// already are not sent again).
    #[cfg(feature = "remote")]
    #[command(long_about = remote::LONG_ABOUT)]
    Push(remote::TransferArgs),
    /// Download scopes from a remote bucket into a cache file (creating it
    /// if missing); every object is checked against its hash first.
    #[cfg(feature = "remote")]
    #[command(long_about = remote::LONG_ABOUT)]
    Pull(remote::TransferArgs),
    /// List the scopes in a remote bucket.
    #[cfg(feature = "remote")]
    #[command(long_about = remote::LONG_ABOUT)]
    RemoteList(remote::ListArgs),
    /// Delete old scopes, and the objects no scope names, from a remote bucket.
    #[cfg(feature = "remote")]
    #[command(long_about = remote::LONG_ABOUT)]
    RemoteGc(remote::GcArgs),
}

/// The cache file argument, with the configuration flags.
#[derive(Args, Debug)]
pub struct FileArgs {
    /// The cache file.
    pub file: PathBuf,
    #[command(flatten)]
    pub config: ConfigArgs,
}

/// A cache file and a key.
#[derive(Args, Debug)]
pub struct KeyArgs {
    /// The cache file.
    pub file: PathBuf,
    /// The entry's key.
    pub key: String,
    #[command(flatten)]
    pub config: ConfigArgs,
}

/// Limits the cache is opened with; each defaults to `CacheConfig::default()`.
#[derive(Args, Debug, Clone, Default)]
pub struct ConfigArgs {
    /// Bound on the file's size, in bytes or with a K, M, G or T suffix
    /// (powers of 1024) [default: 10G].
    #[arg(long, value_parser = parse_size, value_name = "SIZE")]
    pub max_size: Option<u64>,
    /// Bound on the number of entries [default: 100].
    #[arg(long, value_name = "N")]
    pub max_entries: Option<usize>,
    /// Entries not accessed for this many hours are expired; 0 never
    /// expires them [default: 24].
    #[arg(long, value_name = "HOURS")]
    pub ttl_hours: Option<f64>,
}

impl ConfigArgs {
    /// The configuration these flags give, over the library's defaults.
    pub fn config(&self, read_only: bool) -> CacheConfig {
        let d = CacheConfig::default();
        CacheConfig {
            max_size_bytes: self.max_size.unwrap_or(d.max_size_bytes),
            max_entries: self.max_entries.unwrap_or(d.max_entries),
            ttl: match self.ttl_hours {
                None => d.ttl,
                Some(h) if h <= 0.0 => None,
                Some(h) => Some(Duration::from_secs_f64(h * 3600.0)),
            },
            read_only,
            ..d
        }
    }
}

/// Parses a byte count with an optional K, M, G or T suffix (powers of 1024).
fn parse_size(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let t = t.strip_suffix(['B', 'b']).unwrap_or(t);
    let (num, mult) = match t.char_indices().last() {
        Some((i, c)) if c.is_ascii_alphabetic() => {
            let m: u64 = match c.to_ascii_uppercase() {
                'K' => 1 << 10,
                'M' => 1 << 20,
                'G' => 1 << 30,
                'T' => 1 << 40,
                _ => return Err(format!("unknown size suffix {c:?} (use K, M, G or T)")),
            };
            (&t[..i], m)
        }
        _ => (t, 1),
    };
    let v: f64 = num.trim().parse().map_err(|_| format!("not a size: {s:?}"))?;
    if !(v.is_finite() && v >= 0.0) {
        return Err(format!("not a size: {s:?}"));
    }
    Ok((v * mult as f64) as u64)
}

/// A failed command: the message printed after `scopecache: `, and the exit code.
#[derive(Debug)]
pub struct Failure {
    /// The exit code.
    pub code: u8,
    /// What went wrong, naming the file.
    pub msg: String,
}

impl Failure {
    /// An error about `file`. Library errors usually name their file
    /// already; it is not repeated then.
    pub fn at(file: &Path, e: impl Display) -> Failure {
        let msg = e.to_string();
        let name = file.display().to_string();
        let msg = if msg.starts_with(&name) {
            msg
        } else {
            format!("{name}: {msg}")
        };
        Failure {
            code: EXIT_ERROR,
            msg,
        }
    }

    /// An error not about one file.
    pub fn msg(e: impl Display) -> Failure {
        Failure {
            code: EXIT_ERROR,
            msg: e.to_string(),
        }
    }
}

/// What a command returns: its exit code, or a failure.
pub type CmdResult = Result<u8, Failure>;

/// Writes warnings (and with `-v` informational messages) to stderr; the
/// level is `log::max_level()`.
struct StderrLog;

static LOGGER: StderrLog = StderrLog;

impl log::Log for StderrLog {
    fn enabled(&self, m: &log::Metadata<'_>) -> bool {
        m.level() <= log::max_level()
    }
    fn log(&self, r: &log::Record<'_>) {
        if self.enabled(r.metadata()) {
            let level = match r.level() {
                log::Level::Error => "error",
                log::Level::Warn => "warning",
                log::Level::Info => "info",
                log::Level::Debug => "debug",
                log::Level::Trace => "trace",
            };
            eprintln!("scopecache: {level}: {}", r.args());
        }
    }
    fn flush(&self) {}
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let level = if cli.verbose {
        log::LevelFilter::Info
    } else {
        log::LevelFilter::Warn
    };
    if log::set_logger(&LOGGER).is_ok() {
        log::set_max_level(level);
    }
    let json = cli.json;
    let result = match cli.cmd {
        Cmd::Demo(a) => demo::run(&a, json),
        Cmd::DemoRead(a) => demo::run_reader(&a),
        Cmd::Stats(a) => ops::stats(&a, json),
        Cmd::List(a) => ops::list(&a, json),
        Cmd::Info(a) => ops::info(&a, json),
        Cmd::Rm(a) => ops::rm(&a, json),
        Cmd::Clear(a) => ops::clear(&a, json),
        Cmd::Maintain(a) => ops::maintain(&a, json),
        Cmd::Compact(a) => ops::compact(&a, json),
        Cmd::Verify(a) => ops::verify(&a, json),
        Cmd::Export(a) => export::run(&a, json),
        Cmd::ImportPython(a) => import_python::run(&a, json),
        Cmd::Union(a) => algebra::set(algebra::SetOp::Union, &a, json),
        Cmd::Intersection(a) => algebra::set(algebra::SetOp::Intersection, &a, json),
        Cmd::Difference(a) => algebra::difference(&a, json),
        Cmd::Covered(a) => algebra::covered(&a, json),
        Cmd::Counts(a) => algebra::counts(&a, json),
        #[cfg(feature = "remote")]
        Cmd::Push(a) => remote::push(&a, json),
        #[cfg(feature = "remote")]
        Cmd::Pull(a) => remote::pull(&a, json),
        #[cfg(feature = "remote")]
        Cmd::RemoteList(a) => remote::list(&a, json),
        #[cfg(feature = "remote")]
        Cmd::RemoteGc(a) => remote::gc(&a, json),
    };
    match result {
        Ok(code) => ExitCode::from(code),
        Err(f) => {
            eprintln!("scopecache: {}", f.msg);
            ExitCode::from(f.code)
        }
    }
}

/// Prints `v` as one pretty JSON document on stdout.
pub fn print_json<T: serde::Serialize>(v: &T) -> Result<(), Failure> {
    let s = serde_json::to_string_pretty(v).map_err(Failure::msg)?;
    println!("{s}");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::parse_size;

    #[test]
    fn sizes_parse_with_suffixes() {
        assert_eq!(parse_size("1024"), Ok(1024));
        assert_eq!(parse_size("2K"), Ok(2048));
        assert_eq!(parse_size("1.5M"), Ok(3 << 19));
        assert_eq!(parse_size("10G"), Ok(10 << 30));
        assert_eq!(parse_size("10GB"), Ok(10 << 30));
        assert!(parse_size("ten").is_err());
        assert!(parse_size("5Q").is_err());
        assert!(parse_size("-1").is_err());
    }
}
