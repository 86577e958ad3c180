//! The shared remote tier: scopes shared between machines through an
//! S3-compatible object store (feature `remote`).
//!
//! A cache file serves one machine. [`Remote`] lets many machines share
//! the scopes they compute through one bucket: [`Remote::push`] uploads a
//! scope of a local file, [`Remote::pull`] brings one into another machine's
//! file. With [`crate::CacheConfig::remote`] set, the cache does both by
//! itself: a [`ScopeCache::get`](crate::ScopeCache::get) that misses locally pulls the scope
//! (read-through), and [`ScopeCache::put`](crate::ScopeCache::put) pushes what it stored
//! (write-through).
//!
//! # Layout in the bucket
//!
//! Mappings and bitsets are immutable objects named by the BLAKE3 hash of
//! their bytes, written with create-only conditional puts; each scope key
//! has one small JSON manifest naming its objects, replaced with a
//! conditional put on its ETag, so that two machines putting one key never
//! interleave: the manifest always names one complete version, the newest
//! by creation time. FORMAT.md ("The remote tier") has the details.
//!
//! # Guarantees
//!
//! - Every pulled object is checked against its name (its BLAKE3 hash), and
//!   every pulled mapping fully ([`IdMap::verify`](crate::IdMap::verify)),
//!   before anything enters the local file; a missing or damaged object is
//!   an [`Error::RemoteMissing`] or [`Error::RemoteCorrupt`], and nothing is
//!   stored.
//! - Network errors and timeouts are [`Error::Remote`]; they never touch the
//!   local file. Local readers never wait on the network: only a `get` that
//!   misses locally, with a remote configured, asks the store.
//! - Objects the bucket holds already are not uploaded again: 50 scopes of
//!   one graph upload its mappings once. A pull downloads only the mappings
//!   the local file does not hold.
//! - Local eviction never deletes remote objects; [`Remote::gc`] does, by a
//!   retention policy.
//!
//! # Cost
//!
//! Requests run on a single-threaded async runtime owned by the `Remote`;
//! the objects of one scope travel concurrently. A `Remote` must not be
//! used from inside another async runtime's task (that is an
//! [`Error::Config`]); use a blocking thread.

mod gc;
mod hook;
mod layout;
mod list;
mod manifest;
mod pull;
mod push;
mod transfer;
mod url;

pub use gc::{GcPolicy, GcReport};
pub use layout::ObjectName;
pub use list::RemoteEntry;
pub use pull::PullReport;
pub use push::{ManifestOutcome, PushReport};
pub use url::{RemoteConfig, RemoteUrl};

pub(crate) use hook::{read_through, write_through};

use crate::error::{Error, Result};
use layout::Layout;
use object_store::aws::AmazonS3Builder;
use object_store::{ClientOptions, ObjectStore, RetryConfig};
use std::collections::{BTreeSet, HashMap};
use std::fmt;
use std::future::Future;
use std::sync::{Arc, Mutex, MutexGuard};

