"""``collage_ext.CollageDataset``: collage training inside real sd-scripts runs.

sd-scripts constructs ``--dataset_class`` objects positionally and without ``args``; this class
recovers the run's arguments (``startup.run_arguments``), resolves the run once (``run.resolve_run``,
as the CLI does), builds the datasets through sd-scripts' own ``config_util`` (so every kohya key is
validated by kohya's sanitizer and means what it always meant), and returns a genuine
``DatasetGroup`` of ``DreamBoothDataset`` / ``FineTuningDataset`` subclasses. Every sd-scripts name
it relies on goes through ``seams`` (hooks via ``seams.DatasetHooks``).

How frames reach the trainer:
- **dynamic** mode registers one virtual image per collage slot; ``load_image_with_face_info``
  composes the slot's frame for the current epoch and ``process_caption`` merges its caption.
  Which images are single stays fixed, so sd-scripts' buckets and step counts stay valid.
- **static** mode renders planned frames once into a dedicated cache folder under content-hashed
  names and registers them as ordinary images, so sd-scripts' latent and text-encoder caches work
  unchanged (and a changed source, caption or setting can never reuse a stale cache).
"""

from __future__ import annotations

import logging
import weakref
from pathlib import Path
from typing import Any

from collage_ext.geometry.buckets import Buckets
from collage_ext.core.config import CollageConfig, split_dataset_config
from collage_ext.plan.framestats import epoch_stats, frame_note, rule_warning
from collage_ext.core.errors import CollageConfigError, CollageInputError
from collage_ext.pixels.images import load_fitted
from collage_ext.plan.policy import FailureLog, check_single, compose, cover_to, fit_to_aspect
from collage_ext.plan.subsets import SubsetImage, plan_subset, subset_root
from collage_ext.core.progress import progress
from collage_ext.plan.collage import Source
from collage_ext.plan.singles import cropped_pixels, cropped_single_path
from collage_ext.core.types import Size
from collage_ext.sdscripts.captioning import caption_setup
from collage_ext.kohya.caption_files import check_crop_extensions
from collage_ext.plan.frames import (
    SlotCaption,
    SubsetFrames,
    cached_png_problem,
    ensure_cached_png,
    write_checked_png,
    ensure_writable,
    render_static_frames,
    restore_static_frame,
    uses_alpha,
    with_alpha,
)
from collage_ext.kohya.runargs import RunArgs
from collage_ext.sdscripts.te_dropout import encode_empty_caption, substitute, take_over_dropout
from collage_ext.kohya.args import DatasetLocation, dataset_source
from collage_ext.plan.run import resolve_run, static_cache_dir
from collage_ext.sdscripts import seams
from collage_ext.sdscripts.startup import check_caption_files, default_rate_note, log_summary, run_arguments
from collage_ext.sdscripts.trainers import SUPPORTED, refuse_unsupported

# Before anything else touches sd-scripts: every name used below exists, or training stops here
# (sd-scripts imports this module while it builds the dataset, before any model loads).
_SD = seams.require()

logger = logging.getLogger(__name__)

_LIVE: weakref.WeakSet[Any] = weakref.WeakSet()
_PENDING: list[_BuildContext] = []


class _BuildContext:
    """What the dataset subclasses need while sd-scripts' ``generate_dataset_group_by_blueprint`` runs."""

    def __init__(self, run: RunArgs, configs: tuple[tuple[CollageConfig, ...], ...], seed: int, mode: str,
                 tokenizer: Any) -> None:
        self.run, self.configs, self.seed, self.mode, self.tokenizer = run, configs, seed, mode, tokenizer
        self.next_dataset = 0

    def take(self, is_training: bool) -> tuple[int, tuple[CollageConfig, ...]]:
        """Configs of the next training dataset; validation datasets stay plain."""
        if not is_training:
            return -1, ()
        index = self.next_dataset
        self.next_dataset += 1
        return index, self.configs[index] if index < len(self.configs) else ()


