"""Side-by-side benchmark: the original CacheScopeManager against
scopecache's drop-in, on the original benchmark's workload, in one run.

Usage:  python bench/bench.py [NODES LINKS] [--original DIR] [--runs N] [--fresh N]
        (defaults: 4,000,000 nodes, 8,000,000 links, the original's scale)
Needs:  the scopecache package, numpy, bitarray, orjson, and the folder of
        the original's fixed copy and its benchmark (seed_bench.py):
        --original, $SCOPECACHE_ORIGINAL, or ../shared/anchors beside the
        repository.

Each side runs in its own process (so each peak RSS is its own) and prints
one JSON line of the original benchmark's kind (store_s, load_s, lookup_ns,
disk_bytes, maxrss_mb); scopecache's line adds its own figures. Then a
table with the ratios (scopecache / original).

Workload (the original benchmark's): node ids "node-%08d" % i -> i for i in
0..NODES, link ids "link-%08d-%08d" % (i, i*7919 % NODES) -> i for i in
0..LINKS, random bitsets with about half the bits set, as bitarrays and
dicts in a CoverageScope; 1,000,000 random node ids looked up.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
LOOKUPS = 1_000_000


def find_original(arg: str | None) -> Path:
    for c in [arg, os.environ.get("SCOPECACHE_ORIGINAL"), str(REPO.parent / "shared" / "anchors")]:
        if c and (Path(c) / "seed_bench.py").is_file():
            return Path(c)
    sys.exit(
        "the original's folder (seed_bench.py, coverage_scope.py) was not found: --original DIR"
    )


def maxrss_mb() -> int:
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)


FRESH = r"""
import sys, time
t0 = time.perf_counter()
from scopecache import CacheScopeManager
t1 = time.perf_counter()
m = CacheScopeManager(cache_dir=sys.argv[1], max_cache_size_gb=15, max_entries=50, ttl_hours=48)
s = m.load_scope("scope1", None)
bit = s.covered_nodes[s.node_id_mapping[sys.argv[2]]]
t2 = time.perf_counter()
print((t1 - t0) * 1e3, (t2 - t1) * 1e3, bit)
"""


def scopecache_side(n: int, n_links: int, original: Path, fresh_runs: int) -> dict:
    """scopecache's drop-in on the original benchmark's workload."""
    import logging

    logging.disable(logging.CRITICAL)
    sys.path.insert(0, str(original))
    import numpy as np
    from bitarray import bitarray
    from coverage_scope import CoverageScope

    from scopecache import CacheScopeManager

    def rand_bits(k):
        b = bitarray()
        b.frombytes(os.urandom((k + 7) // 8))
        return b[:k]

    nodes, links = rand_bits(n), rand_bits(n_links)
    node_map = {f"node-{i:08d}": i for i in range(n)}
    link_map = {f"link-{i:08d}-{i * 7919 % n:08d}": i for i in range(n_links)}
    input_rss = maxrss_mb()
    d = tempfile.mkdtemp(prefix="scopecache_bench_")
    out: dict = {"nodes": n, "links": n_links}
    try:
        m = CacheScopeManager(cache_dir=d, max_cache_size_gb=15, max_entries=50, ttl_hours=48)
        scope = CoverageScope("scope1", None, nodes, links, node_map, link_map, n, n_links)
        t = time.perf_counter()
        ok = m.cache_scope("scope1", scope, {"run": "r1", "seed": 1})
        out["store_s"] = round(time.perf_counter() - t, 3)
        assert ok
        store_rss = maxrss_mb()
        out["disk_bytes"] = sum(p.stat().st_size for p in Path(d).iterdir())
        # The same dicts again under another key: the mappings are hashed
        # again but found stored, so only the bitsets are written.
        t = time.perf_counter()
        assert m.cache_scope("scope2", scope, {"run": "r2", "seed": 2})
        out["store_same_dicts_s"] = round(time.perf_counter() - t, 3)
        del scope, node_map, link_map
        m2 = CacheScopeManager(cache_dir=d, max_cache_size_gb=15, max_entries=50, ttl_hours=48)
        t = time.perf_counter()
        s2 = m2.load_scope("scope1", None)
        out["load_s"] = round(time.perf_counter() - t, 6)
        assert s2 is not None and len(s2.covered_nodes) == n
        # A loaded scope's IdMaps reused for a new put: nothing is re-hashed.
        again = CoverageScope(
            "scope3", None, nodes, links, s2.node_id_mapping, s2.link_id_mapping, n, n_links
        )
        t = time.perf_counter()
        assert m2.cache_scope("scope3", again, {"run": "r3"})
        out["store_idmap_ms"] = round((time.perf_counter() - t) * 1e3, 2)
        keys = [f"node-{random.randrange(n):08d}" for _ in range(LOOKUPS)]
        t = time.perf_counter()
        c = 0
        for k in keys:
            c += s2.covered_nodes[s2.node_id_mapping[k]]
        out["lookup_ns"] = round((time.perf_counter() - t) * 1e9 / len(keys), 1)
        w = np.frombuffer(s2.covered_nodes, dtype=np.uint64)
        for name, form in (("batch_list_ns", keys), ("batch_numpy_ns", np.array(keys))):
            best = []
            for _ in range(3):
                t = time.perf_counter()
                idx = s2.node_id_mapping.index_of_batch(form)
                bits = (w[idx >> 6] >> (idx & 63).astype(np.uint64)) & np.uint64(1)
                best.append((time.perf_counter() - t) * 1e9 / len(keys))
                assert int(bits.sum()) == c
            out[name] = round(statistics.median(best), 1)
        out["maxrss_mb"] = maxrss_mb()
        out["store_maxrss_mb"] = store_rss
        out["input_rss_mb"] = input_rss
        del s2, m, m2
        imports, loads = [], []
        for _ in range(fresh_runs):
            r = subprocess.run(
                [sys.executable, "-c", FRESH, d, f"node-{random.randrange(n):08d}"],
                capture_output=True,
                text=True,
                check=True,
            )
            imp, load, _bit = r.stdout.split()
            imports.append(float(imp))
            loads.append(float(load))
        out["fresh_ms"] = round(statistics.median(loads), 3)
        out["fresh_import_ms"] = round(statistics.median(imports), 2)
    finally:
        shutil.rmtree(d, ignore_errors=True)
    return out


def row(name: str, ours, theirs, fmt: str = "{:,.3f}") -> str:
    def f(v):
        return "n/a" if v is None else fmt.format(v)

    ratio = f"{ours / theirs:.3f}x" if ours is not None and theirs else ""
    return f"| {name:<44} | {f(ours):>14} | {f(theirs):>14} | {ratio:>9} |"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("nodes", nargs="?", type=int, default=4_000_000)
    ap.add_argument("links", nargs="?", type=int, default=8_000_000)
    ap.add_argument("--original", help="folder of seed_bench.py and coverage_scope.py")
    ap.add_argument("--fresh", type=int, default=7, help="fresh processes timed (median)")
    ap.add_argument("--side", choices=["scopecache"], help=argparse.SUPPRESS)
    ap.add_argument("--skip-original", action="store_true", help="run scopecache's side only")
    ap.add_argument("--runs", type=int, default=1, help="runs of each side, alternating (medians)")
    a = ap.parse_args()
    original = find_original(a.original)
    if a.side == "scopecache":
        print(json.dumps(scopecache_side(a.nodes, a.links, original, a.fresh)))
        return
    args = [str(a.nodes), str(a.links)]
    side = [sys.executable, __file__, *args, "--side", "scopecache", "--original", str(original)]
    runs_ours, runs_theirs = [], []
    for _ in range(a.runs):
        # The two sides alternate, so that both meet the same machine.
        out = subprocess.run(
            [*side, "--fresh", str(a.fresh)], capture_output=True, text=True, check=True
        ).stdout
        runs_ours.append(json.loads(out.strip().splitlines()[-1]))
        print("scopecache:", json.dumps(runs_ours[-1]), flush=True)
        if not a.skip_original:
            with tempfile.TemporaryDirectory(prefix="seed_bench_") as d:
                out = subprocess.run(
                    [sys.executable, str(original / "seed_bench.py"), *args, d],
                    capture_output=True,
                    text=True,
                    check=True,
                ).stdout
            runs_theirs.append(json.loads(out.strip().splitlines()[-1]))
            print("original:  ", json.dumps(runs_theirs[-1]), flush=True)

    def median(runs: list[dict]) -> dict:
        return {k: statistics.median(r[k] for r in runs) for k in runs[0]} if runs else {}

    ours, theirs = median(runs_ours), median(runs_theirs)
    print(f"\nmedians of {a.runs} alternating run(s) of each side; ratio = scopecache / original")
    g = theirs.get
    print()
    print(f"| {'metric':<44} | {'scopecache':>14} | {'original':>14} | {'ratio':>9} |")
    print(f"|{'-' * 46}|{'-' * 16}|{'-' * 16}|{'-' * 11}|")
    print(row("cache_scope from dicts + bitarrays (s)", ours["store_s"], g("store_s")))
    print(row("cache_scope, same dicts again (s)", ours["store_same_dicts_s"], None))
    print(
        row(
            "cache_scope with a loaded scope's IdMaps (ms)", ours["store_idmap_ms"], None, "{:,.2f}"
        )
    )
    print(row("load_scope in the storing process (s)", ours["load_s"], g("load_s"), "{:,.6f}"))
    print(row("fresh process: ctor + load + lookup + bit (ms)", ours["fresh_ms"], None))
    print(row("  (its import of scopecache, ms)", ours["fresh_import_ms"], None, "{:,.2f}"))
    print(
        row(
            "nodes[node_id_mapping[k]], Python loop (ns)",
            ours["lookup_ns"],
            g("lookup_ns"),
            "{:,.1f}",
        )
    )
    print(row("index_of_batch(list) + numpy bit test (ns)", ours["batch_list_ns"], None, "{:,.1f}"))
    print(
        row(
            "index_of_batch(np.str_ array) + bit test (ns)", ours["batch_numpy_ns"], None, "{:,.1f}"
        )
    )
    print(
        row(
            "disk after one scope (MB)",
            ours["disk_bytes"] / 1e6,
            g("disk_bytes") and g("disk_bytes") / 1e6,
            "{:,.1f}",
        )
    )
    print(row("peak RSS of the process (MB)", ours["maxrss_mb"], g("maxrss_mb"), "{:,.0f}"))
    print(row("  (peak RSS right after the store, MB)", ours["store_maxrss_mb"], None, "{:,.0f}"))
    print(row("  (RSS of the generated input, MB)", ours["input_rss_mb"], None, "{:,.0f}"))


if __name__ == "__main__":
    main()
