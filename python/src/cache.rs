//! `ScopeCache` and `Scope`: the native API, mirroring the Rust one.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList};
use scopecache::{CacheConfig, CacheStats, EntryInfo, Scope, ScopeCache};

use crate::bitset::{Bitset, Which};
use crate::errors::{new_err, py_err};
use crate::idmap::PyIdMap;
use crate::input::{attributes_from_py, attributes_to_py};
use crate::remote::RemoteSettings;
use crate::{algebra, compute, fork, pymods};

/// The handle, and the fork generation it was opened under.
struct State {
    cache: Option<Arc<ScopeCache>>,
    forks: u64,
    closed: bool,
}

/// A cache of coverage scopes in one memory-mapped file, shared by threads
/// and processes.
///
/// `get` takes no lock and returns a `Scope` read in place; `put`, `remove`,
/// `clear`, `maintain` and `compact` take the file's exclusive lock and are
/// durable when they return. Every call into the engine runs without the
/// GIL, so that an engine thread that logs (which needs the GIL) can never
/// wait on a thread that holds the GIL and waits on the engine. After `os.fork()` (multiprocessing's fork
/// start method) the child opens the file again on its first call; scopes
/// gotten before the fork stay valid in both processes.
#[pyclass(frozen, module = "scopecache", name = "ScopeCache")]
pub struct PyScopeCache {
    path: PathBuf,
    config: CacheConfig,
    remote: RemoteSettings,
    ttl_hours: Option<f64>,
    state: Mutex<State>,
}

impl PyScopeCache {
    /// The handle for this process, opening the file again after a fork.
    pub fn handle(&self, py: Python<'_>) -> PyResult<Arc<ScopeCache>> {
        let mut st = self.state.lock().unwrap_or_else(|p| p.into_inner());
        if st.closed {
            return Err(new_err(
                py,
                "ClosedError",
                format!("{}: the cache was closed", self.path.display()),
            ));
        }
        let now = fork::generation();
        if let Some(c) = &st.cache {
            if st.forks == now {
                return Ok(Arc::clone(c));
            }
        }
        if let Some(inherited) = st.cache.take() {
            // Opened before a fork: another thread of the parent may have held
            // one of its internal locks at that moment, and such a lock stays
            // held forever in the child. Leave it untouched (its mappings are
            // still used by scopes gotten before the fork) and open anew.
            std::mem::forget(inherited);
            log::debug!("{}: reopening after fork", self.path.display());
        }
        // Opened with the GIL held: releasing it while holding `state` would
        // let another thread, holding the GIL, block on `state` while this
        // one waits for the GIL. Opening costs tens of microseconds.
        #[cfg(feature = "remote")]
        let config = CacheConfig {
            remote: self.remote.build(py)?,
            ..self.config.clone()
        };
        #[cfg(not(feature = "remote"))]
        let config = {
            self.remote.build(py)?;
            self.config.clone()
        };
        let cache = Arc::new(ScopeCache::open(&self.path, config).map_err(py_err(py))?);
        st.cache = Some(Arc::clone(&cache));
        st.forks = now;
        Ok(cache)
    }
}

/// An `EntryInfo` as a dict.
fn info_dict<'py>(py: Python<'py>, e: &EntryInfo) -> PyResult<Bound<'py, PyDict>> {
    let d = PyDict::new(py);
    d.set_item("key", &e.key)?;
    d.set_item(
        "created_at",
        pymods::datetime_utc(py, e.created_at.timestamp_micros())?,
    )?;
    d.set_item(
        "last_accessed",
        pymods::datetime_utc(py, e.last_accessed.timestamp_micros())?,
    )?;
    d.set_item("total_nodes", e.total_nodes)?;
    d.set_item("total_links", e.total_links)?;
    d.set_item("nodes_bytes", e.nodes_bytes)?;
    d.set_item("links_bytes", e.links_bytes)?;
    d.set_item("node_ids_bytes", e.node_ids_bytes)?;
    d.set_item("link_ids_bytes", e.link_ids_bytes)?;
    d.set_item("attributes_bytes", e.attributes_bytes)?;
    d.set_item("total_bytes", e.total_bytes)?;
    d.set_item("shares_mappings", e.shares_mappings)?;
    d.set_item("attributes", attributes_to_py(py, &e.attributes)?)?;
    Ok(d)
}

