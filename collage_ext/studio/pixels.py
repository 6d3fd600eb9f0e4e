"""The pixels the studio page shows: frames (exactly what training sees) and the dataset's images.

Rendered outside the studio's lock and cached by the files they are made of (``studio/cache.py``), so
a frame is decoded again only when one of its images or crop boxes changed; after a write, the frames
of the shown epoch that hold the edited image are rendered in the background before the page asks.
"""

from __future__ import annotations

import io
import logging
from pathlib import Path
from typing import Any, cast

from PIL import Image

from collage_ext.commands.preview import viewable
from collage_ext.core.errors import CollageError
from collage_ext.core.types import Size
from collage_ext.pixels.fit import FitMode
from collage_ext.pixels.images import load_fitted, read_image_size
from collage_ext.plan.collage import Source
from collage_ext.plan.frames import encode_png, frame_pixels
from collage_ext.plan.jobs import FrameJob
from collage_ext.studio.entries import stat_key
from collage_ext.studio.files import RefusedError
from collage_ext.studio.state import StudioState

logger = logging.getLogger(__name__)

#: Longest side of a source image shown in the crop editor, and of a thumbnail.
EDITOR_SIDE, THUMB_SIDE = 1600, 360
#: JPEG quality of what the page shows small (source and frame thumbnails) and of the crop editor's image.
#: Measured on 360 px thumbnails of photos: q80 is 15 KiB in 0.5 ms, q90 23 KiB; WebP q80 13 KiB in 3.5 ms
#: (benchmarks/README.md): JPEG q80 is the lightest to make and about as light to send.
THUMB_QUALITY, EDITOR_QUALITY = 80, 90
#: Seconds the check after a write waits for the page to fetch its new frame list first.
LIST_WAIT = 2.0
#: JPEG reductions while decoding a source for display (not training): any that leaves at least the size shown.
PREVIEW_GAPS = {8: 1.0, 4: 1.0, 2: 1.0}


