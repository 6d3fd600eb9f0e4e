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
from dataclasses import dataclass, field, replace
from functools import cached_property
from statistics import median

from collage_ext.core.config import CollageConfig, layout_cell_count
from collage_ext.core.types import Size
from collage_ext.geometry.buckets import Buckets, make_bucket_resolutions
from collage_ext.geometry.layout import fit_scale, line_plan, source_span
from collage_ext.geometry.layout import is_line_layout as is_line

#: Arrangements of one class whose aspects differ by less than this factor share a class when a
#: class is too small to fill a frame on its own.
MERGE_RATIO = 1.3

#: Keeping the scale rule may cost padding; below this fill the bucket with the best balance of span
#: and fill is used instead (only where the bucket steps are coarse for the resolution, e.g. 512 px).
MIN_RULE_FILL = 0.9

#: Fewest buckets a run's own set needs to sort sources into shape classes (else the 1024 px set is used).
CLASS_BUCKETS = 16

#: A class whose members spread over aspects takes a frame that keeps the rule for all of them when
#: its typical pair still fills this share of it (else the best balance of span and fill).
MIN_SPREAD_FILL = 0.8

#: Two odd classes merge only when this close: their pairs then vary in shape, so the fill drops.
PAIR_MERGE_RATIO = 1.2

#: A frame of three must keep this share of the pair frame's area (``max_bucket_reso`` can make a
#: three-wide frame tiny); otherwise a class's odd leftover stays single or pairs across classes.
GROW_AREA = 0.8


def area_tolerance(buckets: Buckets) -> float:
    """The share of a member's own bucket area a collage frame must reach to count as "as large".

    A collage frame is never smaller than the bucket its members would get alone in plain sd-scripts
    (the technique's rule at the frame level). sd-scripts' own buckets of one resolution differ in area
    by up to one bucket step on a side (whole steps), so frame and bucket count as equal within that:
    0.9375 at 1024 px with 64 px steps, 0.875 at 512 px.

    Examples:
        >>> area_tolerance(Buckets.from_params(Size(1024, 1024), {"enable_bucket": True}))
        0.9375
    """
    return 1 - buckets.steps / math.sqrt(buckets.area)


