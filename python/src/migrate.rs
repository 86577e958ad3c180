//! `migrate(cache_dir, file)`: the original manager's directories into a
//! scopecache file.

use std::path::PathBuf;

use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList};

use crate::cache::PyScopeCache;
use crate::errors::py_err;

/// Migrates the original CacheScopeManager's directory `cache_dir` (the one
/// holding cache_metadata.json) into `file`, a cache file path or an open
/// `ScopeCache`. Entries keep their keys, times (the original's naive
/// times are taken as UTC) and attributes; identical mappings are stored
/// once; expired or broken entries are skipped, each with its reason.
/// Returns {"imported": [keys], "skipped": [{"key", "reason"}],
/// "mappings_decoded": n, "entries": n}. Runs without the GIL.
#[pyfunction]
#[pyo3(signature = (cache_dir, file, ttl_hours = Some(24.0)))]
pub fn migrate<'py>(
    py: Python<'py>,
    cache_dir: PathBuf,
    file: &Bound<'py, PyAny>,
    ttl_hours: Option<f64>,
) -> PyResult<Bound<'py, PyDict>> {
    let cache = match file.cast::<PyScopeCache>() {
        Ok(c) => c.clone(),
        Err(_) => {
            let path: PathBuf = file.extract()?;
            let cls = py.get_type::<PyScopeCache>();
            let kwargs = PyDict::new(py);
            kwargs.set_item("ttl_hours", ttl_hours)?;
            cls.call((path,), Some(&kwargs))?.cast_into::<PyScopeCache>()?
        }
    };
    let handle = cache.get().handle(py)?;
    let report = py
        .detach(|| {
            scopecache::migrate::migrate_python_dir(&handle, &cache_dir, chrono::Utc::now(), |_, _, _| {})
        })
        .map_err(py_err(py))?;
    let d = PyDict::new(py);
    d.set_item("imported", PyList::new(py, &report.imported)?)?;
    let skipped = PyList::empty(py);
    for s in &report.skipped {
        let sd = PyDict::new(py);
        sd.set_item("key", &s.key)?;
        sd.set_item("reason", &s.reason)?;
        skipped.append(sd)?;
    }
    d.set_item("skipped", skipped)?;
    d.set_item("mappings_decoded", report.mappings_decoded)?;
    d.set_item("entries", report.entries)?;
    Ok(d)
}
