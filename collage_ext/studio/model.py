"""The dataset as the studio page sees it: sources, findings, frames, and the edits the page makes.

Everything is read through the CLI's own functions, so the page shows what ``preview`` and
``check`` show: ``datasets.load_project`` (dataset TOML, training TOML, trainer arguments),
``framesets.plan_project`` / ``frames_for`` (the frames of an epoch), ``preview.frame_record``
(captions, token counts, caption warnings) and ``check.run_check`` (findings). After every write
the project is read again (on the next read, so the write itself answers at once), so the next frame
the page asks for is rendered from the new files.

An edit touches one image, so everything is cached by *content*, not by the dataset's version
(``studio/cache.py``): rendered frames and source images by the files they are made of, decoded cells
by file and cell, frame and source descriptions by what they show, image-quality measures by file
(``measurecache``, also on disk). After an edit only the edited image is decoded and measured again,
and only the frames that hold it are rendered again; frames render outside the studio's lock, so
the page's other requests are answered meanwhile and each frame shows as soon as it is ready.
"""


from __future__ import annotations

import concurrent.futures
import io
import logging
import os
import re
import secrets
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from PIL import Image

from collage_ext.captions.subset import grammar_of
from collage_ext.commands.check import CheckReport, run_check
from collage_ext.pixels.crops import crop_path_for, parse_crop_box, read_crop_box
from collage_ext.kohya.datasets import DatasetSpec, Project, SubsetSpec, glob_images, load_project
from collage_ext.core.errors import CollageConfigError, CollageError, CollageInputError
from collage_ext.plan.frames import encode_png
from collage_ext.plan.framesets import FrameJob, FrameSet, PlannedSubset, TextEncoder, frames_for, plan_project, text_encoder_for
from collage_ext.plan.frames import frame_pixels
from collage_ext.pixels.images import load_fitted, read_image_size
from collage_ext.commands.measurecache import MeasureCache
from collage_ext.core.parallel import cpu_count
from collage_ext.commands.preview import frame_record, viewable
from collage_ext.core.types import Size
from collage_ext.studio.cache import CELL_BUDGET, IMAGE_BUDGET, ByteLRU, KeyLocks, cell_bytes
from collage_ext.studio.files import Folders, History, RefusedError, dropped_folder, file_version, move_group, sidecars
from collage_ext.studio.tokens import caption_view, token_view

logger = logging.getLogger(__name__)

#: Longest side of a source image shown in the crop editor, and of a thumbnail.
EDITOR_SIDE, THUMB_SIDE = 1600, 360
#: Largest caption file the studio plans frames with. The text encoders read 75-512 tokens (a few KB);
#: merging a 10 MB caption into frames took half a minute per frame, with the studio's lock held.
MAX_CAPTION_BYTES = 1 << 20
#: Seeds sd-scripts accepts: it seeds numpy, whose seeds are 0 to 2**32 - 1.
SEED_MAX = 2**32 - 1
#: JPEG quality of what the page shows small (source and frame thumbnails) and of the crop editor's image.
#: Measured on 360 px thumbnails of photos: q80 is 15 KiB in 0.5 ms, q90 23 KiB; WebP q80 13 KiB in 3.5 ms
#: (benchmarks/README.md): JPEG q80 is the lightest to make and about as light to send.
THUMB_QUALITY, EDITOR_QUALITY = 80, 90
#: JPEG reductions while decoding a source for display (not training): any that leaves at least the size shown.
PREVIEW_GAPS = {8: 1.0, 4: 1.0, 2: 1.0}


@dataclass
class Entry:
    """One image of the dataset (kept or dropped) and where it lives."""

    id: str
    path: Path
    dataset: DatasetSpec
    subset: SubsetSpec
    caption: str
    dropped: bool = False

    @property
    def caption_file(self) -> Path:
        """The caption file sd-scripts reads for this image (the subset's ``caption_extension``)."""
        return self.path.with_suffix(str(self.subset.params.get("caption_extension") or ".caption"))

    @property
    def crop_file(self) -> Path:
        """The crop sidecar (``collage_crop_extension``)."""
        return crop_path_for(self.path, self.subset.config.crop_extension)


#: Added to a dropped image's id when a new image in its folder has taken its name.
DROPPED_SUFFIX = " (dropped)"


