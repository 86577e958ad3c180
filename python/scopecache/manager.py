"""CacheScopeManager: a drop-in for the original Python cache manager.

Same class name, constructor arguments and defaults, method names,
arguments and return shapes; call sites change only their import. What
differs underneath: every scope lives in one memory-mapped file
(``<cache_dir>/scopes.scopecache``) shared safely by every process, a scope
loads in about a millisecond whatever its size, and the loaded bitsets and
id mappings are read in place from that file instead of being decoded into
bitarrays and dicts (see CachedScope).
"""

from __future__ import annotations

import logging
import os
import stat
from collections.abc import Callable, Mapping
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from ._native import Bitset, IdMap, ScopeCache
from .errors import InvalidKeyError, LengthMismatchError

logger = logging.getLogger(__name__)

#: The cache file's name inside ``cache_dir``.
CACHE_FILE_NAME = "scopes.scopecache"

__all__ = ["CACHE_FILE_NAME", "CacheScopeManager", "CachedScope"]


class CachedScope:
    """A loaded scope, with the attributes of the original's CoverageScope.

    ``covered_nodes`` / ``covered_links`` are ``scopecache.Bitset`` objects
    read in place (``len``, ``b[i]`` -> 0/1, ``count()``, iteration,
    ``to_bitarray()`` for a mutable copy, ``to_numpy()``, and the buffer
    protocol over the little-endian u64 words). ``node_id_mapping`` /
    ``link_id_mapping`` are read-only ``Mapping[str, int]`` objects
    (``scopecache.IdMap``) probed in place, with ``id_of(index)`` and
    ``index_of_batch(ids)``. ``scope`` is the native ``scopecache.Scope``.
    """

    __slots__ = (
        "key",
        "config",
        "covered_nodes",
        "covered_links",
        "node_id_mapping",
        "link_id_mapping",
        "total_nodes",
        "total_links",
        "scope",
    )

    def __init__(
        self,
        key: str,
        config: Any,
        covered_nodes: Bitset,
        covered_links: Bitset,
        node_id_mapping: IdMap,
        link_id_mapping: IdMap,
        total_nodes: int,
        total_links: int,
        scope: Any = None,
    ) -> None:
        self.key = key
        self.config = config
        self.covered_nodes = covered_nodes
        self.covered_links = covered_links
        self.node_id_mapping = node_id_mapping
        self.link_id_mapping = link_id_mapping
        self.total_nodes = total_nodes
        self.total_links = total_links
        self.scope = scope

    def covered_node_ids(self, limit: int | None = None) -> list[str]:
        """The ids of the covered nodes, in index order (at most ``limit``)."""
        return self.scope.covered_node_ids(limit)

    def covered_link_ids(self, limit: int | None = None) -> list[str]:
        """The ids of the covered links, in index order (at most ``limit``)."""
        return self.scope.covered_link_ids(limit)

    def node_covered(self, node_id: str) -> bool | None:
        """Whether the node is covered; None when it is not in the mapping."""
        return self.scope.node_covered(node_id)

    def link_covered(self, link_id: str) -> bool | None:
        """Whether the link is covered; None when it is not in the mapping."""
        return self.scope.link_covered(link_id)

    def __repr__(self) -> str:
        return (
            f"CachedScope(key={self.key!r}, total_nodes={self.total_nodes}, "
            f"total_links={self.total_links})"
        )


def resolve_cache_file(cache_dir: str | os.PathLike[str]) -> Path:
    """The cache file for ``cache_dir``: ``cache_dir/scopes.scopecache`` for a
    directory (created like the original did, parents included); the path
    itself for an existing file, or for a missing path with a suffix
    (``/data/scopes.cache``)."""
    p = Path(cache_dir)
    # One stat decides between a directory and a file: with two checks
    # (is_dir, then exists), a directory another process created between
    # them would be taken for the cache file itself.
    try:
        is_dir = stat.S_ISDIR(p.stat().st_mode)
    except FileNotFoundError:
        pass
    else:
        return p / CACHE_FILE_NAME if is_dir else p
    if p.suffix:
        p.parent.mkdir(parents=True, exist_ok=True)
        return p
    p.mkdir(parents=True, exist_ok=True)
    return p / CACHE_FILE_NAME


def check_key(scope_key: object) -> str:
    """The key, if the drop-in accepts it: a non-empty str without ``/``,
    ``..`` or NUL. (The original made files of its keys, so such keys were
    paths there; here no key is ever a path, but they are still refused so
    that a key that escaped the cache directory before fails loudly now.)"""
    if not isinstance(scope_key, str):
        raise InvalidKeyError(f"scope_key must be a str, not {type(scope_key).__name__}")
    if not scope_key:
        raise InvalidKeyError("scope_key must not be empty")
    for bad in ("/", "..", "\x00"):
        if bad in scope_key:
            raise InvalidKeyError(f"scope_key {scope_key[:64]!r} must not contain {bad!r}")
    return scope_key


def _local_naive(t: datetime) -> datetime:
    """An aware time as the original's naive local time."""
    return t.astimezone().replace(tzinfo=None)


def _mb(n: int) -> float:
    return n / 1024 / 1024


