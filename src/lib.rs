//! scopecache: a memory-mapped, single-file cache database for graph
//! coverage scopes.
//!
//! A coverage scope is the result of a coverage run over a graph: which
//! nodes and which links it covered (two bitsets), the mappings between node
//! and link id strings and bit positions, and the run's attributes.
//! [`ScopeCache`] keeps any number of scopes in one file that many processes
//! share: one writer at a time (an exclusive file lock), readers never
//! blocked, and every read zero-copy through a memory map, so that getting a
//! scope costs microseconds whatever its size. Identical id mappings are
//! stored once and shared by every scope that uses them.
//!
//! ```
//! # fn main() -> scopecache::Result<()> {
//! use scopecache::{ScopeCache, CacheConfig, ScopeData, IdMap};
//! use bitvec::prelude::*;
//! let dir = tempfile::tempdir().unwrap();
//! let cache = ScopeCache::open(dir.path().join("scopes.cache"), CacheConfig::default())?;
//! let node_ids = IdMap::from_ids((0..1000).map(|i| format!("node-{i:08}")))?;
//! let link_ids = IdMap::from_ids((0..2000).map(|i| format!("link-{i:08}")))?;
//! let nodes = BitVec::<u64, Lsb0>::repeat(true, 1000);
//! let links = BitVec::<u64, Lsb0>::repeat(false, 2000);
//! let attrs = serde_json::Map::new();
//! cache.put("run-1", &ScopeData { nodes: &nodes, links: &links,
//!     node_ids: &node_ids, link_ids: &link_ids, attributes: &attrs })?;
//!
//! let scope = cache.get("run-1")?.expect("just stored");
//! let i = scope.node_ids().index_of("node-00000042").expect("a node id");
//! assert!(scope.nodes()[i as usize]);
//! # Ok(()) }
//! ```
//!
//! Scopes of one graph can be compared without copying them out:
//! [`algebra`] computes unions, intersections, differences and per-id
//! counts word by word over their mapped bitsets, [`Scope::covered_node_ids`]
//! names what a scope covers, and [`ScopeCache::put_coverage`] stores a
//! result with the inputs' mappings. [`ScopeCache::get_or_compute`] computes
//! a missing scope once however many threads and processes miss it together.
//!
//! The file format is documented byte by byte in FORMAT.md.
#![deny(missing_docs)]

#[cfg(target_endian = "big")]
compile_error!("scopecache maps little-endian words in place and needs a little-endian target");

pub mod algebra;
mod bitset;
mod cache;
mod chain;
mod clock;
mod commit;
mod compact;
mod compute;
mod config;
mod current;
mod error;
mod eviction;
mod failpoint;
mod format;
pub mod idmap;
mod index;
#[doc(hidden)]
pub mod io;
mod key;
mod mapping;
#[cfg(feature = "migrate")]
pub mod migrate;
mod model;
mod open;
mod parts;
#[cfg(feature = "remote")]
pub mod remote;
mod scope;
mod snapshot;
mod source;
mod stamps;
mod stats;
#[cfg(feature = "testing")]
#[doc(hidden)]
pub mod testing;
mod verify;

pub use algebra::{Counts, Coverage};
pub use cache::{ScopeCache, ScopeData};
pub use clock::{Clock, ManualClock, SystemClock};
pub use compute::{ComputeError, GetOrCompute, OnTimeout};
pub use config::CacheConfig;
pub use error::{Error, Result};
pub use format::FORMAT_VERSION;
pub use idmap::IdMap;
pub use key::MAX_KEY_LEN;
pub use parts::ScopeParts;
pub use scope::{EntryInfo, Scope};
pub use stats::{CacheStats, CompactReport, MaintainReport, Problem, VerifyReport};
