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

import logging
import os
import warnings
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, Literal

from collage_ext.geometry.buckets import Buckets
from collage_ext.captions import TokenBudget, TokenCounter, clip_budget, estimate_tokens, t5_budget
from collage_ext.plan.collage import Collage, FrameParams, Source
from collage_ext.kohya.datasets import DatasetSpec, Project, SubsetSpec
from collage_ext.core.errors import CollageConfigError, CollageInputError
from collage_ext.geometry.grouping import Group
from collage_ext.plan.subsets import SubsetImage, SubsetPlan, plan_subset
from collage_ext.plan.policy import FailureLog, compose
from collage_ext.plan.pool import Pool
from collage_ext.core.progress import progress  # noqa: F401  (re-exported: check, export, preview import it from here)
from collage_ext.pixels.render import RenderResult
from collage_ext.captions.subset import check_caption_combination, grammar_of
from collage_ext.plan.frames import SubsetFrames, frame_digest, uses_alpha
from collage_ext.plan.framestats import FrameStats, SummaryStats, frame_stats, summarize

logger = logging.getLogger(__name__)

ModelName = Literal["auto", "sd", "sdxl", "flux", "chroma"]
MODELS: tuple[str, ...] = ("auto", "sd", "sdxl", "flux", "chroma")

#: Hugging Face ids of the tokenizers sd-scripts counts with (SDXL: CLIP-L is tokenizer 1).
_CLIP_ID = "openai/clip-vit-large-patch14"
_T5_ID = "google/t5-v1_1-xxl"


@dataclass(frozen=True)
class TextEncoder:
    """The text encoder whose token budget captions must fit.

    Attributes:
        model: ``sd``, ``sdxl``, ``flux`` or ``chroma``.
        budget: CLIP chunks (``--max_token_length``) or the T5 length (``--t5xxl_max_token_length``).
        counter: counts tokens (a real tokenizer when one loads offline, else ``estimate_tokens``).
        exact: True when ``counter`` is the real tokenizer.
    """

    model: str
    budget: TokenBudget
    counter: TokenCounter
    exact: bool

    @property
    def short(self) -> str:
        """E.g. ``CLIP, estimated``."""
        return f"{'CLIP' if self.budget.kind == 'clip' else 'T5'}, {'tokenizer' if self.exact else 'estimated'}"

    @property
    def label(self) -> str:
        """E.g. ``CLIP 225 tokens (estimate)``."""
        kind = "CLIP" if self.budget.kind == "clip" else "T5"
        return f"{kind} {self.budget.max_tokens} tokens ({'tokenizer' if self.exact else 'estimate'})"


def detect_model(values: dict[str, Any]) -> str:
    """Guess the model family from training arguments: Flux / Chroma options mean T5, else SDXL's CLIP.

    Examples:
        >>> detect_model({"model_type": "chroma"}), detect_model({"t5xxl": "t5.safetensors"}), detect_model({})
        ('chroma', 'flux', 'sdxl')
    """
    if values.get("model_type") in ("flux", "chroma"):
        return str(values["model_type"])
    if any(values.get(k) is not None for k in ("t5xxl", "ae", "apply_t5_attn_mask", "t5xxl_max_token_length")):
        return "flux"
    if values.get("v2") or values.get("v_parameterization"):
        return "sd"
    return "sdxl"


def text_encoder_for(values: dict[str, Any], model: str = "auto") -> TextEncoder:
    """The token budget and counter of the run's text encoder.

    Flux dev and Chroma read 512 T5 tokens unless ``t5xxl_max_token_length`` says otherwise (Flux
    schnell reads 256: set ``t5xxl_max_token_length = 256``); SD/SDXL read ``max_token_length``
    CLIP tokens (75 unless set). The real tokenizer is used when ``transformers`` is installed and
    has it locally (``tokenizer_cache_dir`` or the Hugging Face cache); nothing is downloaded.

    Raises:
        CollageConfigError: an invalid ``max_token_length`` or ``t5xxl_max_token_length``.
    """
    name = detect_model(values) if model == "auto" else model
    if name in ("flux", "chroma"):
        length = values.get("t5xxl_max_token_length")
        budget = t5_budget(int(length) if isinstance(length, int) else 512)
        tokenizer = _load_tokenizer(_T5_ID, values.get("tokenizer_cache_dir"), t5=True)
    else:
        length = values.get("max_token_length")
        budget = clip_budget(int(length) if isinstance(length, int) else None)
        tokenizer = _load_tokenizer(_CLIP_ID, values.get("tokenizer_cache_dir"), t5=False)
    if tokenizer is None:
        return TextEncoder(name, budget, estimate_tokens, False)
    return TextEncoder(name, budget, _HFCounter(tokenizer), True)


class _HFCounter:
    """Tokens of a text without BOS/EOS, with a Hugging Face tokenizer (as the adapter counts)."""

    def __init__(self, tokenizer: Any) -> None:
        self.tokenizer = tokenizer

    def __call__(self, text: str) -> int:
        return len(self.tokenizer(text, add_special_tokens=False)["input_ids"])


def _load_tokenizer(repo: str, cache_dir: object, *, t5: bool) -> Any:
    if os.environ.get("COLLAGE_EXT_NO_TOKENIZER"):
        return None
    try:
        import importlib.util

        if importlib.util.find_spec("transformers") is None:
            return None
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            import transformers

            cls = transformers.T5TokenizerFast if t5 else transformers.CLIPTokenizer
            local = os.path.join(str(cache_dir), repo.replace("/", "_")) if cache_dir else None
            if local and os.path.isdir(local):
                return cls.from_pretrained(local, local_files_only=True)
            return cls.from_pretrained(repo, local_files_only=True)
    except Exception as exc:  # noqa: BLE001 - any failure means: count with the estimate instead
        logger.debug(f"no local tokenizer {repo}: {type(exc).__name__}: {exc}")
        return None


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
        return self.planned.collage.caption(self.params)

    @property
    def stats(self) -> FrameStats:
        """Fill and per-source span of the frame (after ``render``: of the frame as rendered)."""
        return frame_stats(self.params.layout, self.sources, self.planned.subset.config.fit_mode)


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
        project: the project read by ``datasets.load_project``.
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
                params = item.collage.make_params(sources, seed=item.pool.seed, epoch=variant,
                                                  frame=item.pool.frame_for(group))
                digest = frame_digest(params, sources, item.collage, item.collage.caption(params))
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
