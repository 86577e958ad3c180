//! The entry index: its records, the base index (an rkyv archive of every
//! live entry and every stored id mapping) and the delta a commit appends
//! over it (FORMAT.md §2.6, §2.7), and the checks each must pass before a
//! reader trusts it. How a chain of deltas is merged is `chain.rs`.

use crate::error::{Error, Result};
use crate::format::{DATA_START, REGION_ALIGN};
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

/// One commit's changes to the generation before it: a link of the index's
/// delta chain (FORMAT.md §2.7). Applying a chain to its base, oldest delta
/// first, each delta's `removed` and then its `upserts`, gives the state.
///
/// A delta introduces regions (its upserts' bitsets, its new mappings) only
/// between `since` and its own offset, which is what lets a reader check it
/// without looking at the rest of the chain.
#[derive(Archive, Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
pub struct DeltaData {
    /// Entries added or replaced, sorted by key bytes, keys unique.
    pub upserts: Vec<EntryRecord>,
    /// Mapping records appended to the chain's table of mappings, which is
    /// the base's `maps` followed by each delta's, oldest first; entries
    /// name mappings by their position in that table.
    pub maps: Vec<MapRecord>,
    /// Keys removed, sorted by key bytes, unique.
    pub removed: Vec<String>,
    /// Where the previous delta of the chain starts; with `prev_len` 0 this
    /// is the first delta after the base.
    pub prev_offset: u64,
    /// The previous delta's length, or 0.
    pub prev_len: u64,
    /// The committed length of the generation this delta follows.
    pub since: u64,
    /// Records in the mapping table before this delta's.
    pub maps_before: u32,
    /// CRC32 of the previous delta.
    pub prev_crc: u32,
    /// 1 for the first delta after the base, one more for each after it.
    pub depth: u32,
}

impl DeltaData {
    pub(crate) fn to_bytes(&self) -> Result<rkyv::util::AlignedVec> {
        rkyv::to_bytes::<rkyv::rancor::Error>(self)
            .map_err(|e| Error::Config(format!("an index delta could not be encoded: {e}")))
    }
}

/// The longest delta chain a writer makes: the next commit writes a new
/// base index instead. Bounds what a fresh reader loads besides the base.
pub(crate) const MAX_CHAIN_DEPTH: u32 = 32;

/// Bytes an entry takes in the index beyond its key and attributes, bounded
/// from above: the 96-byte record plus rkyv's out-of-line strings' padding.
pub(crate) const ENTRY_OVERHEAD: u64 = 160;
/// Bytes a mapping record takes in the index (40, rounded up).
pub(crate) const MAP_OVERHEAD: u64 = 48;
/// Bytes of the index's root and vectors.
pub(crate) const INDEX_OVERHEAD: u64 = 64;

/// Bytes an entry with this key and attributes adds to the index.
pub(crate) fn entry_bytes(key_len: usize, attributes_len: usize) -> u64 {
    ENTRY_OVERHEAD + key_len as u64 + attributes_len as u64
}

impl IndexData {
    pub(crate) fn to_bytes(&self) -> Result<rkyv::util::AlignedVec> {
        rkyv::to_bytes::<rkyv::rancor::Error>(self)
            .map_err(|e| Error::Config(format!("the index could not be encoded: {e}")))
    }
}

/// What the checks of a base index or a delta found that later checks of
/// a whole chain need.
#[derive(Clone, Debug, Default)]
pub(crate) struct Checked {
    /// The largest stamp slot an entry names, if any entry does.
    pub max_slot: Option<u32>,
    /// The non-empty regions named, as sorted, disjoint (start, end) pairs.
    pub regions: Vec<(u64, u64)>,
}

impl Checked {
    /// True when `[start, end)` shares no byte with a region named here.
    pub(crate) fn disjoint_from(&self, start: u64, end: u64) -> bool {
        let i = self.regions.partition_point(|&(_, e)| e <= start);
        self.regions.get(i).is_none_or(|&(s, _)| s >= end)
    }
}

/// What a listed region is, for error messages: kept in the low bits of
/// its start, which are zero since regions are 64-aligned.
const BITSET: u64 = 0;
/// See [`BITSET`].
const ID_MAPPING: u64 = 1;
const KIND_MASK: u64 = REGION_ALIGN - 1;