/// A handle on one bucket prefix of an S3-compatible store, shared by
/// every cache and thread that uses it (`Send + Sync`; wrap it in an `Arc`).
///
/// ```no_run
/// # fn main() -> scopecache::Result<()> {
/// use scopecache::remote::{Remote, RemoteConfig};
/// use scopecache::{CacheConfig, ScopeCache};
/// use std::sync::Arc;
/// // Endpoint, region and keys come from the AWS_* environment variables.
/// let remote = Arc::new(Remote::new(RemoteConfig::new("s3://team-scopes/graphs")?)?);
/// let cache = ScopeCache::open("scopes.cache", CacheConfig {
///     remote: Some(Arc::clone(&remote)),
///     ..CacheConfig::default()
/// })?;
/// // A local miss now looks in the bucket; a put is pushed to it.
/// if let Some(scope) = cache.get("run-42")? {
///     println!("{} nodes covered", scope.nodes().count_ones());
/// }
/// # Ok(()) }
/// ```
pub struct Remote {
    url: RemoteUrl,
    layout: Layout,
    store: Arc<dyn ObjectStore>,
    rt: tokio::runtime::Runtime,
    /// Names of mappings hashed or checked by this handle, by (xxh3-128
    /// digest, region length): a second push of a graph's mapping need not
    /// hash its bytes again.
    names: Mutex<HashMap<(u128, u64), ObjectName>>,
    /// Keys whose write-through push failed, for [`Remote::flush`].
    pending: Mutex<BTreeSet<String>>,
    /// See [`RemoteConfig::verify_mappings`].
    verify_mappings: bool,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Remote {
    /// Connects to nothing yet: builds the client for `config` (requests are
    /// made when needed).
    ///
    /// Errors: [`Error::Config`] when the settings are unusable (no region
    /// or endpoint can be derived, a bad endpoint URL), or when the async
    /// runtime cannot be started.
    pub fn new(config: RemoteConfig) -> Result<Remote> {
        // The TLS stack needs a process-wide crypto provider; a second
        // install (another Remote, or the application's own) is fine.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let mut b = AmazonS3Builder::from_env().with_bucket_name(config.url.bucket());
        if let Some(e) = &config.endpoint {
            b = b.with_endpoint(e);
        }
        if let Some(r) = &config.region {
            b = b.with_region(r);
        }
        if let Some(k) = &config.access_key_id {
            b = b.with_access_key_id(k);
        }
        if let Some(k) = &config.secret_access_key {
            b = b.with_secret_access_key(k);
        }
        let mut client = ClientOptions::new()
            .with_timeout(config.timeout)
            .with_connect_timeout(config.connect_timeout);
        if let Some(h) = config.allow_http {
            client = client.with_allow_http(h);
        } else if let Ok(v) = std::env::var("AWS_ALLOW_HTTP") {
            client = client.with_allow_http(v.eq_ignore_ascii_case("true") || v == "1");
        }
        let retry = RetryConfig {
            max_retries: config.max_retries,
            retry_timeout: config.retry_timeout,
            ..RetryConfig::default()
        };
        let store = b
            .with_client_options(client)
            .with_retry(retry)
            .build()
            .map_err(|e| Error::Config(format!("remote {}: {e}", config.url)))?;
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_io()
            .enable_time()
            .build()
            .map_err(|e| {
                Error::Config(format!(
                    "remote {}: cannot start the I/O runtime: {e}",
                    config.url
                ))
            })?;
        Ok(Remote {
            verify_mappings: config.verify_mappings,
            layout: Layout::new(&config.url),
            url: config.url,
            store: Arc::new(store),
            rt,
            names: Mutex::new(HashMap::new()),
            pending: Mutex::new(BTreeSet::new()),
        })
    }

    /// The bucket and prefix.
    pub fn url(&self) -> &RemoteUrl {
        &self.url
    }

    /// Keys whose write-through push failed and that [`Remote::flush`]
    /// will push again, in key order.
    pub fn pending(&self) -> Vec<String> {
        lock(&self.pending).iter().cloned().collect()
    }

    /// Runs `f` to completion on the handle's runtime.
    fn run<F: Future>(&self, f: F) -> Result<F::Output> {
        if tokio::runtime::Handle::try_current().is_ok() {
            return Err(Error::Config(format!(
                "remote {}: called from inside an async runtime; call it from a blocking thread",
                self.url
            )));
        }
        Ok(self.rt.block_on(f))
    }

    /// Where `path` is, for error messages.
    fn location(&self, path: &object_store::path::Path) -> String {
        format!("s3://{}/{}", self.url.bucket(), path)
    }

    /// A store error on `path` as the crate's error.
    fn error(&self, path: &object_store::path::Path, op: &'static str, e: object_store::Error) -> Error {
        match e {
            object_store::Error::NotFound { .. } => Error::RemoteMissing {
                location: self.location(path),
                what: format!("{op}: no such object"),
            },
            e => Error::Remote {
                location: self.location(path),
                op,
                what: e.to_string(),
            },
        }
    }

    /// A damaged object or manifest at `path`.
    fn corrupt(&self, path: &object_store::path::Path, what: impl Into<String>) -> Error {
        Error::RemoteCorrupt {
            location: self.location(path),
            what: what.into(),
        }
    }
}

impl fmt::Debug for Remote {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Remote")
            .field("url", &self.url.to_string())
            .field("pending", &lock(&self.pending).len())
            .finish_non_exhaustive()
    }
}
