//! The bitset region (FORMAT.md §2.4): `ceil(bits / 64)` little-endian u64
//! words, bit i in bit `i % 64` of word `i / 64`, bits past the end zero.
//! Its CRC32 lives in the entry's `BitsRecord` in the index. Encoding for a
//! put, the one CRC check (a first get, compaction and verify all use it),
//! and the in-place view readers get.

use crate::error::{Error, Result};
use crate::index::BitsRecord;
use crate::source::{as_words, words_as_bytes};
use bitvec::prelude::{BitSlice, Lsb0};
use std::path::Path;

/// A caller's bitset as the words to store: its own words where they start
/// on a word boundary (no copy), with the partial last word masked.
pub(crate) struct Encoded<'a> {
    body: &'a [u64],
    last: Option<[u64; 1]>,
    owned: Vec<u64>,
    bits: u64,
}

impl<'a> Encoded<'a> {
    pub(crate) fn new(bits: &'a BitSlice<u64, Lsb0>) -> Encoded<'a> {
        let n = bits.len() as u64;
        if let bitvec::domain::Domain::Region {
            head: None,
            body,
            tail,
        } = bits.domain()
        {
            // load_value clears the dead bits of a partial last word.
            let last = tail.map(|t| [t.load_value()]);
            return Encoded {
                body,
                last,
                owned: Vec::new(),
                bits: n,
            };
        }
        // A slice starting mid-word: copy into words that start at bit 0.
        let mut v = bitvec::vec::BitVec::<u64, Lsb0>::repeat(false, bits.len());
        v.copy_from_bitslice(bits);
        Encoded {
            body: &[],
            last: None,
            owned: v.into_vec(),
            bits: n,
        }
    }

    /// Bytes the region takes.
    pub(crate) fn len(&self) -> u64 {
        BitsRecord::byte_len(self.bits)
    }

    /// The region's bytes, in parts to be written one after another.
    pub(crate) fn parts(&self) -> [&[u8]; 3] {
        [
            words_as_bytes(self.body),
            words_as_bytes(self.last.as_ref().map_or(&[], |w| &w[..])),
            words_as_bytes(&self.owned),
        ]
    }

    /// The record of the region once written at `offset`.
    pub(crate) fn record(&self, offset: u64) -> BitsRecord {
        let mut crc = crc32fast::Hasher::new();
        for p in self.parts() {
            crc.update(p);
        }
        BitsRecord {
            offset,
            bits: self.bits,
            crc: crc.finalize(),
        }
    }
}

/// Checks the bytes a record names (`None`: they lie outside the file)
/// against its CRC. The error says what was expected and what was found.
pub(crate) fn check(path: &Path, bytes: Option<&[u8]>, rec: &BitsRecord) -> Result<()> {
    let bytes = bytes
        .ok_or_else(|| Error::corrupt(path, format!("bitset at {} lies outside the file", rec.offset)))?;
    crate::format::check_crc(path, bytes, rec.crc, || format!("bitset at {}", rec.offset))
}

/// The region's bytes as words (empty when not a whole number of aligned
/// words, which a checked region never is).
pub(crate) fn words(bytes: &[u8]) -> &[u64] {
    as_words(bytes)
}

/// The first `bits` bits of `words`.
pub(crate) fn bits(words: &[u64], bits: u64) -> &BitSlice<u64, Lsb0> {
    let all = BitSlice::<u64, Lsb0>::from_slice(words);
    let n = usize::try_from(bits).unwrap_or(usize::MAX).min(all.len());
    &all[..n]
}