class _CollageMixin(seams.DatasetHooks):
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
        self._frames: dict[str, tuple[SubsetFrames, int]] = {}  # slot path -> (frames, slot index)
        self._static: dict[str, tuple[SubsetFrames, tuple[int, ...], int]] = {}  # path -> (frames, group, variant)
        self._collage_info: list[dict[str, Any]] = []
        self._failures = FailureLog(shared=any(c.on_error == "skip" for c in configs))  # once across workers
        self._replaced: dict[str, str] = {}  # failed single image -> the image shown instead
        self._cropped: dict[str, tuple[Source, CollageConfig, bool]] = {}  # static: cropped single's cache file -> source
        self._pool_of_subset: dict[int, SubsetFrames] = {}
        for s_index, subset in enumerate(self.subsets):
            config = by_subset.get(id(subset), CollageConfig(rate=0.0))  # validation / unknown subsets stay plain
            if config.enabled:
                self._setup_subset(s_index, subset, config, ctx)
        self._te_dropout = take_over_dropout(self.subsets, ctx.run.caches_text_encoder, seams.strategy_era(_SD))
        self._te_cache_dir = static_cache_dir(list(configs) or [CollageConfig(rate=0.0)], ctx.run)
        self._empty_te: list[Any] | None = None

    # -- planning ----------------------------------------------------------------------------
    def _setup_subset(self, s_index: int, subset: Any, config: CollageConfig, ctx: _BuildContext) -> None:
        keys = self._subset_keys(subset)
        root = subset_root(subset.image_dir, getattr(subset, "metadata_file", None))
        images = [SubsetImage(seams.path_of(self._images[k]), self._images[k].caption or "",
                              self._images[k].num_repeats) for k in keys]

        def skipped(index: int, exc: CollageInputError) -> None:  # collage_on_error = "skip"
            self._failures.record(images[index].path, exc)
            del self._images[keys[index]]

        buckets = self._bucket_settings()
        # The same function the CLI uses, so `collage-ext preview` shows exactly these frames.
        plan = plan_subset(images, root=root, config=config, resolution=Size(self.width, self.height),
                           buckets=buckets, dataset_index=self._collage_index, subset_index=s_index, seed=ctx.seed,
                           on_error=skipped if config.on_error == "skip" else None)
        self._refuse_emptied(subset, s_index, root, images, len(plan.order))
        keys = [keys[i] for i in plan.order]
        pool, frame, pool_key, sources = plan.pool, plan.pool.frame, plan.pool.key, plan.pool.sources
        collage = caption_setup(config, frame, subset, ctx.run, ctx.tokenizer)
        collage.shaped, collage.max_crop = pool.lines, pool.max_crop
        if config.loss_mask and not subset.alpha_mask:
            subset.alpha_mask = True  # sd-scripts then reads our alpha channel as the loss mask
            logger.info(f"collage_ext: alpha_mask turned on for {root} (collage_loss_mask = true): the padding "
                        "weight and every image's own alpha channel are loss weights, alone and in frames")
        collage.alpha_mask = uses_alpha(subset.alpha_mask, config)  # cells carry their sources' alpha
        frames = SubsetFrames(pool, collage)
        singles = list(pool.structure.single_repeats)
        if ctx.mode == "static":
            added = self._register_static(frames, subset, singles, ctx)
        else:
            added = self._register_dynamic(frames, subset, pool_key, ctx)
        for key, count, source in zip(keys, singles, sources):
            if count:
                info = self._images[key]
                info.num_repeats = count
                if source.crop is not None and not self._crop_single(key, source, config, collage.alpha_mask, ctx):
                    continue
                if config.on_error == "skip":  # a replacement image must bring its own caption
                    info.caption = SlotCaption(info.caption or "", seams.path_of(info))
            else:
                del self._images[key]
        if config.on_error == "skip" and ctx.mode == "static":
            self._verify_singles(keys, singles)  # sd-scripts' own caching would crash on them
            left = added + sum(1 for key in keys if key in self._images)
            self._refuse_emptied(subset, s_index, root, images, left)
        self._pool_of_subset[id(subset)] = frames
        self._collage_info.append({"subset": s_index, "image_dir": str(root), "images": len(sources),
                                   "frames_per_epoch": added + sum(singles), "collage_frames": added,
                                   "single_samples": sum(singles), "settings": config.to_metadata(),
                                   "stats": epoch_stats(frames, ctx.mode).to_json(),
                                   "frames": frame_note(pool, buckets)})
        broken = rule_warning(frames, buckets, ctx.mode)
        if broken:  # one line, the same test as check's scale_rule / frame_below_bucket warnings
            logger.warning(broken)

    def _crop_single(self, key: str, source: Source, config: CollageConfig, alpha: bool, ctx: _BuildContext) -> bool:
        """Let a single sample with a crop box train only its box; False when it failed under ``skip``.

        sd-scripts buckets ``image_size``, so it becomes the box's size. Dynamic mode crops in
        ``_load_single``; static mode writes the cropped image into the cache folder, because
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
            f" ({subset.metadata_file})" if getattr(subset, "metadata_file", None) else "")
        msg = (f"collage_on_error = 'skip' left subset {root} ({where}) without any image: all {len(images)} of its "
               f"images failed, e.g. {'; '.join(failures[:2]) or 'no reason recorded'}; this is no fault of single "
               "files: fix the paths or files (with a metadata file, its keys must name the image files), or remove "
               "the subset")
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

    def _register_dynamic(self, frames: SubsetFrames, subset: Any, pool_key: str, ctx: _BuildContext) -> int:
        slot_dir = _cache_dir(frames.pool.config, ctx.run) / "dynamic"
        for slot in range(frames.slot_count):
            path = str(slot_dir / f"{_safe(pool_key)}_slot{slot:05d}.png")  # virtual: never written
            info = self._new_info(path, SlotCaption("", path), subset, frames.pool.slot_frame(slot))
            self._frames[path] = (frames, slot)
            self._register(info, subset)
        return frames.slot_count

    def _register_static(self, frames: SubsetFrames, subset: Any, singles: list[int], ctx: _BuildContext) -> int:
        cache = _cache_dir(frames.pool.config, ctx.run)
        ensure_writable(cache)  # read-only or missing: say so now, before sd-scripts loads any model
        variants = frames.pool.static_groups()
        rendered = 0
        count = 0
        for variant, group in variants:
            if len(group) == 1:  # a variant's leftover: train it as a single image
                singles[group[0]] += 1
        collages = [(group, variant) for variant, group in variants if len(group) > 1]
        # Frames not in the cache yet render on every CPU (frames.render_static_frames), in order.
        rendering = render_static_frames(frames, collages, cache, self._failures, progress=_static_progress)
        for (group, variant), (path, caption, new) in zip(collages, rendering):
            count += 1
            if str(path) in self._static:  # the same frame twice in a variant: one image, two repeats
                self._images[str(path)].num_repeats += 1
                continue
            self._static[str(path)] = (frames, group, variant)
            rendered += new
            self._register(self._new_info(str(path), caption, subset, frames.pool.frame_for(group)), subset)
        logger.info(f"collage_ext: {count} static frames in {cache} ({rendered} rendered, {count - rendered} reused)")
        return count

    def _new_info(self, path: str, caption: str, subset: Any, frame: Size) -> Any:
        return seams.new_image_info(_SD, self, path, caption, subset, (frame.width, frame.height))

    # -- sd-scripts hooks (seams.DatasetHooks calls these) ----------------------------------------
    def _load_image(self, subset: Any, image_path: str, alpha_mask: bool = False) -> Any:
        """Compose the slot's frame for the current epoch; other images load as sd-scripts does."""
        entry = self._frames.get(image_path)
        if entry is None:
            return self._load_single(subset, image_path, alpha_mask)
        frames, slot = entry
        params = frames.params(slot, self._epoch)
        sources = frames.sources_of(frames.groups(self._epoch)[slot])
        rendered, used = compose(frames.collage, sources, params, self._failures, with_mask=alpha_mask,
                                 spares=frames.pool.sources)
        frames.remember(slot, self._epoch, used)  # the caption follows a rebuilt frame
        if not alpha_mask:
            return rendered.image, 0, 0, 0, 0
        return with_alpha(rendered, frames.pool.config), 0, 0, 0, 0

    def _load_single(self, subset: Any, image_path: str, alpha_mask: bool) -> Any:
        """A single image; without bucketing a collage subset's single gets exactly the resolution.

        sd-scripts refuses any other size then ("image size is small" / "image too large"); the sources
        that keep the scale rule only alone (a square in a square frame) arrive at their own size.
        """
        loaded = self._load_single_as_is(subset, image_path, alpha_mask)
        if (not self.enable_bucket and id(subset) in self._pool_of_subset and not subset.random_crop
                and not loaded[1]):  # loaded[1]: face_cx (face_crop_aug_range crops to size itself)
            loaded = (cover_to(loaded[0], (self.width, self.height)), *loaded[1:])
        return loaded

    def _load_single_as_is(self, subset: Any, image_path: str, alpha_mask: bool) -> Any:
        """sd-scripts' own loading; under ``skip`` a failing image is replaced by the next readable one."""
        if image_path in self._static:  # a frame is no source of the pool: it loads as itself under any policy
            return self._load_cached(subset, image_path, alpha_mask,
                                     lambda problem: restore_static_frame(image_path, *self._static[image_path],
                                                                          self._failures, problem))
        if image_path in self._cropped:  # static mode: a cropped single, written at start-up
            source, config, alpha = self._cropped[image_path]
            return self._load_cached(subset, image_path, alpha_mask,
                                     lambda problem: _rewrite_cropped(image_path, source, config, alpha, problem))
        frames = self._pool_of_subset.get(id(subset))
        if frames is None:
            return self._sd_load_image(subset, image_path, alpha_mask)
        planned = self._planned_sizes().get(image_path)
        if frames.pool.config.on_error == "raise":
            try:
                loaded = self._load_source(subset, frames, image_path, alpha_mask)
            except CollageInputError:
                raise
            except Exception as exc:  # sd-scripts' load_image raises whatever Pillow raised
                check_single(image_path, None, planned, exc)
            check_single(image_path, loaded[0], planned)
            return loaded
        sources = frames.pool.sources
        start = _index_of(frames).get(image_path, 0)  # a dict: a scan per load would be quadratic per epoch
        for step in range(len(sources)):
            candidate = sources[(start + step) % len(sources)].path
            if candidate in self._failures.failed:
                continue
            try:
                loaded = self._load_source(subset, frames, candidate, alpha_mask)
                if candidate == image_path:
                    check_single(image_path, loaded[0], planned)
            except Exception as exc:  # sd-scripts' load_image raises whatever Pillow raised
                self._failures.record(candidate, exc)
                continue
            if candidate != image_path:
                self._replaced[image_path] = candidate
                if planned is not None:  # sd-scripts resizes to the original's bucket: keep its aspect
                    loaded = (fit_to_aspect(loaded[0], planned), *loaded[1:])
            return loaded
        msg = f"no readable image left in subset {subset.image_dir!r} (collage_on_error = 'skip')"
        raise CollageInputError(msg)

    def _load_cached(self, subset: Any, path: str, alpha_mask: bool, rebuild: Any) -> Any:
        """sd-scripts' loading of a file collage_ext wrote, checked by content; a bad file is written again."""
        try:
            loaded = self._sd_load_image(subset, path, alpha_mask)
            problem = cached_png_problem(path, loaded[0])
        except FileNotFoundError:
            problem = "was deleted from the cache"
        except Exception as exc:  # sd-scripts' load_image raises whatever Pillow raised
            problem = f"cannot be read ({type(exc).__name__}: {exc})"
        if problem is None:
            return loaded
        rebuild(problem)
        return self._sd_load_image(subset, path, alpha_mask)

    def _load_source(self, subset: Any, frames: SubsetFrames, path: str, alpha_mask: bool) -> Any:
        """A pool source as a single sample: sd-scripts' loader, or its crop box when it has one."""
        index = _index_of(frames).get(path)
        source = frames.pool.sources[index] if index is not None else None
        if source is None or source.crop is None:
            return self._sd_load_image(subset, path, alpha_mask)
        return cropped_pixels(source, frames.pool.config, alpha=alpha_mask), 0, 0, 0, 0

    def _planned_sizes(self) -> dict[str, tuple[int, int]]:
        """``absolute_path -> image_size`` as sd-scripts bucketed it (built once per process, after bucketing)."""
        sizes = getattr(self, "_sizes_cache", None)
        if sizes is None:
            sizes = {seams.path_of(i): size for i in self._images.values() if (size := seams.size_of(i))}
            self._sizes_cache = sizes
        return sizes

    def _caption(self, subset: Any, caption: str) -> str:
        """Merge a slot's cell captions for the current epoch (sd-scripts then processes it as usual)."""
        if isinstance(caption, SlotCaption) and caption.slot in self._frames:
            frames, slot = self._frames[caption.slot]
            caption = frames.collage.caption(frames.params(slot, self._epoch))
        elif isinstance(caption, SlotCaption) and caption.slot in self._replaced:
            frames = self._pool_of_subset[id(subset)]
            replacement = self._replaced[caption.slot]
            caption = frames.pool.sources[_index_of(frames)[replacement]].caption
        return caption

    def _cacheable(self) -> bool:
        """Dynamic collage frames change every epoch, so they cannot be cached."""
        return not self._frames

    def _bucket_metadata(self) -> dict[str, Any] | None:
        """The collage settings for sd-scripts' ``bucket_info`` (it lands in LoRA metadata)."""
        if not self._collage_info:
            return None
        return {"version": _version(), "mode": self._collage_mode, "seed": self._collage_seed,
                "subsets": self._collage_info}

    def _after_text_encoder_cache(self, models: list[Any]) -> None:
        """The empty-caption encoding that dropped samples get, once sd-scripts cached the outputs."""
        if self._te_dropout:
            self._empty_te = encode_empty_caption(models, self._te_cache_dir)
            logger.info(f"collage_ext: caption dropout up to {self._te_dropout:g} on cached text-encoder outputs "
                        "(empty-caption encoding cached)")

    def _before_item(self) -> None:
        self._sync_epoch()

    def _after_item(self, example: Any, index: int) -> Any:
        if self._te_dropout and isinstance(example, dict) and seams.cached_text_outputs(example) is not None:
            if self._empty_te is None:
                msg = ("internal: caption dropout with cached text-encoder outputs, but the empty-caption encoding "
                       "was never cached (new_cache_text_encoder_outputs was not called)")
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


