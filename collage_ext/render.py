"""Paint a collage frame: fill colour everywhere, fitted images pasted at their rects.

Rendering is pure and deterministic (no random numbers, no resampling): all scaling happens in
``fit.fit_image`` beforehand, so this step only copies pixels and can be checked exactly. The
optional mask marks padding (fill, gutters, letterboxes) so training can down-weight the loss
there.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from PIL import Image

from .errors import CollageInputError, LayoutError
from .images import check_fill
from .types import Rect, Size

logger = logging.getLogger(__name__)


@dataclass(frozen=True, eq=False)
class RenderResult:
    """A rendered frame.

    ``eq=False`` keeps identity equality: element-wise array comparison has no single truth value.

    Attributes:
        image: ``HxWx3`` ``uint8`` RGB pixels (sd-scripts' ``load_image`` layout).
        mask: ``HxW`` bool, True where the pixel is padding (fill, gutter, letterbox); ``None``
            unless requested.
    """

    image: np.ndarray
    mask: np.ndarray | None


def render_frame(
    frame: Size,
    placements: Sequence[tuple[Rect, Image.Image]],
    fill: tuple[int, int, int],
    *,
    with_mask: bool = False,
) -> RenderResult:
    """Paint ``frame`` with ``fill`` and paste each already-fitted image at its rect.

    Placements are pasted in order, so a later one covers an earlier one where they overlap
    (layouts never overlap; this only matters for hand-made placements).

    Args:
        frame: the frame size.
        placements: ``(rect, image)`` pairs; ``rect`` is in frame coordinates and its size must
            equal the RGB image's size.
        fill: the padding colour.
        with_mask: also return the padding mask.

    Returns:
        The frame pixels and, when requested, the padding mask.

    Raises:
        LayoutError: a rect lies (partly) outside the frame or does not match its image's size.
        CollageInputError: an image is not RGB.
        TypeError: a placement is not a ``(Rect, PIL.Image.Image)`` pair.

    Examples:
        >>> tile = Image.new("RGB", (2, 1), (255, 0, 0))
        >>> result = render_frame(Size(4, 2), [(Rect(1, 1, 2, 1), tile)], (24, 24, 24), with_mask=True)
        >>> result.image[1, 1].tolist(), result.image[0, 0].tolist()
        ([255, 0, 0], [24, 24, 24])
        >>> result.mask.astype(int).tolist()
        [[1, 1, 1, 1], [1, 0, 0, 1]]
    """
    fill = check_fill(fill)
    if frame.width < 1 or frame.height < 1:
        msg = f"frame must be at least 1x1 px, got {frame}"
        raise LayoutError(msg)
    pixels = np.empty((frame.height, frame.width, 3), dtype=np.uint8)
    # Broadcast a whole row: numpy's inner loop over a 3-element colour is ~40x slower for a frame.
    pixels[...] = np.tile(np.array(fill, dtype=np.uint8), (frame.width, 1))
    mask = np.ones((frame.height, frame.width), dtype=bool) if with_mask else None
    for index, placement in enumerate(placements):
        rect, image = _check_placement(index, placement, frame)
        rows, cols = slice(rect.y, rect.bottom), slice(rect.x, rect.right)
        pixels[rows, cols] = np.asarray(image, dtype=np.uint8)
        if mask is not None:
            mask[rows, cols] = False
    return RenderResult(image=pixels, mask=mask)


def _check_placement(index: int, placement: tuple[Rect, Image.Image], frame: Size) -> tuple[Rect, Image.Image]:
    """Validate one placement; a bad one is a bug upstream, so fail loudly with its index."""
    if not isinstance(placement, tuple | list) or len(placement) != 2:
        msg = f"placement {index} must be a (Rect, PIL.Image.Image) pair, got {type(placement).__name__}"
        raise TypeError(msg)
    raw_rect, image = placement
    if not isinstance(image, Image.Image):
        msg = f"placement {index} image must be a PIL.Image.Image, got {type(image).__name__}"
        raise TypeError(msg)
    rect = Rect(*raw_rect)
    if image.mode != "RGB":
        msg = f"placement {index} image must be RGB, got mode {image.mode!r}; convert it with images.to_rgb"
        raise CollageInputError(msg)
    if (rect.width, rect.height) != image.size:
        msg = (
            f"placement {index} rect {tuple(rect)} is {rect.width}x{rect.height} but its image is "
            f"{image.width}x{image.height}; fit the image to the rect size first (fit.fit_image)"
        )
        raise LayoutError(msg)
    inside = rect.x >= 0 and rect.y >= 0 and rect.right <= frame.width and rect.bottom <= frame.height
    if not inside:
        msg = (
            f"placement {index} rect {tuple(rect)} lies outside the {frame} frame; "
            f"keep x >= 0, y >= 0, x + width <= {frame.width} and y + height <= {frame.height}"
        )
        raise LayoutError(msg)
    return rect, image
