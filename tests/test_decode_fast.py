"""collage_decode = "fast": same geometry as "quality", pixels close to a full decode (area resize)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from collage_ext.collage import FAST_DRAFT_GAPS
from collage_ext.fit import fit_image
from collage_ext.images import load_fitted, open_image
from collage_ext.types import Size


def photo_like(path: Path, size: Size) -> Path:
    """A smooth gradient photo with soft detail, saved as a quality-92 JPEG."""
    yy, xx = np.mgrid[0 : size.height, 0 : size.width].astype(np.float32)
    pixels = np.stack([128 + 100 * np.sin(xx / 97.0), 128 + 100 * np.cos(yy / 71.0), (xx + yy) % 256], axis=2)
    Image.fromarray(pixels.clip(0, 255).astype(np.uint8)).save(path, quality=92)
    return path


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    """Peak signal-to-noise ratio of two uint8 images in dB."""
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return float("inf") if mse == 0 else 10 * np.log10(255.0**2 / mse)


@pytest.mark.parametrize("mode", ["contain", "cover"])
@pytest.mark.parametrize("cell", [Size(512, 1024), Size(256, 256), Size(700, 300)], ids=str)
def test_fast_matches_full_decode_geometry_and_is_close(tmp_path: Path, mode: str, cell: Size) -> None:
    """The fast path places pixels exactly where the reference does, >= 32 dB from a full LANCZOS decode."""
    path = photo_like(tmp_path / "p.jpg", Size(3000, 2000))
    reference, ref_rect = fit_image(open_image(path), cell, mode)  # type: ignore[arg-type]
    fast, rect = load_fitted(path, cell, mode, draft_gaps=FAST_DRAFT_GAPS, area_shrink=True)  # type: ignore[arg-type]
    assert rect == ref_rect and fast.size == reference.size
    assert psnr(np.asarray(fast), np.asarray(reference)) >= 32.0  # quality mode: >= 45 dB (test_fastpath)


def test_fast_enlarges_with_lanczos(tmp_path: Path) -> None:
    """Area averaging is only for shrinking: an enlarged source is identical in both modes."""
    path = tmp_path / "small.png"
    photo_like(tmp_path / "small.jpg", Size(200, 100))
    Image.open(tmp_path / "small.jpg").save(path)
    quality, _ = load_fitted(path, Size(400, 400), "contain")
    fast, _ = load_fitted(path, Size(400, 400), "contain", draft_gaps=FAST_DRAFT_GAPS, area_shrink=True)
    assert quality.tobytes() == fast.tobytes()
