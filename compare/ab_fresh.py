#!/usr/bin/env python3
"""Fresh-process gets of two builds of scopecache and of LMDB, interleaved.

    python3 compare/ab_fresh.py OLD NEW --nodes 4000000 --links 8000000 \\
        --rounds 3 --gets 11 --dir /var/tmp/ab

OLD and NEW are two `scopecache-compare` binaries (say, one built from
main and one from a branch). Each round writes the scope anew (one put
child of NEW per engine, as the comparison does), reads the files once,
then runs `__child get` of OLD, NEW and LMDB (through NEW) in turn, GETS
times each. Prints the median time, peak RSS and page faults of each.
"""

import argparse
import json
import os
import shutil
import statistics
import subprocess


def get(binary, engine, path, nodes):
    cmd = [binary, "__child", "get", engine, path, str(nodes), "1", str(nodes // 2)]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("old")
    ap.add_argument("new")
    ap.add_argument("--nodes", type=int, default=10_000)
    ap.add_argument("--links", type=int, default=20_000)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--gets", type=int, default=11)
    ap.add_argument("--dir", default="/var/tmp/scopecache-ab")
    a = ap.parse_args()
    cases = [
        ("old", a.old, "scopecache"),
        ("new", a.new, "scopecache"),
        ("lmdb", a.new, "lmdb"),
    ]
    got = {name: [] for name, _, _ in cases}
    for _ in range(a.rounds):
        dirs = {}
        for engine in ("scopecache", "lmdb"):
            d = os.path.join(a.dir, engine)
            shutil.rmtree(d, ignore_errors=True)
            os.makedirs(d)
            put = [a.new, "__child", "put", engine, d, str(a.nodes), str(a.links), "1"]
            subprocess.run(put, capture_output=True, check=True)
            for f in os.listdir(d):
                with open(os.path.join(d, f), "rb") as fh:
                    while fh.read(1 << 20):
                        pass
            dirs[engine] = d
        for g in range(a.gets):
            for name, binary, engine in cases[g % 3 :] + cases[: g % 3]:
                got[name].append(get(binary, engine, dirs[engine], a.nodes))
    for name, runs in got.items():
        ms = statistics.median(r["ns"] for r in runs) / 1e3
        line = f"{name:>5}: median {ms:7.1f} us over {len(runs)} gets"
        if all("peak_rss" in r for r in runs):
            rss = statistics.median(r["peak_rss"] for r in runs) / 1e6
            faults = statistics.median(r["faults"] for r in runs)
            line += f", peak RSS {rss:.2f} MB, {faults:g} page faults"
        print(line)
    print("load average:", " ".join(f"{x:.2f}" for x in os.getloadavg()))
    shutil.rmtree(a.dir, ignore_errors=True)


if __name__ == "__main__":
    main()