def entry_id(dataset: DatasetSpec, subset: SubsetSpec, path: str | os.PathLike[str]) -> str:
    """A stable id for an image: dataset and subset position in the TOML plus the file name.

    Examples:
        >>> from types import SimpleNamespace as N
        >>> entry_id(N(index=0), N(index=2), "/data/10_cat/img 1.png")
        '0/2/img 1.png'
    """
    return f"{dataset.index}/{subset.index}/{os.path.basename(path)}"


class Studio:
    """The loaded dataset, re-read after every write; all methods are safe to call from several threads."""

    def __init__(self, dataset: str | os.PathLike[str] | None, *, config: str | os.PathLike[str] | None = None,
                 trainer_args: Sequence[str] = (), seed: int | None = None, model: str = "auto") -> None:
        self.dataset, self.config, self.trainer_args, self.model = dataset, config, list(trainer_args), model
        self.seed = seed
        self.lock = threading.RLock()
        self._check_lock = threading.Lock()
        self.version = 0
        self._stale = False
        self._frames: dict[tuple[int, int], tuple[FrameSet, dict[str, FrameJob]]] = {}
        self._check: tuple[int, CheckReport] | None = None
        self._images: ByteLRU[bytes] = ByteLRU(IMAGE_BUDGET, len)
        self.cells: ByteLRU[Any] = ByteLRU(CELL_BUDGET, cell_bytes)
        self._rendering = KeyLocks()
        self._described: dict[tuple[Any, ...], dict[str, Any]] = {}
        self._records: dict[tuple[Any, ...], dict[str, Any]] = {}
        self._views: ByteLRU[dict[str, Any]] = ByteLRU(8192, lambda view: 1)  # token views by caption text
        self.measures = MeasureCache()
        self._epoch = 1  # the epoch the page shows (last asked for): an edit pre-renders its frames there
        self._background = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="studio-prerender")
        # Decoding (Pillow, libvips) runs without the GIL: one thread per CPU renders the frames of an edit at once.
        self._renderers = concurrent.futures.ThreadPoolExecutor(cpu_count(), thread_name_prefix="studio-render")
        self.project = self._load()
        self.encoder: TextEncoder = text_encoder_for(self.project.run.values, model)
        self.history = History(self.folders)
        self._plan()

    # -- reading ------------------------------------------------------------------------------
    def _load(self) -> Project:
        project = load_project(self.dataset, config_file=self.config, trainer_args=self.trainer_args, seed=self.seed,
                               strict=False)
        dirs = [s.image_dir for _, s in project.subsets() if s.image_dir and not s.params.get("metadata_file")]
        dirs += [s.image_dir for d in project.datasets for s in d.subsets
                 if s.image_dir and os.path.isdir(s.image_dir) and not s.params.get("metadata_file")]
        shown = [s.image_dir for d in project.datasets for s in d.subsets
                 if s.image_dir and s.params.get("metadata_file")]
        self.folders = Folders(dirs, [self.config] if self.config else [], read_only=shown)
        if hasattr(self, "history"):
            self.history.folders = self.folders
        self.entries: dict[str, Entry] = {}
        #: Images left out of the plan and the check, and why: one of their files leads out of the dataset
        #: (nothing is read through it), or the caption file is larger than ``MAX_CAPTION_BYTES``.
        self.outside: dict[str, str] = {}
        for dataset in project.datasets:
            for subset in dataset.subsets:
                inside = []
                for image in subset.images:
                    eid = entry_id(dataset, subset, image.path)
                    entry = Entry(eid, Path(image.path), dataset, subset, image.caption)
                    why = self.folders.outside([entry.path, entry.caption_file, entry.crop_file]) or _too_long(entry)
                    if why is not None:  # one rule for reads and writes: nothing outside is read, shown or framed
                        entry.caption = ""
                        self.outside[eid] = why
                    else:
                        inside.append(image)
                    self.entries[eid] = entry
                subset.images = inside
                if subset.image_dir and not subset.params.get("metadata_file"):
                    for path in glob_images(str(dropped_folder(Path(subset.image_dir)))):
                        eid = entry_id(dataset, subset, path)
                        if eid in self.entries:  # a new file took its name: both stay listed
                            eid += DROPPED_SUFFIX
                        self.entries.setdefault(eid, Entry(eid, Path(path), dataset, subset, "", dropped=True))
        return project

    def _plan(self) -> None:
        self.broken: dict[str, str] = {}
        for entry in self.entries.values():
            if (entry.dropped or entry.id in self.outside or not entry.subset.config.enabled
                    or entry.subset.kept_index is None):
                continue
            try:
                read_crop_box(entry.path, read_image_size(entry.path), entry.subset.config.crop_extension)
            except CollageError as exc:
                self.broken[str(entry.path)] = str(exc)
        self.error: str | None = None
        try:
            self.planned: list[PlannedSubset] = plan_project(self.project, self.encoder,
                                                             exclude=frozenset(self.broken))
        except CollageError as exc:
            self.planned, self.error = [], str(exc)
        self._frames.clear()
        self._check = None

    def reload(self) -> None:
        """Read the dataset again ("Reload files": files changed on disk).

        Every cache is keyed by content (files by path, size, mtime and ctime), so what changed on disk
        misses and the rest is reused; the in-memory descriptions are dropped outright.
        """
        with self.lock:
            self._described.clear()
            self._records.clear()
            self._reread()

    def _reread(self) -> None:
        self.project = self._load()
        self._plan()
        self._stale = False
        self.version += 1

    def _changed(self) -> None:
        """After a write: a new version now, the project read again when the page next asks (``_fresh``)."""
        self._stale = True
        self.version += 1

    def _fresh(self) -> None:
        """Read the project again if a write made it stale (call with the lock held)."""
        if self._stale:
            version = self.version
            self._reread()
            self.version = version

    @property
    def mode(self) -> str:
        """``static`` or ``dynamic`` (``off`` plans no frames either way)."""
        return "static" if self.project.mode == "static" else "dynamic"

    def state(self) -> dict[str, Any]:
        """Header facts for the page."""
        with self.lock:
            self._fresh()
            return self._state()

    def _state(self) -> dict[str, Any]:
        p = self.project
        return {"version": self.version, "source": p.source, "seed": p.seed, "seed_why": p.seed_why,
                "mode": p.mode, "mode_why": p.mode_why, "encoder": self.encoder.label, "exact": self.encoder.exact,
                "static": self.mode == "static", "error": self.error, "can_undo": bool(self.history.changes),
                "undo": self.history.changes[-1].what if self.history.changes else None,
                "config": str(self.config) if self.config else None,
                "subsets": [{"id": f"{d.index}/{s.index}", "name": s.name, "image_dir": s.image_dir,
                             "collage": s.config.enabled, "skipped": s.skipped, "is_reg": s.is_reg}
                            for d in p.datasets for s in d.subsets]}

    def entry(self, eid: object) -> Entry:
        """The image with this id.

        Raises:
            RefusedError: no image of the dataset has this id (the page only sends ids it was given).
        """
        found = self.entries.get(eid) if isinstance(eid, str) else None
        if found is None:
            raise RefusedError(f"no image with id {eid!r} in this dataset", 404)
        return found

    def sources(self, epoch: int = 1) -> dict[str, Any]:
        """Every image with caption, size, crop box and the frames of ``epoch`` it is in."""
        with self.lock:
            self._fresh()
            frames_of: dict[str, list[str]] = {}
            if self.entries:
                _, jobs = self._frameset(epoch)
                for name, job in jobs.items():
                    for source in job.sources:
                        frames_of.setdefault(source.path, []).append(name)
            described: dict[tuple[Any, ...], dict[str, Any]] = {}
            out = []
            for e in self.entries.values():
                frames = frames_of.get(str(e.path), [])
                key = (e.id, e.dropped, e.caption, tuple(frames), self.broken.get(str(e.path)),
                       _stat_key(e.path), _stat_key(e.caption_file), _stat_key(e.crop_file))
                found = self._described.get(key)
                if found is not None:
                    try:
                        self.folders.readable(e.path)  # still inside the image folders (no symlink out since)?
                    except RefusedError:
                        found = None
                if found is None:
                    found = self._describe(e, frames)
                described[key] = found
                out.append(found)
            self._described = described  # what is shown now: the next call reuses what did not change
            return {"version": self.version, "epoch": epoch, "sources": out}

    def _describe(self, e: Entry, frames: list[str]) -> dict[str, Any]:
        size: Size | None = None
        crop: list[int] | None = None
        problem = self.broken.get(str(e.path))
        why = self.outside.get(e.id) or self.folders.outside([e.path, e.caption_file, e.crop_file])
        if why:  # one of its files leads out of the dataset: show nothing read through it
            problem, e = why, Entry(e.id, e.path, e.dataset, e.subset, "", e.dropped)
        else:
            try:
                size = read_image_size(e.path)
                box = read_crop_box(e.path, size, e.subset.config.crop_extension)
                crop = [int(v) for v in box] if box else None
            except CollageError as exc:
                problem = problem or str(exc)
        text = None if why else self._caption_text(e)
        g = grammar_of(e.subset.namespace())
        cfg = e.subset.config
        view = self._caption_view(text if text is not None else e.caption, g, cfg.repeat_phrases,
                                  cfg.repeat_count) if not e.dropped else None
        return {"id": e.id, "name": e.path.name, "path": str(e.path), "subset": f"{e.dataset.index}/{e.subset.index}",
                "subset_name": e.subset.name, "collage": e.subset.config.enabled, "dropped": e.dropped,
                "size": list(size) if size else None, "crop": crop, "caption": e.caption,
                "caption_file": e.caption_file.name, "caption_text": text, "frames": frames, "problem": problem,
                "caption_version": None if self.folders.outside([e.caption_file]) else file_version(e.caption_file),
                "crop_version": None if self.folders.outside([e.crop_file]) else file_version(e.crop_file),
                "tokens": view, "can_write": not e.subset.params.get("metadata_file")}

    def _caption_text(self, e: Entry) -> str | None:
        try:
            if not e.caption_file.is_file() or self.folders.outside([e.caption_file]):
                return None
            return e.caption_file.read_bytes().decode("utf-8-sig")
        except (OSError, UnicodeDecodeError):
            return None

    def check(self, epoch: int = 1) -> dict[str, Any]:
        """``collage-ext check``'s findings, attached to images where they name one (cached per version)."""
        with self._check_lock:  # one check at a time; a request that waited finds the fresh report
            with self.lock:
                self._fresh()
                cached = self._check
                version, project = self.version, self.project
            if cached is None or cached[0] != version:
                # Outside the main lock: check decodes every image, and the page must stay usable meanwhile. A
                # write during the check makes a new project; this report then belongs to the old version only.
                # Only images not in the quality cache (new or edited files) are decoded: after an edit, one.
                # One process: forking a threaded server is unsafe (parallel.py); the first check is the slow one.
                cached = (version, run_check(project, self.encoder, epoch=epoch, cache=self.measures, jobs_n=1))
        with self.lock:
            if self.version == version:
                self._check = cached
            report = cached[1]
            by_base = {os.path.splitext(str(e.path))[0]: e.id for e in self.entries.values()}
            per: dict[str, list[dict[str, Any]]] = {}
            general: list[dict[str, Any]] = []
            for f in report.findings:
                eid = by_base.get(os.path.splitext(f.file)[0]) if f.file else None
                (per.setdefault(eid, []) if eid else general).append(f.to_json())
            return {"version": version, "findings": per, "general": general,
                    "steps": report.summary["steps"]["describe"], "errors": len(report.errors),
                    "warnings": len(report.warnings)}

    # -- frames -------------------------------------------------------------------------------
    def _frameset(self, epoch: int) -> tuple[FrameSet, dict[str, FrameJob]]:
        if epoch < 1:
            raise CollageConfigError(f"epoch must be at least 1 (sd-scripts counts epochs from 1), got {epoch}")
        key = (self.version, 1 if self.mode == "static" else epoch)
        if key not in self._frames:
            fs = frames_for(self.planned, self.mode, key[1])
            self._frames = {key: (fs, {j.name: j for j in fs.jobs})}
        return self._frames[key]

    def frames(self, epoch: int) -> dict[str, Any]:
        """The frames of ``epoch`` (every static frame in static mode) with fill, spans, captions, sources."""
        with self.lock:
            self._fresh()
            fs, _ = self._frameset(epoch)
            self._epoch = epoch
            ids = {str(e.path): e.id for e in self.entries.values()}
            out = []
            fills = []
            records: dict[tuple[Any, ...], dict[str, Any]] = {}
            settings: dict[int, str] = {}
            for job in fs.jobs:
                key = self._job_key(job, settings) + (tuple(ids.get(s.path) for s in job.sources),)
                found = self._records.get(key)
                if found is None:
                    found = self._frame_json(job, ids)
                records[key] = found
                fills.append(found["fill_exact"])
                out.append({k: v for k, v in found.items() if k != "fill_exact"})
            self._records = records  # the frames shown now: an edit recomputes only the frames it changed
            singles = sum(n for _, _, n in fs.singles)
            return {"version": self.version, "epoch": fs.epoch, "mode": self.mode, "frames": out, "singles": singles,
                    "mean_fill": round(sum(fills) / len(fills), 4) if fills else None, "seed": self.project.seed}

    def _frame_json(self, job: FrameJob, ids: dict[str, str]) -> dict[str, Any]:
        record = frame_record(job, self.encoder)
        stats = job.stats  # framestats.frame_stats: the numbers preview, check and the log show
        g = job.planned.collage.grammar
        cfg = job.planned.subset.config
        return {
            "name": job.name, "layout": record.layout, "label": record.group_label,
            "frame": list(job.params.layout.frame), "caption": record.caption, "warnings": record.warnings,
            "fill": round(stats.fill, 4), "fill_exact": stats.fill,
            "sources": [{"id": ids.get(s.path), "name": Path(s.path).name, "span": round(span, 4)}
                        for s, span in zip(job.sources, stats.spans)],
            "cells": record.info["cells"],
            "tokens": self._token_view(record.caption, g, cfg.repeat_phrases)}

    def _caption_view(self, text: str, grammar: Any, phrases: Any, count: Any) -> dict[str, Any]:
        key = ("caption", text, repr(grammar), repr(phrases), count)
        found = self._views.get(key)
        if found is None:
            found = caption_view(text, self.encoder.budget, self.encoder.counter, grammar, phrases, count)
            self._views[key] = found
        return found

    def _token_view(self, text: str, grammar: Any, phrases: Any) -> dict[str, Any]:
        key = ("tokens", text, repr(grammar), repr(phrases))
        found = self._views.get(key)
        if found is None:
            found = token_view(text, self.encoder.budget, self.encoder.counter, grammar, phrases=phrases)
            self._views[key] = found
        return found

    def _job_key(self, job: FrameJob, settings: dict[int, str] | None = None) -> tuple[Any, ...]:
        """What a frame's pixels and caption are made of: name, params, settings, and each source's file and crop."""
        settings = {} if settings is None else settings
        planned = job.planned
        if id(planned) not in settings:
            settings[id(planned)] = repr((planned.subset.config, planned.collage.frame, planned.dataset.index,
                                          planned.subset.index, job.slot is None))
        files = tuple((s.path, s.key, s.size, s.crop, s.caption, _stat_key(s.path)) for s in job.sources)
        return (job.name, job.slot, job.variant, job.params, settings[id(planned)], files)

    def _pixel_key(self, job: FrameJob) -> tuple[Any, ...]:
        """What a frame's pixels are made of: layout, settings, each source's file and crop (not the captions)."""
        planned = job.planned
        files = tuple((s.path, s.key, s.size, s.crop, _stat_key(s.path)) for s in job.sources)
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
                config = job.planned.subset.config  # RGBA when the frame carries loss weights, as the adapter hands it
                image = Image.fromarray(frame_pixels(job.render(with_mask=config.loss_mask, cells=self.cells), config))
                found = _encode(image, THUMB_SIDE if thumb else None)
                self._images.put(key, found)
            return found
        finally:
            self._rendering.release(key)

    def source_image(self, eid: object, *, thumb: bool = False) -> bytes:
        """An image of the dataset, upright (EXIF applied, the crop box's coordinates), as JPEG.

        Raises:
            RefusedError: the id is unknown, or the file lies outside the image folders (a symlink out).
        """
        with self.lock:
            e = self.entry(eid)
            real = self.folders.readable(e.path)
            key = ("src", str(real), _stat_key(real), thumb)
        found = self._images.get(key)
        if found is None:
            found = _encode_source(real, THUMB_SIDE if thumb else EDITOR_SIDE)
            self._images.put(key, found)
        return found

    # -- after a write: render what the page will ask for before it asks ----------------------------
    def _warm(self, path: Path | None) -> None:
        """Start rendering the frames of the shown epoch that hold ``path`` (then the check), in the background.

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
            if self.version == version:
                self.check(epoch)
        except Exception as exc:  # noqa: BLE001 - only a warm-up: the page's own request reports any error
            logger.debug(f"studio: pre-render after a write failed: {type(exc).__name__}: {exc}")

    # -- writing ------------------------------------------------------------------------------
    def _writable(self, e: Entry) -> None:
        if e.subset.params.get("metadata_file"):
            raise RefusedError(f"{e.path.name} belongs to a subset read from metadata_file "
                               f"{e.subset.params['metadata_file']}; edit that file (the studio writes only folders "
                               "of images with sidecar files)")
        if e.dropped:
            raise RefusedError(f"{e.path.name} is dropped; restore it first", 409)

    def _unchanged(self, path: Path, version: object, what: str) -> None:
        """Refuse a write based on an older read: ``version`` is ``file_version`` as the page last saw it.

        Raises:
            RefusedError: (409) the file changed since; the page says so and keeps the user's text.
        """
        if version is None:
            return
        if version != file_version(path):
            raise RefusedError(f"the {what} changed since this page read it (another tab or program wrote "
                               f"{path.name}); nothing was written: reload to see the new version, then "
                               "edit again (your text is still in the editor)", 409)

    def set_caption(self, eid: object, text: str, version: object = None) -> dict[str, Any]:
        """Write the image's caption file (atomically, the previous version kept for undo).

        ``version`` (``file_version`` of the caption the page edited) makes a write based on a stale read a 409.
        """
        with self.lock:
            e = self.entry(eid)
            self._writable(e)
            self._unchanged(e.caption_file, version, f"caption of {e.path.name}")
            if not text.strip():
                raise RefusedError("refusing to write an empty caption: sd-scripts stops on empty caption files; "
                                   "write a caption")
            old = self._caption_text(e)
            newline = "\n" if old is None or old.endswith("\n") else ""
            data = (text.rstrip("\n") + newline).encode("utf-8")
            self.history.write(e.caption_file, data, f"caption of {e.path.name}")
            self._changed()  # the plan is read again when the page asks for frames: this answer is at once
            self._warm(e.path)
            return self._describe(e, [])

    def set_crop(self, eid: object, box: Sequence[Any] | None, version: object = None) -> dict[str, Any]:
        """Write the image's crop sidecar (``left, top, right, bottom`` in pixels), or remove it for ``None``."""
        with self.lock:
            e = self.entry(eid)
            self._writable(e)
            self._unchanged(e.crop_file, version, f"crop box of {e.path.name}")
            if box is None:
                self.history.write(e.crop_file, None, f"crop box of {e.path.name} cleared")
            else:
                if (not isinstance(box, (list, tuple)) or len(box) != 4
                        or not all(isinstance(v, int) and not isinstance(v, bool) for v in box)):
                    raise RefusedError(f"a crop box is four whole pixel numbers [left, top, right, bottom], got {box!r}")
                line = ", ".join(str(v) for v in box)
                size = read_image_size(self.folders.readable(e.path))
                try:
                    parse_crop_box(line, size, source=str(e.crop_file))
                except CollageInputError as exc:
                    raise RefusedError(str(exc)) from exc
                self.history.write(e.crop_file, (line + "\n").encode("utf-8"), f"crop box of {e.path.name}")
            self._changed()
            self._warm(e.path)
            return self._describe(e, [])

    def drop(self, eid: object) -> None:
        """Take an image (and its caption and crop files) out of training: move it into ``_collage_studio/dropped``."""
        with self.lock:
            e = self.entry(eid)
            self._writable(e)
            if e.subset.image_dir is None:
                raise RefusedError(f"{e.path.name} has no image folder")
            files = sidecars(e.path, [e.caption_file.suffix, e.crop_file.suffix])
            shared = [f for f in files[1:] if self._shared(e, f)]  # img_004.png's drop leaves img_004.jpg's .txt
            move_group(files, dropped_folder(Path(e.subset.image_dir)), self.folders, copy=shared)
            logger.info(f"studio: dropped {e.path} (moved to {dropped_folder(Path(e.subset.image_dir))})")
            self._reread()
            self._warm(None)

    def restore(self, eid: object) -> None:
        """Put a dropped image (and its sidecars) back into its image folder."""
        with self.lock:
            e = self.entry(eid)
            if not e.dropped or e.subset.image_dir is None:
                raise RefusedError(f"{e.path.name} is not dropped", 409)
            files = sidecars(e.path, [e.caption_file.suffix, e.crop_file.suffix])
            home = Path(e.subset.image_dir)
            # A sidecar a same-stem image still uses stays as it is; the dropped copy goes to the history.
            shared = [f for f in files[1:] if os.path.lexists(home / f.name) and self._shared(e, home / f.name)]
            move_group([f for f in files if f not in shared], home, self.folders)
            for f in shared:
                self.history.retire(f)
            logger.info(f"studio: restored {e.path.name} into {e.subset.image_dir}")
            self._reread()
            self._warm(Path(e.subset.image_dir) / e.path.name)

    def _shared(self, e: Entry, sidecar: Path) -> bool:
        """Whether another image of the dataset (kept, in the sidecar's folder) reads ``sidecar`` too."""
        return any(o is not e and not o.dropped and o.path.parent == sidecar.parent
                   and o.path.with_suffix(sidecar.suffix) == sidecar for o in self.entries.values())

    def undo(self) -> str | None:
        """Undo the last caption or crop change; returns what was undone."""
        with self.lock:
            change = self.history.undo()
            self._changed()
            self._warm(None)
            return change.what if change else None

    def preview_tokens(self, eid: object, text: str) -> dict[str, Any]:
        """The token view of a caption being typed (nothing is written)."""
        e = self.entry(eid)
        cfg = e.subset.config
        return caption_view(text, self.encoder.budget, self.encoder.counter, grammar_of(e.subset.namespace()),
                            cfg.repeat_phrases, cfg.repeat_count)

    def set_seed(self, seed: int | None = None, *, write: bool = False) -> dict[str, Any]:
        """Use another collage seed (a fresh random one for ``None``); ``write`` saves it to the training TOML.

        Raises:
            RefusedError: ``write`` without a training TOML (``--config``).
        """
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed <= SEED_MAX):
            raise RefusedError(f"seed must be a whole number from 0 to {SEED_MAX} (2**32 - 1: sd-scripts seeds numpy "
                               f"with it), got {seed!r}", 400)
        with self.lock:
            value = secrets.randbelow(2**31) if seed is None else int(seed)
            if write:
                if not self.config:
                    raise RefusedError("start the studio with --config TRAIN.toml to save the seed; until then "
                                       f"pass --seed {value} to training")
                path = Path(self.config)
                text = path.read_text(encoding="utf-8")
                self.history.write(path, set_seed_line(text, value).encode("utf-8"), f"seed in {path.name}")
            self.seed = value
            self._reread()
            return self._state()