class CollageDreamBoothDataset(_CollageMixin, _SD.dreambooth):  # type: ignore[misc,name-defined]
    """sd-scripts' DreamBooth dataset (folders of images + caption files) with collage frames."""


class CollageFineTuningDataset(_CollageMixin, _SD.finetuning):  # type: ignore[misc,name-defined]
    """sd-scripts' fine-tuning dataset (``--in_json`` / ``metadata_file``) with collage frames."""


class CollageDataset(_SD.group):  # type: ignore[misc,name-defined]
    """The ``--dataset_class`` entry point: a genuine sd-scripts ``DatasetGroup`` with collage frames.

    sd-scripts calls ``CollageDataset(tokenizer, max_token_length, resolution, debug_dataset)``;
    ``tokenizer`` is a list of tokenizers on v0.9.1 and ``None`` on main.
    """

    def __init__(self, tokenizer: Any = None, max_token_length: Any = None, resolution: Any = None,
                 debug_dataset: bool = False) -> None:
        run = run_arguments()
        family, family_why = refuse_unsupported(strategy=seams.tokenize_strategy(), values=run.values)
        logger.info(f"collage_ext: run arguments from {run.found}; model family {family.name} ({family_why})")
        user_config, where = _user_config(run)
        tree = split_dataset_config(user_config, defaults=run.collage_defaults, defaults_where=where)
        all_configs = [c for row in tree.subsets for c in row]
        settings = resolve_run(all_configs, run, tree.kohya)
        check_caption_files(tree.kohya, run)
        check_crop_extensions(tree.kohya, tree.subsets, run)
        ctx = _BuildContext(run, tree.subsets, settings.seed, settings.mode, tokenizer)
        datasets, validation = _generate(tree.kohya, run, ctx)
        if not sum(seams.sample_count(d) for d in datasets):
            raise CollageConfigError(_no_samples_message(tree.kohya))
        super().__init__(datasets)
        if "seed" not in run.explicit:
            # Without --seed, train_network.py draws a different seed in every process, and sd-scripts
            # derives its batch-order seed from it: ranks would order batches differently and show some
            # frames twice, others never. The config-derived seed is the same on every rank.
            for dataset in self.datasets:
                dataset.set_seed(settings.seed)
        #: sd-scripts' validation group (single images, no collages) for trainers patched with
        #: patches/0001-dataset-class-validation-split.patch; unpatched trainers ignore it.
        self.validation_dataset_group = validation
        _LIVE.add(self)
        log_summary(self.datasets, settings, all_configs, default_rate_note(user_config, run.collage_defaults))


