"""The training arguments as sd-scripts reads them: ``--config_file`` TOML, then the command line.

The CLI is given the same training TOML and trainer options as the training run (after ``--``);
this module reads them the way sd-scripts' argparse set-up does and turns them into the lowest
level of the dataset-config cascade (``ConfigSanitizer.sanitize_argparse_namespace``).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from collage_ext.core.errors import CollageConfigError
from collage_ext.kohya.runargs import RunArgs, read_config_file, scan_options
from collage_ext.kohya.specs import Finding

logger = logging.getLogger(__name__)

#: sd-scripts' argparse defaults for the dataset options read here (``add_dataset_arguments``).
ARG_DEFAULTS: dict[str, Any] = {
    "caption_extension": ".caption",
    "caption_separator": ",",
    "keep_tokens": 0,
    "keep_tokens_separator": "",
    "secondary_separator": None,
    "enable_wildcard": False,
    "shuffle_caption": False,
    "flip_aug": False,
    "color_aug": False,
    "random_crop": False,
    "caption_dropout_rate": 0.0,
    "resolution": None,
    "enable_bucket": False,
    "min_bucket_reso": 256,
    "max_bucket_reso": 1024,
    "bucket_reso_steps": 64,
    "bucket_no_upscale": False,
    "train_batch_size": 1,
    "dataset_repeats": 1,
}
#: argparse names that mean another dataset-config key (``ConfigSanitizer.ARGPARSE_OPTNAME_TO_CONFIG_OPTNAME``).
ARG_TO_CONFIG = {"train_batch_size": "batch_size", "dataset_repeats": "num_repeats"}

#: The value of sd-scripts' ``--dataset_class`` that turns collage training on.
DATASET_CLASS = "collage_ext.CollageDataset"
#: Warnings already logged by this process: the studio reads the project again after every edit.
_said: set[str] = set()


def build_run(
    config_file: str | os.PathLike[str] | None = None, trainer_args: Sequence[str] = (), seed: int | None = None
) -> RunArgs:
    """The training arguments: the ``--config_file`` TOML, then trainer arguments, then ``--seed``.

    Trainer arguments are read generically (``--key value``, ``--key=value``, bare ``--flag``), so
    the same line as the training shell script can be pasted after ``--``.

    Raises:
        CollageConfigError: the training TOML cannot be read.
    """
    values: dict[str, Any] = {}
    found = []
    if config_file is not None:
        values.update(read_config_file(str(config_file)))
        values["config_file"] = str(config_file)
        found.append(f"--config {config_file}")
    given = parse_trainer_args(trainer_args)
    if given.get("config_file") and config_file is None:
        values.update(read_config_file(str(given["config_file"])))
    values.update(given)
    if given:
        found.append("trainer arguments")
    if seed is not None:
        values["seed"] = seed
    if values.get("caption_extention") is not None:  # sd-scripts' old spelling wins (prepare_dataset_args)
        values["caption_extension"] = values["caption_extention"]
    explicit = {k for k, v in values.items() if v is not None}
    return RunArgs(None, values, explicit, " and ".join(found) or "defaults")


def parse_trainer_args(argv: Sequence[str]) -> dict[str, Any]:
    """Read the sd-scripts options a user passed after ``--`` (every token must be an option).

    Examples:
        >>> parse_trainer_args(["--seed", "42", "--cache_latents", "--resolution=1024,1024"])
        {'seed': 42, 'cache_latents': True, 'resolution': '1024,1024'}
    """
    return scan_options(argv, strict=True)


def arg_config(run: RunArgs) -> dict[str, Any]:
    """The training arguments as the last level of the dataset-config cascade, under config-file names."""
    values = dict(ARG_DEFAULTS)
    values.update({k: v for k, v in run.values.items() if v is not None})
    return {ARG_TO_CONFIG.get(k, k): v for k, v in values.items()}


def dataset_class_finding(run: RunArgs, where: str) -> list[Finding]:
    """A warning when the training arguments given would train plain sd-scripts datasets, not these frames."""
    value = run.get("dataset_class")
    if value == DATASET_CLASS:
        return []
    got = f"dataset_class is {value!r}" if value else "no dataset_class"
    message = (
        f"{where} has {got}: sd-scripts would train plain single images, not the collage frames shown here; "
        f'add dataset_class = "{DATASET_CLASS}" to the training TOML, or (kohya_ss GUI, whose saved TOML '
        f"never has it) type --dataset_class {DATASET_CLASS} into Parameters > Advanced > Additional "
        f"parameters and add it here after --: -- --dataset_class {DATASET_CLASS}"
    )
    if message not in _said:  # once per process; the finding stays in every report
        _said.add(message)
        logger.warning(message)
    return [Finding("warning", "no_dataset_class", message)]


@dataclass(frozen=True)
class DatasetLocation:
    """Where a run's datasets come from, chosen as sd-scripts' trainers choose it.

    Attributes:
        kind: ``dataset_config`` (a TOML/JSON), ``in_json`` (one fine-tuning subset) or
            ``train_data_dir`` (``N_name`` sub-folders become subsets).
        path: the dataset config file, or ``--train_data_dir``.
        metadata_file: ``--in_json`` (kind ``in_json`` only).
        reg_data_dir: ``--reg_data_dir`` (kind ``train_data_dir`` only).
        label: how start-up messages name it.
    """

    kind: Literal["dataset_config", "in_json", "train_data_dir"]
    path: str | None
    metadata_file: str | None = None
    reg_data_dir: str | None = None
    label: str = ""


def dataset_source(run: RunArgs, dataset: str | os.PathLike[str] | None = None) -> DatasetLocation | None:
    """The run's dataset source; ``None`` when the arguments name none (each caller words that error).

    ``dataset`` is the CLI's positional argument (a dataset TOML, or a folder of ``N_name``
    sub-folders) and wins over the training arguments. Otherwise sd-scripts' order applies
    (``train_network.py``): ``--dataset_config``, else ``--in_json`` with ``--train_data_dir`` as its
    image folder, else the ``--train_data_dir`` / ``--reg_data_dir`` folders.
    """
    reg = run.get("reg_data_dir")
    if dataset is not None and Path(dataset).is_dir():
        return DatasetLocation("train_data_dir", str(dataset), reg_data_dir=reg, label=f"--train_data_dir {dataset}")
    if dataset is not None:
        return DatasetLocation("dataset_config", str(dataset), label=f"dataset config {dataset}")
    if run.get("dataset_config"):
        config = str(run.get("dataset_config"))
        return DatasetLocation(
            "dataset_config", config, label=f"dataset config {config} (dataset_config of the training arguments)"
        )
    if run.get("train_data_dir") and run.get("in_json"):
        return DatasetLocation(
            "in_json",
            str(run.get("train_data_dir")),
            metadata_file=str(run.get("in_json")),
            label=f"--in_json {run.get('in_json')}",
        )
    if run.get("in_json"):
        msg = (
            f"--in_json {run.get('in_json')} needs --train_data_dir: sd-scripts takes it as the image folder of "
            "the fine-tuning subset (and refuses the run without it)"
        )
        raise CollageConfigError(msg)
    if run.get("train_data_dir"):
        return DatasetLocation(
            "train_data_dir",
            str(run.get("train_data_dir")),
            reg_data_dir=reg,
            label=f"--train_data_dir {run.get('train_data_dir')}",
        )
    return None
