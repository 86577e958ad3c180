//! Fork detection: a counter that the child side of every `fork()` bumps.
//!
//! A process forked while another thread held one of a cache handle's
//! internal locks (a put with the GIL released, say) would deadlock on that
//! lock in the child, and file locks are shared with the parent through the
//! inherited descriptor. So a handle remembers the counter it was opened
//! under, and after a fork the child opens the file again instead of using
//! the inherited handle (see `cache.rs`).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Once;

static FORKS: AtomicU64 = AtomicU64::new(0);
static INSTALL: Once = Once::new();

extern "C" fn in_child() {
    // Async-signal-safe: one atomic add, no allocation, no lock.
    FORKS.fetch_add(1, Ordering::Relaxed);
}

/// Installs the child-side fork handler once per process.
pub fn install() {
    INSTALL.call_once(|| {
        // SAFETY: `in_child` is a plain `extern "C"` function with no captured
        // state that only performs an atomic add, which is allowed in a child
        // after fork; the other two handlers are absent.
        let rc = unsafe { libc::pthread_atfork(None, None, Some(in_child)) };
        if rc != 0 {
            log::warn!("pthread_atfork failed ({rc}): forked children will not reopen cache files");
        }
    });
}

/// How many forks this process descends from since the module was loaded.
pub fn generation() -> u64 {
    FORKS.load(Ordering::Relaxed)
}
