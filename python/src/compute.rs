//! `ScopeCache.get_or_compute`: one computation per missing key across
//! processes, with the computation a Python callable.
//!
//! The engine waits and polls without the GIL; it takes the GIL only to
//! call `compute` and to read what it returned (and the mappings are then
//! built without it again).

use std::sync::Mutex;
use std::time::Duration;

use pyo3::exceptions::PyException;
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList, PyTuple};
use scopecache::{Error, GetOrCompute, OnTimeout, Scope, ScopeCache, ScopeParts};

use crate::errors::{new_err, to_py, type_err};
use crate::idmap::{build_pair, Collected};
use crate::input::{attributes_from_py, bits_from_py};

/// The parts of a scope from a put's arguments (`nodes`, `links`,
/// `node_ids`, `link_ids`, `attributes`), checked and with the mappings
/// built (without the GIL, in parallel).
pub fn parts_from_py(
    py: Python<'_>,
    nodes: &Bound<'_, PyAny>,
    links: &Bound<'_, PyAny>,
    node_ids: &Bound<'_, PyAny>,
    link_ids: &Bound<'_, PyAny>,
    attributes: Option<&Bound<'_, PyAny>>,
) -> PyResult<ScopeParts> {
    let (nc, lc) = (
        Collected::from_py(py, node_ids, "node_ids")?,
        Collected::from_py(py, link_ids, "link_ids")?,
    );
    let (node_ids, link_ids) = build_pair(py, nc.source(py, "node_ids")?, lc.source(py, "link_ids")?)?;
    nc.remember(&node_ids);
    lc.remember(&link_ids);
    Ok(ScopeParts {
        nodes: bits_from_py(py, nodes, node_ids.len(), "nodes")?,
        links: bits_from_py(py, links, link_ids.len(), "links")?,
        attributes: attributes_from_py(py, attributes)?,
        node_ids,
        link_ids,
    })
}

const RESULT: &str = "a tuple (nodes, links, node_ids, link_ids[, attributes]) or a dict with those keys";

/// What `compute` returned, as parts: a tuple or list of the put's
/// arguments, or a dict of them by name.
fn parts_from_result(py: Python<'_>, r: &Bound<'_, PyAny>) -> PyResult<ScopeParts> {
    if let Ok(d) = r.cast::<PyDict>() {
        let get = |k: &str| -> PyResult<Bound<'_, PyAny>> {
            d.get_item(k)?
                .ok_or_else(|| type_err("compute()", &format!("{RESULT} (missing {k:?})"), r))
        };
        let attrs = d.get_item("attributes")?;
        return parts_from_py(
            py,
            &get("nodes")?,
            &get("links")?,
            &get("node_ids")?,
            &get("link_ids")?,
            attrs.as_ref(),
        );
    }
    if r.is_instance_of::<PyTuple>() || r.is_instance_of::<PyList>() {
        let n = r.len()?;
        if n == 4 || n == 5 {
            let at = |i: usize| r.get_item(i);
            let attrs = if n == 5 { Some(at(4)?) } else { None };
            return parts_from_py(py, &at(0)?, &at(1)?, &at(2)?, &at(3)?, attrs.as_ref());
        }
    }
    Err(type_err("compute()", RESULT, r))
}

/// The options from the Python arguments.
fn options(py: Python<'_>, timeout: Option<f64>, on_timeout: &str) -> PyResult<GetOrCompute> {
    let mut opts = GetOrCompute::default();
    if let Some(t) = timeout {
        opts.timeout = Duration::try_from_secs_f64(t).map_err(|_| {
            new_err(
                py,
                "ConfigError",
                format!("timeout must be a finite number of seconds >= 0, not {t}"),
            )
        })?;
    }
    opts.on_timeout = match on_timeout {
        "fail" => OnTimeout::Fail,
        "compute" => OnTimeout::Compute,
        other => {
            return Err(new_err(
                py,
                "ConfigError",
                format!("on_timeout must be 'fail' or 'compute', not {other:?}"),
            ))
        }
    };
    Ok(opts)
}

/// Gets `key`, or has exactly one caller of all processes compute it.
///
/// An exception raised by `compute` (or a bad return value) becomes a
/// `ComputeError` whose `__cause__` is that exception; an exception that is
/// not an `Exception` (KeyboardInterrupt, SystemExit) propagates as is.
/// Either way the claim is released.
pub fn get_or_compute(
    py: Python<'_>,
    cache: &ScopeCache,
    key: &str,
    compute: &Bound<'_, PyAny>,
    timeout: Option<f64>,
    on_timeout: &str,
) -> PyResult<Scope> {
    if !compute.is_callable() {
        return Err(type_err("compute", "a callable", compute));
    }
    let opts = options(py, timeout, on_timeout)?;
    let compute = compute.clone().unbind();
    let failure: Mutex<Option<PyErr>> = Mutex::new(None);
    let got = py.detach(|| {
        cache.get_or_compute_with(key, &opts, || {
            Python::attach(|py| {
                let r = compute.bind(py).call0().and_then(|r| parts_from_result(py, &r));
                r.map_err(|e| {
                    let msg = e.to_string();
                    *failure.lock().unwrap_or_else(|p| p.into_inner()) = Some(e);
                    msg.into()
                })
            })
        })
    });
    match got {
        Ok(s) => Ok(s),
        Err(e @ Error::Compute { .. }) => {
            let cause = failure.into_inner().unwrap_or_else(|p| p.into_inner());
            match cause {
                Some(c) if !c.is_instance_of::<PyException>(py) => Err(c),
                cause => {
                    let err = to_py(py, e);
                    err.set_cause(py, cause);
                    Err(err)
                }
            }
        }
        Err(e) => Err(to_py(py, e)),
    }
}
