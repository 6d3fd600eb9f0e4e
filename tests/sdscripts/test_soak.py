"""Soak: many DataLoader steps with workers; memory flat and no file-descriptor growth."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

pytest.importorskip("library.train_util", reason="sd-scripts' library is not importable (see conftest.py)")

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
import fakes
import soak

pytestmark = [pytest.mark.sdscripts, pytest.mark.slow]


def test_soak_memory_flat_no_fd_growth(tmp_path: Path) -> None:
    """900 steps over 120 images with 2 persistent workers: no fd growth, RSS slope small."""
    with fakes.preserve_global_rng(), fakes.fresh_strategies():  # sd-scripts reseeds the global RNG
        result = soak.run(900, 2, 120, tmp_path)
    fds: list[int] = result["fds"]  # type: ignore[assignment]
    half = len(fds) // 2
    # Pipes come and go at epoch ends (a sample can catch 10-15 of them open); a leak raises the floor: the fewest
    # open in the later half must not exceed the most open in the earlier half.
    assert min(fds[half:]) <= max(fds[:half]), fds
    # A leak makes RSS grow; a falling RSS is the kernel reclaiming mapped pages under other processes' load.
    assert result["rss_slope_mib_per_1000_steps"] < 20, result  # type: ignore[operator]
