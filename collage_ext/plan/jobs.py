"""Frame jobs: one collage frame of an epoch, its name, and rendering it with re-planning after failures.

A ``FrameJob`` is what every consumer of frames holds: ``preview``, ``export``, ``check``, the
studio and the sd-scripts adapter (which registers a job's name as an sd-scripts image and renders
the job when sd-scripts loads that image). Jobs come only from ``PlannedSubset.jobs`` (one subset)
and ``frames_for`` (a run):

* **dynamic** jobs: slot ``j`` of an epoch holds ``Pool.collage_groups(epoch)[j]``; its name
  ``<pool key>_slot<j>`` is the same in every epoch (the adapter's virtual image path);
* **static** jobs: every planned variant's groups, named ``collage_<digest>`` by a hash of their
  content, like the files in the static cache.

Under ``collage_on_error = "skip"`` a source that fails to decode is left out and the frame is
re-planned from the rest (``policy.compose``), so the number of frames never changes; the job's
params, sources and (static) name then follow the frame as rendered.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from collage_ext.core.errors import CollageConfigError, CollageInputError
from collage_ext.core.types import Size
from collage_ext.core.version import __version__
from collage_ext.geometry.grouping import Group
from collage_ext.pixels.render import RenderResult
from collage_ext.plan.collage import Collage, FrameParams, Source
from collage_ext.plan.framestats import FrameStats, SummaryStats, frame_stats, summarize
from collage_ext.plan.policy import FailureLog, compose
from collage_ext.plan.subsets import PlannedSubset

logger = logging.getLogger(__name__)


def frame_digest(params: FrameParams, sources: Sequence[Source], collage: Collage, caption: str) -> str:
    """A content hash of everything that decides a static frame's pixels and caption.

    Source files are fingerprinted by size and modification time, so an edited image, caption,
    crop box, layout or setting gives a new file name and no stale cache is ever reused.

    Raises:
        CollageInputError: a source file is gone (``source_path`` names it, for the error policy).
    """
    files = []
    for source in sources:
        try:
            stat = os.stat(source.path)
        except OSError as exc:
            error = CollageInputError(
                f"image {source.path} cannot be read any more ({exc.strerror or exc}); it was "
                "there when the dataset was read: put it back or restart training"
            )
            error.source_path = source.path  # type: ignore[attr-defined]  # for the error policy
            raise error from exc
        files.append([source.key, stat.st_size, stat.st_mtime_ns, list(source.crop) if source.crop else None])
    payload: dict[str, Any] = {
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


class FrameJob:
    """One collage frame: which subset, which sources, which params, and its name (file stem).

    Attributes:
        planned: the subset it belongs to.
        group: pool indices of its sources, in planning order.
        params: its frame parameters (after ``render``: the ones actually used).
        failures: the run's failed files (shared by the jobs of a ``FrameSet``, or of an adapter dataset).
        slot, epoch: a dynamic job's slot and epoch (``slot`` is None for static jobs).
        variant: a static job's variant (None for dynamic jobs).
        rendered_sources: after ``render``, the sources actually used.
    """

    def __init__(
        self,
        planned: PlannedSubset,
        group: Group,
        params: FrameParams,
        failures: FailureLog,
        *,
        slot: int | None = None,
        epoch: int | None = None,
        variant: int | None = None,
    ) -> None:
        self.planned, self.group, self.params, self.failures = planned, group, params, failures
        self.slot, self.epoch, self.variant = slot, epoch, variant
        self.rendered_sources: list[Source] | None = None
        self._kept: list[Source] = planned.sources_of(group)
        self._name: str | None = planned.slot_name(slot) if slot is not None else None
        self._stats: tuple[FrameParams, list[Source] | None, FrameStats] | None = None

    def __repr__(self) -> str:
        return f"FrameJob({self.planned.pool.key!r}, slot={self.slot}, variant={self.variant}, group={self.group})"

    @property
    def name(self) -> str:
        """The file stem: ``<pool key>_slot<j>`` (dynamic) or ``collage_<digest>`` of the content (static)."""
        if self._name is None:
            self._name = self._content_name()
        return self._name

    @name.setter
    def name(self, value: str) -> None:
        self._name = value

    @property
    def frame(self) -> Size:
        """The frame as planned (sd-scripts buckets this size once, before anything renders)."""
        if self.slot is not None:
            return self.planned.slot_frame(self.slot)
        return self.planned.pool.frame_for(self.group)

    @property
    def sources(self) -> list[Source]:
        """The frame's sources, in planning order (without those that failed before; after ``render``: the
        ones actually used)."""
        if self.rendered_sources is not None:
            return self.rendered_sources
        return self._kept

    @property
    def caption(self) -> str:
        """The merged caption the adapter hands to sd-scripts' ``process_caption``."""
        return self.planned.caption(self.params)

    @property
    def stats(self) -> FrameStats:
        """Fill and per-source span of the frame (after ``render``: of the frame as rendered); computed once per
        params and sources (a frame's record and the studio's view both ask)."""
        found = self._stats
        if found is None or found[0] is not self.params or found[1] is not self.rendered_sources:
            stats = frame_stats(self.params.layout, self.sources, self.planned.pool.config.fit_mode)
            found = self._stats = (self.params, self.rendered_sources, stats)
        return found[2]

    def leave_out_failed(self) -> None:
        """Static: leave out files that failed in earlier frames, re-plan and rename (a dynamic frame does
        this while rendering, ``policy.compose``)."""
        if self.variant is None:
            return
        kept = [s for s in self._kept if s.path not in self.failures.failed]
        if len(kept) < len(self._kept):
            self._kept = kept
            self.params = self._replan(kept)
            self._name = None

    def render(self, *, with_mask: bool = False, cells: Any = None) -> RenderResult:
        """The frame's pixels, exactly as training renders them; failed sources are left out under ``skip``.

        ``cells`` is ``Collage.render``'s cache of decoded cells (the studio's). A dynamic frame that
        loses every source is filled by a spare of the pool; its slot keeps the params used, so the
        caption follows (``PlannedSubset.slot_caption``).
        """
        planned = self.planned
        self.leave_out_failed()
        sources = self._kept
        before = self.params
        rendered, used = compose(
            planned.collage,
            sources,
            before,
            self.failures,
            with_mask=with_mask,
            spares=planned.pool.sources if self.variant is None else (),
            cells=cells,
        )
        self.params = used
        self.rendered_sources = [s for s in sources if s.path not in self.failures.failed] or [
            s for s in planned.pool.sources if s.key in used.keys
        ][:1]  # a spare filled the frame
        if self.slot is not None and self.epoch is not None:
            planned.remember(self.slot, self.epoch, used)
        elif used is not before:  # static: renamed by the new content, like the cache
            self._name = f"collage_{frame_digest(used, self.rendered_sources, planned.collage, self.caption)}"
        return rendered

    def _replan(self, sources: list[Source]) -> FrameParams:
        assert self.variant is not None
        return self.planned.make_params(sources, epoch=self.variant, frame=self.planned.pool.frame_for(self.group))

    def _content_name(self) -> str:
        """``collage_<digest>``; a source gone since planning follows the error policy (the frame is re-planned)."""
        collage = self.planned.collage
        while True:
            try:
                return f"collage_{frame_digest(self.params, self._kept, collage, self.caption)}"
            except CollageInputError as exc:
                path = getattr(exc, "source_path", None)
                if collage.config.on_error == "raise" or path is None or len(self._kept) < 2:
                    raise
                self.failures.record(path, exc)
                self._kept = [s for s in self._kept if s.path != path]
                self.params = self._replan(self._kept)


