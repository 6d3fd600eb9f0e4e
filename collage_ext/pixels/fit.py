"""Fit one image into one collage cell: exact integer geometry plus a single resampling call.

The geometry (``cell_fit``, ``upscale_factor``) is pure integer arithmetic (``Fraction`` for the
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

Sources decoded at a reduced scale (JPEG DCT-domain downscaling, ``Image.draft``; see
``images.load_fitted``) use the same plan mapped onto the reduced pixel grid (``scaled_cell_fit``).
``choose_draft_scale`` picks the largest reduction that still leaves the final LANCZOS pass a
shrink of at least ``DRAFT_GAPS[scale]``, which keeps the output indistinguishable from a
full-size decode (see ``DRAFT_GAPS``).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping
from dataclasses import dataclass
from fractions import Fraction
from types import MappingProxyType
from typing import Literal, get_args

from PIL import Image

from collage_ext.core.errors import CollageConfigError, CollageInputError, LayoutError
from collage_ext.core.types import Box, Rect, Size
from collage_ext.geometry.layout import fit_scale
from collage_ext.pixels.resample import lanczos

logger = logging.getLogger(__name__)

FitMode = Literal["contain", "cover", "stretch"]
FIT_MODES: tuple[str, ...] = get_args(FitMode)


#: JPEG DCT-domain reductions (``Image.draft``: decode at 1/2, 1/4 or 1/8 size) and, for each, the
#: smallest shrink the final LANCZOS pass must still make. libjpeg's reduced IDCTs filter within
#: 8x8 blocks, so they leak some detail from just above the reduced Nyquist limit; a wide enough
#: final pass removes that leak again. Measured against a full-size decode on JPEG zone plates
#: (1200-2000 px, quality 85/95, tests/test_fastpath.py): at these gaps the aliasing residue stays
#: within 0.13 gray levels RMS of the reference's and the PSNR >= 45.8 dB; on photo-like images
#: >= 47 dB. 1/4 and 1/8 need 3.0 (Pillow's "indistinguishable" reducing_gap), 1/2 is clean from
#: 2.25. Smaller gaps alias visibly: drafting down to the output size (gap 1.0) is as aliased as
#: an area average (cv2.INTER_AREA).
DRAFT_GAPS: Mapping[int, float] = MappingProxyType({8: 3.0, 4: 3.0, 2: 2.25})

# Pillow silently falls back to NEAREST for these modes; refuse instead of aliasing.
_NEAREST_ONLY_MODES = frozenset({"1", "P", "PA"})


@dataclass(frozen=True, slots=True)
class CellFit:
    """Where one image goes in its cell.

    Attributes:
        src_box: the region of the source image that is resampled (Pillow's ``box``).
        dst: where the resampled pixels go, relative to the cell's top-left corner.
    """

    src_box: Box
    dst: Rect


@dataclass(frozen=True, slots=True)
class ScaledCellFit:
    """A fit plan for a source decoded at ``1/scale`` of its size (``scale == 1``: full size).

    Attributes:
        scale: each decoded pixel covers ``scale x scale`` source pixels.
        cut: whole decoded pixels to keep before resampling (Pillow crop box). With a crop box it
            lies *inside* the crop, so pixels the user cropped away never leak into the output.
        box: the region to resample, in decoded pixels relative to ``cut`` (Pillow's ``box``).
        dst: where the resampled pixels go, relative to the cell (as ``CellFit.dst``).
    """

    scale: int
    cut: Box
    box: Box
    dst: Rect


def cell_fit(src: Size, cell: Size, mode: FitMode, crop: Box | None = None) -> CellFit:
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
        >>> cell_fit(Size(200, 100), Size(100, 100), "contain")
        CellFit(src_box=Box(left=0, top=0, right=200, bottom=100), dst=Rect(x=0, y=25, width=100, height=50))
        >>> cell_fit(Size(200, 100), Size(100, 100), "cover")
        CellFit(src_box=Box(left=50, top=0, right=150, bottom=100), dst=Rect(x=0, y=0, width=100, height=100))
        >>> cell_fit(Size(1, 50), Size(10, 10), "contain").dst  # never 0 px wide
        Rect(x=4, y=0, width=1, height=10)
    """
    _check_mode(mode)
    region = _source_region(src, cell, crop)
    if mode == "stretch":
        return CellFit(region, Rect(0, 0, cell.width, cell.height))
    if mode == "contain":
        return CellFit(region, _contain_rect(region, cell))
    return CellFit(_cover_box(region, cell), Rect(0, 0, cell.width, cell.height))


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
    # The planner's own formula (layout.fit_scale), so check and planning never disagree.
    return fit_scale(Size(int(region.width), int(region.height)), cell, mode)


def fit_image(image: Image.Image, cell: Size, mode: FitMode, crop: Box | None = None) -> tuple[Image.Image, Rect]:
    """Resample ``image`` for a cell according to ``cell_fit``, in one LANCZOS pass.

    LANCZOS in Pillow widens its kernel when shrinking, so downscaling is antialiased; the call
    is deterministic and draws no random numbers. A ``crop`` is a hard edge (pixels outside it
    never influence the output), while the centred trim of ``cover`` is soft: edge pixels are
    filtered with their neighbours, exactly like ``ImageOps.fit``.

    Args:
        image: the source image (normally RGB from ``images.open_image``).
        cell: the cell size.
        mode: ``"contain"``, ``"cover"`` or ``"stretch"``.
        crop: optional source box (see ``cell_fit``).

    Returns:
        The resampled image (a new image of size ``rect.size``) and its rect relative to the cell.

    Raises:
        CollageInputError: the image is a palette or bilevel image (convert it with
            ``images.to_rgb`` first), or as ``cell_fit``.
    """
    plan = scaled_cell_fit(Size(image.width, image.height), cell, mode, crop)
    return apply_fit(image, plan), plan.dst


def scaled_cell_fit(
    src: Size,
    cell: Size,
    mode: FitMode,
    crop: Box | None = None,
    *,
    scale: int = 1,
    flipped: tuple[bool, bool] = (False, False),
) -> ScaledCellFit:
    """Map ``cell_fit`` onto a source decoded at ``1/scale`` of its size.

    A decoded pixel ``i`` covers source pixels ``[i * scale, (i + 1) * scale)``; the decoded image
    has ``ceil(size / scale)`` pixels, its last one only partly backed by the source. When the
    image is flipped or rotated *after* decoding (EXIF orientation), that partial pixel ends up
    at the start of a reversed axis, which shifts the mapping by a fraction of a pixel.

    Args:
        src: the full source size, upright (after EXIF orientation).
        cell, mode, crop: as ``cell_fit`` (``crop`` in full-size upright pixels).
        scale: the decoding reduction (1, 2, 4 or 8 for JPEG).
        flipped: per upright axis (x, y), whether it runs backwards through the stored pixels.

    Returns:
        The plan; with ``scale == 1`` it is exactly what ``fit_image`` applies.

    Raises:
        LayoutError: the crop box is narrower than one decoded pixel at this scale.
        CollageConfigError, CollageInputError: as ``cell_fit``.

    Examples:
        >>> scaled_cell_fit(Size(3000, 4000), Size(512, 1024), "contain", scale=2)  # doctest: +NORMALIZE_WHITESPACE
        ScaledCellFit(scale=2, cut=Box(left=0, top=0, right=1500, bottom=2000),
                      box=Box(left=0, top=0, right=1500, bottom=2000), dst=Rect(x=0, y=170, width=512, height=683))
    """
    plan = cell_fit(src, cell, mode, crop)
    region = _source_region(src, cell, crop)
    if scale < 1:
        msg = f"scale must be a positive integer, got {scale!r}"
        raise ValueError(msg)
    cut_x, box_x = _scaled_axis(
        src.width, region.left, region.right, plan.src_box.left, plan.src_box.right, scale, flipped[0]
    )
    cut_y, box_y = _scaled_axis(
        src.height, region.top, region.bottom, plan.src_box.top, plan.src_box.bottom, scale, flipped[1]
    )
    if cut_x[1] <= cut_x[0] or cut_y[1] <= cut_y[0]:
        msg = f"crop box {tuple(region)} is smaller than one decoded pixel at scale 1/{scale}; decode at a larger scale"
        raise LayoutError(msg)
    return ScaledCellFit(
        scale, Box(cut_x[0], cut_y[0], cut_x[1], cut_y[1]), Box(box_x[0], box_y[0], box_x[1], box_y[1]), plan.dst
    )


def choose_draft_scale(
    src: Size,
    cell: Size,
    mode: FitMode,
    crop: Box | None = None,
    *,
    flipped: tuple[bool, bool] = (False, False),
    gaps: Mapping[int, float] = DRAFT_GAPS,
) -> int:
    """The largest decoding reduction whose final LANCZOS pass still shrinks by ``gaps[scale]``.

    The shrink is measured on the region actually resampled (after the crop box and the cover
    trim), on both axes, so the reduced source always has more pixels than the cell needs (never
    fewer: gaps are >= 1). Returns 1 (decode at full size) when no reduction qualifies.

    Examples:
        >>> choose_draft_scale(Size(3000, 4000), Size(512, 1024), "contain")  # 1500 px for 512: 2.9x left
        2
        >>> choose_draft_scale(Size(3000, 4000), Size(128, 128), "contain")   # 375 px for 96: 3.9x left
        8
        >>> choose_draft_scale(Size(1000, 1000), Size(512, 512), "cover")
        1
    """
    for scale in sorted(gaps, reverse=True):
        if scale <= 1:
            continue
        try:
            plan = scaled_cell_fit(src, cell, mode, crop, scale=scale, flipped=flipped)
        except LayoutError:
            continue  # a crop narrower than one reduced pixel
        gap = Fraction(gaps[scale])
        if plan.box.width >= plan.dst.width * gap and plan.box.height >= plan.dst.height * gap:
            return scale
    return 1


def apply_fit(image: Image.Image, plan: ScaledCellFit, *, soft_shrink: bool = False) -> Image.Image:
    """Cut and resample ``image`` (decoded at ``plan.scale``) with one LANCZOS pass; a new image.

    ``soft_shrink`` shrinks with Pillow's antialiased BILINEAR (a triangle filter twice the scale wide)
    instead of LANCZOS: half the cost, a little softer, and less aliasing than an area average
    (sd-scripts' ``cv2.INTER_AREA``, Pillow's BOX; zone plate in benchmarks/README.md). Enlarging stays LANCZOS.

    Raises:
        CollageInputError: the image is a palette or bilevel image (see ``fit_image``).
    """
    if image.mode in _NEAREST_ONLY_MODES:
        msg = f"fit_image needs a continuous-tone image, got mode {image.mode!r}; convert it with images.to_rgb first"
        raise CollageInputError(msg)
    source = image
    cut = (int(plan.cut.left), int(plan.cut.top), int(plan.cut.right), int(plan.cut.bottom))
    if cut != (0, 0, image.width, image.height):
        # A user crop is a hard edge: cut it out first so LANCZOS's support cannot pull in the
        # pixels the user cropped away (cropping copies pixels; it does not resample).
        source = image.crop(cut)
    size = (plan.dst.width, plan.dst.height)
    box = (float(plan.box.left), float(plan.box.top), float(plan.box.right), float(plan.box.bottom))
    if box == (0.0, 0.0, float(source.width), float(source.height)) and size == source.size:
        return source if source is not image else image.copy()
    if soft_shrink and size[0] <= box[2] - box[0] and size[1] <= box[3] - box[1]:
        return source.resize(size, resample=Image.Resampling.BILINEAR, box=box)
    return lanczos(source, size, box)


def _scaled_axis(
    length: int, region_lo: float, region_hi: float, box_lo: float, box_hi: float, scale: int, flipped: bool
) -> tuple[tuple[int, int], tuple[float, float]]:
    """One axis of ``scaled_cell_fit``: the whole-pixel cut and the resample span relative to it."""
    decoded = -(-length // scale)
    # Where source coordinate 0 lies on the decoded axis: the partial last pixel comes first on a
    # reversed axis.
    offset = Fraction(decoded * scale - length, scale) if flipped else Fraction(0)

    def to_decoded(value: float) -> Fraction:
        return Fraction(int(value), scale) + offset

    # Region edges at the image border keep the whole decoded axis; inner (crop) edges round inward.
    lo = 0 if region_lo == 0 else math.ceil(to_decoded(region_lo))
    hi = decoded if region_hi == length else math.floor(to_decoded(region_hi))
    span_lo = min(max(to_decoded(box_lo), Fraction(lo)), Fraction(hi)) - lo
    span_hi = min(max(to_decoded(box_hi), Fraction(lo)), Fraction(hi)) - lo
    return (lo, hi), (_number(span_lo), _number(span_hi))


def _number(value: Fraction) -> float:
    # Whole numbers stay ints (exact plans print cleanly); with power-of-two scales the rest are
    # dyadic fractions, which floats hold exactly.
    return int(value) if value.denominator == 1 else float(value)


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