def _no_samples_message(kohya_config: dict[str, Any]) -> str:
    """Why no sample is left (sd-scripts would stop with 'num_samples=0' only after loading the model)."""
    general = kohya_config.get("general", {}) or {}
    ignored = [f"{s.get('image_dir') or s.get('metadata_file')}: num_repeats = {r}"
               for d in kohya_config.get("datasets", []) or [] for s in d.get("subsets", []) or []
               for r in [next((level["num_repeats"] for level in (s, d, general) if "num_repeats" in level), 1)]
               if isinstance(r, int) and r < 1]
    why = f"sd-scripts ignores subsets with num_repeats < 1 ({'; '.join(ignored)})" if ignored else (
        "every subset is empty or was left out (see sd-scripts' log above)")
    return f"no sample to train: {why}; give a subset images and num_repeats >= 1"


def _generate(kohya_config: dict[str, Any], run: RunArgs, ctx: _BuildContext) -> tuple[list[Any], Any]:
    """sd-scripts' own datasets for the config, built as the collage subclasses (``seams.build_datasets``)."""
    args = run.namespace
    if args is None:
        msg = ("collage_ext could not find the trainer's arguments (sd-scripts' load_arbitrary_dataset did not "
               "build the dataset); start training with sd-scripts' own scripts (train_network.py, "
               "sdxl_train_network.py, flux_train_network.py, sdxl_train.py)")
        raise CollageConfigError(msg)
    return seams.build_datasets(kohya_config, args, ctx.tokenizer, CollageDreamBoothDataset, CollageFineTuningDataset,
                                seams.datasets_take_tokenizer(_SD), before=lambda: _PENDING.append(ctx),
                                after=_PENDING.pop)


