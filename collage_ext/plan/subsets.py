"""One subset's plan: a reader's ``SubsetInput`` in, its ``Pool`` and ``Collage`` out.

``collage-ext preview`` promises the frames that training sees, byte for byte. That holds because
both readers (the CLI's ``kohya`` reader through ``plan.project``, the adapter through
``sdscripts/dataset.py``) describe a subset as the same ``SubsetInput`` and this module alone turns
it into a ``PlannedSubset``: the same sources in the same order, keys, repeats, frame size, pool key,
seed, caption grammar, token budget and alpha. Which frames an epoch has is asked of the
``PlannedSubset`` (``plan.jobs``); nothing else lists frames.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Hashable, Iterable, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import TYPE_CHECKING, Any, Protocol

from collage_ext.captions import TokenBudget, TokenCounter
from collage_ext.captions.subset import check_caption_combination, grammar_of
from collage_ext.core.config import CollageConfig
from collage_ext.core.errors import CollageInputError
from collage_ext.core.rng import sample_key
from collage_ext.core.types import Size
from collage_ext.geometry.buckets import Buckets
from collage_ext.geometry.grouping import Group
from collage_ext.kohya.specs import SubsetImage, subset_root  # noqa: F401  (re-exported for the adapter)
from collage_ext.plan.collage import Collage, FrameParams, Source, load_source
from collage_ext.plan.frames import uses_alpha
from collage_ext.plan.policy import FailureLog
from collage_ext.plan.pool import Pool

if TYPE_CHECKING:
    from collage_ext.plan.jobs import FrameJob

#: Wraps an iterable in a progress bar (``tqdm``) or returns it unchanged.
Progress = Callable[[Iterable[int]], Iterable[int]]


@dataclass(frozen=True)
class SubsetInput:
    """One collage subset as a reader hands it to the planner: everything that decides its frames.

    Attributes:
        images: the images sd-scripts registers, in any order.
        root: the folder sample keys are relative to (``subset_root``).
        config: the subset's resolved collage settings.
        resolution: the dataset resolution (the frame unless ``collage_frame_size`` is set).
        buckets: the dataset's bucket settings as sd-scripts resolves them.
        dataset_index: position of the dataset among the training datasets.
        subset_index: position among the subsets sd-scripts kept in that dataset.
        options: the subset's sd-scripts options as attributes (caption separators, flip_aug,
            alpha_mask ...): sd-scripts' subset object in the adapter, ``SubsetSpec.namespace()`` in the CLI.
        image_dir: the subset's folder as written (for messages).
        name: a short name for progress bars.
        dataset, subset: the reader's own objects, handed back on ``PlannedSubset`` (the CLI's
            ``DatasetSpec`` / ``SubsetSpec``; the adapter keeps its own and leaves them None).
    """

    images: Sequence[SubsetImage]
    root: str
    config: CollageConfig
    resolution: Size
    buckets: Buckets | None
    dataset_index: int
    subset_index: int
    options: Any
    image_dir: str | None = None
    name: str = ""
    dataset: Any = None
    subset: Any = None

    @property
    def alpha_mask(self) -> bool:
        """Whether each cell carries its source's alpha (sd-scripts' ``alpha_mask`` or ``collage_loss_mask``)."""
        return uses_alpha(bool(getattr(self.options, "alpha_mask", False)), self.config)


def pool_key(dataset_index: int, subset_index: int, root: str) -> str:
    """The key that seeds a subset's plan: dataset and subset position plus the folder name.

    ``subset_index`` counts the subsets sd-scripts kept (skipped subsets take no index).

    Examples:
        >>> pool_key(0, 1, "/data/train/10_cat/")
        '0/1:10_cat'
    """
    return f"{dataset_index}/{subset_index}:{os.path.basename(str(root).rstrip('/'))}"


def safe_name(text: str) -> str:
    """A file-name-safe spelling (dynamic slot names).

    Examples:
        >>> safe_name("0/1:10_cat")
        '0_1_10_cat'
    """
    return "".join(c if c.isalnum() or c in "-_" else "_" for c in text)


def plan_subset(
    subset: SubsetInput,
    *,
    seed: int,
    budget: TokenBudget | None = None,
    counter: TokenCounter | None = None,
    progress: Progress | None = None,
    on_error: Callable[[int, CollageInputError], None] | None = None,
) -> PlannedSubset:
    """Plan one collage subset: its sources sorted by path and keyed relative to ``root``, its pool and collage.

    Args:
        subset: what the reader found.
        seed: the collage seed of the run.
        budget, counter: the run's text-encoder token budget and counter; used only when the subset
            repeats phrases (``collage_repeat_phrases``); no counter means the estimate.
        progress: optional wrapper that shows a progress bar while image headers are read.
        on_error: ``collage_on_error = "skip"``: called with the image's index (into ``subset.images``)
            and the error for an image whose header or crop box cannot be read; the image is left out
            of the pool. Without it such an image raises.

    Raises:
        CollageConfigError: a collage caption setting that clashes with the subset's sd-scripts options.
        CollageInputError: an image header cannot be read, or its crop box is invalid (without ``on_error``).
    """
    config, images = subset.config, subset.images
    check_caption_combination(config, subset.options, f"subset {subset.image_dir!r}")
    order = sorted(range(len(images)), key=lambda i: images[i].path)
    indices: Iterable[int] = progress(order) if progress is not None else order
    kept: list[int] = []
    sources: list[Source] = []
    for i in indices:
        try:
            sources.append(
                load_source(
                    images[i].path,
                    sample_key(images[i].path, subset.root),
                    caption=images[i].caption,
                    crop_extension=config.crop_extension,
                )
            )
        except CollageInputError as exc:
            if on_error is None:
                raise
            on_error(i, exc)
            continue
        kept.append(i)
    pool = Pool(
        key=pool_key(subset.dataset_index, subset.subset_index, subset.root),
        sources=sources,
        config=config,
        frame=config.frame_size or subset.resolution,
        seed=seed,
        repeats=[images[i].num_repeats for i in kept],
        buckets=subset.buckets,
    )
    repeat = bool(config.repeat_phrases)
    collage = Collage(
        config,
        pool.frame,
        grammar=grammar_of(subset.options),
        budget=budget if repeat else None,
        counter=counter if repeat else None,
        shaped=pool.lines,
        max_crop=pool.max_crop,
        alpha_mask=subset.alpha_mask,
    )
    return PlannedSubset(pool, collage, subset, tuple(kept))


class Memo(Protocol):
    """What ``PlannedSubset.memo`` needs: a dict, or the studio's byte-budgeted ``ByteLRU`` (not a full mapping)."""

    def get(self, key: Hashable) -> Any: ...

    def __setitem__(self, key: Hashable, value: Any) -> None: ...


