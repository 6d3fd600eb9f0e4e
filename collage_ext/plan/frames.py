"""Collage frames of one sd-scripts subset: planning, slots, static files. No sd-scripts import.

The adapter in ``dataset.py`` turns each enabled subset into a ``SubsetFrames``; everything here is
plain Python so it is testable without torch or sd-scripts.
"""

from __future__ import annotations

import errno
import hashlib
import io
import json
import logging
import os
import tempfile
from collections.abc import Callable, Hashable, Iterator, MutableMapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image
from PIL.PngImagePlugin import PngInfo

from collage_ext.core.version import __version__
from collage_ext.plan.collage import Collage, FrameParams, Source
from collage_ext.core.config import CollageConfig
from collage_ext.core.errors import CollageCacheError, CollageInputError
from collage_ext.core.filemodes import write_bytes_atomic
from collage_ext.geometry.grouping import Group
from collage_ext.core.parallel import ordered_map
from collage_ext.plan.policy import FailureLog, compose
from collage_ext.plan.pool import Pool
from collage_ext.pixels.render import RenderResult
from collage_ext.core.types import Size

logger = logging.getLogger(__name__)


class SlotCaption(str):
    """A caption string that remembers which collage slot it belongs to.

    sd-scripts hands ``process_caption`` only the caption string; this subclass carries the slot
    key through that call so the adapter can build the frame's merged caption there.
    """

    slot: str

    def __new__(cls, text: str, slot: str) -> SlotCaption:
        obj = super().__new__(cls, text)
        obj.slot = slot
        return obj

    def __reduce__(self) -> tuple[object, ...]:  # keep the slot through pickling into DataLoader workers
        return (SlotCaption, (str(self), self.slot))


@dataclass
class SubsetFrames:
    """The collage plan of one subset and the frames it yields.

    ``memo`` (the studio's, kept across its re-plans after edits) holds sampled frame params and merged
    captions by what they are made from: ``Collage.make_params`` is a pure function of the collage
    settings, the sources (key, size, crop box, caption), seed, epoch and frame, ``Collage.caption`` of
    the settings and the params; so after an edit only the frames whose sources changed are sampled
    and captioned again. The adapter and the CLI pass none.
    """

    pool: Pool
    collage: Collage
    _epoch_groups: tuple[int, list[Group]] | None = field(default=None, repr=False)
    _params: dict[tuple[int, int], FrameParams] = field(default_factory=dict, repr=False)
    memo: MutableMapping[Hashable, Any] | None = field(default=None, repr=False, compare=False)

    @property
    def slot_count(self) -> int:
        """Collage frames per epoch (dynamic mode): constant across epochs by construction."""
        return len(self.pool.structure.sizes)

    def groups(self, epoch: int) -> list[Group]:
        """The epoch's collage groups, computed once per epoch per process."""
        if self._epoch_groups is None or self._epoch_groups[0] != epoch:
            self._epoch_groups = (epoch, self.pool.collage_groups(epoch))
            self._params.clear()
        return self._epoch_groups[1]

    def sources_of(self, group: Group) -> list[Source]:
        """The sources of a group, in planning order."""
        return [self.pool.sources[i] for i in group]

    def params(self, slot: int, epoch: int) -> FrameParams:
        """The frame parameters of a dynamic slot in an epoch (cached so image and caption agree)."""
        group = self.groups(epoch)[slot]
        key = (slot, epoch)
        if key not in self._params:
            self._params[key] = self.make_params(self.sources_of(group), epoch=epoch, frame=self.pool.slot_frame(slot))
        return self._params[key]

    def make_params(self, sources: Sequence[Source], *, epoch: int, frame: Size) -> FrameParams:
        """``Collage.make_params`` with the pool's seed (through ``memo`` when there is one)."""
        if self.memo is None:
            return self.collage.make_params(sources, seed=self.pool.seed, epoch=epoch, frame=frame)
        key = (self._settings, tuple((s.key, s.path, s.size, s.crop, s.caption) for s in sources), self.pool.seed,
               epoch, tuple(frame))
        found = self.memo.get(key)
        if found is None:
            found = self.collage.make_params(sources, seed=self.pool.seed, epoch=epoch, frame=frame)
            self.memo[key] = found
        return found

    def caption(self, params: FrameParams) -> str:
        """``Collage.caption`` of ``params`` (through ``memo`` when there is one: a pure function of the two)."""
        if self.memo is None:
            return self.collage.caption(params)
        key = ("caption", self._settings, params)
        found = self.memo.get(key)
        if found is None:
            found = self.collage.caption(params)
            self.memo[key] = found
        return found

    @cached_property
    def _settings(self) -> str:
        """The collage's settings as a key (``repr`` of the dataclass: config, frame, grammar, budget...)."""
        return repr(self.collage)

    def remember(self, slot: int, epoch: int, params: FrameParams) -> None:
        """Keep the params a frame was actually rendered with (a rebuilt frame's caption follows them)."""
        self._params[(slot, epoch)] = params


