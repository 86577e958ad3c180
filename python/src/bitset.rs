//! `Bitset`: a scope's nodes or links bitset, read in place from the mapped
//! cache file, or a result of the coverage algebra over owned words.

use std::ffi::{c_int, c_void};

use bitvec::prelude::{BitVec, Lsb0};
use pyo3::exceptions::{PyBufferError, PyIndexError, PyValueError};
use pyo3::ffi;
use pyo3::prelude::*;
use pyo3::types::PyBytes;
use scopecache::Scope;

use crate::pymods;

/// Which of a scope's two bitsets.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Which {
    Nodes,
    Links,
}

/// Where a bitset's words are.
enum Source {
    /// In the mapped file, kept alive by the scope.
    Mapped(Scope),
    /// Owned (a result of the algebra), with the name of the operation.
    Owned(Box<[u64]>, &'static str),
}

/// A read-only bitset read in place from the cache file (or owned, for a
/// result of the coverage algebra).
///
/// `len()` bits; `b[i]` is 0 or 1; `count()` counts the set bits. The
/// buffer protocol exports the little-endian u64 words (format "Q",
/// read-only): `numpy.frombuffer(b, dtype=numpy.uint64)` is a view of the
/// mapped file. Bit i is `words[i // 64] >> (i % 64) & 1`; bits past `len()`
/// are zero. The object keeps the scope's snapshot alive, so the view stays
/// valid and unchanged even after the key is replaced, evicted or compacted.
#[pyclass(frozen, sequence, module = "scopecache", name = "Bitset")]
pub struct Bitset {
    source: Source,
    which: Which,
    bits: usize,
    /// The buffer's shape and strides, pointed to by every exported view;
    /// they live as long as this object, which each view keeps alive.
    shape: [ffi::Py_ssize_t; 1],
    strides: [ffi::Py_ssize_t; 1],
}

impl Bitset {
    pub fn new(scope: Scope, which: Which) -> Bitset {
        let bits = match which {
            Which::Nodes => scope.nodes().len(),
            Which::Links => scope.links().len(),
        };
        let mut b = Bitset {
            source: Source::Mapped(scope),
            which,
            bits,
            shape: [0],
            strides: [8],
        };
        b.shape = [b.words().len() as ffi::Py_ssize_t];
        b
    }

    /// An owned bitset of `bits`, the result of operation `op`. Bits past
    /// `len()` in the last word are cleared, as the buffer promises.
    pub fn owned(bits: BitVec<u64, Lsb0>, which: Which, op: &'static str) -> Bitset {
        let n = bits.len();
        let mut words = bits.into_vec();
        words.truncate(n.div_ceil(64));
        words.resize(n.div_ceil(64), 0);
        if !n.is_multiple_of(64) {
            if let Some(last) = words.last_mut() {
                *last &= (1u64 << (n % 64)) - 1;
            }
        }
        let shape = [words.len() as ffi::Py_ssize_t];
        Bitset {
            source: Source::Owned(words.into_boxed_slice(), op),
            which,
            bits: n,
            shape,
            strides: [8],
        }
    }

    /// The words, read in place.
    #[inline(always)]
    pub fn words(&self) -> &[u64] {
        match (&self.source, self.which) {
            (Source::Mapped(s), Which::Nodes) => s.node_words(),
            (Source::Mapped(s), Which::Links) => s.link_words(),
            (Source::Owned(w, _), _) => w,
        }
    }

    /// The bits as an owned bit vector (a copy of the words).
    pub fn to_bitvec(&self) -> BitVec<u64, Lsb0> {
        let mut v = BitVec::from_slice(self.words());
        v.truncate(self.bits);
        v
    }

    /// The number of bits.
    pub fn bit_len(&self) -> usize {
        self.bits
    }

    fn index(&self, i: isize) -> PyResult<usize> {
        let n = self.bits as isize;
        let j = if i < 0 { i + n } else { i };
        if j < 0 || j >= n {
            return Err(PyIndexError::new_err("bitset index out of range"));
        }
        Ok(j as usize)
    }

    #[inline(always)]
    fn bit(&self, i: usize) -> u8 {
        self.words()
            .get(i >> 6)
            .map_or(0, |w| ((w >> (i & 63)) & 1) as u8)
    }

    fn ones(&self) -> usize {
        self.words().iter().map(|w| w.count_ones() as usize).sum()
    }

