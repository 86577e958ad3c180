//! The entry index: an rkyv archive of every live entry and every stored id
//! mapping, rewritten whole at each commit and read in place by readers.

use crate::error::{Error, Result};
use crate::format::{Superblock, DATA_START, REGION_ALIGN};
use crate::stamps;
use rkyv::{Archive, Deserialize, Serialize};
use std::path::Path;

/// Where a bitset lives: `bits` bits in `ceil(bits / 64)` little-endian u64
/// words at `offset`; bits past `bits` in the last word are zero.
#[derive(Archive, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
pub struct BitsRecord {
    /// Where the words start (64-aligned).
    pub offset: u64,
    /// Bits in the bitset.
    pub bits: u64,
    /// CRC32 of the region's bytes.
    pub crc: u32,
}

impl BitsRecord {
    pub(crate) fn byte_len(bits: u64) -> u64 {
        bits.div_ceil(64) * 8
    }
}

/// A stored id mapping region, shared by every entry that names it.
#[derive(Archive, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
pub struct MapRecord {
    /// Where the region starts (64-aligned).
    pub offset: u64,
    /// The region's length in bytes.
    pub len: u64,
    /// Ids in the mapping.
    pub count: u64,
    /// The mapping's content digest (xxh3-128 of its body), copied from its
    /// header so that a writer can find a stored mapping without reading it.
    pub digest_lo: u64,
    /// The high 64 bits of the digest.
    pub digest_hi: u64,
}

impl MapRecord {
    /// The record of `map` stored at `offset`.
    pub(crate) fn of(map: &crate::IdMap, offset: u64) -> MapRecord {
        let d = map.digest();
        MapRecord {
            offset,
            len: map.region_len(),
            count: map.len() as u64,
            digest_lo: d as u64,
            digest_hi: (d >> 64) as u64,
        }
    }

    /// True when the region recorded here holds the same mapping as `map`:
    /// the one test of identity that sharing relies on.
    pub(crate) fn holds(&self, map: &crate::IdMap) -> bool {
        self.digest() == map.digest() && self.count == map.len() as u64 && self.len == map.region_len()
    }

    pub(crate) fn digest(&self) -> u128 {
        (u128::from(self.digest_hi) << 64) | u128::from(self.digest_lo)
    }
}

impl ArchivedMapRecord {
    pub(crate) fn to_record(&self) -> MapRecord {
        MapRecord {
            offset: self.offset.to_native(),
            len: self.len.to_native(),
            count: self.count.to_native(),
            digest_lo: self.digest_lo.to_native(),
            digest_hi: self.digest_hi.to_native(),
        }
    }

    pub(crate) fn digest(&self) -> u128 {
        (u128::from(self.digest_hi.to_native()) << 64) | u128::from(self.digest_lo.to_native())
    }
}

impl ArchivedBitsRecord {
    pub(crate) fn to_record(&self) -> BitsRecord {
        BitsRecord {
            offset: self.offset.to_native(),
            bits: self.bits.to_native(),
            crc: self.crc.to_native(),
        }
    }
}

/// One cached scope.
#[derive(Archive, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct EntryRecord {
    /// The key.
    pub key: String,
    /// Microseconds since the Unix epoch, UTC.
    pub created_us: i64,
    /// Last access known at commit time; the shared stamp in slot `slot` may
    /// be newer, and the later of the two is the entry's last access.
    pub accessed_us: i64,
    /// The entry's slot in the access-stamp table.
    pub slot: u32,
    /// Index of the node mapping in `IndexData::maps`.
    pub node_map: u32,
    /// Index of the link mapping in `IndexData::maps`.
    pub link_map: u32,
    /// The nodes bitset.
    pub nodes: BitsRecord,
    /// The links bitset.
    pub links: BitsRecord,
    /// The attributes as compact JSON text (an object).
    pub attributes: String,
}

/// The whole index of one generation.
#[derive(Archive, Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
pub struct IndexData {
    /// Sorted by key bytes, keys unique.
    pub entries: Vec<EntryRecord>,
    /// Every mapping some entry names, and no other.
    pub maps: Vec<MapRecord>,
}

/// Bytes an entry takes in the index beyond its key and attributes, bounded
/// from above: the 96-byte record plus rkyv's out-of-line strings' padding.
pub(crate) const ENTRY_OVERHEAD: u64 = 160;
/// Bytes a mapping record takes in the index (40, rounded up).
pub(crate) const MAP_OVERHEAD: u64 = 48;
/// Bytes of the index's root and vectors.
const INDEX_OVERHEAD: u64 = 64;

