//! Migration of a cache directory written by the original Python cache
//! manager (`CacheScopeManager`) into a scopecache file.
//!
//! The original keeps, in one directory:
//!
//! | file | content |
//! |---|---|
//! | `cache_metadata.json` | `{key: {scope_key, created_at, last_accessed, total_nodes, total_links, config_attributes, ...}}`; times are ISO 8601 without a time zone (naive local time), taken here as UTC |
//! | `{key}_nodes.bits`, `{key}_links.bits` | bitarray `tofile()`: big-endian bit order (bit i is in byte i/8 at mask `0x80 >> i%8`), padded to whole bytes |
//! | `{key}_mappings.json.gz` | gzip JSON `{"node_id_mapping": {id: index}, "link_id_mapping": {id: index}}`, indices exactly 0..N |
//!
//! Entries keep their creation and last access times and their attributes;
//! entries with identical mapping files share one stored copy of each
//! mapping; expired entries and entries whose files are missing or
//! inconsistent are skipped, each with its reason.
//!
//! ```no_run
//! # fn main() -> scopecache::Result<()> {
//! use scopecache::{migrate, CacheConfig, ScopeCache};
//! let cache = ScopeCache::open("scopes.cache", CacheConfig::default())?;
//! let report = migrate::migrate_python_dir(&cache, "/cache".as_ref(), chrono::Utc::now(), |_, _, _| {})?;
//! for s in &report.skipped {
//!     eprintln!("skipped {:?}: {}", s.key, s.reason);
//! }
//! # Ok(()) }
//! ```

use crate::{Error, IdMap, Result, ScopeCache, ScopeData};
use bitvec::prelude::{BitVec, Lsb0};
use chrono::{DateTime, NaiveDateTime, Utc};
use flate2::read::GzDecoder;
use serde_json::{Map, Value};
use std::collections::HashMap;
use std::io::Read;
use std::path::Path;

/// An entry that was not migrated, and why.
#[derive(Clone, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "cli", derive(serde::Serialize))]
pub struct Skipped {
    /// The entry's key.
    pub key: String,
    /// Why it was skipped.
    pub reason: String,
}

/// What [`migrate_python_dir`] did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MigrateReport {
    /// Keys migrated, in the order they were put (oldest first).
    pub imported: Vec<String>,
    /// Entries skipped, with their reasons.
    pub skipped: Vec<Skipped>,
    /// Distinct mapping files decoded; entries with identical mappings reuse them.
    pub mappings_decoded: u64,
    /// Entries the metadata lists.
    pub entries: u64,
}

/// Migrates every entry of the original's directory `dir` into `cache`
/// (entries with the same keys are replaced), oldest first, so that the
/// newest are the ones kept if the cache's limits bite.
///
/// Expiry is judged as of `now` with the cache's TTL. `progress` is called
/// before each entry with (entries done, entries in all, key).
///
/// Errors: [`Error::Io`] if `dir/cache_metadata.json` cannot be read,
/// [`Error::Corrupt`] if it is not a JSON object. A broken entry is never
/// an error: it is skipped (and logged) with its reason, as are errors of
/// the cache on that entry's put.
///
/// Cost: each distinct mapping file is decompressed, parsed and built into
/// an [`IdMap`] once; each entry's bitsets are read and put.
pub fn migrate_python_dir(
    cache: &ScopeCache,
    dir: &Path,
    now: DateTime<Utc>,
    mut progress: impl FnMut(usize, usize, &str),
) -> Result<MigrateReport> {
    let meta_path = dir.join("cache_metadata.json");
    let text = std::fs::read(&meta_path).map_err(|e| Error::io(&meta_path, "read", e))?;
    let meta: Map<String, Value> = serde_json::from_slice(&text)
        .map_err(|e| Error::corrupt(&meta_path, format!("not a JSON object: {e}")))?;
    let ttl = cache.config().ttl;

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
    let mut report = MigrateReport {
        entries: meta.len() as u64,
        ..MigrateReport::default()
    };
    let total = entries.len();
    for (done, (key, m)) in entries.into_iter().enumerate() {
        progress(done, total, key);
        match import_one(cache, dir, key, m, now, ttl, &mut maps) {
            Ok(()) => report.imported.push(key.clone()),
            Err(reason) => {
                log::warn!("{}: skipping {key:?}: {reason}", dir.display());
                report.skipped.push(Skipped {
                    key: key.clone(),
                    reason,
                });
            }
        }
    }
    report.mappings_decoded = maps.by_digest.len() as u64;
    Ok(report)
}

