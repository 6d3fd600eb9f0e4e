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

from .collage import Collage, FrameParams, Source
from .errors import CollageInputError
from .render import RenderResult

logger = logging.getLogger(__name__)


class FailureLog:
    """Remembers failed files so each is reported once per process and never retried."""

    def __init__(self) -> None:
        self.failed: dict[str, str] = {}

    def record(self, path: str, error: Exception) -> None:
        """Log a skipped file the first time it fails."""
        if path not in self.failed:
            self.failed[path] = str(error)
            logger.warning(f"collage_ext: skipping {path}: {error} (collage_on_error = 'skip')")


def compose(collage: Collage, sources: Sequence[Source], params: FrameParams, failures: FailureLog, *,
            with_mask: bool = False, spares: Sequence[Source] = ()) -> tuple[RenderResult, FrameParams]:
    """Render a planned frame; when sources fail under ``skip``, re-plan it from the rest.

    When every source fails (a frame can hold several repeats of one broken image), the first of
    ``spares`` (the pool's sources, in pool order) that loads fills the frame alone, so the number of
    frames per epoch stays constant; the order is fixed, so the preview picks the same spare.

    Returns the rendered frame and the params actually used, so the caption can follow them.

    Raises:
        CollageInputError: under ``raise`` for the first failing file, or when no source (and no spare) loads.
    """
    kept = [s for s in sources if s.path not in failures.failed]
    if len(kept) < len(sources) and kept:
        params = collage.make_params(kept, seed=params.seed, epoch=params.epoch)
    while kept:
        try:
            return collage.render(kept, params, with_mask=with_mask), params
        except CollageInputError as exc:
            path = getattr(exc, "source_path", None)
            if collage.config.on_error == "raise" or path is None:
                raise
            failures.record(path, exc)
            kept = [s for s in kept if s.path != path]
            if kept:
                params = collage.make_params(kept, seed=params.seed, epoch=params.epoch)
    planned = {s.path for s in sources}
    for spare in spares:
        if spare.path in planned or spare.path in failures.failed:
            continue
        return compose(collage, [spare], collage.make_params([spare], seed=params.seed, epoch=params.epoch),
                       failures, with_mask=with_mask, spares=())
    msg = f"every image of this frame failed to load: {', '.join(s.path for s in sources)}"
    raise CollageInputError(msg)
