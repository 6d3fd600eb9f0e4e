"""Paint a collage frame: fill colour everywhere, fitted images pasted at their rects.

Rendering is pure and deterministic (no random numbers, no resampling): all scaling happens in
``fit.fit_image`` beforehand, so this step only copies pixels and can be checked exactly. The
optional mask marks padding (fill, gutters, letterboxes) so training can down-weight the loss
there. A placement may bring its source's own alpha (sd-scripts' ``alpha_mask``), already fitted
to the same rect; it is pasted into the frame's alpha exactly where the pixels go.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from PIL import Image

from collage_ext.core.errors import CollageInputError, LayoutError
from collage_ext.core.types import Rect, Size
from collage_ext.pixels.images import check_fill

logger = logging.getLogger(__name__)


@dataclass(frozen=True, eq=False)
class RenderResult:
    """A rendered frame.

    ``eq=False`` keeps identity equality: element-wise array comparison has no single truth value.

    Attributes:
        image: ``HxWx3`` ``uint8`` RGB pixels (sd-scripts' ``load_image`` layout).
        mask: ``HxW`` bool, True where the pixel is padding (fill, gutter, letterbox); ``None``
            unless requested.
        alpha: ``HxW`` ``uint8``, the sources' own alpha inside their rects and 255 everywhere else
            (padding included: its weight is the loss mask's business); ``None`` when no placement
            brought an alpha.
    """

    image: np.ndarray
    mask: np.ndarray | None
    alpha: np.ndarray | None = None


#: ``(rect, image)`` or ``(rect, image, alpha)``; ``alpha`` is an ``L`` image of the image's size, or None.
Placement = tuple[Rect, Image.Image] | tuple[Rect, Image.Image, Image.Image | None]


def render_frame(
    frame: Size,
    placements: Sequence[Placement],
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
            equal the RGB image's size. A third item, the image's own alpha (mode ``L``, same size,
            or None), goes into ``RenderResult.alpha``.
        fill: the padding colour.
        with_mask: also return the padding mask.

    Returns:
        The frame pixels, the padding mask when requested, and the sources' alpha when any was given.

    Raises:
        LayoutError: a rect lies (partly) outside the frame or does not match its image's size.
        CollageInputError: an image is not RGB.
        TypeError: a placement is not a ``(Rect, PIL.Image.Image[, alpha])`` tuple.

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
    alpha: np.ndarray | None = None
    for index, placement in enumerate(placements):
        rect, image, own = _check_placement(index, placement, frame)
        rows, cols = slice(rect.y, rect.bottom), slice(rect.x, rect.right)
        pixels[rows, cols] = np.asarray(image, dtype=np.uint8)
        if mask is not None:
            mask[rows, cols] = False
        if own is not None or alpha is not None:
            if alpha is None:
                alpha = np.full((frame.height, frame.width), 255, dtype=np.uint8)
            alpha[rows, cols] = 255 if own is None else np.asarray(own, dtype=np.uint8)
    return RenderResult(image=pixels, mask=mask, alpha=alpha)


def _check_placement(index: int, placement: Placement, frame: Size) -> tuple[Rect, Image.Image, Image.Image | None]:
    """Validate one placement; a bad one is a bug upstream, so fail loudly with its index."""
    if not isinstance(placement, tuple | list) or len(placement) not in (2, 3):
        msg = f"placement {index} must be a (Rect, PIL.Image.Image[, alpha]) tuple, got {type(placement).__name__}"
        raise TypeError(msg)
    raw_rect, image = placement[0], placement[1]
    own = placement[2] if len(placement) == 3 else None
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
    if own is not None and not isinstance(own, Image.Image):
        msg = f"placement {index} alpha must be a PIL.Image.Image or None, got {type(own).__name__}"
        raise TypeError(msg)
    if own is not None and (own.mode != "L" or own.size != image.size):
        msg = (
            f"placement {index} alpha must be an 'L' image of its image's size {image.width}x{image.height}, "
            f"got mode {own.mode!r}, {own.width}x{own.height}; fit it with the same plan as the image "
            "(images.load_fitted_with_alpha)"
        )
        raise LayoutError(msg)
    return rect, image, own
