//! Where the bytes of a read-in-place structure come from: a heap buffer
//! built in this process, or a memory map of the cache file.

use std::path::Path;

/// A byte buffer that a read-in-place structure (an id mapping, a bitset)
/// borrows from. Implemented by heap buffers and by the cache file's mapping.
///
/// Invariant: `bytes()` returns the same slice for the whole life of the value,
/// and the bytes a published index points to are never written again.
pub(crate) trait RegionSource: Send + Sync + 'static {
    /// All bytes of the source.
    ///
    /// Contract: every call returns the same slice (same address, same
    /// length), and its bytes do not change, for as long as the source
    /// lives. Readers in place locate their sections once and rely on it.
    fn bytes(&self) -> &[u8];
    /// The file the bytes come from, for error messages (empty for heap buffers).
    fn path(&self) -> &Path;
}

/// A heap buffer with 64-byte alignment, so that u32 and u64 words inside it
/// are read at their natural alignment just as they are in the mapped file.
pub(crate) struct AlignedBuf {
    words: Vec<[u64; 8]>,
    len: usize,
}

impl AlignedBuf {
    /// A zeroed buffer of `len` bytes.
    pub(crate) fn zeroed(len: usize) -> AlignedBuf {
        AlignedBuf {
            words: vec![[0u64; 8]; len.div_ceil(64)],
            len,
        }
    }

    /// The buffer's bytes.
    pub(crate) fn as_bytes(&self) -> &[u8] {
        let words: &[u64] = self.words.as_flattened();
        // SAFETY: u64 has no padding and any bit pattern is a valid u8, u8's
        // alignment (1) divides u64's, and the byte length is words * 8, which
        // `len` never exceeds (zeroed() rounds the word count up).
        let bytes = unsafe { std::slice::from_raw_parts(words.as_ptr().cast::<u8>(), words.len() * 8) };
        &bytes[..self.len]
    }

    /// The buffer's bytes, writable.
    pub(crate) fn as_bytes_mut(&mut self) -> &mut [u8] {
        let len = self.len;
        let words: &mut [u64] = self.words.as_flattened_mut();
        // SAFETY: as in as_bytes; the borrow is unique because it comes from &mut self.
        let bytes =
            unsafe { std::slice::from_raw_parts_mut(words.as_mut_ptr().cast::<u8>(), words.len() * 8) };
        &mut bytes[..len]
    }
}

impl RegionSource for AlignedBuf {
    fn bytes(&self) -> &[u8] {
        self.as_bytes()
    }
    fn path(&self) -> &Path {
        Path::new("")
    }
}

/// Asks the kernel to back the whole pages inside the `len` bytes at
/// `start`, an allocation this process owns and is about to fill, in one
/// call (MADV_POPULATE_WRITE) rather than one page fault per 4 KiB as the
/// bytes are first written. Only for large buffers; only a hint: failure
/// (a kernel before 5.14) is ignored, and no byte changes.
pub(crate) fn populate(start: *const u8, len: usize) {
    #[cfg(target_os = "linux")]
    if len >= 16 * 4096 {
        advise(start, len, libc::MADV_POPULATE_WRITE, "MADV_POPULATE_WRITE");
    }
    #[cfg(not(target_os = "linux"))]
    let _ = (start, len);
}

/// Asks the kernel to back the whole 2 MiB pages inside the `len` bytes at
/// `start`, an allocation this process owns, with huge pages when they are
/// first touched.
///
/// Why: on a large map, every random access to the slots, offsets or
/// strings would otherwise miss the TLB, and under virtualisation each such
/// page walk costs about as much as the cache miss itself; first-touch page
/// faults also drop 512-fold. It is only a hint: failure is ignored, and
/// the bytes are neither read nor written.
pub(crate) fn advise_huge_pages(start: *const u8, len: usize) {
    #[cfg(target_os = "linux")]
    if len >= 2 * (2 << 20) {
        advise(start, len, libc::MADV_HUGEPAGE, "MADV_HUGEPAGE");
    }
    #[cfg(not(target_os = "linux"))]
    let _ = (start, len);
}

/// madvise over the whole 4 KiB pages inside the `len` bytes at `start`;
/// a failure is logged at debug level and otherwise ignored. `advice` must
/// be one that never changes the bytes (the two callers above).
#[cfg(target_os = "linux")]
fn advise(start: *const u8, len: usize, advice: libc::c_int, name: &str) {
    const PAGE: usize = 4096;
    let first = (start as usize).next_multiple_of(PAGE);
    let end = (start as usize).saturating_add(len) & !(PAGE - 1);
    if end <= first {
        return;
    }
    // SAFETY: the range lies inside an allocation this process owns (the
    // callers' contract); MADV_HUGEPAGE and MADV_POPULATE_WRITE change only
    // how the kernel backs the pages, never their contents, so no byte any
    // Rust reference can see changes.
    let rc = unsafe { libc::madvise(first as *mut libc::c_void, end - first, advice) };
    if rc != 0 {
        log::debug!("madvise({name}) failed: {}", std::io::Error::last_os_error());
    }
}

/// Views 8-aligned bytes as little-endian u64 words (the target is
/// little-endian, see lib.rs). Returns an empty slice if `bytes` is not
/// 8-aligned or not a whole number of words, which regions never are.
pub(crate) fn as_words(bytes: &[u8]) -> &[u64] {
    // SAFETY: every bit pattern is a valid u64; align_to only yields the
    // middle part at u64 alignment and within the input's bounds.
    let (head, words, tail) = unsafe { bytes.align_to::<u64>() };
    if head.is_empty() && tail.is_empty() {
        words
    } else {
        &[]
    }
}

/// Views u64 words as their little-endian bytes (the target is little-endian).
pub(crate) fn words_as_bytes(words: &[u64]) -> &[u8] {
    // SAFETY: u64 has no padding and any byte value is a valid u8; u8's
    // alignment divides u64's; the byte length is exactly words * 8.
    unsafe { std::slice::from_raw_parts(words.as_ptr().cast::<u8>(), std::mem::size_of_val(words)) }
}
