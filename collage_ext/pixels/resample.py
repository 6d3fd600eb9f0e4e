"""The one LANCZOS resampling call every cell goes through, on libvips when it can run there.

A frame reads 2-4 sources where sd-scripts reads one, and after a reduced JPEG decode the LANCZOS
pass is the larger half of a cell's cost: Pillow's resampler is scalar, about as slow as the
1/2-scale decode itself. libvips' ``reduce`` computes the same separable Lanczos-3 filter with SIMD,
3-4x faster, within 55 dB of a float LANCZOS reference (benchmarks/README.md).

Decisions:

* **Fork-safe use only.** libvips' thread pool does not survive ``fork()``: once a process has run
  a pipeline through it, a forked child (sd-scripts' DataLoader workers on Linux) hangs on its next
  one. Pixels are therefore only ever pulled with ``pyvips.Region.fetch``, which computes on the
  calling thread and starts no pool (tests/test_resample.py forks after use and resamples again).
* **One backend per geometry, everywhere.** Whether libvips runs depends only on the image and the
  plan (a shrink on both axes of an 8-bit RGB or gray image, box on whole pixels), so a cell has the
  same bytes in preview, export and every DataLoader worker. Everything else (enlarging, stretching
  one axis up, boxes with a fractional edge, other modes) is Pillow's LANCZOS, as before.
* **Same geometry as Pillow.** Pillow samples output pixel ``i`` around ``box.left + (i + 0.5) * scale``;
  libvips centres its output grid on the input, ``(in - round(in / scale) * scale) / 2`` away from that
  (measured with float ramps). On a whole-pixel box ``in == out * scale``, so both grids coincide; a
  fractional edge (a reduced decode of an odd size, a cover trim at 1/2 scale) would shift the cell by
  up to half an output pixel, so those go to Pillow. Camera and PNG sizes almost always give whole boxes.
* If pyvips or its bundled libvips cannot load, Pillow does all of it (logged once); the frames then
  differ from libvips' by rounding only (>= 50 dB).
"""

from __future__ import annotations

import logging
from functools import lru_cache
from typing import Any

from PIL import Image

logger = logging.getLogger(__name__)

#: Pillow's ``reducing_gap`` for big shrinks: a box pre-reduction by an integer factor first, leaving at
#: least this much to the Lanczos pass. Pillow documents 3.0 as indistinguishable from a full LANCZOS
#: pass while much faster for big photos going into small cells. libvips runs the full Lanczos-3
#: kernel instead (its ``gap`` box pre-shrink cost 1.5 dB on an 11x shrink and it is fast enough without).
REDUCING_GAP = 3.0

_VIPS_MODES = {"RGB": 3, "L": 1}


@lru_cache(maxsize=1)
def _pyvips() -> Any | None:
    """Import pyvips once per process; None (logged) when it or its libvips cannot load."""
    try:
        import pyvips
    except (ImportError, OSError) as exc:  # OSError: a libvips shared library that fails to load
        logger.info(
            f"collage_ext: libvips is not available ({type(exc).__name__}: {exc}); "
            "cells are resampled with Pillow's LANCZOS (slower, same look)"
        )
        return None
    pyvips.cache_set_max(0)  # every call builds a new pipeline; the operation cache would only hold memory
    # libvips reports every kernel it builds at INFO ("reducev: 13 point mask"): once per cell in a
    # training log. Its warnings and errors still come through.
    logging.getLogger("pyvips").setLevel(logging.WARNING)
    return pyvips


def _loaded_pyvips() -> Any:
    """pyvips, for a caller that already knows it loaded (``vips_applies`` said so, or it holds a libvips image)."""
    pyvips = _pyvips()
    if pyvips is None:
        msg = "internal: libvips is used although it did not load"
        raise RuntimeError(msg)
    return pyvips


def lanczos(image: Image.Image, size: tuple[int, int], box: tuple[float, float, float, float]) -> Image.Image:
    """``image.resize(size, LANCZOS, box=box, reducing_gap=REDUCING_GAP)``, on libvips where it applies."""
    if vips_applies(image.mode, size, box):
        pyvips = _loaded_pyvips()
        source = pyvips.Image.new_from_memory(
            image.tobytes(), image.width, image.height, _VIPS_MODES[image.mode], "uchar"
        )
        reduced = vips_shrink(source, image.mode, size, box)
        if reduced is not None:
            return reduced
    return image.resize(size, resample=Image.Resampling.LANCZOS, box=box, reducing_gap=REDUCING_GAP)


def vips_applies(mode: str, size: tuple[int, int], box: tuple[float, float, float, float]) -> bool:
    """Whether libvips does the shrink: 8-bit RGB or gray, smaller on both axes, a whole-pixel box, libvips loaded.

    A function of the geometry only, so every process (preview, export, each DataLoader worker) agrees.
    """
    return (
        mode in _VIPS_MODES
        and all(edge == int(edge) for edge in box)
        and size[0] <= box[2] - box[0]
        and size[1] <= box[3] - box[1]
        and _pyvips() is not None
    )


def vips_shrink(
    source: Any, mode: str, size: tuple[int, int], box: tuple[float, float, float, float]
) -> Image.Image | None:
    """Cut ``box`` out of a libvips image, Lanczos-3 it to ``size`` and pull the pixels on this thread.

    The box is a hard edge here (libvips repeats its edge pixels), where Pillow lets the kernel read
    the neighbours just outside a cover trim: the outermost output pixels may differ by a few levels.
    Returns None when libvips fails or would not give exactly ``size`` (the caller falls back to Pillow).
    """
    pyvips = _loaded_pyvips()
    left, top, right, bottom = (int(edge) for edge in box)
    width, height = right - left, bottom - top
    try:
        if (left, top, width, height) != (0, 0, source.width, source.height):
            source = source.extract_area(left, top, width, height)
        # Vertical first: the horizontal pass then runs on the already shortened image.
        reduced = source.reducev(height / size[1], kernel="lanczos3").reduceh(width / size[0], kernel="lanczos3")
        if (reduced.width, reduced.height) != size:  # pragma: no cover - round(in / (in / out)) is out
            return None
        pixels = pyvips.Region.new(reduced).fetch(0, 0, size[0], size[1])  # on this thread: no pool, fork-safe
    except pyvips.Error as exc:  # e.g. a truncated PNG: the caller's Pillow path names the file and the damage
        logger.debug(f"libvips failed, falling back to Pillow: {exc}")
        return None
    return Image.frombytes(mode, size, pixels)


def open_plain_png(path: str, mode: str, size: tuple[int, int]) -> Any | None:
    """A lazy libvips image of an 8-bit RGB / gray PNG that Pillow's header describes, or None.

    libspng decodes the same pixels as Pillow (lossless) about 30 % faster, and straight into the
    pipeline (no copy out of Pillow). None, so that Pillow reads the file, for anything that needs
    Pillow's handling: other modes, EXIF or XMP (orientation), a header libvips reads differently,
    or a file libvips cannot open.
    """
    pyvips = _pyvips()
    if pyvips is None or mode not in _VIPS_MODES:
        return None
    try:
        image = pyvips.Image.new_from_file(path, access="sequential", fail_on="truncated")
    except pyvips.Error:
        return None
    fields = set(image.get_fields())
    plain = (
        image.get("vips-loader") == "pngload"
        and image.format == "uchar"
        and image.bands == _VIPS_MODES[mode]
        and (image.width, image.height) == size
        and not fields & {"exif-data", "xmp-data"}
    )
    return image if plain else None
