#!/usr/bin/env python3
"""An independent reader of scopecache files, written from FORMAT.md alone.

Usage: read_scopecache.py FILE [--ids-limit N] [--bits-limit N]

Picks the newest valid superblock (FORMAT.md §2.1), checks the CRC of the
index and of each delta of its chain, decodes and validates them by hand
(§2.6, §2.7), applies the chain to the index, checks every live entry's
bitsets (§2.4) and every id mapping (§2.5), then prints one JSON document
describing the newest generation. Any failed check, or a file that cannot
be read, ends the program with exit status 3 and a message
`FAIL [check]: detail` on stderr; a usage error exits 2 (argparse).

Needs Python 3.11 and, for the digests and the id lookups (XXH3-64 and
XXH3-128), the `xxhash` package. Without it those checks are skipped with a
warning on stderr and the output says `"xxhash": false`.
"""

from __future__ import annotations

import argparse
import itertools
import json
import struct
import sys
import zlib

try:
    import xxhash
except ImportError:  # pragma: no cover - depends on the machine
    xxhash = None

PAGE = 4096
DATA_START = 12288
SUPERBLOCK_LEN = 128
MAX_GENERATION = 1 << 62
ENTRY_SIZE = 96
MAP_SIZE = 40
ROOT_SIZE = 16
DELTA_ROOT_SIZE = 64
STRING_SIZE = 8
READABLE_VERSIONS = (1, 2)
MAX_KEY_LEN = 1024
INLINE_CAPACITY = 8


class FormatError(Exception):
    """A failed check: `check` names it, the message says what was found."""

    def __init__(self, check: str, detail: str) -> None:
        super().__init__(f"FAIL [{check}]: {detail}")
        self.check = check


def fail(check: str, detail: str) -> None:
    raise FormatError(check, detail)


# Writer guarantees that FORMAT.md does not ask a reader to enforce: broken
# ones are noted (stderr and the output's "notes"), not refused.
NOTES: list[str] = []


def note(guarantee: str, detail: str) -> None:
    NOTES.append(f"{guarantee}: {detail}")
    print(f"read_scopecache: note [{guarantee}]: {detail}", file=sys.stderr)


def crc32(data: bytes) -> int:
    return zlib.crc32(data) & 0xFFFF_FFFF


def u32(b: bytes, at: int) -> int:
    return struct.unpack_from("<I", b, at)[0]


def i32(b: bytes, at: int) -> int:
    return struct.unpack_from("<i", b, at)[0]


def u64(b: bytes, at: int) -> int:
    return struct.unpack_from("<Q", b, at)[0]


def i64(b: bytes, at: int) -> int:
    return struct.unpack_from("<q", b, at)[0]


def pad64(n: int) -> int:
    return (n + 63) // 64 * 64


# ---------------------------------------------------------------- §2.1


def decode_superblock(data: bytes, slot: int) -> dict:
    """Decodes slot 0 or 1. Returns a dict with `valid` and the fields."""
    start = slot * PAGE
    b = data[start : start + SUPERBLOCK_LEN]
    sb = {"slot": slot, "valid": False, "magic": False, "crc_ok": False}
    if len(b) < SUPERBLOCK_LEN:
        sb["why"] = "short"
        return sb
    sb["magic"] = b[0:8] == b"SCPCACHE"
    sb["crc_ok"] = crc32(b[0:124]) == u32(b, 124)
    sb.update(
        version=u32(b, 8),
        flags=u32(b, 12),
        generation=u64(b, 16),
        committed=u64(b, 24),
        index_offset=u64(b, 32),
        index_len=u64(b, 40),
        index_crc=u32(b, 48),
        stamp_capacity=u32(b, 52),
        stamp_offset=u64(b, 56),
        file_id=u64(b, 64),
    )
    # Version 2 added the newest delta of the index chain (§2.7); version 1
    # has none.
    v2 = sb["version"] >= 2
    sb.update(
        delta_offset=u64(b, 72) if v2 else 0,
        delta_len=u64(b, 80) if v2 else 0,
        delta_crc=u32(b, 88) if v2 else 0,
    )
    if not sb["magic"]:
        sb["why"] = "magic"
    elif not sb["crc_ok"]:
        sb["why"] = "crc"
    elif sb["version"] not in READABLE_VERSIONS:
        sb["why"] = "version"
    elif sb["generation"] > MAX_GENERATION:
        sb["why"] = "generation above 2^62"
    elif sb["generation"] % 2 != slot:
        sb["why"] = "generation in the wrong slot"
    else:
        sb["valid"] = True
    return sb


