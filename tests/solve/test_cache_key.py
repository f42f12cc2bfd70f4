"""The engine's numba caches are keyed on every engine source, not only the file a function is defined in."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

import pytest

from medtwin.physiology import uva_padova
from medtwin.solve import cache_key, kernels


def test_a_dependency_edit_changes_the_digest(tmp_path: Path) -> None:
    caller, callee = tmp_path / "caller.py", tmp_path / "callee.py"
    caller.write_text("def f(): return g()\n")
    callee.write_text("def g(): return 1\n")
    before = cache_key.source_digest((caller, callee))
    callee.write_text("def g(): return 2\n")  # the caller's own file is unchanged
    assert cache_key.source_digest((caller, callee)) != before
    callee.write_text("def g(): return 1\n")
    assert cache_key.source_digest((caller, callee)) == before


def test_engine_functions_carry_the_engine_digest_in_their_stamp() -> None:
    digest = cache_key.engine_digest()
    closed_form: Any = uva_padova._insulin_kernel  # a numba cfunc: compiled at import, cached
    for py_func in (kernels._batch.py_func, uva_padova.derivatives.py_func, closed_form._pyfunc):
        locator = cache_key.locator_of(py_func)
        assert isinstance(locator, cache_key.EngineCacheLocator)
        own, engine = locator.get_source_stamp()
        assert engine == digest and own  # numba's own stamp of the defining file is kept beside it


def test_the_digest_covers_the_closed_form_the_model_inlines() -> None:
    assert "physiology/insulin_chain.py" in cache_key.ENGINE_SOURCES
    paths = tuple(Path(uva_padova.__file__).parents[1] / name for name in cache_key.ENGINE_SOURCES)
    assert all(p.exists() for p in paths)
    assert cache_key.source_digest(paths) == cache_key.engine_digest()


def test_functions_outside_the_engine_keep_numba_s_locator(tmp_path: Path) -> None:
    def outside() -> int:
        return 1

    assert cache_key.EngineCacheLocator.from_function(outside, str(tmp_path / "other.py")) is None


def _load(path: Path, name: str) -> Any:
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_editing_only_a_dependency_recompiles(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A cached function whose own file is unchanged is loaded from the cache while the engine sources are
    unchanged, and compiled afresh once another engine source changed (numba alone would load the stale one)."""
    caller, dependency = tmp_path / "caller.py", tmp_path / "dependency.py"
    caller.write_text("from numba import njit\n\n\n@njit(cache=True)\ndef f(x):\n    return x + 1.0\n")
    dependency.write_text("VERSION = 1\n")
    monkeypatch.setattr(cache_key, "_engine_paths", lambda: (caller, dependency))
    monkeypatch.setenv("NUMBA_CACHE_DIR", "")
    first = _load(caller, "medtwin_cache_probe_1").f
    assert first(1.0) == 2.0 and first.stats.cache_misses
    again = _load(caller, "medtwin_cache_probe_2").f
    assert again(1.0) == 2.0 and again.stats.cache_hits and not again.stats.cache_misses
    dependency.write_text("VERSION = 22\n")
    edited = _load(caller, "medtwin_cache_probe_3").f
    assert edited(1.0) == 2.0 and edited.stats.cache_misses and not edited.stats.cache_hits