/// Parses the original's ISO 8601 times: naive (taken as UTC) or with an offset.
fn parse_time(v: Option<&Value>, what: &str) -> std::result::Result<DateTime<Utc>, String> {
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

fn count(meta: &Map<String, Value>, field: &str) -> std::result::Result<usize, String> {
    meta.get(field)
        .and_then(Value::as_u64)
        .and_then(|v| usize::try_from(v).ok())
        .ok_or_else(|| format!("{field} is missing or not a count"))
}

/// Reads a bitarray `tofile` of `bits` bits (big-endian bit order) into an
/// LSB-first bitset.
fn read_bits(path: &Path, bits: usize) -> std::result::Result<BitVec<u64, Lsb0>, String> {
    let bytes = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let need = bits.div_ceil(8);
    if bytes.len() < need {
        return Err(format!(
            "{}: {} bytes, but {bits} bits need {need}",
            path.display(),
            bytes.len()
        ));
    }
    Ok(bits_from_bytes(&bytes, bits, true))
}

/// The first `bits` bits of `bytes` as words: bit i is bit `i % 8` of byte
/// `i / 8`, counted from the least significant bit, or from the most
/// significant one when `big_endian` (bitarray's default order). Fewer bytes
/// than the bits need give fewer bits.
pub fn bits_from_bytes(bytes: &[u8], bits: usize, big_endian: bool) -> BitVec<u64, Lsb0> {
    let need = bits.div_ceil(8);
    let words: Vec<u64> = bytes[..need.min(bytes.len())]
        .chunks(8)
        .map(|c| {
            let mut w = [0u8; 8];
            for (d, s) in w.iter_mut().zip(c) {
                *d = if big_endian { s.reverse_bits() } else { *s };
            }
            u64::from_le_bytes(w)
        })
        .collect();
    let mut v = BitVec::from_vec(words);
    v.truncate(bits);
    v
}

/// Orders a `{id: index}` object by index, checking the indices are exactly 0..n.
fn ordered_ids(obj: Option<&Value>, n: usize, what: &str) -> std::result::Result<Vec<String>, String> {
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
    fn get(
        &mut self,
        path: &Path,
        nodes: usize,
        links: usize,
    ) -> std::result::Result<(IdMap, IdMap), String> {
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

fn import_one(
    cache: &ScopeCache,
    dir: &Path,
    key: &str,
    m: &Value,
    now: DateTime<Utc>,
    ttl: Option<std::time::Duration>,
    maps: &mut MappingCache,
) -> std::result::Result<(), String> {
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
                accessed.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
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
    // A key of the original is a file-name stem: one holding a path
    // separator or a parent reference would read files outside `dir`.
    if key.contains('/') || key.contains('\0') {
        return Err(format!("the key {key:?} is not a file name in {}", dir.display()));
    }
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
    fn a_key_that_is_a_path_is_skipped() {
        let dir = tempfile::tempdir().unwrap();
        let inner = dir.path().join("cache");
        std::fs::create_dir(&inner).unwrap();
        // Files of a scope "x" one level up: a key "../x" would read them.
        std::fs::write(dir.path().join("x_nodes.bits"), [0u8]).unwrap();
        std::fs::write(dir.path().join("x_links.bits"), [0u8]).unwrap();
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        std::io::Write::write_all(
            &mut gz,
            br#"{"node_id_mapping":{"n":0},"link_id_mapping":{"l":0}}"#,
        )
        .unwrap();
        std::fs::write(dir.path().join("x_mappings.json.gz"), gz.finish().unwrap()).unwrap();
        let meta = serde_json::json!({"../x": {
            "scope_key": "../x", "created_at": "2026-01-01T00:00:00",
            "last_accessed": "2026-01-01T00:00:00", "total_nodes": 1, "total_links": 1,
            "config_attributes": {}}});
        std::fs::write(inner.join("cache_metadata.json"), meta.to_string()).unwrap();
        let cache = ScopeCache::open(dir.path().join("c.scope"), crate::CacheConfig::default()).unwrap();
        let now = parse_time(Some(&Value::from("2026-01-01T01:00:00")), "t").unwrap();
        let r = migrate_python_dir(&cache, &inner, now, |_, _, _| {}).unwrap();
        assert!(r.imported.is_empty());
        assert_eq!(r.skipped.len(), 1);
        assert!(
            r.skipped[0].reason.contains("not a file name"),
            "{}",
            r.skipped[0].reason
        );
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
