//! `import-python`: migrates a cache directory written by the original
//! Python cache manager into a scopecache file.

use crate::fmt::num;
use crate::ops::lib;
use crate::{print_json, progress, CmdResult, ConfigArgs, Failure, EXIT_OK};
use bitvec::prelude::{BitVec, Lsb0};
use chrono::{DateTime, NaiveDateTime, Utc};
use clap::Args;
use flate2::read::GzDecoder;
use scopecache::{IdMap, ManualClock, ScopeCache, ScopeData};
use serde::Serialize;
use serde_json::{Map, Value};
use std::collections::HashMap;
use std::io::Read;
use std::path::{Path, PathBuf};
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
struct Skipped {
    key: String,
    reason: String,
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

/// Parses the original's ISO 8601 times: naive (taken as UTC) or with an offset.
fn parse_time(v: Option<&Value>, what: &str) -> Result<DateTime<Utc>, String> {
    let s = v
        .and_then(Value::as_str)
        .ok_or_else(|| format!("{what} is missing or not a string"))?;
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Ok(t.with_timezone(&Utc));
    }
    NaiveDateTime::parse_from_str(s, "%Y-%m-%dT%H:%M:%S%.f")
        .or_else(|_| NaiveDateTime::parse_from_str(s, "%Y-%m-%d %H:%M:%S%.f"))
        .map(|t| t.and_utc())
        .map_err(|e| format!("{what} {s:?} is not an ISO 8601 time: {e}"))
}

fn count(meta: &Map<String, Value>, field: &str) -> Result<usize, String> {
    meta.get(field)
        .and_then(Value::as_u64)
        .and_then(|v| usize::try_from(v).ok())
        .ok_or_else(|| format!("{field} is missing or not a count"))
}

/// Reads a bitarray `tofile` of `bits` bits (big-endian bit order) into an
/// LSB-first bitset.
fn read_bits(path: &Path, bits: usize) -> Result<BitVec<u64, Lsb0>, String> {
    let bytes = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let need = bits.div_ceil(8);
    if bytes.len() < need {
        return Err(format!(
            "{}: {} bytes, but {bits} bits need {need}",
            path.display(),
            bytes.len()
        ));
    }
    let words: Vec<u64> = bytes[..need]
        .chunks(8)
        .map(|c| {
            let mut w = [0u8; 8];
            for (d, s) in w.iter_mut().zip(c) {
                *d = s.reverse_bits();
            }
            u64::from_le_bytes(w)
        })
        .collect();
    let mut v = BitVec::from_vec(words);
    v.truncate(bits);
    Ok(v)
}

/// Orders a `{id: index}` object by index, checking the indices are exactly 0..n.
fn ordered_ids(obj: Option<&Value>, n: usize, what: &str) -> Result<Vec<String>, String> {
    let obj = obj
        .and_then(Value::as_object)
        .ok_or_else(|| format!("{what} is missing or not an object"))?;
    if obj.len() != n {
        return Err(format!("{what} has {} ids, the metadata says {n}", obj.len()));
    }
    let mut ids: Vec<Option<String>> = vec![None; n];
    for (id, idx) in obj {
        let i = idx
            .as_u64()
            .and_then(|i| usize::try_from(i).ok())
            .filter(|&i| i < n)
            .ok_or_else(|| format!("{what}: id {id:?} has index {idx}, not in 0..{n}"))?;
        if let Some(other) = &ids[i] {
            return Err(format!("{what}: ids {other:?} and {id:?} both have index {i}"));
        }
        ids[i] = Some(id.clone());
    }
    // n distinct indices in 0..n: every slot is filled.
    Ok(ids.into_iter().flatten().collect())
}

/// The two mappings of a `{key}_mappings.json.gz`, decoded once per distinct
/// content: identical mapping files give the very same `IdMap`s.
struct MappingCache {
    by_digest: HashMap<u128, (IdMap, IdMap)>,
}

impl MappingCache {
    fn get(&mut self, path: &Path, nodes: usize, links: usize) -> Result<(IdMap, IdMap), String> {
        let gz = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
        let mut text = Vec::new();
        GzDecoder::new(&gz[..])
            .read_to_end(&mut text)
            .map_err(|e| format!("{}: not gzip: {e}", path.display()))?;
        let digest = xxhash_rust::xxh3::xxh3_128(&text);
        if let Some((n, l)) = self.by_digest.get(&digest) {
            if n.len() == nodes && l.len() == links {
                return Ok((n.clone(), l.clone()));
            }
        }
        let v: Value =
            serde_json::from_slice(&text).map_err(|e| format!("{}: not JSON: {e}", path.display()))?;
        let node_ids = ordered_ids(v.get("node_id_mapping"), nodes, "node_id_mapping")?;
        let link_ids = ordered_ids(v.get("link_id_mapping"), links, "link_id_mapping")?;
        drop(v);
        let n = IdMap::from_ids(&node_ids).map_err(|e| format!("node_id_mapping: {e}"))?;
        let l = IdMap::from_ids(&link_ids).map_err(|e| format!("link_id_mapping: {e}"))?;
        self.by_digest.insert(digest, (n.clone(), l.clone()));
        Ok((n, l))
    }
}

