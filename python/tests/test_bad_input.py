"""Bad input: a clear error (native API) or False (drop-in), nothing stored,
no crash, and a scope already stored under the key left as it was."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import make_workload

import scopecache
from scopecache import CacheScopeManager, ScopeCache


@pytest.fixture()
def mgr(tmp_path, coverage_scope_cls):
    m = CacheScopeManager(cache_dir=str(tmp_path / "c"))
    nodes, links, nm, lm = make_workload(200, 300)
    good = coverage_scope_cls("k", None, nodes, links, nm, lm, 200, 300)
    assert m.cache_scope("k", good, {"v": 1})
    return m, good, coverage_scope_cls


def unchanged(m, good):
    """Only the good scope is stored, exactly as it was put."""
    assert [e["scope_key"] for e in m.list_cached_scopes()] == ["k"]
    s = m.load_scope("k", None)
    assert s.covered_nodes.to_bitarray() == good.covered_nodes
    assert dict(s.node_id_mapping.items()) == good.node_id_mapping
    assert m.get_scope_info("k")["config_attributes"] == {"v": 1}
    assert m.get_cache_stats()["puts"] == 1


def variants(good, CS):
    nodes, links, nm, lm = (
        good.covered_nodes,
        good.covered_links,
        good.node_id_mapping,
        good.link_id_mapping,
    )
    dup = dict(nm)
    dup[next(iter(dup))] = nm[list(nm)[1]]  # two ids share an index, one index unused
    gap = {k: (v if v != 0 else len(nm)) for k, v in nm.items()}  # 0 missing, N present
    neg = {k: (v if v != 0 else -1) for k, v in nm.items()}
    short = nodes[:-1]
    yield "bits shorter than mapping", CS("k", None, short, links, nm, lm, len(short), 300)
    yield "total_nodes differs", CS("k", None, nodes, links, nm, lm, 199, 300)
    yield (
        "mapping longer than bits",
        CS("k", None, nodes, links, {**nm, "extra": 200}, lm, 200, 300),
    )
    yield "duplicate index", CS("k", None, nodes, links, dup, lm, 200, 300)
    yield "index out of range", CS("k", None, nodes, links, gap, lm, 200, 300)
    yield "negative index", CS("k", None, nodes, links, neg, lm, 200, 300)
    yield (
        "non-str id",
        CS("k", None, nodes, links, {**{k: v for k, v in nm.items() if v}, 5: 0}, lm, 200, 300),
    )
    yield (
        "non-int index",
        CS("k", None, nodes, links, {k: str(v) for k, v in nm.items()}, lm, 200, 300),
    )
    yield "mapping is a list of pairs", CS("k", None, nodes, links, list(nm.items()), lm, 200, 300)
    yield "bits are a str", CS("k", None, "0101", links, nm, lm, 4, 300)
    yield "bits are None", CS("k", None, None, links, nm, lm, 0, 300)
    yield "links mapping None", CS("k", None, nodes, links, nm, None, 200, 300)
    yield "float bit array", CS("k", None, np.zeros(200), links, nm, lm, 200, 300)


def test_bad_scopes_return_false_and_store_nothing(mgr, caplog):
    m, good, CS = mgr
    for name, bad in variants(good, CS):
        caplog.clear()
        assert m.cache_scope("k", bad, {"v": 2}) is False, name
        assert any("Failed to cache scope k" in r.getMessage() for r in caplog.records), name
        assert m.cache_scope("other", bad, {}) is False, name
        unchanged(m, good)


@pytest.mark.parametrize(
    "key",
    ["a/b", "../escape", "..", "x/../../etc/passwd", "/abs", "", "nul\x00key", 42, None, b"bytes"],
)
def test_bad_keys(mgr, key, tmp_path):
    m, good, CS = mgr
    before = sorted(p.name for p in tmp_path.rglob("*"))
    assert m.cache_scope(key, good, {}) is False
    assert m.load_scope(key, None) is None
    assert m.has_scope(key) is False
    assert m.invalidate_scope(key) is False
    assert m.get_scope_info(key) is None
    assert sorted(p.name for p in tmp_path.rglob("*")) == before  # no file made anywhere
    unchanged(m, good)


def test_bad_attributes(mgr):
    m, good, _ = mgr
    for attrs in ({"x": object()}, {"x": float("nan")}, "not a dict", [1, 2]):
        assert m.cache_scope("k", good, attrs) is False
    unchanged(m, good)


def test_native_errors_are_typed(tmp_path):
    c = ScopeCache(tmp_path / "n.scopecache", fsync=False)
    ids = [f"i{i}" for i in range(10)]
    cases = [
        (scopecache.LengthMismatchError, lambda: c.put("k", [True] * 9, [True], ids, ["l"])),
        (
            scopecache.LengthMismatchError,
            lambda: c.put("k", np.zeros(2, np.uint64), [True], ids, ["l"]),
        ),
        (scopecache.MappingError, lambda: c.put("k", [True] * 10, [True], {"a": 0, "b": 0}, ["l"])),
        (scopecache.DuplicateIdError, lambda: c.put("k", [True] * 2, [True], ["a", "a"], ["l"])),
        (scopecache.InvalidKeyError, lambda: c.put("", [True] * 10, [True], ids, ["l"])),
        (scopecache.InvalidKeyError, lambda: c.put("a\x00", [True] * 10, [True], ids, ["l"])),
        (scopecache.InvalidKeyError, lambda: c.get("x" * 2000)),
        (
            scopecache.AttributesError,
            lambda: c.put("k", [True] * 10, [True], ids, ["l"], {"x": {1, 2}}),
        ),
        (TypeError, lambda: c.put("k", "bits", [True], ids, ["l"])),
        (TypeError, lambda: c.put("k", [True] * 10, [True], 7, ["l"])),
        (TypeError, lambda: c.put(5, [True] * 10, [True], ids, ["l"])),
    ]
    for exc, call in cases:
        with pytest.raises(exc):
            call()
    for exc, _ in cases:
        if exc is not TypeError:
            assert issubclass(exc, scopecache.ScopeCacheError) and issubclass(exc, ValueError)
    assert c.list() == [] and c.stats()["puts"] == 0
    # Keys are never paths in the native API: "a/../b" is just a key.
    c.put("a/../b", [True] * 10, [True], ids, ["l"])
    assert c.get("a/../b").key == "a/../b"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["n.scopecache"]


def test_hostile_files(tmp_path):
    junk = tmp_path / "junk"
    junk.write_bytes(b"not a cache file at all" * 1000)
    with pytest.raises(scopecache.NotACacheFileError) as e:
        ScopeCache(junk)
    assert isinstance(e.value, scopecache.CorruptError)
    assert junk.read_bytes() == b"not a cache file at all" * 1000  # never touched
    short = tmp_path / "short"
    short.write_bytes(b"x" * 100)
    with pytest.raises(scopecache.CorruptError):
        ScopeCache(short)
    # The drop-in pointed at a foreign file raises at construction.
    with pytest.raises(scopecache.ScopeCacheError):
        CacheScopeManager(cache_dir=str(junk))
    # A cache file with its payload bytes flipped: every read is an error or a
    # miss, never a crash or wrong data.
    f = tmp_path / "f.scopecache"
    c = ScopeCache(f, fsync=False)
    ids = [f"i{i}" for i in range(5000)]
    c.put("k", [True] * 5000, [False], ids, ["l"])
    c.close()
    raw = bytearray(f.read_bytes())
    for off in range(8192, len(raw), 4099):
        raw[off] ^= 0xFF
    f.write_bytes(bytes(raw))
    try:
        c = ScopeCache(f, fsync=False)
    except scopecache.CorruptError:
        return
    try:
        s = c.get("k")
    except scopecache.CorruptError:
        s = None
    if s is not None:
        try:
            for i in range(0, 5000, 7):
                assert s.node_ids.get(ids[i]) in (i, None)
        except scopecache.CorruptError:
            pass
    assert c.verify()["clean"] is False
