//! The eviction policy: sliding TTL, then least-recently-used by entry count
//! and by bytes, with a low-water mark when space must be reclaimed; and the
//! space accounting behind it, over the writer's model of the state
//! (`model.rs`), whose totals make each check O(1).

use crate::commit::Txn;
use crate::config::CacheConfig;
use crate::error::Result;
use crate::format::{align_up, Counter};
use crate::idmap::IdMap;
use crate::index::{BitsRecord, EntryRecord, MAP_OVERHEAD};
use crate::io::IoFactory;
use crate::model::Model;
use crate::stamps;
use std::collections::HashSet;

/// Bytes one entry's own regions take (bitsets; attributes live in the index).
pub(crate) fn own_bytes(e: &EntryRecord) -> u64 {
    aligned(BitsRecord::byte_len(e.nodes.bits)) + aligned(BitsRecord::byte_len(e.links.bits))
}

pub(crate) fn aligned(n: u64) -> u64 {
    align_up(n).unwrap_or(u64::MAX)
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

/// What a put adds to the file: its bitsets, its entry's index bytes, and
/// those of its mappings that are not stored yet.
pub(crate) struct Incoming<'a> {
    pub own: u64,
    pub entry_index: u64,
    pub maps: [&'a IdMap; 2],
}

impl Incoming<'_> {
    /// Bytes of the entry's regions: its bitsets, and those of its
    /// mappings for which `new(i)` holds, each mapping counted once.
    fn regions(&self, new: impl Fn(usize) -> bool) -> u64 {
        let mut seen = HashSet::new();
        let new_maps: u64 = self
            .maps
            .iter()
            .enumerate()
            .filter(|&(i, m)| new(i) && seen.insert(m.digest()))
            .map(|(_, m)| aligned(m.region_len()) + MAP_OVERHEAD)
            .sum();
        self.own + new_maps
    }

    /// Bytes the entry adds to the compacted size of `model`'s state.
    pub(crate) fn bytes(&self, model: &Model) -> u64 {
        self.regions(|i| !model.holds_live(self.maps[i])) + self.entry_index
    }

    /// Bytes a commit of the entry appends to a file holding `model`'s
    /// state, bounded from above: its regions (its mappings unless
    /// `stored[i]`, the file holds them), a whole new base index with the
    /// entry (what a commit writes now and then instead of a delta), and a
    /// larger stamp table when the file's (of `stamps_capacity` slots) is full.
    pub(crate) fn growth(&self, model: &Model, stored: [bool; 2], stamps_capacity: u64) -> u64 {
        let slots = u64::from(model.slot_high()).max(model.len() as u64);
        self.grow(model, slots, stored, stamps_capacity)
    }

    /// `growth`, with `slots` stamp slots in use before the entry's.
    fn grow(&self, model: &Model, slots: u64, stored: [bool; 2], stamps_capacity: u64) -> u64 {
        let need = stamps::capacity_for(slots + 1);
        let stamps = if need > stamps_capacity {
            aligned(8 * need)
        } else {
            0
        };
        self.regions(|i| !stored[i]) + aligned(model.index_len() + self.entry_index) + stamps
    }

    /// The file's size after compacting `model`'s state and then committing
    /// the entry: what a put that compacts must bring under the limit.
    fn after_compaction(&self, model: &Model) -> u64 {
        // Compaction numbers the slots afresh, from 0.
        let slots = model.len() as u64;
        self.grow(model, slots, [false; 2], stamps::capacity_for(slots))
    }

    /// The size of a file holding this entry alone, committed after a
    /// compaction: a scope larger than the limit is refused up front.
    pub(crate) fn alone(&self) -> u64 {
        let empty = Model::empty();
        empty.footprint() + self.after_compaction(&empty)
    }
}

