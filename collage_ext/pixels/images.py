"""Read source images as plain RGB, with every failure turned into a ``CollageInputError``.

A collage frame mixes several files, so one odd file (a CMYK JPEG, a 16-bit PNG, a transparent
GIF, a phone photo with an EXIF rotation) must look the same as it would in any viewer, and one
broken file must fail with a message naming it instead of a raw Pillow traceback from a
DataLoader worker. This module is the only place that opens image files.

Decisions:

* EXIF (and XMP) orientation is applied, as viewers and captioning tools do. sd-scripts'
  ``load_image`` does not apply it; crops and captions are written against what users see.
* Transparency is composited onto ``fill`` (the collage padding colour, ``#181818`` by default),
  never onto black, so transparent margins blend into the padding. With sd-scripts' ``alpha_mask``
  the alpha itself is kept as well (``load_fitted_with_alpha``, ``alpha_channel``): resampled with
  the same plan as the pixels, it becomes the cell's loss weight; the RGB bytes do not change.
* 16-bit and 32-bit samples are scaled to 8 bit (Pillow's ``convert`` clips them to 255).
* ICC profiles: ``load_fitted(convert_icc=True)`` (collage cells, ``collage_color_profile =
  "srgb"``) converts RGB ones to sRGB (``color.to_srgb``); ``open_image`` ignores them like
  sd-scripts. CMYK uses Pillow's conversion, which already undoes Adobe's inverted CMYK JPEGs.
* Pillow's decompression-bomb limit (``PIL.Image.MAX_IMAGE_PIXELS``) is honoured, never changed.
* Pillow warnings are captured while a file is read (bomb warnings become errors, the rest go to
  DEBUG logs), so they never leak into training logs or ``-W error`` test runs. This swaps the
  process-wide warning filters for the duration of the read (``warnings.catch_warnings``), which
  is safe in DataLoader worker processes but not when several threads read images at once.

``load_fitted`` is the fast path for collage cells: it reads a file straight into its cell size.
JPEGs are decoded at a reduced scale (DCT-domain downscaling, ``Image.draft``) when the cell needs
few enough pixels (``fit.choose_draft_scale``), the EXIF transpose then runs on the smaller
image, and 8-bit gray / RGB pixels are resampled before any conversion. Other formats cannot be
reduced while decoding; they follow ``open_image`` + ``fit.fit_image`` and give the same bytes.
"""

from __future__ import annotations

import logging
import os
import stat as stat_module
import struct
import warnings
import zlib
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from collage_ext.core.errors import CollageConfigError, CollageError, CollageInputError
from collage_ext.core.types import Box, Rect, Size
from collage_ext.pixels import resample
from collage_ext.pixels.color import to_srgb
from collage_ext.pixels.fit import DRAFT_GAPS, FitMode, apply_fit, choose_draft_scale, scaled_cell_fit

logger = logging.getLogger(__name__)

StrPath = str | os.PathLike[str]

#: Default padding colour, ``#181818``.
DEFAULT_FILL: tuple[int, int, int] = (24, 24, 24)

# Pillow signals damaged data with any of these while opening or decoding (its own ImageFile
# treats IndexError/TypeError/KeyError/struct.error as "end of data").
_DECODE_ERRORS: tuple[type[BaseException], ...] = (
    OSError,
    SyntaxError,
    ValueError,
    EOFError,
    IndexError,
    KeyError,
    TypeError,
    struct.error,
    zlib.error,
)
_BOMB_ERRORS = (Image.DecompressionBombError, Image.DecompressionBombWarning)
_ALPHA_MODES = frozenset({"RGBA", "RGBa", "LA", "La", "PA"})
_HIGH_DEPTH_MODES = frozenset({"I;16", "I;16L", "I;16B", "I;16N", "I", "F"})
_ORIENTATION_TAG = 0x0112
_TRANSPOSE_FOR_ORIENTATION = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}
#: Per orientation, whether the upright x / y axis runs backwards through the stored pixels.
_REVERSED_AXES = {
    1: (False, False),
    2: (True, False),
    3: (True, True),
    4: (False, True),
    5: (False, False),
    6: (True, False),
    7: (True, True),
    8: (False, True),
}
#: Formats that can reduce while decoding (``Image.draft``: libjpeg's DCT scaling).
_DRAFT_FORMATS = frozenset({"JPEG", "MPO"})


