"""Progress for long loops: a bar on a terminal, one summary line otherwise.

tqdm redraws its bar with ``\\r`` about ten times a second; when stderr is a file (a log, CI, the
studio's server log) that is one long line of 100+ redraws. So a bar is drawn only when stderr is a
terminal; otherwise the loop logs one line when it ends (``checking images: 115 images in 2.1 s``).
Loops of fewer than ``MIN_ITEMS`` items show nothing. ``set_quiet(True)`` (the studio, which
re-plans after each edit) turns the summaries into DEBUG lines and the bars off.

Every long loop of the CLI goes through ``progress`` .
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Iterable, Iterator
from typing import TypeVar

logger = logging.getLogger(__name__)

T = TypeVar("T")

#: Loops shorter than this show no bar and log no summary.
MIN_ITEMS = 8

_quiet = False


def set_quiet(quiet: bool) -> None:
    """No bars, summaries only at DEBUG level (for long-running servers that re-run loops per request)."""
    global _quiet
    _quiet = quiet


def on_terminal() -> bool:
    """True when stderr is an interactive terminal (where a redrawn bar is readable)."""
    stream = sys.stderr
    try:
        return bool(stream is not None and stream.isatty())
    except (AttributeError, ValueError):  # replaced or closed stream
        return False


def progress(items: Iterable[T], desc: str, unit: str = "it", total: int | None = None) -> Iterable[T]:
    """``items``, with a tqdm bar on a terminal or one summary log line when the loop ends.

    ``total`` counts an iterator's items (a process pool's results); a sequence counts itself.
    """
    count = len(items) if total is None else total  # type: ignore[arg-type]
    if count < MIN_ITEMS:
        return items
    if not _quiet and on_terminal():
        try:
            from tqdm import tqdm
        except ImportError:  # pragma: no cover - tqdm is installed in every kohya venv
            pass
        else:
            bar: Iterable[T] = tqdm(items, desc=desc, unit=unit, total=count, leave=False)
            return bar
    return _summarised(items, count, desc, unit)


def _summarised(items: Iterable[T], count: int, desc: str, unit: str) -> Iterator[T]:
    start = time.perf_counter()
    yield from items
    seconds = time.perf_counter() - start
    logger.log(
        logging.DEBUG if _quiet else logging.INFO, f"{desc}: {count} {unit}{'s' * (count != 1)} in {seconds:.1f} s"
    )
