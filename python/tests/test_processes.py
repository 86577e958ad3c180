"""Processes and threads: readers in 4 processes (fork and spawn) while one
writes; threads sharing one handle; a forked child reopens the file."""

from __future__ import annotations

import multiprocessing as mp
import os
import threading
import time

import numpy as np
import pytest

from scopecache import IdMap, ScopeCache

N_NODES, N_LINKS = 20_000, 30_000
NODE_IDS = [f"n{i}" for i in range(N_NODES)]
LINK_IDS = [f"l{i}" for i in range(N_LINKS)]


def pattern(version: int, n: int) -> np.ndarray:
    """The bits of version `version`: a deterministic function of it."""
    return np.random.default_rng(version).random(n) < 0.5


def check(scope) -> int:
    """Checks a scope against its version; returns the version."""
    v = scope.attributes["v"]
    assert np.array_equal(scope.nodes.to_numpy(), pattern(v, N_NODES)), v
    assert np.array_equal(scope.links.to_numpy(), pattern(v + 10**6, N_LINKS)), v
    m = scope.node_ids
    assert m["n17"] == 17 and m.id_of(N_NODES - 1) == NODE_IDS[-1]
    assert np.array_equal(m.index_of_batch(["n5", "zz", "n19999"]), [5, -1, 19999])
    return v


def reader(cache, seconds: float, out) -> None:
    """Gets and checks the scope for `seconds`; sends (reads, max version)."""
    if cache is None:
        cache = ScopeCache(out[1], fsync=False)
    out = out[0]
    reads, top, deadline = 0, -1, time.monotonic() + seconds
    try:
        while time.monotonic() < deadline:
            s = cache.get("k")
            if s is not None:
                top = max(top, check(s))
                reads += 1
        out.put((reads, top, None))
    except BaseException as e:  # reported to the parent, which fails the test
        out.put((reads, top, repr(e)))


def writer(path, versions: int) -> None:
    c = ScopeCache(path, fsync=False, max_entries=3)
    nodes, links = IdMap(NODE_IDS), IdMap(LINK_IDS)
    for v in range(1, versions + 1):
        c.put("k", pattern(v, N_NODES), pattern(v + 10**6, N_LINKS), nodes, links, {"v": v})
        c.put(f"other-{v % 5}", [True] * 3, [False], ["a", "b", "c"], ["x"], {"v": -v})
        if v % 10 == 0:
            c.compact()


@pytest.mark.parametrize("method", ["fork", "spawn"])
def test_four_readers_one_writer(tmp_path, method):
    path = tmp_path / "p.scopecache"
    parent = ScopeCache(path, fsync=False)
    parent.put("k", pattern(0, N_NODES), pattern(10**6, N_LINKS), NODE_IDS, LINK_IDS, {"v": 0})
    ctx = mp.get_context(method)
    q = ctx.Queue()
    # Fork children inherit the parent's open handle and must reopen it;
    # spawn children get it pickled (path and limits) and open it.
    readers = [ctx.Process(target=reader, args=(parent, 4.0, (q, str(path)))) for _ in range(4)]
    for r in readers:
        r.start()
    w = ctx.Process(target=writer, args=(str(path), 40))
    w.start()
    w.join(120)
    results = [q.get(timeout=120) for _ in readers]
    for r in readers:
        r.join(60)
    assert w.exitcode == 0
    assert all(r.exitcode == 0 for r in readers)
    assert [e for _, _, e in results if e] == []
    assert all(reads > 0 for reads, _, _ in results), results
    # The writer's last version is what everyone sees now.
    assert check(parent.get("k")) == 40
    assert parent.verify()["clean"]


def test_fork_child_reopens(tmp_path):
    path = tmp_path / "f.scopecache"
    c = ScopeCache(path, fsync=False)
    c.put("k", pattern(3, N_NODES), pattern(3 + 10**6, N_LINKS), NODE_IDS, LINK_IDS, {"v": 3})
    before = c.get("k")
    pid = os.fork()
    if pid == 0:  # the child: use the inherited handle and scope, write, exit
        code = 1
        try:
            check(before)
            c.put("child", [True], [True], ["a"], ["b"])
            code = 0 if check(c.get("k")) == 3 and c.contains("child") else 2
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.WEXITSTATUS(status) == 0
    assert c.contains("child")
    check(before)


def test_threads_share_a_handle(tmp_path):
    c = ScopeCache(tmp_path / "t.scopecache", fsync=False)
    nodes, links = IdMap(NODE_IDS), IdMap(LINK_IDS)
    c.put("k", pattern(0, N_NODES), pattern(10**6, N_LINKS), nodes, links, {"v": 0})
    errors: list[str] = []
    stop = threading.Event()

    def read():
        try:
            while not stop.is_set():
                check(c.get("k"))
        except BaseException as e:
            errors.append(repr(e))

    def write():
        try:
            for v in range(1, 15):
                c.put("k", pattern(v, N_NODES), pattern(v + 10**6, N_LINKS), nodes, links, {"v": v})
            c.compact()
        except BaseException as e:
            errors.append(repr(e))

    threads = [threading.Thread(target=read) for _ in range(3)]
    for t in threads:
        t.start()
    wt = threading.Thread(target=write)
    wt.start()
    wt.join()
    stop.set()
    for t in threads:
        t.join()
    assert errors == []
    assert check(c.get("k")) == 14
    # The put with stored mappings wrote no mapping again.
    assert c.stats()["stored_mappings"] == 2


def test_fork_while_another_thread_writes(tmp_path):
    """A child forked while a thread of the parent is inside a put (its
    locks held, the GIL released) must not inherit those locks: it opens
    the file again, and its own put completes."""
    c = ScopeCache(tmp_path / "w.scopecache")  # fsync on: each put takes a while
    big_n = 400_000
    ids = IdMap([f"big-{i}" for i in range(big_n)])
    done = threading.Event()

    def write():
        v = 0
        while not done.is_set():
            v += 1
            c.put(f"big-{v % 2}", pattern(v, big_n), pattern(v, big_n), ids, ids, {"v": v})

    t = threading.Thread(target=write)
    t.start()
    time.sleep(0.2)
    children = []
    try:
        for _ in range(3):
            pid = os.fork()
            if pid == 0:
                code = 1
                try:
                    c.put("from-child", [True], [True], ["a"], ["b"])
                    code = 0 if c.contains("from-child") else 2
                finally:
                    os._exit(code)
            children.append(pid)
            time.sleep(0.05)
        deadline = time.monotonic() + 30
        codes = []
        for pid in children:
            while True:
                got, status = os.waitpid(pid, os.WNOHANG)
                if got:
                    codes.append(os.WEXITSTATUS(status))
                    break
                if time.monotonic() > deadline:
                    os.kill(pid, 9)
                    os.waitpid(pid, 0)
                    codes.append("hung")
                    break
                time.sleep(0.01)
    finally:
        done.set()
        t.join()
    assert codes == [0, 0, 0]
