"""Shared test helpers: tiny generated images and exact pixel checks (like Pillow's Tests/helper.py).

Every image is generated in the test; solid colours make pixel assertions exact.
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from collage_ext.captions import CaptionGrammar
from collage_ext.core.types import Rect, Size

#: The default collage padding colour, ``#181818``.
FILL: tuple[int, int, int] = (24, 24, 24)
RED: tuple[int, int, int] = (255, 0, 0)
GREEN: tuple[int, int, int] = (0, 255, 0)
BLUE: tuple[int, int, int] = (0, 0, 255)
WHITE: tuple[int, int, int] = (255, 255, 255)


def make_image(size: Size | tuple[int, int], color: Any, mode: str = "RGB") -> Image.Image:
    """A solid image of ``size`` (width, height) in ``mode``."""
    return Image.new(mode, (size[0], size[1]), color)


def make_quadrants(
    size: Size | tuple[int, int], colors: Sequence[tuple[int, int, int]] = (RED, GREEN, BLUE, WHITE)
) -> Image.Image:
    """An RGB image split into top-left, top-right, bottom-left, bottom-right solid quadrants."""
    width, height = size[0], size[1]
    image = Image.new("RGB", (width, height))
    half_w, half_h = width // 2, height // 2
    boxes = [
        (0, 0, half_w, half_h),
        (half_w, 0, width, half_h),
        (0, half_h, half_w, height),
        (half_w, half_h, width, height),
    ]
    for box, color in zip(boxes, colors, strict=True):
        image.paste(color, box)
    return image


def save(image: Image.Image, path: Path, format: str | None = None, **params: Any) -> Path:
    """Save ``image`` to ``path`` and return the path."""
    image.save(path, format=format, **params)
    return path


def solid_color_at(array: np.ndarray, rect: Rect) -> tuple[int, ...] | None:
    """The colour of ``rect`` in an ``HxW[xC]`` array when every pixel there is the same, else None."""
    region = np.asarray(array)[rect.y : rect.bottom, rect.x : rect.right]
    if region.size == 0:
        return None
    flat = region.reshape(-1, region.shape[-1]) if region.ndim == 3 else region.reshape(-1, 1)
    if not (flat == flat[0]).all():
        return None
    return tuple(int(v) for v in flat[0])


def pixel(image: Image.Image | np.ndarray, x: int, y: int) -> tuple[int, ...]:
    """The pixel at ``(x, y)`` as a tuple of ints."""
    array = np.asarray(image)
    value = array[y, x]
    return tuple(int(v) for v in np.atleast_1d(value))


def assert_close(actual: Sequence[int], expected: Sequence[int], tolerance: int = 0) -> None:
    """Every channel within ``tolerance`` (lossy formats such as JPEG need a few levels)."""
    diffs = [abs(int(a) - int(e)) for a, e in zip(actual, expected, strict=True)]
    assert max(diffs) <= tolerance, f"{tuple(actual)} differs from {tuple(expected)} by {max(diffs)} > {tolerance}"


def png_header_only(width: int, height: int) -> bytes:
    """A PNG signature + IHDR + IEND declaring ``width`` x ``height`` RGB with no pixel data.

    Lets tests declare huge (decompression-bomb) sizes without allocating anything.
    """

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IEND", b"")


def sd_split(caption: str, grammar: CaptionGrammar) -> tuple[list[str], list[str], list[str]]:
    """Re-statement of process_caption's fixed/flex/suffix split (sd-scripts train_util.py 872-890), for caption
    tests."""
    sep, kts = grammar.caption_separator, grammar.keep_tokens_separator
    fixed: list[str] = []
    suffix: list[str] = []
    if kts and kts in caption:
        fixed_part, flex_part = caption.split(kts, 1)
        if kts in flex_part:
            flex_part, suffix_part = flex_part.split(kts, 1)
            suffix = [t.strip() for t in suffix_part.split(sep) if t.strip()]
        fixed = [t.strip() for t in fixed_part.split(sep) if t.strip()]
        flex = [t.strip() for t in flex_part.split(sep) if t.strip()]
    else:
        tokens = [t.strip() for t in caption.strip().split(sep)]
        flex = tokens[:]
        if grammar.keep_tokens > 0:
            fixed = flex[: grammar.keep_tokens]
            flex = tokens[grammar.keep_tokens :]
    return fixed, flex, suffix


def python_for_another_user(user: str = "nobody") -> str | None:
    """A Python interpreter that ``user`` may run (this one may live under a private home, e.g. /root/.pyenv).

    For tests that act as another local user (needs root); ``None`` when there is none.
    """
    import subprocess
    import sys

    for candidate in (sys.executable, "/usr/bin/python3", "/usr/local/bin/python3"):
        try:
            done = subprocess.run([candidate, "-I", "-c", "pass"], user=user, capture_output=True, timeout=30)
        except (OSError, subprocess.SubprocessError):
            continue
        if done.returncode == 0:
            return candidate
    return None
