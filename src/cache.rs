//! `ScopeCache`: the public face of the engine. Readers take no lock and see
//! the newest committed generation (current.rs); writers serialise on an
//! exclusive lock of the file and publish through the superblocks
//! (commit.rs).

use crate::bitset;
use crate::commit::WriteMode;
use crate::config::CacheConfig;
use crate::error::{Error, Result};
use crate::eviction::{self, aligned, Incoming};
use crate::format::Counter;
use crate::idmap::IdMap;
use crate::index::{self, EntryRecord};
use crate::io::{IoFactory, RealIo};
use crate::key;
use crate::scope::{EntryInfo, Scope};
use crate::snapshot::Snapshot;
use crate::stats::{CompactReport, MaintainReport};
use bitvec::prelude::{BitSlice, Lsb0};
use serde_json::{Map, Value};
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicI64;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Instant;

/// The parts of a scope to put, borrowed from the caller.
///
/// `nodes.len()` must equal `node_ids.len()` and `links.len()` must equal
/// `link_ids.len()`.
#[derive(Clone, Copy, Debug)]
pub struct ScopeData<'a> {
    /// Covered nodes: bit i is node `node_ids.id(i)`.
    pub nodes: &'a BitSlice<u64, Lsb0>,
    /// Covered links: bit i is link `link_ids.id(i)`.
    pub links: &'a BitSlice<u64, Lsb0>,
    /// The node id mapping.
    pub node_ids: &'a IdMap,
    /// The link id mapping.
    pub link_ids: &'a IdMap,
    /// The run's configuration attributes.
    pub attributes: &'a Map<String, Value>,
}

/// A cache of coverage scopes in one memory-mapped file, shared by any
/// number of threads (it is `Send + Sync`) and processes.
///
/// - `get` takes no lock, costs microseconds whatever the scope's size, and
///   returns a [`Scope`] that reads the file in place.
/// - `put`, `remove`, `clear`, `maintain` and `compact` take the file's
///   exclusive lock for their duration; each is durable when it returns Ok.
///
/// ```
/// # fn main() -> scopecache::Result<()> {
/// use scopecache::{ScopeCache, CacheConfig, ScopeData, IdMap};
/// use bitvec::prelude::*;
/// let dir = tempfile::tempdir().unwrap();
/// let cache = ScopeCache::open(dir.path().join("cache.scope"), CacheConfig::default())?;
/// let node_ids = IdMap::from_ids(["n0", "n1", "n2"])?;
/// let link_ids = IdMap::from_ids(["n0-n1"])?;
/// let nodes = bitvec![u64, Lsb0; 1, 0, 1];
/// let links = bitvec![u64, Lsb0; 1];
/// let mut attrs = serde_json::Map::new();
/// attrs.insert("run".into(), "r1".into());
/// cache.put("run-1", &ScopeData { nodes: &nodes, links: &links, node_ids: &node_ids,
///                                 link_ids: &link_ids, attributes: &attrs })?;
/// let scope = cache.get("run-1")?.expect("stored");
/// assert_eq!(scope.nodes(), nodes.as_bitslice());
/// assert_eq!(scope.attributes()["run"], "r1");
/// assert_eq!(cache.list()?.len(), 1);
/// # Ok(()) }
/// ```
pub struct ScopeCache {
    pub(crate) path: PathBuf,
    pub(crate) config: CacheConfig,
    pub(crate) io: Arc<dyn IoFactory>,
    pub(crate) read_only: bool,
    /// The snapshot reads use; see current.rs for when it changes.
    pub(crate) current: RwLock<Arc<Snapshot>>,
    /// Serialises this handle's writers, and remembers a failed fsync.
    pub(crate) writer: Mutex<WriterState>,
    /// The handle's monotonic time base.
    pub(crate) started: Instant,
    /// When (nanoseconds after `started`) a retired file last made this
    /// handle look at the path.
    pub(crate) last_move_check: AtomicI64,
}

pub(crate) struct WriterState {
    pub poisoned: bool,
    /// The state this handle's last commit left, for its next transaction.
    pub model: Option<crate::model::Model>,
}

impl std::fmt::Debug for ScopeCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let cur = crate::current::read_lock(&self.current);
        f.debug_struct("ScopeCache")
            .field("path", &self.path)
            .field("read_only", &self.read_only)
            .field("generation", &cur.generation())
            .field("entries", &cur.len())
            .finish()
    }
}

