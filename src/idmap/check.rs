//! Integrity checks: the lazy per-block CRC checks made on first touch, and
//! the full [`IdMap::verify`].

use std::sync::atomic::Ordering;

use xxhash_rust::xxh3::xxh3_128;

use super::layout::HEADER_LEN;
use super::lookup::{read_u32, read_u64, stored_index};
use super::{Fault, IdMap, Inner, CHECKING, READY};
use crate::Result;

impl Inner {
    /// Makes sure every body block overlapping the body range
    /// `start..end` has passed its CRC check, checking those that have not.
    ///
    /// Reads of a [`READY`](super::READY) map do not call this at all;
    /// otherwise it costs one bit test per block. A block is checked at
    /// most once per process, unless two threads race to check it first,
    /// which is harmless.
    #[inline(always)]
    pub(super) fn ensure(&self, body: &[u8], start: usize, end: usize) -> Result<(), Fault> {
        if start >= end {
            return Ok(());
        }
        let shift = self.layout.block_shift;
        for block in (start >> shift)..=((end - 1) >> shift) {
            let known = self
                .verified
                .get(block / 64)
                .is_some_and(|w| w.load(Ordering::Acquire) & (1 << (block % 64)) != 0);
            if !known {
                self.check_block(body, block)?;
            }
        }
        Ok(())
    }

    /// Checks one body block against its table entry and records the result.
    #[cold]
    #[inline(never)]
    fn check_block(&self, body: &[u8], block: usize) -> Result<(), Fault> {
        self.block_crc_matches(body, block)?;
        if let Some(word) = self.verified.get(block / 64) {
            let bit = 1 << (block % 64);
            let newly = word.fetch_or(bit, Ordering::Release) & bit == 0;
            // Once every block has passed, lookups skip the bookkeeping.
            if newly && self.verified_blocks.fetch_add(1, Ordering::AcqRel) + 1 == self.layout.block_count {
                // Fails only if a check failed meanwhile: CORRUPT stays.
                let _ = self
                    .mode
                    .compare_exchange(CHECKING, READY, Ordering::AcqRel, Ordering::Relaxed);
            }
        }
        Ok(())
    }

    /// Compares one body block's CRC with its table entry.
    fn block_crc_matches(&self, body: &[u8], block: usize) -> Result<(), Fault> {
        let l = &self.layout;
        let stored = block
            .checked_mul(4)
            .and_then(|at| at.checked_add(HEADER_LEN))
            .filter(|_| block < l.block_count)
            .and_then(|at| read_u32(self.backing.region(), at));
        let bytes = block
            .checked_mul(l.block_size)
            .and_then(|start| body.get(start..start.saturating_add(l.block_size).min(body.len())));
        match (stored, bytes) {
            (Some(stored), Some(bytes)) => {
                let crc = crc32fast::hash(bytes);
                if crc == stored {
                    Ok(())
                } else {
                    Err(self.fault(|| {
                        format!(
                            "id map: body block {block} has CRC {crc:#010x}, the table says {stored:#010x}"
                        )
                    }))
                }
            }
            _ => Err(self.fault(|| format!("id map: body block {block} lies outside the region"))),
        }
    }

    /// Every check there is; see [`IdMap::verify`].
    fn verify_all(&self) -> Result<(), Fault> {
        let sections = self.body()?;
        let body = sections.body;
        let l = &self.layout;
        if body.len() != l.body_len {
            return Err(self.fault(|| "id map: body length differs from its layout".to_string()));
        }

        for block in 0..l.block_count {
            self.block_crc_matches(body, block)?;
            if let Some(word) = self.verified.get(block / 64) {
                word.fetch_or(1 << (block % 64), Ordering::Release);
            }
        }
        let digest = xxh3_128(body);
        if digest != self.digest {
            return Err(self.fault(|| {
                format!(
                    "id map: body digest is {digest:032x}, the header says {:032x}",
                    self.digest
                )
            }));
        }

        self.verify_offsets(body)?;
        self.verify_slots(body)?;

        // Every id must be found at its own position. With the slot scan
        // above (exactly N occupied slots, each naming a position below N)
        // this proves that the slots hold each position once with the right
        // fingerprint, that no empty slot cuts a probe run, and that no two
        // ids are equal, since a lookup of the later of two equal ids would
        // stop at the earlier one.
        self.find_batch(
            sections,
            false,
            l.count,
            |i| self.id_bytes::<true>(sections, i),
            |i, found| {
                if found == Some(i as u32) {
                    Ok(())
                } else {
                    Err(self.fault(|| format!("id map: looking up id {i} gives position {found:?}")))
                }
            },
        )?;
        // Everything passed: reads need no more block checks. Fails only if
        // a check failed meanwhile, and CORRUPT stays.
        let _ = self
            .mode
            .compare_exchange(CHECKING, READY, Ordering::AcqRel, Ordering::Relaxed);
        Ok(())
    }

