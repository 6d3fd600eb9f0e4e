"""Ordered, deterministic parallel map for rendering and checking: a fork pool sized to the CPUs.

``preview``, ``export``, ``check`` and static-mode cache builds spend their time decoding and
resampling one frame (or one image) at a time; each item is independent of the others, so a
process per CPU divides the wall time by the number of cores.

Decisions:

* **fork, not spawn.** The work items (frame jobs with their planned subsets, collages and
  sources) are large object graphs; a forked worker inherits them, so only an index goes to the
  worker and only the result (encoded bytes, a few numbers) comes back. libvips survives the fork
  because collage_ext only pulls pixels with ``Region.fetch`` (``resample.py``), which starts no
  thread pool. Where fork is unavailable (Windows, macOS' default), everything runs serially.
* **Ordered results, parent-side effects.** ``ordered_map`` yields results in input order; the
  caller writes every file in the parent, in that order, so the output is byte-identical to a
  serial run (tests/test_parallel.py compares every byte).
* **Ctrl+C** (or an error) cancels: workers ignore SIGINT, finish the item they are on and skip the
  rest, then exit (no ``terminate``: a killed worker can die holding the pool's queue lock). Files
  are only written through a temporary name and ``os.replace`` (``filemodes.write_bytes_atomic``), so an
  interrupted or failed run leaves no partial file under a final name.
* Fork only from a single-threaded process (the CLI, the start of training): a thread holding a lock
  at the fork leaves it held in the child. The studio, a threaded server, checks on one process.
* ``jobs`` = the CPUs this process may run on (``os.sched_getaffinity``: ``taskset -c 0`` means
  one), or ``COLLAGE_EXT_JOBS``; 1 runs in-process with no pool at all.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import signal
from collections.abc import Callable, Iterator, Sequence
from typing import Any, TypeVar

from collage_ext.core.progress import progress as show_progress

logger = logging.getLogger(__name__)

T = TypeVar("T")
R = TypeVar("R")

#: The work of the pool being started (function, items, cancel flag): inherited by the forked workers, never pickled.
_WORK: tuple[Callable[[Any], Any], Sequence[Any], Any] | None = None
#: What a worker returns for a task it skipped after a cancel.
_SKIPPED = "collage_ext.core.parallel: skipped"


def cpu_count() -> int:
    """CPUs this process may run on (``taskset`` and cgroup CPU sets respected)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - not Linux
        return max(1, os.cpu_count() or 1)


def default_jobs(jobs: int | None = None) -> int:
    """``jobs`` if given, else ``COLLAGE_EXT_JOBS``, else ``cpu_count()``; 1 where fork is unavailable.

    Raises:
        ValueError: ``jobs`` or ``COLLAGE_EXT_JOBS`` below 1 or not a whole number.
    """
    if jobs is None:
        env = os.environ.get("COLLAGE_EXT_JOBS")
        if env:
            try:
                jobs = int(env)
            except ValueError as exc:
                raise ValueError(f"COLLAGE_EXT_JOBS must be a whole number >= 1, got {env!r}") from exc
        else:
            jobs = cpu_count()
    if jobs < 1:
        raise ValueError(f"--jobs must be at least 1, got {jobs}")
    if jobs > 1 and "fork" not in multiprocessing.get_all_start_methods():  # pragma: no cover - not Linux
        return 1
    return jobs


def _init_worker() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent handles Ctrl+C: it cancels, the workers wind down


def _run(index: int) -> Any:
    assert _WORK is not None
    fn, items, cancel = _WORK
    if cancel.is_set():
        return _SKIPPED
    return fn(items[index])


def ordered_map(
    fn: Callable[[T], R],
    items: Sequence[T],
    *,
    jobs: int | None = None,
    progress: Callable[[Iterator[R], int], Iterator[R]] | None = None,
) -> Iterator[R]:
    """``fn(item)`` for every item, in order, computed by ``jobs`` forked workers.

    ``fn`` and ``items`` reach the workers by fork (they need not pickle); each result is pickled
    back. Exceptions raised by ``fn`` are re-raised in the parent when their item's turn comes.
    ``progress`` wraps the result iterator (a tqdm bar) given the item count.
    """
    global _WORK
    n = min(default_jobs(jobs), len(items))
    results: Iterator[R]
    if n <= 1:
        results = (fn(item) for item in items)
        yield from (progress(results, len(items)) if progress else results)
        return
    if _WORK is not None:  # a map inside a worker's map: run it in this process
        results = (fn(item) for item in items)
        yield from (progress(results, len(items)) if progress else results)
        return
    context = multiprocessing.get_context("fork")
    cancel = context.Event()
    _WORK = (fn, items, cancel)
    try:
        pool = context.Pool(n, initializer=_init_worker)
    finally:
        _WORK = None
    try:
        results = pool.imap(_run, range(len(items)), chunksize=1)
        for done, result in enumerate(progress(results, len(items)) if progress else results, 1):
            if done == len(items):
                pool.close()  # every result is in: the workers exit on their own, before the last one is used
            yield result
    except BaseException:
        # Ctrl+C, an error, or the caller stopped iterating: the tasks not started are skipped, the ones running
        # finish (each writes through a temporary name), and the workers exit on their own. No SIGTERM: a
        # terminated worker can die holding the pool's queue lock, and the next one then waits forever.
        cancel.set()
        pool.close()
        raise
    finally:
        pool.join()


def tqdm_progress(desc: str, unit: str) -> Callable[[Iterator[R], int], Iterator[R]]:
    """A ``progress`` wrapper for ``ordered_map``: ``progress.progress`` (a bar on a terminal, else one line)."""

    def wrap(results: Iterator[R], total: int) -> Iterator[R]:
        return iter(show_progress(results, desc, unit, total=total))

    return wrap
