"""Gate for the sd-scripts integration tests in this directory.

The tests here import the REAL kohya-ss/sd-scripts ``library`` package from the checkout named by
``$SD_SCRIPTS_DIR`` and need its environment (torch, transformers, ...; see NOTES.md). When that
is missing, every test module in this directory is reported as SKIPPED with the reason (the
``pytest.importorskip`` effect, but decided here once and without importing the test modules, so
their top-level imports of torch etc. cannot turn into collection errors).

When the checkout is usable, ``$SD_SCRIPTS_DIR`` is put first on ``sys.path`` so that ``library``
and the trainer scripts (``sdxl_train_network`` ...) import from it. Nothing else is registered.
"""

from __future__ import annotations

import os
import sys
import warnings
from collections.abc import Iterator
from pathlib import Path

import pytest


def _sd_scripts_skip_reason() -> str | None:
    """None if ``$SD_SCRIPTS_DIR`` is a checkout whose ``library.train_util`` imports, else why not."""
    sd_dir = os.environ.get("SD_SCRIPTS_DIR")
    if not sd_dir:
        return (
            "SD_SCRIPTS_DIR is not set: point it at a kohya-ss/sd-scripts checkout and run pytest with the "
            "sd-scripts env python (see tests/sdscripts/NOTES.md)"
        )
    root = Path(sd_dir).resolve()
    if not (root / "library" / "train_util.py").is_file():
        return f"SD_SCRIPTS_DIR={sd_dir} is not an sd-scripts checkout (no library/train_util.py)"
    if str(root) not in sys.path:
        sys.path.insert(0, str(root))
    try:
        with warnings.catch_warnings():  # third-party code: e.g. invalid escape sequences at compile time
            warnings.simplefilter("ignore")
            import library.train_util  # noqa: F401
    except Exception as exc:  # noqa: BLE001  # any failure means "not this environment": report it, don't crash
        return (
            f"cannot import library.train_util from {root} with {sys.executable}: {type(exc).__name__}: {exc} "
            "(use the sd-scripts env python, see tests/sdscripts/NOTES.md)"
        )
    return None


# fakes.py is a helper, not a test module (and it has no doctests); with --doctest-modules pytest
# would import it, which needs torch, even when everything here is skipped.
collect_ignore = ["fakes.py"]

_SKIP_REASON = _sd_scripts_skip_reason()

if _SKIP_REASON is not None and os.environ.get("COLLAGE_REQUIRE_SD_SCRIPTS") == "1":
    # CI sets this: there a missing checkout or environment is a failure, never a silent skip.
    raise pytest.UsageError(f"COLLAGE_REQUIRE_SD_SCRIPTS=1 but the sd-scripts tests cannot run: {_SKIP_REASON}")

if _SKIP_REASON is not None:
    _reason: str = _SKIP_REASON

    class _SkippedModule(pytest.Module):
        """A test module that is never imported: collecting it reports SKIPPED with the reason."""

        def collect(self) -> list[pytest.Item | pytest.Collector]:
            pytest.skip(_reason)

    def pytest_pycollect_makemodule(module_path: Path, parent: pytest.Collector) -> pytest.Module:
        """Replace every test module of this directory by a skipped stand-in."""
        return _SkippedModule.from_parent(parent, path=module_path)

else:
    import fakes  # needs torch: only where the sd-scripts environment is usable

    @pytest.fixture(scope="session")
    def toks(tmp_path_factory: pytest.TempPathFactory) -> fakes.TinyTokenizers:
        """Offline tokenizers laid out as a --tokenizer_cache_dir, generated once per session."""
        return fakes.make_tokenizer_cache(tmp_path_factory.mktemp("tokenizer_cache"))

    @pytest.fixture(autouse=True)
    def _isolated() -> Iterator[None]:
        """Fresh strategy singletons, no hub access, sd-scripts' global-RNG use kept inside the test."""
        with fakes.preserve_global_rng(), fakes.fresh_strategies(), fakes.hub_offline():
            yield
