"""The frames a run will train on, planned from a ``Project`` exactly as ``CollageDataset`` plans them.

Per collage subset this builds the same ``Pool`` (``plan.plan_subset``) and ``Collage`` (grammar of
the subset, token budget of the run's text encoder) as the adapter, then lists

* **dynamic** frames of one epoch: slot ``j`` holds ``Pool.collage_groups(epoch)[j]`` with params
  ``Collage.make_params(sources, seed, epoch=epoch)`` (``frames.SubsetFrames``), named
  like the adapter's virtual slot paths; or
* **static** frames: every planned variant's groups, named ``collage_<digest>`` like the files in
  the static cache.

Content-shaped frames already have their bucket's size, so sd-scripts uses them as they are (a
fixed frame is resized to its bucket); flip / colour augmentation come after; everything here is
the frame before those steps.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

from collage_ext.geometry.buckets import Buckets
from collage_ext.captions import TokenBudget, TokenCounter, estimate_tokens
from collage_ext.plan.collage import Collage, FrameParams, Source
from collage_ext.kohya.datasets import DatasetSpec, SubsetSpec
from collage_ext.plan.project import Project
from collage_ext.core.errors import CollageConfigError, CollageInputError
from collage_ext.geometry.grouping import Group
from collage_ext.kohya import families
from collage_ext.kohya.families import Family
from collage_ext.plan.subsets import SubsetImage, SubsetPlan, plan_subset
from collage_ext.plan.policy import FailureLog, compose
from collage_ext.plan.pool import Pool
from collage_ext.core.progress import progress  # noqa: F401  (re-exported: check, export, preview import it from here)
from collage_ext.pixels.render import RenderResult
from collage_ext.captions.subset import check_caption_combination, grammar_of
from collage_ext.plan.frames import SubsetFrames, frame_digest, uses_alpha
from collage_ext.plan.framestats import FrameStats, SummaryStats, frame_stats, summarize

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class TextEncoder:
    """The text encoder whose token budget captions must fit.

    Attributes:
        model: the family's name (``families.FAMILIES``: ``sdxl``, ``flux``, ``sd3`` ...).
        budget: CLIP chunks (``--max_token_length``) or the T5 length (``--t5xxl_max_token_length``).
        counter: counts tokens (a real tokenizer when one loads offline, else ``estimate_tokens``).
        exact: True when ``counter`` is the real tokenizer.
        family: the family's row in the table.
        why: how the family was recognised, for the log.
    """

    model: str
    budget: TokenBudget
    counter: TokenCounter
    exact: bool
    family: Family = field(default_factory=lambda: families.by_name(families.DEFAULT))
    why: str = ""

    @property
    def kind(self) -> str:
        """``CLIP`` or ``T5``."""
        tokenizer = self.family.tokenizer
        return tokenizer.label if tokenizer is not None else self.budget.kind.upper()

    @property
    def short(self) -> str:
        """E.g. ``CLIP, estimated``."""
        return f"{self.kind}, {'tokenizer' if self.exact else 'estimated'}"

    @property
    def label(self) -> str:
        """E.g. ``CLIP 225 tokens (estimate)``."""
        return f"{self.kind} {self.budget.max_tokens} tokens ({'tokenizer' if self.exact else 'estimate'})"

    @property
    def raise_hint(self) -> str:
        """How to read more tokens, for overflow messages (``""`` when the budget is the longest)."""
        tokenizer = self.family.tokenizer
        return tokenizer.raise_hint(self.budget) if tokenizer is not None else ""


def text_encoder_for(values: dict[str, Any], model: str = "auto") -> TextEncoder:
    """The token budget and counter of the run's text encoder, for the family ``model`` (``auto``: detected).

    The family table (``kohya.families``) says which tokenizer reads captions and how many tokens:
    ``max_token_length`` CLIP tokens (75 unless set) for SD/SDXL, ``t5xxl_max_token_length`` T5 tokens
    for the T5 families (else 512 for Flux dev and Chroma, 256 for Flux schnell and SD3). The real
    tokenizer is used when ``transformers`` is installed and has it locally (``tokenizer_cache_dir``
    or the Hugging Face cache); nothing is downloaded.

    Raises:
        CollageConfigError: an invalid ``max_token_length`` or ``t5xxl_max_token_length``, or a family
            collage_ext does not support (the trainer would refuse it too).
    """
    family, why = families.choose(values, model)
    budget = family.budget_for(values)
    tokenizer = family.tokenizer.load(values.get("tokenizer_cache_dir")) if family.tokenizer is not None else None
    if tokenizer is None:
        return TextEncoder(family.name, budget, estimate_tokens, False, family, why)
    return TextEncoder(family.name, budget, _HFCounter(tokenizer), True, family, why)


class _HFCounter:
    """Tokens of a text without BOS/EOS, with a Hugging Face tokenizer (as the adapter counts)."""

    def __init__(self, tokenizer: Any) -> None:
        self.tokenizer = tokenizer

    def __call__(self, text: str) -> int:
        return len(self.tokenizer(text, add_special_tokens=False)["input_ids"])


@dataclass
class PlannedSubset:
    """A collage subset with its pool and collage, as the adapter builds them."""

    dataset: DatasetSpec
    subset: SubsetSpec
    plan: SubsetPlan
    frames: SubsetFrames

    @property
    def pool(self) -> Pool:
        """The subset's pool."""
        return self.frames.pool

    @property
    def collage(self) -> Collage:
        """The subset's collage orchestrator."""
        return self.frames.collage

    @cached_property
    def static_groups(self) -> list[tuple[int, Group]]:
        """``(variant, group)`` of every static variant (groups of one are the variants' leftovers)."""
        return self.pool.static_groups()


