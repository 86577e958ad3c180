//! How a cache is opened and bounded.

use crate::clock::{Clock, SystemClock};
use crate::io::IoFactory;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

/// Limits and behaviour of a [`crate::ScopeCache`].
///
/// The defaults are the original cache manager's: 10 GiB, 100 entries, a
/// 24-hour TTL that slides with each access.
///
/// ```
/// use scopecache::CacheConfig;
/// let config = CacheConfig { max_entries: 20, ..CacheConfig::default() };
/// assert_eq!(config.max_size_bytes, 10 << 30);
/// ```
#[derive(Clone)]
pub struct CacheConfig {
    /// Bound on the file's size on disk. A put evicts least-recently-used
    /// entries until the live data, the new scope included, fits, and the
    /// file is compacted before it would grow past the bound.
    pub max_size_bytes: u64,
    /// Bound on the number of entries; a put evicts the least recently used
    /// entries beyond it.
    pub max_entries: usize,
    /// An entry not accessed for this long is expired: `get` misses it and the
    /// next write removes it. `None` keeps entries until evicted.
    pub ttl: Option<Duration>,
    /// Open without write access: every write returns `Error::ReadOnly`.
    /// A file that cannot be opened for writing is opened read-only anyway.
    pub read_only: bool,
    /// Check a bitset's CRC the first time this process gets it (one pass over
    /// its bytes per process). Turning it off makes a first `get` of a huge
    /// scope cheaper, at the price of trusting the disk.
    pub verify_bitsets: bool,
    /// Compact automatically when dead space passes `compact_dead_ratio` of
    /// the file (and at least `compact_min_dead_bytes`).
    pub auto_compact: bool,
    /// When a put must compact to stay within `max_size_bytes`, it first
    /// evicts least-recently-used entries until the live data fill at most
    /// this fraction of `max_size_bytes`, so that one compaction serves the
    /// many puts that then fill the space it freed (a cache at its limit
    /// would otherwise rewrite the whole file on every put). 0.8 by default;
    /// 1.0 evicts only what each put needs.
    pub evict_low_water: f64,
    /// See `auto_compact`; 0.5 by default.
    pub compact_dead_ratio: f64,
    /// See `auto_compact`; 1 MiB by default.
    pub compact_min_dead_bytes: u64,
    /// When the file is corrupt beyond use at open, move it aside to
    /// `<path>.corrupt-<time>` (never delete it) and start an empty cache,
    /// instead of returning `Error::Corrupt`. A file that is not a scopecache
    /// file, or is of another format version, is never moved: it may belong
    /// to someone else, or to a newer build.
    pub quarantine_corrupt: bool,
    /// fsync each commit. Only a throwaway cache (a test) should turn it off:
    /// without it a power loss can lose or tear committed scopes.
    pub fsync: bool,
    /// The clock used for timestamps, TTL and LRU.
    pub clock: Arc<dyn Clock>,
    /// The shared remote tier (feature `remote`): a local miss in `get` pulls
    /// the scope from it, and `put` pushes to it; see [`crate::remote`].
    #[cfg(feature = "remote")]
    pub remote: Option<Arc<crate::remote::Remote>>,
    /// The layer all writes go through; `None` is the real file system.
    /// A seam for fault-injection tests.
    #[doc(hidden)]
    pub io: Option<Arc<dyn IoFactory>>,
}

impl Default for CacheConfig {
    fn default() -> CacheConfig {
        CacheConfig {
            max_size_bytes: 10 << 30,
            max_entries: 100,
            ttl: Some(Duration::from_secs(24 * 3600)),
            read_only: false,
            verify_bitsets: true,
            auto_compact: true,
            evict_low_water: 0.8,
            compact_dead_ratio: 0.5,
            compact_min_dead_bytes: 1 << 20,
            quarantine_corrupt: false,
            fsync: true,
            clock: Arc::new(SystemClock),
            #[cfg(feature = "remote")]
            remote: None,
            io: None,
        }
    }
}

impl fmt::Debug for CacheConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CacheConfig")
            .field("max_size_bytes", &self.max_size_bytes)
            .field("max_entries", &self.max_entries)
            .field("ttl", &self.ttl)
            .field("read_only", &self.read_only)
            .field("verify_bitsets", &self.verify_bitsets)
            .field("auto_compact", &self.auto_compact)
            .field("evict_low_water", &self.evict_low_water)
            .field("compact_dead_ratio", &self.compact_dead_ratio)
            .field("compact_min_dead_bytes", &self.compact_min_dead_bytes)
            .field("quarantine_corrupt", &self.quarantine_corrupt)
            .field("fsync", &self.fsync)
            .field("clock", &self.clock)
            .finish_non_exhaustive()
    }
}

impl CacheConfig {
    pub(crate) fn check(&self) -> crate::Result<()> {
        if self.max_entries == 0 {
            return Err(crate::Error::Config("max_entries must be at least 1".into()));
        }
        if !(self.compact_dead_ratio > 0.0 && self.compact_dead_ratio <= 1.0) {
            return Err(crate::Error::Config(format!(
                "compact_dead_ratio must be in (0, 1], found {}",
                self.compact_dead_ratio
            )));
        }
        if !(self.evict_low_water > 0.0 && self.evict_low_water <= 1.0) {
            return Err(crate::Error::Config(format!(
                "evict_low_water must be in (0, 1], found {}",
                self.evict_low_water
            )));
        }
        Ok(())
    }
}
