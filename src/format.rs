//! The fixed part of the on-disk format: file layout constants, the
//! superblock, and region alignment. FORMAT.md describes the same bytes.

use crate::error::{Error, Result};
use std::path::Path;

/// The first eight bytes of each superblock.
pub(crate) const MAGIC: [u8; 8] = *b"SCPCACHE";
/// The format version this build writes. Version 2 added the delta chain
/// of the index (FORMAT.md §2.7); this build also reads version 1 files,
/// which are version 2 files without a delta, and writes version 2
/// superblocks into them from their first commit on.
pub const FORMAT_VERSION: u32 = 2;
/// The oldest format version this build reads.
pub const OLDEST_READABLE_VERSION: u32 = 1;

/// Each superblock owns a 4 KiB page of its own, so that a torn write of one
/// can never reach the other.
pub(crate) const SUPERBLOCK_PAGE: u64 = 4096;
/// Bytes of a superblock that carry data; the rest of its page is zero.
pub(crate) const SUPERBLOCK_LEN: usize = 128;
/// The page of shared counters (hits, misses, ...), updated in place with
/// atomic adds by every process that opens the file read-write.
pub(crate) const COUNTERS_OFFSET: u64 = 2 * SUPERBLOCK_PAGE;
/// Where appended regions begin.
pub(crate) const DATA_START: u64 = 3 * SUPERBLOCK_PAGE;
/// Every region starts at a multiple of this, so that bitset words and id
/// mapping slots are naturally aligned in the mapping (and cache-line aligned).
pub(crate) const REGION_ALIGN: u64 = 64;

/// The largest generation a superblock may hold. Each commit adds 1 and a
/// compaction 2, so a file never gets near it (2^62 commits); a slot naming
/// a larger one is refused, so that no commit's generation can overflow.
pub(crate) const MAX_GENERATION: u64 = 1 << 62;

/// Superblock flag: the file was replaced (compaction renamed a new file over
/// its path); readers should move to the file now at the path.
pub(crate) const FLAG_RETIRED: u32 = 1;

/// Shared counters, by index of their u64 in the counters page.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Counter {
    Hits = 0,
    Misses = 1,
    Evictions = 2,
    Expiries = 3,
    CorruptDropped = 4,
    Puts = 5,
    Removes = 6,
    Compactions = 7,
}
pub(crate) const COUNTER_COUNT: usize = 8;

/// Checks `bytes` against the CRC32 a record or superblock gives for them;
/// the error names the region (`what`), the CRC expected and the one found.
pub(crate) fn check_crc(
    path: &Path,
    bytes: &[u8],
    expected: u32,
    what: impl FnOnce() -> String,
) -> Result<()> {
    let crc = crc32fast::hash(bytes);
    if crc != expected {
        return Err(Error::corrupt(
            path,
            format!("{}: CRC expected {expected:#010x}, found {crc:#010x}", what()),
        ));
    }
    Ok(())
}

/// Rounds `n` up to the region alignment, or None on overflow.
pub(crate) fn align_up(n: u64) -> Option<u64> {
    n.checked_add(REGION_ALIGN - 1).map(|v| v & !(REGION_ALIGN - 1))
}

/// One of the two superblocks: the root of a committed generation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Superblock {
    /// The generation; generation g lives in slot g % 2.
    pub generation: u64,
    /// Bit 0: the file is retired (compaction replaced it).
    pub flags: u32,
    /// Bytes of the file that the committed state covers; everything a
    /// published index points to lies below it.
    pub committed_len: u64,
    /// Where the index region starts.
    pub index_offset: u64,
    /// The index region's length in bytes.
    pub index_len: u64,
    /// CRC32 of the index region.
    pub index_crc: u32,
    /// Where the access-stamp table starts.
    pub stamps_offset: u64,
    /// Entries (u64 stamps) in the access-stamp table.
    pub stamps_capacity: u32,
    /// A random number given to each file when it is created, so that a
    /// process can tell a file that replaced another at the same path.
    pub file_id: u64,
    /// The newest delta of the index (FORMAT.md §2.7): where it starts, its
    /// length (0: no delta, the index alone is the generation's state) and
    /// its CRC32. Always 0 in a version 1 superblock.
    pub delta_offset: u64,
    /// The newest delta's length in bytes; 0 when there is none.
    pub delta_len: u64,
    /// CRC32 of the newest delta.
    pub delta_crc: u32,
}

/// Why a superblock slot was not usable.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum SlotError {
    /// All bytes zero: never written.
    Empty,
    BadMagic([u8; 8]),
    BadVersion(u32),
    /// A generation above `MAX_GENERATION`.
    BadGeneration(u64),
    BadCrc {
        stored: u32,
        computed: u32,
    },
}

