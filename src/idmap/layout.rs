//! The byte layout of an id-map region: header fields, section sizes, and
//! the checked arithmetic that turns header values into byte positions.
//!
//! Everything here is pure computation on integers; nothing reads the body.

/// The first eight bytes of every id-map region.
pub(crate) const MAGIC: [u8; 8] = *b"SCIDMAP1";
/// Bytes in the header.
pub(crate) const HEADER_LEN: usize = 64;
/// The block size this build writes. Readers accept any power of two of at
/// least [`MIN_BLOCK_SIZE`].
pub(crate) const BLOCK_SIZE: u32 = 65536;
/// The smallest block size a reader accepts: smaller blocks would make the
/// CRC table large relative to the body for no gain.
pub(crate) const MIN_BLOCK_SIZE: u32 = 4096;
/// Header flag: slots are 8 bytes (fingerprint 32 bits, index 32 bits).
pub(crate) const FLAG_WIDE_SLOTS: u32 = 1;
/// Header flag: offsets are u64.
pub(crate) const FLAG_WIDE_OFFSETS: u32 = 2;
/// From this many ids on, `i + 1` no longer fits the 24 index bits of a
/// narrow slot, so slots must be wide.
pub(crate) const WIDE_SLOTS_MIN_COUNT: u64 = 1 << 24;
/// The most ids one map holds: positions are u32.
pub(crate) const MAX_IDS: u64 = u32::MAX as u64;

/// Section and region alignment, so that every section starts on a cache
/// line both in memory and in the file.
const ALIGN: u64 = 64;

/// Slots for `count` ids: a load factor of at most 0.8, and at least one
/// empty slot so that every probe sequence ends.
///
/// `count` must be at most [`MAX_IDS`], which keeps the sum far from overflow.
pub(crate) fn slot_count(count: u64) -> u64 {
    if count == 0 {
        0
    } else {
        count + count / 4 + 1
    }
}

/// The home slot of hash `h` in a table of `slots` slots: the high bits of
/// `h` scaled to `0..slots`, which avoids a division and leaves the low bits
/// of `h` free for the fingerprint.
#[inline(always)]
pub(crate) fn home_slot(h: u64, slots: usize) -> usize {
    ((u128::from(h) * slots as u128) >> 64) as usize
}

/// Rounds up to a multiple of 64, or `None` on overflow.
fn pad(x: u64) -> Option<u64> {
    Some(x.checked_add(ALIGN - 1)? & !(ALIGN - 1))
}

/// Positions of everything in a region, derived from the header values.
///
/// Invariant: every field was computed with checked arithmetic and fits in
/// `usize`; sections lie inside the body, the body inside the region, and
/// `region_len = body_start + body_len`. Code that reads an entry of a
/// section at an index below the section's entry count therefore cannot
/// overflow when computing its position.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Layout {
    /// N, the number of ids.
    pub(crate) count: usize,
    /// S, the number of slots.
    pub(crate) slot_count: usize,
    /// Total bytes of all ids.
    pub(crate) strings_len: usize,
    /// Slots are u64 rather than u32.
    pub(crate) wide_slots: bool,
    /// Offsets are u64 rather than u32.
    pub(crate) wide_offsets: bool,
    /// Bytes per checksummed body block, a power of two.
    pub(crate) block_size: usize,
    /// log2 of `block_size`.
    pub(crate) block_shift: u32,
    /// Body blocks, each with one CRC entry in the table.
    pub(crate) block_count: usize,
    /// Table bytes including the padding.
    pub(crate) table_len: usize,
    /// Start of the slots section, relative to the body.
    pub(crate) slots_start: usize,
    /// Start of the strings section, relative to the body.
    pub(crate) strings_start: usize,
    /// Body start, relative to the region.
    pub(crate) body_start: usize,
    /// Body bytes including every section's padding.
    pub(crate) body_len: usize,
    /// Region bytes.
    pub(crate) region_len: usize,
}

