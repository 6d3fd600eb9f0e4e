"""Static mode's cache files: a static frame job rendered once into the cache folder. No sd-scripts import.

sd-scripts caches latents and text-encoder outputs by reading image files, so static frames are
written into a cache folder under their content-hashed names (``FrameJob.name``) and registered
as ordinary images. A file of that name is reused only when it holds the pixels it was written
with (``frames.cached_png_problem``). Which frames there are, and how a frame is re-planned when a
source fails, is the producer's (``plan.jobs``); this module only stores the result.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

from collage_ext.core.errors import CollageInputError
from collage_ext.core.parallel import ordered_map
from collage_ext.plan.frames import cached_png_problem, frame_pixels, write_checked_png
from collage_ext.plan.jobs import FrameJob

logger = logging.getLogger(__name__)


def render_static_frame(job: FrameJob, cache_dir: Path, warnings: list[str] | None = None) -> tuple[Path, str, bool]:
    """Render a static frame job into the cache (unless cached); returns (path, caption, rendered).

    A file of the job's name is reused only when it holds the pixels it was written with, else it is
    rendered again with a warning (appended to ``warnings`` when given: a pool worker hands it to the
    parent, whose log the user reads). A source that failed in an earlier frame, or fails to decode
    now, under ``skip`` changes the plan, so the rebuilt frame gets its own name.
    """
    job.leave_out_failed()
    path = cache_dir / f"{job.name}.png"
    problem = cached_png_problem(path)
    if problem is None:
        return path, job.caption, False
    if problem != "is missing":
        message = f"collage_ext: static frame {path} {problem}; rendering it again"
        if warnings is None:
            logger.warning(message)
        else:
            warnings.append(message)
    config = job.planned.pool.config
    rendered = job.render(with_mask=config.loss_mask)
    path = cache_dir / f"{job.name}.png"
    write_checked_png(frame_pixels(rendered, config), path)
    return path, job.caption, True


def render_static_frames(
    jobs: Sequence[FrameJob],
    cache_dir: Path,
    *,
    jobs_n: int | None = None,
    progress: Callable[[Iterator[Any], int], Iterator[Any]] | None = None,
) -> Iterator[tuple[Path, str, bool]]:
    """``render_static_frame`` for every job, in order, on ``jobs_n`` processes.

    Each worker writes its frames itself (atomically, under content-hashed names) and sends back the
    path, caption and the files that failed. A frame whose sources a serial run would already have
    seen fail (a failure in an earlier frame that the worker did not know of) is planned and rendered
    again here, so paths, captions and failures are what the serial loop gives.
    """
    if not jobs:
        return
    failures = jobs[0].failures
    known = set(failures.failed)
    parent = os.getpid()

    def work(job: FrameJob) -> tuple[Path, str, bool, dict[str, str], list[str], int]:
        if os.getpid() != parent:
            failures.quiet = True  # this worker's copy: the parent logs what it is sent
        before = set(failures.failed)
        notes: list[str] = []
        path, caption, new = render_static_frame(job, cache_dir, notes)
        return path, caption, new, {p: m for p, m in failures.failed.items() if p not in before}, notes, os.getpid()

    results = ordered_map(work, jobs, jobs=jobs_n, progress=progress)
    for (path, caption, new, failed, notes, pid), job in zip(results, jobs):
        if pid != os.getpid():
            seen = set(failures.failed) - known
            if seen & {s.path for s in job.planned.sources_of(job.group)}:
                worker_path, worker_new = path, new
                path, caption, new = render_static_frame(job, cache_dir)  # this process's job is as planned
                new = new or (worker_new and worker_path == path)  # the worker wrote this very file: rendered now
                notes = []  # the frame was planned again here, and said so
            else:
                for key, message in failed.items():
                    failures.record(key, message)
        for note in notes:
            logger.warning(note)
        yield path, caption, new


def restore_static_frame(path: str, job: FrameJob, problem: str = "was deleted from the cache") -> None:
    """Render a static frame again when its file vanished or went bad while training.

    The name is a hash of the frame's content, so the same sources give the same file back. When
    they changed too, the frame can no longer be the one sd-scripts bucketed and cached.

    Raises:
        CollageInputError: the frame's sources changed since start-up as well; names the frame and the fix.
    """
    Path(path).unlink(missing_ok=True)  # a bad file under the name would be taken as rendered
    rendered, _, _ = render_static_frame(job, Path(path).parent)
    if str(rendered) != path:
        msg = (
            f"static frame {path} {problem} while training, and its source images changed since start-up, so it "
            "cannot be rendered again as planned; restart training"
        )
        raise CollageInputError(msg)
    logger.warning(f"collage_ext: static frame {path} {problem} while training; rendered it again")
