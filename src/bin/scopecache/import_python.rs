//! `import-python`: migrates a cache directory written by the original
//! Python cache manager into a scopecache file.

use crate::fmt::num;
use crate::ops::lib;
use crate::{print_json, progress, CmdResult, ConfigArgs, Failure, EXIT_OK};
use chrono::{DateTime, Utc};
use clap::Args;
use scopecache::migrate::{migrate_python_dir, Skipped};
use scopecache::{ManualClock, ScopeCache};
use serde::Serialize;
use std::path::PathBuf;
use std::sync::Arc;

/// The long help of `import-python`: the formats read.
pub const LONG_ABOUT: &str =
    "Migrate a cache directory written by the original Python cache manager into FILE
(created if missing; entries with the same keys are replaced). It reads:

  cache_metadata.json         {key: {scope_key, created_at, last_accessed, total_nodes,
                              total_links, config_attributes, ...}}; the times are ISO 8601
                              without a time zone (naive local time) and are taken as UTC
  {key}_nodes.bits            bitarray tofile(): big-endian bit order (bit i is in byte i/8
  {key}_links.bits            at mask 0x80 >> i%8), padded to whole bytes
  {key}_mappings.json.gz      gzip JSON {\"node_id_mapping\": {id: index},
                              \"link_id_mapping\": {id: index}}, indices exactly 0..N

Entries keep their creation and last access times and their attributes. Entries
expired per --ttl-hours (default 24) and entries whose files are missing or
inconsistent are skipped, each with a warning; a summary says what was imported
and what was skipped and why. Entries with identical mappings share one stored
copy of them.";

/// Flags of `import-python`.
#[derive(Args, Debug)]
pub struct ImportArgs {
    /// The Python cache directory (the one holding cache_metadata.json).
    pub dir: PathBuf,
    /// The scopecache file to write.
    pub file: PathBuf,
    /// Judge expiry, and record the import, as of this time (RFC 3339)
    /// instead of now.
    #[arg(long, value_name = "TIME")]
    pub now: Option<DateTime<Utc>>,
    #[command(flatten)]
    pub config: ConfigArgs,
}

#[derive(Serialize, Debug)]
struct Summary {
    dir: PathBuf,
    file: PathBuf,
    imported: Vec<String>,
    skipped: Vec<Skipped>,
    /// Distinct mapping files decoded; entries with identical mappings reuse them.
    mappings_decoded: u64,
}

/// `import-python DIR FILE`.
pub fn run(a: &ImportArgs, json: bool) -> CmdResult {
    let now = a.now.unwrap_or_else(Utc::now);
    let mut config = a.config.config(false);
    if let Some(t) = a.now {
        config.clock = Arc::new(ManualClock::new(t));
    }
    // Read before the cache file is created, so that a wrong directory
    // leaves nothing behind.
    let meta_path = a.dir.join("cache_metadata.json");
    std::fs::metadata(&meta_path).map_err(|e| Failure::at(&meta_path, e))?;
    let cache = ScopeCache::open(&a.file, config).map_err(lib(&a.file))?;
    let pb = progress::bar(0, "importing");
    let report = migrate_python_dir(&cache, &a.dir, now, |done, total, key| {
        pb.set_length(total as u64);
        pb.set_position(done as u64);
        pb.set_message(key.to_owned());
    })
    .map_err(lib(&meta_path))?;
    pb.finish_and_clear();
    let summary = Summary {
        dir: a.dir.clone(),
        file: a.file.clone(),
        imported: report.imported,
        skipped: report.skipped,
        mappings_decoded: report.mappings_decoded,
    };
    if json {
        print_json(&summary)?;
    } else {
        println!(
            "imported {} of {} entries from {} into {} ({} distinct mapping files)",
            num(summary.imported.len() as u64),
            num(report.entries),
            a.dir.display(),
            a.file.display(),
            num(summary.mappings_decoded)
        );
        if !summary.skipped.is_empty() {
            println!("skipped {}:", summary.skipped.len());
            for s in &summary.skipped {
                println!("  {:?}: {}", s.key, s.reason);
            }
        }
        println!("note: the original's times have no time zone; they were taken as UTC");
    }
    Ok(EXIT_OK)
}