def _too_long(e: Entry) -> str | None:
    """Why the studio does not plan with ``e``'s caption file (larger than ``MAX_CAPTION_BYTES``), or ``None``."""
    try:
        size = e.caption_file.stat().st_size
    except OSError:
        return None
    if size <= MAX_CAPTION_BYTES:
        return None
    return (f"caption file {e.caption_file} is {size / 2**20:.1f} MiB; the text encoder reads a few hundred tokens "
            f"of it (a few KB), and the studio plans no frames with captions over {MAX_CAPTION_BYTES >> 20} MiB: "
            "write a shorter caption")


def set_seed_line(text: str, seed: int) -> str:
    """The training TOML with ``seed = N`` (the first ``seed`` line replaced, else one added on top).

    sd-scripts flattens every table of a ``--config_file``, so a ``seed`` line anywhere is the seed.

    Examples:
        >>> set_seed_line("# run\\n[training]\\nseed = 1  # mine\\n", 42)
        '# run\\n[training]\\nseed = 42  # mine\\n'
        >>> set_seed_line("[model]\\nx = 1\\n", 7)
        'seed = 7\\n[model]\\nx = 1\\n'
    """
    pattern = re.compile(r"^(\s*seed\s*=\s*)[^#\n]*?(\s*(#.*)?)$", re.MULTILINE)
    if pattern.search(text):
        return pattern.sub(lambda m: f"{m.group(1)}{seed}{m.group(2)}", text, count=1)
    return f"seed = {seed}\n" + text


def _stat_key(path: str | os.PathLike[str]) -> tuple[int, int, int] | None:
    """A file's (size, mtime, ctime) in ns, or None when it is missing: changes whenever the file is written."""
    try:
        stat = os.stat(path)
    except OSError:
        return None
    return stat.st_size, stat.st_mtime_ns, stat.st_ctime_ns


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
