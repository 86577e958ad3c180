//! The writer's copy of the newest state: every live entry, the chain's
//! table of mapping records, and the totals the limits are enforced on,
//! kept up to date as entries come and go, so that neither a commit nor
//! the checks of the limits walk the index.
//!
//! A handle keeps its model from one of its commits to the next
//! (`WriterState::model`); it is rebuilt from the snapshot when anything
//! else committed in between, or when a transaction failed.

use crate::eviction::{aligned, own_bytes};
use crate::format::DATA_START;
use crate::idmap::IdMap;
use crate::index::{entry_bytes, EntryRecord, IndexData, MapRecord, INDEX_OVERHEAD, MAP_OVERHEAD};
use crate::snapshot::Snapshot;
use crate::stamps;
use std::collections::BTreeMap;

/// Which committed state a model describes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Identity {
    dev: u64,
    ino: u64,
    file_id: u64,
    generation: u64,
}

impl Identity {
    pub(crate) fn of(snap: &Snapshot) -> Identity {
        Identity {
            dev: snap.file.dev,
            ino: snap.file.ino,
            file_id: snap.sb.file_id,
            generation: snap.generation(),
        }
    }
}

/// Every live entry and the totals of what they hold.
#[derive(Clone, Debug)]
pub(crate) struct Model {
    entries: BTreeMap<String, EntryRecord>,
    /// The chain's mapping table; entries name records by position.
    maps: Vec<MapRecord>,
    /// How many times live entries name each record.
    refs: Vec<u32>,
    /// Bytes of the live entries' bitsets, each aligned.
    own: u64,
    /// Bytes the live entries take in an index (`index::entry_bytes`).
    index_bytes: u64,
    /// Bytes of the mappings some live entry names, each aligned.
    map_bytes: u64,
    live_maps: u64,
    /// No live entry was last accessed before this: stamps only rise, so a
    /// floor once true stays true, and no entry can expire before it does.
    pub access_floor: i64,
    /// Stamp slots below `high` that no committed entry uses.
    free_slots: Vec<u32>,
    high: u32,
    pub identity: Option<Identity>,
}

impl Model {
    /// A model of no entries.
    pub(crate) fn empty() -> Model {
        Model {
            entries: BTreeMap::new(),
            maps: Vec::new(),
            refs: Vec::new(),
            own: 0,
            index_bytes: 0,
            map_bytes: 0,
            live_maps: 0,
            access_floor: i64::MAX,
            free_slots: Vec::new(),
            high: 0,
            identity: None,
        }
    }

    /// The model of `snap`'s state, every entry's last access raised to its
    /// shared stamp. Cost: one pass over the index.
    pub(crate) fn of(snap: &Snapshot) -> Model {
        let mut m = Model::empty();
        m.maps = snap.chain().maps().map(|r| r.to_record()).collect();
        m.refs = vec![0; m.maps.len()];
        let mut used = Vec::new();
        for (_, e) in snap.entries() {
            let mut rec = e.to_record();
            rec.accessed_us = snap.last_access_us(e);
            used.push(rec.slot);
            m.insert(rec);
        }
        used.sort_unstable();
        m.high = used.last().map_or(0, |&s| s + 1);
        // Free slots are looked for among the first slots only, so that a
        // file naming a huge slot costs no more than its entries: gaps above
        // wait for a compaction, which numbers slots afresh.
        let reuse_below = m.high.min(u32::try_from(2 * used.len() + 64).unwrap_or(u32::MAX));
        let mut next = used.into_iter().peekable();
        for s in 0..reuse_below {
            if next.peek() == Some(&s) {
                while next.peek() == Some(&s) {
                    next.next();
                }
            } else {
                m.free_slots.push(s);
            }
        }
        m.free_slots.reverse();
        m.identity = Some(Identity::of(snap));
        m
    }

    /// True when this model describes `snap`'s committed state.
    pub(crate) fn describes(&self, snap: &Snapshot) -> bool {
        self.identity == Some(Identity::of(snap))
    }

    pub(crate) fn len(&self) -> usize {
        self.entries.len()
    }

    pub(crate) fn get(&self, key: &str) -> Option<&EntryRecord> {
        self.entries.get(key)
    }

    pub(crate) fn get_mut(&mut self, key: &str) -> Option<&mut EntryRecord> {
        self.entries.get_mut(key)
    }

    /// The live entries in key order.
    pub(crate) fn iter(&self) -> impl Iterator<Item = &EntryRecord> {
        self.entries.values()
    }

    /// The live entries in key order, for raising their last access.
    pub(crate) fn iter_mut(&mut self) -> impl Iterator<Item = &mut EntryRecord> {
        self.entries.values_mut()
    }

    /// The mapping table.
    pub(crate) fn maps(&self) -> &[MapRecord] {
        &self.maps
    }

    /// True when record `i` is named by a live entry.
    pub(crate) fn is_live_map(&self, i: usize) -> bool {
        self.refs.get(i).is_some_and(|&r| r > 0)
    }

