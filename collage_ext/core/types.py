"""Value objects shared by every layer: sizes, rectangles, cells, layouts.

Sizes are always ``(width, height)`` with named fields, like sd-scripts' ``resolution`` and
bucket resolutions, so no public signature ever takes an ambiguous bare 2-tuple.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple


class Size(NamedTuple):
    """An integer ``(width, height)`` pair."""

    width: int
    height: int

    @property
    def area(self) -> int:
        """Number of pixels."""
        return self.width * self.height

    @property
    def aspect(self) -> float:
        """Width divided by height."""
        return self.width / self.height

    def __str__(self) -> str:
        return f"{self.width}x{self.height}"


class Rect(NamedTuple):
    """An integer rectangle: left ``x``, top ``y``, ``width``, ``height`` (pixels)."""

    x: int
    y: int
    width: int
    height: int

    @property
    def right(self) -> int:
        """Exclusive right edge."""
        return self.x + self.width

    @property
    def bottom(self) -> int:
        """Exclusive bottom edge."""
        return self.y + self.height

    @property
    def size(self) -> Size:
        """The rectangle's ``Size``."""
        return Size(self.width, self.height)

    def intersects(self, other: Rect) -> bool:
        """True when the two rectangles share at least one pixel."""
        return self.x < other.right and other.x < self.right and self.y < other.bottom and other.y < self.bottom


class Box(NamedTuple):
    """A crop box in source pixels: ``left, top, right, bottom`` (right/bottom exclusive), like Pillow."""

    left: float
    top: float
    right: float
    bottom: float

    @property
    def width(self) -> float:
        """Box width in pixels."""
        return self.right - self.left

    @property
    def height(self) -> float:
        """Box height in pixels."""
        return self.bottom - self.top


@dataclass(frozen=True, slots=True)
class Layout:
    """A named arrangement of cells inside a frame.

    ``cells[i]`` receives source ``order[i]`` of the group it was planned for; ``names[i]`` is the
    position marker of that cell (``"LEFT"``, ``"TOP-RIGHT"``...) used by positional captions.
    """

    name: str
    frame: Size
    cells: tuple[Rect, ...]
    order: tuple[int, ...]
    names: tuple[str, ...]
    #: ``"cover"`` when the planner cropped sources' overhang to keep the scale rule in a fixed frame
    #: (``collage_max_crop``); ``None``: the subset's ``collage_fit_mode``.
    fit: str | None = None

    def to_json(self) -> dict[str, object]:
        """A JSON-serialisable description (for manifests and previews)."""
        out: dict[str, object] = {
            "name": self.name,
            "frame": list(self.frame),
            "cells": [list(c) for c in self.cells],
            "order": list(self.order),
            "names": list(self.names),
        }
        if self.fit is not None:  # only then: frames planned without it keep their digests
            out["fit"] = self.fit
        return out