@dataclass
class FrameJob:
    """One collage frame: which subset, which sources, which params, and its file stem.

    ``render`` composes the frame with the adapter's own function (``policy.compose``). Under
    ``collage_on_error = "skip"`` a source that fails to decode is left out and the frame is
    re-planned from the rest, exactly as in training; ``params`` and ``name`` then follow the
    rebuilt frame (static frames are renamed by their new content hash, like the static cache).
    """

    planned: PlannedSubset
    name: str
    group: Group
    params: FrameParams
    failures: FailureLog
    slot: int | None = None
    variant: int | None = None
    rendered_sources: list[Source] | None = None
    _stats: tuple[FrameParams, list[Source] | None, FrameStats] | None = field(default=None, repr=False,
                                                                               compare=False)

    @property
    def sources(self) -> list[Source]:
        """The frame's sources, in planning order (after ``render``: the ones actually used)."""
        if self.rendered_sources is not None:
            return self.rendered_sources
        return self.planned.frames.sources_of(self.group)

    def render(self, *, with_mask: bool = False, cells: Any = None) -> RenderResult:
        """The frame's pixels, exactly as the adapter renders them (``cells``: a cache of decoded cells, see
        ``Collage.render``)."""
        collage = self.planned.collage
        planned = self.planned.frames.sources_of(self.group)
        sources = planned
        if self.variant is not None:  # static: files that failed in earlier frames are left out up front
            kept = [s for s in sources if s.path not in self.failures.failed]
            if len(kept) < len(sources):
                sources = kept
                self.params = collage.make_params(kept, seed=self.planned.pool.seed, epoch=self.variant,
                                                  frame=self.planned.pool.frame_for(self.group))
        rendered, used = compose(collage, sources, self.params, self.failures, with_mask=with_mask,
                                 spares=self.planned.pool.sources if self.variant is None else (), cells=cells)
        self.params = used
        self.rendered_sources = [s for s in sources if s.path not in self.failures.failed] or [
            s for s in self.planned.pool.sources if s.key in used.keys][:1]  # a spare filled the frame
        if self.variant is not None and len(self.rendered_sources) < len(planned):  # renamed like the cache
            caption = collage.caption(used)
            self.name = f"collage_{frame_digest(used, self.rendered_sources, collage, caption)}"
        return rendered

    @property
    def caption(self) -> str:
        """The merged caption the adapter hands to sd-scripts' ``process_caption``."""
        return self.planned.frames.caption(self.params)

    @property
    def stats(self) -> FrameStats:
        """Fill and per-source span of the frame (after ``render``: of the frame as rendered); computed once per
        params and sources (a frame's record and the studio's view both ask)."""
        found = self._stats
        if found is None or found[0] is not self.params or found[1] is not self.rendered_sources:
            stats = frame_stats(self.params.layout, self.sources, self.planned.subset.config.fit_mode)
            found = self._stats = (self.params, self.rendered_sources, stats)
        return found[2]