def pick_superblock(data: bytes) -> dict:
    slots = [decode_superblock(data, 0), decode_superblock(data, 1)]
    valid = [s for s in slots if s["valid"]]
    if not valid:
        if not any(s["magic"] for s in slots):
            fail("superblock", "not a scopecache file (neither slot has the magic)")
        for s in slots:
            if s["magic"] and s["crc_ok"] and s["version"] not in READABLE_VERSIONS:
                fail(
                    "superblock",
                    f"unsupported version {s['version']} (this reader reads 1 and 2)",
                )
        why = ", ".join(f"slot {s['slot']}: {s.get('why')}" for s in slots)
        fail("superblock", f"corrupt: no valid slot ({why})")
    sb = max(valid, key=lambda s: s["generation"])
    if sb["committed"] > len(data):
        fail(
            "committed length",
            f"committed length {sb['committed']} exceeds the file size {len(data)} (truncated)",
        )
    return sb


# ---------------------------------------------------------------- §2.6 rkyv


class Validator:
    """rkyv 0.8's subtree-range validation, for this schema (FORMAT.md §2.6)."""

    def __init__(self, buf: bytes) -> None:
        self.buf = buf
        self.start = 0
        self.end = len(buf)

    def in_subtree(self, what: str, start: int, size: int, align: int, visit) -> None:
        end = start + size
        if start < self.start or end > self.end:
            fail(
                "index validation",
                f"{what}: target {start}..{end} outside the allowed range {self.start}..{self.end}",
            )
        if start % align:
            fail("index validation", f"{what}: target {start} not aligned to {align}")
        after = (end, self.end)
        self.end = start  # children lie before their parent
        visit()
        self.start, self.end = after

    def string(self, what: str, at: int) -> str:
        b = self.buf
        if b[at] & 0xC0 != 0x80:
            raw = b[at : at + INLINE_CAPACITY]
            n = raw.find(b"\xff")
            n = INLINE_CAPACITY if n < 0 else n
            return self.utf8(what, raw[:n])
        e = u32(b, at)
        n = (e & 0x3F) | ((e & ~0xFF & 0xFFFF_FFFF) >> 2)
        if n <= INLINE_CAPACITY:
            fail(
                "index validation",
                f"{what}: out-of-line string of {n} bytes (must exceed 8)",
            )
        target = at + i32(b, at + 4)
        out: list[str] = []
        self.in_subtree(
            what,
            target,
            n,
            1,
            lambda: out.append(self.utf8(what, b[target : target + n])),
        )
        return out[0]

    @staticmethod
    def utf8(what: str, raw: bytes) -> str:
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError as e:
            fail("index validation", f"{what}: not UTF-8 ({e})")
            raise  # unreachable

    def vec(
        self, what: str, at: int, elem_size: int, visit_elem, align: int = 8
    ) -> None:
        target = at + i32(self.buf, at)
        count = u32(self.buf, at + 4)

        def visit() -> None:
            for k in range(count):
                visit_elem(target + k * elem_size, k)

        self.in_subtree(what, target, count * elem_size, align, visit)


def bits_record(b: bytes, at: int) -> dict:
    return {"offset": u64(b, at), "bits": u64(b, at + 8), "crc": u32(b, at + 16)}


def parse_index(ix: bytes) -> tuple[list[dict], list[dict]]:
    n = len(ix)
    if n < ROOT_SIZE:
        fail("index validation", f"index of {n} bytes is shorter than its 16-byte root")
    v = Validator(ix)
    entries: list[dict] = []
    maps: list[dict] = []
    entry, map_record = record_parsers(v, ix, entries, maps)

    def root() -> None:
        r = n - ROOT_SIZE
        v.vec("entries", r, ENTRY_SIZE, entry)
        v.vec("maps", r + 8, MAP_SIZE, map_record)

    v.in_subtree("root", n - ROOT_SIZE, ROOT_SIZE, 4, root)
    return entries, maps


