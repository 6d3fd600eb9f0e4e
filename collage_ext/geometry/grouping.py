"""Which images share a frame: exact coverage, constant frame count, new partners every epoch.

A pool (one sd-scripts subset) holds records, each an image repeated ``num_repeats`` times per
epoch. Planning has two levels:

1. **Structure** (once per run, epoch-independent): which repeats of which images are collage
   material and which stay single images, and how many frames of each population there are.
   Keeping this fixed is what lets sd-scripts compute steps per epoch and buckets once.
2. **Grouping** (per epoch, or per static variant): which collage instances share each frame.
   Every instance lands in exactly one frame; partners change every epoch.

Randomness comes only from ``derive_rng(seed, epoch, pool_key, stream)``, so any process,
DataLoader worker or resumed run rebuilds the same plan. Instances are plain ints, so 100 000
images cost a few bytes each.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Sequence
from dataclasses import dataclass

from collage_ext.core.config import CollageConfig
from collage_ext.core.rng import derive_rng
from collage_ext.core.types import Size
from collage_ext.geometry.layout import group_sizes, max_group_size
from collage_ext.geometry.shapes import GROW_AREA, ShapeClasses

logger = logging.getLogger(__name__)

Group = tuple[int, ...]  # record indices of one frame, in planning order


@dataclass(frozen=True, slots=True)
class Record:
    """One source image of a pool: stable key, effective (cropped) size and repeats per epoch."""

    key: str
    size: Size
    num_repeats: int = 1


@dataclass(frozen=True, slots=True)
class PoolStructure:
    """The epoch-independent part of a pool's plan.

    Attributes:
        single_repeats: per record, how many of its repeats are single images every epoch.
        collage_instances: record index of every collage instance (a record appears once per
            collage repeat), sorted.
        level: per record, the largest frame population it may join (see ``max_group_size``).
        sizes: frame populations, largest first; ``sum(sizes) == len(collage_instances)``.
            Shaped pools: one entry per frame slot, in slot order (by class, then largest first).
        slot_classes: shaped pools only: the shape class of each slot (aligned with ``sizes``); a
            slot's frame is the class's frame for its population, the same every epoch.
        classes: shaped pools only: per record, its shape class (partners come from one class).
        allowed: shaped pools only: per class, the populations its frames may have (for static variants).
    """

    single_repeats: tuple[int, ...]
    collage_instances: tuple[int, ...]
    level: tuple[int, ...]
    sizes: tuple[int, ...]
    slot_classes: tuple[int, ...] = ()
    classes: tuple[int, ...] = ()
    allowed: tuple[tuple[int, tuple[int, ...]], ...] = ()

    @property
    def frames_per_epoch(self) -> int:
        """Collage frames plus single samples per epoch (constant by construction)."""
        return len(self.sizes) + sum(self.single_repeats)


def pool_structure(
    records: Sequence[Record], frame: Size, config: CollageConfig, *, seed: int, pool_key: str
) -> PoolStructure:
    """Decide, once per run, the collage instances and the frame populations of one pool.

    ``collage_rate`` is the expected share of *frames* that are collages. Instances that cannot join
    any collage (too small for ``max_upscale``) stay single; leftovers too few to fill a frame join
    an existing frame when a larger population is allowed, else stay single.
    """
    sizes_allowed = group_sizes(config) if config.enabled else ()
    levels = _levels(records, frame, config)
    instances = [i for i, r in enumerate(records) for _ in range(r.num_repeats)]
    if not sizes_allowed:
        return PoolStructure(tuple(r.num_repeats for r in records), (), levels, ())
    rng = derive_rng(seed, 0, pool_key, "structure")
    eligible = [i for i in instances if levels[i] >= sizes_allowed[0]]
    mean = sum(sizes_allowed) / len(sizes_allowed)
    share = config.rate * mean / ((1 - config.rate) + config.rate * mean)  # instances in collages
    target = len(eligible) if config.rate >= 1 else min(len(eligible), round(len(instances) * share))
    chosen = sorted(rng.sample(eligible, target))
    sizes = _draw_sizes([levels[i] for i in chosen], sizes_allowed, rng)
    collage = _take_for_sizes(chosen, levels, sizes, rng)
    single = [r.num_repeats for r in records]
    for i in collage:
        single[i] -= 1
    return PoolStructure(tuple(single), tuple(sorted(collage)), levels, tuple(sorted(sizes, reverse=True)))


def _levels(records: Sequence[Record], frame: Size, config: CollageConfig) -> tuple[int, ...]:
    # Datasets repeat a handful of sizes; one lookup per record instead of one geometry check
    # (or one hash of the whole config, as an lru_cache keyed on it would do).
    known: dict[Size, int] = {}
    out = []
    for record in records:
        level = known.get(record.size)
        if level is None:
            level = known[record.size] = max_group_size(record.size, frame, config)
        out.append(level)
    return tuple(out)


def _draw_sizes(levels: Sequence[int], allowed: Sequence[int], rng: random.Random) -> list[int]:
    """Draw frame populations that the chosen instances can fill (nested eligibility, Hall's condition)."""
    top = max(allowed)
    per_level = [0] * (top + 2)
    for lv in levels:
        per_level[min(lv, top + 1)] += 1
    at_least = [sum(per_level[t:]) for t in range(top + 2)]  # instances allowed in frames of >= t images
    used_at = [0] * (top + 2)  # instances taken by frames of population >= t

    def fits(size: int) -> bool:
        return all(used_at[t] + size <= at_least[t] for t in range(1, size + 1))

    def add(size: int, sign: int = 1) -> None:
        for t in range(1, size + 1):
            used_at[t] += sign * size

    sizes: list[int] = []
    remaining = len(levels)
    choice = rng.choice
    while True:
        options = [s for s in allowed if s <= remaining and fits(s)]
        if not options:
            break
        # Options only ever shrink (remaining and the room left only go down), and a draw takes at
        # most ``biggest`` from each. While that cannot exhaust any option they stay the same list,
        # so draw a run of them at once: the same rng.choice calls in the same order, same result.
        biggest = max(options)
        slack = min([remaining - biggest] + [at_least[t] - used_at[t] - s for s in options for t in range(1, s + 1)])
        run = [choice(options) for _ in range(slack // biggest + 1)]
        for size in options:
            taken = size * run.count(size)
            for t in range(1, size + 1):
                used_at[t] += taken
        sizes.extend(run)
        remaining -= sum(run)
    if remaining == 0:
        # Nothing to absorb. The permutation below would only feed rng state that no caller reads
        # afterwards (_take_for_sizes draws only when instances are left over), so skip it.
        return sizes
    # Absorb leftovers (too few for a frame) into a frame that may grow, so rate 1 leaves no singles.
    for index in rng.sample(range(len(sizes)), len(sizes)):
        if remaining == 0:
            break
        grown = [s for s in allowed if sizes[index] < s <= sizes[index] + remaining]
        for new in sorted(grown, reverse=True):
            add(sizes[index], -1)
            if fits(new):
                add(new)
                remaining -= new - sizes[index]
                sizes[index] = new
                break
            add(sizes[index])
    return sizes


def _take_for_sizes(
    chosen: Sequence[int], levels: Sequence[int], sizes: Sequence[int], rng: random.Random
) -> list[int]:
    """Pick which chosen instances fill the frames (largest population first); the rest become singles."""
    if sum(sizes) == len(chosen):
        return list(chosen)
    pool = list(chosen)
    rng.shuffle(pool)
    used = [False] * len(pool)
    taken: list[int] = []
    for size in sorted(set(sizes), reverse=True):
        need = size * sum(1 for s in sizes if s == size)
        for k, inst in enumerate(pool):
            if need == 0:
                break
            if not used[k] and levels[inst] >= size:
                used[k] = True
                taken.append(inst)
                need -= 1
    return taken


def shaped_pool_structure(
    records: Sequence[Record], shapes: ShapeClasses, config: CollageConfig, *, seed: int, pool_key: str
) -> PoolStructure:
    """``pool_structure`` for content-shaped frames: frames hold sources of one shape class.

    Per class the chosen instances make frames of the smallest allowed population (pairs by
    default); a remainder grows one frame when that population is allowed, else stays single
    rather than join a frame of another shape.
    """
    classes = shapes.classes
    known: dict[tuple[int, Size, bool], int] = {}
    levels = []
    for i, record in enumerate(records):
        key = (classes[i], record.size, bool(shapes.boxed) and shapes.boxed[i])  # a crop box is never cut
        if key not in known:
            known[key] = shapes.level(i)
        levels.append(known[key])
    level = tuple(levels)
    allowed = shapes.group_sizes if config.enabled else ()
    if not allowed:
        return PoolStructure(tuple(r.num_repeats for r in records), (), level, (), (), classes, ())
    instances = [i for i, r in enumerate(records) for _ in range(r.num_repeats)]
    rng = derive_rng(seed, 0, pool_key, "structure")
    eligible = [i for i in instances if level[i] >= allowed[0]]
    share = config.rate * allowed[0] / ((1 - config.rate) + config.rate * allowed[0])
    target = len(eligible) if config.rate >= 1 else min(len(eligible), round(len(instances) * share))
    # Which repeats are collage material does not depend on the seed, so neither do the frames per epoch
    # (sd-scripts counts steps once; check and the trainer agree for any seed). Partners still do.
    chosen = sorted(derive_rng(0, 0, pool_key, "structure").sample(eligible, target))
    by_class: dict[int, list[int]] = {}
    for i in chosen:
        by_class.setdefault(classes[i], []).append(i)
    # A grown frame must keep most of the pair frame's area (max_bucket_reso can make 3-wide frames tiny).
    per_class = tuple(
        (
            cls,
            tuple(
                k
                for k in allowed
                if k == allowed[0] or shapes.frame(cls, k).area >= GROW_AREA * shapes.frame(cls, allowed[0]).area
            ),
        )
        for cls in sorted(set(classes))
    )
    allowed_of = dict(per_class)
    collage: list[int] = []
    slots: list[tuple[int, int]] = []
    for cls in sorted(by_class):
        members = _without_dominant(by_class[cls])
        sizes = class_sizes([level[i] for i in members], allowed_of[cls])
        collage.extend(_take_for_sizes(members, level, sizes, rng))
        slots.extend((cls, size) for size in sorted(sizes, reverse=True))
    single = [r.num_repeats for r in records]
    for i in collage:
        single[i] -= 1
    return PoolStructure(
        tuple(single),
        tuple(sorted(collage)),
        level,
        tuple(s for _, s in slots),
        tuple(c for c, _ in slots),
        classes,
        per_class,
    )


def _without_dominant(members: list[int]) -> list[int]:
    """Drop repeats of an image that outnumber all its class partners together (they would share a frame
    with themselves); the dropped repeats train as single images."""
    counts = _multiset(members)
    top = max(counts, key=lambda i: (counts[i], -i), default=None)
    if top is None:
        return members
    excess = counts[top] - (len(members) - counts[top])
    if excess <= 0:
        return members
    out, dropped = [], 0
    for inst in members:
        if inst == top and dropped < excess:
            dropped += 1
            continue
        out.append(inst)
    return out


def class_sizes(levels: Sequence[int], allowed: Sequence[int]) -> list[int]:
    """Frame populations for one shape class: as many of the smallest as fit, a remainder grows one frame.

    Examples:
        >>> class_sizes([3] * 5, (2, 3)), class_sizes([2] * 5, (2, 3)), class_sizes([3], (2, 3))
        ([3, 2], [2, 2], [])
    """
    small = allowed[0]
    eligible = [lv for lv in levels if lv >= small]
    count, rest = divmod(len(eligible), small)
    sizes = [small] * count
    grown = small + rest
    if count and rest and grown in allowed and sum(1 for lv in eligible if lv >= grown) >= grown:
        sizes[0] = grown
    return sizes


def _fill(members: Sequence[int], sizes: Sequence[int], level: Sequence[int], rng: random.Random) -> list[Group]:
    """Partition ``members`` into frames of ``sizes`` (largest first), partners drawn by ``rng``."""
    remaining = list(members)
    groups: list[list[int]] = []
    for size in sorted(set(sizes), reverse=True):
        count = list(sizes).count(size)
        fitting = [i for i in remaining if level[i] >= size]
        rng.shuffle(fitting)
        take = fitting[: count * size]
        remaining = [] if len(take) == len(remaining) else _without(remaining, _multiset(take))
        groups.extend(take[k : k + size] for k in range(0, len(take), size))
    if remaining:
        msg = f"internal: {len(remaining)} collage instances left ungrouped"
        raise AssertionError(msg)
    # Across populations too: a frame of three (the class's odd leftover) is often the only one of its size.
    _separate_duplicates(groups, rng, level)
    return [tuple(g) for g in groups]


def _group_shaped(structure: PoolStructure, rng: random.Random) -> list[Group]:
    """One epoch's frames of a shaped pool, in slot order: each class's instances among its slots."""
    classes = structure.classes
    by_class: dict[int, list[int]] = {}
    for inst in structure.collage_instances:
        by_class.setdefault(classes[inst], []).append(inst)
    groups: list[Group] = []
    for cls in dict.fromkeys(structure.slot_classes):
        sizes = [s for c, s in zip(structure.slot_classes, structure.sizes) if c == cls]
        groups.extend(_fill(by_class.get(cls, []), sizes, structure.level, rng))
    return groups


def group_instances(
    structure: PoolStructure,
    records: Sequence[Record],
    *,
    seed: int,
    epoch: int,
    pool_key: str,
    instances: Sequence[int] | None = None,
    sizes: Sequence[int] | None = None,
) -> list[Group]:
    """Partition the collage instances into frames for one epoch (or one static variant).

    Frames are filled largest population first, from instances allowed at that population. Within a
    population, instances are grouped by orientation (portraits with portraits) in a random class
    order, so two portraits stand side by side and two landscapes stack. A frame never holds the
    same image twice when a swap can avoid it.
    """
    rng = derive_rng(seed, epoch, pool_key, "group")
    if structure.slot_classes and instances is None:
        return _group_shaped(structure, rng)
    remaining = list(structure.collage_instances if instances is None else instances)
    frame_sizes = list(structure.sizes if sizes is None else sizes)
    level = structure.level
    orientation = _orientations(records)
    groups: list[Group] = []
    for size in sorted(set(frame_sizes), reverse=True):
        count = frame_sizes.count(size)
        fitting = [i for i in remaining if level[i] >= size]
        rng.shuffle(fitting)
        take = fitting[: count * size]
        # Taking as many as remain takes all of them (take is a sub-multiset of remaining).
        remaining = [] if len(take) == len(remaining) else _without(remaining, _multiset(take))
        take = _by_orientation(take, orientation, rng)
        level_groups = [take[k : k + size] for k in range(0, len(take), size)]
        _separate_duplicates(level_groups, rng)
        groups.extend(tuple(g) for g in level_groups)
    if remaining:  # cannot happen when the structure was planned by pool_structure
        msg = f"internal: {len(remaining)} collage instances left ungrouped in pool {pool_key!r}"
        raise AssertionError(msg)
    if any(len(set(g)) < len(g) for g in groups):  # a lone frame of its population: trade across populations
        lists = [list(g) for g in groups]
        _separate_duplicates(lists, rng, level)
        groups = [tuple(g) for g in lists]
    return groups


def _multiset(items: Sequence[int]) -> dict[int, int]:
    counts: dict[int, int] = {}
    for item in items:
        counts[item] = counts.get(item, 0) + 1
    return counts


def _without(items: Sequence[int], counts: dict[int, int]) -> list[int]:
    left = dict(counts)
    out = []
    for item in items:
        if left.get(item, 0):
            left[item] -= 1
        else:
            out.append(item)
    return out


def _orientation(size: Size) -> int:
    # 0 portrait, 1 square-ish, 2 landscape; 10 % tolerance so 1000x1050 counts as square.
    if size.width * 10 < size.height * 9:
        return 0
    if size.height * 10 < size.width * 9:
        return 2
    return 1


def _orientations(records: Sequence[Record]) -> list[int]:
    known: dict[Size, int] = {}
    out = []
    for record in records:
        value = known.get(record.size)
        if value is None:
            value = known[record.size] = _orientation(record.size)
        out.append(value)
    return out


def _by_orientation(items: list[int], orientation: Sequence[int], rng: random.Random) -> list[int]:
    rank = [0, 1, 2]
    rng.shuffle(rank)
    # A stable sort by class rank, done as three buckets (O(n)): keeps the shuffled order within a class.
    buckets: tuple[list[int], list[int], list[int]] = ([], [], [])
    for item in items:
        buckets[rank[orientation[item]]].append(item)
    return buckets[0] + buckets[1] + buckets[2]


def _separate_duplicates(groups: list[list[int]], rng: random.Random, level: Sequence[int] | None = None) -> None:
    """Swap members so no frame holds one image twice (when the pool allows it).

    With ``level`` (per record, the largest frame it may join), a swap moves a member only into a
    frame it may join, so groups of different populations can trade too.
    """
    if len(groups) < 2:
        return

    def fits(item: int, group: list[int]) -> bool:
        return level is None or level[item] >= len(group)

    for g, group in enumerate(groups):
        for slot in range(len(group)):
            if group.count(group[slot]) < 2:
                continue
            start = rng.randrange(len(groups))
            for step in range(len(groups)):
                other = groups[(start + step) % len(groups)]
                if other is group:
                    continue
                for o_slot, candidate in enumerate(other):
                    if (
                        candidate not in group
                        and group[slot] not in other
                        and fits(candidate, group)
                        and fits(group[slot], other)
                    ):
                        group[slot], other[o_slot] = candidate, group[slot]
                        break
                else:
                    continue
                break
        groups[g] = group


def static_variants(
    structure: PoolStructure, records: Sequence[Record], *, seed: int, variants: int, pool_key: str
) -> list[list[Group]]:
    """Plan ``variants`` fixed partitions for static mode (cacheable frames).

    Repeat ``j`` of an image belongs to variant ``j % variants``, so an epoch that shows every
    variant's frames still shows each image exactly ``num_repeats`` times. With fewer repeats than
    variants, only as many variants as repeats carry frames.
    """
    seen: dict[int, int] = {}
    buckets: list[list[int]] = [[] for _ in range(variants)]
    for inst in structure.collage_instances:
        j = seen.get(inst, 0)
        seen[inst] = j + 1
        buckets[j % variants].append(inst)
    plans = []
    for v, members in enumerate(buckets):
        if structure.slot_classes:
            plans.append(_static_shaped(structure, members, seed=seed, variant=v, pool_key=pool_key))
            continue
        levels = [structure.level[i] for i in members]
        sizes = _draw_sizes(levels, sorted(set(structure.sizes)) or [2], derive_rng(seed, v, pool_key, "structure"))
        taken = _take_for_sizes(sorted(members), structure.level, sizes, derive_rng(seed, v, pool_key, "structure"))
        groups = group_instances(
            structure, records, seed=seed, epoch=v, pool_key=pool_key, instances=taken, sizes=sizes
        )
        leftovers = _without(members, _multiset(taken))
        groups.extend((i,) for i in leftovers)
        plans.append(groups)
    return plans


def _static_shaped(
    structure: PoolStructure, members: Sequence[int], *, seed: int, variant: int, pool_key: str
) -> list[Group]:
    """One static variant of a shaped pool: per class, frames as in ``shaped_pool_structure``, the rest single."""
    classes, level = structure.classes, structure.level
    by_class: dict[int, list[int]] = {}
    for inst in sorted(members):
        by_class.setdefault(classes[inst], []).append(inst)
    pick = derive_rng(seed, variant, pool_key, "structure")
    rng = derive_rng(seed, variant, pool_key, "group")
    groups: list[Group] = []
    leftovers: list[int] = []
    for cls in sorted(by_class):
        chosen = _without_dominant(by_class[cls])
        sizes = class_sizes([level[i] for i in chosen], dict(structure.allowed)[cls])
        taken = _take_for_sizes(chosen, level, sizes, pick)
        groups.extend(_fill(taken, sizes, level, rng))
        leftovers.extend(_without(by_class[cls], _multiset(taken)))
    return groups + [(i,) for i in leftovers]