fn kind_name(start_and_kind: u64) -> &'static str {
    if start_and_kind & KIND_MASK == ID_MAPPING {
        "an id mapping"
    } else {
        "a bitset"
    }
}

/// Collects regions and checks them, for `check_base` and `check_delta`.
struct Regions<'p> {
    path: &'p Path,
    /// Every region must lie in `[lo, hi)`.
    lo: u64,
    hi: u64,
    /// The regions of mappings and bitsets in the order named, as
    /// (start | kind, end): 16 bytes each, since a base of n entries names
    /// 2n of them and a fresh process pays a page fault for every 4 KiB of
    /// a new list.
    list: Vec<(u64, u64)>,
    /// A few regions kept out of `list` (the index itself, the stamp
    /// table), which lie apart from the others in the file: in `list`
    /// they would break the order a compacted file's regions come in, and
    /// cost a sort at every fresh open. Each is checked against the sorted
    /// list by binary search.
    aside: Vec<(u64, u64, &'static str)>,
}

impl Regions<'_> {
    #[inline]
    fn add(&mut self, offset: u64, len: u64, kind: u64, whose: &dyn Fn() -> String) -> Result<()> {
        let end = self.check(offset, len, kind_name(kind), whose)?;
        if len > 0 {
            // The check made offset a multiple of REGION_ALIGN.
            self.list.push((offset | kind, end));
        }
        Ok(())
    }

    /// [`Regions::add`] for a region to keep in `aside`.
    fn add_aside(&mut self, offset: u64, len: u64, what: &'static str) -> Result<()> {
        let end = self.check(offset, len, what, &String::new)?;
        if len > 0 {
            self.aside.push((offset, end, what));
        }
        Ok(())
    }

    /// The end of the region `offset`+`len` if it lies within bounds.
    #[inline]
    fn check(&self, offset: u64, len: u64, what: &'static str, whose: &dyn Fn() -> String) -> Result<u64> {
        match offset.checked_add(len) {
            Some(end) if offset >= self.lo && offset.is_multiple_of(REGION_ALIGN) && end <= self.hi => {
                Ok(end)
            }
            _ => Err(self.outside(offset, len, what, whose)),
        }
    }

    #[cold]
    #[inline(never)]
    fn outside(&self, offset: u64, len: u64, what: &'static str, whose: &dyn Fn() -> String) -> Error {
        Error::corrupt(
            self.path,
            format!(
                "index: {} {what} at {offset}+{len} lies outside {}..{}",
                whose(),
                self.lo,
                self.hi
            ),
        )
    }

    /// Sorts the regions and refuses any two that overlap.
    fn finish(mut self, max_slot: Option<u32>) -> Result<Checked> {
        let overlap = |(a_start, a_end, a): (u64, u64, &str), (b_start, _, b): (u64, u64, &str)| {
            Error::corrupt(
                self.path,
                format!(
                    "index: {a} at {a_start}..{a_end} overlaps {b} at {b_start}: regions never share bytes"
                ),
            )
        };
        let named = |(s, e): (u64, u64)| (s & !KIND_MASK, e, kind_name(s));
        sort_by_start(&mut self.list);
        for w in self.list.windows(2) {
            if w[1].0 & !KIND_MASK < w[0].1 {
                return Err(overlap(named(w[0]), named(w[1])));
            }
        }
        for (k, &r) in self.aside.iter().enumerate() {
            // The first listed region that ends after r starts: r overlaps
            // the list iff that one starts before r ends.
            let i = self.list.partition_point(|&(_, e)| e <= r.0);
            if let Some(&other) = self.list.get(i).filter(|o| o.0 & !KIND_MASK < r.1) {
                return Err(overlap(r, named(other)));
            }
            if let Some(&other) = self.aside[..k].iter().find(|o| o.0 < r.1 && r.0 < o.1) {
                return Err(overlap(r, other));
            }
        }
        let mut regions = self.list;
        for r in &mut regions {
            r.0 &= !KIND_MASK;
        }
        for &(s, e, _) in &self.aside {
            let at = regions.partition_point(|&(rs, _)| rs < s);
            regions.insert(at, (s, e));
        }
        Ok(Checked { max_slot, regions })
    }
}

