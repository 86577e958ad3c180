//! The narrow layer every write goes through, so that tests can put a
//! simulated disk (one that loses unsynced writes) or injected errors
//! underneath the commit protocol. Reads go through the memory map.

use std::fmt;
use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::Path;

/// Writes to one open file.
pub trait FileIo: Send + Sync {
    /// Writes all of `buf` at `offset`.
    fn write_at(&self, buf: &[u8], offset: u64) -> io::Result<()>;
    /// Makes every write so far durable (fdatasync).
    fn sync(&self) -> io::Result<()>;
}

/// Makes `FileIo`s, and performs the directory operations of compaction.
pub trait IoFactory: Send + Sync + fmt::Debug {
    /// Wraps a file just opened for writing at `path`.
    fn wrap(&self, file: File, path: &Path) -> Box<dyn FileIo>;
    /// Renames `from` over `to`.
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        std::fs::rename(from, to)
    }
    /// Makes the directory's entries durable.
    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        File::open(dir)?.sync_all()
    }
}

/// The real file system.
#[derive(Debug, Default)]
pub struct RealIo;

struct RealFile(File);

impl FileIo for RealFile {
    fn write_at(&self, buf: &[u8], offset: u64) -> io::Result<()> {
        self.0.write_all_at(buf, offset)
    }
    fn sync(&self) -> io::Result<()> {
        self.0.sync_data()
    }
}

impl IoFactory for RealIo {
    fn wrap(&self, file: File, _path: &Path) -> Box<dyn FileIo> {
        Box::new(RealFile(file))
    }
}