def frame_digest(params: FrameParams, sources: list[Source], collage: Collage, caption: str) -> str:
    """A content hash of everything that decides a static frame's pixels and caption.

    Source files are fingerprinted by size and modification time, so an edited image, caption,
    crop box, layout or setting gives a new file name and no stale cache is ever reused.
    """
    files = []
    for source in sources:
        try:
            stat = os.stat(source.path)
        except OSError as exc:
            error = CollageInputError(f"image {source.path} cannot be read any more ({exc.strerror or exc}); it was "
                                      "there when the dataset was read: put it back or restart training")
            error.source_path = source.path  # type: ignore[attr-defined]  # for the error policy
            raise error from exc
        files.append([source.key, stat.st_size, stat.st_mtime_ns, list(source.crop) if source.crop else None])
    payload = {
        "v": __version__,
        "params": params.to_json(),
        "files": files,
        "config": collage.config.to_metadata(),
        "frame": list(collage.frame),
        "caption": caption,
    }
    if collage.alpha_mask:  # the sources' alpha is in the file's alpha channel (absent: the names stay as before)
        payload["alpha_mask"] = True
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode("utf-8")).hexdigest()[:24]


#: zlib level of every frame PNG (preview, export, the static cache). Measured on 1024 px photo frames
#: (benchmarks/README.md, "PNG level"): level 1 writes in about half the time of Pillow's default 6
#: for files about 15 % larger; levels 2-3 save almost nothing over 1, 7-9 nothing over 6.
PNG_LEVEL = 1


def encode_png(image: Image.Image, pnginfo: PngInfo | None = None) -> bytes:
    """The frame as PNG bytes at ``PNG_LEVEL`` (lossless: the pixels are exactly the frame's)."""
    out = io.BytesIO()
    image.save(out, format="PNG", compress_level=PNG_LEVEL, pnginfo=pnginfo)
    return out.getvalue()


def write_png_atomic(image: Image.Image, path: Path, pnginfo: PngInfo | None = None) -> None:
    """Write a PNG so that a reader never sees a partial file (temp file in the same folder, then rename).

    Two runs rendering the same frame write the same bytes under the same content-hashed name;
    each writes its own temporary file, and ``os.replace`` is atomic, so a reader sees either no
    file or a complete one. A failed write (disk full, folder gone read-only) removes its
    temporary file and raises ``CollageCacheError``: nothing partial is left under a final name.
    """
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        write_bytes_atomic(path, encode_png(image, pnginfo))
    except OSError as exc:
        raise CollageCacheError(_cache_message(path.parent, f"cannot write {path.name}", exc)) from exc


#: PNG text chunk holding the sha256 of a cached file's pixels: a file is reused only when they match.
CHECKSUM_KEY = "collage_ext_sha256"


def pixel_digest(pixels: np.ndarray) -> str:
    """sha256 of an image array's shape and bytes."""
    array = np.ascontiguousarray(pixels)
    return hashlib.sha256(repr(array.shape).encode("ascii") + array.tobytes()).hexdigest()


def write_checked_png(pixels: np.ndarray, path: Path) -> None:
    """Write a cache PNG atomically, with the checksum of its pixels in a text chunk (``cached_png_problem``)."""
    info = PngInfo()
    info.add_text(CHECKSUM_KEY, pixel_digest(pixels))
    write_png_atomic(Image.fromarray(pixels), path, info)


def cached_png_problem(path: str | Path, pixels: np.ndarray | None = None) -> str | None:
    """None when a cache PNG holds the pixels it was written with, else what is wrong with it.

    A cached file's name is a hash of what it should show, not of what it holds: a file truncated,
    corrupted or overwritten (even by a valid PNG of the same size) keeps its name, so its pixels
    are checked against the checksum written with them. ``pixels`` are the file's pixels when the
    caller decoded them already (sd-scripts' loader); an array of another channel count is decoded here.
    """
    try:
        with Image.open(path) as image:
            expected = image.info.get(CHECKSUM_KEY)
            if pixels is None or np.ndim(pixels) != 3 or np.shape(pixels)[2] != len(image.getbands()):
                image.load()
                pixels = np.asarray(image)
    except FileNotFoundError:
        return "is missing"
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as exc:
        return f"cannot be read ({type(exc).__name__}: {exc})"
    if expected is None:
        return "carries no collage_ext checksum (written by another program or an older collage_ext)"
    if pixel_digest(pixels) != expected:
        return "does not hold the pixels it was written with (overwritten or corrupt)"
    return None