def check_fill(fill: Sequence[int], *, name: str = "fill") -> tuple[int, int, int]:
    """Validate an RGB fill colour and return it as a tuple.

    Args:
        fill: three integers in ``[0, 255]``.
        name: the user-facing option name used in the message.

    Raises:
        CollageConfigError: the colour is not three integers in range.

    Examples:
        >>> check_fill([24, 24, 24])
        (24, 24, 24)
    """
    values = tuple(fill) if isinstance(fill, Sequence) and not isinstance(fill, str) else ()
    ok = len(values) == 3 and all(
        isinstance(v, int | np.integer) and not isinstance(v, bool) and 0 <= v <= 255 for v in values
    )
    if not ok:
        msg = f"{name} must be three integers in [0, 255] (R, G, B), got {fill!r}; e.g. {name} = [24, 24, 24]"
        raise CollageConfigError(msg)
    return (int(values[0]), int(values[1]), int(values[2]))


def open_image(path: StrPath, *, fill: tuple[int, int, int] = DEFAULT_FILL) -> Image.Image:
    """Read an image file fully and return it as an upright RGB image.

    The first frame of animated files is used. The file handle is closed before returning and
    the pixels are decoded here, so truncated files fail now rather than inside the resize.

    Args:
        path: the image file.
        fill: colour that transparent pixels are composited onto.

    Returns:
        A new ``RGB`` image, detached from the file.

    Raises:
        CollageInputError: the file is missing, empty, not an image, truncated or corrupt, too
            large for Pillow's decompression-bomb limit, has no pixels, or has an unsupported
            mode. The message names the file; the Pillow error is chained.
    """
    fill = check_fill(fill)
    name = _check_file(path)
    with _reading(path, name, damage="is truncated or corrupt"), Image.open(path) as raw:
        raw.load()
        decoded = _orient(raw, name)
        if decoded is raw:
            decoded = raw.copy()  # detach from the file (uncompressed formats are mmapped)
    return _rgb_of(path, name, decoded, fill)


def load_fitted(
    path: StrPath,
    cell: Size,
    mode: FitMode = "contain",
    crop: Box | None = None,
    *,
    fill: tuple[int, int, int] = DEFAULT_FILL,
    draft_gaps: Mapping[int, float] = DRAFT_GAPS,
    soft_shrink: bool = False,
    expected: Size | None = None,
    convert_icc: bool = False,
) -> tuple[Image.Image, Rect]:
    """Read an image file straight into a collage cell: ``fit_image(open_image(path), ...)``, faster.

    What makes it fast, without changing what the cell shows:

    * JPEGs decode at 1/2, 1/4 or 1/8 size when the cell needs few enough pixels
      (``fit.choose_draft_scale``, computed from ``cell_fit`` on the crop box / cover region, so
      the reduced image always keeps more pixels than the cell needs). The remaining LANCZOS pass
      removes what libjpeg's reduced IDCT lets through; the result stays within the tolerance
      stated in ``fit.DRAFT_GAPS`` (tests/test_fastpath.py checks a zone plate and photos).
    * The EXIF orientation (read from the header) is applied to the reduced image; the plan is
      mapped onto its pixel grid, including the partial last pixel a flip or rotation moves.
    * 8-bit gray and RGB pixels are resampled first and converted afterwards (bit-identical, as
      each channel is filtered alone); the file-backed image is never copied.

    Other formats (PNG, WebP, ...) cannot be reduced while decoding; for them the result is
    byte-identical to ``fit_image(open_image(path, fill=fill), cell, mode, crop)``.

    Args:
        path: the image file.
        cell: the cell size.
        mode: ``"contain"``, ``"cover"`` or ``"stretch"``.
        crop: optional box in upright (EXIF-oriented) source pixels; a hard edge, as in
            ``fit_image`` (with a reduced decode the kept region rounds inward to whole reduced
            pixels, which moves a crop edge by less than one output pixel).
        fill: colour that transparent pixels are composited onto.
        draft_gaps: reductions allowed and the shrink each must leave (``fit.DRAFT_GAPS``, the
            quality-safe default); ``{}`` always decodes at full size, smaller gaps trade
            aliasing for speed.
        soft_shrink: shrink with Pillow's antialiased BILINEAR instead of LANCZOS (``collage_decode =
            "fast"``; see ``fit.apply_fit``), except for plain PNGs, which libvips shrinks faster anyway.
        expected: the upright size the frame was planned with (``Source.size``); a file that
            has another size now was replaced after planning and fails (``check_unchanged``).
        convert_icc: convert from the file's embedded ICC profile to sRGB (``color.to_srgb``, on
            the fitted cell, so it costs a cell-sized transform); off, the values are taken as sRGB.

    Returns:
        The fitted RGB image (new, detached from the file) and its rect relative to the cell.

    Raises:
        CollageInputError: as ``open_image`` and ``fit_image``, naming the file.
        CollageConfigError, LayoutError: as ``cell_fit``.
    """
    fitted, dst, _ = _load_cell(
        path,
        cell,
        mode,
        crop,
        fill=fill,
        draft_gaps=draft_gaps,
        soft_shrink=soft_shrink,
        expected=expected,
        convert_icc=convert_icc,
        with_alpha=False,
    )
    return fitted, dst