fn opt_time<'py>(
    py: Python<'py>,
    t: Option<chrono::DateTime<chrono::Utc>>,
) -> PyResult<Option<Bound<'py, PyAny>>> {
    t.map(|t| pymods::datetime_utc(py, t.timestamp_micros()))
        .transpose()
}

fn stats_dict<'py>(py: Python<'py>, s: &CacheStats) -> PyResult<Bound<'py, PyDict>> {
    let d = PyDict::new(py);
    d.set_item("total_entries", s.total_entries)?;
    d.set_item("total_size_bytes", s.total_size_bytes)?;
    d.set_item("total_size_mb", s.total_size_mb)?;
    d.set_item("total_size_gb", s.total_size_gb)?;
    d.set_item("total_nodes", s.total_nodes)?;
    d.set_item("total_links", s.total_links)?;
    d.set_item("cache_utilization", s.cache_utilization)?;
    d.set_item("oldest_entry", opt_time(py, s.oldest_entry)?)?;
    d.set_item("newest_entry", opt_time(py, s.newest_entry)?)?;
    d.set_item("average_nodes_per_entry", s.average_nodes_per_entry)?;
    d.set_item("average_links_per_entry", s.average_links_per_entry)?;
    d.set_item("file_bytes", s.file_bytes)?;
    d.set_item("live_bytes", s.live_bytes)?;
    d.set_item("dead_bytes", s.dead_bytes)?;
    d.set_item("stored_mappings", s.stored_mappings)?;
    d.set_item("generation", s.generation)?;
    d.set_item("index_deltas", s.index_deltas)?;
    d.set_item("hits", s.hits)?;
    d.set_item("misses", s.misses)?;
    d.set_item("evictions", s.evictions)?;
    d.set_item("expiries", s.expiries)?;
    d.set_item("corrupt_dropped", s.corrupt_dropped)?;
    d.set_item("puts", s.puts)?;
    d.set_item("removes", s.removes)?;
    d.set_item("compactions", s.compactions)?;
    Ok(d)
}

fn compact_dict<'py>(py: Python<'py>, r: &scopecache::CompactReport) -> PyResult<Bound<'py, PyDict>> {
    let d = PyDict::new(py);
    d.set_item("bytes_before", r.bytes_before)?;
    d.set_item("bytes_after", r.bytes_after)?;
    Ok(d)
}