def ensure_cached_png(path: str | Path, make: Callable[[], np.ndarray]) -> bool:
    """Check a cache PNG by content and write it (again) from ``make()`` unless intact; True when written."""
    problem = cached_png_problem(path)
    if problem is None:
        return False
    if problem != "is missing":
        logger.warning(f"collage_ext: cached file {path} {problem}; rendering it again")
    write_checked_png(make(), Path(path))
    return True


def ensure_writable(folder: Path) -> None:
    """Fail at start-up, before any model loads, when the static cache folder cannot be written.

    Static frames and sd-scripts' latent / text-encoder ``.npz`` caches are written there; finding
    out at the first write would cost a model load (or happen hours later, at the first new frame).

    Raises:
        CollageCacheError: naming the folder, the cause and the fix.
    """
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as exc:
        raise CollageCacheError(_cache_message(folder, "cannot be written", exc)) from exc


def unwritable_reason(folder: Path) -> str | None:
    """Why ``ensure_writable`` would fail on ``folder``, or None; creates nothing (``collage-ext check``)."""
    probe = folder
    while not probe.exists() and probe.parent != probe:
        probe = probe.parent
    try:
        if probe == folder and folder.is_dir():
            with tempfile.TemporaryFile(dir=folder):
                pass
            return None
        if not probe.is_dir():
            raise NotADirectoryError(errno.ENOTDIR, os.strerror(errno.ENOTDIR), str(probe))
        if os.statvfs(probe).f_flag & os.ST_RDONLY:
            raise OSError(errno.EROFS, os.strerror(errno.EROFS), str(probe))
        if not os.access(probe, os.W_OK | os.X_OK):
            raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(probe))
    except OSError as exc:
        return _cache_message(folder, "cannot be written", exc)
    return None


def _cache_message(folder: Path, what: str, exc: OSError) -> str:
    cause = exc.strerror or str(exc)
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        fix = "free space on that disk, or set collage_cache_dir to a folder on a disk with room"
    else:
        fix = "make the folder writable, or set collage_cache_dir to a writable folder"
    return (f"collage cache folder {folder} {what}: {cause}; static frames and sd-scripts' caches are written "
            f"there: {fix} (no partial file is left under a frame's name)")


def uses_alpha(alpha_mask: bool, config: CollageConfig) -> bool:
    """Whether sd-scripts' ``alpha_mask`` is on for a subset, so every image's own alpha is its loss weight.

    The user's ``alpha_mask``, or ``collage_loss_mask`` (which turns it on so the padding weight reaches
    the loss). sd-scripts then reads every single image's alpha channel as its mask; a collage cell
    carries its source's alpha the same way, so an image is weighted alike alone and in a frame.
    """
    return bool(alpha_mask) or config.loss_mask


def with_alpha(rendered: RenderResult, config: CollageConfig) -> np.ndarray:
    """RGBA for sd-scripts' alpha-mask loss: each source's own alpha inside its cell (255 where it has none),
    ``pad_weight`` on padding when the loss mask is on (else 255)."""
    if rendered.alpha is not None:
        alpha = rendered.alpha.copy()
    else:
        alpha = np.full(rendered.image.shape[:2], 255, np.uint8)
    if config.loss_mask and rendered.mask is not None:
        alpha[rendered.mask] = round(config.pad_weight * 255)
    return np.concatenate([rendered.image, alpha[:, :, None]], axis=2)


def frame_pixels(rendered: RenderResult, config: CollageConfig) -> np.ndarray:
    """A frame as it is written (static cache, export): RGBA when it has loss weights to carry, else RGB."""
    if (config.loss_mask and rendered.mask is not None) or rendered.alpha is not None:
        return with_alpha(rendered, config)
    return rendered.image


