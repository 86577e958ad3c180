"""The coverage algebra from Python: union, intersection, difference and
counts over loaded scopes (native and the drop-in's), against numpy models;
covered ids, membership, storing a result back, typed errors."""

from __future__ import annotations

import sys
import threading

import numpy as np
import pytest

import scopecache
from scopecache import (
    CacheScopeManager,
    MappingMismatchError,
    NoScopesError,
    ScopeCache,
    ScopeCacheError,
)

# Lengths around word boundaries, and 0.
SIZES = [(0, 0), (1, 63), (64, 65), (130, 200), (1000, 4097)]


def ids(prefix: str, n: int) -> list[str]:
    return [f"{prefix}{i}" for i in range(n)]


def fill(cache: ScopeCache, n_nodes: int, n_links: int, k: int, seed: int = 7):
    """k scopes of one graph; returns their (nodes, links) bool arrays."""
    rng = np.random.default_rng(seed)
    node_ids, link_ids = ids("n", n_nodes), ids("l", n_links)
    models = []
    for j in range(k):
        nodes = rng.random(n_nodes) < 0.4
        links = rng.random(n_links) < 0.6
        cache.put(f"s{j}", nodes, links, node_ids, link_ids, {"j": j})
        models.append((nodes, links))
    return models


def bits(b) -> np.ndarray:
    """A Bitset through the buffer protocol, unpacked to bools."""
    w = np.frombuffer(b, dtype=np.uint64)
    return np.unpackbits(w.view(np.uint8), bitorder="little", count=len(b)).view(np.bool_)


@pytest.mark.parametrize(("n_nodes", "n_links"), SIZES)
def test_operations_match_numpy(tmp_path, n_nodes, n_links):
    with ScopeCache(tmp_path / "a.scopecache", ttl_hours=None, fsync=False) as c:
        models = fill(c, n_nodes, n_links, 5)
        scopes = [c.get(f"s{j}") for j in range(5)]
        mn = np.array([m[0] for m in models]).reshape(5, n_nodes)
        ml = np.array([m[1] for m in models]).reshape(5, n_links)

        u = scopecache.union(scopes)
        assert np.array_equal(bits(u.nodes), mn.any(axis=0))
        assert np.array_equal(u.links.to_numpy(), ml.any(axis=0))
        i = scopecache.intersection(scopes[:3])
        assert np.array_equal(i.nodes.to_numpy(), mn[:3].all(axis=0))
        assert np.array_equal(bits(i.links), ml[:3].all(axis=0))
        d = scopecache.difference(scopes[0], scopes[1])
        assert np.array_equal(d.nodes.to_numpy(), mn[0] & ~mn[1])
        assert np.array_equal(d.links.to_numpy(), ml[0] & ~ml[1])
        n = scopecache.counts(scopes)
        assert n.nodes.dtype == np.uint32 and n.links.dtype == np.uint32
        assert np.array_equal(n.nodes, mn.sum(axis=0))
        assert np.array_equal(n.links, ml.sum(axis=0))
        # The words past the last bit are zero, as for a mapped Bitset.
        for b in (u.nodes, u.links, d.nodes):
            w = np.frombuffer(b, dtype=np.uint64)
            assert len(w) == (len(b) + 63) // 64
            if len(b) % 64:
                assert int(w[-1]) >> (len(b) % 64) == 0
        assert u.nodes.count() == int(mn.any(axis=0).sum())
        assert u.total_nodes == n_nodes and u.total_links == n_links


def test_covered_ids_and_membership(tmp_path):
    with ScopeCache(tmp_path / "a.scopecache", ttl_hours=None, fsync=False) as c:
        (nodes, links), _ = fill(c, 300, 150, 2)
        s = c.get("s0")
        want = [f"n{i}" for i in np.flatnonzero(nodes)]
        assert s.covered_node_ids() == want
        assert s.covered_node_ids(limit=3) == want[:3]
        assert s.covered_link_ids() == [f"l{i}" for i in np.flatnonzero(links)]
        first_on, first_off = int(np.flatnonzero(nodes)[0]), int(np.flatnonzero(~nodes)[0])
        assert s.node_covered(f"n{first_on}") is True
        assert s.node_covered(f"n{first_off}") is False
        assert s.node_covered("absent") is None and s.link_covered("absent") is None
        u = scopecache.union([s, c.get("s1")])
        got = u.covered_node_ids()
        assert got == [f"n{i}" for i in np.flatnonzero(u.nodes.to_numpy())]
        assert u.node_covered(got[0]) is True and u.node_covered("absent") is None
        assert dict(u.node_ids) == {f"n{i}": i for i in range(300)}