#[pymethods]
impl PyScopeCache {
    /// Opens (creating if missing) the cache file at `path`.
    ///
    /// `max_size_bytes` bounds the file, `max_entries` the entries,
    /// `ttl_hours` the time since an entry's last access (None: no TTL).
    /// `read_only` refuses every write (a file that cannot be opened for
    /// writing is opened read-only anyway). `fsync=False` is for throwaway
    /// caches only: a power loss can then tear committed scopes.
    /// `remote="s3://bucket/prefix"` adds the shared remote tier (a local
    /// miss pulls from the bucket, a put pushes to it); `remote_endpoint`,
    /// `remote_region`, `remote_allow_http` override the standard AWS_*
    /// environment variables, which also give the keys.
    #[new]
    #[pyo3(signature = (
        path, max_size_bytes = 10 << 30, max_entries = 100, ttl_hours = Some(24.0),
        read_only = false, verify_bitsets = true, auto_compact = true,
        compact_dead_ratio = 0.5, compact_min_dead_bytes = 1 << 20,
        quarantine_corrupt = false, fsync = true, remote = None,
        remote_endpoint = None, remote_region = None, remote_allow_http = None,
    ))]
    #[allow(clippy::too_many_arguments)]
    fn py_new(
        py: Python<'_>,
        path: PathBuf,
        max_size_bytes: u64,
        max_entries: usize,
        ttl_hours: Option<f64>,
        read_only: bool,
        verify_bitsets: bool,
        auto_compact: bool,
        compact_dead_ratio: f64,
        compact_min_dead_bytes: u64,
        quarantine_corrupt: bool,
        fsync: bool,
        remote: Option<String>,
        remote_endpoint: Option<String>,
        remote_region: Option<String>,
        remote_allow_http: Option<bool>,
    ) -> PyResult<PyScopeCache> {
        let remote = RemoteSettings {
            url: remote,
            endpoint: remote_endpoint,
            region: remote_region,
            allow_http: remote_allow_http,
        };
        crate::remote::check(py, &remote)?;
        let ttl = match ttl_hours {
            None => None,
            Some(h) => Some(Duration::try_from_secs_f64(h * 3600.0).map_err(|_| {
                new_err(
                    py,
                    "ConfigError",
                    format!("ttl_hours must be a finite number >= 0, not {h}"),
                )
            })?),
        };
        let config = CacheConfig {
            max_size_bytes,
            max_entries,
            ttl,
            read_only,
            verify_bitsets,
            auto_compact,
            compact_dead_ratio,
            compact_min_dead_bytes,
            quarantine_corrupt,
            fsync,
            ..CacheConfig::default()
        };
        let me = PyScopeCache {
            path,
            config,
            remote,
            ttl_hours,
            state: Mutex::new(State {
                cache: None,
                forks: fork::generation(),
                closed: false,
            }),
        };
        me.handle(py)?;
        Ok(me)
    }

    /// The remote tier's `s3://bucket/prefix`, or None.
    #[getter]
    fn remote(&self) -> Option<String> {
        self.remote.url.clone()
    }

    /// The cache file's path.
    #[getter]
    fn path(&self) -> PathBuf {
        self.path.clone()
    }

    /// True when writes are refused.
    #[getter]
    fn read_only(&self, py: Python<'_>) -> PyResult<bool> {
        Ok(self.handle(py)?.is_read_only())
    }

    /// The limits, as passed to the constructor.
    #[getter]
    fn limits<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let d = PyDict::new(py);
        d.set_item("max_size_bytes", self.config.max_size_bytes)?;
        d.set_item("max_entries", self.config.max_entries)?;
        d.set_item("ttl_hours", self.ttl_hours)?;
        Ok(d)
    }

    /// Stores a scope under `key` (replacing any), durable when it returns.
    ///
    /// `nodes`/`links`: bitarray, scopecache.Bitset, numpy bool array or
    /// numpy uint64 words. `node_ids`/`link_ids`: IdMap (reused as is: a
    /// mapping the file holds already is not written again), dict
    /// `{id: index}` or list of ids. `attributes`: a JSON-encodable dict.
    /// Nothing is written unless every check passes. Reads the Python
    /// objects with the GIL held; builds the two mappings (in parallel) and
    /// writes without it.
    #[pyo3(signature = (key, nodes, links, node_ids, link_ids, attributes = None))]
    #[allow(clippy::too_many_arguments)]
    fn put(
        &self,
        py: Python<'_>,
        key: &str,
        nodes: &Bound<'_, PyAny>,
        links: &Bound<'_, PyAny>,
        node_ids: &Bound<'_, PyAny>,
        link_ids: &Bound<'_, PyAny>,
        attributes: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<()> {
        let cache = self.handle(py)?;
        let parts = compute::parts_from_py(py, nodes, links, node_ids, link_ids, attributes)?;
        py.detach(|| cache.put(key, &parts.data())).map_err(py_err(py))
    }

    /// Stores a `Coverage` (a result of `union`, `intersection` or
    /// `difference`) under `key` with the mappings of `like` (by default
    /// the first scope it was computed from): a mapping the file holds
    /// already is not written again. `MappingMismatchError` when `like`'s
    /// mappings are not the coverage's.
    #[pyo3(signature = (key, coverage, like = None, attributes = None))]
    fn put_coverage(
        &self,
        py: Python<'_>,
        key: &str,
        coverage: &Bound<'_, PyAny>,
        like: Option<&Bound<'_, PyAny>>,
        attributes: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<()> {
        let cache = self.handle(py)?;
        let attributes = attributes_from_py(py, attributes)?;
        algebra::put_coverage(py, &cache, key, coverage, like, &attributes)
    }

    /// The scope under `key`; if it is missing, exactly one caller of all
    /// threads and processes runs `compute()` and stores what it returns
    /// (what `put` takes: `(nodes, links, node_ids, link_ids[,
    /// attributes])` or a dict of those names) while the others wait for
    /// it, polling without the GIL. `timeout` (seconds, default 600) bounds
    /// the wait for another caller's computation; then `on_timeout="fail"`
    /// raises `ComputeTimeoutError` and `"compute"` computes here too. An
    /// exception in `compute` raises `ComputeError` (the exception is its
    /// `__cause__`) and releases the claim; a computing process that dies
    /// releases it at once.
    #[pyo3(signature = (key, compute, timeout = None, on_timeout = "fail"))]
    fn get_or_compute(
        &self,
        py: Python<'_>,
        key: &str,
        compute: &Bound<'_, PyAny>,
        timeout: Option<f64>,
        on_timeout: &str,
    ) -> PyResult<PyScope> {
        let cache = self.handle(py)?;
        let s = compute::get_or_compute(py, &cache, key, compute, timeout, on_timeout)?;
        PyScope::new(py, s)
    }

    /// The scope under `key`, or None (absent, expired, or dropped because
    /// its bytes failed their checks). Records the access.
    fn get(&self, py: Python<'_>, key: &str) -> PyResult<Option<PyScope>> {
        let cache = self.handle(py)?;
        let got = py.detach(|| cache.get(key)).map_err(py_err(py))?;
        got.map(|s| PyScope::new(py, s)).transpose()
    }

    /// True when `key` is stored and not expired; records no access.
    fn contains(&self, py: Python<'_>, key: &str) -> PyResult<bool> {
        let cache = self.handle(py)?;
        py.detach(|| cache.contains(key)).map_err(py_err(py))
    }

    fn __contains__(&self, py: Python<'_>, key: &str) -> PyResult<bool> {
        self.contains(py, key)
    }

    /// Removes `key`; returns whether it was there.
    fn remove(&self, py: Python<'_>, key: &str) -> PyResult<bool> {
        let cache = self.handle(py)?;
        py.detach(|| cache.remove(key)).map_err(py_err(py))
    }

    /// Removes every entry; returns how many there were.
    fn clear(&self, py: Python<'_>) -> PyResult<u64> {
        let cache = self.handle(py)?;
        py.detach(|| cache.clear()).map_err(py_err(py))
    }

    /// Every entry as a dict, most recently accessed first.
    fn list<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyList>> {
        let cache = self.handle(py)?;
        let entries = py.detach(|| cache.list()).map_err(py_err(py))?;
        let out = PyList::empty(py);
        for e in &entries {
            out.append(info_dict(py, e)?)?;
        }
        Ok(out)
    }

    /// One entry's description, or None; records no access.
    fn info<'py>(&self, py: Python<'py>, key: &str) -> PyResult<Option<Bound<'py, PyDict>>> {
        let cache = self.handle(py)?;
        let e = py.detach(|| cache.info(key)).map_err(py_err(py))?;
        e.map(|e| info_dict(py, &e)).transpose()
    }

    /// Statistics: the original's keys plus the file's accounting and the
    /// counters of every process.
    fn stats<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let cache = self.handle(py)?;
        let s = py.detach(|| cache.stats()).map_err(py_err(py))?;
        stats_dict(py, &s)
    }

    /// Expires, evicts to the limits, drops corrupt entries, compacts when
    /// worth it; returns what it did.
    fn maintain<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let cache = self.handle(py)?;
        let r = py.detach(|| cache.maintain()).map_err(py_err(py))?;
        let d = PyDict::new(py);
        d.set_item("expired", r.expired)?;
        d.set_item("evicted", r.evicted)?;
        d.set_item("corrupt_dropped", r.corrupt_dropped)?;
        d.set_item(
            "compaction",
            r.compaction.as_ref().map(|c| compact_dict(py, c)).transpose()?,
        )?;
        Ok(d)
    }

    /// Rewrites the file with only its live data; other processes keep
    /// reading meanwhile. Returns the sizes before and after.
    fn compact<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let cache = self.handle(py)?;
        let r = py.detach(|| cache.compact()).map_err(py_err(py))?;
        compact_dict(py, &r)
    }

    /// Checks every byte; changes nothing. Returns a dict whose "problems"
    /// list is empty when the file is sound.
    fn verify<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let cache = self.handle(py)?;
        let r = py.detach(|| cache.verify()).map_err(py_err(py))?;
        let d = PyDict::new(py);
        d.set_item("generation", r.generation)?;
        d.set_item("entries", r.entries)?;
        d.set_item("mappings", r.mappings)?;
        d.set_item("bytes_checked", r.bytes_checked)?;
        let problems = PyList::empty(py);
        for p in &r.problems {
            let pd = PyDict::new(py);
            pd.set_item("key", &p.key)?;
            pd.set_item("what", &p.what)?;
            problems.append(pd)?;
        }
        d.set_item("problems", problems)?;
        d.set_item("clean", r.is_clean())?;
        Ok(d)
    }

    /// The committed generation this handle reads.
    fn generation(&self, py: Python<'_>) -> PyResult<u64> {
        let cache = self.handle(py)?;
        py.detach(|| cache.generation()).map_err(py_err(py))
    }

    /// Closes the handle; later calls raise ClosedError. Scopes already
    /// gotten stay valid.
    fn close(&self) {
        let mut st = self.state.lock().unwrap_or_else(|p| p.into_inner());
        st.closed = true;
        st.cache = None;
    }

    /// True once `close()` was called.
    #[getter]
    fn closed(&self) -> bool {
        self.state.lock().unwrap_or_else(|p| p.into_inner()).closed
    }

    fn __enter__(slf: Bound<'_, Self>) -> Bound<'_, Self> {
        slf
    }

    #[pyo3(signature = (*_args))]
    fn __exit__(&self, _args: &Bound<'_, pyo3::types::PyTuple>) -> bool {
        self.close();
        false
    }

    /// Pickles as the path and limits: the other process opens the file.
    fn __reduce__<'py>(
        slf: &Bound<'py, Self>,
    ) -> PyResult<(Bound<'py, PyAny>, Bound<'py, pyo3::types::PyTuple>)> {
        let py = slf.py();
        let c = &slf.get().config;
        let r = &slf.get().remote;
        let args = (
            slf.get().path.clone(),
            c.max_size_bytes,
            c.max_entries,
            slf.get().ttl_hours,
            c.read_only,
            c.verify_bitsets,
            c.auto_compact,
            c.compact_dead_ratio,
            c.compact_min_dead_bytes,
            c.quarantine_corrupt,
            c.fsync,
        )
            .into_pyobject(py)?;
        // More than a tuple's conversion takes at once: the remote settings follow.
        let args = PyList::new(py, args.iter())?;
        args.append(r.url.clone())?;
        args.append(r.endpoint.clone())?;
        args.append(r.region.clone())?;
        args.append(r.allow_http)?;
        let args = args.to_tuple();
        Ok((slf.get_type().into_any(), args))
    }

    fn __repr__(&self) -> String {
        format!("<scopecache.ScopeCache {:?}>", self.path.display().to_string())
    }
}