class Pixels(StudioState):
    """Frame and source images for the page (a part of ``Studio``; call with the studio's state set up)."""

    def _pixel_key(self, job: FrameJob) -> tuple[Any, ...]:
        """What a frame's pixels are made of: layout, settings, each source's file and crop (not the captions)."""
        planned = job.planned
        files = tuple((s.path, s.key, s.size, s.crop, stat_key(s.path)) for s in job.sources)
        return (job.params.keys, job.params.layout, repr(planned.subset.config), files)

    def frame_image(self, epoch: int, name: str, *, thumb: bool = False) -> bytes:
        """The frame's pixels as PNG (exactly what training sees) or a JPEG thumbnail.

        Raises:
            RefusedError: no frame of that name in that epoch.
        """
        with self.lock:
            self._fresh()
            _, jobs = self._frameset(epoch)
            job = jobs.get(name)
            if job is None:
                raise RefusedError(f"no frame {name!r} in epoch {epoch}", 404)
            key = ("frame", self._pixel_key(job), thumb)
        # Rendered outside the studio's lock: other requests (and other frames) go on meanwhile. The same
        # frame asked twice at once is rendered once (the second request waits for it, then hits the cache).
        found = self._images.get(key)
        if found is not None:
            return found
        self._rendering.acquire(key)
        try:
            found = self._images.get(key)
            if found is None:
                self._decode_ahead(job)
                config = job.planned.subset.config  # RGBA when the frame carries loss weights, as the adapter hands it
                image = Image.fromarray(frame_pixels(job.render(with_mask=config.loss_mask, cells=self.cells), config))
                found = _encode(image, THUMB_SIDE if thumb else None)
                self._images.put(key, found)
            return found
        finally:
            self._rendering.release(key)

    def _decode_ahead(self, job: FrameJob) -> None:
        """Decode the frame's cells on every CPU at once (into ``cells``) before it is painted cell by cell.

        After a crop that regroups the epoch, every cell of the edited image's frame may be new, and each
        is a whole JPEG decode (~70 ms for a 12 MP photo); Pillow and libvips decode without the GIL.
        A file that fails here fails again in the render, which reports it as training would.
        """
        layout, collage = job.params.layout, job.planned.collage
        fit_mode = cast(FitMode, layout.fit or collage.config.fit_mode)
        sources = job.sources
        todo = [(sources[i], cell.size) for cell, i in zip(layout.cells, layout.order)]

        def decode(item: tuple[Source, Size]) -> None:
            try:
                collage.fitted(item[0], item[1], fit_mode, self.cells)
            except CollageError:
                pass

        if len(todo) > 1:
            list(self._decoders.map(decode, todo))

    def source_image(self, eid: object, *, thumb: bool = False) -> bytes:
        """An image of the dataset, upright (EXIF applied, the crop box's coordinates), as JPEG.

        Raises:
            RefusedError: the id is unknown, or the file lies outside the image folders (a symlink out).
        """
        with self.lock:
            e = self.entry(eid)
            real = self.folders.readable(e.path)
            key = ("src", str(real), stat_key(real), thumb)
        found = self._images.get(key)
        if found is None:
            found = _encode_source(real, THUMB_SIDE if thumb else EDITOR_SIDE)
            self._images.put(key, found)
        return found

    # -- after a write: render what the page will ask for before it asks ----------------------------
    def _warm(self, path: Path | None) -> None:
        """Start rendering the frames of the shown epoch that hold ``path`` (then the check), in the background.

        The check waits until the page has its new frame list (at most ``LIST_WAIT``): on a small machine
        its quarter second of CPU would otherwise be taken from the requests the page waits for.

        The page asks for them after its next round of requests (state, sources, frames); by then they
        are rendered or rendering (``frame_image`` renders a frame once and lets the page's request wait
        for it). Only the newest write's work matters: an older one still queued is skipped.
        """
        version = self.version
        self._background.submit(self._prerender, path, version)

    def _prerender(self, path: Path | None, version: int) -> None:
        try:
            with self.lock:
                if self.version != version:
                    return  # another write came since: its own pre-render follows
                self._fresh()
                epoch = self._epoch
                fs, _ = self._frameset(epoch)
                names = [j.name for j in fs.jobs if path is not None and any(s.path == str(path) for s in j.sources)]

            def render(name: str) -> None:
                if self.version == version:
                    self.frame_image(epoch, name, thumb=True)

            list(self._renderers.map(render, names))
            with self._listed:  # the page's frame list first: the check's CPU would slow it down
                self._listed.wait_for(lambda: self._listed_version >= version, timeout=LIST_WAIT)
            if self.version == version:
                self.check(epoch)
        except Exception as exc:  # noqa: BLE001 - only a warm-up: the page's own request reports any error
            logger.debug(f"studio: pre-render after a write failed: {type(exc).__name__}: {exc}")


def _encode(image: Image.Image, side: int | None) -> bytes:
    """PNG of the exact pixels (``side=None``), else a JPEG no larger than ``side`` (weights < 1 on a checkerboard)."""
    if side is None:
        return encode_png(image)
    out = io.BytesIO()
    if max(image.size) > side:
        image = image.copy()
        image.thumbnail((side, side), Image.Resampling.LANCZOS)
    viewable(image).save(out, format="JPEG", quality=THUMB_QUALITY)
    return out.getvalue()


def _encode_source(path: Path, side: int) -> bytes:
    """An image upright (EXIF applied) no larger than ``side``, as JPEG.

    Decoded through ``images.load_fitted`` like a frame's cell: a JPEG is reduced while decoding, as
    far as the size shown allows (``PREVIEW_GAPS``: a 12 MP photo's 360 px thumbnail decodes at 1/8
    scale, 4x less work than the 1/4 a training cell's quality rule would pick), and alpha is laid
    on the fill colour.
    """
    width, height = read_image_size(path)
    k = min(1.0, side / max(width, height))
    cell = Size(max(1, round(width * k)), max(1, round(height * k)))
    image, _ = load_fitted(path, cell, "contain", draft_gaps=PREVIEW_GAPS)
    out = io.BytesIO()
    image.save(out, format="JPEG", quality=THUMB_QUALITY if side <= THUMB_SIDE else EDITOR_QUALITY)
    return out.getvalue()
