"""Render frame jobs on every CPU, with the result a serial run would give (``preview``, ``export``).

A worker renders and encodes one ``FrameJob`` (``parallel.ordered_map``) and sends back the encoded
files plus what rendering changed on the job (params, the sources actually used, the name, the files
that failed). The parent applies those to its own job in order, so later code (captions, manifests)
reads the same job state as after a serial ``job.render()``.

Failures under ``collage_on_error = "skip"`` make frames depend on earlier frames (a file that
failed once is left out of every later frame). A worker only knows the failures recorded before
the pool started; when the parent has learnt of a new failure that touches a job (one of its
sources, or any failure when the worker had to fall back to a spare), it renders that job again
itself, exactly as the serial loop would. Failures are rare, so this costs nothing in the usual case.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from collage_ext.core.errors import CollageInputError
from collage_ext.core.parallel import ordered_map, tqdm_progress
from collage_ext.pixels.render import RenderResult
from collage_ext.plan.jobs import FrameJob

logger = logging.getLogger(__name__)

#: Encodes a rendered frame in the worker (PNG bytes and the like); must be deterministic.
Encoder = Callable[[FrameJob, RenderResult], Any]


@dataclass
class _Outcome:
    name: str
    params: Any
    rendered_sources: Any
    failed: dict[str, str]
    spare: bool
    pid: int
    encoded: Any = None
    error: CollageInputError | None = None


def _render(job: FrameJob, encode: Encoder, with_mask: Callable[[FrameJob], bool]) -> _Outcome:
    before = set(job.failures.failed)
    planned = {s.path for s in job.planned.sources_of(job.group)}
    try:
        rendered = job.render(with_mask=with_mask(job))
    except CollageInputError as exc:
        failed = {p: m for p, m in job.failures.failed.items() if p not in before}
        return _Outcome(job.name, job.params, job.rendered_sources, failed, True, os.getpid(), error=exc)
    failed = {p: m for p, m in job.failures.failed.items() if p not in before}
    spare = any(s.path not in planned for s in job.sources)
    return _Outcome(job.name, job.params, job.rendered_sources, failed, spare, os.getpid(), encode(job, rendered))


def render_jobs(
    jobs: Sequence[FrameJob],
    encode: Encoder,
    *,
    with_mask: Callable[[FrameJob], bool],
    jobs_n: int | None = None,
    desc: str = "rendering frames",
) -> Iterator[tuple[FrameJob, Any, CollageInputError | None]]:
    """``(job, encode(job, job.render()), None)`` per job in order, or ``(job, None, error)`` when it failed.

    Every job's state afterwards is what a serial ``for job in jobs: job.render()`` leaves.
    """
    if not jobs:
        return
    failures = jobs[0].failures
    known = set(failures.failed)

    parent = os.getpid()

    def work(job: FrameJob) -> _Outcome:
        if os.getpid() != parent:
            failures.quiet = True  # this worker's copy: the parent logs what it is sent
        return _render(job, encode, with_mask)

    # The map first: zip then runs it to its end (its pool closed and joined), never leaving it suspended.
    for outcome, job in zip(ordered_map(work, jobs, jobs=jobs_n, progress=tqdm_progress(desc, "frame")), jobs):
        if outcome.pid == os.getpid():  # rendered in this process (one job at a time): nothing to apply
            yield job, outcome.encoded, outcome.error
            continue
        new = set(failures.failed) - known
        planned = {s.path for s in job.planned.sources_of(job.group)}
        if new and (outcome.spare or new & planned):  # the worker did not know of a failure a serial run had seen
            outcome = _render(job, encode, with_mask)
        else:
            job.name, job.params, job.rendered_sources = outcome.name, outcome.params, outcome.rendered_sources
            for path, message in outcome.failed.items():
                failures.record(path, message)
        yield job, outcome.encoded, outcome.error
