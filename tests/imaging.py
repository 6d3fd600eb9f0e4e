"""Image-quality measures shared by the tests and benchmarks/bench_compose.py (no pytest needed).

A zone plate and a stop-band residue for aliasing, PSNR, a float LANCZOS reference for sharpness, and a
photo-like test image; the benchmark reports the same figures the tests hold to.
"""

from __future__ import annotations

import math

import numpy as np
from PIL import Image


def psnr(a: Image.Image | np.ndarray, b: Image.Image | np.ndarray) -> float:
    """Peak signal-to-noise ratio in dB between two 8-bit images (inf when identical)."""
    diff = np.asarray(a, dtype=np.float64) - np.asarray(b, dtype=np.float64)
    mse = float(np.mean(diff * diff))
    return math.inf if mse == 0 else 10 * math.log10(255**2 / mse)


def photo(size: tuple[int, int], seed: int = 0) -> Image.Image:
    """Photo-like content: smooth random structure at several scales plus a little grain."""
    width, height = size
    gen = np.random.default_rng(seed)
    layers = []
    for cells in (4, 16, 64):
        coarse = gen.integers(0, 256, (cells * height // width + 2, cells + 2, 3), dtype=np.uint8)
        layers.append(np.asarray(Image.fromarray(coarse).resize((width, height), Image.Resampling.BICUBIC), float))
    pixels = 0.5 * layers[0] + 0.3 * layers[1] + 0.2 * layers[2] + gen.normal(0, 3, (height, width, 1))
    return Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))


def zone_plate(n: int) -> Image.Image:
    """Concentric rings whose frequency rises linearly to the Nyquist limit at the corners (gray RGB)."""
    y, x = np.mgrid[0:n, 0:n].astype(np.float64)
    r2 = (x - n / 2) ** 2 + (y - n / 2) ** 2
    k = 0.5 / (n / 2 * math.sqrt(2))  # local frequency k * r cycles/px
    gray = np.clip(np.rint(127.5 + 127.5 * np.cos(math.pi * k * r2)), 0, 255).astype(np.uint8)
    return Image.fromarray(gray, "L").convert("RGB")


def stop_band_residue(image: Image.Image, n: int) -> float:
    """RMS deviation where the zone plate's frequency is >= 1.5x the output's Nyquist limit.

    An ideal resampler shows flat gray there; aliasing shows up as false low-frequency rings.
    """
    out = np.asarray(image, dtype=np.float64)[..., 0]
    factor = n / out.shape[1]
    yy, xx = np.mgrid[0 : out.shape[0], 0 : out.shape[1]]
    radius = np.hypot((xx + 0.5) * factor - n / 2, (yy + 0.5) * factor - n / 2)
    frequency = 0.5 / (n / 2 * math.sqrt(2)) * radius
    return float(out[frequency >= 1.5 * 0.5 / factor].std())


def float_lanczos(
    image: Image.Image,
    size: tuple[int, int],
    box: tuple[float, float, float, float] | None = None,
    *,
    rounded: bool = True,
) -> Image.Image | np.ndarray:
    """The ideal every resampling path approximates: LANCZOS per channel in 32-bit float.

    Rounded to an 8-bit image by default, like every real path; ``rounded=False`` keeps the float
    array (the benchmark's zone-plate row for the ideal itself, free of 8-bit quantisation).
    """
    bands = np.stack(
        [np.asarray(b.convert("F").resize(size, Image.Resampling.LANCZOS, box=box)) for b in image.split()], -1
    )
    return Image.fromarray(np.clip(np.rint(bands), 0, 255).astype(np.uint8)) if rounded else bands