@dataclass
class FrameSet:
    """The frames of one epoch (dynamic) or of every static variant, plus the single samples."""

    mode: str
    epoch: int | None
    failures: FailureLog = field(default_factory=FailureLog)
    jobs: list[FrameJob] = field(default_factory=list)
    singles: list[tuple[PlannedSubset, int, int]] = field(default_factory=list)  # (subset, source index, repeats)

    def summary(self, planned: PlannedSubset | None = None) -> SummaryStats:
        """Mean fill, span share and images per frame over the jobs (of one subset, or all)."""
        jobs = [j for j in self.jobs if planned is None or j.planned is planned]
        singles = sum(n for item, _, n in self.singles if planned is None or item is planned)
        min_span = min((j.planned.subset.config.min_span for j in jobs), default=0.95)
        return summarize((j.stats for j in jobs), min_span, singles=singles)


def plan_project(project: Project, encoder: TextEncoder, *,
                 skip: Callable[[SubsetSpec, list[int]], None] | None = None,
                 exclude: frozenset[str] = frozenset()) -> list[PlannedSubset]:
    """Plan every collage subset of the project (header reads only).

    Args:
        project: the project read by ``plan.project.load_project``.
        encoder: the text encoder (budget and counter for phrase repetition).
        skip: called with the subset and the indices of images excluded via ``exclude``.
        exclude: image paths to leave out (``check`` / ``export`` drop unreadable files; training would stop).

    Raises:
        CollageConfigError: a collage caption setting that clashes with the subset's sd-scripts options.
        CollageInputError: an image header or crop box cannot be read.
    """
    planned = []
    for dataset, subset in project.subsets():
        if not subset.config.enabled or not subset.images:
            continue
        check_caption_combination(subset.config, subset.namespace(), f"subset {subset.image_dir!r}")
        images = subset.images
        if exclude:
            dropped = [i for i, im in enumerate(images) if im.path in exclude]
            if dropped and skip is not None:
                skip(subset, dropped)
            images = [im for im in images if im.path not in exclude]
        dataset_index = project.datasets.index(dataset)
        assert subset.kept_index is not None  # project.subsets() lists kept subsets only
        skipping = subset.config.on_error == "skip"  # like the adapter: unreadable files leave the pool

        def skipped(index: int, exc: CollageInputError, images: Sequence[SubsetImage] = images) -> None:
            logger.warning(f"collage_ext: skipping {images[index].path}: {exc} (collage_on_error = 'skip')")

        def reading(order: Iterable[int], name: str = subset.name) -> Iterable[int]:
            return progress(list(order), f"reading {name}", "image")

        plan = plan_subset(images, root=subset.root, config=subset.config, resolution=dataset.resolution,
                           buckets=Buckets.for_dataset(dataset), dataset_index=dataset_index, subset_index=subset.kept_index, seed=project.seed,
                           progress=reading, on_error=skipped if skipping else None)
        repeat = bool(subset.config.repeat_phrases)
        collage = Collage(subset.config, plan.pool.frame, grammar=grammar_of(subset.namespace()),
                          budget=encoder.budget if repeat else None, counter=encoder.counter if repeat else None,
                          shaped=plan.pool.lines, max_crop=plan.pool.max_crop,
                          alpha_mask=uses_alpha(subset.params.get("alpha_mask", False), subset.config))
        planned.append(PlannedSubset(dataset, subset, plan, SubsetFrames(plan.pool, collage)))
    return planned


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
    frames = SubsetFrames(pool, item.collage, memo=item.frames.memo)
    planned = PlannedSubset(item.dataset, item.subset, SubsetPlan(pool, item.plan.order), frames)
    if all((a.key, a.size, a.crop) == (b.key, b.size, b.crop) for a, b in zip(old.sources, sources)):
        # Captions only: the grouping never reads them (records are keys, sizes and repeats), so the
        # structure and the groups stand; only the frames of the edited images get new captions.
        for name in ("records", "shapes", "structure"):
            if name in old.__dict__:
                pool.__dict__[name] = old.__dict__[name]
        frames._epoch_groups = item.frames._epoch_groups
        if "static_groups" in item.__dict__:
            planned.__dict__["static_groups"] = item.__dict__["static_groups"]
    return planned


