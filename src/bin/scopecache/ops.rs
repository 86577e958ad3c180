//! The commands on one cache file: stats, list, info, rm, clear, maintain,
//! compact, verify.

use crate::fmt::{ago, num, pairs, secs, size, table, when};
use crate::{print_json, progress, CmdResult, ConfigArgs, Failure, FileArgs, KeyArgs, EXIT_CORRUPT, EXIT_OK};
use chrono::Utc;
use scopecache::{EntryInfo, Error, ScopeCache};
use std::path::Path;
use std::time::Instant;

/// Opens an existing cache file, never creating one: a missing file is an
/// error. `read_only` opens without write access.
pub fn open_existing(file: &Path, config: &ConfigArgs, read_only: bool) -> Result<ScopeCache, Failure> {
    match std::fs::metadata(file) {
        Ok(m) if m.is_file() => {}
        Ok(_) => return Err(Failure::at(file, "not a regular file")),
        Err(e) => return Err(Failure::at(file, e)),
    }
    ScopeCache::open(file, config.config(read_only)).map_err(|e| Failure::at(file, e))
}

/// Maps a library error on `file` to a failure.
pub fn lib(file: &Path) -> impl Fn(Error) -> Failure + '_ {
    move |e| Failure::at(file, e)
}

/// `stats FILE`.
pub fn stats(a: &FileArgs, json: bool) -> CmdResult {
    let cache = open_existing(&a.file, &a.config, true)?;
    let s = cache.stats().map_err(lib(&a.file))?;
    if json {
        print_json(&s)?;
        return Ok(EXIT_OK);
    }
    let now = Utc::now();
    let max = cache.config().max_size_bytes;
    let dead_pct = if s.file_bytes > 0 {
        100.0 * s.dead_bytes as f64 / s.file_bytes as f64
    } else {
        0.0
    };
    let opt_when = |t: Option<chrono::DateTime<Utc>>| t.map_or_else(|| "-".to_owned(), |t| when(t, now));
    let rows = [
        ("file", a.file.display().to_string()),
        ("generation", num(s.generation)),
        (
            "entries",
            format!(
                "{} (max {})",
                num(s.total_entries),
                num(cache.config().max_entries as u64)
            ),
        ),
        (
            "index",
            format!(
                "generation {}, {} deltas over its base",
                num(s.generation),
                num(s.index_deltas)
            ),
        ),
        (
            "stored mappings",
            format!("{} (shared by entries with the same ids)", num(s.stored_mappings)),
        ),
        (
            "total nodes",
            format!(
                "{} (avg {} per entry)",
                num(s.total_nodes),
                num(s.average_nodes_per_entry)
            ),
        ),
        (
            "total links",
            format!(
                "{} (avg {} per entry)",
                num(s.total_links),
                num(s.average_links_per_entry)
            ),
        ),
        (
            "data size",
            format!("{} (each mapping counted once)", size(s.total_size_bytes)),
        ),
        (
            "file size",
            format!(
                "{} (live {}, dead {} = {dead_pct:.0}%)",
                size(s.file_bytes),
                size(s.live_bytes),
                size(s.dead_bytes)
            ),
        ),
        (
            "utilization",
            format!("{:.2}% of {}", 100.0 * s.cache_utilization, size(max)),
        ),
        ("oldest entry", opt_when(s.oldest_entry)),
        ("newest entry", opt_when(s.newest_entry)),
        ("hits / misses", format!("{} / {}", num(s.hits), num(s.misses))),
        ("puts / removes", format!("{} / {}", num(s.puts), num(s.removes))),
        (
            "evictions / expiries",
            format!("{} / {}", num(s.evictions), num(s.expiries)),
        ),
        ("corrupt dropped", num(s.corrupt_dropped)),
        ("compactions", num(s.compactions)),
    ];
    print!("{}", pairs(&rows));
    Ok(EXIT_OK)
}

/// `list FILE`.
pub fn list(a: &FileArgs, json: bool) -> CmdResult {
    let cache = open_existing(&a.file, &a.config, true)?;
    let entries = cache.list().map_err(lib(&a.file))?;
    if json {
        print_json(&entries)?;
        return Ok(EXIT_OK);
    }
    if entries.is_empty() {
        println!("no entries in {}", a.file.display());
        return Ok(EXIT_OK);
    }
    let now = Utc::now();
    let rows: Vec<Vec<String>> = entries
        .iter()
        .map(|e| {
            vec![
                e.key.clone(),
                num(e.total_nodes),
                num(e.total_links),
                size(e.nodes_bytes + e.links_bytes),
                size(e.node_ids_bytes + e.link_ids_bytes),
                if e.shares_mappings { "yes" } else { "no" }.into(),
                ago(e.created_at, now),
                ago(e.last_accessed, now),
            ]
        })
        .collect();
    print!(
        "{}",
        table(
            &[
                "KEY",
                "NODES",
                "LINKS",
                "BITSETS",
                "MAPPINGS",
                "SHARED",
                "CREATED",
                "LAST ACCESSED"
            ],
            &[false, true, true, true, true, false, false, false],
            &rows
        )
    );
    println!("{} entries", entries.len());
    Ok(EXIT_OK)
}

