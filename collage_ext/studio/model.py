"""The dataset as the studio page sees it: sources, findings, frames, and the edits the page makes.

Everything is read through the CLI's own functions, so the page shows what ``preview`` and
``check`` show: ``plan.project.load_project`` (dataset TOML, training TOML, trainer arguments),
``plan.project.plan_project`` / ``plan.jobs.frames_for`` (the frames of an epoch), ``preview.frame_record``
(captions, token counts, caption warnings) and ``check.run_check`` (findings). After a write the
project is brought up to date on the next read (so the write itself answers at once): a caption or
crop box edit reads that image's files again and plans its subset again (``Studio._refresh``, the
same frames a full read gives), anything else reads the whole dataset again.

An edit touches one image, so everything is cached by *content*, not by the dataset's version
(``studio/cache.py``): rendered frames and source images by the files they are made of, decoded cells
by file and cell, frame and source descriptions by what they show, image-quality measures by file
(``measurecache``, also on disk). After an edit only the edited image is decoded and measured again,
and only the frames that hold it are rendered again; frames render outside the studio's lock, so
the page's other requests are answered meanwhile and each frame shows as soon as it is ready.

``Studio`` is this module's project state (reading, planning, the check) plus three parts in their own
modules: ``views`` (the page's lists of sources and frames), ``pixels`` (frame and source images) and
``edits`` (the writes); ``entries`` lists the images.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import functools
import logging
import os
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from collage_ext.commands.check import CheckReport, run_check
from collage_ext.commands.measurecache import MeasureCache
from collage_ext.core.errors import CollageError
from collage_ext.core.parallel import cpu_count
from collage_ext.core.rng import sample_key
from collage_ext.kohya.specs import SubsetImage
from collage_ext.pixels.crops import read_crop_box
from collage_ext.pixels.images import read_image_size
from collage_ext.plan.collage import Source, load_source
from collage_ext.plan.framesets import TextEncoder, text_encoder_for
from collage_ext.plan.jobs import FrameJob, FrameSet
from collage_ext.plan.project import Project, load_project, plan_project, read_caption
from collage_ext.plan.subsets import PlannedSubset, detached, replan
from collage_ext.studio.cache import CELL_BUDGET, IMAGE_BUDGET, ByteLRU, KeyLocks, cell_bytes
from collage_ext.studio.edits import SEED_MAX, Edits, set_seed_line
from collage_ext.studio.entries import (
    DROPPED_SUFFIX,
    MAX_CAPTION_BYTES,
    Entry,
    entry_id,
    folders_of,
    left_out,
    read_entries,
)
from collage_ext.studio.files import History, RefusedError
from collage_ext.studio.pixels import EDITOR_SIDE, THUMB_SIDE, Pixels
from collage_ext.studio.views import Views

logger = logging.getLogger(__name__)

__all__ = [
    "DROPPED_SUFFIX",
    "EDITOR_SIDE",
    "MAX_CAPTION_BYTES",
    "SEED_MAX",
    "THUMB_SIDE",
    "Entry",
    "Studio",
    "entry_id",
    "set_seed_line",
]


class Studio(Views, Pixels, Edits):
    """The loaded dataset, re-read after every write; all methods are safe to call from several threads."""

    def __init__(
        self,
        dataset: str | os.PathLike[str] | None,
        *,
        config: str | os.PathLike[str] | None = None,
        trainer_args: Sequence[str] = (),
        seed: int | None = None,
        model: str = "auto",
    ) -> None:
        self.dataset, self.config, self.trainer_args, self.model = dataset, config, list(trainer_args), model
        self.seed = seed
        self.lock = threading.RLock()
        self._check_lock = threading.Lock()
        self.version = 0
        self._stale = False
        self._touched: dict[str, None] = {}  # images whose caption or crop box was written since the last read
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
        self._listed = threading.Condition()  # notified when the page has fetched a version's frame list
        self._listed_version = -1
        self._background = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="studio-prerender")
        # Decoding (Pillow, libvips) runs without the GIL: one thread per CPU renders the frames of an edit at once.
        self._renderers = concurrent.futures.ThreadPoolExecutor(cpu_count(), thread_name_prefix="studio-render")
        # ... and the cells of one frame at once (pixels.Pixels._decode_ahead; not the pool above, which waits on it).
        self._decoders = concurrent.futures.ThreadPoolExecutor(cpu_count(), thread_name_prefix="studio-decode")
        self.project = self._load()
        self.encoder: TextEncoder = remembering(text_encoder_for(self.project.run.values, model))
        #: Sampled frame params by what they are sampled from (``PlannedSubset.memo``), across re-plans.
        self._sampled: ByteLRU[Any] = ByteLRU(1 << 16, lambda params: 1)
        self.history = History(self.folders)
        self._plan()

    # -- reading ------------------------------------------------------------------------------
    def _load(self) -> Project:
        project = load_project(
            self.dataset, config_file=self.config, trainer_args=self.trainer_args, seed=self.seed, strict=False
        )
        self.folders = folders_of(project, self.config)
        if hasattr(self, "history"):
            self.history.folders = self.folders
        #: ``outside``: images left out of the plan and the check, and why: one of their files leads out of the
        #: dataset (nothing is read through it), or the caption file is larger than ``MAX_CAPTION_BYTES``.
        self.entries, self.outside = read_entries(project, self.folders)
        return project

    def _plan(self) -> None:
        self.broken: dict[str, str] = {}
        for entry in self.entries.values():
            if (
                entry.dropped
                or entry.id in self.outside
                or not entry.subset.config.enabled
                or entry.subset.kept_index is None
            ):
                continue
            try:
                read_crop_box(entry.path, read_image_size(entry.path), entry.subset.config.crop_extension)
            except CollageError as exc:
                self.broken[str(entry.path)] = str(exc)
        self.error: str | None = None
        try:
            self.planned: list[PlannedSubset] = plan_project(self.project, self.encoder, exclude=frozenset(self.broken))
        except CollageError as exc:
            self.planned, self.error = [], str(exc)
        for item in self.planned:
            item.memo = self._sampled
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
        self._touched.clear()
        self.version += 1

    def _changed(self, eid: str | None = None) -> None:
        """After a write: a new version now, the project refreshed when the page next asks (``_fresh``).

        ``eid``: the write changed only that image's caption or crop file, so only its files are read
        again (``_refresh``); without it (drops, restores, undo of another file) everything is.
        """
        if eid is None:
            self._stale = True
        else:
            self._touched[eid] = None
        self.version += 1

    def _fresh(self) -> None:
        """Bring the project up to date with the writes since the last read (call with the lock held)."""
        version = self.version
        if not self._stale and self._touched:
            touched, self._touched = list(self._touched), {}
            try:
                self._stale = not self._refresh(touched)
            except (CollageError, OSError, ValueError) as exc:  # never a half-patched project: read it all
                logger.debug(f"studio: reading all files again after {type(exc).__name__}: {exc}")
                self._stale = True
        if self._stale:
            self._reread()
        self.version = version

    def _refresh(self, ids: list[str]) -> bool:
        """Read again only the files of the images ``ids`` (caption, crop box, header) and plan again only their
        subsets, with the other images' sources as they were read; ``False`` when only a full read will do.

        The result is what a full read of the same files gives (tests/studio/test_incremental.py compares
        the two after random edits): the project's caption of the image as ``load_project`` reads it, the
        pool's structure and groups planned again (a crop box can change an image's shape class and so the
        whole grouping), frame params sampled again only where their sources changed (``PlannedSubset.memo``).
        A full read is needed when reading the caption makes a finding, or an older finding names one of the
        image's files, or the image moves into or out of the plan (a broken crop box, a file leading out).
        """
        sources: dict[int, dict[str, Source]] = {}  # per planned subset: the new source of each edited path
        for eid in ids:
            e = self.entries.get(eid)
            if e is None or e.dropped or e.id in self.outside or self.error is not None:
                return False
            if e.subset.params.get("metadata_file") or left_out(e, self.folders) is not None:
                return False
            path = str(e.path)
            base, ext = os.path.splitext(path)[0], str(e.subset.params["caption_extension"])
            tokens = base.split("_")
            named = {path, base + ext, ("_".join(tokens[:-4]) if len(tokens) >= 5 else base) + ext}
            if any(f.file in named for f in self.project.findings):
                return False  # an earlier finding about its caption may be stale
            if any(
                o.path.name.startswith(e.path.stem) and o is not e and _shares(o.path, e.path)
                for o in self.entries.values()
            ):
                return False  # another image reads the same caption or crop file: read them all
            caption, findings = read_caption(e.subset, path)
            if findings:
                return False
            images = e.subset.images
            at = next((i for i, im in enumerate(images) if Path(im.path) == e.path), None)
            if at is None:
                return False
            images[at] = SubsetImage(images[at].path, caption, images[at].num_repeats)
            e.caption = caption
            if not e.subset.config.enabled or e.subset.kept_index is None:
                continue
            try:
                source = load_source(
                    images[at].path,
                    sample_key(images[at].path, e.subset.root),
                    caption=caption,
                    crop_extension=e.subset.config.crop_extension,
                )
            except CollageError as exc:
                if self.broken.get(path) != str(exc):
                    return False
                continue  # still broken the same way: still out of the plan
            if path in self.broken:
                return False  # it joins the plan again
            item = next((i for i, p in enumerate(self.planned) if p.subset is e.subset), None)
            if item is None:
                return False
            sources.setdefault(item, {})[source.path] = source
        planned = list(self.planned)  # a new list: a check running outside the lock keeps the one it took
        for item, new in sources.items():
            planned[item] = replan(planned[item], [new.get(s.path, s) for s in planned[item].pool.sources])
        self.planned = planned
        self._frames.clear()
        self._check = None
        return True

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
        return {
            "version": self.version,
            "source": p.source,
            "seed": p.seed,
            "seed_why": p.seed_why,
            "mode": p.mode,
            "mode_why": p.mode_why,
            "encoder": self.encoder.label,
            "exact": self.encoder.exact,
            "static": self.mode == "static",
            "error": self.error,
            "can_undo": bool(self.history.changes),
            "undo": self.history.changes[-1].what if self.history.changes else None,
            "config": str(self.config) if self.config else None,
            "subsets": [
                {
                    "id": f"{d.index}/{s.index}",
                    "name": s.name,
                    "image_dir": s.image_dir,
                    "collage": s.config.enabled,
                    "skipped": s.skipped,
                    "is_reg": s.is_reg,
                }
                for d in p.datasets
                for s in d.subsets
            ],
        }

    def entry(self, eid: object) -> Entry:
        """The image with this id.

        Raises:
            RefusedError: no image of the dataset has this id (the page only sends ids it was given).
        """
        found = self.entries.get(eid) if isinstance(eid, str) else None
        if found is None:
            raise RefusedError(f"no image with id {eid!r} in this dataset", 404)
        return found

    def _planner(
        self, project: Project, planned: list[PlannedSubset] | None, broken: frozenset[str]
    ) -> Callable[[frozenset[str]], list[PlannedSubset]]:
        """The check's planner: the studio's own plan when the check leaves out the images the studio does
        (frame caches of its own: it runs outside the lock), else ``plan_project`` (sharing the memo)."""

        def plan(exclude: frozenset[str]) -> list[PlannedSubset]:
            if exclude == broken and planned is not None:
                return detached(planned)
            out = plan_project(project, self.encoder, exclude=exclude)
            for item in out:
                item.memo = self._sampled
            return out

        return plan

    def check(self, epoch: int = 1) -> dict[str, Any]:
        """``collage-ext check``'s findings, attached to images where they name one (cached per version)."""
        with self._check_lock:  # one check at a time; a request that waited finds the fresh report
            with self.lock:
                self._fresh()
                cached = self._check
                version, project, planned, broken = self.version, self.project, self.planned, frozenset(self.broken)
                planner = self._planner(project, planned if self.error is None else None, broken)
            if cached is None or cached[0] != version:
                # Outside the main lock: check decodes every image, and the page must stay usable meanwhile. A
                # write during the check makes a new project; this report then belongs to the old version only.
                # Only images not in the quality cache (new or edited files) are decoded: after an edit, one.
                # One process: forking a threaded server is unsafe (parallel.py); the first check is the slow one.
                cached = (
                    version,
                    run_check(project, self.encoder, epoch=epoch, cache=self.measures, jobs_n=1, planner=planner),
                )
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
            return {
                "version": version,
                "findings": per,
                "general": general,
                "steps": report.summary["steps"]["describe"],
                "errors": len(report.errors),
                "warnings": len(report.warnings),
            }


def _shares(other: Path, path: Path) -> bool:
    """Whether image ``other`` may read ``path``'s sidecars: the same file listed twice (two datasets of one
    folder), the same stem (``img.jpg`` and ``img.png`` share ``img.txt``), or ``img_a_b_c_d.png``, which
    reads ``img.txt`` when it has no caption file of its own (sd-scripts' face caption)."""
    return other.parent == path.parent and (other.stem == path.stem or other.stem.startswith(path.stem + "_"))


def remembering(encoder: TextEncoder) -> TextEncoder:
    """``encoder`` with its token counter's answers kept by text: a count depends on the text alone, and the
    studio counts the same captions and phrases again for every frame view after every edit."""
    return dataclasses.replace(encoder, counter=functools.lru_cache(maxsize=1 << 16)(encoder.counter))