#: Offset of each size tier (``bucket_no_upscale``): tier ``t`` of class ``c`` is ``c + (t + 1) * TIER``.
TIER = 1_000_000


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
class ShapeClasses:
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
    #: A fixed frame (``collage_frame_size``, or no bucketing): every collage has this size.
    fixed: Size | None = None
    #: Fixed frames: the share of a source's width (side by side) or height (stacked) a line may crop.
    max_crop: float = 0.0
    #: Per record: it has a crop box (nothing more is cut from it).
    boxed: tuple[bool, ...] = ()
    _frames: dict[tuple[int, int], tuple[str, Size]] = field(default_factory=dict, repr=False, compare=False)
    #: ``limit`` per record: planning and every check statistic ask for each record's several times.
    _limits: dict[int, tuple[int, str]] = field(default_factory=dict, repr=False, compare=False)

    @cached_property
    def _unlimited(self) -> CollageConfig:
        """The settings without the magnification limit (``_line_limit``)."""
        return replace(self.config, max_upscale=1e9)

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
    def _boxed_count(self) -> dict[int, int]:
        """Per class, its members with a crop box."""
        out: dict[int, int] = {}
        for c, boxed in zip(self.classes, self.boxed):
            out[c] = out.get(c, 0) + boxed
        return out

    @cached_property
    def _own_area(self) -> dict[int, int]:
        """Per class, the largest bucket area a member gets alone."""
        out: dict[int, int] = {}
        for i, cls in enumerate(self.classes):
            out[cls] = max(out.get(cls, 0), self.own_bucket_area(i))
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
        target = 1.0 if self.fixed is None else self.fixed.width / self.fixed.height  # nearest the frame's shape
        return min(pool, key=lambda n: (abs(math.log(arrangement_aspect(n, aspect) / target)), n != f"1x{k}"))

    def frame(self, cls: int, k: int) -> Size:
        """The frame of a ``k``-image group of class ``cls`` (constant for the run)."""
        key = (cls, k)
        if key not in self._frames:
            name = self.layout_for(cls, k)
            target = arrangement_aspect(name, self.aspects[cls])
            self._frames[key] = (name, self.fixed or self._frame_for(cls, target, name))
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

            crop = self.max_crop
            side = name.startswith("1x")

            def span(reso: tuple[int, int], arrangement: float) -> float:
                # A line longer than the frame crops up to max_crop of each source, then shrinks.
                ratio = reso[0] / reso[1] / arrangement
                if not is_line(name):
                    return 1.0
                short = ratio if side else 1 / ratio
                return min(1.0, short / (1 - crop)) if crop < 1 else 1.0

            rule = self.config.min_span - 1e-9

            def fill(reso: tuple[int, int]) -> float:
                ratio = reso[0] / reso[1] / target
                if not is_line(name):
                    return min(ratio, 1 / ratio)
                over = ratio if side else 1 / ratio  # > 1: the frame is longer than the line (padding)
                if over >= 1:
                    return 1 / over
                return min(1.0, over / (1 - crop)) if crop < 1 else 1.0  # cropped to fit, then shrunk

            def nearest(resos: list[tuple[int, int]]) -> tuple[int, int]:
                return min(resos, key=lambda r: (abs(math.log(r[0] / r[1] / target)), -r[0] * r[1]))

            # Frames at least as large as the class's own buckets (max_bucket_reso can cap a wide shape
            # below the area: a bucket nearer a square, with some crop, may keep it).
            own = area_tolerance(b) * self._own_area[cls]
            large = [r for r in b.resos if r[0] * r[1] >= own] or b.resos
            for resos in (large, b.resos):
                for arrangement in (extreme, target):
                    keeping = [r for r in resos if span(r, arrangement) >= rule]
                    if keeping and fill(nearest(keeping)) >= MIN_RULE_FILL:
                        return Size(*nearest(keeping))
                # A class spread over aspects (coarse buckets put 3:2 and 16:9 in one) keeps the rule for
                # all its members at some padding, rather than break it for the extreme ones.
                keeping = [r for r in resos if span(r, extreme) >= rule]
                if keeping and fill(nearest(keeping)) >= MIN_SPREAD_FILL:
                    return Size(*nearest(keeping))
            # Coarse buckets (low resolution, large steps) may hold no shape that keeps the rule
            # without much padding: take the best balance of span and fill instead.
            return Size(*max(b.resos, key=lambda r: (min(fill(r), span(r, target)), r[0] * r[1])))
        # bucket_no_upscale: sd-scripts keeps an image's own size (floored to steps) up to the area;
        # the frame is the arrangement at its smallest member's scale, so nothing is magnified.
        return no_upscale_frame(b, target, self.aspects[cls], *self._smallest[cls])

    def level(self, index: int) -> int:
        """Largest group a record may join and keep the rule; 1 when it must stay a single image.

        Its cell in a ``k``-image frame of its class, with partners of the class's typical aspect, must
        not magnify it beyond ``collage_max_upscale``; a content-shaped frame must not be smaller than
        the bucket the record gets alone (``area_tolerance``); in a fixed frame the record must span
        ``collage_min_span`` of the frame, cropping at most its ``collage_max_crop`` share.
        """
        return self.limit(index)[0]

    def limit(self, index: int) -> tuple[int, str]:
        """``(level, why)``: ``why`` names what stops the next larger group, ``""`` when nothing does.

        ``upscale`` (too small for the cell), ``area`` (the frame would be smaller than the record's own
        bucket: ``max_bucket_reso`` or ``bucket_no_upscale``), ``span`` (a fixed frame cannot keep the rule).
        """
        found = self._limits.get(index)
        if found is None:
            found = self._limits[index] = self._limit(index)
        return found

    def _limit(self, index: int) -> tuple[int, str]:
        cls, src = self.classes[index], self.sizes[index]
        own = self.own_bucket_area(index)
        best = 1
        for k in self.group_sizes:
            frame = self.frame(cls, k)
            name = self._frames[(cls, k)][0]
            if is_line(name):
                why = self._line_limit(index, name, k, frame)
                if why:
                    return best, why
            elif self.cell_scale(name, frame, src, self.aspects[cls]) > self.config.max_upscale + 1e-9:
                return best, "upscale"
            if self.fixed is None and frame.area < area_tolerance(self.buckets) * own:
                return best, "area"
            best = k
        return best, ""

    def own_bucket_area(self, index: int) -> int:
        """Area of the bucket sd-scripts gives record ``index`` alone (the resolution's without bucketing)."""
        if self.fixed is not None or not self.buckets.enable:
            return self.buckets.area
        (w, h), _ = self.buckets.select(self.sizes[index])
        return w * h

    def _line_limit(self, index: int, name: str, k: int, frame: Size) -> str:
        """``""`` when record ``index`` spans ``collage_min_span`` of ``frame`` in a ``name`` line of ``k``.

        Partners get the class's most demanding aspect (widest side by side, narrowest stacked) and
        the class's crop allowance, so any group the planner forms keeps the rule too. Else ``upscale``
        (it cannot reach the span within ``collage_max_upscale``) or ``span``.
        """
        cls, src = self.classes[index], self.sizes[index]
        low, high = self._spread[cls]
        partner_aspect = high if name.startswith("1x") else low
        partner = Size(max(1, round(8192 * partner_aspect)), 8192)  # large: never limited by max_upscale
        # A line's cells share one height (width, stacked): if this record spans, so do its partners.
        # A boxed record is never cut; its partner takes the cut (or another boxed one, which cannot).
        boxed = bool(self.boxed) and self.boxed[index]
        cap = 0.0 if boxed else self.max_crop
        partner_cap = 0.0 if boxed and self._boxed_count.get(cls, 0) > 1 else self.max_crop
        if self.config.min_span <= 0:  # the rule is off: only the magnification of the natural line counts
            too_big = self.cell_scale(name, frame, src, partner_aspect) > self.config.max_upscale + 1e-9
            return "upscale" if too_big else ""
        # The line as it would be without the magnification limit: the record must fill its cell
        # within collage_max_upscale (line_plan would shrink the cell instead) and span the frame.
        cells, cropped = line_plan(
            name, [src] + [partner] * (k - 1), frame, self._unlimited, [cap] + [partner_cap] * (k - 1)
        )
        mode = "cover" if cropped else self.config.fit_mode
        if fit_scale(src, cells[0].size, mode) > self.config.max_upscale + 1e-9:
            return "upscale"
        if source_span(src, cells[0], frame, mode) < self.config.min_span - 1e-9:
            return "span"
        return ""

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
            out.append(
                f"{_aspect_text(self.aspects[cls])} x{k} {_arrangement_text(self.layout_for(cls, k))} -> {frame}"
            )
        return out