    /// The first record holding `map` that `usable` accepts.
    pub(crate) fn find_map(&self, map: &IdMap, usable: impl Fn(&MapRecord) -> bool) -> Option<u32> {
        self.maps
            .iter()
            .position(|m| m.holds(map) && usable(m))
            .map(|i| i as u32)
    }

    /// True when a live entry names a mapping identical to `map`.
    pub(crate) fn holds_live(&self, map: &IdMap) -> bool {
        self.maps
            .iter()
            .enumerate()
            .any(|(i, m)| m.holds(map) && self.is_live_map(i))
    }

    /// Appends a record to the mapping table; returns its position.
    pub(crate) fn push_map(&mut self, rec: MapRecord) -> u32 {
        self.maps.push(rec);
        self.refs.push(0);
        (self.maps.len() - 1) as u32
    }

    fn name_map(&mut self, i: u32, up: bool) {
        let Some(r) = self.refs.get_mut(i as usize) else {
            return;
        };
        let was = *r > 0;
        *r = if up { *r + 1 } else { r.saturating_sub(1) };
        let len = aligned(self.maps[i as usize].len);
        match (was, *r > 0) {
            (false, true) => {
                self.map_bytes += len;
                self.live_maps += 1;
            }
            (true, false) => {
                self.map_bytes -= len;
                self.live_maps -= 1;
            }
            _ => {}
        }
    }

    fn account(&mut self, e: &EntryRecord, up: bool) {
        let (own, idx) = (own_bytes(e), entry_bytes(e.key.len(), e.attributes.len()));
        if up {
            self.own += own;
            self.index_bytes += idx;
        } else {
            self.own -= own;
            self.index_bytes -= idx;
        }
        self.name_map(e.node_map, up);
        self.name_map(e.link_map, up);
    }

    /// Inserts or replaces the entry under its key; returns the one replaced.
    pub(crate) fn insert(&mut self, e: EntryRecord) -> Option<EntryRecord> {
        self.account(&e, true);
        self.access_floor = self.access_floor.min(e.accessed_us);
        let old = self.entries.insert(e.key.clone(), e);
        if let Some(o) = &old {
            self.account(o, false);
        }
        old
    }

    /// Removes the entry under `key`; returns it.
    pub(crate) fn remove(&mut self, key: &str) -> Option<EntryRecord> {
        let old = self.entries.remove(key)?;
        self.account(&old, false);
        Some(old)
    }

    /// Recomputes the access floor from the entries' last access.
    pub(crate) fn reset_floor(&mut self) {
        self.access_floor = self
            .entries
            .values()
            .map(|e| e.accessed_us)
            .min()
            .unwrap_or(i64::MAX);
    }

    /// Bytes the index of this state takes, estimated from above.
    pub(crate) fn index_len(&self) -> u64 {
        INDEX_OVERHEAD + self.index_bytes + MAP_OVERHEAD * self.live_maps
    }

    /// The size a compacted file holding exactly this state would have:
    /// fixed header pages, every live region once (shared mappings once),
    /// the stamp table and the index. Limits are enforced on this figure.
    /// Cost: O(1).
    pub(crate) fn footprint(&self) -> u64 {
        let stamps = aligned(8 * stamps::capacity_for(self.entries.len() as u64));
        DATA_START
            .saturating_add(self.own)
            .saturating_add(self.map_bytes)
            .saturating_add(stamps)
            .saturating_add(aligned(self.index_len()))
    }

    /// A stamp slot no committed entry uses.
    pub(crate) fn take_slot(&mut self) -> u32 {
        self.free_slots.pop().unwrap_or_else(|| {
            self.high += 1;
            self.high - 1
        })
    }

    /// Gives slots back once no committed entry uses them.
    pub(crate) fn free_slots(&mut self, slots: impl IntoIterator<Item = u32>) {
        self.free_slots.extend(slots);
    }

    /// One more than the largest slot in use.
    pub(crate) fn slot_high(&self) -> u32 {
        self.high
    }

    /// The state as a base index: entries in key order, naming only the
    /// mappings a live entry names, renumbered. The model is renumbered
    /// the same way.
    pub(crate) fn rebase(&mut self) -> IndexData {
        let mut renumber = vec![u32::MAX; self.maps.len()];
        let mut maps = Vec::new();
        let mut refs = Vec::new();
        for (i, m) in self.maps.iter().enumerate() {
            if self.refs[i] > 0 {
                renumber[i] = maps.len() as u32;
                maps.push(*m);
                refs.push(self.refs[i]);
            }
        }
        for e in self.entries.values_mut() {
            e.node_map = renumber[e.node_map as usize];
            e.link_map = renumber[e.link_map as usize];
        }
        self.maps = maps;
        self.refs = refs;
        IndexData {
            entries: self.entries.values().cloned().collect(),
            maps: self.maps.clone(),
        }
    }
}
