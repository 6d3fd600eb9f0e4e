"""A pool of sources planned together: one folder / sd-scripts subset, its repeats and settings.

This is the piece the CLI, the demo and the sd-scripts adapter share: sources in, per-epoch frames
out (collage groups and single images), all through ``grouping`` and ``Collage``.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cached_property

from .collage import Source
from .config import CollageConfig
from .grouping import Group, PoolStructure, Record, group_instances, plan_structure, static_variants
from .types import Size

logger = logging.getLogger(__name__)

@dataclass
class Pool:
    """Sources that may share frames, with their repeats per epoch and collage settings."""

    key: str
    sources: Sequence[Source]
    config: CollageConfig
    frame: Size
    seed: int
    repeats: Sequence[int] = field(default_factory=list)

    @cached_property
    def records(self) -> list[Record]:
        """Planner records (key, effective size, repeats)."""
        repeats = list(self.repeats) or [1] * len(self.sources)
        return [Record(s.key, s.effective_size, r) for s, r in zip(self.sources, repeats)]

    @cached_property
    def structure(self) -> PoolStructure:
        """The run-wide structure: which repeats are singles, how many frames of each size."""
        return plan_structure(self.records, self.frame, self.config, seed=self.seed, pool_key=self.key)

    def collage_groups(self, epoch: int) -> list[Group]:
        """The collage frames of one epoch (dynamic mode)."""
        return group_instances(self.structure, self.records, seed=self.seed, epoch=epoch, pool_key=self.key)

    def static_groups(self) -> list[tuple[int, Group]]:
        """``(variant, group)`` for every frame of every static variant (groups of one are single images)."""
        plans = static_variants(self.structure, self.records, seed=self.seed, variants=self.config.variants,
                                pool_key=self.key)
        return [(v, g) for v, plan in enumerate(plans) for g in plan]

    def frames(self, epoch: int) -> list[Group]:
        """Every sample of an epoch: collage groups, then single images once per single repeat."""
        singles = [(i,) for i, n in enumerate(self.structure.single_repeats) for _ in range(n)]
        return self.collage_groups(epoch) + singles