fn describe(e: &EntryInfo, cache: &ScopeCache) -> String {
    let now = Utc::now();
    let expires = match cache.config().ttl {
        Some(ttl) => match chrono::Duration::from_std(ttl) {
            Ok(d) => {
                let at = e.last_accessed + d;
                if at <= now {
                    format!("expired {}", ago(at, now))
                } else {
                    when(at, now)
                }
            }
            Err(_) => "never".into(),
        },
        None => "never (no TTL)".into(),
    };
    let attrs = serde_json::to_string(&e.attributes).unwrap_or_default();
    let shared = if e.shares_mappings {
        " (shared with other entries)"
    } else {
        ""
    };
    pairs(&[
        ("key", e.key.clone()),
        ("created", when(e.created_at, now)),
        ("last accessed", when(e.last_accessed, now)),
        ("expires", expires),
        ("total nodes", num(e.total_nodes)),
        ("total links", num(e.total_links)),
        ("nodes bitset", size(e.nodes_bytes)),
        ("links bitset", size(e.links_bytes)),
        ("node id mapping", format!("{}{shared}", size(e.node_ids_bytes))),
        ("link id mapping", format!("{}{shared}", size(e.link_ids_bytes))),
        ("attributes", format!("{} {attrs}", size(e.attributes_bytes))),
        ("total size", size(e.total_bytes)),
    ])
}

/// `info FILE KEY`.
pub fn info(a: &KeyArgs, json: bool) -> CmdResult {
    let cache = open_existing(&a.file, &a.config, true)?;
    let e = cache
        .info(&a.key)
        .map_err(lib(&a.file))?
        .ok_or_else(|| Failure::at(&a.file, format!("no entry {:?}", a.key)))?;
    if json {
        print_json(&e)?;
    } else {
        print!("{}", describe(&e, &cache));
    }
    Ok(EXIT_OK)
}

/// `rm FILE KEY`.
pub fn rm(a: &KeyArgs, json: bool) -> CmdResult {
    let cache = open_existing(&a.file, &a.config, false)?;
    let removed = cache.remove(&a.key).map_err(lib(&a.file))?;
    if !removed {
        return Err(Failure::at(&a.file, format!("no entry {:?}", a.key)));
    }
    if json {
        print_json(&serde_json::json!({ "key": a.key, "removed": true }))?;
    } else {
        println!("removed {:?}", a.key);
    }
    Ok(EXIT_OK)
}

/// `clear FILE`.
pub fn clear(a: &FileArgs, json: bool) -> CmdResult {
    let cache = open_existing(&a.file, &a.config, false)?;
    let n = cache.clear().map_err(lib(&a.file))?;
    if json {
        print_json(&serde_json::json!({ "removed": n }))?;
    } else {
        println!("removed {} entries", num(n));
    }
    Ok(EXIT_OK)
}

/// `maintain FILE`.
pub fn maintain(a: &FileArgs, json: bool) -> CmdResult {
    let cache = open_existing(&a.file, &a.config, false)?;
    let pb = progress::spinner("maintaining");
    let t = Instant::now();
    let r = cache.maintain();
    pb.finish_and_clear();
    let r = r.map_err(lib(&a.file))?;
    if json {
        print_json(&r)?;
        return Ok(EXIT_OK);
    }
    let compaction = match &r.compaction {
        Some(c) => format!("{} -> {}", size(c.bytes_before), size(c.bytes_after)),
        None => "not needed".into(),
    };
    print!(
        "{}",
        pairs(&[
            ("expired", num(r.expired)),
            ("evicted", num(r.evicted)),
            ("corrupt dropped", num(r.corrupt_dropped)),
            ("compaction", compaction),
            ("took", secs(t.elapsed().as_secs_f64())),
        ])
    );
    Ok(EXIT_OK)
}

/// `compact FILE`.
pub fn compact(a: &FileArgs, json: bool) -> CmdResult {
    let cache = open_existing(&a.file, &a.config, false)?;
    let pb = progress::spinner("compacting");
    let t = Instant::now();
    let r = cache.compact();
    pb.finish_and_clear();
    let r = r.map_err(lib(&a.file))?;
    if json {
        print_json(&r)?;
        return Ok(EXIT_OK);
    }
    println!(
        "compacted {}: {} -> {} (reclaimed {}) in {}",
        a.file.display(),
        size(r.bytes_before),
        size(r.bytes_after),
        size(r.bytes_before.saturating_sub(r.bytes_after)),
        secs(t.elapsed().as_secs_f64())
    );
    Ok(EXIT_OK)
}

/// `verify FILE`: exit 3 when anything is wrong, including a file too
/// damaged to open.
pub fn verify(a: &FileArgs, json: bool) -> CmdResult {
    let cache = match open_existing(&a.file, &a.config, true) {
        Ok(c) => c,
        Err(f) => {
            // Tell damage apart from other failures (a missing file, not a cache file).
            let damaged = std::fs::metadata(&a.file).is_ok()
                && matches!(
                    ScopeCache::open(&a.file, a.config.config(true)),
                    Err(Error::Corrupt { .. })
                );
            return Err(if damaged {
                Failure {
                    code: EXIT_CORRUPT,
                    ..f
                }
            } else {
                f
            });
        }
    };
    let pb = progress::spinner("verifying");
    let r = cache.verify();
    pb.finish_and_clear();
    let r = match r {
        Ok(r) => r,
        Err(e @ Error::Corrupt { .. }) => {
            return Err(Failure {
                code: EXIT_CORRUPT,
                ..Failure::at(&a.file, e)
            })
        }
        Err(e) => return Err(Failure::at(&a.file, e)),
    };
    if json {
        print_json(&r)?;
    } else {
        println!(
            "{}: generation {}, {} entries, {} mappings, {} checked",
            a.file.display(),
            r.generation,
            num(r.entries),
            num(r.mappings),
            size(r.bytes_checked)
        );
        if r.is_clean() {
            println!("OK: no problems found");
        } else {
            println!("CORRUPT: {} problems", r.problems.len());
            for p in &r.problems {
                match &p.key {
                    Some(k) => println!("  entry {k:?}: {}", p.what),
                    None => println!("  {}", p.what),
                }
            }
        }
    }
    Ok(if r.is_clean() { EXIT_OK } else { EXIT_CORRUPT })
}