    /// The bits as bytes in bitarray's order: big-endian puts bit i at mask
    /// `0x80 >> i % 8`, little-endian at `1 << i % 8`.
    fn packed(&self, big: bool) -> Vec<u8> {
        let nbytes = self.bits.div_ceil(8);
        let mut out = Vec::with_capacity(nbytes);
        for w in self.words() {
            for b in w.to_le_bytes() {
                if out.len() == nbytes {
                    break;
                }
                out.push(if big { b.reverse_bits() } else { b });
            }
        }
        out
    }
}

#[pymethods]
impl Bitset {
    fn __len__(&self) -> usize {
        self.bits
    }

    fn __getitem__(&self, i: isize) -> PyResult<u8> {
        Ok(self.bit(self.index(i)?))
    }

    /// `count(1)`: set bits; `count(0)`: clear bits. O(len / 64).
    #[pyo3(signature = (value = 1))]
    fn count(&self, value: u8) -> PyResult<usize> {
        match value {
            1 => Ok(self.ones()),
            0 => Ok(self.bits - self.ones()),
            _ => Err(PyValueError::new_err("count(value): value must be 0 or 1")),
        }
    }

    /// True when any bit is set.
    fn any(&self) -> bool {
        self.words().iter().any(|&w| w != 0)
    }

    fn __iter__(slf: Bound<'_, Self>) -> BitsetIter {
        BitsetIter {
            bits: slf.unbind(),
            next: 0,
        }
    }

    fn __contains__(&self, value: u8) -> bool {
        match value {
            1 => self.any(),
            0 => self.ones() < self.bits,
            _ => false,
        }
    }

