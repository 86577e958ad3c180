"""get_or_compute on the native ScopeCache and load_or_compute_scope on the
drop-in: one computation per missing key across threads and processes,
typed errors that release the claim, timeouts, and the GIL released while
waiting."""

from __future__ import annotations

import multiprocessing as mp
import os
import threading
import time
from types import SimpleNamespace

import numpy as np
import pytest
from bitarray import bitarray

from scopecache import (
    CacheScopeManager,
    ComputeError,
    ComputeTimeoutError,
    ConfigError,
    ScopeCache,
    ScopeCacheError,
)

N_NODES, N_LINKS = 300, 500
NODE_IDS = [f"n{i}" for i in range(N_NODES)]
LINK_IDS = [f"l{i}" for i in range(N_LINKS)]


def nodes_bits() -> np.ndarray:
    return np.arange(N_NODES) % 3 == 0


def links_bits() -> np.ndarray:
    return np.arange(N_LINKS) % 5 == 1


def parts():
    return nodes_bits(), links_bits(), NODE_IDS, LINK_IDS, {"made": "here"}


def coverage_scope() -> SimpleNamespace:
    """An object with the original CoverageScope's attributes."""
    nb, lb = bitarray(nodes_bits().tolist()), bitarray(links_bits().tolist())
    return SimpleNamespace(
        covered_nodes=nb,
        covered_links=lb,
        node_id_mapping={k: i for i, k in enumerate(NODE_IDS)},
        link_id_mapping={k: i for i, k in enumerate(LINK_IDS)},
        total_nodes=N_NODES,
        total_links=N_LINKS,
    )


def record(counter) -> None:
    """Appends one line to the counter file (one write, O_APPEND)."""
    fd = os.open(counter, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, f"{os.getpid()}\n".encode())
    finally:
        os.close(fd)


def test_computes_once_then_reads(tmp_path):
    calls = []
    with ScopeCache(tmp_path / "c.scopecache", fsync=False) as c:

        def compute():
            calls.append(1)
            return parts()

        s = c.get_or_compute("k", compute)
        again = c.get_or_compute("k", compute)
        assert len(calls) == 1
        for got in (s, again):
            assert np.array_equal(got.nodes.to_numpy(), nodes_bits())
            assert np.array_equal(got.links.to_numpy(), links_bits())
            assert got.attributes == {"made": "here"}
        d = c.get_or_compute(
            "d",
            lambda: {
                "nodes": nodes_bits(),
                "links": links_bits(),
                "node_ids": s.node_ids,
                "link_ids": s.link_ids,
            },
        )
        assert d.attributes == {} and d.info()["shares_mappings"]


def test_exception_propagates_typed_and_releases_the_claim(tmp_path):
    with ScopeCache(tmp_path / "c.scopecache", fsync=False) as c:

        def boom():
            raise ValueError("no input today")

        with pytest.raises(ComputeError) as e:
            c.get_or_compute("k", boom)
        assert isinstance(e.value, ScopeCacheError)
        assert isinstance(e.value.__cause__, ValueError)
        assert "no input today" in str(e.value)
        assert "k" not in c
        # A bad return value is a ComputeError too, caused by a TypeError.
        with pytest.raises(ComputeError) as e:
            c.get_or_compute("k", lambda: 42)
        assert isinstance(e.value.__cause__, TypeError)
        # The claim was released: the next caller computes at once.
        t0 = time.monotonic()
        s = c.get_or_compute("k", parts, timeout=0.0)
        assert time.monotonic() - t0 < 5 and s.nodes.count() == int(nodes_bits().sum())
        assert os.listdir(c.path.parent / (c.path.name + ".claims")) == []
        # Not an Exception: propagates as is.
        with pytest.raises(KeyboardInterrupt):
            c.get_or_compute("k2", lambda: (_ for _ in ()).throw(KeyboardInterrupt))
        with pytest.raises(ConfigError):
            c.get_or_compute("k3", parts, on_timeout="maybe")
        with pytest.raises(TypeError):
            c.get_or_compute("k3", 5)


