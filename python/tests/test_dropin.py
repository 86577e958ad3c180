"""The original's usage, run against scopecache's CacheScopeManager and
against the (fixed) original on the same data, compared bit for bit and id
for id, and return shape for return shape."""

from __future__ import annotations

import logging

import pytest
from conftest import make_workload

# The original's usage example. It is executed as written, with only its
# import swapped and its "/cache" directory pointed at a test directory.
USAGE = '''
{import_line}

def create_cache_manager() -> CacheScopeManager:
    """Create and configure the cache manager."""
    return CacheScopeManager(
        cache_dir="/cache",
        max_cache_size_gb=15.0,  # 15GB should handle many large scopes
        max_entries=50,          # Reasonable number of scope variations
        ttl_hours=48            # Cache for 2 days
    )
'''


def usage(import_line: str, cache_dir: str):
    ns: dict = {}
    exec(USAGE.format(import_line=import_line).replace('"/cache"', repr(cache_dir)), ns)
    return ns["create_cache_manager"]


def pipeline(create, CoverageScope, data, data2):
    """What a pipeline does with the manager; returns everything it saw."""
    nodes, links, node_map, link_map = data
    config = object()
    m = create()
    seen = {}
    s1 = CoverageScope("scope1", config, nodes, links, node_map, link_map, len(nodes), len(links))
    seen["cache1"] = m.cache_scope("scope1", s1, {"run": "r1", "seed": 1})
    n2, l2, nm2, lm2 = data2
    s2 = CoverageScope("scope2", config, n2, l2, nm2, lm2, len(n2), len(l2))
    seen["cache2"] = m.cache_scope("scope2", s2, {"run": "r2", "nested": {"a": [1, 2]}})
    seen["loaded"] = m.load_scope("scope1", config)
    seen["config"] = config
    seen["has"] = (m.has_scope("scope1"), m.has_scope("scope2"), m.has_scope("nope"))
    seen["missing"] = m.load_scope("nope", config)
    seen["stats"] = m.get_cache_stats()
    seen["list"] = m.list_cached_scopes()
    seen["info"] = m.get_scope_info("scope1")
    seen["info_missing"] = m.get_scope_info("nope")
    seen["reopened"] = create().load_scope("scope2", config)
    seen["invalidate"] = (m.invalidate_scope("scope2"), m.invalidate_scope("scope2"))
    m.cleanup()
    seen["after_cleanup"] = [e["scope_key"] for e in m.list_cached_scopes()]
    m.clear_cache()
    seen["after_clear"] = (m.list_cached_scopes(), m.get_cache_stats()["total_entries"])
    return seen


def same_scope(ours, theirs):
    """Bit for bit and id for id."""
    assert ours.key == theirs.key
    assert ours.total_nodes == theirs.total_nodes and ours.total_links == theirs.total_links
    for a, b in (
        (ours.covered_nodes, theirs.covered_nodes),
        (ours.covered_links, theirs.covered_links),
    ):
        assert len(a) == len(b)
        assert a.to_bitarray() == b
        assert list(a) == b.tolist()
        assert a.count() == b.count()
    for a, b in (
        (ours.node_id_mapping, theirs.node_id_mapping),
        (ours.link_id_mapping, theirs.link_id_mapping),
    ):
        assert len(a) == len(b)
        assert dict(a.items()) == b
        assert all(a[k] == v for k, v in b.items())
        assert [a.id_of(i) for i in range(len(a))] == sorted(b, key=b.__getitem__)


def same_shape(ours, theirs, path="value"):
    """Ours has every key of theirs, with values of the same type."""
    if isinstance(theirs, dict):
        assert isinstance(ours, dict), path
        missing = set(theirs) - set(ours)
        assert not missing, f"{path}: missing keys {missing}"
        for k in theirs:
            same_shape(ours[k], theirs[k], f"{path}[{k!r}]")
    elif isinstance(theirs, list):
        assert isinstance(ours, list) and len(ours) == len(theirs), path
        for i, (a, b) in enumerate(zip(ours, theirs, strict=True)):
            same_shape(a, b, f"{path}[{i}]")
    elif isinstance(theirs, float):
        assert isinstance(ours, (int, float)), path
    elif theirs is not None:
        assert type(ours) is type(theirs), f"{path}: {type(ours)} vs {type(theirs)}"


