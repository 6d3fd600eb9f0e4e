"""Per-image crop boxes read from sidecar files, so bad regions can be cut without editing images.

Format
------
A text file next to the image, with the image's stem and the extension ``.crop`` (configurable),
e.g. ``img_001.crop`` for ``img_001.png``. It holds exactly one box line::

    # drop the watermark strip at the bottom
    0, 0, 640, 440

* The four values are ``left, top, right, bottom`` (right/bottom exclusive, as in Pillow), in
  pixels of the image **as displayed**, i.e. after its EXIF orientation is applied.
* Values are separated by commas and/or spaces.
* A value with a ``%`` suffix is a percentage of the image width (left/right) or height
  (top/bottom), e.g. ``10%, 0%, 90%, 100%``; percentages are rounded to the nearest whole
  pixel (halves round up). Pixel values must be whole numbers. Both kinds may be mixed.
* ``#`` starts a comment; blank lines are ignored.
* The box must lie inside the image and be non-empty: a box that pokes out of the image is an
  error rather than being clamped, because it usually means the box was written for another
  version of the file.

No sidecar means no crop. A sidecar that exists but has no box line is an error.
"""

from __future__ import annotations

import logging
import math
import os
import re
from fractions import Fraction
from pathlib import Path

from collage_ext.core.errors import CollageConfigError, CollageInputError
from collage_ext.core.types import Box, Size

logger = logging.getLogger(__name__)

#: Default sidecar extension.
DEFAULT_CROP_EXTENSION = ".crop"

_SEPARATOR = re.compile(r"\s*,\s*|\s+")
_VALUE = re.compile(r"^(?P<number>[+-]?(?:\d+(?:\.\d*)?|\.\d+))(?P<percent>%?)$")
_NAMES = ("left", "top", "right", "bottom")
_EXAMPLE = "'left, top, right, bottom', e.g. '0, 0, 640, 440' or '10%, 0%, 90%, 100%'"


def crop_path_for(image_path: str | os.PathLike[str], extension: str = DEFAULT_CROP_EXTENSION) -> Path:
    """Return the sidecar path of an image: same folder and stem, ``extension`` instead.

    Examples:
        >>> crop_path_for("data/img_001.png").as_posix()
        'data/img_001.crop'
    """
    if not extension.startswith(".") or len(extension) < 2 or any(sep in extension for sep in "/\\"):
        msg = f"crop extension must start with '.' and name no folder, got {extension!r}; e.g. '.crop'"
        raise CollageConfigError(msg)
    return Path(image_path).with_suffix(extension)


def read_crop_box(
    image_path: str | os.PathLike[str], image_size: Size, extension: str = DEFAULT_CROP_EXTENSION
) -> Box | None:
    """Read the crop box of an image from its sidecar file, if there is one.

    Args:
        image_path: the image (the sidecar is found next to it).
        image_size: the image size after EXIF orientation (``images.read_image_size``).
        extension: the sidecar extension, with its dot.

    Returns:
        The box in whole pixels, or ``None`` when there is no sidecar.

    Raises:
        CollageInputError: the sidecar cannot be read or holds an invalid box.
    """
    sidecar = crop_path_for(image_path, extension)
    try:
        text = sidecar.read_text(encoding="utf-8-sig")  # tolerate the BOM Windows editors add
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError) as exc:
        msg = f"crop file {sidecar} cannot be read ({exc}); save it as UTF-8 text or delete it"
        raise CollageInputError(msg) from exc
    box = parse_crop_box(text, image_size, source=str(sidecar))
    logger.debug(f"crop box {tuple(box)} from {sidecar}")
    return box


