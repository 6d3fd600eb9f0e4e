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
import math
import random
from collections.abc import Sequence
from functools import lru_cache

from collage_ext.core.config import CollageConfig, layout_cell_count
from collage_ext.core.errors import LayoutError
from collage_ext.core.types import Layout, Rect, Size

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
        vertical = (
            ""
            if cell.height >= frame.height
            else _third(cell.y * 2 + cell.height, frame.height * 2, ("TOP", "MIDDLE", "BOTTOM"))
        )
        horizontal = (
            ""
            if cell.width >= frame.width
            else _third(cell.x * 2 + cell.width, frame.width * 2, ("LEFT", "CENTER", "RIGHT"))
        )
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


def choose_layout(
    sizes: Sequence[Size],
    frame: Size,
    config: CollageConfig,
    *,
    rng: random.Random,
    shaped: bool = False,
    max_crop: Sequence[float] | float = 0.0,
) -> Layout:
    """Choose the layout and the source-to-cell assignment for one collage frame.

    Every allowed layout with ``len(sizes)`` cells and every assignment of sources to its cells is
    scored first by how many sources keep the scale rule (span >= ``collage_min_span`` of the frame
    on one axis), then by ``useful_pixels``; assignments that would magnify a source beyond
    ``max_upscale`` are refused. Ties (mirror layouts, sources of equal aspect) are broken with ``rng``.

    With ``shaped`` (a content-shaped frame) side-by-side and stacked layouts size each cell to its
    source's aspect (``line_cells``), so the sources fill the frame edge to edge. ``max_crop`` (per
    source, or one share for all; fixed frames only) lets a line crop each source's overhang up to that
    share so it keeps the full frame height (side by side) or width (stacked); such a layout is
    rendered with ``cover`` (``Layout.fit``).

    Raises:
        LayoutError: when no allowed layout holds these sources within the limits.
    """
    n = len(sizes)
    crops = [float(max_crop)] * n if isinstance(max_crop, (int, float)) else [float(c) for c in max_crop]
    best = _best_layouts(tuple(sizes), frame, config, shaped, tuple(crops))
    if not best:
        msg = (
            f"no allowed layout holds {n} images of sizes {', '.join(map(str, sizes))} in a {frame} frame "
            f"within collage_max_upscale={config.max_upscale:g}; allow more layouts or raise collage_max_upscale"
        )
        raise LayoutError(msg)
    name, cells, order, fit = best[rng.randrange(len(best))] if len(best) > 1 else best[0]
    return Layout(name=name, frame=frame, cells=cells, order=order, names=position_names(cells, frame), fit=fit)


@lru_cache(maxsize=8192)
def _best_layouts(
    sizes: tuple[Size, ...], frame: Size, config: CollageConfig, shaped: bool, crops: tuple[float, ...]
) -> tuple[tuple[str, tuple[Rect, ...], tuple[int, ...], str | None], ...]:
    """The best-scoring (layout, cells, source order, fit) of ``choose_layout``, before its random pick.

    A pure function of its arguments, kept: a dataset's images come in few sizes, so the same size
    combinations are scored again for every frame of every epoch (and the studio after every edit).
    """
    best: list[tuple[str, tuple[Rect, ...], tuple[int, ...], str | None]] = []
    best_score: tuple[int, float] = (-1, -1.0)
    for name in layouts_with(len(sizes), config):
        fixed = None if shaped and is_line_layout(name) else layout_cells(name, frame, config.gutter)
        for order in _assignments(sizes, fixed or layout_cells(name, frame, config.gutter)):
            fit: str | None = None
            if fixed is not None:
                cells = fixed
            else:
                cells, cropped = line_plan(name, [sizes[i] for i in order], frame, config, [crops[i] for i in order])
                fit = "cover" if cropped else None
            score = _score(sizes, cells, order, frame, config, fit or config.fit_mode)
            if score is None or _worse(score, best_score):
                continue
            if _better(score, best_score):
                best, best_score = [], score
            best.append((name, cells, order, fit))
    return tuple(best)


def _better(a: tuple[int, float], b: tuple[int, float]) -> bool:
    return a[0] > b[0] or (a[0] == b[0] and a[1] > b[1] + _TIE)


def _worse(a: tuple[int, float], b: tuple[int, float]) -> bool:
    return a[0] < b[0] or (a[0] == b[0] and a[1] < b[1] - _TIE)


def is_line_layout(name: str) -> bool:
    """``1xN`` (side by side) or ``Nx1`` (stacked): every cell spans the frame along one axis.

    Examples:
        >>> is_line_layout("1x3"), is_line_layout("2x1"), is_line_layout("2x2"), is_line_layout("1+2")
        (True, True, False, False)
    """
    rows, _, cols = name.partition("x")
    return rows.isdigit() and cols.isdigit() and (rows == "1" or cols == "1")


def line_cells(name: str, sizes: Sequence[Size], frame: Size, config: CollageConfig) -> tuple[Rect, ...]:
    """Cells of a side-by-side (``1xN``) or stacked (``Nx1``) line sized to its sources' aspects.

    Side by side, the sources share one height: the frame height when they are narrower together
    than the frame (the line is centred), else the height that makes them exactly fill the width.
    No source is magnified beyond ``collage_max_upscale``: its cell shrinks (centred) instead.
    ``sizes`` are in cell order.

    Examples:
        >>> from collage_ext.core.config import CollageConfig
        >>> line_cells("1x2", [Size(600, 900), Size(600, 900)], Size(1152, 896), CollageConfig())
        (Rect(x=0, y=0, width=576, height=896), Rect(x=576, y=0, width=576, height=896))
    """
    return line_plan(name, sizes, frame, config)[0]


