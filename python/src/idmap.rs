//! `IdMap`: an id mapping (id string <-> position) as a read-only
//! `collections.abc.Mapping[str, int]`, whether built in this process or read
//! in place from the cache file; and the conversions of Python ids into one.

use pyo3::buffer::{Element, PyBuffer};
use pyo3::exceptions::{PyIndexError, PyKeyError, PyTypeError};
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList, PyString, PyTuple};
use scopecache::IdMap;

use crate::errors::{new_err, py_err, to_py, type_err};
use crate::pymods;

/// Ids looked up per call of the engine's batch lookup: large enough to
/// overlap many memory misses, small enough for the slices to stay cached.
const BATCH_CHUNK: usize = 4096;

/// A read-only mapping from id strings to positions 0..N, and back.
///
/// Build one with `IdMap(ids)` from a list of ids in position order or a
/// dict `{id: position}` (any insertion order, positions exactly 0..N), once,
/// and reuse it for every put of the same graph: a put recognises a mapping
/// the file already holds by its digest and writes nothing for it. Mappings
/// of a gotten scope are read in place from the cache file.
#[pyclass(frozen, mapping, module = "scopecache", name = "IdMap")]
pub struct PyIdMap {
    pub map: IdMap,
}

fn mapping_err(py: Python<'_>, msg: String) -> PyErr {
    new_err(py, "MappingError", msg)
}

/// A short, printable form of an id for messages.
fn show(s: &Bound<'_, PyString>) -> String {
    let t = s.to_string_lossy();
    if t.chars().count() > 64 {
        format!("{:?}...", t.chars().take(64).collect::<String>())
    } else {
        format!("{t:?}")
    }
}

/// Checks that `obj` is a str that encodes as UTF-8.
fn id_str<'py>(obj: Bound<'py, PyAny>, what: &str) -> PyResult<Bound<'py, PyString>> {
    let s = obj
        .cast_into::<PyString>()
        .map_err(|e| type_err(&format!("{what}: an id"), "str", e.into_inner().as_any()))?;
    s.to_str()?;
    Ok(s)
}

/// The ids of a dict `{id: index}` in index order: the indices must be
/// exactly 0..len.
fn from_dict<'py>(
    py: Python<'py>,
    d: &Bound<'py, PyDict>,
    what: &str,
) -> PyResult<Vec<Option<Bound<'py, PyString>>>> {
    let n = d.len();
    let mut slots: Vec<Option<Bound<'py, PyString>>> = Vec::new();
    slots.resize_with(n, || None);
    for (k, v) in d.iter() {
        let k = id_str(k, what)?;
        let out_of_range = |i: &dyn std::fmt::Display| {
            mapping_err(
                py,
                format!("{what}: id {} has index {i}, not in 0..{n}", show(&k)),
            )
        };
        let i: i64 = match v.extract() {
            Ok(i) => i,
            // An int too large for i64 (a numpy integer converts as well).
            Err(_) if v.is_instance_of::<pyo3::types::PyInt>() => return Err(out_of_range(&v)),
            Err(_) => {
                return Err(PyTypeError::new_err(format!(
                    "{what}: the index of id {} is not an int",
                    show(&k)
                )))
            }
        };
        let slot = usize::try_from(i)
            .ok()
            .and_then(|i| slots.get_mut(i))
            .ok_or_else(|| out_of_range(&i))?;
        if let Some(other) = slot {
            return Err(mapping_err(
                py,
                format!(
                    "{what}: ids {} and {} both have index {i}: not a bijection",
                    show(other),
                    show(&k)
                ),
            ));
        }
        *slot = Some(k);
    }
    if d.len() != n {
        return Err(mapping_err(
            py,
            format!("{what}: the dict changed size while being read"),
        ));
    }
    // n distinct indices in 0..n: every slot is filled.
    Ok(slots)
}

/// The ids of a sequence, in order.
fn from_seq<'py>(items: &Bound<'py, PyAny>, what: &str) -> PyResult<Vec<Option<Bound<'py, PyString>>>> {
    let mut slots = Vec::with_capacity(items.len().unwrap_or(0));
    for item in items.try_iter()? {
        slots.push(Some(id_str(item?, what)?));
    }
    Ok(slots)
}