impl Txn<'_> {
    /// Removes the expired entries; returns how many. Costs nothing while
    /// the model's access floor says no entry can have expired.
    pub(crate) fn expire(&mut self) -> u64 {
        let ttl = ttl_us(self.cfg);
        if !is_expired(self.model.access_floor, self.now_us, ttl) {
            return 0;
        }
        self.refresh_access();
        let keys: Vec<String> = self
            .model
            .iter()
            .filter(|e| is_expired(e.accessed_us, self.now_us, ttl))
            .map(|e| e.key.clone())
            .collect();
        for k in &keys {
            self.remove(k);
            self.counts.push((Counter::Expiries, 1));
        }
        self.model.reset_floor();
        keys.len() as u64
    }

    /// Evicts least-recently-used entries until the rest, plus `incoming`
    /// more entries of `incoming_bytes` bytes, fit `max_entries` and
    /// `max_bytes`; returns how many were evicted. Costs O(1) when nothing
    /// needs evicting, a sort of the entries by last access otherwise.
    pub(crate) fn evict(
        &mut self,
        incoming: usize,
        incoming_bytes: impl Fn(&Model) -> u64,
        max_bytes: u64,
    ) -> u64 {
        let max_entries = self.cfg.max_entries;
        let over = |m: &Model| {
            m.len() + incoming > max_entries || m.footprint().saturating_add(incoming_bytes(m)) > max_bytes
        };
        if !over(&self.model) {
            return 0;
        }
        self.refresh_access();
        let mut order: Vec<(i64, String)> = self
            .model
            .iter()
            .map(|e| (e.accessed_us, e.key.clone()))
            .collect();
        order.sort();
        let mut evicted = 0;
        for (_, key) in order {
            if !over(&self.model) {
                break;
            }
            self.remove(&key);
            self.counts.push((Counter::Evictions, 1));
            evicted += 1;
        }
        evicted
    }

    /// Makes room for a put of `incoming`: evicts down to the limits, and
    /// when the file would grow past `max_size_bytes`, evicts further, down
    /// to `evict_low_water` of it, and compacts. Evicting to the low-water
    /// mark is what amortises a compaction over the puts that fill the
    /// space it freed, instead of one whole-file rewrite per put.
    pub(crate) fn make_room(&mut self, incoming: &Incoming<'_>, io: &dyn IoFactory) -> Result<()> {
        let max = self.cfg.max_size_bytes;
        self.evict(1, |m| incoming.bytes(m), max);
        let stored = incoming.maps.map(|m| self.committed_map(m).is_some());
        let capacity = u64::from(self.snap.sb.stamps_capacity);
        if self
            .end()
            .saturating_add(incoming.growth(&self.model, stored, capacity))
            > max
        {
            let low = ((self.cfg.evict_low_water * max as f64) as u64).clamp(incoming.alone().min(max), max);
            self.evict(1, |m| incoming.after_compaction(m), low);
            if self.dead_bytes() > 0 {
                crate::compact::compact(self, io)?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::DATA_START;
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
            slot: u32::MAX,
            node_map: 0,
            link_map: 0,
            nodes: b,
            links: b,
            attributes: "{}".into(),
        }
    }

    fn model(n: usize) -> Model {
        let mut m = Model::empty();
        m.push_map(MapRecord {
            offset: DATA_START,
            len: 1000,
            count: 64_000,
            digest_lo: 1,
            digest_hi: 2,
        });
        for i in 0..n {
            m.insert(entry(&format!("k{i}"), 100 - i as i64, 64_000));
        }
        m
    }

    /// The footprint the model keeps up to date is the one computed from
    /// scratch: header, each entry's bitsets, the shared mapping once, the
    /// stamp table and the index.
    #[test]
    fn footprint_is_kept_up_to_date() {
        let mut m = model(5);
        let entry_index = crate::index::entry_bytes(2, 2);
        let scratch = |n: u64| {
            if n == 0 {
                return DATA_START + aligned(8 * stamps::capacity_for(0)) + aligned(64);
            }
            DATA_START
                + n * 2 * aligned(8000)
                + aligned(1000)
                + aligned(8 * stamps::capacity_for(n))
                + aligned(64 + n * entry_index + MAP_OVERHEAD)
        };
        assert_eq!(m.footprint(), scratch(5));
        assert!(m.remove("k1").is_some());
        assert!(m.remove("k1").is_none());
        assert_eq!(m.footprint(), scratch(4));
        // Replacing an entry changes nothing.
        assert!(m.insert(entry("k2", 7, 64_000)).is_some());
        assert_eq!(m.footprint(), scratch(4));
        for k in ["k0", "k2", "k3", "k4"] {
            assert!(m.remove(k).is_some());
        }
        assert!(!m.is_live_map(0), "a mapping no entry names is not counted");
        assert_eq!(m.footprint(), scratch(0));
        assert_eq!(m.access_floor, 7, "the floor stays a lower bound");
        m.reset_floor();
        assert_eq!(m.access_floor, i64::MAX);
    }

    #[test]
    fn rebase_keeps_only_named_mappings() {
        let mut m = model(2);
        let unused = m.push_map(MapRecord {
            offset: DATA_START + 4096,
            len: 64,
            count: 3,
            digest_lo: 5,
            digest_hi: 6,
        });
        let mut e = entry("k9", 1, 3);
        e.node_map = unused + 1; // a third record, named
        let third = m.push_map(MapRecord {
            offset: DATA_START + 8192,
            len: 64,
            count: 3,
            digest_lo: 7,
            digest_hi: 8,
        });
        assert_eq!(third, unused + 1);
        e.link_map = third;
        m.insert(e);
        let base = m.rebase();
        assert_eq!(base.maps.len(), 2, "the unnamed record is dropped");
        let k9 = base.entries.iter().find(|e| e.key == "k9").unwrap();
        assert_eq!((k9.node_map, k9.link_map), (1, 1), "references are renumbered");
        assert_eq!(m.get("k9").unwrap().node_map, 1, "and the model with them");
        assert!(base.entries.windows(2).all(|w| w[0].key < w[1].key));
    }

    #[test]
    fn ttl_test() {
        assert!(is_expired(98, 200, Some(101)));
        assert!(!is_expired(99, 200, Some(101)));
        assert!(!is_expired(0, 200, None));
    }

    #[test]
    fn slots_are_reused_lowest_first_only_once_freed() {
        let mut m = Model::empty();
        assert_eq!((m.take_slot(), m.take_slot(), m.take_slot()), (0, 1, 2));
        m.free_slots([1]);
        assert_eq!(m.take_slot(), 1);
        assert_eq!(m.take_slot(), 3);
        assert_eq!(m.slot_high(), 4);
    }
}