/// A cached scope, read in place: `nodes` and `links` (Bitset), `node_ids`
/// and `link_ids` (IdMap), `attributes` (a fresh dict on each access).
/// Valid for as long as it is referenced, whatever other processes do to
/// its key meanwhile.
#[pyclass(frozen, module = "scopecache", name = "Scope")]
pub struct PyScope {
    scope: Scope,
    nodes: Py<Bitset>,
    links: Py<Bitset>,
    node_ids: Py<PyIdMap>,
    link_ids: Py<PyIdMap>,
}

impl PyScope {
    /// The engine's scope.
    pub fn inner(&self) -> &Scope {
        &self.scope
    }

    pub fn new(py: Python<'_>, s: Scope) -> PyResult<PyScope> {
        Ok(PyScope {
            nodes: Py::new(py, Bitset::new(s.clone(), Which::Nodes))?,
            links: Py::new(py, Bitset::new(s.clone(), Which::Links))?,
            node_ids: Py::new(
                py,
                PyIdMap {
                    map: s.node_ids().clone(),
                },
            )?,
            link_ids: Py::new(
                py,
                PyIdMap {
                    map: s.link_ids().clone(),
                },
            )?,
            scope: s,
        })
    }
}

#[pymethods]
impl PyScope {
    /// The key.
    #[getter]
    fn key(&self) -> &str {
        self.scope.key()
    }

