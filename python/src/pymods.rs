//! Python modules the bindings call into, imported on first use and kept:
//! importing numpy costs tens of milliseconds, so nothing imports it before
//! it is needed.

use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::PyDict;

static NUMPY: PyOnceLock<Py<PyModule>> = PyOnceLock::new();
static BITARRAY: PyOnceLock<Py<PyAny>> = PyOnceLock::new();
static JSON_DUMPS: PyOnceLock<Py<PyAny>> = PyOnceLock::new();
static JSON_LOADS: PyOnceLock<Py<PyAny>> = PyOnceLock::new();
static ABC: PyOnceLock<Py<PyModule>> = PyOnceLock::new();
static EPOCH: PyOnceLock<(Py<PyAny>, Py<PyAny>)> = PyOnceLock::new();

fn module<'py>(
    py: Python<'py>,
    cell: &PyOnceLock<Py<PyModule>>,
    name: &str,
) -> PyResult<Bound<'py, PyModule>> {
    Ok(cell
        .get_or_try_init(py, || py.import(name).map(Bound::unbind))?
        .bind(py)
        .clone())
}

fn attr<'py>(
    py: Python<'py>,
    cell: &PyOnceLock<Py<PyAny>>,
    module: &str,
    name: &str,
) -> PyResult<Bound<'py, PyAny>> {
    Ok(cell
        .get_or_try_init(py, || py.import(module)?.getattr(name).map(Bound::unbind))?
        .bind(py)
        .clone())
}

/// The numpy module.
pub fn numpy(py: Python<'_>) -> PyResult<Bound<'_, PyModule>> {
    module(py, &NUMPY, "numpy")
}

/// `bitarray.bitarray`.
pub fn bitarray_class(py: Python<'_>) -> PyResult<Bound<'_, PyAny>> {
    attr(py, &BITARRAY, "bitarray", "bitarray")
}

/// `collections.abc`.
pub fn abc(py: Python<'_>) -> PyResult<Bound<'_, PyModule>> {
    module(py, &ABC, "collections.abc")
}

/// `json.dumps(obj)` as a Rust string.
pub fn json_dumps(py: Python<'_>, obj: &Bound<'_, PyAny>) -> PyResult<String> {
    let dumps = attr(py, &JSON_DUMPS, "json", "dumps")?;
    let kwargs = PyDict::new(py);
    kwargs.set_item("allow_nan", false)?;
    kwargs.set_item("ensure_ascii", false)?;
    dumps.call((obj,), Some(&kwargs))?.extract()
}

/// `json.loads(text)`.
pub fn json_loads<'py>(py: Python<'py>, text: &str) -> PyResult<Bound<'py, PyAny>> {
    attr(py, &JSON_LOADS, "json", "loads")?.call1((text,))
}

/// An aware UTC `datetime` for `micros` since the Unix epoch, exactly.
pub fn datetime_utc(py: Python<'_>, micros: i64) -> PyResult<Bound<'_, PyAny>> {
    let (epoch, timedelta) = EPOCH.get_or_try_init(py, || -> PyResult<_> {
        let dt = py.import("datetime")?;
        let utc = dt.getattr("timezone")?.getattr("utc")?;
        let epoch = dt.getattr("datetime")?.call1((1970, 1, 1, 0, 0, 0, 0, utc))?;
        Ok((epoch.unbind(), dt.getattr("timedelta")?.unbind()))
    })?;
    let kwargs = PyDict::new(py);
    kwargs.set_item("microseconds", micros)?;
    let delta = timedelta.bind(py).call((), Some(&kwargs))?;
    epoch.bind(py).call_method1("__add__", (delta,))
}