def render_static_frame(frames: SubsetFrames, group: Group, variant: int, cache_dir: Path,
                        failures: FailureLog, warnings: list[str] | None = None) -> tuple[Path, str, bool]:
    """Plan, render (unless cached) and caption one static frame; returns (path, caption, rendered).

    The file name is a hash of the plan and the sources' fingerprints; a file of that name is reused
    only when it holds the pixels it was written with (``cached_png_problem``), else it is rendered
    again with a warning (appended to ``warnings`` when given: a pool worker hands it to the parent,
    whose log the user reads). A source that fails to decode under ``skip`` changes the plan, so the
    rebuilt frame gets its own name.
    """
    collage = frames.collage
    sources = [s for s in frames.sources_of(group) if s.path not in failures.failed]
    sources, params, path, caption = _planned_frame(frames, sources, variant, cache_dir, failures,
                                                    frame=frames.pool.frame_for(group))
    problem = cached_png_problem(path)
    if problem is None:
        return path, caption, False
    if problem != "is missing":
        message = f"collage_ext: static frame {path} {problem}; rendering it again"
        if warnings is None:
            logger.warning(message)
        else:
            warnings.append(message)
    rendered, used = compose(collage, sources, params, failures, with_mask=frames.pool.config.loss_mask)
    if used is not params:
        kept = [s for s in sources if s.path not in failures.failed]
        caption = collage.caption(used)
        path = cache_dir / f"collage_{frame_digest(used, kept, collage, caption)}.png"
    write_checked_png(frame_pixels(rendered, frames.pool.config), path)
    return path, caption, True


def render_static_frames(frames: SubsetFrames, items: Sequence[tuple[Group, int]], cache_dir: Path,
                         failures: FailureLog, *, jobs_n: int | None = None,
                         progress: Callable[[Iterator[Any], int], Iterator[Any]] | None = None,
                         ) -> Iterator[tuple[Path, str, bool]]:
    """``render_static_frame`` for every ``(group, variant)``, in order, on ``jobs_n`` processes.

    Each worker writes its frames itself (atomically, under content-hashed names) and sends back the
    path, caption and the files that failed. A frame whose sources a serial run would already have
    seen fail (a failure in an earlier frame that the worker did not know of) is planned and rendered
    again here, so paths, captions and failures are what the serial loop gives.
    """
    known = set(failures.failed)

    parent = os.getpid()

    def work(item: tuple[Group, int]) -> tuple[Path, str, bool, dict[str, str], list[str], int]:
        if os.getpid() != parent:
            failures.quiet = True  # this worker's copy: the parent logs what it is sent
        before = set(failures.failed)
        notes: list[str] = []
        path, caption, new = render_static_frame(frames, item[0], item[1], cache_dir, failures, notes)
        return path, caption, new, {p: m for p, m in failures.failed.items() if p not in before}, notes, os.getpid()

    results = ordered_map(work, items, jobs=jobs_n, progress=progress)
    for (path, caption, new, failed, notes, pid), item in zip(results, items):
        if pid != os.getpid():
            seen = set(failures.failed) - known
            if seen & {s.path for s in frames.sources_of(item[0])}:
                worker_path, worker_new = path, new
                path, caption, new = render_static_frame(frames, item[0], item[1], cache_dir, failures)
                new = new or (worker_new and worker_path == path)  # the worker wrote this very file: rendered now
                notes = []  # the frame was planned again here, and said so
            else:
                for key, message in failed.items():
                    failures.record(key, message)
        for note in notes:
            logger.warning(note)
        yield path, caption, new


def _planned_frame(frames: SubsetFrames, sources: list[Source], variant: int, cache_dir: Path,
                   failures: FailureLog, *, frame: Size | None) -> tuple[list[Source], FrameParams, Path, str]:
    """Params, cache path and caption of a static frame; a source gone since planning follows the policy."""
    collage = frames.collage
    while True:
        params = collage.make_params(sources, seed=frames.pool.seed, epoch=variant, frame=frame)
        caption = collage.caption(params)
        try:
            digest = frame_digest(params, sources, collage, caption)
            return sources, params, cache_dir / f"collage_{digest}.png", caption
        except CollageInputError as exc:
            path = getattr(exc, "source_path", None)
            if collage.config.on_error == "raise" or path is None or len(sources) < 2:
                raise
            failures.record(path, exc)
            sources = [s for s in sources if s.path != path]


def restore_static_frame(path: str, frames: SubsetFrames, group: Group, variant: int, failures: FailureLog,
                         problem: str = "was deleted from the cache") -> None:
    """Render a static frame again when its file vanished or went bad while training.

    The name is a hash of the frame's content, so the same sources give the same file back. When
    they changed too, the frame can no longer be the one sd-scripts bucketed and cached.

    Raises:
        CollageInputError: the frame's sources changed since start-up as well; names the frame and the fix.
    """
    Path(path).unlink(missing_ok=True)  # a bad file under the name would be taken as rendered
    rendered, _, _ = render_static_frame(frames, group, variant, Path(path).parent, failures)
    if str(rendered) != path:
        msg = (f"static frame {path} {problem} while training, and its source images changed since start-up, so it "
               "cannot be rendered again as planned; restart training")
        raise CollageInputError(msg)
    logger.warning(f"collage_ext: static frame {path} {problem} while training; rendered it again")