/// Bytes an entry with this key and attributes adds to the index.
pub(crate) fn entry_bytes(key_len: usize, attributes_len: usize) -> u64 {
    ENTRY_OVERHEAD + key_len as u64 + attributes_len as u64
}

impl IndexData {
    /// Bytes this index takes in the file, estimated from above.
    pub(crate) fn estimated_len(&self) -> u64 {
        let entries: u64 = self
            .entries
            .iter()
            .map(|e| entry_bytes(e.key.len(), e.attributes.len()))
            .sum();
        INDEX_OVERHEAD + entries + MAP_OVERHEAD * self.maps.len() as u64
    }

    pub(crate) fn to_bytes(&self) -> Result<rkyv::util::AlignedVec> {
        rkyv::to_bytes::<rkyv::rancor::Error>(self)
            .map_err(|e| Error::Config(format!("the index could not be encoded: {e}")))
    }
}

/// Checks the archived index and the superblock against everything rkyv's
/// validation cannot know: sort order, references between tables, that
/// every region lies inside the committed part of the file, and that no two
/// regions overlap (FORMAT.md §2). After this, readers trust the index's
/// structure (never its regions' contents, which carry their own CRCs), and
/// the stamp table, the one region written in place, aliases nothing that
/// is lent out.
pub(crate) fn check_semantics(path: &Path, idx: &ArchivedIndexData, sb: &Superblock) -> Result<()> {
    let bad = |what: String| Err(Error::corrupt(path, format!("index: {what}")));
    let committed_len = sb.committed_len;
    let in_file = |offset: u64, len: u64| {
        offset >= DATA_START
            && offset.is_multiple_of(REGION_ALIGN)
            && offset.checked_add(len).is_some_and(|end| end <= committed_len)
    };
    // Every non-empty region: (start, end, what it is).
    let mut regions: Vec<(u64, u64, &'static str)> =
        Vec::with_capacity(2 * idx.entries.len() + idx.maps.len() + 2);
    let mut region = |offset: u64, len: u64, what: &'static str| {
        if len > 0 {
            regions.push((offset, offset + len, what));
        }
    };
    region(sb.index_offset, sb.index_len, "the index");
    let stamps_len = stamps::table_len(sb.stamps_capacity);
    if !in_file(sb.stamps_offset, stamps_len) {
        return Err(Error::corrupt(
            path,
            format!(
                "the access-stamp table at {}+{stamps_len} lies outside the committed file",
                sb.stamps_offset
            ),
        ));
    }
    region(sb.stamps_offset, stamps_len, "the access-stamp table");
    for (i, m) in idx.maps.iter().enumerate() {
        if !in_file(m.offset.to_native(), m.len.to_native()) {
            return bad(format!(
                "mapping {i} at {}+{} lies outside the file",
                m.offset, m.len
            ));
        }
        region(m.offset.to_native(), m.len.to_native(), "an id mapping");
    }
    let mut prev: Option<&str> = None;
    for e in idx.entries.iter() {
        let key = e.key.as_str();
        if let Err(reason) = crate::key::check(key) {
            return bad(format!("entry key {key:?} is invalid: {reason}"));
        }
        if prev.is_some_and(|p| p >= key) {
            return bad(format!("entry keys out of order at {key:?}"));
        }
        prev = Some(key);
        for (map, bits) in [
            (e.node_map.to_native(), &e.nodes),
            (e.link_map.to_native(), &e.links),
        ] {
            let Some(m) = idx.maps.get(map as usize) else {
                return bad(format!("entry {key:?} names mapping {map} of {}", idx.maps.len()));
            };
            if m.count.to_native() != bits.bits.to_native() {
                return bad(format!(
                    "entry {key:?}: bitset of {} bits with a mapping of {} ids",
                    bits.bits, m.count
                ));
            }
            let len = BitsRecord::byte_len(bits.bits.to_native());
            if !in_file(bits.offset.to_native(), len) {
                return bad(format!(
                    "entry {key:?}: bitset at {} lies outside the file",
                    bits.offset
                ));
            }
            region(bits.offset.to_native(), len, "a bitset");
        }
        if e.slot.to_native() >= sb.stamps_capacity {
            return bad(format!(
                "entry {key:?}: stamp slot {} of {}",
                e.slot, sb.stamps_capacity
            ));
        }
    }
    regions.sort_unstable();
    for w in regions.windows(2) {
        let ((a_start, a_end, a), (b_start, _, b)) = (w[0], w[1]);
        if b_start < a_end {
            return bad(format!(
                "{a} at {a_start}..{a_end} overlaps {b} at {b_start}: regions never share bytes"
            ));
        }
    }
    Ok(())
}

