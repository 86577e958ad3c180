"""The native API: ScopeCache, Scope, IdMap reuse, inputs, reports, logging,
context managers and migrate()."""

from __future__ import annotations

import logging
import os
import pickle
from datetime import UTC, datetime

import numpy as np
import pytest
from conftest import make_workload

import scopecache
from scopecache import ClosedError, IdMap, ScopeCache


def test_put_get_and_reports(tmp_path):
    path = tmp_path / "n.scopecache"
    with ScopeCache(path, max_entries=10, ttl_hours=None, fsync=False) as c:
        assert c.path == path and not c.read_only
        nodes = np.random.default_rng(1).random(1000) < 0.5
        words = np.random.default_rng(2).integers(0, 2**63, 16, dtype=np.uint64)
        c.put(
            "a",
            nodes,
            words,
            [f"n{i}" for i in range(1000)],
            [f"l{i}" for i in range(1000)],
            {"run": "r1", "n": [1, 2.5, None]},
        )
        s = c.get("a")
        assert s.key == "a" and s.total_nodes == 1000 and s.total_links == 1000
        assert np.array_equal(s.nodes.to_numpy(), nodes)
        w = np.frombuffer(s.links, dtype=np.uint64)
        mask = np.uint64((1 << (1000 % 64)) - 1)
        assert np.array_equal(w[:-1], words[:-1]) and w[-1] == words[-1] & mask
        assert s.attributes == {"run": "r1", "n": [1, 2.5, None]}
        assert "a" in c and c.contains("a") and not c.contains("b") and c.get("b") is None
        info = c.info("a")
        assert info["key"] == "a" and info["total_bytes"] > 0
        assert isinstance(info["created_at"], datetime) and info["created_at"].tzinfo == UTC
        assert s.info()["key"] == "a"
        assert [e["key"] for e in c.list()] == ["a"]
        st = c.stats()
        assert (
            st["total_entries"] == 1 and st["puts"] == 1 and st["hits"] == 1 and st["misses"] == 1
        )
        assert c.verify()["clean"] and c.verify()["entries"] == 1
        assert set(c.maintain()) == {"expired", "evicted", "corrupt_dropped", "compaction"}
        assert c.remove("a") is True and c.remove("a") is False
        assert c.compact()["bytes_after"] <= c.stats()["file_bytes"] + 4096
        assert c.clear() == 0
    assert c.closed
    with pytest.raises(ClosedError):
        c.get("a")
    assert s.nodes.to_numpy().sum() == nodes.sum()  # a scope outlives its handle


def test_idmap_reuse_writes_no_mapping_again(tmp_path):
    c = ScopeCache(tmp_path / "r.scopecache", fsync=False)
    nodes, links = IdMap([f"n{i}" for i in range(50_000)]), IdMap([f"l{i}" for i in range(80_000)])
    c.put("s0", [True] * 50_000, [False] * 80_000, nodes, links)
    size = c.stats()["file_bytes"]
    for k in range(1, 6):
        c.put(f"s{k}", np.ones(50_000, bool), np.zeros(80_000, bool), nodes, links, {"k": k})
    st = c.stats()
    assert st["stored_mappings"] == 2 and st["total_entries"] == 6
    grow = (st["file_bytes"] - size) / 5
    assert grow < nodes.nbytes / 4, (grow, nodes.nbytes)  # bitsets and index only
    assert c.get("s3").node_ids == nodes
    assert all(e["shares_mappings"] for e in c.list())
    # A loaded mapping is reused the same way.
    s = c.get("s1")
    c.put("s6", s.nodes, s.links, s.node_ids, s.link_ids)
    assert c.stats()["stored_mappings"] == 2


def test_limits_and_ttl(tmp_path):
    c = ScopeCache(tmp_path / "l.scopecache", max_entries=2, fsync=False)
    for k in "abc":
        c.put(k, [True], [True], ["x"], ["y"])
    assert sorted(e["key"] for e in c.list()) == ["b", "c"]
    assert c.stats()["evictions"] == 1
    with pytest.raises(scopecache.ConfigError):
        ScopeCache(tmp_path / "bad", ttl_hours=-1)
    with pytest.raises(scopecache.ConfigError):
        ScopeCache(tmp_path / "bad2", max_entries=0)


def test_read_only(tmp_path):
    p = tmp_path / "ro.scopecache"
    ScopeCache(p).put("k", [True], [True], ["x"], ["y"])
    ro = ScopeCache(p, read_only=True)
    assert ro.read_only and ro.get("k") is not None
    with pytest.raises(scopecache.ReadOnlyError):
        ro.put("k2", [True], [True], ["x"], ["y"])


