"""The per-image error policy: ``raise`` (name the file and the cause) or ``skip`` (log once, go on).

Checks at start-up are cheap header reads (``images.read_image_size``): a missing, empty or
non-image file, a declared size over Pillow's decompression-bomb limit, a 0-pixel image. Truncated
or corrupt pixel data only shows when the pixels are decoded, i.e. when a frame is composed; under
``skip`` the frame is then re-planned from the images that did load, so the number of frames per
epoch never changes.
"""

from __future__ import annotations

import atexit
import hashlib
import logging
import os
import shutil
import tempfile
from collections.abc import Sequence
from typing import Any

import numpy as np

from collage_ext.core.errors import CollageInputError
from collage_ext.pixels.render import RenderResult
from collage_ext.plan.collage import Collage, FrameParams, Source

logger = logging.getLogger(__name__)


class FailureLog:
    """Remembers failed files so each is never retried in a process, and reported once per run.

    DataLoader workers are processes (non-persistent ones forked again every epoch), each with its
    own copy of ``failed``. With ``shared``, the first report of a file also leaves a marker in a
    folder made by the creating process, which the workers inherit (fork) or unpickle (spawn):
    only the process that creates the marker logs, so "logged once" holds across workers and epochs.
    """

    def __init__(self, shared: bool = False) -> None:
        self.failed: dict[str, str] = {}
        #: Set in a worker process (``parallel``): the parent logs the failures it is sent, once.
        self.quiet = False
        self._marks: str | None = None
        if shared:
            self._marks = tempfile.mkdtemp(prefix="collage_ext_skipped_")
            atexit.register(_remove_marks, self._marks, os.getpid())

    def record(self, path: str, error: Exception | str) -> None:
        """Log a skipped file the first time it fails in this run."""
        if path not in self.failed:
            self.failed[path] = str(error)
            if not self.quiet and self._first_report(path):
                logger.warning(f"collage_ext: skipping {path}: {error} (collage_on_error = 'skip')")

    def _first_report(self, path: str) -> bool:
        if self._marks is None:
            return True
        marker = os.path.join(self._marks, hashlib.sha256(path.encode("utf-8", "surrogatepass")).hexdigest()[:32])
        try:
            os.close(os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
        except FileExistsError:
            return False
        except OSError:  # the marker folder is gone (cleaned /tmp): rather report twice than never
            return True
        return True


def _remove_marks(folder: str, owner: int) -> None:
    if os.getpid() == owner:  # never from a forked worker while the run goes on
        shutil.rmtree(folder, ignore_errors=True)


def compose(
    collage: Collage,
    sources: Sequence[Source],
    params: FrameParams,
    failures: FailureLog,
    *,
    with_mask: bool = False,
    spares: Sequence[Source] = (),
    cells: Any = None,
) -> tuple[RenderResult, FrameParams]:
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
        return compose(
            collage,
            [spare],
            collage.make_params([spare], seed=params.seed, epoch=params.epoch, frame=params.layout.frame),
            failures,
            with_mask=with_mask,
            spares=(),
            cells=cells,
        )
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
        if isinstance(exc, FileNotFoundError):
            why = "it was there when training started: put it back"
        else:  # start-up reads headers only: the pixels may have been damaged all along
            why = (
                "only its header was read at start-up, its pixels are decoded now, so it may have been damaged "
                "before training started or since: replace it with a readable copy"
            )
        msg = (
            f"image {path} cannot be loaded ({type(exc).__name__}: {exc}); {why}, or set "
            'collage_on_error = "skip" to train on without it'
        )
        raise CollageInputError(msg) from exc
    height, width = np.shape(pixels)[:2]
    if planned is not None and (width, height) != tuple(planned):
        msg = (
            f"image {path} changed while training: it is {width}x{height} now, sd-scripts bucketed it as "
            f"{planned[0]}x{planned[1]}; restart training to bucket the new file (or put the old file back)"
        )
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
        return pixels[:, left : left + new_w]
    new_h = max(1, round(width * target_h / target_w))
    top = (height - new_h) // 2
    return pixels[top : top + new_h]


def cover_to(pixels: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Centre-crop ``pixels`` (H x W x C) to the aspect of ``size`` (W, H), then resize to exactly ``size``.

    Without bucketing sd-scripts trains only images of exactly the resolution (``__getitem__`` asserts;
    its latent cache does this same centre crop and resize). A collage subset's single images (sources
    that cannot keep the scale rule beside a partner in the fixed frame) arrive at any size, so they get
    the frame the cache would give them.
    """
    if pixels.shape[1] == size[0] and pixels.shape[0] == size[1]:
        return pixels
    from PIL import Image

    cut = np.ascontiguousarray(fit_to_aspect(pixels, size))
    return np.array(Image.fromarray(cut).resize(size, Image.Resampling.LANCZOS))  # writable, like a decode
