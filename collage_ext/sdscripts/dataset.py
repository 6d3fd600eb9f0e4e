"""``collage_ext.CollageDataset``: collage training inside real sd-scripts runs.

sd-scripts constructs ``--dataset_class`` objects positionally and without ``args``; this class
recovers the run's arguments, builds the datasets through sd-scripts' own ``config_util`` (so every
kohya key is validated by kohya's sanitizer and means what it always meant), and returns a genuine
``DatasetGroup`` of ``DreamBoothDataset`` / ``FineTuningDataset`` subclasses.

The frames themselves are the producer's (``collage_ext.plan``): ``sdscripts/mapper.py`` hands
each collage subset to it and registers the frame jobs it lists as sd-scripts images.
"""

from __future__ import annotations

import inspect
import logging
import weakref
from contextlib import contextmanager
from typing import Any

from collage_ext.core.config import split_dataset_config
from collage_ext.core.errors import CollageConfigError
from collage_ext.kohya.caption_files import check_caption_files, check_crop_extensions
from collage_ext.kohya.runargs import RunArgs, find_run_args
from collage_ext.plan.run import (default_rate_note, log_summary, refuse_cache_in_image_folders, resolve_mode,
                                  resolve_seed)
from collage_ext.sdscripts import mapper, seams
from collage_ext.sdscripts.mapper import BuildContext, CollageMixin, strategy_era
from collage_ext.sdscripts.trainers import refuse_unsupported

# Before anything else touches sd-scripts: every name used below exists, or training stops here
# (sd-scripts imports this module while it builds the dataset, before any model loads).
_SEAMS = seams.require()
DatasetGroup = _SEAMS["DatasetGroup"]
DreamBoothDataset = _SEAMS["DreamBoothDataset"]
FineTuningDataset = _SEAMS["FineTuningDataset"]
from library import config_util  # type: ignore[import-not-found]  # noqa: E402

logger = logging.getLogger(__name__)

_LIVE: weakref.WeakSet[Any] = weakref.WeakSet()


class CollageDreamBoothDataset(CollageMixin, DreamBoothDataset):  # type: ignore[misc]
    """sd-scripts' DreamBooth dataset (folders of images + caption files) with collage frames."""


class CollageFineTuningDataset(CollageMixin, FineTuningDataset):  # type: ignore[misc]
    """sd-scripts' fine-tuning dataset (``--in_json`` / ``metadata_file``) with collage frames."""


class CollageDataset(DatasetGroup):  # type: ignore[misc]
    """The ``--dataset_class`` entry point: a genuine sd-scripts ``DatasetGroup`` with collage frames.

    sd-scripts calls ``CollageDataset(tokenizer, max_token_length, resolution, debug_dataset)``;
    ``tokenizer`` is a list of tokenizers on v0.9.1 and ``None`` on main.
    """

    def __init__(self, tokenizer: Any = None, max_token_length: Any = None, resolution: Any = None,
                 debug_dataset: bool = False) -> None:
        refuse_unsupported(strategy=_current_tokenize_strategy())
        run = find_run_args()
        logger.info(f"collage_ext: run arguments from {run.found}")
        user_config, where = _user_config(run)
        tree = split_dataset_config(user_config, defaults=run.collage_defaults, defaults_where=where)
        all_configs = [c for row in tree.subsets for c in row]
        mode, why = resolve_mode(all_configs, run)
        if mode == "static":
            refuse_cache_in_image_folders(all_configs, run, tree.kohya)
        seed, seed_why = resolve_seed(run, tree.kohya)
        check_caption_files(tree.kohya, run)
        check_crop_extensions(tree.kohya, tree.subsets, run)
        ctx = BuildContext(run, tree.subsets, seed, mode, tokenizer)
        datasets, validation = _generate(tree.kohya, run, ctx)
        if not sum(getattr(d, "num_train_images", 0) + getattr(d, "num_reg_images", 0) for d in datasets):
            raise CollageConfigError(_no_samples_message(tree.kohya))
        super().__init__(datasets)
        if "seed" not in run.explicit:
            # Without --seed, train_network.py draws a different seed in every process, and sd-scripts
            # derives its batch-order seed from it: ranks would order batches differently and show some
            # frames twice, others never. The config-derived seed is the same on every rank.
            for dataset in self.datasets:
                dataset.set_seed(seed)
        #: sd-scripts' validation group (single images, no collages) for trainers patched with
        #: patches/0001-dataset-class-validation-split.patch; unpatched trainers ignore it.
        self.validation_dataset_group = validation
        _LIVE.add(self)
        log_summary(self.datasets, mode, why, seed, seed_why, all_configs, run,
                    default_rate_note(user_config, run.collage_defaults))


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