def no_upscale_frame(buckets: Buckets, target: float, aspect: float, smallest_w: int, smallest_h: int) -> Size:
    """``bucket_no_upscale``: the frame of aspect ``target`` at the scale of its smallest member, within the area.

    Examples:
        >>> b = Buckets.from_params(Size(1024, 1024), {"enable_bucket": True, "bucket_no_upscale": True})
        >>> no_upscale_frame(b, 4 / 3, 2 / 3, 400, 600)  # two 400x600 side by side: 800x600, in whole steps
        Size(width=768, height=576)
    """
    if target >= aspect:  # grows in width: sources keep their height
        height = float(smallest_h)
        width = height * target
    else:
        width = float(smallest_w)
        height = width / target
    scale = min(1.0, math.sqrt(buckets.area / (width * height)))
    steps = buckets.steps
    max_w, max_h = width * scale, height * scale
    floor_w, floor_h = max(steps, int(max_w) // steps * steps), max(steps, int(max_h) // steps * steps)
    # Whole steps, no larger than the arrangement at that scale (nothing magnified), within the area.
    # Flooring both sides can skew the shape (1086x965 -> 1024x960 cuts a side-by-side line's height to
    # 0.948); a step more on one side, where the area allows, keeps it.
    options = [(floor_w, floor_h)]
    for w, h in ((floor_w + steps, floor_h), (floor_w, floor_h + steps)):
        if w * h <= buckets.area and w <= max(width, steps) and h <= max(height, steps):
            options.append((w, h))

    def score(size: tuple[int, int]) -> tuple[float, int]:
        ratio = size[0] / size[1] / target
        return (min(ratio, 1 / ratio), size[0] * size[1])

    return Size(*max(options, key=score))


def _aspect_text(aspect: float) -> str:
    kind = "square" if abs(math.log(aspect)) < math.log(1.1) else ("portrait" if aspect < 1 else "landscape")
    return f"{kind} {aspect:.2f}"


def _arrangement_text(name: str) -> str:
    if name.startswith("1x"):
        return "side by side"
    if name.endswith("x1"):
        return "stacked"
    return f"in {name}"


def shape_classes(
    sizes: Sequence[Size],
    buckets: Buckets,
    config: CollageConfig,
    weights: Sequence[int] | None = None,
    *,
    fixed: Size | None = None,
    max_crop: float = 0.0,
    boxed: Sequence[bool] | None = None,
) -> ShapeClasses:
    """Sort sources into shape classes (the bucket each would get alone) and merge classes too small to pair.

    A class with fewer sources than ``collage_min_images`` joins the nearest class of the same
    orientation when their aspects differ by less than ``MERGE_RATIO``; otherwise its sources
    stay single images rather than break the scale rule. Two neighbouring classes with an odd
    number of instances (``weights``: repeats per source) that cannot grow a frame by one (the
    bucket range would make it too small) merge too, so their leftovers pair instead of training single.

    Lines may crop ``max_crop`` of a source where its shape differs from its cell, never a source with a
    crop box (``boxed``: its partners take the cut, else it trains alone). ``fixed``: every collage has
    this frame (``collage_frame_size`` or no bucketing).
    With ``bucket_no_upscale`` a class is split into size tiers, so a small image never shrinks the frame
    of large ones (``area_tolerance``); an image alone in its tier trains single, at its own bucket.
    """
    # Classes sort by aspect: the run's own bucket set where it is fine-grained, else sd-scripts' set at
    # 1024 px (a 256 px run buckets everything into 256x256, which would put portraits beside landscapes).
    own = buckets.resos if buckets.enable and not buckets.no_upscale else []
    reference = own if len(own) >= CLASS_BUCKETS else make_bucket_resolutions(Size(1024, 1024), 256, 2048, 64)
    logs = [math.log(w / h) for w, h in reference]
    boxes = tuple(bool(b) for b in boxed) if boxed is not None and max_crop > 0 else ()

    def log_of(c: int) -> float:
        return logs[c % TIER]

    def kind(c: int) -> int:  # classes of different size tiers never merge
        return c - c % TIER

    known: dict[Size, int] = {}  # datasets repeat a handful of sizes
    classes = []
    for size in sizes:
        if size not in known:
            a = math.log(size.width / size.height)
            known[size] = min(range(len(logs)), key=lambda j: (abs(logs[j] - a), j))
        classes.append(known[size])
    members: dict[int, list[int]] = {}
    for i, c in enumerate(classes):
        members.setdefault(c, []).append(i)
    need = max(2, config.min_images)
    # Merge small classes into the nearest bigger one of the same orientation, smallest first.
    for c in sorted(members, key=lambda c: (len(members[c]), c)):
        if c not in members or len(members[c]) >= need:
            continue
        here = log_of(c)
        options = [
            o
            for o in members
            if o != c
            and (log_of(o) < 0) == (here < 0)
            and kind(o) == kind(c)
            and abs(log_of(o) - here) < math.log(MERGE_RATIO)
        ]
        if not options:
            continue
        target = min(options, key=lambda o: (abs(log_of(o) - here), -len(members[o]), o))
        moved = members.pop(c)
        for i in moved:
            classes[i] = target
        members[target].extend(moved)
    if buckets.enable and buckets.no_upscale and fixed is None:
        members = _size_tiers(members, sizes, buckets, config, classes)

    def make(members: dict[int, list[int]]) -> ShapeClasses:
        aspects = {c: median(sizes[i].width / sizes[i].height for i in idx) for c, idx in members.items()}
        return ShapeClasses(buckets, config, tuple(classes), aspects, tuple(sizes), fixed, max_crop, boxes)

    plan = make(members)
    small = plan.group_sizes[0] if plan.group_sizes else 0
    if small != 2 or weights is None or fixed is not None:
        return plan

    def stuck(c: int) -> bool:  # an odd class whose leftover cannot join a frame of three
        count = sum(weights[i] for i in members[c])
        return count % 2 == 1 and not (
            3 in plan.group_sizes and plan.frame(c, 3).area >= GROW_AREA * plan.frame(c, 2).area
        )

    odd = sorted((c for c in members if len(members[c]) >= need and stuck(c)), key=lambda c: (kind(c), log_of(c)))
    merged = False
    k = 0
    while k + 1 < len(odd):
        a, b = odd[k], odd[k + 1]
        if (
            kind(a) == kind(b)
            and (log_of(a) < 0) == (log_of(b) < 0)
            and abs(log_of(a) - log_of(b)) < math.log(PAIR_MERGE_RATIO)
        ):
            for i in members.pop(b):
                classes[i] = a
                members[a].append(i)
            merged = True
            k += 2
        else:
            k += 1
    if not merged:
        return plan
    return make(members)


def _size_tiers(
    members: dict[int, list[int]], sizes: Sequence[Size], buckets: Buckets, config: CollageConfig, classes: list[int]
) -> dict[int, list[int]]:
    """``bucket_no_upscale``: split each class into tiers of similar size (largest first, greedily).

    A frame keeps its smallest member's scale, so a member joins a tier only while the pair frame at
    its scale is at least every tier member's own bucket (within ``area_tolerance``).
    """
    out: dict[int, list[int]] = {}
    for c, idx in members.items():
        aspect = median(sizes[i].width / sizes[i].height for i in idx)
        target = arrangement_aspect("1x2" if aspect <= 1.1 else "2x1", aspect)

        def own(i: int) -> int:
            (w, h), _ = buckets.select(sizes[i])
            return w * h

        order = sorted(idx, key=lambda i: (-own(i), i))
        tier, largest, small_w, small_h = 0, own(order[0]), sizes[order[0]].width, sizes[order[0]].height
        for i in order:
            w, h = min(small_w, sizes[i].width), min(small_h, sizes[i].height)
            if no_upscale_frame(buckets, target, aspect, w, h).area < area_tolerance(buckets) * largest:
                tier += 1
                largest, w, h = own(i), sizes[i].width, sizes[i].height
            small_w, small_h = w, h
            key = c + tier * TIER
            out.setdefault(key, []).append(i)
            classes[i] = key
    return out