def parse_delta(dx: bytes) -> dict:
    """One delta of the index chain (FORMAT.md §2.7)."""
    n = len(dx)
    if n < DELTA_ROOT_SIZE:
        fail("delta validation", f"delta of {n} bytes is shorter than its 64-byte root")
    v = Validator(dx)
    upserts: list[dict] = []
    maps: list[dict] = []
    removed: list[str] = []
    entry, map_record = record_parsers(v, dx, upserts, maps)
    r = n - DELTA_ROOT_SIZE

    def root() -> None:
        v.vec("upserts", r, ENTRY_SIZE, entry)
        v.vec("maps", r + 8, MAP_SIZE, map_record)
        v.vec(
            "removed",
            r + 16,
            STRING_SIZE,
            lambda at, k: removed.append(v.string(f"removed[{k}]", at)),
            align=4,
        )

    v.in_subtree("delta root", r, DELTA_ROOT_SIZE, 8, root)
    return {
        "upserts": upserts,
        "maps": maps,
        "removed": removed,
        "prev_offset": u64(dx, r + 24),
        "prev_len": u64(dx, r + 32),
        "since": u64(dx, r + 40),
        "maps_before": u32(dx, r + 48),
        "prev_crc": u32(dx, r + 52),
        "depth": u32(dx, r + 56),
    }


def record_parsers(v: Validator, ix: bytes, entries: list[dict], maps: list[dict]):
    """Visitors of entry and mapping records that append to the lists."""

    def entry(at: int, k: int) -> None:
        key = v.string(f"entries[{k}].key", at)
        attributes = v.string(f"entries[{k}].attributes", at + 88)
        entries.append(
            {
                "key": key,
                "created_us": i64(ix, at + 8),
                "accessed_us": i64(ix, at + 16),
                "slot": u32(ix, at + 24),
                "node_map": u32(ix, at + 28),
                "link_map": u32(ix, at + 32),
                "nodes": bits_record(ix, at + 40),
                "links": bits_record(ix, at + 64),
                "attributes_text": attributes,
            }
        )

    def map_record(at: int, _k: int) -> None:
        maps.append(
            {
                "offset": u64(ix, at),
                "len": u64(ix, at + 8),
                "count": u64(ix, at + 16),
                "digest": u64(ix, at + 24) | (u64(ix, at + 32) << 64),
            }
        )

    return entry, map_record


def check_sorted_keys(what: str, keys: list[str]) -> None:
    prev = None
    for k in keys:
        kb = k.encode("utf-8")
        if not 1 <= len(kb) <= MAX_KEY_LEN or b"\0" in kb:
            fail(what, f"invalid key {k!r}")
        if prev is not None and not prev < kb:
            fail(what, f"keys not sorted and unique: {prev!r} then {kb!r}")
        prev = kb


def in_range(d: dict, what: str, offset: int, length: int) -> None:
    """A region a delta introduces lies in [since, delta offset) (§2.7)."""
    if length and not (d["since"] <= offset and offset + length <= d["offset"]):
        fail("delta semantics", f"{what} lies outside its delta's range")


