"""Pure integer geometry: where each image of a collage goes.

The rule from the technique: a pattern is learned relative to the frame, so layouts follow the
images' orientation. Two portraits stand side by side at full frame height, two landscapes are
stacked at full frame width, four share a 2x2 grid, three get one full-height (or full-width) cell
beside two stacked ones. The planner scores every allowed layout and source-to-cell assignment by
the useful pixels it keeps and refuses any that would magnify a source beyond ``max_upscale``.

Standard library only: geometry is integers, so it is fast and easy to check exhaustively.
"""

from __future__ import annotations

import itertools
import random
from collections.abc import Sequence
from functools import lru_cache

from .config import CollageConfig, layout_cell_count
from .errors import LayoutError
from .types import Layout, Rect, Size

#: Two scores closer than this are a tie, broken by the layout RNG (mirror images, equal aspects).
_TIE = 1e-9


def split_span(total: int, parts: int, gutter: int = 0) -> list[tuple[int, int]]:
    """Split ``total`` pixels into ``parts`` spans of ``(offset, length)`` with ``gutter`` between them.

    The remainder pixels go to the first spans, so the spans differ by at most one pixel and
    always end exactly at ``total``.

    Examples:
        >>> split_span(10, 3)
        [(0, 4), (4, 3), (7, 3)]
        >>> split_span(10, 2, gutter=2)
        [(0, 4), (6, 4)]
    """
    usable = total - gutter * (parts - 1)
    if parts < 1 or usable < parts:
        msg = f"cannot split {total} px into {parts} parts with a {gutter} px gutter; lower collage_gutter"
        raise LayoutError(msg)
    base, extra = divmod(usable, parts)
    spans, offset = [], 0
    for i in range(parts):
        length = base + (1 if i < extra else 0)
        spans.append((offset, length))
        offset += length + gutter
    return spans


@lru_cache(maxsize=256)
def layout_cells(name: str, frame: Size, gutter: int = 0) -> tuple[Rect, ...]:
    """Cells of a named layout, in reading order (top to bottom, left to right).

    Examples:
        >>> layout_cells("1x2", Size(12, 8))
        (Rect(x=0, y=0, width=6, height=8), Rect(x=6, y=0, width=6, height=8))
        >>> layout_cells("1+2", Size(12, 8))
        (Rect(x=0, y=0, width=6, height=8), Rect(x=6, y=0, width=6, height=4), Rect(x=6, y=4, width=6, height=4))
    """
    if name in ("1+2", "2+1"):
        (x0, w0), (x1, w1) = split_span(frame.width, 2, gutter)
        big_x, stack_x, big_w, stack_w = (x0, x1, w0, w1) if name == "1+2" else (x1, x0, w1, w0)
        stack = [Rect(stack_x, y, stack_w, h) for y, h in split_span(frame.height, 2, gutter)]
        cells = [Rect(big_x, 0, big_w, frame.height), *stack]
    elif name in ("1/2", "2/1"):
        (y0, h0), (y1, h1) = split_span(frame.height, 2, gutter)
        big_y, row_y, big_h, row_h = (y0, y1, h0, h1) if name == "1/2" else (y1, y0, h1, h0)
        row = [Rect(x, row_y, w, row_h) for x, w in split_span(frame.width, 2, gutter)]
        cells = [Rect(0, big_y, frame.width, big_h), *row]
    else:
        rows, _, cols = name.partition("x")
        if not (rows.isdigit() and cols.isdigit()):
            msg = f"unknown layout {name!r}; use one of 1x2, 2x1, 1x3, 3x1, 2x2, 1+2, 2+1, 1/2, 2/1 or RxC"
            raise LayoutError(msg)
        cells = [
            Rect(x, y, w, h)
            for y, h in split_span(frame.height, int(rows), gutter)
            for x, w in split_span(frame.width, int(cols), gutter)
        ]
    return tuple(sorted(cells, key=lambda r: (r.y, r.x)))


def position_names(cells: Sequence[Rect], frame: Size) -> tuple[str, ...]:
    """Position markers for positional captions: ``LEFT``, ``TOP-RIGHT``, ``CENTER``...

    A cell spanning the whole width gets no horizontal word (``TOP`` not ``TOP-CENTER``). When two
    cells would get the same name (grids wider than three), every cell is called ``PANEL-<n>``.

    Examples:
        >>> position_names(layout_cells("2x2", Size(8, 8)), Size(8, 8))
        ('TOP-LEFT', 'TOP-RIGHT', 'BOTTOM-LEFT', 'BOTTOM-RIGHT')
        >>> position_names(layout_cells("2+1", Size(8, 8)), Size(8, 8))
        ('TOP-LEFT', 'RIGHT', 'BOTTOM-LEFT')
    """
    names = []
    for cell in cells:
        vertical = "" if cell.height >= frame.height else _third(cell.y * 2 + cell.height, frame.height * 2,
                                                                  ("TOP", "MIDDLE", "BOTTOM"))
        horizontal = "" if cell.width >= frame.width else _third(cell.x * 2 + cell.width, frame.width * 2,
                                                                  ("LEFT", "CENTER", "RIGHT"))
        if vertical == "MIDDLE" and horizontal:
            vertical = ""
        if horizontal == "CENTER" and vertical:
            horizontal = ""
        names.append("-".join(p for p in (vertical, horizontal) if p) or "FULL")
    if len(set(names)) != len(names):
        return tuple(f"PANEL-{i + 1}" for i in range(len(cells)))
    return tuple(names)


def _third(center2: int, total2: int, words: tuple[str, str, str]) -> str:
    # Compare doubled integers (centre*2 against total*2) so no float rounding decides a name.
    if center2 * 3 < total2:
        return words[0]
    if center2 * 3 > total2 * 2:
        return words[2]
    return words[1]