def test_pickle_reopens(tmp_path):
    c = ScopeCache(tmp_path / "p.scopecache", max_entries=7, fsync=False)
    c.put("k", [True, False], [True], ["a", "b"], ["c"])
    c2 = pickle.loads(pickle.dumps(c))
    assert c2 is not c and c2.limits == c.limits and c2.get("k").nodes[0] == 1


def test_engine_logs_reach_logging(tmp_path, caplog):
    p = tmp_path / "log.scopecache"
    c = ScopeCache(p, fsync=False)
    ids = [f"i{i}" for i in range(20_000)]
    c.put("k", [True] * 20_000, [True], ids, ["l"])
    c.close()
    # Damage the nodes bitset's bytes: the next get drops the entry and
    # the engine logs a warning, which must arrive in Python's logging.
    raw = bytearray(p.read_bytes())
    info = ScopeCache(p, read_only=True).info("k")
    assert info is not None
    ones = bytes([0xFF]) * 64
    at = raw.find(ones)
    assert at > 0
    raw[at] = 0x00
    p.write_bytes(bytes(raw))
    scopecache.refresh_logging()
    with caplog.at_level(logging.WARNING, logger="scopecache"):
        assert ScopeCache(p).get("k") is None
    rust = [r for r in caplog.records if r.name.startswith("scopecache.")]
    assert any("failed its checks" in r.getMessage() for r in rust), [r.getMessage() for r in rust]


def test_migrate_the_originals_directory(original, tmp_path):
    sm, CoverageScope = original
    d = tmp_path / "orig"
    m = sm.CacheScopeManager(cache_dir=str(d), max_cache_size_gb=1, max_entries=10, ttl_hours=48)
    data = {}
    for k, seed in (("a", 1), ("b", 2)):
        nodes, links, nm, lm = make_workload(1500, 2500, seed=seed)
        data[k] = (nodes, links, nm, lm)
        assert m.cache_scope(k, CoverageScope(k, None, nodes, links, nm, lm, 1500, 2500), {"k": k})
    target = tmp_path / "new.scopecache"
    report = scopecache.migrate(d, target, ttl_hours=48)
    assert sorted(report["imported"]) == ["a", "b"] and report["skipped"] == []
    c = ScopeCache(target)
    for k, (nodes, links, nm, _lm) in data.items():
        s = c.get(k)
        assert s.nodes.to_bitarray() == nodes and s.links.to_bitarray() == links
        assert dict(s.node_ids.items()) == nm and s.attributes == {"k": k}
    # Into an open cache, and a missing directory is a clear error.
    assert scopecache.migrate(d, c)["entries"] == 2
    with pytest.raises(scopecache.ScopeIOError) as e:
        scopecache.migrate(tmp_path / "nowhere", c)
    assert e.value.errno == 2 and isinstance(e.value, OSError)


def test_exception_hierarchy():
    for name in scopecache.errors.__all__:
        assert issubclass(getattr(scopecache, name), scopecache.ScopeCacheError)


def test_import_is_cheap():
    """Importing the package imports neither numpy nor bitarray (a fresh
    process that only loads scopes should not pay for them)."""
    import subprocess
    import sys

    code = "import sys, scopecache; print('numpy' in sys.modules, 'bitarray' in sys.modules)"
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env={**os.environ}, check=True
    )
    assert out.stdout.split() == ["False", "False"]


def test_same_dict_again_is_checked_not_trusted(tmp_path):
    """A dict stored before is recognised by its content, never by identity
    alone: changed in place, it gives its new mapping."""
    c = ScopeCache(tmp_path / "d.scopecache", fsync=False)
    d = {f"n{i}": i for i in range(1000)}
    links = {"l": 0}
    c.put("k1", [True] * 1000, [True], d, links)
    c.put("k2", [True] * 1000, [True], d, links)  # the same dict: the same mapping
    assert c.stats()["stored_mappings"] == 2
    d["n1"], d["n2"] = 2, 1  # swap two indices in place: same size, same keys
    c.put("k3", [True] * 1000, [True], d, links)
    m3 = c.get("k3").node_ids
    assert m3["n1"] == 2 and m3["n2"] == 1 and m3.id_of(1) == "n2"
    del d["n5"]
    d["other"] = 5  # a key replaced, same size
    c.put("k4", [True] * 1000, [True], d, links)
    m4 = c.get("k4").node_ids
    assert "n5" not in m4 and m4["other"] == 5
    d["n7"] = 10**6  # an index out of range: refused, even for a dict seen before
    with pytest.raises(scopecache.MappingError):
        c.put("k5", [True] * 1000, [True], d, links)
    assert c.get("k1").node_ids["n1"] == 1 and c.get("k2").node_ids == c.get("k1").node_ids
    scopecache.forget_dict_maps()
    del d["n7"]
    d["n7"] = 7
    c.put("k6", [True] * 1000, [True], d, links)
    assert c.get("k6").node_ids == c.get("k4").node_ids