def test_usage_side_by_side(original, tmp_path, caplog):
    sm, CoverageScope = original
    data = make_workload(3000, 7001, seed=1)
    data2 = make_workload(3000, 7001, seed=2, shuffle=False)
    theirs = pipeline(
        usage("from seed_cache_manager_fixed import CacheScopeManager", str(tmp_path / "orig")),
        CoverageScope,
        data,
        data2,
    )
    with caplog.at_level(logging.INFO, logger="scopecache"):
        ours = pipeline(
            usage("from scopecache import CacheScopeManager", str(tmp_path / "ours")),
            CoverageScope,
            data,
            data2,
        )
    assert theirs["cache1"] is True and ours["cache1"] is True
    assert theirs["cache2"] is True and ours["cache2"] is True
    same_scope(ours["loaded"], theirs["loaded"])
    same_scope(ours["reopened"], theirs["reopened"])
    assert ours["loaded"].config is ours["config"]
    assert ours["has"] == theirs["has"] == (True, True, False)
    assert ours["missing"] is None and theirs["missing"] is None
    same_shape(ours["stats"], theirs["stats"], "get_cache_stats()")
    for k in (
        "total_entries",
        "total_nodes",
        "total_links",
        "average_nodes_per_entry",
        "average_links_per_entry",
    ):
        assert ours["stats"][k] == theirs["stats"][k], k
    same_shape(ours["list"], theirs["list"], "list_cached_scopes()")
    assert [e["scope_key"] for e in ours["list"]] == [e["scope_key"] for e in theirs["list"]]
    for a, b in zip(ours["list"], theirs["list"], strict=True):
        assert a["config_attributes"] == b["config_attributes"]
        assert (a["total_nodes"], a["total_links"]) == (b["total_nodes"], b["total_links"])
    same_shape(ours["info"], theirs["info"], "get_scope_info()")
    assert ours["info"]["files_exist"] is True
    assert ours["info_missing"] is None and theirs["info_missing"] is None
    assert ours["invalidate"] == theirs["invalidate"] == (True, False)
    assert ours["after_cleanup"] == theirs["after_cleanup"] == ["scope1"]
    assert ours["after_clear"] == theirs["after_clear"] == ([], 0)
    # The drop-in logs what the original logged.
    assert any("Cached scope scope1" in r.getMessage() for r in caplog.records)


def test_one_file_in_cache_dir(tmp_path, coverage_scope_cls):
    from scopecache import CacheScopeManager

    nodes, links, nm, lm = make_workload(100, 200)
    m = CacheScopeManager(cache_dir=str(tmp_path / "d" / "e"))
    s = coverage_scope_cls("k", None, nodes, links, nm, lm, 100, 200)
    assert m.cache_scope("k", s, {})
    assert sorted(p.name for p in (tmp_path / "d" / "e").iterdir()) == ["scopes.scopecache"]
    # A file path works too.
    f = tmp_path / "x.cache"
    m2 = CacheScopeManager(cache_dir=str(f))
    assert m2.cache_scope("k", s, {})
    assert f.is_file() and m2.load_scope("k", None) is not None
    # A manager pickles (for spawned workers) as its file and limits.
    import pickle

    m3 = pickle.loads(pickle.dumps(m2))
    assert m3.cache_file == f and m3.max_entries == m2.max_entries
    assert m3.load_scope("k", None).covered_nodes.to_bitarray() == nodes


def test_little_endian_bitarray_and_loaded_scope_as_input(tmp_path, coverage_scope_cls):
    from bitarray import bitarray

    from scopecache import CacheScopeManager

    nodes, links, nm, lm = make_workload(517, 1029)
    m = CacheScopeManager(cache_dir=str(tmp_path))
    little = bitarray(nodes, endian="little")
    s = coverage_scope_cls("k", None, little, links, nm, lm, 517, 1029)
    assert m.cache_scope("k", s, {"x": 1})
    got = m.load_scope("k", None)
    assert got.covered_nodes.to_bitarray() == nodes
    # A loaded scope can be cached again: its mappings are reused as they are.
    assert m.cache_scope("k2", got, {"x": 2})
    again = m.load_scope("k2", None)
    assert again.covered_links.to_bitarray() == links
    assert m.get_cache_stats()["stored_mappings"] == 2


@pytest.mark.parametrize("n", [0, 1, 63, 64, 65])
def test_edge_lengths(tmp_path, coverage_scope_cls, n):
    from scopecache import CacheScopeManager

    nodes, links, nm, lm = make_workload(n, n + 1)
    m = CacheScopeManager(cache_dir=str(tmp_path))
    assert m.cache_scope("k", coverage_scope_cls("k", None, nodes, links, nm, lm, n, n + 1), {})
    got = m.load_scope("k", None)
    assert got.covered_nodes.to_bitarray() == nodes and len(got.covered_nodes) == n
    assert dict(got.link_id_mapping.items()) == lm


def test_a_directory_made_meanwhile_is_not_taken_for_the_file(tmp_path, monkeypatch):
    # Another process creates the cache directory just after this one
    # looked for it: replayed here by a directory that exists but that a
    # first is_dir() check would not have seen. The cache file must still
    # go inside it, not be the directory itself.
    from pathlib import Path

    from scopecache import manager

    d = tmp_path / "m"
    d.mkdir()
    real_is_dir = Path.is_dir
    calls = {"n": 0}

    def is_dir_missed_once(self, *args, **kwargs):
        if self == d and calls["n"] == 0:
            calls["n"] += 1
            return False
        return real_is_dir(self, *args, **kwargs)

    monkeypatch.setattr(Path, "is_dir", is_dir_missed_once)
    assert manager.resolve_cache_file(d) == d / manager.CACHE_FILE_NAME