impl ScopeCache {
    /// Opens the cache file at `path`, creating it if missing (unless
    /// `config.read_only`). A file that cannot be opened for writing is
    /// opened read-only.
    ///
    /// Cost: a few system calls, one copy, one CRC pass and one validation
    /// of the index (proportional to the number of entries, not their size).
    ///
    /// Errors: `Error::Corrupt` when both superblocks or the index fail
    /// their checks (unless `config.quarantine_corrupt`), `NotACacheFile`,
    /// `UnsupportedVersion`, `Io`.
    pub fn open(path: impl AsRef<Path>, config: CacheConfig) -> Result<ScopeCache> {
        config.check()?;
        let path = path.as_ref().to_path_buf();
        let io: Arc<dyn IoFactory> = config.io.clone().unwrap_or_else(|| Arc::new(RealIo));
        let (snap, read_only) = crate::open::open_cache(&path, &config, io.as_ref())?;
        Ok(ScopeCache {
            path,
            config,
            io,
            read_only,
            current: RwLock::new(Arc::new(snap)),
            writer: Mutex::new(WriterState {
                poisoned: false,
                model: None,
            }),
            started: Instant::now(),
            last_move_check: AtomicI64::new(i64::MIN),
        })
    }

    /// The path of the cache file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The configuration the cache was opened with.
    pub fn config(&self) -> &CacheConfig {
        &self.config
    }

    /// True when writes are refused with `Error::ReadOnly`.
    pub fn is_read_only(&self) -> bool {
        self.read_only
    }

    /// Gets the scope stored under `key`, or None if it is absent, expired,
    /// or failed its checks (then it is logged, counted and dropped, so the
    /// cache heals).
    ///
    /// Records the access (for LRU and the sliding TTL) in the file's shared
    /// stamp table, without taking the write lock.
    ///
    /// Cost: a binary search of the index; the first get of a scope in a
    /// process also checks its bitsets' CRCs (one pass over their bytes,
    /// see [`CacheConfig::verify_bitsets`]) and the headers of its mappings.
    /// Later gets of the same scope cost well under a microsecond.
    pub fn get(&self, key: &str) -> Result<Option<Scope>> {
        let found = self.get_local(key)?;
        #[cfg(feature = "remote")] // remote tier hook: read-through on a local miss
        if found.is_none() {
            return crate::remote::read_through(self, key);
        }
        Ok(found)
    }

    /// `get` of the local file alone; the remote tier never sees it.
    pub(crate) fn get_local(&self, key: &str) -> Result<Option<Scope>> {
        key::validate(key)?;
        let snap = self.snapshot()?;
        let Some((pos, e)) = snap.find(key).and_then(|p| Some((p, snap.entry(p)?))) else {
            snap.count(Counter::Misses, 1);
            return Ok(None);
        };
        let now = self.config.clock.now().timestamp_micros();
        if self.is_expired(snap.last_access_us(e), now) {
            snap.count(Counter::Misses, 1);
            return Ok(None);
        }
        match snap.resolve(pos, self.config.verify_bitsets) {
            Ok(r) => {
                snap.touch(e, now);
                snap.count(Counter::Hits, 1);
                Ok(Some(Scope::new(Arc::clone(&snap), pos, r)))
            }
            Err(err) if err.is_corruption() => {
                log::warn!(
                    "{}: entry {key:?} failed its checks and is dropped: {err}",
                    self.path.display()
                );
                snap.count(Counter::Misses, 1);
                self.heal();
                Ok(None)
            }
            Err(err) => Err(err),
        }
    }

    /// Remote tier hook: the id mapping stored in the file with this digest,
    /// id count and region length, opened in place, if the file holds one.
    #[cfg(feature = "remote")]
    pub(crate) fn stored_map(&self, digest: u128, count: u64, len: u64) -> Result<Option<IdMap>> {
        let snap = self.snapshot()?;
        let found = snap
            .chain()
            .maps()
            .find(|m| m.digest() == digest && m.count.to_native() == count && m.len.to_native() == len);
        let Some(m) = found else { return Ok(None) };
        let map = snap.file.idmap(&snap.map, m.offset.to_native(), len)?;
        Ok((map.digest() == digest && map.len() as u64 == count).then_some(map))
    }

