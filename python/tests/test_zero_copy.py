"""Bitsets are read in place: the numpy view of a loaded scope's words lies
inside this process's mapping of the cache file."""

from __future__ import annotations

import os

import numpy as np
import pytest

from scopecache import Bitset, ScopeCache


def file_mappings(path: str) -> list[tuple[int, int]]:
    """Address ranges of this process's mappings of the file at `path`."""
    real = os.path.realpath(path)
    st = os.stat(real)
    ranges = []
    with open("/proc/self/maps") as f:
        for line in f:
            parts = line.split()
            if len(parts) < 6:
                continue
            inode = int(parts[4])
            if parts[5] == real or (inode == st.st_ino and inode != 0):
                lo, hi = (int(x, 16) for x in parts[0].split("-"))
                ranges.append((lo, hi))
    return ranges


@pytest.fixture()
def stored(tmp_path):
    path = tmp_path / "z.scopecache"
    c = ScopeCache(path, fsync=False)
    rng = np.random.default_rng(7)
    nodes = rng.random(100_003) < 0.5
    links = rng.random(250_001) < 0.3
    c.put(
        "k",
        nodes,
        links,
        [f"n{i}" for i in range(nodes.size)],
        [f"l{i}" for i in range(links.size)],
    )
    return c, path, nodes, links


def test_numpy_view_is_in_the_mapped_file(stored):
    c, path, nodes, links = stored
    s = c.get("k")
    for bits, want in ((s.nodes, nodes), (s.links, links)):
        w = np.frombuffer(bits, dtype=np.uint64)
        assert not w.flags.writeable and not w.flags.owndata
        addr = w.__array_interface__["data"][0]
        end = addr + w.nbytes
        ranges = file_mappings(str(path))
        assert ranges, "the cache file is not mapped"
        assert any(lo <= addr and end <= hi for lo, hi in ranges), (hex(addr), ranges)
        # The view holds the right bits.
        unpacked = np.unpackbits(w.view(np.uint8), bitorder="little")[: len(bits)].astype(bool)
        assert np.array_equal(unpacked, want)
        assert np.array_equal(bits.to_numpy(), want)
        assert bits.words_array().__array_interface__["data"][0] == addr


def test_buffer_is_read_only_words(stored):
    c, _, nodes, _ = stored
    b = c.get("k").nodes
    assert isinstance(b, Bitset)
    mv = memoryview(b)
    assert mv.readonly and mv.format == "Q" and mv.itemsize == 8
    assert mv.nbytes == (len(b) + 63) // 64 * 8
    with pytest.raises(TypeError):
        mv[0] = 1
    w = np.frombuffer(b, dtype=np.uint64)
    with pytest.raises(ValueError):
        w[0] = 1
    # Bit i is words[i // 64] >> (i % 64) & 1, for every i.
    idx = np.arange(len(b))
    bits = (w[idx >> 6] >> (idx & 63).astype(np.uint64)) & np.uint64(1)
    assert np.array_equal(bits.astype(bool), nodes)


def test_view_outlives_scope_and_replacement(stored):
    c, _, nodes, _ = stored
    w = np.frombuffer(c.get("k").nodes, dtype=np.uint64)  # scope dropped at once
    before = w.copy()
    # Replace, remove and compact the key: the view still reads the old bytes.
    c.put("k", ~nodes, [True], [f"n{i}" for i in range(nodes.size)], ["x"])
    c.remove("k")
    c.compact()
    assert np.array_equal(w, before)


def test_bitset_sequence_protocol(stored):
    c, _, nodes, _ = stored
    b = c.get("k").nodes
    assert len(b) == nodes.size
    assert b[0] == int(nodes[0]) and b[-1] == int(nodes[-1])
    assert all(b[i] in (0, 1) for i in range(0, len(b), 997))
    with pytest.raises(IndexError):
        b[len(b)]
    with pytest.raises(TypeError):
        b["0"]
    assert b.count() == int(nodes.sum()) and b.count(0) == nodes.size - int(nodes.sum())
    assert list(b)[:100] == [int(x) for x in nodes[:100]]
    assert np.array_equal(
        b.test_batch(np.array([0, 5, -1, len(b)])),
        np.array([nodes[0], nodes[5], 0, 0], dtype=np.uint8),
    )
