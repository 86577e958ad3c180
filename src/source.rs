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
    {
        const PAGE: usize = 4096;
        if len < 16 * PAGE {
            return;
        }
        let first = (start as usize).next_multiple_of(PAGE);
        let end = (start as usize + len) & !(PAGE - 1);
        if end <= first {
            return;
        }
        // SAFETY: the range lies inside an allocation this process owns;
        // MADV_POPULATE_WRITE only faults its pages in (as a write would,
        // without writing), so no byte any reference can see changes.
        let rc = unsafe { libc::madvise(first as *mut libc::c_void, end - first, libc::MADV_POPULATE_WRITE) };
        if rc != 0 {
            log::debug!(
                "madvise(MADV_POPULATE_WRITE) failed: {}",
                std::io::Error::last_os_error()
            );
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = (start, len);
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
