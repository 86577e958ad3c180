//! Building an id map in memory from an iterator of ids.
//!
//! One pass over the iterator copies the ids into temporary chunks (their
//! count and total length fix the layout), then the region is allocated
//! once, the temporaries are moved into it and freed as they go, and the
//! slots, the block table, the digest and the header are filled in.
//!
//! The slots are placed by [`place`], bucket by bucket, with no random write
//! per id. Beyond the region, the build holds the chunks and the end
//! offsets (4 bytes per id) while collecting, and 2 bytes per id while
//! placing. From 65,536 ids the placement, and from a 4 MiB body the copies
//! into the region and the digest, use a second thread (up to four for the
//! placement); smaller maps start no thread.

use xxhash_rust::xxh3::xxh3_128;

use super::layout::{Header, Layout, BLOCK_SIZE, HEADER_LEN, MAX_IDS, WIDE_SLOTS_MIN_COUNT};
use super::IdMap;
use crate::source::{advise_huge_pages, AlignedBuf};
use crate::{Error, Result};

pub(super) mod place;

/// Entry widths for a build. The defaults choose the narrowest widths that
/// hold the values; forcing a wider width gives a larger region that every
/// reader accepts, which lets tests reach the wide code paths with few ids.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct BuildOptions {
    /// Write 8-byte slots even below 2^24 ids.
    pub(crate) force_wide_slots: bool,
    /// Write u64 offsets even below 4 GiB of id bytes.
    pub(crate) force_wide_offsets: bool,
}

/// Largest temporary chunk of id bytes. Chunks, unlike one growing vector,
/// are never copied while collecting and can be freed one at a time while
/// the region fills, which keeps the peak memory near the region's size.
const MAX_CHUNK: usize = 32 << 20;
/// First chunk size, so that small maps do not reserve megabytes.
const MIN_CHUNK: usize = 4 << 10;
/// Bodies below this size get their digest, and their offsets and strings
/// copied, on the calling thread: a thread would cost more than it saves.
const PARALLEL_DIGEST_MIN: usize = 4 << 20;

/// The id bytes, collected in chunks.
struct Chunks {
    chunks: Vec<Vec<u8>>,
    len: u64,
}

impl Chunks {
    #[inline(always)]
    fn push(&mut self, bytes: &[u8]) {
        self.len += bytes.len() as u64;
        if let Some(chunk) = self.chunks.last_mut() {
            if chunk.capacity() - chunk.len() >= bytes.len() {
                chunk.extend_from_slice(bytes);
                return;
            }
        }
        self.spill(bytes);
    }

    /// Fills the last chunk and continues in new ones.
    #[inline(never)]
    fn spill(&mut self, mut bytes: &[u8]) {
        while !bytes.is_empty() {
            let full = self.chunks.last().is_none_or(|c| c.len() == c.capacity());
            if full {
                let next = self
                    .chunks
                    .last()
                    .map_or(MIN_CHUNK, |c| c.capacity().saturating_mul(2).min(MAX_CHUNK));
                let chunk = Vec::with_capacity(next);
                advise_huge_pages(chunk.as_ptr(), chunk.capacity());
                self.chunks.push(chunk);
            }
            if let Some(chunk) = self.chunks.last_mut() {
                let take = (chunk.capacity() - chunk.len()).min(bytes.len());
                let (now, later) = bytes.split_at(take);
                chunk.extend_from_slice(now);
                bytes = later;
            }
        }
    }
}

/// The end offset of each id, narrow until the total passes `u32::MAX`.
enum Ends {
    Narrow(Vec<u32>),
    Wide(Vec<u64>),
}

impl Ends {
    fn len(&self) -> usize {
        match self {
            Ends::Narrow(v) => v.len(),
            Ends::Wide(v) => v.len(),
        }
    }

    fn push(&mut self, end: u64) {
        match self {
            Ends::Narrow(v) => match u32::try_from(end) {
                Ok(e) => v.push(e),
                Err(_) => {
                    let mut wide: Vec<u64> = Vec::with_capacity(v.len() + 1);
                    wide.extend(v.iter().map(|&e| u64::from(e)));
                    wide.push(end);
                    *self = Ends::Wide(wide);
                }
            },
            Ends::Wide(v) => v.push(end),
        }
    }

    /// Writes offsets[1..=N] into the offsets section; offsets[0] is the
    /// zero already there.
    fn write(self, section: &mut [u8], wide: bool) {
        let width = if wide { 8 } else { 4 };
        let dst = section.chunks_exact_mut(width).skip(1);
        match self {
            Ends::Narrow(v) => {
                for (d, e) in dst.zip(v) {
                    if wide {
                        d.copy_from_slice(&u64::from(e).to_le_bytes());
                    } else {
                        d.copy_from_slice(&e.to_le_bytes());
                    }
                }
            }
            // Only reached with wide offsets: Ends widens only past u32::MAX.
            Ends::Wide(v) => {
                for (d, e) in dst.zip(v) {
                    d.copy_from_slice(&e.to_le_bytes());
                }
            }
        }
    }
}

