//! The coverage algebra from Python: `union`, `intersection`, `difference`
//! and `counts` over loaded scopes, their results (`Coverage`, `Counts`),
//! and the covered ids of scopes and results.

use pyo3::prelude::*;
use pyo3::types::PyList;
use scopecache::{algebra, IdMap, Scope};

use crate::bitset::{Bitset, Which};
use crate::cache::PyScope;
use crate::errors::{new_err, py_err, type_err};
use crate::idmap::{numpy_from_vec, PyIdMap};

/// The native scope of `obj`: a `scopecache.Scope`, or an object with a
/// `scope` attribute holding one (the drop-in's `CachedScope`).
pub fn scope_of(obj: &Bound<'_, PyAny>, what: &str) -> PyResult<Scope> {
    if let Ok(s) = obj.cast::<PyScope>() {
        return Ok(s.get().inner().clone());
    }
    if let Ok(inner) = obj.getattr("scope") {
        if let Ok(s) = inner.cast::<PyScope>() {
            return Ok(s.get().inner().clone());
        }
    }
    Err(type_err(what, "a scopecache.Scope or a loaded CachedScope", obj))
}

/// The native scopes of an iterable of scopes.
fn scopes_of(obj: &Bound<'_, PyAny>) -> PyResult<Vec<Scope>> {
    if obj.cast::<PyScope>().is_ok() || obj.hasattr("scope")? {
        return Err(type_err("scopes", "an iterable of scopes", obj));
    }
    obj.try_iter()
        .map_err(|_| type_err("scopes", "an iterable of scopes", obj))?
        .map(|s| scope_of(&s?, "scopes[i]"))
        .collect()
}

/// True when `a` and `b` are one mapping (same length and digest).
fn same_map(a: &IdMap, b: &IdMap) -> bool {
    a.len() == b.len() && a.digest() == b.digest()
}

/// The ids of the set bits of `words` (`bits` long) named by `ids`, at most
/// `limit`, as a Python list; CorruptError if the mapping is found damaged.
fn ids_list<'py>(
    py: Python<'py>,
    words: &[u64],
    bits: usize,
    ids: &IdMap,
    limit: Option<usize>,
) -> PyResult<Bound<'py, PyList>> {
    let (got, failed) = py.detach(|| {
        let limit = limit.unwrap_or(usize::MAX);
        let mut out = Vec::new();
        let mut failed = None;
        for i in set_bits(words, bits) {
            if out.len() >= limit {
                break;
            }
            match u32::try_from(i).ok().and_then(|i| ids.id(i)) {
                Some(id) => out.push(id),
                None => {
                    failed = Some(i);
                    break;
                }
            }
        }
        (out, failed)
    });
    if let Some(i) = failed {
        return Err(new_err(
            py,
            "CorruptError",
            format!(
                "bit {i} is set but the mapping of {} ids has no id {i}",
                ids.len()
            ),
        ));
    }
    PyList::new(py, got)
}

/// The positions of the set bits of `words`, below `bits`.
fn set_bits(words: &[u64], bits: usize) -> impl Iterator<Item = usize> + '_ {
    words.iter().enumerate().flat_map(move |(wi, &w)| {
        let mut w = w;
        std::iter::from_fn(move || {
            if w == 0 {
                return None;
            }
            let b = w.trailing_zeros() as usize;
            w &= w - 1;
            Some(wi * 64 + b)
        })
        .filter(move |&i| i < bits)
    })
}

/// Whether the bit of `id` in `ids` is set: None when `id` is absent.
fn covered(words: &[u64], bits: usize, ids: &IdMap, id: &str) -> Option<bool> {
    let i = ids.index_of(id)? as usize;
    (i < bits).then(|| words.get(i >> 6).is_some_and(|w| (w >> (i & 63)) & 1 == 1))
}

/// `scope.covered_node_ids()` and the like, for `PyScope`.
pub fn scope_covered_ids<'py>(
    py: Python<'py>,
    s: &Scope,
    which: Which,
    limit: Option<usize>,
) -> PyResult<Bound<'py, PyList>> {
    match which {
        Which::Nodes => ids_list(py, s.node_words(), s.nodes().len(), s.node_ids(), limit),
        Which::Links => ids_list(py, s.link_words(), s.links().len(), s.link_ids(), limit),
    }
}

/// The result of `union`, `intersection` or `difference`: which nodes and
/// links it holds, as owned `Bitset`s indexed like the inputs' mappings.
///
/// `nodes` / `links` export their words through the buffer protocol
/// (`numpy.frombuffer(c.nodes, dtype=numpy.uint64)`) and copy to numpy bool
/// arrays with `to_numpy()`. `node_ids` / `link_ids` are the inputs'
/// mappings, shared. Store it back with `ScopeCache.put_coverage`.
#[pyclass(frozen, module = "scopecache", name = "Coverage")]
pub struct PyCoverage {
    nodes: Py<Bitset>,
    links: Py<Bitset>,
    /// The first input: its mappings name the result's bits.
    like: Scope,
}