class CacheScopeManager:
    """Drop-in for the original CacheScopeManager, over one scopecache file.

    Args:
        cache_dir: a directory (the file ``scopes.scopecache`` is kept in it)
            or a cache file path.
        max_cache_size_gb: bound on the cache file's size, in GiB.
        max_entries: bound on the number of cached scopes.
        ttl_hours: an entry not accessed for this long expires.
        remote: ``"s3://bucket/prefix"``: share scopes with other machines
            through an S3-compatible bucket (a local miss pulls, a put
            pushes); ``remote_endpoint``, ``remote_region`` and
            ``remote_allow_http`` override the standard ``AWS_*``
            environment variables, which also give the keys.

    Differences from the original, all deliberate: limits apply after each
    put with the new scope counted (the original evicted down to
    ``max_entries - 1``); loaded bitsets and mappings are read-only views
    (``to_bitarray()`` gives a mutable copy); ``cache_scope`` refuses, with
    False and an error logged, a mapping that is not a bijection onto 0..N
    or a bitset whose length differs from its mapping, and stores nothing.
    """

    def __init__(
        self,
        cache_dir: str = "/cache",
        max_cache_size_gb: float = 10.0,
        max_entries: int = 100,
        ttl_hours: int = 24,
        *,
        remote: str | None = None,
        remote_endpoint: str | None = None,
        remote_region: str | None = None,
        remote_allow_http: bool | None = None,
    ) -> None:
        self.cache_file = resolve_cache_file(cache_dir)
        self.cache_dir = self.cache_file.parent
        self.max_cache_size_bytes = int(max_cache_size_gb * 1024 * 1024 * 1024)
        self.max_entries = max_entries
        self.ttl = timedelta(hours=ttl_hours)
        self._cache = ScopeCache(
            self.cache_file,
            max_size_bytes=self.max_cache_size_bytes,
            max_entries=max_entries,
            ttl_hours=float(ttl_hours),
            remote=remote,
            remote_endpoint=remote_endpoint,
            remote_region=remote_region,
            remote_allow_http=remote_allow_http,
        )

    @property
    def native(self) -> ScopeCache:
        """The underlying ``scopecache.ScopeCache``."""
        return self._cache

    def close(self) -> None:
        """Closes the file; loaded scopes stay valid."""
        self._cache.close()

    def __enter__(self) -> CacheScopeManager:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def cache_scope(
        self,
        scope_key: str,
        coverage_scope: Any,
        config_attributes: dict[str, Any],
    ) -> bool:
        """Caches a coverage scope; True on success, False (logged) on failure.

        ``coverage_scope`` has the original CoverageScope's attributes:
        ``covered_nodes`` / ``covered_links`` (bitarray of either bit order,
        scopecache.Bitset, or numpy bool array), ``node_id_mapping`` /
        ``link_id_mapping`` (dict id -> index in any order, or IdMap: an
        IdMap, such as a loaded scope's, is reused without re-hashing),
        ``total_nodes`` and ``total_links``. ``config_attributes``: a
        JSON-encodable dict. Nothing is stored unless every check passes; a
        scope already stored under the key is then left as it was.
        """
        try:
            check_key(scope_key)
            cs = coverage_scope
            self._cache.put(scope_key, *self._put_args(cs, config_attributes))
        except Exception as e:
            logger.error(f"Failed to cache scope {scope_key}: {e}")
            return False
        if logger.isEnabledFor(logging.INFO):
            logger.info(
                f"Cached scope {scope_key}: {cs.total_nodes:,} nodes, {cs.total_links:,} links"
            )
        return True

    @staticmethod
    def _put_args(coverage_scope: Any, config_attributes: Any) -> tuple[Any, ...]:
        """A CoverageScope as the arguments of a put, its lengths checked."""
        cs = coverage_scope
        nodes, links = cs.covered_nodes, cs.covered_links
        for what, bits, total in (
            ("covered_nodes", nodes, cs.total_nodes),
            ("covered_links", links, cs.total_links),
        ):
            if len(bits) != total:
                raise LengthMismatchError(f"{what} has {len(bits)} bits but the scope says {total}")
        return nodes, links, cs.node_id_mapping, cs.link_id_mapping, config_attributes

    def load_or_compute_scope(
        self,
        scope_key: str,
        config: Any,
        compute: Callable[[], Any],
        config_attributes: dict[str, Any] | None = None,
        timeout: float | None = None,
        on_timeout: str = "fail",
    ) -> CachedScope:
        """The cached scope; when it is missing, exactly one caller of all
        processes runs ``compute()`` and caches what it returns while the
        others wait for it, then load it.

        ``compute`` returns the original's CoverageScope (what
        ``cache_scope`` takes), or a pair ``(coverage_scope,
        config_attributes)``; else ``config_attributes`` is stored.
        ``timeout`` (seconds, default 600) bounds the wait for another
        process's computation: then ``on_timeout="fail"`` raises
        ``ComputeTimeoutError``, ``"compute"`` computes here too. Unlike
        ``load_scope`` this raises: ``ComputeError`` (with the exception of
        ``compute`` as ``__cause__``; the claim is released so the next
        caller computes anew), ``InvalidKeyError``, ``ScopeIOError``, ...
        """
        check_key(scope_key)

        def parts() -> tuple[Any, ...]:
            got = compute()
            if isinstance(got, tuple) and len(got) == 2:
                return self._put_args(got[0], got[1])
            return self._put_args(got, config_attributes)

        s = self._cache.get_or_compute(scope_key, parts, timeout=timeout, on_timeout=on_timeout)
        return CachedScope(
            scope_key,
            config,
            s.nodes,
            s.links,
            s.node_ids,
            s.link_ids,
            s.total_nodes,
            s.total_links,
            s,
        )

    def load_scope(self, scope_key: str, config: Any) -> CachedScope | None:
        """The cached scope, or None when absent, expired or damaged (a
        damaged entry is logged and dropped). ``config`` is kept as the
        returned scope's ``config``. Records the access."""
        try:
            check_key(scope_key)
            s = self._cache.get(scope_key)
        except Exception as e:
            logger.error(f"Failed to load cached scope {scope_key}: {e}")
            return None
        if s is None:
            return None
        scope = CachedScope(
            scope_key,
            config,
            s.nodes,
            s.links,
            s.node_ids,
            s.link_ids,
            s.total_nodes,
            s.total_links,
            s,
        )
        if logger.isEnabledFor(logging.INFO):
            logger.info(
                f"Loaded cached scope {scope_key}: {scope.total_nodes:,} nodes, "
                f"{scope.total_links:,} links"
            )
        return scope

    def has_scope(self, scope_key: str) -> bool:
        """True when the scope is cached (and not expired)."""
        try:
            return self._cache.contains(check_key(scope_key))
        except InvalidKeyError:
            return False

    def invalidate_scope(self, scope_key: str) -> bool:
        """Removes a scope; True when there was one."""
        try:
            return self._cache.remove(check_key(scope_key))
        except InvalidKeyError:
            return False

    def clear_cache(self) -> None:
        """Removes every cached scope (errors are logged, as the original did)."""
        try:
            self._cache.clear()
            logger.info("Cleared all cache entries")
        except Exception as e:
            logger.error(f"Failed to clear cache: {e}")

    def get_cache_stats(self) -> dict[str, Any]:
        """The original's statistics (``oldest_entry`` / ``newest_entry`` as
        naive local datetimes or None), plus the file's accounting and the
        counters of every process using it (hits, misses, evictions, ...)."""
        s = self._cache.stats()
        for k in ("oldest_entry", "newest_entry"):
            if s[k] is not None:
                s[k] = _local_naive(s[k])
        return s

    def list_cached_scopes(self) -> list[dict[str, Any]]:
        """Every cached scope, most recently accessed first, with the
        original's keys (times as naive local ISO 8601 strings)."""
        return [self._entry(e) for e in self._cache.list()]

    def _entry(self, e: Mapping[str, Any]) -> dict[str, Any]:
        maps = e["node_ids_bytes"] + e["link_ids_bytes"]
        return {
            "scope_key": e["key"],
            "created_at": _local_naive(e["created_at"]).isoformat(),
            "last_accessed": _local_naive(e["last_accessed"]).isoformat(),
            "nodes_size_mb": _mb(e["nodes_bytes"]),
            "links_size_mb": _mb(e["links_bytes"]),
            "mappings_size_mb": _mb(maps),
            "total_size_mb": _mb(e["total_bytes"]),
            "total_nodes": e["total_nodes"],
            "total_links": e["total_links"],
            "config_attributes": e["attributes"],
            "shares_mappings": e["shares_mappings"],
        }

    def get_scope_info(self, scope_key: str) -> dict[str, Any] | None:
        """Details of one cached scope, or None. Its parts all live in the
        one cache file, which ``files`` names for each."""
        try:
            e = self._cache.info(check_key(scope_key))
        except InvalidKeyError:
            return None
        if e is None:
            return None
        d = self._entry(e)
        f = str(self.cache_file)
        return {
            "scope_key": d["scope_key"],
            "created_at": d["created_at"],
            "last_accessed": d["last_accessed"],
            "total_nodes": d["total_nodes"],
            "total_links": d["total_links"],
            "files": {
                "nodes_file": f,
                "nodes_size_mb": d["nodes_size_mb"],
                "links_file": f,
                "links_size_mb": d["links_size_mb"],
                "mappings_file": f,
                "mappings_size_mb": d["mappings_size_mb"],
            },
            "total_size_mb": d["total_size_mb"],
            "config_attributes": d["config_attributes"],
            "files_exist": self.has_scope(scope_key),
        }

    def cleanup(self) -> None:
        """Maintenance: expires, evicts to the limits, drops damaged
        entries and compacts the file when worth it (errors are logged)."""
        try:
            r = self._cache.maintain()
        except Exception as e:
            logger.error(f"Failed to clean up the cache: {e}")
            return
        if r["expired"]:
            logger.info(f"Cleaned up {r['expired']} expired cache entries")
        if r["evicted"]:
            logger.info(f"Evicted {r['evicted']} cache entries to enforce limits")