impl ArchivedIndexData {
    /// The position of `key` among the entries, by binary search.
    pub(crate) fn find(&self, key: &str) -> Option<usize> {
        self.entries.binary_search_by(|e| e.key.as_str().cmp(key)).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::mem::{align_of, offset_of, size_of};

    /// FORMAT.md gives these layouts byte by byte; a change here is a
    /// format change.
    #[test]
    fn archived_layouts_are_as_documented() {
        assert_eq!(
            (size_of::<ArchivedIndexData>(), align_of::<ArchivedIndexData>()),
            (16, 4)
        );
        assert_eq!(offset_of!(ArchivedIndexData, maps), 8);
        assert_eq!(
            (size_of::<ArchivedBitsRecord>(), align_of::<ArchivedBitsRecord>()),
            (24, 8)
        );
        assert_eq!(offset_of!(ArchivedBitsRecord, crc), 16);
        assert_eq!(
            (size_of::<ArchivedMapRecord>(), align_of::<ArchivedMapRecord>()),
            (40, 8)
        );
        assert_eq!(offset_of!(ArchivedMapRecord, digest_hi), 32);
        assert_eq!(
            (
                size_of::<ArchivedEntryRecord>(),
                align_of::<ArchivedEntryRecord>()
            ),
            (96, 8)
        );
        let e = [
            offset_of!(ArchivedEntryRecord, key),
            offset_of!(ArchivedEntryRecord, created_us),
            offset_of!(ArchivedEntryRecord, accessed_us),
            offset_of!(ArchivedEntryRecord, slot),
            offset_of!(ArchivedEntryRecord, node_map),
            offset_of!(ArchivedEntryRecord, link_map),
            offset_of!(ArchivedEntryRecord, nodes),
            offset_of!(ArchivedEntryRecord, links),
            offset_of!(ArchivedEntryRecord, attributes),
        ];
        assert_eq!(e, [0, 8, 16, 24, 28, 32, 40, 64, 88]);
    }

    #[test]
    fn strings_and_root_are_encoded_as_documented() {
        let idx = IndexData {
            entries: vec![EntryRecord {
                key: "k".into(),
                created_us: 1,
                accessed_us: 2,
                slot: 3,
                node_map: 0,
                link_map: 0,
                nodes: BitsRecord {
                    offset: 12288,
                    bits: 5,
                    crc: 6,
                },
                links: BitsRecord {
                    offset: 12352,
                    bits: 5,
                    crc: 7,
                },
                attributes: "{\"run\":\"r1\"}".into(),
            }],
            maps: vec![MapRecord {
                offset: 12416,
                len: 8,
                count: 5,
                digest_lo: 9,
                digest_hi: 10,
            }],
        };
        let bytes = idx.to_bytes().unwrap();
        // The root (16 bytes) is the last thing in the buffer.
        let root = bytes.len() - 16;
        let rel = |at: usize| i32::from_le_bytes(bytes[at..at + 4].try_into().unwrap()) as isize;
        let u32_at = |at: usize| u32::from_le_bytes(bytes[at..at + 4].try_into().unwrap());
        let entries = (root as isize + rel(root)) as usize;
        assert_eq!(u32_at(root + 4), 1);
        // The key "k" is inline: its bytes, then 0xff padding.
        assert_eq!(&bytes[entries..entries + 8], b"k\xff\xff\xff\xff\xff\xff\xff");
        // The attributes (12 bytes) are out of line: encoded length, then a
        // relative offset from the string's own position.
        let a = entries + 88;
        let enc = u32_at(a);
        assert_eq!(
            enc,
            12 | 0x80,
            "lengths under 64 keep their bits, tagged with bit 7"
        );
        let at = (a as isize + rel(a + 4)) as usize;
        assert_eq!(&bytes[at..at + 12], b"{\"run\":\"r1\"}");
        let maps = (root as isize + 8 + rel(root + 8)) as usize;
        assert_eq!(
            u64::from_le_bytes(bytes[maps..maps + 8].try_into().unwrap()),
            12416
        );
    }
}