    fn is_expired(&self, last_access_us: i64, now_us: i64) -> bool {
        eviction::is_expired(last_access_us, now_us, eviction::ttl_us(&self.config))
    }

    /// Drops entries found corrupt, if the write lock is free right now; a
    /// reader never waits for it, and never compacts: the drop is one small
    /// commit. Otherwise the next write drops them.
    fn heal(&self) {
        if self.read_only {
            return;
        }
        let mode = WriteMode {
            blocking: false,
            compact_after: false,
        };
        if let Err(e) = self.write(mode, |txn| {
            txn.drop_known_bad();
            Ok(())
        }) {
            log::warn!("{}: could not drop corrupt entries now: {e}", self.path.display());
        }
    }

    /// True when `key` is stored and not expired. Records no access and
    /// checks no data.
    pub fn contains(&self, key: &str) -> Result<bool> {
        key::validate(key)?;
        let snap = self.snapshot()?;
        let now = self.config.clock.now().timestamp_micros();
        Ok(snap
            .find(key)
            .and_then(|pos| snap.entry(pos))
            .is_some_and(|e| !self.is_expired(snap.last_access_us(e), now)))
    }

    /// Stores a scope under `key`, replacing any scope stored there; durable
    /// when it returns Ok.
    ///
    /// Mappings already stored in the file (recognised by their content
    /// digest, computed once when the `IdMap` was built) are not written
    /// again, so scopes of one graph share one copy. Expired entries are
    /// removed, and least-recently-used entries evicted until the new scope
    /// fits `max_entries` and `max_size_bytes`; the file is compacted first
    /// if it would otherwise grow past `max_size_bytes`.
    ///
    /// Errors, before anything is written: `InvalidKey`, `LengthMismatch`,
    /// `TooLarge` (the scope alone exceeds `max_size_bytes`), `ReadOnly`,
    /// `Poisoned`. I/O errors (a full disk) leave the last commit intact.
    ///
    /// Cost: writing the bitsets (and the mappings when new), two fsyncs.
    pub fn put(&self, key: &str, data: &ScopeData<'_>) -> Result<()> {
        self.put_at(key, data, None)?;
        #[cfg(feature = "remote")] // remote tier hook: write-through after the local commit
        crate::remote::write_through(self, key);
        Ok(())
    }

    /// Like [`ScopeCache::put`], but records the given creation and last
    /// access times instead of the clock's now: for migrating entries from
    /// another cache, which keep their age. Not part of the stable API.
    #[doc(hidden)]
    pub fn put_with_times(
        &self,
        key: &str,
        data: &ScopeData<'_>,
        created_at: chrono::DateTime<chrono::Utc>,
        last_accessed: chrono::DateTime<chrono::Utc>,
    ) -> Result<()> {
        self.put_at(
            key,
            data,
            Some((created_at.timestamp_micros(), last_accessed.timestamp_micros())),
        )
    }

    /// `put`, with `times` = (created, accessed) in micros, or None for now.
    fn put_at(&self, key: &str, data: &ScopeData<'_>, times: Option<(i64, i64)>) -> Result<()> {
        key::validate(key)?;
        for (what, bits, ids) in [
            ("nodes", data.nodes.len(), data.node_ids.len()),
            ("links", data.links.len(), data.link_ids.len()),
        ] {
            if bits != ids {
                return Err(Error::LengthMismatch {
                    what,
                    bits: bits as u64,
                    ids: ids as u64,
                });
            }
        }
        let attributes = serde_json::to_string(data.attributes)?;
        let nodes = bitset::Encoded::new(data.nodes);
        let links = bitset::Encoded::new(data.links);
        let incoming = Incoming {
            own: aligned(nodes.len()) + aligned(links.len()),
            entry_index: index::entry_bytes(key.len(), attributes.len()),
            maps: [data.node_ids, data.link_ids],
        };
        let alone = incoming.alone();
        if alone > self.config.max_size_bytes {
            return Err(Error::TooLarge {
                key: key.to_owned(),
                needed: alone,
                max: self.config.max_size_bytes,
            });
        }
        self.write(WriteMode::WRITE, |txn| {
            txn.drop_known_bad();
            txn.expire();
            txn.remove(key);
            txn.make_room(&incoming, self.io.as_ref())?;
            let node_map = txn.store_map(data.node_ids)?;
            let link_map = txn.store_map(data.link_ids)?;
            let nodes = nodes.record(txn.append(&nodes.parts())?);
            let links = links.record(txn.append(&links.parts())?);
            let (created_us, accessed_us) = times.unwrap_or((txn.now_us, txn.now_us));
            txn.insert(EntryRecord {
                key: key.to_owned(),
                created_us,
                accessed_us,
                slot: u32::MAX,
                node_map,
                link_map,
                nodes,
                links,
                attributes,
            });
            txn.counts.push((Counter::Puts, 1));
            Ok(())
        })?;
        Ok(())
    }