def _generate(kohya_config: dict[str, Any], run: RunArgs, ctx: BuildContext) -> tuple[list[Any], Any]:
    args = run.namespace
    if args is None:
        msg = ("collage_ext could not find the trainer's arguments on the call stack; start training with "
               "sd-scripts' own scripts (train_network.py, sdxl_train_network.py, flux_train_network.py, sdxl_train.py)")
        raise CollageConfigError(msg)
    sanitizer = config_util.ConfigSanitizer(True, True, getattr(args, "masked_loss", False), True)
    extra = {"tokenizer": ctx.tokenizer} if _wants_tokenizer() else {}
    blueprint = config_util.BlueprintGenerator(sanitizer).generate(kohya_config, args, **extra)
    with _collage_classes(ctx):
        result = config_util.generate_dataset_group_by_blueprint(blueprint.dataset_group)
    group, validation = result if isinstance(result, tuple) else (result, None)
    return list(group.datasets), validation


@contextmanager
def _collage_classes(ctx: BuildContext) -> Any:
    """Let sd-scripts' own ``generate_dataset_group_by_blueprint`` build our subclasses.

    That function names ``DreamBoothDataset`` / ``FineTuningDataset`` directly; swapping the names
    in ``config_util`` for the duration reuses its logging, validation split, bucketing and seeding
    instead of copying them (and their differences between v0.9.1 and main).
    """
    saved = (config_util.DreamBoothDataset, config_util.FineTuningDataset)
    config_util.DreamBoothDataset, config_util.FineTuningDataset = CollageDreamBoothDataset, CollageFineTuningDataset
    mapper._PENDING.append(ctx)
    try:
        yield
    finally:
        mapper._PENDING.pop()
        config_util.DreamBoothDataset, config_util.FineTuningDataset = saved


def _current_tokenize_strategy() -> Any:
    """The tokenize strategy the script set before building the dataset (main), else None."""
    if not strategy_era():
        return None
    from library import strategy_base  # type: ignore[import-not-found]

    return strategy_base.TokenizeStrategy.get_strategy()


def _wants_tokenizer() -> bool:
    # v0.9.1 datasets take the tokenizers as a runtime parameter; main's take none.
    return "tokenizer" in inspect.signature(DreamBoothDataset.__init__).parameters


def _user_config(run: RunArgs) -> tuple[dict[str, Any], str]:
    """The dataset config as sd-scripts would build it, and where global collage defaults came from."""
    where = f"--config_file {run.get('config_file')}" if run.get("config_file") else "the training arguments"
    if run.get("dataset_config"):
        return config_util.load_user_config(run.get("dataset_config")), where
    if run.get("in_json") is None:
        subsets = config_util.generate_dreambooth_subsets_config_by_subdirs(run.get("train_data_dir"),
                                                                            run.get("reg_data_dir"))
    else:
        subsets = [{"image_dir": run.get("train_data_dir"), "metadata_file": run.get("in_json")}]
    return {"datasets": [{"subsets": subsets}]}, where


def attach_epoch_value(epoch_value: Any) -> None:
    """Give every live CollageDataset the trainer's shared epoch counter (see ``_sync_epoch``)."""
    for group in list(_LIVE):
        for dataset in group.datasets:
            if isinstance(dataset, CollageMixin):
                dataset._epoch_value = epoch_value


def _patch_collator() -> None:
    """Wrap sd-scripts' ``collator_class`` so the shared epoch value reaches our datasets.

    The trainer creates the collator (holding ``multiprocessing.Value`` epoch) after the dataset;
    the wrapper hands that value to every live CollageDataset before DataLoader workers start.
    """
    cls = _SEAMS["collator_class"]
    if getattr(cls, "_collage_ext_patched", False):
        return
    original = cls.__init__

    def __init__(self: Any, epoch: Any, step: Any, dataset: Any) -> None:
        original(self, epoch, step, dataset)
        attach_epoch_value(epoch)

    cls.__init__ = __init__
    cls._collage_ext_patched = True


_patch_collator()
