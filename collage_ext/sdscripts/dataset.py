"""``collage_ext.CollageDataset``: collage training inside real sd-scripts runs.

sd-scripts constructs ``--dataset_class`` objects positionally and without ``args``; this class
recovers the run's arguments (``startup.run_arguments``), resolves the run once (``run.resolve_run``,
as the CLI does), builds the datasets through sd-scripts' own ``config_util`` (so every kohya key is
validated by kohya's sanitizer and means what it always meant), and returns a genuine
``DatasetGroup`` of ``DreamBoothDataset`` / ``FineTuningDataset`` subclasses. Every sd-scripts name
it relies on goes through ``seams`` (hooks via ``seams.DatasetHooks``).

The frames themselves are the producer's (``collage_ext.plan``): ``sdscripts/mapper.py`` hands
each collage subset to it and registers the frame jobs it lists as sd-scripts images.
"""

from __future__ import annotations

import logging
import weakref
from typing import Any

from collage_ext.core.config import split_dataset_config
from collage_ext.core.errors import CollageConfigError
from collage_ext.kohya.args import DatasetLocation, dataset_source
from collage_ext.kohya.caption_files import check_crop_extensions
from collage_ext.kohya.runargs import RunArgs
from collage_ext.plan.run import resolve_run
from collage_ext.sdscripts import mapper, seams
from collage_ext.sdscripts.mapper import BuildContext, CollageMixin
from collage_ext.sdscripts.startup import check_caption_files, default_rate_note, log_summary, run_arguments
from collage_ext.sdscripts.trainers import refuse_unsupported

# Before anything else touches sd-scripts: every name used below exists, or training stops here
# (sd-scripts imports this module while it builds the dataset, before any model loads).
_SD = seams.require()

logger = logging.getLogger(__name__)

_LIVE: weakref.WeakSet[Any] = weakref.WeakSet()


class CollageDreamBoothDataset(CollageMixin, _SD.dreambooth):  # type: ignore[misc,name-defined]
    """sd-scripts' DreamBooth dataset (folders of images + caption files) with collage frames."""


class CollageFineTuningDataset(CollageMixin, _SD.finetuning):  # type: ignore[misc,name-defined]
    """sd-scripts' fine-tuning dataset (``--in_json`` / ``metadata_file``) with collage frames."""


class CollageDataset(_SD.group):  # type: ignore[misc,name-defined]
    """The ``--dataset_class`` entry point: a genuine sd-scripts ``DatasetGroup`` with collage frames.

    sd-scripts calls ``CollageDataset(tokenizer, max_token_length, resolution, debug_dataset)``;
    ``tokenizer`` is a list of tokenizers on v0.9.1 and ``None`` on main.
    """

    def __init__(
        self, tokenizer: Any = None, max_token_length: Any = None, resolution: Any = None, debug_dataset: bool = False
    ) -> None:
        run = run_arguments()
        family, family_why = refuse_unsupported(strategy=seams.tokenize_strategy(), values=run.values)
        logger.info(f"collage_ext: run arguments from {run.found}; model family {family.name} ({family_why})")
        user_config, where = _user_config(run)
        tree = split_dataset_config(user_config, defaults=run.collage_defaults, defaults_where=where)
        all_configs = [c for row in tree.subsets for c in row]
        settings = resolve_run(all_configs, run, tree.kohya)
        check_caption_files(tree.kohya, run)
        check_crop_extensions(tree.kohya, tree.subsets, run)
        ctx = BuildContext(run, tree.subsets, settings.seed, settings.mode, tokenizer)
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
    ignored = [
        f"{s.get('image_dir') or s.get('metadata_file')}: num_repeats = {r}"
        for d in kohya_config.get("datasets", []) or []
        for s in d.get("subsets", []) or []
        for r in [next((level["num_repeats"] for level in (s, d, general) if "num_repeats" in level), 1)]
        if isinstance(r, int) and r < 1
    ]
    why = (
        f"sd-scripts ignores subsets with num_repeats < 1 ({'; '.join(ignored)})"
        if ignored
        else ("every subset is empty or was left out (see sd-scripts' log above)")
    )
    return f"no sample to train: {why}; give a subset images and num_repeats >= 1"


def _generate(kohya_config: dict[str, Any], run: RunArgs, ctx: BuildContext) -> tuple[list[Any], Any]:
    """sd-scripts' own datasets for the config, built as the collage subclasses (``seams.build_datasets``)."""
    args = run.namespace
    if args is None:
        msg = (
            "collage_ext could not find the trainer's arguments (sd-scripts' load_arbitrary_dataset did not "
            "build the dataset); start training with sd-scripts' own scripts (train_network.py, "
            "sdxl_train_network.py, flux_train_network.py, sdxl_train.py)"
        )
        raise CollageConfigError(msg)
    return seams.build_datasets(
        kohya_config,
        args,
        ctx.tokenizer,
        CollageDreamBoothDataset,
        CollageFineTuningDataset,
        seams.datasets_take_tokenizer(_SD),
        before=lambda: mapper._PENDING.append(ctx),
        after=mapper._PENDING.pop,
    )


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


def attach_epoch_value(epoch_value: Any) -> None:
    """Give every live CollageDataset the trainer's shared epoch counter (see ``_sync_epoch``)."""
    for group in list(_LIVE):
        for dataset in group.datasets:
            if isinstance(dataset, CollageMixin):
                dataset._epoch_value = epoch_value


# The trainer builds sd-scripts' collator (holding the shared epoch value) after the dataset.
seams.on_collator(attach_epoch_value)