    /// Removes the scope under `key`; returns whether there was one.
    /// Its space is reclaimed by the next compaction. Durable when it returns.
    pub fn remove(&self, key: &str) -> Result<bool> {
        key::validate(key)?;
        let removed = self.write(WriteMode::WRITE, |txn| {
            let r = txn.remove(key);
            if r {
                txn.counts.push((Counter::Removes, 1));
            }
            Ok(r)
        })?;
        Ok(removed.is_some_and(|(r, _)| r))
    }

    /// Removes every scope; returns how many there were.
    pub fn clear(&self) -> Result<u64> {
        let n = self.write(WriteMode::WRITE, |txn| {
            let keys: Vec<String> = txn.model.iter().map(|e| e.key.clone()).collect();
            for k in &keys {
                txn.remove(k);
            }
            let n = keys.len() as u64;
            txn.write_base = n > 0;
            txn.counts.push((Counter::Removes, n));
            Ok(n)
        })?;
        Ok(n.map_or(0, |(n, _)| n))
    }

    /// Every entry, most recently accessed first. Checks no data.
    pub fn list(&self) -> Result<Vec<EntryInfo>> {
        let snap = self.snapshot()?;
        let mut out: Vec<EntryInfo> = snap
            .entries()
            .map(|(_, e)| EntryInfo::from_entry(&snap, e, None))
            .collect();
        out.sort_by(|a, b| {
            b.last_accessed
                .cmp(&a.last_accessed)
                .then_with(|| a.key.cmp(&b.key))
        });
        Ok(out)
    }

    /// The description of the entry under `key`, without recording an access.
    pub fn info(&self, key: &str) -> Result<Option<EntryInfo>> {
        key::validate(key)?;
        let snap = self.snapshot()?;
        Ok(snap
            .find(key)
            .and_then(|pos| snap.entry(pos))
            .map(|e| EntryInfo::from_entry(&snap, e, None)))
    }
    /// Removes expired entries, evicts down to the limits, drops entries
    /// found corrupt, and compacts when dead space makes it worth it.
    pub fn maintain(&self) -> Result<MaintainReport> {
        let report = self.write(WriteMode::WRITE, |txn| {
            crate::open::remove_stale_temps(&self.path);
            let mut r = MaintainReport::default();
            let before = txn.counts.len();
            txn.drop_known_bad();
            r.corrupt_dropped = (txn.counts.len() - before) as u64;
            r.expired = txn.expire();
            r.evicted = txn.evict(0, |_| 0, txn.cfg.max_size_bytes);
            Ok(r)
        })?;
        Ok(report
            .map(|(r, compaction)| MaintainReport { compaction, ..r })
            .unwrap_or_default())
    }

    /// Rewrites the file with only its live data, now, and moves this handle
    /// to the new file. Other processes keep reading their snapshots of the
    /// old file and move on their next `get`.
    ///
    /// Cost: one pass over every live byte (each region's checks included),
    /// written once and fsynced.
    pub fn compact(&self) -> Result<CompactReport> {
        let mode = WriteMode {
            blocking: true,
            compact_after: false,
        };
        let r = self.write(mode, |txn| {
            crate::open::remove_stale_temps(&self.path);
            txn.commit()?;
            crate::compact::compact(txn, self.io.as_ref())
        })?;
        r.map(|(r, _)| r)
            .ok_or_else(|| Error::Config("compaction did not run".into()))
    }

    /// The committed generation this handle reads.
    pub fn generation(&self) -> Result<u64> {
        Ok(self.snapshot()?.generation())
    }
}
