"""Numba's on-disk caches of the population engine keyed on EVERY source file they compile in.

Numba invalidates a cached function when its own file changes, not when a function it calls from another file
changes: UVA/Padova's compiled closed form (``physiology/uva_padova.py``) inlines ``physiology/insulin_chain.py``,
and the engine (``solve/kernels.py``) freezes the Dormand-Prince tableau of ``solve/_core.py`` as constants. An
edit of ``insulin_chain.py`` alone would have left the old closed form in the cache: a stale kernel is a
confident wrong answer (in development it showed as "step size underflow"; in a user's install it could be a
silently different glucose). :func:`install` puts a cache locator in front of numba's own for the functions
defined in :data:`ENGINE_SOURCES`: same place on disk, but the freshness stamp is numba's own stamp plus a
SHA-256 over all of :data:`ENGINE_SOURCES`, so any edit of any of them recompiles all of them.
"""

from __future__ import annotations

import functools
import hashlib
import os
from pathlib import Path
from typing import Any

from numba.core import caching

# numba >= 0.61 names them CacheImpl / CompileResultCacheImpl (earlier: _CacheImpl / CompileResultCacheImpl)
_IMPL: Any = vars(caching).get("CacheImpl") or vars(caching)["_CacheImpl"]
_PACKAGE = Path(__file__).resolve().parents[1]  # src/medtwin
#: the files of compiled code that call into one another (relative to the medtwin package)
ENGINE_SOURCES = ("solve/_core.py", "solve/kernels.py", "solve/cache_key.py", "physiology/uva_padova.py",
                  "physiology/insulin_chain.py")


def source_digest(paths: tuple[Path, ...]) -> str:
    """SHA-256 over the contents of ``paths`` in order (a missing file counts as empty, by name)."""
    digest = hashlib.sha256()
    for path in paths:
        digest.update(str(path.name).encode())
        digest.update(path.read_bytes() if path.exists() else b"")
    return digest.hexdigest()


def _engine_paths() -> tuple[Path, ...]:
    return tuple(_PACKAGE / name for name in ENGINE_SOURCES)


def engine_digest() -> str:
    """The digest of :data:`ENGINE_SOURCES` as they are on disk now (re-read when a file's mtime or size moves)."""
    paths = _engine_paths()
    stats = tuple((p.stat().st_mtime_ns, p.stat().st_size) if p.exists() else None for p in paths)
    return _digest_of(paths, stats)


@functools.lru_cache(maxsize=8)
def _digest_of(paths: tuple[Path, ...], stats: tuple[object, ...]) -> str:
    return source_digest(paths)


class EngineCacheLocator(caching._CacheLocator):
    """Numba's own locator for the function (whichever it would pick), with the engine digest in the stamp."""

    def __init__(self, inner: Any) -> None:
        self._inner = inner

    def ensure_cache_path(self) -> None:
        self._inner.ensure_cache_path()

    def get_cache_path(self) -> str:
        return str(self._inner.get_cache_path())

    def get_source_stamp(self) -> Any:
        return self._inner.get_source_stamp(), engine_digest()

    def get_disambiguator(self) -> str:
        return str(self._inner.get_disambiguator())

    @classmethod
    def from_function(cls, py_func: Any, py_file: str) -> EngineCacheLocator | None:
        if os.path.realpath(py_file) not in {os.path.realpath(p) for p in _engine_paths()}:
            return None
        for other in _IMPL._locator_classes:
            if other is cls:
                continue
            inner = other.from_function(py_func, py_file)
            if inner is not None:
                return cls(inner)
        return None


def install() -> None:
    """Put :class:`EngineCacheLocator` first in numba's locators (idempotent); before any engine function is
    compiled (``solve/kernels.py`` calls it before its first decorator)."""
    classes = _IMPL._locator_classes
    if EngineCacheLocator not in classes:
        classes.insert(0, EngineCacheLocator)


def locator_of(py_func: Any) -> Any:
    """The locator numba uses for ``py_func`` (for tests and diagnosis)."""
    impl: Any = caching.CompileResultCacheImpl
    return impl(py_func).locator