/// Sorts regions by start offset in O(n): nothing when they already are
/// (a compacted file lays its regions out in key order), otherwise an LSD
/// radix sort on the 64-byte unit of the start. A base index of n entries
/// names 2n regions, and this runs at every fresh open, where a comparison
/// sort cost more than everything else the open does.
fn sort_by_start(list: &mut Vec<(u64, u64)>) {
    if list.windows(2).all(|w| w[0].0 <= w[1].0) {
        return;
    }
    if list.len() < 256 {
        list.sort_unstable_by_key(|r| r.0);
        return;
    }
    const BITS: u32 = 11;
    let unit = |r: &(u64, u64)| r.0 / REGION_ALIGN;
    let max = list.iter().map(unit).max().unwrap_or(0);
    let passes = (u64::BITS - max.leading_zeros()).div_ceil(BITS);
    let mut from = std::mem::take(list);
    let mut to = from.clone();
    for pass in 0..passes {
        let digit = |r: &(u64, u64)| ((unit(r) >> (pass * BITS)) & ((1 << BITS) - 1)) as usize;
        let mut at = vec![0usize; 1 << BITS];
        for r in &from {
            at[digit(r)] += 1;
        }
        let mut sum = 0;
        for c in at.iter_mut() {
            (*c, sum) = (sum, sum + *c);
        }
        for r in &from {
            let d = digit(r);
            to[at[d]] = *r;
            at[d] += 1;
        }
        std::mem::swap(&mut from, &mut to);
    }
    *list = from;
}

/// Checks `entries` (sorted, valid keys, mappings among the first
/// `map_count` of the table `map_bits` describes) and adds their bitsets
/// to `regions`; returns the largest slot named.
fn check_entries<'a>(
    path: &Path,
    entries: impl Iterator<Item = &'a ArchivedEntryRecord>,
    map_count: usize,
    map_ids: impl Fn(usize) -> Option<u64>,
    regions: &mut Regions<'_>,
) -> Result<Option<u32>> {
    let bad = |what: String| Err(Error::corrupt(path, format!("index: {what}")));
    let mut prev: Option<&str> = None;
    let mut max_slot: Option<u32> = None;
    for e in entries {
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
            let Some(count) = map_ids(map as usize).filter(|_| (map as usize) < map_count) else {
                return bad(format!("entry {key:?} names mapping {map} of {map_count}"));
            };
            if count != bits.bits.to_native() {
                return bad(format!(
                    "entry {key:?}: bitset of {} bits with a mapping of {count} ids",
                    bits.bits
                ));
            }
            let len = BitsRecord::byte_len(bits.bits.to_native());
            regions.add(bits.offset.to_native(), len, BITSET, &|| {
                format!("entry {key:?}:")
            })?;
        }
        let slot = e.slot.to_native();
        max_slot = Some(max_slot.map_or(slot, |m| m.max(slot)));
    }
    Ok(max_slot)
}

/// Checks a base index against everything rkyv's validation cannot know
/// (FORMAT.md §2.6): sort order, references between tables, that every
/// region lies below the index's own end, and that no two regions overlap,
/// the stamp table `stamps` (offset, capacity) included when it lies below
/// that end too. After this, readers trust the index's structure (never its
/// regions' contents, which carry their own CRCs).
pub(crate) fn check_base(
    path: &Path,
    idx: &ArchivedIndexData,
    index_offset: u64,
    index_len: u64,
    stamps: Option<(u64, u32)>,
) -> Result<Checked> {
    let end = index_offset.saturating_add(index_len);
    let mut regions = Regions {
        path,
        lo: DATA_START,
        hi: end,
        list: Vec::with_capacity(2 * idx.entries.len() + idx.maps.len()),
        aside: Vec::with_capacity(2),
    };
    regions.add_aside(index_offset, index_len, "the index")?;
    if let Some((offset, capacity)) = stamps {
        regions.add_aside(offset, stamps::table_len(capacity), "the access-stamp table")?;
    }
    for (i, m) in idx.maps.iter().enumerate() {
        regions.add(m.offset.to_native(), m.len.to_native(), ID_MAPPING, &|| {
            format!("mapping {i}:")
        })?;
    }
    let map_ids = |i: usize| idx.maps.get(i).map(|m| m.count.to_native());
    let max_slot = check_entries(path, idx.entries.iter(), idx.maps.len(), map_ids, &mut regions)?;
    regions.finish(max_slot)
}