    /// Offsets start at 0, never decrease, end at `strings_len`; every id is
    /// UTF-8; all section padding is zero.
    fn verify_offsets(&self, body: &[u8]) -> Result<(), Fault> {
        let l = &self.layout;
        let w = l.offset_width();
        let read = |i: usize| {
            if l.wide_offsets {
                read_u64(body, i * w)
            } else {
                read_u32(body, i * w).map(u64::from)
            }
        };
        let mut prev = 0u64;
        for i in 0..=l.count {
            let Some(o) = read(i) else {
                return Err(self.fault(|| format!("id map: offset {i} lies outside the body")));
            };
            let ok = if i == 0 {
                o == 0
            } else if i == l.count {
                o == l.strings_len as u64 && o >= prev
            } else {
                o >= prev
            };
            if !ok {
                return Err(self.fault(|| {
                    format!(
                        "id map: offset {i} is {o}, after {prev}, with {} string bytes",
                        l.strings_len
                    )
                }));
            }
            if i > 0 {
                // prev <= o <= strings_len, so both fit usize.
                let bytes = body
                    .get(l.strings_start + prev as usize..l.strings_start + o as usize)
                    .unwrap_or_default();
                if let Err(e) = std::str::from_utf8(bytes) {
                    return Err(self.fault(|| format!("id map: id {} is not UTF-8: {e}", i - 1)));
                }
            }
            prev = o;
        }
        let pads = [
            ((l.count + 1) * w, l.slots_start, "offsets"),
            (
                l.slots_start + l.slot_count * l.slot_width(),
                l.strings_start,
                "slots",
            ),
            (l.strings_start + l.strings_len, l.body_len, "strings"),
        ];
        for (start, end, what) in pads {
            let zero = body.get(start..end).is_some_and(|p| p.iter().all(|&b| b == 0));
            if !zero {
                return Err(self.fault(|| format!("id map: {what} padding is not zero")));
            }
        }
        Ok(())
    }

    /// Exactly N occupied slots, each naming a position below N.
    fn verify_slots(&self, body: &[u8]) -> Result<(), Fault> {
        let l = &self.layout;
        let mut occupied = 0usize;
        for p in 0..l.slot_count {
            let pos = l.slots_start + p * l.slot_width();
            let v = if l.wide_slots {
                read_u64(body, pos)
            } else {
                read_u32(body, pos).map(u64::from)
            };
            let Some(v) = v else {
                return Err(self.fault(|| format!("id map: slot {p} lies outside the body")));
            };
            if v == 0 {
                continue;
            }
            let stored = if l.wide_slots {
                stored_index::<true>(v)
            } else {
                stored_index::<false>(v)
            };
            if stored == 0 || stored > l.count as u64 {
                return Err(self.fault(|| format!("id map: slot {p} value {v:#x} names no id")));
            }
            occupied += 1;
        }
        if occupied != l.count {
            return Err(self.fault(|| format!("id map: {occupied} occupied slots for {} ids", l.count)));
        }
        Ok(())
    }
}

impl IdMap {
    /// Checks everything: every block CRC, the digest, and the structure:
    /// offsets start at 0, never decrease and end at the string length;
    /// every id is valid UTF-8; all padding is zero; exactly N slots are
    /// occupied, each naming a position below N; and every id is found at
    /// its own position, which also proves there are no duplicates.
    ///
    /// After success, every block is marked checked, so later lookups do no
    /// CRC work. After failure the map is corrupt, as after any failed check.
    ///
    /// Cost: O(region length) time, one sequential pass for the CRCs and the
    /// digest plus one lookup per id (pipelined as in
    /// [`index_of_batch`](IdMap::index_of_batch)); no allocation.
    ///
    /// ```
    /// let map = scopecache::IdMap::from_ids(["a", "b", "c"])?;
    /// map.verify()?;
    /// # Ok::<(), scopecache::Error>(())
    /// ```
    pub fn verify(&self) -> Result<()> {
        let inner = &*self.inner;
        inner.verify_all().map_err(|Fault| inner.error())
    }
}
