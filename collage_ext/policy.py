"""The per-image error policy: ``raise`` (name the file and the cause) or ``skip`` (log once, go on).

Checks at start-up are cheap header reads (``images.read_image_size``): a missing, empty or
non-image file, a declared size over Pillow's decompression-bomb limit, a 0-pixel image. Truncated
or corrupt pixel data only shows when the pixels are decoded, i.e. when a frame is composed; under
``skip`` the frame is then re-planned from the images that did load, so the number of frames per
epoch never changes.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import numpy as np

from .collage import Collage, FrameParams, Source
from .errors import CollageInputError
from .render import RenderResult

logger = logging.getLogger(__name__)


class FailureLog:
    """Remembers failed files so each is reported once per process and never retried."""

    def __init__(self) -> None:
        self.failed: dict[str, str] = {}
        #: Set in a worker process (``parallel``): the parent logs the failures it is sent, once.
        self.quiet = False

    def record(self, path: str, error: Exception | str) -> None:
        """Log a skipped file the first time it fails."""
        if path not in self.failed:
            self.failed[path] = str(error)
            if not self.quiet:
                logger.warning(f"collage_ext: skipping {path}: {error} (collage_on_error = 'skip')")


def compose(collage: Collage, sources: Sequence[Source], params: FrameParams, failures: FailureLog, *,
            with_mask: bool = False, spares: Sequence[Source] = (),
            cells: Any = None) -> tuple[RenderResult, FrameParams]:
    """Render a planned frame; when sources fail under ``skip``, re-plan it from the rest.

    When every source fails (a frame can hold several repeats of one broken image), the first of
    ``spares`` (the pool's sources, in pool order) that loads fills the frame alone, so the number of
    frames per epoch stays constant; the order is fixed, so the preview picks the same spare.
    ``cells`` is ``Collage.render``'s cache of decoded cells (the studio's), else None.

    Returns the rendered frame and the params actually used, so the caption can follow them.

    Raises:
        CollageInputError: under ``raise`` for the first failing file, or when no source (and no spare) loads.
    """
    kept = [s for s in sources if s.path not in failures.failed]
    if len(kept) < len(sources) and kept:
        params = collage.make_params(kept, seed=params.seed, epoch=params.epoch, frame=params.layout.frame)
    while kept:
        try:
            return collage.render(kept, params, with_mask=with_mask, cells=cells), params
        except CollageInputError as exc:
            path = getattr(exc, "source_path", None)
            if collage.config.on_error == "raise" or path is None:
                raise
            failures.record(path, exc)
            kept = [s for s in kept if s.path != path]
            if kept:
                params = collage.make_params(kept, seed=params.seed, epoch=params.epoch, frame=params.layout.frame)
    planned = {s.path for s in sources}
    for spare in spares:
        if spare.path in planned or spare.path in failures.failed:
            continue
        return compose(collage, [spare], collage.make_params([spare], seed=params.seed, epoch=params.epoch,
                                                            frame=params.layout.frame),
                       failures, with_mask=with_mask, spares=(), cells=cells)
    msg = f"every image of this frame failed to load: {', '.join(s.path for s in sources)}"
    raise CollageInputError(msg)


def check_single(path: str, pixels: Any, planned: tuple[int, int] | None, exc: BaseException | None = None) -> None:
    """Refuse a single image that fails to load or no longer has the size sd-scripts bucketed it with.

    sd-scripts resizes a loaded image to the ``resized_size`` it computed from the start-up size,
    whatever shape the file has now: a replaced file of another aspect would train stretched.

    Raises:
        CollageInputError: naming the file, the problem and the fix.
    """
    if exc is not None:
        msg = (f"image {path} cannot be loaded ({type(exc).__name__}: {exc}); it was readable when training started: "
               "put it back, or set collage_on_error = \"skip\" to train on without it")
        raise CollageInputError(msg) from exc
    height, width = np.shape(pixels)[:2]
    if planned is not None and (width, height) != tuple(planned):
        msg = (f"image {path} changed while training: it is {width}x{height} now, sd-scripts bucketed it as "
               f"{planned[0]}x{planned[1]}; restart training to bucket the new file (or put the old file back)")
        raise CollageInputError(msg)


def fit_to_aspect(pixels: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Centre-crop ``pixels`` (H x W x C) to the aspect ratio of ``size`` (W, H), keeping every row or column.

    A replacement image stands in for one of another shape; sd-scripts resizes it to the bucket
    size it planned for the original, so it must arrive with that aspect or it would be stretched.
    """
    height, width = pixels.shape[:2]
    target_w, target_h = size
    if width * target_h > height * target_w:  # too wide: keep the full height
        new_w = max(1, round(height * target_w / target_h))
        left = (width - new_w) // 2
        return pixels[:, left:left + new_w]
    new_h = max(1, round(width * target_h / target_w))
    top = (height - new_h) // 2
    return pixels[top:top + new_h]
