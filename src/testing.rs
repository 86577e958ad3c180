//! Crafting cache files for fault tests and fuzzing: the superblocks and the
//! index decoded into plain structs and written back with valid CRCs, so
//! that a test can reach the checks that lie behind the CRCs (overlapping
//! regions, shared offsets, huge counts) instead of dying at a checksum.
//!
//! Not part of the stable API; compiled only with the `testing` feature.

pub use crate::format::Superblock;
pub use crate::index::{BitsRecord, DeltaData, EntryRecord, IndexData, MapRecord};

use crate::format::{align_up, SUPERBLOCK_LEN, SUPERBLOCK_PAGE};

/// The newest valid superblock of `file` and the state its index names
/// (the base index with its delta chain applied, as one index), or None
/// when the file has no usable superblock or index.
pub fn read(file: &[u8]) -> Option<(Superblock, IndexData)> {
    let slot = |i: u64| -> Option<[u8; SUPERBLOCK_LEN]> {
        let at = usize::try_from(i * SUPERBLOCK_PAGE).ok()?;
        file.get(at..at + SUPERBLOCK_LEN)?.try_into().ok()
    };
    let (a, b) = (slot(0)?, slot(1)?);
    let sb = Superblock::choose(std::path::Path::new(""), [&a, &b]).ok()?;
    let part = |offset: u64, len: u64| -> Option<rkyv::util::AlignedVec<16>> {
        let start = usize::try_from(offset).ok()?;
        let end = start.checked_add(usize::try_from(len).ok()?)?;
        let mut bytes = rkyv::util::AlignedVec::<16>::new();
        bytes.extend_from_slice(file.get(start..end)?);
        Some(bytes)
    };
    let mut idx =
        rkyv::from_bytes::<IndexData, rkyv::rancor::Error>(&part(sb.index_offset, sb.index_len)?).ok()?;
    let mut chain = Vec::new();
    let mut next = (sb.delta_len > 0).then_some((sb.delta_offset, sb.delta_len));
    while let Some((offset, len)) = next {
        if chain.len() > 1024 {
            return None;
        }
        let d = rkyv::from_bytes::<DeltaData, rkyv::rancor::Error>(&part(offset, len)?).ok()?;
        next = (d.prev_len > 0).then_some((d.prev_offset, d.prev_len));
        chain.push(d);
    }
    for d in chain.into_iter().rev() {
        idx.maps.extend(d.maps);
        idx.entries.retain(|e| {
            d.removed.binary_search(&e.key).is_err()
                && d.upserts.binary_search_by(|u| u.key.cmp(&e.key)).is_err()
        });
        idx.entries.extend(d.upserts);
        idx.entries.sort_by(|a, b| a.key.cmp(&b.key));
    }
    Some((sb, idx))
}

/// Appends `index` at the 64-aligned end of `file` and writes `sb`, with the
/// index's offset, length and CRC filled in and no delta, into the slot its
/// generation names, with a valid CRC. `committed_len` is set to the
/// index's end when `fix_len` is true and left as given otherwise.
pub fn write(file: &mut Vec<u8>, mut sb: Superblock, index: &IndexData, fix_len: bool) {
    let Ok(bytes) = index.to_bytes() else { return };
    let at = align_up(file.len() as u64).unwrap_or(u64::MAX);
    file.resize(at as usize, 0);
    file.extend_from_slice(&bytes);
    sb.index_offset = at;
    sb.index_len = bytes.len() as u64;
    sb.index_crc = crc32fast::hash(&bytes);
    (sb.delta_offset, sb.delta_len, sb.delta_crc) = (0, 0, 0);
    if fix_len {
        sb.committed_len = at + bytes.len() as u64;
    }
    write_superblock(file, &sb);
}

/// Writes `sb` into the slot its generation names, with a valid CRC.
pub fn write_superblock(file: &mut [u8], sb: &Superblock) {
    let at = Superblock::slot_offset(sb.generation) as usize;
    if let Some(slot) = file.get_mut(at..at + SUPERBLOCK_LEN) {
        slot.copy_from_slice(&sb.encode());
    }
}

/// The CRC32 of the bytes a bitset record names, or None when they lie
/// outside `file`.
pub fn bits_crc(file: &[u8], rec: &BitsRecord) -> Option<u32> {
    let start = usize::try_from(rec.offset).ok()?;
    let len = usize::try_from(BitsRecord::byte_len(rec.bits)).ok()?;
    Some(crc32fast::hash(file.get(start..start.checked_add(len)?)?))
}
