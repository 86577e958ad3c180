//! The eviction policy: sliding TTL, then least-recently-used by entry count
//! and by bytes, with a low-water mark when space must be reclaimed; and the
//! space accounting behind it. The policy itself is pure functions over the
//! index, so that it can be tested apart from the file.

use crate::commit::Txn;
use crate::config::CacheConfig;
use crate::error::Result;
use crate::format::{align_up, Counter, DATA_START};
use crate::idmap::IdMap;
use crate::index::{BitsRecord, EntryRecord, IndexData, MAP_OVERHEAD};
use crate::io::IoFactory;
use crate::stamps;
use std::collections::HashSet;

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
    let stamps = aligned(8 * stamps::capacity_for(index.entries.len() as u64));
    total
        .saturating_add(stamps)
        .saturating_add(aligned(index.estimated_len()))
}

/// The TTL in microseconds, or None for no TTL.
pub(crate) fn ttl_us(cfg: &CacheConfig) -> Option<i64> {
    cfg.ttl.map(|t| i64::try_from(t.as_micros()).unwrap_or(i64::MAX))
}

/// True when an entry last accessed at `last_access_us` has expired at
/// `now_us`: the one TTL test, for reads and for writers alike.
pub(crate) fn is_expired(last_access_us: i64, now_us: i64, ttl_us: Option<i64>) -> bool {
    ttl_us.is_some_and(|ttl| now_us.saturating_sub(last_access_us) > ttl)
}

/// Keys of entries not accessed within `ttl_us` of `now_us`.
pub(crate) fn expired(index: &IndexData, now_us: i64, ttl_us: Option<i64>) -> Vec<String> {
    index
        .entries
        .iter()
        .filter(|e| is_expired(e.accessed_us, now_us, ttl_us))
        .map(|e| e.key.clone())
        .collect()
}

/// What a put adds to the file: its bitsets, its entry's index bytes, and
/// those of its mappings that are not stored yet.
pub(crate) struct Incoming<'a> {
    pub own: u64,
    pub entry_index: u64,
    pub maps: [&'a IdMap; 2],
}

impl Incoming<'_> {
    /// Bytes of the entry's regions: its bitsets, and its mappings that
    /// neither `idx` names nor (`stored[i]`) the committed file holds.
    fn regions(&self, idx: &IndexData, stored: [bool; 2]) -> u64 {
        let mut seen = HashSet::new();
        let new_maps: u64 = self
            .maps
            .iter()
            .zip(stored)
            .filter(|(m, stored)| !stored && seen.insert(m.digest()))
            .filter(|(m, _)| !idx.maps.iter().any(|r| r.holds(m)))
            .map(|(m, _)| aligned(m.region_len()) + MAP_OVERHEAD)
            .sum();
        self.own + new_maps
    }

    /// Bytes the entry adds to the compacted size of an index holding `idx`.
    pub(crate) fn bytes(&self, idx: &IndexData) -> u64 {
        self.regions(idx, [false; 2]) + self.entry_index
    }

    /// Bytes a commit of the entry appends to a file holding `idx`: its
    /// regions, the whole index written again with the entry, and a larger
    /// stamp table when the file's (of `stamps_capacity` slots) is full.
    pub(crate) fn growth(&self, idx: &IndexData, stored: [bool; 2], stamps_capacity: u64) -> u64 {
        let need = stamps::capacity_for(idx.entries.len() as u64 + 1);
        let stamps = if need > stamps_capacity {
            aligned(8 * need)
        } else {
            0
        };
        self.regions(idx, stored) + aligned(idx.estimated_len() + self.entry_index) + stamps
    }

    /// The file's size after compacting `idx` and then committing the
    /// entry: what a put that compacts must bring under the limit.
    fn after_compaction(&self, idx: &IndexData) -> u64 {
        let capacity = stamps::capacity_for(idx.entries.len() as u64);
        self.growth(idx, [false; 2], capacity)
    }

    /// The size of a file holding this entry alone, committed after a
    /// compaction: a scope larger than the limit is refused up front.
    pub(crate) fn alone(&self) -> u64 {
        let empty = IndexData::default();
        footprint(&empty) + self.after_compaction(&empty)
    }
}

impl Txn<'_> {
    /// Removes the expired entries; returns how many.
    pub(crate) fn expire(&mut self) -> u64 {
        let keys = expired(&self.index, self.now_us, ttl_us(self.cfg));
        for k in &keys {
            self.remove(k);
            self.counts.push((Counter::Expiries, 1));
        }
        keys.len() as u64
    }

    /// Evicts least-recently-used entries until the rest, plus `incoming`
    /// more entries of `incoming_bytes` bytes, fit `max_entries` and
    /// `max_bytes`; returns how many were evicted.
    pub(crate) fn evict(
        &mut self,
        incoming: usize,
        incoming_bytes: impl Fn(&IndexData) -> u64,
        max_bytes: u64,
    ) -> u64 {
        let victims = lru_victims(
            &self.index,
            incoming,
            incoming_bytes,
            self.cfg.max_entries,
            max_bytes,
        );
        for victim in &victims {
            self.remove(victim);
            self.counts.push((Counter::Evictions, 1));
        }
        victims.len() as u64
    }

    /// Makes room for a put of `incoming`: evicts down to the limits, and
    /// when the file would grow past `max_size_bytes`, evicts further, down
    /// to `evict_low_water` of it, and compacts. Evicting to the low-water
    /// mark is what amortises a compaction over the puts that fill the
    /// space it freed, instead of one whole-file rewrite per put.
    pub(crate) fn make_room(&mut self, incoming: &Incoming<'_>, io: &dyn IoFactory) -> Result<()> {
        let max = self.cfg.max_size_bytes;
        self.evict(1, |idx| incoming.bytes(idx), max);
        let stored = incoming.maps.map(|m| self.committed_map(m).is_some());
        let capacity = u64::from(self.snap.sb.stamps_capacity);
        if self
            .end()
            .saturating_add(incoming.growth(&self.index, stored, capacity))
            > max
        {
            let low = ((self.cfg.evict_low_water * max as f64) as u64).clamp(incoming.alone().min(max), max);
            self.evict(1, |idx| incoming.after_compaction(idx), low);
            if self.dead_bytes() > 0 {
                crate::compact::compact(self, io)?;
            }
        }
        Ok(())
    }
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