impl Superblock {
    /// The superblock of generation `generation` that names the index of
    /// `index` bytes at `index_offset` and the stamp table `stamps`
    /// (offset, capacity). Every committed region lies below the index's end.
    pub(crate) fn naming(
        generation: u64,
        index_offset: u64,
        index: &[u8],
        stamps: (u64, u32),
        file_id: u64,
    ) -> Superblock {
        Superblock {
            generation,
            flags: 0,
            committed_len: index_offset + index.len() as u64,
            index_offset,
            index_len: index.len() as u64,
            index_crc: crc32fast::hash(index),
            stamps_offset: stamps.0,
            stamps_capacity: stamps.1,
            file_id,
            delta_offset: 0,
            delta_len: 0,
            delta_crc: 0,
        }
    }

    /// This superblock, moved to `generation`, with its newest delta now the
    /// `delta` bytes at `offset`: what a commit that appends a delta
    /// publishes. The index (the chain's base) and the stamp table are kept.
    pub(crate) fn with_delta(
        &self,
        generation: u64,
        offset: u64,
        delta: &[u8],
        stamps: (u64, u32),
    ) -> Superblock {
        Superblock {
            generation,
            flags: 0,
            committed_len: offset + delta.len() as u64,
            stamps_offset: stamps.0,
            stamps_capacity: stamps.1,
            delta_offset: offset,
            delta_len: delta.len() as u64,
            delta_crc: crc32fast::hash(delta),
            ..*self
        }
    }

    /// True when the generation has a delta over its index.
    pub(crate) fn has_delta(&self) -> bool {
        self.delta_len > 0
    }

    /// The generation `by` commits after this one, or an error when it would
    /// pass `MAX_GENERATION`.
    pub(crate) fn generation_after(&self, by: u64, path: &Path) -> Result<u64> {
        self.generation
            .checked_add(by)
            .filter(|&g| g <= MAX_GENERATION)
            .ok_or_else(|| {
                Error::corrupt(
                    path,
                    format!("generation {} cannot grow further", self.generation),
                )
            })
    }

    pub(crate) fn slot_offset(generation: u64) -> u64 {
        (generation % 2) * SUPERBLOCK_PAGE
    }

    pub(crate) fn is_retired(&self) -> bool {
        self.flags & FLAG_RETIRED != 0
    }

    pub(crate) fn encode(&self) -> [u8; SUPERBLOCK_LEN] {
        let mut b = [0u8; SUPERBLOCK_LEN];
        b[0..8].copy_from_slice(&MAGIC);
        b[8..12].copy_from_slice(&FORMAT_VERSION.to_le_bytes());
        b[12..16].copy_from_slice(&self.flags.to_le_bytes());
        b[16..24].copy_from_slice(&self.generation.to_le_bytes());
        b[24..32].copy_from_slice(&self.committed_len.to_le_bytes());
        b[32..40].copy_from_slice(&self.index_offset.to_le_bytes());
        b[40..48].copy_from_slice(&self.index_len.to_le_bytes());
        b[48..52].copy_from_slice(&self.index_crc.to_le_bytes());
        b[52..56].copy_from_slice(&self.stamps_capacity.to_le_bytes());
        b[56..64].copy_from_slice(&self.stamps_offset.to_le_bytes());
        b[64..72].copy_from_slice(&self.file_id.to_le_bytes());
        b[72..80].copy_from_slice(&self.delta_offset.to_le_bytes());
        b[80..88].copy_from_slice(&self.delta_len.to_le_bytes());
        b[88..92].copy_from_slice(&self.delta_crc.to_le_bytes());
        let crc = crc32fast::hash(&b[..SUPERBLOCK_LEN - 4]);
        b[SUPERBLOCK_LEN - 4..].copy_from_slice(&crc.to_le_bytes());
        b
    }

    pub(crate) fn decode(b: &[u8; SUPERBLOCK_LEN]) -> Result<Superblock, SlotError> {
        if b.iter().all(|&x| x == 0) {
            return Err(SlotError::Empty);
        }
        let magic: [u8; 8] = take(b, 0);
        if magic != MAGIC {
            return Err(SlotError::BadMagic(magic));
        }
        let stored = u32::from_le_bytes(take(b, SUPERBLOCK_LEN - 4));
        let computed = crc32fast::hash(&b[..SUPERBLOCK_LEN - 4]);
        // The version is checked after the CRC so that a torn slot is not
        // reported as a foreign version, but before the fields are trusted.
        if stored != computed {
            return Err(SlotError::BadCrc { stored, computed });
        }
        let version = u32::from_le_bytes(take(b, 8));
        if !(OLDEST_READABLE_VERSION..=FORMAT_VERSION).contains(&version) {
            return Err(SlotError::BadVersion(version));
        }
        // Version 1 had no delta; its bytes 72..92 were zero, and are not
        // trusted to be.
        let v2 = version >= 2;
        let field = |at: usize| if v2 { u64::from_le_bytes(take(b, at)) } else { 0 };
        let generation = u64::from_le_bytes(take(b, 16));
        if generation > MAX_GENERATION {
            return Err(SlotError::BadGeneration(generation));
        }
        Ok(Superblock {
            flags: u32::from_le_bytes(take(b, 12)),
            generation,
            committed_len: u64::from_le_bytes(take(b, 24)),
            index_offset: u64::from_le_bytes(take(b, 32)),
            index_len: u64::from_le_bytes(take(b, 40)),
            index_crc: u32::from_le_bytes(take(b, 48)),
            stamps_capacity: u32::from_le_bytes(take(b, 52)),
            stamps_offset: u64::from_le_bytes(take(b, 56)),
            file_id: u64::from_le_bytes(take(b, 64)),
            delta_offset: field(72),
            delta_len: field(80),
            delta_crc: if v2 { u32::from_le_bytes(take(b, 88)) } else { 0 },
        })
    }

