"""The thin mapper: a collage subset's frame jobs as sd-scripts ``ImageInfo``s, and sd-scripts' hooks answered.

sd-scripts registers a subset's images; this mixin hands them to the producer as a ``SubsetInput``
(``plan.subsets.plan_subset``, the same code the CLI plans with) and registers what the producer
says the subset trains:

- **dynamic** mode: one virtual image per collage slot (``PlannedSubset.slot_name``, never
  written); ``load_image_with_face_info`` renders the slot's job for the current epoch
  (``plan.jobs.slot_job``) and ``process_caption`` merges its caption. Which images are single
  stays fixed, so sd-scripts' buckets and step counts stay valid.
- **static** mode: every static job rendered once into the cache folder under its content-hashed
  name (``sdscripts.staticframes``) and registered as an ordinary image, so sd-scripts' latent and
  text-encoder caches work unchanged.
- the producer's single repeats (``PlannedSubset.single_repeats``) on the images that train alone.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from collage_ext.core.config import CollageConfig
from collage_ext.core.errors import CollageInputError
from collage_ext.core.progress import progress
from collage_ext.core.types import Size
from collage_ext.geometry.buckets import Buckets
from collage_ext.kohya.runargs import RunArgs
from collage_ext.kohya.specs import SubsetImage, subset_root
from collage_ext.pixels.images import load_fitted
from collage_ext.plan.collage import Source
from collage_ext.plan.frames import ensure_cached_png, ensure_writable
from collage_ext.plan.framestats import epoch_stats, frame_note, rule_warning
from collage_ext.plan.policy import FailureLog
from collage_ext.plan.run import static_cache_dir
from collage_ext.plan.singles import cropped_pixels, cropped_single_path
from collage_ext.plan.subsets import PlannedSubset, SubsetInput, plan_subset
from collage_ext.sdscripts import seams
from collage_ext.sdscripts.captioning import caption_tokens
from collage_ext.sdscripts.loading import LoadingMixin
from collage_ext.sdscripts.staticframes import render_static_frames
from collage_ext.sdscripts.te_dropout import encode_empty_caption, substitute, take_over_dropout

_SD = seams.require()

logger = logging.getLogger(__name__)

#: The build contexts of the dataset groups being built (``dataset._generate`` pushes one).
_PENDING: list[BuildContext] = []


class SlotCaption(str):
    """A caption string that remembers which collage slot (or replaced single) it belongs to.

    sd-scripts hands ``process_caption`` only the caption string; this subclass carries the slot
    key through that call so the mapper can build the frame's merged caption there.
    """

    slot: str

    def __new__(cls, text: str, slot: str) -> SlotCaption:
        obj = super().__new__(cls, text)
        obj.slot = slot
        return obj

    def __reduce__(self) -> tuple[object, ...]:  # keep the slot through pickling into DataLoader workers
        return (SlotCaption, (str(self), self.slot))


class BuildContext:
    """What the dataset subclasses need while sd-scripts' ``generate_dataset_group_by_blueprint`` runs."""

    def __init__(
        self, run: RunArgs, configs: tuple[tuple[CollageConfig, ...], ...], seed: int, mode: str, tokenizer: Any
    ) -> None:
        self.run, self.configs, self.seed, self.mode, self.tokenizer = run, configs, seed, mode, tokenizer
        self.next_dataset = 0

    def take(self, is_training: bool) -> tuple[int, tuple[CollageConfig, ...]]:
        """Configs of the next training dataset; validation datasets stay plain."""
        if not is_training:
            return -1, ()
        index = self.next_dataset
        self.next_dataset += 1
        return index, self.configs[index] if index < len(self.configs) else ()


