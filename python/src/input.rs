//! Python values into the engine's inputs: bitsets and attributes.

use bitvec::prelude::{BitVec, Lsb0};
use pyo3::buffer::PyBuffer;
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList, PyTuple};
use serde_json::{Map, Value};

use crate::bitset::Bitset;
use crate::errors::{new_err, type_err};
use crate::pymods;

/// Words of `bits` bits from bytes in little-endian bit order, or
/// big-endian bit order when `big`.
fn words_from_bytes(bytes: &[u8], bits: usize, big: bool) -> BitVec<u64, Lsb0> {
    scopecache::migrate::bits_from_bytes(bytes, bits, big)
}

fn length_err(py: Python<'_>, what: &str, msg: String) -> PyErr {
    new_err(py, "LengthMismatchError", format!("{what}: {msg}"))
}

/// A bitset from a Python value:
/// - a `scopecache.Bitset` (copied);
/// - a `bitarray.bitarray` of either bit order;
/// - a numpy bool array (or a list or tuple of bools or 0/1);
/// - a numpy uint64 array of little-endian words holding `expected` bits
///   (`ceil(expected / 64)` words; bits past `expected` are ignored).
///
/// The length of the others is their own; the engine checks it against the
/// mapping's.
pub fn bits_from_py(
    py: Python<'_>,
    obj: &Bound<'_, PyAny>,
    expected: usize,
    what: &str,
) -> PyResult<BitVec<u64, Lsb0>> {
    if let Ok(b) = obj.cast::<Bitset>() {
        let b = b.get();
        let mut v = BitVec::from_slice(b.words());
        v.truncate(b.bit_len());
        return Ok(v);
    }
    if obj.hasattr("endian")? && obj.hasattr("frombytes")? {
        // bitarray: its buffer holds the bits packed in its bit order.
        let mut endian = obj.getattr("endian")?;
        if endian.is_callable() {
            endian = endian.call0()?; // bitarray before 3.4: a method
        }
        let big = match endian.extract::<String>()?.as_str() {
            "big" => true,
            "little" => false,
            other => {
                return Err(type_err(
                    what,
                    &format!("a bitarray of known bit order, not {other:?}"),
                    obj,
                ))
            }
        };
        let bits = obj.len()?;
        let bytes = PyBuffer::<u8>::get(obj)?.to_vec(py)?;
        if bytes.len() < bits.div_ceil(8) {
            return Err(length_err(
                py,
                what,
                format!("{bits} bits but only {} bytes", bytes.len()),
            ));
        }
        return Ok(words_from_bytes(&bytes, bits, big));
    }
    let arr = if obj.hasattr("dtype")? {
        obj.clone()
    } else if obj.is_instance_of::<PyList>() || obj.is_instance_of::<PyTuple>() {
        let np = pymods::numpy(py)?;
        np.call_method1("asarray", (obj, np.getattr("bool_")?))?
    } else {
        return Err(type_err(
            what,
            "a bitarray, a scopecache.Bitset, a numpy bool array or numpy uint64 words",
            obj,
        ));
    };
    let np = pymods::numpy(py)?;
    let dtype = arr.getattr("dtype")?;
    let ndim: usize = arr.getattr("ndim")?.extract()?;
    if ndim != 1 {
        return Err(type_err(what, "a 1-D array", obj));
    }
    let kind: String = dtype.getattr("kind")?.extract()?;
    let itemsize: usize = dtype.getattr("itemsize")?.extract()?;
    match (kind.as_str(), itemsize) {
        ("b", _) => {
            let n: usize = arr.len()?;
            let kwargs = PyDict::new(py);
            kwargs.set_item("bitorder", "little")?;
            let packed = np.getattr("packbits")?.call((&arr,), Some(&kwargs))?;
            let bytes = PyBuffer::<u8>::get(&packed)?.to_vec(py)?;
            Ok(words_from_bytes(&bytes, n, false))
        }
        ("u", 8) => {
            let arr = np.call_method1("ascontiguousarray", (&arr, np.getattr("uint64")?))?;
            let words = PyBuffer::<u64>::get(&arr)?.to_vec(py)?;
            if words.len() != expected.div_ceil(64) {
                return Err(length_err(
                    py,
                    what,
                    format!(
                        "{} words, but {expected} bits (the mapping's length) need {}",
                        words.len(),
                        expected.div_ceil(64)
                    ),
                ));
            }
            let mut v = BitVec::from_vec(words);
            v.truncate(expected);
            Ok(v)
        }
        _ => Err(type_err(
            what,
            "a numpy array of dtype bool (one per bit) or uint64 (words)",
            &dtype,
        )),
    }
}

/// Attributes from a dict (or None for none), through JSON: keys must be
/// str and values JSON-encodable; NaN and infinities are refused.
pub fn attributes_from_py(py: Python<'_>, obj: Option<&Bound<'_, PyAny>>) -> PyResult<Map<String, Value>> {
    let Some(obj) = obj.filter(|o| !o.is_none()) else {
        return Ok(Map::new());
    };
    if !obj.is_instance_of::<PyDict>() && !obj.hasattr("keys")? {
        return Err(type_err("attributes", "a dict", obj));
    }
    let dict = if obj.is_instance_of::<PyDict>() {
        obj.clone()
    } else {
        PyDict::from_sequence(&obj.call_method0("items")?)?.into_any()
    };
    let text = pymods::json_dumps(py, &dict).map_err(|e| {
        new_err(
            py,
            "AttributesError",
            format!("attributes are not JSON-encodable: {e}"),
        )
    })?;
    serde_json::from_str(&text).map_err(|e| new_err(py, "AttributesError", format!("attributes: {e}")))
}

/// Attributes as a fresh Python dict.
pub fn attributes_to_py<'py>(py: Python<'py>, attrs: &Map<String, Value>) -> PyResult<Bound<'py, PyAny>> {
    let text = serde_json::to_string(attrs).map_err(|e| new_err(py, "AttributesError", e.to_string()))?;
    pymods::json_loads(py, &text)
}