impl PyCoverage {
    /// The first input scope, whose mappings name the result's bits.
    pub fn like(&self) -> &Scope {
        &self.like
    }

    /// The result as the engine's `Coverage` (a copy of the words).
    pub fn coverage(&self, py: Python<'_>) -> algebra::Coverage {
        algebra::Coverage {
            nodes: self.nodes.bind(py).get().to_bitvec(),
            links: self.links.bind(py).get().to_bitvec(),
        }
    }

    fn side(&self, py: Python<'_>, which: Which) -> (&IdMap, Py<Bitset>) {
        match which {
            Which::Nodes => (self.like.node_ids(), self.nodes.clone_ref(py)),
            Which::Links => (self.like.link_ids(), self.links.clone_ref(py)),
        }
    }
}

#[pymethods]
impl PyCoverage {
    /// The nodes in the result.
    #[getter]
    fn nodes(&self, py: Python<'_>) -> Py<Bitset> {
        self.nodes.clone_ref(py)
    }

    /// The links in the result.
    #[getter]
    fn links(&self, py: Python<'_>) -> Py<Bitset> {
        self.links.clone_ref(py)
    }

    /// The node id mapping of the inputs.
    #[getter]
    fn node_ids(&self) -> PyIdMap {
        PyIdMap {
            map: self.like.node_ids().clone(),
        }
    }

    /// The link id mapping of the inputs.
    #[getter]
    fn link_ids(&self) -> PyIdMap {
        PyIdMap {
            map: self.like.link_ids().clone(),
        }
    }

    /// Number of nodes (bits of `nodes`).
    #[getter]
    fn total_nodes(&self, py: Python<'_>) -> usize {
        self.nodes.bind(py).get().bit_len()
    }

    /// Number of links.
    #[getter]
    fn total_links(&self, py: Python<'_>) -> usize {
        self.links.bind(py).get().bit_len()
    }

    /// The ids of the nodes in the result, in index order (at most `limit`).
    #[pyo3(signature = (limit = None))]
    fn covered_node_ids<'py>(&self, py: Python<'py>, limit: Option<usize>) -> PyResult<Bound<'py, PyList>> {
        let (ids, b) = self.side(py, Which::Nodes);
        let b = b.bind(py).get();
        ids_list(py, b.words(), b.bit_len(), ids, limit)
    }

    /// The ids of the links in the result, in index order (at most `limit`).
    #[pyo3(signature = (limit = None))]
    fn covered_link_ids<'py>(&self, py: Python<'py>, limit: Option<usize>) -> PyResult<Bound<'py, PyList>> {
        let (ids, b) = self.side(py, Which::Links);
        let b = b.bind(py).get();
        ids_list(py, b.words(), b.bit_len(), ids, limit)
    }

    /// Whether node `id` is in the result: None when it is not in the mapping.
    fn node_covered(&self, py: Python<'_>, id: &str) -> Option<bool> {
        let (ids, b) = self.side(py, Which::Nodes);
        let b = b.bind(py).get();
        covered(b.words(), b.bit_len(), ids, id)
    }

    /// Whether link `id` is in the result: None when it is not in the mapping.
    fn link_covered(&self, py: Python<'_>, id: &str) -> Option<bool> {
        let (ids, b) = self.side(py, Which::Links);
        let b = b.bind(py).get();
        covered(b.words(), b.bit_len(), ids, id)
    }

    fn __repr__(&self, py: Python<'_>) -> String {
        format!(
            "<scopecache.Coverage: {} of {} nodes, {} of {} links>",
            self.nodes
                .bind(py)
                .get()
                .words()
                .iter()
                .map(|w| w.count_ones() as usize)
                .sum::<usize>(),
            self.nodes.bind(py).get().bit_len(),
            self.links
                .bind(py)
                .get()
                .words()
                .iter()
                .map(|w| w.count_ones() as usize)
                .sum::<usize>(),
            self.links.bind(py).get().bit_len(),
        )
    }
}

/// The result of `counts`: how many of the input scopes cover each node and
/// each link, as numpy uint32 arrays indexed like the inputs' mappings.
#[pyclass(frozen, module = "scopecache", name = "Counts")]
pub struct PyCounts {
    nodes: Py<PyAny>,
    links: Py<PyAny>,
    counts: algebra::Counts,
    like: Scope,
}

fn least_list<'py>(py: Python<'py>, counts: &[u32], ids: &IdMap, n: usize) -> PyResult<Bound<'py, PyList>> {
    let least = py.detach(|| algebra::least(counts, n));
    let out = PyList::empty(py);
    for (i, c) in least {
        let id = ids.id(i).ok_or_else(|| {
            new_err(
                py,
                "CorruptError",
                format!("the mapping of {} ids has no id {i}", ids.len()),
            )
        })?;
        out.append((id, c))?;
    }
    Ok(out)
}