def test_least_covered(tmp_path):
    with ScopeCache(tmp_path / "a.scopecache", ttl_hours=None, fsync=False) as c:
        fill(c, 200, 10, 4)
        n = scopecache.counts([c.get(f"s{j}") for j in range(4)])
        least = n.least_covered_nodes(5)
        order = sorted(range(200), key=lambda i: (int(n.nodes[i]), i))[:5]
        assert least == [(f"n{i}", int(n.nodes[i])) for i in order]


def test_put_coverage_shares_mappings(tmp_path):
    with ScopeCache(tmp_path / "a.scopecache", ttl_hours=None, fsync=False) as c:
        fill(c, 500, 700, 3)
        scopes = [c.get(f"s{j}") for j in range(3)]
        before = c.stats()["stored_mappings"]
        u = scopecache.union(scopes)
        c.put_coverage("all", u, attributes={"op": "union"})
        c.put_coverage("all2", u, like=scopes[2])
        assert c.stats()["stored_mappings"] == before
        got = c.get("all")
        assert np.array_equal(got.nodes.to_numpy(), u.nodes.to_numpy())
        assert np.array_equal(got.links.to_numpy(), u.links.to_numpy())
        assert got.attributes == {"op": "union"} and got.info()["shares_mappings"]


def test_dropin_scopes_and_mixing(tmp_path):
    m = CacheScopeManager(str(tmp_path / "m"), max_entries=10)
    models = fill(m.native, 100, 80, 2)
    a, b = m.load_scope("s0", None), m.load_scope("s1", None)
    d = scopecache.difference(a, b)
    assert np.array_equal(d.nodes.to_numpy(), models[0][0] & ~models[1][0])
    u = scopecache.union([a, m.native.get("s1")])  # drop-in and native mixed
    assert np.array_equal(u.links.to_numpy(), models[0][1] | models[1][1])
    assert a.covered_node_ids() == [f"n{i}" for i in np.flatnonzero(models[0][0])]
    assert a.node_covered("nope") is None


def test_errors_are_typed(tmp_path):
    with ScopeCache(tmp_path / "a.scopecache", ttl_hours=None, fsync=False) as c:
        fill(c, 100, 10, 1)
        c.put("other", np.zeros(100, bool), np.zeros(10, bool), ids("x", 100), ids("l", 10))
        s, o = c.get("s0"), c.get("other")
        for call in (
            lambda: scopecache.union([s, o]),
            lambda: scopecache.intersection([o, s]),
            lambda: scopecache.difference(s, o),
            lambda: scopecache.counts([s, o]),
        ):
            with pytest.raises(MappingMismatchError) as e:
                call()
            assert isinstance(e.value, ScopeCacheError) and isinstance(e.value, ValueError)
        for call in (
            lambda: scopecache.union([]),
            lambda: scopecache.intersection(iter([])),
            lambda: scopecache.counts(()),
        ):
            with pytest.raises(NoScopesError):
                call()
        with pytest.raises(TypeError):
            scopecache.union([s, 3])
        with pytest.raises(TypeError):
            scopecache.union(s)  # a scope, not a list of scopes
        with pytest.raises(MappingMismatchError):
            c.put_coverage("bad", scopecache.union([s]), like=o)
        assert "bad" not in c


def test_algebra_releases_the_gil(tmp_path):
    """Another Python thread runs while counts() works. With a switch interval
    of 10 s, a thread waiting for the GIL could only get it within the loop
    below if the native calls release it."""
    with ScopeCache(tmp_path / "a.scopecache", ttl_hours=None, fsync=False) as c:
        n = 1 << 22
        for j in range(4):
            c.put(f"big{j}", np.ones(16, bool), np.ones(n, bool), ids("n", 16), ids("l", n))
        scopes = [c.get(f"big{j}") for j in range(4)]
        ticks = 0
        go, stop = threading.Event(), threading.Event()

        def spin():
            nonlocal ticks
            go.wait()
            ticks += 1
            stop.wait()

        old = sys.getswitchinterval()
        t = threading.Thread(target=spin)
        t.start()
        sys.setswitchinterval(10.0)
        try:
            go.set()
            for _ in range(20):
                scopecache.counts(scopes)
            seen = ticks
        finally:
            stop.set()
            sys.setswitchinterval(old)
            t.join()
        assert seen > 0