    /// Picks the newest usable superblock of the two slots, or explains why
    /// neither is usable.
    pub(crate) fn choose(path: &Path, slots: [&[u8; SUPERBLOCK_LEN]; 2]) -> Result<Superblock> {
        let decoded = [Superblock::decode(slots[0]), Superblock::decode(slots[1])];
        let mut best: Option<Superblock> = None;
        for (slot, d) in decoded.iter().enumerate() {
            if let Ok(sb) = d {
                // A slot must hold the generation that belongs in it; a valid
                // superblock in the wrong slot is a misplaced write.
                if Superblock::slot_offset(sb.generation) != slot as u64 * SUPERBLOCK_PAGE {
                    continue;
                }
                if best.is_none_or(|b| sb.generation > b.generation) {
                    best = Some(*sb);
                }
            }
        }
        if let Some(sb) = best {
            return Ok(sb);
        }
        // Neither slot is usable: report the most telling reason.
        for d in &decoded {
            if let Err(SlotError::BadVersion(found)) = d {
                return Err(Error::UnsupportedVersion {
                    path: path.to_path_buf(),
                    found: *found,
                    supported: FORMAT_VERSION,
                });
            }
        }
        let foreign =
            |d: &Result<Superblock, SlotError>| matches!(d, Err(SlotError::BadMagic(_) | SlotError::Empty));
        if foreign(&decoded[0]) && foreign(&decoded[1]) {
            let found = match decoded[0] {
                Err(SlotError::BadMagic(m)) => m,
                _ => [0u8; 8],
            };
            return Err(Error::NotACacheFile {
                path: path.to_path_buf(),
                expected: String::from_utf8_lossy(&MAGIC).into_owned(),
                found: String::from_utf8_lossy(&found).escape_debug().to_string(),
            });
        }
        Err(Error::corrupt(
            path,
            format!(
                "both superblocks are unusable: slot 0: {:?}; slot 1: {:?}",
                decoded[0].as_ref().err(),
                decoded[1].as_ref().err()
            ),
        ))
    }
}

fn take<const N: usize>(b: &[u8], at: usize) -> [u8; N] {
    let mut out = [0u8; N];
    out.copy_from_slice(&b[at..at + N]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sb(generation: u64) -> Superblock {
        Superblock {
            generation,
            flags: 0,
            committed_len: 99_999,
            index_offset: DATA_START,
            index_len: 64,
            index_crc: 7,
            stamps_offset: DATA_START + 64,
            stamps_capacity: 8,
            file_id: 42,
            delta_offset: 0,
            delta_len: 0,
            delta_crc: 0,
        }
    }

    #[test]
    fn round_trip_and_choice() {
        let a = sb(4).encode();
        let b = sb(5).encode();
        assert_eq!(Superblock::decode(&a), Ok(sb(4)));
        let chosen = Superblock::choose(Path::new("f"), [&a, &b]).unwrap();
        assert_eq!(chosen.generation, 5);
        let mut torn = b;
        torn[20] ^= 1;
        let chosen = Superblock::choose(Path::new("f"), [&a, &torn]).unwrap();
        assert_eq!(
            chosen.generation, 4,
            "a torn newer slot falls back to the older one"
        );
    }

    #[test]
    fn misplaced_slot_is_ignored() {
        let a = sb(4).encode();
        let b = sb(6).encode(); // generation 6 belongs in slot 0, not slot 1
        assert_eq!(
            Superblock::choose(Path::new("f"), [&a, &b]).unwrap().generation,
            4
        );
    }

    #[test]
    fn reasons_for_unusable_files() {
        let zero = [0u8; SUPERBLOCK_LEN];
        let err = Superblock::choose(Path::new("f"), [&zero, &zero]).unwrap_err();
        assert!(matches!(err, Error::NotACacheFile { .. }), "{err}");
        let mut future = sb(4);
        future.generation = 4;
        let mut bytes = future.encode();
        bytes[8..12].copy_from_slice(&9u32.to_le_bytes());
        let crc = crc32fast::hash(&bytes[..SUPERBLOCK_LEN - 4]);
        bytes[SUPERBLOCK_LEN - 4..].copy_from_slice(&crc.to_le_bytes());
        let err = Superblock::choose(Path::new("f"), [&bytes, &zero]).unwrap_err();
        assert!(matches!(err, Error::UnsupportedVersion { found: 9, .. }), "{err}");
        let mut torn = sb(4).encode();
        torn[30] ^= 0xff;
        let err = Superblock::choose(Path::new("f"), [&torn, &zero]).unwrap_err();
        assert!(matches!(err, Error::Corrupt { .. }), "{err}");
    }
}