#[pymethods]
impl PyCounts {
    /// `nodes[i]`: how many inputs cover node i (numpy uint32).
    #[getter]
    fn nodes(&self, py: Python<'_>) -> Py<PyAny> {
        self.nodes.clone_ref(py)
    }

    /// `links[i]`: how many inputs cover link i (numpy uint32).
    #[getter]
    fn links(&self, py: Python<'_>) -> Py<PyAny> {
        self.links.clone_ref(py)
    }

    /// The `n` least covered nodes as `(id, count)`, by count, then index.
    fn least_covered_nodes<'py>(&self, py: Python<'py>, n: usize) -> PyResult<Bound<'py, PyList>> {
        least_list(py, &self.counts.nodes, self.like.node_ids(), n)
    }

    /// The `n` least covered links as `(id, count)`, by count, then index.
    fn least_covered_links<'py>(&self, py: Python<'py>, n: usize) -> PyResult<Bound<'py, PyList>> {
        least_list(py, &self.counts.links, self.like.link_ids(), n)
    }

    fn __repr__(&self) -> String {
        format!(
            "<scopecache.Counts: {} nodes, {} links>",
            self.counts.nodes.len(),
            self.counts.links.len()
        )
    }
}

/// Runs a set operation on the scopes without the GIL and wraps its result.
fn set_op(
    py: Python<'_>,
    scopes: Vec<Scope>,
    op: &'static str,
    f: fn(&[&Scope]) -> scopecache::Result<algebra::Coverage>,
) -> PyResult<PyCoverage> {
    let refs: Vec<&Scope> = scopes.iter().collect();
    let c = py.detach(|| f(&refs)).map_err(py_err(py))?;
    Ok(PyCoverage {
        nodes: Py::new(py, Bitset::owned(c.nodes, Which::Nodes, op))?,
        links: Py::new(py, Bitset::owned(c.links, Which::Links, op))?,
        like: scopes[0].clone(),
    })
}

/// The nodes and links covered by any of `scopes` (bitwise OR).
#[pyfunction]
pub fn union(py: Python<'_>, scopes: &Bound<'_, PyAny>) -> PyResult<PyCoverage> {
    set_op(py, scopes_of(scopes)?, "union", algebra::union)
}

/// The nodes and links covered by every one of `scopes` (bitwise AND).
#[pyfunction]
pub fn intersection(py: Python<'_>, scopes: &Bound<'_, PyAny>) -> PyResult<PyCoverage> {
    set_op(py, scopes_of(scopes)?, "intersection", algebra::intersection)
}

/// The nodes and links covered by `a` and not by `b` (`a AND NOT b`).
#[pyfunction]
pub fn difference(py: Python<'_>, a: &Bound<'_, PyAny>, b: &Bound<'_, PyAny>) -> PyResult<PyCoverage> {
    let scopes = vec![scope_of(a, "a")?, scope_of(b, "b")?];
    set_op(py, scopes, "difference", |s| algebra::difference(s[0], s[1]))
}

/// For every node and link, how many of `scopes` cover it.
#[pyfunction]
pub fn counts(py: Python<'_>, scopes: &Bound<'_, PyAny>) -> PyResult<PyCounts> {
    let scopes = scopes_of(scopes)?;
    let refs: Vec<&Scope> = scopes.iter().collect();
    let c = py.detach(|| algebra::counts(&refs)).map_err(py_err(py))?;
    Ok(PyCounts {
        nodes: numpy_from_vec(py, &c.nodes, "uint32")?.unbind(),
        links: numpy_from_vec(py, &c.links, "uint32")?.unbind(),
        counts: c,
        like: scopes[0].clone(),
    })
}

/// `ScopeCache.put_coverage`: checks that `like` has the coverage's
/// mappings, then stores it sharing them.
pub fn put_coverage(
    py: Python<'_>,
    cache: &scopecache::ScopeCache,
    key: &str,
    coverage: &Bound<'_, PyAny>,
    like: Option<&Bound<'_, PyAny>>,
    attributes: &serde_json::Map<String, serde_json::Value>,
) -> PyResult<()> {
    let cov = coverage
        .cast::<PyCoverage>()
        .map_err(|_| type_err("coverage", "a scopecache.Coverage", coverage))?
        .get();
    let like = match like.filter(|l| !l.is_none()) {
        Some(l) => scope_of(l, "like")?,
        None => cov.like().clone(),
    };
    for (what, a, b) in [
        ("node", like.node_ids(), cov.like().node_ids()),
        ("link", like.link_ids(), cov.like().link_ids()),
    ] {
        if !same_map(a, b) {
            return Err(new_err(
                py,
                "MappingMismatchError",
                format!(
                    "the {what} id mapping of {:?} is not the one the coverage was computed with",
                    like.key()
                ),
            ));
        }
    }
    let c = cov.coverage(py);
    py.detach(|| cache.put_coverage(key, &c, &like, attributes))
        .map_err(py_err(py))
}