class CollageMixin(LoadingMixin):
    """Adds collage frames to an sd-scripts dataset after it registered its source images."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        given = seams.constructor_arguments(_SD, type(self), args, kwargs)
        subsets = list(given.get("subsets") or [])
        super().__init__(*args, **kwargs)
        ctx = _PENDING[-1]
        index, configs = ctx.take(given.get("is_training_dataset", True))
        by_subset = {id(s): c for s, c in zip(subsets, configs)}
        self._collage_index = index
        self._collage_seed = ctx.seed
        self._collage_mode = ctx.mode
        self._epoch_value: Any = None
        self._frames: dict[str, tuple[PlannedSubset, int]] = {}  # slot path -> (subset, slot)
        self._static: dict[str, tuple[PlannedSubset, tuple[int, ...], int]] = {}  # path -> (subset, group, variant)
        self._collage_info: list[dict[str, Any]] = []
        self._failures = FailureLog(shared=any(c.on_error == "skip" for c in configs))  # once across workers
        self._replaced: dict[str, str] = {}  # failed single image -> the image shown instead
        self._cropped: dict[
            str, tuple[Source, CollageConfig, bool]
        ] = {}  # static: cropped single's cache file -> source
        self._pool_of_subset: dict[int, PlannedSubset] = {}
        for s_index, subset in enumerate(self.subsets):
            config = by_subset.get(id(subset), CollageConfig(rate=0.0))  # validation / unknown subsets stay plain
            if config.enabled:
                self._setup_subset(s_index, subset, config, ctx)
        self._te_dropout = take_over_dropout(self.subsets, ctx.run.caches_text_encoder, seams.strategy_era(_SD))
        self._te_cache_dir = static_cache_dir(list(configs) or [CollageConfig(rate=0.0)], ctx.run)
        self._empty_te: list[Any] | None = None

    # -- planning: the subset as a SubsetInput, the producer's jobs as ImageInfos -------------
    def _setup_subset(self, s_index: int, subset: Any, config: CollageConfig, ctx: BuildContext) -> None:
        keys = self._subset_keys(subset)
        root = subset_root(subset.image_dir, getattr(subset, "metadata_file", None))
        images = [
            SubsetImage(seams.path_of(self._images[k]), self._images[k].caption or "", self._images[k].num_repeats)
            for k in keys
        ]

        def skipped(index: int, exc: CollageInputError) -> None:  # collage_on_error = "skip"
            self._failures.record(images[index].path, exc)
            del self._images[keys[index]]

        buckets = self._bucket_settings()
        given = SubsetInput(
            images,
            root,
            config,
            Size(self.width, self.height),
            buckets,
            self._collage_index,
            s_index,
            subset,
            image_dir=getattr(subset, "image_dir", ""),
        )
        budget, counter = caption_tokens(config, ctx.run, ctx.tokenizer)
        # The same producer the CLI uses, so `collage-ext preview` shows exactly these frames.
        planned = plan_subset(
            given,
            seed=ctx.seed,
            budget=budget,
            counter=counter,
            on_error=skipped if config.on_error == "skip" else None,
        )
        self._refuse_emptied(subset, s_index, root, images, len(planned.order))
        keys = [keys[i] for i in planned.order]
        if config.loss_mask and not subset.alpha_mask:
            subset.alpha_mask = True  # sd-scripts then reads our alpha channel as the loss mask
            logger.info(
                f"collage_ext: alpha_mask turned on for {root} (collage_loss_mask = true): the padding "
                "weight and every image's own alpha channel are loss weights, alone and in frames"
            )
        if ctx.mode == "static":
            added = self._register_static(planned, subset, ctx)
        else:
            added = self._register_dynamic(planned, subset, ctx)
        singles = planned.single_repeats(ctx.mode)
        for key, count, source in zip(keys, singles, planned.pool.sources):
            if count:
                info = self._images[key]
                info.num_repeats = count
                if source.crop is not None and not self._crop_single(
                    key, source, config, planned.collage.alpha_mask, ctx
                ):
                    continue
                if config.on_error == "skip":  # a replacement image must bring its own caption
                    info.caption = SlotCaption(info.caption or "", seams.path_of(info))
            else:
                del self._images[key]
        if config.on_error == "skip" and ctx.mode == "static":
            self._verify_singles(keys, singles)  # sd-scripts' own caching would crash on them
            left = added + sum(1 for key in keys if key in self._images)
            self._refuse_emptied(subset, s_index, root, images, left)
        self._pool_of_subset[id(subset)] = planned
        self._collage_info.append(
            {
                "subset": s_index,
                "image_dir": str(root),
                "images": len(planned.pool.sources),
                "frames_per_epoch": added + sum(singles),
                "collage_frames": added,
                "single_samples": sum(singles),
                "settings": config.to_metadata(),
                "stats": epoch_stats(planned, ctx.mode).to_json(),
                "frames": frame_note(planned.pool, buckets),
            }
        )
        broken = rule_warning(planned, buckets, ctx.mode)
        if broken:  # one line, the same test as check's scale_rule / frame_below_bucket warnings
            logger.warning(broken)

    def _register_dynamic(self, planned: PlannedSubset, subset: Any, ctx: BuildContext) -> int:
        """One virtual image per slot: its name and frame are the same in every epoch, its content is not."""
        slot_dir = _cache_dir(planned.pool.config, ctx.run) / "dynamic"
        jobs = planned.jobs("dynamic", 1, self._failures)
        for job in jobs:
            assert job.slot is not None
            path = str(slot_dir / f"{job.name}.png")  # virtual: never written
            self._frames[path] = (planned, job.slot)
            self._register(self._new_info(path, SlotCaption("", path), subset, job.frame), subset)
        return len(jobs)

    def _register_static(self, planned: PlannedSubset, subset: Any, ctx: BuildContext) -> int:
        cache = _cache_dir(planned.pool.config, ctx.run)
        ensure_writable(cache)  # read-only or missing: say so now, before sd-scripts loads any model
        jobs = planned.jobs("static", 1, self._failures)
        rendered = 0
        # Frames not in the cache yet render on every CPU (staticframes.render_static_frames), in order.
        rendering = render_static_frames(jobs, cache, progress=_static_progress)
        for job, (path, caption, new) in zip(jobs, rendering):
            if str(path) in self._static:  # the same frame twice in a variant: one image, two repeats
                self._images[str(path)].num_repeats += 1
                continue
            assert job.variant is not None
            self._static[str(path)] = (planned, job.group, job.variant)
            rendered += new
            self._register(self._new_info(str(path), caption, subset, job.frame), subset)
        logger.info(
            f"collage_ext: {len(jobs)} static frames in {cache} ({rendered} rendered, {len(jobs) - rendered} reused)"
        )
        return len(jobs)

    def _crop_single(self, key: str, source: Source, config: CollageConfig, alpha: bool, ctx: BuildContext) -> bool:
        """Let a single sample with a crop box train only its box; False when it failed under ``skip``.

        sd-scripts buckets ``image_size``, so it becomes the box's size. Dynamic mode crops in
        ``_load_source``; static mode writes the cropped image into the cache folder, because
        sd-scripts' latent caching reads the file itself.
        """
        info = self._images[key]
        seams.set_size(info, (source.effective_size.width, source.effective_size.height))
        if ctx.mode != "static":
            return True
        path = cropped_single_path(source, config, _cache_dir(config, ctx.run), alpha)
        try:
            ensure_cached_png(path, lambda: cropped_pixels(source, config, alpha))
        except CollageInputError as exc:
            if config.on_error == "raise":
                raise
            self._failures.record(source.path, exc)
            del self._images[key]
            return False
        self._cropped[str(path)] = (source, config, alpha)
        seams.set_path(info, str(path))
        return True

    def _refuse_emptied(self, subset: Any, s_index: int, root: str, images: list[SubsetImage], left: int) -> None:
        """Stop when ``skip`` left a subset with no image: the run would train on without it, unannounced."""
        if left or not images:
            return
        paths = {image.path for image in images}
        failures = [f"{Path(p).name}: {why}" for p, why in self._failures.failed.items() if p in paths]
        where = f"dataset {self._collage_index}, subset {s_index}" + (
            f" ({subset.metadata_file})" if getattr(subset, "metadata_file", None) else ""
        )
        msg = (
            f"collage_on_error = 'skip' left subset {root} ({where}) without any image: all {len(images)} of its "
            f"images failed, e.g. {'; '.join(failures[:2]) or 'no reason recorded'}; this is no fault of single "
            "files: fix the paths or files (with a metadata file, its keys must name the image files), or remove "
            "the subset"
        )
        raise CollageInputError(msg)

    def _bucket_settings(self) -> Buckets:
        """This dataset's bucket settings as sd-scripts resolved them (after its step adjustments)."""
        return Buckets.from_params(Size(self.width, self.height), seams.bucket_params(self))

    def _verify_singles(self, keys: list[str], singles: list[int]) -> None:
        for key, count in zip(keys, singles):
            if count and key in self._images:
                path = seams.path_of(self._images[key])
                try:  # a tiny draft-mode decode still reads every byte of the file
                    load_fitted(path, Size(64, 64))
                except CollageInputError as exc:
                    self._failures.record(path, exc)
                    del self._images[key]

    def _new_info(self, path: str, caption: str, subset: Any, frame: Size) -> Any:
        return seams.new_image_info(_SD, self, path, caption, subset, (frame.width, frame.height))

    # -- sd-scripts hooks (seams.DatasetHooks calls these; loading: sdscripts/loading.py) ------
    def _caption(self, subset: Any, caption: str) -> str:
        """Merge a slot's cell captions for the current epoch (sd-scripts then processes it as usual)."""
        if isinstance(caption, SlotCaption) and caption.slot in self._frames:
            planned, slot = self._frames[caption.slot]
            caption = planned.slot_caption(slot, self._epoch)
        elif isinstance(caption, SlotCaption) and caption.slot in self._replaced:
            planned = self._pool_of_subset[id(subset)]
            index = planned.index_of(self._replaced[caption.slot])
            assert index is not None
            caption = planned.pool.sources[index].caption
        return caption

    def _cacheable(self) -> bool:
        """Dynamic collage frames change every epoch, so they cannot be cached."""
        return not self._frames

    def _bucket_metadata(self) -> dict[str, Any] | None:
        """The collage settings for sd-scripts' ``bucket_info`` (it lands in LoRA metadata)."""
        if not self._collage_info:
            return None
        return {
            "version": _version(),
            "mode": self._collage_mode,
            "seed": self._collage_seed,
            "subsets": self._collage_info,
        }

    def _after_text_encoder_cache(self, models: list[Any]) -> None:
        """The empty-caption encoding that dropped samples get, once sd-scripts cached the outputs."""
        if self._te_dropout:
            self._empty_te = encode_empty_caption(models, self._te_cache_dir)
            logger.info(
                f"collage_ext: caption dropout up to {self._te_dropout:g} on cached text-encoder outputs "
                "(empty-caption encoding cached)"
            )

    def _before_item(self) -> None:
        self._sync_epoch()

    def _after_item(self, example: Any, index: int) -> Any:
        if self._te_dropout and isinstance(example, dict) and seams.cached_text_outputs(example) is not None:
            if self._empty_te is None:
                msg = (
                    "internal: caption dropout with cached text-encoder outputs, but the empty-caption encoding "
                    "was never cached (new_cache_text_encoder_outputs was not called)"
                )
                raise RuntimeError(msg)
            substitute(example, self, index, self._empty_te, self._collage_seed)
        return example

    def _sync_epoch(self) -> None:
        # sd-scripts' collator sets the epoch *after* the first batch of an epoch, so that batch
        # would use last epoch's order and frames; reading the trainer's shared epoch value first
        # keeps every batch of an epoch on one plan (exact coverage, no duplicates).
        value = self._epoch_value
        if value is not None and value.value > self._epoch:
            self._set_epoch(value.value)


def _cache_dir(config: CollageConfig, run: RunArgs) -> Path:
    return static_cache_dir([config], run)


def _version() -> str:
    from collage_ext.core.version import __version__

    return __version__


def _static_progress(results: Any, total: int) -> Any:
    return progress(results, "collage_ext: static frames", "frame", total=total)