/// Builds a map from ids in index order.
pub(crate) fn build<I, S>(ids: I, options: BuildOptions) -> Result<IdMap>
where
    I: IntoIterator<Item = S>,
    S: AsRef<str>,
{
    let iter = ids.into_iter();
    // The hint is only a lower bound and may be anything; cap what it reserves.
    let hint = iter.size_hint().0.min(1 << 24);
    let ends_buf: Vec<u32> = Vec::with_capacity(hint);
    advise_huge_pages(ends_buf.as_ptr().cast(), ends_buf.capacity() * 4);
    let mut ends = Ends::Narrow(ends_buf);
    let mut strings = Chunks {
        chunks: Vec::new(),
        len: 0,
    };
    for id in iter {
        if ends.len() as u64 >= MAX_IDS {
            return Err(Error::TooManyIds {
                count: MAX_IDS + 1,
                max: MAX_IDS,
            });
        }
        strings.push(id.as_ref().as_bytes());
        ends.push(strings.len);
    }
    let count = ends.len() as u64;
    let wide_slots = count >= WIDE_SLOTS_MIN_COUNT || options.force_wide_slots;
    let wide_offsets = strings.len > u64::from(u32::MAX) || options.force_wide_offsets;
    let layout = Layout::new(count, strings.len, wide_slots, wide_offsets, BLOCK_SIZE)
        .ok_or(Error::TooManyIds { count, max: MAX_IDS })?;
    let mut buf = AlignedBuf::zeroed(layout.region_len);
    advise_huge_pages(buf.as_bytes().as_ptr(), layout.region_len);
    let (head, body) = buf.as_bytes_mut().split_at_mut(layout.body_start);
    {
        let (offsets, rest) = body.split_at_mut(layout.slots_start);
        let (slots, strings_section) = rest.split_at_mut(layout.strings_start - layout.slots_start);
        // The two sections fill on two threads for a large body: both are
        // mostly first touches of fresh pages.
        let jobs = vec![
            Fill::Offsets(ends, &mut *offsets),
            Fill::Strings(strings.chunks, &mut *strings_section),
        ];
        let fill = |job| match job {
            Fill::Offsets(ends, section) => ends.write(section, wide_offsets),
            Fill::Strings(chunks, section) => copy_chunks(chunks, section),
        };
        if layout.body_len >= PARALLEL_DIGEST_MIN {
            place::in_parallel(jobs, fill)?;
        } else {
            jobs.into_iter().for_each(fill);
        }
        let ids = Ids {
            offsets,
            strings: strings_section,
            wide: wide_offsets,
        };
        if wide_slots {
            place::fill_slots::<true>(&layout, &ids, slots)?;
        } else {
            place::fill_slots::<false>(&layout, &ids, slots)?;
        }
    }
    let body: &[u8] = body;
    let (header_bytes, table) = head.split_at_mut(HEADER_LEN);
    let digest = table_and_digest(&layout, body, table);
    let header = Header {
        layout,
        digest,
        table_crc: crc32fast::hash(&table[..layout.table_entries_len()]),
    };
    header_bytes.copy_from_slice(&header.encode());
    log::debug!(
        "built id map: {} ids, {} string bytes, {} region bytes",
        layout.count,
        layout.strings_len,
        layout.region_len
    );
    Ok(IdMap::from_built(buf, header))
}

/// One of the two copies into the region before the slots are filled.
enum Fill<'a> {
    /// The end offsets into the offsets section.
    Offsets(Ends, &'a mut [u8]),
    /// The id bytes into the strings section.
    Strings(Vec<Vec<u8>>, &'a mut [u8]),
}

/// Copies the chunks one after the other into `section`, freeing each as
/// soon as it is copied. The chunks hold exactly the section's id bytes.
fn copy_chunks(chunks: Vec<Vec<u8>>, section: &mut [u8]) {
    let mut at = 0;
    for chunk in chunks {
        section[at..at + chunk.len()].copy_from_slice(&chunk);
        at += chunk.len();
    }
}

/// Read access to the offsets and strings sections while the slots are
/// being written. The sections were written just before, so every offset
/// is in range and the slicing below cannot fail.
struct Ids<'a> {
    offsets: &'a [u8],
    strings: &'a [u8],
    wide: bool,
}

impl Ids<'_> {
    #[inline(always)]
    fn offset(&self, i: usize) -> usize {
        if self.wide {
            let mut b = [0u8; 8];
            b.copy_from_slice(&self.offsets[i * 8..i * 8 + 8]);
            u64::from_le_bytes(b) as usize
        } else {
            let mut b = [0u8; 4];
            b.copy_from_slice(&self.offsets[i * 4..i * 4 + 4]);
            u32::from_le_bytes(b) as usize
        }
    }

    #[inline(always)]
    fn get(&self, i: usize) -> &[u8] {
        &self.strings[self.offset(i)..self.offset(i + 1)]
    }
}

/// Fills the block-CRC table and returns the body digest, computing the two
/// on separate threads when the body is large enough to pay for it.
fn table_and_digest(layout: &Layout, body: &[u8], table: &mut [u8]) -> u128 {
    let fill = |table: &mut [u8]| {
        for (entry, block) in table.chunks_exact_mut(4).zip(body.chunks(layout.block_size)) {
            entry.copy_from_slice(&crc32fast::hash(block).to_le_bytes());
        }
    };
    if body.len() < PARALLEL_DIGEST_MIN {
        fill(table);
        return xxh3_128(body);
    }
    std::thread::scope(|scope| {
        let digest = std::thread::Builder::new()
            .name("idmap-digest".to_string())
            .spawn_scoped(scope, || xxh3_128(body));
        fill(table);
        match digest {
            Ok(handle) => handle.join().unwrap_or_else(|_| xxh3_128(body)),
            Err(e) => {
                log::debug!("no thread for the id map digest, computing it inline: {e}");
                xxh3_128(body)
            }
        }
    })
}