    /// The covered nodes.
    #[getter]
    fn nodes(&self, py: Python<'_>) -> Py<Bitset> {
        self.nodes.clone_ref(py)
    }

    /// The covered links.
    #[getter]
    fn links(&self, py: Python<'_>) -> Py<Bitset> {
        self.links.clone_ref(py)
    }

    /// The node id mapping.
    #[getter]
    fn node_ids(&self, py: Python<'_>) -> Py<PyIdMap> {
        self.node_ids.clone_ref(py)
    }

    /// The link id mapping.
    #[getter]
    fn link_ids(&self, py: Python<'_>) -> Py<PyIdMap> {
        self.link_ids.clone_ref(py)
    }

    /// Number of nodes (bits of `nodes`, ids of `node_ids`).
    #[getter]
    fn total_nodes(&self) -> usize {
        self.scope.nodes().len()
    }

    /// Number of links.
    #[getter]
    fn total_links(&self) -> usize {
        self.scope.links().len()
    }

    /// The attributes stored with the scope, as a new dict.
    #[getter]
    fn attributes<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        attributes_to_py(py, self.scope.attributes())
    }

    /// The ids of the covered nodes, in index order (at most `limit`),
    /// read in place; the walk runs without the GIL.
    #[pyo3(signature = (limit = None))]
    fn covered_node_ids<'py>(&self, py: Python<'py>, limit: Option<usize>) -> PyResult<Bound<'py, PyList>> {
        algebra::scope_covered_ids(py, &self.scope, Which::Nodes, limit)
    }

    /// The ids of the covered links, in index order (at most `limit`).
    #[pyo3(signature = (limit = None))]
    fn covered_link_ids<'py>(&self, py: Python<'py>, limit: Option<usize>) -> PyResult<Bound<'py, PyList>> {
        algebra::scope_covered_ids(py, &self.scope, Which::Links, limit)
    }

    /// Whether node `id` is covered: None when it is not in the mapping.
    fn node_covered(&self, id: &str) -> Option<bool> {
        self.scope.node_covered(id)
    }

    /// Whether link `id` is covered: None when it is not in the mapping.
    fn link_covered(&self, id: &str) -> Option<bool> {
        self.scope.link_covered(id)
    }

    /// The entry's description as of the snapshot this scope came from.
    fn info<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        info_dict(py, &self.scope.info())
    }

    fn __repr__(&self) -> String {
        format!(
            "<scopecache.Scope {:?}: {} nodes, {} links>",
            self.scope.key(),
            self.scope.nodes().len(),
            self.scope.links().len()
        )
    }
}
