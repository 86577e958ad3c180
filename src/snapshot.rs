//! Readers' view of the file: one `FileHandle` per inode this process has
//! opened, and immutable `Snapshot`s of committed generations over it.

use crate::bitset;
use crate::chain::Chain;
use crate::error::{Error, Result};
use crate::format::{Counter, Superblock, COUNTERS_OFFSET, DATA_START};
use crate::idmap::IdMap;
use crate::index::{ArchivedEntryRecord, BitsRecord, MapRecord};
use crate::io::FileIo;
use crate::mapping::{MappedRegion, Mapping};
use crate::stamps;
use bitvec::prelude::{BitSlice, Lsb0};
use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

/// One inode of the cache file, opened by this process. Compaction replaces
/// the inode at the path; a handle keeps its own inode alive and readable.
pub(crate) struct FileHandle {
    pub path: PathBuf,
    pub file: File,
    pub dev: u64,
    pub ino: u64,
    /// Present when the file was opened for writing.
    pub io: Option<Box<dyn FileIo>>,
    mapping: Mutex<Arc<Mapping>>,
    /// Bitset regions whose CRC passed in this process, by what they are
    /// (offset, bits, CRC), never by offset alone: an empty region shares
    /// its offset with the region after it.
    verified_bits: Mutex<HashSet<BitsKey>>,
    /// Bitset regions found corrupt in this process.
    bad_bits: Mutex<HashSet<BitsKey>>,
    /// Id mapping regions (offset, length) found corrupt in this process.
    bad_maps: Mutex<HashSet<(u64, u64)>>,
    /// Id mappings opened so far, by (offset, length); shared by snapshots.
    idmaps: Mutex<HashMap<(u64, u64), IdMap>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A panic while holding one of these locks cannot leave the protected
    // caches inconsistent (each update is a single insert), so poisoning is
    // ignored rather than spread.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl FileHandle {
    /// Opens the file at `path` and maps it.
    pub(crate) fn open(path: &Path, file: File, io: Option<Box<dyn FileIo>>) -> Result<FileHandle> {
        let meta = file.metadata().map_err(|e| Error::io(path, "fstat", e))?;
        let mapping = Mapping::new(&file, path, meta.len(), io.is_some())?;
        Ok(FileHandle {
            path: path.to_path_buf(),
            dev: meta.dev(),
            ino: meta.ino(),
            file,
            io,
            mapping: Mutex::new(Arc::new(mapping)),
            verified_bits: Mutex::new(HashSet::new()),
            bad_bits: Mutex::new(HashSet::new()),
            bad_maps: Mutex::new(HashSet::new()),
            idmaps: Mutex::new(HashMap::new()),
        })
    }

    pub(crate) fn writable(&self) -> bool {
        self.io.is_some()
    }

    /// The current mapping, covering at least `need` bytes of file (mapping
    /// again when the file has outgrown it). `need` is checked against the
    /// file's size, so that a superblock pointing past the end is an error.
    pub(crate) fn mapping_for(&self, need: u64) -> Result<Arc<Mapping>> {
        let mut cur = lock(&self.mapping);
        if need <= cur.valid_len() {
            return Ok(Arc::clone(&cur));
        }
        let len = self
            .file
            .metadata()
            .map_err(|e| Error::io(&self.path, "fstat", e))?
            .len();
        if need > len {
            return Err(Error::corrupt(
                &self.path,
                format!("the committed state needs {need} bytes but the file has {len}: it was truncated"),
            ));
        }
        if len <= cur.mapped_len() {
            cur.note_file_len(len);
        } else {
            *cur = Arc::new(Mapping::new(&self.file, &self.path, len, self.writable())?);
        }
        Ok(Arc::clone(&cur))
    }

    /// The current mapping as it is.
    pub(crate) fn mapping(&self) -> Arc<Mapping> {
        Arc::clone(&lock(&self.mapping))
    }

    /// True when some region of this file failed a check in this process:
    /// without one, a writer need not look for entries to drop.
    pub(crate) fn any_bad(&self) -> bool {
        !lock(&self.bad_bits).is_empty()
            || !lock(&self.bad_maps).is_empty()
            || lock(&self.idmaps).values().any(IdMap::is_corrupt)
    }

    /// True when this bitset failed its check in this process.
    pub(crate) fn is_bad_bits(&self, rec: &BitsRecord) -> bool {
        lock(&self.bad_bits).contains(&BitsKey::of(rec))
    }