def fit_scale(src: Size, cell: Size, fit_mode: str) -> float:
    """Magnification a source gets in a cell: ``contain`` fits inside, ``cover`` fills it.

    Examples:
        >>> fit_scale(Size(100, 200), Size(50, 50), "contain"), fit_scale(Size(100, 200), Size(50, 50), "cover")
        (0.25, 0.5)
    """
    ratios = (cell.width / src.width, cell.height / src.height)
    return min(ratios) if fit_mode == "contain" else max(ratios)


def useful_pixels(src: Size, cell: Size, fit_mode: str) -> float:
    """Pixels of the cell showing source content, weighted by how much of the source survives.

    ``contain`` loses padding; ``cover`` loses the cropped part of the source. Maximising this picks
    side-by-side for portraits and stacked for landscapes.
    """
    scale = fit_scale(src, cell, fit_mode)
    shown = min(cell.width, src.width * scale) * min(cell.height, src.height * scale)
    kept_fraction = shown / (src.width * src.height * scale * scale)
    return shown * kept_fraction


def layouts_with(n: int, config: CollageConfig) -> tuple[str, ...]:
    """The allowed layout names that hold exactly ``n`` images."""
    return tuple(name for name in config.layout_names if layout_cell_count(name) == n)


def group_sizes(config: CollageConfig) -> tuple[int, ...]:
    """Image counts a collage frame may have under ``config`` (ascending)."""
    counts = {layout_cell_count(name) for name in config.layout_names}
    return tuple(sorted(c for c in counts if config.min_images <= c <= config.max_images))


def max_group_size(src: Size, frame: Size, config: CollageConfig) -> int:
    """Largest frame population a source may join without exceeding ``max_upscale``.

    A source is allowed into ``n``-image frames only if it fits *every* cell of *every* allowed
    layout with ``n`` or fewer images. That is stricter than necessary for some groups, but it means
    any group of allowed sources has a valid layout, so grouping never has to backtrack and the
    number of frames per epoch never changes. Returns 1 when the source must stay a single image.
    """
    best = 1
    for n in group_sizes(config):
        cells = {cell.size for name in layouts_with(n, config) for cell in layout_cells(name, frame, config.gutter)}
        if any(fit_scale(src, cell, config.fit_mode) > config.max_upscale + _TIE for cell in cells):
            break
        best = n
    return best


def plan_layout(sizes: Sequence[Size], frame: Size, config: CollageConfig, *, rng: random.Random) -> Layout:
    """Choose the layout and the source-to-cell assignment for one collage frame.

    Every allowed layout with ``len(sizes)`` cells and every assignment of sources to its cells is
    scored by ``useful_pixels``; assignments that would magnify a source beyond ``max_upscale`` are
    refused. Ties (mirror layouts, sources of equal aspect) are broken with ``rng``.

    Raises:
        LayoutError: when no allowed layout holds these sources within the limits.
    """
    n = len(sizes)
    best: list[tuple[str, tuple[Rect, ...], tuple[int, ...]]] = []
    best_score = -1.0
    for name in layouts_with(n, config):
        cells = layout_cells(name, frame, config.gutter)
        for order in _assignments(sizes, cells):
            score = _score(sizes, cells, order, config)
            if score is None or score < best_score - _TIE:
                continue
            if score > best_score + _TIE:
                best, best_score = [], score
            best.append((name, cells, order))
    if not best:
        msg = (f"no allowed layout holds {n} images of sizes {', '.join(map(str, sizes))} in a {frame} frame "
               f"within collage_max_upscale={config.max_upscale:g}; allow more layouts or raise collage_max_upscale")
        raise LayoutError(msg)
    name, cells, order = best[rng.randrange(len(best))] if len(best) > 1 else best[0]
    return Layout(name=name, frame=frame, cells=cells, order=order, names=position_names(cells, frame))


def _assignments(sizes: Sequence[Size], cells: Sequence[Rect]) -> list[tuple[int, ...]]:
    # Exhaustive for the usual 2-4 images; for larger grids match sources to cells by aspect rank.
    if len(sizes) <= 5:
        return list(itertools.permutations(range(len(sizes))))
    by_aspect = sorted(range(len(sizes)), key=lambda i: sizes[i].aspect)
    cell_rank = sorted(range(len(cells)), key=lambda i: cells[i].width / cells[i].height)
    order = [0] * len(cells)
    for src, cell in zip(by_aspect, cell_rank):
        order[cell] = src
    return [tuple(order)]


def _score(sizes: Sequence[Size], cells: Sequence[Rect], order: Sequence[int], config: CollageConfig) -> float | None:
    total = 0.0
    for cell, src_index in zip(cells, order):
        src = sizes[src_index]
        if fit_scale(src, cell.size, config.fit_mode) > config.max_upscale + _TIE:
            return None
        total += useful_pixels(src, cell.size, config.fit_mode)
    return total


def check_partition(layout: Layout) -> None:
    """Assert the layout invariants (for tests and debugging): inside the frame, no overlap."""
    for i, cell in enumerate(layout.cells):
        if cell.x < 0 or cell.y < 0 or cell.right > layout.frame.width or cell.bottom > layout.frame.height:
            raise AssertionError(f"cell {cell} leaves the {layout.frame} frame")
        if cell.width < 1 or cell.height < 1:
            raise AssertionError(f"cell {cell} is empty")
        for other in layout.cells[i + 1 :]:
            if cell.intersects(other):
                raise AssertionError(f"cells {cell} and {other} overlap")
    if sorted(layout.order) != list(range(len(layout.cells))):
        raise AssertionError(f"order {layout.order} is not a permutation")