impl Layout {
    /// Computes the layout, or `None` if any size overflows `u64` or `usize`
    /// or `block_size` is not a power of two.
    pub(crate) fn new(
        count: u64,
        strings_len: u64,
        wide_slots: bool,
        wide_offsets: bool,
        block_size: u32,
    ) -> Option<Layout> {
        if count > MAX_IDS || !block_size.is_power_of_two() {
            return None;
        }
        let slots = slot_count(count);
        let offset_width: u64 = if wide_offsets { 8 } else { 4 };
        let slot_width: u64 = if wide_slots { 8 } else { 4 };
        let offsets_len = pad(count.checked_add(1)?.checked_mul(offset_width)?)?;
        let slots_len = pad(slots.checked_mul(slot_width)?)?;
        let strings_pad = pad(strings_len)?;
        let slots_start = offsets_len;
        let strings_start = slots_start.checked_add(slots_len)?;
        let body_len = strings_start.checked_add(strings_pad)?;
        let block_count = body_len.div_ceil(u64::from(block_size));
        let table_len = pad(block_count.checked_mul(4)?)?;
        let body_start = (HEADER_LEN as u64).checked_add(table_len)?;
        let region_len = body_start.checked_add(body_len)?;
        let us = |x: u64| usize::try_from(x).ok();
        Some(Layout {
            count: us(count)?,
            slot_count: us(slots)?,
            strings_len: us(strings_len)?,
            wide_slots,
            wide_offsets,
            block_size: us(u64::from(block_size))?,
            block_shift: block_size.trailing_zeros(),
            block_count: us(block_count)?,
            table_len: us(table_len)?,
            slots_start: us(slots_start)?,
            strings_start: us(strings_start)?,
            body_start: us(body_start)?,
            body_len: us(body_len)?,
            region_len: us(region_len)?,
        })
    }

    /// Bytes per offset entry.
    #[inline(always)]
    pub(crate) fn offset_width(&self) -> usize {
        if self.wide_offsets {
            8
        } else {
            4
        }
    }

    /// Bytes per slot.
    #[inline(always)]
    pub(crate) fn slot_width(&self) -> usize {
        if self.wide_slots {
            8
        } else {
            4
        }
    }

    /// The header flags word.
    pub(crate) fn flags(&self) -> u32 {
        let mut flags = 0;
        if self.wide_slots {
            flags |= FLAG_WIDE_SLOTS;
        }
        if self.wide_offsets {
            flags |= FLAG_WIDE_OFFSETS;
        }
        flags
    }

    /// Bytes of the table that hold CRC entries, without the padding.
    pub(crate) fn table_entries_len(&self) -> usize {
        // Cannot overflow: table_len = pad(block_count * 4) was checked.
        self.block_count * 4
    }
}

/// The decoded header.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Header {
    /// Sizes and positions.
    pub(crate) layout: Layout,
    /// xxh3-128 of the body.
    pub(crate) digest: u128,
    /// CRC32 of the table entries.
    pub(crate) table_crc: u32,
}

fn u64_at(h: &[u8; HEADER_LEN], at: usize) -> u64 {
    let mut b = [0u8; 8];
    b.copy_from_slice(&h[at..at + 8]);
    u64::from_le_bytes(b)
}

fn u32_at(h: &[u8; HEADER_LEN], at: usize) -> u32 {
    let mut b = [0u8; 4];
    b.copy_from_slice(&h[at..at + 4]);
    u32::from_le_bytes(b)
}

impl Header {
    /// The 64 header bytes, header CRC included.
    pub(crate) fn encode(&self) -> [u8; HEADER_LEN] {
        let l = &self.layout;
        let mut h = [0u8; HEADER_LEN];
        h[0..8].copy_from_slice(&MAGIC);
        h[8..16].copy_from_slice(&(l.count as u64).to_le_bytes());
        h[16..24].copy_from_slice(&(l.slot_count as u64).to_le_bytes());
        h[24..32].copy_from_slice(&(l.strings_len as u64).to_le_bytes());
        h[32..48].copy_from_slice(&self.digest.to_le_bytes());
        h[48..52].copy_from_slice(&l.flags().to_le_bytes());
        h[52..56].copy_from_slice(&(l.block_size as u32).to_le_bytes());
        h[56..60].copy_from_slice(&self.table_crc.to_le_bytes());
        let crc = crc32fast::hash(&h[0..60]);
        h[60..64].copy_from_slice(&crc.to_le_bytes());
        h
    }

