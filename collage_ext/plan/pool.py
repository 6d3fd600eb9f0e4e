"""A pool of sources planned together: one folder / sd-scripts subset, its repeats and settings.

This is the piece the CLI, the demo and the sd-scripts adapter share: sources in, per-epoch frames
out (collage groups and single images), all through ``grouping`` and ``Collage``.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cached_property

from collage_ext.core.config import CollageConfig
from collage_ext.core.types import Size
from collage_ext.geometry.buckets import Buckets
from collage_ext.geometry.grouping import (
    Group,
    PoolStructure,
    Record,
    group_instances,
    pool_structure,
    shaped_pool_structure,
    static_variants,
)
from collage_ext.geometry.shapes import ShapeClasses, shape_classes
from collage_ext.plan.collage import Source

logger = logging.getLogger(__name__)


@dataclass
class Pool:
    """Sources that may share frames, with their repeats per epoch and collage settings.

    ``frame`` is the fixed frame (``collage_frame_size`` or the resolution). When the dataset
    buckets (``buckets.enable``) and no ``collage_frame_size`` is set, frames are content-shaped
    instead: each group's frame is a bucket resolution chosen for its arrangement (``frame_for``).
    """

    key: str
    sources: Sequence[Source]
    config: CollageConfig
    frame: Size
    seed: int
    repeats: Sequence[int] = field(default_factory=list)
    buckets: Buckets | None = None

    @cached_property
    def records(self) -> list[Record]:
        """Planner records (key, effective size, repeats)."""
        repeats = list(self.repeats) or [1] * len(self.sources)
        return [Record(s.key, s.effective_size, r) for s, r in zip(self.sources, repeats)]

    @property
    def fixed(self) -> bool:
        """True when every collage has the one frame ``frame`` (``collage_frame_size``, or no bucketing)."""
        return self.buckets is None or not self.buckets.enable or self.config.frame_size is not None

    @property
    def max_crop(self) -> float:
        """Share of a source a line may crop to keep the rule (``collage_max_crop``; ``cover``: no limit)."""
        return 1.0 if self.config.fit_mode == "cover" else self.config.max_crop

    @cached_property
    def shapes(self) -> ShapeClasses | None:
        """Shape classes and their frames; ``None`` only for a fixed frame with the rule off (``collage_min_span = 0``).

        Fixed frames keep the rule too: sources share a frame only within their class, portraits side
        by side and landscapes stacked at full height / width (cropping up to ``max_crop``).
        """
        if self.fixed and self.config.min_span <= 0:
            return None
        buckets = self.buckets or Buckets.from_params(self.frame, {})
        return shape_classes(
            [r.size for r in self.records],
            buckets,
            self.config,
            [r.num_repeats for r in self.records],
            fixed=self.frame if self.fixed else None,
            max_crop=self.max_crop,
            boxed=[s.crop is not None for s in self.sources],
        )

    @property
    def shaped(self) -> bool:
        """True when every frame takes a bucket resolution chosen for its arrangement (content-shaped)."""
        return self.shapes is not None and not self.fixed

    @property
    def lines(self) -> bool:
        """True when side-by-side and stacked cells follow their sources' aspects (``Collage.shaped``)."""
        return self.shapes is not None

    @cached_property
    def structure(self) -> PoolStructure:
        """The run-wide structure: which repeats are singles, how many frames of each size."""
        if self.shapes is not None:
            return shaped_pool_structure(self.records, self.shapes, self.config, seed=self.seed, pool_key=self.key)
        return pool_structure(self.records, self.frame, self.config, seed=self.seed, pool_key=self.key)

    def frame_for(self, group: Group) -> Size:
        """The frame of a collage group: the class's frame for its population, else the fixed frame."""
        if self.shapes is None or self.fixed or len(group) < 2:
            return self.frame
        return self.shapes.frame(self.shapes.classes[group[0]], len(group))

    def slot_frame(self, slot: int) -> Size:
        """The frame of a dynamic slot; the same in every epoch (sd-scripts buckets it once)."""
        structure = self.structure
        if self.shapes is None or self.fixed or not structure.slot_classes:
            return self.frame
        return self.shapes.frame(structure.slot_classes[slot], structure.sizes[slot])

    def collage_groups(self, epoch: int) -> list[Group]:
        """The collage frames of one epoch (dynamic mode)."""
        return group_instances(self.structure, self.records, seed=self.seed, epoch=epoch, pool_key=self.key)

    def static_groups(self) -> list[tuple[int, Group]]:
        """``(variant, group)`` for every frame of every static variant (groups of one are single images)."""
        plans = static_variants(
            self.structure, self.records, seed=self.seed, variants=self.config.variants, pool_key=self.key
        )
        return [(v, g) for v, plan in enumerate(plans) for g in plan]