def _user_config(run: RunArgs) -> tuple[dict[str, Any], str]:
    """The dataset config as sd-scripts would build it, and where global collage defaults came from."""
    where = f"--config_file {run.get('config_file')}" if run.get("config_file") else "the training arguments"
    # no source: sd-scripts' own reading of no folders (it then finds no sample; _no_samples_message)
    source = dataset_source(run) or DatasetLocation("train_data_dir", None, reg_data_dir=run.get("reg_data_dir"))
    if source.kind == "dataset_config":
        return seams.load_user_config(str(source.path)), where
    if source.kind == "in_json":
        return {"datasets": [{"subsets": [{"image_dir": source.path, "metadata_file": source.metadata_file}]}]}, where
    return {"datasets": [{"subsets": seams.subsets_by_subdirs(source.path, source.reg_data_dir)}]}, where


def _index_of(frames: SubsetFrames) -> dict[str, int]:
    """``path -> position`` in the subset's pool, built once per pool and process."""
    index = getattr(frames, "_path_index", None)
    if index is None:
        index = {s.path: i for i, s in enumerate(frames.pool.sources)}
        frames._path_index = index  # type: ignore[attr-defined]
    return index


def _rewrite_cropped(path: str, source: Source, config: CollageConfig, alpha: bool, problem: str) -> None:
    write_checked_png(cropped_pixels(source, config, alpha), Path(path))
    logger.warning(f"collage_ext: cropped single {path} (of {source.path}) {problem} while training; "
                   "rendered it again")


def _cache_dir(config: CollageConfig, run: RunArgs) -> Path:
    return static_cache_dir([config], run)


def _safe(text: str) -> str:
    return "".join(c if c.isalnum() or c in "-_" else "_" for c in text)


def _version() -> str:
    from collage_ext.core.version import __version__

    return __version__


def _static_progress(results: Any, total: int) -> Any:
    return progress(results, "collage_ext: static frames", "frame", total=total)


def attach_epoch_value(epoch_value: Any) -> None:
    """Give every live CollageDataset the trainer's shared epoch counter (see ``_sync_epoch``)."""
    for group in list(_LIVE):
        for dataset in group.datasets:
            if isinstance(dataset, _CollageMixin):
                dataset._epoch_value = epoch_value


# The trainer builds sd-scripts' collator (holding the shared epoch value) after the dataset.
seams.on_collator(attach_epoch_value)