def read_chain(data: bytes, sb: dict, entries: list[dict], maps: list[dict]) -> list:
    """Follows the delta chain from the superblock's newest delta back to the
    base, checks its links, and applies it to the base's entries and maps
    in place (FORMAT.md §2.7). Returns the (offset, length) of each delta."""
    committed = sb["committed"]
    check_sorted_keys("index semantics", [e["key"] for e in entries])
    chain = []
    at, length, crc = sb["delta_offset"], sb["delta_len"], sb["delta_crc"]
    while length > 0:
        if len(chain) >= 1024:
            fail("delta chain", "deeper than 1024")
        check_region(f"delta at {at}", at, length, committed)
        dx = bytes(data[at : at + length])
        if crc32(dx) != crc:
            fail(
                "delta crc",
                f"delta at {at}: CRC {crc32(dx):#010x}, expected {crc:#010x}",
            )
        d = parse_delta(dx)
        d["offset"], d["len"] = at, length
        chain.append(d)
        at, length, crc = d["prev_offset"], d["prev_len"], d["prev_crc"]
    if not chain:
        return []
    chain.reverse()
    end = sb["index_offset"] + sb["index_len"]
    by_key = {e["key"]: e for e in entries}
    for depth, d in enumerate(chain, start=1):
        if d["depth"] != depth:
            fail(
                "delta chain",
                f"delta at {d['offset']}: depth {d['depth']}, expected {depth}",
            )
        if d["since"] < end or d["maps_before"] != len(maps):
            fail(
                "delta chain",
                f"delta at {d['offset']}: since {d['since']} with {d['maps_before']} maps "
                f"after a chain ending at {end} with {len(maps)}",
            )
        check_sorted_keys("delta semantics", [e["key"] for e in d["upserts"]])
        check_sorted_keys("delta semantics", d["removed"])
        # Regions a delta introduces lie between `since` and the delta.
        for e in d["upserts"]:
            for part in ("nodes", "links"):
                rec = e[part]
                n = 8 * ((rec["bits"] + 63) // 64)
                in_range(d, f"{e['key']}.{part}", rec["offset"], n)
        for m in d["maps"]:
            in_range(d, f"a mapping at {m['offset']}", m["offset"], m["len"])
        maps.extend(d["maps"])
        for k in d["removed"]:
            by_key.pop(k, None)
        for e in d["upserts"]:
            by_key[e["key"]] = e
        end = d["offset"] + d["len"]
    entries[:] = [by_key[k] for k in sorted(by_key, key=lambda k: k.encode("utf-8"))]
    return [(d["offset"], d["len"]) for d in chain]


def check_region(what: str, offset: int, length: int, committed: int) -> None:
    if offset % 64:
        fail("region placement", f"{what}: offset {offset} not 64-aligned")
    if offset < DATA_START or offset + length > committed:
        fail(
            "region placement",
            f"{what}: {offset}..{offset + length} outside {DATA_START}..{committed}",
        )


def check_index_semantics(
    sb: dict, entries: list[dict], maps: list[dict], deltas: list
) -> set[int]:
    """The checks of FORMAT.md §2.6 beyond rkyv's; returns the named maps."""
    committed = sb["committed"]
    slots: dict[int, str] = {}
    used = set()
    # Keys were checked (valid, sorted, unique) part by part in read_chain.
    for e in entries:
        if e["slot"] >= sb["stamp_capacity"]:
            fail(
                "index semantics",
                f"{e['key']}: slot {e['slot']} >= capacity {sb['stamp_capacity']}",
            )
        if e["slot"] in slots:
            note(
                "unique stamp slots",
                f"{e['key']} and {slots[e['slot']]} share stamp slot {e['slot']}",
            )
        slots[e["slot"]] = e["key"]
        for part, m in (("nodes", "node_map"), ("links", "link_map")):
            if e[m] >= len(maps):
                fail(
                    "index semantics",
                    f"{e['key']}: {m} {e[m]} out of range ({len(maps)} maps)",
                )
            used.add(e[m])
            rec = e[part]
            if rec["bits"] != maps[e[m]]["count"]:
                fail(
                    "index semantics",
                    f"{e['key']}: {part} has {rec['bits']} bits, its mapping {maps[e[m]]['count']} ids",
                )
            check_region(
                f"{e['key']}.{part}",
                rec["offset"],
                8 * ((rec["bits"] + 63) // 64),
                committed,
            )
        try:
            attrs = json.loads(e["attributes_text"])
        except ValueError as err:
            fail("index semantics", f"{e['key']}: attributes are not JSON ({err})")
        if not isinstance(attrs, dict):
            fail("index semantics", f"{e['key']}: attributes are not a JSON object")
        e["attributes"] = attrs
    for k, m in enumerate(maps):
        if k not in used:
            # A base index names only mappings some entry names; a delta
            # chain's table keeps records whose entries are gone (§2.7).
            if not deltas:
                note("every map named", f"maps[{k}] is named by no entry; ignored")
        else:
            check_region(f"maps[{k}]", m["offset"], m["len"], committed)
    # No two regions of the generation overlap (FORMAT.md §2); zero-length
    # regions occupy no bytes.
    regions = [
        (sb["index_offset"], sb["index_len"], "index"),
        (sb["stamp_offset"], 8 * sb["stamp_capacity"], "stamp table"),
    ]
    regions += [(o, n, f"delta at {o}") for o, n in deltas]
    regions += [
        (m["offset"], m["len"], f"maps[{k}]") for k, m in enumerate(maps) if k in used
    ]
    for e in entries:
        for part in ("nodes", "links"):
            rec = e[part]
            regions.append(
                (rec["offset"], 8 * ((rec["bits"] + 63) // 64), f"{e['key']}.{part}")
            )
    regions = sorted((r for r in regions if r[1] > 0), key=lambda r: r[0])
    for a, b in itertools.pairwise(regions):
        if a[0] + a[1] > b[0]:
            fail(
                "no overlapping regions",
                f"{a[2]} ({a[0]}+{a[1]}) overlaps {b[2]} (at {b[0]})",
            )
    return used


# ---------------------------------------------------------------- §2.4


def read_bitset(data: bytes, what: str, rec: dict, bits_limit: int) -> dict:
    nwords = (rec["bits"] + 63) // 64
    raw = data[rec["offset"] : rec["offset"] + 8 * nwords]
    if crc32(raw) != rec["crc"]:
        fail(
            "bitset crc",
            f"{what}: CRC {crc32(raw):#010x}, index says {rec['crc']:#010x}",
        )
    words = list(struct.unpack(f"<{nwords}Q", raw))
    tail = rec["bits"] % 64
    if tail and words[-1] >> tail:
        fail("bitset padding", f"{what}: bits past {rec['bits']} are set")
    out = {
        "bits": rec["bits"],
        "offset": rec["offset"],
        "ones": sum(w.bit_count() for w in words),
    }
    if rec["bits"] <= bits_limit:
        out["bitstring"] = "".join(
            str(words[i // 64] >> (i % 64) & 1) for i in range(rec["bits"])
        )
    else:
        out["words_hex"] = "".join(f"{w:016x}" for w in words)
    return out


# ---------------------------------------------------------------- §2.5


def sorted_placement(placed: list, s: int) -> list:
    """The writer's slot table (FORMAT.md §2.5): ids in (home, index) order,
    each at max(home, the slot after the previous one); those that would
    pass the last slot, in that order, into the lowest empty slots."""
    table = [0] * s
    nxt, wrapped = 0, []
    for home, _, value in sorted(placed):
        pos = max(home, nxt)
        nxt = pos + 1
        if pos < s:
            table[pos] = value
        else:
            wrapped.append(value)
    free = (p for p in range(s) if table[p] == 0)
    for value in wrapped:
        table[next(free)] = value
    return table


def in_order_placement(placed: list, s: int) -> list:
    """The slot table of older writers: ids inserted in index order, each
    at the first empty slot from its home."""
    table = [0] * s
    for home, _, value in placed:
        pos = home
        while table[pos]:
            pos = pos + 1 if pos + 1 < s else 0
        table[pos] = value
    return table


def read_mapping(data: bytes, k: int, rec: dict, ids_limit: int) -> dict:
    what = f"maps[{k}]"
    r = data[rec["offset"] : rec["offset"] + rec["len"]]
    if len(r) < 64:
        fail("mapping header", f"{what}: region of {len(r)} bytes")
    if r[0:8] != b"SCIDMAP1":
        fail("mapping header", f"{what}: magic {r[0:8]!r}")
    if crc32(r[0:60]) != u32(r, 60):
        fail("mapping header crc", f"{what}: header CRC mismatch")
    n, s, total = u64(r, 8), u64(r, 16), u64(r, 24)
    digest = u64(r, 32) | (u64(r, 40) << 64)
    flags, block, table_crc = u32(r, 48), u32(r, 52), u32(r, 56)
    if n > 0xFFFF_FFFF:
        fail("mapping header", f"{what}: N = {n} above 2^32 - 1")
    if s != (0 if n == 0 else n + n // 4 + 1):
        fail("mapping header", f"{what}: S = {s} for N = {n}")
    if flags & ~3:
        fail("mapping header", f"{what}: unknown flags {flags:#x}")
    wide_slots, wide_offsets = bool(flags & 1), bool(flags & 2)
    if n >= 1 << 24 and not wide_slots:
        fail("mapping header", f"{what}: narrow slots for N = {n}")
    if total > 0xFFFF_FFFF and not wide_offsets:
        fail("mapping header", f"{what}: narrow offsets for {total} id bytes")
    if block < 4096 or block & (block - 1):
        fail("mapping header", f"{what}: block size {block}")
    if n != rec["count"] or digest != rec["digest"]:
        fail(
            "mapping header",
            f"{what}: header (N {n}, digest {digest:032x}) disagrees with the index",
        )
    ow, sw = (8 if wide_offsets else 4), (8 if wide_slots else 4)
    off_len, slot_len, str_len = pad64((n + 1) * ow), pad64(s * sw), pad64(total)
    body_len = off_len + slot_len + str_len
    nblocks = (body_len + block - 1) // block
    table_len = pad64(4 * nblocks)
    if rec["len"] != 64 + table_len + body_len:
        fail(
            "mapping header",
            f"{what}: index length {rec['len']}, header implies {64 + table_len + body_len}",
        )
    table = r[64 : 64 + 4 * nblocks]
    if crc32(table) != table_crc:
        fail("mapping block table crc", f"{what}: block CRC table CRC mismatch")
    if any(r[64 + 4 * nblocks : 64 + table_len]):
        fail("mapping block table crc", f"{what}: block table padding not zero")
    body = r[64 + table_len :]
    for blk in range(nblocks):
        got = crc32(body[blk * block : (blk + 1) * block])
        if got != u32(table, 4 * blk):
            fail("mapping block crc", f"{what}: block {blk} of {nblocks} CRC mismatch")
    out = {
        "count": n,
        "slots": s,
        "id_bytes": total,
        "digest": f"{digest:032x}",
        "flags": flags,
        "block_size": block,
        "blocks": nblocks,
        "len": rec["len"],
        "offset": rec["offset"],
        "body_offset": rec["offset"] + 64 + table_len,
    }

    # Offsets and strings.
    offs = list(struct.unpack_from(f"<{n + 1}{'Q' if wide_offsets else 'I'}", body, 0))
    if (
        offs[0] != 0
        or offs[n] != total
        or any(a > b for a, b in itertools.pairwise(offs))
    ):
        fail("mapping offsets", f"{what}: offsets not 0..total, non-decreasing")
    slot_base, str_base = off_len, off_len + slot_len
    strings = body[str_base : str_base + total]
    for lo, hi, name in (
        ((n + 1) * ow, off_len, "offsets"),
        (slot_base + s * sw, str_base, "slots"),
        (str_base + total, body_len, "strings"),
    ):
        if any(body[lo:hi]):
            fail("mapping padding", f"{what}: {name} padding not zero")
    raw_ids = [strings[offs[i] : offs[i + 1]] for i in range(n)]
    ids = []
    for i, raw in enumerate(raw_ids):
        try:
            ids.append(raw.decode("utf-8"))
        except UnicodeDecodeError:
            fail("mapping strings", f"{what}: id {i} is not UTF-8")
    slots = list(
        struct.unpack_from(f"<{s}{'Q' if wide_slots else 'I'}", body, slot_base)
    )
    mask, shift = (0xFFFF_FFFF, 32) if wide_slots else (0xFF_FFFF, 24)
    occupied = 0
    for v in slots:
        if v:
            occupied += 1
            if not 1 <= (v & mask) <= n:
                fail(
                    "mapping slots", f"{what}: slot names index {(v & mask) - 1} of {n}"
                )
    if occupied != n:
        fail("mapping slots", f"{what}: {occupied} slots occupied for {n} ids")

    if xxhash is not None:
        got = xxhash.xxh3_128_intdigest(body, seed=0)
        if got != digest:
            fail(
                "mapping digest",
                f"{what}: body XXH3-128 {got:032x}, header {digest:032x}",
            )
        fp_mask = 0xFF if not wide_slots else 0xFFFF_FFFF
        placed = []  # (home, index, slot value)
        for i, raw in enumerate(raw_ids):
            h = xxhash.xxh3_64_intdigest(raw, seed=0)
            home = (h * s) >> 64
            fp = h & fp_mask
            # Lookup through the stored table (FORMAT.md §2.5).
            found = None
            pos = home
            for _ in range(s):
                v = slots[pos]
                if v == 0:
                    break
                if v >> shift == fp:
                    j = (v & mask) - 1
                    if j < n and raw_ids[j] == raw:
                        found = j
                        break
                pos = pos + 1 if pos + 1 < s else 0
            if found != i:
                fail(
                    "mapping lookup",
                    f"{what}: id {i} ({ids[i]!r}) looked up as {found}",
                )
            placed.append((home, i, (fp << shift) | (i + 1)))
        if slots not in (sorted_placement(placed, s), in_order_placement(placed, s)):
            note(
                "canonical slot table",
                f"{what}: slot table is neither the sorted placement nor "
                "the in-order one of older writers",
            )
    if n <= ids_limit:
        out["ids"] = ids
    else:
        out["ids_head"] = ids[:8]
    return out


# ---------------------------------------------------------------- main


def read(path: str, ids_limit: int, bits_limit: int) -> dict:
    with open(path, "rb") as f:
        data = f.read()
    sb = pick_superblock(data)
    committed = sb["committed"]
    check_region("index", sb["index_offset"], sb["index_len"], committed)
    check_region("stamp table", sb["stamp_offset"], 8 * sb["stamp_capacity"], committed)
    # The copy the rest of the index work reads (FORMAT.md §2.6).
    ix = bytes(data[sb["index_offset"] : sb["index_offset"] + sb["index_len"]])
    if crc32(ix) != sb["index_crc"]:
        fail(
            "index crc",
            f"CRC {crc32(ix):#010x}, superblock says {sb['index_crc']:#010x}",
        )
    entries, maps = parse_index(ix)
    deltas = read_chain(data, sb, entries, maps)
    named = check_index_semantics(sb, entries, maps, deltas)

    out_maps = [
        read_mapping(data, k, m, ids_limit)
        if k in named
        else {"named": False, **m, "digest": f"{m['digest']:032x}"}
        for k, m in enumerate(maps)
    ]
    out_entries = []
    for e in entries:
        stamp = u64(data, sb["stamp_offset"] + 8 * e["slot"])
        out_entries.append(
            {
                "key": e["key"],
                "created_us": e["created_us"],
                "accessed_us": e["accessed_us"],
                "slot": e["slot"],
                "stamp": stamp,
                "last_access_us": max(stamp, e["accessed_us"]),
                "attributes": e["attributes"],
                "attributes_bytes": len(e["attributes_text"].encode("utf-8")),
                "node_map": e["node_map"],
                "link_map": e["link_map"],
                "nodes": read_bitset(data, f"{e['key']}.nodes", e["nodes"], bits_limit),
                "links": read_bitset(data, f"{e['key']}.links", e["links"], bits_limit),
            }
        )
    counters = (
        list(struct.unpack_from("<8Q", data, 2 * PAGE))
        if len(data) >= 2 * PAGE + 64
        else None
    )
    return {
        "file": path,
        "xxhash": xxhash is not None,
        "generation": sb["generation"],
        "slot": sb["slot"],
        "retired": bool(sb["flags"] & 1),
        "committed": committed,
        "index_offset": sb["index_offset"],
        "index_len": sb["index_len"],
        "version": sb["version"],
        "deltas": len(deltas),
        "file_id": sb["file_id"],
        "stamp_capacity": sb["stamp_capacity"],
        "counters": counters,
        "entries": out_entries,
        "maps": out_maps,
        "notes": NOTES,
    }


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("file")
    p.add_argument(
        "--ids-limit",
        type=int,
        default=1000,
        help="list the ids of mappings up to this size",
    )
    p.add_argument(
        "--bits-limit",
        type=int,
        default=4096,
        help="print bitsets up to this size as 0/1",
    )
    a = p.parse_args()
    if xxhash is None:
        print(
            "WARNING: python package xxhash missing: mapping digest and id lookup checks SKIPPED",
            file=sys.stderr,
        )
    try:
        doc = read(a.file, a.ids_limit, a.bits_limit)
    except FormatError as e:
        print(f"read_scopecache: {e}", file=sys.stderr)
        return 3
    except OSError as e:
        print(f"read_scopecache: cannot read {a.file}: {e}", file=sys.stderr)
        return 3
    except (struct.error, IndexError) as e:
        # Every length is checked before it is used; this is a reader bug or
        # a structure FORMAT.md does not describe.
        print(
            f"read_scopecache: FAIL [bounds]: read past a checked region: {e}",
            file=sys.stderr,
        )
        return 3
    json.dump(doc, sys.stdout, ensure_ascii=False)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
