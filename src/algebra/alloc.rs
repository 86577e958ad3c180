//! Result buffers, with the kernel asked to back large ones by huge pages.
//!
//! A fresh zeroed allocation is backed lazily, one 4 KiB page fault per
//! page on first write; for the 48 MB counts of 12 M bits that was half of
//! the whole operation on this project's machine (25-50 ms of faults, 3-8 ms
//! with huge pages). Transparent huge pages are often enabled only for
//! memory that asks for them (`madvise` mode), so large results ask.

/// Bytes of a huge page on x86_64 and aarch64 Linux.
#[cfg(target_os = "linux")]
const HUGE: usize = 2 << 20;

/// A zeroed vector of `n` counters, advised for huge pages if large.
pub(crate) fn zeroed_u32(n: usize) -> Vec<u32> {
    let mut v = vec![0u32; n];
    advise_huge(v.as_mut_ptr().cast(), std::mem::size_of_val(v.as_slice()));
    v
}

/// A zeroed vector of `n` words, advised for huge pages if large.
pub(crate) fn zeroed_u64(n: usize) -> Vec<u64> {
    let mut v = vec![0u64; n];
    advise_huge(v.as_mut_ptr().cast(), std::mem::size_of_val(v.as_slice()));
    v
}

/// Asks the kernel to back the whole huge pages inside `len` bytes at
/// `ptr` with huge pages. Only advice: contents and validity do not change,
/// and a refusal is ignored.
#[cfg(target_os = "linux")]
fn advise_huge(ptr: *mut u8, len: usize) {
    let start = (ptr as usize).next_multiple_of(HUGE);
    let end = (ptr as usize).saturating_add(len) & !(HUGE - 1);
    if end > start {
        // SAFETY: [start, end) lies inside one live allocation of ours
        // (`len` bytes at `ptr`), and is page-aligned. MADV_HUGEPAGE only
        // changes how the kernel backs those pages, never their contents or
        // whether they may be accessed, so no reference into them is
        // affected.
        let r = unsafe { libc::madvise(start as *mut libc::c_void, end - start, libc::MADV_HUGEPAGE) };
        if r != 0 {
            log::debug!("madvise(MADV_HUGEPAGE): {}", std::io::Error::last_os_error());
        }
    }
}

#[cfg(not(target_os = "linux"))]
fn advise_huge(_ptr: *mut u8, _len: usize) {}
