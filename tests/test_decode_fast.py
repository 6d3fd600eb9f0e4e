"""collage_decode = "fast": same geometry as "quality", pixels close to a full decode, no more aliasing than sd-scripts.

sd-scripts shrinks with ``cv2.INTER_AREA``; for an integer factor that is the plain block mean, which
``area_mean`` computes exactly, so the comparison needs no OpenCV.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from collage_ext.core.types import Size
from collage_ext.pixels.fit import fit_image
from collage_ext.pixels.images import load_fitted, open_image
from collage_ext.plan.collage import FAST_DRAFT_GAPS
from tests.imaging import stop_band_residue, zone_plate


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
    fast, rect = load_fitted(path, cell, mode, draft_gaps=FAST_DRAFT_GAPS, soft_shrink=True)  # type: ignore[arg-type]
    assert rect == ref_rect and fast.size == reference.size
    assert psnr(np.asarray(fast), np.asarray(reference)) >= 32.0  # quality mode: >= 45 dB (test_fastpath)


def area_mean(image: Image.Image, factor: int) -> Image.Image:
    """sd-scripts' INTER_AREA for an integer factor: the mean of each factor x factor block, rounded."""
    a = np.asarray(image, np.float64)
    h, w = a.shape[0] // factor, a.shape[1] // factor
    blocks = a[: h * factor, : w * factor].reshape(h, factor, w, factor, -1).mean(axis=(1, 3))
    return Image.fromarray(np.rint(blocks).astype(np.uint8))


@pytest.mark.parametrize(
    ("n", "cell", "suffix"),
    [(3000, 500, ".jpg"), (2000, 250, ".jpg"), (1600, 400, ".jpg"), (1000, 500, ".jpg"), (1200, 400, ".png")],
    ids=["jpeg-6x", "jpeg-8x-cell-size-at-1/8", "jpeg-4x-cell-size-at-1/4", "jpeg-2x", "png-3x"],
)
def test_fast_aliases_no_more_than_sd_scripts(tmp_path: Path, n: int, cell: int, suffix: str) -> None:
    """On a zone plate, 'fast' leaves no more false rings than sd-scripts' full decode + INTER_AREA."""
    path = tmp_path / f"zone{suffix}"
    zone_plate(n).save(path, **({"quality": 95, "subsampling": 0} if suffix == ".jpg" else {}))
    fast, _ = load_fitted(path, Size(cell, cell), "contain", draft_gaps=FAST_DRAFT_GAPS, soft_shrink=True)
    sd_scripts = area_mean(open_image(path), n // cell)
    assert fast.size == sd_scripts.size
    assert stop_band_residue(fast, n) <= stop_band_residue(sd_scripts, n)


def test_fast_enlarges_with_lanczos(tmp_path: Path) -> None:
    """The softer filter is only for shrinking: an enlarged source is identical in both modes."""
    path = tmp_path / "small.png"
    photo_like(tmp_path / "small.jpg", Size(200, 100))
    Image.open(tmp_path / "small.jpg").save(path)
    quality, _ = load_fitted(path, Size(400, 400), "contain")
    fast, _ = load_fitted(path, Size(400, 400), "contain", draft_gaps=FAST_DRAFT_GAPS, soft_shrink=True)
    assert quality.tobytes() == fast.tobytes()