/// The ids of a Python value, checked and in position order (holding a
/// reference to each), or a ready map.
pub enum Collected<'py> {
    Map(IdMap),
    /// The ids, and the address of the dict they came from, if any.
    Ids(Vec<Option<Bound<'py, PyString>>>, Option<usize>),
}

/// The last maps built from dicts, by the dict's address, so that a put of
/// the same dict again (the usual way of storing many scopes of one graph
/// through the drop-in) checks it against the map instead of building the
/// map anew. A hint only: a dict is used through its map only after every
/// one of its pairs was found in the map (see `same_as`).
static RECENT: std::sync::Mutex<Vec<(usize, IdMap)>> = std::sync::Mutex::new(Vec::new());
/// Maps kept in `RECENT`: a node and a link mapping.
const RECENT_MAX: usize = 2;

/// True when the dict holds exactly the map's pairs `{id: index}`: the same
/// length, and every key a str whose index in the dict is its index in the
/// map. (n distinct keys each found at their own index: the dict is the
/// map's bijection.) Costs one sequential read of each id, no hashing.
fn same_as(d: &Bound<'_, PyDict>, m: &IdMap) -> bool {
    if d.len() != m.len() {
        return false;
    }
    for (k, v) in d.iter() {
        let Ok(k) = k.cast::<PyString>() else {
            return false;
        };
        let (Ok(k), Ok(i)) = (k.to_str(), v.extract::<i64>()) else {
            return false;
        };
        match u32::try_from(i) {
            Ok(i) if m.id(i) == Some(k) => {}
            _ => return false,
        }
    }
    d.len() == m.len()
}

/// Drops the maps kept to recognise dicts put before (`RECENT`), freeing
/// their memory (about 9 bytes per id plus the ids' bytes each); the next
/// put of such a dict builds its map again.
#[pyfunction]
pub fn forget_dict_maps() {
    RECENT.lock().unwrap_or_else(|p| p.into_inner()).clear();
}

/// The map last built from this very dict, if the dict still holds exactly
/// its pairs.
fn recent_match(d: &Bound<'_, PyDict>) -> Option<IdMap> {
    let key = d.as_ptr() as usize;
    let found = {
        let recent = RECENT.lock().unwrap_or_else(|p| p.into_inner());
        recent
            .iter()
            .find(|(k, m)| *k == key && m.len() == d.len())
            .map(|(_, m)| m.clone())
    }?;
    if same_as(d, &found) {
        return Some(found);
    }
    let mut recent = RECENT.lock().unwrap_or_else(|p| p.into_inner());
    recent.retain(|(k, _)| *k != key);
    None
}

/// What a map is built from without the GIL: the ids borrowed in place
/// from the `Collected` strings, which keep them alive (a str's UTF-8
/// bytes never change while it lives).
pub enum Source<'a> {
    Map(IdMap),
    Ids(Vec<&'a str>),
}

