//! `ScopeCache`: the public face of the engine. Readers take no lock and see
//! the newest committed generation; writers serialise on an exclusive lock of
//! the file (see txn.rs) and publish through the superblocks.

use crate::compact::{self, create_if_missing};
use crate::config::CacheConfig;
use crate::error::{Error, Result};
use crate::eviction::{self, aligned, footprint};
use crate::format::{Counter, COUNTERS_OFFSET};
use crate::idmap::IdMap;
use crate::index::{BitsRecord, EntryRecord, IndexData};
use crate::io::{IoFactory, RealIo};
use crate::key;
use crate::scope::{EntryInfo, Scope};
use crate::snapshot::{FileHandle, Snapshot};
use crate::stats::{CacheStats, CompactReport, MaintainReport, Problem, VerifyReport};
use crate::txn::{LockGuard, Txn};
use bitvec::prelude::{BitSlice, Lsb0};
use serde_json::{Map, Value};
use std::collections::HashSet;
use std::fs::{File, OpenOptions, TryLockError};
use std::io::ErrorKind;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex, RwLock};

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
    path: PathBuf,
    config: CacheConfig,
    io: Arc<dyn IoFactory>,
    read_only: bool,
    current: RwLock<Arc<Snapshot>>,
    /// Serialises this handle's writers, and remembers a failed fsync.
    writer: Mutex<WriterState>,
    /// When a retired file last made this handle look at the path (micros).
    last_move_check: AtomicI64,
}

struct WriterState {
    poisoned: bool,
}

impl std::fmt::Debug for ScopeCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let cur = read_lock(&self.current);
        f.debug_struct("ScopeCache")
            .field("path", &self.path)
            .field("read_only", &self.read_only)
            .field("generation", &cur.generation())
            .field("entries", &cur.index().entries.len())
            .finish()
    }
}

fn read_lock<T>(l: &RwLock<T>) -> std::sync::RwLockReadGuard<'_, T> {
    l.read().unwrap_or_else(|p| p.into_inner())
}

fn write_lock<T>(l: &RwLock<T>) -> std::sync::RwLockWriteGuard<'_, T> {
    l.write().unwrap_or_else(|p| p.into_inner())
}

