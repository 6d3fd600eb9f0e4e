"""Shared fixtures: the global-RNG guard every test runs under; Pillow-only resampling on request."""

from __future__ import annotations

import random
from collections.abc import Iterator

import numpy as np
import pytest


@pytest.fixture(autouse=True)
def _global_rng_untouched() -> Iterator[None]:
    """Fail any test whose code under test touched the global ``random`` / ``numpy.random`` state."""
    py_state = random.getstate()
    np_state = np.random.get_state()
    yield
    assert random.getstate() == py_state, "global random state changed: use derive_rng / an explicit Random"
    after = np.random.get_state()
    assert all(np.array_equal(a, b) for a, b in zip(after, np_state)), "global numpy.random state changed"


@pytest.fixture(autouse=True)
def _private_measure_cache(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every test gets its own quality cache folder (measurecache): none is read from or written to ~/.cache."""
    monkeypatch.setenv("COLLAGE_EXT_CACHE_DIR", str(tmp_path_factory.mktemp("collage-cache")))


@pytest.fixture
def pillow_resampler(monkeypatch: pytest.MonkeyPatch) -> None:
    """Resample with Pillow's LANCZOS only, as when libvips cannot load (collage_ext/pixels/resample.py)."""
    from collage_ext.pixels import resample

    monkeypatch.setattr(resample, "_pyvips", lambda: None)
