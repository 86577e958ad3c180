//! `get_or_compute`: one computation per missing key, across threads and
//! processes.
//!
//! # The claim
//!
//! A caller that misses a key claims it by taking an exclusive `flock` on a
//! claim file beside the cache, `<cache file>.claims/<xxh3-128 of the key
//! in hex>.lock`, without blocking. The claimant looks the key up once more
//! (another may have stored it and released its claim in between), runs the
//! computation, puts the result, and releases the claim. Everyone else
//! polls: is the key stored now, or is the claim free (its holder gave up or
//! died)? The poll starts at 0.2 ms and doubles up to
//! [`GetOrCompute::max_poll`] (5 ms by default), so a waiter sees the scope,
//! or takes over, within about that long.
//!
//! The kernel releases an `flock` when the last descriptor of the open file
//! is closed, so a claimant that dies (killed, crashed, or panicking: the
//! claim is dropped while unwinding) frees its claim at once; nothing times
//! out. `flock` belongs to the open file description, and every claim
//! attempt opens the file anew, so two threads of one process exclude each
//! other just as two processes do.
//!
//! The claimant deletes the claim file before releasing it, so the claims
//! directory holds only the files of computations in progress (and of
//! claimants that died, until the key is next claimed). A claim taken on a
//! file that was deleted meanwhile guards nothing; so after locking, the
//! claimant checks that the path still names the locked file, and tries
//! again if not.

use crate::cache::ScopeCache;
use crate::error::{Error, Result};
use crate::key;
use crate::parts::ScopeParts;
use crate::scope::Scope;
use std::fs::{File, OpenOptions, TryLockError};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// What a computation passed to [`ScopeCache::get_or_compute`] may fail with.
pub type ComputeError = Box<dyn std::error::Error + Send + Sync>;

/// What a waiter does when another caller's computation takes longer than
/// [`GetOrCompute::timeout`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum OnTimeout {
    /// Return [`Error::ComputeTimeout`]; the computation is not run.
    #[default]
    Fail,
    /// Run the computation anyway, without the claim, and store its result
    /// (which then replaces the other caller's, should that one finish):
    /// the key is computed twice.
    Compute,
}

/// Options of [`ScopeCache::get_or_compute_with`].
///
/// ```
/// use scopecache::{GetOrCompute, OnTimeout};
/// use std::time::Duration;
/// let opts = GetOrCompute { timeout: Duration::from_secs(30), on_timeout: OnTimeout::Compute,
///                           ..GetOrCompute::default() };
/// assert_eq!(opts.max_poll, Duration::from_millis(5));
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GetOrCompute {
    /// How long a caller waits for another caller's computation of the same
    /// key before [`on_timeout`](GetOrCompute::on_timeout) applies; 10
    /// minutes by default. A caller that computes is not bounded by it.
    pub timeout: Duration,
    /// What a waiter does after `timeout`; [`OnTimeout::Fail`] by default.
    pub on_timeout: OnTimeout,
    /// The longest pause between two looks of a waiter; 5 ms by default.
    /// Each look costs a lookup in the index and an attempt at the claim
    /// (an `open` and an `flock`), no write.
    pub max_poll: Duration,
}

impl Default for GetOrCompute {
    fn default() -> GetOrCompute {
        GetOrCompute {
            timeout: Duration::from_secs(600),
            on_timeout: OnTimeout::Fail,
            max_poll: Duration::from_millis(5),
        }
    }
}

/// The first pause of a waiter.
const MIN_POLL: Duration = Duration::from_micros(200);

/// A held claim on one key: an exclusive `flock` on its claim file.
/// Dropping it deletes the file, then releases the lock.
#[derive(Debug)]
struct Claim {
    path: PathBuf,
    /// Held for its lock; closing it releases the lock.
    _file: File,
}

