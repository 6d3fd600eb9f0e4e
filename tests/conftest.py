"""Shared fixtures: the global-RNG guard every test runs under; Pillow-only resampling on request; the browser.

The browser tests (the studio's, the preview contact sheet's) drive Debian's chromium (``/usr/bin/chromium``, or
``COLLAGE_CHROMIUM``) through Playwright with ``executable_path``: no browser is downloaded, and no test installs
one (``.ci/run`` installs the package). Without chromium they skip, except in CI (``CI`` set), where they fail.
"""

from __future__ import annotations

import os
import random
import shutil
from collections.abc import Iterator
from typing import Any

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


def chromium_path() -> str | None:
    """Debian's chromium, or ``COLLAGE_CHROMIUM``."""
    path = os.environ.get("COLLAGE_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
    return path if os.path.exists(path) else None


@pytest.fixture(scope="session")
def browser() -> Iterator[Any]:
    """Headless chromium through Playwright, one per session (each test opens its own context)."""
    sync_api = pytest.importorskip("playwright.sync_api", reason="Playwright is not installed (test extra)")
    path = chromium_path()
    if path is None:
        if os.environ.get("CI"):
            pytest.fail("no chromium at /usr/bin/chromium: CI installs Debian's chromium (apt-get install chromium)")
        pytest.skip("no chromium at /usr/bin/chromium (apt-get install chromium, or set COLLAGE_CHROMIUM)")
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=path, headless=True, args=["--no-sandbox", "--disable-gpu"])
        yield b
        b.close()