def parse_crop_box(text: str, image_size: Size, *, source: str) -> Box:
    r"""Parse the text of a crop sidecar into a pixel box inside ``image_size``.

    Args:
        text: the sidecar contents.
        image_size: the size of the (EXIF-oriented) image the box applies to.
        source: the sidecar name used in error messages.

    Returns:
        The box with integer coordinates.

    Raises:
        CollageInputError: no box, several boxes, malformed values, empty box or box outside.

    Examples:
        >>> parse_crop_box("10, 20, 110, 70", Size(640, 480), source="a.crop")
        Box(left=10, top=20, right=110, bottom=70)
        >>> parse_crop_box("# keep the middle\n25% 0% 75% 50%", Size(640, 480), source="a.crop")
        Box(left=160, top=0, right=480, bottom=240)
    """
    line = _box_line(text, source)
    tokens = _SEPARATOR.split(line)
    if len(tokens) != 4 or "" in tokens:
        msg = f"crop file {source} must hold four values {_EXAMPLE}, got {line!r}"
        raise CollageInputError(msg)
    limits = (image_size.width, image_size.height, image_size.width, image_size.height)
    values = [_parse_value(token, limit, source, line) for token, limit in zip(tokens, limits, strict=True)]
    box = Box(*values)
    _check_box(box, image_size, source, line)
    return box


def _box_line(text: str, source: str) -> str:
    """Return the only non-comment, non-blank line of the sidecar."""
    lines = [raw.split("#", 1)[0].strip() for raw in text.splitlines()]
    lines = [line for line in lines if line]
    if not lines:
        msg = f"crop file {source} holds no crop box; write one line {_EXAMPLE}, or delete the file"
        raise CollageInputError(msg)
    if len(lines) > 1:
        msg = f"crop file {source} must hold exactly one crop box, got {len(lines)} lines {lines!r}; keep one"
        raise CollageInputError(msg)
    return lines[0]


def _parse_value(token: str, limit: int, source: str, line: str) -> int:
    """Convert one value to whole pixels (percentages of ``limit`` round half up)."""
    match = _VALUE.match(token)
    if match is None:
        msg = f"crop file {source} has a value that is not a number: {token!r} in {line!r}; write e.g. {_EXAMPLE}"
        raise CollageInputError(msg)
    number = Fraction(match["number"])
    if match["percent"]:
        return math.floor(number * limit / 100 + Fraction(1, 2))
    if number.denominator != 1:
        msg = (
            f"crop file {source} has a fractional pixel value {token!r} in {line!r}; "
            f"use whole pixels or a percentage such as '{token}%'"
        )
        raise CollageInputError(msg)
    return int(number)


def _check_box(box: Box, size: Size, source: str, line: str) -> None:
    """Reject boxes that are empty or reach outside the image (no silent clamping)."""
    resolved = ""
    if "%" in line:
        resolved = f" (= {box.left}, {box.top}, {box.right}, {box.bottom} px)"
    for name, value, limit in zip(_NAMES, box, (size.width, size.height) * 2, strict=True):
        if value < 0 or value > limit:
            bound = f"{name} >= 0" if value < 0 else f"{name} <= {limit}"
            msg = f"crop box in {source} lies outside the {size} image: got {line!r}{resolved}; keep {bound}"
            raise CollageInputError(msg)
    for low, high in (("left", "right"), ("top", "bottom")):
        if getattr(box, high) <= getattr(box, low):
            msg = f"crop box in {source} is empty: got {line!r}{resolved}; {high} must be greater than {low}"
            raise CollageInputError(msg)


def check_crop_unchanged(
    image_path: str | os.PathLike[str], image_size: Size, planned: Box | None, extension: str = DEFAULT_CROP_EXTENSION
) -> None:
    """Refuse a sidecar that was added, removed or edited after the frames were planned.

    Frames are planned once from the boxes read at start-up; a box edited mid-run (say, to cut a
    watermark out) must not be silently ignored, nor be applied to cells planned for the old box.
    Only the box counts: an added comment or re-spelled value that gives the same box is no change.

    Raises:
        CollageInputError: naming the sidecar, the old and new box and the fix.
    """
    try:
        current = read_crop_box(image_path, image_size, extension)
    except CollageInputError as exc:
        msg = f"{exc} (it changed while training; the run planned with {_describe(planned)})"
        raise CollageInputError(msg) from exc
    if current != planned:
        sidecar = crop_path_for(image_path, extension)
        msg = (
            f"crop file {sidecar} changed while training: the frames were planned with {_describe(planned)}, "
            f"now it gives {_describe(current)}; restart training to use the new box (or restore the file)"
        )
        raise CollageInputError(msg)


def _describe(box: Box | None) -> str:
    return "no crop box" if box is None else f"box {box.left}, {box.top}, {box.right}, {box.bottom}"