/// Checks one delta at `offset`, the `depth`-th of its chain, over a
/// mapping table of `maps_before` records (`map_ids(i)`: the id count of
/// record i): keys sorted and valid, mappings named that exist, and every
/// region it introduces inside `[since, offset)` and disjoint from the
/// others it introduces. The chain's own links (`since`, `maps_before`,
/// the previous delta) are checked by the chain.
pub(crate) fn check_delta(
    path: &Path,
    d: &ArchivedDeltaData,
    offset: u64,
    map_ids: &dyn Fn(usize) -> Option<u64>,
) -> Result<Checked> {
    let maps_before = d.maps_before.to_native() as usize;
    let mut regions = Regions {
        path,
        lo: d.since.to_native().max(DATA_START),
        hi: offset,
        list: Vec::with_capacity(2 * d.upserts.len() + d.maps.len()),
        aside: Vec::new(),
    };
    for (i, m) in d.maps.iter().enumerate() {
        regions.add(m.offset.to_native(), m.len.to_native(), ID_MAPPING, &|| {
            format!("delta mapping {i}:")
        })?;
    }
    let all_ids = |i: usize| {
        if i < maps_before {
            map_ids(i)
        } else {
            d.maps.get(i - maps_before).map(|m| m.count.to_native())
        }
    };
    let map_count = maps_before + d.maps.len();
    let max_slot = check_entries(path, d.upserts.iter(), map_count, all_ids, &mut regions)?;
    let mut prev: Option<&str> = None;
    for k in d.removed.iter() {
        let k = k.as_str();
        if crate::key::check(k).is_err() || prev.is_some_and(|p| p >= k) {
            return Err(Error::corrupt(
                path,
                format!("index delta: removed key {k:?} is invalid or out of order"),
            ));
        }
        prev = Some(k);
    }
    regions.finish(max_slot)
}

impl ArchivedIndexData {
    /// The position of `key` among the entries, by binary search.
    pub(crate) fn find(&self, key: &str) -> Option<usize> {
        self.entries.binary_search_by(|e| e.key.as_str().cmp(key)).ok()
    }
}

impl ArchivedEntryRecord {
    /// The owned record.
    pub(crate) fn to_record(&self) -> EntryRecord {
        EntryRecord {
            key: self.key.as_str().to_owned(),
            created_us: self.created_us.to_native(),
            accessed_us: self.accessed_us.to_native(),
            slot: self.slot.to_native(),
            node_map: self.node_map.to_native(),
            link_map: self.link_map.to_native(),
            nodes: self.nodes.to_record(),
            links: self.links.to_record(),
            attributes: self.attributes.as_str().to_owned(),
        }
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
        assert_eq!(
            (size_of::<ArchivedDeltaData>(), align_of::<ArchivedDeltaData>()),
            (64, 8)
        );
        let d = [
            offset_of!(ArchivedDeltaData, upserts),
            offset_of!(ArchivedDeltaData, maps),
            offset_of!(ArchivedDeltaData, removed),
            offset_of!(ArchivedDeltaData, prev_offset),
            offset_of!(ArchivedDeltaData, prev_len),
            offset_of!(ArchivedDeltaData, since),
            offset_of!(ArchivedDeltaData, maps_before),
            offset_of!(ArchivedDeltaData, prev_crc),
            offset_of!(ArchivedDeltaData, depth),
        ];
        assert_eq!(d, [0, 8, 16, 24, 32, 40, 48, 52, 56]);
    }

    #[test]
    fn regions_sort_by_start() {
        let mut rng = 0x2545_F491_4F6C_DD1Du64;
        for n in [0usize, 1, 5, 300, 5000] {
            let mut v: Vec<(u64, u64)> = (0..n as u64)
                .map(|i| {
                    rng ^= rng << 13;
                    rng ^= rng >> 7;
                    rng ^= rng << 17;
                    let start = (rng % (1 << 40)) / 64 * 64;
                    // A kind in the low bits, as the checks keep it.
                    (start | (i % 2), start + 64)
                })
                .collect();
            let mut want = v.clone();
            want.sort_by_key(|r| r.0);
            sort_by_start(&mut v);
            assert_eq!(v, want, "n = {n}");
        }
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