def test_waiters_release_the_gil_and_time_out(tmp_path):
    """Thread A computes, held up until the main thread lets it go; thread B
    waits for A's result. If B's wait held the GIL, neither A's compute nor
    the main thread could run, and the joins would time out."""
    with ScopeCache(tmp_path / "c.scopecache", fsync=False) as c:
        started, release = threading.Event(), threading.Event()
        calls, got = [], {}

        def slow():
            calls.append("a")
            started.set()
            release.wait(30)
            return parts()

        def run(name, compute, **kw):
            try:
                got[name] = c.get_or_compute("k", compute, **kw)
            except Exception as e:  # noqa: BLE001 - recorded for the asserts
                got[name] = e

        a = threading.Thread(target=run, args=("a", slow))
        a.start()
        assert started.wait(10)
        b = threading.Thread(target=run, args=("b", lambda: calls.append("b") or parts()))
        b.start()
        # A short timeout fails, typed; "compute" computes anyway.
        run("t", lambda: calls.append("t") or parts(), timeout=0.05)
        assert isinstance(got["t"], ComputeTimeoutError)
        assert isinstance(got["t"], TimeoutError)
        time.sleep(0.2)  # B is polling meanwhile
        release.set()
        a.join(20)
        b.join(20)
        assert not a.is_alive() and not b.is_alive()
        assert calls == ["a"]
        assert got["b"].nodes.count() == got["a"].nodes.count() == int(nodes_bits().sum())
        run("c", lambda: calls.append("c") or parts(), timeout=0.0, on_timeout="compute")
        assert calls == ["a"]  # stored now: no computation


def racer(kind: str, path: str, counter: str, barrier, out) -> None:
    barrier.wait()

    def compute():
        record(counter)
        time.sleep(0.3)  # long enough that every racer misses meanwhile
        return parts() if kind == "native" else coverage_scope()

    if kind == "native":
        s = ScopeCache(path, fsync=False).get_or_compute("race", compute)
        out.put(s.nodes.count())
    else:
        m = CacheScopeManager(path)
        s = m.load_or_compute_scope("race", {"cfg": 1}, compute, {"run": "r"})
        out.put(s.covered_nodes.count())


@pytest.mark.parametrize("kind", ["native", "dropin"])
def test_four_processes_compute_once(tmp_path, kind):
    path = str(tmp_path / ("c.scopecache" if kind == "native" else "m"))
    counter = str(tmp_path / "computed")
    ctx = mp.get_context("spawn")
    barrier, out = ctx.Barrier(4), ctx.Queue()
    procs = [ctx.Process(target=racer, args=(kind, path, counter, barrier, out)) for _ in range(4)]
    for p in procs:
        p.start()
    counts = [out.get(timeout=60) for _ in procs]
    for p in procs:
        p.join(30)
        assert p.exitcode == 0
    with open(counter) as f:
        assert len(f.read().splitlines()) == 1
    assert counts == [int(nodes_bits().sum())] * 4


def test_dropin_load_or_compute(tmp_path):
    m = CacheScopeManager(str(tmp_path / "m"))
    calls = []

    def compute():
        calls.append(1)
        return coverage_scope(), {"seed": 3}

    s = m.load_or_compute_scope("k", "my-config", compute)
    assert s.config == "my-config" and s.total_nodes == N_NODES
    assert s.covered_nodes.to_bitarray() == coverage_scope().covered_nodes
    assert s.node_id_mapping["n3"] == 3
    assert m.load_or_compute_scope("k", None, compute).total_links == N_LINKS
    assert calls == [1]
    assert m.get_scope_info("k")["config_attributes"] == {"seed": 3}
    bad = coverage_scope()
    bad.total_nodes = 1
    with pytest.raises(ComputeError):
        m.load_or_compute_scope("bad", None, lambda: bad)
    assert not m.has_scope("bad")