impl ScopeCache {
    /// Opens the cache file at `path`, creating it if missing (unless
    /// `config.read_only`). A file that cannot be opened for writing is
    /// opened read-only.
    ///
    /// Cost: a few system calls, one CRC pass and one validation of the
    /// index (proportional to the number of entries, not their size).
    ///
    /// Errors: `Error::Corrupt` when both superblocks or the index fail
    /// their checks (unless `config.quarantine_corrupt`), `NotACacheFile`,
    /// `UnsupportedVersion`, `Io`.
    pub fn open(path: impl AsRef<Path>, config: CacheConfig) -> Result<ScopeCache> {
        config.check()?;
        let path = path.as_ref().to_path_buf();
        let io: Arc<dyn IoFactory> = config.io.clone().unwrap_or_else(|| Arc::new(RealIo));
        if !config.read_only {
            match create_if_missing(&path, &config, io.as_ref()) {
                Err(Error::Io { source, .. }) if is_denied(&source) && path.exists() => {}
                other => other?,
            }
        }
        let (fh, read_only) = open_handle(&path, config.read_only, io.as_ref())?;
        let snap = match Snapshot::load(Arc::new(fh)) {
            Ok(s) => s,
            Err(e @ Error::Corrupt { .. }) if config.quarantine_corrupt && !read_only => {
                let aside = quarantine(&path)?;
                log::warn!(
                    "{}: {e}; moved aside to {} and starting empty",
                    path.display(),
                    aside.display()
                );
                create_if_missing(&path, &config, io.as_ref())?;
                Snapshot::load(Arc::new(open_handle(&path, false, io.as_ref())?.0))?
            }
            Err(e) => return Err(e),
        };
        Ok(ScopeCache {
            path,
            config,
            io,
            read_only,
            current: RwLock::new(Arc::new(snap)),
            writer: Mutex::new(WriterState { poisoned: false }),
            last_move_check: AtomicI64::new(0),
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

    /// The newest committed snapshot, moving to a new file if compaction
    /// replaced ours. Fast path: two atomic loads.
    fn snapshot(&self) -> Result<Arc<Snapshot>> {
        let cur = Arc::clone(&read_lock(&self.current));
        let [g0, g1] = cur.map.slot_generations();
        if g0.max(g1) == cur.generation() && !cur.sb.is_retired() {
            return Ok(cur);
        }
        self.refresh(cur)
    }

    fn refresh(&self, cur: Arc<Snapshot>) -> Result<Arc<Snapshot>> {
        let sb = cur.file.mapping().superblock()?;
        if sb.is_retired() || cur.sb.is_retired() {
            if let Some(moved) = self.follow_path(&cur)? {
                return Ok(moved);
            }
        }
        if sb.generation == cur.generation() {
            return Ok(cur);
        }
        let snap = Arc::new(Snapshot::load(Arc::clone(&cur.file))?);
        Ok(self.install(snap))
    }

    /// After compaction retired our file: if the path names another file
    /// now, load it. Looks at most once a millisecond, since a compaction
    /// that crashed before its rename leaves the path on the retired file.
    fn follow_path(&self, cur: &Arc<Snapshot>) -> Result<Option<Arc<Snapshot>>> {
        let now = chrono::Utc::now().timestamp_micros();
        let last = self.last_move_check.load(Ordering::Relaxed);
        if now.saturating_sub(last) < 1000 {
            return Ok(None);
        }
        self.last_move_check.store(now, Ordering::Relaxed);
        let meta = match std::fs::metadata(&self.path) {
            Ok(m) => m,
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(Error::io(&self.path, "stat", e)),
        };
        if meta.ino() == cur.file.ino && meta.dev() == cur.file.dev {
            return Ok(None);
        }
        let (fh, _) = open_handle(&self.path, self.read_only, self.io.as_ref())?;
        let snap = Arc::new(Snapshot::load(Arc::new(fh))?);
        Ok(Some(self.install(snap)))
    }

    /// Makes `snap` current unless a newer one of the same file already is.
    fn install(&self, snap: Arc<Snapshot>) -> Arc<Snapshot> {
        let mut cur = write_lock(&self.current);
        let same_file = Arc::ptr_eq(&cur.file, &snap.file);
        if !same_file || snap.generation() > cur.generation() {
            *cur = Arc::clone(&snap);
        }
        Arc::clone(&cur)
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
        let Some(pos) = snap.index().find(key) else {
            snap.count(Counter::Misses, 1);
            return Ok(None);
        };
        let e = &snap.index().entries[pos];
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
            .index()
            .maps
            .iter()
            .find(|m| m.digest() == digest && m.count.to_native() == count && m.len.to_native() == len);
        let Some(m) = found else { return Ok(None) };
        let map = snap.file.idmap(&snap.map, m.offset.to_native(), len)?;
        Ok((map.digest() == digest && map.len() as u64 == count).then_some(map))
    }

    fn is_expired(&self, last_access_us: i64, now_us: i64) -> bool {
        self.ttl_us()
            .is_some_and(|ttl| now_us.saturating_sub(last_access_us) > ttl)
    }

    fn ttl_us(&self) -> Option<i64> {
        self.config
            .ttl
            .map(|t| i64::try_from(t.as_micros()).unwrap_or(i64::MAX))
    }

    /// Drops entries found corrupt, if the write lock is free right now; a
    /// reader never waits for it. Otherwise the next write drops them.
    fn heal(&self) {
        if self.read_only {
            return;
        }
        if let Err(e) = self.write(false, |txn| {
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
            .index()
            .find(key)
            .is_some_and(|pos| !self.is_expired(snap.last_access_us(&snap.index().entries[pos]), now)))
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
        let nodes = BitsetBytes::new(data.nodes);
        let links = BitsetBytes::new(data.links);
        let own = aligned(nodes.len()) + aligned(links.len());
        let entry_index_bytes = 160 + key.len() as u64 + attributes.len() as u64;
        let maps = [data.node_ids, data.link_ids];
        // Bytes the new entry adds to an index holding `idx`: to the
        // compacted size (`stored` all false), or to the file's growth
        // (`stored[i]`: mapping i is in the committed file already).
        let incoming = |idx: &IndexData, stored: [bool; 2]| -> u64 {
            let mut seen = HashSet::new();
            let new_maps: u64 = maps
                .iter()
                .zip(stored)
                .filter(|(m, stored)| !stored && seen.insert(m.digest()))
                .filter(|(m, _)| !idx.maps.iter().any(|r| r.holds(m)))
                .map(|(m, _)| aligned(m.region_len()) + 48)
                .sum();
            own + new_maps + entry_index_bytes
        };
        let alone = footprint(&IndexData::default()) + incoming(&IndexData::default(), [false; 2]);
        if alone > self.config.max_size_bytes {
            return Err(Error::TooLarge {
                key: key.to_owned(),
                needed: alone,
                max: self.config.max_size_bytes,
            });
        }
        self.write(true, |txn| {
            txn.drop_known_bad();
            self.expire(txn);
            txn.remove(key);
            let cfg = txn.cfg;
            let compacted = |idx: &IndexData| incoming(idx, [false; 2]);
            for victim in eviction::lru_victims(&txn.index, 1, compacted, cfg.max_entries, cfg.max_size_bytes)
            {
                txn.remove(&victim);
                txn.counts.push((Counter::Evictions, 1));
            }
            let grow = incoming(&txn.index, maps.map(|m| txn.committed_map(m).is_some())) + 4096;
            if txn.end().saturating_add(grow) > cfg.max_size_bytes && txn.dead_bytes() > 0 {
                compact::compact(txn, self.io.as_ref())?;
            }
            let node_map = txn.store_map(data.node_ids)?;
            let link_map = txn.store_map(data.link_ids)?;
            let nodes = nodes.append(txn)?;
            let links = links.append(txn)?;
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

    fn expire(&self, txn: &mut Txn<'_>) -> u64 {
        let keys = eviction::expired(&txn.index, txn.now_us, self.ttl_us());
        for k in &keys {
            txn.remove(k);
            txn.counts.push((Counter::Expiries, 1));
        }
        keys.len() as u64
    }

    /// Removes the scope under `key`; returns whether there was one.
    /// Its space is reclaimed by the next compaction. Durable when it returns.
    pub fn remove(&self, key: &str) -> Result<bool> {
        key::validate(key)?;
        let removed = self.write(true, |txn| {
            let r = txn.remove(key);
            if r {
                txn.counts.push((Counter::Removes, 1));
            }
            Ok(r)
        })?;
        Ok(removed.unwrap_or(false))
    }

    /// Removes every scope; returns how many there were.
    pub fn clear(&self) -> Result<u64> {
        let n = self.write(true, |txn| {
            let n = txn.index.entries.len() as u64;
            txn.dirty |= n > 0;
            txn.index = IndexData::default();
            txn.counts.push((Counter::Removes, n));
            Ok(n)
        })?;
        Ok(n.unwrap_or(0))
    }

    /// Every entry, most recently accessed first. Checks no data.
    pub fn list(&self) -> Result<Vec<EntryInfo>> {
        let snap = self.snapshot()?;
        let mut out: Vec<EntryInfo> = snap
            .index()
            .entries
            .iter()
            .map(|e| EntryInfo::from_entry(&snap, e, None))
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
            .index()
            .find(key)
            .map(|pos| EntryInfo::from_entry(&snap, &snap.index().entries[pos], None)))
    }

    /// Statistics of the cache and of its use by all processes.
    pub fn stats(&self) -> Result<CacheStats> {
        let snap = self.snapshot()?;
        let index: IndexData = rkyv::deserialize::<IndexData, rkyv::rancor::Error>(snap.index())
            .map_err(|e| Error::corrupt(&self.path, format!("index: {e}")))?;
        let n = index.entries.len() as u64;
        let total_nodes: u64 = index.entries.iter().map(|e| e.nodes.bits).sum();
        let total_links: u64 = index.entries.iter().map(|e| e.links.bits).sum();
        let total_size_bytes: u64 = index
            .entries
            .iter()
            .map(|e| {
                BitsRecord::byte_len(e.nodes.bits)
                    + BitsRecord::byte_len(e.links.bits)
                    + e.attributes.len() as u64
            })
            .sum::<u64>()
            + index.maps.iter().map(|m| m.len).sum::<u64>();
        let live_bytes = footprint(&index).min(snap.sb.committed_len);
        let file_bytes = snap.sb.committed_len;
        let c = |c: Counter| snap.map.load(COUNTERS_OFFSET + 8 * c as u64);
        let created = index
            .entries
            .iter()
            .map(|e| crate::clock::from_micros(e.created_us));
        Ok(CacheStats {
            total_entries: n,
            total_size_bytes,
            total_size_mb: total_size_bytes as f64 / (1 << 20) as f64,
            total_size_gb: total_size_bytes as f64 / (1 << 30) as f64,
            total_nodes,
            total_links,
            cache_utilization: file_bytes as f64 / self.config.max_size_bytes as f64,
            oldest_entry: created.clone().min(),
            newest_entry: created.max(),
            average_nodes_per_entry: total_nodes.checked_div(n).unwrap_or(0),
            average_links_per_entry: total_links.checked_div(n).unwrap_or(0),
            file_bytes,
            live_bytes,
            dead_bytes: file_bytes - live_bytes,
            stored_mappings: index.maps.len() as u64,
            generation: snap.generation(),
            hits: c(Counter::Hits),
            misses: c(Counter::Misses),
            evictions: c(Counter::Evictions),
            expiries: c(Counter::Expiries),
            corrupt_dropped: c(Counter::CorruptDropped),
            puts: c(Counter::Puts),
            removes: c(Counter::Removes),
            compactions: c(Counter::Compactions),
        })
    }

    /// Removes expired entries, evicts down to the limits, drops entries
    /// found corrupt, and compacts when dead space makes it worth it.
    pub fn maintain(&self) -> Result<MaintainReport> {
        let report = self.write_reporting(true, |txn| {
            compact::remove_stale_temps(&self.path);
            let mut r = MaintainReport::default();
            let before = txn.counts.len();
            txn.drop_known_bad();
            r.corrupt_dropped = (txn.counts.len() - before) as u64;
            r.expired = self.expire(txn);
            let cfg = txn.cfg;
            for victim in eviction::lru_victims(&txn.index, 0, |_| 0, cfg.max_entries, cfg.max_size_bytes) {
                txn.remove(&victim);
                txn.counts.push((Counter::Evictions, 1));
                r.evicted += 1;
            }
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
        let r = self.write(true, |txn| {
            compact::remove_stale_temps(&self.path);
            txn.commit()?;
            compact::compact(txn, self.io.as_ref())
        })?;
        r.ok_or_else(|| Error::Config("compaction did not run".into()))
    }

    /// Checks every byte the newest generation holds: superblocks, index,
    /// every bitset's CRC, every mapping's blocks and structure. Changes
    /// nothing, and reports every problem rather than stopping at the first.
    ///
    /// Cost: one pass over the live data.
    pub fn verify(&self) -> Result<VerifyReport> {
        let snap = self.snapshot()?;
        let fh = &snap.file;
        let idx = snap.index();
        let mut report = VerifyReport {
            generation: snap.generation(),
            ..VerifyReport::default()
        };
        let slots = snap.map.read_superblocks();
        let current = (snap.generation() % 2) as usize;
        for (i, s) in slots.iter().enumerate() {
            match crate::format::Superblock::decode(s) {
                Ok(_) => {}
                // A commit interrupted by a crash or a failed write leaves a
                // torn superblock in the spare slot; it belongs to no
                // committed generation and the next commit overwrites it.
                Err(crate::format::SlotError::BadCrc { .. }) if i != current => {
                    log::debug!(
                        "{}: spare superblock slot {i} is torn (an interrupted commit)",
                        self.path.display()
                    );
                }
                Err(e) => {
                    report.problems.push(Problem {
                        key: None,
                        what: format!("superblock slot {i}: {e:?}"),
                    });
                }
            }
        }
        let mut map_ok = vec![None; idx.maps.len()];
        for e in idx.entries.iter() {
            report.entries += 1;
            let key = Some(e.key.as_str().to_owned());
            for b in [&e.nodes, &e.links] {
                let rec = b.to_record();
                let bytes = snap
                    .map
                    .region(rec.offset, BitsRecord::byte_len(rec.bits))
                    .unwrap_or(&[]);
                report.bytes_checked += bytes.len() as u64;
                let crc = crc32fast::hash(bytes);
                if crc != rec.crc {
                    report.problems.push(Problem {
                        key: key.clone(),
                        what: format!(
                            "bitset at {}: CRC expected {:#010x}, found {crc:#010x}",
                            rec.offset, rec.crc
                        ),
                    });
                }
            }
            for m in [e.node_map.to_native(), e.link_map.to_native()] {
                let i = m as usize;
                if map_ok[i].is_none() {
                    let rec = &idx.maps[i];
                    let res = fh
                        .idmap(&snap.map, rec.offset.to_native(), rec.len.to_native())
                        .and_then(|m| m.verify());
                    report.mappings += 1;
                    report.bytes_checked += rec.len.to_native();
                    map_ok[i] = Some(res.map_err(|e| e.to_string()));
                }
                if let Some(Err(what)) = &map_ok[i] {
                    report.problems.push(Problem {
                        key: key.clone(),
                        what: format!("id mapping {m}: {what}"),
                    });
                }
            }
            if serde_json::from_str::<Map<String, Value>>(e.attributes.as_str()).is_err() {
                report.problems.push(Problem {
                    key,
                    what: "attributes are not a JSON object".into(),
                });
            }
        }
        Ok(report)
    }

    /// The committed generation this handle reads.
    pub fn generation(&self) -> Result<u64> {
        Ok(self.snapshot()?.generation())
    }

    /// Runs `f` in a write transaction on the newest generation, under the
    /// file's exclusive lock, then commits, then compacts if worth it.
    /// With `blocking == false`, returns Ok(None) at once if the lock is held.
    fn write<T>(&self, blocking: bool, f: impl FnOnce(&mut Txn<'_>) -> Result<T>) -> Result<Option<T>> {
        Ok(self.write_reporting(blocking, f)?.map(|(v, _)| v))
    }

    /// `write`, also saying whether the transaction ended in a compaction.
    fn write_reporting<T>(
        &self,
        blocking: bool,
        f: impl FnOnce(&mut Txn<'_>) -> Result<T>,
    ) -> Result<Option<(T, Option<CompactReport>)>> {
        if self.read_only {
            return Err(Error::ReadOnly {
                path: self.path.clone(),
            });
        }
        let mut state = if blocking {
            self.writer.lock().unwrap_or_else(|p| p.into_inner())
        } else {
            match self.writer.try_lock() {
                Ok(s) => s,
                Err(std::sync::TryLockError::WouldBlock) => return Ok(None),
                Err(std::sync::TryLockError::Poisoned(p)) => p.into_inner(),
            }
        };
        if state.poisoned {
            return Err(Error::Poisoned {
                path: self.path.clone(),
            });
        }
        let Some(guard) = self.lock_current(blocking)? else {
            return Ok(None);
        };
        let snap = self.install(Arc::new(Snapshot::load(Arc::clone(&guard.0))?));
        if snap.sb.is_retired() {
            // A compaction died between retiring this file and renaming its
            // successor over it: this commit clears the flag (Txn::begin
            // marks the transaction dirty), and its leftovers go.
            compact::remove_stale_temps(&self.path);
        }
        let mut txn = Txn::begin(guard, snap, &self.config)?;
        let out = f(&mut txn).and_then(|v| {
            txn.commit()?;
            // The operation is durable now: a failure of the compaction that
            // follows (a full disk, say) must not make the caller believe it
            // failed. The file is left as committed; a later write retries.
            let mut compacted = None;
            if self.compaction_worth_it(&txn) {
                match compact::compact(&mut txn, self.io.as_ref()) {
                    Ok(c) => compacted = Some(c),
                    Err(e) => log::warn!(
                        "{}: automatic compaction failed, the commit stands: {e}",
                        self.path.display()
                    ),
                }
            }
            Ok((v, compacted))
        });
        state.poisoned |= txn.poisoned;
        self.install(Arc::clone(&txn.snap));
        out.map(Some)
    }

    fn compaction_worth_it(&self, txn: &Txn<'_>) -> bool {
        let dead = txn.dead_bytes();
        self.config.auto_compact
            && dead >= self.config.compact_min_dead_bytes
            && (dead as f64 > self.config.compact_dead_ratio * txn.end() as f64
                || txn.end() > self.config.max_size_bytes)
    }

    /// Takes the exclusive lock on the file now at the path. A lock taken on
    /// a file that compaction has since renamed over guards nothing, so after
    /// locking we check that the path still names the locked inode.
    fn lock_current(&self, blocking: bool) -> Result<Option<LockGuard>> {
        for _ in 0..1000 {
            let fh = Arc::clone(&self.snapshot()?.file);
            if blocking {
                fh.file.lock().map_err(|e| Error::io(&self.path, "lock", e))?;
            } else {
                match fh.file.try_lock() {
                    Ok(()) => {}
                    Err(TryLockError::WouldBlock) => return Ok(None),
                    Err(TryLockError::Error(e)) => return Err(Error::io(&self.path, "lock", e)),
                }
            }
            let guard = LockGuard(fh);
            let meta = std::fs::metadata(&self.path).map_err(|e| Error::io(&self.path, "stat", e))?;
            if meta.ino() == guard.0.ino && meta.dev() == guard.0.dev {
                return Ok(Some(guard));
            }
            drop(guard);
            let (fh, _) = open_handle(&self.path, false, self.io.as_ref())?;
            self.install(Arc::new(Snapshot::load(Arc::new(fh))?));
        }
        Err(Error::io(
            &self.path,
            "lock",
            std::io::Error::other("the file kept being replaced while taking its lock"),
        ))
    }
}

/// A bitset's words as stored: whole u64 words, bits past the end zeroed.
struct BitsetBytes<'a> {
    body: &'a [u64],
    last: Option<u64>,
    bits: u64,
    owned: Vec<u64>,
}

impl<'a> BitsetBytes<'a> {
    fn new(bits: &'a BitSlice<u64, Lsb0>) -> BitsetBytes<'a> {
        let n = bits.len();
        if let bitvec::domain::Domain::Region {
            head: None,
            body,
            tail,
        } = bits.domain()
        {
            // Starts on a word boundary: write the caller's words in place;
            // a partial last word is masked (load_value clears dead bits).
            let last = tail.map(|t| t.load_value());
            return BitsetBytes {
                body,
                last,
                bits: n as u64,
                owned: Vec::new(),
            };
        }
        // A slice starting mid-word: copy into words that start at bit 0.
        let mut v = bitvec::vec::BitVec::<u64, Lsb0>::repeat(false, n);
        v.copy_from_bitslice(bits);
        BitsetBytes {
            body: &[],
            last: None,
            bits: n as u64,
            owned: v.into_vec(),
        }
    }

    fn len(&self) -> u64 {
        BitsRecord::byte_len(self.bits)
    }

    fn append(&self, txn: &mut Txn<'_>) -> Result<BitsRecord> {
        let last = self.last.map(|w| [w]);
        let parts: [&[u64]; 3] = [self.body, last.as_ref().map_or(&[], |w| &w[..]), &self.owned];
        let mut crc = crc32fast::Hasher::new();
        let mut offset = None;
        for p in parts.iter().filter(|p| !p.is_empty()) {
            let bytes = crate::source::words_as_bytes(p);
            crc.update(bytes);
            let at = txn.append_contiguous(bytes, offset.is_none())?;
            offset.get_or_insert(at);
        }
        let offset = match offset {
            Some(o) => o,
            None => txn.append(&[])?,
        };
        Ok(BitsRecord {
            offset,
            bits: self.bits,
            crc: crc.finalize(),
        })
    }
}

fn is_denied(e: &std::io::Error) -> bool {
    matches!(
        e.kind(),
        ErrorKind::PermissionDenied | ErrorKind::ReadOnlyFilesystem
    )
}

/// Opens the file at `path` for writing if allowed and possible, else for
/// reading. Returns the handle and whether it is read-only.
fn open_handle(path: &Path, read_only: bool, io: &dyn IoFactory) -> Result<(FileHandle, bool)> {
    if !read_only {
        match OpenOptions::new().read(true).write(true).open(path) {
            Ok(f) => {
                let w = f.try_clone().map_err(|e| Error::io(path, "dup", e))?;
                return Ok((FileHandle::open(path, f, Some(io.wrap(w, path)))?, false));
            }
            Err(e) if is_denied(&e) => {
                log::info!("{}: no write access ({e}); opening read-only", path.display());
            }
            Err(e) => return Err(Error::io(path, "open", e)),
        }
    }
    let f = File::open(path).map_err(|e| Error::io(path, "open", e))?;
    Ok((FileHandle::open(path, f, None)?, true))
}

/// Moves a corrupt file aside (never deleting it); returns where.
fn quarantine(path: &Path) -> Result<PathBuf> {
    let mut name = path.file_name().map(|n| n.to_os_string()).unwrap_or_default();
    name.push(format!(
        ".corrupt-{}",
        chrono::Utc::now().format("%Y%m%dT%H%M%S%.6f")
    ));
    let aside = path.with_file_name(name);
    std::fs::rename(path, &aside).map_err(|e| Error::io(path, "rename", e))?;
    Ok(aside)
}
