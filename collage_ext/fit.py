"""Fit one image into one collage cell: exact integer geometry plus a single resampling call.

The geometry (``plan_fit``, ``upscale_factor``) is pure integer arithmetic (``Fraction`` for the
ratios), so the result never depends on float rounding; it rounds halves up, so the same sizes always give
the same rectangles on every platform. ``fit_image`` then applies the plan with one Pillow
``resize`` call (crop, scale and antialiasing in one pass), so there is no double resampling.

Modes (Pillow's vocabulary, see ``PIL.ImageOps``):

* ``contain``: the whole source region, scaled to fit inside the cell and centred; the rest of
  the cell is padding (``dst`` is smaller than the cell).
* ``cover``: the cell is filled completely; a centred part of the source region with the cell's
  aspect ratio is used (like ``ImageOps.fit``; the source box is snapped to whole pixels).
* ``stretch``: the whole source region is resized to the cell, ignoring its aspect ratio.

Differences from Pillow, on purpose: no side is ever 0 px (``ImageOps.contain`` returns a 0-px
side for e.g. a 1x50 image in a 10x10 cell); halves round up where Pillow rounds half to even;
letterbox offsets are floored (``ImageOps.pad`` uses ``round``, which swings between floor and
ceil with the parity of the gap).
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from fractions import Fraction
from typing import Literal, get_args

from PIL import Image

from .errors import CollageConfigError, CollageInputError, LayoutError
from .types import Box, Rect, Size

logger = logging.getLogger(__name__)

FitMode = Literal["contain", "cover", "stretch"]
FIT_MODES: tuple[str, ...] = get_args(FitMode)

#: ``Image.resize`` first shrinks by an integer factor with ``reduce()`` when the scale is at least
#: twice this, then resamples with LANCZOS. Pillow documents 3.0 as indistinguishable from a full
#: LANCZOS pass while much faster for big photos going into small cells.
REDUCING_GAP = 3.0

# Pillow silently falls back to NEAREST for these modes; refuse instead of aliasing.
_NEAREST_ONLY_MODES = frozenset({"1", "P", "PA"})


@dataclass(frozen=True, slots=True)
class FitPlan:
    """Where one image goes in its cell.

    Attributes:
        src_box: the region of the source image that is resampled (Pillow's ``box``).
        dst: where the resampled pixels go, relative to the cell's top-left corner.
    """

    src_box: Box
    dst: Rect


def plan_fit(src: Size, cell: Size, mode: FitMode, crop: Box | None = None) -> FitPlan:
    """Plan how a source of size ``src`` fills a cell of size ``cell``.

    Args:
        src: the source image size (after EXIF orientation).
        cell: the cell size.
        mode: ``"contain"``, ``"cover"`` or ``"stretch"``.
        crop: optional box inside ``src`` (whole pixels) that replaces the image bounds as the
            source region.

    Returns:
        The plan; ``dst`` always has sides >= 1 px and lies inside the cell.

    Raises:
        CollageConfigError: unknown ``mode``.
        CollageInputError: empty source, or a crop box that is fractional, empty or outside.
        LayoutError: empty cell.

    Examples:
        >>> plan_fit(Size(200, 100), Size(100, 100), "contain")
        FitPlan(src_box=Box(left=0, top=0, right=200, bottom=100), dst=Rect(x=0, y=25, width=100, height=50))
        >>> plan_fit(Size(200, 100), Size(100, 100), "cover")
        FitPlan(src_box=Box(left=50, top=0, right=150, bottom=100), dst=Rect(x=0, y=0, width=100, height=100))
        >>> plan_fit(Size(1, 50), Size(10, 10), "contain").dst  # never 0 px wide
        Rect(x=4, y=0, width=1, height=10)
    """
    _check_mode(mode)
    region = _source_region(src, cell, crop)
    if mode == "stretch":
        return FitPlan(region, Rect(0, 0, cell.width, cell.height))
    if mode == "contain":
        return FitPlan(region, _contain_rect(region, cell))
    return FitPlan(_cover_box(region, cell), Rect(0, 0, cell.width, cell.height))


def upscale_factor(src: Size, cell: Size, mode: FitMode, crop: Box | None = None) -> float:
    """Return the magnification a fit applies (> 1 means the source is enlarged).

    ``contain`` scales by the smaller of the two axis ratios, ``cover`` by the larger one;
    ``stretch`` reports the larger one too (the worst enlargement on either axis). Callers use
    it to avoid putting small images into big cells, where they would turn blurry.

    Examples:
        >>> upscale_factor(Size(200, 100), Size(100, 100), "contain")
        0.5
        >>> upscale_factor(Size(200, 100), Size(100, 100), "cover")
        1.0
    """
    _check_mode(mode)
    region = _source_region(src, cell, crop)
    ratio_x = Fraction(cell.width, int(region.width))
    ratio_y = Fraction(cell.height, int(region.height))
    return float(min(ratio_x, ratio_y) if mode == "contain" else max(ratio_x, ratio_y))


def fit_image(image: Image.Image, cell: Size, mode: FitMode, crop: Box | None = None) -> tuple[Image.Image, Rect]:
    """Resample ``image`` for a cell according to ``plan_fit``, in one LANCZOS pass.

    LANCZOS in Pillow widens its kernel when shrinking, so downscaling is antialiased; the call
    is deterministic and draws no random numbers. A ``crop`` is a hard edge (pixels outside it
    never influence the output), while the centred trim of ``cover`` is soft: edge pixels are
    filtered with their neighbours, exactly like ``ImageOps.fit``.

    Args:
        image: the source image (normally RGB from ``images.open_image``).
        cell: the cell size.
        mode: ``"contain"``, ``"cover"`` or ``"stretch"``.
        crop: optional source box (see ``plan_fit``).

    Returns:
        The resampled image (a new image of size ``rect.size``) and its rect relative to the cell.

    Raises:
        CollageInputError: the image is a palette or bilevel image (convert it with
            ``images.to_rgb`` first), or as ``plan_fit``.
    """
    if image.mode in _NEAREST_ONLY_MODES:
        msg = f"fit_image needs a continuous-tone image, got mode {image.mode!r}; convert it with images.to_rgb first"
        raise CollageInputError(msg)
    src = Size(image.width, image.height)
    plan = plan_fit(src, cell, mode, crop)
    source, box = image, plan.src_box
    if crop is not None:
        # A user crop is a hard edge: cut it out first so LANCZOS's support cannot pull in the
        # pixels the user cropped away (cropping copies pixels; it does not resample).
        region = _source_region(src, cell, crop)
        source = image.crop(region)
        box = Box(box.left - region.left, box.top - region.top, box.right - region.left, box.bottom - region.top)
    size = (plan.dst.width, plan.dst.height)
    if tuple(box) == (0, 0, source.width, source.height) and size == source.size:
        return (source if source is not image else image.copy()), plan.dst
    resized = source.resize(size, resample=Image.Resampling.LANCZOS, box=box, reducing_gap=REDUCING_GAP)
    return resized, plan.dst


def _check_mode(mode: str) -> None:
    if mode not in FIT_MODES:
        choices = ", ".join(repr(m) for m in FIT_MODES)
        msg = f"fit_mode must be one of {choices}, got {mode!r}; e.g. fit_mode = 'contain'"
        raise CollageConfigError(msg)


def _source_region(src: Size, cell: Size, crop: Box | None) -> Box:
    """Validate the sizes and return the source region (the crop box or the whole image) in ints."""
    if cell.width < 1 or cell.height < 1:
        msg = f"cell must be at least 1x1 px, got {cell}; the layout produced an empty cell"
        raise LayoutError(msg)
    if src.width < 1 or src.height < 1:
        msg = f"source image must be at least 1x1 px, got {src}; remove the empty image"
        raise CollageInputError(msg)
    if crop is None:
        return Box(0, 0, src.width, src.height)
    if any(float(value) != int(value) for value in crop):
        msg = f"crop box must use whole pixels, got {tuple(crop)!r}; round it (crops.parse_crop_box does)"
        raise CollageInputError(msg)
    left, top, right, bottom = (int(value) for value in crop)
    if not (0 <= left < right <= src.width and 0 <= top < bottom <= src.height):
        msg = (
            f"crop box must be non-empty and lie inside the {src} image, got {tuple(crop)!r}; "
            f"keep 0 <= left < right <= {src.width} and 0 <= top < bottom <= {src.height}"
        )
        raise CollageInputError(msg)
    return Box(left, top, right, bottom)


def _contain_rect(region: Box, cell: Size) -> Rect:
    """The largest centred rect inside ``cell`` with the region's aspect ratio (sides >= 1)."""
    width, height = int(region.width), int(region.height)
    if width * cell.height >= height * cell.width:  # region is relatively wider: width-limited
        dst_w = cell.width
        dst_h = _clamp(_round_half_up(Fraction(height * cell.width, width)), cell.height)
    else:
        dst_h = cell.height
        dst_w = _clamp(_round_half_up(Fraction(width * cell.height, height)), cell.width)
    return Rect((cell.width - dst_w) // 2, (cell.height - dst_h) // 2, dst_w, dst_h)


def _cover_box(region: Box, cell: Size) -> Box:
    """The centred part of ``region`` with the cell's aspect ratio, snapped to whole pixels.

    Snapping keeps the box on the pixel grid; the aspect error is under half a source pixel,
    which is invisible after resampling. ``ImageOps.fit`` uses the unsnapped float box instead.
    """
    width, height = int(region.width), int(region.height)
    left, top = int(region.left), int(region.top)
    if width * cell.height > height * cell.width:  # region is relatively wider: trim the sides
        keep = _clamp(_round_half_up(Fraction(height * cell.width, cell.height)), width)
        left += (width - keep) // 2
        return Box(left, region.top, left + keep, region.bottom)
    if width * cell.height < height * cell.width:  # relatively taller: trim top and bottom
        keep = _clamp(_round_half_up(Fraction(width * cell.height, cell.width)), height)
        top += (height - keep) // 2
        return Box(region.left, top, region.right, top + keep)
    return region


def _round_half_up(value: Fraction) -> int:
    return math.floor(value + Fraction(1, 2))


def _clamp(value: int, upper: int) -> int:
    """Clamp to ``[1, upper]``: a 0-px side would make Pillow raise or produce an empty tile."""
    return max(1, min(value, upper))