impl<'py> Collected<'py> {
    /// Collects an `IdMap` as is, a dict `{id: index}`, or a list, tuple or
    /// numpy array of ids in position order.
    pub fn from_py(py: Python<'py>, obj: &Bound<'py, PyAny>, what: &str) -> PyResult<Collected<'py>> {
        if let Ok(m) = obj.cast::<PyIdMap>() {
            return Ok(Collected::Map(m.get().map.clone()));
        }
        if let Ok(d) = obj.cast::<PyDict>() {
            if let Some(m) = recent_match(d) {
                return Ok(Collected::Map(m));
            }
            return Ok(Collected::Ids(from_dict(py, d, what)?, Some(d.as_ptr() as usize)));
        }
        if obj.is_instance_of::<PyList>() || obj.is_instance_of::<PyTuple>() {
            return Ok(Collected::Ids(from_seq(obj, what)?, None));
        }
        if obj.hasattr("dtype")? && obj.hasattr("tolist")? {
            let list = obj.call_method0("tolist")?;
            return Ok(Collected::Ids(from_seq(&list, what)?, None));
        }
        Err(type_err(
            what,
            "an IdMap, a dict {id: index} or a list of ids",
            obj,
        ))
    }

    /// The build's input.
    pub fn source(&self, py: Python<'_>, what: &str) -> PyResult<Source<'_>> {
        match self {
            Collected::Map(m) => Ok(Source::Map(m.clone())),
            Collected::Ids(slots, _) => slots
                .iter()
                .map(|s| match s.as_ref().map(|s| s.to_str()) {
                    Some(Ok(s)) => Ok(s),
                    // Every slot was filled and checked when collected.
                    _ => Err(mapping_err(
                        py,
                        format!("{what}: an id could not be read as UTF-8"),
                    )),
                })
                .collect::<PyResult<Vec<&str>>>()
                .map(Source::Ids),
        }
    }
}

impl Collected<'_> {
    /// Remembers `map` as built from this dict (see `RECENT`).
    pub fn remember(&self, map: &IdMap) {
        if let Collected::Ids(_, Some(key)) = self {
            let mut recent = RECENT.lock().unwrap_or_else(|p| p.into_inner());
            recent.retain(|(k, _)| k != key);
            recent.push((*key, map.clone()));
            let excess = recent.len().saturating_sub(RECENT_MAX);
            recent.drain(..excess);
        }
    }
}

impl Source<'_> {
    fn build(self) -> scopecache::Result<IdMap> {
        match self {
            Source::Map(m) => Ok(m),
            Source::Ids(ids) => IdMap::from_ids(ids),
        }
    }
}

/// Builds two maps without the GIL, on two threads when both need building.
pub fn build_pair(py: Python<'_>, a: Source<'_>, b: Source<'_>) -> PyResult<(IdMap, IdMap)> {
    let (ra, rb) = py.detach(|| {
        if matches!((&a, &b), (Source::Ids(_), Source::Ids(_))) {
            std::thread::scope(|s| {
                let h = s.spawn(move || a.build());
                let rb = b.build();
                (h.join().ok(), rb)
            })
        } else {
            (Some(a.build()), b.build())
        }
    });
    let ra = ra.ok_or_else(|| pyo3::exceptions::PyRuntimeError::new_err("building an id map failed"))?;
    Ok((ra.map_err(py_err(py))?, rb.map_err(py_err(py))?))
}

/// The `IdMap` for a Python value (see `Collected::from_py`); the build
/// runs without the GIL.
pub fn idmap_from_py(py: Python<'_>, obj: &Bound<'_, PyAny>, what: &str) -> PyResult<IdMap> {
    let collected = Collected::from_py(py, obj, what)?;
    let source = collected.source(py, what)?;
    let map = py.detach(|| source.build()).map_err(py_err(py))?;
    collected.remember(&map);
    Ok(map)
}

/// Ids of a numpy array gathered for a batch lookup: copied out of the
/// array, so that the lookup can run without the GIL.
struct Ids {
    text: String,
    /// End of each id in `text`.
    ends: Vec<usize>,
    /// Positions of ids that cannot be in any map (not valid UTF-8); they
    /// hold an empty string in `text`.
    bad: Vec<usize>,
}

impl Ids {
    fn with_capacity(n: usize, bytes: usize) -> Ids {
        Ids {
            text: String::with_capacity(bytes),
            ends: Vec::with_capacity(n),
            bad: Vec::new(),
        }
    }

    fn end(&mut self) {
        self.ends.push(self.text.len());
    }

    fn get(&self, k: usize) -> Option<&str> {
        let start = if k == 0 { 0 } else { *self.ends.get(k - 1)? };
        self.text.get(start..*self.ends.get(k)?)
    }
}