    /// A copy as a `bitarray.bitarray` (default big-endian bit order, as the
    /// original stores it); needs the bitarray package.
    #[pyo3(signature = (endian = "big"))]
    fn to_bitarray<'py>(&self, py: Python<'py>, endian: &str) -> PyResult<Bound<'py, PyAny>> {
        let big = match endian {
            "big" => true,
            "little" => false,
            _ => return Err(PyValueError::new_err("endian must be 'big' or 'little'")),
        };
        let bytes = PyBytes::new(py, &self.packed(big));
        let cls = pymods::bitarray_class(py)?;
        let kwargs = pyo3::types::PyDict::new(py);
        kwargs.set_item("endian", endian)?;
        let a = cls.call((), Some(&kwargs))?;
        a.call_method1("frombytes", (bytes,))?;
        a.del_item(pyo3::types::PySlice::new(py, self.bits as isize, isize::MAX, 1))?;
        Ok(a)
    }

    /// A copy as a numpy bool array of `len()` elements.
    fn to_numpy<'py>(slf: &Bound<'py, Self>) -> PyResult<Bound<'py, PyAny>> {
        let py = slf.py();
        let np = pymods::numpy(py)?;
        let bytes = np.call_method1("frombuffer", (slf, np.getattr("uint8")?))?;
        let kwargs = pyo3::types::PyDict::new(py);
        kwargs.set_item("count", slf.get().bits)?;
        kwargs.set_item("bitorder", "little")?;
        let unpacked = np.getattr("unpackbits")?.call((bytes,), Some(&kwargs))?;
        unpacked.call_method1("view", (np.getattr("bool_")?,))
    }

    /// The words as a numpy uint64 array: a read-only view of the mapped
    /// file, no copy.
    fn words_array<'py>(slf: &Bound<'py, Self>) -> PyResult<Bound<'py, PyAny>> {
        let np = pymods::numpy(slf.py())?;
        np.call_method1("frombuffer", (slf, np.getattr("uint64")?))
    }

    /// The bits packed as bytes (bit i at `1 << i % 8` of byte i // 8 for
    /// "little", at `0x80 >> i % 8` for "big"), `ceil(len / 8)` bytes.
    #[pyo3(signature = (endian = "little"))]
    fn tobytes<'py>(&self, py: Python<'py>, endian: &str) -> PyResult<Bound<'py, PyBytes>> {
        match endian {
            "big" => Ok(PyBytes::new(py, &self.packed(true))),
            "little" => Ok(PyBytes::new(py, &self.packed(false))),
            _ => Err(PyValueError::new_err("endian must be 'big' or 'little'")),
        }
    }

    /// Tests many positions at once: a numpy uint8 array of 0/1, one per
    /// index (negative or out-of-range indices, such as the -1 of an absent
    /// id, give 0). Takes any integer array or sequence.
    fn test_batch<'py>(&self, py: Python<'py>, indices: &Bound<'py, PyAny>) -> PyResult<Bound<'py, PyAny>> {
        let idx = crate::idmap::int64_input(py, indices)?;
        let words = self.words();
        let n = self.bits as i64;
        let out: Vec<u8> = py.detach(|| {
            idx.iter()
                .map(|&i| {
                    if i < 0 || i >= n {
                        0
                    } else {
                        let i = i as usize;
                        words.get(i >> 6).map_or(0, |w| ((w >> (i & 63)) & 1) as u8)
                    }
                })
                .collect()
        });
        crate::idmap::numpy_from_vec(py, &out, "uint8")
    }

    fn __repr__(&self) -> String {
        let what = match self.which {
            Which::Nodes => "nodes",
            Which::Links => "links",
        };
        match &self.source {
            Source::Mapped(s) => format!(
                "<scopecache.Bitset {} of {:?}: {} bits>",
                what,
                s.key(),
                self.bits
            ),
            Source::Owned(_, op) => format!("<scopecache.Bitset {what} of a {op}: {} bits>", self.bits),
        }
    }

    /// Exports the words, read-only.
    ///
    /// # Safety
    /// Called by Python with a valid `view` to fill.
    unsafe fn __getbuffer__(slf: Bound<'_, Self>, view: *mut ffi::Py_buffer, flags: c_int) -> PyResult<()> {
        if view.is_null() {
            return Err(PyBufferError::new_err("the buffer view is null"));
        }
        if (flags & ffi::PyBUF_WRITABLE) == ffi::PyBUF_WRITABLE {
            return Err(PyBufferError::new_err("a scopecache bitset is read-only"));
        }
        let me = slf.get();
        let words = me.words();
        let (buf, len) = (words.as_ptr(), std::mem::size_of_val(words));
        let shape = me.shape.as_ptr().cast_mut();
        let strides = me.strides.as_ptr().cast_mut();
        // SAFETY: `view` is non-null and Python hands us a Py_buffer to fill.
        // `buf` points at `len` bytes of words either inside the mapping that
        // `me.source`'s scope keeps alive (the bytes of a committed region
        // are never written again: RegionSource invariant) or in the boxed
        // slice `me.source` owns, which this frozen object never mutates nor
        // frees while alive; so a read-only export is sound. `view.obj` takes a strong reference to this object, which
        // keeps the scope, and so the mapping, `shape` and `strides`, alive
        // until the view is released. `format`, `shape` and `strides` are
        // never written through by consumers of a read-only buffer.
        unsafe {
            (*view).obj = slf.into_any().into_ptr();
            (*view).buf = buf as *mut c_void;
            (*view).len = len as ffi::Py_ssize_t;
            (*view).readonly = 1;
            (*view).itemsize = 8;
            (*view).format = if (flags & ffi::PyBUF_FORMAT) == ffi::PyBUF_FORMAT {
                c"Q".as_ptr().cast_mut()
            } else {
                std::ptr::null_mut()
            };
            (*view).ndim = 1;
            (*view).shape = if (flags & ffi::PyBUF_ND) == ffi::PyBUF_ND {
                shape
            } else {
                std::ptr::null_mut()
            };
            (*view).strides = if (flags & ffi::PyBUF_STRIDES) == ffi::PyBUF_STRIDES {
                strides
            } else {
                std::ptr::null_mut()
            };
            (*view).suboffsets = std::ptr::null_mut();
            (*view).internal = std::ptr::null_mut();
        }
        Ok(())
    }

    /// Nothing to free: the view borrowed this object's fields.
    ///
    /// # Safety
    /// Called by Python with the view filled by `__getbuffer__`.
    unsafe fn __releasebuffer__(&self, _view: *mut ffi::Py_buffer) {}
}

/// Iterates a bitset's bits as 0/1.
#[pyclass(module = "scopecache", name = "BitsetIterator")]
pub struct BitsetIter {
    bits: Py<Bitset>,
    next: usize,
}

#[pymethods]
impl BitsetIter {
    fn __iter__(slf: PyRef<'_, Self>) -> PyRef<'_, Self> {
        slf
    }

    fn __next__(&mut self, py: Python<'_>) -> Option<u8> {
        let b = self.bits.bind(py).get();
        if self.next >= b.bits {
            return None;
        }
        let v = b.bit(self.next);
        self.next += 1;
        Some(v)
    }
}