def line_plan(
    name: str, sizes: Sequence[Size], frame: Size, config: CollageConfig, max_crop: Sequence[float] | None = None
) -> tuple[tuple[Rect, ...], bool]:
    """``line_cells`` where each source may lose up to ``max_crop[i]`` of its width (side by side) or
    height (stacked) to keep the full frame height (width); returns the cells and whether any crops.

    A line too long for the frame is cut back by one common share of every source (capped per source;
    the others then give more); only when the caps are reached does the line's height shrink. A
    cropped cell has the cut-down aspect, so ``cover`` fills it with exactly that crop.

    Examples:
        >>> from collage_ext.core.config import CollageConfig
        >>> line_plan("1x2", [Size(600, 900)] * 2, Size(1024, 1024), CollageConfig(), [0.3, 0.3])
        ((Rect(x=0, y=0, width=512, height=1024), Rect(x=512, y=0, width=512, height=1024)), True)
    """
    return _line_plan(name, tuple(sizes), frame, config, None if max_crop is None else tuple(max_crop))


@lru_cache(maxsize=8192)
def _line_plan(
    name: str, sizes: tuple[Size, ...], frame: Size, config: CollageConfig, max_crop: tuple[float, ...] | None
) -> tuple[tuple[Rect, ...], bool]:
    """``line_plan``, kept: a pure function that planning, shape levels and the check ask again and again
    for the same few sizes."""
    if name.endswith("x1") and not name.startswith("1x"):  # stacked: the transposed problem
        flipped, cropped = line_plan(
            f"1x{len(sizes)}",
            [Size(s.height, s.width) for s in sizes],
            Size(frame.height, frame.width),
            config,
            max_crop,
        )
        return tuple(Rect(r.y, r.x, r.height, r.width) for r in flipped), cropped
    n, gutter = len(sizes), config.gutter
    avail = frame.width - gutter * (n - 1)
    aspects = [s.width / s.height for s in sizes]
    kept = _kept_shares(aspects, frame.height, avail, max_crop or [0.0] * n)
    cropped = any(k < 1 - 1e-9 for k in kept)
    aspects = [a * k for a, k in zip(aspects, kept)]
    height = min(float(frame.height), avail / sum(aspects))
    heights = [min(height, s.height * config.max_upscale) for s in sizes]
    exact = [a * h for a, h in zip(aspects, heights)]
    # Width-limited (or cropped to fit): split the width exactly, so the line meets both frame edges.
    if heights == [height] * n and (height < frame.height or (cropped and sum(exact) > avail - 1)):
        widths = _largest_remainder(exact, avail)
    else:
        widths = [max(1, math.floor(w + 0.5)) for w in exact]
        while sum(widths) > avail:  # rounding overflow (cannot exceed n px)
            widths[widths.index(max(widths))] -= 1
    x = (frame.width - sum(widths) - gutter * (n - 1)) // 2
    cells = []
    for w, h, full in zip(widths, heights, (h >= height for h in heights)):
        # A cropped (cover) cell must have the cut-down aspect: its height is the line's, not the frame's.
        cell_h = frame.height if full and not cropped else max(1, min(frame.height, math.floor(h + 1e-6)))
        cells.append(Rect(x, (frame.height - cell_h) // 2, w, cell_h))
        x += w + gutter
    return tuple(cells), cropped


def _kept_shares(aspects: Sequence[float], height: int, avail: int, caps: Sequence[float]) -> list[float]:
    """Per source, the share of its width kept so the line fits ``avail`` at ``height`` (water-filling).

    Every source loses the same share ``c`` of its width, each at most its cap; sources at their cap
    keep the rest. ``c`` is the smallest share that fits, or every cap when even that is too long.
    """
    total = sum(aspects) * height
    if total <= avail or not any(c > 0 for c in caps):
        return [1.0] * len(aspects)
    lo, hi = 0.0, max(caps)

    def width(c: float) -> float:
        return sum(a * (1 - min(c, cap)) for a, cap in zip(aspects, caps)) * height

    if width(hi) > avail:
        return [1 - cap for cap in caps]
    for _ in range(60):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if width(mid) > avail else (lo, mid)
    return [1 - min(hi, cap) for cap in caps]


def _largest_remainder(parts: Sequence[float], total: int) -> list[int]:
    scale = total / sum(parts)
    raw = [p * scale for p in parts]
    out = [max(1, math.floor(r)) for r in raw]
    for i in sorted(range(len(raw)), key=lambda i: (out[i] - raw[i], i))[: max(0, total - sum(out))]:
        out[i] += 1
    return out


def source_span(src: Size, cell: Rect, frame: Size, fit_mode: str) -> float:
    """The larger share of the frame's width or height that a source shows across in its cell.

    Examples:
        >>> source_span(Size(600, 900), Rect(0, 0, 576, 896), Size(1152, 896), "contain")
        0.9642857142857143
    """
    if fit_mode == "contain":
        scale = fit_scale(src, cell.size, fit_mode)
        width, height = min(cell.width, src.width * scale), min(cell.height, src.height * scale)
    else:
        width, height = cell.width, cell.height
    return max(width / frame.width, height / frame.height)


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


def _score(
    sizes: Sequence[Size],
    cells: Sequence[Rect],
    order: Sequence[int],
    frame: Size,
    config: CollageConfig,
    fit_mode: str,
) -> tuple[int, float] | None:
    total, keeping = 0.0, 0
    for cell, src_index in zip(cells, order):
        src = sizes[src_index]
        if fit_scale(src, cell.size, fit_mode) > config.max_upscale + _TIE:
            return None
        total += useful_pixels(src, cell.size, fit_mode)
        keeping += source_span(src, cell, frame, fit_mode) >= config.min_span - _TIE
    return keeping, total


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
