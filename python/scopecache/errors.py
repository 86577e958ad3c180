"""The exceptions of scopecache: every one derives from ScopeCacheError.

Errors about a bad argument also derive from ValueError, I/O errors from
OSError (with ``errno`` set), so existing ``except ValueError`` /
``except OSError`` clauses keep working.
"""

from __future__ import annotations

__all__ = [
    "ScopeCacheError",
    "CorruptError",
    "NotACacheFileError",
    "UnsupportedVersionError",
    "InvalidKeyError",
    "LengthMismatchError",
    "MappingError",
    "DuplicateIdError",
    "TooManyIdsError",
    "AttributesError",
    "ReadOnlyError",
    "TooLargeError",
    "PoisonedError",
    "ConfigError",
    "ScopeIOError",
    "ClosedError",
    "MappingMismatchError",
    "NoScopesError",
    "ComputeError",
    "ComputeTimeoutError",
    "StoredButGoneError",
    "RemoteError",
    "RemoteMissingError",
    "RemoteCorruptError",
]


class ScopeCacheError(Exception):
    """Base class of every scopecache error."""


class CorruptError(ScopeCacheError):
    """The file, or a part of it, failed its checks (the message says what)."""


class NotACacheFileError(CorruptError):
    """The file does not start with the scopecache magic."""


class UnsupportedVersionError(CorruptError):
    """The file is of a format version this build does not read."""


class InvalidKeyError(ScopeCacheError, ValueError):
    """A key is empty, too long, holds a NUL byte (or, for CacheScopeManager,
    a path separator or '..')."""


class LengthMismatchError(ScopeCacheError, ValueError):
    """A bitset's length differs from its mapping's."""


class MappingError(ScopeCacheError, ValueError):
    """An id mapping is not a bijection onto 0..N."""


class DuplicateIdError(MappingError):
    """The same id appears twice in a list of ids."""


class TooManyIdsError(MappingError):
    """A mapping holds more ids than one mapping can index (2**32 - 1)."""


class AttributesError(ScopeCacheError, ValueError):
    """The attributes are not a JSON-encodable dict."""


class ReadOnlyError(ScopeCacheError):
    """A write was asked of a cache opened read-only."""


class TooLargeError(ScopeCacheError):
    """One scope is larger than the cache's size bound."""


class PoisonedError(ScopeCacheError):
    """An earlier fsync failed; open the cache again before writing."""


class ConfigError(ScopeCacheError, ValueError):
    """The limits or options are unusable."""


class ScopeIOError(ScopeCacheError, OSError):
    """An operating-system call failed (``errno`` is set)."""


class ClosedError(ScopeCacheError):
    """The cache handle was closed."""


class MappingMismatchError(ScopeCacheError, ValueError):
    """Scopes combined by the coverage algebra (or a coverage stored back
    ``like`` a scope) do not share their node and link id mappings."""


class NoScopesError(ScopeCacheError, ValueError):
    """An operation over a list of scopes was given none."""


class ComputeError(ScopeCacheError):
    """The ``compute`` of ``get_or_compute`` failed; its own exception is
    ``__cause__``. The claim on the key was released, so the next caller
    computes anew."""


class ComputeTimeoutError(ScopeCacheError, TimeoutError):
    """``get_or_compute`` waited for another process's computation of the
    key longer than its timeout."""


class StoredButGoneError(ScopeCacheError):
    """``get_or_compute`` stored the scope but it was evicted or expired
    before it could be read back (limits far too small)."""


class RemoteError(ScopeCacheError):
    """A request to the remote store failed (network, timeout, refusal);
    the local file is untouched and trying again is safe."""


class RemoteMissingError(RemoteError):
    """An object or manifest the remote store should hold is not there."""


class RemoteCorruptError(RemoteError, CorruptError):
    """An object or manifest in the remote store fails its checks; nothing
    was stored locally."""
