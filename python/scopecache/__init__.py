"""scopecache: a memory-mapped, single-file cache of graph coverage scopes.

Two APIs:

- ``CacheScopeManager``: a drop-in for the original manager (same names,
  arguments, defaults and return shapes), keeping one cache file.
- ``ScopeCache``, ``Scope``, ``IdMap``, ``Bitset``: the native API, mirroring
  the Rust crate.

Reads are zero-copy: bitsets export the mapped file's words through the
buffer protocol, id mappings are probed in place.
"""

from __future__ import annotations

import collections.abc as _abc

from . import errors
from ._native import (
    FORMAT_VERSION,
    MAX_KEY_LEN,
    Bitset,
    Counts,
    Coverage,
    IdMap,
    Scope,
    ScopeCache,
    counts,
    difference,
    forget_dict_maps,
    has_remote,
    intersection,
    migrate,
    refresh_logging,
    union,
)
from .errors import (
    AttributesError,
    ClosedError,
    ComputeError,
    ComputeTimeoutError,
    ConfigError,
    CorruptError,
    DuplicateIdError,
    InvalidKeyError,
    LengthMismatchError,
    MappingError,
    MappingMismatchError,
    NoScopesError,
    NotACacheFileError,
    PoisonedError,
    ReadOnlyError,
    RemoteCorruptError,
    RemoteError,
    RemoteMissingError,
    ScopeCacheError,
    ScopeIOError,
    StoredButGoneError,
    TooLargeError,
    TooManyIdsError,
    UnsupportedVersionError,
)
from .manager import CachedScope, CacheScopeManager

_abc.Mapping.register(IdMap)

__all__ = [
    "FORMAT_VERSION",
    "MAX_KEY_LEN",
    "AttributesError",
    "Bitset",
    "CacheScopeManager",
    "CachedScope",
    "ClosedError",
    "ComputeError",
    "ComputeTimeoutError",
    "ConfigError",
    "CorruptError",
    "Counts",
    "Coverage",
    "DuplicateIdError",
    "IdMap",
    "InvalidKeyError",
    "LengthMismatchError",
    "MappingError",
    "MappingMismatchError",
    "NoScopesError",
    "NotACacheFileError",
    "PoisonedError",
    "ReadOnlyError",
    "RemoteCorruptError",
    "RemoteError",
    "RemoteMissingError",
    "Scope",
    "ScopeCache",
    "ScopeCacheError",
    "ScopeIOError",
    "StoredButGoneError",
    "TooLargeError",
    "TooManyIdsError",
    "UnsupportedVersionError",
    "counts",
    "difference",
    "errors",
    "forget_dict_maps",
    "has_remote",
    "intersection",
    "migrate",
    "refresh_logging",
    "union",
]