impl Claim {
    /// Takes the claim file at `path` if no one holds it.
    fn try_take(path: &Path) -> Result<Option<Claim>> {
        // Each round loses only to a holder that deleted the file after we
        // opened it, which ends its claim; a few rounds settle it.
        for _ in 0..64 {
            let file = OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(false)
                .open(path)
                .map_err(|e| Error::io(path, "open", e))?;
            match file.try_lock() {
                Ok(()) => {}
                Err(TryLockError::WouldBlock) => return Ok(None),
                Err(TryLockError::Error(e)) => return Err(Error::io(path, "flock", e)),
            }
            let held = file.metadata().map_err(|e| Error::io(path, "fstat", e))?;
            match std::fs::metadata(path) {
                Ok(now) if now.ino() == held.ino() && now.dev() == held.dev() => {
                    return Ok(Some(Claim {
                        path: path.to_path_buf(),
                        _file: file,
                    }))
                }
                Ok(_) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(Error::io(path, "stat", e)),
            }
        }
        Err(Error::io(
            path,
            "flock",
            std::io::Error::other("the claim file kept being replaced while taking it"),
        ))
    }
}

impl Drop for Claim {
    fn drop(&mut self) {
        if let Err(e) = std::fs::remove_file(&self.path) {
            log::debug!("{}: could not remove the claim file: {e}", self.path.display());
        }
    }
}

impl ScopeCache {
    /// The directory of claim files of
    /// [`get_or_compute`](ScopeCache::get_or_compute): the cache file's path
    /// with `.claims` appended. It is created on first use; it holds a file
    /// only while a key is being computed (or after its computer died).
    pub fn claims_dir(&self) -> PathBuf {
        let mut name = self.path().as_os_str().to_os_string();
        name.push(".claims");
        PathBuf::from(name)
    }

    fn claim_path(&self, key: &str) -> Result<PathBuf> {
        let dir = self.claims_dir();
        std::fs::create_dir_all(&dir).map_err(|e| Error::io(&dir, "mkdir", e))?;
        let h = xxhash_rust::xxh3::xxh3_128(key.as_bytes());
        Ok(dir.join(format!("{h:032x}.lock")))
    }

    /// Gets the scope under `key`, or computes, stores and gets it if it is
    /// missing, such that of all threads and processes that miss `key` at
    /// the same time exactly one runs its `compute`; the others wait for its
    /// result. Uses [`GetOrCompute::default`]: waiters give up with
    /// [`Error::ComputeTimeout`] after 10 minutes.
    ///
    /// See [`get_or_compute_with`](ScopeCache::get_or_compute_with).
    ///
    /// ```
    /// # fn main() -> scopecache::Result<()> {
    /// use scopecache::{CacheConfig, IdMap, ScopeCache, ScopeParts};
    /// use bitvec::prelude::*;
    /// let dir = tempfile::tempdir().unwrap();
    /// let cache = ScopeCache::open(dir.path().join("c.scope"), CacheConfig::default())?;
    /// let mut runs = 0;
    /// for _ in 0..2 {
    ///     let scope = cache.get_or_compute("run-1", || {
    ///         runs += 1;
    ///         Ok(ScopeParts {
    ///             nodes: bitvec![u64, Lsb0; 1, 1],
    ///             links: bitvec![u64, Lsb0; 0],
    ///             node_ids: IdMap::from_ids(["a", "b"])?,
    ///             link_ids: IdMap::from_ids(["a-b"])?,
    ///             attributes: serde_json::Map::new(),
    ///         })
    ///     })?;
    ///     assert_eq!(scope.nodes().count_ones(), 2);
    /// }
    /// assert_eq!(runs, 1);
    /// # Ok(()) }
    /// ```
    pub fn get_or_compute<F>(&self, key: &str, compute: F) -> Result<Scope>
    where
        F: FnOnce() -> std::result::Result<ScopeParts, ComputeError>,
    {
        self.get_or_compute_with(key, &GetOrCompute::default(), compute)
    }

