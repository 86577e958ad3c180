"""IdMap is a read-only collections.abc.Mapping[str, int] backed by the file."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pytest

from scopecache import CorruptError, IdMap, MappingError, ScopeCache

IDS = [f"id-{i:05d}" for i in range(5000)] + ["", "é-ünïcode", "x" * 300]


@pytest.fixture(params=["built", "stored"])
def m(request, tmp_path):
    built = IdMap(IDS)
    if request.param == "built":
        return built
    c = ScopeCache(tmp_path / "m.scopecache", fsync=False)
    c.put("k", [False] * len(IDS), [True], built, ["l"])
    return c.get("k").node_ids


def test_mapping_protocol(m):
    assert isinstance(m, Mapping)
    assert len(m) == len(IDS)
    assert m["id-00042"] == 42 and m[""] == 5000 and m["é-ünïcode"] == 5001
    with pytest.raises(KeyError):
        m["nope"]
    with pytest.raises(KeyError):
        m[42]
    assert m.get("nope") is None and m.get("nope", -7) == -7 and m.get("id-00001") == 1
    assert "id-00003" in m and "nope" not in m and 3 not in m
    assert list(m) == IDS
    assert list(m.keys()) == IDS and list(m.values()) == list(range(len(IDS)))
    assert list(m.items())[:2] == [("id-00000", 0), ("id-00001", 1)]
    assert ("id-00002", 2) in m.items()
    assert m == {k: i for i, k in enumerate(IDS)}
    assert m != {"a": 0}
    assert dict(m) == {k: i for i, k in enumerate(IDS)}
    assert m.id_of(5002) == "x" * 300
    with pytest.raises(IndexError):
        m.id_of(len(IDS))
    with pytest.raises(IndexError):
        m.id_of(-1)
    with pytest.raises(TypeError):
        hash(m)
    with pytest.raises(TypeError):
        m["a"] = 1


def test_batch_lookups(m):
    want = np.array([42, -1, 5000, 5001, 0], dtype=np.int64)
    ids = ["id-00042", "missing", "", "é-ünïcode", "id-00000"]
    for form in (ids, tuple(ids), np.array(ids), np.array(ids, dtype=object)):
        got = m.index_of_batch(form)
        assert got.dtype == np.int64 and np.array_equal(got, want), form
    ascii_ids = ["id-00042", "missing", "id-00000"]
    assert np.array_equal(m.index_of_batch(np.array(ascii_ids, dtype="S")), [42, -1, 0])
    assert m.index_of_batch([]).shape == (0,)
    big = [f"id-{i:05d}" for i in range(0, 5000, 3)] * 40  # 66,680: the threaded path
    assert np.array_equal(m.index_of_batch(big), [int(s[3:]) for s in big])
    with pytest.raises(TypeError):
        m.index_of_batch([1, 2])
    with pytest.raises(TypeError):
        m.index_of_batch(np.arange(3))
    assert m.ids_of_batch(np.array([1, 5000, 10**9])) == ["id-00001", "", None]


def test_idmap_from_dict_any_order_and_errors():
    d = {k: i for i, k in reversed(list(enumerate(IDS)))}
    assert IdMap(d) == IdMap(IDS)
    assert IdMap(d).digest == IdMap(IDS).digest
    with pytest.raises(MappingError):
        IdMap({"a": 0, "b": 0})
    with pytest.raises(MappingError):
        IdMap({"a": 0, "b": 2})
    with pytest.raises(MappingError):
        IdMap({"a": -1})
    with pytest.raises(MappingError):
        IdMap(["a", "b", "a"])
    with pytest.raises(TypeError):
        IdMap({1: 0})
    with pytest.raises(TypeError):
        IdMap({"a": "0"})
    with pytest.raises(TypeError):
        IdMap(["a", 1])
    with pytest.raises(TypeError):
        IdMap(5)
    assert len(IdMap(np.array(["a", "b"]))) == 2


def test_verify_and_corruption_are_reported(m):
    m.verify()
    assert not m.is_corrupt
    assert issubclass(CorruptError, Exception)