/// Gathers the ids of a numpy array of dtype str, bytes or object.
fn gather_numpy<'py>(py: Python<'py>, obj: &Bound<'py, PyAny>) -> PyResult<Result<Ids, Bound<'py, PyAny>>> {
    let np = pymods::numpy(py)?;
    let arr = np.call_method1("ascontiguousarray", (obj,))?;
    let arr = arr.call_method0("ravel")?;
    let dtype = arr.getattr("dtype")?;
    let kind: String = dtype.getattr("kind")?.extract()?;
    let itemsize: usize = dtype.getattr("itemsize")?.extract()?;
    let n: usize = arr.len()?;
    match kind.as_str() {
        "U" => {
            let width = itemsize / 4;
            let view = arr.call_method1("view", (np.getattr("uint32")?,))?;
            let cps = PyBuffer::<u32>::get(&view)?.to_vec(py)?;
            let mut ids = Ids::with_capacity(n, n * width);
            for (k, cell) in cps.chunks(width.max(1)).take(n).enumerate() {
                let used = cell.iter().rposition(|&c| c != 0).map_or(0, |p| p + 1);
                let cell = &cell[..used];
                if cell.iter().all(|&c| c < 0x80) {
                    // ASCII, the usual case: one byte per code point.
                    ids.text.extend(cell.iter().map(|&c| c as u8 as char));
                    ids.end();
                    continue;
                }
                let mark = ids.text.len();
                for &c in cell {
                    if c < 0x80 {
                        ids.text.push(c as u8 as char);
                    } else if let Some(ch) = char::from_u32(c) {
                        ids.text.push(ch);
                    } else {
                        // A lone surrogate: no str of a map holds one.
                        ids.text.truncate(mark);
                        ids.bad.push(k);
                        break;
                    }
                }
                ids.end();
            }
            Ok(Ok(ids))
        }
        "S" => {
            let view = arr.call_method1("view", (np.getattr("uint8")?,))?;
            let bytes = PyBuffer::<u8>::get(&view)?.to_vec(py)?;
            let mut ids = Ids::with_capacity(n, n * itemsize);
            for (k, cell) in bytes.chunks(itemsize.max(1)).take(n).enumerate() {
                let used = cell.iter().rposition(|&c| c != 0).map_or(0, |p| p + 1);
                match std::str::from_utf8(&cell[..used]) {
                    Ok(s) => ids.text.push_str(s),
                    Err(_) => ids.bad.push(k),
                }
                ids.end();
            }
            Ok(Ok(ids))
        }
        "O" => Ok(Err(arr.call_method0("tolist")?)),
        _ => Err(PyTypeError::new_err(format!(
            "index_of_batch: a numpy array of ids must have a str, bytes or object dtype, not {}",
            dtype.str()?
        ))),
    }
}

/// Batches at least this large are split over several threads: lookups
/// wait on memory, so they scale with the cores that issue them.
const PARALLEL_BATCH_MIN: usize = 1 << 16;

/// Looks up `n` ids, `get(k)` giving id k (None: cannot be in the map);
/// -1 for an absent id. Large batches run on up to 4 threads.
fn run_batch<'a>(
    map: &IdMap,
    n: usize,
    get: impl Fn(usize) -> Option<&'a str> + Sync,
) -> scopecache::Result<Vec<i64>> {
    let threads = std::thread::available_parallelism().map_or(1, |t| t.get()).min(4);
    if n < PARALLEL_BATCH_MIN || threads < 2 {
        return run_range(map, 0, n, &get);
    }
    let per = n.div_ceil(threads);
    let parts: Vec<Option<scopecache::Result<Vec<i64>>>> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                let get = &get;
                s.spawn(move || run_range(map, (t * per).min(n), ((t + 1) * per).min(n), get))
            })
            .collect();
        handles.into_iter().map(|h| h.join().ok()).collect()
    });
    let mut out = Vec::with_capacity(n);
    for (t, part) in parts.into_iter().enumerate() {
        match part {
            Some(r) => out.extend(r?),
            // A thread that panicked (a bug): do its share here instead.
            None => out.extend(run_range(map, (t * per).min(n), ((t + 1) * per).min(n), &get)?),
        }
    }
    Ok(out)
}

