"""Content-shaped frames: a collage frame takes the bucket that fits its arrangement.

The technique's scale rule (a pattern is learned relative to the frame) asks every source to span
its frame along one axis. A fixed square frame cannot give that to two 2:3 portraits; a 4:3 frame
can. sd-scripts already trains on frames of many shapes (aspect-ratio buckets), so a collage of
two portraits side by side gets the bucket closest to 4:3 and is rendered at exactly that size.

A frame's shape must stay the same for a whole run (sd-scripts assigns buckets and counts steps
once), while partners change every epoch. So sources are sorted into **shape classes** (the bucket
sd-scripts would give each image alone); a group holds sources of one class, and the frame of a
``k``-image group of a class is fixed: the class's typical aspect, ``k`` times, side by side for
portraits and squares, stacked for landscapes. Pure arithmetic, no image I/O.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cached_property
from statistics import median

from .buckets import Buckets, make_bucket_resolutions
from .config import CollageConfig, layout_cell_count
from .layout import is_line_layout as is_line
from .types import Size

#: Arrangements of one class whose aspects differ by less than this factor share a class when a
#: class is too small to fill a frame on its own.
MERGE_RATIO = 1.3

#: Keeping the scale rule may cost padding; below this fill the bucket with the best balance of span
#: and fill is used instead (only where the bucket steps are coarse for the resolution, e.g. 512 px).
MIN_RULE_FILL = 0.9

#: Two odd classes merge only when this close: their pairs then vary in shape, so the fill drops.
PAIR_MERGE_RATIO = 1.2

#: A frame of three must keep this share of the pair frame's area (``max_bucket_reso`` can make a
#: three-wide frame tiny); otherwise a class's odd leftover stays single or pairs across classes.
GROW_AREA = 0.8


def arrangement_aspect(name: str, aspect: float) -> float:
    """Width / height of ``name`` filled with sources of width / height ``aspect``.

    Examples:
        >>> arrangement_aspect("1x2", 2 / 3), arrangement_aspect("2x1", 1.5)
        (1.3333333333333333, 0.75)
    """
    if name in ("1+2", "2+1"):
        return aspect * 1.5
    if name in ("1/2", "2/1"):
        return aspect / 1.5
    rows, _, cols = name.partition("x")
    return aspect * int(cols) / int(rows)


@dataclass(frozen=True)
class ShapePlan:
    """Shape classes of one pool and the frame of every (class, group size).

    Attributes:
        buckets: the dataset's bucket settings.
        config: the pool's collage settings.
        classes: per record, its shape class.
        aspects: per class, the typical (median) aspect of its sources.
        sizes: per record, its effective size.
    """

    buckets: Buckets
    config: CollageConfig
    classes: tuple[int, ...]
    aspects: dict[int, float]
    sizes: tuple[Size, ...]
    _frames: dict[tuple[int, int], tuple[str, Size]] = field(default_factory=dict, repr=False, compare=False)

    @cached_property
    def _spread(self) -> dict[int, tuple[float, float]]:
        """Per class, the narrowest and widest member aspect."""
        out: dict[int, tuple[float, float]] = {}
        for size, cls in set(zip(self.sizes, self.classes)):
            a = size.width / size.height
            lo, hi = out.get(cls, (a, a))
            out[cls] = (min(lo, a), max(hi, a))
        return out

    @cached_property
    def _smallest(self) -> dict[int, tuple[int, int]]:
        """Per class, the smallest member width and height (``bucket_no_upscale`` frames)."""
        out: dict[int, tuple[int, int]] = {}
        for size, cls in set(zip(self.sizes, self.classes)):
            w, h = out.get(cls, (size.width, size.height))
            out[cls] = (min(w, size.width), min(h, size.height))
        return out

    @cached_property
    def group_sizes(self) -> tuple[int, ...]:
        """Image counts a shaped frame may hold (ascending)."""
        counts = {layout_cell_count(n) for n in self.config.layout_names}
        return tuple(sorted(c for c in counts if self.config.min_images <= c <= self.config.max_images))

    def layout_for(self, cls: int, k: int) -> str:
        """The arrangement of a ``k``-image group of class ``cls``.

        Lines (side by side, stacked) come first, the one whose shape is nearest a square: portraits
        side by side, landscapes stacked. Other layouts only when the user listed no line of ``k``.
        """
        names = [n for n in self.config.layout_names if layout_cell_count(n) == k]
        aspect = self.aspects[cls]
        lines = [n for n in names if is_line(n)]
        pool = lines or names
        return min(pool, key=lambda n: (abs(math.log(arrangement_aspect(n, aspect))), n != f"1x{k}"))

    def frame(self, cls: int, k: int) -> Size:
        """The frame of a ``k``-image group of class ``cls`` (constant for the run)."""
        key = (cls, k)
        if key not in self._frames:
            name = self.layout_for(cls, k)
            target = arrangement_aspect(name, self.aspects[cls])
            self._frames[key] = (name, self._frame_for(cls, target, name))
        return self._frames[key][1]

    def _frame_for(self, cls: int, target: float, name: str) -> Size:
        b = self.buckets
        if not b.no_upscale:
            # The bucket nearest the arrangement's shape among those where the line still spans
            # collage_min_span of the frame (side by side: a wider frame only adds side padding).
            # Partners vary within a class, so the widest (side by side) or narrowest (stacked)
            # members of the class should keep the rule too, where a bucket allows it.
            low, high = self._spread[cls]
            extreme = arrangement_aspect(name, high if name.startswith("1x") else low)

            def span(reso: tuple[int, int], arrangement: float) -> float:
                ratio = reso[0] / reso[1] / arrangement
                if name.startswith("1x"):
                    return min(1.0, ratio)
                return min(1.0, 1 / ratio) if is_line(name) else 1.0

            rule = self.config.min_span - 1e-9

            def fill(reso: tuple[int, int]) -> float:
                ratio = reso[0] / reso[1] / target
                return min(ratio, 1 / ratio)

            def nearest(resos: list[tuple[int, int]]) -> tuple[int, int]:
                return min(resos, key=lambda r: (abs(math.log(r[0] / r[1] / target)), -r[0] * r[1]))

            for arrangement in (extreme, target):
                keeping = [r for r in b.resos if span(r, arrangement) >= rule]
                if keeping and fill(nearest(keeping)) >= MIN_RULE_FILL:
                    return Size(*nearest(keeping))
            # Coarse buckets (low resolution, large steps) may hold no shape that keeps the rule
            # without much padding: take the best balance of span and fill instead.
            return Size(*max(b.resos, key=lambda r: (min(fill(r), span(r, target)), r[0] * r[1])))
        # bucket_no_upscale: sd-scripts keeps an image's own size (floored to steps) up to the area;
        # the frame is the arrangement at its smallest member's scale, so nothing is magnified.
        aspect = self.aspects[cls]
        smallest_w, smallest_h = self._smallest[cls]
        if target >= aspect:  # grows in width: sources keep their height
            height = float(smallest_h)
            width = height * target
        else:
            width = float(smallest_w)
            height = width / target
        scale = min(1.0, math.sqrt(b.area / (width * height)))
        steps = b.steps
        return Size(max(steps, int(width * scale) // steps * steps), max(steps, int(height * scale) // steps * steps))

    def level(self, index: int) -> int:
        """Largest group a record may join without being magnified beyond ``collage_max_upscale``.

        Its cell in a ``k``-image frame of its class, with partners of the class's typical aspect.
        Returns 1 when it must stay a single image.
        """
        cls, src = self.classes[index], self.sizes[index]
        best = 1
        for k in self.group_sizes:
            frame = self.frame(cls, k)
            name = self._frames[(cls, k)][0]
            if self.cell_scale(name, frame, src, self.aspects[cls]) > self.config.max_upscale + 1e-9:
                break
            best = k
        return best

    @staticmethod
    def cell_scale(name: str, frame: Size, src: Size, partner_aspect: float) -> float:
        """Magnification ``src`` needs to span its line of ``name`` in ``frame``."""
        k = layout_cell_count(name)
        a = src.width / src.height
        if not is_line(name):
            rows, _, cols = name.partition("x") if "x" in name else ("2", "", "2")
            return min(frame.width / int(cols) / src.width, frame.height / int(rows) / src.height)
        if name.startswith("1x"):  # side by side: common height
            height = min(frame.height, frame.width / ((k - 1) * partner_aspect + a))
            return height / src.height
        width = min(frame.width, frame.height / ((k - 1) / partner_aspect + 1 / a))
        return width / src.width

    def describe(self, used: Sequence[tuple[int, int]]) -> list[str]:
        """One line per (class, group size) in ``used``: ``portrait 0.67 x2 side by side -> 1152x896``."""
        out = []
        for cls, k in sorted(set(used)):
            frame = self.frame(cls, k)
            out.append(f"{_aspect_text(self.aspects[cls])} x{k} {_arrangement_text(self.layout_for(cls, k))} -> {frame}")
        return out


def _aspect_text(aspect: float) -> str:
    kind = "square" if abs(math.log(aspect)) < math.log(1.1) else ("portrait" if aspect < 1 else "landscape")
    return f"{kind} {aspect:.2f}"


def _arrangement_text(name: str) -> str:
    if name.startswith("1x"):
        return "side by side"
    if name.endswith("x1"):
        return "stacked"
    return f"in {name}"


def plan_shapes(sizes: Sequence[Size], buckets: Buckets, config: CollageConfig,
                weights: Sequence[int] | None = None) -> ShapePlan:
    """Sort sources into shape classes (the bucket each would get alone) and merge classes too small to pair.

    A class with fewer sources than ``collage_min_images`` joins the nearest class of the same
    orientation when their aspects differ by less than ``MERGE_RATIO``; otherwise its sources
    stay single images rather than break the scale rule. Two neighbouring classes with an odd
    number of instances (``weights``: repeats per source) that cannot grow a frame by one (the
    bucket range would make it too small) merge too, so their leftovers pair instead of training single.
    """
    reference = buckets.resos if buckets.enable and not buckets.no_upscale and len(buckets.resos) > 1 else \
        make_bucket_resolutions(buckets.resolution, 256, 2 * max(buckets.resolution), buckets.steps)
    logs = [math.log(w / h) for w, h in reference]
    known: dict[Size, int] = {}  # datasets repeat a handful of sizes
    classes = []
    for size in sizes:
        if size not in known:
            a = math.log(size.width / size.height)
            known[size] = min(range(len(logs)), key=lambda i: (abs(logs[i] - a), i))
        classes.append(known[size])
    members: dict[int, list[int]] = {}
    for i, c in enumerate(classes):
        members.setdefault(c, []).append(i)
    need = max(2, config.min_images)
    # Merge small classes into the nearest bigger one of the same orientation, smallest first.
    for c in sorted(members, key=lambda c: (len(members[c]), c)):
        if c not in members or len(members[c]) >= need:
            continue
        here = logs[c]
        options = [o for o in members if o != c and (logs[o] < 0) == (here < 0)
                   and abs(logs[o] - here) < math.log(MERGE_RATIO)]
        if not options:
            continue
        target = min(options, key=lambda o: (abs(logs[o] - here), -len(members[o]), o))
        moved = members.pop(c)
        for i in moved:
            classes[i] = target
        members[target].extend(moved)
    aspects = {c: median(sizes[i].width / sizes[i].height for i in idx) for c, idx in members.items()}
    plan = ShapePlan(buckets, config, tuple(classes), aspects, tuple(sizes))
    small = plan.group_sizes[0] if plan.group_sizes else 0
    if small != 2 or weights is None:
        return plan

    def stuck(c: int) -> bool:  # an odd class whose leftover cannot join a frame of three
        count = sum(weights[i] for i in members[c])
        return count % 2 == 1 and not (3 in plan.group_sizes and plan.frame(c, 3).area >= GROW_AREA * plan.frame(c, 2).area)

    odd = sorted((c for c in members if len(members[c]) >= need and stuck(c)), key=lambda c: logs[c])
    merged = False
    k = 0
    while k + 1 < len(odd):
        a, b = odd[k], odd[k + 1]
        if (logs[a] < 0) == (logs[b] < 0) and abs(logs[a] - logs[b]) < math.log(PAIR_MERGE_RATIO):
            for i in members.pop(b):
                classes[i] = a
                members[a].append(i)
            merged = True
            k += 2
        else:
            k += 1
    if not merged:
        return plan
    aspects = {c: median(sizes[i].width / sizes[i].height for i in idx) for c, idx in members.items()}
    return ShapePlan(buckets, config, tuple(classes), aspects, tuple(sizes))
