//! scopecache: a memory-mapped, single-file cache database for graph coverage scopes.
#![deny(missing_docs)]

#[cfg(target_endian = "big")]
compile_error!("scopecache maps little-endian words in place and needs a little-endian target");

mod error;
pub mod idmap;
mod source;

pub use error::{Error, Result};
pub use idmap::IdMap;