def load_fitted_with_alpha(
    path: StrPath,
    cell: Size,
    mode: FitMode = "contain",
    crop: Box | None = None,
    *,
    fill: tuple[int, int, int] = DEFAULT_FILL,
    draft_gaps: Mapping[int, float] = DRAFT_GAPS,
    soft_shrink: bool = False,
    expected: Size | None = None,
    convert_icc: bool = False,
) -> tuple[Image.Image, Rect, Image.Image | None]:
    """``load_fitted`` plus the source's own alpha, fitted with the same plan (sd-scripts' ``alpha_mask``).

    The alpha channel is cut and resampled exactly like the pixels (crop box, cover trim, the same
    resampler), so it stays registered with them; the RGB image is the same as ``load_fitted``'s
    (transparent pixels still composited onto ``fill``). Sources without transparency, or whose
    alpha is 255 everywhere, give ``None``: they are fully weighted.

    Returns:
        The fitted RGB image, its rect relative to the cell, and the fitted alpha (mode ``L``, the
        RGB image's size) or None.

    Raises:
        As ``load_fitted``.
    """
    return _load_cell(
        path,
        cell,
        mode,
        crop,
        fill=fill,
        draft_gaps=draft_gaps,
        soft_shrink=soft_shrink,
        expected=expected,
        convert_icc=convert_icc,
        with_alpha=True,
    )


