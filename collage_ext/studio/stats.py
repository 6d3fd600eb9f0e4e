"""Fill and span of one collage frame, from its layout alone (no pixels decoded).

THE SEAM: this is the one place the studio computes per-frame statistics. When the
content-shaped frames work provides its own pure function for the same facts, replace the body of
``frame_stats`` with a call to it; nothing else in the studio computes fill or span.

* **fill**: the share of the frame that shows source pixels (1.0 = no padding).
* **span** of a source: how far its pixels reach across the frame along its best axis,
  ``max(width / frame width, height / frame height)``; 1.0 means it goes end to end.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from ..collage import FrameParams, Source
from ..fit import plan_fit


@dataclass(frozen=True)
class FrameStats:
    """``fill`` of the frame and ``spans[i]`` of ``sources[i]`` (planning order)."""

    fill: float
    spans: tuple[float, ...]


def frame_stats(params: FrameParams, sources: Sequence[Source], fit_mode: str) -> FrameStats:
    """Fill and per-source span of a frame, from the same fit plan the renderer uses.

    Examples:
        >>> from collage_ext.types import Layout, Rect, Size
        >>> layout = Layout("1x2", Size(100, 100), (Rect(0, 0, 50, 100), Rect(50, 0, 50, 100)), (0, 1), ("L", "R"))
        >>> params = FrameParams(("a", "b"), layout, ("", ""), (False, False), 0, 1)
        >>> s = [Source("a", "a.png", Size(50, 100)), Source("b", "b.png", Size(100, 100))]
        >>> frame_stats(params, s, "contain")
        FrameStats(fill=0.75, spans=(1.0, 0.5))
    """
    layout = params.layout
    frame = layout.frame
    spans = [0.0] * len(sources)
    covered = 0
    for cell, index in zip(layout.cells, layout.order):
        source = sources[index]
        dst = plan_fit(source.size, cell.size, fit_mode, source.crop).dst  # type: ignore[arg-type]
        covered += dst.width * dst.height
        spans[index] = max(dst.width / frame.width, dst.height / frame.height)
    return FrameStats(covered / (frame.width * frame.height), tuple(spans))
