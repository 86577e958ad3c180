//! The access-stamp table region (FORMAT.md §2.3): one u64 per entry slot,
//! the time of the entry's latest `get` in microseconds, raised in place by
//! readers with an atomic `fetch_max`. These, and the counters page, are the
//! only bytes ever written through a mapping; a snapshot refuses a table
//! that overlaps any other region (see `index::check_layout`).

use crate::commit::Txn;
use crate::error::Result;
use std::collections::HashSet;

/// The smallest table a writer makes.
pub(crate) const MIN_CAPACITY: u32 = 64;

/// The capacity of a table with room for `slots` slots: a power of two, at
/// least `MIN_CAPACITY`.
pub(crate) fn capacity_for(slots: u64) -> u64 {
    slots.next_power_of_two().max(u64::from(MIN_CAPACITY))
}

/// Bytes of a table of `capacity` slots.
pub(crate) fn table_len(capacity: u32) -> u64 {
    8 * u64::from(capacity)
}

/// Where slot `slot` of the table at `offset` lies.
pub(crate) fn slot_offset(offset: u64, slot: u32) -> u64 {
    offset + 8 * u64::from(slot)
}

/// The bytes of a table holding `values`.
pub(crate) fn encode(values: &[u64]) -> Vec<u8> {
    values.iter().flat_map(|v| v.to_le_bytes()).collect()
}

impl Txn<'_> {
    /// Gives every entry put since the last commit (`slot == u32::MAX`) a
    /// stamp slot that no committed entry uses (slots of entries removed
    /// since are freed only after the commit), so a failed commit disturbs
    /// no stamp. Returns the table (offset, capacity) the new generation
    /// uses: the committed one, or a larger one appended with the stamps
    /// copied over. Cost: O(entries put), plus the table when it grows.
    pub(crate) fn assign_slots(&mut self) -> Result<(u64, u32)> {
        let sb = self.snap.sb;
        let mut fresh = Vec::new();
        for key in self.changed_keys() {
            let Some(e) = self.model.get(&key) else { continue };
            if e.slot != u32::MAX {
                continue;
            }
            let slot = self.model.take_slot();
            if let Some(e) = self.model.get_mut(&key) {
                e.slot = slot;
            }
            fresh.push(slot);
        }
        let need = self.model.slot_high();
        if need <= sb.stamps_capacity {
            for s in fresh {
                self.snap.map.store(slot_offset(sb.stamps_offset, s), 0);
            }
            return Ok((sb.stamps_offset, sb.stamps_capacity));
        }
        let capacity = u32::try_from(capacity_for(u64::from(need))).unwrap_or(u32::MAX);
        let fresh: HashSet<u32> = fresh.into_iter().collect();
        let values: Vec<u64> = (0..capacity)
            .map(|s| {
                if s < sb.stamps_capacity && !fresh.contains(&s) {
                    self.snap.map.load(slot_offset(sb.stamps_offset, s))
                } else {
                    0
                }
            })
            .collect();
        let offset = self.append(&[&encode(&values)])?;
        Ok((offset, capacity))
    }
}