def _load_cell(
    path: StrPath,
    cell: Size,
    mode: FitMode = "contain",
    crop: Box | None = None,
    *,
    fill: tuple[int, int, int] = DEFAULT_FILL,
    draft_gaps: Mapping[int, float] = DRAFT_GAPS,
    soft_shrink: bool = False,
    expected: Size | None = None,
    convert_icc: bool = False,
    with_alpha: bool,
) -> tuple[Image.Image, Rect, Image.Image | None]:
    """``load_fitted`` / ``load_fitted_with_alpha``: one read, the alpha only when asked for."""
    fill = check_fill(fill)
    name = _check_file(path)
    with _reading(path, name, damage="is truncated or corrupt"), Image.open(path) as raw:
        stored = Size(raw.width, raw.height)
        if stored.width <= 0 or stored.height <= 0:
            msg = f"image {name} has no pixels ({stored}); remove it from the dataset"
            raise CollageInputError(msg)
        orientation, scale = _draft_for_cell(raw, name, stored, cell, mode, crop, draft_gaps)
        if expected is not None:  # compare what read_image_size saw at planning time: the header
            seen = orientation if orientation is not None else _read_orientation(raw, name, header_only=True)
            check_unchanged(name, Size(stored.height, stored.width) if seen >= 5 else stored, expected)
        # Plain PNGs in both decode modes: libvips' Lanczos beats Pillow's BILINEAR on speed here too.
        png = _png_through_vips(path, raw, stored, cell, mode, crop) if raw.format == "PNG" else None
        alpha = None  # a plain PNG (the libvips path) has no transparency
        if png is not None:
            fitted, dst = png
        else:
            raw.load()
            if orientation is None:  # not read before decoding (a PNG's eXIf chunk may follow its pixels)
                orientation = _read_orientation(raw, name, header_only=False)
            method = _TRANSPOSE_FOR_ORIENTATION.get(orientation)
            upright = raw if method is None else raw.transpose(method)
            full = Size(stored.height, stored.width) if orientation >= 5 else stored
            flipped = _REVERSED_AXES[orientation] if scale > 1 else (False, False)
            plan = scaled_cell_fit(full, cell, mode, crop, scale=scale, flipped=flipped)
            reduced = (-(-full.width // scale), -(-full.height // scale))
            if upright.size != reduced:  # pragma: no cover - a Pillow draft() whose sizes we do not know
                msg = f"internal: {name} decoded at 1/{scale} as {upright.size}, expected {reduced}"
                raise AssertionError(msg)
            deferred = upright.mode in ("RGB", "L") and not _has_alpha(upright)
            source = upright if deferred else _rgb_of(path, name, upright, fill)
            fitted, dst = apply_fit(source, plan, soft_shrink=soft_shrink), plan.dst
            if with_alpha:  # the same plan (crop box, cover trim, reduced grid) as the pixels
                channel = alpha_channel(upright)
                alpha = None if channel is None else apply_fit(channel, plan, soft_shrink=soft_shrink)
        icc = raw.info.get("icc_profile") if convert_icc else None
    if fitted.mode != "RGB":
        fitted = fitted.convert("RGB")  # gray resampled first: the same bytes as resampling RGB
    if icc:
        fitted = to_srgb(fitted, icc, name=name)
    return fitted, dst, alpha


def _png_through_vips(
    path: StrPath, raw: Image.Image, stored: Size, cell: Size, mode: FitMode, crop: Box | None
) -> tuple[Image.Image, Rect] | None:
    """A plain 8-bit PNG decoded and shrunk by libvips in one pipeline, or None for Pillow's path.

    The same bytes as Pillow's decode + ``apply_fit`` (PNG is lossless and both backends take the
    same rule, ``resample.vips_applies``), about a third faster; None whenever that rule, the file
    or its metadata (orientation, transparency) needs Pillow, or libvips fails on the file (Pillow
    then reports the problem, naming the file).
    """
    if _has_alpha(raw):
        return None
    try:  # planned on the stored size: an EXIF rotation (which sends the file to Pillow) may make the crop invalid
        plan = scaled_cell_fit(stored, cell, mode, crop)
    except CollageError:
        return None  # Pillow's path plans on the upright size and reports a crop box that is really wrong
    size = (plan.dst.width, plan.dst.height)
    box = (
        plan.cut.left + plan.box.left,
        plan.cut.top + plan.box.top,
        plan.cut.left + plan.box.right,
        plan.cut.top + plan.box.bottom,
    )
    if not resample.vips_applies(raw.mode, size, box):
        return None
    image = resample.open_plain_png(os.fspath(path), raw.mode, (stored.width, stored.height))
    fitted = None if image is None else resample.vips_shrink(image, raw.mode, size, box)
    return None if fitted is None else (fitted, plan.dst)


def check_unchanged(name: str, actual: Size, expected: Size | None) -> None:
    """Refuse a source whose upright size differs from the size its frame was planned with.

    Layout, cell and crop box were chosen from the header read at start-up; fitting a replaced file
    (another size or orientation) into them would give a cell the plan never meant, so the file
    fails instead (the error policy then stops the run or re-plans the frame without it).

    Raises:
        CollageInputError: naming the file, both sizes and the fix.
    """
    if expected is not None and actual != expected:
        msg = (
            f"image {name} changed while training: it is {actual.width}x{actual.height} now, its frames were "
            f"planned for {expected.width}x{expected.height}; restart training to plan with the new file "
            "(or put the old file back)"
        )
        raise CollageInputError(msg)


def _draft_for_cell(
    raw: Image.Image, name: str, stored: Size, cell: Size, mode: FitMode, crop: Box | None, gaps: Mapping[int, float]
) -> tuple[int | None, int]:
    """Configure a reduced decode when the format allows it; return (orientation or None, scale).

    Runs before any pixel is decoded. ``draft`` works in the stored orientation, but the scale is
    the same on both axes, so choosing it on the upright geometry is equivalent.
    """
    if raw.format not in _DRAFT_FORMATS:
        return None, 1
    orientation = _read_orientation(raw, name, header_only=True)  # JPEG EXIF lives in the header
    full = Size(stored.height, stored.width) if orientation >= 5 else stored
    scale = choose_draft_scale(full, cell, mode, crop, flipped=_REVERSED_AXES[orientation], gaps=gaps)
    if scale == 1:
        return orientation, 1
    drafted = raw.draft(None, (stored.width // scale, stored.height // scale))
    if drafted is None:  # pragma: no cover - e.g. a multi-tile JPEG variant Pillow will not reduce
        return orientation, 1
    return orientation, round(stored.width / drafted[1][2])


def _rgb_of(path: StrPath, name: str, image: Image.Image, fill: tuple[int, int, int]) -> Image.Image:
    """``to_rgb`` with failures naming the file (shared by ``open_image`` and ``load_fitted``)."""
    with _reading(path, name, damage="cannot be converted to RGB"):
        try:
            return to_rgb(image, fill=fill)
        except CollageInputError as exc:
            msg = f"image {name}: {exc}"
            raise CollageInputError(msg) from exc


def read_image_size(path: StrPath) -> Size:
    """Return the upright ``(width, height)`` of an image from its header, without decoding pixels.

    Orientations 5 to 8 (rotations by 90 degrees) swap width and height, so the size matches
    what ``open_image`` returns. Truncated pixel data is not detected here. A PNG whose EXIF
    chunk comes after the pixel data is read as unrotated (finding it would decode the pixels).

    Args:
        path: the image file.

    Raises:
        CollageInputError: as ``open_image``, except for damage in the pixel data.
    """
    name = _check_file(path)
    stat = os.stat(path)
    key = (name, stat.st_dev, stat.st_ino, stat.st_size, stat.st_mtime_ns, stat.st_ctime_ns)
    found = _HEADERS.get(key)
    if found is not None:
        return found
    with _reading(path, name, damage="has a corrupt header"), Image.open(path) as raw:
        width, height = raw.size
        orientation = _read_orientation(raw, name, header_only=True)
    if width <= 0 or height <= 0:
        msg = f"image {name} has no pixels ({width}x{height}); remove it from the dataset"
        raise CollageInputError(msg)
    size = Size(height, width) if orientation >= 5 else Size(width, height)
    if len(_HEADERS) >= HEADER_CACHE:
        _HEADERS.pop(next(iter(_HEADERS)), None)
    _HEADERS[key] = size
    return size


#: Upright sizes read by ``read_image_size``, by file identity and stat (any write changes the key):
#: the studio plans again after every edit, and two header reads per image were most of that (issue 21).
HEADER_CACHE = 100_000
_HEADERS: dict[tuple[object, ...], Size] = {}


def to_rgb(image: Image.Image, *, fill: tuple[int, int, int] = DEFAULT_FILL) -> Image.Image:
    """Convert an in-memory image of any Pillow mode to 8-bit RGB.

    Alpha (``RGBA``, ``LA``, ``PA``, premultiplied modes, palette or colour-key ``tRNS``
    transparency) is composited onto ``fill``; 16/32-bit integer and float samples are scaled
    (see ``_high_depth_to_8bit``); every other mode uses Pillow's own conversion.

    Args:
        image: a loaded image.
        fill: background colour for transparent pixels.

    Returns:
        ``image`` itself when it already is RGB without transparency, else a new image.

    Raises:
        CollageInputError: the image has no pixels or its mode cannot become RGB.
    """
    fill = check_fill(fill)
    if image.width <= 0 or image.height <= 0:
        msg = f"image has no pixels ({image.width}x{image.height}); remove it from the dataset"
        raise CollageInputError(msg)
    if image.mode in _HIGH_DEPTH_MODES:
        image = _high_depth_to_8bit(image)
    if image.mode == "La":
        image = image.convert("LA")  # Pillow has no direct La -> RGBA path
    if _has_alpha(image):
        return _composite(image.convert("RGBA"), fill)
    if image.mode == "RGB":
        return image
    try:
        return image.convert("RGB")
    except ValueError as exc:
        msg = f"image mode {image.mode!r} cannot be converted to RGB ({exc}); save the file as 8-bit RGB"
        raise CollageInputError(msg) from exc


def _has_alpha(image: Image.Image) -> bool:
    """True when the image carries any transparency Pillow's RGBA conversion understands."""
    if image.mode in _ALPHA_MODES or "transparency" in image.info:
        return True
    return image.mode == "P" and image.palette is not None and image.palette.mode == "RGBA"


def alpha_channel(image: Image.Image) -> Image.Image | None:
    """The image's own transparency as an 8-bit ``L`` image (255 = opaque), or None when it is fully opaque.

    Every kind of transparency ``to_rgb`` composites is read here the same way: alpha modes
    (``RGBA``, ``LA``, premultiplied ``RGBa`` / ``La``, ``PA``), palette alpha and ``tRNS`` colour keys
    (also 16-bit ones), so the pixels ``to_rgb`` blends into ``fill`` are exactly the ones masked.
    sd-scripts' own ``load_image(alpha=True)`` reads the same channel (``convert("RGBA")``).
    """
    if image.mode in _HIGH_DEPTH_MODES:
        if "transparency" not in image.info:
            return None
        image = _high_depth_to_8bit(image)
    if image.mode == "La":
        image = image.convert("LA")
    if not _has_alpha(image):
        return None
    alpha = image.getchannel("A") if image.mode in ("RGBA", "LA") else image.convert("RGBA").getchannel("A")
    return None if alpha.getextrema() == (255, 255) else alpha


def _composite(rgba: Image.Image, fill: tuple[int, int, int]) -> Image.Image:
    """Blend an RGBA image over an opaque ``fill`` background."""
    background = Image.new("RGBA", rgba.size, (*fill, 255))
    return Image.alpha_composite(background, rgba).convert("RGB")


def _high_depth_to_8bit(image: Image.Image) -> Image.Image:
    """Scale 16/32-bit integer or float samples to an 8-bit ``L`` (or ``LA``) image.

    ``I;16*`` and ``I`` hold 16-bit samples (16-bit PNGs open as one of them), so they map
    ``0..65535`` onto ``0..255`` with rounding; ``I`` values outside that range are clipped.
    ``F`` images with every finite value in ``[0, 1]`` are treated as normalised; otherwise
    they use Pillow's ``0..255`` convention and are clipped. A 16-bit ``tRNS`` colour key
    becomes an alpha channel, because the key is only meaningful at full depth.
    """
    samples = np.asarray(image)
    if image.mode == "F":
        values = np.nan_to_num(samples.astype(np.float64), nan=0.0, posinf=255.0, neginf=0.0)
        if values.size and values.min() >= 0.0 and values.max() <= 1.0:
            values = values * 255.0
        gray = np.clip(np.rint(values), 0, 255).astype(np.uint8)
    else:
        wide = np.clip(samples.astype(np.int64), 0, 65535)
        gray = ((wide * 255 + 32767) // 65535).astype(np.uint8)
    result = Image.fromarray(gray)
    key = image.info.get("transparency")
    if isinstance(key, int) and image.mode != "F":
        alpha = np.where(samples == key, 0, 255).astype(np.uint8)
        result = Image.merge("LA", (result, Image.fromarray(alpha)))
    return result


def _orient(image: Image.Image, name: str) -> Image.Image:
    """Apply the EXIF/XMP orientation of a loaded image (returns ``image`` itself when upright)."""
    method = _TRANSPOSE_FOR_ORIENTATION.get(_read_orientation(image, name, header_only=False))
    return image if method is None else image.transpose(method)


def _read_orientation(image: Image.Image, name: str, *, header_only: bool) -> int:
    """Return the orientation tag (1..8), treating a missing, invalid or unreadable tag as 1.

    Unreadable EXIF must not reject an otherwise good image, so it is logged and ignored.
    """
    try:
        # PngImageFile.getexif decodes all pixels to look for an eXIf chunk after IDAT.
        header_exif = header_only and image.format == "PNG"
        exif = Image.Image.getexif(image) if header_exif else image.getexif()
        value = exif.get(_ORIENTATION_TAG, 1)
    except _DECODE_ERRORS as exc:
        logger.debug(f"ignoring unreadable EXIF in {name}: {type(exc).__name__}: {exc}")
        return 1
    return value if isinstance(value, int) and 1 <= value <= 8 else 1


def _check_file(path: StrPath) -> str:
    """Fail early, with a clear message, for paths that are not non-empty regular files."""
    name = os.fspath(path)
    try:
        stat = os.stat(path)
    except FileNotFoundError as exc:
        msg = f"image {name} does not exist; check the path or remove it from the dataset"
        raise CollageInputError(msg) from exc
    except OSError as exc:
        msg = f"image {name} cannot be accessed ({exc.strerror or exc}); check its permissions"
        raise CollageInputError(msg) from exc
    if not stat_module.S_ISREG(stat.st_mode):
        msg = f"image {name} is not a regular file (a directory?); point to an image file"
        raise CollageInputError(msg)
    if stat.st_size == 0:
        msg = f"image {name} is empty (0 bytes); re-copy or re-export it, or remove it from the dataset"
        raise CollageInputError(msg)
    return name


@contextmanager
def _reading(path: StrPath, name: str, *, damage: str) -> Iterator[None]:
    """Translate every Pillow failure inside the block into a ``CollageInputError`` naming the file.

    Decompression-bomb warnings become errors before any pixel is decoded; every other Pillow
    warning is logged at DEBUG instead of leaking.
    """
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        try:
            yield
        except CollageError:
            raise
        except _BOMB_ERRORS as exc:
            raise CollageInputError(_bomb_message(name, exc)) from exc
        except UnidentifiedImageError as exc:
            raise CollageInputError(_unidentified_message(path, name)) from exc
        except OSError as exc:
            if exc.errno is None:  # Pillow's decoder errors carry no errno; file-system errors do
                raise CollageInputError(_damage_message(name, damage, exc)) from exc
            msg = f"image {name} cannot be read ({exc.strerror or exc}); check that it exists and is readable"
            raise CollageInputError(msg) from exc
        except _DECODE_ERRORS as exc:
            raise CollageInputError(_damage_message(name, damage, exc)) from exc
        finally:
            for warning in caught:
                logger.debug(f"Pillow warning while reading {name}: {warning.category.__name__}: {warning.message}")


def _damage_message(name: str, damage: str, exc: BaseException) -> str:
    return (
        f"image {name} {damage} ({type(exc).__name__}: {exc}); "
        "re-export or re-download it, or remove it from the dataset"
    )


def _bomb_message(name: str, exc: BaseException) -> str:
    return (
        f"image {name} is too large for Pillow's decompression-bomb limit "
        f"(PIL.Image.MAX_IMAGE_PIXELS = {Image.MAX_IMAGE_PIXELS}): {exc}; downscale the file, "
        "or raise PIL.Image.MAX_IMAGE_PIXELS in your launcher if you trust it"
    )


def _unidentified_message(path: StrPath, name: str) -> str:
    try:
        with open(path, "rb") as handle:
            head = handle.read(12)
    except OSError:
        head = b""
    suffix = Path(name).suffix or "(no extension)"
    return (
        f"image {name} is not a readable image: Pillow cannot identify this {suffix} file "
        f"(it starts with {head!r}); convert it to PNG, JPEG or WebP, or remove it from the dataset"
    )