def detached(planned: Sequence[PlannedSubset]) -> list[PlannedSubset]:
    """The same plans with frame caches of their own (``SubsetFrames`` keeps per-epoch state): for a thread
    that lists frames while another does (the studio's check); pools, collages and ``memo`` are shared."""
    return [PlannedSubset(p.dataset, p.subset, p.plan, SubsetFrames(p.pool, p.collage, memo=p.frames.memo))
            for p in planned]


def safe_name(text: str) -> str:
    """A file-name-safe spelling (the adapter's ``_safe``).

    Examples:
        >>> safe_name("0/1:10_cat")
        '0_1_10_cat'
    """
    return "".join(c if c.isalnum() or c in "-_" else "_" for c in text)


def frames_for(planned: Sequence[PlannedSubset], mode: str, epoch: int) -> FrameSet:
    """The frames training sees: dynamic mode at ``epoch`` (1-based), or every static frame.

    Raises:
        CollageConfigError: ``epoch`` < 1.
    """
    if epoch < 1:
        msg = f"--epoch must be at least 1 (sd-scripts counts epochs from 1), got {epoch}"
        raise CollageConfigError(msg)
    out = FrameSet(mode, epoch if mode != "static" else None)
    for item in planned:
        singles = list(item.pool.structure.single_repeats)
        if mode == "static":
            for variant, group in item.static_groups:
                if len(group) == 1:
                    singles[group[0]] += 1
                    continue
                sources = item.frames.sources_of(group)
                params = item.frames.make_params(sources, epoch=variant, frame=item.pool.frame_for(group))
                digest = frame_digest(params, sources, item.collage, item.frames.caption(params))
                out.jobs.append(FrameJob(item, f"collage_{digest}", group, params, out.failures, variant=variant))
        else:
            groups = item.frames.groups(epoch)
            for slot in range(item.frames.slot_count):
                params = item.frames.params(slot, epoch)
                out.jobs.append(FrameJob(item, f"{safe_name(item.pool.key)}_slot{slot:05d}", groups[slot], params,
                                         out.failures, slot=slot))
        out.singles.extend((item, i, n) for i, n in enumerate(singles) if n)
    return out


def read_failures(paths: Iterable[str]) -> dict[str, CollageInputError]:
    """Header-check images; returns the ones that fail, with the error (for ``export``'s warn policy)."""
    from collage_ext.pixels.images import read_image_size

    failed: dict[str, CollageInputError] = {}
    for path in paths:
        try:
            read_image_size(path)
        except CollageInputError as exc:
            failed[path] = exc
    return failed
