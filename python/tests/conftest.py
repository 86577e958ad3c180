"""Shared fixtures: the original cache manager (for side-by-side tests) and
small coverage-scope workloads."""

from __future__ import annotations

import importlib
import os
import random
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def original_dir() -> Path | None:
    """Where the fixed copy of the original manager lives: $SCOPECACHE_ORIGINAL,
    or the shared folder beside the repository (shared/anchors)."""
    env = os.environ.get("SCOPECACHE_ORIGINAL")
    candidates = [Path(env)] if env else []
    candidates.append(REPO.parent / "shared" / "anchors")
    for c in candidates:
        if (c / "seed_cache_manager_fixed.py").is_file() and (c / "coverage_scope.py").is_file():
            return c
    return None


@pytest.fixture(scope="session")
def original():
    """(manager module, CoverageScope class) of the original, or skip."""
    d = original_dir()
    if d is None:
        pytest.skip("the original manager was not found (set SCOPECACHE_ORIGINAL)")
    pytest.importorskip("bitarray")
    if str(d) not in sys.path:
        sys.path.insert(0, str(d))
    sm = importlib.import_module("seed_cache_manager_fixed")
    cs = importlib.import_module("coverage_scope")
    return sm, cs.CoverageScope


@pytest.fixture(scope="session")
def coverage_scope_cls(original):
    return original[1]


def make_workload(n_nodes: int, n_links: int, seed: int = 1, shuffle: bool = True):
    """The standard workload at a small size: ids "node-%08d" / "link-...",
    random bitsets, dicts id -> index (inserted in shuffled order)."""
    from bitarray import bitarray

    rng = random.Random(seed)

    def bits(n: int) -> bitarray:
        b = bitarray()
        b.frombytes(rng.randbytes((n + 7) // 8))
        return b[:n]

    node_ids = [f"node-{i:08d}" for i in range(n_nodes)]
    link_ids = [f"link-{i:08d}-{i * 7919 % max(n_nodes, 1):08d}" for i in range(n_links)]
    order_n = list(range(n_nodes))
    order_l = list(range(n_links))
    if shuffle:
        rng.shuffle(order_n)
        rng.shuffle(order_l)
    node_map = {node_ids[i]: i for i in order_n}
    link_map = {link_ids[i]: i for i in order_l}
    return bits(n_nodes), bits(n_links), node_map, link_map
