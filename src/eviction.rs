//! The eviction policy: sliding TTL, then least-recently-used by entry count
//! and by bytes. Pure functions over the index, so the policy can be tested
//! apart from the file.

use crate::format::{align_up, DATA_START};
use crate::index::{BitsRecord, EntryRecord, IndexData};
use std::collections::HashSet;

/// Bytes an index of these entries and maps takes in the file, estimated
/// from above (rkyv adds a few bytes of pointers and padding per field).
pub(crate) fn index_bytes_estimate(index: &IndexData) -> u64 {
    let per_entry: u64 = index
        .entries
        .iter()
        .map(|e| 160 + e.key.len() as u64 + e.attributes.len() as u64)
        .sum();
    64 + per_entry + 48 * index.maps.len() as u64
}

/// Bytes one entry's own regions take (bitsets; attributes live in the index).
pub(crate) fn own_bytes(e: &EntryRecord) -> u64 {
    aligned(BitsRecord::byte_len(e.nodes.bits)) + aligned(BitsRecord::byte_len(e.links.bits))
}

pub(crate) fn aligned(n: u64) -> u64 {
    align_up(n).unwrap_or(u64::MAX)
}

/// The size a compacted file holding exactly `index` would have: fixed
/// header pages, every live region once (shared mappings once), the stamp
/// table and the index. Limits are enforced on this figure.
pub(crate) fn footprint(index: &IndexData) -> u64 {
    let mut used = HashSet::new();
    let mut total = DATA_START;
    for e in &index.entries {
        total = total.saturating_add(own_bytes(e));
        used.insert(e.node_map);
        used.insert(e.link_map);
    }
    for m in used {
        if let Some(r) = index.maps.get(m as usize) {
            total = total.saturating_add(aligned(r.len));
        }
    }
    let stamps = aligned(8 * (index.entries.len() as u64).next_power_of_two().max(64));
    total
        .saturating_add(stamps)
        .saturating_add(aligned(index_bytes_estimate(index)))
}

/// Keys of entries not accessed within `ttl_us` of `now_us`.
pub(crate) fn expired(index: &IndexData, now_us: i64, ttl_us: Option<i64>) -> Vec<String> {
    let Some(ttl) = ttl_us else { return Vec::new() };
    index
        .entries
        .iter()
        .filter(|e| now_us.saturating_sub(e.accessed_us) > ttl)
        .map(|e| e.key.clone())
        .collect()
}

/// Keys to evict, least recently used first, so that the remaining entries
/// plus one incoming entry (of `incoming_bytes` beyond what the index
/// already holds) fit `max_entries` and `max_bytes`. `protect` is never
/// evicted (the key being put, whose old version is already removed).
pub(crate) fn lru_victims(
    index: &IndexData,
    incoming_entries: usize,
    incoming_bytes: impl Fn(&IndexData) -> u64,
    max_entries: usize,
    max_bytes: u64,
) -> Vec<String> {
    let mut order: Vec<(i64, String)> = index
        .entries
        .iter()
        .map(|e| (e.accessed_us, e.key.clone()))
        .collect();
    order.sort();
    let mut trial = index.clone();
    let mut victims = Vec::new();
    for (_, key) in order {
        let over_count = trial.entries.len() + incoming_entries > max_entries;
        let over_bytes = footprint(&trial).saturating_add(incoming_bytes(&trial)) > max_bytes;
        if !over_count && !over_bytes {
            break;
        }
        trial.remove(&key);
        victims.push(key);
    }
    victims
}

impl IndexData {
    /// Removes the entry with `key`, and any mapping no entry names anymore.
    /// Returns whether it was there.
    pub(crate) fn remove(&mut self, key: &str) -> bool {
        match self.entries.binary_search_by(|e| e.key.as_str().cmp(key)) {
            Ok(pos) => {
                self.entries.remove(pos);
                self.drop_unused_maps();
                true
            }
            Err(_) => false,
        }
    }

    /// Inserts or replaces an entry, keeping keys sorted.
    pub(crate) fn insert(&mut self, e: EntryRecord) {
        match self.entries.binary_search_by(|x| x.key.as_str().cmp(&e.key)) {
            Ok(pos) => self.entries[pos] = e,
            Err(pos) => self.entries.insert(pos, e),
        }
    }

    /// Drops mappings that no entry names, renumbering the references.
    pub(crate) fn drop_unused_maps(&mut self) {
        let mut used = vec![false; self.maps.len()];
        for e in &self.entries {
            for m in [e.node_map, e.link_map] {
                if let Some(u) = used.get_mut(m as usize) {
                    *u = true;
                }
            }
        }
        if used.iter().all(|&u| u) {
            return;
        }
        let mut renumber = vec![u32::MAX; self.maps.len()];
        let mut kept = Vec::new();
        for (i, m) in self.maps.iter().enumerate() {
            if used[i] {
                renumber[i] = kept.len() as u32;
                kept.push(*m);
            }
        }
        self.maps = kept;
        for e in &mut self.entries {
            e.node_map = renumber[e.node_map as usize];
            e.link_map = renumber[e.link_map as usize];
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::index::MapRecord;

    fn entry(key: &str, accessed: i64, bits: u64) -> EntryRecord {
        let b = BitsRecord {
            offset: DATA_START,
            bits,
            crc: 0,
        };
        EntryRecord {
            key: key.into(),
            created_us: 0,
            accessed_us: accessed,
            slot: 0,
            node_map: 0,
            link_map: 0,
            nodes: b,
            links: b,
            attributes: "{}".into(),
        }
    }

    fn index(n: usize) -> IndexData {
        let mut idx = IndexData {
            entries: Vec::new(),
            maps: vec![MapRecord {
                offset: DATA_START,
                len: 1000,
                count: 64_000,
                digest_lo: 1,
                digest_hi: 2,
            }],
        };
        for i in 0..n {
            idx.insert(entry(&format!("k{i}"), 100 - i as i64, 64_000));
        }
        idx
    }

    #[test]
    fn lru_by_count_evicts_oldest_access_first() {
        let idx = index(5); // k4 is the least recently used
        let v = lru_victims(&idx, 1, |_| 0, 4, u64::MAX);
        assert_eq!(v, vec!["k4".to_string(), "k3".to_string()]);
    }

    #[test]
    fn lru_by_bytes() {
        let idx = index(5);
        let one = footprint(&index(2)) - footprint(&index(1)); // one more entry, the mapping already counted
        let limit = footprint(&idx) - one; // room for four, plus an incoming one of `one` bytes: evict two
        let v = lru_victims(&idx, 1, |_| one, 100, limit);
        assert_eq!(v.len(), 2);
        assert_eq!(v[0], "k4");
    }

    #[test]
    fn ttl_and_unused_maps() {
        let mut idx = index(3);
        assert_eq!(expired(&idx, 200, Some(101)), vec!["k2".to_string()]);
        assert!(expired(&idx, 200, None).is_empty());
        for k in ["k0", "k1", "k2"] {
            assert!(idx.remove(k));
        }
        assert!(idx.maps.is_empty(), "a mapping no entry names is dropped");
        assert!(!idx.remove("k0"));
    }
}