/// Looks up ids `lo..hi` chunk by chunk.
fn run_range<'a>(
    map: &IdMap,
    from: usize,
    to: usize,
    get: &impl Fn(usize) -> Option<&'a str>,
) -> scopecache::Result<Vec<i64>> {
    let mut out = Vec::with_capacity(to - from);
    let mut strs: Vec<&str> = Vec::with_capacity(BATCH_CHUNK);
    let mut found = vec![None; BATCH_CHUNK];
    let mut bad = Vec::new();
    for lo in (from..to).step_by(BATCH_CHUNK) {
        let hi = (lo + BATCH_CHUNK).min(to);
        strs.clear();
        bad.clear();
        for k in lo..hi {
            strs.push(get(k).unwrap_or_else(|| {
                bad.push(k - lo);
                ""
            }));
        }
        let found = &mut found[..hi - lo];
        map.index_of_batch(&strs, found)?;
        for &u in &bad {
            if let Some(f) = found.get_mut(u) {
                *f = None;
            }
        }
        out.extend(found.iter().map(|f| f.map_or(-1, i64::from)));
    }
    Ok(out)
}

/// A 1-D numpy array of dtype `dtype` holding a copy of `data`.
pub fn numpy_from_vec<'py, T: Element>(
    py: Python<'py>,
    data: &[T],
    dtype: &str,
) -> PyResult<Bound<'py, PyAny>> {
    let np = pymods::numpy(py)?;
    let arr = np.call_method1("empty", (data.len(), np.getattr(dtype)?))?;
    if !data.is_empty() {
        PyBuffer::<T>::get(&arr)?.copy_from_slice(py, data)?;
    }
    Ok(arr)
}

/// The integers of an integer (or bool) numpy array or sequence, as i64.
pub fn int64_input(py: Python<'_>, obj: &Bound<'_, PyAny>) -> PyResult<Vec<i64>> {
    let np = pymods::numpy(py)?;
    let arr = np.call_method1("asarray", (obj,))?;
    let kind: String = arr.getattr("dtype")?.getattr("kind")?.extract()?;
    let n: usize = arr.getattr("size")?.extract()?;
    if n > 0 && !matches!(kind.as_str(), "i" | "u" | "b") {
        return Err(PyTypeError::new_err(format!(
            "expected integer indices, got an array of dtype kind {kind:?}"
        )));
    }
    let arr = np.call_method1(
        "ascontiguousarray",
        (arr.call_method0("ravel")?, np.getattr("int64")?),
    )?;
    PyBuffer::<i64>::get(&arr)?.to_vec(py)
}

impl PyIdMap {
    /// The position of `key`, None when absent; Err when the map is corrupt.
    #[inline]
    fn lookup(&self, py: Python<'_>, key: &Bound<'_, PyAny>) -> PyResult<Option<u32>> {
        let Ok(s) = key.cast::<PyString>() else {
            return Ok(None);
        };
        let Ok(k) = s.to_str() else {
            return Ok(None);
        };
        self.map.try_index_of(k).map_err(py_err(py))
    }

    /// Positions of many ids, -1 for an absent one; the lookups run
    /// without the GIL.
    pub fn batch(&self, py: Python<'_>, ids: &Bound<'_, PyAny>) -> PyResult<Vec<i64>> {
        let map = &self.map;
        let list;
        let ids = if ids.is_instance_of::<PyList>() || ids.is_instance_of::<PyTuple>() {
            ids
        } else if ids.hasattr("dtype")? {
            match gather_numpy(py, ids)? {
                Ok(owned) => {
                    let mut bad = owned.bad.iter().peekable();
                    let n = owned.ends.len();
                    return py
                        .detach(|| run_batch(map, n, |k| owned.get(k)))
                        .map(|mut out| {
                            while let Some(&&b) = bad.peek() {
                                if let Some(o) = out.get_mut(b) {
                                    *o = -1;
                                }
                                bad.next();
                            }
                            out
                        })
                        .map_err(py_err(py));
                }
                Err(objects) => {
                    list = objects;
                    &list
                }
            }
        } else {
            return Err(type_err(
                "index_of_batch",
                "a list, tuple or numpy array of str",
                ids,
            ));
        };
        // The strings are borrowed in place: `items` holds a reference to
        // each, and a str's UTF-8 bytes never change while it lives.
        let mut items: Vec<Bound<'_, PyString>> = Vec::with_capacity(ids.len()?);
        for item in ids.try_iter()? {
            let item = item?;
            items.push(
                item.cast_into::<PyString>()
                    .map_err(|e| type_err("index_of_batch: an id", "str", e.into_inner().as_any()))?,
            );
        }
        let strs: Vec<Option<&str>> = items.iter().map(|s| s.to_str().ok()).collect();
        py.detach(|| run_batch(map, strs.len(), |k| strs.get(k).copied().flatten()))
            .map_err(py_err(py))
    }
}

