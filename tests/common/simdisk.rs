//! A simulated disk under the cache's write layer, and an I/O layer that
//! injects errors.
//!
//! `SimDisk` writes through to the real files (so that the memory-mapped
//! reads work), and also keeps, per inode, a durable image that only `sync`
//! advances; writes since the last sync wait in a pending list. Directory
//! entries are modelled the same way: a rename is durable only after
//! `sync_dir`. A crash stops the process at a chosen sync point (that sync
//! never happens, and every later call fails); the disk as a power loss
//! could leave it is then built from the durable image plus a chosen subset
//! of the pending writes, each dropped, applied, or torn to a prefix of
//! 512-byte sectors, in any order.
#![allow(dead_code)]

use rand::{Rng, SeedableRng};
use scopecache::io::{FileIo, IoFactory};
use std::collections::HashMap;
use std::fs::File;
use std::io;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

pub const SECTOR: u64 = 512;

#[derive(Clone, Debug)]
struct Write {
    offset: u64,
    data: Vec<u8>,
}

#[derive(Default, Debug)]
struct Inode {
    durable: Vec<u8>,
    pending: Vec<Write>,
}

#[derive(Default, Debug)]
struct State {
    /// Sync points passed (file syncs and directory syncs).
    syncs: u64,
    /// The sync point (1-based) at which the power fails.
    crash_at: Option<u64>,
    crashed: bool,
    inodes: HashMap<u64, Inode>,
    names: HashMap<PathBuf, u64>,
    durable_names: HashMap<PathBuf, u64>,
    writes: u64,
}

fn power_lost() -> io::Error {
    io::Error::other("simulated power loss")
}

fn apply(img: &mut Vec<u8>, offset: u64, data: &[u8]) {
    let end = offset as usize + data.len();
    if img.len() < end {
        img.resize(end, 0);
    }
    img[offset as usize..end].copy_from_slice(data);
}

/// What becomes of the writes pending at the crash.
#[derive(Clone, Copy, Debug)]
pub enum Fate {
    /// Every unsynced write is lost.
    DropAll,
    /// Every unsynced write reached the disk, in order.
    ApplyAll,
    /// Each unsynced write is dropped, applied, or torn after a random
    /// number of sectors, and they land in a random order; directory
    /// renames may or may not have reached the disk.
    Random(u64),
}

/// The simulated disk. Cloning shares it.
#[derive(Clone, Debug, Default)]
pub struct SimDisk(Arc<Mutex<State>>);

impl SimDisk {
    /// A disk that loses power at sync point `crash_at` (1-based), if any.
    pub fn new(crash_at: Option<u64>) -> SimDisk {
        SimDisk(Arc::new(Mutex::new(State {
            crash_at,
            ..State::default()
        })))
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Sync points passed so far.
    pub fn syncs(&self) -> u64 {
        self.state().syncs
    }

    pub fn writes(&self) -> u64 {
        self.state().writes
    }

    pub fn crashed(&self) -> bool {
        self.state().crashed
    }

    /// Unsynced writes to the file durable at `path`.
    pub fn pending_writes(&self, path: &Path) -> usize {
        let s = self.state();
        s.durable_names
            .get(path)
            .and_then(|i| s.inodes.get(i))
            .map_or(0, |i| i.pending.len())
    }

    /// The bytes a power loss now could leave at `path`, or None when no file
    /// would be there.
    pub fn image(&self, path: &Path, fate: Fate) -> Option<Vec<u8>> {
        let s = self.state();
        let mut rng = rand::rngs::StdRng::seed_from_u64(match fate {
            Fate::Random(seed) => seed,
            _ => 0,
        });
        let name_table = match fate {
            Fate::Random(_) if rng.gen_bool(0.5) => &s.names,
            _ => &s.durable_names,
        };
        let ino = *name_table.get(path)?;
        let inode = s.inodes.get(&ino)?;
        let mut img = inode.durable.clone();
        match fate {
            Fate::DropAll => {}
            Fate::ApplyAll => {
                for w in &inode.pending {
                    apply(&mut img, w.offset, &w.data);
                }
            }
            Fate::Random(_) => {
                let mut order: Vec<&Write> = inode.pending.iter().collect();
                // Fisher-Yates: the pending writes land in any order.
                for i in (1..order.len()).rev() {
                    order.swap(i, rng.gen_range(0..=i));
                }
                for w in order {
                    match rng.gen_range(0..3) {
                        0 => {}
                        1 => apply(&mut img, w.offset, &w.data),
                        _ => {
                            // Torn: the sectors up to a random sector boundary
                            // inside the write reached the disk.
                            let end = w.offset + w.data.len() as u64;
                            let first = (w.offset / SECTOR + 1) * SECTOR;
                            let bounds: Vec<u64> = (first..end).step_by(SECTOR as usize).collect();
                            if bounds.is_empty() {
                                // Inside one sector: all or nothing.
                                if rng.gen_bool(0.5) {
                                    apply(&mut img, w.offset, &w.data);
                                }
                            } else {
                                let cut = bounds[rng.gen_range(0..bounds.len())];
                                apply(&mut img, w.offset, &w.data[..(cut - w.offset) as usize]);
                            }
                        }
                    }
                }
            }
        }
        Some(img)
    }
}

struct SimFile {
    file: File,
    ino: u64,
    disk: SimDisk,
}

impl FileIo for SimFile {
    fn write_at(&self, buf: &[u8], offset: u64) -> io::Result<()> {
        let mut s = self.disk.state();
        if s.crashed {
            return Err(power_lost());
        }
        self.file.write_all_at(buf, offset)?;
        s.writes += 1;
        s.inodes.entry(self.ino).or_default().pending.push(Write {
            offset,
            data: buf.to_vec(),
        });
        Ok(())
    }