@dataclass(eq=False)
class PlannedSubset:
    """A subset's plan: its pool and collage, and every frame of it (``jobs``) for any epoch.

    Attributes:
        pool: the planner input (sources sorted by path, with their repeats).
        collage: the subset's collage (grammar, budget, alpha).
        input: what the reader handed over (``None`` for a pool planned by hand, e.g. in tests).
        order: ``order[k]`` is the index into ``input.images`` of ``pool.sources[k]``.
        memo: the studio's, kept across its re-plans after edits (``replan``): sampled frame params and
            merged captions by what they are made from. ``Collage.make_params`` is a pure function of the
            collage settings, the sources (key, size, crop box, caption), seed, epoch and frame,
            ``Collage.caption`` of the settings and the params; so after an edit only the frames whose
            sources changed are sampled and captioned again. The adapter and the CLI pass none.
    """

    pool: Pool
    collage: Collage
    input: SubsetInput | None = None
    order: tuple[int, ...] = ()
    _epoch_groups: tuple[int, list[Group]] | None = field(default=None, repr=False)
    _params: dict[tuple[int, int], FrameParams] = field(default_factory=dict, repr=False)
    _index: dict[str, int] | None = field(default=None, repr=False)
    memo: Memo | None = field(default=None, repr=False, compare=False)

    @property
    def dataset(self) -> Any:
        """The reader's dataset object (the CLI's ``DatasetSpec``)."""
        return self.input.dataset if self.input is not None else None

    @property
    def subset(self) -> Any:
        """The reader's subset object (the CLI's ``SubsetSpec``)."""
        return self.input.subset if self.input is not None else None

    # -- dynamic slots ---------------------------------------------------------------------
    @property
    def slot_count(self) -> int:
        """Collage frames per epoch (dynamic mode): constant across epochs by construction."""
        return len(self.pool.structure.sizes)

    def slot_name(self, slot: int) -> str:
        """A dynamic slot's file stem, the same in every epoch (sd-scripts registers it once)."""
        return f"{safe_name(self.pool.key)}_slot{slot:05d}"

    def slot_frame(self, slot: int) -> Size:
        """A dynamic slot's frame, the same in every epoch (sd-scripts buckets it once)."""
        return self.pool.slot_frame(slot)

    def groups(self, epoch: int) -> list[Group]:
        """The epoch's collage groups, slot by slot, computed once per epoch per process."""
        if self._epoch_groups is None or self._epoch_groups[0] != epoch:
            self._epoch_groups = (epoch, self.pool.collage_groups(epoch))
            self._params.clear()
        return self._epoch_groups[1]

    def params(self, slot: int, epoch: int) -> FrameParams:
        """A dynamic slot's frame parameters in an epoch (cached so image and caption agree)."""
        group = self.groups(epoch)[slot]
        key = (slot, epoch)
        if key not in self._params:
            self._params[key] = self.make_params(self.sources_of(group), epoch=epoch, frame=self.pool.slot_frame(slot))
        return self._params[key]

    def make_params(self, sources: Sequence[Source], *, epoch: int, frame: Size) -> FrameParams:
        """``Collage.make_params`` with the pool's seed (through ``memo`` when there is one)."""
        if self.memo is None:
            return self.collage.make_params(sources, seed=self.pool.seed, epoch=epoch, frame=frame)
        key = (
            self._settings,
            tuple((s.key, s.path, s.size, s.crop, s.caption) for s in sources),
            self.pool.seed,
            epoch,
            tuple(frame),
        )
        found: FrameParams | None = self.memo.get(key)
        if found is None:
            found = self.collage.make_params(sources, seed=self.pool.seed, epoch=epoch, frame=frame)
            self.memo[key] = found
        return found

    def caption(self, params: FrameParams) -> str:
        """``Collage.caption`` of ``params`` (through ``memo`` when there is one: a pure function of the two)."""
        if self.memo is None:
            return self.collage.caption(params)
        key = ("caption", self._settings, params)
        found: str | None = self.memo.get(key)
        if found is None:
            found = self.collage.caption(params)
            self.memo[key] = found
        return found

    @cached_property
    def _settings(self) -> str:
        """The collage's settings as a key (``repr`` of the dataclass: config, frame, grammar, budget...)."""
        return repr(self.collage)

    def remember(self, slot: int, epoch: int, params: FrameParams) -> None:
        """Keep the params a slot was actually rendered with (a rebuilt frame's caption follows them)."""
        self._params[(slot, epoch)] = params

    def slot_caption(self, slot: int, epoch: int) -> str:
        """The merged caption of a dynamic slot in an epoch (after ``FrameJob.render``: of the frame as rendered)."""
        return self.caption(self.params(slot, epoch))

    # -- static variants -------------------------------------------------------------------
    @cached_property
    def static_groups(self) -> list[tuple[int, Group]]:
        """``(variant, group)`` of every static variant (groups of one are the variants' leftovers)."""
        return self.pool.static_groups()

    @property
    def static_leftovers(self) -> int:
        """Repeats that the static variants leave alone: they train as single images."""
        return sum(1 for _, group in self.static_groups if len(group) == 1)

    # -- what an epoch trains --------------------------------------------------------------
    def sources_of(self, group: Group) -> list[Source]:
        """The sources of a group, in planning order."""
        return [self.pool.sources[i] for i in group]

    def index_of(self, path: str) -> int | None:
        """A source's position in the pool by its path (a dict, built once per process)."""
        if self._index is None:
            self._index = {s.path: i for i, s in enumerate(self.pool.sources)}
        return self._index.get(path)

    def single_repeats(self, mode: str) -> list[int]:
        """Per pool source, how often an epoch trains it alone (static mode: the variants' leftovers too)."""
        singles = list(self.pool.structure.single_repeats)
        if mode == "static":
            for _, group in self.static_groups:
                if len(group) == 1:
                    singles[group[0]] += 1
        return singles

    def frame_count(self, mode: str) -> int:
        """Collage frames per epoch: the slots (dynamic) or the frames of every static variant."""
        if mode == "static":
            return sum(1 for _, group in self.static_groups if len(group) > 1)
        return self.slot_count

    def jobs(
        self, mode: str, epoch: int, failures: FailureLog | None = None, *, limit: int | None = None
    ) -> list[FrameJob]:
        """The collage frames training sees: the slots of ``epoch`` (dynamic) or every static frame.

        This is the one place that lists a subset's frames. ``failures``: the run's failed files,
        shared by the jobs (a new log when None); ``limit`` lists only the first frames (summaries).
        """
        from collage_ext.plan.jobs import slot_job, static_job  # jobs.py builds on this module

        failures = FailureLog() if failures is None else failures
        if mode == "static":
            frames = [(v, g) for v, g in self.static_groups if len(g) > 1][:limit]
            return [static_job(self, group, variant, failures) for variant, group in frames]
        count = self.slot_count if limit is None else min(self.slot_count, limit)
        return [slot_job(self, slot, epoch, failures) for slot in range(count)]