    /// True when this mapping failed a check in this process, including a
    /// block that failed during a lookup.
    pub(crate) fn is_bad_map(&self, rec: &MapRecord) -> bool {
        let key = (rec.offset, rec.len);
        lock(&self.bad_maps).contains(&key) || lock(&self.idmaps).get(&key).is_some_and(IdMap::is_corrupt)
    }

    pub(crate) fn mark_bad_map(&self, rec: &MapRecord) {
        lock(&self.bad_maps).insert((rec.offset, rec.len));
    }

    /// The id mapping stored at `offset`, opened once per process.
    pub(crate) fn idmap(&self, map: &Arc<Mapping>, offset: u64, len: u64) -> Result<IdMap> {
        let key = (offset, len);
        if let Some(m) = lock(&self.idmaps).get(&key).filter(|m| !m.is_corrupt()) {
            return Ok(m.clone());
        }
        if lock(&self.bad_maps).contains(&key) {
            return Err(Error::corrupt(
                &self.path,
                format!("id mapping at {offset} failed its checks"),
            ));
        }
        let region = MappedRegion::new(map, offset, len)?;
        let n = usize::try_from(len).map_err(|_| Error::corrupt(&self.path, "id mapping too large"))?;
        let m = IdMap::open(Arc::new(region), 0, n).inspect_err(|_| {
            lock(&self.bad_maps).insert(key);
        })?;
        lock(&self.idmaps).insert(key, m.clone());
        Ok(m)
    }

    /// Checks a bitset's CRC, once per process and region.
    pub(crate) fn check_bits(&self, map: &Mapping, rec: &BitsRecord) -> Result<()> {
        let key = BitsKey::of(rec);
        if lock(&self.verified_bits).contains(&key) {
            return Ok(());
        }
        if lock(&self.bad_bits).contains(&key) {
            return Err(Error::corrupt(
                &self.path,
                format!("bitset at {} failed its CRC", rec.offset),
            ));
        }
        let bytes = map.region(rec.offset, BitsRecord::byte_len(rec.bits));
        match bitset::check(&self.path, bytes, rec) {
            Ok(()) => lock(&self.verified_bits).insert(key),
            Err(e) => {
                lock(&self.bad_bits).insert(key);
                return Err(e);
            }
        };
        Ok(())
    }
}

/// What a bitset region is, for the per-process caches of checks.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
struct BitsKey {
    offset: u64,
    bits: u64,
    crc: u32,
}

impl BitsKey {
    fn of(rec: &BitsRecord) -> BitsKey {
        BitsKey {
            offset: rec.offset,
            bits: rec.bits,
            crc: rec.crc,
        }
    }
}

/// Everything a `Scope` needs of one entry, resolved once per snapshot.
pub(crate) struct Resolved {
    pub nodes: BitsRecord,
    pub links: BitsRecord,
    pub node_ids: IdMap,
    pub link_ids: IdMap,
    pub attributes: serde_json::Map<String, serde_json::Value>,
}

/// A committed generation of one file, read in place.
///
/// The index is the one thing not read in place: its base and each delta
/// are copied into aligned heap buffers (`chain.rs`), and the copies are
/// what the CRCs, the validation and every later read see. A pointer read
/// from them can therefore never change under a reader, whatever happens
/// to the file's bytes.
pub(crate) struct Snapshot {
    pub file: Arc<FileHandle>,
    pub map: Arc<Mapping>,
    pub sb: Superblock,
    chain: Chain,
}

impl Snapshot {
    /// Loads the newest committed generation of `file`: its superblock, and
    /// its index checked as `Chain::load` says.
    pub(crate) fn load(file: Arc<FileHandle>) -> Result<Snapshot> {
        Snapshot::load_after(file, None)
    }

    /// `load`, reusing the index parts `prev` (a snapshot of any file) has
    /// already checked when it is a snapshot of the same file handle: after
    /// a commit that appended a delta, only the delta is read.
    pub(crate) fn load_after(file: Arc<FileHandle>, prev: Option<&Snapshot>) -> Result<Snapshot> {
        let first = file.mapping_for(DATA_START)?;
        let sb = first.superblock()?;
        let map = file.mapping_for(sb.committed_len)?;
        let reuse = prev.filter(|p| Arc::ptr_eq(&p.file, &file)).map(|p| &p.chain);
        let chain = Chain::load(&file.path, &file.file, &map, &sb, reuse)?;
        Ok(Snapshot { file, map, sb, chain })
    }

    /// The merged index.
    pub(crate) fn chain(&self) -> &Chain {
        &self.chain
    }