    fn sync(&self) -> io::Result<()> {
        let mut s = self.disk.state();
        if s.crashed {
            return Err(power_lost());
        }
        s.syncs += 1;
        if s.crash_at == Some(s.syncs) {
            s.crashed = true;
            return Err(power_lost());
        }
        let inode = s.inodes.entry(self.ino).or_default();
        for w in std::mem::take(&mut inode.pending) {
            apply(&mut inode.durable, w.offset, &w.data);
        }
        Ok(())
    }
}

impl IoFactory for SimDisk {
    fn wrap(&self, file: File, path: &Path) -> Box<dyn FileIo> {
        let meta = file.metadata().expect("fstat");
        let ino = meta.ino();
        let mut s = self.state();
        if !s.inodes.contains_key(&ino) {
            // A file met for the first time: what it holds now is taken as
            // durable (a file made before the disk was simulated, or a new
            // empty one), and its name as well if it holds anything.
            let mut durable = vec![0u8; meta.len() as usize];
            file.read_exact_at(&mut durable, 0).expect("read");
            if !durable.is_empty() {
                s.durable_names.entry(path.to_path_buf()).or_insert(ino);
            }
            s.names.entry(path.to_path_buf()).or_insert(ino);
            s.inodes.insert(
                ino,
                Inode {
                    durable,
                    pending: Vec::new(),
                },
            );
        }
        Box::new(SimFile {
            file,
            ino,
            disk: self.clone(),
        })
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        let mut s = self.state();
        if s.crashed {
            return Err(power_lost());
        }
        let ino = std::fs::metadata(from)?.ino();
        std::fs::rename(from, to)?;
        s.names.remove(from);
        s.names.insert(to.to_path_buf(), ino);
        Ok(())
    }

    fn sync_dir(&self, _dir: &Path) -> io::Result<()> {
        let mut s = self.state();
        if s.crashed {
            return Err(power_lost());
        }
        s.syncs += 1;
        if s.crash_at == Some(s.syncs) {
            s.crashed = true;
            return Err(power_lost());
        }
        s.durable_names = s.names.clone();
        Ok(())
    }
}

/// Which calls of the write layer fail with EIO.
#[derive(Default, Debug)]
pub struct Faults {
    /// Fail the n-th write (1-based, counted from when the fault was armed).
    pub write: Option<u64>,
    /// Fail the n-th file sync.
    pub sync: Option<u64>,
    pub rename: bool,
    pub sync_dir: bool,
    pub writes_seen: u64,
    pub syncs_seen: u64,
    pub failed: u64,
}

/// The real file system, with EIO injected where `Faults` says.
#[derive(Clone, Debug, Default)]
pub struct FaultIo(pub Arc<Mutex<Faults>>);

/// EIO on Linux.
pub const EIO: i32 = 5;

fn eio() -> io::Error {
    io::Error::from_raw_os_error(EIO)
}

impl FaultIo {
    pub fn faults(&self) -> MutexGuard<'_, Faults> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Clears every fault and counter.
    pub fn reset(&self) {
        *self.faults() = Faults::default();
    }
}

struct FaultFile {
    file: File,
    io: FaultIo,
}

impl FileIo for FaultFile {
    fn write_at(&self, buf: &[u8], offset: u64) -> io::Result<()> {
        let mut f = self.io.faults();
        f.writes_seen += 1;
        if f.write == Some(f.writes_seen) {
            f.failed += 1;
            // A failed write may still have written part of its bytes.
            let half = &buf[..buf.len() / 2];
            self.file.write_all_at(half, offset)?;
            return Err(eio());
        }
        self.file.write_all_at(buf, offset)
    }

    fn sync(&self) -> io::Result<()> {
        let mut f = self.io.faults();
        f.syncs_seen += 1;
        if f.sync == Some(f.syncs_seen) {
            f.failed += 1;
            return Err(eio());
        }
        self.file.sync_data()
    }
}

impl IoFactory for FaultIo {
    fn wrap(&self, file: File, _path: &Path) -> Box<dyn FileIo> {
        Box::new(FaultFile {
            file,
            io: self.clone(),
        })
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        let mut f = self.faults();
        if f.rename {
            f.failed += 1;
            return Err(eio());
        }
        std::fs::rename(from, to)
    }

    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        let mut f = self.faults();
        if f.sync_dir {
            f.failed += 1;
            return Err(eio());
        }
        File::open(dir)?.sync_all()
    }
}