    /// Decodes and checks a header. The error says what is wrong, with the
    /// expected and the found value.
    ///
    /// Checks, in order: magic, header CRC, flags, block size, count,
    /// slot count, that the widths can hold the values, and that the sizes
    /// add up without overflow. It does not look at the table or the body.
    pub(crate) fn decode(h: &[u8; HEADER_LEN]) -> Result<Header, String> {
        if h[0..8] != MAGIC {
            return Err(format!(
                "id map: expected magic {:?}, found {:?}",
                String::from_utf8_lossy(&MAGIC),
                String::from_utf8_lossy(&h[0..8])
            ));
        }
        let stored_crc = u32_at(h, 60);
        let crc = crc32fast::hash(&h[0..60]);
        if crc != stored_crc {
            return Err(format!(
                "id map: header CRC is {stored_crc:#010x} but the header bytes give {crc:#010x}"
            ));
        }
        let count = u64_at(h, 8);
        let slots = u64_at(h, 16);
        let strings_len = u64_at(h, 24);
        let mut digest = [0u8; 16];
        digest.copy_from_slice(&h[32..48]);
        let digest = u128::from_le_bytes(digest);
        let flags = u32_at(h, 48);
        let block_size = u32_at(h, 52);
        let table_crc = u32_at(h, 56);

        let known = FLAG_WIDE_SLOTS | FLAG_WIDE_OFFSETS;
        if flags & !known != 0 {
            return Err(format!(
                "id map: unknown flag bits {:#x} (only {known:#x} are defined)",
                flags & !known
            ));
        }
        if !block_size.is_power_of_two() || block_size < MIN_BLOCK_SIZE {
            return Err(format!(
                "id map: block size {block_size} is not a power of two of at least {MIN_BLOCK_SIZE}"
            ));
        }
        if count > MAX_IDS {
            return Err(format!("id map: count {count} exceeds the maximum {MAX_IDS}"));
        }
        let expected_slots = slot_count(count);
        if slots != expected_slots {
            return Err(format!(
                "id map: {count} ids need {expected_slots} slots, header says {slots}"
            ));
        }
        let wide_slots = flags & FLAG_WIDE_SLOTS != 0;
        let wide_offsets = flags & FLAG_WIDE_OFFSETS != 0;
        // Wider entries than needed are harmless and readable; narrower ones
        // could not hold the values, so only the latter are refused.
        if count >= WIDE_SLOTS_MIN_COUNT && !wide_slots {
            return Err(format!(
                "id map: {count} ids need wide slots but the flag is clear"
            ));
        }
        if strings_len > u64::from(u32::MAX) && !wide_offsets {
            return Err(format!(
                "id map: {strings_len} string bytes need wide offsets but the flag is clear"
            ));
        }
        let layout = Layout::new(count, strings_len, wide_slots, wide_offsets, block_size)
            .ok_or_else(|| format!("id map: sizes overflow (count {count}, string bytes {strings_len})"))?;
        Ok(Header {
            layout,
            digest,
            table_crc,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_layout() {
        let l = Layout::new(0, 0, false, false, BLOCK_SIZE).unwrap();
        assert_eq!(l.slot_count, 0);
        assert_eq!(l.body_len, 64);
        assert_eq!(l.block_count, 1);
        assert_eq!(l.table_len, 64);
        assert_eq!(l.region_len, 192);
    }

    #[test]
    fn sections_are_aligned() {
        for n in [1u64, 2, 3, 15, 16, 17, 1000] {
            for (ws, wo) in [(false, false), (true, false), (false, true), (true, true)] {
                let l = Layout::new(n, n * 7 + 3, ws, wo, BLOCK_SIZE).unwrap();
                assert_eq!(l.slots_start % 64, 0);
                assert_eq!(l.strings_start % 64, 0);
                assert_eq!(l.body_len % 64, 0);
                assert_eq!(l.body_start % 64, 0);
                assert!(l.slot_count > l.count);
            }
        }
    }

    #[test]
    fn overflow_is_refused() {
        assert!(Layout::new(MAX_IDS + 1, 0, true, true, BLOCK_SIZE).is_none());
        assert!(Layout::new(1, u64::MAX, true, true, BLOCK_SIZE).is_none());
        assert!(Layout::new(1, 1, true, true, 3).is_none());
    }

    #[test]
    fn home_slot_in_range() {
        for s in [1usize, 2, 3, 1000, usize::MAX] {
            for h in [0u64, 1, u64::MAX, 0x8000_0000_0000_0000] {
                assert!(home_slot(h, s) < s);
            }
        }
    }
}