def slot_job(planned: PlannedSubset, slot: int, epoch: int, failures: FailureLog) -> FrameJob:
    """Dynamic slot ``slot`` of ``epoch``."""
    return FrameJob(planned, planned.groups(epoch)[slot], planned.params(slot, epoch), failures, slot=slot, epoch=epoch)


def static_job(planned: PlannedSubset, group: Group, variant: int, failures: FailureLog) -> FrameJob:
    """The static frame of ``group`` in ``variant``."""
    params = planned.make_params(planned.sources_of(group), epoch=variant, frame=planned.pool.frame_for(group))
    return FrameJob(planned, group, params, failures, variant=variant)


@dataclass
class FrameSet:
    """The frames of one epoch (dynamic) or of every static variant, plus the single samples."""

    mode: str
    epoch: int | None
    failures: FailureLog = field(default_factory=FailureLog)
    jobs: list[FrameJob] = field(default_factory=list)
    singles: list[tuple[PlannedSubset, int, int]] = field(default_factory=list)  # (subset, source index, repeats)

    def summary(self, planned: PlannedSubset | None = None) -> SummaryStats:
        """Mean fill, span share and images per frame over the jobs (of one subset, or all)."""
        jobs = [j for j in self.jobs if planned is None or j.planned is planned]
        singles = sum(n for item, _, n in self.singles if planned is None or item is planned)
        min_span = min((j.planned.pool.config.min_span for j in jobs), default=0.95)
        return summarize((j.stats for j in jobs), min_span, singles=singles)


def frames_for(planned: Sequence[PlannedSubset], mode: str, epoch: int) -> FrameSet:
    """The frames training sees: dynamic mode at ``epoch`` (1-based), or every static frame.

    Static frames are named here (their content hash), before anything renders.

    Raises:
        CollageConfigError: ``epoch`` < 1.
    """
    if epoch < 1:
        msg = f"--epoch must be at least 1 (sd-scripts counts epochs from 1), got {epoch}"
        raise CollageConfigError(msg)
    out = FrameSet(mode, epoch if mode != "static" else None)
    for item in planned:
        jobs = item.jobs(mode, epoch, out.failures)
        for job in jobs:
            job.name  # noqa: B018  # static names are content hashes of the frames as planned
        out.jobs.extend(jobs)
        out.singles.extend((item, i, n) for i, n in enumerate(item.single_repeats(mode)) if n)
    return out