    /// The position of the live entry under `key`.
    pub(crate) fn find(&self, key: &str) -> Option<usize> {
        self.chain.find(key)
    }

    /// The entry at a position `find` or `entries` gave.
    pub(crate) fn entry(&self, pos: usize) -> Option<&ArchivedEntryRecord> {
        self.chain.entry(pos)
    }

    /// Every live entry, with its position, in no particular order.
    pub(crate) fn entries(&self) -> impl Iterator<Item = (usize, &ArchivedEntryRecord)> + '_ {
        self.chain.entries()
    }

    /// Live entries.
    pub(crate) fn len(&self) -> usize {
        self.chain.len()
    }

    /// Adds to a shared counter in the file.
    pub(crate) fn count(&self, c: Counter, n: u64) {
        self.map.add(COUNTERS_OFFSET + 8 * c as u64, n);
    }

    pub(crate) fn generation(&self) -> u64 {
        self.sb.generation
    }

    /// The last access of an entry: the later of the time in the index and
    /// the shared stamp that readers raise without the write lock.
    pub(crate) fn last_access_us(&self, e: &ArchivedEntryRecord) -> i64 {
        let stamp = self.map.load(self.stamp_offset(e.slot.to_native()));
        let stamp = i64::try_from(stamp).unwrap_or(i64::MAX);
        e.accessed_us.to_native().max(stamp)
    }

    pub(crate) fn stamp_offset(&self, slot: u32) -> u64 {
        stamps::slot_offset(self.sb.stamps_offset, slot)
    }

    /// Records an access to entry `e` in the shared stamp table.
    pub(crate) fn touch(&self, e: &ArchivedEntryRecord, now_us: i64) {
        self.map.store_max(
            self.stamp_offset(e.slot.to_native()),
            u64::try_from(now_us).unwrap_or(0),
        );
    }

    /// Resolves entry `pos`: checks its bitsets (when `check_bits`), opens its
    /// mappings, parses its attributes. Done once per snapshot and entry.
    pub(crate) fn resolve(&self, pos: usize, check_bits: bool) -> Result<Arc<Resolved>> {
        let out_of_range = || Error::corrupt(&self.file.path, "entry position out of range");
        let slot = self.chain.resolved(pos).ok_or_else(out_of_range)?;
        if let Some(r) = slot.get() {
            return Ok(Arc::clone(r));
        }
        let e = self.chain.entry(pos).ok_or_else(out_of_range)?;
        let nodes = e.nodes.to_record();
        let links = e.links.to_record();
        if check_bits {
            self.file.check_bits(&self.map, &nodes)?;
            self.file.check_bits(&self.map, &links)?;
        } else if self.file.is_bad_bits(&nodes) || self.file.is_bad_bits(&links) {
            return Err(Error::corrupt(&self.file.path, "bitset failed its CRC"));
        }
        let open_map = |i: u32| -> Result<IdMap> {
            let m = self.chain.map(i).ok_or_else(out_of_range)?;
            let idmap = self
                .file
                .idmap(&self.map, m.offset.to_native(), m.len.to_native())?;
            if idmap.len() as u64 != m.count.to_native() || idmap.digest() != m.digest() {
                self.file.mark_bad_map(&m.to_record());
                return Err(Error::corrupt(
                    &self.file.path,
                    "id mapping header disagrees with the index",
                ));
            }
            Ok(idmap)
        };
        let node_ids = open_map(e.node_map.to_native())?;
        let link_ids = open_map(e.link_map.to_native())?;
        let attributes = match serde_json::from_str(e.attributes.as_str()) {
            Ok(serde_json::Value::Object(m)) => m,
            _ => {
                return Err(Error::corrupt(
                    &self.file.path,
                    format!("entry {:?}: attributes are not a JSON object", e.key.as_str()),
                ))
            }
        };
        let r = Arc::new(Resolved {
            nodes,
            links,
            node_ids,
            link_ids,
            attributes,
        });
        Ok(Arc::clone(slot.get_or_init(|| r)))
    }

    /// The words of a bitset region; empty if out of range (load() and
    /// resolve() have checked the range).
    pub(crate) fn words(&self, rec: &BitsRecord) -> &[u64] {
        let bytes = self
            .map
            .region(rec.offset, BitsRecord::byte_len(rec.bits))
            .unwrap_or(&[]);
        bitset::words(bytes)
    }

    pub(crate) fn bits(&self, rec: &BitsRecord) -> &BitSlice<u64, Lsb0> {
        bitset::bits(self.words(rec), rec.bits)
    }
}
