//! Opening the file at a path: write access or read-only, creating a new
//! cache file whole, moving a corrupt one aside, and the temporary files
//! that creation and compaction write before they link or rename.

use crate::commit::path_names;
use crate::config::CacheConfig;
use crate::error::{Error, Result};
use crate::format::{COUNTER_COUNT, DATA_START};
use crate::index::IndexData;
use crate::io::IoFactory;
use crate::snapshot::{FileHandle, Snapshot};
use crate::stamps;
use std::fs::{File, OpenOptions};
use std::io::ErrorKind;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

pub(crate) fn is_denied(e: &std::io::Error) -> bool {
    matches!(
        e.kind(),
        ErrorKind::PermissionDenied | ErrorKind::ReadOnlyFilesystem
    )
}

/// Opens the file at `path` for writing if allowed and possible, else for
/// reading. Returns the handle and whether it is read-only.
pub(crate) fn open_handle(path: &Path, read_only: bool, io: &dyn IoFactory) -> Result<(FileHandle, bool)> {
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

/// A new temporary file beside `path`, `<name>.<what>-<pid>-<n>.tmp`,
/// created exclusively (`O_EXCL`): no two threads or processes ever share
/// one, so none can truncate another's half-written file.
pub(crate) fn create_temp(path: &Path, what: &str) -> Result<(File, PathBuf)> {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let base = path.file_name().map(|n| n.to_os_string()).unwrap_or_default();
    for _ in 0..100 {
        let mut name = base.clone();
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        name.push(format!(".{what}-{}-{n}.tmp", std::process::id()));
        let tmp = path.with_file_name(name);
        match OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(&tmp)
        {
            Ok(f) => return Ok((f, tmp)),
            // A file of a crashed process that had our pid: try the next name.
            Err(e) if e.kind() == ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(Error::io(&tmp, "create", e)),
        }
    }
    Err(Error::io(
        path,
        "create",
        std::io::Error::other("no free temporary file name"),
    ))
}

/// Creates an empty cache file at `path` unless one exists. The file is
/// written in full under a temporary name and then linked into place, so no
/// process ever sees a half-made file; if another thread or process won the
/// race, its file is used.
pub(crate) fn create_if_missing(path: &Path, cfg: &CacheConfig, io: &dyn IoFactory) -> Result<()> {
    if path.exists() {
        return Ok(());
    }
    let (file, tmp) = create_temp(path, "new")?;
    let counters = [0; COUNTER_COUNT];
    let result = crate::compact::write_whole(
        io.wrap(file, &tmp),
        &tmp,
        DATA_START,
        &IndexData::default(),
        &vec![0; stamps::MIN_CAPACITY as usize],
        &counters,
        1,
        cfg.fsync,
    )
    .and_then(|()| match std::fs::hard_link(&tmp, path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(Error::io(path, "link", e)),
    });
    let _ = std::fs::remove_file(&tmp);
    result?;
    if cfg.fsync {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            io.sync_dir(dir)
                .map_err(|e| Error::io(dir, "fsync directory", e))?;
        }
    }
    Ok(())
}

/// Opens the cache at `path`: creates it if missing, and when its newest
/// state is corrupt and `cfg.quarantine_corrupt`, moves it aside and starts
/// an empty one. Returns the first snapshot and whether it is read-only.
pub(crate) fn open_cache(path: &Path, cfg: &CacheConfig, io: &dyn IoFactory) -> Result<(Snapshot, bool)> {
    for _ in 0..100 {
        // Open first and create only when that finds nothing: the file
        // usually exists, and looking before opening would cost every open
        // a system call.
        let (fh, read_only) = match open_handle(path, cfg.read_only, io) {
            // Missing, or another opener moved a corrupt file aside just
            // now (the path names its replacement soon): create it unless
            // someone else did, and open again.
            Err(Error::Io { source, .. }) if source.kind() == ErrorKind::NotFound && !cfg.read_only => {
                match create_if_missing(path, cfg, io) {
                    Err(Error::Io { source, .. }) if is_denied(&source) && path.exists() => {}
                    other => other?,
                }
                continue;
            }
            other => other?,
        };
        let fh = Arc::new(fh);
        match Snapshot::load(Arc::clone(&fh)) {
            Ok(s) => return Ok((s, read_only)),
            Err(e @ Error::Corrupt { .. }) if cfg.quarantine_corrupt && !read_only => {
                if let Some(aside) = quarantine(path, &fh)? {
                    log::warn!(
                        "{}: {e}; moved aside to {} and starting empty",
                        path.display(),
                        aside.display()
                    );
                }
                // Either way the path now names another file (or none): open
                // that one.
            }
            Err(e) => return Err(e),
        }
    }
    Err(Error::io(
        path,
        "open",
        std::io::Error::other("the file kept being replaced by corrupt files"),
    ))
}

/// Moves the corrupt file `fh` aside (never deleting it) and returns where,
/// or returns None when the path no longer names it: another opener moved
/// it first, and the file at the path now is someone else's to judge. Done
/// under the file's exclusive lock, so that two openers never both move.
fn quarantine(path: &Path, fh: &FileHandle) -> Result<Option<PathBuf>> {
    fh.file.lock().map_err(|e| Error::io(path, "lock", e))?;
    let result = (|| {
        if !path_names(path, fh)? {
            return Ok(None);
        }
        let mut name = path.file_name().map(|n| n.to_os_string()).unwrap_or_default();
        name.push(format!(
            ".corrupt-{}",
            chrono::Utc::now().format("%Y%m%dT%H%M%S%.6f")
        ));
        let aside = path.with_file_name(name);
        std::fs::rename(path, &aside).map_err(|e| Error::io(path, "rename", e))?;
        Ok(Some(aside))
    })();
    if let Err(e) = fh.file.unlock() {
        log::warn!("{}: unlock failed: {e}", path.display());
    }
    result
}

/// Removes compaction files that a crashed compactor left beside `path`.
/// Only the lock holder writes them, so the caller, who holds the lock, knows
/// that any it finds are stale. Returns how many were removed.
pub(crate) fn remove_stale_temps(path: &Path) -> usize {
    let (Some(dir), Some(name)) = (path.parent(), path.file_name()) else {
        return 0;
    };
    let dir = if dir.as_os_str().is_empty() {
        Path::new(".")
    } else {
        dir
    };
    let prefix = format!("{}.compact-", name.to_string_lossy());
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    let mut removed = 0;
    for e in entries.flatten() {
        let n = e.file_name();
        let n = n.to_string_lossy();
        if n.starts_with(&prefix) && n.ends_with(".tmp") {
            match std::fs::remove_file(e.path()) {
                Ok(()) => {
                    log::info!("removed stale compaction file {}", e.path().display());
                    removed += 1;
                }
                Err(err) => log::warn!("{}: could not remove: {err}", e.path().display()),
            }
        }
    }
    removed
}
