//! How a `ScopeCache` with a configured remote uses it: read-through on a
//! local miss, write-through after a put, and the explicit calls.

use crate::cache::ScopeCache;
use crate::error::{Error, Result};
use crate::remote::{lock, PullReport, PushReport, Remote};
use crate::scope::Scope;
use std::sync::Arc;

/// `get`'s read-through: after a local miss, pull `key` from the configured
/// remote. A remote failure is logged and answered as a miss, so that a
/// caller that computes scopes on a miss keeps working while the store is
/// down; [`ScopeCache::get_remote`] returns the error instead.
pub(crate) fn read_through(cache: &ScopeCache, key: &str) -> Result<Option<Scope>> {
    let Some(remote) = cache.config().remote.clone() else {
        return Ok(None);
    };
    if cache.is_read_only() {
        return Ok(None);
    }
    match pull_and_get(cache, &remote, key) {
        Ok(found) => Ok(found),
        Err(e @ Error::InvalidKey { .. }) => Err(e),
        Err(e) => {
            log::warn!(
                "{}: read-through of {key:?} from {} failed: {e}",
                cache.path().display(),
                remote.url()
            );
            Ok(None)
        }
    }
}

fn pull_and_get(cache: &ScopeCache, remote: &Remote, key: &str) -> Result<Option<Scope>> {
    match remote.pull(cache, key)? {
        Some(_) => cache.get_local(key),
        None => Ok(None),
    }
}

/// `put`'s write-through: push `key` to the configured remote. The local
/// put has committed already; a failed push is logged and remembered, and
/// [`ScopeCache::flush_remote`] retries it.
pub(crate) fn write_through(cache: &ScopeCache, key: &str) {
    let Some(remote) = cache.config().remote.clone() else {
        return;
    };
    match remote.push(cache, key) {
        Ok(_) => {
            lock(&remote.pending).remove(key);
        }
        Err(e) => {
            log::warn!(
                "{}: write-through of {key:?} to {} failed, kept for flush_remote: {e}",
                cache.path().display(),
                remote.url()
            );
            lock(&remote.pending).insert(key.to_owned());
        }
    }
}

impl Remote {
    /// Pushes again every key whose write-through failed, from `cache`;
    /// returns the reports of those pushed. Keys no longer in the local
    /// file are dropped from the list. Stops at the first failure (the keys
    /// not pushed stay pending).
    pub fn flush(&self, cache: &ScopeCache) -> Result<Vec<PushReport>> {
        let mut done = Vec::new();
        for key in self.pending() {
            if let Some(r) = self.push(cache, &key)? {
                done.push(r);
            }
            lock(&self.pending).remove(&key);
        }
        Ok(done)
    }
}

impl ScopeCache {
    fn remote(&self) -> Result<Arc<Remote>> {
        self.config()
            .remote
            .clone()
            .ok_or_else(|| Error::Config("no remote is configured (CacheConfig::remote)".into()))
    }

    /// Like [`ScopeCache::get`], but a failure of the remote is returned
    /// instead of being answered as a miss: `RemoteMissing`, `RemoteCorrupt`
    /// or `Remote`. A local hit never touches the network.
    ///
    /// Errors also: `Config` when no remote is configured, `ReadOnly` when
    /// the scope would have to be stored in a read-only cache.
    pub fn get_remote(&self, key: &str) -> Result<Option<Scope>> {
        let remote = self.remote()?;
        if let Some(s) = self.get_local(key)? {
            return Ok(Some(s));
        }
        pull_and_get(self, &remote, key)
    }

    /// Pushes the local scope under `key` to the configured remote; None
    /// when the local file does not hold `key`. See [`Remote::push`].
    pub fn push(&self, key: &str) -> Result<Option<PushReport>> {
        self.remote()?.push(self, key)
    }

    /// Pulls `key` from the configured remote into the local file; None when
    /// the bucket does not hold it. See [`Remote::pull`].
    pub fn pull(&self, key: &str) -> Result<Option<PullReport>> {
        self.remote()?.pull(self, key)
    }

    /// Pushes the keys whose write-through failed; see [`Remote::flush`].
    pub fn flush_remote(&self) -> Result<Vec<PushReport>> {
        self.remote()?.flush(self)
    }
}
