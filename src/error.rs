//! The one error type of the crate.

use std::io;
use std::path::PathBuf;

/// Everything that can go wrong in scopecache.
///
/// Errors name the file they concern where there is one, and say what was
/// expected and what was found.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// An operating-system I/O call failed.
    #[error("{path}: {op}: {source}")]
    Io {
        /// The file the call was made on.
        path: PathBuf,
        /// What was being done, for example "write", "fsync", "rename".
        op: &'static str,
        /// The operating system's error.
        #[source]
        source: io::Error,
    },
    /// A key is empty, longer than [`crate::MAX_KEY_LEN`] bytes, or holds a NUL byte.
    #[error("invalid key {key:?}: {reason}")]
    InvalidKey {
        /// The key as given (cut to 64 characters).
        key: String,
        /// Why it was refused.
        reason: &'static str,
    },
    /// A bitset's length differs from the number of ids in its mapping.
    #[error("length mismatch: the {what} bitset has {bits} bits but its id mapping has {ids} ids")]
    LengthMismatch {
        /// `"nodes"` or `"links"`.
        what: &'static str,
        /// Bits in the bitset.
        bits: u64,
        /// Ids in the mapping.
        ids: u64,
    },
    /// `IdMap::index_of_batch` was given an output slice of another length
    /// than its input.
    #[error("index_of_batch: {ids} ids but room for {out} results")]
    BatchLength {
        /// Ids to look up.
        ids: usize,
        /// Length of the output slice.
        out: usize,
    },
    /// The same id appears twice in one mapping.
    #[error("duplicate id {id:?} at positions {first} and {second}")]
    DuplicateId {
        /// The id.
        id: String,
        /// Its first position.
        first: u64,
        /// Its second position.
        second: u64,
    },
    /// A mapping holds more ids than the format can index.
    #[error("too many ids: {count}, at most {max} fit in one mapping")]
    TooManyIds {
        /// Ids given.
        count: u64,
        /// The most that fit.
        max: u64,
    },
    /// The attributes could not be encoded or decoded as JSON.
    #[error("attributes: {0}")]
    Attributes(#[from] serde_json::Error),
    /// The file, or one part of it, fails its checks.
    #[error("{path}: corrupt: {what}")]
    Corrupt {
        /// The cache file.
        path: PathBuf,
        /// What is wrong, with the expected and the found value.
        what: String,
    },
    /// The file does not start with the scopecache magic.
    #[error("{path}: not a scopecache file: expected magic {expected:?}, found {found:?}")]
    NotACacheFile {
        /// The file.
        path: PathBuf,
        /// The magic this build writes.
        expected: String,
        /// The first bytes found.
        found: String,
    },
    /// The file was written in a format version this build does not read.
    #[error("{path}: format version {found} is not supported: this build reads version {supported}")]
    UnsupportedVersion {
        /// The file.
        path: PathBuf,
        /// The version in the file.
        found: u32,
        /// The version this build reads and writes.
        supported: u32,
    },
    /// A write was asked of a cache opened read-only.
    #[error("{path}: the cache is open read-only")]
    ReadOnly {
        /// The file.
        path: PathBuf,
    },
    /// A single scope is larger than `max_size_bytes`.
    #[error("scope {key:?} needs {needed} bytes but max_size_bytes is {max}")]
    TooLarge {
        /// The scope's key.
        key: String,
        /// Bytes the scope would take in the file.
        needed: u64,
        /// The configured bound.
        max: u64,
    },
    /// An earlier fsync failed, so the page cache can no longer be trusted;
    /// the handle refuses writes until the cache is opened again.
    #[error("{path}: an earlier fsync failed; open the cache again before writing")]
    Poisoned {
        /// The file.
        path: PathBuf,
    },
    /// The configuration is unusable.
    #[error("invalid configuration: {0}")]
    Config(String),
    /// Scopes combined word by word by [`crate::algebra`] do not share one
    /// id mapping (same digest and length) for their nodes or their links.
    #[error(
        "the {what} id mappings of scopes {left:?} and {right:?} differ; \
         combine only scopes whose bits mean the same ids"
    )]
    MappingMismatch {
        /// `"nodes"` or `"links"`.
        what: &'static str,
        /// The key of the first scope.
        left: String,
        /// The key of the scope whose mapping differs from the first's.
        right: String,
    },
    /// An operation over a list of scopes was given none.
    #[error("{op}: no scopes given; at least one is needed")]
    NoScopes {
        /// The operation, for example `"union"`.
        op: &'static str,
    },
    /// The computation passed to [`crate::ScopeCache::get_or_compute`] failed.
    /// Its claim on the key was released, so another caller may try again.
    #[error("computing scope {key:?} failed: {source}")]
    Compute {
        /// The key being computed.
        key: String,
        /// The computation's own error.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// [`crate::ScopeCache::get_or_compute`] waited for another caller's
    /// computation of the key longer than its timeout allowed.
    #[error("waited {waited:?} for another process to compute scope {key:?}; giving up")]
    ComputeTimeout {
        /// The key waited for.
        key: String,
        /// How long it waited.
        waited: std::time::Duration,
    },
    /// A scope was stored by [`crate::ScopeCache::get_or_compute`] but was
    /// gone (evicted or expired) before it could be read back.
    #[error(
        "scope {key:?} was stored but gone before it could be read back \
         (evicted or expired: see max_entries, max_size_bytes and ttl)"
    )]
    StoredButGone {
        /// The key.
        key: String,
    },
    /// A request to the remote store failed: the network, a timeout, the
    /// server's refusal. Nothing was stored locally because of it; trying
    /// again later is safe.
    #[error("remote {location}: {op}: {what}")]
    Remote {
        /// The bucket URL and the object concerned.
        location: String,
        /// What was being done, for example "get", "put", "list".
        op: &'static str,
        /// The store's or the network's error.
        what: String,
    },
    /// An object or manifest the remote store should hold is not there (it
    /// was never pushed, or a `remote gc` deleted it).
    #[error("remote {location}: not found: {what}")]
    RemoteMissing {
        /// The bucket URL and the object concerned.
        location: String,
        /// What was looked for.
        what: String,
    },
    /// An object or manifest in the remote store fails its checks: its bytes
    /// do not hash to its name, or do not decode. It is never stored locally.
    #[error("remote {location}: damaged: {what}")]
    RemoteCorrupt {
        /// The bucket URL and the object concerned.
        location: String,
        /// What is wrong, with the expected and the found value.
        what: String,
    },
}

/// Shorthand for `std::result::Result<T, scopecache::Error>`.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub(crate) fn io(path: impl Into<PathBuf>, op: &'static str, source: io::Error) -> Error {
        Error::Io {
            path: path.into(),
            op,
            source,
        }
    }

    pub(crate) fn corrupt(path: impl Into<PathBuf>, what: impl Into<String>) -> Error {
        Error::Corrupt {
            path: path.into(),
            what: what.into(),
        }
    }

    /// True when the error means that bytes in the file failed their checks.
    pub fn is_corruption(&self) -> bool {
        matches!(
            self,
            Error::Corrupt { .. } | Error::NotACacheFile { .. } | Error::UnsupportedVersion { .. }
        )
    }
}
