//! The `scopecache._native` extension module: Python bindings of the
//! scopecache engine. The Python package `scopecache` (beside this crate)
//! wraps it; its API is documented in `scopecache/_native.pyi`.

mod algebra;
mod bitset;
mod cache;
mod compute;
mod errors;
mod fork;
mod idmap;
mod input;
mod migrate;
mod pymods;
mod remote;

use pyo3::prelude::*;
use std::sync::OnceLock;

static LOG_RESET: OnceLock<pyo3_log::ResetHandle> = OnceLock::new();

/// Makes the forwarding of the engine's log records to `logging` notice
/// level changes made after the first record (levels are cached).
#[pyfunction]
fn refresh_logging() {
    if let Some(h) = LOG_RESET.get() {
        h.reset();
    }
}

#[pymodule]
fn _native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    // The engine's `log` records go to Python's `logging`, under loggers
    // named after the Rust modules ("scopecache.cache", ...).
    if let Ok(h) = pyo3_log::try_init() {
        let _ = LOG_RESET.set(h);
    }
    fork::install();
    m.add_class::<cache::PyScopeCache>()?;
    m.add_class::<cache::PyScope>()?;
    m.add_class::<idmap::PyIdMap>()?;
    m.add_class::<idmap::IdMapIter>()?;
    m.add_class::<bitset::Bitset>()?;
    m.add_class::<bitset::BitsetIter>()?;
    m.add_class::<algebra::PyCoverage>()?;
    m.add_class::<algebra::PyCounts>()?;
    m.add_function(wrap_pyfunction!(algebra::union, m)?)?;
    m.add_function(wrap_pyfunction!(algebra::intersection, m)?)?;
    m.add_function(wrap_pyfunction!(algebra::difference, m)?)?;
    m.add_function(wrap_pyfunction!(algebra::counts, m)?)?;
    m.add_function(wrap_pyfunction!(refresh_logging, m)?)?;
    m.add_function(wrap_pyfunction!(remote::has_remote, m)?)?;
    m.add_function(wrap_pyfunction!(migrate::migrate, m)?)?;
    m.add_function(wrap_pyfunction!(idmap::forget_dict_maps, m)?)?;
    m.add("FORMAT_VERSION", scopecache::FORMAT_VERSION)?;
    m.add("MAX_KEY_LEN", scopecache::MAX_KEY_LEN)?;
    Ok(())
}
