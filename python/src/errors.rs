//! scopecache errors as Python exceptions.
//!
//! The exception classes live in `scopecache/errors.py`, so that they can
//! derive from both `ScopeCacheError` and the matching built-in
//! (`ValueError`, `OSError`); they are looked up once per process.

use pyo3::exceptions::{PyRuntimeError, PyTypeError};
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::PyType;
use scopecache::Error;

static ERRORS: PyOnceLock<Py<PyModule>> = PyOnceLock::new();

/// The exception class `name` of `scopecache.errors`.
fn class<'py>(py: Python<'py>, name: &str) -> PyResult<Bound<'py, PyType>> {
    let module = ERRORS.get_or_try_init(py, || py.import("scopecache.errors").map(Bound::unbind))?;
    Ok(module.bind(py).getattr(name)?.cast_into::<PyType>()?)
}

/// A `scopecache.errors.<name>` exception with `msg`.
pub fn new_err(py: Python<'_>, name: &str, msg: String) -> PyErr {
    match class(py, name) {
        Ok(cls) => PyErr::from_type(cls, msg),
        // The errors module is part of the package; reaching this means the
        // installation is broken, which deserves its own message.
        Err(e) => PyRuntimeError::new_err(format!("{msg} (and scopecache.errors failed to load: {e})")),
    }
}

/// The exception class that stands for `e`.
fn name_of(e: &Error) -> &'static str {
    match e {
        Error::Io { .. } => "ScopeIOError",
        Error::InvalidKey { .. } => "InvalidKeyError",
        Error::LengthMismatch { .. } | Error::BatchLength { .. } => "LengthMismatchError",
        Error::DuplicateId { .. } => "DuplicateIdError",
        Error::TooManyIds { .. } => "TooManyIdsError",
        Error::Attributes(_) => "AttributesError",
        Error::Corrupt { .. } => "CorruptError",
        Error::NotACacheFile { .. } => "NotACacheFileError",
        Error::UnsupportedVersion { .. } => "UnsupportedVersionError",
        Error::ReadOnly { .. } => "ReadOnlyError",
        Error::TooLarge { .. } => "TooLargeError",
        Error::Poisoned { .. } => "PoisonedError",
        Error::Config(_) => "ConfigError",
        Error::MappingMismatch { .. } => "MappingMismatchError",
        Error::NoScopes { .. } => "NoScopesError",
        Error::Compute { .. } => "ComputeError",
        Error::ComputeTimeout { .. } => "ComputeTimeoutError",
        Error::StoredButGone { .. } => "StoredButGoneError",
        Error::Remote { .. } => "RemoteError",
        Error::RemoteMissing { .. } => "RemoteMissingError",
        Error::RemoteCorrupt { .. } => "RemoteCorruptError",
        _ => "ScopeCacheError",
    }
}

/// Converts an engine error into the matching Python exception.
pub fn to_py(py: Python<'_>, e: Error) -> PyErr {
    let err = new_err(py, name_of(&e), e.to_string());
    if let Error::Io { source, .. } = &e {
        if let Some(code) = source.raw_os_error() {
            // OSError subclasses carry errno; set it so callers can test it.
            let _ = err.value(py).setattr("errno", code);
        }
    }
    err
}

/// `map_err` helper: `.map_err(py_err(py))`.
pub fn py_err(py: Python<'_>) -> impl Fn(Error) -> PyErr + '_ {
    move |e| to_py(py, e)
}

/// A TypeError naming what was expected for `what`.
pub fn type_err(what: &str, expected: &str, got: &Bound<'_, PyAny>) -> PyErr {
    let tname = got
        .get_type()
        .name()
        .map(|n| n.to_string())
        .unwrap_or_else(|_| "?".into());
    PyTypeError::new_err(format!("{what}: expected {expected}, got {tname}"))
}