def replan(item: PlannedSubset, sources: Sequence[Source]) -> PlannedSubset:
    """``item`` planned again over ``sources``: its own pool's sources, some of them read again (the studio
    after a caption or crop box edit), in the same order.

    What ``plan_project`` plans from the same files: the pool's structure and groups are computed again
    from the new sources (a crop box changes an image's shape, so its class and the grouping may
    change; a caption edit keeps them), while the header reads of the other images and the collage
    (its settings depend on the subset's config only) are kept.
    """
    old = item.pool
    if [s.path for s in sources] != [s.path for s in old.sources]:
        raise ValueError("replan keeps the pool's images and their order; plan_project plans other images")
    pool = dataclasses.replace(old, sources=list(sources))
    planned = PlannedSubset(pool, item.collage, item.input, item.order, memo=item.memo)
    if all((a.key, a.size, a.crop) == (b.key, b.size, b.crop) for a, b in zip(old.sources, sources)):
        # Captions only: the grouping never reads them (records are keys, sizes and repeats), so the
        # structure and the groups stand; only the frames of the edited images get new captions.
        for name in ("records", "shapes", "structure"):
            if name in old.__dict__:
                pool.__dict__[name] = old.__dict__[name]
        planned._epoch_groups = item._epoch_groups
        if "static_groups" in item.__dict__:
            planned.__dict__["static_groups"] = item.__dict__["static_groups"]
    return planned


def detached(planned: Sequence[PlannedSubset]) -> list[PlannedSubset]:
    """The same plans with frame caches of their own (``PlannedSubset`` keeps per-epoch state): for a thread
    that lists frames while another does (the studio's check); pools, collages and ``memo`` are shared."""
    return [PlannedSubset(p.pool, p.collage, p.input, p.order, memo=p.memo) for p in planned]