#[pymethods]
impl PyIdMap {
    /// Builds a map from a list of ids in position order, or from a dict
    /// `{id: position}` whose positions are exactly 0..len (any order).
    #[new]
    fn py_new(py: Python<'_>, ids: &Bound<'_, PyAny>) -> PyResult<PyIdMap> {
        Ok(PyIdMap {
            map: idmap_from_py(py, ids, "ids")?,
        })
    }

    fn __len__(&self) -> usize {
        self.map.len()
    }

    fn __getitem__(&self, py: Python<'_>, key: &Bound<'_, PyAny>) -> PyResult<u32> {
        match self.lookup(py, key)? {
            Some(i) => Ok(i),
            None => Err(PyKeyError::new_err(key.clone().unbind())),
        }
    }

    fn __contains__(&self, py: Python<'_>, key: &Bound<'_, PyAny>) -> PyResult<bool> {
        Ok(self.lookup(py, key)?.is_some())
    }

    /// The position of `key`, or `default` when absent.
    #[pyo3(signature = (key, default = None))]
    fn get<'py>(
        &self,
        py: Python<'py>,
        key: &Bound<'py, PyAny>,
        default: Option<Bound<'py, PyAny>>,
    ) -> PyResult<Option<Bound<'py, PyAny>>> {
        match self.lookup(py, key)? {
            Some(i) => Ok(Some(i.into_pyobject(py)?.into_any())),
            None => Ok(default),
        }
    }

    fn __iter__(slf: Bound<'_, Self>) -> IdMapIter {
        IdMapIter {
            map: slf.get().map.clone(),
            next: 0,
        }
    }

    /// A view of the ids, in position order.
    fn keys<'py>(slf: &Bound<'py, Self>) -> PyResult<Bound<'py, PyAny>> {
        pymods::abc(slf.py())?.getattr("KeysView")?.call1((slf,))
    }

    /// A view of the positions, in order (0..len).
    fn values<'py>(slf: &Bound<'py, Self>) -> PyResult<Bound<'py, PyAny>> {
        pymods::abc(slf.py())?.getattr("ValuesView")?.call1((slf,))
    }

    /// A view of the (id, position) pairs, in position order.
    fn items<'py>(slf: &Bound<'py, Self>) -> PyResult<Bound<'py, PyAny>> {
        pymods::abc(slf.py())?.getattr("ItemsView")?.call1((slf,))
    }

    /// The id at position `index`; IndexError outside 0..len.
    fn id_of<'py>(&self, py: Python<'py>, index: i64) -> PyResult<Bound<'py, PyString>> {
        let i = u32::try_from(index)
            .ok()
            .filter(|&i| (i as usize) < self.map.len())
            .ok_or_else(|| {
                PyIndexError::new_err(format!("id index {index} out of range 0..{}", self.map.len()))
            })?;
        match self.map.try_id(i).map_err(py_err(py))? {
            Some(s) => Ok(PyString::new(py, s)),
            None => Err(PyIndexError::new_err(format!("id index {index} out of range"))),
        }
    }

    /// Positions of many ids at once, as a numpy int64 array (-1 for an
    /// absent id). Takes a list or tuple of str, or a numpy array of str,
    /// bytes or objects. The lookups run without the GIL.
    fn index_of_batch<'py>(&self, py: Python<'py>, ids: &Bound<'py, PyAny>) -> PyResult<Bound<'py, PyAny>> {
        let out = self.batch(py, ids)?;
        numpy_from_vec(py, &out, "int64")
    }

    /// Ids of many positions at once, as a list of str (None for a
    /// position out of range).
    fn ids_of_batch<'py>(
        &self,
        py: Python<'py>,
        indices: &Bound<'py, PyAny>,
    ) -> PyResult<Vec<Option<Bound<'py, PyString>>>> {
        let idx = int64_input(py, indices)?;
        idx.iter()
            .map(|&i| match u32::try_from(i) {
                Ok(i) => Ok(self
                    .map
                    .try_id(i)
                    .map_err(py_err(py))?
                    .map(|s| PyString::new(py, s))),
                Err(_) => Ok(None),
            })
            .collect()
    }

    /// The content digest (xxh3-128 of the stored form) as 32 hex digits:
    /// equal for maps with the same ids in the same order.
    #[getter]
    fn digest(&self) -> String {
        format!("{:032x}", self.map.digest())
    }

    /// Bytes of the map's stored form.
    #[getter]
    fn nbytes(&self) -> u64 {
        self.map.region_len()
    }

    /// True once a check of the map's bytes failed in this process.
    #[getter]
    fn is_corrupt(&self) -> bool {
        self.map.is_corrupt()
    }

    /// Checks every byte of the map (CRCs, structure, digest); raises
    /// CorruptError on damage. Runs without the GIL.
    fn verify(&self, py: Python<'_>) -> PyResult<()> {
        let map = &self.map;
        py.detach(|| map.verify()).map_err(py_err(py))
    }

    fn __eq__(&self, py: Python<'_>, other: &Bound<'_, PyAny>) -> PyResult<Py<PyAny>> {
        if let Ok(o) = other.cast::<PyIdMap>() {
            let o = &o.get().map;
            let eq = o.len() == self.map.len() && o.digest() == self.map.digest();
            return Ok(eq.into_pyobject(py)?.to_owned().into_any().unbind());
        }
        if let Ok(d) = other.cast::<PyDict>() {
            if d.len() != self.map.len() {
                return Ok(false.into_pyobject(py)?.to_owned().into_any().unbind());
            }
            for (k, v) in d.iter() {
                let want: Option<u64> = v.extract().ok();
                let got = self.lookup(py, &k)?.map(u64::from);
                if want.is_none() || want != got {
                    return Ok(false.into_pyobject(py)?.to_owned().into_any().unbind());
                }
            }
            return Ok(true.into_pyobject(py)?.to_owned().into_any().unbind());
        }
        Ok(py.NotImplemented())
    }

    fn __hash__(&self) -> PyResult<isize> {
        Err(PyTypeError::new_err("unhashable type: 'IdMap'"))
    }

    fn __repr__(&self) -> String {
        format!(
            "<scopecache.IdMap of {} ids, digest {:032x}>",
            self.map.len(),
            self.map.digest()
        )
    }
}

/// Iterates a map's ids in position order.
#[pyclass(module = "scopecache", name = "IdMapIterator")]
pub struct IdMapIter {
    map: IdMap,
    next: usize,
}

#[pymethods]
impl IdMapIter {
    fn __iter__(slf: PyRef<'_, Self>) -> PyRef<'_, Self> {
        slf
    }

    fn __next__<'py>(&mut self, py: Python<'py>) -> PyResult<Option<Bound<'py, PyString>>> {
        if self.next >= self.map.len() {
            return Ok(None);
        }
        let i = self.next as u32;
        self.next += 1;
        match self.map.try_id(i) {
            Ok(Some(s)) => Ok(Some(PyString::new(py, s))),
            Ok(None) => Ok(None),
            Err(e) => Err(to_py(py, e)),
        }
    }

    fn __length_hint__(&self) -> usize {
        self.map.len().saturating_sub(self.next)
    }
}