/// `import-python DIR FILE`.
pub fn run(a: &ImportArgs, json: bool) -> CmdResult {
    let meta_path = a.dir.join("cache_metadata.json");
    let text = std::fs::read(&meta_path).map_err(|e| Failure::at(&meta_path, e))?;
    let meta: Map<String, Value> = serde_json::from_slice(&text)
        .map_err(|e| Failure::at(&meta_path, format!("not a JSON object: {e}")))?;
    let now = a.now.unwrap_or_else(Utc::now);
    let mut config = a.config.config(false);
    if let Some(t) = a.now {
        config.clock = Arc::new(ManualClock::new(t));
    }
    let ttl = config.ttl;
    let cache = ScopeCache::open(&a.file, config).map_err(lib(&a.file))?;

    // Oldest first, so the newest entries are the ones kept if the limits bite.
    let mut entries: Vec<(&String, &Value)> = meta.iter().collect();
    entries.sort_by_key(|(k, v)| {
        (
            v.get("created_at")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_owned(),
            (*k).clone(),
        )
    });

    let mut maps = MappingCache {
        by_digest: HashMap::new(),
    };
    let mut summary = Summary {
        dir: a.dir.clone(),
        file: a.file.clone(),
        imported: Vec::new(),
        skipped: Vec::new(),
        mappings_decoded: 0,
    };
    let pb = progress::bar(entries.len() as u64, "importing");
    for (key, m) in entries {
        pb.set_message(key.clone());
        match import_one(&cache, &a.dir, key, m, now, ttl, &mut maps) {
            Ok(()) => summary.imported.push(key.clone()),
            Err(reason) => {
                log::warn!("{}: skipping {key:?}: {reason}", a.dir.display());
                summary.skipped.push(Skipped {
                    key: key.clone(),
                    reason,
                });
            }
        }
        pb.inc(1);
    }
    pb.finish_and_clear();
    summary.mappings_decoded = maps.by_digest.len() as u64;
    if json {
        print_json(&summary)?;
    } else {
        println!(
            "imported {} of {} entries from {} into {} ({} distinct mapping files)",
            num(summary.imported.len() as u64),
            num(meta.len() as u64),
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

fn import_one(
    cache: &ScopeCache,
    dir: &Path,
    key: &str,
    m: &Value,
    now: DateTime<Utc>,
    ttl: Option<std::time::Duration>,
    maps: &mut MappingCache,
) -> Result<(), String> {
    let m = m.as_object().ok_or("its metadata is not an object")?;
    if let Some(sk) = m.get("scope_key").and_then(Value::as_str) {
        if sk != key {
            log::warn!(
                "{}: entry {key:?} names itself {sk:?}; importing it as {key:?}",
                dir.display()
            );
        }
    }
    let created = parse_time(m.get("created_at"), "created_at")?;
    let accessed = parse_time(m.get("last_accessed"), "last_accessed")?;
    if let Some(ttl) = ttl {
        let age = now.signed_duration_since(accessed);
        if age.to_std().is_ok_and(|age| age > ttl) {
            return Err(format!(
                "expired: last accessed {} ({} h ago), TTL {} h",
                crate::fmt::rfc3339(accessed),
                age.num_hours(),
                ttl.as_secs_f64() / 3600.0
            ));
        }
    }
    let nodes = count(m, "total_nodes")?;
    let links = count(m, "total_links")?;
    let attributes = match m.get("config_attributes") {
        Some(Value::Object(o)) => o.clone(),
        None | Some(Value::Null) => Map::new(),
        Some(other) => return Err(format!("config_attributes is not an object: {other}")),
    };
    let node_bits = read_bits(&dir.join(format!("{key}_nodes.bits")), nodes)?;
    let link_bits = read_bits(&dir.join(format!("{key}_links.bits")), links)?;
    let (node_ids, link_ids) = maps.get(&dir.join(format!("{key}_mappings.json.gz")), nodes, links)?;
    let data = ScopeData {
        nodes: &node_bits,
        links: &link_bits,
        node_ids: &node_ids,
        link_ids: &link_ids,
        attributes: &attributes,
    };
    cache
        .put_with_times(key, &data, created, accessed)
        .map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn big_endian_bits_become_lsb_first() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("x.bits");
        // bits 0, 7, 8 and 10 set, 11 bits: 0b1000_0001, 0b1010_0000
        std::fs::write(&p, [0x81u8, 0xA0]).unwrap();
        let v = read_bits(&p, 11).unwrap();
        let set: Vec<usize> = v.iter_ones().collect();
        assert_eq!(set, [0, 7, 8, 10]);
        assert!(read_bits(&p, 17).is_err());
    }

    #[test]
    fn ids_are_ordered_and_checked() {
        let v: Value = serde_json::json!({"b": 1, "a": 0, "c": 2});
        assert_eq!(ordered_ids(Some(&v), 3, "m").unwrap(), ["a", "b", "c"]);
        assert!(ordered_ids(Some(&v), 4, "m").is_err());
        let gap: Value = serde_json::json!({"a": 0, "b": 2});
        assert!(ordered_ids(Some(&gap), 2, "m").is_err());
        let dup: Value = serde_json::json!({"a": 0, "b": 0});
        assert!(ordered_ids(Some(&dup), 2, "m")
            .unwrap_err()
            .contains("both have index 0"));
    }

    #[test]
    fn naive_times_are_utc() {
        let t = parse_time(Some(&Value::from("2025-03-01T10:20:30.123456")), "t").unwrap();
        assert_eq!(t.to_rfc3339(), "2025-03-01T10:20:30.123456+00:00");
        let t = parse_time(Some(&Value::from("2025-03-01T10:20:30")), "t").unwrap();
        assert_eq!(t.timestamp(), 1740824430);
        assert!(parse_time(Some(&Value::from("yesterday")), "t").is_err());
    }
}