    /// [`get_or_compute`](ScopeCache::get_or_compute) with options.
    ///
    /// 1. A [`get`](ScopeCache::get) that finds the key returns at once.
    /// 2. Otherwise the caller tries to claim the key: an exclusive `flock`,
    ///    taken without blocking, on a claim file in
    ///    [`claims_dir`](ScopeCache::claims_dir) named by the key's hash.
    ///    The claimant looks once more, then runs `compute`,
    ///    [`put`](ScopeCache::put)s its result, gets it, deletes the claim
    ///    file and releases the lock. The kernel releases the lock of a
    ///    claimant that dies, at once; a panic in `compute` releases it while
    ///    unwinding. Each attempt opens the file anew, so threads of one
    ///    process exclude each other as processes do.
    /// 3. The others poll (every 0.2 ms at first, then up to
    ///    `opts.max_poll`) until the key is stored, and return it; or until
    ///    the claim is free with the key still missing (its holder failed or
    ///    died), and then claim it themselves, as in 2.
    /// 4. After `opts.timeout` of waiting: [`Error::ComputeTimeout`], or with
    ///    [`OnTimeout::Compute`] the waiter computes and stores without the
    ///    claim.
    ///
    /// Errors: [`Error::Compute`] carrying `compute`'s own error (the claim
    /// is released, so the next caller computes anew); the errors of
    /// `get` and `put` (a scope too large, a full disk); `ReadOnly` on a
    /// read-only cache that misses (before computing);
    /// [`Error::StoredButGone`] if the stored scope was evicted or expired
    /// before it could be read back (limits far too small); `Io` if the
    /// claims directory cannot be created or its file locked.
    ///
    /// Cost when the key is stored: one `get`. On a miss: a directory
    /// creation check, an `open`, an `flock` and an `unlink` besides the
    /// computation and the put.
    pub fn get_or_compute_with<F>(&self, key: &str, opts: &GetOrCompute, compute: F) -> Result<Scope>
    where
        F: FnOnce() -> std::result::Result<ScopeParts, ComputeError>,
    {
        key::validate(key)?;
        if let Some(s) = self.get(key)? {
            return Ok(s);
        }
        if self.is_read_only() {
            return Err(Error::ReadOnly {
                path: self.path().to_path_buf(),
            });
        }
        let claim_path = self.claim_path(key)?;
        let start = Instant::now();
        let mut pause = MIN_POLL;
        loop {
            if let Some(claim) = Claim::try_take(&claim_path)? {
                // Whoever held the claim before may have stored the key and
                // released it since our last look.
                if let Some(s) = self.stored(key)? {
                    return Ok(s);
                }
                return self.compute_and_store(key, Some(claim), compute);
            }
            if let Some(s) = self.stored(key)? {
                return Ok(s);
            }
            let waited = start.elapsed();
            if waited >= opts.timeout {
                return match opts.on_timeout {
                    OnTimeout::Fail => Err(Error::ComputeTimeout {
                        key: key.to_owned(),
                        waited,
                    }),
                    OnTimeout::Compute => {
                        log::info!(
                            "{}: waited {waited:?} for {key:?} to be computed; computing it here too",
                            self.path().display()
                        );
                        self.compute_and_store(key, None, compute)
                    }
                };
            }
            std::thread::sleep(pause.min(opts.timeout - waited));
            pause = pause.saturating_mul(2).min(opts.max_poll.max(MIN_POLL));
        }
    }

    /// The scope under `key` if it is stored now. Looks with `contains`
    /// first, which records no miss, so that polling leaves the hit and
    /// miss counters alone.
    fn stored(&self, key: &str) -> Result<Option<Scope>> {
        if self.contains(key)? {
            self.get(key)
        } else {
            Ok(None)
        }
    }

    fn compute_and_store<F>(&self, key: &str, claim: Option<Claim>, compute: F) -> Result<Scope>
    where
        F: FnOnce() -> std::result::Result<ScopeParts, ComputeError>,
    {
        let parts = compute().map_err(|source| Error::Compute {
            key: key.to_owned(),
            source,
        })?;
        self.put(key, &parts.data())?;
        let got = self.get(key)?;
        // Released only now that the scope is committed, so that a waiter
        // that finds the claim free also finds the scope.
        drop(claim);
        got.ok_or_else(|| Error::StoredButGone { key: key.to_owned() })
    }
}
